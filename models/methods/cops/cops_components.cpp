#include "models/methods/cops/cops_components.h"

#include <cmath>

#include <ATen/ATen.h>

#include "common/error.h"

namespace zsad::models::cops {
namespace {

at::Tensor normal_param(std::vector<int64_t> shape, double std, at::Generator& gen) {
  at::Tensor t = at::empty(shape, at::kFloat);
  t.normal_(0.0, std, gen);
  return t;
}

// Code's weights_init for nn.Linear: W ~ N(0, std), b = 0.
void init_linear(at::Tensor& w, at::Tensor& b, int64_t out, int64_t in, double std, at::Generator& gen) {
  w = normal_param({out, in}, std, gen);
  b = at::zeros({out}, at::kFloat);
}

at::Tensor quick_gelu(const at::Tensor& x) { return x * at::sigmoid(1.702 * x); }

void require(bool ok, const std::string& what) {
  if (!ok) throw Error("cops: " + what);
}

}  // namespace

at::Tensor global_mean(const at::Tensor& sum_local, double count_local, const GlobalReduction& red,
                       bool zero_if_empty) {
  if (!red.active()) {
    if (zero_if_empty && count_local == 0) return at::zeros({}, sum_local.options().requires_grad(false));
    return sum_local / count_local;
  }
  const double count = red.sum(at::full({}, count_local, at::kDouble)).item<double>();
  if (zero_if_empty && count == 0) return at::zeros({}, sum_local.options().requires_grad(false));
  at::Tensor total = red.sum(sum_local.detach().clone());
  at::Tensor value = total / count;
  if (!sum_local.requires_grad()) return value;
  // Same value as `value` (the difference is exactly 0), gradient of the local part only.
  return value + (sum_local - sum_local.detach()) * (red.grad_scale / count);
}

// ---- PrototypeExtractor -----------------------------------------------------------------------

PrototypeExtractor PrototypeExtractor::init(int64_t dim, int64_t heads, double std, at::Generator gen) {
  PrototypeExtractor e;
  e.heads = heads;
  // nn.MultiheadAttention._reset_parameters: xavier_uniform_ on [3D, D] (fan_in D, fan_out 3D).
  const double a = std::sqrt(6.0 / static_cast<double>(dim + 3 * dim));
  e.in_proj_weight = at::empty({3 * dim, dim}, at::kFloat);
  e.in_proj_weight.uniform_(-a, a, gen);
  e.in_proj_bias = at::zeros({3 * dim}, at::kFloat);
  init_linear(e.out_proj_weight, e.out_proj_bias, dim, dim, std, gen);
  e.ln_1_weight = at::ones({dim}, at::kFloat);
  e.ln_1_bias = at::zeros({dim}, at::kFloat);
  e.ln_2_weight = at::ones({dim}, at::kFloat);
  e.ln_2_bias = at::zeros({dim}, at::kFloat);
  init_linear(e.c_fc_weight, e.c_fc_bias, dim, dim, std, gen);
  init_linear(e.c_proj_weight, e.c_proj_bias, dim, dim, std, gen);
  return e;
}

at::Tensor PrototypeExtractor::forward(const at::Tensor& queries, const at::Tensor& feats) const {
  require(queries.dim() == 2 && feats.dim() == 3 && queries.size(1) == feats.size(2),
          "extractor expects queries [Q,D] and features [B,P,D]");
  const int64_t B = feats.size(0), P = feats.size(1), D = feats.size(2), Q = queries.size(0);
  const int64_t hd = D / heads;
  at::Tensor x = queries.unsqueeze(0).expand({B, Q, D});
  at::Tensor qn = at::layer_norm(x, {D}, ln_1_weight, ln_1_bias, 1e-5);
  // Frozen image tokens (cached features): ln_1's affine is folded into the few queries below, so
  // the normalised tokens carry no gradient and the backward never forms one for all P tokens.
  const bool fold_ln = reassociate && !feats.requires_grad();
  at::Tensor fn = fold_ln ? at::layer_norm(feats, {D}, {}, {}, 1e-5)
                          : at::layer_norm(feats, {D}, ln_1_weight, ln_1_bias, 1e-5);
  auto w = in_proj_weight.split(D, 0);
  auto b = in_proj_bias.split(D, 0);
  at::Tensor q = at::linear(qn, w[0], b[0]).view({B, Q, heads, hd}).transpose(1, 2);
  q = q / std::sqrt(static_cast<double>(hd));  // as torch's _scaled_dot_product_attention
  at::Tensor o;
  if (reassociate) {
    // Few queries, many keys: fold W_k into the queries and W_v after the attention average
    // (q.(W_k f + b_k) = (q W_k).f + q.b_k;  sum_p a_p (W_v f_p + b_v) = W_v (sum_p a_p f_p) + b_v as
    // the weights sum to 1), which skips projecting all P tokens: ~5x fewer flops at P=1369.
    at::Tensor wk = w[1].view({heads, hd, D}), wv = w[2].view({heads, hd, D});
    at::Tensor qk = at::matmul(q, wk).reshape({B, heads * Q, D});  // [B,h*Q,D]
    at::Tensor qb = (q * b[1].view({1, heads, 1, hd})).sum(-1, true);
    at::Tensor scores, mixed;
    if (fold_ln) {
      // fn = x^ * gamma + beta:  qk.fn = (qk * gamma).x^ + qk.beta;  sum_p a_p fn_p = (a x^) * gamma + (sum_p a_p) beta.
      scores = (at::matmul(qk * ln_1_weight, fn.transpose(1, 2)) + at::matmul(qk, ln_1_bias).unsqueeze(-1))
                   .view({B, heads, Q, P}) + qb;
      at::Tensor a = at::softmax(scores, -1).reshape({B, heads * Q, P});
      mixed = (at::matmul(a, fn) * ln_1_weight + a.sum(-1, true) * ln_1_bias).view({B, heads, Q, D});
    } else {
      scores = at::matmul(qk, fn.transpose(1, 2)).view({B, heads, Q, P}) + qb;
      at::Tensor attn = at::softmax(scores, -1);
      mixed = at::matmul(attn.reshape({B, heads * Q, P}), fn).view({B, heads, Q, D});
    }
    o = at::matmul(mixed, wv.transpose(1, 2)) + b[2].view({1, heads, 1, hd});
  } else {
    at::Tensor k = at::linear(fn, w[1], b[1]).view({B, P, heads, hd}).transpose(1, 2);
    at::Tensor v = at::linear(fn, w[2], b[2]).view({B, P, heads, hd}).transpose(1, 2);
    o = at::matmul(at::softmax(at::matmul(q, k.transpose(-2, -1)), -1), v);
  }
  o = o.transpose(1, 2).reshape({B, Q, D});
  x = x + at::linear(o, out_proj_weight, out_proj_bias);
  at::Tensor h = at::layer_norm(x, {D}, ln_2_weight, ln_2_bias, 1e-5);
  return x + at::linear(quick_gelu(at::linear(h, c_fc_weight, c_fc_bias)), c_proj_weight, c_proj_bias);
}

void PrototypeExtractor::collect(NamedTensorRefs& out, const std::string& p) {
  out.push_back({p + "attn.in_proj_weight", &in_proj_weight});
  out.push_back({p + "attn.in_proj_bias", &in_proj_bias});
  out.push_back({p + "attn.out_proj.weight", &out_proj_weight});
  out.push_back({p + "attn.out_proj.bias", &out_proj_bias});
  out.push_back({p + "ln_1.weight", &ln_1_weight});
  out.push_back({p + "ln_1.bias", &ln_1_bias});
  out.push_back({p + "ln_2.weight", &ln_2_weight});
  out.push_back({p + "ln_2.bias", &ln_2_bias});
  out.push_back({p + "mlp.c_fc.weight", &c_fc_weight});
  out.push_back({p + "mlp.c_fc.bias", &c_fc_bias});
  out.push_back({p + "mlp.c_proj.weight", &c_proj_weight});
  out.push_back({p + "mlp.c_proj.bias", &c_proj_bias});
}

// ---- VAE --------------------------------------------------------------------------------------

VaeEncoder VaeEncoder::init(int64_t dim, double std, at::Generator gen) {
  VaeEncoder e;
  init_linear(e.net_0_weight, e.net_0_bias, dim, dim, std, gen);
  init_linear(e.mean_weight, e.mean_bias, dim, dim, std, gen);
  init_linear(e.log_var_weight, e.log_var_bias, dim, dim, std, gen);
  return e;
}

std::pair<at::Tensor, at::Tensor> VaeEncoder::forward(const at::Tensor& g) const {
  at::Tensor h = at::relu(at::linear(g, net_0_weight, net_0_bias));
  return {at::linear(h, mean_weight, mean_bias), at::linear(h, log_var_weight, log_var_bias)};
}

void VaeEncoder::collect(NamedTensorRefs& out, const std::string& p) {
  out.push_back({p + "net.0.weight", &net_0_weight});
  out.push_back({p + "net.0.bias", &net_0_bias});
  out.push_back({p + "mean.weight", &mean_weight});
  out.push_back({p + "mean.bias", &mean_bias});
  out.push_back({p + "log_var.weight", &log_var_weight});
  out.push_back({p + "log_var.bias", &log_var_bias});
}

VaeDecoder VaeDecoder::init(int64_t dim, double std, at::Generator gen) {
  VaeDecoder d;
  init_linear(d.net_0_weight, d.net_0_bias, dim, dim, std, gen);
  init_linear(d.net_2_weight, d.net_2_bias, dim, dim, std, gen);
  return d;
}

at::Tensor VaeDecoder::forward(const at::Tensor& z) const {
  return at::linear(at::relu(at::linear(z, net_0_weight, net_0_bias)), net_2_weight, net_2_bias);
}

void VaeDecoder::collect(NamedTensorRefs& out, const std::string& p) {
  out.push_back({p + "net.0.weight", &net_0_weight});
  out.push_back({p + "net.0.bias", &net_0_bias});
  out.push_back({p + "net.2.weight", &net_2_weight});
  out.push_back({p + "net.2.bias", &net_2_bias});
}

// ---- functional pieces ------------------------------------------------------------------------

at::Tensor smooth_patches(const at::Tensor& patch, int64_t kernel) {
  const int64_t B = patch.size(0), P = patch.size(1), D = patch.size(2);
  const auto side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(P))));
  require(side * side == P, "patch count " + std::to_string(P) + " is not a square");
  at::Tensor x = patch.transpose(1, 2).reshape({B, D, side, side});
  x = at::avg_pool2d(x, {kernel, kernel}, {1, 1}, {kernel / 2, kernel / 2}, /*ceil_mode=*/false,
                     /*count_include_pad=*/true);
  return x.flatten(2).transpose(1, 2);
}

at::Tensor patch_mask(const at::Tensor& gt, int64_t side) {
  const int64_t H = gt.size(1);
  require(H % side == 0 && gt.size(2) == H, "mask size " + std::to_string(H) + " is not a multiple of the patch grid " +
                                                std::to_string(side));
  const int64_t k = H / side;
  return at::max_pool2d(gt.unsqueeze(1), {k, k}, {k, k}).flatten(1);
}

constexpr double kCosEps = 1e-8;  // F.cosine_similarity's default

at::Tensor prototype_distance(const at::Tensor& f, const at::Tensor& protos) {
  return prototype_distance_normed(f / at::linalg_vector_norm(f, 2, {-1}, true).clamp_min(kCosEps), protos);
}

at::Tensor prototype_distance_normed(const at::Tensor& fn, const at::Tensor& protos) {
  at::Tensor pn = protos / at::linalg_vector_norm(protos, 2, {-1}, true).clamp_min(kCosEps);
  at::Tensor cos = at::matmul(fn, pn.transpose(1, 2));  // [B,P,M]
  return std::get<0>(at::min(1.0 - cos, -1));
}

std::pair<at::Tensor, at::Tensor> normalise_patches(const at::Tensor& f) {
  at::Tensor norm = at::linalg_vector_norm(f, 2, {-1}, true);
  at::Tensor sim = f / norm;
  if ((norm >= kCosEps).all().item<bool>()) return {sim, sim};  // clamp_min(eps) is the identity
  return {sim, f / norm.clamp_min(kCosEps)};
}

at::Tensor gather_loss(const at::Tensor& d_n, const at::Tensor& mask_p, const GlobalReduction& red) {
  at::Tensor sel = d_n.masked_select(mask_p == 0);
  return global_mean(sel.sum(), static_cast<double>(sel.numel()), red);
}

at::Tensor scatter_loss(const at::Tensor& d_a, const at::Tensor& mask_p, const GlobalReduction& red) {
  at::Tensor sel = d_a.masked_select(mask_p != 0);
  return global_mean(sel.sum(), static_cast<double>(sel.numel()), red, /*zero_if_empty=*/true);
}

at::Tensor kl_loss(const at::Tensor& mu, const at::Tensor& log_var, const GlobalReduction& red) {
  at::Tensor per_row = -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(-1);
  return global_mean(per_row.sum(), static_cast<double>(per_row.numel()), red);
}

at::Tensor reconstruction_loss(const at::Tensor& g, const at::Tensor& s, ReconstructionMode mode,
                               const GlobalReduction& red) {
  const int64_t D = g.size(-1);
  if (mode == ReconstructionMode::kPerSample) {
    at::Tensor per = (g.unsqueeze(1) - s).pow(2).sum(-1);  // [B,R]
    return global_mean(per.sum(), static_cast<double>(per.numel()), red);
  }
  // The code's broadcast (g [B,D] - s.view(B,1,1,D)) -> [B,1,B,D]: every sample against every image
  // of the (global) batch.
  if (red.active() && !red.gather)
    throw Error("cops: the all-pairs reconstruction term needs GlobalReduction::gather under data parallelism");
  at::Tensor g_all = red.active() ? red.gather(g.detach()) : g;
  at::Tensor diff = g_all.view({1, 1, -1, D}) - s.reshape({-1, 1, 1, D});
  at::Tensor terms = diff.pow(2).sum(1);  // [BR, Bg, D]
  return global_mean(terms.sum(), static_cast<double>(terms.numel()), red);
}

at::Tensor focal_loss(const at::Tensor& probs, const at::Tensor& target, double gamma, double smooth,
                      const GlobalReduction& red) {
  const int64_t C = probs.size(1);
  at::Tensor logit = probs.flatten(2).permute({0, 2, 1}).reshape({-1, C});
  at::Tensor idx = target.reshape({-1, 1}).to(at::kLong);
  // torch.FloatTensor in the code: the clamp bounds are float32 values whatever the map dtype.
  at::Tensor one_hot = at::zeros({idx.size(0), C}, at::kFloat).scatter_(1, idx, 1.0);
  if (smooth != 0) one_hot = at::clamp(one_hot, smooth / static_cast<double>(C - 1), 1.0 - smooth);
  one_hot = one_hot.to(logit.scalar_type());
  at::Tensor pt = (one_hot * logit).sum(1) + smooth;
  at::Tensor loss = -1 * at::pow(1 - pt, gamma) * pt.log();
  return global_mean(loss.sum(), static_cast<double>(loss.numel()), red);
}

NearestCells nearest_cells(int64_t side, int64_t H, int64_t W, const at::TensorOptions& options) {
  // The patch index through the same upsample_nearest2d (its float index arithmetic included).
  const int64_t P = side * side;
  at::Tensor idx = at::arange(P, options.requires_grad(false)).view({1, 1, side, side});
  NearestCells c;
  c.cell_of_pixel = at::upsample_nearest2d(idx, {H, W}).reshape({H * W}).round().to(at::kLong);
  c.pixels = at::bincount(c.cell_of_pixel, {}, P).to(options.dtype());
  return c;
}

at::Tensor class_counts(const NearestCells& cells, const at::Tensor& target) {
  const int64_t B = target.size(0), P = cells.pixels.size(0);
  at::Tensor t = target.flatten(1);
  at::Tensor is_one = t == 1;
  if (!(is_one | (t == 0)).all().item<bool>()) return {};  // dice needs the values, focal the classes
  at::Tensor one = is_one.to(cells.pixels.scalar_type());
  at::Tensor n1 = at::zeros({B, P}, cells.pixels.options()).scatter_add_(1, cells.cell_of_pixel.expand({B, -1}), one);
  return at::stack({cells.pixels.expand({B, P}) - n1, n1}, -1);
}

at::Tensor focal_loss_cells(const at::Tensor& probs, const at::Tensor& counts, int64_t pixels, double gamma,
                            double smooth, const GlobalReduction& red) {
  const int64_t C = probs.size(-1);
  // Row c = the clamped one-hot of class c, built in float32 as focal_loss does.
  at::Tensor one_hot = at::eye(C, at::kFloat);
  if (smooth != 0) one_hot = at::clamp(one_hot, smooth / static_cast<double>(C - 1), 1.0 - smooth);
  one_hot = one_hot.to(probs.scalar_type());
  at::Tensor pt = (one_hot * probs.unsqueeze(-2)).sum(-1) + smooth;  // [B,P,C]: pixel of class c
  at::Tensor loss = -1 * at::pow(1 - pt, gamma) * pt.log();
  return global_mean((counts * loss).sum(), static_cast<double>(pixels), red);
}

at::Tensor dice_loss_cells(const at::Tensor& p, const at::Tensor& t_sum, const at::Tensor& pixels,
                           const GlobalReduction& red) {
  const int64_t b = p.size(0);
  at::Tensor eff = (2 * (p * t_sum).sum(1) + 1) / ((p * pixels).sum(1) + t_sum.sum(1) + 1);
  return 1 - global_mean(eff.sum(), static_cast<double>(b), red);
}

at::Tensor dice_loss(const at::Tensor& p, const at::Tensor& t, const GlobalReduction& red) {
  const int64_t b = t.size(0);
  at::Tensor pf = p.flatten(1);
  at::Tensor tf = t.flatten(1);
  at::Tensor eff = (2 * (pf * tf).sum(1) + 1) / (pf.sum(1) + tf.sum(1) + 1);
  return 1 - global_mean(eff.sum(), static_cast<double>(b), red);
}

at::Tensor image_ce_loss(const at::Tensor& logits, const at::Tensor& labels, const GlobalReduction& red) {
  at::Tensor per = -at::log_softmax(logits, -1).gather(1, labels.to(at::kLong).view({-1, 1})).squeeze(1);
  return global_mean(per.sum(), static_cast<double>(per.numel()), red);
}

at::Tensor patch_probabilities(const at::Tensor& f, const at::Tensor& e, double temperature) {
  return patch_probabilities_normed(f / at::linalg_vector_norm(f, 2, {-1}, true), e, temperature);
}

at::Tensor patch_probabilities_normed(const at::Tensor& fn, const at::Tensor& e, double temperature) {
  return at::softmax(at::bmm(fn, e.transpose(1, 2)) / temperature, -1);
}

at::Tensor saga_weight(const at::Tensor& d_n, const at::Tensor& d_a, double alpha, MinMaxScope scope) {
  auto minmax = [scope](const at::Tensor& d) {
    if (scope == MinMaxScope::kBatch) return (d - d.min()) / (d.max() - d.min());
    at::Tensor lo = std::get<0>(d.min(-1, true));
    at::Tensor hi = std::get<0>(d.max(-1, true));
    return (d - lo) / (hi - lo);
  };
  return alpha * minmax(d_n) + (1 - alpha) * (1 - minmax(d_a));
}

at::Tensor fuse_image_score(const at::Tensor& p_global, const at::Tensor& probs, double beta) {
  return beta * p_global.select(-1, 1) + (1 - beta) * std::get<0>(probs.select(-1, 1).max(-1));
}

}  // namespace zsad::models::cops
