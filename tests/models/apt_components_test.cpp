// APT components: gradient projection (hand computation), meta-prompt update (its formula),
// synthetic anomalies (reproducible, confined to the object mask), object mask, memory-bank
// scoring and loss pieces against an independent numpy reference (apt_reference.py).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

#include <ATen/ATen.h>

#include "models/methods/apt/apt_components.h"
#include "models/methods/apt/apt_options.h"

namespace apt = zsad::models::apt;

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

at::Tensor vec(std::initializer_list<double> v) { return at::tensor(std::vector<double>(v), at::kDouble); }

}  // namespace

TEST(AptGradientProjection, RemovesExactlyTheConflictingComponentByHand) {
  // g_d = (1, 2), g_g = (-3, 0): u = (-1, 0), <g_d,u> = -1 < 0 -> g = g_d - (-1)(-1,0) = (0, 2).
  auto g = apt::project_gradient(vec({1, 2}), vec({-3, 0}), 1.0);
  EXPECT_DOUBLE_EQ(g[0].item<double>(), 0.0);
  EXPECT_DOUBLE_EQ(g[1].item<double>(), 2.0);
  // lambda = 0.5 removes half of it: (0.5, 2).
  g = apt::project_gradient(vec({1, 2}), vec({-3, 0}), 0.5);
  EXPECT_DOUBLE_EQ(g[0].item<double>(), 0.5);
  EXPECT_DOUBLE_EQ(g[1].item<double>(), 2.0);
  // Oblique: g_d = (2, 0), g_g = (-1, -1): u = -(1,1)/sqrt2, <g_d,u> = -sqrt2,
  // g = (2,0) - (-sqrt2) * (-(1,1)/sqrt2) = (2,0) - (1,1) = (1,-1).
  g = apt::project_gradient(vec({2, 0}), vec({-1, -1}), 1.0);
  EXPECT_NEAR(g[0].item<double>(), 1.0, 1e-15);
  EXPECT_NEAR(g[1].item<double>(), -1.0, 1e-15);
  // Agreeing (or orthogonal) gradients pass unchanged.
  g = apt::project_gradient(vec({1, 2}), vec({3, 1}), 1.0);
  EXPECT_TRUE(at::equal(g, vec({1, 2})));
  g = apt::project_gradient(vec({0, 2}), vec({5, 0}), 1.0);
  EXPECT_TRUE(at::equal(g, vec({0, 2})));
  // A zero guidance gradient leaves g_d alone.
  g = apt::project_gradient(vec({1, -2}), vec({0, 0}), 1.0);
  EXPECT_TRUE(at::equal(g, vec({1, -2})));
}

TEST(AptGradientProjection, ResultIsOrthogonalToGuidanceOnConflictAndKeepsTheRest) {
  at::manual_seed(3);
  int conflicts = 0;
  for (int trial = 0; trial < 50; ++trial) {
    auto gd = at::randn({3, 4, 5}, at::kDouble), gg = at::randn({3, 4, 5}, at::kDouble);
    auto g = apt::project_gradient(gd, gg, 1.0);
    const double dot = (gd * gg).sum().item<double>();
    if (dot < 0) {
      ++conflicts;
      EXPECT_NEAR((g * gg).sum().item<double>(), 0.0, 1e-12);
      // The removed part is parallel to g_g: gd - g = c * gg with c = dot/|gg|^2.
      auto removed = gd - g;
      EXPECT_LT((removed - dot / gg.pow(2).sum().item<double>() * gg).abs().max().item<double>(), 1e-12);
    } else {
      EXPECT_TRUE(at::equal(g, gd));
    }
  }
  EXPECT_GT(conflicts, 5);
  EXPECT_LT(conflicts, 45);
}

TEST(AptMetaPrompt, UpdateMatchesFormulaByHand) {
  // t = (1,0,0), learned = (0,1,0), t0 = (0,0,1), beta 0.9, gamma 0.1:
  // a = (0.9, 0.1, 0)/sqrt(0.82); b = a + 0.1 t0; result = b/|b|.
  const double n1 = std::sqrt(0.82);
  const double a0 = 0.9 / n1, a1 = 0.1 / n1, a2 = 0.1;
  const double n2 = std::sqrt(a0 * a0 + a1 * a1 + a2 * a2);
  auto learned = vec({0, 1, 0}).set_requires_grad(true);
  auto t = apt::meta_prompt_update(vec({1, 0, 0}), learned, vec({0, 0, 1}), 0.9, 0.1);
  EXPECT_NEAR(t[0].item<double>(), a0 / n2, 1e-15);
  EXPECT_NEAR(t[1].item<double>(), a1 / n2, 1e-15);
  EXPECT_NEAR(t[2].item<double>(), a2 / n2, 1e-15);
  EXPECT_FALSE(t.requires_grad());  // sg(learned)
  // beta = 1, gamma = 0: the meta-prompt stays; beta = 0, gamma = 0: it jumps onto the learned one.
  auto same = apt::meta_prompt_update(vec({0.6, 0.8, 0}), vec({0, 1, 0}), vec({0, 0, 1}), 1.0, 0.0);
  EXPECT_LT((same - vec({0.6, 0.8, 0})).abs().max().item<double>(), 1e-15);
  auto jump = apt::meta_prompt_update(vec({1, 0, 0}), vec({0, 3, 4}), vec({0, 0, 1}), 0.0, 0.0);
  EXPECT_LT((jump - vec({0, 0.6, 0.8})).abs().max().item<double>(), 1e-15);
  // Repeated updates toward a fixed target never reach it while gamma > 0 (the anchor floor).
  auto m = vec({1, 0, 0});
  for (int i = 0; i < 500; ++i) m = apt::meta_prompt_update(m, vec({0, 1, 0}), vec({1, 0, 0}), 0.9, 0.1);
  EXPECT_GT(m[0].item<double>(), 0.05);
  EXPECT_NEAR(m.norm().item<double>(), 1.0, 1e-12);
}

TEST(AptSynthesis, ReproducibleFreshPerStepAndConfinedToObjectMask) {
  const int64_t K = 2, S = 48, r = 3;
  at::manual_seed(5);
  auto img = at::rand({K, 3, S, S}, at::kFloat);
  // Object: a centred square on shot 0, the right half on shot 1.
  auto obj = at::zeros({K, S, S}, at::kByte);
  obj[0].narrow(0, 12, 24).narrow(1, 12, 24).fill_(1);
  obj[1].narrow(1, 24, 24).fill_(1);
  apt::AptOptions o;
  auto cfg = apt::synthesis_config(o);
  auto a = apt::synthesize_batch(img, obj, r, cfg, 42, 1, 7);
  auto b = apt::synthesize_batch(img, obj, r, cfg, 42, 1, 7);
  auto c = apt::synthesize_batch(img, obj, r, cfg, 42, 1, 8);
  ASSERT_EQ(a.images.sizes(), (std::vector<int64_t>{K * r, 3, S, S}));
  ASSERT_EQ(a.masks.sizes(), (std::vector<int64_t>{K * r, S, S}));
  EXPECT_TRUE(at::equal(a.images, b.images));
  EXPECT_TRUE(at::equal(a.masks, b.masks));
  EXPECT_FALSE(at::equal(a.masks, c.masks));  // fresh noise at the next step
  EXPECT_FALSE(at::equal(a.images, c.images));
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t v = 0; v < r; ++v) {
      const int64_t j = i * r + v;
      auto m = a.masks[j];
      EXPECT_GT(m.sum().item<double>(), 0.0) << "variant " << j;
      // Confined: no mask pixel outside the object.
      EXPECT_EQ((m * (1 - obj[i].to(at::kFloat))).sum().item<double>(), 0.0) << "variant " << j;
      // Only masked pixels change, and some of them do.
      auto diff = (a.images[j] - img[i]).abs().amax(0);
      EXPECT_EQ((diff * (1 - m)).max().item<double>(), 0.0) << "variant " << j;
      EXPECT_GT((diff * m).max().item<double>(), 0.0) << "variant " << j;
      EXPECT_GE(a.images[j].min().item<double>(), 0.0);
      EXPECT_LE(a.images[j].max().item<double>(), 1.0);
    }
  }
  // Variants of one shot differ from each other.
  EXPECT_FALSE(at::equal(a.masks[0], a.masks[1]));
}

TEST(AptSynthesis, GaussianOnlyOptionAndClipNormalisationRoundTrip) {
  apt::AptOptions o;
  apt::set_apt_option(o, "synth_noise", "gaussian");
  auto cfg = apt::synthesis_config(o);
  EXPECT_EQ(cfg.p_gaussian, 1.0);
  EXPECT_EQ(cfg.p_uniform + cfg.p_salt_pepper, 0.0);
  at::manual_seed(1);
  auto x = at::rand({2, 3, 8, 8});
  EXPECT_LT((apt::clip_denormalize(apt::clip_normalize(x)) - x).abs().max().item<double>(), 1e-6);
}

TEST(AptObjectMask, ThresholdUpsampleDilateAndFallback) {
  const int64_t grid = 4, S = 32, E = 8;
  auto t_obj = at::zeros({E}), t_bg = at::zeros({E});
  t_obj[0] = 1;
  t_bg[1] = 1;
  // Left two patch columns look like the object, the rest like the background.
  auto P = at::zeros({grid, grid, E});
  P.narrow(1, 0, 2).select(2, 0).fill_(1);
  P.narrow(1, 2, 2).select(2, 1).fill_(1);
  P = P.view({grid * grid, E});
  auto m = apt::object_mask_from_patches(P, t_obj, t_bg, grid, S, 100.0, 0.5, 0, 0.05);
  // Bilinear (align_corners false) crosses 0.5 exactly at the patch boundary x = 16.
  auto expect = at::zeros({S, S}, at::kByte);
  expect.narrow(1, 0, 16).fill_(1);
  EXPECT_TRUE(at::equal(m, expect));
  // Dilation by one patch (8 px) widens it to 24 columns.
  auto md = apt::object_mask_from_patches(P, t_obj, t_bg, grid, S, 100.0, 0.5, 1, 0.05);
  expect.narrow(1, 16, 8).fill_(1);
  EXPECT_TRUE(at::equal(md, expect));
  // A mask covering less than the minimum fraction falls back to the whole image.
  auto all_bg = at::zeros({grid * grid, E});
  all_bg.select(1, 1).fill_(1);
  auto mf = apt::object_mask_from_patches(all_bg, t_obj, t_bg, grid, S, 100.0, 0.5, 1, 0.05);
  EXPECT_EQ(mf.sum().item<int64_t>(), S * S);
}

TEST(AptText, ClassNameMappingAndTemplates) {
  using apt::ClassNameMapping;
  EXPECT_EQ(apt::class_name_text("pcb3", ClassNameMapping::kPromptAD), "printed circuit board");
  EXPECT_EQ(apt::class_name_text("macaroni2", ClassNameMapping::kPromptAD), "macaroni");
  EXPECT_EQ(apt::class_name_text("pipe_fryum", ClassNameMapping::kPromptAD), "pipe fryum");
  EXPECT_EQ(apt::class_name_text("chewinggum", ClassNameMapping::kPromptAD), "chewing gum");
  EXPECT_EQ(apt::class_name_text("metal_nut", ClassNameMapping::kPromptAD), "metal nut");
  EXPECT_EQ(apt::class_name_text("toothbrush", ClassNameMapping::kPromptAD), "toothbrush");
  EXPECT_EQ(apt::class_name_text("pcb3", ClassNameMapping::kNone), "pcb3");
  EXPECT_EQ(apt::class_name_text("metal_nut", ClassNameMapping::kNone), "metal nut");
  EXPECT_EQ(apt::fill_template("a photo of a {}.", apt::fill_template("{} with flaw", "object")),
            "a photo of a object with flaw.");
}

namespace {

void write_arrays(const std::string& dir, const std::map<std::string, at::Tensor>& arrays) {
  std::ofstream shapes(dir + "/shapes.txt");
  for (const auto& [name, t] : arrays) {
    auto c = t.to(at::kDouble).contiguous();
    std::ofstream f(dir + "/" + name + ".bin", std::ios::binary);
    f.write(reinterpret_cast<const char*>(c.data_ptr<double>()), c.numel() * sizeof(double));
    shapes << name;
    for (auto s : c.sizes()) shapes << " " << s;
    shapes << "\n";
  }
}

std::map<std::string, at::Tensor> read_outputs(const std::string& dir) {
  std::map<std::string, at::Tensor> out;
  std::ifstream shapes(dir + "/out_shapes.txt");
  std::string line;
  while (std::getline(shapes, line)) {
    std::istringstream is(line);
    std::string name;
    is >> name;
    std::vector<int64_t> shape;
    for (int64_t s; is >> s;) shape.push_back(s);
    int64_t n = 1;
    for (auto s : shape) n *= s;
    std::vector<double> buf(n);
    std::ifstream f(dir + "/out_" + name + ".bin", std::ios::binary);
    f.read(reinterpret_cast<char*>(buf.data()), n * sizeof(double));
    out[name] = at::tensor(buf, at::kDouble).reshape(shape);
  }
  return out;
}

}  // namespace

TEST(AptScoring, MemoryBankFusionAndLossesMatchNumpyReference) {
  at::manual_seed(11);
  const int64_t B = 3, P = 16, N = 40, E = 12;
  auto nrm = [](const at::Tensor& x) { return x / x.norm(2, {-1}, true); };
  std::map<std::string, at::Tensor> in;
  in["q0"] = at::randn({B, P, 10}, at::kDouble);
  in["q1"] = at::randn({B, P, 6}, at::kDouble);
  in["bank0"] = nrm(at::randn({N, 10}, at::kDouble));
  in["bank1"] = nrm(at::randn({N, 6}, at::kDouble));
  in["text_map"] = at::rand({B, P}, at::kDouble) * 0.9 + 0.05;
  in["f"] = nrm(at::randn({5, E}, at::kDouble));
  in["t_n"] = nrm(at::randn({E}, at::kDouble));
  in["t_a"] = nrm(at::randn({E}, at::kDouble));
  in["t_a_all"] = nrm(at::randn({6, E}, at::kDouble));
  in["tau"] = vec({4.6052});
  in["T"] = vec({2.0});
  in["teacher"] = at::randn({7, 2}, at::kDouble) * 3;
  in["student"] = at::randn({7, 2}, at::kDouble) * 3;
  in["feats"] = at::randn({5, E}, at::kDouble) * 2;
  char tmpl[] = "/tmp/zsad_apt_ref_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  write_arrays(dir, in);
  const std::string cmd = env_or("ZSAD_PYTHON", "/usr/bin/python3") + " " + env_or("ZSAD_SOURCE_DIR", ".") +
                          "/tests/models/apt_reference.py " + dir;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto ref = read_outputs(dir);
  std::system(("rm -rf " + dir).c_str());
  ASSERT_EQ(ref.size(), 8u);

  auto v = apt::memory_visual_map({in["q0"], in["q1"]}, {in["bank0"], in["bank1"]});
  EXPECT_LT((v - ref["visual"]).abs().max().item<double>(), 1e-12);
  using apt::ScoreFusion;
  EXPECT_LT((apt::fuse_maps(in["text_map"], v, ScoreFusion::kHarmonic) - ref["harmonic"]).abs().max().item<double>(), 1e-12);
  EXPECT_LT((apt::fuse_maps(in["text_map"], v, ScoreFusion::kMean) - ref["mean"]).abs().max().item<double>(), 1e-12);
  EXPECT_TRUE(at::equal(apt::fuse_maps(in["text_map"], v, ScoreFusion::kText), in["text_map"]));
  EXPECT_TRUE(at::equal(apt::fuse_maps(in["text_map"], v, ScoreFusion::kVisual), v));
  EXPECT_NEAR(apt::v2t_loss(in["f"], in["t_n"], in["t_a_all"], 4.6052).item<double>(), ref["v2t"][0].item<double>(), 1e-12);
  EXPECT_NEAR(apt::triplet_loss(in["f"], in["t_n"], in["t_a"], 0.0).item<double>(), ref["triplet"][0].item<double>(), 1e-12);
  EXPECT_NEAR(apt::kl_guidance(in["teacher"], in["student"], 2.0).item<double>(), ref["kl"][0].item<double>(), 1e-12);
  EXPECT_LT((apt::anchor(in["feats"], apt::AnchorMean::kRaw) - ref["anchor_raw"]).abs().max().item<double>(), 1e-12);
  EXPECT_LT((apt::anchor(in["feats"], apt::AnchorMean::kNormalized) - ref["anchor_norm"]).abs().max().item<double>(), 1e-12);
}

TEST(AptOptionsTest, EveryKeyRoundTripsAndErrorsNameTheKey) {
  apt::AptOptions d;
  const auto keys = apt::apt_option_keys();
  EXPECT_GE(keys.size(), 50u);
  apt::AptOptions o;
  for (const auto& k : keys) {
    EXPECT_FALSE(k.status.empty()) << k.name;
    EXPECT_FALSE(k.help.empty()) << k.name;
    apt::set_apt_option(o, "method.apt." + k.name, k.default_value);
  }
  EXPECT_EQ(apt::apt_options_to_map(o), apt::apt_options_to_map(d));
  apt::set_apt_option(o, "smgs_mode", "none");
  apt::set_apt_option(o, "memory_layers", "[1, 2]");
  apt::set_apt_option(o, "texture_classes", "[woven, grain]");
  EXPECT_EQ(o.smgs_mode, apt::SmgsMode::kNone);
  EXPECT_EQ(o.memory_layers, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(o.texture_classes, (std::vector<std::string>{"woven", "grain"}));
  try {
    apt::set_apt_option(o, "smgs_mode", "sometimes");
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("method.apt.smgs_mode"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("none|fixed|ema"), std::string::npos) << e.what();
  }
  EXPECT_THROW(apt::set_apt_option(o, "smgs_mod", "none"), std::exception);
  EXPECT_THROW(apt::set_apt_option(o, "shots", "four"), std::exception);
  apt::AptOptions bad;
  bad.memory_bank = false;
  EXPECT_THROW(bad.validate(), std::exception);  // harmonic fusion needs the bank
  bad.fusion = apt::ScoreFusion::kText;
  EXPECT_NO_THROW(bad.validate());
  // r defaults: 4 variants for k=1, 2 otherwise.
  apt::AptOptions k1;
  k1.shots = 1;
  EXPECT_EQ(k1.variants(), 4);
  k1.shots = 2;
  EXPECT_EQ(k1.variants(), 2);
}
