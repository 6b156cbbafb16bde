#pragma once
// Everything one class contributes to its metrics, in the compact form the metrics need:
// image scores + labels, and per pixel one 64-bit record (score key | ground-truth region id,
// 0 = normal pixel). Ground-truth regions (8-connected) are labelled per image as images are
// added, so an accumulator never holds maps or masks, only 8 bytes per pixel.
//
// Distributed evaluation: each rank fills accumulators for its shard of images, serialises
// them, and the evaluation loop sends each class's bytes to the one rank that owns the class,
// which merges them and computes. Results do not depend on how images were sharded.
#include <cstdint>
#include <string>
#include <vector>

#include "results/metrics/metrics.h"

namespace zsad::results {

class ClassAccumulator {
 public:
  ClassAccumulator() = default;

  // Pre-sizes storage so that adding `pixels` more pixels does not reallocate (keeps the
  // peak at 8 bytes per pixel instead of a vector's growth factor).
  void reserve(int64_t images, int64_t pixels);

  // An image-only sample (classes without masks, e.g. HeadCT). Labels must be 0 or 1.
  void add_image(float image_score, uint8_t label);
  // An image with its anomaly map and 0/1 ground-truth mask, both h*w row-major.
  // Throws zsad::Error on NaN/infinite scores, mask values other than 0/1, or when mixing image-only
  // and pixel samples in one class.
  void add_image(float image_score, uint8_t label, const float* map, const uint8_t* mask, int64_t h, int64_t w);

  void merge(const ClassAccumulator& other);

  // Little-endian binary blob (magic "ZSADACC1"); deserialize validates sizes and throws
  // zsad::Error naming `what` when the bytes are malformed.
  std::string serialize() const;
  static ClassAccumulator deserialize(const std::string& bytes, const std::string& what = "accumulator");

  // Sorts the stored records in place (the accumulator stays valid, merge still works).
  ClassMetrics compute(const MetricOptions& options);

  int64_t images() const { return static_cast<int64_t>(image_scores_.size()); }
  int64_t pixels() const { return static_cast<int64_t>(records_.size()); }
  bool has_pixels() const { return kind_ == Kind::kPixels; }
  uint64_t regions() const { return region_weight_.size(); }

 private:
  enum class Kind : uint8_t { kEmpty = 0, kImageOnly = 1, kPixels = 2 };
  void set_kind(Kind k);

  Kind kind_ = Kind::kEmpty;
  std::vector<float> image_scores_;
  std::vector<uint8_t> labels_;
  std::vector<uint64_t> records_;
  std::vector<double> region_weight_;  // 1/|C_k|
  uint64_t normal_pixels_ = 0;
  float min_score_ = 0, max_score_ = 0;
  std::vector<uint32_t> scratch_labels_, scratch_sizes_;
};

}  // namespace zsad::results
