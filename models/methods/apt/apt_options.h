#pragma once
// APT ("Beyond Human-prompting: Adaptive Prompt Tuning with Semantic Alignment for Anomaly
// Detection", arXiv 2508.16157) switches. The paper body and code are not public, so most of the
// method is a reconstruction (shared/specs/apt.md, labels [V-APT] verified from the abstract,
// [V-code:PromptAD] verified from PromptAD's code, [R] reconstructed). Every [R] choice is a key
// here so that someone holding the paper can switch it; docs/apt.md lists each key, its default
// and its status. Config keys are "method.apt.<key>" (apt_option_keys()).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace zsad::models::apt {

enum class SynthRegion { kPerlin, kShapes, kMixed };
enum class SynthNoise { kMixed, kGaussian };        // mixed: gaussian/uniform/salt-pepper 0.6/0.2/0.2
enum class SynthSpace { kPixel, kLatent };          // noise on the image | on its patch tokens
enum class ObjectMaskMode { kClip, kNone };         // OAGM object attention on/off
// meta-prompt: off, fixed anchor (MPTS), EMA anchor (SMGS), learnable token sequence (bi-level)
enum class SmgsMode { kNone, kFixed, kEma, kLearnable };
enum class SmgsGrad { kProjection, kAdditive, kBoth };
enum class SmgsLoss { kKl, kL2 };
enum class ScoreFusion { kHarmonic, kMean, kText, kVisual };
enum class AnchorMean { kRaw, kNormalized };        // t = normalize(mean(raw)) or normalize(mean(normalize))
enum class ClassNameMapping { kPromptAD, kNone };
enum class Optimizer { kSgd, kAdam };
enum class TextImageScore { kGlobal, kMaxPatch };  // s_txt from the global feature or the text map's max
enum class ImageScore { kFusion, kMaxMap };         // fuse(s_txt, s_vis) or the max of the fused map
enum class AttnMode { kVv, kLocal };                // dual path: V-V (PromptAD) | Locality-Aware Attention
enum class LocalScores { kQk, kVv };                // scores of the windowed attention
enum class ClassParallel { kShard, kDdp };          // ranks split the classes | every class over all ranks

struct AptOptions {
  // --- few-shot protocol ---
  int64_t shots = 4;                 // k normal shots per class
  int64_t shot_seed = 111;           // seed of the shot draw (PromptAD's seed); -1 = the run seed
  std::string shot_list;             // WinCLIP seed file pattern ("{cls}" replaced); "" = draw by seed
  int64_t shot_list_run = -1;        // run of the shot list (mod the runs listed for k); -1 = the run seed
  int64_t variants_per_shot = -1;    // r synthetic variants per shot; -1 = 4 for k=1, else 2

  // --- anomaly synthesis (spec §2, [R]) ---
  SynthRegion synth_region = SynthRegion::kPerlin;
  SynthNoise synth_noise = SynthNoise::kMixed;
  // latent: a variant keeps its shot's encoding; the patch tokens under the region mask get
  // N(0, synth_latent_sigma^2 / D) noise (norm ~ sigma against unit tokens) and are renormalised.
  SynthSpace synth_space = SynthSpace::kPixel;
  double synth_latent_sigma = 0.5;
  double sigma_min = 0.1, sigma_max = 0.5;
  double blur_probability = 0.0;
  double min_mask_area = 0.005;
  ObjectMaskMode object_mask = ObjectMaskMode::kClip;
  double object_logit_scale = 100.0;   // softmax(100 * [<F,t_obj>, <F,t_bg>])
  double object_threshold = 0.5;
  int64_t object_dilate = 1;           // dilation in patches
  double object_min_fraction = 0.05;   // smaller masks fall back to the whole image
  std::vector<std::string> texture_classes = {"carpet", "grid", "leather", "tile", "wood"};
  std::string object_prompt = "a photo of a {}.";
  std::string background_prompt = "a photo of the background.";

  // --- learnable prompts (spec §3.1, PromptAD layout) ---
  int64_t n_normal_prompts = 3;      // N_n
  int64_t n_ctx = 4;                 // M normal context tokens
  int64_t n_abnormal_ctx = 1;        // K abnormal suffix tokens
  int64_t n_abnormal_prompts = 4;    // N_a
  double init_std = 0.02;
  ClassNameMapping class_name_mapping = ClassNameMapping::kPromptAD;
  AnchorMean train_anchor = AnchorMean::kNormalized;  // spec §5 step: normalize(mean(normalize(T)))
  AnchorMean test_anchor = AnchorMean::kRaw;          // PromptAD scoring: normalize(mean(raw T))

  // --- training (spec §5) ---
  bool train = true;                 // false: untrained prompts (ablation)
  int64_t epochs = 100;
  int64_t steps_per_epoch = 1;
  Optimizer optimizer = Optimizer::kSgd;  // PromptAD: SGD; adam: betas (momentum, 0.999), eps 1e-8
  double lr = 0.002, momentum = 0.9, weight_decay = 5e-4, eta_min = 1e-5;  // + cosine per epoch
  double tau = 100.0;                // logit scale of the new losses (L_img, L_pix, L_g)
  double w_image = 1.0;
  double w_pixel = 1.0;              // lambda_pix
  double focal_gamma = 2.0;
  bool promptad_terms = true;        // L_v2t + L_tri on the clean shots
  double promptad_tau = 4.6052;      // PromptAD multiplies by the raw (log-space) logit scale
  double w_v2t = 1.0, w_triplet = 1.0, triplet_margin = 0.0;

  // --- meta-prompt and SMGS (spec §3.2-3.3, [R]) ---
  SmgsMode smgs_mode = SmgsMode::kEma;
  SmgsGrad smgs_grad = SmgsGrad::kProjection;
  SmgsLoss smgs_loss = SmgsLoss::kKl;
  double smgs_lambda = 1.0;          // ProGrad lambda
  double smgs_weight = 1.0;          // lambda_g of the additive form
  double smgs_kl_temperature = 1.0;  // T of T^2 KL
  bool smgs_patch_kl = false;        // also the KL term on the patch tokens
  double smgs_beta = 0.9;            // EMA: t <- normalize(beta t + (1-beta) sg(t_learned))
  double smgs_gamma = 0.1;           // floor: t <- normalize(t + gamma t0)
  std::string meta_state_name = "object";  // "{}" in the state words: "object" or "class"
  std::vector<std::string> normal_states = {"flawless {}", "perfect {}", "unblemished {}", "{} without flaw",
                                            "{} without defect", "{} without damage"};
  std::vector<std::string> abnormal_states = {"damaged {}", "broken {}", "{} with flaw", "{} with defect",
                                              "{} with damage"};
  std::string meta_template = "a photo of a {}.";
  // smgs_mode learnable: the meta-prompt texts ({} = class text) whose token embeddings are the
  // initial parameters, trained in an outer step (every smgs_meta_every inner steps) on a fresh
  // synthetic batch of another stream with lr * smgs_meta_lr_scale, on the task loss with the
  // meta anchors as the classifier (first-order: no differentiation through the inner update).
  // Gating of the EMA update (spec §3.2 "optional gating"): after each epoch the update is applied
  // only if the current prompts' AUROC on a held-out set (the k clean shots and ~smgs_gate_images
  // synthetic variants of them from their own random stream, fixed per class) exceeds the AUROC at
  // the last applied update (initially: of the untrained prompts) by more than smgs_gate_margin.
  bool smgs_gate = false;
  int64_t smgs_gate_images = 16;
  std::string smgs_gate_metric = "image";  // image | pixel | mean
  double smgs_gate_margin = 0.0;
  std::string smgs_meta_normal = "a photo of a flawless {}.";
  std::string smgs_meta_abnormal = "a photo of a damaged {}.";
  double smgs_meta_lr_scale = 0.1;
  int64_t smgs_meta_every = 1;

  // --- vision features, memory bank, scoring (spec §4) ---
  int64_t vv_depth = -1;             // V-V dual-path blocks; -1 = all (PromptAD)
  AttnMode attn_mode = AttnMode::kVv;  // local: windowed attention in the dual path (spec §4.2)
  int64_t attn_window = 1;           // Chebyshev window w of the local attention (1 = 3x3 patches)
  LocalScores attn_local_scores = LocalScores::kQk;  // softmax(q k^T + B_loc) (spec) | v v^T
  bool memory_bank = true;
  std::vector<int64_t> memory_layers = {3, 8};  // 1-based blocks of the original path (x_ori)
  ScoreFusion fusion = ScoreFusion::kHarmonic;
  double score_tau = 4.6052;         // PromptAD scoring quirk: raw logit_scale, not exp()
  TextImageScore text_image_score = TextImageScore::kGlobal;  // PromptAD: global feature
  ImageScore image_score = ImageScore::kFusion;                // PromptAD: fuse(s_txt, s_vis)
  bool bgr_test_quirk = false;       // PromptAD: test images enter BGR-as-RGB (shots stay RGB)

  // --- parallelism over ranks (impl) ---
  // shard: each class trained on one rank (method.apt.shard_classes); ddp: every class trained on
  // all ranks, the clean shots and synthetic variants of a step split over the ranks (global
  // sample index g mod world), gradients summed through the evaluation's communicator.
  ClassParallel class_parallel = ClassParallel::kShard;

  int64_t variants() const { return variants_per_shot >= 0 ? variants_per_shot : (shots <= 1 ? 4 : 2); }
  void validate() const;
};

struct AptOptionKey {
  std::string name;           // without "method.apt."
  std::string type;           // bool | int | float | string | list
  std::string default_value;  // YAML text
  std::string status;         // "R" reconstruction, "V-code:PromptAD", "V-code:ProGrad", "S", "V-APT", "impl"
  std::string help;
  std::vector<std::string> choices;
};
std::vector<AptOptionKey> apt_option_keys();

// Sets one key (with or without the "method.apt." prefix) from its YAML text; lists as "[a, b]" or
// "a,b". Throws zsad::Error naming key and value when the key is unknown or the value malformed.
void set_apt_option(AptOptions& o, const std::string& key, const std::string& value);
AptOptions apt_options_from(const std::map<std::string, std::string>& kv);
std::map<std::string, std::string> apt_options_to_map(const AptOptions& o);

}  // namespace zsad::models::apt
