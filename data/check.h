#pragma once
// `zsad data check`: validate a dataset index against the files on disk.
#include <string>
#include <vector>

#include "data/index.h"

namespace zsad::data {

struct CheckIssue {
  std::string kind;    // missing-image, unreadable-image, missing-mask, unreadable-mask,
                       // mask-size-mismatch, anomaly-without-mask, empty-class
  std::string split;
  std::string cls;
  std::string path;    // resolved path of the offending file ("" for class-level issues)
  std::string detail;  // decoder message, sizes, ...
};

struct ClassSummary {
  std::string split, cls;
  size_t normal = 0, anomalous = 0, masks = 0, issues = 0;
};

struct CheckReport {
  std::vector<CheckIssue> issues;
  std::vector<ClassSummary> classes;
  bool clean() const { return issues.empty(); }
};

// Decodes every image and mask (threads workers); masks must match their image's size.
// Anomalous samples need a mask when meta.capabilities.pixel_metrics is set.
CheckReport check_dataset(const Meta& meta, const std::string& root, int threads = 2);

// Human-readable: one line per issue, then a table per split/class, then a verdict line.
std::string format_report(const CheckReport& report);

}  // namespace zsad::data
