#pragma once
// The project's one HDF5 layer (checkpoints, scores, feature cache, CLIP exports).
// Thin RAII over the C API: datasets are written/read whole or by leading-index slab,
// every failure throws zsad::Error naming the file and the object.
#include <cstdint>
#include <string>
#include <vector>

namespace zsad::h5 {

enum class DType { kFloat32, kFloat16, kFloat64, kUInt8, kInt32, kInt64 };

struct WriteOptions {
  DType stored = DType::kFloat32;   // on-disk type; values are converted from the in-memory type
  bool chunk_leading = false;       // one chunk per leading index (e.g. per image)
  int deflate = 0;                  // 0 = no compression
};

class File {
 public:
  enum class Mode { kRead, kReadWrite, kTruncate };
  File(const std::string& path, Mode mode);
  ~File();
  File(File&& other) noexcept;
  File& operator=(File&& other) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  bool exists(const std::string& object) const;      // group or dataset, '/'-separated
  std::vector<std::string> children(const std::string& group = "/") const;
  bool is_group(const std::string& object) const;
  void create_group(const std::string& group);        // creates intermediate groups too

  std::vector<int64_t> shape(const std::string& dataset) const;
  DType stored_type(const std::string& dataset) const;

  // Whole-dataset writes; the in-memory type follows the pointer type.
  void write(const std::string& name, const float* data, const std::vector<int64_t>& shape, WriteOptions o = {});
  void write(const std::string& name, const double* data, const std::vector<int64_t>& shape, WriteOptions o = {DType::kFloat64});
  void write(const std::string& name, const uint8_t* data, const std::vector<int64_t>& shape, WriteOptions o = {DType::kUInt8});
  void write(const std::string& name, const int32_t* data, const std::vector<int64_t>& shape, WriteOptions o = {DType::kInt32});
  void write(const std::string& name, const int64_t* data, const std::vector<int64_t>& shape, WriteOptions o = {DType::kInt64});
  void write_strings(const std::string& name, const std::vector<std::string>& values);

  // Create an empty dataset of the given shape, then fill leading-index slabs [first, first+count).
  void create(const std::string& name, const std::vector<int64_t>& shape, WriteOptions o);
  void write_slab(const std::string& name, int64_t first, int64_t count, const float* data);
  void write_slab(const std::string& name, int64_t first, int64_t count, const uint8_t* data);

  // Reads convert from the stored type (e.g. float16 -> float).
  std::vector<float> read_float(const std::string& name) const;
  std::vector<double> read_double(const std::string& name) const;
  std::vector<uint8_t> read_uint8(const std::string& name) const;
  std::vector<int64_t> read_int64(const std::string& name) const;
  std::vector<std::string> read_strings(const std::string& name) const;
  void read_slab(const std::string& name, int64_t first, int64_t count, float* out) const;
  void read_slab(const std::string& name, int64_t first, int64_t count, uint8_t* out) const;

  // Attributes on a group or dataset ("/" for the root).
  void set_attr(const std::string& object, const std::string& key, const std::string& value);
  void set_attr(const std::string& object, const std::string& key, int64_t value);
  void set_attr(const std::string& object, const std::string& key, double value);
  bool has_attr(const std::string& object, const std::string& key) const;
  std::string attr_string(const std::string& object, const std::string& key) const;
  int64_t attr_int(const std::string& object, const std::string& key) const;
  double attr_double(const std::string& object, const std::string& key) const;

  void flush();

 private:
  int64_t id_ = -1;
  std::string path_;
};

// Product of a shape's extents.
int64_t numel(const std::vector<int64_t>& shape);

}  // namespace zsad::h5
