// zsad import-checkpoint --format cops: a python3-torch file in the official release layout is
// converted into the trainer's checkpoint with every parameter exactly equal; wrong files fail
// with the key named.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/h5.h"
#include "rank_threads.h"
#include "trainer/checkpoint.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

using zsad::testing::env;
using zsad::testing::run_shell;

std::string make(const std::string& dir, const std::string& variant, const std::string& size = "") {
  const std::string pth = dir + "/" + variant + ".pth";
  const std::string script = env("ZSAD_SOURCE_DIR") + "/tests/trainer/import_checkpoint_make.py";
  auto [rc, out] = run_shell(env("ZSAD_PYTHON") + " " + script + " " + pth + " " + dir + "/" + variant + "_ref.h5 " + variant +
                       " " + size);
  EXPECT_EQ(rc, 0) << out;
  return pth;
}

std::pair<int, std::string> import(const std::string& pth, const std::string& out) {
  return run_shell(env("ZSAD_BINARY") + " import-checkpoint --format cops " + pth + " --out " + out);
}

void expect_exact(const std::string& ckpt, const std::string& ref_path) {
  zsad::Checkpoint ck = zsad::read_checkpoint(ckpt);
  zsad::h5::File ref(ref_path, zsad::h5::File::Mode::kRead);
  const auto names = ref.children("ref");
  ASSERT_GT(names.size(), 20u);
  size_t method_tensors = 0;
  for (const auto& [k, t] : ck.tensors) method_tensors += k.rfind("method/", 0) == 0;
  EXPECT_EQ(method_tensors, names.size());
  for (const auto& n : names) {
    auto it = ck.tensors.find("method/" + n);
    ASSERT_NE(it, ck.tensors.end()) << n;
    const auto shape = ref.shape("ref/" + n);
    std::vector<float> v = ref.read_float("ref/" + n);
    at::Tensor want = at::from_blob(v.data(), shape, at::kFloat).clone();
    EXPECT_EQ(it->second.scalar_type(), at::kFloat) << n;
    EXPECT_TRUE(at::equal(it->second, want)) << n;
  }
}

}  // namespace

TEST(ImportCheckpoint, OfficialCopsLayoutConvertsExactly) {
  ASSERT_FALSE(env("ZSAD_BINARY").empty());
  ASSERT_FALSE(env("ZSAD_PYTHON").empty());
  const std::string dir = zsad::testing::fresh_temp_dir("import_ok");
  const std::string pth = make(dir, "ok");
  auto [rc, out] = import(pth, dir + "/ck.h5");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("4783104 parameters"), std::string::npos) << out;  // 4.78 M as in the spec (§2)
  expect_exact(dir + "/ck.h5", dir + "/ok_ref.h5");
  zsad::Checkpoint ck = zsad::read_checkpoint(dir + "/ck.h5");
  EXPECT_EQ(ck.strings.at("imported_format"), "cops-official");
  EXPECT_EQ(ck.tensors.count("method/vae_encoder.mean.weight"), 0u);
  // An existing output is not overwritten without --force.
  auto again = import(pth, dir + "/ck.h5");
  EXPECT_EQ(again.first, 1) << again.second;
  fs::remove_all(dir);
}

TEST(ImportCheckpoint, UnfilteredStateDictKeepsVaeEncoderDropsDeadModules) {
  const std::string dir = zsad::testing::fresh_temp_dir("import_unf");
  auto [rc, out] = import(make(dir, "unfiltered"), dir + "/ck.h5");
  ASSERT_EQ(rc, 0) << out;
  expect_exact(dir + "/ck.h5", dir + "/unfiltered_ref.h5");
  zsad::Checkpoint ck = zsad::read_checkpoint(dir + "/ck.h5");
  EXPECT_EQ(ck.tensors.count("method/vae_encoder.mean.weight"), 1u);
  EXPECT_EQ(ck.tensors.count("method/projector.weight"), 0u);
  fs::remove_all(dir);
}

TEST(ImportCheckpoint, WrongFilesFailNamingTheKey) {
  const std::string dir = zsad::testing::fresh_temp_dir("import_bad");
  for (const auto& [variant, key] : std::vector<std::pair<std::string, std::string>>{
           {"missing", "ctx_neg"}, {"badshape", "t_a"}, {"unknown", "prompt_scale"}}) {
    auto [rc, out] = import(make(dir, variant), dir + "/" + variant + ".h5");
    EXPECT_EQ(rc, 1) << variant << ": " << out;
    EXPECT_NE(out.find(key), std::string::npos) << variant << ": " << out;
    EXPECT_FALSE(fs::exists(dir + "/" + variant + ".h5")) << variant;
  }
  auto [rc, out] = run_shell(env("ZSAD_BINARY") + " import-checkpoint --format apt x.pth --out y.h5");
  EXPECT_EQ(rc, 2) << out;
  fs::remove_all(dir);
}

TEST(ImportCheckpoint, ImportedCheckpointIsUsableByZsadEval) {
  // A checkpoint at the tiny demo CLIP's size (D 64, 1 deep prompt), then `zsad eval checkpoint=`.
  const std::string dir = zsad::testing::fresh_temp_dir("import_eval");
  auto [rc, out] = import(make(dir, "ok", "tiny"), dir + "/ck.h5");
  ASSERT_EQ(rc, 0) << out;
  expect_exact(dir + "/ck.h5", dir + "/ok_ref.h5");
  zsad::h5::File ref(dir + "/ok_ref.h5", zsad::h5::File::Mode::kRead);
  const size_t n = ref.children("ref").size();
  const std::string exp = env("ZSAD_SOURCE_DIR") + "/experiments/demo.yaml";
  auto ev = run_shell("cd " + dir + " && ZSAD_DATA_ROOT=" + dir + "/data ZSAD_OUTPUT_ROOT=" + dir + "/out " + env("ZSAD_BINARY") +
                " eval " + exp + " checkpoint=" + dir + "/ck.h5 launcher=local" +
                " eval.datasets.synth_textures.synth.images_per_class=4 eval.datasets.synth_objects.synth.images_per_class=4"
                " train.dataset.synth.images_per_class=4 --run-dir " + dir + "/run");
  ASSERT_EQ(ev.first, 0) << ev.second;
  EXPECT_NE(ev.second.find("loaded " + std::to_string(n) + " method tensors"), std::string::npos) << ev.second;
  EXPECT_TRUE(fs::exists(dir + "/run/results/synth_objects.json"));
  EXPECT_TRUE(fs::exists(dir + "/run/results/synth_textures.json"));
  fs::remove_all(dir);
}
