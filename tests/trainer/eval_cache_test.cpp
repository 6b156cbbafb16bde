// The evaluation engine with the frozen-feature cache (issue 7 "Feature cache", must-be-true 3):
// through eval::evaluate on a small synthetic dataset with the tiny random CLIP,
//  * WinCLIP-style and CoPS: a first run builds the cache, a second run makes ZERO encoder
//    forwards (the cache's encoder counter and the method's own counter), and the per-image scores
//    and maps of both equal a run with the cache disabled (float32 cache: bit for bit);
//  * float16 cache: a separate file (dtype is part of the key), cold == warm exactly, close to fp32;
//  * image size, weights (init seed) and attention depth (vv_depth) give other keys -> rebuilds;
//  * a truncated cache file is detected, rebuilt, and the scores are again the uncached ones;
//  * 2 ranks (threads, gloo) build the cache sharded: each encodes part, scores equal 1 rank;
//  * a method without frozen features (APT-like default hook) is evaluated from decoded images.
// The end-to-end CLI form (zsad eval twice) is EvalCacheCli.SecondEvalRunsNoEncoderAndMatchesUncached.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "common/h5.h"
#include "data/index.h"
#include "data/synth.h"
#include "models/methods/method.h"
#include "rank_threads.h"
#include "test_util.h"
#include "tiny_clip_fixture.h"
#include "results/scores_file.h"
#include "trainer/eval/engine.h"
#include "trainer/feature_cache.h"

namespace fs = std::filesystem;
using zsad::models::OptionMap;

namespace {

const std::string& data_root() {
  static const std::string root = [] {
    const std::string r = zsad::testing::fresh_temp_dir("evc_data");
    zsad::testing::synthesize_small_objects(r, 4);
    return r;
  }();
  return root;
}

OptionMap method_options(const std::string& method, int64_t image_size = 64, int64_t init_seed = 0,
                         int64_t vv_depth = -1) {
  OptionMap o;
  o.set("method.name", method);
  o.set("seed", "0");
  zsad::testing::set_tiny_clip_options(o, image_size, init_seed, vv_depth);
  if (method == "cops") {
    o.set("method.cops.extractor_heads", "4");
    o.set("method.cops.deep_prompt_depth", "1");  // the tiny CLIP has 2 text layers
    o.set("method.cops.r_test", "3");
    o.set("method.cops.test_kernel", "3");
  }
  return o;
}

struct RunOut {
  std::map<std::string, zsad::results::ClassScores> scores;  // per class, index order
  zsad::eval::DatasetReport report;
};

zsad::eval::EvalOptions eval_options(const std::string& run_dir, bool use_cache, const std::string& cache_dir,
                                     const std::string& dtype = "float32", int64_t cache_batch = 3) {
  zsad::eval::EvalOptions o;
  zsad::eval::DatasetSpec d;
  d.name = "synth_objects";
  d.root = data_root();
  d.eval_size = 64;
  o.datasets = {d};
  o.run_dir = run_dir;
  o.batch_size = 1;
  o.write_scores = true;
  o.panels_per_class = 0;
  o.method_name = "";
  o.git_revision = "test";
  o.use_cache = use_cache;
  o.cache.dir = cache_dir;
  o.cache.batch_size = cache_batch;
  o.cache_dtype = dtype;
  return o;
}

RunOut read_run(const std::string& run_dir, zsad::eval::DatasetReport rep) {
  RunOut r;
  zsad::results::ScoresReader rd(run_dir + "/scores/synth_objects.h5");
  for (const auto& c : rd.classes()) r.scores[c] = rd.read(c);
  r.report = std::move(rep);
  return r;
}

RunOut run_eval(zsad::models::Method& m, const zsad::eval::EvalOptions& o) {
  auto comm = zsad::comm::make_local_communicator();
  auto reps = zsad::eval::evaluate(m, o, *comm);
  EXPECT_EQ(reps.size(), 1u);
  return read_run(o.run_dir, reps.at(0));
}

void expect_identical(const RunOut& a, const RunOut& b) {
  ASSERT_EQ(a.scores.size(), b.scores.size());
  for (const auto& [c, s] : a.scores) {
    SCOPED_TRACE(c);
    ASSERT_TRUE(b.scores.count(c));
    EXPECT_EQ(s.image_scores, b.scores.at(c).image_scores);
    EXPECT_EQ(s.anomaly_maps, b.scores.at(c).anomaly_maps);
    EXPECT_EQ(s.labels, b.scores.at(c).labels);
    EXPECT_EQ(s.masks, b.scores.at(c).masks);
  }
}

double max_score_diff(const RunOut& a, const RunOut& b) {
  double d = 0;
  for (const auto& [c, s] : a.scores)
    for (size_t i = 0; i < s.image_scores.size(); ++i)
      d = std::max(d, static_cast<double>(std::abs(s.image_scores[i] - b.scores.at(c).image_scores[i])));
  return d;
}

double max_map_diff(const RunOut& a, const RunOut& b) {
  double d = 0;
  for (const auto& [c, s] : a.scores)
    for (size_t i = 0; i < s.anomaly_maps.size(); ++i)
      d = std::max(d, static_cast<double>(std::abs(s.anomaly_maps[i] - b.scores.at(c).anomaly_maps[i])));
  return d;
}

int64_t num_images() {
  return static_cast<int64_t>(zsad::data::read_meta(data_root() + "/meta.json").split("test").flat().size());
}

size_t count_h5(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().extension() == ".h5";
  return n;
}

// Build (cold) then reuse (warm) for one method; both equal the uncached run.
void cold_warm_equal_uncached(const std::string& method_name) {
  const std::string tmp = zsad::testing::fresh_temp_dir("evc_" + method_name);
  const std::string cache_dir = tmp + "/cache";
  auto m = zsad::models::make_method(method_options(method_name));
  ASSERT_TRUE(m->frozen_features().has_value());

  const int64_t f0 = m->encoder_forwards();
  RunOut plain = run_eval(*m, eval_options(tmp + "/plain", false, cache_dir));
  const int64_t plain_forwards = m->encoder_forwards() - f0;
  EXPECT_GT(plain_forwards, 0);
  EXPECT_EQ(plain.report.cache_state, "");
  EXPECT_FALSE(fs::exists(cache_dir));

  zsad::trainer::reset_encoder_calls();
  const int64_t f1 = m->encoder_forwards();
  RunOut cold = run_eval(*m, eval_options(tmp + "/cold", true, cache_dir));
  EXPECT_EQ(cold.report.cache_state, "built");
  EXPECT_GT(zsad::trainer::encoder_calls(), 0);
  EXPECT_GT(m->encoder_forwards() - f1, 0);   // the cache was filled by the method's encoder
  EXPECT_EQ(cold.report.encoder_forwards, 0);  // ... and the scoring loop read it
  EXPECT_EQ(count_h5(cache_dir), 1u);
  expect_identical(plain, cold);

  zsad::trainer::reset_encoder_calls();
  const int64_t f2 = m->encoder_forwards();
  RunOut warm = run_eval(*m, eval_options(tmp + "/warm", true, cache_dir));
  EXPECT_EQ(warm.report.cache_state, "hit");
  EXPECT_EQ(zsad::trainer::encoder_calls(), 0);
  EXPECT_EQ(m->encoder_forwards() - f2, 0);  // zero encoder forwards in the whole second run
  EXPECT_EQ(warm.report.encoder_forwards, 0);
  expect_identical(plain, warm);
  // The rank log says where the features came from.
  std::ifstream lf(tmp + "/warm/logs/eval_rank0.log");
  std::stringstream ls;
  ls << lf.rdbuf();
  EXPECT_NE(ls.str().find("(hit;"), std::string::npos) << ls.str();
  EXPECT_NE(ls.str().find("cached features, 0 encoder forwards"), std::string::npos) << ls.str();

  // After the run the method encodes by itself again (the source was removed).
  const int64_t f3 = m->encoder_forwards();
  RunOut again = run_eval(*m, eval_options(tmp + "/again", false, cache_dir));
  EXPECT_GT(m->encoder_forwards() - f3, 0);
  expect_identical(plain, again);
  fs::remove_all(tmp);
}

}  // namespace

TEST(EvalCache, WinclipSecondRunNoEncoderForwardsScoresIdentical) { cold_warm_equal_uncached("winclip"); }

TEST(EvalCache, CopsSecondRunNoEncoderForwardsScoresIdentical) { cold_warm_equal_uncached("cops"); }

// The cache holds batch-1 features. An uncached CoPS evaluation with 4 images per forward runs
// the vision tower's BLAS calls at other shapes, so the cached run with the same eval batch agrees
// with it within float32 rounding only (scores within 1e-5; CoPS' own batched inference after the
// encoder also depends on the batch shape, so 1 vs 4 images per batch differ at that level too).
TEST(EvalCache, CopsBatchedEvalWithinRounding) {
  const std::string tmp = zsad::testing::fresh_temp_dir("evc_cops_b4");
  auto m = zsad::models::make_method(method_options("cops"));
  auto opts = [&](const std::string& dir, bool cache, int64_t batch) {
    auto o = eval_options(tmp + "/" + dir, cache, tmp + "/cache");
    o.batch_size = batch;
    return o;
  };
  RunOut plain4 = run_eval(*m, opts("plain4", false, 4));
  RunOut cached4 = run_eval(*m, opts("cached4", true, 4));
  EXPECT_EQ(cached4.report.cache_state, "built");
  EXPECT_LE(max_score_diff(plain4, cached4), 1e-5);
  EXPECT_LE(max_map_diff(plain4, cached4), 1e-5);
  std::cout << "CoPS eval batch 4: max |score difference| cached vs uncached = " << max_score_diff(plain4, cached4)
            << "\n";
  fs::remove_all(tmp);
}

// `zsad cache` / training (make_clip_encoder + clip_cache_key) and the evaluation engine
// (Method::encode_frozen) compute the same key and the same bits, so either can warm the other.
TEST(EvalCache, ClipEncoderFileEqualsEngineBuiltFile) {
  const std::string tmp = zsad::testing::fresh_temp_dir("evc_same");
  const auto samples = zsad::data::read_meta(data_root() + "/meta.json").split("test").flat();
  for (const std::string method : {"winclip", "cops"}) {
    SCOPED_TRACE(method);
    auto m = zsad::models::make_method(method_options(method));
    RunOut r = run_eval(*m, eval_options(tmp + "/" + method, true, tmp + "/engine"));
    ASSERT_EQ(r.report.cache_state, "built");
    OptionMap o = method_options(method);
    o.set("cache.dtype", "float32");
    auto clip = zsad::models::build_clip_model(o);
    auto key = zsad::trainer::clip_cache_key(o, clip, "synth_objects", "test", samples, data_root(),
                                             method == "cops" ? "raw_cls" : "ln_post_cls", {});
    zsad::trainer::FeatureCacheOptions co;
    co.dir = tmp + "/clip";
    co.batch_size = 3;
    co.log = false;
    auto c = zsad::trainer::FeatureCache::open_or_build(
        key, samples, zsad::trainer::make_clip_encoder(clip, samples, data_root(), key), co);
    EXPECT_EQ(fs::path(c->path()).filename(), fs::path(r.report.cache_path).filename());
    const auto stamped = zsad::trainer::with_dataset_files(key, samples, nullptr);
    auto e = zsad::trainer::FeatureCache::open(r.report.cache_path, &stamped);
    std::vector<int64_t> all(samples.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
    auto a = c->get(all), b = e->get(all);
    EXPECT_TRUE(at::equal(a.global, b.global));
    EXPECT_TRUE(at::equal(a.patch, b.patch));
  }
  fs::remove_all(tmp);
}

TEST(EvalCache, Float16CacheIsItsOwnKeyColdEqualsWarmCloseToFloat32) {
  const std::string tmp = zsad::testing::fresh_temp_dir("evc_fp16");
  const std::string cache_dir = tmp + "/cache";
  auto m = zsad::models::make_method(method_options("winclip"));
  RunOut plain = run_eval(*m, eval_options(tmp + "/plain", false, cache_dir));
  RunOut f32 = run_eval(*m, eval_options(tmp + "/f32", true, cache_dir, "float32"));
  RunOut cold = run_eval(*m, eval_options(tmp + "/cold16", true, cache_dir, "float16"));
  EXPECT_EQ(cold.report.cache_state, "built");  // dtype is part of the key
  EXPECT_EQ(count_h5(cache_dir), 2u);
  RunOut warm = run_eval(*m, eval_options(tmp + "/warm16", true, cache_dir, "float16"));
  EXPECT_EQ(warm.report.cache_state, "hit");
  expect_identical(cold, warm);  // the cold run also scores from the stored (rounded) features
  expect_identical(plain, f32);
  const double d = max_score_diff(plain, cold);
  EXPECT_GT(d, 0.0);   // rounded features: not the same numbers ...
  EXPECT_LT(d, 5e-3);  // ... but close (feature rounding 2^-11 relative, softmax at T = 0.01)
  std::cout << "float16 cache: max |score difference| to uncached = " << d << "\n";
  fs::remove_all(tmp);
}

TEST(EvalCache, ImageSizeWeightsAndAttentionDepthRebuildTruncatedFileRebuilt) {
  const std::string tmp = zsad::testing::fresh_temp_dir("evc_keys");
  const std::string cache_dir = tmp + "/cache";
  auto base = zsad::models::make_method(method_options("winclip"));
  RunOut plain = run_eval(*base, eval_options(tmp + "/plain", false, cache_dir));
  RunOut first = run_eval(*base, eval_options(tmp + "/first", true, cache_dir));
  ASSERT_EQ(first.report.cache_state, "built");
  const std::string base_path = first.report.cache_path;

  struct Variant {
    const char* what;
    OptionMap opts;
  };
  std::vector<Variant> variants = {{"image size 72", method_options("winclip", 72)},
                                   {"init seed 1", method_options("winclip", 64, 1)},
                                   {"vv_depth 1", method_options("winclip", 64, 0, 1)}};
  size_t files = 1;
  for (auto& v : variants) {
    SCOPED_TRACE(v.what);
    auto m = zsad::models::make_method(v.opts);
    zsad::trainer::reset_encoder_calls();
    RunOut r = run_eval(*m, eval_options(tmp + "/" + std::to_string(files), true, cache_dir));
    EXPECT_EQ(r.report.cache_state, "built");
    EXPECT_NE(r.report.cache_path, base_path);
    EXPECT_GT(zsad::trainer::encoder_calls(), 0);
    EXPECT_EQ(count_h5(cache_dir), ++files);
    EXPECT_GT(max_map_diff(plain, r), 1e-4);  // other patch features, other maps (vv_depth: maps only)
  }
  // The base key is still a hit.
  RunOut hit = run_eval(*base, eval_options(tmp + "/hit", true, cache_dir));
  EXPECT_EQ(hit.report.cache_state, "hit");

  // Truncated file: detected, rebuilt (encoder runs again), scores are the uncached ones.
  const auto size = fs::file_size(base_path);
  fs::resize_file(base_path, size / 2);
  zsad::trainer::reset_encoder_calls();
  RunOut rebuilt = run_eval(*base, eval_options(tmp + "/rebuilt", true, cache_dir));
  EXPECT_EQ(rebuilt.report.cache_state, "built");
  EXPECT_EQ(rebuilt.report.cache_path, base_path);
  EXPECT_GT(zsad::trainer::encoder_calls(), 0);
  EXPECT_EQ(fs::file_size(base_path), size);
  expect_identical(plain, rebuilt);
  RunOut after = run_eval(*base, eval_options(tmp + "/after", true, cache_dir));
  EXPECT_EQ(after.report.cache_state, "hit");
  expect_identical(plain, after);
  fs::remove_all(tmp);
}

TEST(EvalCache, TwoRanksBuildShardedAndScoreLikeOneRank) {
  const std::string tmp = zsad::testing::fresh_temp_dir("evc_2r");
  auto one = zsad::models::make_method(method_options("winclip"));
  RunOut plain = run_eval(*one, eval_options(tmp + "/plain", false, tmp + "/cache"));
  const int64_t n = num_images();
  ASSERT_GT(n, 4);
  std::vector<int64_t> encoded(2, 0), forwards(2, -1);
  std::vector<std::string> states(2);
  auto run2 = [&](const std::string& run_dir) {
    zsad::testing::run_ranks(2, [&](zsad::testing::RankContext& ctx) {
      auto m = zsad::models::make_method(method_options("winclip"));
      const int64_t f0 = m->encoder_forwards();
      auto reps = zsad::eval::evaluate(*m, eval_options(run_dir, true, tmp + "/cache", "float32", 2), ctx.comm);
      encoded[ctx.rank] = m->encoder_forwards() - f0;
      forwards[ctx.rank] = reps.at(0).encoder_forwards;
      states[ctx.rank] = reps.at(0).cache_state;
    }, std::chrono::seconds(60));
  };
  run2(tmp + "/cold");
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(states[r], "built") << r;
    EXPECT_GT(encoded[r], 0) << r;  // both ranks encoded a slice
    EXPECT_EQ(forwards[r], 0) << r;
  }
  EXPECT_EQ(encoded[0] + encoded[1], n);  // per-image forwards: every image exactly once
  expect_identical(plain, read_run(tmp + "/cold", {}));
  run2(tmp + "/warm");
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(states[r], "hit") << r;
    EXPECT_EQ(encoded[r], 0) << r;
  }
  expect_identical(plain, read_run(tmp + "/warm", {}));
  fs::remove_all(tmp);
}

namespace {
// A method with the default hook (no frozen features), like APT: always gets decoded images.
class ImageMethod : public zsad::models::Method {
 public:
  std::string name() const override { return "image_method"; }
  int64_t input_size() const override { return 64; }
  zsad::models::MethodOutput infer(const zsad::models::MethodBatch& b) override {
    EXPECT_EQ(b.images.dim(), 4);
    EXPECT_EQ(b.images.size(2), 64);
    ++calls;
    zsad::models::MethodOutput o;
    o.image_scores = b.images.mean({1, 2, 3});
    o.anomaly_maps = b.images.mean(1).narrow(1, 0, 8).narrow(2, 0, 8).contiguous();
    return o;
  }
  int calls = 0;
};
}  // namespace

TEST(EvalCache, MethodWithoutFrozenFeaturesEncodesItself) {
  const std::string tmp = zsad::testing::fresh_temp_dir("evc_nohook");
  ImageMethod m;
  EXPECT_FALSE(m.frozen_features().has_value());
  EXPECT_THROW(m.set_feature_source(nullptr), std::exception);
  RunOut r = run_eval(m, eval_options(tmp + "/run", true, tmp + "/cache"));
  EXPECT_EQ(r.report.cache_state, "");
  EXPECT_EQ(m.calls, num_images());
  EXPECT_FALSE(fs::exists(tmp + "/cache"));
  fs::remove_all(tmp);
}

// ---- CLI: zsad eval twice -----------------------------------------------------------------------

namespace {
constexpr auto q = &zsad::testing::shell_quote;  // short: many command lines
using zsad::testing::slurp;
std::pair<int, std::string> sh(const std::string& cmd, const std::string& dir) {
  const std::string o = dir + "/.out";
  int st = std::system(("cd " + q(dir) + " && " + cmd + " >" + q(o) + " 2>&1").c_str());
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(o)};
}
using zsad::testing::count_occurrences;
}  // namespace

TEST(EvalCacheCli, SecondEvalRunsNoEncoderAndMatchesUncached) {
  const char* bin = std::getenv("ZSAD_BINARY");
  ASSERT_TRUE(bin && *bin);
  const std::string tmp = zsad::testing::fresh_temp_dir("evc_cli");
  const std::string exp = std::string(std::getenv("ZSAD_SOURCE_DIR")) + "/experiments/winclip_zero_shot.yaml";
  std::string args;
  for (const std::string d : {"synth_textures", "synth_objects"})
    args += " eval.datasets." + d + ".synth.size=64 eval.datasets." + d + ".synth.images_per_class=4 eval.datasets." + d +
            ".synth.train_per_class=1 eval.datasets." + d + ".eval_size=64";
  args += " eval.panels_per_class=0 cache.dtype=float32";
  const std::string env = "ZSAD_DATA_ROOT=" + q(tmp + "/data") + " ZSAD_OUTPUT_ROOT=" + q(tmp) + " ";
  auto eval = [&](const std::string& name, const std::string& extra) {
    auto r = sh(env + q(bin) + " eval " + q(exp) + args + extra + " --run-dir " + q(tmp + "/" + name), tmp);
    EXPECT_EQ(r.first, 0) << r.second;
    return r.second;
  };
  const std::string plain = eval("plain", " cache.enabled=false");
  EXPECT_EQ(count_occurrences(plain, "cache: "), 0u) << plain;
  const std::string cold = eval("cold", "");
  EXPECT_EQ(count_occurrences(cold, "cache: miss"), 2u) << cold;
  EXPECT_NE(cold.find("eval: feature cache: 0 hit(s), 2 miss(es)"), std::string::npos) << cold;
  const std::string warm = eval("warm", "");
  EXPECT_EQ(count_occurrences(warm, "cache: hit"), 2u) << warm;
  EXPECT_EQ(count_occurrences(warm, "cache: miss"), 0u) << warm;
  EXPECT_NE(warm.find("eval: feature cache: 2 hit(s), 0 miss(es)"), std::string::npos) << warm;
  EXPECT_EQ(count_occurrences(warm, "(cached features, 0 encoder forwards)"), 2u) << warm;
  EXPECT_TRUE(fs::is_directory(tmp + "/cache")) << "default cache.dir = <output.root>/cache";
  for (const std::string d : {"synth_textures", "synth_objects"}) {
    const std::string p = slurp(tmp + "/plain/eval/" + d + "/image_scores.csv");
    EXPECT_FALSE(p.empty());
    EXPECT_EQ(p, slurp(tmp + "/cold/eval/" + d + "/image_scores.csv")) << d;
    EXPECT_EQ(p, slurp(tmp + "/warm/eval/" + d + "/image_scores.csv")) << d;
    const auto res = nlohmann::json::parse(slurp(tmp + "/warm/results/" + d + ".json"));
    EXPECT_EQ(res["timings"]["feature_cache_hit"], 1) << res.dump();
  }
  fs::remove_all(tmp);
}

// zsad predict's --sigma / --eval-size / --batch-size are checked before anything is scored or
// written (an absurd sigma or size used to end in std::bad_alloc; batch size 0 was clamped to 1).
TEST(PredictOptionsCheck, OutOfRangeFlagsAreNamedAndNothingIsWritten) {
  const std::string tmp = zsad::testing::fresh_temp_dir("predict_bounds");
  auto m = zsad::models::make_method(method_options("winclip"));
  auto bad = [&](const std::function<void(zsad::eval::PredictOptions&)>& set, const std::string& flag) {
    zsad::eval::PredictOptions po;
    po.images = {"/nonexistent/a.png"};
    po.out_dir = tmp + "/out";
    set(po);
    try {
      zsad::eval::predict(*m, po);
      ADD_FAILURE() << flag << " accepted";
    } catch (const zsad::Error& e) {
      EXPECT_NE(std::string(e.what()).find(flag), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(po.out_dir)) << flag;
  };
  bad([](auto& p) { p.smoothing_sigma = 1e9; }, "--sigma");
  bad([](auto& p) { p.smoothing_sigma = -1; }, "--sigma");
  bad([](auto& p) { p.eval_size = 99999; }, "--eval-size");
  bad([](auto& p) { p.eval_size = -5; }, "--eval-size");
  bad([](auto& p) { p.batch_size = 0; }, "--batch-size");
  fs::remove_all(tmp);
}
