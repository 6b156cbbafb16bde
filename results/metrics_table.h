#pragma once
// The per-class text table `zsad metrics` prints (percent, one decimal, "–" = undefined).
#include <optional>
#include <string>

#include "results/metrics/metrics.h"

namespace zsad::results {

// 0.9534 -> "95.3"; undefined -> "–".
std::string format_percent(const std::optional<double>& fraction, int decimals = 1);

std::string format_class_table(const DatasetMetrics& m);

}  // namespace zsad::results
