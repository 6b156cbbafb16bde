#include "results/metrics/accumulator.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "common/error.h"
#include "results/metrics/components.h"
#include "results/metrics/curve.h"
#include "results/metrics/score_sort.h"

namespace zsad::results {

void ClassAccumulator::set_kind(Kind k) {
  if (kind_ == Kind::kEmpty) {
    kind_ = k;
  } else if (kind_ != k) {
    throw Error("a class mixes images with anomaly maps and images without (every image of a class needs "
                "both a map and a mask, or none has)");
  }
}

void ClassAccumulator::reserve(int64_t images, int64_t pixels) {
  image_scores_.reserve(image_scores_.size() + size_t(images));
  labels_.reserve(labels_.size() + size_t(images));
  if (pixels > 0) records_.reserve(records_.size() + size_t(pixels));
}

void ClassAccumulator::add_image(float image_score, uint8_t label) {
  if (!std::isfinite(image_score)) throw Error("image score is not finite (" + std::to_string(image_score) + ")");
  if (label > 1) throw Error("image label " + std::to_string(label) + " is not 0 or 1");
  set_kind(Kind::kImageOnly);
  image_scores_.push_back(image_score);
  labels_.push_back(label);
}

void ClassAccumulator::add_image(float image_score, uint8_t label, const float* map, const uint8_t* mask,
                                 int64_t h, int64_t w) {
  if (!std::isfinite(image_score)) throw Error("image score is not finite (" + std::to_string(image_score) + ")");
  if (label > 1) throw Error("image label " + std::to_string(label) + " is not 0 or 1");
  if (h <= 0 || w <= 0) throw Error("anomaly map has empty size " + std::to_string(h) + "x" + std::to_string(w));
  set_kind(Kind::kPixels);
  const int64_t n = h * w;
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  for (int64_t p = 0; p < n; ++p) {
    // sklearn rejects NaN and infinity too; an infinite score would also break the
    // AnomalyCLIP threshold grid.
    if (!std::isfinite(map[p])) {
      throw Error("anomaly map value " + std::to_string(map[p]) + " at pixel " + std::to_string(p) + " is not finite");
    }
    if (mask[p] > 1) {
      throw Error("mask value " + std::to_string(mask[p]) + " at pixel " + std::to_string(p) + " is not 0 or 1");
    }
    lo = std::min(lo, map[p]);
    hi = std::max(hi, map[p]);
  }
  const uint32_t count = label_components(mask, h, w, scratch_labels_, scratch_sizes_);
  if (region_weight_.size() + count > std::numeric_limits<uint32_t>::max() - 1) {
    throw Error("too many ground-truth regions in one class (more than 2^32-2)");
  }
  const uint32_t offset = static_cast<uint32_t>(region_weight_.size());
  for (uint32_t s : scratch_sizes_) region_weight_.push_back(1.0 / double(s));
  const size_t base = records_.size();
  records_.resize(base + size_t(n));
  uint64_t* out = records_.data() + base;
  uint64_t normal = 0;
  for (int64_t p = 0; p < n; ++p) {
    const uint32_t region = scratch_labels_[p];
    normal += region == 0;
    out[p] = make_record(map[p], region ? region + offset : 0);
  }
  if (base == 0) {
    min_score_ = lo;
    max_score_ = hi;
  } else {
    min_score_ = std::min(min_score_, lo);
    max_score_ = std::max(max_score_, hi);
  }
  normal_pixels_ += normal;
  image_scores_.push_back(image_score);
  labels_.push_back(label);
}

void ClassAccumulator::merge(const ClassAccumulator& other) {
  if (other.kind_ == Kind::kEmpty) return;
  set_kind(other.kind_);
  image_scores_.insert(image_scores_.end(), other.image_scores_.begin(), other.image_scores_.end());
  labels_.insert(labels_.end(), other.labels_.begin(), other.labels_.end());
  if (other.kind_ != Kind::kPixels) return;
  if (region_weight_.size() + other.region_weight_.size() > std::numeric_limits<uint32_t>::max() - 1) {
    throw Error("too many ground-truth regions in one class (more than 2^32-2)");
  }
  const bool first = records_.empty();
  const uint32_t offset = static_cast<uint32_t>(region_weight_.size());
  region_weight_.insert(region_weight_.end(), other.region_weight_.begin(), other.region_weight_.end());
  records_.reserve(records_.size() + other.records_.size());
  for (uint64_t r : other.records_) {
    const uint32_t payload = uint32_t(r);
    records_.push_back(payload ? r + offset : r);
  }
  normal_pixels_ += other.normal_pixels_;
  min_score_ = first ? other.min_score_ : std::min(min_score_, other.min_score_);
  max_score_ = first ? other.max_score_ : std::max(max_score_, other.max_score_);
}

namespace {
constexpr char kMagic[8] = {'Z', 'S', 'A', 'D', 'A', 'C', 'C', '1'};

template <typename T>
void put(std::string& s, const T& v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
template <typename T>
void put_vec(std::string& s, const std::vector<T>& v) {
  put<uint64_t>(s, v.size());
  s.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

struct Reader {
  const std::string& s;
  size_t pos;
  const std::string& what;
  template <typename T>
  T get() {
    if (s.size() - pos < sizeof(T)) throw Error(what + ": truncated (needs " + std::to_string(sizeof(T)) + " more bytes at offset " + std::to_string(pos) + ")");
    T v;
    std::memcpy(&v, s.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  template <typename T>
  void get_vec(std::vector<T>& v) {
    const uint64_t n = get<uint64_t>();
    if (n > (s.size() - pos) / sizeof(T)) throw Error(what + ": array of " + std::to_string(n) + " elements exceeds the remaining bytes");
    v.resize(n);
    std::memcpy(v.data(), s.data() + pos, n * sizeof(T));
    pos += n * sizeof(T);
  }
};
}  // namespace

std::string ClassAccumulator::serialize() const {
  static_assert(sizeof(float) == 4 && sizeof(double) == 8);
  std::string s(kMagic, sizeof(kMagic));
  put<uint8_t>(s, static_cast<uint8_t>(kind_));
  put<uint64_t>(s, normal_pixels_);
  put<float>(s, min_score_);
  put<float>(s, max_score_);
  put_vec(s, image_scores_);
  put_vec(s, labels_);
  put_vec(s, region_weight_);
  put_vec(s, records_);
  return s;
}

ClassAccumulator ClassAccumulator::deserialize(const std::string& bytes, const std::string& what) {
  if (bytes.size() < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    throw Error(what + ": not a serialised class accumulator (magic ZSADACC1 missing)");
  }
  Reader r{bytes, sizeof(kMagic), what};
  ClassAccumulator a;
  const uint8_t kind = r.get<uint8_t>();
  if (kind > 2) throw Error(what + ": unknown accumulator kind " + std::to_string(kind));
  a.kind_ = static_cast<Kind>(kind);
  a.normal_pixels_ = r.get<uint64_t>();
  a.min_score_ = r.get<float>();
  a.max_score_ = r.get<float>();
  r.get_vec(a.image_scores_);
  r.get_vec(a.labels_);
  r.get_vec(a.region_weight_);
  r.get_vec(a.records_);
  if (r.pos != bytes.size()) throw Error(what + ": " + std::to_string(bytes.size() - r.pos) + " trailing bytes");
  if (a.labels_.size() != a.image_scores_.size()) throw Error(what + ": image scores and labels differ in length");
  uint64_t normal = 0;
  for (uint64_t rec : a.records_) {
    const uint32_t payload = uint32_t(rec);
    normal += payload == 0;
    if (payload > a.region_weight_.size()) throw Error(what + ": pixel refers to region " + std::to_string(payload) + " of " + std::to_string(a.region_weight_.size()));
  }
  if (normal != a.normal_pixels_) throw Error(what + ": normal-pixel count does not match the records");
  return a;
}

ClassMetrics ClassAccumulator::compute(const MetricOptions& options) {
  if (!(options.fpr_limit > 0.0 && options.fpr_limit <= 1.0)) {
    throw Error("fpr_limit " + std::to_string(options.fpr_limit) + " is not in (0, 1]");
  }
  ClassMetrics out;
  const int threads = std::max(1, options.threads);
  {
    std::vector<uint64_t> image_records(image_scores_.size());
    uint64_t positives = 0;
    for (size_t i = 0; i < image_scores_.size(); ++i) {
      image_records[i] = make_record(image_scores_[i], labels_[i]);
      positives += labels_[i];
    }
    sort_records(image_records.data(), image_records.size(), 1);
    CurveInput in;
    in.sorted = image_records.data();
    in.n = image_records.size();
    in.positives = positives;
    in.negatives = image_records.size() - positives;
    CurveMetrics c = evaluate_curve(in, options);
    out.metrics["image_auroc"] = c.auroc;
    out.metrics["image_ap"] = c.ap;
    out.metrics["image_f1_max"] = c.f1_max;
    if (!c.auroc) {
      out.warnings.push_back(image_scores_.empty() ? "image metrics undefined: no images"
                                                   : "image metrics undefined: only one label present");
    }
  }
  if (kind_ == Kind::kPixels) {
    sort_records(records_.data(), records_.size(), threads);
    CurveInput in;
    in.sorted = records_.data();
    in.n = records_.size();
    in.negatives = normal_pixels_;
    in.positives = records_.size() - normal_pixels_;
    in.region_weight = &region_weight_;
    in.min_score = min_score_;
    in.max_score = max_score_;
    CurveMetrics c = evaluate_curve(in, options);
    out.metrics["pixel_auroc"] = c.auroc;
    out.metrics["pixel_ap"] = c.ap;
    out.metrics["pixel_f1_max"] = c.f1_max;
    out.metrics["pixel_aupro"] = c.aupro;
    if (!c.auroc) out.warnings.push_back("pixel metrics undefined: only one pixel label present");
    for (auto& w : c.warnings) out.warnings.push_back(std::move(w));
  }
  return out;
}

}  // namespace zsad::results
