#include "models/clip/compute_threads.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#include "common/error.h"

namespace zsad::models {
namespace {

using SetFn = void (*)(int);
using GetFn = int (*)();

SetFn openblas_set() {
  static const auto fn = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  return fn;
}
GetFn openblas_get() {
  static const auto fn = reinterpret_cast<GetFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return fn;
}

}  // namespace

int blas_threads() {
  const GetFn get = openblas_get();
  return get ? get() : 0;
}

void set_blas_threads(int n) {
  if (const SetFn set = openblas_set()) set(std::max(1, n));
}

void set_compute_threads(int n) {
  n = std::max(1, n);
  at::set_num_threads(n);
  set_blas_threads(n);
}

int resolve_compute_threads(int64_t configured, const std::function<const char*(const char*)>& getenv_fn, int cpus) {
  constexpr long kMaxThreads = 4096;
  if (configured < 0) {
    throw Error("trainer.threads: expected a thread count >= 1, or 0 for all of this rank's cores; got " +
                std::to_string(configured));
  }
  if (configured > 0) return static_cast<int>(std::min<int64_t>(configured, kMaxThreads));
  // A positive integer from the environment, or 0 when unset or not one (then the next rule applies).
  auto positive = [&](const char* name) -> int {
    const char* v = getenv_fn(name);
    if (!v || !*v) return 0;
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    return end != v && n > 0 ? static_cast<int>(std::min(n, kMaxThreads)) : 0;
  };
  if (int n = positive("OMP_NUM_THREADS")) return n;
  if (int n = positive("SLURM_CPUS_PER_TASK")) return n;
  int local_ranks = positive("LOCAL_WORLD_SIZE");
  if (!local_ranks) local_ranks = positive("OMPI_COMM_WORLD_LOCAL_SIZE");
  return std::max(1, cpus / std::max(1, local_ranks));
}

int process_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

int resolve_compute_threads(int64_t configured) {
  return resolve_compute_threads(configured, [](const char* k) { return std::getenv(k); }, process_cpus());
}

int apply_compute_threads(int64_t configured) {
  const int n = resolve_compute_threads(configured);
  set_compute_threads(n);
  return n;
}

}  // namespace zsad::models
