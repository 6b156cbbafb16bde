#include "models/clip/compute_threads.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <algorithm>

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

}  // namespace zsad::models
