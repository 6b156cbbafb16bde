// APT anomaly synthesis: reproducible for a seed, confined to the object mask, noise only inside
// the mask, region masks with the configured properties.
#include <gtest/gtest.h>

#include <cmath>

#include "data/synthesis.h"

namespace zsad::data {
namespace {

constexpr int H = 96, W = 80;

std::vector<float> test_image() {
  std::vector<float> img(3 * H * W);
  for (size_t i = 0; i < img.size(); ++i) img[i] = 0.25f + 0.5f * static_cast<float>((i * 37) % 101) / 100.0f;
  return img;
}

size_t area(const std::vector<uint8_t>& m) {
  size_t a = 0;
  for (uint8_t v : m) a += v;
  return a;
}

TEST(AnomalySynthesis, ReproducibleForASeed) {
  const auto img = test_image();
  AnomalySynthesisConfig cfg;
  cfg.region = AnomalySynthesisConfig::Region::kMixed;
  cfg.blur_probability = 0.5;
  for (uint64_t seed : {1u, 2u, 3u}) {
    Rng a(seed), b(seed);
    const auto x = synthesize_anomaly(img.data(), 3, H, W, nullptr, cfg, a);
    const auto y = synthesize_anomaly(img.data(), 3, H, W, nullptr, cfg, b);
    EXPECT_EQ(x.image, y.image);
    EXPECT_EQ(x.mask, y.mask);
    EXPECT_EQ(x.label, 1);
  }
  Rng a(1), c(2);
  EXPECT_NE(synthesize_anomaly(img.data(), 3, H, W, nullptr, cfg, a).mask,
            synthesize_anomaly(img.data(), 3, H, W, nullptr, cfg, c).mask);
}

TEST(AnomalySynthesis, ConfinedToObjectMaskAndChangesOnlyMaskedPixels) {
  const auto img = test_image();
  std::vector<uint8_t> object(H * W, 0);
  for (int y = 20; y < 70; ++y)
    for (int x = 15; x < 60; ++x) object[y * W + x] = 1;  // 2250 of 7680 pixels (29%)
  for (auto region : {AnomalySynthesisConfig::Region::kPerlin, AnomalySynthesisConfig::Region::kShapes}) {
    AnomalySynthesisConfig cfg;
    cfg.region = region;
    for (uint64_t seed = 0; seed < 20; ++seed) {
      Rng rng(seed);
      const auto s = synthesize_anomaly(img.data(), 3, H, W, object.data(), cfg, rng);
      ASSERT_EQ(s.mask.size(), static_cast<size_t>(H * W));
      size_t changed_in_mask = 0;
      for (int i = 0; i < H * W; ++i) {
        if (s.mask[i]) EXPECT_TRUE(object[i]) << "mask outside the object at " << i;
        for (int c = 0; c < 3; ++c) {
          const float before = img[c * H * W + i], after = s.image[c * H * W + i];
          if (!s.mask[i]) EXPECT_EQ(before, after) << "pixel outside the mask changed";
          else changed_in_mask += before != after;
          EXPECT_GE(after, 0.0f);
          EXPECT_LE(after, 1.0f);
        }
      }
      EXPECT_EQ(s.label, area(s.mask) > 0 ? 1 : 0);
      EXPECT_GE(area(s.mask), static_cast<size_t>(std::ceil(cfg.min_mask_area * H * W)));
      EXPECT_GT(changed_in_mask, 0u);
    }
  }
}

TEST(AnomalySynthesis, TinyObjectMaskFallsBackToWholeImage) {
  const auto img = test_image();
  std::vector<uint8_t> object(H * W, 0);
  object[5 * W + 5] = 1;
  AnomalySynthesisConfig cfg;
  cfg.region = AnomalySynthesisConfig::Region::kShapes;
  Rng rng(3);
  const auto s = synthesize_anomaly(img.data(), 3, H, W, object.data(), cfg, rng);
  EXPECT_GT(area(s.mask), 1u);
}

TEST(AnomalySynthesis, GaussianNoiseHasTheDrawnSigma) {
  // A mid-grey image keeps clipping negligible for sigma near 0.1.
  std::vector<float> img(3 * H * W, 0.5f);
  AnomalySynthesisConfig cfg;
  cfg.region = AnomalySynthesisConfig::Region::kShapes;
  cfg.shape_min_area = 0.3;
  cfg.shape_max_area = 0.4;
  cfg.p_gaussian = 1;
  cfg.p_uniform = cfg.p_salt_pepper = 0;
  cfg.sigma_min = cfg.sigma_max = 0.1;
  Rng rng(8);
  const auto s = synthesize_anomaly(img.data(), 3, H, W, nullptr, cfg, rng);
  double sum = 0, sq = 0;
  size_t n = 0;
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < H * W; ++i)
      if (s.mask[i]) {
        const double d = s.image[c * H * W + i] - 0.5;
        sum += d;
        sq += d * d;
        ++n;
      }
  ASSERT_GT(n, 1000u);
  const double mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(sd, 0.1, 0.01);
}

TEST(AnomalySynthesis, PerlinMaskCoverageDependsOnThreshold) {
  AnomalySynthesisConfig lo, hi;
  lo.perlin_threshold = 0.2;
  hi.perlin_threshold = 0.6;
  size_t alo = 0, ahi = 0;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    Rng r1(seed), r2(seed);
    alo += area(perlin_region_mask(128, 128, lo, r1));
    ahi += area(perlin_region_mask(128, 128, hi, r2));
  }
  EXPECT_GT(alo, ahi);
  EXPECT_GT(ahi, 0u);
}

TEST(AnomalySynthesis, PatchMaskAverages) {
  std::vector<uint8_t> m(32 * 32, 0);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 8; ++x) m[y * 32 + x] = 1;
  const auto p = patch_mask(m, 32, 32, 16);
  ASSERT_EQ(p.size(), 4u);
  EXPECT_FLOAT_EQ(p[0], 0.5f);
  EXPECT_FLOAT_EQ(p[1], 0.0f);
}

}  // namespace
}  // namespace zsad::data
