#pragma once
// Metrics of a whole test dataset: classes computed in parallel, then the class mean.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "results/metrics/accumulator.h"
#include "results/metrics/metrics.h"

namespace zsad::results {

struct DatasetEvaluation {
  DatasetMetrics metrics;
  std::map<std::string, std::vector<std::string>> warnings;  // per class
};

// Computes (and consumes: they are moved out) every accumulator; up to options.threads classes run at once, and a class running
// alone gets the remaining threads for its sort.
DatasetEvaluation evaluate_classes(std::map<std::string, ClassAccumulator>& classes, const MetricOptions& options);

// Streaming form for inputs too large to hold at once: `load(name)` fills one class's
// accumulator (called under a lock, so it may use a non-thread-safe reader such as HDF5);
// at most options.threads classes are in memory at a time.
DatasetEvaluation evaluate_streaming(const std::vector<std::string>& class_names,
                                     const std::function<ClassAccumulator(const std::string&)>& load,
                                     const MetricOptions& options);

}  // namespace zsad::results
