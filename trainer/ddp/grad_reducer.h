#pragma once
// Data-parallel gradient synchronisation (PyTorch DDP semantics, platform.md §3.1): rank 0's
// parameters are broadcast at start; after backward, gradients are flattened into size-capped
// buckets (reverse parameter order, one set of buckets per dtype), all-reduced in bucket order and
// averaged over ranks. The training loop calls synchronize() once per optimizer step and never sees
// a bucket. Gradient accumulation = not calling synchronize() on intermediate micro-steps.
//
// With overlap_with_backward, a post-hook on every parameter's gradient accumulator packs a
// bucket as soon as its last gradient is accumulated and starts its allreduce asynchronously (in
// bucket order, as DDP does), so communication runs while backward continues. It is off by
// default: on the 2-core CPU machines this is built on, backward and gloo compete for the same
// cores (docs/benchmarks.md measures both).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "trainer/comm/communicator.h"

namespace zsad::ddp {

struct BucketOptions {
  int64_t bucket_cap_bytes = 25ll << 20;       // PyTorch kDefaultBucketBytesCap
  int64_t first_bucket_cap_bytes = 1ll << 20;  // PyTorch kDefaultFirstBucketBytes
  // false: a parameter whose gradient is undefined on a rank contributes zeros and receives the
  // average like any other. true: additionally all-reduce a usage mask and leave gradients that are
  // undefined on every rank undefined (the optimizer then skips them, as after a local backward).
  bool find_unused_parameters = false;
  // Start bucket allreduces from autograd hooks during backward (after prepare_for_backward()).
  bool overlap_with_backward = false;
};

// Bucket assignment: indices into `params`, visited in reverse order, grouped by dtype and device;
// a bucket closes after the tensor that reaches its cap (the first bucket of each group uses
// first_cap), so a tensor larger than the cap gets a bucket of its own. Pure function.
std::vector<std::vector<size_t>> assign_buckets(const std::vector<at::Tensor>& params, int64_t cap,
                                                int64_t first_cap);

class GradReducer {
 public:
  // Keeps the parameters that require grad; the others are never synchronised.
  GradReducer(comm::Communicator& comm, const std::vector<at::Tensor>& params, BucketOptions o = {});

  // Copies `root`'s parameter values to every rank (call once before training).
  void broadcast_parameters(int root = 0);

  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // Call before the backward whose gradients synchronize() will average (with gradient
  // accumulation: only the last micro-step). Arms the overlap hooks; a no-op without overlap.
  void prepare_for_backward();

  // After backward: p.grad() holds the mean over ranks of the local gradients.
  void synchronize();

  // Hook entry point (overlap mode): parameter i's gradient is final for this backward.
  void mark_ready(size_t param_index);

  const std::vector<std::vector<size_t>>& buckets() const { return buckets_; }
  const std::vector<at::Tensor>& parameters() const { return params_; }
  // Buckets whose allreduce started from a hook, before synchronize() (overlap mode; tests).
  int64_t buckets_started_in_backward() const { return started_in_backward_; }

 private:
  comm::Communicator& comm_;
  BucketOptions opts_;
  std::vector<at::Tensor> params_;
  std::vector<std::vector<size_t>> buckets_;
  std::vector<at::Tensor> flat_;  // one buffer per bucket
  void pack(size_t bucket);
  void launch_ready_buckets();

  // Overlap state.
  std::vector<std::shared_ptr<void>> accumulators_;   // keeps the hooked grad accumulators alive
  std::vector<size_t> bucket_of_;                      // param -> bucket
  std::vector<size_t> pending_;                        // per bucket: params not yet ready
  size_t next_launch_ = 0;
  bool armed_ = false;
  int64_t started_in_backward_ = 0;
  std::vector<std::function<void()>> in_flight_;
};

// CRC-32 over the bytes of every tensor, in order: equal on two ranks iff the values are
// bit-identical (up to CRC collisions).
uint32_t tensor_checksum(const std::vector<at::Tensor>& tensors);

// All-gathers tensor_checksum(params) and throws zsad::Error naming the ranks whose parameters
// differ from rank 0's. Cheap enough to run at every checkpoint.
void verify_parameters_consistent(comm::Communicator& comm, const std::vector<at::Tensor>& params);

}  // namespace zsad::ddp
