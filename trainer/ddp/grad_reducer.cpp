#include "trainer/ddp/grad_reducer.h"

#include <map>
#include <sstream>
#include <tuple>

#include <ATen/ATen.h>
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

GradReducer::GradReducer(comm::Communicator& comm, const std::vector<at::Tensor>& params, BucketOptions o)
    : comm_(comm), opts_(o) {
  for (const auto& p : params) {
    if (p.requires_grad()) params_.push_back(p);
  }
  buckets_ = assign_buckets(params_, opts_.bucket_cap_bytes, opts_.first_bucket_cap_bytes);
  for (const auto& b : buckets_) {
    int64_t n = 0;
    for (size_t i : b) n += params_[i].numel();
    flat_.push_back(at::zeros({n}, params_[b.front()].options().requires_grad(false)));
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
  for (size_t bi = 0; bi < buckets_.size(); ++bi) {
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
  // Fixed bucket order on every rank (DDP's rule: ready order would differ between ranks).
  std::vector<at::Tensor> all = flat_;
  if (used.defined()) all.push_back(used);
  comm_.allreduce_many(all, comm::ReduceOp::kSum);
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
