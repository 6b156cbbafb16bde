// WinCLIP-style baseline: prompt ensemble, scores recomputed independently from the CLIP towers,
// batch invariance, per-class text caching, dataset-level options, the method registry.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "common/error.h"
#include "models/methods/method.h"
#include "models/methods/winclip/winclip.h"

namespace {

using namespace zsad::models;

OptionMap tiny_options() {
  OptionMap o;
  o.set("method.name", "winclip");
  o.set("model.arch", "tiny");
  o.set("model.image_size", "64");
  o.set("model.init_seed", "3");
  return o;
}

TEST(WinClip, PromptEnsemble) {
  auto n = winclip::expand_prompts(winclip::default_normal_states(), winclip::default_templates(), "metal nut");
  auto a = winclip::expand_prompts(winclip::default_anomaly_states(), winclip::default_templates(), "metal nut");
  EXPECT_EQ(n.size(), 7u * 22u);
  EXPECT_EQ(a.size(), 5u * 22u);
  EXPECT_EQ(n[0], "a cropped photo of the metal nut.");
  EXPECT_EQ(a[22 * 2 + 12], "a photo of a metal nut with flaw.");
  EXPECT_EQ(winclip::class_words("metal_nut"), "metal nut");
}

TEST(WinClip, ScoresEqualAnIndependentComputation) {
  OptionMap o = tiny_options();
  auto m = make_method(o);
  ASSERT_EQ(m->name(), "winclip");
  EXPECT_EQ(m->display_name(), "WinCLIP-style (no windows)");
  EXPECT_FALSE(m->trainable());
  at::manual_seed(11);
  MethodBatch b;
  b.images = at::randn({3, 3, 64, 64});
  b.class_names = {"grain", "washer", "grain"};
  b.indices = {0, 1, 2};
  MethodOutput out = m->infer(b);
  ASSERT_EQ(out.image_scores.sizes(), (std::vector<int64_t>{3}));
  ASSERT_EQ(out.anomaly_maps.sizes(), (std::vector<int64_t>{3, 8, 8}));

  // Independent: same random CLIP, text features of every prompt, mean of normalised, softmax(100 cos).
  ClipModel clip = build_clip_model(o);
  auto tok = make_text_tokenizer(o, 77, clip->cfg.vocab_size);
  auto text = [&](const std::string& cls, const std::vector<std::string>& states) {
    auto prompts = winclip::expand_prompts(states, winclip::default_templates(), cls);
    std::vector<at::Tensor> f;
    for (const auto& p : prompts) {
      auto ids = tok(p);
      at::Tensor t = at::tensor(ids, at::kLong).view({1, 77});
      at::Tensor e = clip->encode_text(t)[0];
      f.push_back(e / e.norm());
    }
    at::Tensor mean = at::stack(f).mean(0);
    return mean / mean.norm();
  };
  VisionRequest req;
  req.vv_depth = clip->cfg.vision_layers;
  auto v = clip->encode_vision(b.images, req);
  for (int64_t i = 0; i < 3; ++i) {
    const std::string cls = b.class_names[static_cast<size_t>(i)];
    at::Tensor tn = text(cls, winclip::default_normal_states()), ta = text(cls, winclip::default_anomaly_states());
    at::Tensor g = v.image_features[i] / v.image_features[i].norm();
    const double ln = (g * tn).sum().item<double>() * 100, la = (g * ta).sum().item<double>() * 100;
    const double expect = 1.0 / (1.0 + std::exp(ln - la));
    EXPECT_NEAR(out.image_scores[i].item<double>(), expect, 1e-5);
    at::Tensor p = v.patch_tokens[i] / v.patch_tokens[i].norm(2, -1, true);  // [64,E]
    at::Tensor d = (at::matmul(p, ta) - at::matmul(p, tn)) * 100;
    at::Tensor pm = at::sigmoid(d).view({8, 8});
    EXPECT_LE((out.anomaly_maps[i] - pm).abs().max().item<double>(), 1e-5);
  }
  // Scores vary across images (a random CLIP still separates inputs).
  EXPECT_GT((out.anomaly_maps[0] - out.anomaly_maps[1]).abs().max().item<double>(), 1e-6);
}

TEST(WinClip, BatchInvarianceCachingAndDatasetOptions) {
  auto m = std::make_unique<winclip::WinClipMethod>(tiny_options());
  at::manual_seed(5);
  MethodBatch b;
  b.images = at::randn({4, 3, 64, 64});
  b.class_names = {"a", "b", "a", "b"};
  MethodOutput all = m->infer(b);
  const int64_t forwards = m->text_forwards();
  EXPECT_EQ(forwards, 4);  // 2 classes x (normal, anomalous)
  for (int64_t i = 0; i < 4; ++i) {
    MethodBatch one;
    one.images = b.images.slice(0, i, i + 1);
    one.class_names = {b.class_names[static_cast<size_t>(i)]};
    MethodOutput o = m->infer(one);
    // Per-image forwards (the default): identical to the batched call.
    EXPECT_TRUE(o.image_scores[0].equal(all.image_scores[i]));
    EXPECT_TRUE(o.anomaly_maps[0].equal(all.anomaly_maps[i]));
  }
  EXPECT_EQ(m->text_forwards(), forwards);  // cached per class
  {
    // One forward per batch: BLAS with other shapes rounds differently in float32, amplified by the
    // 1/0.01 logit scale; close but not bit-identical.
    OptionMap ob = tiny_options();
    ob.set("method.winclip.per_image_forward", "false");
    winclip::WinClipMethod batched(ob);
    MethodOutput bo = batched.infer(b);
    EXPECT_LE((bo.image_scores - all.image_scores).abs().max().item<double>(), 1e-5);
    EXPECT_LE((bo.anomaly_maps - all.anomaly_maps).abs().max().item<double>(), 1e-5);
  }

  // Dataset options: map_weight fuses the max of the patch map into the image score.
  DatasetContext ctx;
  ctx.options.set("map_weight", "0.5");
  m->begin_dataset(ctx);
  MethodOutput f = m->infer(b);
  for (int64_t i = 0; i < 4; ++i) {
    const double expect = 0.5 * all.image_scores[i].item<double>() + 0.5 * all.anomaly_maps[i].max().item<double>();
    EXPECT_NEAR(f.image_scores[i].item<double>(), expect, 1e-6);
  }
  EXPECT_EQ(m->text_forwards(), forwards);  // same prompts: cache kept
  ctx.options.set("map_weight", "2");
  EXPECT_THROW(m->begin_dataset(ctx), zsad::Error);
}

TEST(MethodRegistry, KnowsBuiltinsAndRejectsUnknown) {
  const auto& reg = method_registry();
  ASSERT_TRUE(reg.count("winclip"));
  EXPECT_FALSE(reg.at("winclip").keys.empty());
  OptionMap o = tiny_options();
  o.set("method.name", "nope");
  try {
    make_method(o);
    FAIL();
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find("winclip"), std::string::npos);
  }
  // A state loaded into a stateless method is rejected when strict.
  auto m = make_method(tiny_options());
  EXPECT_THROW(m->load_state_dict({{"x", at::zeros({1})}}, true), zsad::Error);
}

TEST(OptionMap, TypedAccessListsAndMerge) {
  OptionMap o;
  o.set("a.int", "3");
  o.set("a.f", "0.5");
  o.set("a.b", "true");
  o.set("a.n", "null");
  o.set_list("a.l", {"x", "y"});
  EXPECT_EQ(o.integer("a.int", 0), 3);
  EXPECT_DOUBLE_EQ(o.real("a.f", 0), 0.5);
  EXPECT_TRUE(o.flag("a.b", false));
  EXPECT_EQ(o.str("a.n", "def"), "def");
  EXPECT_EQ(o.list("a.l"), (std::vector<std::string>{"x", "y"}));
  EXPECT_THROW(o.integer("a.f", 0), zsad::Error);
  OptionMap over;
  over.set_list("a.l", {"z"});
  EXPECT_EQ(o.merged(over).list("a.l"), (std::vector<std::string>{"z"}));
  EXPECT_EQ(o.sub("a").integer("int", 0), 3);
}

}  // namespace
