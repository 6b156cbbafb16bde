// Cross-checks every metric against sklearn, an independent MVTec AUPRO (scipy 8-connected
// labelling) and AnomalyCLIP's cal_pro_score, on random, tie-heavy and degenerate cases
// written by tests/results/metrics_reference.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "common/error.h"
#include "results/metrics/dataset.h"
#include "results/scores_file.h"
#include "test_util.h"

namespace zsad::results {
namespace {

using nlohmann::json;
using namespace zsad::results::testing;

constexpr double kTol = 1e-9;

std::string generate_cases(const std::string& dir, bool float16) {
  std::string path = dir + (float16 ? "/cases16.h5" : "/cases.h5");
  auto r = run(python() + " " + script("metrics_reference.py") + " generate " + path + (float16 ? " --float16" : ""), true);
  EXPECT_EQ(r.status, 0) << r.out;
  return path;
}

json reference(const std::string& scores, double limit, const std::string& mode) {
  char lim[64];
  std::snprintf(lim, sizeof(lim), "%.17g", limit);
  auto r = run(python() + " " + script("metrics_reference.py") + " compute " + scores + " --fpr-limit " + lim +
               " --pro-mode " + mode + " --skip-clip-prefix big_");
  EXPECT_EQ(r.status, 0) << r.out;
  return json::parse(r.out);
}

DatasetEvaluation ours(const std::string& scores, double limit, ProMode mode, int threads) {
  ScoresReader reader(scores);
  MetricOptions o;
  o.fpr_limit = limit;
  o.pro_mode = mode;
  o.threads = threads;
  return evaluate_streaming(reader.classes(), [&](const std::string& c) { return reader.load(c); }, o);
}

// Every class and metric: both undefined, or both defined and within kTol. Returns the number
// of defined values compared.
int compare(const DatasetEvaluation& got, const json& want) {
  int compared = 0;
  EXPECT_EQ(got.metrics.classes.size(), want["classes"].size());
  for (auto it = want["classes"].begin(); it != want["classes"].end(); ++it) {
    const std::string cls = it.key();
    if (!got.metrics.classes.count(cls)) {
      ADD_FAILURE() << "missing class " << cls;
      continue;
    }
    const MetricValues& g = got.metrics.classes.at(cls);
    for (const char* key : kMetricKeys) {
      const json& w = it.value()[key];
      if (w.is_string()) continue;  // reference skipped (too slow for its O(200*P) loop)
      if (w.is_null()) {
        EXPECT_FALSE(g[key].has_value()) << cls << " " << key << " should be undefined, got " << *g[key];
      } else {
        if (!g[key].has_value()) {
          ADD_FAILURE() << cls << " " << key << " undefined, reference " << w;
          continue;
        }
        EXPECT_NEAR(*g[key], w.get<double>(), kTol) << cls << " " << key;
        ++compared;
      }
    }
  }
  return compared;
}

class CrossCheck : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(temp_dir("crosscheck"));
    f32_ = new std::string(generate_cases(*dir_, false));
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete f32_;
  }
  static std::string* dir_;
  static std::string* f32_;
};
std::string* CrossCheck::dir_ = nullptr;
std::string* CrossCheck::f32_ = nullptr;

TEST_F(CrossCheck, ExactModeMatchesSklearnAndMvtecReference) {
  auto got = ours(*f32_, 0.3, ProMode::kExact, 2);
  int n = compare(got, reference(*f32_, 0.3, "exact"));
  EXPECT_GT(n, 60);
  // The degenerate classes are undefined for the documented reasons, not silently 0 or -1.
  EXPECT_FALSE(got.metrics.classes.at("one_label_no_regions")["image_auroc"].has_value());
  EXPECT_FALSE(got.metrics.classes.at("all_anomalous_pixels")["pixel_aupro"].has_value());
  EXPECT_FALSE(got.metrics.classes.at("image_only")["pixel_auroc"].has_value());
  // Dataset mean: unweighted mean over the classes where the metric is defined.
  for (const char* key : kMetricKeys) {
    double sum = 0;
    int count = 0;
    for (const auto& [cls, v] : got.metrics.classes) {
      if (v[key]) {
        sum += *v[key];
        ++count;
      }
    }
    ASSERT_TRUE(got.metrics.mean[key].has_value()) << key;
    EXPECT_NEAR(*got.metrics.mean[key], sum / count, 1e-15) << key;
  }
}

TEST_F(CrossCheck, ExactModeOtherLimitsIncludingOne) {
  for (double limit : {0.05, 0.1, 1.0}) {
    auto got = ours(*f32_, limit, ProMode::kExact, 1);
    SCOPED_TRACE("limit " + std::to_string(limit));
    EXPECT_GT(compare(got, reference(*f32_, limit, "exact")), 60);
  }
}

TEST_F(CrossCheck, AnomalyClipModeMatchesCalProScoreIncludingNaN) {
  auto got = ours(*f32_, 0.3, ProMode::kAnomalyClip, 2);
  json want = reference(*f32_, 0.3, "anomalyclip");
  EXPECT_GT(compare(got, want), 50);
  // heavy_tail: the reference returns NaN; we report undefined with a warning saying why.
  ASSERT_EQ(want["notes"]["heavy_tail"], "nan");
  EXPECT_FALSE(got.metrics.classes.at("heavy_tail")["pixel_aupro"].has_value());
  ASSERT_TRUE(got.warnings.count("heavy_tail"));
  bool mentions_nan = false;
  for (const auto& w : got.warnings.at("heavy_tail")) mentions_nan |= w.find("NaN") != std::string::npos;
  EXPECT_TRUE(mentions_nan);
  // ...while the exact algorithm is defined on the same data.
  auto exact = ours(*f32_, 0.3, ProMode::kExact, 1);
  EXPECT_TRUE(exact.metrics.classes.at("heavy_tail")["pixel_aupro"].has_value());
}

TEST_F(CrossCheck, Float16MapsMatchReference) {
  std::string f16 = generate_cases(*dir_, true);
  ScoresReader reader(f16);
  EXPECT_EQ(reader.info("random").map_type, h5::DType::kFloat16);
  EXPECT_GT(compare(ours(f16, 0.3, ProMode::kExact, 2), reference(f16, 0.3, "exact")), 60);
}

// Shards of images accumulated separately, serialised, merged in another order: the same
// metrics as one accumulator (what the distributed evaluation relies on).
TEST_F(CrossCheck, ShardedAccumulatorsSerialiseAndMerge) {
  ScoresReader reader(*f32_);
  MetricOptions o;
  for (const std::string cls : {"random", "ties", "tiny_regions", "image_only", "signed_zero"}) {
    ClassScores c = reader.read(cls);
    const int64_t n = int64_t(c.image_scores.size()), hw = c.height * c.width;
    std::vector<ClassAccumulator> shards(3);
    for (int64_t i = 0; i < n; ++i) {
      auto& s = shards[size_t(i % 3)];
      if (hw) {
        s.add_image(c.image_scores[i], c.labels[i], c.anomaly_maps.data() + i * hw, c.masks.data() + i * hw, c.height, c.width);
      } else {
        s.add_image(c.image_scores[i], c.labels[i]);
      }
    }
    ClassAccumulator merged = ClassAccumulator::deserialize(shards[2].serialize());
    merged.merge(ClassAccumulator::deserialize(shards[0].serialize()));
    merged.merge(ClassAccumulator::deserialize(shards[1].serialize()));
    ClassAccumulator whole = reader.load(cls);
    EXPECT_EQ(merged.pixels(), whole.pixels());
    EXPECT_EQ(merged.regions(), whole.regions());
    for (ProMode mode : {ProMode::kExact, ProMode::kAnomalyClip}) {
      o.pro_mode = mode;
      ClassMetrics a = merged.compute(o), b = whole.compute(o);
      for (const char* key : kMetricKeys) {
        ASSERT_EQ(a.metrics[key].has_value(), b.metrics[key].has_value()) << cls << " " << key;
        if (a.metrics[key]) EXPECT_NEAR(*a.metrics[key], *b.metrics[key], 1e-12) << cls << " " << key;
      }
    }
  }
  std::string bytes = reader.load("random").serialize();
  EXPECT_THROW(ClassAccumulator::deserialize(bytes.substr(0, bytes.size() - 3)), Error);
  EXPECT_THROW(ClassAccumulator::deserialize("not an accumulator"), Error);
}

// A file written by ScoresWriter (float16 maps) is read by h5py and gives the same metrics.
TEST_F(CrossCheck, WriterOutputReadByPythonReference) {
  std::mt19937 rng(5);
  std::normal_distribution<float> noise;
  std::map<std::string, ClassScores> classes;
  for (int c = 0; c < 3; ++c) {
    ClassScores s;
    s.height = 12;
    s.width = 10;
    for (int i = 0; i < 14; ++i) {
      uint8_t label = (i % 2);
      s.labels.push_back(label);
      s.image_scores.push_back(noise(rng) + label);
      for (int p = 0; p < 120; ++p) {
        uint8_t m = label && (p % 10 > 5) && (p / 10 > 3 + c);
        s.masks.push_back(m);
        s.anomaly_maps.push_back(noise(rng) + 1.2f * m);
      }
    }
    classes["class " + std::to_string(c)] = s;  // a space: names are kept verbatim
  }
  ClassScores img;
  img.image_scores = {0.1f, 0.4f, 0.35f, 0.8f};
  img.labels = {0, 0, 1, 1};
  classes["image-only"] = img;
  std::string path = *dir_ + "/written.h5";
  write_scores(path, classes, /*float16_maps=*/true);
  EXPECT_GT(compare(ours(path, 0.3, ProMode::kExact, 1), reference(path, 0.3, "exact")), 20);
  auto got = ours(path, 0.3, ProMode::kExact, 1);
  EXPECT_NEAR(*got.metrics.classes.at("image-only")["image_auroc"], 0.75, 1e-15);  // 3 of 4 pairs ordered
}

}  // namespace
}  // namespace zsad::results
