#include "results/metrics/metrics.h"

#include "common/error.h"

namespace zsad::results {
namespace {
size_t key_index(const std::string& key) {
  for (size_t i = 0; i < kMetricKeys.size(); ++i) {
    if (key == kMetricKeys[i]) return i;
  }
  throw Error("unknown metric key '" + key + "' (expected one of image_auroc, image_ap, image_f1_max, "
              "pixel_auroc, pixel_ap, pixel_f1_max, pixel_aupro)");
}
}  // namespace

bool is_metric_key(const std::string& key) {
  for (const char* k : kMetricKeys) {
    if (key == k) return true;
  }
  return false;
}

std::string pro_mode_name(ProMode m) { return m == ProMode::kExact ? "exact" : "anomalyclip"; }

ProMode parse_pro_mode(const std::string& s) {
  if (s == "exact") return ProMode::kExact;
  if (s == "anomalyclip") return ProMode::kAnomalyClip;
  throw Error("pro_mode '" + s + "' is not one of: exact, anomalyclip");
}

std::optional<double>& MetricValues::operator[](const std::string& key) { return values[key_index(key)]; }
const std::optional<double>& MetricValues::operator[](const std::string& key) const {
  return values[key_index(key)];
}

MetricValues class_mean(const std::map<std::string, MetricValues>& classes) {
  MetricValues mean;
  for (size_t i = 0; i < kMetricKeys.size(); ++i) {
    double sum = 0;
    int n = 0;
    for (const auto& [name, v] : classes) {
      if (v.at(i)) {
        sum += *v.at(i);
        ++n;
      }
    }
    if (n > 0) mean.at(i) = sum / n;
  }
  return mean;
}

}  // namespace zsad::results
