// mpi backend: the OpenMPI C API (MPI_Allreduce & co.) on host memory. Compiled only when CMake
// finds MPI. OpenMPI's default allreduce choice was measured 5x slower than its ring algorithm on
// 40 MB buffers (toolchain.md §3), so ring is selected through the MCA environment before
// MPI_Init unless the user already chose an algorithm.
#include <cstdlib>
// The C API only; OpenMPI would otherwise pull in its deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <ATen/ATen.h>

#include "trainer/comm/communicator.h"
#include "trainer/dist/rank_monitor.h"

namespace zsad::comm {

namespace {

MPI_Datatype mpi_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    case at::kByte: return MPI_UINT8_T;
    case at::kChar: return MPI_INT8_T;
    default: throw CommError(std::string("mpi: dtype ") + std::string(t.dtype().name()) + " is not supported");
  }
}

void check(int rc, const char* op) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw CommError(std::string("mpi: ") + op + " failed: " + std::string(msg, len));
}

int count_of(const at::Tensor& t) {
  if (!t.is_contiguous() || t.is_cuda()) throw CommError("mpi: collectives need contiguous host tensors");
  if (t.numel() > INT32_MAX) throw CommError("mpi: tensor with " + std::to_string(t.numel()) + " elements exceeds MPI's int count");
  return static_cast<int>(t.numel());
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(const CommOptions& o, std::shared_ptr<dist::RankMonitor> monitor) : monitor_(std::move(monitor)) {
    timeout_ = o.timeout;
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      if (!std::getenv("OMPI_MCA_coll_tuned_allreduce_algorithm")) {
        setenv("OMPI_MCA_coll_tuned_use_dynamic_rules", "1", 0);
        setenv("OMPI_MCA_coll_tuned_allreduce_algorithm", "4", 0);  // ring
      }
      int provided = 0;
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      owns_init_ = true;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_init_ && !finalized) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  const char* backend() const override { return "mpi"; }

  void allreduce(at::Tensor& t, ReduceOp op) override {
    int n = count_of(t);
    run("allreduce", [&] {
      check(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), n, mpi_type(t), op == ReduceOp::kSum ? MPI_SUM : MPI_MAX,
                          MPI_COMM_WORLD),
            "MPI_Allreduce");
    });
  }
  std::function<void()> allreduce_async(at::Tensor& t, ReduceOp op) override {
    int n = count_of(t);
    auto req = std::make_shared<MPI_Request>();
    run("allreduce", [&] {
      check(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), n, mpi_type(t), op == ReduceOp::kSum ? MPI_SUM : MPI_MAX,
                           MPI_COMM_WORLD, req.get()),
            "MPI_Iallreduce");
    });
    return [this, req] { run("allreduce (async)", [&] { check(MPI_Wait(req.get(), MPI_STATUS_IGNORE), "MPI_Wait"); }); };
  }

  void broadcast(at::Tensor& t, int root) override {
    int n = count_of(t);
    run("broadcast", [&] { check(MPI_Bcast(t.data_ptr(), n, mpi_type(t), root, MPI_COMM_WORLD), "MPI_Bcast"); });
  }
  at::Tensor allgather(const at::Tensor& t) override {
    at::Tensor in = t.contiguous();
    int n = count_of(in);
    std::vector<int64_t> shape{world_};
    shape.insert(shape.end(), in.sizes().begin(), in.sizes().end());
    at::Tensor out = at::empty(shape, in.options());
    run("allgather", [&] {
      check(MPI_Allgather(in.data_ptr(), n, mpi_type(in), out.data_ptr(), n, mpi_type(in), MPI_COMM_WORLD),
            "MPI_Allgather");
    });
    return out;
  }
  void barrier() override {
    run("barrier", [&] { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); });
  }

 private:
  template <typename F>
  void run(const char* op, F&& f) {
    // An MPI call cannot be interrupted: the monitor's watchdog ends the process at the deadline.
    if (monitor_) monitor_->begin(op, timeout_);
    try {
      f();
    } catch (...) {
      if (monitor_) monitor_->end();
      throw;
    }
    if (monitor_) monitor_->end();
  }

  std::shared_ptr<dist::RankMonitor> monitor_;
  int rank_ = 0;
  int world_ = 1;
  bool owns_init_ = false;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(const CommOptions& o, std::shared_ptr<dist::RankMonitor> monitor) {
  return std::make_unique<MpiCommunicator>(o, std::move(monitor));
}

}  // namespace zsad::comm
