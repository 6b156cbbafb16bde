#pragma once
// What a training run reports: a per-rank log file (<run_dir>/logs/rank<r>.log), rank 0's progress
// line on stderr (epoch, step, loss terms, it/s, ETA) and <run_dir>/metrics.jsonl (rank 0, one JSON
// object per logged step).
#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace zsad::trainer {

using LossTerms = std::vector<std::pair<std::string, double>>;

class RunLog {
 public:
  RunLog(const std::string& run_dir, int rank, int world_size);

  // A line in this rank's log file (and on stderr for rank 0 when `console`).
  void info(const std::string& line, bool console = false);

  // Rank 0: progress line + metrics.jsonl record; every rank: a log file line.
  void step(int64_t epoch, int64_t step, int64_t total_steps, double loss, const LossTerms& terms, double lr,
            int64_t steps_since_last);

 private:
  int rank_;
  int world_;
  std::ofstream log_;
  std::ofstream metrics_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_;
  int64_t first_step_ = -1;
};

// "1:02:03" / "2:03" for an ETA in seconds.
std::string format_duration(double seconds);

}  // namespace zsad::trainer
