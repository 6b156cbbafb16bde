#pragma once
// CLIP architecture hyper-parameters (OpenAI's build_model arguments) plus the run-time
// switches that change what a forward pass computes (activation, input size, pos-embed
// interpolation, device).
#include <cstdint>
#include <string>
#include <vector>

#include "models/clip/weights.h"

namespace zsad::models {

enum class ClipActivation { kQuickGelu, kGelu };        // OpenAI weights were trained with QuickGELU
enum class PosInterpolation { kBilinear, kBicubic };    // CoPS/AnomalyCLIP vs open_clip resize_pos_embed

struct ClipConfig {
  std::string name = "custom";
  // Vision tower (ViT).
  int64_t vision_width = 768;
  int64_t vision_layers = 12;
  int64_t vision_heads = 12;        // width / 64
  int64_t vision_patch = 32;
  int64_t vision_grid = 7;          // grid of the *stored* positional embedding (sqrt(P0 - 1))
  int64_t embed_dim = 512;          // output dim of visual.proj and text_projection
  // Text tower.
  int64_t context_length = 77;
  int64_t vocab_size = 49408;
  int64_t text_width = 512;
  int64_t text_layers = 12;
  int64_t text_heads = 8;           // width / 64

  // Run-time switches.
  ClipActivation activation = ClipActivation::kQuickGelu;
  int64_t image_size = 0;           // input size the model runs at; 0 = native (grid * patch)
  PosInterpolation pos_interp = PosInterpolation::kBilinear;
  std::string device = "cpu";       // "cpu", "cuda", "cuda:1" (CUDA needs a CUDA LibTorch)

  int64_t native_image_size() const { return vision_grid * vision_patch; }
  int64_t input_size() const { return image_size > 0 ? image_size : native_image_size(); }
  int64_t input_grid() const { return input_size() / vision_patch; }
  int64_t num_patches() const { return input_grid() * input_grid(); }

  // Throws zsad::Error if fields are inconsistent (width not divisible by heads, image size
  // not a multiple of the patch size, ...).
  void validate() const;
  // "ViT-L-14-336 (vision 1024x24, patch 14, grid 24; text 768x12; embed 768)"
  std::string describe() const;
};

// Named OpenAI configurations: "ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", and
// "tiny" (a small config for tests: vision 64x2 patch 8 grid 4, text 64x2 ctx 77 vocab 49408,
// embed 64). Throws zsad::Error listing the known names.
ClipConfig clip_config(const std::string& name);
std::vector<std::string> clip_config_names();

// The architecture of a state dict, inferred exactly like OpenAI's build_model (ViT only:
// "visual.proj" must be present). Throws zsad::Error naming the missing key.
ClipConfig infer_config(const StateDict& sd);

// True if the architecture fields (not the run-time switches) agree.
bool same_architecture(const ClipConfig& a, const ClipConfig& b);

ClipActivation parse_activation(const std::string& s);      // "quick_gelu" | "gelu"
PosInterpolation parse_pos_interpolation(const std::string& s);  // "bilinear" | "bicubic"

}  // namespace zsad::models
