#pragma once
// Simulated ranks for the data-parallel tests: threads meeting at an in-process rendezvous.
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

#include <ATen/ATen.h>

namespace zsad::test {

// Every rank deposits a tensor (a detached copy); all receive the list in rank order once the
// last rank has arrived.
class InProcessExchange {
 public:
  explicit InProcessExchange(int world) : world_(world), slots_(world) {}
  std::vector<at::Tensor> exchange(int rank, const at::Tensor& t) {
    std::unique_lock<std::mutex> lock(m_);
    const uint64_t my_gen = gen_;
    slots_[rank] = t.detach().clone();
    if (++arrived_ == world_) {
      result_ = slots_;
      arrived_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return gen_ != my_gen; });
    }
    return result_;
  }
  // Completed exchanges (read it after the ranks have finished).
  int64_t collectives() const { return static_cast<int64_t>(gen_); }
  int world() const { return world_; }

 private:
  int world_;
  std::mutex m_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t gen_ = 0;
  std::vector<at::Tensor> slots_, result_;
};

}  // namespace zsad::test
