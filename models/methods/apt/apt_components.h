#pragma once
// APT building blocks as functions over tensors, each testable on its own (tests/models/apt_*):
// class-name text, object mask (OAGM), synthetic anomaly batches, SMGS (gradient projection,
// meta-prompt update, guidance losses), PromptAD-style losses, memory bank and score fusion.
// Shapes: B images, P = h*w patches, E embedding dim, C width of the memory-bank layers.
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "data/synthesis.h"
#include "models/methods/apt/apt_options.h"

namespace zsad::models::apt {

// PromptAD's class-name mapping (macaroni1/2 -> macaroni, pcb1-4 -> printed circuit board,
// pipe_fryum -> pipe fryum, chewinggum -> chewing gum, metal_nut -> metal nut); other names keep
// their text with '_' replaced by ' '. kNone: only the '_' replacement.
std::string class_name_text(const std::string& cls, ClassNameMapping mapping);

// "{}" in the template replaced by `word`.
std::string fill_template(const std::string& templ, const std::string& word);

// --- object-attentive anomaly synthesis (spec §2) ---------------------------------------------

// OAGM object mask: patches [P,E] and text features t_obj, t_bg [E] (all normalised inside),
// objectness o_p = softmax(scale * [<F_p,t_obj>, <F_p,t_bg>])[0] on the grid (P = grid^2),
// bilinear upsampling (align_corners false) to size x size, > threshold, dilated by `dilate`
// patches (square structuring element of (2*dilate*patch+1) pixels). A mask covering less than
// min_fraction of the image becomes all ones. Returns uint8 [size,size] 0/1.
at::Tensor object_mask_from_patches(const at::Tensor& patches, const at::Tensor& t_obj, const at::Tensor& t_bg,
                                    int64_t grid, int64_t size, double scale, double threshold, int64_t dilate,
                                    double min_fraction);

// The data library's synthesis config for these options.
data::AnomalySynthesisConfig synthesis_config(const AptOptions& o);

struct SyntheticBatch {
  at::Tensor images;  // [K*r,3,S,S] float in [0,1], shot-major (shot 0 variants 0..r-1, shot 1, ...)
  at::Tensor masks;   // [K*r,S,S] float 0/1
};

// r variants of every shot: images01 [K,3,S,S] in [0,1], object_masks [K,S,S] uint8 (undefined =
// no confinement). Variant v of shot i draws from its own generator keyed by
// (seed, stream, step, i*r+v), so fresh noise every step and reproducible for a seed.
SyntheticBatch synthesize_batch(const at::Tensor& images01, const at::Tensor& object_masks, int64_t r,
                                const data::AnomalySynthesisConfig& cfg, uint64_t seed, uint64_t stream,
                                uint64_t step);
// The variants `variants` (global indices j = i*r + v, any subset, any order) of that batch, drawn
// exactly as synthesize_batch draws them: rows equal synthesize_batch's rows j. Data-parallel
// training synthesises only a rank's share this way.
SyntheticBatch synthesize_variants(const at::Tensor& images01, const at::Tensor& object_masks, int64_t r,
                                   const data::AnomalySynthesisConfig& cfg, uint64_t seed, uint64_t stream,
                                   uint64_t step, const std::vector<int64_t>& variants);

// The latent variant of the synthesis (spec §2, optional): variant row n (global index
// variants[n] = i*r + v) keeps shot i's patch tokens, and the patches its region mask
// region_masks[n] ([S,S], from synthesize_variants) covers by at least half — or, if none, the
// most covered ones — get N(0, sigma^2/D) noise from a generator keyed like the pixel noise
// (seed, stream, step, j), then are renormalised. clean_patches: [K,P,D] unit rows.
struct LatentVariants {
  at::Tensor patches;      // [n,P,D] unit rows
  at::Tensor patch_masks;  // [n,h,h] 0/1: the perturbed patches (the variants' labels)
};
LatentVariants latent_variants(const at::Tensor& clean_patches, const at::Tensor& region_masks,
                               const std::vector<int64_t>& variants, int64_t r, double sigma, uint64_t seed,
                               uint64_t stream, uint64_t step);

// CLIP normalisation round trip (data/transforms.h constants): [B,3,S,S].
at::Tensor clip_denormalize(const at::Tensor& x);
at::Tensor clip_normalize(const at::Tensor& x01);
// CLIP-normalised RGB images as CLIP-normalised BGR-read-as-RGB ones (PromptAD's test loader).
at::Tensor bgr_as_rgb(const at::Tensor& x);

// --- SMGS (spec §3.2-3.3) ---------------------------------------------------------------------

// ProGrad's rule for one parameter tensor: with u = g_g/||g_g||, if <g_d,u> < 0 the conflicting
// component is removed, g = g_d - lambda*<g_d,u>*u; otherwise (or when ||g_g|| = 0) g = g_d.
at::Tensor project_gradient(const at::Tensor& g_d, const at::Tensor& g_g, double lambda);

// Meta-prompt update after an epoch: t <- normalize(beta*t + (1-beta)*t_learned) (t_learned is
// detached), then the floor t <- normalize(t + gamma*t0). All [E] or [...,E].
at::Tensor meta_prompt_update(const at::Tensor& t_meta, const at::Tensor& t_learned, const at::Tensor& t0, double beta,
                              double gamma);

// Normalised mean of features [N,E]: normalize(mean(x)) (raw) or normalize(mean(normalize(x))).
at::Tensor anchor(const at::Tensor& feats, AnchorMean mode);

// Two-way logits tau*[<f,t_n>, <f,t_a>] for normalised f [...,E] and t_n, t_a [E] -> [...,2].
at::Tensor two_way_logits(const at::Tensor& f, const at::Tensor& t_n, const at::Tensor& t_a, double tau);

// ProGrad's KL guidance: -sum softmax(tea/T) * log_softmax(stu/T) * T^2, mean over rows.
// teacher/student logits [N,2].
at::Tensor kl_guidance(const at::Tensor& teacher_logits, const at::Tensor& student_logits, double T);

// Feature-level guidance ||t_a - m_a||^2 + ||t_n - m_n||^2.
at::Tensor l2_guidance(const at::Tensor& t_n, const at::Tensor& t_a, const at::Tensor& m_n, const at::Tensor& m_a);

// --- PromptAD one-class terms (spec §3.3) -----------------------------------------------------

// CE(tau*[<f,t_n>, <f,t_a^j> for all j], target 0), mean over f [N,E]; t_a_all [J,E] normalised.
at::Tensor v2t_loss(const at::Tensor& f, const at::Tensor& t_n, const at::Tensor& t_a_all, double tau);
// mean_i relu(||f_i - t_n||^2 - ||f_i - t_a||^2 + margin), squared norms over the feature axis.
at::Tensor triplet_loss(const at::Tensor& f, const at::Tensor& t_n, const at::Tensor& t_a, double margin);

// AUROC of scores against 0/1 labels (same length), ties counted half (Mann-Whitney U, equal
// to sklearn's roc_auc_score); 0.5 when one class is absent.
double binary_auroc(const at::Tensor& scores, const at::Tensor& labels);

// --- memory bank and scoring (spec §4) --------------------------------------------------------

// Visual map v [B,P] = mean over layers l of min_j (1 - <q_l,p, bank_l,j>)/2 with q normalised
// inside ([B,P,C_l]) and bank_l [N_l,C_l] normalised.
at::Tensor memory_visual_map(const std::vector<at::Tensor>& queries, const std::vector<at::Tensor>& banks);

// Pixel-level map fusion of text map a and visual map v (same shape).
at::Tensor fuse_maps(const at::Tensor& a, const at::Tensor& v, ScoreFusion fusion);
// Image score fusion of s_txt and s_vis ([B]).
at::Tensor fuse_scores(const at::Tensor& s_txt, const at::Tensor& s_vis, ScoreFusion fusion);

}  // namespace zsad::models::apt
