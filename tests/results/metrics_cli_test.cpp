// `zsad metrics`: JSON output equals the library's values (themselves cross-checked against
// sklearn in metrics_crosscheck_test.cpp), and malformed or schema-mismatched scores files are
// rejected with the path and the reason (exit 1, never a crash, no JSON written).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/h5.h"
#include "results/json_schema.h"
#include "results/metrics/dataset.h"
#include "results/run_result.h"
#include "results/scores_file.h"
#include "test_util.h"

namespace zsad::results {
namespace {

using nlohmann::json;
using namespace zsad::results::testing;

std::string zsad_binary() {
  const char* b = std::getenv("ZSAD_BINARY");
  if (b && *b) return b;
  return (std::filesystem::canonical("/proc/self/exe").parent_path().parent_path() / "launch" / "zsad").string();
}

std::map<std::string, ClassScores> small_dataset() {
  std::map<std::string, ClassScores> classes;
  ClassScores a;
  a.height = 4;
  a.width = 5;
  for (int i = 0; i < 6; ++i) {
    uint8_t label = i >= 3;
    a.labels.push_back(label);
    a.image_scores.push_back(0.1f * float(i) + (i == 2 ? 0.5f : 0.0f));
    for (int p = 0; p < 20; ++p) {
      uint8_t m = label && (p == 6 || p == 7 || p == 12 + i);
      a.masks.push_back(m);
      a.anomaly_maps.push_back(float((p * 7 + i * 3) % 11) / 10.0f + 0.35f * m);
    }
  }
  classes["bottle"] = a;
  ClassScores b;
  b.image_scores = {0.2f, 0.9f, 0.4f};
  b.labels = {0, 1, 1};
  classes["brain"] = b;
  return classes;
}

TEST(MetricsCli, JsonMatchesLibraryAndSchema) {
  const std::string dir = temp_dir("metrics_cli");
  const std::string scores = dir + "/scores.h5", out = dir + "/metrics.json";
  write_scores(scores, small_dataset());
  for (const std::string mode : {"exact", "anomalyclip"}) {
    auto r = run(zsad_binary() + " metrics " + scores + " --json " + out + " --pro-mode " + mode + " --fpr-limit 0.25", true);
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("bottle"), std::string::npos);
    EXPECT_NE(r.out.find("mean"), std::string::npos);
    std::ifstream in(out);
    json j = json::parse(in);
    validate_dataset_metrics_json(j, out);
    ScoresReader reader(scores);
    MetricOptions o;
    o.fpr_limit = 0.25;
    o.pro_mode = parse_pro_mode(mode);
    auto want = evaluate_streaming(reader.classes(), [&](const std::string& c) { return reader.load(c); }, o);
    for (const auto& [cls, values] : want.metrics.classes) {
      for (const char* key : kMetricKeys) {
        const json& got = j["classes"][cls][key];
        if (values[key]) {
          EXPECT_DOUBLE_EQ(got.get<double>(), *values[key]) << cls << " " << key;
        } else {
          EXPECT_TRUE(got.is_null()) << cls << " " << key;
        }
      }
    }
    // Image-only class: pixel metrics are null in JSON and "–" in the table.
    EXPECT_TRUE(j["classes"]["brain"]["pixel_auroc"].is_null());
    EXPECT_NEAR(j["classes"]["brain"]["image_auroc"].get<double>(), 1.0, 1e-15);
    EXPECT_NEAR(j["mean"]["image_auroc"].get<double>(),
                (j["classes"]["brain"]["image_auroc"].get<double>() + j["classes"]["bottle"]["image_auroc"].get<double>()) / 2,
                1e-15);
    EXPECT_NE(r.out.find("–"), std::string::npos);
  }
  auto r = run(zsad_binary() + " metrics " + scores + " --pro-mode fancy", true);
  EXPECT_EQ(r.status, 2) << r.out;
  r = run(zsad_binary() + " metrics " + scores + " --fpr-limit 0", true);
  EXPECT_EQ(r.status, 2) << r.out;
}

// One malformed file per case: (name, how to break it, expected words in the message).
TEST(MetricsCli, MalformedScoresFilesRejectedWithPathAndReason) {
  const std::string dir = temp_dir("metrics_bad");
  const std::string good = dir + "/good.h5";
  write_scores(good, small_dataset());
  struct Case {
    std::string name;
    std::function<void(const std::string&)> make;
    std::string reason;
  };
  auto copy_good = [&](const std::string& path) { std::filesystem::copy_file(good, path); };
  auto rewrite = [&](const std::string& path, const std::string& cls, const std::string& ds, auto writer) {
    h5::File f(path, h5::File::Mode::kTruncate);
    f.set_attr("/", "schema", std::string("zsad.scores/1"));
    ScoresReader r(good);
    for (const auto& c : r.classes()) {
      ClassScores s = r.read(c);
      f.create_group("/" + c);
      const int64_t n = int64_t(s.image_scores.size());
      if (!(c == cls && ds == "image_scores")) f.write("/" + c + "/image_scores", s.image_scores.data(), {n});
      if (!(c == cls && ds == "labels")) f.write("/" + c + "/labels", s.labels.data(), {n});
      if (s.height) {
        if (!(c == cls && ds == "anomaly_maps")) f.write("/" + c + "/anomaly_maps", s.anomaly_maps.data(), {n, s.height, s.width});
        if (!(c == cls && ds == "masks")) f.write("/" + c + "/masks", s.masks.data(), {n, s.height, s.width});
      }
      if (c == cls) writer(f, s);
    }
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<Case> cases = {
      {"text.h5", [](const std::string& p) { std::ofstream(p) << "not hdf5"; }, "not a readable HDF5"},
      {"missing.h5", [](const std::string&) {}, "not a readable HDF5"},
      {"no_schema.h5", [](const std::string& p) { h5::File f(p, h5::File::Mode::kTruncate); f.create_group("/a"); }, "schema"},
      {"future.h5", [&](const std::string& p) { copy_good(p); h5::File f(p, h5::File::Mode::kReadWrite); f.set_attr("/", "schema", std::string("zsad.scores/2")); }, "zsad.scores/2"},
      {"no_labels.h5", [&](const std::string& p) { rewrite(p, "bottle", "labels", [](h5::File&, ClassScores&) {}); }, "/bottle/labels: missing"},
      {"short_labels.h5", [&](const std::string& p) { rewrite(p, "bottle", "labels", [](h5::File& f, ClassScores& s) { f.write("/bottle/labels", s.labels.data(), {3}); }); }, "labels 3"},
      {"float64_maps.h5", [&](const std::string& p) { rewrite(p, "bottle", "anomaly_maps", [](h5::File& f, ClassScores& s) {
         std::vector<double> d(s.anomaly_maps.begin(), s.anomaly_maps.end());
         f.write("/bottle/anomaly_maps", d.data(), {6, 4, 5}); }); }, "float64"},
      {"mask_shape.h5", [&](const std::string& p) { rewrite(p, "bottle", "masks", [](h5::File& f, ClassScores& s) { f.write("/bottle/masks", s.masks.data(), {6, 5, 4}); }); }, "differ in shape"},
      {"no_masks.h5", [&](const std::string& p) { rewrite(p, "bottle", "masks", [](h5::File&, ClassScores&) {}); }, "anomaly_maps but no masks"},
      {"mask_value.h5", [&](const std::string& p) { rewrite(p, "bottle", "masks", [](h5::File& f, ClassScores& s) { s.masks[45] = 2; f.write("/bottle/masks", s.masks.data(), {6, 4, 5}); }); }, "mask value 2"},
      {"nan_map.h5", [&](const std::string& p) { rewrite(p, "bottle", "anomaly_maps", [&](h5::File& f, ClassScores& s) { s.anomaly_maps[7] = nan; f.write("/bottle/anomaly_maps", s.anomaly_maps.data(), {6, 4, 5}); }); }, "not finite"},
      {"label_value.h5", [&](const std::string& p) { rewrite(p, "brain", "labels", [](h5::File& f, ClassScores& s) { s.labels[0] = 7; f.write("/brain/labels", s.labels.data(), {3}); }); }, "label 7"},
  };
  for (const auto& c : cases) {
    const std::string path = dir + "/" + c.name, out = dir + "/" + c.name + ".json";
    c.make(path);
    auto r = run(zsad_binary() + " metrics " + path + " --json " + out, true);
    EXPECT_EQ(r.status, 1) << c.name << ": " << r.out;
    EXPECT_NE(r.out.find(path), std::string::npos) << c.name << ": " << r.out;
    EXPECT_NE(r.out.find(c.reason), std::string::npos) << c.name << ": " << r.out;
    EXPECT_FALSE(std::filesystem::exists(out)) << c.name;
  }
}

TEST(ResultsFile, RoundTripAndSchemaViolationsNamePathAndPointer) {
  const std::string dir = temp_dir("results_file");
  RunResult r;
  r.method = "cops";
  r.variant = make_variant({"+lr=0.001", "seed=3", "dataset=visa", "shots=0"}, {"dataset"});
  EXPECT_EQ(r.variant, (std::vector<std::string>{"lr=0.001", "shots=0"}));
  r.train_dataset = "visa";
  r.test_dataset = "mvtec";
  r.seed = 3;
  r.digests.config = std::string(64, 'a');
  r.digests.dataset = std::string(64, 'b');
  r.git_revision = "abc";
  r.metrics.classes["bottle"]["image_auroc"] = 0.9;
  r.metrics.mean = class_mean(r.metrics.classes);
  r.timings["eval_s"] = 3.5;
  const std::string path = dir + "/mvtec.json";
  write_run_result(path, r);
  RunResult back = read_run_result(path);
  EXPECT_EQ(back.method, "cops");
  EXPECT_EQ(back.variant, r.variant);
  EXPECT_EQ(*back.train_dataset, "visa");
  EXPECT_FALSE(back.digests.weights.has_value());
  EXPECT_DOUBLE_EQ(*back.metrics.classes["bottle"]["image_auroc"], 0.9);
  EXPECT_FALSE(back.metrics.classes["bottle"]["pixel_aupro"].has_value());
  // The schema file in the repository is the one compiled in.
  std::ifstream in(source_dir() + "/results/schema/results.schema.json");
  EXPECT_EQ(json::parse(in), results_schema());
  // Violations name the file and the JSON pointer.
  json j = to_json(r);
  j["digests"]["config"] = "xyz";
  j["metrics"]["classes"]["bottle"]["pixel_ap"] = -0.1;
  j["protocol"]["pro_mode"] = "fast";
  try {
    validate_results_json(j, "some/path.json");
    FAIL() << "expected a schema error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("some/path.json"), std::string::npos) << m;
    EXPECT_NE(m.find("/digests/config"), std::string::npos) << m;
    EXPECT_NE(m.find("/metrics/classes/bottle/pixel_ap"), std::string::npos) << m;
    EXPECT_NE(m.find("/protocol/pro_mode"), std::string::npos) << m;
  }
  r.digests.config = "nope";
  EXPECT_THROW(write_run_result(dir + "/bad.json", r), Error);
  EXPECT_FALSE(std::filesystem::exists(dir + "/bad.json"));
}

}  // namespace
}  // namespace zsad::results
