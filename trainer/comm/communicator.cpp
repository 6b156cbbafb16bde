#include "trainer/comm/communicator.h"

#include <ATen/ATen.h>

#include "trainer/dist/rank_monitor.h"

namespace zsad::comm {

Backend parse_backend(const std::string& name) {
  if (name == "auto") return Backend::kAuto;
  if (name == "gloo") return Backend::kGloo;
  if (name == "mpi") return Backend::kMpi;
  if (name == "nccl") return Backend::kNccl;
  if (name == "local") return Backend::kLocal;
  throw Error("communicator backend '" + name + "': expected one of auto, gloo, mpi, nccl, local");
}

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::kAuto: return "auto";
    case Backend::kGloo: return "gloo";
    case Backend::kMpi: return "mpi";
    case Backend::kNccl: return "nccl";
    case Backend::kLocal: return "local";
  }
  return "unknown";
}

// The only place that knows what CMake compiled (trainer/CMakeLists.txt sets these).
bool backend_available(Backend b) {
  switch (b) {
#ifdef ZSAD_WITH_MPI
    case Backend::kMpi: return true;
#else
    case Backend::kMpi: return false;
#endif
#ifdef ZSAD_WITH_NCCL
    case Backend::kNccl: return true;
#else
    case Backend::kNccl: return false;
#endif
    default: return true;
  }
}

#ifndef ZSAD_WITH_MPI
std::unique_ptr<Communicator> make_mpi_communicator(const CommOptions&, std::shared_ptr<dist::RankMonitor>) {
  throw Error("communicator backend 'mpi': this build has no MPI (OpenMPI was not found by CMake)");
}
#endif
#ifndef ZSAD_WITH_NCCL
std::unique_ptr<Communicator> make_nccl_communicator(const CommOptions&, dist::StorePtr, int, int,
                                                     std::shared_ptr<dist::RankMonitor>) {
  throw Error("communicator backend 'nccl': this build has no NCCL (no CUDA toolkit with nccl.h was found)");
}
int visible_cuda_devices() { return 0; }
#endif

std::function<void()> Communicator::allreduce_async(at::Tensor& t, ReduceOp op) {
  allreduce(t, op);
  return [] {};
}

void Communicator::allreduce_many(std::vector<at::Tensor>& ts, ReduceOp op) {
  for (auto& t : ts) allreduce(t, op);
}

namespace {

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  const char* backend() const override { return "local"; }
  void allreduce(at::Tensor&, ReduceOp) override {}
  void broadcast(at::Tensor&, int) override {}
  at::Tensor allgather(const at::Tensor& t) override { return t.unsqueeze(0).clone(); }
  void barrier() override {}
};

}  // namespace

std::unique_ptr<Communicator> make_local_communicator() { return std::make_unique<LocalCommunicator>(); }

std::unique_ptr<Communicator> make_communicator(const CommOptions& o, dist::StorePtr store, int rank, int world_size,
                                                std::shared_ptr<dist::RankMonitor> monitor) {
  Backend b = o.backend;
  if (b == Backend::kAuto) {
    b = (o.cuda_tensors && backend_available(Backend::kNccl)) ? Backend::kNccl : Backend::kGloo;
  }
  if (b == Backend::kMpi) return make_mpi_communicator(o, monitor);
  if (world_size == 1 || b == Backend::kLocal) {
    if (world_size != 1) throw Error("communicator backend 'local' needs world size 1, got " + std::to_string(world_size));
    return make_local_communicator();
  }
  if (!store) throw Error(std::string("communicator backend '") + backend_name(b) + "' needs a rendezvous store");
  if (b == Backend::kNccl) return make_nccl_communicator(o, store, rank, world_size, monitor);
  return make_gloo_communicator(o, store, rank, world_size, monitor);
}

}  // namespace zsad::comm
