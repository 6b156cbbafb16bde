#include "results/scores_file.h"

#include <cmath>

#include "common/error.h"

namespace zsad::results {

ScoresWriter::ScoresWriter(const std::string& path, bool float16_maps)
    : file_(std::make_unique<h5::File>(path, h5::File::Mode::kTruncate)), float16_(float16_maps) {
  file_->set_attr("/", "schema", std::string(kScoresSchema));
}

void ScoresWriter::begin_class(const std::string& name, int64_t images, int64_t height, int64_t width) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    throw Error(file_->path() + ": class name '" + name + "' cannot be an HDF5 group name");
  }
  if (classes_.count(name)) throw Error(file_->path() + ": class '" + name + "' written twice");
  if (images < 0 || height < 0 || width < 0 || (height == 0) != (width == 0)) {
    throw Error(file_->path() + ": class '" + name + "': invalid shape " + std::to_string(images) + "x" +
                std::to_string(height) + "x" + std::to_string(width));
  }
  file_->create_group("/" + name);
  if (height > 0) {
    h5::WriteOptions maps{float16_ ? h5::DType::kFloat16 : h5::DType::kFloat32, true, 0};
    h5::WriteOptions masks{h5::DType::kUInt8, true, 0};
    file_->create("/" + name + "/anomaly_maps", {images, height, width}, maps);
    file_->create("/" + name + "/masks", {images, height, width}, masks);
  }
  Pending p;
  p.scores.assign(size_t(images), 0.0f);
  p.labels.assign(size_t(images), 0);
  p.written.assign(size_t(images), false);
  p.height = height;
  p.width = width;
  classes_[name] = std::move(p);
}

void ScoresWriter::write_image(const std::string& name, int64_t index, float image_score, uint8_t label,
                               const float* map, const uint8_t* mask) {
  auto it = classes_.find(name);
  if (it == classes_.end()) throw Error(file_->path() + ": class '" + name + "' was not begun");
  Pending& p = it->second;
  if (index < 0 || index >= int64_t(p.scores.size())) {
    throw Error(file_->path() + ": class '" + name + "': image index " + std::to_string(index) + " out of range");
  }
  if ((p.height > 0) != (map != nullptr && mask != nullptr)) {
    throw Error(file_->path() + ": class '" + name + "': " +
                (p.height > 0 ? "map and mask required" : "image-only class takes no map or mask"));
  }
  p.scores[size_t(index)] = image_score;
  p.labels[size_t(index)] = label;
  p.written[size_t(index)] = true;
  if (map) {
    file_->write_slab("/" + name + "/anomaly_maps", index, 1, map);
    file_->write_slab("/" + name + "/masks", index, 1, mask);
  }
}

void ScoresWriter::close() {
  if (!file_) return;
  for (auto& [name, p] : classes_) {
    for (size_t i = 0; i < p.written.size(); ++i) {
      if (!p.written[i]) {
        throw Error(file_->path() + ": class '" + name + "': image " + std::to_string(i) + " was never written");
      }
    }
    const int64_t n = int64_t(p.scores.size());
    file_->write("/" + name + "/image_scores", p.scores.data(), {n});
    file_->write("/" + name + "/labels", p.labels.data(), {n});
  }
  file_->flush();
  file_.reset();
}

ScoresWriter::~ScoresWriter() {
  try {
    close();
  } catch (...) {
    // Destructors must not throw; an explicit close() reports the problem.
  }
}

void write_scores(const std::string& path, const std::map<std::string, ClassScores>& classes, bool float16_maps) {
  ScoresWriter w(path, float16_maps);
  for (const auto& [name, c] : classes) {
    const int64_t n = int64_t(c.image_scores.size());
    if (c.labels.size() != size_t(n)) throw Error(path + ": class '" + name + "': labels and image_scores differ in length");
    const bool pixels = !c.anomaly_maps.empty();
    const int64_t hw = c.height * c.width;
    if (pixels && (c.anomaly_maps.size() != size_t(n * hw) || c.masks.size() != size_t(n * hw))) {
      throw Error(path + ": class '" + name + "': anomaly_maps/masks do not hold N*H*W values");
    }
    w.begin_class(name, n, pixels ? c.height : 0, pixels ? c.width : 0);
    for (int64_t i = 0; i < n; ++i) {
      w.write_image(name, i, c.image_scores[size_t(i)], c.labels[size_t(i)],
                    pixels ? c.anomaly_maps.data() + i * hw : nullptr, pixels ? c.masks.data() + i * hw : nullptr);
    }
  }
  w.close();
}

namespace {
std::string type_name(h5::DType t) {
  switch (t) {
    case h5::DType::kFloat32: return "float32";
    case h5::DType::kFloat16: return "float16";
    case h5::DType::kFloat64: return "float64";
    case h5::DType::kUInt8: return "uint8";
    case h5::DType::kInt32: return "int32";
    case h5::DType::kInt64: return "int64";
  }
  return "?";
}
}  // namespace

ScoresReader::ScoresReader(const std::string& path) : path_(path) {
  try {
    file_ = std::make_unique<h5::File>(path, h5::File::Mode::kRead);
  } catch (const Error& e) {
    throw Error(path + ": not a readable HDF5 scores file (" + e.what() + ")");
  }
  auto fail = [&](const std::string& object, const std::string& why) -> Error {
    return Error(path + ": " + object + ": " + why);
  };
  if (!file_->has_attr("/", "schema")) throw fail("/", "root attribute 'schema' missing (expected \"zsad.scores/1\")");
  std::string schema;
  try {
    schema = file_->attr_string("/", "schema");
  } catch (const Error&) {
    throw fail("/", "root attribute 'schema' is not a string (expected \"zsad.scores/1\")");
  }
  if (schema != kScoresSchema) throw fail("/", "schema is \"" + schema + "\", expected \"zsad.scores/1\"");
  for (const std::string& name : file_->children("/")) {
    const std::string g = "/" + name;
    if (!file_->is_group(g)) throw fail(g, "expected a class group, found a dataset");
    auto need = [&](const std::string& ds, h5::DType type, size_t rank) {
      const std::string obj = g + "/" + ds;
      if (!file_->exists(obj)) throw fail(obj, "missing");
      if (file_->is_group(obj)) throw fail(obj, "is a group, expected a dataset");
      auto shape = file_->shape(obj);
      if (shape.size() != rank) throw fail(obj, "has rank " + std::to_string(shape.size()) + ", expected " + std::to_string(rank));
      h5::DType t;
      try {
        t = file_->stored_type(obj);
      } catch (const Error&) {
        throw fail(obj, "has an unsupported element type");
      }
      if (!(t == type || (type == h5::DType::kFloat32 && rank == 3 && t == h5::DType::kFloat16))) {
        throw fail(obj, "is " + type_name(t) + ", expected " + type_name(type) + (rank == 3 && type == h5::DType::kFloat32 ? " or float16" : ""));
      }
      return shape;
    };
    ClassInfo info;
    auto s = need("image_scores", h5::DType::kFloat32, 1);
    auto l = need("labels", h5::DType::kUInt8, 1);
    if (s[0] != l[0]) throw fail(g, "image_scores has " + std::to_string(s[0]) + " entries, labels " + std::to_string(l[0]));
    if (s[0] == 0) throw fail(g, "class has no images");
    info.images = s[0];
    const bool maps = file_->exists(g + "/anomaly_maps"), masks = file_->exists(g + "/masks");
    if (maps != masks) throw fail(g, std::string("has ") + (maps ? "anomaly_maps but no masks" : "masks but no anomaly_maps"));
    if (maps) {
      auto m = need("anomaly_maps", h5::DType::kFloat32, 3);
      auto k = need("masks", h5::DType::kUInt8, 3);
      if (m != k) throw fail(g, "anomaly_maps and masks differ in shape");
      if (m[0] != info.images) throw fail(g, "anomaly_maps has " + std::to_string(m[0]) + " images, image_scores " + std::to_string(info.images));
      if (m[1] <= 0 || m[2] <= 0) throw fail(g, "anomaly_maps has an empty image size");
      info.has_maps = true;
      info.height = m[1];
      info.width = m[2];
      info.map_type = file_->stored_type(g + "/anomaly_maps");
    }
    names_.push_back(name);
    info_[name] = info;
  }
  if (names_.empty()) throw fail("/", "no class groups");
}

const ScoresReader::ClassInfo& ScoresReader::info(const std::string& cls) const {
  auto it = info_.find(cls);
  if (it == info_.end()) throw Error(path_ + ": no class '" + cls + "'");
  return it->second;
}

ClassAccumulator ScoresReader::load(const std::string& cls) const {
  const ClassInfo& ci = info(cls);
  const std::string g = "/" + cls;
  std::vector<float> scores = file_->read_float(g + "/image_scores");
  std::vector<uint8_t> labels = file_->read_uint8(g + "/labels");
  ClassAccumulator acc;
  const int64_t hw = ci.height * ci.width;
  acc.reserve(ci.images, ci.images * hw);
  std::vector<float> map(size_t(ci.has_maps ? hw : 0));
  std::vector<uint8_t> mask(map.size());
  for (int64_t i = 0; i < ci.images; ++i) {
    try {
      if (ci.has_maps) {
        file_->read_slab(g + "/anomaly_maps", i, 1, map.data());
        file_->read_slab(g + "/masks", i, 1, mask.data());
        acc.add_image(scores[size_t(i)], labels[size_t(i)], map.data(), mask.data(), ci.height, ci.width);
      } else {
        acc.add_image(scores[size_t(i)], labels[size_t(i)]);
      }
    } catch (const Error& e) {
      throw Error(path_ + ": " + g + ": image " + std::to_string(i) + ": " + e.what());
    }
  }
  return acc;
}

ClassScores ScoresReader::read(const std::string& cls) const {
  const ClassInfo& ci = info(cls);
  const std::string g = "/" + cls;
  ClassScores c;
  c.image_scores = file_->read_float(g + "/image_scores");
  c.labels = file_->read_uint8(g + "/labels");
  if (ci.has_maps) {
    c.anomaly_maps = file_->read_float(g + "/anomaly_maps");
    c.masks = file_->read_uint8(g + "/masks");
    c.height = ci.height;
    c.width = ci.width;
  }
  return c;
}

}  // namespace zsad::results
