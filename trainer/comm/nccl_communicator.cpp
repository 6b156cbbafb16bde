// nccl backend: the raw NCCL API on device buffers, one communicator per process on the device
// chosen from the local rank. The ncclUniqueId travels through the rendezvous store
// (unique_id_exchange.h). Host tensors are staged through a device buffer, so the backend also
// serves a CPU LibTorch on a GPU machine. Compiled whenever CMake finds nccl.h + cudart; it has
// never run on a GPU here (docs/distributed.md).
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>
#include <thread>

#include <ATen/ATen.h>

#include "trainer/comm/communicator.h"
#include "trainer/comm/unique_id_exchange.h"
#include "trainer/dist/env.h"
#include "trainer/dist/rank_monitor.h"

namespace zsad::comm {

namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw CommError(std::string("nccl: ") + what + ": " + cudaGetErrorString(e));
}
void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw CommError(std::string("nccl: ") + what + ": " + ncclGetErrorString(r));
}

ncclDataType_t nccl_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte: return ncclUint8;
    case at::kChar: return ncclInt8;
    default: throw CommError(std::string("nccl: dtype ") + std::string(t.dtype().name()) + " is not supported");
  }
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const CommOptions& o, dist::StorePtr store, int rank, int world,
                   std::shared_ptr<dist::RankMonitor> monitor)
      : rank_(rank), world_(world), monitor_(std::move(monitor)) {
    timeout_ = o.timeout;
    int visible = 0;
    if (cudaGetDeviceCount(&visible) != cudaSuccess || visible == 0) {
      throw CommError("nccl: rank " + std::to_string(rank) + " sees no CUDA device (use backend gloo on CPU)");
    }
    device_ = dist::cuda_device_for(o.cuda_device >= 0 ? o.cuda_device : 0, visible);
    check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    auto bytes = exchange_unique_id(
        *store, rank, "zsad/nccl/unique_id",
        [] {
          ncclUniqueId id;
          check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
          return std::vector<uint8_t>(reinterpret_cast<uint8_t*>(&id), reinterpret_cast<uint8_t*>(&id) + sizeof id);
        },
        o.timeout);
    ncclUniqueId id;
    if (bytes.size() != sizeof id) throw CommError("nccl: unique id from the store has the wrong size");
    std::memcpy(&id, bytes.data(), sizeof id);
    check_nccl(ncclCommInitRank(&comm_, world, id, rank), "ncclCommInitRank");
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  ~NcclCommunicator() override {
    if (staging_) cudaFree(staging_);
    if (stream_) cudaStreamDestroy(stream_);
    if (comm_) ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  const char* backend() const override { return "nccl"; }

  void allreduce(at::Tensor& t, ReduceOp op) override {
    with_device(t, [&](void* buf) {
      check_nccl(ncclAllReduce(buf, buf, t.numel(), nccl_type(t), op == ReduceOp::kSum ? ncclSum : ncclMax, comm_,
                               stream_),
                 "ncclAllReduce");
    }, "allreduce");
  }
  void broadcast(at::Tensor& t, int root) override {
    with_device(t, [&](void* buf) {
      check_nccl(ncclBroadcast(buf, buf, t.numel(), nccl_type(t), root, comm_, stream_), "ncclBroadcast");
    }, "broadcast");
  }
  at::Tensor allgather(const at::Tensor& t) override {
    at::Tensor in = t.contiguous();
    std::vector<int64_t> shape{world_};
    shape.insert(shape.end(), in.sizes().begin(), in.sizes().end());
    at::Tensor out = at::empty(shape, in.options());
    // Gather into [world, n] then place our own slice first: stage both through one device buffer.
    at::Tensor flat = at::zeros({world_ * in.numel()}, in.options());
    flat.narrow(0, rank_ * in.numel(), in.numel()).copy_(in.reshape({-1}));
    const size_t n = in.numel();
    with_device(flat, [&](void* buf) {
      char* base = static_cast<char*>(buf);
      check_nccl(ncclAllGather(base + rank_ * n * in.element_size(), base, n, nccl_type(in), comm_, stream_),
                 "ncclAllGather");
    }, "allgather");
    return flat.view(shape);
  }
  void barrier() override {
    at::Tensor one = at::ones({1}, at::kFloat);
    allreduce(one, ReduceOp::kSum);
  }

 private:
  template <typename F>
  void with_device(at::Tensor& t, F&& launch, const char* op) {
    if (!t.is_contiguous()) throw CommError("nccl: collectives need contiguous tensors");
    const size_t bytes = t.numel() * t.element_size();
    uint64_t seq = monitor_ ? monitor_->begin(op, timeout_ + std::chrono::seconds(5)) : 0;
    void* buf = t.data_ptr();
    if (!t.is_cuda()) {
      if (bytes > staging_bytes_) {
        if (staging_) cudaFree(staging_);
        check_cuda(cudaMalloc(&staging_, bytes), "cudaMalloc");
        staging_bytes_ = bytes;
      }
      check_cuda(cudaMemcpyAsync(staging_, t.data_ptr(), bytes, cudaMemcpyHostToDevice, stream_), "H2D copy");
      buf = staging_;
    }
    launch(buf);
    if (!t.is_cuda()) check_cuda(cudaMemcpyAsync(t.data_ptr(), buf, bytes, cudaMemcpyDeviceToHost, stream_), "D2H copy");
    // NCCL has no timeout of its own: poll the stream and abort the communicator at the deadline.
    auto deadline = std::chrono::steady_clock::now() + timeout_;
    while (true) {
      cudaError_t q = cudaStreamQuery(stream_);
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) check_cuda(q, op);
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess || std::chrono::steady_clock::now() > deadline) {
        ncclCommAbort(comm_);
        comm_ = nullptr;
        if (monitor_) monitor_->end();
        std::string why = monitor_ ? monitor_->diagnose() : "no rank monitor";
        throw CommError("nccl: rank " + std::to_string(rank_) + " " + op + " #" + std::to_string(seq) +
                        (async != ncclSuccess ? std::string(" failed: ") + ncclGetErrorString(async)
                                              : std::string(" timed out")) + "; " + why);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    if (monitor_) monitor_->end();
  }

  int rank_;
  int world_;
  int device_ = 0;
  std::shared_ptr<dist::RankMonitor> monitor_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* staging_ = nullptr;
  size_t staging_bytes_ = 0;
};

}  // namespace

int visible_cuda_devices() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

std::unique_ptr<Communicator> make_nccl_communicator(const CommOptions& o, dist::StorePtr store, int rank,
                                                     int world_size, std::shared_ptr<dist::RankMonitor> monitor) {
  return std::make_unique<NcclCommunicator>(o, std::move(store), rank, world_size, std::move(monitor));
}

}  // namespace zsad::comm
