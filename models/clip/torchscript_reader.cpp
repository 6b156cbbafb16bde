// TorchScript archives (OpenAI's released CLIP .pt files): parameters and buffers by name.
// OpenAI's files tag their storages cuda:0 and hold fp16; loading with an explicit CPU device
// works on CPU-only LibTorch (plain torch::jit::load fails, shared/specs/toolchain.md §5).
// The archive is used only as a weight container: dtypes are kept as stored.
#include <torch/script.h>

#include "common/error.h"
#include "models/clip/weights.h"
#include "models/clip/weights_internal.h"

namespace zsad::models {

StateDict read_torchscript_weights(const std::string& path) {
  const unsigned long long size = weights_detail::file_size_checked(path);
  if (size == 0) weights_detail::fail(path, "empty file (expected a TorchScript archive)");
  std::string jit_error;
  try {
    torch::jit::Module m = torch::jit::load(path, at::Device(at::kCPU));
    StateDict out;
    for (const auto& p : m.named_parameters(/*recurse=*/true)) out[p.name] = p.value.detach();
    for (const auto& b : m.named_buffers(/*recurse=*/true)) out[b.name] = b.value.detach();
    return out;
  } catch (const std::exception& e) {
    jit_error = weights_detail::one_line(e);
  }
  // TorchScript could not compile or run the archive's code (e.g. an operator this LibTorch
  // lacks). The weights are still plain pickled tensors in data.pkl: read them with the
  // project's own unpickler (module attributes become dotted names).
  try {
    StateDict out = read_torch_save(path);
    if (!out.empty()) return out;
  } catch (const std::exception&) {
  }
  weights_detail::fail(path, "cannot load TorchScript archive: " + jit_error);
}

}  // namespace zsad::models
