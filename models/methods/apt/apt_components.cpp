#include "models/methods/apt/apt_components.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include <map>

#include "common/error.h"
#include "data/rng.h"
#include "data/transforms.h"

namespace zsad::models::apt {

std::string class_name_text(const std::string& cls, ClassNameMapping mapping) {
  if (mapping == ClassNameMapping::kPromptAD) {
    static const std::map<std::string, std::string> m = {
        {"macaroni1", "macaroni"}, {"macaroni2", "macaroni"},
        {"pcb1", "printed circuit board"}, {"pcb2", "printed circuit board"},
        {"pcb3", "printed circuit board"}, {"pcb4", "printed circuit board"},
        {"pipe_fryum", "pipe fryum"}, {"chewinggum", "chewing gum"}, {"metal_nut", "metal nut"}};
    auto it = m.find(cls);
    if (it != m.end()) return it->second;
  }
  std::string out = cls;
  for (auto& c : out)
    if (c == '_') c = ' ';
  return out;
}

std::string fill_template(const std::string& templ, const std::string& word) {
  std::string out = templ;
  const auto p = out.find("{}");
  if (p != std::string::npos) out.replace(p, 2, word);
  return out;
}

at::Tensor object_mask_from_patches(const at::Tensor& patches, const at::Tensor& t_obj, const at::Tensor& t_bg,
                                    int64_t grid, int64_t size, double scale, double threshold, int64_t dilate,
                                    double min_fraction) {
  if (patches.dim() != 2 || patches.size(0) != grid * grid)
    throw Error("object mask: patch tokens must be [grid^2, E] with grid " + std::to_string(grid));
  auto F = patches.to(at::kFloat);
  F = F / F.norm(2, {-1}, true);
  auto to = t_obj.to(at::kFloat).flatten(), tb = t_bg.to(at::kFloat).flatten();
  to = to / to.norm();
  tb = tb / tb.norm();
  auto logits = at::stack({at::matmul(F, to), at::matmul(F, tb)}, -1) * scale;  // [P,2]
  auto o = at::softmax(logits, -1).select(-1, 0).view({1, 1, grid, grid});
  auto up = at::upsample_bilinear2d(o, {size, size}, false).view({1, 1, size, size});
  auto m = (up > threshold).to(at::kFloat);
  if (dilate > 0) {
    const int64_t r = dilate * (size / grid);
    m = at::max_pool2d(m, {2 * r + 1, 2 * r + 1}, {1, 1}, {r, r});
  }
  m = m.view({size, size});
  if (m.mean().item<double>() < min_fraction) m = at::ones_like(m);
  return m.to(at::kByte);
}

data::AnomalySynthesisConfig synthesis_config(const AptOptions& o) {
  data::AnomalySynthesisConfig c;
  c.region = o.synth_region == SynthRegion::kPerlin   ? data::AnomalySynthesisConfig::Region::kPerlin
             : o.synth_region == SynthRegion::kShapes ? data::AnomalySynthesisConfig::Region::kShapes
                                                      : data::AnomalySynthesisConfig::Region::kMixed;
  c.sigma_min = o.sigma_min;
  c.sigma_max = o.sigma_max;
  c.blur_probability = o.blur_probability;
  c.min_mask_area = o.min_mask_area;
  c.object_min_fraction = o.object_min_fraction;
  if (o.synth_noise == SynthNoise::kGaussian) {
    c.p_gaussian = 1.0;
    c.p_uniform = 0.0;
    c.p_salt_pepper = 0.0;
  }
  return c;
}

SyntheticBatch synthesize_variants(const at::Tensor& images01, const at::Tensor& object_masks, int64_t r,
                                   const data::AnomalySynthesisConfig& cfg, uint64_t seed, uint64_t stream,
                                   uint64_t step, const std::vector<int64_t>& variants) {
  const int64_t K = images01.size(0), C = images01.size(1), H = images01.size(2), W = images01.size(3);
  auto imgs = images01.to(at::kFloat).contiguous();
  at::Tensor om;
  if (object_masks.defined()) om = object_masks.to(at::kByte).contiguous();
  const int64_t n = static_cast<int64_t>(variants.size());
  SyntheticBatch out;
  out.images = at::empty({n, C, H, W}, at::kFloat);
  out.masks = at::empty({n, H, W}, at::kFloat);
  for (int64_t row = 0; row < n; ++row) {
    const int64_t j = variants[static_cast<size_t>(row)];
    if (j < 0 || j >= K * r)
      throw Error("synthesize_variants: variant " + std::to_string(j) + " outside [0, " + std::to_string(K * r) + ")");
    const int64_t i = j / r;
    const float* src = imgs.data_ptr<float>() + i * C * H * W;
    const uint8_t* obj = om.defined() ? om.data_ptr<uint8_t>() + i * H * W : nullptr;
    data::Rng rng(data::mix_seed(seed, stream, step, static_cast<uint64_t>(j)));
    auto s = data::synthesize_anomaly(src, static_cast<int>(C), static_cast<int>(H), static_cast<int>(W), obj, cfg, rng);
    std::copy(s.image.begin(), s.image.end(), out.images.data_ptr<float>() + row * C * H * W);
    float* m = out.masks.data_ptr<float>() + row * H * W;
    for (int64_t p = 0; p < H * W; ++p) m[p] = s.mask[p] ? 1.f : 0.f;
  }
  return out;
}

SyntheticBatch synthesize_batch(const at::Tensor& images01, const at::Tensor& object_masks, int64_t r,
                                const data::AnomalySynthesisConfig& cfg, uint64_t seed, uint64_t stream,
                                uint64_t step) {
  std::vector<int64_t> all(static_cast<size_t>(images01.size(0) * r));
  for (size_t j = 0; j < all.size(); ++j) all[j] = static_cast<int64_t>(j);
  return synthesize_variants(images01, object_masks, r, cfg, seed, stream, step, all);
}

LatentVariants latent_variants(const at::Tensor& clean_patches, const at::Tensor& region_masks,
                               const std::vector<int64_t>& variants, int64_t r, double sigma, uint64_t seed,
                               uint64_t stream, uint64_t step) {
  const int64_t K = clean_patches.size(0), P = clean_patches.size(1), D = clean_patches.size(2);
  const int64_t h = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(P))));
  const int64_t n = static_cast<int64_t>(variants.size()), S = region_masks.size(-1);
  if (h * h != P || region_masks.size(0) != n || S % h != 0)
    throw Error("latent_variants: " + std::to_string(P) + " patches, " + std::to_string(region_masks.size(0)) +
                " masks of " + std::to_string(S) + " px for " + std::to_string(n) + " variants (need a square grid "
                "dividing the mask size)");
  // Patch coverage of each region mask: the fraction of its pixels inside the region.
  auto cover = at::avg_pool2d(region_masks.to(at::kFloat).unsqueeze(1), {S / h, S / h}).reshape({n, P});
  auto best = std::get<0>(cover.max(1, /*keepdim=*/true));
  auto hit = (cover >= 0.5) | ((cover == best) & (best > 0));
  LatentVariants out;
  out.patches = at::empty({n, P, D}, clean_patches.options());
  for (int64_t row = 0; row < n; ++row) {
    const int64_t j = variants[static_cast<size_t>(row)], i = j / r;
    if (j < 0 || i >= K) throw Error("latent_variants: variant " + std::to_string(j) + " outside [0, " +
                                     std::to_string(K * r) + ")");
    // Its own key (the pixel path draws region and noise from mix_seed(seed, stream, step, j)).
    auto gen = at::make_generator<at::CPUGeneratorImpl>(data::mix_seed(seed, stream, step, static_cast<uint64_t>(j)) ^
                                                        0x6c6174656e74ull);
    auto eps = at::randn({P, D}, gen, clean_patches.options()) * (sigma / std::sqrt(static_cast<double>(D)));
    auto noisy = clean_patches[i] + eps;
    out.patches[row] = at::where(hit[row].unsqueeze(1), noisy / noisy.norm(2, -1, true).clamp_min(1e-12),
                                 clean_patches[i]);
  }
  out.patch_masks = hit.to(at::kFloat).reshape({n, h, h});
  return out;
}

at::Tensor bgr_as_rgb(const at::Tensor& x) { return clip_normalize(clip_denormalize(x).flip({1})); }

at::Tensor clip_denormalize(const at::Tensor& x) {
  auto mean = at::tensor({data::kClipMean[0], data::kClipMean[1], data::kClipMean[2]}, x.options()).view({1, 3, 1, 1});
  auto std = at::tensor({data::kClipStd[0], data::kClipStd[1], data::kClipStd[2]}, x.options()).view({1, 3, 1, 1});
  return (x * std + mean).clamp(0.0, 1.0);
}

at::Tensor clip_normalize(const at::Tensor& x01) {
  auto mean = at::tensor({data::kClipMean[0], data::kClipMean[1], data::kClipMean[2]}, x01.options()).view({1, 3, 1, 1});
  auto std = at::tensor({data::kClipStd[0], data::kClipStd[1], data::kClipStd[2]}, x01.options()).view({1, 3, 1, 1});
  return (x01 - mean) / std;
}

at::Tensor project_gradient(const at::Tensor& g_d, const at::Tensor& g_g, double lambda) {
  const auto norm = g_g.norm();
  if (norm.item<double>() == 0.0) return g_d;
  auto u = g_g / norm;
  auto dot = (g_d * u).sum();
  if (dot.item<double>() < 0.0) return g_d - lambda * dot * u;
  return g_d;
}

at::Tensor meta_prompt_update(const at::Tensor& t_meta, const at::Tensor& t_learned, const at::Tensor& t0, double beta,
                              double gamma) {
  auto t = beta * t_meta + (1.0 - beta) * t_learned.detach();
  t = t / t.norm(2, {-1}, true);
  t = t + gamma * t0;
  return t / t.norm(2, {-1}, true);
}

at::Tensor anchor(const at::Tensor& feats, AnchorMean mode) {
  auto x = feats;
  if (mode == AnchorMean::kNormalized) x = x / x.norm(2, {-1}, true);
  auto m = x.mean(0);
  return m / m.norm();
}

at::Tensor two_way_logits(const at::Tensor& f, const at::Tensor& t_n, const at::Tensor& t_a, double tau) {
  return at::stack({at::matmul(f, t_n), at::matmul(f, t_a)}, -1) * tau;
}

at::Tensor kl_guidance(const at::Tensor& teacher_logits, const at::Tensor& student_logits, double T) {
  auto p = at::softmax(teacher_logits.detach() / T, -1);
  return -(p * at::log_softmax(student_logits / T, -1)).sum(-1).mean() * (T * T);
}

at::Tensor l2_guidance(const at::Tensor& t_n, const at::Tensor& t_a, const at::Tensor& m_n, const at::Tensor& m_a) {
  return (t_a - m_a.detach()).pow(2).sum() + (t_n - m_n.detach()).pow(2).sum();
}

at::Tensor v2t_loss(const at::Tensor& f, const at::Tensor& t_n, const at::Tensor& t_a_all, double tau) {
  auto logits = at::cat({at::matmul(f, t_n).unsqueeze(-1), at::matmul(f, t_a_all.t())}, -1) * tau;  // [N,1+J]
  return -at::log_softmax(logits, -1).select(-1, 0).mean();
}

at::Tensor triplet_loss(const at::Tensor& f, const at::Tensor& t_n, const at::Tensor& t_a, double margin) {
  auto dp = (f - t_n).pow(2).sum(-1), dn = (f - t_a).pow(2).sum(-1);
  return at::relu(dp - dn + margin).mean();
}

double binary_auroc(const at::Tensor& scores, const at::Tensor& labels) {
  auto sc = scores.detach().to(at::kDouble).flatten().contiguous();
  auto lb = labels.detach().to(at::kDouble).flatten().contiguous();
  if (sc.numel() != lb.numel())
    throw Error("AUROC: " + std::to_string(sc.numel()) + " scores for " + std::to_string(lb.numel()) + " labels");
  const int64_t n = sc.numel();
  auto order = std::get<1>(sc.sort());
  const double* s = sc.data_ptr<double>();
  const double* y = lb.data_ptr<double>();
  const int64_t* o = order.data_ptr<int64_t>();
  double rank_sum = 0, pos = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    while (j + 1 < n && s[o[j + 1]] == s[o[i]]) ++j;
    const double avg = 0.5 * static_cast<double>(i + j) + 1.0;  // 1-based average rank of the tie group
    for (int64_t t = i; t <= j; ++t)
      if (y[o[t]] > 0.5) {
        rank_sum += avg;
        pos += 1;
      }
    i = j + 1;
  }
  const double neg = static_cast<double>(n) - pos;
  if (pos == 0 || neg == 0) return 0.5;
  return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg);
}

at::Tensor memory_visual_map(const std::vector<at::Tensor>& queries, const std::vector<at::Tensor>& banks) {
  if (queries.size() != banks.size() || queries.empty())
    throw Error("memory bank: " + std::to_string(queries.size()) + " query layers for " + std::to_string(banks.size()) +
                " bank layers");
  at::Tensor sum;
  for (size_t l = 0; l < queries.size(); ++l) {
    auto q = queries[l] / queries[l].norm(2, {-1}, true);
    auto sim = at::matmul(q, banks[l].t());  // [B,P,N]
    auto d = (1.0 - std::get<0>(sim.max(-1))) / 2.0;
    sum = sum.defined() ? sum + d : d;
  }
  return sum / static_cast<double>(queries.size());
}

at::Tensor fuse_maps(const at::Tensor& a, const at::Tensor& v, ScoreFusion fusion) {
  switch (fusion) {
    case ScoreFusion::kHarmonic: return 1.0 / (1.0 / a + 1.0 / v);
    case ScoreFusion::kMean: return 0.5 * (a + v);
    case ScoreFusion::kText: return a;
    case ScoreFusion::kVisual: return v;
  }
  return a;
}

at::Tensor fuse_scores(const at::Tensor& s_txt, const at::Tensor& s_vis, ScoreFusion fusion) {
  return fuse_maps(s_txt, s_vis, fusion);
}

}  // namespace zsad::models::apt
