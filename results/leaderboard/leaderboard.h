#pragma once
// Aggregation of results files into the tables papers publish: a main table (rows =
// configurations, columns = test dataset x metric + a mean over datasets; mean ± sample std
// over seeds with n), per-class tables per dataset, and published baselines as extra rows.
// Rendering to Markdown/CSV/LaTeX/HTML is in render.h; this file only computes.
#include <optional>
#include <string>
#include <vector>

#include "results/leaderboard/collect.h"

namespace zsad::results {

struct LeaderboardOptions {
  // Row identity (seed is never a key). Keys: method, variant, train_dataset, protocol,
  // eval_size, upsampling, smoothing_sigma, fpr_limit, pro_mode, git_revision, tags.<name>,
  // or an override key whose value is looked up in `variant` ("lr" -> "lr=0.001").
  std::vector<std::string> group_by = {"method", "variant", "train_dataset"};
  std::vector<std::string> metrics = {"image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "pixel_aupro"};
  bool per_class = true;
};

// Marks attached to cells; render.h prints them with footnotes.
inline constexpr const char* kMarkProtocol = "†";  // published under a different protocol
inline constexpr const char* kMarkMixed = "‡";     // seeds of this cell used different protocols
inline constexpr const char* kMarkPartial = "*";   // mean over fewer datasets than the table has

struct Cell {
  std::optional<double> mean;  // fraction
  std::optional<double> std;   // sample std (ddof=1) over seeds, when n >= 2
  int n = 0;
  bool best = false;
  std::vector<std::string> marks;
};

struct Row {
  std::string label;
  bool published = false;
  std::string source;  // published rows: where the numbers come from
  int seeds = 0;       // max n over the row's cells
  std::vector<Cell> cells;
};

struct Column {
  std::string group;   // test dataset, "Mean", or for per-class tables "Mean"/class name
  std::string metric;  // metric key
};

struct Table {
  std::string id;     // "main", "<dataset>/<metric>"
  std::string title;
  std::vector<Column> columns;
  std::vector<Row> rows;
};

struct Leaderboard {
  Table main;
  std::vector<Table> per_class;
  std::vector<std::string> notes;  // footnotes: marks, duplicates, protocol differences
};

// Throws zsad::UsageError for an invalid group key or metric.
Leaderboard build_leaderboard(const std::vector<CollectedRun>& runs, const std::vector<Baseline>& baselines,
                              const LeaderboardOptions& options);

// Short column labels: image_auroc -> "I-AUROC", pixel_aupro -> "AUPRO", ...
std::string metric_label(const std::string& key);

// Compares the rounded display value (percent, one decimal) so equal-looking values tie.
void mark_best(Table& t);

}  // namespace zsad::results
