// Post-processing against the Python references (tests/models/postprocess_reference.py):
// Gaussian smoothing vs scipy.ndimage.gaussian_filter(sigma=4) within 1e-5, upsampling vs torch
// F.interpolate (bilinear align_corners false/true, nearest) within 1e-6, on maps of several sizes
// (including maps smaller than the 16-pixel kernel radius, where reflection wraps repeatedly).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <fstream>
#include <numeric>

#include "clip_test_util.h"
#include "common/error.h"
#include "models/postprocess.h"

namespace {

using zsad::test::env_or;
using zsad::test::shell_quote;

template <typename T>
std::vector<T> read_raw(const std::string& path, size_t n) {
  std::vector<T> v(n);
  std::ifstream f(path, std::ios::binary);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T)));
  EXPECT_TRUE(f.good()) << path;
  return v;
}

struct Case {
  int64_t H, W, S;
};

TEST(Postprocess, GaussianKernelIsScipys) {
  auto k = zsad::models::gaussian_kernel(4.0);
  ASSERT_EQ(k.size(), 33u);  // radius int(4*4 + 0.5) = 16
  EXPECT_NEAR(std::accumulate(k.begin(), k.end(), 0.0), 1.0, 1e-15);
  EXPECT_DOUBLE_EQ(k[16] / k[16 + 4], std::exp(0.5));  // exp(-x^2 / (2 sigma^2)) at x = 4
  EXPECT_EQ(zsad::models::gaussian_kernel(1.5).size(), 13u);  // radius int(6.5) = 6
}

TEST(Postprocess, MatchesScipyAndTorch) {
  const std::vector<Case> cases = {{1, 1, 5},   {3, 5, 16},  {8, 8, 64},    {13, 29, 77},
                                   {37, 37, 518}, {64, 48, 96}, {100, 100, 100}, {7, 40, 33}};
  const std::string dir = zsad::test::make_temp_dir("zsad_postprocess");
  at::manual_seed(7);
  std::vector<at::Tensor> maps;
  {
    std::ofstream spec(dir + "/spec.txt");
    for (size_t k = 0; k < cases.size(); ++k) {
      // Mix of smooth structure, noise and a few spikes (heavy tails exercise the borders).
      at::Tensor m = at::rand({cases[k].H, cases[k].W}, at::kFloat);
      m = m * m * m + (at::rand({cases[k].H, cases[k].W}) > 0.97).to(at::kFloat) * 5.0;
      m = m.contiguous();
      maps.push_back(m);
      std::ofstream f(dir + "/in_" + std::to_string(k) + ".f32", std::ios::binary);
      f.write(reinterpret_cast<const char*>(m.data_ptr<float>()), static_cast<std::streamsize>(m.numel() * 4));
      spec << k << " " << cases[k].H << " " << cases[k].W << " " << cases[k].S << "\n";
    }
  }
  const std::string py = env_or("ZSAD_PYTHON", "/usr/bin/python3");
  const std::string src = env_or("ZSAD_SOURCE_DIR", ".");
  auto r = zsad::test::run_command(shell_quote(py) + " " + shell_quote(src + "/tests/models/postprocess_reference.py") +
                                       " " + shell_quote(dir),
                                   dir);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  for (size_t k = 0; k < cases.size(); ++k) {
    const auto [H, W, S] = cases[k];
    const std::string id = std::to_string(k);
    SCOPED_TRACE("map " + id + " " + std::to_string(H) + "x" + std::to_string(W) + " -> " + std::to_string(S));
    // Smoothing, float32 in (float32 stored after each axis, like scipy) and float64 in.
    at::Tensor g32 = zsad::models::gaussian_smooth(maps[k], 4.0);
    ASSERT_EQ(g32.scalar_type(), at::kFloat);
    auto ref32 = read_raw<float>(dir + "/g32_" + id + ".f32", static_cast<size_t>(H * W));
    at::Tensor g64 = zsad::models::gaussian_smooth(maps[k].to(at::kDouble), 4.0);
    auto ref64 = read_raw<double>(dir + "/g64_" + id + ".f64", static_cast<size_t>(H * W));
    double e32 = 0, e64 = 0;
    for (int64_t i = 0; i < H * W; ++i) {
      e32 = std::max(e32, std::fabs(static_cast<double>(g32.data_ptr<float>()[i]) - ref32[static_cast<size_t>(i)]));
      e64 = std::max(e64, std::fabs(g64.data_ptr<double>()[i] - ref64[static_cast<size_t>(i)]));
    }
    EXPECT_LE(e32, 1e-5);
    EXPECT_LE(e64, 1e-10);
    // A batch of maps gives the same as one at a time.
    at::Tensor batch = zsad::models::gaussian_smooth(at::stack({maps[k], maps[k] * 2}), 4.0);
    EXPECT_TRUE(batch[0].equal(g32));

    // Upsampling.
    for (const auto& [name, tag] : std::vector<std::pair<std::string, std::string>>{
             {"bilinear", "bl"}, {"bilinear_align_corners", "ba"}, {"nearest", "nn"}}) {
      at::Tensor u = zsad::models::upsample_maps(maps[k].unsqueeze(0), S, zsad::models::parse_upsample(name));
      ASSERT_EQ(u.sizes(), (std::vector<int64_t>{1, S, S}));
      auto ref = read_raw<float>(dir + "/" + tag + "_" + id + ".f32", static_cast<size_t>(S * S));
      double e = 0;
      for (int64_t i = 0; i < S * S; ++i) {
        e = std::max(e, std::fabs(static_cast<double>(u.data_ptr<float>()[i]) - ref[static_cast<size_t>(i)]));
      }
      EXPECT_LE(e, 1e-6) << name;
    }
  }
  // The whole pipeline is upsample then smooth.
  zsad::models::PostprocessOptions o;
  o.eval_size = 64;
  at::Tensor p = zsad::models::postprocess_maps(maps[2].unsqueeze(0), o);
  at::Tensor q = zsad::models::gaussian_smooth(zsad::models::upsample_maps(maps[2].unsqueeze(0), 64, {}), 4.0);
  EXPECT_TRUE(p.equal(q));
  zsad::test::remove_dir(dir);
}

TEST(Postprocess, RejectsBadInput) {
  EXPECT_THROW(zsad::models::parse_upsample("bicubic"), zsad::Error);
  EXPECT_THROW(zsad::models::upsample_maps(at::zeros({2, 2, 2, 2}), 4, {}), zsad::Error);
  EXPECT_THROW(zsad::models::gaussian_smooth(at::zeros({4, 4}, at::kInt), 4.0), zsad::Error);
}

}  // namespace
