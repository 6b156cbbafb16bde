#pragma once
// Training anomalies for APT ("self-generated anomaly samples with noise perturbations",
// shared/specs/apt.md §2): a region mask (DRAEM-style thresholded Perlin noise, or random
// ellipses/rectangles), optionally restricted to an object mask, and a noise perturbation inside
// it (Gaussian / uniform / salt-and-pepper, optional 3x3 blur). Images are float CHW in [0,1]
// before CLIP normalisation. Seeded: the same Rng state gives the same result.
#include <cstdint>
#include <vector>

#include "data/rng.h"

namespace zsad::data {

struct AnomalySynthesisConfig {
  enum class Region { kPerlin, kShapes, kMixed };
  Region region = Region::kPerlin;      // kMixed: Perlin or shapes with probability 1/2
  // DRAEM: lattice 2^u per axis, u uniform in [perlin_min_exp, perlin_max_exp), threshold, rotation.
  int perlin_min_exp = 0;
  int perlin_max_exp = 6;
  double perlin_threshold = 0.5;
  bool perlin_rotate = true;
  double perlin_max_angle_deg = 90.0;
  // Shapes: count in [shapes_min, shapes_max], each covering [shape_min_area, shape_max_area] of the image.
  int shapes_min = 1;
  int shapes_max = 3;
  double shape_min_area = 0.01;
  double shape_max_area = 0.10;
  // Resample until the final mask covers at least this fraction (up to max_attempts).
  double min_mask_area = 0.005;
  int max_attempts = 20;
  // An object mask covering less than this fraction is ignored (the whole image is allowed).
  double object_min_fraction = 0.05;
  // Noise family, chosen per sample with these probabilities.
  double p_gaussian = 0.6;
  double p_uniform = 0.2;
  double p_salt_pepper = 0.2;
  double sigma_min = 0.1;               // Gaussian sigma and uniform half-width range
  double sigma_max = 0.5;
  double salt_pepper_min = 0.1;         // fraction of masked pixels set to 0 or 1
  double salt_pepper_max = 0.5;
  double blur_probability = 0.0;        // 3x3 mean blur inside the mask afterwards
};

enum class NoiseFamily { kGaussian, kUniform, kSaltPepper };

struct SynthesizedAnomaly {
  std::vector<float> image;    // [3,H,W] in [0,1]
  std::vector<uint8_t> mask;   // [H,W] 0/1
  int label = 0;               // 1 when the mask is non-empty
  NoiseFamily family = NoiseFamily::kGaussian;
  double strength = 0;         // sigma, half-width or salt-and-pepper density
};

// DRAEM region mask: thresholded (optionally rotated) Perlin noise, [H,W] 0/1.
std::vector<uint8_t> perlin_region_mask(int height, int width, const AnomalySynthesisConfig& cfg, Rng& rng);
// 1..3 random ellipses / rectangles, [H,W] 0/1.
std::vector<uint8_t> shape_region_mask(int height, int width, const AnomalySynthesisConfig& cfg, Rng& rng);

// `object_mask` ([H,W], non-zero = object) may be null. `channels` is normally 3.
SynthesizedAnomaly synthesize_anomaly(const float* image_chw, int channels, int height, int width,
                                      const uint8_t* object_mask, const AnomalySynthesisConfig& cfg, Rng& rng);

// Patch labels: average of the pixel mask over patch x patch cells ([H/patch, W/patch]).
std::vector<float> patch_mask(const std::vector<uint8_t>& mask, int height, int width, int patch);

}  // namespace zsad::data
