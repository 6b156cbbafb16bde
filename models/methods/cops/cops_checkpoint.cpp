#include "models/methods/cops/cops_checkpoint.h"

#include <ATen/ATen.h>

#include "models/clip/weights.h"

namespace zsad::models::cops {

std::map<std::string, at::Tensor> read_official_checkpoint(const std::string& path) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [k, v] : read_torch_save_entry(path, "prompt_learner")) {
    // train.py's remove_keys_from_model (dead modules and the frozen prompt buffers).
    if (k.rfind("projector", 0) == 0 || k.rfind("extractor_", 0) == 0 || k.rfind("token", 0) == 0) continue;
    out[k] = v.to(at::kFloat).contiguous();
  }
  return out;
}

}  // namespace zsad::models::cops
