#include "models/methods/winclip/winclip.h"

#include <ATen/ATen.h>

#include "common/error.h"

#include <tuple>

namespace zsad::models {
void register_winclip_method();
}

namespace zsad::models::winclip {

const std::vector<std::string>& default_normal_states() {
  static const std::vector<std::string> v = {"{}",           "flawless {}",      "perfect {}",        "unblemished {}",
                                             "{} without flaw", "{} without defect", "{} without damage"};
  return v;
}

const std::vector<std::string>& default_anomaly_states() {
  static const std::vector<std::string> v = {"damaged {}", "broken {}", "{} with flaw", "{} with defect",
                                             "{} with damage"};
  return v;
}

const std::vector<std::string>& default_templates() {
  static const std::vector<std::string> v = {
      "a cropped photo of the {}.",
      "a cropped photo of a {}.",
      "a close-up photo of a {}.",
      "a close-up photo of the {}.",
      "a bright photo of a {}.",
      "a bright photo of the {}.",
      "a dark photo of the {}.",
      "a dark photo of a {}.",
      "a jpeg corrupted photo of a {}.",
      "a jpeg corrupted photo of the {}.",
      "a blurry photo of the {}.",
      "a blurry photo of a {}.",
      "a photo of a {}.",
      "a photo of the {}.",
      "a photo of a small {}.",
      "a photo of the small {}.",
      "a photo of a large {}.",
      "a photo of the large {}.",
      "a photo of the {} for visual inspection.",
      "a photo of a {} for visual inspection.",
      "a photo of the {} for anomaly detection.",
      "a photo of a {} for anomaly detection.",
  };
  return v;
}

namespace {
std::string fill(const std::string& pattern, const std::string& value) {
  const auto pos = pattern.find("{}");
  if (pos == std::string::npos) return pattern;
  return pattern.substr(0, pos) + value + pattern.substr(pos + 2);
}
std::string join(const std::vector<std::string>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::string("'") + v[i] + "'";
  return s + "]";
}
}  // namespace

std::string class_words(const std::string& cls) {
  std::string s = cls;
  for (auto& c : s) {
    if (c == '_' || c == '-') c = ' ';
  }
  return s;
}

std::vector<std::string> expand_prompts(const std::vector<std::string>& states, const std::vector<std::string>& templates,
                                        const std::string& class_name) {
  std::vector<std::string> out;
  out.reserve(states.size() * templates.size());
  for (const auto& s : states) {
    const std::string state = fill(s, class_name);
    for (const auto& t : templates) out.push_back(fill(t, state));
  }
  return out;
}

std::vector<MethodKey> winclip_keys() {
  return {
      {"method.winclip.normal_states", "list", join(default_normal_states()), "normal state words ({} = class name)", {}},
      {"method.winclip.anomaly_states", "list", join(default_anomaly_states()), "anomalous state words", {}},
      {"method.winclip.templates", "list", join(default_templates()), "prompt templates ({} = state phrase)", {}},
      {"method.winclip.temperature", "float", "0.01", "softmax temperature (CLIP's logit scale 100)", {}},
      {"method.winclip.map_weight", "float", "0.0",
       "image score = (1-w)*global + w*max(patch map); datasets may override (method_options.winclip)", {}},
      {"method.winclip.class_aware", "bool", "true", "class name in the prompts (false: 'object')", {}},
      {"method.winclip.per_image_forward", "bool", "true",
       "one vision forward per image: scores independent of batch composition (batched BLAS rounds differently, "
       "~2e-6 after the logit scale); false: one forward per batch", {}},
  };
}

WinClipMethod::WinClipMethod(const OptionMap& options) : base_(options), opts_(options) {
  clip_ = build_clip_model(options);
  weights_ = options.str("model.weights");
  tokenize_ = make_text_tokenizer(options, clip_->cfg.context_length, clip_->cfg.vocab_size);
  vv_depth_ = options.integer("model.vv_depth", -1);
  begin_dataset(DatasetContext{});
}

int64_t WinClipMethod::input_size() const { return clip_->cfg.input_size(); }

void WinClipMethod::begin_dataset(const DatasetContext& ctx) {
  // Dataset-level options (method_options.winclip.*) override method.winclip.*.
  OptionMap over;
  for (const auto& [k, v] : ctx.options.values) over.values["method.winclip." + k] = v;
  opts_ = base_.merged(over);
  const OptionMap& o = opts_;
  auto nstates = o.list("method.winclip.normal_states", default_normal_states());
  auto astates = o.list("method.winclip.anomaly_states", default_anomaly_states());
  auto templates = o.list("method.winclip.templates", default_templates());
  const bool aware = o.flag("method.winclip.class_aware", true);
  if (nstates.empty() || astates.empty() || templates.empty()) {
    throw Error("method.winclip: normal_states, anomaly_states and templates must not be empty");
  }
  if (nstates != normal_states_ || astates != anomaly_states_ || templates != templates_ || aware != class_aware_) {
    text_cache_.clear();
  }
  normal_states_ = nstates;
  anomaly_states_ = astates;
  templates_ = templates;
  class_aware_ = aware;
  temperature_ = o.real("method.winclip.temperature", 0.01);
  map_weight_ = o.real("method.winclip.map_weight", 0.0);
  per_image_ = o.flag("method.winclip.per_image_forward", true);
  if (!(temperature_ > 0)) throw Error("method.winclip.temperature must be > 0");
  if (map_weight_ < 0 || map_weight_ > 1) throw Error("method.winclip.map_weight must be in [0,1]");
}

at::Tensor WinClipMethod::class_text(const std::string& cls) {
  auto it = text_cache_.find(cls);
  if (it != text_cache_.end()) return it->second;
  const std::string words = class_aware_ ? class_words(cls) : "object";
  at::NoGradGuard ng;
  std::vector<at::Tensor> rows;
  for (const auto* states : {&normal_states_, &anomaly_states_}) {
    const auto prompts = expand_prompts(*states, templates_, words);
    const int64_t ctx = clip_->cfg.context_length;
    at::Tensor ids = at::empty({static_cast<int64_t>(prompts.size()), ctx}, at::kLong);
    for (size_t i = 0; i < prompts.size(); ++i) {
      auto t = tokenize_(prompts[i]);
      std::copy(t.begin(), t.end(), ids[static_cast<int64_t>(i)].data_ptr<int64_t>());
    }
    at::Tensor f = clip_->encode_text(ids.to(clip_->text_projection.device()));  // [M,E]
    ++text_forwards_;
    f = f / f.norm(2, -1, true);
    at::Tensor m = f.mean(0);
    rows.push_back(m / m.norm());
  }
  at::Tensor t = at::stack(rows, 0).to(at::kFloat);  // [2,E]
  text_cache_[cls] = t;
  return t;
}

std::optional<FrozenFeatureSpec> WinClipMethod::frozen_features() const {
  FrozenFeatureSpec s;
  s.clip = clip_;
  s.model_options = model_options_of(base_);
  s.global_output = "ln_post_cls";
  return s;  // layers: the last block (final V-V patch tokens)
}

std::pair<at::Tensor, at::Tensor> WinClipMethod::encode_frozen(const at::Tensor& images) {
  at::NoGradGuard ng;
  const int64_t B = images.size(0);
  VisionRequest req;
  const int64_t layers = clip_->cfg.vision_layers;
  req.vv_depth = vv_depth_ < 0 ? layers : std::min(vv_depth_, layers);
  req.patch_tokens = true;
  const auto dev = clip_->visual->proj.device();
  if (per_image_ && B > 1) {
    // One forward per image: scores do not depend on which images share a batch (BLAS rounding).
    std::vector<at::Tensor> gs, ps;
    for (int64_t i = 0; i < B; ++i) {
      ++encoder_forwards_;
      VisionOutput v = clip_->encode_vision(images.slice(0, i, i + 1).to(dev), req);
      gs.push_back(v.image_features.to(at::kFloat).cpu());
      ps.push_back(v.patch_tokens.to(at::kFloat).cpu());
    }
    return {at::cat(gs, 0), at::cat(ps, 0)};
  }
  ++encoder_forwards_;
  VisionOutput v = clip_->encode_vision(images.to(dev), req);
  return {v.image_features.to(at::kFloat).cpu(), v.patch_tokens.to(at::kFloat).cpu()};  // [B,E], [B,P,E]
}

MethodOutput WinClipMethod::infer(const MethodBatch& batch) {
  at::NoGradGuard ng;
  const int64_t B = batch.images.size(0);
  if (static_cast<int64_t>(batch.class_names.size()) != B) {
    throw Error("winclip: batch has " + std::to_string(B) + " images but " + std::to_string(batch.class_names.size()) +
                " class names");
  }
  at::Tensor g, p;
  if (source_) {
    std::tie(g, p) = source_(batch);
    g = g.to(at::kFloat).cpu();
    p = p.to(at::kFloat).cpu();
    if (g.dim() != 2 || g.size(0) != B || p.dim() != 3 || p.size(0) != B)
      throw Error("winclip: the feature source returned features that do not match the batch of " + std::to_string(B));
  } else {
    std::tie(g, p) = encode_frozen(batch.images);
  }
  g = g / g.norm(2, -1, true);
  p = p / p.norm(2, -1, true);
  const int64_t P = p.size(1);
  const auto side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(P))));
  std::vector<at::Tensor> texts;
  for (const auto& c : batch.class_names) texts.push_back(class_text(c));
  at::Tensor T = at::stack(texts, 0);  // [B,2,E]
  at::Tensor global = at::softmax(at::bmm(g.unsqueeze(1), T.transpose(1, 2)).squeeze(1) / temperature_, -1)
                          .select(-1, 1);                                           // [B]
  at::Tensor local = at::softmax(at::bmm(p, T.transpose(1, 2)) / temperature_, -1).select(-1, 1);  // [B,P]
  MethodOutput out;
  out.anomaly_maps = local.reshape({B, side, side}).contiguous();
  out.image_scores =
      map_weight_ > 0 ? ((1.0 - map_weight_) * global + map_weight_ * std::get<0>(local.max(1))) : global.clone();
  return out;
}

}  // namespace zsad::models::winclip

namespace zsad::models {
void register_winclip_method() {
  MethodInfo info;
  info.name = "winclip";
  info.display_name = "WinCLIP-style (no windows)";
  info.doc = "training-free WinCLIP-style prompt ensemble (global image score, V-V patch map; no windows)";
  info.keys = winclip::winclip_keys();
  info.make = [](const OptionMap& o) { return std::make_unique<winclip::WinClipMethod>(o); };
  register_method(std::move(info));
}
}  // namespace zsad::models
