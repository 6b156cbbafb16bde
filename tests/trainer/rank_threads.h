#pragma once
// In-process multi-rank fixture: N ranks as threads sharing a c10d FileStore, each with its own
// gloo communicator (the pattern of PyTorch's test/cpp/c10d/ProcessGroupGlooTest.cpp).
#include <atomic>
#include <chrono>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "trainer/comm/communicator.h"
#include "trainer/dist/rank_monitor.h"
#include "trainer/dist/store.h"

namespace zsad::testing {

inline std::string fresh_temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  auto dir = std::filesystem::temp_directory_path() /
             ("zsad_trainer_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

struct RankContext {
  int rank;
  int world;
  comm::Communicator& comm;
  std::shared_ptr<dist::RankMonitor> monitor;
};

// Runs fn on `world` threads; rethrows the first exception of any rank in the caller.
inline void run_ranks(int world, const std::function<void(RankContext&)>& fn,
                      std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const std::string dir = fresh_temp_dir("store");
  const std::string path = dir + "/filestore";
  std::vector<std::thread> threads;
  std::exception_ptr first;
  std::mutex mu;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto store = dist::connect_file_store(path, r, world, std::chrono::seconds(30));
        auto monitor = std::make_shared<dist::RankMonitor>(store, r, world, "file store",
                                                           std::chrono::milliseconds(200));
        comm::CommOptions o;
        o.backend = comm::Backend::kGloo;
        o.timeout = timeout;
        o.gloo_hostname = "127.0.0.1";
        auto c = comm::make_communicator(o, store, r, world, monitor);
        RankContext ctx{r, world, *c, monitor};
        fn(ctx);
        c->barrier();
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!first) first = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  std::filesystem::remove_all(dir);
  if (first) std::rethrow_exception(first);
}

}  // namespace zsad::testing
