// set_compute_threads reaches both pools: LibTorch's intra-op threads and OpenBLAS's own pool,
// whose count at::set_num_threads leaves alone. The README's install step provides OpenBLAS
// (libopenblas0-pthread), so its absence is a failure here, not a skip.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <sched.h>

#include <map>
#include <string>

#include "common/error.h"
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

namespace zsad::models {
namespace {

int resolve(int64_t configured, std::map<std::string, std::string> env, int cpus) {
  return resolve_compute_threads(
      configured, [&](const char* k) { auto it = env.find(k); return it == env.end() ? nullptr : it->second.c_str(); },
      cpus);
}

TEST(ComputeThreads, ConfiguredCountWins) {
  EXPECT_EQ(resolve(3, {{"OMP_NUM_THREADS", "1"}, {"SLURM_CPUS_PER_TASK", "8"}}, 16), 3);
}

TEST(ComputeThreads, AutoReadsTheLaunchersChoiceThenSharesTheCores) {
  EXPECT_EQ(resolve(0, {}, 16), 16);                                                     // one process: all cores
  EXPECT_EQ(resolve(0, {{"OMP_NUM_THREADS", "2"}, {"SLURM_CPUS_PER_TASK", "8"}}, 16), 2);  // zsad launch, SLURM script
  EXPECT_EQ(resolve(0, {{"SLURM_CPUS_PER_TASK", "8"}, {"LOCAL_WORLD_SIZE", "4"}}, 16), 8);  // srun --cpus-per-task
  EXPECT_EQ(resolve(0, {{"LOCAL_WORLD_SIZE", "4"}}, 16), 4);                             // torchrun without OMP_NUM_THREADS
  EXPECT_EQ(resolve(0, {{"OMPI_COMM_WORLD_LOCAL_SIZE", "3"}}, 16), 5);                   // mpirun: 16 / 3
  EXPECT_EQ(resolve(0, {{"LOCAL_WORLD_SIZE", "8"}}, 2), 1);                              // more ranks than cores
  EXPECT_EQ(resolve(0, {{"OMP_NUM_THREADS", ""}, {"LOCAL_WORLD_SIZE", "x"}}, 6), 6);     // unusable values are skipped
}

TEST(ComputeThreads, NegativeCountNamesTheKey) {
  try {
    resolve(-2, {}, 4);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("trainer.threads"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("-2"), std::string::npos) << e.what();
  }
}

TEST(ComputeThreads, ProcessCpusIsTheAffinityMask) {
  cpu_set_t all;
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  EXPECT_EQ(process_cpus(), CPU_COUNT(&all));
  int first = 0;
  while (!CPU_ISSET(first, &all)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);  // as taskset -c <first> would
  EXPECT_EQ(process_cpus(), 1);
  ASSERT_EQ(sched_setaffinity(0, sizeof(all), &all), 0);
  EXPECT_EQ(resolve(0, {}, process_cpus()), CPU_COUNT(&all));
}

}  // namespace
}  // namespace zsad::models
