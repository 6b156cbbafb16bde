#pragma once
// CLIP preprocessing exactly as the Python references run it (PIL + torchvision):
//   image: PIL Image.resize((S,S), BICUBIC) -> ToTensor (/255, float32) -> Normalize(CLIP mean, std)
//   mask:  PIL Image.resize((S,S), BILINEAR) on the 0/255 L mask -> /255 -> > 0.5
// The resize re-implements Pillow's ImagingResample: separable, antialiased (filter support
// scaled by the downscale factor), coefficients computed in double and normalised, then
// converted to 22-bit fixed point for 8-bit images; horizontal pass first into an 8-bit
// intermediate, then the vertical pass, each rounded and clipped. OpenCV's and LibTorch's
// bicubic use other kernels (a = -0.75, no antialias) and miss the published numbers.
#include <array>
#include <cstdint>

#include "data/image.h"

namespace zsad::data {

enum class ResampleFilter { kBilinear, kBicubic };

// PIL-exact resize of an 8-bit image with any number of channels.
Image resize_pil(const Image& in, int out_width, int out_height, ResampleFilter filter);

constexpr std::array<float, 3> kClipMean = {0.48145466f, 0.4578275f, 0.40821073f};
constexpr std::array<float, 3> kClipStd = {0.26862954f, 0.26130258f, 0.27577711f};

// RGB 8-bit HWC -> float CHW, (v/255 - mean)/std in float32 like torchvision.
void normalize_clip(const Image& rgb, float* out_chw);

// Full image path: resize to size x size (bicubic) then normalise into out [3,size,size].
void preprocess_image(const Image& rgb, int size, float* out_chw);

// Full mask path: binary 0/255 mask -> bilinear resize -> > 0.5 -> out [size,size] of 0/1.
void preprocess_mask(const Image& mask, int size, uint8_t* out);

}  // namespace zsad::data
