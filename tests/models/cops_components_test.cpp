// CoPS components against the python3-torch reference (tests/models/cops_reference.py, written
// from shared/specs/cops.md): same weights and inputs, compared value by value.
#include <gtest/gtest.h>

#include <cstdio>

#include "models/methods/cops/cops_checkpoint.h"
#include "tests/models/cops_test_util.h"

namespace zsad::test::cops {
namespace {

class CopsComponents : public ::testing::TestWithParam<const char*> {};

TEST_P(CopsComponents, MatchReference) {
  const std::string dtype_name = GetParam();
  const at::ScalarType dt = dtype_name == "float64" ? at::kDouble : at::kFloat;
  const double tol = dt == at::kDouble ? 1e-10 : 2e-5;
  const std::string path = run_reference("components", "--case components --dtype " + dtype_name);
  h5::File f(path, h5::File::Mode::kRead);
  auto o = small_options(f);
  auto clip = tiny_clip(f, dt);
  mc::CopsModel model(o, mc::make_cops_text_tower(clip), 123);
  model.to(dt);
  auto loaded = model.load_state_dict(read_group(f, "params", dt), /*strict=*/true);
  EXPECT_EQ(loaded.size(), 29u);  // 2 ctx + 12 extractor + 2 queries + 6 encoder + 4 decoder + 3 deep

  auto in = read_group(f, "in", dt);
  auto out = read_group(f, "out", dt);
  const int64_t B = in["glob"].size(0), M = o.num_prototypes, side = 4;

  // Smoothing (count_include_pad) and the maxpool patch mask.
  EXPECT_REL(mc::smooth_patches(in["patch"], 3), out["smooth3"], tol);
  EXPECT_REL(mc::smooth_patches(in["patch"], 5), out["smooth5"], tol);
  at::Tensor gt_p = mc::patch_mask(in["mask"], side);
  EXPECT_REL(gt_p, out["gt_p"], 0.0);
  EXPECT_GT(gt_p.sum().item<double>(), 0);
  EXPECT_EQ(gt_p[0].sum().item<double>(), 0);  // image 0 is normal

  // Extractor: t_n and t_a through the shared extractor (one call for both query sets).
  at::Tensor f3 = mc::smooth_patches(in["patch"], 3);
  at::Tensor protos = model.extractor.forward(at::cat({model.t_n, model.t_a}, 0), f3);
  at::Tensor P_n = protos.narrow(1, 0, M), P_a = protos.narrow(1, M, M);
  EXPECT_REL(P_n, out["P_n"], tol);
  EXPECT_REL(P_a, out["P_a"], tol);
  EXPECT_REL(model.extractor.forward(model.t_n, f3), out["P_n"], tol);  // alone gives the same rows
  auto literal = model.extractor;
  literal.reassociate = false;  // projects every token like nn.MultiheadAttention
  EXPECT_REL(literal.forward(at::cat({model.t_n, model.t_a}, 0), f3).narrow(1, 0, M), out["P_n"], tol);

  // Distances and center losses.
  at::Tensor d_n = mc::prototype_distance(f3, P_n), d_a = mc::prototype_distance(f3, P_a);
  EXPECT_REL(d_n, out["d_n"], tol * 10);
  EXPECT_REL(d_a, out["d_a"], tol * 10);
  EXPECT_REL(mc::gather_loss(d_n, gt_p), out["gather"], tol * 10);
  EXPECT_REL(mc::scatter_loss(d_a, gt_p), out["scatter"], tol * 10);
  EXPECT_EQ(mc::scatter_loss(d_a, at::zeros_like(gt_p)).item<double>(), 0.0);  // no anomalous patch -> 0

  // VAE: posterior sample, KL, both reconstruction forms.
  auto [mu, log_var] = model.vae_encoder.forward(in["glob"]);
  EXPECT_REL(mu, out["mu"], tol);
  EXPECT_REL(log_var, out["log_var"], tol);
  at::Tensor z = at::exp(0.5 * log_var).unsqueeze(1) * in["eps"] + mu.unsqueeze(1);
  at::Tensor s = model.vae_decoder.forward(z);
  EXPECT_REL(s, out["s"], tol);
  EXPECT_REL(mc::kl_loss(mu, log_var), out["kl"], tol);
  EXPECT_REL(mc::reconstruction_loss(in["glob"], s, mc::ReconstructionMode::kAllPairs), out["rec_all_pairs"], tol);
  EXPECT_REL(mc::reconstruction_loss(in["glob"], s, mc::ReconstructionMode::kPerSample), out["rec_per_sample"], tol);
  // The all-pairs term is not the per-sample one (it compares every sample with every image).
  EXPECT_GT(std::abs(out["rec_all_pairs"].item<double>() - out["rec_per_sample"].item<double>()), 1e-3);

  // Prompt assembly: token order, prototypes in state tokens, the same sample on both class tokens.
  at::Tensor s3 = in["s3"];
  at::Tensor p_code = model.assemble_prompts(out["P_n"], out["P_a"], s3, B, 3);
  EXPECT_EQ(p_code.sizes(), (std::vector<int64_t>{B, 6, 77, o.feature_dim}));
  EXPECT_REL(p_code, out["prompts_code"], tol);
  // code: normal prompt (index 0) positions 7..12 = ctx_pos[6:12] + P_a
  EXPECT_REL(p_code[1][0].narrow(0, 7, 6), model.prompt.ctx_pos[0][0].narrow(0, 6, 6) + out["P_a"][1], tol);
  auto o_fig = o;
  o_fig.assignment = mc::PrototypeAssignment::kFigure;
  mc::CopsModel fig(o_fig, mc::make_cops_text_tower(clip), 1);
  fig.to(dt);
  fig.load_state_dict(read_group(f, "params", dt));
  EXPECT_REL(fig.assemble_prompts(out["P_n"], out["P_a"], s3, B, 3), out["prompts_figure"], tol);
  EXPECT_GT(rel_err(out["prompts_figure"], out["prompts_code"]), 1e-3);
  auto ids = mc::prompt_token_ids(o);
  EXPECT_EQ(ids[0].item<int64_t>(), 49406);
  for (int i = 1; i <= 14; ++i) EXPECT_EQ(ids[i].item<int64_t>(), 343);
  EXPECT_EQ(ids[15].item<int64_t>(), 269);
  EXPECT_EQ(ids[16].item<int64_t>(), 49407);
  EXPECT_EQ(ids.argmax().item<int64_t>(), 16);
  EXPECT_EQ(ids.narrow(0, 17, 60).abs().sum().item<int64_t>(), 0);

  // Focal / dice / inverse dice / CE.
  EXPECT_REL(mc::focal_loss(in["probs"], in["mask"]), out["focal"], tol);
  EXPECT_REL(mc::dice_loss(in["probs"].select(1, 1), in["mask"]), out["dice"], tol);
  EXPECT_REL(mc::dice_loss(in["probs"].select(1, 0), 1 - in["mask"]), out["dice_inv"], tol);
  EXPECT_REL(mc::image_ce_loss(in["logits"], in["label"]), out["ce"], tol);

  // SAGA weighting (per image = the code at batch 1; batch = the code's tensor-wide min-max) and fusion.
  at::Tensor w_img = mc::saga_weight(out["d_n"], out["d_a"], 0.35, mc::MinMaxScope::kPerImage);
  EXPECT_REL(w_img, out["saga_per_image"], tol);
  EXPECT_REL(mc::saga_weight(out["d_n"], out["d_a"], 0.35, mc::MinMaxScope::kBatch), out["saga_batch"], tol);
  at::Tensor weighted = in["patch_probs"] * w_img.unsqueeze(-1);
  EXPECT_REL(weighted, out["weighted_probs"], tol);
  EXPECT_REL(mc::fuse_image_score(at::softmax(in["logits"], -1), weighted, 0.9), out["fused"], tol);

  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CopsComponents, ::testing::Values("float64", "float32"));

TEST(CopsByHand, AllPairsReconstructionByHand) {
  // g = [[1,0],[0,2]], s = [[1,1],[0,0]] (R = 1): pairs (i over s, j over g),
  // sum over (i,j,c) of (g_j,c - s_i,c)^2 = (0+1)+(1+1)+(1+0)+(0+4) = 8, mean over 2*2*2 = 1.
  at::Tensor g = at::tensor({1.0, 0.0, 0.0, 2.0}, at::kDouble).view({2, 2});
  at::Tensor s = at::tensor({1.0, 1.0, 0.0, 0.0}, at::kDouble).view({2, 1, 2});
  EXPECT_DOUBLE_EQ(mc::reconstruction_loss(g, s, mc::ReconstructionMode::kAllPairs).item<double>(), 1.0);
  // per sample: ((0+1) + (0+4)) / 2 = 2.5
  EXPECT_DOUBLE_EQ(mc::reconstruction_loss(g, s, mc::ReconstructionMode::kPerSample).item<double>(), 2.5);
}

TEST(CopsByHand, SmoothingCountsPaddingAsZero) {
  // 3x3 grid of ones, k = 3: the corner averages 4 ones over 9 cells.
  at::Tensor x = at::ones({1, 9, 1}, at::kDouble);
  at::Tensor y = mc::smooth_patches(x, 3);
  EXPECT_DOUBLE_EQ(y[0][0][0].item<double>(), 4.0 / 9.0);
  EXPECT_DOUBLE_EQ(y[0][4][0].item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(y[0][1][0].item<double>(), 6.0 / 9.0);
}

TEST(CopsByHand, FocalLossByHand) {
  // One pixel, C = 2, p = [0.2, 0.8], target 1: one_hot clamped [1e-5, 1-1e-5] in float32,
  // pt = 0.2*1e-5 + 0.8*(1-1e-5) + 1e-5, loss = -(1-pt)^2 log(pt).
  at::Tensor p = at::tensor({0.2, 0.8}, at::kDouble).view({1, 2, 1, 1});
  at::Tensor t = at::ones({1, 1, 1}, at::kDouble);
  const double lo = static_cast<float>(1e-5), hi = static_cast<float>(1.0 - 1e-5);
  const double pt = 0.2 * lo + 0.8 * hi + 1e-5;
  EXPECT_NEAR(mc::focal_loss(p, t).item<double>(), -(1 - pt) * (1 - pt) * std::log(pt), 1e-15);
}

}  // namespace
}  // namespace zsad::test::cops

namespace zsad::test::cops {
namespace {

TEST(CopsCheckpoint, OfficialTorchSaveLayoutLoadsStrictly) {
  const std::string pth = "/tmp/zsad_cops_official_" + std::to_string(getpid()) + ".pth";
  const std::string path = run_reference("official", "--case components --dtype float32 --torch_save " + pth);
  h5::File f(path, h5::File::Mode::kRead);
  auto sd = mc::read_official_checkpoint(pth);
  EXPECT_EQ(sd.size(), 23u);  // 29 parameters minus the 6 of vae_encoder
  EXPECT_FALSE(sd.count("vae_encoder.net.0.weight"));
  ASSERT_TRUE(sd.count("vae_decoder.net.2.weight"));
  auto clip = tiny_clip(f, at::kFloat);
  mc::CopsModel model(small_options(f), mc::make_cops_text_tower(clip), 0);
  EXPECT_EQ(model.load_state_dict(sd, /*strict=*/true).size(), 23u);
  auto ref = read_group(f, "params", at::kFloat);
  for (const auto& [k, v] : model.state_dict(false)) EXPECT_TRUE(v.equal(ref[k])) << k;
  std::remove(pth.c_str());
  std::remove(path.c_str());
}

}  // namespace
}  // namespace zsad::test::cops
