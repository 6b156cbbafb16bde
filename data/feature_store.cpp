#include "data/feature_store.h"

#include <algorithm>

#include "common/error.h"
#include "common/h5.h"
#include "common/sha256.h"

namespace zsad::data {

namespace {

constexpr const char* kSchema = "zsad.features/1";

h5::WriteOptions opts(bool fp16) {
  h5::WriteOptions o;
  o.stored = fp16 ? h5::DType::kFloat16 : h5::DType::kFloat32;
  o.chunk_leading = true;
  return o;
}

// Streams the dataset in row blocks: a patch store can be far larger than memory.
std::string digest_rows(const h5::File& f, const std::string& name) {
  const std::vector<int64_t> shape = f.shape(name);
  const int64_t rows = shape.empty() ? 0 : shape[0];
  const int64_t per_row = rows > 0 ? h5::numel(shape) / rows : 0;
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(per_row, 1));
  Sha256 h;
  std::vector<float> buf;
  for (int64_t r = 0; r < rows; r += block) {
    const int64_t n = std::min(block, rows - r);
    buf.resize(static_cast<size_t>(n * per_row));
    f.read_slab(name, r, n, buf.data());
    h.update(buf.data(), buf.size() * sizeof(float));
  }
  return h.hex_digest();
}

std::string digest_index(const FeatureIndex& ix) {
  Sha256 h;
  for (size_t i = 0; i < ix.paths.size(); ++i) {
    h.update(ix.paths[i]);
    h.update("\0", 1);
    h.update(ix.classes[i]);
    h.update("\0", 1);
    const int64_t l = ix.labels[i];
    h.update(&l, sizeof l);
  }
  return h.hex_digest();
}

void write_header(h5::File& f, const FeatureStoreSpec& s, int64_t first, int64_t rows) {
  f.set_attr("/", "schema", std::string(kSchema));
  f.set_attr("/", "num_images", s.num_images);
  f.set_attr("/", "first_row", first);
  f.set_attr("/", "rows", rows);
  f.set_attr("/", "complete", int64_t{0});
  f.set_attr("/", "global_dim", s.global_dim);
  f.set_attr("/", "num_patches", s.num_patches);
  f.set_attr("/", "patch_dim", s.patch_dim);
  f.set_attr("/", "dtype", std::string(s.fp16 ? "float16" : "float32"));
  std::string keys;
  for (const auto& [k, v] : s.attributes) {
    f.set_attr("/", "attr." + k, v);
    keys += (keys.empty() ? "" : ",") + k;
  }
  f.set_attr("/", "attribute_keys", keys);
}

void create_datasets(h5::File& f, const FeatureStoreSpec& s, int64_t rows) {
  f.create("global", {rows, s.global_dim}, opts(s.fp16));
  if (s.num_patches > 0) f.create("patch", {rows, s.num_patches, s.patch_dim}, opts(s.fp16));
}

void write_trailer(h5::File& f, const FeatureStoreSpec& s, const FeatureIndex& ix) {
  f.write_strings("index/paths", ix.paths);
  f.write_strings("index/classes", ix.classes);
  f.write("index/labels", ix.labels.data(), {static_cast<int64_t>(ix.labels.size())});
  f.set_attr("/", "global_sha256", digest_rows(f, "global"));
  f.set_attr("/", "patch_sha256", s.num_patches > 0 ? digest_rows(f, "patch") : std::string());
  f.set_attr("/", "index_sha256", digest_index(ix));
  f.set_attr("/", "complete", int64_t{1});
  f.flush();
}

}  // namespace

FeatureShardWriter::FeatureShardWriter(const std::string& path, const FeatureStoreSpec& spec, int64_t first_row,
                                       int64_t rows)
    : path_(path), spec_(spec), first_(first_row), rows_(rows), written_(static_cast<size_t>(std::max<int64_t>(rows, 0)), 0) {
  if (spec.num_images < 0 || spec.global_dim <= 0 || spec.num_patches < 0 || (spec.num_patches > 0 && spec.patch_dim <= 0))
    throw Error(path + ": invalid feature store shape");
  if (first_row < 0 || rows < 0 || first_row + rows > spec.num_images)
    throw Error(path + ": shard rows [" + std::to_string(first_row) + ", " + std::to_string(first_row + rows) +
                ") outside [0, " + std::to_string(spec.num_images) + ")");
  index_.paths.resize(rows);
  index_.classes.resize(rows);
  index_.labels.resize(rows, 0);
  h5::File f(path, h5::File::Mode::kTruncate);
  write_header(f, spec, first_row, rows);
  create_datasets(f, spec, rows);
}

void FeatureShardWriter::write(int64_t row, int64_t count, const float* global, const float* patch,
                               const FeatureIndex& ix) {
  if (row < first_ || row + count > first_ + rows_)
    throw Error(path_ + ": rows [" + std::to_string(row) + ", " + std::to_string(row + count) + ") outside this shard [" +
                std::to_string(first_) + ", " + std::to_string(first_ + rows_) + ")");
  if (static_cast<int64_t>(ix.paths.size()) != count || static_cast<int64_t>(ix.labels.size()) != count ||
      static_cast<int64_t>(ix.classes.size()) != count)
    throw Error(path_ + ": index entries do not match the row count " + std::to_string(count));
  if (spec_.num_patches > 0 && !patch) throw Error(path_ + ": patch features missing");
  h5::File f(path_, h5::File::Mode::kReadWrite);
  const int64_t local = row - first_;
  f.write_slab("global", local, count, global);
  if (spec_.num_patches > 0) f.write_slab("patch", local, count, patch);
  for (int64_t i = 0; i < count; ++i) {
    index_.paths[local + i] = ix.paths[i];
    index_.labels[local + i] = ix.labels[i];
    index_.classes[local + i] = ix.classes[i];
    written_[local + i] = 1;
  }
}

void FeatureShardWriter::finish() {
  for (int64_t i = 0; i < rows_; ++i)
    if (!written_[i]) throw Error(path_ + ": row " + std::to_string(first_ + i) + " was never written");
  h5::File f(path_, h5::File::Mode::kReadWrite);
  write_trailer(f, spec_, index_);
}

FeatureStoreReader::FeatureStoreReader(const std::string& path) : path_(path) {
  h5::File f(path, h5::File::Mode::kRead);
  if (!f.has_attr("/", "schema") || f.attr_string("/", "schema") != kSchema)
    throw Error(path + ": not a zsad feature store (schema attribute is not " + kSchema + ")");
  if (f.attr_int("/", "complete") != 1) throw Error(path + ": incomplete feature store (writer did not finish)");
  spec_.num_images = f.attr_int("/", "num_images");
  spec_.global_dim = f.attr_int("/", "global_dim");
  spec_.num_patches = f.attr_int("/", "num_patches");
  spec_.patch_dim = f.attr_int("/", "patch_dim");
  spec_.fp16 = f.attr_string("/", "dtype") == "float16";
  const std::string keys = f.attr_string("/", "attribute_keys");
  size_t pos = 0;
  while (pos < keys.size()) {
    size_t comma = keys.find(',', pos);
    if (comma == std::string::npos) comma = keys.size();
    const std::string k = keys.substr(pos, comma - pos);
    if (!k.empty()) spec_.attributes[k] = f.attr_string("/", "attr." + k);
    pos = comma + 1;
  }
  first_ = f.attr_int("/", "first_row");
  rows_ = f.attr_int("/", "rows");
  index_.paths = f.read_strings("index/paths");
  index_.classes = f.read_strings("index/classes");
  index_.labels = f.read_int64("index/labels");
}

void FeatureStoreReader::read_global(int64_t row, int64_t count, float* out) const {
  h5::File f(path_, h5::File::Mode::kRead);
  f.read_slab("global", row, count, out);
}

void FeatureStoreReader::read_patch(int64_t row, int64_t count, float* out) const {
  if (spec_.num_patches == 0) throw Error(path_ + ": feature store has no patch features");
  h5::File f(path_, h5::File::Mode::kRead);
  f.read_slab("patch", row, count, out);
}

void merge_feature_shards(const std::vector<std::string>& shards, const std::string& out_path) {
  if (shards.empty()) throw Error(out_path + ": no shards to merge");
  std::vector<FeatureStoreReader> readers;
  for (const auto& s : shards) readers.emplace_back(s);
  std::sort(readers.begin(), readers.end(),
            [](const FeatureStoreReader& a, const FeatureStoreReader& b) { return a.first_row() < b.first_row(); });
  const FeatureStoreSpec spec = readers.front().spec();
  int64_t expect = 0;
  for (size_t i = 0; i < readers.size(); ++i) {
    const auto& r = readers[i];
    const auto& s = r.spec();
    if (s.num_images != spec.num_images || s.global_dim != spec.global_dim || s.num_patches != spec.num_patches ||
        s.patch_dim != spec.patch_dim || s.fp16 != spec.fp16 || s.attributes != spec.attributes)
      throw Error(shards[0] + ": shards disagree on shape, dtype or attributes");
    if (r.first_row() != expect)
      throw Error(out_path + ": shards do not cover rows contiguously (expected row " + std::to_string(expect) +
                  ", next shard starts at " + std::to_string(r.first_row()) + ")");
    expect += r.rows();
  }
  if (expect != spec.num_images)
    throw Error(out_path + ": shards cover " + std::to_string(expect) + " of " + std::to_string(spec.num_images) + " rows");
  h5::File f(out_path, h5::File::Mode::kTruncate);
  write_header(f, spec, 0, spec.num_images);
  create_datasets(f, spec, spec.num_images);
  FeatureIndex all;
  for (const auto& r : readers) {
    // Row blocks of about 16 MiB keep memory bounded for large patch stores.
    const int64_t per_row = spec.global_dim + spec.num_patches * spec.patch_dim;
    const int64_t block = std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(per_row, 1));
    std::vector<float> g, p;
    for (int64_t row = 0; row < r.rows(); row += block) {
      const int64_t n = std::min(block, r.rows() - row);
      g.resize(static_cast<size_t>(n * spec.global_dim));
      r.read_global(row, n, g.data());
      f.write_slab("global", r.first_row() + row, n, g.data());
      if (spec.num_patches > 0) {
        p.resize(static_cast<size_t>(n * spec.num_patches * spec.patch_dim));
        r.read_patch(row, n, p.data());
        f.write_slab("patch", r.first_row() + row, n, p.data());
      }
    }
    const auto& ix = r.index();
    all.paths.insert(all.paths.end(), ix.paths.begin(), ix.paths.end());
    all.classes.insert(all.classes.end(), ix.classes.begin(), ix.classes.end());
    all.labels.insert(all.labels.end(), ix.labels.begin(), ix.labels.end());
  }
  write_trailer(f, spec, all);
}

void validate_feature_store(const std::string& path) {
  const FeatureStoreReader r(path);  // checks schema and completeness
  if (r.first_row() != 0 || r.rows() != r.spec().num_images)
    throw Error(path + ": holds rows [" + std::to_string(r.first_row()) + ", " + std::to_string(r.first_row() + r.rows()) +
                ") of " + std::to_string(r.spec().num_images) + " (a shard, not a merged store)");
  h5::File f(path, h5::File::Mode::kRead);
  const auto& s = r.spec();
  if (f.shape("global") != std::vector<int64_t>{s.num_images, s.global_dim})
    throw Error(path + ": dataset 'global' has the wrong shape");
  if (digest_rows(f, "global") != f.attr_string("/", "global_sha256"))
    throw Error(path + ": dataset 'global' does not match its recorded sha256 (corrupt or modified)");
  if (s.num_patches > 0) {
    if (f.shape("patch") != std::vector<int64_t>{s.num_images, s.num_patches, s.patch_dim})
      throw Error(path + ": dataset 'patch' has the wrong shape");
    if (digest_rows(f, "patch") != f.attr_string("/", "patch_sha256"))
      throw Error(path + ": dataset 'patch' does not match its recorded sha256 (corrupt or modified)");
  }
  const auto& ix = r.index();
  if (static_cast<int64_t>(ix.paths.size()) != s.num_images || static_cast<int64_t>(ix.labels.size()) != s.num_images ||
      static_cast<int64_t>(ix.classes.size()) != s.num_images)
    throw Error(path + ": index length differs from num_images " + std::to_string(s.num_images));
  if (digest_index(ix) != f.attr_string("/", "index_sha256"))
    throw Error(path + ": index does not match its recorded sha256");
}

}  // namespace zsad::data
