#pragma once
// Finding results files and published baselines for `zsad leaderboard`. Nothing here throws
// for a bad file: each one is reported (path + reason) and skipped.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "results/run_result.h"

namespace zsad::results {

struct CollectedRun {
  std::string path;
  RunResult result;
};

struct SkippedFile {
  std::string path;
  std::string reason;
};

struct Collection {
  std::vector<CollectedRun> runs;  // sorted by path
  std::vector<SkippedFile> skipped;
};

// Every results file below the roots: each *.json inside a directory named `results`, plus
// any other *.json whose "schema" starts with "zsad.results". Files that fail to parse or
// validate against zsad.results/1 land in `skipped`.
Collection collect_results(const std::vector<std::string>& roots);

// A published number (results/baselines/*.yaml; docs/results.md describes the format).
struct Baseline {
  std::string method;
  std::optional<std::string> train_dataset;
  std::string test_dataset;
  std::string metric;  // one of kMetricKeys
  double value = 0;    // fraction (the YAML holds percent, as papers print it)
  std::map<std::string, std::string> protocol;  // e.g. eval_size: 518, pro_mode: anomalyclip
  std::string source;
  std::string file;
};

std::vector<Baseline> load_baselines(const std::string& dir, std::vector<SkippedFile>& skipped);

// $ZSAD_BASELINES_DIR, else the repository's results/baselines (compiled in).
std::string default_baselines_dir();

}  // namespace zsad::results
