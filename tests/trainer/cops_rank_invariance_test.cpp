// Must-be-true 3 of the CoPS issue: CoPS trained for N optimizer steps with world size 1 x batch 8
// and world size 2 x batch 4 (the same global batch of 8; `zsad run` with launcher local2 =
// `zsad launch -n 2`, gloo) ends with the same parameters within 1e-5 relative. The shards are
// checked from the logged sample ids (samples/rank<r>.txt): at every step the two ranks' ids are
// disjoint and their union is exactly the single-process step's batch. A third run with 0 steps
// gives the initial parameters, so the comparison is known to be between trained models.
// Runs the real CLI on experiments/demo.yaml (tiny random CLIP, synthetic objects, feature cache).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <ATen/ATen.h>

#include "trainer/checkpoint.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

using zsad::testing::env;

// Runs `zsad run demo ...` with its outputs under `root`; returns the run directory.
fs::path run_demo(const fs::path& work, const std::string& name, const std::string& overrides) {
  const fs::path root = work / name;
  fs::create_directories(root);
  std::ostringstream cmd;
  cmd << "cd '" << work.string() << "' && env -u RANK -u WORLD_SIZE -u MASTER_ADDR -u MASTER_PORT OMP_NUM_THREADS=1"
      << " ZSAD_DATA_ROOT='" << (work / "data").string() << "' ZSAD_OUTPUT_ROOT='" << root.string() << "'"
      << " ZSAD_CACHE_DIR='" << (work / "cache").string() << "' '" << env("ZSAD_BINARY") << "' run '"
      << env("ZSAD_SOURCE_DIR") << "/experiments/demo.yaml' experiment=" << name
      << " train.eval=false train.log_sample_ids=true train.log_every=1 " << overrides << " > '"
      << (root / "log.txt").string() << "' 2>&1";
  const int rc = std::system(cmd.str().c_str());
  std::ifstream log(root / "log.txt");
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_EQ(rc, 0) << cmd.str() << "\n" << text.str();
  fs::path base = root / "outputs" / name;
  for (const auto& day : fs::directory_iterator(base))
    for (const auto& run : fs::directory_iterator(day.path())) return run.path();
  ADD_FAILURE() << "no run directory under " << base;
  return {};
}

std::map<std::string, at::Tensor> final_params(const fs::path& run) {
  std::string last;
  for (const auto& f : fs::directory_iterator(run / "checkpoints"))
    if (f.path().extension() == ".h5" && f.path().string() > last) last = f.path().string();
  zsad::Checkpoint ck = zsad::read_checkpoint(last);
  std::map<std::string, at::Tensor> out;
  for (const auto& [k, t] : ck.tensors)
    if (k.rfind("params/", 0) == 0) out[k.substr(7)] = t.to(at::kDouble);
  return out;
}

// step -> ids, from samples/rank<r>.txt lines "<step> <epoch> <id> ...".
std::map<int64_t, std::vector<int64_t>> sample_ids(const fs::path& run, int rank) {
  std::map<int64_t, std::vector<int64_t>> out;
  std::ifstream f(run / "samples" / ("rank" + std::to_string(rank) + ".txt"));
  EXPECT_TRUE(f.good()) << run;
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream s(line);
    int64_t step, epoch, id;
    s >> step >> epoch;
    auto& ids = out[step];  // a rank's share of a partial batch may be empty: "<step> <epoch>"
    while (s >> id) ids.push_back(id);
  }
  return out;
}

double max_rel_diff(const at::Tensor& a, const at::Tensor& b) {
  const double scale = std::max(a.abs().max().item<double>(), 1e-12);
  return (a - b).abs().max().item<double>() / scale;
}


// Runs 1 rank x 8, 2 ranks x 4 and an initial-state run with `extra` overrides on a training set
// of `n_samples` images for `steps` steps; checks shards and parameters. The epoch's last global
// batch keeps its n_samples mod 8 images (the code's DataLoader), split over the ranks however the
// sampler deals them, possibly 0 on one rank. `skip_key_bias`: the key third of
// extractor.attn.in_proj_bias is excluded from the 1e-5 check (see the Adam case below) and checked
// separately to stay inert.
void check_invariance(const std::string& tag, const std::string& extra, bool skip_key_bias, int64_t n_samples = 100,
                      int64_t steps = 15, bool expect_empty_rank = false) {
  ASSERT_FALSE(env("ZSAD_BINARY").empty());
  const fs::path work = fs::temp_directory_path() / ("zsad_cops_ri_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(work);
  fs::create_directories(work);
  // 100 images, global batch 8: 13 steps per epoch (the last of 4 images); 15 steps cross into the
  // second (reshuffled) epoch.
  // 64 px (8x8 grid; the demo runs at 128): at 16x16, Adam's scale-free update lifts the summation-
  // order noise of a few near-zero gradient entries (t_n, extractor biases) to 4e-5 within 15 steps,
  // while SGD stays at rounding level there too.
  const std::string sizes = "trainer.batch_size=8 seed=3 model.image_size=64 " + extra;
  const std::string common = sizes + " train.max_steps=" + std::to_string(steps);
  const fs::path w1 = run_demo(work, "ri_w1", common + " launcher=local");
  const fs::path w2 = run_demo(work, "ri_w2", common + " launcher=local2");
  const fs::path w0 = run_demo(work, "ri_init", sizes + " train.max_steps=0 launcher=local");
  ASSERT_FALSE(w1.empty() || w2.empty() || w0.empty());

  // Shards: disjoint per step, union = the single-process global batch, at most 4 per rank.
  auto one = sample_ids(w1, 0);
  auto r0 = sample_ids(w2, 0);
  auto r1 = sample_ids(w2, 1);
  ASSERT_EQ(one.size(), static_cast<size_t>(steps));
  ASSERT_EQ(r0.size(), static_cast<size_t>(steps));
  ASSERT_EQ(r1.size(), static_cast<size_t>(steps));
  const int64_t per_epoch = (n_samples + 7) / 8;
  bool saw_partial = false, saw_empty = false;
  for (const auto& [step, ids] : one) {
    const int64_t expected = std::min<int64_t>(8, n_samples - (step % per_epoch) * 8);
    saw_partial = saw_partial || expected < 8;
    ASSERT_EQ(static_cast<int64_t>(ids.size()), expected) << "step " << step;
    ASSERT_LE(r0[step].size(), 4u);
    ASSERT_LE(r1[step].size(), 4u);
    ASSERT_EQ(static_cast<int64_t>(r0[step].size() + r1[step].size()), expected) << "step " << step;
    saw_empty = saw_empty || r0[step].empty() || r1[step].empty();
    std::set<int64_t> a(r0[step].begin(), r0[step].end()), b(r1[step].begin(), r1[step].end());
    for (int64_t id : a) EXPECT_FALSE(b.count(id)) << "step " << step << ": sample " << id << " on both ranks";
    std::set<int64_t> u = a;
    u.insert(b.begin(), b.end());
    EXPECT_EQ(u, std::set<int64_t>(ids.begin(), ids.end())) << "step " << step;
  }
  EXPECT_TRUE(saw_partial) << "no partial batch within " << steps << " steps: the case tests nothing new";
  EXPECT_EQ(saw_empty, expect_empty_rank);

  auto p1 = final_params(w1);
  auto p2 = final_params(w2);
  auto p0 = final_params(w0);
  ASSERT_FALSE(p1.empty());
  ASSERT_EQ(p1.size(), p2.size());
  double worst = 0, moved = 0;
  std::string worst_name;
  for (const auto& [name, t] : p1) {
    ASSERT_TRUE(p2.count(name)) << name;
    ASSERT_EQ(t.sizes(), p2[name].sizes()) << name;
    at::Tensor a = t, c = p2[name], i0 = p0.at(name);
    if (skip_key_bias && name == "extractor.attn.in_proj_bias") {
      // Rows [D, 2D) are the key bias: softmax is invariant to it, so its true gradient is 0 and
      // float32 gives it pure rounding noise, which Adam normalises into +-lr steps. It has no
      // effect on any output; its drift is bounded by lr x steps.
      const int64_t D = t.size(0) / 3;
      EXPECT_LE((a.narrow(0, D, D) - c.narrow(0, D, D)).abs().max().item<double>(), 2 * 15 * 1e-3 + 1e-6);
      a = at::cat({a.narrow(0, 0, D), a.narrow(0, 2 * D, D)});
      c = at::cat({c.narrow(0, 0, D), c.narrow(0, 2 * D, D)});
      i0 = at::cat({i0.narrow(0, 0, D), i0.narrow(0, 2 * D, D)});
    }
    const double d = max_rel_diff(a, c);
    if (d > worst) worst = d, worst_name = name;
    EXPECT_LE(d, 1e-5) << name;
    moved = std::max(moved, max_rel_diff(a, i0));
  }
  std::cout << "[ INFO ] " << tag << ": largest relative difference 1 rank vs 2 ranks: " << worst << " (" << worst_name
            << "); largest relative change from the initial parameters: " << moved << "\n";
  EXPECT_GT(moved, 1e-2) << "training did not move the parameters: the comparison would be vacuous";
  fs::remove_all(work);
}

}  // namespace

// The code's optimizer, Adam(1e-3, (0.5, 0.999)), with fp32 deep prompts: Adam's scale-free update
// turns rounding-order noise in gradients of exactly zero (the key bias) or at fp16 rounding
// boundaries (method.cops.deep_prompt_fp16) into O(lr) steps, so those two are the documented
// exceptions of this case.
TEST(CopsRankInvariance, AdamTwoRanksBatch4EqualOneRankBatch8) {
  check_invariance("adam", "method.cops.deep_prompt_fp16=false", /*skip_key_bias=*/true);
}

// Every parameter, key bias included, with SGD: there the update is proportional to the gradient,
// so float-order noise stays at rounding level. (With method.cops.deep_prompt_fp16=true, the
// code's default, the forward rounds the deep prompts to fp16: a rounding-level difference can
// flip one fp16 ulp, ~1e-3 relative, so no 1e-5 statement holds for that discontinuous switch.)
TEST(CopsRankInvariance, SgdTwoRanksBatch4EqualOneRankBatch8) {
  check_invariance("sgd", "method.cops.deep_prompt_fp16=false trainer.optimizer=sgd trainer.lr=0.05", /*skip_key_bias=*/false);
}

// 25 images: the epoch's last global batch holds 1 image, so one rank's share is empty; that rank
// still takes part in every collective (loss normalisers, the all-pairs gather, the gradient
// allreduce) and contributes no gradient.
TEST(CopsRankInvariance, SgdLastBatchOfOneImageLeavesARankEmpty) {
  check_invariance("empty", "method.cops.deep_prompt_fp16=false trainer.optimizer=sgd trainer.lr=0.05 "
                   "train.dataset.synth.images_per_class=5",
                   /*skip_key_bias=*/false, /*n_samples=*/25, /*steps=*/6, /*expect_empty_rank=*/true);
}
