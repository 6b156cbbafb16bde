#include "models/methods/cops/cops_method.h"

#include <ATen/ATen.h>

#include "common/error.h"
#include "models/methods/cops/cops_clip.h"

namespace zsad::models::cops {
namespace {

const char kSaveEncoderKey[] = "save_vae_encoder";

// method.cops.* (and a dataset's method_options.cops.* on top) -> CopsOptions; feature_dim
// follows the CLIP embedding dim unless set.
CopsOptions parse(const OptionMap& o, int64_t embed_dim) {
  CopsOptions c;
  c.feature_dim = embed_dim;
  for (const auto& [k, v] : o.sub("method.cops").values) {
    if (k == kSaveEncoderKey || v == "null" || v == "~") continue;
    set_cops_option(c, k, v);
  }
  c.validate();
  return c;
}

}  // namespace

std::vector<MethodKey> cops_method_keys() {
  std::vector<MethodKey> out;
  for (const auto& k : cops_option_keys()) out.push_back({k.name, k.type, k.default_value, k.help, k.choices});
  out.push_back({std::string("method.cops.") + kSaveEncoderKey, "bool", "true",
                 "also store vae_encoder.* in checkpoints (needed to resume training; the official files omit it)",
                 {}});
  return out;
}

CopsMethod::CopsMethod(const OptionMap& options) : base_(options) {
  clip_ = build_clip_model(options);
  weights_ = options.str("model.weights");
  vv_depth_ = options.integer("model.vv_depth", -1);
  save_vae_encoder_ = options.flag(std::string("method.cops.") + kSaveEncoderKey, true);
  const CopsOptions o = parse(options, clip_->cfg.embed_dim);
  model_ = std::make_unique<CopsModel>(o, make_cops_text_tower(clip_),
                                       static_cast<uint64_t>(options.integer("seed", 0)));
  test_ = CopsTestSettings{o.test_kernel, o.alpha, o.beta};
}

std::string CopsMethod::display_name() const {
  const auto& o = model_->options();
  std::string off;
  if (!o.ests) off += "ESTS";
  if (!o.icts) off += std::string(off.empty() ? "" : "+") + "ICTS";
  if (!o.saga) off += std::string(off.empty() ? "" : "+") + "SAGA";
  return off.empty() ? "CoPS" : "CoPS w/o " + off;
}

int64_t CopsMethod::input_size() const { return clip_->cfg.input_size(); }

NamedTensorList CopsMethod::named_parameters() {
  NamedTensorList out;
  const auto trainable = model_->trainable_parameters();
  for (auto& [name, t] : model_->named_parameters(true))
    for (const auto& p : trainable)
      if (p.is_same(*t)) out.emplace_back(name, *t);
  return out;
}

VisionRequest CopsMethod::vision_request() const {
  VisionRequest req;
  const int64_t layers = clip_->cfg.vision_layers;
  req.vv_depth = vv_depth_ < 0 ? layers : std::min(vv_depth_, layers);
  req.patch_tokens = true;
  return req;
}

std::optional<FrozenFeatureSpec> CopsMethod::frozen_features() const {
  FrozenFeatureSpec s;
  s.clip = clip_;
  s.model_options = model_options_of(base_);
  s.global_output = "raw_cls";
  return s;  // layers: the last block (final patch tokens)
}

std::pair<at::Tensor, at::Tensor> CopsMethod::encode_frozen(const at::Tensor& images) {
  at::NoGradGuard ng;
  const VisionRequest req = vision_request();
  const auto dev = clip_->visual->proj.device();
  ++encoder_forwards_;
  VisionOutput v = clip_->encode_vision(images.to(dev), req);
  // CoPS' global feature: the CLS of the original path @ proj without ln_post (spec §1.2).
  return {v.global_features.to(at::kFloat).cpu(), v.patch_tokens.to(at::kFloat).cpu()};
}

std::pair<at::Tensor, at::Tensor> CopsMethod::features(const MethodBatch& batch) {
  at::NoGradGuard ng;
  if (source_) {
    auto [g, F] = source_(batch);
    return {g.to(at::kFloat).cpu(), F.to(at::kFloat).cpu()};
  }
  return encode_frozen(batch.images);
}

std::map<std::string, at::Tensor> CopsMethod::train_step(const MethodBatch& batch, const TrainContext& ctx) {
  const int64_t B = batch.images.size(0);
  if (static_cast<int64_t>(batch.indices.size()) != B)
    throw Error("cops: batch of " + std::to_string(B) + " images carries " + std::to_string(batch.indices.size()) +
                " sample indices (the VAE noise is keyed by them)");
  if (!batch.masks.defined() || !batch.labels.defined()) throw Error("cops: training needs masks and labels");
  auto [g, F] = features(batch);
  const auto& o = model_->options();
  CopsBatch b;
  b.global = g;
  b.patch = F;
  b.mask = (batch.masks.reshape({B, batch.masks.size(-2), batch.masks.size(-1)}) > 0.5).to(at::kFloat).cpu();
  b.label = batch.labels.to(at::kLong).cpu();
  b.noise = vae_noise(batch.seed, /*stream=*/0, static_cast<uint64_t>(batch.step), batch.indices, o.r_train,
                      o.feature_dim);
  GlobalReduction red;
  red.sum = ctx.global_sum;
  red.gather = ctx.gather;
  red.grad_scale = ctx.grad_scale;
  return model_->train_step(b, red);
}

void CopsMethod::begin_dataset(const DatasetContext& ctx) {
  OptionMap over;
  for (const auto& [k, v] : ctx.options.values) over.values["method.cops." + k] = v;
  const CopsOptions o = parse(base_.merged(over), model_->options().feature_dim);
  model_->set_options(o);
  test_ = CopsTestSettings{o.test_kernel, o.alpha, o.beta};
}

MethodOutput CopsMethod::infer(const MethodBatch& batch) {
  at::NoGradGuard ng;
  const int64_t B = batch.images.size(0);
  if (static_cast<int64_t>(batch.indices.size()) != B)
    throw Error("cops: batch of " + std::to_string(B) + " images carries " + std::to_string(batch.indices.size()) +
                " sample indices (the test-time VAE draws are keyed by them)");
  auto [g, F] = features(batch);
  const auto& o = model_->options();
  CopsBatch b;
  b.global = g;
  b.patch = F;
  b.noise = vae_noise(batch.seed, /*stream=*/1, 0, batch.indices, o.r_test, o.feature_dim);
  CopsInference r = model_->infer(b, test_);
  MethodOutput out;
  out.image_scores = r.image_score.to(at::kFloat).contiguous();
  out.anomaly_maps = r.anomaly_map.to(at::kFloat).contiguous();
  return out;
}

std::map<std::string, at::Tensor> CopsMethod::state_dict() { return model_->state_dict(save_vae_encoder_); }

void CopsMethod::load_state_dict(const std::map<std::string, at::Tensor>& state, bool strict) {
  model_->load_state_dict(state, strict);
}

}  // namespace zsad::models::cops

namespace zsad::models {
void register_cops_method() {
  MethodInfo info;
  info.name = "cops";
  info.display_name = "CoPS";
  info.doc = "CoPS (Conditional Prompt Synthesis, arXiv 2508.03447) as in the official code (docs/cops.md)";
  info.keys = cops::cops_method_keys();
  info.make = [](const OptionMap& o) { return std::make_unique<cops::CopsMethod>(o); };
  register_method(std::move(info));
}
}  // namespace zsad::models
