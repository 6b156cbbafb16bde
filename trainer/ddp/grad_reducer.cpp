#include "trainer/ddp/grad_reducer.h"

#include <map>
#include <sstream>
#include <tuple>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <zlib.h>

namespace zsad::ddp {

std::vector<std::vector<size_t>> assign_buckets(const std::vector<at::Tensor>& params, int64_t cap,
                                                int64_t first_cap) {
  struct Open {
    std::vector<size_t> idx;
    int64_t bytes = 0;
    int closed = 0;
  };
  using Key = std::tuple<int, int, int>;  // dtype, device type, device index
  std::map<Key, Open> open;
  std::vector<Key> key_order;
  std::vector<std::vector<size_t>> out;
  for (size_t k = params.size(); k-- > 0;) {
    const at::Tensor& p = params[k];
    Key key{static_cast<int>(p.scalar_type()), static_cast<int>(p.device().type()), p.device().index()};
    auto it = open.find(key);
    if (it == open.end()) {
      it = open.emplace(key, Open{}).first;
      key_order.push_back(key);
    }
    Open& b = it->second;
    b.idx.push_back(k);
    b.bytes += p.numel() * static_cast<int64_t>(p.element_size());
    const int64_t limit = b.closed == 0 ? first_cap : cap;
    if (b.bytes >= limit) {
      out.push_back(std::move(b.idx));
      b.idx.clear();
      b.bytes = 0;
      ++b.closed;
    }
  }
  for (const auto& key : key_order) {
    if (!open[key].idx.empty()) out.push_back(std::move(open[key].idx));
  }
  return out;
}

namespace {

// Fires after the accumulator has added this backward's gradient into p.grad().
struct ReadyHook : torch::autograd::FunctionPostHook {
  ReadyHook(GradReducer* r, size_t i) : reducer(r), index(i) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    if (reducer) reducer->mark_ready(index);
    return outputs;
  }
  GradReducer* reducer;
  size_t index;
};

}  // namespace

GradReducer::GradReducer(comm::Communicator& comm, const std::vector<at::Tensor>& params, BucketOptions o)
    : comm_(comm), opts_(o) {
  for (const auto& p : params) {
    if (p.requires_grad()) params_.push_back(p);
  }
  buckets_ = assign_buckets(params_, opts_.bucket_cap_bytes, opts_.first_bucket_cap_bytes);
  bucket_of_.assign(params_.size(), 0);
  for (size_t bi = 0; bi < buckets_.size(); ++bi) {
    int64_t n = 0;
    for (size_t i : buckets_[bi]) {
      n += params_[i].numel();
      bucket_of_[i] = bi;
    }
    flat_.push_back(at::zeros({n}, params_[buckets_[bi].front()].options().requires_grad(false)));
  }
  if (opts_.overlap_with_backward && comm_.world_size() > 1) {
    for (size_t i = 0; i < params_.size(); ++i) {
      std::shared_ptr<torch::autograd::Node> acc = torch::autograd::impl::grad_accumulator(params_[i]);
      acc->add_post_hook(std::make_unique<ReadyHook>(this, i));
      accumulators_.push_back(acc);
    }
  }
}

GradReducer::~GradReducer() {
  for (auto& w : in_flight_) {
    try {
      w();
    } catch (...) {
    }
  }
  for (auto& a : accumulators_) {
    auto* node = static_cast<torch::autograd::Node*>(a.get());
    for (const auto& h : node->post_hooks()) {
      if (auto* rh = dynamic_cast<ReadyHook*>(h.get())) rh->reducer = nullptr;
    }
  }
}

void GradReducer::prepare_for_backward() {
  if (accumulators_.empty()) return;
  pending_.assign(buckets_.size(), 0);
  for (size_t bi = 0; bi < buckets_.size(); ++bi) pending_[bi] = buckets_[bi].size();
  next_launch_ = 0;
  in_flight_.clear();
  armed_ = true;
}

void GradReducer::mark_ready(size_t i) {
  if (!armed_) return;
  size_t b = bucket_of_[i];
  if (pending_[b] > 0) --pending_[b];
  size_t before = next_launch_;
  launch_ready_buckets();
  started_in_backward_ += static_cast<int64_t>(next_launch_ - before);
}

void GradReducer::launch_ready_buckets() {
  // Bucket order, never ready order: every rank must issue the same collectives in the same order.
  while (next_launch_ < buckets_.size() && pending_[next_launch_] == 0) {
    pack(next_launch_);
    in_flight_.push_back(comm_.allreduce_async(flat_[next_launch_], comm::ReduceOp::kSum));
    ++next_launch_;
  }
}

void GradReducer::pack(size_t bi) {
  at::NoGradGuard no_grad;
  at::Tensor& flat = flat_[bi];
  int64_t off = 0;
  for (size_t i : buckets_[bi]) {
    const at::Tensor& p = params_[i];
    at::Tensor slice = flat.narrow(0, off, p.numel());
    const at::Tensor& g = p.grad();
    if (g.defined()) {
      slice.copy_(g.reshape({-1}));
    } else {
      slice.zero_();
    }
    off += p.numel();
  }
}

void GradReducer::broadcast_parameters(int root) {
  at::NoGradGuard no_grad;
  for (size_t bi = 0; bi < buckets_.size(); ++bi) {
    at::Tensor& flat = flat_[bi];
    int64_t off = 0;
    for (size_t i : buckets_[bi]) {
      const at::Tensor& p = params_[i];
      flat.narrow(0, off, p.numel()).copy_(p.detach().reshape({-1}));
      off += p.numel();
    }
    comm_.broadcast(flat, root);
    off = 0;
    for (size_t i : buckets_[bi]) {
      at::Tensor p = params_[i].detach();
      p.copy_(flat.narrow(0, off, p.numel()).view_as(p));
      off += p.numel();
    }
  }
}

void GradReducer::synchronize() {
  if (comm_.world_size() == 1) return;
  at::NoGradGuard no_grad;
  at::Tensor used;
  if (opts_.find_unused_parameters) {
    used = at::zeros({static_cast<int64_t>(params_.size())}, at::kFloat);
    auto acc = used.accessor<float, 1>();
    for (size_t i = 0; i < params_.size(); ++i) acc[i] = params_[i].grad().defined() ? 1.f : 0.f;
  }
  if (armed_) {
    // Overlap mode: buckets whose hooks never fired (unused parameters) go now, still in order.
    for (auto& p : pending_) p = 0;
    launch_ready_buckets();
    for (auto& w : in_flight_) w();
    in_flight_.clear();
    armed_ = false;
    if (used.defined()) comm_.allreduce(used, comm::ReduceOp::kSum);
  } else {
    for (size_t bi = 0; bi < buckets_.size(); ++bi) pack(bi);
    // Fixed bucket order on every rank (DDP's rule: ready order would differ between ranks).
    std::vector<at::Tensor> all = flat_;
    if (used.defined()) all.push_back(used);
    comm_.allreduce_many(all, comm::ReduceOp::kSum);
  }
  std::vector<float> used_by_any;
  if (used.defined()) used_by_any.assign(used.data_ptr<float>(), used.data_ptr<float>() + used.numel());
  const double inv = 1.0 / comm_.world_size();
  for (size_t bi = 0; bi < buckets_.size(); ++bi) {
    at::Tensor& flat = flat_[bi];
    if (at::isFloatingType(flat.scalar_type())) {
      flat.mul_(inv);
    } else {
      flat.div_(comm_.world_size(), "floor");
    }
    int64_t off = 0;
    for (size_t i : buckets_[bi]) {
      at::Tensor& p = params_[i];
      at::Tensor avg = flat.narrow(0, off, p.numel()).view(p.sizes());
      off += p.numel();
      if (!used_by_any.empty() && used_by_any[i] == 0.f) continue;
      if (p.grad().defined()) {
        p.mutable_grad().copy_(avg);
      } else {
        p.mutable_grad() = avg.clone();
      }
    }
  }
}

uint32_t tensor_checksum(const std::vector<at::Tensor>& tensors) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (const auto& t : tensors) {
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    const auto* bytes = static_cast<const Bytef*>(c.data_ptr());
    size_t n = c.numel() * c.element_size();
    while (n > 0) {
      uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
      crc = crc32(crc, bytes, chunk);
      bytes += chunk;
      n -= chunk;
    }
  }
  return static_cast<uint32_t>(crc);
}

void verify_parameters_consistent(comm::Communicator& comm, const std::vector<at::Tensor>& params) {
  if (comm.world_size() == 1) return;
  at::Tensor mine = at::full({1}, static_cast<int64_t>(tensor_checksum(params)), at::kLong);
  at::Tensor all = comm.allgather(mine).reshape({-1});
  auto acc = all.accessor<int64_t, 1>();
  std::ostringstream diff;
  int bad = 0;
  for (int r = 1; r < comm.world_size(); ++r) {
    if (acc[r] != acc[0]) {
      diff << (bad++ ? ", " : "") << "rank " << r << " crc " << std::hex << acc[r] << std::dec;
    }
  }
  if (bad) {
    std::ostringstream msg;
    msg << "parameters differ across ranks (rank 0 crc " << std::hex << acc[0] << std::dec << "; " << diff.str()
        << "): a rank skipped a gradient synchronisation or started from different weights";
    throw Error(msg.str());
  }
}

}  // namespace zsad::ddp
