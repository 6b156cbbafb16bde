#include "data/synthesis.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "data/noise.h"

namespace zsad::data {

namespace {
constexpr double kPi = 3.14159265358979323846;
}

std::vector<uint8_t> perlin_region_mask(int H, int W, const AnomalySynthesisConfig& cfg, Rng& rng) {
  const int span = std::max(1, cfg.perlin_max_exp - cfg.perlin_min_exp);
  const double sx = std::pow(2.0, cfg.perlin_min_exp + static_cast<int>(rng.below(span)));
  const double sy = std::pow(2.0, cfg.perlin_min_exp + static_cast<int>(rng.below(span)));
  const std::vector<float> n = perlin_2d(H, W, sy, sx, rng);
  std::vector<uint8_t> m(static_cast<size_t>(H) * W, 0);
  if (!cfg.perlin_rotate) {
    for (size_t i = 0; i < m.size(); ++i) m[i] = n[i] > cfg.perlin_threshold;
    return m;
  }
  // Rotate the noise about the centre (bilinear, zero outside) like imgaug's Affine(rotate).
  const double a = rng.uniform(-cfg.perlin_max_angle_deg, cfg.perlin_max_angle_deg) * kPi / 180.0;
  const double c = std::cos(a), s = std::sin(a), cx = (W - 1) / 2.0, cy = (H - 1) / 2.0;
  auto at = [&](int x, int y) -> double {
    if (x < 0 || y < 0 || x >= W || y >= H) return 0.0;
    return n[static_cast<size_t>(y) * W + x];
  };
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const double dx = x - cx, dy = y - cy;
      const double sxp = c * dx + s * dy + cx, syp = -s * dx + c * dy + cy;
      const int x0 = static_cast<int>(std::floor(sxp)), y0 = static_cast<int>(std::floor(syp));
      const double fx = sxp - x0, fy = syp - y0;
      const double v = (1 - fy) * ((1 - fx) * at(x0, y0) + fx * at(x0 + 1, y0)) +
                       fy * ((1 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1));
      m[static_cast<size_t>(y) * W + x] = v > cfg.perlin_threshold;
    }
  return m;
}

std::vector<uint8_t> shape_region_mask(int H, int W, const AnomalySynthesisConfig& cfg, Rng& rng) {
  std::vector<uint8_t> m(static_cast<size_t>(H) * W, 0);
  const int count = static_cast<int>(rng.range(cfg.shapes_min, std::max(cfg.shapes_min, cfg.shapes_max)));
  for (int k = 0; k < count; ++k) {
    const double area = rng.uniform(cfg.shape_min_area, cfg.shape_max_area) * H * W;
    const double aspect = std::exp(rng.uniform(std::log(0.4), std::log(2.5)));
    const bool ellipse = rng.bernoulli(0.5);
    // ellipse: pi*a*b = area; rectangle: 4*a*b = area (a, b half-axes).
    const double ab = ellipse ? area / kPi : area / 4.0;
    const double ha = std::sqrt(ab * aspect), hb = std::sqrt(ab / aspect);
    const double cx = rng.uniform(0, W), cy = rng.uniform(0, H);
    const double ang = rng.uniform(0, kPi), ca = std::cos(ang), sa = std::sin(ang);
    const double r = std::max(ha, hb) * 1.5;
    for (int y = std::max(0, int(cy - r)); y <= std::min(H - 1, int(cy + r)); ++y)
      for (int x = std::max(0, int(cx - r)); x <= std::min(W - 1, int(cx + r)); ++x) {
        const double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
        const double u = (ca * dx + sa * dy) / ha, v = (-sa * dx + ca * dy) / hb;
        const bool in = ellipse ? u * u + v * v <= 1.0 : std::abs(u) <= 1.0 && std::abs(v) <= 1.0;
        if (in) m[static_cast<size_t>(y) * W + x] = 1;
      }
  }
  return m;
}

SynthesizedAnomaly synthesize_anomaly(const float* img, int C, int H, int W, const uint8_t* object_mask,
                                      const AnomalySynthesisConfig& cfg, Rng& rng) {
  if (C < 1 || H < 1 || W < 1) throw Error("synthesize_anomaly: empty image");
  const size_t plane = static_cast<size_t>(H) * W;
  bool use_object = false;
  if (object_mask) {
    size_t on = 0;
    for (size_t i = 0; i < plane; ++i) on += object_mask[i] != 0;
    use_object = on >= cfg.object_min_fraction * plane;
  }
  SynthesizedAnomaly out;
  const size_t need = static_cast<size_t>(std::ceil(cfg.min_mask_area * plane));
  for (int attempt = 0; attempt < std::max(1, cfg.max_attempts); ++attempt) {
    bool perlin = cfg.region == AnomalySynthesisConfig::Region::kPerlin;
    if (cfg.region == AnomalySynthesisConfig::Region::kMixed) perlin = rng.bernoulli(0.5);
    out.mask = perlin ? perlin_region_mask(H, W, cfg, rng) : shape_region_mask(H, W, cfg, rng);
    size_t area = 0;
    for (size_t i = 0; i < plane; ++i) {
      if (use_object && !object_mask[i]) out.mask[i] = 0;
      area += out.mask[i];
    }
    if (area >= need && area > 0) break;
  }
  size_t area = 0;
  for (uint8_t v : out.mask) area += v;
  out.label = area > 0 ? 1 : 0;

  out.image.assign(img, img + static_cast<size_t>(C) * plane);
  const double ptot = cfg.p_gaussian + cfg.p_uniform + cfg.p_salt_pepper;
  const double pick = rng.uniform() * (ptot > 0 ? ptot : 1.0);
  out.family = pick < cfg.p_gaussian ? NoiseFamily::kGaussian
               : pick < cfg.p_gaussian + cfg.p_uniform ? NoiseFamily::kUniform
                                                        : NoiseFamily::kSaltPepper;
  if (out.family == NoiseFamily::kSaltPepper) out.strength = rng.uniform(cfg.salt_pepper_min, cfg.salt_pepper_max);
  else out.strength = rng.uniform(cfg.sigma_min, cfg.sigma_max);
  auto clip01 = [](double v) { return static_cast<float>(v < 0 ? 0 : (v > 1 ? 1 : v)); };
  for (size_t i = 0; i < plane; ++i) {
    if (!out.mask[i]) continue;
    if (out.family == NoiseFamily::kSaltPepper) {
      if (rng.uniform() < out.strength) {
        const float v = rng.bernoulli(0.5) ? 1.0f : 0.0f;
        for (int c = 0; c < C; ++c) out.image[c * plane + i] = v;
      }
      continue;
    }
    for (int c = 0; c < C; ++c) {
      const double e = out.family == NoiseFamily::kGaussian ? rng.normal(0, out.strength)
                                                            : rng.uniform(-out.strength, out.strength);
      out.image[c * plane + i] = clip01(out.image[c * plane + i] + e);
    }
  }
  if (cfg.blur_probability > 0 && rng.uniform() < cfg.blur_probability) {
    const std::vector<float> src = out.image;
    for (int c = 0; c < C; ++c)
      for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
          const size_t i = static_cast<size_t>(y) * W + x;
          if (!out.mask[i]) continue;
          double sum = 0;
          int n = 0;
          for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx) {
              const int yy = y + dy, xx = x + dx;
              if (yy < 0 || xx < 0 || yy >= H || xx >= W) continue;
              sum += src[c * plane + static_cast<size_t>(yy) * W + xx];
              ++n;
            }
          out.image[c * plane + i] = static_cast<float>(sum / n);
        }
  }
  return out;
}

std::vector<float> patch_mask(const std::vector<uint8_t>& mask, int H, int W, int patch) {
  if (patch < 1 || H % patch || W % patch) throw Error("patch_mask: size not divisible by the patch size");
  const int gh = H / patch, gw = W / patch;
  std::vector<float> out(static_cast<size_t>(gh) * gw, 0.0f);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) out[static_cast<size_t>(y / patch) * gw + x / patch] += mask[static_cast<size_t>(y) * W + x];
  for (auto& v : out) v /= static_cast<float>(patch * patch);
  return out;
}

}  // namespace zsad::data
