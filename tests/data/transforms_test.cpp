// Resize parity with python3-pil: generated noisy, hard-edged images of sizes 97..1024, resized
// up and down to 518 and 240, compared with PIL's Image.resize(BICUBIC); masks through
// PIL BILINEAR + > 0.5.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "data/rng.h"
#include "data/transforms.h"
#include "test_util.h"

namespace zsad::data {
namespace {

using testing::TempDir;

Image make_hard_image(int w, int h, int c, uint64_t seed) {
  Rng rng(seed);
  Image img(w, h, c);
  // Background: per-pixel noise on a gradient.
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) {
        const int base = (x * 255 / w + y * 97 / h + k * 40) % 256;
        const int noise = static_cast<int>(rng.below(121)) - 60;
        img.at(x, y, k) = static_cast<uint8_t>(std::clamp(base + noise, 0, 255));
      }
  // Hard-edged rectangles of extreme colours and a 1-pixel checkerboard patch.
  for (int r = 0; r < 12; ++r) {
    const int x0 = static_cast<int>(rng.below(w)), y0 = static_cast<int>(rng.below(h));
    const int x1 = std::min(w, x0 + 1 + static_cast<int>(rng.below(w / 3 + 1)));
    const int y1 = std::min(h, y0 + 1 + static_cast<int>(rng.below(h / 3 + 1)));
    uint8_t col[3];
    for (auto& v : col) v = rng.bernoulli(0.5) ? 255 : 0;
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x)
        for (int k = 0; k < c; ++k) img.at(x, y, k) = col[k % 3];
  }
  const int cw = std::min(w, 60), chh = std::min(h, 60);
  for (int y = 0; y < chh; ++y)
    for (int x = 0; x < cw; ++x)
      for (int k = 0; k < c; ++k) img.at(x, y, k) = ((x + y) & 1) ? 255 : 0;
  return img;
}

Image make_mask(int w, int h, uint64_t seed) {
  Rng rng(seed);
  Image m(w, h, 1);
  for (int e = 0; e < 6; ++e) {
    const double cx = rng.uniform(0, w), cy = rng.uniform(0, h);
    const double rx = rng.uniform(2, w / 4.0), ry = rng.uniform(2, h / 4.0);
    const bool rect = rng.bernoulli(0.5);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const double dx = (x + 0.5 - cx) / rx, dy = (y + 0.5 - cy) / ry;
        const bool in = rect ? (std::abs(dx) <= 1 && std::abs(dy) <= 1) : dx * dx + dy * dy <= 1;
        if (in) m.at(x, y) = 255;
      }
  }
  // Thin lines: the hardest case for a threshold after bilinear filtering.
  for (int x = 0; x < w; x += 37) for (int y = 0; y < h; ++y) m.at(x, y) = 255;
  return m;
}

void write_raw(const std::filesystem::path& p, const Image& img) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(img.pixels.data()), static_cast<std::streamsize>(img.pixels.size()));
}

std::vector<uint8_t> read_raw(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

struct Case {
  std::string name;
  Image input;
  int out;
  bool mask;
};

TEST(ResizeParity, MatchesPilBicubicAndMaskPath) {
  TempDir dir("resize");
  ASSERT_FALSE(dir.path.empty());
  const std::vector<std::pair<int, int>> sizes = {{97, 97},   {97, 131},  {240, 240}, {333, 517}, {518, 518},
                                                  {700, 450}, {1024, 768}, {150, 1000}, {1024, 1024}, {519, 241}};
  std::vector<Case> cases;
  uint64_t seed = 1;
  for (const auto& [w, h] : sizes)
    for (int out : {518, 240}) {
      const int c = (seed % 3 == 0) ? 1 : 3;
      cases.push_back({"img" + std::to_string(seed), make_hard_image(w, h, c, seed), out, false});
      cases.push_back({"mask" + std::to_string(seed), make_mask(w, h, seed + 1000), out, true});
      ++seed;
    }
  {
    std::ofstream man(dir.path / "manifest.txt");
    for (const auto& cs : cases) {
      write_raw(dir.path / (cs.name + ".raw"), cs.input);
      man << cs.name << " " << cs.input.width << " " << cs.input.height << " " << cs.input.channels << " "
          << (cs.mask ? "bilinear" : "bicubic") << " " << cs.out << " " << cs.out << "\n";
    }
  }
  const std::string script = testing::source_dir() + "/tests/data/pil_resize.py";
  const auto r = testing::run_command(testing::python() + " " + script + " " + dir.path.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;

  size_t img_total = 0, img_within1 = 0, img_exact = 0, mask_total = 0, mask_agree = 0;
  int img_max = 0;
  for (const auto& cs : cases) {
    const std::vector<uint8_t> ref = read_raw(dir.path / (cs.name + ".pil.raw"));
    const Image mine = resize_pil(cs.input, cs.out, cs.out, cs.mask ? ResampleFilter::kBilinear : ResampleFilter::kBicubic);
    ASSERT_EQ(ref.size(), mine.pixels.size()) << cs.name;
    if (!cs.mask) {
      for (size_t i = 0; i < ref.size(); ++i) {
        const int d = std::abs(int(ref[i]) - int(mine.pixels[i]));
        img_max = std::max(img_max, d);
        img_within1 += d <= 1;
        img_exact += d == 0;
      }
      img_total += ref.size();
    } else {
      std::vector<uint8_t> bin(static_cast<size_t>(cs.out) * cs.out);
      preprocess_mask(cs.input, cs.out, bin.data());
      for (size_t i = 0; i < ref.size(); ++i) {
        const bool pil_on = static_cast<float>(ref[i]) / 255.0f > 0.5f;
        mask_agree += (pil_on ? 1 : 0) == bin[i];
      }
      mask_total += ref.size();
    }
  }
  const double within1 = double(img_within1) / img_total;
  const double agree = double(mask_agree) / mask_total;
  std::printf("bicubic: %zu pixels, exact %.6f, within 1 %.6f, max diff %d; mask agreement %.6f\n", img_total,
              double(img_exact) / img_total, within1, img_max, agree);
  EXPECT_GE(within1, 0.99);
  EXPECT_LE(img_max, 2);
  EXPECT_GE(agree, 0.999);
}

TEST(ClipNormalize, MatchesTorchvisionFormula) {
  Image img(2, 1, 3);
  img.at(0, 0, 0) = 0; img.at(0, 0, 1) = 128; img.at(0, 0, 2) = 255;
  img.at(1, 0, 0) = 255; img.at(1, 0, 1) = 0; img.at(1, 0, 2) = 17;
  std::vector<float> out(6);
  normalize_clip(img, out.data());
  // CHW layout: channel 0 of pixel 0 then pixel 1, ...
  EXPECT_FLOAT_EQ(out[0], (0.0f - 0.48145466f) / 0.26862954f);
  EXPECT_FLOAT_EQ(out[1], (1.0f - 0.48145466f) / 0.26862954f);
  EXPECT_FLOAT_EQ(out[2], (128.0f / 255.0f - 0.4578275f) / 0.26130258f);
  EXPECT_FLOAT_EQ(out[5], (17.0f / 255.0f - 0.40821073f) / 0.27577711f);
}

TEST(ResizePil, IdentitySizeIsACopyAndConstantStaysConstant) {
  Image img(50, 30, 3, 77);
  const Image same = resize_pil(img, 50, 30, ResampleFilter::kBicubic);
  EXPECT_EQ(same.pixels, img.pixels);
  const Image big = resize_pil(img, 518, 518, ResampleFilter::kBicubic);
  for (uint8_t v : big.pixels) ASSERT_EQ(v, 77);
}

}  // namespace
}  // namespace zsad::data
