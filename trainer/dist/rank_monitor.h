#pragma once
// Names the rank that is missing when a collective fails or stalls. Every rank writes a heartbeat
// ("<unix ms> <collective count>") into the rendezvous store once per interval; after a failure the
// survivors read the heartbeats and report which ranks stopped beating (dead or stopped process)
// or are behind in collective count (stuck in compute). A watchdog thread turns a collective that
// overruns its deadline into a message and exit(1): MPI and NCCL calls cannot be cancelled, and the
// platform rule is "never a hang".
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "trainer/dist/store.h"

namespace zsad::dist {

class RankMonitor {
 public:
  // `store` may be null (an MPI job without a store): diagnosis then cannot name ranks.
  RankMonitor(StorePtr store, int rank, int world_size, std::string store_where,
              std::chrono::milliseconds heartbeat_interval = std::chrono::milliseconds(1000));
  ~RankMonitor();
  RankMonitor(const RankMonitor&) = delete;
  RankMonitor& operator=(const RankMonitor&) = delete;

  // Starts heartbeats through a store created after the monitor (the mpi backend learns rank 0's
  // store address only through MPI itself). Call at most once, before training starts.
  void attach_store(StorePtr store, const std::string& store_where);

  int rank() const { return rank_; }
  int world_size() const { return world_; }

  // Marks the start of collective `op`; the watchdog ends the process if end() has not been called
  // `deadline` from now. A zero deadline arms nothing. Returns the collective's sequence number.
  uint64_t begin(const std::string& op, std::chrono::milliseconds deadline);
  void end();

  // One line naming missing/lagging ranks, e.g. "rank 1 is missing (no heartbeat for 3.1 s, last seen
  // at collective 17; this rank is at 18)". Blocks for about two heartbeat intervals.
  std::string diagnose();

 private:
  void heartbeat_loop();
  void watchdog_loop();

  StorePtr store_;
  int rank_;
  int world_;
  std::string where_;
  std::chrono::milliseconds interval_;
  std::atomic<uint64_t> seq_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::string op_;
  bool armed_ = false;
  std::chrono::steady_clock::time_point deadline_;
  std::thread heartbeat_;
  std::thread watchdog_;
};

}  // namespace zsad::dist
