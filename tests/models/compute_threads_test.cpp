// set_compute_threads reaches both pools: LibTorch's intra-op threads and OpenBLAS's own pool,
// whose count at::set_num_threads leaves alone. The README's install step provides OpenBLAS
// (libopenblas0-pthread), so its absence is a failure here, not a skip.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "models/clip/compute_threads.h"

namespace zsad::models {
namespace {

TEST(ComputeThreads, SetsLibTorchAndOpenBlasThreads) {
  ASSERT_GT(blas_threads(), 0) << "the process's BLAS is not OpenBLAS (install libopenblas0-pthread)";
  for (int n : {2, 1, 3}) {
    set_compute_threads(n);
    EXPECT_EQ(at::get_num_threads(), n);
    EXPECT_EQ(blas_threads(), n);
  }
  at::set_num_threads(1);  // LibTorch alone: OpenBLAS keeps its count
  EXPECT_EQ(blas_threads(), 3);
  set_compute_threads(0);  // below 1 means 1
  EXPECT_EQ(at::get_num_threads(), 1);
  EXPECT_EQ(blas_threads(), 1);
}

}  // namespace
}  // namespace zsad::models
