#include "trainer/loop/optim.h"

#include <cmath>
#include <sstream>

#include <torch/optim.h>

#include "common/error.h"
#include "trainer/checkpoint.h"

namespace zsad::trainer {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<at::Tensor>& params, const OptimConfig& c) {
  if (!(c.lr >= 0)) throw Error("optimizer lr " + std::to_string(c.lr) + ": expected >= 0");
  if (c.type == "adam") {
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay).amsgrad(c.amsgrad));
  }
  if (c.type == "adamw") {
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay).amsgrad(c.amsgrad));
  }
  if (c.type == "sgd") {
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(c.lr).momentum(c.momentum).weight_decay(c.weight_decay).nesterov(c.nesterov));
  }
  throw Error("optimizer type '" + c.type + "': expected adam, adamw or sgd");
}

double lr_at(const LrSchedule& s, double base, int64_t step) {
  if (s.type != "constant" && s.type != "cosine" && s.type != "warmup") {
    throw Error("lr schedule '" + s.type + "': expected constant, cosine or warmup");
  }
  if (s.type == "constant") return base;
  if (s.warmup_steps > 0 && step < s.warmup_steps) return base * static_cast<double>(step + 1) / s.warmup_steps;
  if (s.type == "warmup") return base;
  const int64_t span = std::max<int64_t>(1, s.total_steps - s.warmup_steps);
  const double t = std::min(1.0, static_cast<double>(step - s.warmup_steps) / span);
  return s.min_lr + 0.5 * (base - s.min_lr) * (1.0 + std::cos(M_PI * t));
}

void set_lr(torch::optim::Optimizer& opt, double lr) {
  for (auto& g : opt.param_groups()) g.options().set_lr(lr);
}

namespace {

std::string key_of(const at::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }
std::string field(size_t i, const char* name) { return "optimizer/" + std::to_string(i) + "/" + name; }

template <typename State>
void save_adam_like(torch::optim::Optimizer& opt, const std::vector<at::Tensor>& params, Checkpoint& ck) {
  for (size_t i = 0; i < params.size(); ++i) {
    auto it = opt.state().find(key_of(params[i]));
    if (it == opt.state().end()) continue;
    auto& s = static_cast<State&>(*it->second);
    ck.tensors[field(i, "step")] = at::scalar_tensor(s.step(), at::kLong);
    ck.tensors[field(i, "exp_avg")] = s.exp_avg().clone();
    ck.tensors[field(i, "exp_avg_sq")] = s.exp_avg_sq().clone();
    if (s.max_exp_avg_sq().defined()) ck.tensors[field(i, "max_exp_avg_sq")] = s.max_exp_avg_sq().clone();
  }
}

template <typename State>
void load_adam_like(torch::optim::Optimizer& opt, const std::vector<at::Tensor>& params, const Checkpoint& ck) {
  for (size_t i = 0; i < params.size(); ++i) {
    if (!ck.tensors.count(field(i, "step"))) continue;
    auto s = std::make_unique<State>();
    s->step(ck.get_tensor(field(i, "step")).item<int64_t>());
    s->exp_avg(ck.get_tensor(field(i, "exp_avg")).clone());
    s->exp_avg_sq(ck.get_tensor(field(i, "exp_avg_sq")).clone());
    if (ck.tensors.count(field(i, "max_exp_avg_sq"))) s->max_exp_avg_sq(ck.get_tensor(field(i, "max_exp_avg_sq")).clone());
    opt.state()[key_of(params[i])] = std::move(s);
  }
}

}  // namespace

void save_optimizer_state(torch::optim::Optimizer& opt, const std::vector<at::Tensor>& params, const OptimConfig& c,
                          Checkpoint& ck) {
  ck.strings["optimizer"] = c.type;
  if (c.type == "adam") {
    save_adam_like<torch::optim::AdamParamState>(opt, params, ck);
  } else if (c.type == "adamw") {
    save_adam_like<torch::optim::AdamWParamState>(opt, params, ck);
  } else {
    for (size_t i = 0; i < params.size(); ++i) {
      auto it = opt.state().find(key_of(params[i]));
      if (it == opt.state().end()) continue;
      auto& s = static_cast<torch::optim::SGDParamState&>(*it->second);
      if (s.momentum_buffer().defined()) ck.tensors[field(i, "momentum_buffer")] = s.momentum_buffer().clone();
    }
  }
}

void load_optimizer_state(torch::optim::Optimizer& opt, const std::vector<at::Tensor>& params, const OptimConfig& c,
                          const Checkpoint& ck) {
  auto it = ck.strings.find("optimizer");
  if (it == ck.strings.end() || it->second != c.type) {
    throw Error("checkpoint optimizer '" + (it == ck.strings.end() ? std::string("<none>") : it->second) +
                "' does not match the configured optimizer '" + c.type + "'");
  }
  if (c.type == "adam") {
    load_adam_like<torch::optim::AdamParamState>(opt, params, ck);
  } else if (c.type == "adamw") {
    load_adam_like<torch::optim::AdamWParamState>(opt, params, ck);
  } else {
    for (size_t i = 0; i < params.size(); ++i) {
      if (!ck.tensors.count(field(i, "momentum_buffer"))) continue;
      auto s = std::make_unique<torch::optim::SGDParamState>();
      s->momentum_buffer(ck.get_tensor(field(i, "momentum_buffer")).clone());
      opt.state()[key_of(params[i])] = std::move(s);
    }
  }
}

std::string describe(const OptimConfig& c) {
  std::ostringstream o;
  o.precision(17);
  o << "optim.type=" << c.type << ";optim.lr=" << c.lr << ";optim.betas=" << c.beta1 << "," << c.beta2
    << ";optim.eps=" << c.eps << ";optim.weight_decay=" << c.weight_decay << ";optim.amsgrad=" << c.amsgrad
    << ";optim.momentum=" << c.momentum << ";optim.nesterov=" << c.nesterov;
  return o.str();
}

std::string describe(const LrSchedule& s) {
  std::ostringstream o;
  o.precision(17);
  o << "schedule.type=" << s.type << ";schedule.warmup_steps=" << s.warmup_steps
    << ";schedule.total_steps=" << s.total_steps << ";schedule.min_lr=" << s.min_lr;
  return o.str();
}

}  // namespace zsad::trainer
