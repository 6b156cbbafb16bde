#pragma once
// APT per class: from k clean shots, build the memory bank, derive the object masks, initialise
// the prompts and the meta-prompt, then train the prompts on clean shots + fresh synthetic
// anomalies with SMGS guidance (shared/specs/apt.md §5 "one training step"); score images with
// the fused text and visual maps (§4.4). The CLIP towers are frozen and shared.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "models/clip/clip_model.h"
#include "models/methods/apt/apt_options.h"
#include "models/methods/apt/apt_prompts.h"

namespace zsad::models::apt {

// Frozen image features of a batch.
struct AptFeatures {
  at::Tensor global;               // [B,E] normalised g (ln_post(CLS) @ proj)
  at::Tensor patches;              // [B,P,E] normalised V-V patch tokens
  std::vector<at::Tensor> layers;  // memory-bank layers, [B,P,C] raw original-path tokens
};

struct AptClassState {
  std::string class_name;
  at::Tensor t_n, t_a;                  // scoring anchors [E]
  std::vector<at::Tensor> banks;        // per memory layer [k*P,C] normalised
  at::Tensor ctx, ctx_abnormal;         // learned prompts
  at::Tensor meta_n, meta_a, meta_n0, meta_a0;  // meta-prompt (final and initial), [E]
  at::Tensor object_masks;              // [k,S,S] uint8
  std::vector<std::map<std::string, double>> history;  // loss terms per optimizer step
};

struct AptScores {
  at::Tensor image_scores;  // [B]
  at::Tensor anomaly_maps;  // [B,h,w] fused map at patch resolution
  at::Tensor text_maps, visual_maps;  // [B,h,w] (visual undefined without the memory bank)
};

// The per-step loss terms from features (exposed for tests): total L_d and its parts, L_g.
struct AptLosses {
  at::Tensor task, image, pixel, focal, dice, v2t, triplet, guidance;
};

// Data parallelism of one class's training (class_parallel ddp): this rank's place and the sum
// over ranks (in place; every rank must call fit_class for the same classes in the same order).
struct AptParallel {
  int rank = 0, world_size = 1;
  std::function<void(at::Tensor&)> allreduce_sum;
  bool active() const { return world_size > 1 && static_cast<bool>(allreduce_sum); }
};

// This rank's share of a global batch under data parallelism: every mean-type loss term is
// multiplied by (local count / global count), so the sum over ranks of the terms (and of their
// gradients) is the single-process value; sample-independent terms (L2 guidance) count on the
// owner rank only.
struct LossShare {
  int64_t images = 0, images_global = 0;  // rows of the batch (clean + synthetic)
  int64_t clean = 0, clean_global = 0;    // clean shots (PromptAD terms)
  bool owner = true;                      // rank 0
};

class AptModel {
 public:
  // tokenize: text -> padded ids; the CLIP model is frozen and shared (handle copy).
  AptModel(const AptOptions& options, ClipModel clip, Tokenize tokenize);

  const AptOptions& options() const { return options_; }
  int64_t image_size() const;
  int64_t grid() const;

  AptFeatures encode(const at::Tensor& images) const;  // CLIP-normalised [B,3,S,S]

  // Trains the class model from k CLIP-normalised shots [k,3,S,S]; seed keys the prompt
  // initialisation and every synthetic draw. Stores and returns the class state.
  const AptClassState& fit_class(const std::string& cls, const at::Tensor& shots, uint64_t seed);
  bool has_class(const std::string& cls) const { return classes_.count(cls) > 0; }
  const AptClassState& class_state(const std::string& cls) const;
  void set_class_state(AptClassState s) { classes_[s.class_name] = std::move(s); }
  const std::map<std::string, AptClassState>& classes() const { return classes_; }

  // Scores a batch whose images all belong to `cls` (fitted before).
  AptScores score(const std::string& cls, const at::Tensor& images) const;
  AptScores score_features(const AptClassState& s, const AptFeatures& f) const;

  // Loss terms of one step: features of the batch (clean first), image labels [B] int64, pixel
  // masks [B,S,S] float, normalised learned anchors t_n/t_a, all abnormal features T_a (normalised
  // rows), meta anchors (undefined with SMGS off).
  AptLosses losses(const AptFeatures& f, const at::Tensor& labels, const at::Tensor& masks, const at::Tensor& t_n,
                   const at::Tensor& t_a, const at::Tensor& t_a_all, const at::Tensor& meta_n,
                   const at::Tensor& meta_a, const LossShare* share = nullptr) const;

  // Data parallelism for fit_class (default: single process).
  void set_parallel(AptParallel p) { parallel_ = std::move(p); }
  const AptParallel& parallel() const { return parallel_; }

  std::function<void(const std::string&)> log;  // optional progress lines

 private:
  at::Tensor object_masks(const std::string& cls, const AptFeatures& clean) const;
  at::Tensor encode_text_ids(const at::Tensor& ids) const;

  AptOptions options_;
  mutable ClipModel clip_;  // encode_vision keeps workspaces
  Tokenize tokenize_;
  TextTower tower_;
  int64_t vv_depth_ = 0;
  std::map<std::string, AptClassState> classes_;
  AptParallel parallel_;
};

// Plain SGD with momentum and weight decay, PyTorch semantics (buf = g + wd*p on the first step,
// then buf = m*buf + (g + wd*p); p -= lr*buf).
struct SgdState {
  std::vector<at::Tensor> buffers;
  void step(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads, double lr, double momentum,
            double weight_decay);
};

// torch.optim.Adam (L2 weight decay added to the gradient, bias-corrected moments, no amsgrad).
struct AdamState {
  std::vector<at::Tensor> m, v;
  int64_t t = 0;
  void step(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads, double lr, double beta1,
            double beta2, double eps, double weight_decay);
};

// CosineAnnealingLR(T_max, eta_min) value at epoch e.
double cosine_lr(double base, double eta_min, int64_t epoch, int64_t t_max);

}  // namespace zsad::models::apt
