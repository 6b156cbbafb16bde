#pragma once
// WinCLIP-style zero-shot baseline ("WinCLIP-style (no windows)" in tables): training-free CLIP
// scoring with WinCLIP's prompt ensemble (state words x templates, class-name aware), image score
// from the global image feature, anomaly map from the V-V patch tokens. No multi-scale windows, so
// its numbers are not WinCLIP's published ones. Config keys: method.winclip.* (winclip_keys()).
#include <map>
#include <string>
#include <vector>

#include "models/methods/method.h"

namespace zsad::models::winclip {

// The WinCLIP paper's prompt ensemble (defaults of method.winclip.{normal_states,anomaly_states,templates}).
const std::vector<std::string>& default_normal_states();
const std::vector<std::string>& default_anomaly_states();
const std::vector<std::string>& default_templates();

// Every prompt of one state set for a class: template(state(class)), state outer, template inner.
std::vector<std::string> expand_prompts(const std::vector<std::string>& states, const std::vector<std::string>& templates,
                                        const std::string& class_name);

// "metal_nut" -> "metal nut" (class folder names as words).
std::string class_words(const std::string& cls);

std::vector<MethodKey> winclip_keys();

class WinClipMethod : public Method {
 public:
  explicit WinClipMethod(const OptionMap& options);

  std::string name() const override { return "winclip"; }
  std::string display_name() const override { return "WinCLIP-style (no windows)"; }
  int64_t input_size() const override;
  std::string weights_path() const override { return weights_; }

  void begin_dataset(const DatasetContext& ctx) override;
  MethodOutput infer(const MethodBatch& batch) override;

  // Frozen-feature hook (models/methods/method.h): global = ln_post(CLS) @ proj, patch = the final
  // V-V patch tokens; encode_frozen forwards image by image when per_image_forward (as infer does).
  std::optional<FrozenFeatureSpec> frozen_features() const override;
  std::pair<at::Tensor, at::Tensor> encode_frozen(const at::Tensor& images) override;
  void set_feature_source(FeatureSource source) override { source_ = std::move(source); }

  // [2,E] normalised (normal, anomalous) text embeddings of a class (cached).
  at::Tensor class_text(const std::string& cls);
  // Number of text-tower forwards so far (tests: the cache works).
  int64_t text_forwards() const { return text_forwards_; }

 private:
  OptionMap base_, opts_;
  ClipModel clip_{nullptr};
  TextTokenizer tokenize_;
  std::string weights_;
  std::vector<std::string> normal_states_, anomaly_states_, templates_;
  double temperature_ = 0.01;
  double map_weight_ = 0.0;
  int64_t vv_depth_ = -1;
  bool class_aware_ = true;
  bool per_image_ = true;
  std::map<std::string, at::Tensor> text_cache_;
  int64_t text_forwards_ = 0;
  FeatureSource source_;
};

}  // namespace zsad::models::winclip
