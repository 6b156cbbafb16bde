// Two reconstruction switches of APT beyond the defaults: the latent variant of the anomaly
// synthesis (method.apt.synth_space: latent) and PromptAD's BGR test-image quirk
// (method.apt.bgr_test_quirk).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <unistd.h>

#include <ATen/ATen.h>

#include "common/error.h"
#include "models/methods/apt/apt_components.h"
#include "models/methods/apt/apt_method.h"
#include "models/methods/method.h"
#include "apt_test_util.h"

namespace apt = zsad::models::apt;
using zsad::test::apt::max_diff;
using zsad::test::apt::tiny_apt_method_options;

namespace {

at::Tensor unit_rows(at::Tensor x) { return x / x.norm(2, -1, true); }

}  // namespace

// 4x4 grid on 16 px masks (4 px patches), r = 2 variants per shot, 2 shots. Hand-made regions:
//   variant 0: patch 0 whole and a quarter of patch 1      -> patch 0 (coverage >= 1/2)
//   variant 1: a quarter of patch 5 only                    -> patch 5 (the most covered one)
//   variant 2: half of patch 10 and half of patch 11        -> patches 10 and 11
//   variant 3: nothing                                      -> no patch
TEST(AptLatentSynthesis, PerturbsExactlyTheCoveredPatchesReproducibly) {
  const int64_t K = 2, r = 2, h = 4, P = h * h, D = 8, S = 16;
  at::manual_seed(3);
  auto clean = unit_rows(at::randn({K, P, D}));
  auto masks = at::zeros({K * r, S, S});
  masks[0].narrow(0, 0, 4).narrow(1, 0, 4).fill_(1);
  masks[0].narrow(0, 0, 2).narrow(1, 4, 2).fill_(1);
  masks[1].narrow(0, 4, 2).narrow(1, 4, 2).fill_(1);
  masks[2].narrow(0, 8, 2).narrow(1, 8, 8).fill_(1);
  const std::vector<int64_t> all = {0, 1, 2, 3};
  auto a = apt::latent_variants(clean, masks, all, r, 0.5, 42, 1, 7);
  ASSERT_EQ(a.patches.sizes(), (std::vector<int64_t>{K * r, P, D}));
  ASSERT_EQ(a.patch_masks.sizes(), (std::vector<int64_t>{K * r, h, h}));
  const std::vector<std::vector<int64_t>> expected = {{0}, {5}, {10, 11}, {}};
  for (int64_t j = 0; j < K * r; ++j) {
    auto want = at::zeros({P});
    for (int64_t p : expected[j]) want[p] = 1;
    EXPECT_TRUE(at::equal(a.patch_masks[j].reshape({P}), want)) << "variant " << j << ": " << a.patch_masks[j];
    const auto& shot = clean[j / r];
    for (int64_t p = 0; p < P; ++p) {
      if (want[p].item<float>() == 0.f) {
        EXPECT_TRUE(at::equal(a.patches[j][p], shot[p])) << "variant " << j << " patch " << p << " changed";
      } else {
        EXPECT_GT(max_diff(a.patches[j][p], shot[p]), 1e-3) << "variant " << j << " patch " << p << " unchanged";
        EXPECT_NEAR(a.patches[j][p].norm().item<double>(), 1.0, 1e-5);
      }
    }
  }
  // Same key, same noise; the next step, fresh noise; any subset of rows, the same rows (data
  // parallelism synthesises a rank's share only).
  auto b = apt::latent_variants(clean, masks, all, r, 0.5, 42, 1, 7);
  EXPECT_TRUE(at::equal(a.patches, b.patches));
  auto c = apt::latent_variants(clean, masks, all, r, 0.5, 42, 1, 8);
  EXPECT_FALSE(at::equal(a.patches[0][0], c.patches[0][0]));
  auto sub = apt::latent_variants(clean, masks.index_select(0, at::tensor({3, 0}, at::kLong)), {3, 0}, r, 0.5, 42, 1, 7);
  EXPECT_TRUE(at::equal(sub.patches[0], a.patches[3]));
  EXPECT_TRUE(at::equal(sub.patches[1], a.patches[0]));
  EXPECT_THROW(apt::latent_variants(clean, masks, {0, 1, 2, 4}, r, 0.5, 42, 1, 7), zsad::Error);
}

// The noise norm is sigma against unit tokens: in D = 1024 dimensions a perturbed token keeps
// cos = 1/sqrt(1 + sigma^2) to its clean token (up to ~1/sqrt(D) spread).
TEST(AptLatentSynthesis, NoiseNormIsSigmaAgainstUnitTokens) {
  const int64_t P = 4, D = 1024, S = 8;
  at::manual_seed(4);
  auto clean = unit_rows(at::randn({1, P, D}));
  auto masks = at::ones({1, S, S});
  for (double sigma : {0.25, 0.5, 1.0}) {
    auto v = apt::latent_variants(clean, masks, {0}, 1, sigma, 9, 0, 0);
    auto cos = (v.patches[0] * clean[0]).sum(-1);
    for (int64_t p = 0; p < P; ++p)
      EXPECT_NEAR(cos[p].item<double>(), 1.0 / std::sqrt(1.0 + sigma * sigma), 0.03) << "sigma " << sigma;
  }
}

// PromptAD reads test images with OpenCV and never converts them to RGB: with the quirk on, APT
// scores an image exactly as it scores the channel-swapped image with the quirk off; the shots
// (prompts, memory bank) are the same in both.
TEST(AptBgrQuirk, ScoresTestImagesAsTheirChannelSwappedSelves) {
  at::manual_seed(8);
  auto x01 = at::rand({3, 3, 32, 32});
  auto x = apt::clip_normalize(x01);
  EXPECT_LT(max_diff(apt::bgr_as_rgb(x), apt::clip_normalize(x01.flip({1}))), 1e-5);

  zsad::models::SupportSet sup;
  sup.class_name = "gear";
  sup.images = apt::clip_normalize(at::rand({2, 3, 32, 32}));
  sup.indices = {0, 1};
  sup.names = {"gear/train/good/000.png", "gear/train/good/001.png"};
  zsad::models::DatasetContext ctx;
  ctx.name = "d";
  ctx.classes = {"gear"};
  const std::string dir = "/tmp/zsad_apt_bgr_" + std::to_string(::getpid());
  auto run = [&](bool quirk, const at::Tensor& images) {
    auto o = tiny_apt_method_options("0", "1");
    o.set("method.apt.bgr_test_quirk", quirk ? "true" : "false");
    o.set("method.apt.state_dir", dir + (quirk ? "_on" : "_off"));
    auto m = zsad::models::make_method(o);
    m->begin_dataset(ctx);
    m->prepare_class(sup);
    zsad::models::MethodBatch b;
    b.images = images;
    b.class_names = {"gear", "gear", "gear"};
    b.indices = {0, 1, 2};
    return m->infer(b);
  };
  auto on = run(true, x);
  auto off_swapped = run(false, apt::bgr_as_rgb(x));
  auto off = run(false, x);
  EXPECT_LT(max_diff(on.anomaly_maps, off_swapped.anomaly_maps), 1e-5);
  EXPECT_LT(max_diff(on.image_scores, off_swapped.image_scores), 1e-5);
  EXPECT_GT(max_diff(on.anomaly_maps, off.anomaly_maps), 1e-4) << "the quirk changed nothing";
}
