// zsad cache EXP: precomputes the demo experiment's train + test features (tiny random CLIP,
// synthetic data), a second run hits every file, training then reads the cache, and `zsad launch -n 2 zsad cache` writes files
// with the same data digests as the 1-rank build.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "common/h5.h"
#include "rank_threads.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

using zsad::testing::env;
using zsad::testing::run_shell;

// file name -> "global_sha256 patch_sha256 index_sha256"
std::map<std::string, std::string> digests(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".h5") continue;
    zsad::h5::File f(e.path().string(), zsad::h5::File::Mode::kRead);
    out[e.path().filename().string()] = f.attr_string("/", "global_sha256") + " " + f.attr_string("/", "patch_sha256") +
                                        " " + f.attr_string("/", "index_sha256");
  }
  return out;
}

using zsad::testing::count_occurrences;

}  // namespace

TEST(CacheCli, DemoPrecomputeHitAndTwoRankBuild) {
  ASSERT_FALSE(env("ZSAD_BINARY").empty());
  const std::string dir = zsad::testing::fresh_temp_dir("cache_cli");
  const std::string exp = env("ZSAD_SOURCE_DIR") + "/experiments/demo.yaml";
  // Small synthetic sets keep the test quick.
  const std::string small =
      " train.dataset.synth.images_per_class=4 eval.datasets.synth_textures.synth.images_per_class=4"
      " eval.datasets.synth_objects.synth.images_per_class=4";
  const std::string base = "cd " + dir + " && ZSAD_DATA_ROOT=" + dir + "/data ";
  const std::string z = env("ZSAD_BINARY");

  auto cold = run_shell(base + "ZSAD_OUTPUT_ROOT=" + dir + "/one " + z + " cache " + exp + small);
  ASSERT_EQ(cold.first, 0) << cold.second;
  // train synth_objects and test synth_objects share one key (same index, split and model).
  EXPECT_EQ(count_occurrences(cold.second, "cache: miss"), 2u) << cold.second;
  EXPECT_NE(cold.second.find("1 hit(s), 2 miss(es)"), std::string::npos) << cold.second;
  const auto one = digests(dir + "/one/cache");
  EXPECT_EQ(one.size(), 2u);

  auto warm = run_shell(base + "ZSAD_OUTPUT_ROOT=" + dir + "/one " + z + " cache " + exp + small);
  ASSERT_EQ(warm.first, 0) << warm.second;
  EXPECT_EQ(count_occurrences(warm.second, "cache: miss"), 0u) << warm.second;
  EXPECT_NE(warm.second.find("3 hit(s), 0 miss(es)"), std::string::npos) << warm.second;
  EXPECT_EQ(digests(dir + "/one/cache"), one);

  // Training after `zsad cache` starts warm: the training set's features come from the cache.
  auto train = run_shell(base + "ZSAD_OUTPUT_ROOT=" + dir + "/one " + z + " run " + exp + small +
                  " launcher=local train.max_steps=1 train.eval=false");
  ASSERT_EQ(train.first, 0) << train.second;
  EXPECT_NE(train.second.find("cache: hit"), std::string::npos) << train.second;
  EXPECT_EQ(train.second.find("cache: miss"), std::string::npos) << train.second;
  EXPECT_NE(train.second.find("cached features"), std::string::npos) << train.second;

  // A different image size is a different key: new files, nothing reused.
  auto dry = run_shell(base + "ZSAD_OUTPUT_ROOT=" + dir + "/one " + z + " cache " + exp + small + " model.image_size=72 --dry-run");
  ASSERT_EQ(dry.first, 0) << dry.second;
  EXPECT_EQ(count_occurrences(dry.second, "[absent]"), 3u) << dry.second;

  auto two = run_shell(base + "ZSAD_OUTPUT_ROOT=" + dir + "/two " + z + " launch -n 2 " + z + " cache " + exp + small);
  ASSERT_EQ(two.first, 0) << two.second;
  EXPECT_NE(two.second.find("2 rank(s)"), std::string::npos) << two.second;
  EXPECT_EQ(digests(dir + "/two/cache"), one);  // bit-identical data to the 1-rank build
  for (const auto& e : fs::directory_iterator(dir + "/two/cache"))
    EXPECT_EQ(e.path().string().find(".shard"), std::string::npos) << e.path();
  fs::remove_all(dir);
}
