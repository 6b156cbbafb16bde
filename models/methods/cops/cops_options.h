#pragma once
// CoPS (Conditional Prompt Synthesis, arXiv 2508.03447) switches. Every default reproduces the
// official code (cqylunlun/CoPS @ a3a41fc, see shared/specs/cops.md); the code's dataset-name
// rules become explicit per-dataset values (experiments/dataset/*.yaml set them):
//   train kernel 3 if the training set is MVTec else 5; recon off if the training set is VisA;
//   test kernel 3 / alpha 0.35 / beta 1.0 if the test set is VisA, else 5 / 0.26 / 0.9.
// The defaults here are the code's "else" branches (a dataset matching none of the names).
// Config keys are "method.cops.<key>" (see cops_option_keys()).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace zsad::models::cops {

// Which prototypes are added to which prompt's state tokens.
enum class PrototypeAssignment {
  kCode,    // code: normal prompt += P_a (anomaly prototypes), anomaly prompt += P_n
  kFigure,  // paper figure: normal prompt += P_n, anomaly prompt += P_a
};

enum class ReconstructionMode {
  kAllPairs,   // code: ((g - s.view(B,1,1,D))**2).sum(1).mean() = mean_{i,j,c} (g_j,c - s_i,c)^2
  kPerSample,  // intended form: mean_b sum_c (g_b,c - s_b,c)^2
};

enum class UpsampleMode { kNearest, kBilinear };  // bilinear: align_corners=false

// SAGA min-max range: the code normalises over the whole batch tensor, but it only ever runs
// test batch 1; kPerImage equals that run and makes scores independent of the batch size.
enum class MinMaxScope { kPerImage, kBatch };

struct CopsOptions {
  // --- dimensions (ViT-L/14@336: D = text width = 768) ---
  int64_t feature_dim = 768;        // D: CLIP embedding dim; must equal the text width (prototypes and
                                    // VAE samples are added to token embeddings)
  int64_t num_prototypes = 6;       // M (prt_length): queries t_n, t_a [M,D]
  int64_t extractor_heads = 12;     // Prototype_Extractor(ctx_dim, 12)
  int64_t n_ctx = 12;               // prompt_length: 6 context + M state tokens
  int64_t cls_len = 2;              // class tokens that receive the VAE sample (ICTS on)
  int64_t deep_prompt_depth = 8;    // compound_prompts_text.0..depth-1, layers 2..depth+1
  int64_t deep_prompt_length = 4;   // t_n_ctx
  bool deep_prompt_fp16 = true;     // code: .half() on the deep prompt before torch.cat (rounding)
  double init_std = 0.02;

  // --- components (ablations) ---
  bool ests = true;   // prototypes: extractor, center losses, prototypes added to state tokens
  bool icts = true;   // VAE: off = the code's vae_length=0 prompt "X*12 object." (no class tokens)
  bool saga = true;   // test-time spatial weighting of the patch probabilities by d_n/d_a
  PrototypeAssignment assignment = PrototypeAssignment::kCode;

  // --- VAE ---
  bool reconstruction = true;  // code: forced off when the training set name contains 'visa'
  ReconstructionMode reconstruction_mode = ReconstructionMode::kAllPairs;
  int64_t r_train = 1;   // posterior samples per image in training
  int64_t r_test = 10;   // prior samples per image at test

  // --- losses ---
  double temperature = 0.07;
  double w_image = 1.0, w_patch = 4.0, w_gather = 1.0, w_scatter = 1.0, w_kl = 1.0, w_rec = 1.0;
  double focal_gamma = 2.0;
  double focal_smooth = 1e-5;
  UpsampleMode train_upsample = UpsampleMode::kNearest;  // get_fullsize_map(mode='train')

  // --- smoothing and inference (per dataset) ---
  int64_t train_kernel = 5;  // avg_pool2d kernel on the training set (3 for MVTec)
  int64_t test_kernel = 5;   // kernel on the test set (3 for VisA)
  double alpha = 0.26;       // SAGA: W = alpha*minmax(d_n) + (1-alpha)*(1-minmax(d_a)); 0.35 for VisA
  double beta = 0.9;         // image score = beta*global + (1-beta)*max patch; 1.0 for VisA
  MinMaxScope saga_minmax = MinMaxScope::kPerImage;

  // --- text tower ---
  // Tokens fed to the text transformer. 0 = up to and including EOT: exact, because the causal
  // mask makes the EOT row independent of later positions (the code runs all 77).
  int64_t text_context = 0;
  // Exact reformulations (same result up to float summation order), switchable for comparison:
  // focal/dice on the nearest-upsampled map computed per patch with pixel counts (0/1 masks; the
  // literal upsampling otherwise) ...
  bool patch_resolution_losses = true;
  // ... and prompt positions shared by several prompts (SOT + context tokens + deep prompts; the
  // image's state tokens across its R samples) run once through the text tower. Used where no
  // gradient has to pass the per-sequence fp16 rounding of the deep prompts: at inference, or in
  // training with deep_prompt_fp16 false or no deep prompts.
  bool text_shared_prefix = true;

  // Learnable tokens per prompt (14 with ICTS, 12 without).
  int64_t learnable_tokens() const { return n_ctx + (icts ? cls_len : 0); }
  int64_t context_tokens() const { return n_ctx - num_prototypes; }
  // Throws zsad::Error naming the offending key when the values are inconsistent.
  void validate() const;
};

// One declared config key: "method.cops.<name>", its default (as YAML text) and meaning.
struct CopsOptionKey {
  std::string name;
  std::string default_value;
  std::string help;
  std::string type;                  // bool | int | float | string
  std::vector<std::string> choices;  // strings only
};
std::vector<CopsOptionKey> cops_option_keys();

// Sets one key (without the "method.cops." prefix, which is also accepted) from its YAML text.
// Throws zsad::Error naming key and value when the key is unknown or the value malformed.
void set_cops_option(CopsOptions& o, const std::string& key, const std::string& value);
CopsOptions cops_options_from(const std::map<std::string, std::string>& kv);
std::map<std::string, std::string> cops_options_to_map(const CopsOptions& o);

}  // namespace zsad::models::cops
