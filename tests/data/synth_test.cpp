// Synthetic presets: masks are exactly the changed pixels, defects stay on the object, anomalies
// are not separable by a trivial global statistic, and a default dataset is fast to generate.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "common/error.h"
#include "data/synth.h"
#include "test_util.h"

namespace zsad::data {
namespace {

TEST(SynthImages, MaskIsExactlyTheChangedPixels) {
  // The defect is painted after the normal image is drawn from the same generator state, so
  // the normal render of the same seed is the defect-free original.
  for (const auto& p : synth_presets()) {
    size_t masked = 0, changed_in_mask = 0;
    for (int c = 0; c < static_cast<int>(p.classes.size()); ++c)
      for (const auto& d : p.defects) {
        const uint64_t seed = 100 + c * 31 + d.size();
        const SynthImage normal = render_synth_image(p.name, c, "", 96, seed);
        const SynthImage anom = render_synth_image(p.name, c, d, 96, seed);
        ASSERT_EQ(normal.image.pixels.size(), anom.image.pixels.size());
        size_t area = 0;
        for (int i = 0; i < 96 * 96; ++i) {
          const bool in = anom.mask.pixels[i] == 255;
          ASSERT_TRUE(in || anom.mask.pixels[i] == 0);
          area += in;
          bool diff = false;
          for (int k = 0; k < 3; ++k) diff |= normal.image.pixels[3 * i + k] != anom.image.pixels[3 * i + k];
          if (!in) ASSERT_FALSE(diff) << p.name << "/" << p.classes[c] << "/" << d << ": change outside the mask at " << i;
          masked += in;
          changed_in_mask += in && diff;
        }
        EXPECT_GT(area, 0u) << p.name << "/" << p.classes[c] << "/" << d;
        for (uint8_t v : normal.mask.pixels) ASSERT_EQ(v, 0);
      }
    // Quantisation may leave a few masked pixels at their old value (e.g. a colour shift of a
    // near-black pixel); nearly all must visibly change.
    EXPECT_GE(double(changed_in_mask) / masked, 0.95) << p.name;
  }
}

TEST(SynthImages, ObjectDefectsStayOnTheObject) {
  const auto& p = synth_preset("objects");
  for (int c = 0; c < static_cast<int>(p.classes.size()); ++c)
    for (const auto& d : p.defects) {
      const SynthImage s = render_synth_image("objects", c, d, 128, 7 + c);
      size_t object = 0;
      for (int i = 0; i < 128 * 128; ++i) {
        object += s.object.pixels[i] != 0;
        if (s.mask.pixels[i]) ASSERT_EQ(s.object.pixels[i], 255) << p.classes[c] << "/" << d << " at " << i;
      }
      // A real object: neither empty nor the whole frame, and absent from the image border.
      EXPECT_GT(object, 128u * 128 / 20) << p.classes[c];
      EXPECT_LT(object, 128u * 128 / 2) << p.classes[c];
      for (int x = 0; x < 128; ++x) ASSERT_EQ(s.object.at(x, 0), 0) << p.classes[c];
    }
  const SynthImage t = render_synth_image("textures", 0, "stain", 64, 1);
  for (uint8_t v : t.object.pixels) ASSERT_EQ(v, 255);
}

double auroc(const std::vector<double>& neg, const std::vector<double>& pos) {
  double wins = 0;
  for (double a : pos)
    for (double b : neg) wins += a > b ? 1 : (a == b ? 0.5 : 0);
  return wins / (pos.size() * neg.size());
}

TEST(SynthImages, AnomaliesAreNotSeparableByGlobalMeanIntensity) {
  for (const auto& p : synth_presets())
    for (int c = 0; c < static_cast<int>(p.classes.size()); ++c) {
      std::vector<double> neg, pos;
      for (int i = 0; i < 24; ++i) {
        const std::string d = i % 2 ? p.defects[(i / 2) % p.defects.size()] : "";
        const SynthImage s = render_synth_image(p.name, c, d, 64, 5000 + i);
        double m = 0;
        for (uint8_t v : s.image.pixels) m += v;
        (d.empty() ? neg : pos).push_back(m / s.image.pixels.size());
      }
      const double a = auroc(neg, pos);
      EXPECT_LT(std::max(a, 1 - a), 0.9) << p.name << "/" << p.classes[c] << ": mean intensity alone separates anomalies";
    }
}

TEST(SynthImages, DefaultDatasetIsCompleteAndRecordsItsOptions) {
  testing::TempDir d("synth_default");
  const auto r = testing::run_command(testing::zsad_binary() + " data synth --preset objects --seed 5 --out " +
                                      (d.path / "ds").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Meta m = read_meta((d.path / "ds/meta.json").string());
  EXPECT_EQ(m.test.size(), 250u);
  EXPECT_EQ(m.train.size(), 250u);
  std::ifstream sig(d.path / "ds" / kSynthSignatureFile);
  std::string line;
  ASSERT_TRUE(std::getline(sig, line)) << "no " << kSynthSignatureFile;
  SynthOptions o;
  o.preset = "objects";
  o.seed = 5;
  o.size = 256;
  o.test_per_class = o.train_per_class = 50;
  EXPECT_EQ(line, synth_signature(o));
}

TEST(SynthImages, DefectScaleGrowsEveryDefectKindAndIsValidated) {
  // Areas grow with the square of the scale (lengths and widths both scale), less where a
  // defect is clipped to the object or the image; > 2x at scale 2 for every kind.
  for (const auto& p : synth_presets())
    for (const auto& d : p.defects) {
      size_t a1 = 0, a2 = 0;
      for (int c = 0; c < static_cast<int>(p.classes.size()); ++c)
        for (uint64_t seed = 0; seed < 4; ++seed) {
          const SynthImage s1 = render_synth_image(p.name, c, d, 128, 100 + seed);
          const SynthImage s2 = render_synth_image(p.name, c, d, 128, 100 + seed, 2.0);
          for (uint8_t v : s1.mask.pixels) a1 += v != 0;
          for (uint8_t v : s2.mask.pixels) a2 += v != 0;
        }
      EXPECT_GT(a2, 2 * a1) << p.name << "/" << d << ": area " << a1 << " at scale 1, " << a2 << " at scale 2";
    }
  EXPECT_THROW(render_synth_image("textures", 0, "stain", 64, 1, 0.1), Error);
  EXPECT_THROW(render_synth_image("textures", 0, "stain", 64, 1, 5.0), Error);
}

}  // namespace
}  // namespace zsad::data
