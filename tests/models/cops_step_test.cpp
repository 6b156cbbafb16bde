// One (two) full CoPS training steps and inference against the python3-torch reference: every loss
// term, every gradient and the Adam(lr 1e-3, betas (0.5, 0.999)) update, with the text tower of
// models/clip (tiny config) carrying the reference's weights.
#include <gtest/gtest.h>
#include <torch/optim/adam.h>

#include <cstdio>

#include "tests/models/cops_test_util.h"

namespace zsad::test::cops {
namespace {

struct StepCase {
  const char* name;
  const char* args;      // extra reference-script arguments
  const char* dtype;
  double loss_tol, grad_tol, param_tol;
  int64_t text_context;  // C++ option only (the reference always runs 77 tokens)
};

void PrintTo(const StepCase& c, std::ostream* os) { *os << c.name; }

class CopsStep : public ::testing::TestWithParam<StepCase> {};

mc::CopsOptions options_for(const h5::File& f, const std::string& args, int64_t text_context) {
  auto o = small_options(f);
  o.train_kernel = 3;  // reference --train_kernel default
  o.text_context = text_context;
  auto has = [&](const std::string& s) { return args.find(s) != std::string::npos; };
  if (has("--assignment figure")) o.assignment = mc::PrototypeAssignment::kFigure;
  if (has("--recon 0")) o.reconstruction = false;
  if (has("--fp16 0")) o.deep_prompt_fp16 = false;
  if (has("--ests 0")) o.ests = false;
  if (has("--icts 0")) o.icts = false;
  return o;
}

TEST_P(CopsStep, LossesGradientsAndAdamUpdateMatchReference) {
  const StepCase c = GetParam();
  const at::ScalarType dt = std::string(c.dtype) == "float64" ? at::kDouble : at::kFloat;
  const std::string path =
      run_reference("step", std::string("--case step --steps 2 --dtype ") + c.dtype + " " + c.args);
  h5::File f(path, h5::File::Mode::kRead);
  auto o = options_for(f, c.args, c.text_context);
  auto clip = tiny_clip(f, dt);
  mc::CopsModel model(o, mc::make_cops_text_tower(clip), 7);
  model.to(dt);
  model.load_state_dict(read_group(f, "params", dt), /*strict=*/true);
  torch::optim::Adam adam(model.trainable_parameters(),
                          torch::optim::AdamOptions(1e-3).betas({0.5, 0.999}).eps(1e-8).weight_decay(0));

  for (int step = 0; step < 2; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const std::string s = "s" + std::to_string(step) + "/";
    auto in = read_group(f, s + "in", dt);
    mc::CopsBatch batch{in["glob"], in["patch"], in["mask"], in["label"], in["eps"]};
    auto losses = model.train_step(batch);
    auto ref_losses = read_group(f, s + "loss", dt);
    ASSERT_EQ(ref_losses.size(), 10u);
    for (const auto& [k, ref] : ref_losses) {
      ASSERT_TRUE(losses.count(k)) << k;
      EXPECT_LE(rel_err(losses[k], ref), c.loss_tol) << "loss " << k << " = " << losses[k].item<double>()
                                                     << " vs " << ref.item<double>();
    }
    adam.zero_grad();
    losses["total"].backward();
    auto refs = model.named_parameters(true);
    auto ref_grads = read_group(f, s + "grad", dt);
    int n_grads = 0;
    for (auto& [name, t] : refs) {
      auto it = ref_grads.find(name);
      if (it == ref_grads.end()) {
        EXPECT_FALSE(t->grad().defined() && t->grad().abs().sum().item<double>() > 0) << name << " has a gradient";
        continue;
      }
      ++n_grads;
      ASSERT_TRUE(t->grad().defined()) << name;
      EXPECT_LE(rel_err(t->grad(), it->second), c.grad_tol) << "grad " << name;
    }
    EXPECT_GT(n_grads, 0);
    adam.step();
    auto ref_params = read_group(f, s + "param", dt);
    for (auto& [name, t] : refs) {
      ASSERT_TRUE(ref_params.count(name)) << name;
      at::Tensor mine = *t, ref = ref_params[name];
      if (name == "extractor.attn.in_proj_bias" && dt == at::kFloat) {
        // The key bias has an exactly-zero gradient (softmax is shift invariant); in float32 both
        // sides hold rounding noise near Adam's eps, which Adam turns into arbitrary +-lr steps.
        const int64_t D = mine.size(0) / 3;
        mine = at::cat({mine.narrow(0, 0, D), mine.narrow(0, 2 * D, D)});
        ref = at::cat({ref.narrow(0, 0, D), ref.narrow(0, 2 * D, D)});
      }
      EXPECT_LE(rel_err(mine, ref), c.param_tol) << "param " << name;
    }
  }
  std::remove(path.c_str());
}

// float64: the agreement the issue asks for (1e-5 relative) with margin; float32: the real dtype,
// looser only because of float32 rounding in both implementations.
INSTANTIATE_TEST_SUITE_P(
    Variants, CopsStep,
    ::testing::Values(StepCase{"code_defaults_f64", "", "float64", 1e-9, 1e-7, 1e-9, 0},
                      StepCase{"code_defaults_77_tokens_f64", "", "float64", 1e-9, 1e-7, 1e-9, 77},
                      StepCase{"figure_norecon_nofp16_f64", "--assignment figure --recon 0 --fp16 0", "float64", 1e-9,
                               1e-7, 1e-9, 0},
                      StepCase{"ablation_no_ests_no_icts_f64", "--ests 0 --icts 0", "float64", 1e-9, 1e-7, 1e-9, 0},
                      StepCase{"code_defaults_f32", "", "float32", 1e-5, 1e-3, 1e-5, 0}),
    [](const ::testing::TestParamInfo<StepCase>& i) { return std::string(i.param.name); });

TEST(CopsInfer, MatchesReferenceRunAtBatchOne) {
  const std::string path = run_reference("infer", "--case infer --dtype float64 --r_test 4 --test_kernel 5");
  h5::File f(path, h5::File::Mode::kRead);
  auto o = small_options(f);
  o.r_test = 4;
  o.test_kernel = 5;
  o.alpha = 0.35;
  o.beta = 0.9;
  auto clip = tiny_clip(f, at::kDouble);
  mc::CopsModel model(o, mc::make_cops_text_tower(clip), 3);
  model.to(at::kDouble);
  // The checkpoint layout without the VAE encoder is enough for inference.
  auto params = read_group(f, "params");
  for (auto it = params.begin(); it != params.end();)
    it = it->first.rfind("vae_encoder.", 0) == 0 ? params.erase(it) : std::next(it);
  model.load_state_dict(params, /*strict=*/true);
  auto in = read_group(f, "in");
  mc::CopsBatch batch;
  batch.global = in["glob"];
  batch.patch = in["patch"];
  batch.noise = in["z"];
  auto r = model.infer(batch);  // all images at once; the reference runs them one by one
  auto out = read_group(f, "out");
  EXPECT_REL(r.image_score, out["image_score"], 1e-10);
  EXPECT_REL(r.anomaly_map, out["anomaly_map"], 1e-10);
  EXPECT_REL(r.global_prob, out["global_prob"], 1e-10);
  EXPECT_FALSE(r.image_score.requires_grad());
  // beta = 1 leaves only the global probability.
  auto r1 = model.infer(batch, mc::CopsTestSettings{5, 0.35, 1.0});
  EXPECT_REL(r1.image_score, out["global_prob"], 1e-12);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace zsad::test::cops
