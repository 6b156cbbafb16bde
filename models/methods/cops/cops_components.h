#pragma once
// CoPS building blocks as plain tensors + functions (no torch::nn), so that parameter names are the
// official checkpoint's keys and the components can be tested one by one against python3-torch.
// Shapes: B images, P = side*side patches, D feature dim, M prototypes, R VAE samples.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "models/methods/cops/cops_options.h"
#include "models/methods/cops/global_reduction.h"

namespace zsad::models::cops {

// (name, pointer to the tensor member) in checkpoint order; used for save/load and optimisers.
using NamedTensorRefs = std::vector<std::pair<std::string, at::Tensor*>>;

// ESTS prototype extractor (code: Prototype_Extractor(768, 12)): one pre-LN cross-attention block,
//   x = t repeated over B;  x += MHA(q=ln_1(x), k=v=ln_1(F));  x += c_proj(QuickGELU(c_fc(ln_2(x)))).
// ln_1 is shared by the queries and the image tokens; c_fc/c_proj are D->D (not 4x). The attention
// equals torch.nn.MultiheadAttention(batch_first=True) with its parameter names.
struct PrototypeExtractor {
  int64_t heads = 12;
  // true: the same attention computed with W_k/W_v folded into the few queries (exact in real
  // arithmetic, ~5x faster at P=1369); false: projects every image token as torch does.
  bool reassociate = true;
  at::Tensor in_proj_weight, in_proj_bias;        // [3D,D], [3D]  -> attn.in_proj_*
  at::Tensor out_proj_weight, out_proj_bias;      // [D,D], [D]    -> attn.out_proj.*
  at::Tensor ln_1_weight, ln_1_bias, ln_2_weight, ln_2_bias;
  at::Tensor c_fc_weight, c_fc_bias, c_proj_weight, c_proj_bias;  // -> mlp.c_fc.*, mlp.c_proj.*

  // Code's weights_init: Linear (incl. out_proj) W ~ N(0, std), b = 0; LayerNorm 1/0;
  // in_proj_weight keeps PyTorch's xavier_uniform_, in_proj_bias = 0.
  static PrototypeExtractor init(int64_t dim, int64_t heads, double std, at::Generator gen);
  // queries [Q,D] (shared over the batch), feats [B,P,D] -> [B,Q,D]. Each query row is
  // independent of the others, so t_n and t_a can go through in one call.
  at::Tensor forward(const at::Tensor& queries, const at::Tensor& feats) const;
  void collect(NamedTensorRefs& out, const std::string& prefix);
};

// ICTS VAE (code: VAE_Encoder / VAE_Decoder with ctx_dim = dim = D).
struct VaeEncoder {
  at::Tensor net_0_weight, net_0_bias, mean_weight, mean_bias, log_var_weight, log_var_bias;
  static VaeEncoder init(int64_t dim, double std, at::Generator gen);
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& g) const;  // (mu, log_var), [...,D]
  void collect(NamedTensorRefs& out, const std::string& prefix);         // net.0.*, mean.*, log_var.*
};
struct VaeDecoder {
  at::Tensor net_0_weight, net_0_bias, net_2_weight, net_2_bias;
  static VaeDecoder init(int64_t dim, double std, at::Generator gen);
  at::Tensor forward(const at::Tensor& z) const;  // Linear -> ReLU -> Linear
  void collect(NamedTensorRefs& out, const std::string& prefix);  // net.0.*, net.2.*
};

// ---- functional pieces -------------------------------------------------------------------

// average_neighbor: [B,P,D] -> avg_pool2d(k, stride 1, pad k/2, count_include_pad) -> [B,P,D].
at::Tensor smooth_patches(const at::Tensor& patch, int64_t kernel);

// gt [B,H,W] (0/1) -> max_pool2d(H/side) -> [B,side*side]; a patch is anomalous if any pixel is.
at::Tensor patch_mask(const at::Tensor& gt, int64_t side);

// d(p) = min_k (1 - cos(f_p, protos_k)), with F.cosine_similarity's eps 1e-8. f [B,P,D],
// protos [B,M,D] -> [B,P].
at::Tensor prototype_distance(const at::Tensor& f, const at::Tensor& protos);
// The same from f already divided by max(|f|, 1e-8) (normalised once for several calls).
at::Tensor prototype_distance_normed(const at::Tensor& f_normed, const at::Tensor& protos);
// f / |f| (no eps, as the code's similarity) and, when every |f| >= 1e-8, the identical tensor
// serves F.cosine_similarity's f / max(|f|, 1e-8) as well: {similarity form, cosine form}.
std::pair<at::Tensor, at::Tensor> normalise_patches(const at::Tensor& f);

// L_gather = mean over normal patches of d_n; L_scatter = mean over anomalous patches of d_a, or 0
// when the (global) batch has none.
at::Tensor gather_loss(const at::Tensor& d_n, const at::Tensor& mask_p, const GlobalReduction& red = {});
at::Tensor scatter_loss(const at::Tensor& d_a, const at::Tensor& mask_p, const GlobalReduction& red = {});

// mean_b( -0.5 * sum_c (1 + log_var - mu^2 - exp(log_var)) ); mu/log_var [B,D] or [B,R,D].
at::Tensor kl_loss(const at::Tensor& mu, const at::Tensor& log_var, const GlobalReduction& red = {});

// g [B,D] raw global features, s [B,R,D] decoded samples.
// kAllPairs (code): mean over (sample i, image j, channel c) of (g_j,c - s_i,c)^2, j over the
//   global batch; kPerSample: mean_(b,r) sum_c (g_b,c - s_b,r,c)^2.
at::Tensor reconstruction_loss(const at::Tensor& g, const at::Tensor& s, ReconstructionMode mode,
                               const GlobalReduction& red = {});

// AnomalyCLIP's FocalLoss on probabilities: probs [B,C,H,W], target [B,H,W] class ids (0/1).
// one_hot clamped to [smooth/(C-1), 1-smooth] (built in float32 as the code does), pt = sum + smooth,
// loss = -(1-pt)^gamma * log(pt), mean over all B*H*W pixels.
at::Tensor focal_loss(const at::Tensor& probs, const at::Tensor& target, double gamma = 2.0,
                      double smooth = 1e-5, const GlobalReduction& red = {});

// Nearest-upsampled maps at patch resolution. `cell_of_pixel` [H*W] int64 is the patch index that
// upsample_nearest2d (same dtype, same sizes) copies to each pixel (see nearest_cells). Then a sum
// over pixels is a sum over patches weighted by pixel counts, exactly in real arithmetic (float:
// summation order only):
//   counts [B,P,C]: pixels of class c (target value c) whose value comes from patch p.
struct NearestCells {
  at::Tensor cell_of_pixel;  // [H*W] int64
  at::Tensor pixels;         // [P] pixels per patch (target dtype)
};
NearestCells nearest_cells(int64_t side, int64_t H, int64_t W, const at::TensorOptions& options);
// counts [B,P,2] of target pixels equal to 0 / 1 per patch; undefined if a target value is neither.
at::Tensor class_counts(const NearestCells& cells, const at::Tensor& target);
// focal_loss(upsample_nearest(probs), target) from probs [B,P,C], counts [B,P,C] and the number
// of pixels B*H*W (the local mean's denominator).
at::Tensor focal_loss_cells(const at::Tensor& probs, const at::Tensor& counts, int64_t pixels, double gamma,
                            double smooth, const GlobalReduction& red = {});
// dice_loss(upsample_nearest(p), t) from p [B,P], t_sum [B,P] (sum of t over each patch's pixels)
// and pixels [P].
at::Tensor dice_loss_cells(const at::Tensor& p, const at::Tensor& t_sum, const at::Tensor& pixels,
                           const GlobalReduction& red = {});

// BinaryDiceLoss: 1 - mean_b (2 sum(p t) + 1) / (sum p + sum t + 1); p, t [B,...].
at::Tensor dice_loss(const at::Tensor& p, const at::Tensor& t, const GlobalReduction& red = {});

// F.cross_entropy(logits [B,C], labels [B] int64), mean over the batch.
at::Tensor image_ce_loss(const at::Tensor& logits, const at::Tensor& labels, const GlobalReduction& red = {});

// softmax(cos(f^, e)/T): f [B,P,D] (normalised inside, no eps, like the code), e [B,2,D]
// normalised text embeddings -> [B,P,2].
at::Tensor patch_probabilities(const at::Tensor& f, const at::Tensor& e, double temperature);
// The same from f / |f| (normalise_patches().first).
at::Tensor patch_probabilities_normed(const at::Tensor& f_normed, const at::Tensor& e, double temperature);

// SAGA spatial weight W = alpha*minmax(d_n) + (1-alpha)*(1-minmax(d_a)), [B,P]; minmax per image or
// over the whole batch tensor (code).
at::Tensor saga_weight(const at::Tensor& d_n, const at::Tensor& d_a, double alpha, MinMaxScope scope);

// Glocal image score: beta * p_global[:,1] + (1-beta) * max_p probs[:,p,1]; p_global [B,2], probs [B,P,2].
at::Tensor fuse_image_score(const at::Tensor& p_global, const at::Tensor& probs, double beta);

}  // namespace zsad::models::cops
