#pragma once
// The frozen-encoder feature cache format (arrays in, arrays out; filling it with CLIP outputs
// is the trainer's job). One HDF5 file (schema "zsad.features/1"):
//   /global        [N, D]     float16 or float32, one chunk per image
//   /patch         [N, P, Dp] float16 or float32, one chunk per image
//   /index/paths   [N] strings, /index/labels [N] int64, /index/classes [N] strings
//   root attributes: schema, num_images, first_row, rows (the row range this file holds),
//   complete (1 after finish), global_sha256 / patch_sha256 / index_sha256, plus free-form
//   string attributes (weights digest, image size, layers, attention variant...).
// Ranks each write a shard (a contiguous row range) with FeatureShardWriter; merge_feature_shards
// concatenates them and validate_feature_store recomputes every digest.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace zsad::data {

struct FeatureStoreSpec {
  int64_t num_images = 0;   // N of the complete store
  int64_t global_dim = 0;   // D
  int64_t num_patches = 0;  // P (0 = no patch dataset)
  int64_t patch_dim = 0;    // Dp
  bool fp16 = true;
  std::map<std::string, std::string> attributes;
};

struct FeatureIndex {
  std::vector<std::string> paths;
  std::vector<int64_t> labels;
  std::vector<std::string> classes;
};

class FeatureShardWriter {
 public:
  // Holds rows [first_row, first_row + rows) of a store of spec.num_images rows.
  FeatureShardWriter(const std::string& path, const FeatureStoreSpec& spec, int64_t first_row, int64_t rows);
  // `row` is a global row number; global is [count, D], patch [count, P, Dp] (may be null if P == 0).
  void write(int64_t row, int64_t count, const float* global, const float* patch, const FeatureIndex& index);
  // Throws when a row was never written; then writes the index, digests and the complete mark.
  void finish();

 private:
  std::string path_;
  FeatureStoreSpec spec_;
  int64_t first_, rows_;
  std::vector<uint8_t> written_;
  FeatureIndex index_;
};

class FeatureStoreReader {
 public:
  explicit FeatureStoreReader(const std::string& path);
  const FeatureStoreSpec& spec() const { return spec_; }
  const FeatureIndex& index() const { return index_; }
  int64_t first_row() const { return first_; }
  int64_t rows() const { return rows_; }
  // Local row numbers (0-based within this file).
  void read_global(int64_t row, int64_t count, float* out) const;
  void read_patch(int64_t row, int64_t count, float* out) const;

 private:
  std::string path_;
  FeatureStoreSpec spec_;
  FeatureIndex index_;
  int64_t first_ = 0, rows_ = 0;
};

// Concatenate shard files covering [0, N) exactly once into one store at out_path.
void merge_feature_shards(const std::vector<std::string>& shards, const std::string& out_path);

// Throws zsad::Error naming the file and the dataset when the store is incomplete, a shard, or
// any digest differs from the recorded one.
void validate_feature_store(const std::string& path);

}  // namespace zsad::data
