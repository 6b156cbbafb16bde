#pragma once
// CoPS prompt layout (code: PromptLearner). With ICTS the token string is 14 x "X" + ".":
//   ids = [SOT, 343 x 14, 269, EOT, 0 x 60], EOT at 16;
// without ICTS the code's vae_length=0 path, 12 x "X" + " object.":
//   ids = [SOT, 343 x 12, 14115, 269, EOT, 0 x 61], EOT at 15.
// Prompt per image b and sample r (positions 1-based after SOT):
//   [SOT, ctx[0:6], ctx[6:12] + state_b, ctx[12:14] + s_b,r (same s on both class tokens), suffix]
// ordered [normal r=0..R-1, anomaly r=0..R-1] -> [B, 2R, 77, W].
#include <cstdint>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "models/methods/cops/cops_components.h"
#include "models/methods/cops/cops_options.h"
#include "models/methods/cops/text_tower.h"

namespace zsad::models::cops {

constexpr int64_t kContextLength = 77;
constexpr int64_t kSotId = 49406;
constexpr int64_t kEotId = 49407;
constexpr int64_t kXId = 343;       // "x</w>"
constexpr int64_t kDotId = 269;     // ".</w>"
constexpr int64_t kObjectId = 14115;  // "object</w>"

// The fixed token ids [77] (int64) of the prompt string for these options.
at::Tensor prompt_token_ids(const CopsOptions& o);

struct PromptLearner {
  at::Tensor ctx_pos, ctx_neg;                    // [1,1,T,W] learnable (T = learnable_tokens())
  std::vector<at::Tensor> compound_prompts_text;  // depth x [n,W] learnable deep prompts
  at::Tensor token_ids;                           // [77] buffer
  at::Tensor token_prefix, token_suffix;          // [1,W], [77-1-T,W] frozen embeddings

  static PromptLearner init(const CopsOptions& o, const TextTower& tower, at::Generator gen);

  // state_normal / state_anomaly [B,M,D] added to the M state tokens of the normal / anomaly prompt
  // (undefined = nothing added); cls [B,R,D] added to both class tokens of both prompts (undefined
  // = R prompts without the sample). Returns [B,2R,77,W].
  at::Tensor assemble(const CopsOptions& o, const at::Tensor& state_normal, const at::Tensor& state_anomaly,
                      const at::Tensor& cls, int64_t batch, int64_t R) const;

  // Runs the assembled prompts [B,2R,77,W] through the tower: per-prompt L2-normalised features,
  // mean over R, L2-normalised again -> [B,2,E] (index 0 normal, 1 anomaly).
  at::Tensor encode(const CopsOptions& o, const TextTower& tower, const at::Tensor& prompts) const;
  // The same result; with o.text_shared_prefix and a tower offering encode_shared, the positions
  // several prompts share run once: SOT + context tokens (and deep prompts) per polarity or, when
  // cheaper (R > 1, e.g. inference), also the state tokens per (image, polarity). Not while the
  // deep-prompt gradients are rounded to fp16 per sequence (training with deep_prompt_fp16).
  // per_image_states: the state tokens differ between images (prototypes added).
  at::Tensor encode_sharing(const CopsOptions& o, const TextTower& tower, const at::Tensor& prompts,
                            bool per_image_states) const;
  // Per-prompt features [B*2R,E] -> L2-normalised, mean over R, L2-normalised -> [B,2,E].
  static at::Tensor average_samples(const at::Tensor& features, int64_t B, int64_t N2);

  void collect(NamedTensorRefs& out);          // ctx_pos, ctx_neg, compound_prompts_text.N
  void collect_buffers(NamedTensorRefs& out);  // token_ids, token_prefix, token_suffix
};

}  // namespace zsad::models::cops
