#pragma once
// One descending walk over sorted score records yields every threshold metric of a class:
// ROC AUC (trapezoid, ties grouped), AP (step sum), F1-max over the PR-curve points and,
// when region weights are given, the AUPRO (exact MVTec or AnomalyCLIP-compatible).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "results/metrics/metrics.h"

namespace zsad::results {

struct CurveInput {
  const uint64_t* sorted = nullptr;  // records sorted ascending by score (score_sort.h)
  size_t n = 0;
  uint64_t positives = 0;  // records with payload != 0
  uint64_t negatives = 0;
  // Per ground-truth region k (payload k+1): 1/|C_k|. Null: no AUPRO.
  const std::vector<double>* region_weight = nullptr;
  float min_score = 0, max_score = 0;  // needed by ProMode::kAnomalyClip
};

struct CurveMetrics {
  std::optional<double> auroc, ap, f1_max, aupro;
  std::vector<std::string> warnings;
};

CurveMetrics evaluate_curve(const CurveInput& in, const MetricOptions& options);

// AnomalyCLIP's thresholds `np.arange(min, max, (max-min)/200)` with numpy 1.24 semantics
// (float32 step and length, float64 values) as the float32 values `amaps > th` compares with.
// Empty when numpy would raise (step 0).
std::vector<float> anomalyclip_thresholds(float min_score, float max_score, int steps = 200);

}  // namespace zsad::results
