#pragma once
// Results files (JSON, schema "zsad.results/1"): <run>/results/<test_dataset>.json, one per
// evaluated test dataset. results/schema/results.schema.json is the definition; every writer
// and reader here validates against it. docs/results.md explains the fields.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "results/metrics/metrics.h"

namespace zsad::results {

inline constexpr const char* kResultsSchema = "zsad.results/1";

struct Protocol {
  std::optional<int64_t> eval_size = 518;  // square evaluation size; empty = original resolution
  std::string upsampling = "bilinear";
  double smoothing_sigma = 4.0;
  double fpr_limit = 0.3;
  ProMode pro_mode = ProMode::kExact;
};

struct Digests {
  std::string config;                  // SHA-256 of the resolved config (outputs/launcher/logging keys removed)
  std::optional<std::string> weights;  // SHA-256 of the weights file
  std::string dataset;                 // SHA-256 of the dataset index
};

struct RunResult {
  std::string method;
  std::vector<std::string> variant;  // sorted key=value, seed excluded (make_variant builds it)
  std::optional<std::string> train_dataset;
  std::string test_dataset;
  int64_t seed = 0;
  Protocol protocol;
  Digests digests;
  std::vector<std::string> overrides;
  std::string git_revision;
  DatasetMetrics metrics;
  nlohmann::json timings = nlohmann::json::object();   // seconds
  nlohmann::json hardware = nlohmann::json::object();  // free-form
  nlohmann::json tags = nlohmann::json::object();      // free-form; omitted when empty
};

// The `variant` of a run from its overrides: key=value tokens with the leading +/++ dropped,
// the seed (and any key in `exclude`) removed, sorted.
std::vector<std::string> make_variant(const std::vector<std::string>& overrides,
                                      const std::vector<std::string>& exclude = {});

// Metric values <-> {"image_auroc": 0.93, ..., "pixel_aupro": null}.
nlohmann::json metric_values_to_json(const MetricValues& v);
// {"classes": {...}, "mean": {...}}: what `zsad metrics --json` writes.
nlohmann::json dataset_metrics_to_json(const DatasetMetrics& m);
DatasetMetrics dataset_metrics_from_json(const nlohmann::json& j, const std::string& source);

nlohmann::json to_json(const RunResult& r);
// Validates against the schema first; errors name `source` and the JSON pointer.
RunResult run_result_from_json(const nlohmann::json& j, const std::string& source);

// Writes atomically (temporary file + rename) after validating against the schema.
void write_run_result(const std::string& path, const RunResult& r);
// Throws zsad::Error "<path>: <reason>" for unreadable, unparsable or schema-violating files.
RunResult read_run_result(const std::string& path);

// Validation used by every reader: throws zsad::Error "<source>: <pointer>: <reason>; ...".
void validate_results_json(const nlohmann::json& j, const std::string& source);
void validate_dataset_metrics_json(const nlohmann::json& j, const std::string& source);

}  // namespace zsad::results
