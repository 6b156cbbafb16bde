// zsad leaderboard DIR...: aggregate results files into paper tables.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common/error.h"
#include "launch/cli/args.h"
#include "launch/cli/command.h"
#include "results/leaderboard/collect.h"
#include "results/leaderboard/leaderboard.h"
#include "results/leaderboard/render.h"

namespace {

std::vector<std::string> split_keys(const std::vector<std::string>& tokens) {
  std::vector<std::string> out;
  for (const auto& t : tokens) {
    std::stringstream ss(t);
    std::string k;
    while (std::getline(ss, k, ',')) {
      if (!k.empty()) out.push_back(k);
    }
  }
  return out;
}

int run_leaderboard(const std::vector<std::string>& tokens) {
  zsad::cli::Args args(
      "zsad leaderboard DIR... [--format md|csv|tex|html] [--out FILE] [--group-by KEYS] [--metrics M...] "
      "[--baselines] [--baselines-dir DIR] [--no-per-class]");
  args.positionals("DIR", 1)
      .flag("format", "md, csv, tex (booktabs) or html (one self-contained file)", "md")
      .flag("out", "write here instead of stdout")
      .multi("group-by", "row keys, comma separated; put DIRs first (default method,variant,train_dataset; never seed)")
      .multi("metrics", "metric columns, comma separated (default image_auroc,image_ap,pixel_auroc,pixel_ap,pixel_aupro)")
      .toggle("baselines", "add published numbers from results/baselines/*.yaml as extra rows")
      .flag("baselines-dir", "directory of baseline YAML files (default: the repository's results/baselines)")
      .toggle("no-per-class", "only the main table");
  args.parse(tokens);

  zsad::results::TableFormat format;
  try {
    format = zsad::results::parse_table_format(args.get("format"));
  } catch (const zsad::Error& e) {
    throw zsad::UsageError(std::string("--format: ") + e.what());
  }
  zsad::results::LeaderboardOptions options;
  if (args.has("group-by")) options.group_by = split_keys(args.list("group-by"));
  if (args.has("metrics")) options.metrics = split_keys(args.list("metrics"));
  options.per_class = !args.on("no-per-class");

  zsad::results::Collection c = zsad::results::collect_results(args.rest());
  std::vector<zsad::results::Baseline> baselines;
  if (args.on("baselines") || args.has("baselines-dir")) {
    baselines = zsad::results::load_baselines(args.get_opt("baselines-dir").value_or(zsad::results::default_baselines_dir()),
                                              c.skipped);
  }
  for (const auto& s : c.skipped) std::cerr << "zsad leaderboard: skipped " << s.path << ": " << s.reason << "\n";
  if (c.runs.empty()) {
    std::string dirs;
    for (const auto& d : args.rest()) dirs += (dirs.empty() ? "" : ", ") + d;
    throw zsad::Error("no valid zsad.results/1 files below " + dirs);
  }
  const zsad::results::Leaderboard lb = zsad::results::build_leaderboard(c.runs, baselines, options);
  const std::string text = zsad::results::render(lb, format);
  if (auto out = args.get_opt("out")) {
    if (std::filesystem::is_directory(*out)) throw zsad::Error("--out '" + *out + "' is a directory; pass a file name");
    const std::string tmp = *out + ".tmp";
    {
      std::ofstream f(tmp, std::ios::binary);
      if (!f) throw zsad::Error(*out + ": cannot write");
      f << text;
      if (!f) throw zsad::Error(*out + ": write failed");
    }
    if (std::rename(tmp.c_str(), out->c_str()) != 0) {
      std::remove(tmp.c_str());
      throw zsad::Error(*out + ": cannot rename " + tmp + " into place");
    }
    std::cerr << "zsad leaderboard: " << c.runs.size() << " results files -> " << *out << "\n";
  } else {
    std::cout << text;
  }
  return 0;
}

}  // namespace

ZSAD_COMMAND("leaderboard", "aggregate results files into Markdown/CSV/LaTeX/HTML tables", run_leaderboard);
