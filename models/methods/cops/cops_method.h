#pragma once
// CoPS behind the method interface (models/methods/method.h): builds the frozen CLIP from model.*,
// reads method.cops.* (cops_options.h) and, per dataset, the dataset config's method_options.cops
// block (train_kernel / reconstruction for a training set; test_kernel / alpha / beta for a test
// set). The VAE noise of every image is keyed by (run seed, step, global index), so scores do not
// depend on batching or sharding.
#include <map>
#include <string>
#include <vector>

#include "models/methods/cops/cops_model.h"
#include "models/methods/method.h"

namespace zsad::models::cops {

std::vector<MethodKey> cops_method_keys();

class CopsMethod : public Method {
 public:
  explicit CopsMethod(const OptionMap& options);

  std::string name() const override { return "cops"; }
  std::string display_name() const override;
  int64_t input_size() const override;
  std::string default_upsampling() const override { return "nearest"; }  // test.py's get_fullsize_map default
  std::string weights_path() const override { return weights_; }

  NamedTensorList named_parameters() override;  // the trainable ones under the ablation switches
  std::map<std::string, at::Tensor> train_step(const MethodBatch& batch, const TrainContext& ctx) override;

  void begin_dataset(const DatasetContext& ctx) override;
  MethodOutput infer(const MethodBatch& batch) override;

  // Checkpoint: the official keys plus vae_encoder.* when method.cops.save_vae_encoder (resume).
  std::map<std::string, at::Tensor> state_dict() override;
  void load_state_dict(const std::map<std::string, at::Tensor>& state, bool strict = true) override;

  // Frozen features of the batch: (g [B,E] raw CLS @ proj, F [B,P,E] V-V patch tokens), float32.
  // From the installed source if any (the feature cache), else by running the frozen CLIP.
  std::pair<at::Tensor, at::Tensor> features(const MethodBatch& batch);
  using FeatureSource = models::FeatureSource;
  // Method's frozen-feature hook: the CLIP image encoder is always frozen in CoPS (raw_cls global,
  // final V-V patch tokens), used by training (trainer/tasks/cops_train_task) and evaluation.
  std::optional<FrozenFeatureSpec> frozen_features() const override;
  std::pair<at::Tensor, at::Tensor> encode_frozen(const at::Tensor& images) override;
  void set_feature_source(FeatureSource source) override { source_ = std::move(source); }
  // What a feature cache must hold for CoPS: V-V on `vv_depth` final blocks, final patch tokens
  // (ln_post @ proj), global = VisionOutput::global_features (raw CLS, no ln_post).
  VisionRequest vision_request() const;
  ClipModel clip() const { return clip_; }
  CopsModel& model() { return *model_; }
  const CopsTestSettings& test_settings() const { return test_; }

 private:
  OptionMap base_;
  ClipModel clip_{nullptr};
  std::string weights_;
  int64_t vv_depth_ = -1;
  bool save_vae_encoder_ = true;
  std::unique_ptr<CopsModel> model_;
  FeatureSource source_;
  CopsTestSettings test_;
};

}  // namespace zsad::models::cops

namespace zsad::models {
// Adds "cops" to the method registry (called from the registry's built-in list).
void register_cops_method();
}  // namespace zsad::models
