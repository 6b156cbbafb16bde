#pragma once
// Thread counts of the two pools that run a rank's arithmetic: LibTorch's intra-op (OpenMP) pool
// and OpenBLAS's own pthread pool. OpenBLAS reads OMP_NUM_THREADS only when it loads, and
// at::set_num_threads does not reach it, so without this a rank started by the user's own srun or
// mpirun (no OMP_NUM_THREADS) multiplies with every core while a `zsad launch` rank (which sets
// OMP_NUM_THREADS) does not, and their sums round differently.

#include <cstdint>
#include <functional>

namespace zsad::models {

// at::set_num_threads(n) and, when the BLAS in the process is OpenBLAS, openblas_set_num_threads(n).
void set_compute_threads(int n);

// The thread count for `trainer.threads` = configured: n > 0 as given; 0 (the default) = auto:
// OMP_NUM_THREADS when set (zsad launch and the SLURM job script set it per rank), else
// SLURM_CPUS_PER_TASK, else `cpus` divided by the ranks on this node (LOCAL_WORLD_SIZE,
// OMPI_COMM_WORLD_LOCAL_SIZE; 1 when neither is set), at least 1. Negative: zsad::Error naming the key.
// At most 4096. A launcher that binds each rank to its own cores (mpirun --bind-to core) leaves
// `cpus` already this rank's share; it is divided anyway (the mask cannot tell whether other ranks
// share it, as under --bind-to socket): a bound rank may get fewer threads than cores, never more.
int resolve_compute_threads(int64_t configured, const std::function<const char*(const char*)>& getenv_fn, int cpus);
// The CPUs this process may run on (its affinity mask: taskset, cgroups, SLURM binding).
int process_cpus();
// resolve_compute_threads with the process environment and process_cpus().
int resolve_compute_threads(int64_t configured);
// resolve_compute_threads(configured), then set_compute_threads; returns the count.
int apply_compute_threads(int64_t configured);

// OpenBLAS's thread count, or 0 when the BLAS is not OpenBLAS (found at run time, so any BLAS links).
int blas_threads();
// Sets it; a no-op for another BLAS.
void set_blas_threads(int n);

}  // namespace zsad::models
