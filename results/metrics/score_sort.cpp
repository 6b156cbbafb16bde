#include "results/metrics/score_sort.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace zsad::results {
namespace {

constexpr size_t kInsertionLimit = 48;

inline uint32_t upper(uint64_t r) { return uint32_t(r >> 32); }

void insertion_sort(uint64_t* a, size_t n) {
  for (size_t i = 1; i < n; ++i) {
    uint64_t v = a[i];
    size_t j = i;
    while (j > 0 && upper(a[j - 1]) > upper(v)) {
      a[j] = a[j - 1];
      --j;
    }
    a[j] = v;
  }
}

struct Bucket {
  uint64_t* begin;
  size_t size;
  int shift;
};

// American-flag partition of `a` on the byte at `shift`; returns the non-trivial sub-buckets.
void partition(uint64_t* a, size_t n, int shift, std::vector<Bucket>& out) {
  size_t count[256] = {0};
  for (size_t i = 0; i < n; ++i) ++count[(a[i] >> shift) & 0xff];
  size_t start[256], next[256], end[256];
  size_t pos = 0;
  for (int b = 0; b < 256; ++b) {
    start[b] = next[b] = pos;
    pos += count[b];
    end[b] = pos;
  }
  for (int b = 0; b < 256; ++b) {
    if (count[b] == n) break;  // everything shares this byte: nothing to move
    while (next[b] < end[b]) {
      uint64_t v = a[next[b]];
      int d = int((v >> shift) & 0xff);
      if (d == b) {
        ++next[b];
        continue;
      }
      while (d != b) {
        std::swap(v, a[next[d]++]);
        d = int((v >> shift) & 0xff);
      }
      a[next[b]++] = v;
    }
  }
  if (shift == 32) return;
  for (int b = 0; b < 256; ++b) {
    if (count[b] > 1) out.push_back(Bucket{a + start[b], count[b], shift - 8});
  }
}

void sort_serial(uint64_t* a, size_t n, int shift) {
  if (n <= kInsertionLimit) {
    insertion_sort(a, n);
    return;
  }
  std::vector<Bucket> sub;
  partition(a, n, shift, sub);
  for (const Bucket& b : sub) sort_serial(b.begin, b.size, b.shift);
}

}  // namespace

void sort_records(uint64_t* records, size_t n, int threads) {
  if (n < 2) return;
  if (threads <= 1 || n < (size_t{1} << 20)) {
    sort_serial(records, n, 56);
    return;
  }
  // Work queue of buckets: big buckets are partitioned and their children queued, small ones
  // are finished by the worker that pops them. The top partition is serial; from the second
  // level on, buckets are spread over the threads.
  const size_t split_above = std::max<size_t>(n / (8 * size_t(threads)), 1 << 16);
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Bucket> queue{Bucket{records, n, 56}};
  size_t in_flight = 0;
  auto worker = [&] {
    std::vector<Bucket> sub;
    for (;;) {
      Bucket b;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return !queue.empty() || in_flight == 0; });
        if (queue.empty()) return;
        b = queue.front();
        queue.pop_front();
        ++in_flight;
      }
      sub.clear();
      if (b.size > split_above && b.size > kInsertionLimit) {
        partition(b.begin, b.size, b.shift, sub);
      } else {
        sort_serial(b.begin, b.size, b.shift);
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        for (const Bucket& s : sub) queue.push_back(s);
        --in_flight;
      }
      cv.notify_all();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
}

}  // namespace zsad::results
