#include "trainer/loop/run_log.h"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace zsad::trainer {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  long t = std::lround(s);
  char buf[32];
  if (t >= 3600) {
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  }
  return buf;
}

RunLog::RunLog(const std::string& run_dir, int rank, int world_size) : rank_(rank), world_(world_size) {
  std::filesystem::create_directories(std::filesystem::path(run_dir) / "logs");
  const std::string lp = run_dir + "/logs/rank" + std::to_string(rank) + ".log";
  log_.open(lp, std::ios::app);
  if (!log_) throw Error("cannot open log file '" + lp + "'");
  if (rank == 0) {
    metrics_.open(run_dir + "/metrics.jsonl", std::ios::app);
    if (!metrics_) throw Error("cannot open '" + run_dir + "/metrics.jsonl'");
  }
  start_ = last_ = std::chrono::steady_clock::now();
}

void RunLog::info(const std::string& line, bool console) {
  std::time_t now = std::time(nullptr);
  char ts[32];
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", std::gmtime(&now));
  log_ << ts << " [r" << rank_ << "/" << world_ << "] " << line << "\n";
  log_.flush();
  if (console && rank_ == 0) {
    std::fprintf(stderr, "[zsad] %s\n", line.c_str());
    std::fflush(stderr);
  }
}

void RunLog::step(int64_t epoch, int64_t step, int64_t total_steps, double loss, const LossTerms& terms, double lr,
                  int64_t steps_since_last) {
  auto now = std::chrono::steady_clock::now();
  double dt = std::chrono::duration<double>(now - last_).count();
  last_ = now;
  if (first_step_ < 0) first_step_ = step - steps_since_last;
  double it_s = dt > 0 ? steps_since_last / dt : 0.0;
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double done = static_cast<double>(step - first_step_);
  double eta = done > 0 ? elapsed / done * static_cast<double>(total_steps - step) : NAN;
  char head[160];
  std::snprintf(head, sizeof head, "epoch %lld step %lld/%lld loss %.6g", static_cast<long long>(epoch),
                static_cast<long long>(step), static_cast<long long>(total_steps), loss);
  std::string line = head;
  if (terms.size() > 1) {
    line += " (";
    for (size_t i = 0; i < terms.size(); ++i) {
      char t[96];
      std::snprintf(t, sizeof t, "%s%s %.4g", i ? ", " : "", terms[i].first.c_str(), terms[i].second);
      line += t;
    }
    line += ")";
  }
  char tail[128];
  std::snprintf(tail, sizeof tail, " lr %.3g %.2f it/s ETA %s", lr, it_s, format_duration(eta).c_str());
  line += tail;
  info(line, true);
  if (rank_ == 0) {
    nlohmann::json j;
    j["epoch"] = epoch;
    j["step"] = step;
    j["loss"] = loss;
    nlohmann::json t = nlohmann::json::object();
    for (const auto& [k, v] : terms) t[k] = v;
    j["terms"] = t;
    j["lr"] = lr;
    j["it_per_s"] = it_s;
    j["elapsed_s"] = elapsed;
    j["world_size"] = world_;
    metrics_ << j.dump() << "\n";
    metrics_.flush();
  }
}

}  // namespace zsad::trainer
