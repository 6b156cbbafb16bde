#pragma once
// Batch-spanning normalisers under data parallelism. Every CoPS loss whose value depends on the
// whole batch (masked means, batch means, the all-pairs reconstruction term) is computed as
//   value    = sum over all ranks of the local sums / global count
//   gradient = grad_scale * d(local sum)/d(params) / global count,
// so that after the trainer's gradient averaging (÷ world size, hence grad_scale = world size) the
// update equals that of one process holding the whole global batch. Without hooks (the default)
// every term reduces to the plain local expression of the reference code.
#include <functional>

#include <ATen/core/Tensor.h>

namespace zsad::models::cops {

struct GlobalReduction {
  // Element-wise sum over ranks (allreduce). Receives a detached tensor, returns a new one.
  std::function<at::Tensor(const at::Tensor&)> sum;
  // Concatenation along dim 0 in rank order; ranks may hold different dim-0 sizes (the last,
  // partial batch). Only used on frozen inputs (the global features g), so no gradient flows.
  std::function<at::Tensor(const at::Tensor&)> gather;
  // Multiplier of each loss's gradient: the world size when the trainer averages gradients,
  // 1 when it sums them.
  double grad_scale = 1.0;

  bool active() const { return static_cast<bool>(sum); }
};

// sum_local / count_global with the value/gradient convention above; `count_local` is a plain
// number of elements (reduced across ranks when the hook is active). Returns 0 if the global
// count is 0 and `zero_if_empty`, otherwise the division proceeds (NaN, like torch's empty mean).
at::Tensor global_mean(const at::Tensor& sum_local, double count_local, const GlobalReduction& red,
                       bool zero_if_empty = false);

}  // namespace zsad::models::cops
