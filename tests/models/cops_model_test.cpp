// CoPS model bookkeeping: checkpoint names and sizes at the ViT-L/14@336 dimensions (numbers from
// shared/specs/cops.md §2), initialisation as the code's weights_init, save/load, option keys,
// keyed VAE noise.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include <ATen/ATen.h>

#include "common/error.h"
#include "models/methods/cops/cops_model.h"

namespace zsad::test::cops {
namespace {

namespace mc = zsad::models::cops;

// A text tower that only provides token embeddings (enough to build the prompt buffers).
mc::TextTower embedding_only_tower(int64_t width) {
  mc::TextTower t;
  t.embed_tokens = [width](const at::Tensor& ids) {
    return at::sin(ids.to(at::kFloat).unsqueeze(1) * at::arange(1, width + 1, at::kFloat).unsqueeze(0) * 1e-3);
  };
  t.encode = [](const at::Tensor&, const at::Tensor&, const std::vector<at::Tensor>&, bool) -> at::Tensor {
    throw std::runtime_error("not used");
  };
  return t;
}

int64_t count(const std::map<std::string, at::Tensor>& sd) {
  int64_t n = 0;
  for (const auto& [k, v] : sd) n += v.numel();
  return n;
}

TEST(CopsModel, CheckpointLayoutMatchesTheOfficialOne) {
  mc::CopsOptions o;  // ViT-L/14@336 defaults
  mc::CopsModel m(o, embedding_only_tower(768), 0);
  auto sd = m.state_dict(/*include_vae_encoder=*/false);
  std::set<std::string> expected = {"ctx_pos", "ctx_neg", "t_n", "t_a",
                                    "extractor.attn.in_proj_weight", "extractor.attn.in_proj_bias",
                                    "extractor.attn.out_proj.weight", "extractor.attn.out_proj.bias",
                                    "extractor.ln_1.weight", "extractor.ln_1.bias", "extractor.ln_2.weight",
                                    "extractor.ln_2.bias", "extractor.mlp.c_fc.weight", "extractor.mlp.c_fc.bias",
                                    "extractor.mlp.c_proj.weight", "extractor.mlp.c_proj.bias",
                                    "vae_decoder.net.0.weight", "vae_decoder.net.0.bias",
                                    "vae_decoder.net.2.weight", "vae_decoder.net.2.bias"};
  for (int i = 0; i < 8; ++i) expected.insert("compound_prompts_text." + std::to_string(i));
  std::set<std::string> got;
  for (const auto& [k, v] : sd) got.insert(k);
  EXPECT_EQ(got, expected);
  EXPECT_EQ(sd["ctx_pos"].sizes(), (std::vector<int64_t>{1, 1, 14, 768}));
  EXPECT_EQ(sd["t_n"].sizes(), (std::vector<int64_t>{6, 768}));
  EXPECT_EQ(sd["extractor.attn.in_proj_weight"].sizes(), (std::vector<int64_t>{2304, 768}));
  EXPECT_EQ(sd["extractor.mlp.c_fc.weight"].sizes(), (std::vector<int64_t>{768, 768}));
  EXPECT_EQ(sd["compound_prompts_text.7"].sizes(), (std::vector<int64_t>{4, 768}));
  // cops.md §2: ctx 21,504; t 9,216; extractor 3,546,624; VAE enc 1,771,776; dec 1,181,184; deep 24,576.
  EXPECT_EQ(count(sd), 21504 + 9216 + 3546624 + 1181184 + 24576);  // 4.78 M in the checkpoint
  auto full = m.state_dict(true);
  EXPECT_EQ(count(full), 21504 + 9216 + 3546624 + 1771776 + 1181184 + 24576);  // 6.55 M trained
  EXPECT_TRUE(full.count("vae_encoder.net.0.weight") && full.count("vae_encoder.mean.bias") &&
              full.count("vae_encoder.log_var.weight"));
  int64_t trainable = 0;
  for (const auto& t : m.trainable_parameters()) {
    EXPECT_TRUE(t.requires_grad());
    trainable += t.numel();
  }
  EXPECT_EQ(trainable, count(full));
}

TEST(CopsModel, InitialisationFollowsWeightsInit) {
  mc::CopsOptions o;
  mc::CopsModel m(o, embedding_only_tower(768), 5);
  auto sd = m.state_dict(true);
  auto near_std = [](const at::Tensor& t, double s) { return std::abs(t.std().item<double>() - s) < 0.05 * s; };
  EXPECT_TRUE(near_std(sd["ctx_pos"], 0.02));
  EXPECT_TRUE(near_std(sd["t_a"], 0.02));
  EXPECT_TRUE(near_std(sd["extractor.mlp.c_fc.weight"], 0.02));
  EXPECT_TRUE(near_std(sd["extractor.attn.out_proj.weight"], 0.02));
  EXPECT_TRUE(near_std(sd["vae_encoder.log_var.weight"], 0.02));
  EXPECT_TRUE(near_std(sd["compound_prompts_text.3"], 0.02));
  // xavier_uniform_ on [3D, D]: bound sqrt(6 / (D + 3D)), std bound / sqrt(3).
  const double bound = std::sqrt(6.0 / (4.0 * 768));
  EXPECT_LE(sd["extractor.attn.in_proj_weight"].abs().max().item<double>(), bound);
  EXPECT_TRUE(near_std(sd["extractor.attn.in_proj_weight"], bound / std::sqrt(3.0)));
  EXPECT_EQ(sd["extractor.attn.in_proj_bias"].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(sd["vae_decoder.net.2.bias"].abs().sum().item<double>(), 0.0);
  EXPECT_EQ((sd["extractor.ln_1.weight"] - 1).abs().sum().item<double>(), 0.0);
  // Seeds decide the values.
  mc::CopsModel m2(o, embedding_only_tower(768), 5), m3(o, embedding_only_tower(768), 6);
  EXPECT_TRUE(m2.state_dict()["ctx_neg"].equal(sd["ctx_neg"]));
  EXPECT_FALSE(m3.state_dict()["ctx_neg"].equal(sd["ctx_neg"]));
}

TEST(CopsModel, SaveLoadRoundTripAndErrors) {
  mc::CopsOptions o;
  o.feature_dim = 32;
  o.extractor_heads = 4;
  o.deep_prompt_depth = 2;
  mc::CopsModel a(o, embedding_only_tower(32), 1), b(o, embedding_only_tower(32), 2);
  auto sd = a.state_dict(false);
  auto loaded = b.load_state_dict(sd, /*strict=*/true);  // no vae_encoder.*: allowed
  EXPECT_EQ(loaded.size(), sd.size());
  for (const auto& [k, v] : b.state_dict(false)) EXPECT_TRUE(v.equal(sd[k])) << k;
  EXPECT_FALSE(b.state_dict(true)["vae_encoder.net.0.weight"].equal(a.state_dict(true)["vae_encoder.net.0.weight"]));
  auto with_enc = a.state_dict(true);
  b.load_state_dict(with_enc);
  EXPECT_TRUE(b.state_dict(true)["vae_encoder.net.0.weight"].equal(with_enc["vae_encoder.net.0.weight"]));

  auto missing = sd;
  missing.erase("t_n");
  EXPECT_THROW(b.load_state_dict(missing, true), zsad::Error);
  EXPECT_NO_THROW(b.load_state_dict(missing, false));  // the code loads with strict=False
  auto extra = sd;
  extra["projector.fc.0.weight"] = at::zeros({2});
  try {
    b.load_state_dict(extra, true);
    ADD_FAILURE() << "unexpected key accepted";
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find("projector.fc.0.weight"), std::string::npos);
  }
  EXPECT_NO_THROW(b.load_state_dict(extra, false));
  auto bad = sd;
  bad["ctx_pos"] = at::zeros({1, 1, 13, 32});
  try {
    b.load_state_dict(bad, false);
    ADD_FAILURE() << "shape mismatch accepted";
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find("ctx_pos"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("[1,1,13,32]"), std::string::npos);
  }
  // Loading keeps the parameter tensors (an optimiser holding them sees the new values).
  at::Tensor before = b.trainable_parameters()[0];
  b.load_state_dict(sd);
  EXPECT_TRUE(before.equal(sd["ctx_pos"]));
}

TEST(CopsModel, AblationsChangeTheTrainableSetAndThePrompt) {
  mc::CopsOptions o;
  o.feature_dim = 32;
  o.extractor_heads = 4;
  o.ests = false;
  o.icts = false;
  mc::CopsModel m(o, embedding_only_tower(32), 1);
  std::set<int64_t> sizes;
  int64_t n = 0;
  for (const auto& t : m.trainable_parameters()) n += t.numel();
  EXPECT_EQ(n, 2 * 12 * 32 + 8 * 4 * 32);  // ctx_pos/ctx_neg (12 tokens) + deep prompts
  auto ids = mc::prompt_token_ids(o);      // "X*12 object."
  EXPECT_EQ(ids[13].item<int64_t>(), 14115);
  EXPECT_EQ(ids[14].item<int64_t>(), 269);
  EXPECT_EQ(ids.argmax().item<int64_t>(), 15);
}

TEST(CopsOptions, KeysDefaultsAndErrors) {
  auto keys = mc::cops_option_keys();
  std::map<std::string, std::string> defaults;
  for (const auto& k : keys) defaults[k.name] = k.default_value;
  EXPECT_EQ(defaults["method.cops.alpha"], "0.26");
  EXPECT_EQ(defaults["method.cops.beta"], "0.9");
  EXPECT_EQ(defaults["method.cops.train_kernel"], "5");
  EXPECT_EQ(defaults["method.cops.r_test"], "10");
  EXPECT_EQ(defaults["method.cops.assignment"], "code");
  EXPECT_EQ(defaults["method.cops.reconstruction_mode"], "all_pairs");
  EXPECT_EQ(defaults["method.cops.train_upsample"], "nearest");
  EXPECT_EQ(defaults["method.cops.w_patch"], "4");
  EXPECT_EQ(defaults["method.cops.temperature"], "0.07");

  mc::CopsOptions o;
  mc::set_cops_option(o, "method.cops.alpha", "0.35");
  mc::set_cops_option(o, "beta", "1.0");
  mc::set_cops_option(o, "reconstruction", "false");
  mc::set_cops_option(o, "assignment", "figure");
  mc::set_cops_option(o, "train_kernel", "3");
  EXPECT_DOUBLE_EQ(o.alpha, 0.35);
  EXPECT_DOUBLE_EQ(o.beta, 1.0);
  EXPECT_FALSE(o.reconstruction);
  EXPECT_EQ(o.assignment, mc::PrototypeAssignment::kFigure);
  EXPECT_EQ(o.train_kernel, 3);
  auto back = mc::cops_options_from(mc::cops_options_to_map(o));
  EXPECT_EQ(mc::cops_options_to_map(back), mc::cops_options_to_map(o));

  auto msg = [](auto fn) {
    try {
      fn();
    } catch (const zsad::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(msg([&] { mc::set_cops_option(o, "alpah", "1"); }).find("alpah"), std::string::npos);
  EXPECT_NE(msg([&] { mc::set_cops_option(o, "train_kernel", "three"); }).find("three"), std::string::npos);
  EXPECT_NE(msg([&] { mc::set_cops_option(o, "assignment", "paper"); }).find("paper"), std::string::npos);
  o.train_kernel = 4;
  EXPECT_NE(msg([&] { o.validate(); }).find("train_kernel"), std::string::npos);
  o.train_kernel = 3;
  o.extractor_heads = 5;
  EXPECT_NE(msg([&] { o.validate(); }).find("extractor_heads"), std::string::npos);
}

TEST(CopsNoise, KeyedBySeedStepAndGlobalIndexNotByBatch) {
  auto all = mc::vae_noise(0, 0, 7, {0, 1, 2, 3, 4, 5, 6, 7}, 1, 16);
  auto part = mc::vae_noise(0, 0, 7, {5, 6, 7}, 1, 16);
  EXPECT_TRUE(part.equal(all.narrow(0, 5, 3)));
  EXPECT_FALSE(mc::vae_noise(0, 0, 8, {5}, 1, 16).equal(all.narrow(0, 5, 1)));
  EXPECT_FALSE(mc::vae_noise(1, 0, 7, {5}, 1, 16).equal(all.narrow(0, 5, 1)));
  EXPECT_FALSE(mc::vae_noise(0, 1, 7, {5}, 1, 16).equal(all.narrow(0, 5, 1)));
  auto big = mc::vae_noise(3, 1, 0, {0, 1, 2, 3}, 10, 768);
  EXPECT_EQ(big.sizes(), (std::vector<int64_t>{4, 10, 768}));
  EXPECT_NEAR(big.mean().item<double>(), 0.0, 0.02);
  EXPECT_NEAR(big.std().item<double>(), 1.0, 0.02);
}

}  // namespace
}  // namespace zsad::test::cops
