// End-to-end evaluation engine tests through the zsad CLI ($ZSAD_BINARY) on small synthetic
// datasets with the tiny random CLIP (experiments/winclip_zero_shot.yaml):
//  * `zsad run ... launcher.nproc=2` (= zsad launch -n 2 -- zsad job ...): every rank logs its
//    images; shards are disjoint, non-empty and cover each dataset; per-image scores equal a
//    single-rank run bit for bit (batch 1 per rank); results files agree; PNG panels are written;
//  * `zsad launch -n 2 -- zsad eval ... --run-dir D` with strided shards and batch 3: scores within 1e-6;
//  * metrics in results/<dataset>.json equal sklearn on the run's own per-image scores and scores.h5;
//  * `zsad predict` (never cached) gives the same scores as the evaluation (float32 feature cache)
//    for the same images.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "common/h5.h"
#include "test_util.h"
#include "trainer/eval/engine.h"

namespace fs = std::filesystem;

namespace {

std::string env_or(const char* n, const std::string& d) {
  const char* v = std::getenv(n);
  return v && *v ? v : d;
}
constexpr auto q = &zsad::testing::shell_quote;  // short: many command lines
using zsad::testing::slurp;
struct CmdResult {
  int code = -1;
  std::string out, err;
};
CmdResult sh(const std::string& cmd, const std::string& dir) {
  const std::string o = dir + "/.out", e = dir + "/.err";
  int st = std::system(("cd " + q(dir) + " && " + cmd + " >" + q(o) + " 2>" + q(e)).c_str());
  CmdResult r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp(o);
  r.err = slurp(e);
  return r;
}
std::string run_dir_of(const CmdResult& r, const std::string& cwd) {
  std::smatch m;
  static const std::regex re("zsad (run|eval): (\\S+)");
  if (!std::regex_search(r.err, m, re)) return "";
  fs::path p(m[2].str());
  return p.is_absolute() ? p.string() : (fs::path(cwd) / p).string();
}

// CSV rows after the header: column `key` -> column `value`, as text.
std::map<std::string, std::string> read_csv_columns(const std::string& csv, size_t key, size_t value) {
  std::map<std::string, std::string> out;
  std::ifstream f(csv);
  std::string line;
  std::getline(f, line);
  while (std::getline(f, line)) {
    std::vector<std::string> c;
    std::stringstream ss(line);
    std::string x;
    while (std::getline(ss, x, ',')) c.push_back(x);
    out[c.at(key)] = c.at(value);
  }
  return out;
}

// image_scores.csv: global image index -> score text.
std::map<int64_t, std::string> read_scores(const std::string& csv) {
  std::map<int64_t, std::string> s;
  for (const auto& [k, v] : read_csv_columns(csv, 0, 3)) s[std::stoll(k)] = v;
  return s;
}
// Indices listed in a rank's shard file.
std::vector<int64_t> read_shard(const std::string& tsv) {
  std::vector<int64_t> v;
  std::ifstream f(tsv);
  std::string line;
  std::getline(f, line);
  while (std::getline(f, line)) v.push_back(std::stoll(line.substr(0, line.find('\t'))));
  return v;
}

const std::vector<std::string> kDatasets = {"synth_textures", "synth_objects"};

class EvalEngine : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = fs::temp_directory_path() / ("zsad_eval_" + std::to_string(::getpid()));
    fs::create_directories(tmp_);
    bin_ = env_or("ZSAD_BINARY", "zsad");
    exp_ = env_or("ZSAD_SOURCE_DIR", ".") + "/experiments/winclip_zero_shot.yaml";
    env_ = "ZSAD_DATA_ROOT=" + q((tmp_ / "data").string()) + " ZSAD_OUTPUT_ROOT=" + q(tmp_.string()) + " ";
    for (const auto& d : kDatasets) {
      common_ += " eval.datasets." + d + ".synth.size=64 eval.datasets." + d + ".synth.images_per_class=6" +
                 " eval.datasets." + d + ".synth.train_per_class=2 eval.datasets." + d + ".eval_size=64";
    }
    // The runs share a float32 feature cache (<output.root>/cache, built by the first run): with
    // per-image forwards its scores are bit-identical to the uncached `zsad predict` below
    // (the default float16 cache rounds the features; see tests/trainer/eval_cache_test.cpp).
    common_ += " eval.panels_per_class=1 eval.write_scores=true cache.dtype=float32";
  }
  static void TearDownTestSuite() {
    if (!::testing::Test::HasFailure()) fs::remove_all(tmp_);
  }
  static fs::path tmp_;
  static std::string bin_, exp_, env_, common_;
};
fs::path EvalEngine::tmp_;
std::string EvalEngine::bin_, EvalEngine::exp_, EvalEngine::env_, EvalEngine::common_;

TEST_F(EvalEngine, TwoRanksShardDisjointCoverAndMatchOneRankBitForBit) {
  const std::string cwd = tmp_.string();
  // Single rank first (it also generates the synthetic datasets).
  CmdResult one = sh(env_ + q(bin_) + " run " + q(exp_) + common_, cwd);
  ASSERT_EQ(one.code, 0) << one.out << one.err;
  const std::string d1 = run_dir_of(one, cwd);
  ASSERT_FALSE(d1.empty()) << one.err;
  CmdResult two = sh(env_ + q(bin_) + " run " + q(exp_) + common_ + " launcher.nproc=2", cwd);
  ASSERT_EQ(two.code, 0) << two.out << two.err;
  const std::string d2 = run_dir_of(two, cwd);
  ASSERT_FALSE(d2.empty()) << two.err;
  const std::string log = slurp(d2 + "/run.log");

  for (const auto& ds : kDatasets) {
    SCOPED_TRACE(ds);
    const auto s1 = read_scores(d1 + "/eval/" + ds + "/image_scores.csv");
    const auto s2 = read_scores(d2 + "/eval/" + ds + "/image_scores.csv");
    const auto N = static_cast<int64_t>(s1.size());
    ASSERT_EQ(N, 30);  // 5 classes x 6 test images
    // Each rank logged how many and which images it scored.
    for (int r = 0; r < 2; ++r) {
      EXPECT_NE(log.find("[rank " + std::to_string(r) + "] eval " + ds + ": rank " + std::to_string(r) + "/2 scores "),
                std::string::npos)
          << log;
      EXPECT_TRUE(fs::exists(d2 + "/logs/eval_rank" + std::to_string(r) + ".log"));
    }
    auto r0 = read_shard(d2 + "/eval/" + ds + "/shard_rank0.tsv");
    auto r1 = read_shard(d2 + "/eval/" + ds + "/shard_rank1.tsv");
    EXPECT_FALSE(r0.empty());
    EXPECT_FALSE(r1.empty());
    std::set<int64_t> a(r0.begin(), r0.end()), b(r1.begin(), r1.end()), all;
    EXPECT_EQ(a.size(), r0.size());  // no image twice on a rank
    EXPECT_EQ(b.size(), r1.size());
    for (int64_t i : a) EXPECT_FALSE(b.count(i)) << "image " << i << " on both ranks";
    all.insert(a.begin(), a.end());
    all.insert(b.begin(), b.end());
    EXPECT_EQ(static_cast<int64_t>(all.size()), N);
    EXPECT_EQ(*all.begin(), 0);
    EXPECT_EQ(*all.rbegin(), N - 1);
    // The single-rank run scored everything on rank 0.
    EXPECT_EQ(static_cast<int64_t>(read_shard(d1 + "/eval/" + ds + "/shard_rank0.tsv").size()), N);
    // Bit-for-bit equal per-image scores (%.9g round-trips float32 exactly).
    EXPECT_EQ(s1, s2);
    // Results files: same metrics, every class, the protocol and provenance recorded.
    auto j1 = nlohmann::json::parse(slurp(d1 + "/results/" + ds + ".json"));
    auto j2 = nlohmann::json::parse(slurp(d2 + "/results/" + ds + ".json"));
    EXPECT_EQ(j1["metrics"], j2["metrics"]);
    EXPECT_EQ(j1["variant"], j2["variant"]);  // launcher.nproc is not part of the variant
    EXPECT_NE(j2["overrides"].dump().find("launcher.nproc=2"), std::string::npos);
    EXPECT_EQ(j1["schema"], "zsad.results/1");
    EXPECT_EQ(j1["method"], "WinCLIP-style (no windows)");  // the name tables show
    EXPECT_EQ(j1["tags"]["method"], "winclip");
    EXPECT_EQ(j1["test_dataset"], ds);
    EXPECT_TRUE(j1["train_dataset"].is_null());
    EXPECT_EQ(j1["protocol"]["eval_size"], 64);
    EXPECT_EQ(j1["protocol"]["upsampling"], "bilinear");
    EXPECT_EQ(j1["protocol"]["smoothing_sigma"], 4.0);
    EXPECT_EQ(j1["digests"]["dataset"], j2["digests"]["dataset"]);
    EXPECT_EQ(j1["digests"]["config"].get<std::string>().size(), 64u);
    EXPECT_EQ(j2["hardware"]["world_size"], 2);
    EXPECT_EQ(j1["metrics"]["classes"].size(), 5u);
    // Panels: one per class.
    int panels = 0;
    for (const auto& e : fs::recursive_directory_iterator(d2 + "/panels/" + ds)) panels += e.path().extension() == ".png";
    EXPECT_EQ(panels, 5);
    // Merged scores file equals the single-rank one.
    EXPECT_TRUE(fs::exists(d2 + "/scores/" + ds + ".h5"));
    EXPECT_FALSE(fs::exists(d2 + "/scores/" + ds + ".rank0.part.h5"));
    zsad::h5::File h1(d1 + "/scores/" + ds + ".h5", zsad::h5::File::Mode::kRead);
    zsad::h5::File h2(d2 + "/scores/" + ds + ".h5", zsad::h5::File::Mode::kRead);
    for (const auto& cls : h1.children("/")) {
      EXPECT_EQ(h1.read_float(cls + "/image_scores"), h2.read_float(cls + "/image_scores")) << cls;
      EXPECT_EQ(h1.read_float(cls + "/anomaly_maps"), h2.read_float(cls + "/anomaly_maps")) << cls;
      EXPECT_EQ(h1.read_uint8(cls + "/masks"), h2.read_uint8(cls + "/masks")) << cls;
    }

    // sklearn on the run's own outputs gives the metrics of the results file.
    const std::string ref = (tmp_ / (ds + "_ref.json")).string();
    CmdResult py = sh(q(env_or("ZSAD_PYTHON", "/usr/bin/python3")) + " " +
                    q(env_or("ZSAD_SOURCE_DIR", ".") + "/tests/trainer/eval_reference.py") + " " +
                    q(d2 + "/eval/" + ds + "/image_scores.csv") + " " + q(d2 + "/scores/" + ds + ".h5") + " " + q(ref),
                cwd);
    ASSERT_EQ(py.code, 0) << py.out << py.err;
    auto rj = nlohmann::json::parse(slurp(ref));
    for (const auto& [cls, m] : rj["classes"].items()) {
      for (const char* k : {"image_auroc", "image_ap", "pixel_auroc", "pixel_ap"}) {
        EXPECT_NEAR(j2["metrics"]["classes"][cls][k].get<double>(), m[k].get<double>(), 1e-9) << cls << " " << k;
      }
    }
    // The scores file lists each class's images in index order: the same scores as the listing.
    for (const auto& [cls, arr] : rj["h5_scores"].items()) {
      std::vector<double> from_csv;
      std::ifstream f(d2 + "/eval/" + ds + "/image_scores.csv");
      std::string line;
      std::getline(f, line);
      while (std::getline(f, line)) {
        if (line.find("," + cls + ",") != std::string::npos) {
          auto c1 = line.find(',', line.find(',', line.find(',') + 1) + 1);
          from_csv.push_back(static_cast<double>(std::stof(line.substr(c1 + 1, line.find(',', c1 + 1) - c1 - 1))));
        }
      }
      ASSERT_EQ(from_csv.size(), arr.size()) << cls;
      for (size_t i = 0; i < arr.size(); ++i) EXPECT_EQ(from_csv[i], arr[i].get<double>()) << cls << " " << i;
    }
  }

  // zsad eval under zsad launch -n 2, strided shards, batch 3 per rank (other batch compositions,
  // partial batches). WinCLIP forwards image by image by default, so the scores are bit-identical
  // to the batch-1 single-rank run. With batched forwards (per_image_forward=false) the vision
  // tower's BLAS calls have other shapes and round differently in float32 (measured: ~2e-6 after
  // the 1/0.01 logit scale), so that run is compared within 1e-5.
  CmdResult batched = sh(env_ + q(bin_) + " launch -n 2 -- " + q(bin_) + " eval " + q(exp_) + common_ +
                             " eval.shard=strided eval.batch_size=3 method.winclip.per_image_forward=false --run-dir " +
                             q((tmp_ / "eval_batched").string()),
                         cwd);
  ASSERT_EQ(batched.code, 0) << batched.out << batched.err;
  const std::string d3 = (tmp_ / "eval_launch").string();
  CmdResult three = sh(env_ + q(bin_) + " launch -n 2 -- " + q(bin_) + " eval " + q(exp_) + common_ +
                     " eval.shard=strided eval.batch_size=3 --run-dir " + q(d3),
                 cwd);
  ASSERT_EQ(three.code, 0) << three.out << three.err;
  for (const auto& ds : kDatasets) {
    const auto s1 = read_scores(d1 + "/eval/" + ds + "/image_scores.csv");
    const auto s3 = read_scores(d3 + "/eval/" + ds + "/image_scores.csv");
    ASSERT_EQ(s1.size(), s3.size());
    EXPECT_EQ(s1, s3) << ds;
    const auto sb = read_scores((tmp_ / "eval_batched").string() + "/eval/" + ds + "/image_scores.csv");
    ASSERT_EQ(s1.size(), sb.size());
    for (const auto& [i, s] : s1) EXPECT_NEAR(std::stod(s), std::stod(sb.at(i)), 1e-5) << ds << " image " << i;
    auto r0 = read_shard(d3 + "/eval/" + ds + "/shard_rank0.tsv");
    ASSERT_FALSE(r0.empty());
    for (int64_t i : r0) EXPECT_EQ(i % 2, 0);  // strided
  }

  // zsad predict on the grain test images: the same scores as the evaluation.
  const std::string grain = (tmp_ / "data" / "synth_textures" / "grain" / "test").string();
  const std::string pdir = (tmp_ / "predict").string();
  CmdResult pr = sh(env_ + q(bin_) + " predict " + q(exp_) + " --images " + q(grain) + " --class grain --out " + q(pdir) +
                  " --eval-size 64",
              cwd);
  ASSERT_EQ(pr.code, 0) << pr.out << pr.err;
  // image_scores.csv: path (column 4) -> score (column 3).
  const auto eval_by_path = read_csv_columns(d1 + "/eval/synth_textures/image_scores.csv", 4, 3);
  std::ifstream pf(pdir + "/scores.csv");
  std::string line;
  std::getline(pf, line);
  int n = 0;
  while (std::getline(pf, line)) {
    const std::string path = line.substr(0, line.rfind(','));
    const std::string rel = "grain/test/" + fs::relative(path, grain).string();
    ASSERT_TRUE(eval_by_path.count(rel)) << rel;
    EXPECT_EQ(eval_by_path.at(rel), line.substr(line.rfind(',') + 1)) << rel;
    ++n;
  }
  EXPECT_EQ(n, 6);
  zsad::h5::File maps(pdir + "/maps.h5", zsad::h5::File::Mode::kRead);
  EXPECT_EQ(maps.shape("anomaly_maps"), (std::vector<int64_t>{6, 64, 64}));
  int overlays = 0;
  for (const auto& e : fs::directory_iterator(pdir + "/overlays")) overlays += e.path().extension() == ".png";
  EXPECT_EQ(overlays, 6);
}

// Evaluation size (96) different from the model's input size (64): maps are upsampled to 96 and the
// masks are read and resized at 96 exactly as the references do (PIL bilinear, > 0.5).
TEST_F(EvalEngine, EvalSizeOtherThanInputSize) {
  const std::string cwd = tmp_.string();
  const std::string d = (tmp_ / "eval96").string();
  CmdResult r = sh(env_ + q(bin_) + " eval " + q(exp_) + common_ +
                       " eval.datasets.synth_textures.eval_size=96 '~eval.datasets.synth_objects' "
                       "'eval.order=[synth_textures]' '+eval.datasets.synth_textures.classes=[grain]' --run-dir " + q(d),
                   cwd);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(slurp(d + "/results/synth_textures.json"));
  EXPECT_EQ(j["protocol"]["eval_size"], 96);
  EXPECT_EQ(j["metrics"]["classes"].size(), 1u);
  zsad::h5::File h(d + "/scores/synth_textures.h5", zsad::h5::File::Mode::kRead);
  EXPECT_EQ(h.shape("grain/anomaly_maps"), (std::vector<int64_t>{6, 96, 96}));
  CmdResult py = sh(q(env_or("ZSAD_PYTHON", "/usr/bin/python3")) + " " +
                        q(env_or("ZSAD_SOURCE_DIR", ".") + "/tests/trainer/eval_masks_reference.py") + " " +
                        q((tmp_ / "data" / "synth_textures").string()) + " " +
                        q(d + "/eval/synth_textures/image_scores.csv") + " " + q(d + "/scores/synth_textures.h5") +
                        " grain 96",
                    cwd);
  EXPECT_EQ(py.code, 0) << py.out << py.err;
}

TEST(EvalShards, DisjointCoveringBalanced) {
  for (const std::string mode : {"contiguous", "strided"}) {
    for (int64_t n : {0, 1, 2, 5, 17, 100}) {
      for (int w : {1, 2, 3, 7}) {
        std::vector<int> seen(static_cast<size_t>(n), 0);
        size_t lo = SIZE_MAX, hi = 0;
        for (int r = 0; r < w; ++r) {
          auto s = zsad::eval::shard_indices(n, r, w, mode);
          lo = std::min(lo, s.size());
          hi = std::max(hi, s.size());
          for (int64_t i : s) seen[static_cast<size_t>(i)]++;
          if (n >= w) EXPECT_FALSE(s.empty());
        }
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(seen[static_cast<size_t>(i)], 1) << mode << " n=" << n << " w=" << w;
        EXPECT_LE(hi - lo, 1u);
      }
    }
  }
  EXPECT_THROW(zsad::eval::shard_indices(5, 0, 2, "padded"), zsad::Error);
}

TEST(EvalConfig, DatasetSpecsFromConfigAndUnknownKeys) {
  zsad::models::OptionMap c;
  c.set("method.name", "winclip");
  c.set("eval.datasets.b.root", "/x/b");
  c.set("eval.datasets.b.eval_size", "96");
  c.set("eval.datasets.b.upsampling", "nearest");
  c.set_list("eval.datasets.b.metrics", {"image_auroc"});
  c.set("eval.datasets.b.method_options.winclip.map_weight", "0.3");
  c.set("eval.datasets.a.root", "/x/a");
  c.set_list("eval.order", {"b", "a"});
  auto o = zsad::eval::eval_options_from(c);
  ASSERT_EQ(o.datasets.size(), 2u);
  EXPECT_EQ(o.datasets[0].name, "b");
  EXPECT_EQ(o.datasets[0].eval_size, 96);
  EXPECT_EQ(o.datasets[0].upsampling, "nearest");
  EXPECT_EQ(o.datasets[0].metrics, std::vector<std::string>{"image_auroc"});
  EXPECT_DOUBLE_EQ(o.datasets[0].method_options.sub("winclip").real("map_weight", 0), 0.3);
  EXPECT_EQ(o.datasets[1].eval_size, 518);
  c.set("eval.datasets.a.evalsize", "3");
  EXPECT_THROW(zsad::eval::eval_options_from(c), zsad::Error);
  c.values.erase("eval.datasets.a.evalsize");
  c.set_list("eval.datasets.a.metrics", {"image_aurocc"});
  EXPECT_THROW(zsad::eval::eval_options_from(c), zsad::Error);
  c.set_list("eval.datasets.a.metrics", {"image_auroc"});
  EXPECT_NO_THROW(zsad::eval::eval_options_from(c));
  // Out-of-range settings are refused before any image is scored, naming key, range and value.
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"eval_size", "99999"}, {"eval_size", "-3"}, {"smoothing_sigma", "-1"}, {"smoothing_sigma", "1e9"},
      {"fpr_limit", "0"}, {"fpr_limit", "1.5"}, {"shots", "-1"}};
  for (const auto& [key, value] : bad) {
    auto cc = c;
    cc.set("eval.datasets.a." + key, value);
    try {
      zsad::eval::eval_options_from(cc);
      ADD_FAILURE() << key << "=" << value << " accepted";
    } catch (const zsad::Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("'eval.datasets.a." + key + "'"), std::string::npos) << m;
      EXPECT_NE(m.find("expected"), std::string::npos) << m;
    }
  }
}

}  // namespace
