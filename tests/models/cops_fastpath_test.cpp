// The cheaper forms of the CoPS training step and inference against the literal ones, on the tiny
// CLIP text tower with random weights: frozen tower weights (no weight gradients), losses at patch
// resolution vs on the upsampled map, shared prompt prefixes vs the full prompts.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "models/clip/clip_model.h"
#include "models/methods/cops/cops_clip.h"
#include "models/methods/cops/cops_model.h"

namespace zsad::test::cops {
namespace {

namespace mc = zsad::models::cops;

// A tiny CLIP built directly (its parameters require grad, as any fresh torch module's do).
zsad::models::ClipModel fresh_tiny_clip(int64_t layers = 2) {
  auto cfg = zsad::models::clip_config("tiny");
  cfg.text_layers = layers;
  torch::manual_seed(3);
  return zsad::models::ClipModel(cfg);
}

mc::CopsOptions tiny_options(int64_t depth = 1) {
  mc::CopsOptions o;
  o.feature_dim = 64;
  o.extractor_heads = 4;
  o.deep_prompt_depth = depth;
  o.train_kernel = 3;
  return o;
}

// Random cached-shape inputs: side x side patches, images of side * cell pixels, one defect square.
mc::CopsBatch random_batch(const mc::CopsOptions& o, int64_t B, int64_t side, int64_t cell, int64_t R, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  mc::CopsBatch b;
  const int64_t D = o.feature_dim, H = side * cell;
  b.global = at::empty({B, D}).normal_(0, 1, gen);
  b.patch = at::empty({B, side * side, D}).normal_(0, 1, gen);
  b.mask = at::zeros({B, H, H});
  for (int64_t i = 1; i < B; i += 2) b.mask[i].narrow(0, i % 3, H / 2 + 1).narrow(1, 1 + i % 5, H / 3).fill_(1);
  b.label = at::arange(B) % 2;
  b.noise = at::empty({B, R, D}).normal_(0, 1, gen);
  return b;
}

TEST(CopsFastPath, TextTowerWeightsGetNoGradient) {
  auto clip = fresh_tiny_clip();
  for (const auto& p : clip->parameters()) ASSERT_TRUE(p.requires_grad());  // a fresh module trains
  auto o = tiny_options();
  mc::CopsModel model(o, mc::make_cops_text_tower(clip), 5);
  auto losses = model.train_step(random_batch(o, 4, 4, 8, o.r_train, 11));
  losses.at("total").backward();
  int64_t text_params = 0;
  for (const auto& item : clip->named_parameters()) {
    if (item.key().rfind("visual.", 0) == 0) continue;
    ++text_params;
    EXPECT_FALSE(item.value().requires_grad()) << item.key();
    EXPECT_FALSE(item.value().grad().defined()) << item.key() << " received a weight gradient";
  }
  EXPECT_GT(text_params, 10);
  // The input path still carries gradients to the prompts.
  EXPECT_TRUE(model.prompt.ctx_pos.grad().defined());
  EXPECT_GT(model.prompt.ctx_pos.grad().abs().sum().item<double>(), 0);
  EXPECT_GT(model.prompt.compound_prompts_text[0].grad().abs().sum().item<double>(), 0);
}

}  // namespace
}  // namespace zsad::test::cops
