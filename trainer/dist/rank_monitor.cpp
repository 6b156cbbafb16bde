#include "trainer/dist/rank_monitor.h"

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <vector>

namespace zsad::dist {

namespace {

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string hb_key(int r) { return "zsad/heartbeat/" + std::to_string(r); }

struct Beat {
  bool present = false;
  int64_t ms = 0;
  uint64_t seq = 0;
};

}  // namespace

RankMonitor::RankMonitor(StorePtr store, int rank, int world_size, std::string store_where,
                         std::chrono::milliseconds heartbeat_interval)
    : store_(std::move(store)), rank_(rank), world_(world_size), where_(std::move(store_where)),
      interval_(heartbeat_interval) {
  if (store_ && world_ > 1) heartbeat_ = std::thread([this] { heartbeat_loop(); });
  watchdog_ = std::thread([this] { watchdog_loop(); });
}

RankMonitor::~RankMonitor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
  if (watchdog_.joinable()) watchdog_.join();
}

void RankMonitor::attach_store(StorePtr store, const std::string& store_where) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (store_) return;
    store_ = std::move(store);
    where_ = store_where;
  }
  if (world_ > 1 && !heartbeat_.joinable()) heartbeat_ = std::thread([this] { heartbeat_loop(); });
}

uint64_t RankMonitor::begin(const std::string& op, std::chrono::milliseconds deadline) {
  uint64_t s = ++seq_;
  if (deadline.count() > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    op_ = op + " #" + std::to_string(s);
    armed_ = true;
    deadline_ = std::chrono::steady_clock::now() + deadline;
  }
  return s;
}

void RankMonitor::end() {
  std::lock_guard<std::mutex> lock(mu_);
  armed_ = false;
}

void RankMonitor::heartbeat_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    std::string v = std::to_string(unix_ms()) + " " + std::to_string(seq_.load());
    try {
      store_->set(hb_key(rank_), std::vector<uint8_t>(v.begin(), v.end()));
    } catch (const std::exception&) {
      // The store host (rank 0) is gone; diagnose() reports that when a collective fails.
    }
    lock.lock();
    cv_.wait_for(lock, interval_, [this] { return stop_.load(); });
  }
}

void RankMonitor::watchdog_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stop_.load(); });
    if (stop_ || !armed_ || std::chrono::steady_clock::now() < deadline_) continue;
    std::string op = op_;
    lock.unlock();
    std::string why = diagnose();
    std::fprintf(stderr, "[zsad] rank %d: collective %s did not complete before its deadline; %s; exiting\n", rank_,
                 op.c_str(), why.c_str());
    std::fflush(stderr);
    std::fflush(stdout);
    std::_Exit(1);
  }
}

std::string RankMonitor::diagnose() {
  if (world_ <= 1) return "single process";
  StorePtr store;
  {
    std::lock_guard<std::mutex> lock(mu_);
    store = store_;
  }
  if (!store) return "no rendezvous store to consult, the missing rank is unknown";
  auto read_all = [&](std::vector<Beat>& out) -> bool {
    out.assign(world_, Beat{});
    try {
      for (int r = 0; r < world_; ++r) {
        if (!store->check({hb_key(r)})) continue;
        auto bytes = store->get(hb_key(r));
        std::istringstream in(std::string(bytes.begin(), bytes.end()));
        Beat b;
        b.present = static_cast<bool>(in >> b.ms >> b.seq);
        out[r] = b;
      }
      return true;
    } catch (const std::exception&) {
      return false;
    }
  };
  std::vector<Beat> first, second;
  if (!read_all(first)) {
    return "rank 0 is missing (the rendezvous store it hosts at " + where_ + " is unreachable)";
  }
  std::this_thread::sleep_for(2 * interval_ + std::chrono::milliseconds(300));
  if (!read_all(second)) {
    return "rank 0 is missing (the rendezvous store it hosts at " + where_ + " became unreachable)";
  }
  const uint64_t mine = seq_.load();
  const int64_t now = unix_ms();
  std::ostringstream msg;
  int named = 0;
  for (int r = 0; r < world_; ++r) {
    if (r == rank_) continue;
    const Beat& a = first[r];
    const Beat& b = second[r];
    if (!b.present) {
      msg << (named++ ? "; " : "") << "rank " << r << " is missing (it never sent a heartbeat)";
    } else if (a.present && a.ms == b.ms) {
      char secs[32];
      std::snprintf(secs, sizeof secs, "%.1f", (now - b.ms) / 1000.0);
      msg << (named++ ? "; " : "") << "rank " << r << " is missing (no heartbeat for " << secs
          << " s, last seen at collective " << b.seq << "; rank " << rank_ << " is at " << mine << ")";
    } else if (b.seq < mine) {
      msg << (named++ ? "; " : "") << "rank " << r << " is alive but behind (at collective " << b.seq << ", rank "
          << rank_ << " is at " << mine << ")";
    }
  }
  if (named == 0) return "every other rank is alive and at the same collective count";
  return msg.str();
}

}  // namespace zsad::dist
