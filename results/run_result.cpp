#include "results/run_result.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "results/json_schema.h"

namespace zsad::results {

using nlohmann::json;

namespace {
void throw_errors(const std::vector<std::string>& errs, const std::string& source) {
  if (errs.empty()) return;
  std::string msg = source + ": does not match schema zsad.results/1: " + errs[0];
  for (size_t i = 1; i < errs.size() && i < 5; ++i) msg += "; " + errs[i];
  if (errs.size() > 5) msg += "; (" + std::to_string(errs.size() - 5) + " more)";
  throw Error(msg);
}

MetricValues metric_values_from_json(const json& j) {
  MetricValues v;
  for (size_t i = 0; i < kMetricKeys.size(); ++i) {
    const json& x = j.at(kMetricKeys[i]);
    if (!x.is_null()) v.at(i) = x.get<double>();
  }
  return v;
}
}  // namespace

std::vector<std::string> make_variant(const std::vector<std::string>& overrides, const std::vector<std::string>& exclude) {
  std::vector<std::string> out;
  for (std::string o : overrides) {
    while (!o.empty() && o[0] == '+') o.erase(0, 1);
    const auto eq = o.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    const std::string key = o.substr(0, eq);
    if (key == "seed" || std::find(exclude.begin(), exclude.end(), key) != exclude.end()) continue;
    out.push_back(o);
  }
  std::sort(out.begin(), out.end());
  return out;
}

json metric_values_to_json(const MetricValues& v) {
  json j = json::object();
  for (size_t i = 0; i < kMetricKeys.size(); ++i) {
    j[kMetricKeys[i]] = v.at(i) ? json(*v.at(i)) : json(nullptr);
  }
  return j;
}

json dataset_metrics_to_json(const DatasetMetrics& m) {
  json classes = json::object();
  for (const auto& [name, v] : m.classes) classes[name] = metric_values_to_json(v);
  return json{{"classes", classes}, {"mean", metric_values_to_json(m.mean)}};
}

void validate_dataset_metrics_json(const json& j, const std::string& source) {
  const json& schema = results_schema();
  // Validate against the shared definition, resolving its $refs inside the full schema.
  json wrapper = schema;
  wrapper.erase("required");
  wrapper.erase("properties");
  wrapper.erase("additionalProperties");
  wrapper["$ref"] = "#/$defs/dataset_metrics";
  wrapper.erase("type");
  throw_errors(schema_errors(wrapper, j), source);
}

DatasetMetrics dataset_metrics_from_json(const json& j, const std::string& source) {
  validate_dataset_metrics_json(j, source);
  DatasetMetrics m;
  for (auto it = j.at("classes").begin(); it != j.at("classes").end(); ++it) {
    m.classes[it.key()] = metric_values_from_json(it.value());
  }
  m.mean = metric_values_from_json(j.at("mean"));
  return m;
}

json to_json(const RunResult& r) {
  json j;
  j["schema"] = kResultsSchema;
  j["method"] = r.method;
  j["variant"] = r.variant;
  j["train_dataset"] = r.train_dataset ? json(*r.train_dataset) : json(nullptr);
  j["test_dataset"] = r.test_dataset;
  j["seed"] = r.seed;
  j["protocol"] = {{"eval_size", r.protocol.eval_size ? json(*r.protocol.eval_size) : json(nullptr)},
                   {"upsampling", r.protocol.upsampling},
                   {"smoothing_sigma", r.protocol.smoothing_sigma},
                   {"fpr_limit", r.protocol.fpr_limit},
                   {"pro_mode", pro_mode_name(r.protocol.pro_mode)}};
  j["digests"] = {{"config", r.digests.config},
                  {"weights", r.digests.weights ? json(*r.digests.weights) : json(nullptr)},
                  {"dataset", r.digests.dataset}};
  j["overrides"] = r.overrides;
  j["git_revision"] = r.git_revision;
  j["metrics"] = dataset_metrics_to_json(r.metrics);
  j["timings"] = r.timings;
  j["hardware"] = r.hardware;
  if (!r.tags.empty()) j["tags"] = r.tags;
  return j;
}

void validate_results_json(const json& j, const std::string& source) {
  throw_errors(schema_errors(results_schema(), j), source);
}

RunResult run_result_from_json(const json& j, const std::string& source) {
  validate_results_json(j, source);
  RunResult r;
  r.method = j.at("method").get<std::string>();
  r.variant = j.at("variant").get<std::vector<std::string>>();
  if (!j.at("train_dataset").is_null()) r.train_dataset = j.at("train_dataset").get<std::string>();
  r.test_dataset = j.at("test_dataset").get<std::string>();
  r.seed = static_cast<int64_t>(j.at("seed").get<double>());
  const json& p = j.at("protocol");
  r.protocol.eval_size = p.at("eval_size").is_null() ? std::nullopt
                                                     : std::optional<int64_t>(static_cast<int64_t>(p.at("eval_size").get<double>()));
  r.protocol.upsampling = p.at("upsampling").get<std::string>();
  r.protocol.smoothing_sigma = p.at("smoothing_sigma").get<double>();
  r.protocol.fpr_limit = p.at("fpr_limit").get<double>();
  r.protocol.pro_mode = parse_pro_mode(p.at("pro_mode").get<std::string>());
  const json& d = j.at("digests");
  r.digests.config = d.at("config").get<std::string>();
  if (!d.at("weights").is_null()) r.digests.weights = d.at("weights").get<std::string>();
  r.digests.dataset = d.at("dataset").get<std::string>();
  r.overrides = j.at("overrides").get<std::vector<std::string>>();
  r.git_revision = j.at("git_revision").get<std::string>();
  r.metrics = dataset_metrics_from_json(j.at("metrics"), source);
  r.timings = j.at("timings");
  r.hardware = j.at("hardware");
  if (j.contains("tags")) r.tags = j.at("tags");
  return r;
}

void write_run_result(const std::string& path, const RunResult& r) {
  const json j = to_json(r);
  validate_results_json(j, path);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    if (!out) throw Error(path + ": cannot write results file");
    out << j.dump(2) << "\n";
    if (!out) throw Error(path + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error(path + ": cannot rename " + tmp + " into place");
}

RunResult read_run_result(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open results file");
  std::stringstream ss;
  ss << in.rdbuf();
  json j;
  try {
    j = json::parse(ss.str());
  } catch (const json::exception& e) {
    throw Error(path + ": not valid JSON (" + std::string(e.what()) + ")");
  }
  return run_result_from_json(j, path);
}

}  // namespace zsad::results
