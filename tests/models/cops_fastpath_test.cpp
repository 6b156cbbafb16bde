// The cheaper forms of the CoPS training step and inference against the literal ones, on the tiny
// CLIP text tower with random weights: frozen tower weights (no weight gradients), losses at patch
// resolution vs on the upsampled map, shared prompt prefixes vs the full prompts.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <functional>
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

double rel(const at::Tensor& a, const at::Tensor& b) {
  const double den = std::max(b.abs().max().item<double>(), 1e-30);
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() / den;
}

// Training step (losses and every gradient) and inference of two models that differ only in
// `change`, in float64 with the same weights and inputs.
void expect_same_model(const std::function<void(mc::CopsOptions&)>& change, bool fp16, double tol) {
  auto clip = fresh_tiny_clip(4);  // 4 text layers: deep prompts before layers 1..3, then a plain one
  clip->to(at::kDouble);
  auto o = tiny_options(3);
  o.deep_prompt_fp16 = fp16;
  o.r_test = 3;
  auto o2 = o;
  change(o2);
  mc::CopsModel a(o, mc::make_cops_text_tower(clip), 9), b(o2, mc::make_cops_text_tower(clip), 9);
  a.to(at::kDouble);
  b.to(at::kDouble);
  auto batch = random_batch(o, 5, 4, 8, o.r_train, 21);
  for (auto* t : {&batch.global, &batch.patch, &batch.mask, &batch.noise}) *t = t->to(at::kDouble);
  auto la = a.train_step(batch), lb = b.train_step(batch);
  for (const auto& [k, v] : la) EXPECT_LE(rel(lb.at(k), v), tol) << "loss " << k;
  la.at("total").backward();
  lb.at("total").backward();
  auto pa = a.named_parameters(true), pb = b.named_parameters(true);
  int64_t with_grad = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    ASSERT_EQ(pa[i].second->grad().defined(), pb[i].second->grad().defined()) << pa[i].first;
    if (!pa[i].second->grad().defined()) continue;
    ++with_grad;
    EXPECT_LE(rel(pb[i].second->grad(), pa[i].second->grad()), tol) << "grad " << pa[i].first;
  }
  EXPECT_GT(with_grad, 10);
  auto test = random_batch(o, 3, 4, 8, o.r_test, 22);
  for (auto* t : {&test.global, &test.patch, &test.noise}) *t = t->to(at::kDouble);
  auto ia = a.infer(test), ib = b.infer(test);
  EXPECT_LE(rel(ib.image_score, ia.image_score), tol);
  EXPECT_LE(rel(ib.anomaly_map, ia.anomaly_map), tol);
  EXPECT_LE(rel(ib.global_prob, ia.global_prob), tol);
}

// Shared prefixes (SOT + context + deep prompts per polarity in training without fp16 gradient
// rounding; + state tokens per image across the R samples at inference) vs every prompt in full.
TEST(CopsFastPath, SharedPromptPrefixEqualsFullPrompts) {
  expect_same_model([](mc::CopsOptions& o) { o.text_shared_prefix = false; }, /*fp16=*/false, 1e-11);
  expect_same_model([](mc::CopsOptions& o) { o.text_shared_prefix = false; }, /*fp16=*/true, 1e-11);
}

// Up to EOT with the unread rows skipped vs ClipModel::encode_text_embeddings on all 77 tokens.
TEST(CopsFastPath, TextTowerUpToEotEqualsLiteral77Tokens) {
  expect_same_model([](mc::CopsOptions& o) { o.text_context = 77; }, /*fp16=*/false, 1e-11);
  expect_same_model([](mc::CopsOptions& o) { o.text_context = 77; }, /*fp16=*/true, 1e-9);
}

// Per-sequence EOT positions that differ: the last layer keeps all rows and gathers.
TEST(CopsFastPath, TextTowerWithDifferentEotPositions) {
  auto clip = fresh_tiny_clip(3);
  clip->to(at::kDouble);
  auto tower = mc::make_cops_text_tower(clip);
  at::Generator gen = at::detail::createCPUGenerator(4);
  const int64_t N = 3, L = 12, W = 64;
  at::Tensor x = at::empty({N, L, W}, at::kDouble).normal_(0, 0.1, gen).requires_grad_(true);
  at::Tensor ids = at::zeros({N, L}, at::kLong);
  for (int64_t i = 0; i < N; ++i) ids[i][6 + 2 * i] = 49407;
  std::vector<at::Tensor> deep = {at::empty({2, W}, at::kDouble).normal_(0, 0.1, gen).requires_grad_(true)};
  at::Tensor fast = tower.encode(x, ids, deep, false);
  at::Tensor full = clip->encode_text_embeddings(at::cat({x, at::zeros({N, 77 - L, W}, at::kDouble)}, 1), ids.argmax(-1), deep);
  EXPECT_LE(rel(fast, full), 1e-12);
  auto g1 = torch::autograd::grad({fast.sum()}, {x, deep[0]});
  auto g2 = torch::autograd::grad({full.sum()}, {x, deep[0]});
  EXPECT_LE(rel(g1[0], g2[0]), 1e-11);
  EXPECT_LE(rel(g1[1], g2[1]), 1e-11);
}

// Focal and dice losses of the nearest-upsampled map, per patch with pixel counts, at the real
// shapes (37x37 patches, 518 px: the float32 index arithmetic of upsample_nearest2d included).
TEST(CopsFastPath, PatchResolutionLossesEqualTheUpsampledMap) {
  for (auto dt : {at::kDouble, at::kFloat}) {
    SCOPED_TRACE(dt == at::kDouble ? "float64" : "float32");
    const int64_t B = 3, side = 37, H = 518, P = side * side;
    at::Generator gen = at::detail::createCPUGenerator(8);
    at::Tensor probs = at::softmax(at::empty({B, P, 2}, dt).normal_(0, 2, gen), -1).requires_grad_(true);
    at::Tensor gt = at::zeros({B, H, H}, dt);
    gt[1].narrow(0, 100, 77).narrow(1, 203, 150).fill_(1);  // edges inside patches
    gt[2].narrow(0, 0, 300).narrow(1, 5, 9).fill_(1);
    at::Tensor map = at::upsample_nearest2d(probs.reshape({B, side, side, 2}).permute({0, 3, 1, 2}), {H, H});
    at::Tensor focal = mc::focal_loss(map, gt, 2.0, 1e-5);
    at::Tensor dice = mc::dice_loss(map.select(1, 1), gt) + mc::dice_loss(map.select(1, 0), 1 - gt);
    auto cells = mc::nearest_cells(side, H, H, probs.options());
    at::Tensor counts = mc::class_counts(cells, gt);
    ASSERT_TRUE(counts.defined());
    EXPECT_EQ(counts.sum().item<double>(), static_cast<double>(B * H * H));
    at::Tensor focal_c = mc::focal_loss_cells(probs, counts, B * H * H, 2.0, 1e-5);
    at::Tensor dice_c = mc::dice_loss_cells(probs.select(-1, 1), counts.select(-1, 1), cells.pixels) +
                        mc::dice_loss_cells(probs.select(-1, 0), counts.select(-1, 0), cells.pixels);
    const double tol = dt == at::kDouble ? 1e-12 : 2e-6;
    EXPECT_LE(rel(focal_c, focal), tol);
    EXPECT_LE(rel(dice_c, dice), tol);
    auto g1 = torch::autograd::grad({focal + dice}, {probs});
    auto g2 = torch::autograd::grad({focal_c + dice_c}, {probs});
    EXPECT_LE(rel(g2[0], g1[0]), dt == at::kDouble ? 1e-12 : 1e-5);
  }
  // A mask that is not 0/1 is left to the literal path.
  auto cells = mc::nearest_cells(4, 8, 8, at::TensorOptions().dtype(at::kFloat));
  EXPECT_FALSE(mc::class_counts(cells, at::full({1, 8, 8}, 0.5)).defined());
}

TEST(CopsFastPath, PatchResolutionSwitchGivesTheSameStep) {
  expect_same_model([](mc::CopsOptions& o) { o.patch_resolution_losses = false; }, /*fp16=*/true, 1e-11);
}

}  // namespace
}  // namespace zsad::test::cops
