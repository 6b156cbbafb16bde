// zsad metrics SCORES.h5: recompute exact metrics from a stored scores file.
#include <cstdio>
#include <fstream>
#include <iostream>

#include "common/error.h"
#include "launch/cli/args.h"
#include "launch/cli/command.h"
#include "results/metrics/dataset.h"
#include "results/metrics_table.h"
#include "results/run_result.h"
#include "results/scores_file.h"

namespace {

int run_metrics(const std::vector<std::string>& tokens) {
  zsad::cli::Args args(
      "zsad metrics SCORES.h5 [--json OUT] [--fpr-limit 0.3] [--pro-mode exact|anomalyclip] [--threads N]");
  args.positionals("SCORES.h5", 1, 1)
      .flag("json", "write {\"classes\": {...}, \"mean\": {...}} (fractions, null = undefined) to this file")
      .flag("fpr-limit", "AUPRO integration limit on the FPR axis, in (0, 1]", "0.3")
      .flag("pro-mode", "exact (MVTec AD algorithm) or anomalyclip (AnomalyCLIP's 200-threshold cal_pro_score)",
            "exact")
      .flag("threads", "worker threads (classes in parallel; a lone class sorts with all of them)", "2");
  args.parse(tokens);
  const std::string path = args.rest()[0];
  zsad::results::MetricOptions options;
  options.fpr_limit = args.get_double("fpr-limit");
  if (!(options.fpr_limit > 0.0 && options.fpr_limit <= 1.0)) {
    throw zsad::UsageError("--fpr-limit " + args.get("fpr-limit") + " is not in (0, 1]");
  }
  try {
    options.pro_mode = zsad::results::parse_pro_mode(args.get("pro-mode"));
  } catch (const zsad::Error& e) {
    throw zsad::UsageError(std::string("--pro-mode: ") + e.what());
  }
  options.threads = static_cast<int>(args.get_int("threads"));
  if (options.threads < 1) throw zsad::UsageError("--threads must be at least 1");

  zsad::results::ScoresReader reader(path);  // rejects malformed files with path + reason
  auto eval = zsad::results::evaluate_streaming(
      reader.classes(), [&](const std::string& c) { return reader.load(c); }, options);
  for (const auto& [cls, warnings] : eval.warnings) {
    for (const auto& w : warnings) std::cerr << "warning: " << path << ": " << cls << ": " << w << "\n";
  }
  std::cout << zsad::results::format_class_table(eval.metrics);
  if (auto out = args.get_opt("json")) {
    const nlohmann::json j = zsad::results::dataset_metrics_to_json(eval.metrics);
    zsad::results::validate_dataset_metrics_json(j, *out);
    const std::string tmp = *out + ".tmp";
    {
      std::ofstream f(tmp);
      if (!f) throw zsad::Error(*out + ": cannot write");
      f << j.dump(2) << "\n";
      if (!f) throw zsad::Error(*out + ": write failed");
    }
    if (std::rename(tmp.c_str(), out->c_str()) != 0) throw zsad::Error(*out + ": cannot rename " + tmp + " into place");
  }
  return 0;
}

}  // namespace

ZSAD_COMMAND("metrics", "recompute exact metrics (AUROC, AP, F1-max, AUPRO) from a scores file", run_metrics);
