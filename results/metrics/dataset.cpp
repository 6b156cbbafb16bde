#include "results/metrics/dataset.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

namespace zsad::results {

DatasetEvaluation evaluate_streaming(const std::vector<std::string>& class_names,
                                     const std::function<ClassAccumulator(const std::string&)>& load,
                                     const MetricOptions& options) {
  DatasetEvaluation out;
  const int threads = std::max(1, options.threads);
  const int workers = std::max(1, std::min<int>(threads, static_cast<int>(class_names.size())));
  MetricOptions per_class = options;
  per_class.threads = std::max(1, threads / workers);
  std::atomic<size_t> next{0};
  std::mutex load_mu, out_mu;
  std::exception_ptr error;
  auto worker = [&] {
    for (;;) {
      const size_t i = next++;
      if (i >= class_names.size()) return;
      try {
        ClassAccumulator acc;
        {
          std::lock_guard<std::mutex> lock(load_mu);
          if (error) return;
          acc = load(class_names[i]);
        }
        ClassMetrics m = acc.compute(per_class);
        std::lock_guard<std::mutex> lock(out_mu);
        out.metrics.classes[class_names[i]] = m.metrics;
        if (!m.warnings.empty()) out.warnings[class_names[i]] = std::move(m.warnings);
      } catch (...) {
        std::lock_guard<std::mutex> lock(load_mu);
        if (!error) error = std::current_exception();
        return;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < workers; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  out.metrics.mean = class_mean(out.metrics.classes);
  return out;
}

DatasetEvaluation evaluate_classes(std::map<std::string, ClassAccumulator>& classes, const MetricOptions& options) {
  std::vector<std::string> names;
  for (auto& [name, acc] : classes) names.push_back(name);
  // Accumulators are computed in place (no copy): hand out references through a moved shell.
  return evaluate_streaming(
      names, [&](const std::string& name) { return std::move(classes.at(name)); }, options);
}

}  // namespace zsad::results
