#pragma once
// OpenAI CLIP (ViT image tower + causal text transformer) as torch::nn modules whose registered
// names are OpenAI's state-dict keys ("visual.transformer.resblocks.3.attn.in_proj_weight",
// "token_embedding.weight", "text_projection", ...), so loading weights is a name-by-name copy.
//
// Beyond OpenAI's encode_image / encode_text the model offers what the anomaly-detection
// methods need (../shared/specs/cops.md §1.2, §1.7):
//  * dual-path V-V attention on the last N vision blocks (CoPS "DPAM", AnomalyCLIP "V-V"),
//  * patch tokens of intermediate layers,
//  * the raw CLS token of the original path without ln_post (CoPS' global feature),
//  * a positional embedding resized to another input size (bilinear or bicubic),
//  * text from token embeddings with deep prompts replacing positions 1..n before layers 2..k+1.
// The vision tower is inference-only (it runs under NoGradGuard with preallocated buffers);
// the text tower is differentiable with respect to its inputs and deep prompts.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>
#include <vector>

#include "models/clip/clip_config.h"
#include "models/clip/weights.h"

namespace zsad::models {

// nn.MultiheadAttention's parameter layout: q;k;v packed in in_proj_weight [3W,W] / in_proj_bias.
class ClipAttentionImpl : public torch::nn::Module {
 public:
  ClipAttentionImpl(int64_t width, int64_t heads);
  // x [B,L,W] (batch first); mask: additive [L,L] or undefined. Differentiable.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask = {});

  int64_t width, heads;
  at::Tensor in_proj_weight, in_proj_bias;
  torch::nn::Linear out_proj{nullptr};
};
TORCH_MODULE(ClipAttention);

// OpenAI's nn.Sequential(c_fc, gelu, c_proj).
class ClipMlpImpl : public torch::nn::Module {
 public:
  ClipMlpImpl(int64_t width, ClipActivation act);
  at::Tensor forward(const at::Tensor& x);

  ClipActivation act;
  torch::nn::Linear c_fc{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(ClipMlp);

class ResidualAttentionBlockImpl : public torch::nn::Module {
 public:
  ResidualAttentionBlockImpl(int64_t width, int64_t heads, ClipActivation act);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask = {});  // x + attn(ln_1 x), + mlp(ln_2 x)

  ClipAttention attn{nullptr};
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  ClipMlp mlp{nullptr};
};
TORCH_MODULE(ResidualAttentionBlock);

class ClipTransformerImpl : public torch::nn::Module {
 public:
  ClipTransformerImpl(int64_t width, int64_t layers, int64_t heads, ClipActivation act);
  ResidualAttentionBlock block(int64_t i) const;

  int64_t width, layers, heads;
  torch::nn::ModuleList resblocks{nullptr};
};
TORCH_MODULE(ClipTransformer);

// What the vision tower should return besides the OpenAI image features.
struct VisionRequest {
  int64_t vv_depth = 0;              // number of final blocks run as dual-path V-V attention (0..layers)
  bool patch_tokens = true;          // final patch tokens: ln_post(x[:,1:]) @ proj of the V-V path
                                     // (of the original path when vv_depth == 0)
  std::vector<int64_t> layers;       // 1-based blocks whose patch tokens to return (V-V path once it has started)
  bool project_layers = true;        // apply ln_post and proj to those (else raw residual stream [B,P,width])
  // Locality-Aware Attention (APT's predecessor, shared/specs/apt.md §4.2): with local_window >= 0
  // the dual path's attention is windowed instead of V-V: softmax(scores + B_loc) v with
  // B_loc = 0 where patches i, j lie within Chebyshev distance local_window on the grid, -inf
  // elsewhere; patch rows do not attend to CLS (unless local_cls); the CLS row attends to every
  // token. Scores q k^T / sqrt(d) (local_qk, the spec) or v v^T / sqrt(d). -1: the V-V path.
  int64_t local_window = -1;
  bool local_qk = true;
  bool local_cls = false;
};

// The additive mask B_loc of Locality-Aware Attention for a grid x grid patch layout plus CLS at
// token 0: [N,N] float (N = grid^2 + 1), 0 where attention is allowed, -inf elsewhere.
at::Tensor locality_attention_mask(int64_t grid, int64_t window, bool cls_column = false);

struct VisionOutput {
  at::Tensor image_features;                 // [B,E] ln_post(CLS) @ proj (OpenAI encode_image)
  at::Tensor global_features;                // [B,E] CLS of the original path @ proj, no ln_post (CoPS)
  at::Tensor cls_token;                      // [B,width] raw CLS of the original path after the last block
  at::Tensor patch_tokens;                   // [B,P,E] if requested
  std::vector<at::Tensor> layer_patch_tokens;  // one per VisionRequest::layers entry
};

class VisionTransformerImpl : public torch::nn::Module {
 public:
  explicit VisionTransformerImpl(const ClipConfig& cfg);

  // pixels [B,3,S,S] float, normalised, S = cfg.input_size(). Inference only (NoGradGuard inside).
  VisionOutput forward(const at::Tensor& pixels, const VisionRequest& request = {});
  // The positional embedding for the configured input size ([grid^2+1, width]); the stored
  // parameter itself is never modified.
  at::Tensor resized_positional_embedding() const;
  // Frees the attention/MLP buffers kept between calls.
  void release_workspace();

  // Attention core (benchmarked in bench/clip_vision_bench.cpp). parallel_heads: one OpenMP
  // region per block over (image, head) pairs, single-threaded BLAS/softmax inside (OpenBLAS is
  // switched to 1 thread for the region). Otherwise: per image, chunks of heads_per_chunk heads,
  // with BLAS' and ATen's own threading. rows_per_block: query rows per score block (0 = all).
  bool parallel_heads = true;
  bool split_linears = true;  // with parallel_heads: linear layers as row chunks on our threads
  struct Timings {
    double qkv = 0, attention = 0, out_proj = 0, mlp = 0;  // seconds, accumulated over forwards
  } timings;
  int64_t heads_per_chunk = 16;
  int64_t rows_per_block = 0;

  ClipConfig cfg;
  torch::nn::Conv2d conv1{nullptr};
  at::Tensor class_embedding, positional_embedding, proj;
  torch::nn::LayerNorm ln_pre{nullptr}, ln_post{nullptr};
  ClipTransformer transformer{nullptr};

 private:
  struct Workspace;
  std::shared_ptr<Workspace> ws_;
};
TORCH_MODULE(VisionTransformer);

class ClipModelImpl : public torch::nn::Module {
 public:
  explicit ClipModelImpl(const ClipConfig& cfg);

  // OpenAI encode_image: [B,3,S,S] -> [B,E] (not normalised).
  at::Tensor encode_image(const at::Tensor& pixels);
  VisionOutput encode_vision(const at::Tensor& pixels, const VisionRequest& request);

  // OpenAI encode_text: ids [M,ctx] int64 -> [M,E] (not normalised), EOT at argmax(ids).
  at::Tensor encode_text(const at::Tensor& ids) const;
  // Text tower from token embeddings x [M,ctx,W] (e.g. learned prompts); eot [M] int64 positions.
  // deep_prompts[j] ([n,W] or [M,n,W]) replaces token positions 1..n before block j+1 (0-based),
  // i.e. 1-based layers 2..k+1 (MaPLe/AnomalyCLIP/CoPS). round_fp16 rounds the deep prompts to
  // fp16 first, as CoPS' .half() does. Differentiable with respect to x and deep_prompts.
  at::Tensor encode_text_embeddings(const at::Tensor& x, const at::Tensor& eot,
                                    const std::vector<at::Tensor>& deep_prompts = {}, bool round_fp16 = false) const;

  ClipConfig cfg;
  VisionTransformer visual{nullptr};
  ClipTransformer transformer{nullptr};
  torch::nn::Embedding token_embedding{nullptr};
  at::Tensor positional_embedding, text_projection, logit_scale;
  torch::nn::LayerNorm ln_final{nullptr};

 private:
  mutable at::Tensor causal_mask_;  // [ctx,ctx] additive, built on first use
};
TORCH_MODULE(ClipModel);

// Copies `sd` into the model by name (fp16/fp64 -> fp32, onto the model's device). Throws
// zsad::Error naming the key (and both shapes) for a missing, unexpected or mismatched key.
// The metadata entries input_resolution, context_length and vocab_size are ignored.
void load_state_dict(ClipModel& model, const StateDict& sd);

// Removes a wrapper prefix ("state_dict.", "module.", "model.") if the CLIP keys sit under it.
StateDict unwrap_clip_state_dict(const StateDict& sd);

// Reads a weight file (TorchScript, torch.save, safetensors), infers the architecture, checks it
// against `arch` ("auto" or a name from clip_config_names()), applies the run-time switches of
// `runtime` (activation, image_size, pos_interp, device), builds the model, loads the weights and
// freezes it (requires_grad false, eval). Errors name the file.
ClipModel load_clip(const std::string& path, const std::string& arch = "auto", const ClipConfig* runtime = nullptr);

// Resizes a CLIP positional embedding [g0*g0+1, W] to [g*g+1, W]: the class row is kept, the
// grid is interpolated with align_corners=false (bilinear as CoPS/AnomalyCLIP; bicubic with
// antialias as open_clip's resize_pos_embed).
at::Tensor resize_positional_embedding(const at::Tensor& pos, int64_t grid, PosInterpolation interp);

}  // namespace zsad::models
