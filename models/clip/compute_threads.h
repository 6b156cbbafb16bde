#pragma once
// Thread counts of the two pools that run a rank's arithmetic: LibTorch's intra-op (OpenMP) pool
// and OpenBLAS's own pthread pool. OpenBLAS reads OMP_NUM_THREADS only when it loads, and
// at::set_num_threads does not reach it, so without this a rank started by the user's own srun or
// mpirun (no OMP_NUM_THREADS) multiplies with every core while a `zsad launch` rank (which sets
// OMP_NUM_THREADS=1) does not, and their sums round differently.

namespace zsad::models {

// at::set_num_threads(n) and, when the BLAS in the process is OpenBLAS, openblas_set_num_threads(n).
void set_compute_threads(int n);

// OpenBLAS's thread count, or 0 when the BLAS is not OpenBLAS (found at run time, so any BLAS links).
int blas_threads();
// Sets it; a no-op for another BLAS.
void set_blas_threads(int n);

}  // namespace zsad::models
