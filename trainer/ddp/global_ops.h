#pragma once
// Batch-wide normalisers for losses, so that a method's loss does not depend on how many ranks
// share the global batch (DESIGN.md §4): a masked mean divides by the global mask count, an
// all-pairs term sees every rank's embeddings.
#include <ATen/core/Tensor.h>

#include "trainer/comm/communicator.h"

namespace zsad::ddp {

// Sum of `local` over ranks, detached (a normaliser is a constant for autograd).
at::Tensor global_sum(comm::Communicator& comm, const at::Tensor& local);

// Sum of a per-rank count over ranks (e.g. the number of valid pixels in the global batch).
double global_count(comm::Communicator& comm, double local_count);

// Concatenates every rank's `local` along dim 0 (rank order); gradients flow back to this rank's
// slice. Backward sums the incoming gradient over ranks (torch.distributed.nn.all_gather), which,
// combined with the reducer's averaging, gives exactly the single-process gradient of a loss that
// every rank computes over the gathered batch. Every rank must pass the same shape.
at::Tensor all_gather_with_grad(comm::Communicator& comm, const at::Tensor& local);

}  // namespace zsad::ddp
