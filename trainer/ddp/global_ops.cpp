#include "trainer/ddp/global_ops.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace zsad::ddp {

at::Tensor global_sum(comm::Communicator& comm, const at::Tensor& local) {
  at::Tensor t = local.detach().clone().contiguous();
  comm.allreduce(t, comm::ReduceOp::kSum);
  return t;
}

double global_count(comm::Communicator& comm, double local_count) {
  at::Tensor t = at::full({1}, local_count, at::kDouble);
  comm.allreduce(t, comm::ReduceOp::kSum);
  return t.item<double>();
}

namespace {

struct AllGatherWithGrad : public torch::autograd::Function<AllGatherWithGrad> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& local, int64_t comm_ptr) {
    auto* comm = reinterpret_cast<comm::Communicator*>(comm_ptr);
    ctx->saved_data["comm"] = comm_ptr;
    ctx->saved_data["n"] = local.size(0);
    at::Tensor all = comm->allgather(local.detach());
    return all.flatten(0, 1);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* comm = reinterpret_cast<comm::Communicator*>(ctx->saved_data["comm"].toInt());
    const int64_t n = ctx->saved_data["n"].toInt();
    at::Tensor g = grads[0].contiguous().clone();
    comm->allreduce(g, comm::ReduceOp::kSum);
    return {g.narrow(0, comm->rank() * n, n), at::Tensor()};
  }
};

}  // namespace

at::Tensor all_gather_with_grad(comm::Communicator& comm, const at::Tensor& local) {
  return AllGatherWithGrad::apply(local, reinterpret_cast<int64_t>(&comm));
}

}  // namespace zsad::ddp
