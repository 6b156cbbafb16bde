#pragma once
// Anomaly-map post-processing, the one place every method's maps go through before metrics
// (../shared/specs/evaluation.md §3):
//  * upsampling patch-resolution maps to the evaluation size: torch F.interpolate semantics
//    (bilinear align_corners=false by default; bilinear align_corners=true; nearest);
//  * Gaussian smoothing identical to scipy.ndimage.gaussian_filter(map, sigma, truncate=4.0,
//    mode='reflect'): radius int(truncate*sigma + 0.5) (16 for sigma 4), kernel exp(-x^2/(2 sigma^2))
//    normalised, separable, axis 0 (rows) first then axis 1, half-sample symmetric borders
//    (d c b a | a b c d, also for maps smaller than the radius), accumulation in float64; like scipy,
//    a float32 input is stored as float32 after each axis.
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace zsad::models {

enum class UpsampleKind { kBilinear, kNearest };

struct UpsampleOptions {
  UpsampleKind kind = UpsampleKind::kBilinear;
  bool align_corners = false;  // bilinear only
};

// "bilinear" | "bilinear_align_corners" | "nearest"; throws zsad::Error naming the value.
UpsampleOptions parse_upsample(const std::string& name);
std::string upsample_name(const UpsampleOptions& o);

// maps [B,h,w] (or [h,w]) float -> [B,size,size] (or [size,size]) float32.
at::Tensor upsample_maps(const at::Tensor& maps, int64_t size, const UpsampleOptions& o);

// scipy's 1-D Gaussian kernel (2*radius+1 taps, sums to 1), radius = int(truncate*sigma + 0.5).
std::vector<double> gaussian_kernel(double sigma, double truncate = 4.0);

// maps [..., H, W] float32 or float64 (CPU) -> same shape and dtype. sigma <= 0: returned unchanged.
at::Tensor gaussian_smooth(const at::Tensor& maps, double sigma, double truncate = 4.0);

struct PostprocessOptions {
  int64_t eval_size = 518;  // square evaluation size (<= 0: keep the map size)
  UpsampleOptions upsample;
  double sigma = 4.0;       // <= 0: no smoothing
  double truncate = 4.0;
};

// upsample_maps then gaussian_smooth: [B,h,w] -> [B,S,S] float32.
at::Tensor postprocess_maps(const at::Tensor& maps, const PostprocessOptions& o);

}  // namespace zsad::models
