#include "models/methods/cops/cops_model.h"

#include <cmath>
#include <set>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "common/error.h"

namespace zsad::models::cops {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? "," : "") + std::to_string(t.size(i));
  return s + "]";
}

int64_t grid_side(const at::Tensor& patch) {
  const int64_t P = patch.size(1);
  const auto side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(P))));
  if (side * side != P) throw Error("cops: patch count " + std::to_string(P) + " is not a square grid");
  return side;
}

void check_batch(const CopsBatch& b, int64_t D, int64_t R, const char* what) {
  if (!b.global.defined() || b.global.dim() != 2 || b.global.size(1) != D)
    throw Error(std::string("cops ") + what + ": global features must be [B," + std::to_string(D) + "]");
  if (!b.patch.defined() || b.patch.dim() != 3 || b.patch.size(0) != b.global.size(0) || b.patch.size(2) != D)
    throw Error(std::string("cops ") + what + ": patch tokens must be [B,P," + std::to_string(D) + "], got " +
                (b.patch.defined() ? shape_str(b.patch) : "none"));
  if (R > 0 && (!b.noise.defined() || b.noise.dim() != 3 || b.noise.size(0) != b.global.size(0) ||
                b.noise.size(1) != R || b.noise.size(2) != D))
    throw Error(std::string("cops ") + what + ": VAE noise must be [B," + std::to_string(R) + "," + std::to_string(D) +
                "], got " + (b.noise.defined() ? shape_str(b.noise) : "none"));
}

}  // namespace

at::Tensor vae_noise(uint64_t seed, uint64_t stream, uint64_t step, const std::vector<int64_t>& global_index,
                     int64_t R, int64_t D) {
  at::Tensor out = at::empty({static_cast<int64_t>(global_index.size()), R, D}, at::kFloat);
  for (size_t b = 0; b < global_index.size(); ++b) {
    uint64_t key = splitmix64(seed);
    key = splitmix64(key ^ stream);
    key = splitmix64(key ^ step);
    key = splitmix64(key ^ static_cast<uint64_t>(global_index[b]));
    at::Generator gen = at::detail::createCPUGenerator(key);
    out[static_cast<int64_t>(b)].normal_(0.0, 1.0, gen);
  }
  return out;
}

CopsModel::CopsModel(const CopsOptions& options, TextTower tower, uint64_t seed)
    : options_(options), tower_(std::move(tower)) {
  options_.validate();
  const int64_t D = options_.feature_dim;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  at::NoGradGuard no_grad;
  prompt = PromptLearner::init(options_, tower_, gen);
  extractor = PrototypeExtractor::init(D, options_.extractor_heads, options_.init_std, gen);
  t_n = at::empty({options_.num_prototypes, D}, at::kFloat);
  t_n.normal_(0.0, options_.init_std, gen);
  t_a = at::empty({options_.num_prototypes, D}, at::kFloat);
  t_a.normal_(0.0, options_.init_std, gen);
  vae_encoder = VaeEncoder::init(D, options_.init_std, gen);
  vae_decoder = VaeDecoder::init(D, options_.init_std, gen);
  for (auto& [name, t] : named_parameters(true)) t->set_requires_grad(true);
}

void CopsModel::set_options(const CopsOptions& o) {
  o.validate();
  auto same = [](const char* key, int64_t a, int64_t b) {
    if (a != b)
      throw Error(std::string("method.cops.") + key + ": cannot change from " + std::to_string(a) + " to " +
                  std::to_string(b) + " on a built model (it shapes the parameters)");
  };
  same("feature_dim", options_.feature_dim, o.feature_dim);
  same("num_prototypes", options_.num_prototypes, o.num_prototypes);
  same("extractor_heads", options_.extractor_heads, o.extractor_heads);
  same("n_ctx", options_.n_ctx, o.n_ctx);
  same("cls_len", options_.cls_len, o.cls_len);
  same("icts", options_.icts, o.icts);
  same("deep_prompt_depth", options_.deep_prompt_depth, o.deep_prompt_depth);
  same("deep_prompt_length", options_.deep_prompt_length, o.deep_prompt_length);
  options_ = o;
}

NamedTensorRefs CopsModel::named_parameters(bool include_vae_encoder) {
  NamedTensorRefs out;
  out.push_back({"ctx_pos", &prompt.ctx_pos});
  out.push_back({"ctx_neg", &prompt.ctx_neg});
  extractor.collect(out, "extractor.");
  out.push_back({"t_n", &t_n});
  out.push_back({"t_a", &t_a});
  if (include_vae_encoder) vae_encoder.collect(out, "vae_encoder.");
  vae_decoder.collect(out, "vae_decoder.");
  for (size_t i = 0; i < prompt.compound_prompts_text.size(); ++i)
    out.push_back({"compound_prompts_text." + std::to_string(i), &prompt.compound_prompts_text[i]});
  return out;
}

std::vector<at::Tensor> CopsModel::trainable_parameters() {
  std::vector<at::Tensor> out;
  for (auto& [name, t] : named_parameters(true)) {
    const bool ests_part = name.rfind("extractor.", 0) == 0 || name == "t_n" || name == "t_a";
    const bool icts_part = name.rfind("vae_", 0) == 0;
    if ((ests_part && !options_.ests) || (icts_part && !options_.icts)) continue;
    out.push_back(*t);
  }
  return out;
}

std::map<std::string, at::Tensor> CopsModel::state_dict(bool include_vae_encoder) {
  std::map<std::string, at::Tensor> out;
  for (auto& [name, t] : named_parameters(include_vae_encoder)) out[name] = t->detach().clone();
  return out;
}

std::vector<std::string> CopsModel::load_state_dict(const std::map<std::string, at::Tensor>& sd, bool strict) {
  std::set<std::string> known;
  std::vector<std::string> loaded;
  at::NoGradGuard no_grad;
  for (auto& [name, t] : named_parameters(true)) {
    known.insert(name);
    auto it = sd.find(name);
    if (it == sd.end()) {
      if (strict && name.rfind("vae_encoder.", 0) != 0)
        throw Error("cops checkpoint: missing parameter '" + name + "'");
      continue;
    }
    if (!it->second.sizes().equals(t->sizes()))
      throw Error("cops checkpoint: parameter '" + name + "' has shape " + shape_str(it->second) + ", expected " +
                  shape_str(*t));
    t->copy_(it->second.to(t->scalar_type()));
    loaded.push_back(name);
  }
  if (strict)
    for (const auto& [name, v] : sd)
      if (!known.count(name)) throw Error("cops checkpoint: unexpected parameter '" + name + "'");
  return loaded;
}

void CopsModel::to(at::ScalarType dtype) {
  for (auto& [name, t] : named_parameters(true)) *t = t->detach().to(dtype).clone().set_requires_grad(true);
  prompt.token_prefix = prompt.token_prefix.to(dtype);
  prompt.token_suffix = prompt.token_suffix.to(dtype);
}

at::Tensor CopsModel::assemble_prompts(const at::Tensor& proto_n, const at::Tensor& proto_a, const at::Tensor& cls,
                                       int64_t batch, int64_t R) const {
  // The code adds P_a to the normal prompt and P_n to the anomaly prompt (agg_prototype[:,1:] / [:, :1]).
  const bool code = options_.assignment == PrototypeAssignment::kCode;
  const at::Tensor& state_normal = code ? proto_a : proto_n;
  const at::Tensor& state_anomaly = code ? proto_n : proto_a;
  return prompt.assemble(options_, state_normal, state_anomaly, cls, batch, R);
}

at::Tensor CopsModel::text_embeddings(const at::Tensor& proto_n, const at::Tensor& proto_a, const at::Tensor& cls,
                                      int64_t batch, int64_t R) const {
  return prompt.encode_sharing(options_, tower_, assemble_prompts(proto_n, proto_a, cls, batch, R), proto_n.defined());
}

std::map<std::string, at::Tensor> CopsModel::train_step(const CopsBatch& batch, const GlobalReduction& red) {
  const CopsOptions& o = options_;
  const int64_t D = o.feature_dim, M = o.num_prototypes;
  check_batch(batch, D, o.icts ? o.r_train : 0, "train_step");
  const int64_t B = batch.global.size(0);
  const int64_t side = grid_side(batch.patch);
  if (!batch.mask.defined() || batch.mask.dim() != 3 || batch.mask.size(0) != B)
    throw Error("cops train_step: mask must be [B,H,W]");
  if (!batch.label.defined() || batch.label.numel() != B) throw Error("cops train_step: label must be [B]");
  const at::Tensor& g = batch.global;
  at::Tensor gt = batch.mask.to(g.scalar_type());
  at::Tensor gt_p = patch_mask(gt, side);
  auto zero = [&] { return at::zeros({}, g.options()); };
  std::map<std::string, at::Tensor> L;

  // ICTS: one posterior sample per image, s = Dec(mu + exp(log_var/2) * eps).
  at::Tensor cls;
  int64_t R = 1;
  if (o.icts) {
    R = o.r_train;
    auto [mu, log_var] = vae_encoder.forward(g);
    at::Tensor z = at::exp(0.5 * log_var).unsqueeze(1) * batch.noise.to(g.scalar_type()) + mu.unsqueeze(1);
    cls = vae_decoder.forward(z);  // [B,R,D]
    L["kl"] = kl_loss(mu, log_var, red);
    L["rec"] = o.reconstruction ? reconstruction_loss(g, cls, o.reconstruction_mode, red) : zero();
  } else {
    L["kl"] = zero();
    L["rec"] = zero();
  }

  // ESTS: prototypes from the smoothed patch tokens; only the center losses train them.
  at::Tensor f = smooth_patches(batch.patch.to(g.scalar_type()), o.train_kernel);
  auto [f_sim, f_cos] = normalise_patches(f);  // once for the distances and the probabilities
  at::Tensor proto_n, proto_a;
  if (o.ests) {
    at::Tensor protos = extractor.forward(at::cat({t_n, t_a}, 0), f);
    proto_n = protos.narrow(1, 0, M);
    proto_a = protos.narrow(1, M, M);
    at::Tensor d_n = prototype_distance_normed(f_cos, proto_n);
    at::Tensor d_a = prototype_distance_normed(f_cos, proto_a);
    L["gather"] = gather_loss(d_n, gt_p, red);
    L["scatter"] = scatter_loss(d_a, gt_p, red);
    proto_n = proto_n.detach();
    proto_a = proto_a.detach();
  } else {
    L["gather"] = zero();
    L["scatter"] = zero();
  }

  at::Tensor e = text_embeddings(proto_n, proto_a, cls, B, R);  // [B,2,E]

  // Segmentation: patch probabilities upsampled to the mask size.
  at::Tensor probs = patch_probabilities_normed(f_sim, e, o.temperature);  // [B,P,2]
  const int64_t H = gt.size(1), W = gt.size(2);
  at::Tensor counts;  // nearest + 0/1 mask: the pixel sums as per-patch sums weighted by pixel counts
  NearestCells cells;
  if (o.train_upsample == UpsampleMode::kNearest && o.patch_resolution_losses) {
    cells = nearest_cells(side, H, W, g.options());
    counts = class_counts(cells, gt);
  }
  if (counts.defined()) {
    L["focal"] = focal_loss_cells(probs, counts, B * H * W, o.focal_gamma, o.focal_smooth, red);
    L["dice"] = dice_loss_cells(probs.select(-1, 1), counts.select(-1, 1), cells.pixels, red);
    L["dice_inv"] = dice_loss_cells(probs.select(-1, 0), counts.select(-1, 0), cells.pixels, red);
  } else {
    at::Tensor map = probs.reshape({B, side, side, 2}).permute({0, 3, 1, 2});
    if (o.train_upsample == UpsampleMode::kNearest)
      map = at::upsample_nearest2d(map, {H, W});
    else
      map = at::upsample_bilinear2d(map, {H, W}, /*align_corners=*/false);
    L["focal"] = focal_loss(map, gt, o.focal_gamma, o.focal_smooth, red);
    L["dice"] = dice_loss(map.select(1, 1), gt, red);
    L["dice_inv"] = dice_loss(map.select(1, 0), 1 - gt, red);
  }
  L["patch"] = L["focal"] + L["dice"] + L["dice_inv"];

  // Classification: CE on cos(g^, e)/T.
  at::Tensor gn = g / g.norm(2, {-1}, true);
  at::Tensor logits = at::bmm(gn.unsqueeze(1), e.transpose(1, 2)).select(1, 0) / o.temperature;
  L["image"] = image_ce_loss(logits, batch.label, red);

  L["total"] = o.w_image * L["image"] + o.w_patch * L["patch"] + o.w_gather * L["gather"] +
               o.w_scatter * L["scatter"] + o.w_kl * L["kl"] + o.w_rec * L["rec"];
  return L;
}

CopsInference CopsModel::infer(const CopsBatch& batch) const {
  return infer(batch, CopsTestSettings{options_.test_kernel, options_.alpha, options_.beta});
}

CopsInference CopsModel::infer(const CopsBatch& batch, const CopsTestSettings& s) const {
  const CopsOptions& o = options_;
  at::NoGradGuard no_grad;
  const int64_t D = o.feature_dim, M = o.num_prototypes;
  check_batch(batch, D, o.icts ? o.r_test : 0, "infer");
  const int64_t B = batch.global.size(0);
  const int64_t side = grid_side(batch.patch);
  const at::Tensor& g = batch.global;
  CopsInference out;

  at::Tensor cls;
  int64_t R = 1;
  if (o.icts) {
    R = o.r_test;
    cls = vae_decoder.forward(batch.noise.to(g.scalar_type()));  // prior samples, encoder unused
  }
  at::Tensor f = smooth_patches(batch.patch.to(g.scalar_type()), s.kernel);
  auto [f_sim, f_cos] = normalise_patches(f);
  at::Tensor proto_n, proto_a;
  if (o.ests) {
    at::Tensor protos = extractor.forward(at::cat({t_n, t_a}, 0), f);
    proto_n = protos.narrow(1, 0, M);
    proto_a = protos.narrow(1, M, M);
    out.d_n = prototype_distance_normed(f_cos, proto_n);
    out.d_a = prototype_distance_normed(f_cos, proto_a);
  }
  at::Tensor e = text_embeddings(proto_n, proto_a, cls, B, R);
  at::Tensor probs = patch_probabilities_normed(f_sim, e, o.temperature);
  if (o.saga && o.ests) probs = probs * saga_weight(out.d_n, out.d_a, s.alpha, o.saga_minmax).unsqueeze(-1);
  out.anomaly_map = probs.select(-1, 1).reshape({B, side, side});
  at::Tensor gn = g / g.norm(2, {-1}, true);
  at::Tensor p_global = at::softmax(at::bmm(gn.unsqueeze(1), e.transpose(1, 2)).select(1, 0) / o.temperature, -1);
  out.global_prob = p_global.select(-1, 1);
  out.image_score = fuse_image_score(p_global, probs, s.beta);
  return out;
}

}  // namespace zsad::models::cops
