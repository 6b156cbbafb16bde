#pragma once
// The communicator: the handful of collectives the trainer needs, one interface, one .cpp per
// backend (gloo_communicator.cpp, mpi_communicator.cpp, nccl_communicator.cpp; CMake decides which
// are compiled). Every rank must issue the same collectives in the same order with tensors of the
// same shape and dtype. A collective that fails or exceeds its timeout throws CommError naming the
// missing rank (see dist/rank_monitor.h); with MPI/NCCL, which cannot be interrupted, the watchdog
// prints that message and ends the process instead.
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "common/error.h"
#include "trainer/dist/store.h"

namespace zsad::dist {
class RankMonitor;
}

namespace zsad::comm {

enum class ReduceOp { kSum, kMax };

// kAuto: nccl when the tensors live on a CUDA device and NCCL was built, gloo otherwise.
// kLocal: world size 1, every collective is the identity.
enum class Backend { kAuto, kGloo, kMpi, kNccl, kLocal };
Backend parse_backend(const std::string& name);  // "auto" | "gloo" | "mpi" | "nccl" | "local"
const char* backend_name(Backend b);
bool backend_available(Backend b);               // compiled into this build
int visible_cuda_devices();                      // 0 without NCCL/CUDA in this build or without a GPU

class CommError : public Error {
 public:
  explicit CommError(const std::string& what) : Error(what) {}
};

struct CommOptions {
  Backend backend = Backend::kAuto;
  bool cuda_tensors = false;                         // resolves kAuto
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};  // per collective
  std::string gloo_hostname;                         // address gloo binds to; empty = this host's name
  int gloo_threads = 2;
  int cuda_device = -1;                              // nccl: device of this rank (dist::cuda_device_for)
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual const char* backend() const = 0;
  std::chrono::milliseconds timeout() const { return timeout_; }

  // In place; every rank ends with the same bytes.
  virtual void allreduce(at::Tensor& t, ReduceOp op = ReduceOp::kSum) = 0;
  // Several tensors, issued together so that a backend can overlap them (gradient buckets).
  virtual void allreduce_many(std::vector<at::Tensor>& ts, ReduceOp op = ReduceOp::kSum);
  // Starts an in-place allreduce and returns the function that waits for it (and throws its
  // error). `t` must stay alive until then. Default: completes synchronously.
  virtual std::function<void()> allreduce_async(at::Tensor& t, ReduceOp op = ReduceOp::kSum);
  virtual void broadcast(at::Tensor& t, int root = 0) = 0;
  // Returns [world_size, *t.sizes()] with rank r's tensor at index r.
  virtual at::Tensor allgather(const at::Tensor& t) = 0;
  virtual void barrier() = 0;

 protected:
  std::chrono::milliseconds timeout_{std::chrono::seconds(60)};
};

// Builds the backend chosen by `o.backend`. `store` carries the rendezvous (gloo connects through it,
// nccl exchanges its unique id through it); `monitor` names missing ranks on failure (may be null).
// Throws zsad::Error when the backend is not compiled into this build.
std::unique_ptr<Communicator> make_communicator(const CommOptions& o, dist::StorePtr store, int rank, int world_size,
                                                std::shared_ptr<dist::RankMonitor> monitor);

// Per-backend constructors (one .cpp each).
std::unique_ptr<Communicator> make_local_communicator();
std::unique_ptr<Communicator> make_gloo_communicator(const CommOptions& o, dist::StorePtr store, int rank,
                                                     int world_size, std::shared_ptr<dist::RankMonitor> monitor);
std::unique_ptr<Communicator> make_mpi_communicator(const CommOptions& o, std::shared_ptr<dist::RankMonitor> monitor);
std::unique_ptr<Communicator> make_nccl_communicator(const CommOptions& o, dist::StorePtr store, int rank,
                                                     int world_size, std::shared_ptr<dist::RankMonitor> monitor);

}  // namespace zsad::comm
