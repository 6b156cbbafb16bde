#include "results/leaderboard/collect.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"

#ifndef ZSAD_BASELINES_DIR
#define ZSAD_BASELINES_DIR "results/baselines"
#endif

namespace zsad::results {

namespace fs = std::filesystem;
using nlohmann::json;

Collection collect_results(const std::vector<std::string>& roots) {
  Collection c;
  std::vector<fs::path> files;
  for (const std::string& root : roots) {
    std::error_code ec;
    if (!fs::is_directory(root, ec)) {
      c.skipped.push_back({root, "not a directory"});
      continue;
    }
    fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec), end;
    if (ec) {
      c.skipped.push_back({root, "cannot list: " + ec.message()});
      continue;
    }
    for (; it != end; it.increment(ec)) {
      if (ec) {
        c.skipped.push_back({it->path().string(), "cannot list: " + ec.message()});
        ec.clear();
        continue;
      }
      if (it->is_regular_file(ec) && it->path().extension() == ".json") files.push_back(it->path());
    }
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  for (const fs::path& p : files) {
    const std::string path = p.string();
    const bool in_results_dir = p.parent_path().filename() == "results";
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    json j;
    try {
      j = json::parse(ss.str());
    } catch (const json::exception& e) {
      if (in_results_dir) c.skipped.push_back({path, "not valid JSON (" + std::string(e.what()) + ")"});
      continue;
    }
    const bool claims_results = j.is_object() && j.contains("schema") && j["schema"].is_string() &&
                                j["schema"].get<std::string>().rfind("zsad.results", 0) == 0;
    if (!in_results_dir && !claims_results) continue;  // some other JSON (configs, metrics dumps)
    if (!j.is_object() || !j.contains("schema")) {
      c.skipped.push_back({path, "no \"schema\" key (expected \"zsad.results/1\")"});
      continue;
    }
    if (j["schema"] != kResultsSchema) {
      c.skipped.push_back({path, "schema is " + j["schema"].dump() + ", expected \"zsad.results/1\""});
      continue;
    }
    try {
      c.runs.push_back({path, run_result_from_json(j, path)});
    } catch (const std::exception& e) {
      std::string reason = e.what();
      if (reason.rfind(path + ": ", 0) == 0) reason = reason.substr(path.size() + 2);
      c.skipped.push_back({path, reason});
    }
  }
  return c;
}

std::string default_baselines_dir() {
  if (const char* d = std::getenv("ZSAD_BASELINES_DIR"); d && *d) return d;
  return ZSAD_BASELINES_DIR;
}

namespace {

std::map<std::string, std::string> read_protocol(const YAML::Node& n, const std::string& where) {
  std::map<std::string, std::string> out;
  if (!n) return out;
  if (!n.IsMap()) throw Error(where + ": 'protocol' must be a mapping");
  for (const auto& kv : n) out[kv.first.as<std::string>()] = kv.second.IsNull() ? "null" : kv.second.as<std::string>();
  return out;
}

Baseline make(const YAML::Node& e, const std::string& metric, const YAML::Node& value, const Baseline& defaults,
              const std::string& where) {
  Baseline b = defaults;
  if (!is_metric_key(metric)) throw Error(where + ": unknown metric '" + metric + "'");
  b.metric = metric;
  double v;
  try {
    v = value.as<double>();
  } catch (const YAML::Exception&) {
    throw Error(where + ": value of " + metric + " is not a number");
  }
  if (!std::isfinite(v) || v < 0 || v > 100) throw Error(where + ": value " + std::to_string(v) + " of " + metric + " is not a percentage in [0, 100]");
  b.value = v / 100.0;
  (void)e;
  return b;
}

}  // namespace

std::vector<Baseline> load_baselines(const std::string& dir, std::vector<SkippedFile>& skipped) {
  std::vector<Baseline> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    skipped.push_back({dir, "baselines directory not found"});
    return out;
  }
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".yaml" || e.path().extension() == ".yml") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& p : files) {
    const std::string path = p.string();
    std::vector<Baseline> mine;
    try {
      YAML::Node root = YAML::LoadFile(path);
      if (!root.IsMap()) throw Error("top level must be a mapping with 'source' and 'entries'");
      Baseline defaults;
      defaults.file = path;
      if (!root["source"]) throw Error("missing 'source'");
      defaults.source = root["source"].as<std::string>();
      defaults.protocol = read_protocol(root["protocol"], "protocol");
      const YAML::Node entries = root["entries"];
      if (!entries || !entries.IsSequence()) throw Error("'entries' must be a list");
      for (size_t i = 0; i < entries.size(); ++i) {
        const YAML::Node e = entries[i];
        const std::string where = "entries[" + std::to_string(i) + "]";
        if (!e.IsMap()) throw Error(where + ": must be a mapping");
        Baseline d = defaults;
        if (!e["method"] || !e["test_dataset"]) throw Error(where + ": needs 'method' and 'test_dataset'");
        d.method = e["method"].as<std::string>();
        d.test_dataset = e["test_dataset"].as<std::string>();
        if (e["train_dataset"] && !e["train_dataset"].IsNull()) d.train_dataset = e["train_dataset"].as<std::string>();
        if (e["source"]) d.source = e["source"].as<std::string>();
        for (const auto& [k, v] : read_protocol(e["protocol"], where + ".protocol")) d.protocol[k] = v;
        if (e["values"]) {
          if (!e["values"].IsMap()) throw Error(where + ": 'values' must map metric -> percent");
          for (const auto& kv : e["values"]) mine.push_back(make(e, kv.first.as<std::string>(), kv.second, d, where));
        } else if (e["metric"] && e["value"]) {
          mine.push_back(make(e, e["metric"].as<std::string>(), e["value"], d, where));
        } else {
          throw Error(where + ": needs 'metric' + 'value' or a 'values' mapping");
        }
      }
    } catch (const YAML::Exception& e) {
      skipped.push_back({path, std::string("not valid YAML: ") + e.what()});
      continue;
    } catch (const Error& e) {
      skipped.push_back({path, e.what()});
      continue;
    }
    out.insert(out.end(), mine.begin(), mine.end());
  }
  return out;
}

}  // namespace zsad::results
