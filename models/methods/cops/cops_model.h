#pragma once
// CoPS on cached frozen CLIP features: the learnable part of the official PromptLearner (prompts,
// prototype extractor + queries, VAE, deep text prompts) plus every loss of train.py and the
// scoring of test.py. The frozen towers are outside: the caller supplies the global feature g
// (raw CLS of the original path @ proj), the V-V patch tokens F (layer 24, ln_post @ proj), and the
// text tower as a TextTower. Randomness (the VAE's eps / z) is supplied by the caller, so it can be
// keyed by seed, step and global sample index (see vae_noise()).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "models/methods/cops/cops_components.h"
#include "models/methods/cops/cops_options.h"
#include "models/methods/cops/global_reduction.h"
#include "models/methods/cops/prompt_learner.h"
#include "models/methods/cops/text_tower.h"

namespace zsad::models::cops {

struct CopsBatch {
  at::Tensor global;  // [B,D] g, not normalised
  at::Tensor patch;   // [B,P,D] F, not smoothed (P = side^2)
  at::Tensor mask;    // [B,H,W] 0/1 at image resolution (training; H = W = side * patch size)
  at::Tensor label;   // [B] int64 0 normal / 1 anomalous (training)
  at::Tensor noise;   // training: eps [B,r_train,D] (posterior sample); test: z [B,r_test,D] (prior)
};

// Per-test-dataset settings (the code derives them from the dataset name).
struct CopsTestSettings {
  int64_t kernel = 5;
  double alpha = 0.26;
  double beta = 0.9;
};

struct CopsInference {
  at::Tensor image_score;   // [B] glocal score
  at::Tensor anomaly_map;   // [B,side,side] SAGA-weighted anomaly probability (before upsampling)
  at::Tensor global_prob;   // [B] softmax(cos(g^, e)/T)[anomaly]
  at::Tensor d_n, d_a;      // [B,P] prototype distances (undefined with ESTS off)
};

// Standard-normal noise for one batch, keyed by (seed, step, global sample index) so that it does
// not depend on how the batch is split across ranks: row b is drawn from its own generator.
// `stream` separates uses (e.g. 0 = training eps, 1 = test z). Returns [B,R,D] float32.
at::Tensor vae_noise(uint64_t seed, uint64_t stream, uint64_t step, const std::vector<int64_t>& global_index,
                     int64_t R, int64_t D);

class CopsModel {
 public:
  // Initialises every parameter from `seed` (own generator; N(0, init_std) etc. as the code).
  CopsModel(const CopsOptions& options, TextTower tower, uint64_t seed = 0);

  const CopsOptions& options() const { return options_; }
  // Replaces the non-structural switches (losses, kernels, alpha/beta, ablations of the forward,
  // ...); throws zsad::Error naming the key if a field that shapes the parameters differs.
  void set_options(const CopsOptions& o);

  // All loss terms of one training iteration (train.py order), each already weighted into "total":
  // image, focal, dice, dice_inv, patch (= focal + dice + dice_inv), gather, scatter, kl, rec, total.
  // Values are the global-batch values when `red` is active (see global_reduction.h).
  std::map<std::string, at::Tensor> train_step(const CopsBatch& batch, const GlobalReduction& red = {});

  // test.py scoring for one batch (no gradient). `noise` must be [B,r_test,D] prior draws.
  CopsInference infer(const CopsBatch& batch) const;
  CopsInference infer(const CopsBatch& batch, const CopsTestSettings& s) const;

  // Prompts [B,2R,77,W] with the prototypes placed by `assignment` (code: P_a -> normal prompt).
  at::Tensor assemble_prompts(const at::Tensor& proto_n, const at::Tensor& proto_a, const at::Tensor& cls,
                              int64_t batch, int64_t R) const;
  // Text embeddings e [B,2,E] for given prototypes / VAE samples (exposed for tests).
  at::Tensor text_embeddings(const at::Tensor& proto_n, const at::Tensor& proto_a, const at::Tensor& cls,
                             int64_t batch, int64_t R) const;

  // Parameters under the official checkpoint names: ctx_pos, ctx_neg, extractor.*, t_n, t_a,
  // vae_decoder.*, compound_prompts_text.N and (training only) vae_encoder.*.
  NamedTensorRefs named_parameters(bool include_vae_encoder = true);
  // The parameters that receive gradients under the current switches (optimiser input).
  std::vector<at::Tensor> trainable_parameters();
  // Detached copies keyed by name. include_vae_encoder=false gives exactly the reference checkpoint.
  std::map<std::string, at::Tensor> state_dict(bool include_vae_encoder = false);
  // Copies values by name with shape checks (dtype converted). strict: every parameter of the
  // checkpoint layout (vae_encoder.* optional) must be present and no unknown key may appear;
  // non-strict ignores unknown keys and keeps missing ones (the code's strict=False).
  // Returns the names that were loaded. Throws zsad::Error naming the key on a shape mismatch.
  std::vector<std::string> load_state_dict(const std::map<std::string, at::Tensor>& sd, bool strict = true);

  // Moves every parameter/buffer to dtype (e.g. kDouble for reference tests); stays a leaf.
  void to(at::ScalarType dtype);

  // Components (tests and benchmarks).
  PrototypeExtractor extractor;
  at::Tensor t_n, t_a;
  VaeEncoder vae_encoder;
  VaeDecoder vae_decoder;
  PromptLearner prompt;

 private:
  CopsOptions options_;
  TextTower tower_;
};

}  // namespace zsad::models::cops
