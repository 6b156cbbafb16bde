// gloo backend: c10d::ProcessGroupGloo over TCP, connected through the rendezvous store
// (toolchain.md §2). Works on CPU tensors; this is the backend of Debian's CPU LibTorch.
#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <unistd.h>

#include "trainer/comm/communicator.h"
#include "trainer/dist/rank_monitor.h"

namespace zsad::comm {

namespace {

std::string first_line(const std::exception& e) {
  const auto* ce = dynamic_cast<const c10::Error*>(&e);
  std::string s = ce ? ce->what_without_backtrace() : e.what();
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(const CommOptions& o, dist::StorePtr store, int rank, int world,
                   std::shared_ptr<dist::RankMonitor> monitor)
      : rank_(rank), world_(world), monitor_(std::move(monitor)) {
    timeout_ = o.timeout;
    auto opts = c10d::ProcessGroupGloo::Options::create(o.timeout);
    std::string host = o.gloo_hostname;
    if (host.empty()) {
      char buf[256] = {0};
      host = gethostname(buf, sizeof buf - 1) == 0 ? buf : "127.0.0.1";
    }
    try {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host));
      opts->threads = o.gloo_threads;
      auto prefixed = c10::make_intrusive<c10d::PrefixStore>("zsad/gloo", store);
      pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, world, opts);
    } catch (const std::exception& e) {
      throw CommError("gloo: rank " + std::to_string(rank) + " could not connect to its peers (bound to '" + host +
                      "'): " + first_line(e));
    }
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  const char* backend() const override { return "gloo"; }

  void allreduce(at::Tensor& t, ReduceOp op) override {
    std::vector<at::Tensor> one{t};
    allreduce_many(one, op);
  }

  void allreduce_many(std::vector<at::Tensor>& ts, ReduceOp op) override {
    run("allreduce", [&] {
      c10d::AllreduceOptions ao;
      ao.reduceOp = op == ReduceOp::kSum ? c10d::ReduceOp::SUM : c10d::ReduceOp::MAX;
      std::vector<c10::intrusive_ptr<c10d::Work>> works;
      std::vector<std::vector<at::Tensor>> args(ts.size());
      for (size_t i = 0; i < ts.size(); ++i) {
        check_contiguous(ts[i]);
        args[i] = {ts[i]};
        works.push_back(pg_->allreduce(args[i], ao));
      }
      for (auto& w : works) w->wait();
    });
  }

  std::function<void()> allreduce_async(at::Tensor& t, ReduceOp op) override {
    check_contiguous(t);
    c10::intrusive_ptr<c10d::Work> work;
    run("allreduce", [&] {
      c10d::AllreduceOptions ao;
      ao.reduceOp = op == ReduceOp::kSum ? c10d::ReduceOp::SUM : c10d::ReduceOp::MAX;
      std::vector<at::Tensor> args{t};
      work = pg_->allreduce(args, ao);
    });
    return [this, work] { run("allreduce (async)", [&] { work->wait(); }); };
  }

  void broadcast(at::Tensor& t, int root) override {
    check_contiguous(t);
    run("broadcast", [&] {
      c10d::BroadcastOptions bo;
      bo.rootRank = root;
      std::vector<at::Tensor> args{t};
      pg_->broadcast(args, bo)->wait();
    });
  }

  at::Tensor allgather(const at::Tensor& t) override {
    at::Tensor in = t.contiguous();
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < world_; ++r) out[0].push_back(at::empty_like(in));
    std::vector<at::Tensor> args{in};
    run("allgather", [&] { pg_->allgather(out, args)->wait(); });
    return at::stack(out[0]);
  }

  void barrier() override {
    run("barrier", [&] { pg_->barrier()->wait(); });
  }

 private:
  static void check_contiguous(const at::Tensor& t) {
    if (!t.is_contiguous()) throw CommError("gloo: collectives need contiguous tensors");
  }

  template <typename F>
  void run(const char* op, F&& f) {
    // Gloo raises its own error after the timeout; the watchdog is the backstop if it does not.
    uint64_t seq = monitor_ ? monitor_->begin(op, timeout_ + std::chrono::seconds(5)) : 0;
    try {
      f();
    } catch (const std::exception& e) {
      if (monitor_) monitor_->end();
      std::string why = monitor_ ? monitor_->diagnose() : "no rank monitor";
      throw CommError("gloo: rank " + std::to_string(rank_) + " " + op + " #" + std::to_string(seq) +
                      " failed (timeout " + c10::str(timeout_.count() / 1000.0) + " s): " + first_line(e) +
                      "; " + why);
    }
    if (monitor_) monitor_->end();
  }

  int rank_;
  int world_;
  std::shared_ptr<dist::RankMonitor> monitor_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg_;
};

}  // namespace

std::unique_ptr<Communicator> make_gloo_communicator(const CommOptions& o, dist::StorePtr store, int rank,
                                                     int world_size, std::shared_ptr<dist::RankMonitor> monitor) {
  return std::make_unique<GlooCommunicator>(o, std::move(store), rank, world_size, std::move(monitor));
}

}  // namespace zsad::comm
