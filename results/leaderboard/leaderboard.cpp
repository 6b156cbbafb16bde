#include "results/leaderboard/leaderboard.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "common/error.h"
#include "results/metrics_table.h"

namespace zsad::results {

namespace {

std::string protocol_string(const Protocol& p) {
  std::ostringstream s;
  s << "eval_size=" << (p.eval_size ? std::to_string(*p.eval_size) : "original") << ", upsampling=" << p.upsampling
    << ", smoothing_sigma=" << p.smoothing_sigma << ", fpr_limit=" << p.fpr_limit
    << ", pro_mode=" << pro_mode_name(p.pro_mode);
  return s.str();
}

std::string number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// The value of one group-by key for a run.
std::string key_value(const RunResult& r, const std::string& key) {
  if (key == "method") return r.method;
  if (key == "variant") {
    std::string s;
    for (const auto& v : r.variant) s += (s.empty() ? "" : ", ") + v;
    return s;
  }
  if (key == "train_dataset") return r.train_dataset.value_or("");
  if (key == "protocol") return protocol_string(r.protocol);
  if (key == "eval_size") return r.protocol.eval_size ? std::to_string(*r.protocol.eval_size) : "original";
  if (key == "upsampling") return r.protocol.upsampling;
  if (key == "smoothing_sigma") return number(r.protocol.smoothing_sigma);
  if (key == "fpr_limit") return number(r.protocol.fpr_limit);
  if (key == "pro_mode") return pro_mode_name(r.protocol.pro_mode);
  if (key == "git_revision") return r.git_revision;
  if (key.rfind("tags.", 0) == 0) {
    const std::string t = key.substr(5);
    if (!r.tags.contains(t)) return "";
    return r.tags[t].is_string() ? r.tags[t].get<std::string>() : r.tags[t].dump();
  }
  for (const auto& v : r.variant) {
    if (v.rfind(key + "=", 0) == 0) return v.substr(key.size() + 1);
  }
  return "";
}

std::string row_label(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string head, rest;
  for (const auto& [k, v] : kv) {
    if (k == "method") {
      head = v;
    } else if (!v.empty()) {
      std::string part = k == "variant" ? v : k == "train_dataset" ? "train: " + v : k + "=" + v;
      rest += (rest.empty() ? "" : "; ") + part;
    }
  }
  if (head.empty()) return rest.empty() ? "(all runs)" : rest;
  return rest.empty() ? head : head + " (" + rest + ")";
}

struct Samples {
  std::map<int64_t, double> by_seed;  // defined values only
  std::set<std::string> protocols;
};

Cell summarise(const Samples& s) {
  Cell c;
  c.n = static_cast<int>(s.by_seed.size());
  if (c.n == 0) return c;
  double sum = 0;
  for (const auto& [seed, v] : s.by_seed) sum += v;
  const double mean = sum / c.n;
  c.mean = mean;
  if (c.n >= 2) {
    double ss = 0;
    for (const auto& [seed, v] : s.by_seed) ss += (v - mean) * (v - mean);
    c.std = std::sqrt(ss / (c.n - 1));
  }
  if (s.protocols.size() > 1) c.marks.push_back(kMarkMixed);
  return c;
}

// The Mean column of one metric for one row: mean over the datasets where the row is defined;
// std over seeds of the per-seed dataset means when every seed covers all those datasets.
Cell mean_over_datasets(const std::vector<const Samples*>& cells, size_t datasets_in_table) {
  Cell c;
  std::vector<const Samples*> defined;
  for (const Samples* s : cells) {
    if (s && !s->by_seed.empty()) defined.push_back(s);
  }
  if (defined.empty()) return c;
  double sum = 0;
  for (const Samples* s : defined) sum += *summarise(*s).mean;
  c.mean = sum / double(defined.size());
  std::set<int64_t> seeds;
  for (const auto& [seed, v] : defined[0]->by_seed) seeds.insert(seed);
  bool complete = true;
  for (const Samples* s : defined) {
    if (s->by_seed.size() != seeds.size()) complete = false;
    for (int64_t seed : seeds) complete = complete && s->by_seed.count(seed);
  }
  if (complete) {
    Samples per_seed;
    for (int64_t seed : seeds) {
      double m = 0;
      for (const Samples* s : defined) m += s->by_seed.at(seed);
      per_seed.by_seed[seed] = m / double(defined.size());
    }
    Cell k = summarise(per_seed);
    c.mean = k.mean;
    c.std = k.std;
    c.n = k.n;
  } else {
    c.n = 1;
  }
  if (defined.size() < datasets_in_table) c.marks.push_back(kMarkPartial);
  return c;
}

void validate_options(const LeaderboardOptions& o) {
  for (const auto& k : o.group_by) {
    if (k == "seed") throw UsageError("--group-by: seed is never a grouping key (seeds are aggregated into mean ± std)");
    if (k == "test_dataset") throw UsageError("--group-by: test_dataset is the column axis, not a row key");
    if (k.empty()) throw UsageError("--group-by: empty key");
  }
  if (o.metrics.empty()) throw UsageError("--metrics: at least one metric");
  for (const auto& m : o.metrics) {
    if (!is_metric_key(m)) {
      throw UsageError("--metrics: unknown metric '" + m + "' (image_auroc, image_ap, image_f1_max, pixel_auroc, "
                       "pixel_ap, pixel_f1_max, pixel_aupro)");
    }
  }
}

// Baseline protocol keys that matter for a metric.
bool protocol_key_applies(const std::string& key, const std::string& metric) {
  const bool pixel = metric.rfind("pixel_", 0) == 0;
  if (key == "pro_mode" || key == "fpr_limit") return metric == "pixel_aupro";
  if (key == "eval_size" || key == "upsampling" || key == "smoothing_sigma") return pixel;
  return true;
}

std::string run_protocol_value(const Protocol& p, const std::string& key) {
  if (key == "eval_size") return p.eval_size ? std::to_string(*p.eval_size) : "original";
  if (key == "upsampling") return p.upsampling;
  if (key == "smoothing_sigma") return number(p.smoothing_sigma);
  if (key == "fpr_limit") return number(p.fpr_limit);
  if (key == "pro_mode") return pro_mode_name(p.pro_mode);
  return "";
}

bool same_protocol_value(const std::string& key, const std::string& published, const std::string& ours) {
  if (key == "smoothing_sigma" || key == "fpr_limit" || key == "eval_size") {
    char* end = nullptr;
    const double a = std::strtod(published.c_str(), &end);
    if (end && *end == '\0' && !published.empty()) {
      char* end2 = nullptr;
      const double b = std::strtod(ours.c_str(), &end2);
      if (end2 && *end2 == '\0' && !ours.empty()) return a == b;
    }
  }
  return published == ours;
}

}  // namespace

std::string metric_label(const std::string& key) {
  static const std::map<std::string, std::string> labels = {
      {"image_auroc", "I-AUROC"}, {"image_ap", "I-AP"},     {"image_f1_max", "I-F1max"}, {"pixel_auroc", "P-AUROC"},
      {"pixel_ap", "P-AP"},       {"pixel_f1_max", "P-F1max"}, {"pixel_aupro", "AUPRO"}};
  auto it = labels.find(key);
  return it == labels.end() ? key : it->second;
}

void mark_best(Table& t) {
  for (size_t c = 0; c < t.columns.size(); ++c) {
    std::optional<std::string> best_text;
    double best = -1;
    for (auto& r : t.rows) {
      Cell& cell = r.cells[c];
      cell.best = false;
      const bool eligible = cell.mean && std::find(cell.marks.begin(), cell.marks.end(), kMarkProtocol) == cell.marks.end() &&
                            std::find(cell.marks.begin(), cell.marks.end(), kMarkPartial) == cell.marks.end();
      if (!eligible) continue;
      const double shown = std::stod(format_percent(cell.mean));
      best = std::max(best, shown);
    }
    if (best < 0) continue;
    for (auto& r : t.rows) {
      Cell& cell = r.cells[c];
      const bool eligible = cell.mean && std::find(cell.marks.begin(), cell.marks.end(), kMarkProtocol) == cell.marks.end() &&
                            std::find(cell.marks.begin(), cell.marks.end(), kMarkPartial) == cell.marks.end();
      if (eligible && std::stod(format_percent(cell.mean)) == best) cell.best = true;
    }
    (void)best_text;
  }
}

Leaderboard build_leaderboard(const std::vector<CollectedRun>& runs, const std::vector<Baseline>& baselines,
                              const LeaderboardOptions& options) {
  validate_options(options);
  Leaderboard lb;

  // Row identity -> label; samples per (row, dataset, metric) and per (row, dataset, class, metric).
  std::map<std::string, std::string> labels;
  std::map<std::string, std::map<std::string, std::map<std::string, Samples>>> main;  // row, dataset, metric
  std::map<std::string, std::map<std::string, std::map<std::string, std::map<std::string, Samples>>>> per_class;  // dataset, metric, row, class
  std::map<std::string, std::set<std::string>> classes_of;  // dataset -> classes
  std::map<std::string, std::set<std::string>> protocols_of_dataset;
  std::map<std::string, std::vector<const Protocol*>> run_protocols;  // dataset -> protocols of own runs
  std::set<std::string> datasets;
  std::map<std::string, std::string> seen;  // row|dataset|seed -> path

  for (const CollectedRun& cr : runs) {
    const RunResult& r = cr.result;
    std::vector<std::pair<std::string, std::string>> kv;
    std::string id;
    for (const auto& k : options.group_by) {
      kv.emplace_back(k, key_value(r, k));
      id += k + "\x1f" + kv.back().second + "\x1e";
    }
    labels[id] = row_label(kv);
    const std::string dup = id + "|" + r.test_dataset + "|" + std::to_string(r.seed);
    if (auto it = seen.find(dup); it != seen.end()) {
      lb.notes.push_back("duplicate seed " + std::to_string(r.seed) + " for " + labels[id] + " on " + r.test_dataset +
                         ": " + cr.path + " ignored (kept " + it->second + ")");
      continue;
    }
    seen[dup] = cr.path;
    datasets.insert(r.test_dataset);
    run_protocols[r.test_dataset].push_back(&r.protocol);
    const std::string proto = protocol_string(r.protocol);
    for (const auto& m : options.metrics) {
      Samples& s = main[id][r.test_dataset][m];
      s.protocols.insert(proto);
      if (auto v = r.metrics.mean[m]) s.by_seed[r.seed] = *v;
      for (const auto& [cls, values] : r.metrics.classes) {
        classes_of[r.test_dataset].insert(cls);
        Samples& cs = per_class[r.test_dataset][m][id][cls];
        cs.protocols.insert(proto);
        if (auto v = values[m]) cs.by_seed[r.seed] = *v;
      }
    }
  }

  // Published rows: (method, train_dataset, source) -> dataset -> metric -> baseline.
  // A published row is one method in one source, as the paper prints it; its per-dataset
  // training sets go into the label (zero-shot tables train on MVTec and test MVTec from VisA).
  struct PubRow {
    std::string label, source;
    std::map<std::string, std::map<std::string, const Baseline*>> values;
    std::map<std::string, std::set<std::string>> trained_on;  // train set -> test sets
  };
  std::map<std::string, PubRow> pub;
  for (const Baseline& b : baselines) {
    const std::string id = b.method + "\x1f" + b.source;
    PubRow& p = pub[id];
    p.label = b.method;
    p.source = b.source;
    p.values[b.test_dataset][b.metric] = &b;
    p.trained_on[b.train_dataset.value_or("")].insert(b.test_dataset);
    // Baselines are extra rows: they fill the columns of datasets we evaluated, never add columns.
  }
  for (auto& [id, p] : pub) {
    std::string train;
    if (p.trained_on.size() == 1 && !p.trained_on.begin()->first.empty()) {
      train = "train: " + p.trained_on.begin()->first;
    } else if (p.trained_on.size() > 1) {
      // Name the exceptions, then the training set used for most test sets.
      std::string majority;
      size_t most = 0;
      for (const auto& [set, tests] : p.trained_on) {
        if (tests.size() > most) {
          most = tests.size();
          majority = set;
        }
      }
      for (const auto& [set, tests] : p.trained_on) {
        if (set == majority || set.empty()) continue;
        std::string list;
        for (const auto& t : tests) list += (list.empty() ? "" : ",") + t;
        train += (train.empty() ? "train " : "; ") + set + "→" + list;
      }
      if (!majority.empty()) train += "; else " + majority;
    }
    if (!train.empty()) p.label += " (" + train + ")";
  }

  // Columns: datasets x metrics where anything is defined, then the Mean group.
  Table& t = lb.main;
  t.id = "main";
  t.title = "Main table";
  std::map<std::string, size_t> datasets_with_metric;
  for (const auto& d : datasets) {
    for (const auto& m : options.metrics) {
      bool any = false;
      for (auto& [id, per_ds] : main) {
        auto it = per_ds.find(d);
        any = any || (it != per_ds.end() && !it->second[m].by_seed.empty());
      }
      for (auto& [id, p] : pub) any = any || (p.values.count(d) && p.values[d].count(m));
      if (any) {
        t.columns.push_back({d, m});
        ++datasets_with_metric[m];
      }
    }
  }
  for (const auto& m : options.metrics) {
    if (datasets_with_metric[m] > 0) t.columns.push_back({"Mean", m});
  }

  bool any_partial = false, any_mixed = false, any_protocol = false;
  for (const auto& [id, per_ds] : main) {
    Row row;
    row.label = labels[id];
    std::map<std::string, std::vector<const Samples*>> for_mean;
    for (const Column& col : t.columns) {
      if (col.group == "Mean") {
        Cell c = mean_over_datasets(for_mean[col.metric], datasets_with_metric[col.metric]);
        any_partial = any_partial || std::count(c.marks.begin(), c.marks.end(), kMarkPartial);
        row.cells.push_back(c);
        continue;
      }
      const Samples* s = nullptr;
      if (auto it = per_ds.find(col.group); it != per_ds.end()) s = &it->second.at(col.metric);
      for_mean[col.metric].push_back(s);
      Cell c = s ? summarise(*s) : Cell{};
      any_mixed = any_mixed || std::count(c.marks.begin(), c.marks.end(), kMarkMixed);
      row.cells.push_back(c);
    }
    for (const Cell& c : row.cells) row.seeds = std::max(row.seeds, c.n);
    t.rows.push_back(std::move(row));
  }
  std::sort(t.rows.begin(), t.rows.end(), [](const Row& a, const Row& b) { return a.label < b.label; });

  std::set<std::string> protocol_notes;
  for (auto& [id, p] : pub) {
    Row row;
    row.label = p.label;
    row.published = true;
    row.source = p.source;
    row.seeds = 1;
    std::map<std::string, std::vector<Samples>> for_mean;
    std::set<std::string> flagged_metrics;
    for (const Column& col : t.columns) {
      if (col.group == "Mean") {
        std::vector<const Samples*> ptrs;
        for (const auto& s : for_mean[col.metric]) ptrs.push_back(&s);
        Cell c = mean_over_datasets(ptrs, datasets_with_metric[col.metric]);
        c.n = c.mean ? 1 : 0;
        c.std.reset();
        if (c.mean && flagged_metrics.count(col.metric)) c.marks.insert(c.marks.begin(), kMarkProtocol);
        any_partial = any_partial || std::count(c.marks.begin(), c.marks.end(), kMarkPartial);
        row.cells.push_back(c);
        continue;
      }
      Cell c;
      auto dit = p.values.find(col.group);
      const Baseline* b = nullptr;
      if (dit != p.values.end()) {
        auto mit = dit->second.find(col.metric);
        if (mit != dit->second.end()) b = mit->second;
      }
      if (b) {
        c.mean = b->value;
        c.n = 1;
        Samples s;
        s.by_seed[0] = b->value;
        for_mean[col.metric].push_back(s);
        // Flag when any own run on this dataset used a different protocol for a key the
        // publication states (e.g. pro_mode anomalyclip vs exact, 518 px vs original size).
        std::vector<std::string> diffs;
        for (const auto& [key, value] : b->protocol) {
          if (!protocol_key_applies(key, col.metric)) continue;
          std::set<std::string> ours;
          for (const Protocol* pr : run_protocols[col.group]) {
            std::string o = run_protocol_value(*pr, key);
            if (o.empty()) continue;  // a key we do not record (e.g. "metric_note")
            if (!same_protocol_value(key, value, o)) ours.insert(o);
          }
          if (!ours.empty()) {
            std::string list;
            for (const auto& o : ours) list += (list.empty() ? "" : "/") + o;
            diffs.push_back(key + " " + value + " (ours: " + list + ")");
          }
        }
        if (!diffs.empty()) {
          c.marks.push_back(kMarkProtocol);
          flagged_metrics.insert(col.metric);
          any_protocol = true;
          std::string note = std::string(kMarkProtocol) + " " + p.label + ", " + col.group + " " + metric_label(col.metric) + ": published with ";
          for (size_t i = 0; i < diffs.size(); ++i) note += (i ? ", " : "") + diffs[i];
          protocol_notes.insert(note);
        }
      } else {
        for_mean[col.metric].push_back(Samples{});
      }
      row.cells.push_back(c);
    }
    t.rows.push_back(std::move(row));
  }
  mark_best(t);

  if (!pub.empty()) lb.notes.insert(lb.notes.begin(), "Rows marked published are numbers copied from papers/READMEs (source given); they were not re-run.");
  if (any_protocol) {
    lb.notes.push_back(std::string(kMarkProtocol) + " published under a protocol that differs from our runs on that dataset; not comparable, never bold:");
    for (const auto& n : protocol_notes) lb.notes.push_back("  " + n);
  }
  if (any_mixed) lb.notes.push_back(std::string(kMarkMixed) + " the seeds aggregated in this cell used different evaluation protocols.");
  if (any_partial) lb.notes.push_back(std::string(kMarkPartial) + " mean over fewer datasets than the table has; not comparable, never bold.");

  if (options.per_class) {
    for (const auto& [dataset, per_metric] : per_class) {
      for (const auto& m : options.metrics) {
        auto mit = per_metric.find(m);
        if (mit == per_metric.end()) continue;
        Table ct;
        ct.id = dataset + "/" + m;
        ct.title = dataset + " — " + metric_label(m) + " per class";
        ct.columns.push_back({"Mean", m});
        for (const auto& cls : classes_of[dataset]) ct.columns.push_back({cls, m});
        bool any = false;
        for (const auto& [id, cls_samples] : mit->second) {
          Row row;
          row.label = labels[id];
          const Samples& mean_samples = main[id][dataset][m];
          row.cells.push_back(summarise(mean_samples));
          for (const auto& cls : classes_of[dataset]) {
            auto cit = cls_samples.find(cls);
            row.cells.push_back(cit == cls_samples.end() ? Cell{} : summarise(cit->second));
          }
          for (const Cell& c : row.cells) {
            row.seeds = std::max(row.seeds, c.n);
            any = any || c.mean.has_value();
          }
          ct.rows.push_back(std::move(row));
        }
        if (!any) continue;
        std::sort(ct.rows.begin(), ct.rows.end(), [](const Row& a, const Row& b) { return a.label < b.label; });
        mark_best(ct);
        lb.per_class.push_back(std::move(ct));
      }
    }
  }
  return lb;
}

}  // namespace zsad::results
