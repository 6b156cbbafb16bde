// CoPS behind the method interface: features from the frozen CLIP, keyed VAE noise (scores do not
// depend on batching), per-dataset settings, trainable parameters and checkpoint contents.
#include <gtest/gtest.h>

#include "common/error.h"
#include "models/methods/cops/cops_method.h"

namespace zsad::test::cops {
namespace {

namespace mc = zsad::models::cops;
using zsad::models::DatasetContext;
using zsad::models::MethodBatch;
using zsad::models::OptionMap;
using zsad::models::TrainContext;

OptionMap tiny_options() {
  OptionMap o;
  o.set("method.name", "cops");
  o.set("model.arch", "tiny");
  o.set("model.init_seed", "3");
  o.set("seed", "0");
  o.set("method.cops.extractor_heads", "4");
  o.set("method.cops.deep_prompt_depth", "1");  // tiny CLIP has 2 text layers
  o.set("method.cops.r_test", "3");
  o.set("method.cops.train_kernel", "3");
  o.set("method.cops.test_kernel", "3");
  return o;
}

MethodBatch make_batch(const std::vector<int64_t>& indices) {
  at::manual_seed(17);
  const int64_t B = static_cast<int64_t>(indices.size());
  MethodBatch b;
  b.images = at::randn({B, 3, 32, 32});
  b.masks = at::zeros({B, 1, 32, 32});
  b.masks[0].narrow(1, 4, 10).narrow(2, 8, 12).fill_(1);
  b.labels = (b.masks.flatten(1).amax(1) > 0).to(at::kLong);
  b.class_names.assign(indices.size(), "part");
  b.indices = indices;
  b.seed = 5;
  b.step = 2;
  return b;
}

MethodBatch select(const MethodBatch& b, int64_t i) {
  MethodBatch s = b;
  s.images = b.images.narrow(0, i, 1);
  s.masks = b.masks.narrow(0, i, 1);
  s.labels = b.labels.narrow(0, i, 1);
  s.class_names = {b.class_names[i]};
  s.indices = {b.indices[i]};
  return s;
}

TEST(CopsMethod, TrainStepUsesTheFrozenFeaturesAndKeyedNoise) {
  mc::CopsMethod m(tiny_options());
  EXPECT_EQ(m.name(), "cops");
  EXPECT_EQ(m.display_name(), "CoPS");
  EXPECT_EQ(m.input_size(), 32);
  EXPECT_EQ(m.default_upsampling(), "nearest");
  EXPECT_EQ(m.model().options().feature_dim, 64);  // follows the CLIP embedding dim

  auto b = make_batch({10, 11, 12});
  auto L = m.train_step(b, TrainContext{});
  ASSERT_TRUE(L.count("total"));
  EXPECT_TRUE(std::isfinite(L["total"].item<double>()));
  EXPECT_TRUE(L["total"].requires_grad());
  EXPECT_GT(L["scatter"].item<double>(), 0.0);  // image 0 has an anomalous region

  auto [g, F] = m.features(b);
  EXPECT_EQ(g.sizes(), (std::vector<int64_t>{3, 64}));
  EXPECT_EQ(F.sizes(), (std::vector<int64_t>{3, 16, 64}));
  mc::CopsBatch cb{g, F, b.masks.squeeze(1), b.labels, mc::vae_noise(5, 0, 2, {10, 11, 12}, 1, 64)};
  auto ref = m.model().train_step(cb);
  for (const auto& [k, v] : ref) EXPECT_NEAR(L[k].item<double>(), v.item<double>(), 1e-6) << k;
  // Another step draws other noise, so the total changes.
  b.step = 3;
  EXPECT_NE(m.train_step(b, TrainContext{})["total"].item<double>(), L["total"].item<double>());

  size_t n = 0;
  for (const auto& p : m.named_parameters()) n += p.second.numel() > 0;
  EXPECT_EQ(n, 2u + 12u + 2u + 6u + 4u + 1u);
  EXPECT_TRUE(m.state_dict().count("vae_encoder.net.0.weight"));  // save_vae_encoder default
}

TEST(CopsMethod, ScoresDoNotDependOnTheBatch) {
  mc::CopsMethod m(tiny_options());
  auto b = make_batch({40, 41, 42});
  auto out = m.infer(b);
  ASSERT_EQ(out.image_scores.sizes(), (std::vector<int64_t>{3}));
  ASSERT_EQ(out.anomaly_maps.sizes(), (std::vector<int64_t>{3, 4, 4}));
  for (int64_t i = 0; i < 3; ++i) {
    auto one = m.infer(select(b, i));
    EXPECT_NEAR(one.image_scores[0].item<double>(), out.image_scores[i].item<double>(), 1e-6);
    EXPECT_LE((one.anomaly_maps[0] - out.anomaly_maps[i]).abs().max().item<double>(), 1e-6);
  }
  // The draws are keyed by the global index: the same image under another index scores differently.
  auto moved = select(b, 1);
  moved.indices = {99};
  EXPECT_NE(m.infer(moved).image_scores[0].item<double>(), out.image_scores[1].item<double>());
}

TEST(CopsMethod, InstalledFeatureSourceReplacesTheEncoder) {
  mc::CopsMethod m(tiny_options());
  auto b = make_batch({7, 8});
  auto encoded = m.features(b);
  const auto direct = m.infer(b);
  int calls = 0;
  m.set_feature_source([&](const MethodBatch& batch) {
    ++calls;
    EXPECT_EQ(batch.indices, b.indices);
    return std::make_pair(encoded.first.to(at::kHalf), encoded.second.to(at::kHalf));  // e.g. an fp16 cache
  });
  b.images = at::zeros_like(b.images);  // the encoder would now give other features
  const auto cached = m.infer(b);
  EXPECT_EQ(calls, 1);
  EXPECT_LE((cached.image_scores - direct.image_scores).abs().max().item<double>(), 2e-3);
  EXPECT_GT(m.train_step(b, TrainContext{})["total"].item<double>(), 0.0);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(m.vision_request().vv_depth, 2);  // tiny CLIP: all blocks V-V
}

TEST(CopsMethod, DatasetOptionsApplyAndAreChecked) {
  mc::CopsMethod m(tiny_options());
  auto b = make_batch({0, 1});
  auto base = m.infer(b);
  DatasetContext dc;
  dc.options.set("alpha", "0.9");
  dc.options.set("beta", "0.5");
  dc.options.set("test_kernel", "5");
  m.begin_dataset(dc);
  EXPECT_DOUBLE_EQ(m.test_settings().alpha, 0.9);
  EXPECT_DOUBLE_EQ(m.test_settings().beta, 0.5);
  EXPECT_EQ(m.test_settings().kernel, 5);
  EXPECT_GT((m.infer(b).image_scores - base.image_scores).abs().max().item<double>(), 1e-6);
  dc.options.set("aplha", "0.3");
  try {
    m.begin_dataset(dc);
    ADD_FAILURE() << "unknown dataset option accepted";
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find("aplha"), std::string::npos);
  }
  DatasetContext shape_change;
  shape_change.options.set("num_prototypes", "3");
  EXPECT_THROW(m.begin_dataset(shape_change), zsad::Error);
}

TEST(CopsMethod, AblationNamesAndCheckpointWithoutEncoder) {
  auto o = tiny_options();
  o.set("method.cops.ests", "false");
  o.set("method.cops.saga", "false");
  o.set("method.cops.save_vae_encoder", "false");
  mc::CopsMethod m(o);
  EXPECT_EQ(m.display_name(), "CoPS w/o ESTS+SAGA");
  auto sd = m.state_dict();
  EXPECT_FALSE(sd.count("vae_encoder.net.0.weight"));
  EXPECT_TRUE(sd.count("vae_decoder.net.0.weight"));
  for (const auto& [name, t] : m.named_parameters()) {
    EXPECT_NE(name.rfind("extractor.", 0), 0u) << name;
    EXPECT_NE(name, "t_n");
  }
  mc::CopsMethod other(tiny_options());
  other.load_state_dict(sd, /*strict=*/true);  // the official layout loads strictly
  EXPECT_TRUE(other.state_dict()["ctx_pos"].equal(sd["ctx_pos"]));
}

}  // namespace
}  // namespace zsad::test::cops
