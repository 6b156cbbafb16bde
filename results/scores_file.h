#pragma once
// Scores files (HDF5, schema "zsad.scores/1"): one group per class, named verbatim,
//   image_scores float32 [N], labels uint8 [N] (0/1),
//   and where pixel metrics apply anomaly_maps float32|float16 [N,H,W] + masks uint8 [N,H,W] (0/1)
//   at the evaluation size. Image-only classes omit both. docs/results.md.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/h5.h"
#include "results/metrics/accumulator.h"

namespace zsad::results {

inline constexpr const char* kScoresSchema = "zsad.scores/1";

// One class in memory (writers, tests). Empty anomaly_maps = image-only class.
struct ClassScores {
  std::vector<float> image_scores;
  std::vector<uint8_t> labels;
  std::vector<float> anomaly_maps;  // N*H*W row-major
  std::vector<uint8_t> masks;       // N*H*W, 0/1
  int64_t height = 0, width = 0;
};

// Streaming writer: the evaluation loop writes images as they are scored.
class ScoresWriter {
 public:
  // float16_maps stores anomaly_maps as IEEE half (half the size; ties may appear).
  explicit ScoresWriter(const std::string& path, bool float16_maps = false);
  // height = width = 0 declares an image-only class.
  void begin_class(const std::string& name, int64_t images, int64_t height, int64_t width);
  // Writes image `index` of a class begun earlier; map/mask must be null for image-only classes.
  void write_image(const std::string& name, int64_t index, float image_score, uint8_t label,
                   const float* map = nullptr, const uint8_t* mask = nullptr);
  void close();  // flushes; also done by the destructor
  ~ScoresWriter();

 private:
  struct Pending {
    std::vector<float> scores;
    std::vector<uint8_t> labels;
    std::vector<bool> written;
    int64_t height, width;
  };
  std::unique_ptr<h5::File> file_;
  bool float16_;
  std::map<std::string, Pending> classes_;
};

void write_scores(const std::string& path, const std::map<std::string, ClassScores>& classes,
                  bool float16_maps = false);

// Opens and validates a scores file: schema attribute, every group's datasets, types and
// shapes. Any mismatch throws zsad::Error "<path>: <object>: <reason>".
class ScoresReader {
 public:
  explicit ScoresReader(const std::string& path);

  struct ClassInfo {
    int64_t images = 0, height = 0, width = 0;
    bool has_maps = false;
    h5::DType map_type = h5::DType::kFloat32;
  };
  const std::string& path() const { return path_; }
  const std::vector<std::string>& classes() const { return names_; }
  const ClassInfo& info(const std::string& cls) const;

  // Streams one image at a time into an accumulator (never holds the whole map array).
  ClassAccumulator load(const std::string& cls) const;
  ClassScores read(const std::string& cls) const;

 private:
  std::string path_;
  std::unique_ptr<h5::File> file_;
  std::vector<std::string> names_;
  std::map<std::string, ClassInfo> info_;
};

}  // namespace zsad::results
