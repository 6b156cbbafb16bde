#include "models/methods/apt/apt_model.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <iostream>
#include <cstdlib>
#include <utility>

#include "common/error.h"
#include "common/fnv1a.h"
#include "data/rng.h"
#include "models/methods/apt/apt_components.h"
#include "models/methods/cops/cops_clip.h"
#include "models/methods/cops/cops_components.h"

namespace zsad::models::apt {
namespace {

at::Tensor normalize_rows(const at::Tensor& x) { return x / x.norm(2, {-1}, true); }

// Streams of the per-class generator.
constexpr uint64_t kStreamSynthesis = 1;
constexpr uint64_t kStreamMeta = 2;  // the learnable meta-prompt's outer batches
constexpr uint64_t kStreamGate = 3;  // the held-out set of the EMA gate

}  // namespace

void SgdState::step(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads, double lr,
                    double momentum, double weight_decay) {
  if (buffers.empty()) buffers.resize(params.size());
  at::NoGradGuard ng;
  for (size_t i = 0; i < params.size(); ++i) {
    auto d = grads[i];
    if (weight_decay != 0) d = d + weight_decay * params[i].detach();
    if (momentum != 0) {
      if (!buffers[i].defined()) buffers[i] = d.clone();
      else buffers[i].mul_(momentum).add_(d);
      d = buffers[i];
    }
    params[i].sub_(lr * d);
  }
}

void AdamState::step(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads, double lr,
                     double beta1, double beta2, double eps, double weight_decay) {
  if (m.empty()) {
    m.resize(params.size());
    v.resize(params.size());
  }
  at::NoGradGuard ng;
  ++t;
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(t)), bc2 = 1.0 - std::pow(beta2, static_cast<double>(t));
  for (size_t i = 0; i < params.size(); ++i) {
    auto g = grads[i];
    if (weight_decay != 0) g = g + weight_decay * params[i].detach();
    if (!m[i].defined()) {
      m[i] = at::zeros_like(g);
      v[i] = at::zeros_like(g);
    }
    m[i].mul_(beta1).add_(g, 1.0 - beta1);
    v[i].mul_(beta2).addcmul_(g, g, 1.0 - beta2);
    auto denom = (v[i] / bc2).sqrt_().add_(eps);
    params[i].sub_(lr / bc1 * m[i] / denom);
  }
}

double cosine_lr(double base, double eta_min, int64_t epoch, int64_t t_max) {
  if (t_max <= 0) return base;
  return eta_min + (base - eta_min) * (1.0 + std::cos(M_PI * static_cast<double>(epoch) / static_cast<double>(t_max))) / 2.0;
}

AptModel::AptModel(const AptOptions& options, ClipModel clip, Tokenize tokenize)
    : options_(options), clip_(std::move(clip)), tokenize_(std::move(tokenize)) {
  options_.validate();
  tower_ = cops::make_cops_text_tower(clip_);
  const int64_t L = clip_->cfg.vision_layers;
  vv_depth_ = options_.vv_depth < 0 ? L : options_.vv_depth;
  if (vv_depth_ > L)
    throw Error("method.apt.vv_depth: " + std::to_string(options_.vv_depth) + " exceeds the " + std::to_string(L) +
                " vision blocks");
  if (options_.memory_bank)
    for (auto l : options_.memory_layers)
      if (l > L)
        throw Error("method.apt.memory_layers: block " + std::to_string(l) + " does not exist in a " + std::to_string(L) +
                    "-block vision tower");
}

int64_t AptModel::image_size() const { return clip_->cfg.input_size(); }
int64_t AptModel::grid() const { return clip_->cfg.input_grid(); }

AptFeatures AptModel::encode(const at::Tensor& images) const {
  at::NoGradGuard ng;
  const int64_t L = clip_->cfg.vision_layers;
  VisionRequest req;
  req.vv_depth = vv_depth_;
  req.patch_tokens = true;
  if (options_.attn_mode == AttnMode::kLocal) {
    req.local_window = options_.attn_window;
    req.local_qk = options_.attn_local_scores == LocalScores::kQk;
  }
  bool second_pass = false;
  if (options_.memory_bank) {
    const int64_t deepest = *std::max_element(options_.memory_layers.begin(), options_.memory_layers.end());
    // Blocks before the V-V path starts are still the original path: one pass suffices.
    if (deepest <= L - vv_depth_) {
      req.layers = options_.memory_layers;
      req.project_layers = false;
    } else {
      second_pass = true;
    }
  }
  auto out = clip_->encode_vision(images, req);
  AptFeatures f;
  f.global = normalize_rows(out.image_features.to(at::kFloat));
  f.patches = normalize_rows(out.patch_tokens.to(at::kFloat));
  if (second_pass) {
    VisionRequest r2;
    r2.vv_depth = 0;
    r2.patch_tokens = false;
    r2.layers = options_.memory_layers;
    r2.project_layers = false;
    auto o2 = clip_->encode_vision(images, r2);
    for (auto& t : o2.layer_patch_tokens) f.layers.push_back(t.to(at::kFloat));
  } else {
    for (auto& t : out.layer_patch_tokens) f.layers.push_back(t.to(at::kFloat));
  }
  return f;
}

at::Tensor AptModel::encode_text_ids(const at::Tensor& ids) const { return clip_->encode_text(ids); }

at::Tensor AptModel::object_masks(const std::string& cls, const AptFeatures& clean) const {
  const int64_t K = clean.patches.size(0), S = image_size();
  const bool texture = std::find(options_.texture_classes.begin(), options_.texture_classes.end(), cls) !=
                       options_.texture_classes.end();
  if (options_.object_mask == ObjectMaskMode::kNone || texture) return at::ones({K, S, S}, at::kByte);
  const std::string text = class_name_text(cls, options_.class_name_mapping);
  auto ids = at::stack({at::tensor(tokenize_(fill_template(options_.object_prompt, text)), at::kLong),
                        at::tensor(tokenize_(options_.background_prompt), at::kLong)});
  at::Tensor t;
  {
    at::NoGradGuard ng;
    t = encode_text_ids(ids).to(at::kFloat);
  }
  std::vector<at::Tensor> masks;
  for (int64_t i = 0; i < K; ++i)
    masks.push_back(object_mask_from_patches(clean.patches[i], t[0], t[1], grid(), S, options_.object_logit_scale,
                                             options_.object_threshold, options_.object_dilate,
                                             options_.object_min_fraction));
  return at::stack(masks);
}

AptLosses AptModel::losses(const AptFeatures& f, const at::Tensor& labels, const at::Tensor& masks,
                           const at::Tensor& t_n, const at::Tensor& t_a, const at::Tensor& t_a_all,
                           const at::Tensor& meta_n, const at::Tensor& meta_a, const LossShare* share) const {
  const auto& o = options_;
  AptLosses l;
  const int64_t B = f.global.size(0), P = f.patches.size(1);
  const int64_t h = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(P))));
  // This rank's part of a mean over the global batch (the term itself in a single process).
  auto part = [share](const at::Tensor& t, int64_t n, int64_t n_global) {
    if (!share) return t;
    return t * (static_cast<double>(n) / static_cast<double>(n_global));
  };
  const int64_t Bg = share ? share->images_global : B;
  auto img_logits = two_way_logits(f.global, t_n, t_a, o.tau);
  l.image = part(cops::image_ce_loss(img_logits, labels), B, Bg);
  auto probs = at::softmax(two_way_logits(f.patches, t_n, t_a, o.tau), -1);  // [B,P,2]
  probs = probs.permute({0, 2, 1}).reshape({B, 2, h, h});
  const int64_t S = masks.size(-1);
  probs = at::upsample_bilinear2d(probs, {S, S}, false);
  l.focal = part(cops::focal_loss(probs, masks, o.focal_gamma), B, Bg);
  l.dice = part(cops::dice_loss(probs.select(1, 1), masks) + cops::dice_loss(probs.select(1, 0), 1.0 - masks), B, Bg);
  l.pixel = l.focal + l.dice;
  l.task = o.w_image * l.image + o.w_pixel * l.pixel;
  auto clean = (labels == 0).nonzero().flatten();
  if (o.promptad_terms && clean.numel() > 0) {
    auto fc = f.global.index_select(0, clean);
    const int64_t nc = clean.numel(), ncg = share ? share->clean_global : nc;
    l.v2t = part(v2t_loss(fc, t_n, t_a_all, o.promptad_tau), nc, ncg);
    l.triplet = part(triplet_loss(fc, t_n, t_a, o.triplet_margin), nc, ncg);
    l.task = l.task + o.w_v2t * l.v2t + o.w_triplet * l.triplet;
  } else if (o.promptad_terms && share && share->clean_global > 0) {
    l.v2t = at::zeros({}, l.task.options());  // other ranks hold the clean shots
    l.triplet = at::zeros({}, l.task.options());
  }
  if (meta_n.defined() && o.smgs_mode != SmgsMode::kNone) {
    if (o.smgs_loss == SmgsLoss::kKl) {
      l.guidance = part(kl_guidance(two_way_logits(f.global, meta_n, meta_a, o.tau), img_logits, o.smgs_kl_temperature),
                        B, Bg);
      if (o.smgs_patch_kl) {
        auto pf = f.patches.reshape({-1, f.patches.size(-1)});
        l.guidance = l.guidance + part(kl_guidance(two_way_logits(pf, meta_n, meta_a, o.tau),
                                                   two_way_logits(pf, t_n, t_a, o.tau), o.smgs_kl_temperature),
                                       B, Bg);
      }
    } else {
      l.guidance = l2_guidance(t_n, t_a, meta_n, meta_a);
      if (share) l.guidance = l.guidance * (share->owner ? 1.0 : 0.0);  // counted once over the ranks
    }
  }
  return l;
}

const AptClassState& AptModel::fit_class(const std::string& cls, const at::Tensor& shots, uint64_t seed) {
  const auto& o = options_;
  const uint64_t cseed = data::mix_seed(seed, fnv1a64(cls), 0xA97);
  const int64_t K = shots.size(0), S = image_size();
  if (shots.dim() != 4 || shots.size(2) != S || shots.size(3) != S)
    throw Error("APT class '" + cls + "': shots must be [k,3," + std::to_string(S) + "," + std::to_string(S) + "]");
  AptClassState st;
  st.class_name = cls;
  const auto clean = encode(shots.to(at::kFloat));
  for (auto& layer : clean.layers) st.banks.push_back(normalize_rows(layer).reshape({-1, layer.size(-1)}));
  st.object_masks = object_masks(cls, clean);

  const std::string text = class_name_text(cls, o.class_name_mapping);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(cseed);
  auto prompts = AptPrompts::init(o, tokenize_(text + "."), tower_, gen);
  auto enc_ids = [this](const at::Tensor& ids) { return encode_text_ids(ids); };
  const bool learnable = o.smgs_mode == SmgsMode::kLearnable;
  LearnableMetaPrompt meta;
  if (learnable) {
    meta = LearnableMetaPrompt::init(tokenize_(fill_template(o.smgs_meta_normal, text)),
                                     tokenize_(fill_template(o.smgs_meta_abnormal, text)), tower_);
    at::NoGradGuard ng;
    std::tie(st.meta_n0, st.meta_a0) = meta.anchors(tower_);
  } else {
    std::tie(st.meta_n0, st.meta_a0) =
        initial_meta_prompt(o, o.meta_state_name == "object" ? "object" : text, tokenize_, enc_ids);
  }
  st.meta_n = st.meta_n0.clone();
  st.meta_a = st.meta_a0.clone();
  const bool guided = o.smgs_mode != SmgsMode::kNone;

  if (o.train && o.epochs > 0) {
    std::vector<at::Tensor> params = {prompts.ctx, prompts.ctx_abnormal};
    for (auto& p : params) p.set_requires_grad(true);
    SgdState sgd, meta_sgd;
    AdamState adam, meta_adam;
    std::vector<at::Tensor> meta_params;
    if (learnable) {
      meta_params = {meta.words_n, meta.words_a};
      for (auto& p : meta_params) p.set_requires_grad(true);
    }
    const int64_t r = o.variants();
    const auto cfg = synthesis_config(o);
    const auto shots01 = clip_denormalize(shots.to(at::kFloat));
    // Data parallelism (class_parallel ddp): the global batch of a step is the K clean shots
    // (g = 0..K-1) and the K*r synthetic variants (g = K + j); this rank holds g mod world == rank.
    // Every sample's randomness is keyed by its global index, so the sum over ranks does not
    // depend on the number of ranks.
    const bool ddp = parallel_.active();
    const int64_t Bg = K + K * r;
    if (ddp && parallel_.world_size > Bg)
      throw Error("method.apt.class_parallel ddp: " + std::to_string(parallel_.world_size) + " ranks for a batch of " +
                  std::to_string(Bg) + " images (k + k*r) of class '" + cls + "'; use fewer ranks or class_parallel shard");
    std::vector<int64_t> my_clean, my_variants;
    for (int64_t g = 0; g < Bg; ++g) {
      if (ddp && g % parallel_.world_size != parallel_.rank) continue;
      if (g < K) my_clean.push_back(g);
      else my_variants.push_back(g - K);
    }
    const int64_t Kl = static_cast<int64_t>(my_clean.size()), Vl = static_cast<int64_t>(my_variants.size());
    AptFeatures clean_l = clean;
    if (ddp) {
      auto idx = at::tensor(my_clean, at::kLong);
      clean_l.global = clean.global.index_select(0, idx);
      clean_l.patches = clean.patches.index_select(0, idx);
    }
    LossShare share;
    share.images = Kl + Vl;
    share.images_global = Bg;
    share.clean = Kl;
    share.clean_global = K;
    share.owner = parallel_.rank == 0;
    auto labels = at::cat({at::zeros({Kl}, at::kLong), at::ones({Vl}, at::kLong)});
    std::vector<int64_t> shot_of_variant;
    for (int64_t j : my_variants) shot_of_variant.push_back(j / r);
    // This rank's part of a step's batch from one synthesis stream: its clean shots (encoded
    // once) then its synthetic variants (encoded here, or in latent space perturbed copies of
    // their shots' tokens), with their pixel masks (clean = zeros).
    auto local_batch = [&](uint64_t stream, int64_t step) {
      auto syn = ddp ? synthesize_variants(shots01, st.object_masks, r, cfg, cseed, stream, step, my_variants)
                     : synthesize_batch(shots01, st.object_masks, r, cfg, cseed, stream, step);
      AptFeatures f;
      if (Vl > 0) {
        AptFeatures sf;
        if (o.synth_space == SynthSpace::kLatent) {
          auto lv = latent_variants(clean.patches, syn.masks, my_variants, r, o.synth_latent_sigma, cseed, stream, step);
          sf.global = clean.global.index_select(0, at::tensor(shot_of_variant, at::kLong));
          sf.patches = lv.patches;
          syn.masks = at::upsample_nearest2d(lv.patch_masks.unsqueeze(1), {S, S}).squeeze(1);
        } else {
          sf = encode(clip_normalize(syn.images));
        }
        f.global = at::cat({clean_l.global, sf.global});
        f.patches = at::cat({clean_l.patches, sf.patches});
      } else {
        f.global = clean_l.global;
        f.patches = clean_l.patches;
      }
      auto masks = at::cat({at::zeros({Kl, S, S}, at::kFloat), syn.masks});
      return std::make_pair(std::move(f), std::move(masks));
    };
    // EMA gate: a held-out set fixed per class (the clean shots and synthetic variants of them
    // from the gate's own stream), encoded once; every rank evaluates all of it (no collective).
    AptFeatures gate_f;
    at::Tensor gate_labels, gate_masks;
    double gate_ref = 0;
    auto gate_auroc = [&]() -> double {
      at::NoGradGuard ng;
      auto [Tn, Ta] = prompts.encode(tower_);
      AptClassState tmp;
      tmp.class_name = cls;
      tmp.t_n = anchor(Tn, o.test_anchor);
      tmp.t_a = anchor(Ta, o.test_anchor);
      tmp.banks = st.banks;
      auto sc = score_features(tmp, gate_f);
      const double img = binary_auroc(sc.image_scores, gate_labels);
      if (o.smgs_gate_metric == "image") return img;
      auto up = at::upsample_bilinear2d(sc.anomaly_maps.unsqueeze(1).to(at::kFloat), {S, S}, false);
      const double pix = binary_auroc(up, gate_masks);
      return o.smgs_gate_metric == "pixel" ? pix : 0.5 * (img + pix);
    };
    if (o.smgs_gate) {
      const int64_t rg = (o.smgs_gate_images + K - 1) / K;
      auto syn = synthesize_batch(shots01, st.object_masks, rg, cfg, cseed, kStreamGate, 0);
      auto sf = encode(clip_normalize(syn.images));
      gate_f.global = at::cat({clean.global, sf.global});
      gate_f.patches = at::cat({clean.patches, sf.patches});
      for (size_t l = 0; l < clean.layers.size(); ++l) gate_f.layers.push_back(at::cat({clean.layers[l], sf.layers[l]}));
      gate_labels = at::cat({at::zeros({K}, at::kLong), at::ones({K * rg}, at::kLong)});
      gate_masks = at::cat({at::zeros({K, S, S}, at::kFloat), syn.masks});
      gate_ref = gate_auroc();  // the untrained prompts
    }
    for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
      const double lr = cosine_lr(o.lr, o.eta_min, epoch, o.epochs);
      for (int64_t s = 0; s < o.steps_per_epoch; ++s) {
        const int64_t step = epoch * o.steps_per_epoch + s;
        auto [f, masks] = local_batch(kStreamSynthesis, step);
        auto [Tn, Ta] = prompts.encode(tower_);
        auto t_n = anchor(Tn, o.train_anchor), t_a = anchor(Ta, o.train_anchor);
        auto L = losses(f, labels, masks, t_n, t_a, normalize_rows(Ta), guided ? st.meta_n : at::Tensor(),
                        guided ? st.meta_a : at::Tensor(), ddp ? &share : nullptr);
        const bool has_g = L.guidance.defined();
        auto gd = torch::autograd::grad({L.task}, params, {}, /*retain_graph=*/has_g, false, /*allow_unused=*/true);
        std::vector<at::Tensor> grads(params.size());
        std::vector<at::Tensor> gg;
        if (has_g) gg = torch::autograd::grad({L.guidance}, params, {}, false, false, true);
        if (ddp) {
          // Sum the ranks' partial gradients (task and guidance, one collective); the projection
          // below then acts on the global gradients, identically on every rank.
          std::vector<at::Tensor> flat;
          for (size_t i = 0; i < params.size(); ++i)
            flat.push_back((gd[i].defined() ? gd[i] : at::zeros_like(params[i])).reshape({-1}));
          if (has_g)
            for (size_t i = 0; i < params.size(); ++i)
              flat.push_back((gg[i].defined() ? gg[i] : at::zeros_like(params[i])).reshape({-1}));
          auto all = at::cat(flat).contiguous();
          parallel_.allreduce_sum(all);
          int64_t off = 0;
          auto take = [&](const at::Tensor& p) {
            auto g = all.narrow(0, off, p.numel()).view(p.sizes());
            off += p.numel();
            return g;
          };
          for (size_t i = 0; i < params.size(); ++i) gd[i] = take(params[i]);
          if (has_g)
            for (size_t i = 0; i < params.size(); ++i) gg[i] = take(params[i]);
        }
        for (size_t i = 0; i < params.size(); ++i) {
          auto d = gd[i].defined() ? gd[i] : at::zeros_like(params[i]);
          if (has_g && gg[i].defined()) {
            if (o.smgs_grad == SmgsGrad::kProjection || o.smgs_grad == SmgsGrad::kBoth)
              d = project_gradient(d, gg[i], o.smgs_lambda);
            if (o.smgs_grad == SmgsGrad::kAdditive || o.smgs_grad == SmgsGrad::kBoth) d = d + o.smgs_weight * gg[i];
          }
          grads[i] = d;
        }
        if (o.optimizer == Optimizer::kAdam) adam.step(params, grads, lr, o.momentum, 0.999, 1e-8, o.weight_decay);
        else sgd.step(params, grads, lr, o.momentum, o.weight_decay);
        double meta_outer = std::nan("");
        if (learnable && (step + 1) % o.smgs_meta_every == 0) {
          // Outer step: the meta-prompt alone, on a fresh synthetic batch of its own stream (the
          // same shots and, under ddp, the same share of variants), its anchors as the classifier.
          auto [fo, masks2] = local_batch(kStreamMeta, step);
          auto [m_n, m_a] = meta.anchors(tower_);
          auto Lo = losses(fo, labels, masks2, m_n, m_a, m_a.unsqueeze(0), at::Tensor(), at::Tensor(),
                           ddp ? &share : nullptr);
          auto gm = torch::autograd::grad({Lo.task}, meta_params, {}, false, false, true);
          for (size_t i = 0; i < meta_params.size(); ++i)
            if (!gm[i].defined()) gm[i] = at::zeros_like(meta_params[i]);
          if (ddp) {
            auto all = at::cat({gm[0].reshape({-1}), gm[1].reshape({-1})}).contiguous();
            parallel_.allreduce_sum(all);
            gm[0] = all.narrow(0, 0, gm[0].numel()).view(gm[0].sizes());
            gm[1] = all.narrow(0, gm[0].numel(), gm[1].numel()).view(gm[1].sizes());
          }
          const double mlr = lr * o.smgs_meta_lr_scale;
          if (o.optimizer == Optimizer::kAdam) meta_adam.step(meta_params, gm, mlr, o.momentum, 0.999, 1e-8, o.weight_decay);
          else meta_sgd.step(meta_params, gm, mlr, o.momentum, o.weight_decay);
          at::NoGradGuard ng;
          auto [n2, a2] = meta.anchors(tower_);
          st.meta_n = n2.detach();
          st.meta_a = a2.detach();
          meta_outer = Lo.task.item<double>();
        }
        std::map<std::string, double> h = {{"task", L.task.item<double>()},   {"image", L.image.item<double>()},
                                           {"pixel", L.pixel.item<double>()}, {"focal", L.focal.item<double>()},
                                           {"dice", L.dice.item<double>()},   {"lr", lr}};
        if (L.v2t.defined()) h["v2t"] = L.v2t.item<double>();
        if (L.triplet.defined()) h["triplet"] = L.triplet.item<double>();
        if (has_g) h["guidance"] = L.guidance.item<double>();
        if (!std::isnan(meta_outer)) h["meta_outer"] = meta_outer;
        if (ddp) {
          // The logged terms are the global batch's (sum of the ranks' parts).
          std::vector<std::string> keys;
          std::vector<double> vals;
          for (const auto& [k, v] : h)
            if (k != "lr") {
              keys.push_back(k);
              vals.push_back(v);
            }
          auto t = at::tensor(vals, at::kDouble);
          parallel_.allreduce_sum(t);
          for (size_t i = 0; i < keys.size(); ++i) h[keys[i]] = t[static_cast<int64_t>(i)].item<double>();
          h["local_batch"] = static_cast<double>(Kl + Vl);
        }
        st.history.push_back(h);
      }
      bool apply_ema = o.smgs_mode == SmgsMode::kEma;
      if (apply_ema && o.smgs_gate) {
        const double a = gate_auroc();
        apply_ema = a > gate_ref + o.smgs_gate_margin;
        auto& h = st.history.back();
        h["gate_auroc"] = a;
        h["gate_reference"] = gate_ref;
        h["gate_accept"] = apply_ema ? 1.0 : 0.0;
        if (apply_ema) gate_ref = a;
      }
      if (apply_ema) {
        at::NoGradGuard ng;
        auto [Tn, Ta] = prompts.encode(tower_);
        st.meta_n = meta_prompt_update(st.meta_n, anchor(Tn, o.train_anchor), st.meta_n0, o.smgs_beta, o.smgs_gamma);
        st.meta_a = meta_prompt_update(st.meta_a, anchor(Ta, o.train_anchor), st.meta_a0, o.smgs_beta, o.smgs_gamma);
      }
      if (log && (epoch + 1 == o.epochs || (epoch + 1) % std::max<int64_t>(1, o.epochs / 4) == 0)) {
        const auto& h = st.history.back();
        std::ostringstream os;
        os << "apt class " << cls << " epoch " << epoch + 1 << "/" << o.epochs << " task " << h.at("task") << " image "
           << h.at("image") << " pixel " << h.at("pixel");
        if (h.count("guidance")) os << " guidance " << h.at("guidance");
        log(os.str());
      }
    }
    for (auto& p : params) p.set_requires_grad(false);
    for (auto& p : meta_params) p.set_requires_grad(false);
  }
  {
    at::NoGradGuard ng;
    auto [Tn, Ta] = prompts.encode(tower_);
    st.t_n = anchor(Tn.detach(), o.test_anchor);
    st.t_a = anchor(Ta.detach(), o.test_anchor);
  }
  st.ctx = prompts.ctx.detach().clone();
  st.ctx_abnormal = prompts.ctx_abnormal.detach().clone();
  classes_[cls] = std::move(st);
  return classes_.at(cls);
}

const AptClassState& AptModel::class_state(const std::string& cls) const {
  auto it = classes_.find(cls);
  if (it == classes_.end()) throw Error("APT: class '" + cls + "' was not prepared (no support set / prepare_class)");
  return it->second;
}

AptScores AptModel::score_features(const AptClassState& s, const AptFeatures& f) const {
  const auto& o = options_;
  const int64_t B = f.global.size(0), P = f.patches.size(1), h = grid();
  AptScores out;
  out.text_maps = at::softmax(two_way_logits(f.patches, s.t_n, s.t_a, o.score_tau), -1).select(-1, 1).reshape({B, h, P / h});
  auto s_txt = o.text_image_score == TextImageScore::kGlobal
                   ? at::softmax(two_way_logits(f.global, s.t_n, s.t_a, o.score_tau), -1).select(-1, 1)
                   : std::get<0>(out.text_maps.reshape({B, -1}).max(-1));
  if (o.memory_bank && !s.banks.empty() && o.fusion != ScoreFusion::kText) {
    out.visual_maps = memory_visual_map(f.layers, s.banks).reshape({B, h, P / h});
    const int64_t S = image_size();
    auto up = at::upsample_bilinear2d(out.visual_maps.unsqueeze(1), {S, S}, false);
    auto s_vis = std::get<0>(up.reshape({B, -1}).max(-1));
    out.anomaly_maps = fuse_maps(out.text_maps, out.visual_maps, o.fusion);
    out.image_scores = fuse_scores(s_txt, s_vis, o.fusion);
  } else {
    out.anomaly_maps = out.text_maps;
    out.image_scores = s_txt;
  }
  if (o.image_score == ImageScore::kMaxMap) out.image_scores = std::get<0>(out.anomaly_maps.reshape({B, -1}).max(-1));
  return out;
}

AptScores AptModel::score(const std::string& cls, const at::Tensor& images) const {
  return score_features(class_state(cls), encode(images.to(at::kFloat)));
}

}  // namespace zsad::models::apt
