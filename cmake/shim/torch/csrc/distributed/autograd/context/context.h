#pragma once
// Debian's libtorch-dev omits this header, which c10d/reducer.hpp includes. The reducer only
// holds a pointer to the context, so this declaration is all it needs (toolchain notes §2).
#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace torch {
namespace distributed {
namespace autograd {
class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};
using ContextPtr = std::shared_ptr<DistAutogradContext>;
}  // namespace autograd
}  // namespace distributed
}  // namespace torch
