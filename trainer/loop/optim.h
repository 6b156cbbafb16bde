#pragma once
// Optimizer and learning-rate schedule of the training loop, as plain config structs (the YAML
// schema in launch/ maps its keys onto these fields), plus the optimizer state's round trip
// through the checkpoint.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace torch::optim {
class Optimizer;
}

namespace zsad {
struct Checkpoint;
}

namespace zsad::trainer {

struct OptimConfig {
  std::string type = "adamw";   // adam | adamw | sgd
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool amsgrad = false;
  double momentum = 0.0;        // sgd
  bool nesterov = false;        // sgd
};

struct LrSchedule {
  std::string type = "constant";  // constant | cosine | warmup (linear warmup, then constant)
  int64_t warmup_steps = 0;       // linear ramp from 0 to lr over these steps (cosine too)
  int64_t total_steps = 0;        // cosine: steps until min_lr is reached
  double min_lr = 0.0;            // cosine floor
};

// Throws zsad::Error naming the field when type/values are invalid.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<at::Tensor>& params, const OptimConfig& c);

// Learning rate for optimizer step `step` (0-based).
double lr_at(const LrSchedule& s, double base_lr, int64_t step);
void set_lr(torch::optim::Optimizer& opt, double lr);

// Optimizer state of parameter i lands in ck.tensors["optimizer/<i>/<field>"]; restore requires
// the same parameter list and optimizer type.
void save_optimizer_state(torch::optim::Optimizer& opt, const std::vector<at::Tensor>& params, const OptimConfig& c,
                          Checkpoint& ck);
void load_optimizer_state(torch::optim::Optimizer& opt, const std::vector<at::Tensor>& params, const OptimConfig& c,
                          const Checkpoint& ck);

// "type=adamw;lr=0.001;..." (canonical, used in the config digest).
std::string describe(const OptimConfig& c);
std::string describe(const LrSchedule& s);

}  // namespace zsad::trainer
