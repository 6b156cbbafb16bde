#pragma once
// Metric values of one class / one dataset, as `zsad metrics` prints them and results files
// store them. Values are fractions in [0,1]; an undefined metric (one label only, no masks,
// AnomalyCLIP's PRO yielding NaN) is an empty optional -> JSON null -> "–" in tables.
#include <array>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace zsad::results {

// The metric keys, in table order.
inline constexpr std::array<const char*, 7> kMetricKeys = {
    "image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro"};

bool is_metric_key(const std::string& key);

// How pixel_aupro is computed (docs/results.md, ../shared/specs/evaluation.md §2.2).
enum class ProMode {
  kExact,        // MVTec AD reference: one curve point per distinct score, interpolated at the limit
  kAnomalyClip,  // AnomalyCLIP/APRIL-GAN cal_pro_score: 200 score thresholds, FPR min-max stretched
};
std::string pro_mode_name(ProMode m);
ProMode parse_pro_mode(const std::string& s);  // "exact" | "anomalyclip"; throws zsad::Error

struct MetricOptions {
  double fpr_limit = 0.3;  // AUPRO integration limit, in (0, 1]
  ProMode pro_mode = ProMode::kExact;
  int threads = 1;  // worker threads for sorting / classes
};

struct MetricValues {
  std::array<std::optional<double>, kMetricKeys.size()> values;

  std::optional<double>& operator[](const std::string& key);
  const std::optional<double>& operator[](const std::string& key) const;
  std::optional<double>& at(size_t i) { return values[i]; }
  const std::optional<double>& at(size_t i) const { return values[i]; }
};

struct ClassMetrics {
  MetricValues metrics;
  std::vector<std::string> warnings;  // e.g. why an anomalyclip AUPRO is undefined
};

// {"classes": {...}, "mean": {...}}: the mean of each metric over the classes where it is defined.
struct DatasetMetrics {
  std::map<std::string, MetricValues> classes;
  MetricValues mean;
};

// Unweighted mean over the classes where a metric is defined (undefined when none is).
MetricValues class_mean(const std::map<std::string, MetricValues>& classes);

}  // namespace zsad::results
