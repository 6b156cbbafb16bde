#include "common/h5.h"

#include <hdf5.h>

#include <cstring>
#include <mutex>
#include <numeric>

#include "common/error.h"

namespace zsad::h5 {
namespace {

// HDF5 prints its own error stack to stderr by default; we report through exceptions instead.
// The thread-safe build keeps one error-stack setting per thread, hence thread_local.
void silence_hdf5_once() {
  thread_local bool silenced = false;
  if (!silenced) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    silenced = true;
  }
}

// float -> IEEE half, round to nearest even. HDF5 1.10's soft float->half conversion drops the
// carry when rounding overflows the mantissa (-0.249996 was stored as -0.125), so fp16 datasets
// are converted here and written without HDF5 conversion.
uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520 -> inf
  if (abs < 0x38800000u) {                                               // half subnormal or zero
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);           // < 2^-25 rounds to 0
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(abs >> 23);                 // 14..24
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = ((abs - 0x38000000u) >> 13);  // rebias exponent 127 -> 15, keep 10 mantissa bits
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is correct
  return static_cast<uint16_t>(sign | h);
}

std::vector<uint16_t> to_half(const float* data, int64_t n) {
  std::vector<uint16_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = float_to_half(data[i]);
  return out;
}

// IEEE half as h5py/numpy write it (sign 15, exponent 10..14 with bias 15, mantissa 0..9).
hid_t float16_type() {
  static hid_t t = [] {
    hid_t h = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(h, 15, 10, 5, 0, 10);
    H5Tset_size(h, 2);
    H5Tset_ebias(h, 15);
    H5Tlock(h);
    return h;
  }();
  return t;
}

hid_t file_type(DType t) {
  switch (t) {
    case DType::kFloat32: return H5T_IEEE_F32LE;
    case DType::kFloat16: return float16_type();
    case DType::kFloat64: return H5T_IEEE_F64LE;
    case DType::kUInt8: return H5T_STD_U8LE;
    case DType::kInt32: return H5T_STD_I32LE;
    case DType::kInt64: return H5T_STD_I64LE;
  }
  return H5T_IEEE_F32LE;
}

struct Space {
  hid_t id;
  explicit Space(hid_t i) : id(i) {}
  ~Space() { if (id >= 0) H5Sclose(id); }
};
struct Plist {
  hid_t id;
  explicit Plist(hid_t i) : id(i) {}
  ~Plist() { if (id >= 0) H5Pclose(id); }
};
struct Type {
  hid_t id;
  explicit Type(hid_t i) : id(i) {}
  ~Type() { if (id >= 0) H5Tclose(id); }
};
struct Dataset {
  hid_t id;
  explicit Dataset(hid_t i) : id(i) {}
  ~Dataset() { if (id >= 0) H5Dclose(id); }
};
struct Attr {
  hid_t id;
  explicit Attr(hid_t i) : id(i) {}
  ~Attr() { if (id >= 0) H5Aclose(id); }
};
struct Object {
  hid_t id;
  explicit Object(hid_t i) : id(i) {}
  ~Object() { if (id >= 0) H5Oclose(id); }
};

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw Error("HDF5 " + file + ": " + what);
}

std::vector<hsize_t> to_hsize(const std::vector<int64_t>& shape) {
  return std::vector<hsize_t>(shape.begin(), shape.end());
}

}  // namespace

int64_t numel(const std::vector<int64_t>& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

File::File(const std::string& path, Mode mode) : path_(path) {
  silence_hdf5_once();
  switch (mode) {
    case Mode::kRead:
      id_ = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
      break;
    case Mode::kReadWrite:
      id_ = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
      break;
    case Mode::kTruncate:
      id_ = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
      break;
  }
  if (id_ < 0) {
    fail(path, mode == Mode::kTruncate ? "cannot create file" : "cannot open file (missing, truncated or not HDF5)");
  }
}

File::~File() {
  if (id_ >= 0) H5Fclose(id_);
}

File::File(File&& other) noexcept : id_(other.id_), path_(std::move(other.path_)) { other.id_ = -1; }

File& File::operator=(File&& other) noexcept {
  if (this != &other) {
    if (id_ >= 0) H5Fclose(id_);
    id_ = other.id_;
    path_ = std::move(other.path_);
    other.id_ = -1;
  }
  return *this;
}

bool File::exists(const std::string& object) const {
  if (object == "/" || object.empty()) return true;
  // Check each path component, as H5Lexists requires intermediate links to exist.
  std::string prefix;
  size_t start = object[0] == '/' ? 1 : 0;
  while (start <= object.size()) {
    size_t end = object.find('/', start);
    if (end == std::string::npos) end = object.size();
    prefix += "/" + object.substr(start, end - start);
    if (H5Lexists(id_, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    start = end + 1;
  }
  return true;
}

bool File::is_group(const std::string& object) const {
  if (!exists(object)) return false;
  Object o(H5Oopen(id_, object.c_str(), H5P_DEFAULT));
  return o.id >= 0 && H5Iget_type(o.id) == H5I_GROUP;
}

std::vector<std::string> File::children(const std::string& group) const {
  std::vector<std::string> names;
  Object g(H5Gopen2(id_, group.c_str(), H5P_DEFAULT));
  if (g.id < 0) fail(path_, "no group '" + group + "'");
  H5G_info_t info;
  H5Gget_info(g.id, &info);
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t n = H5Lget_name_by_idx(g.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    std::string name(static_cast<size_t>(n), '\0');
    H5Lget_name_by_idx(g.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), n + 1, H5P_DEFAULT);
    names.push_back(name);
  }
  return names;
}

void File::create_group(const std::string& group) {
  if (exists(group)) return;
  Plist lcpl(H5Pcreate(H5P_LINK_CREATE));
  H5Pset_create_intermediate_group(lcpl.id, 1);
  hid_t g = H5Gcreate2(id_, group.c_str(), lcpl.id, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) fail(path_, "cannot create group '" + group + "'");
  H5Gclose(g);
}

std::vector<int64_t> File::shape(const std::string& dataset) const {
  Dataset d(H5Dopen2(id_, dataset.c_str(), H5P_DEFAULT));
  if (d.id < 0) fail(path_, "no dataset '" + dataset + "'");
  Space s(H5Dget_space(d.id));
  int rank = H5Sget_simple_extent_ndims(s.id);
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
  H5Sget_simple_extent_dims(s.id, dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

DType File::stored_type(const std::string& dataset) const {
  Dataset d(H5Dopen2(id_, dataset.c_str(), H5P_DEFAULT));
  if (d.id < 0) fail(path_, "no dataset '" + dataset + "'");
  Type t(H5Dget_type(d.id));
  H5T_class_t cls = H5Tget_class(t.id);
  size_t size = H5Tget_size(t.id);
  if (cls == H5T_FLOAT) return size == 2 ? DType::kFloat16 : size == 4 ? DType::kFloat32 : DType::kFloat64;
  if (cls == H5T_INTEGER) {
    if (size == 1) return DType::kUInt8;
    if (size == 4) return DType::kInt32;
    return DType::kInt64;
  }
  fail(path_, "dataset '" + dataset + "' has an unsupported element type");
}

namespace {

void write_impl(hid_t file, const std::string& path, const std::string& name, hid_t mem_type, const void* data,
                const std::vector<int64_t>& shape, const WriteOptions& o) {
  auto dims = to_hsize(shape);
  Space space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  Plist dcpl(H5Pcreate(H5P_DATASET_CREATE));
  if ((o.chunk_leading || o.deflate > 0) && !dims.empty() && numel(shape) > 0) {
    std::vector<hsize_t> chunk = dims;
    if (o.chunk_leading) chunk[0] = 1;
    H5Pset_chunk(dcpl.id, static_cast<int>(chunk.size()), chunk.data());
    if (o.deflate > 0) {
      H5Pset_shuffle(dcpl.id);
      H5Pset_deflate(dcpl.id, static_cast<unsigned>(o.deflate));
    }
  }
  Plist lcpl(H5Pcreate(H5P_LINK_CREATE));
  H5Pset_create_intermediate_group(lcpl.id, 1);
  if (H5Lexists(file, name.c_str(), H5P_DEFAULT) > 0) H5Ldelete(file, name.c_str(), H5P_DEFAULT);
  Dataset d(H5Dcreate2(file, name.c_str(), file_type(o.stored), space.id, lcpl.id, dcpl.id, H5P_DEFAULT));
  if (d.id < 0) fail(path, "cannot create dataset '" + name + "'");
  if (data && numel(shape) > 0 && H5Dwrite(d.id, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    fail(path, "cannot write dataset '" + name + "'");
  }
}

template <typename T>
std::vector<T> read_impl(hid_t file, const std::string& path, const std::string& name, hid_t mem_type) {
  Dataset d(H5Dopen2(file, name.c_str(), H5P_DEFAULT));
  if (d.id < 0) fail(path, "no dataset '" + name + "'");
  Space s(H5Dget_space(d.id));
  hssize_t n = H5Sget_simple_extent_npoints(s.id);
  std::vector<T> out(static_cast<size_t>(std::max<hssize_t>(n, 0)));
  if (n > 0 && H5Dread(d.id, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0) {
    fail(path, "cannot read dataset '" + name + "' (corrupt or unconvertible type)");
  }
  return out;
}

void slab_impl(hid_t file, const std::string& path, const std::string& name, int64_t first, int64_t count,
               hid_t mem_type, const void* in, void* out) {
  Dataset d(H5Dopen2(file, name.c_str(), H5P_DEFAULT));
  if (d.id < 0) fail(path, "no dataset '" + name + "'");
  Space fs(H5Dget_space(d.id));
  int rank = H5Sget_simple_extent_ndims(fs.id);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(fs.id, dims.data(), nullptr);
  if (rank == 0 || first < 0 || count < 0 || static_cast<hsize_t>(first + count) > dims[0]) {
    fail(path, "slab [" + std::to_string(first) + ", " + std::to_string(first + count) + ") out of range for '" + name + "'");
  }
  std::vector<hsize_t> start(dims.size(), 0), cnt = dims;
  start[0] = static_cast<hsize_t>(first);
  cnt[0] = static_cast<hsize_t>(count);
  H5Sselect_hyperslab(fs.id, H5S_SELECT_SET, start.data(), nullptr, cnt.data(), nullptr);
  Space ms(H5Screate_simple(rank, cnt.data(), nullptr));
  herr_t rc = in ? H5Dwrite(d.id, mem_type, ms.id, fs.id, H5P_DEFAULT, in)
                 : H5Dread(d.id, mem_type, ms.id, fs.id, H5P_DEFAULT, out);
  if (rc < 0) fail(path, std::string(in ? "cannot write" : "cannot read") + " slab of '" + name + "'");
}

}  // namespace

void File::write(const std::string& name, const float* data, const std::vector<int64_t>& shape, WriteOptions o) {
  if (o.stored == DType::kFloat16 && data) {
    auto half = to_half(data, numel(shape));
    write_impl(id_, path_, name, float16_type(), half.data(), shape, o);
    return;
  }
  write_impl(id_, path_, name, H5T_NATIVE_FLOAT, data, shape, o);
}
void File::write(const std::string& name, const double* data, const std::vector<int64_t>& shape, WriteOptions o) {
  write_impl(id_, path_, name, H5T_NATIVE_DOUBLE, data, shape, o);
}
void File::write(const std::string& name, const uint8_t* data, const std::vector<int64_t>& shape, WriteOptions o) {
  write_impl(id_, path_, name, H5T_NATIVE_UINT8, data, shape, o);
}
void File::write(const std::string& name, const int32_t* data, const std::vector<int64_t>& shape, WriteOptions o) {
  write_impl(id_, path_, name, H5T_NATIVE_INT32, data, shape, o);
}
void File::write(const std::string& name, const int64_t* data, const std::vector<int64_t>& shape, WriteOptions o) {
  write_impl(id_, path_, name, H5T_NATIVE_INT64, data, shape, o);
}

void File::create(const std::string& name, const std::vector<int64_t>& shape, WriteOptions o) {
  write_impl(id_, path_, name, H5T_NATIVE_FLOAT, nullptr, shape, o);
}
void File::write_slab(const std::string& name, int64_t first, int64_t count, const float* data) {
  if (stored_type(name) == DType::kFloat16) {
    auto dims = shape(name);
    dims[0] = count;
    auto half = to_half(data, numel(dims));
    slab_impl(id_, path_, name, first, count, float16_type(), half.data(), nullptr);
    return;
  }
  slab_impl(id_, path_, name, first, count, H5T_NATIVE_FLOAT, data, nullptr);
}
void File::write_slab(const std::string& name, int64_t first, int64_t count, const uint8_t* data) {
  slab_impl(id_, path_, name, first, count, H5T_NATIVE_UINT8, data, nullptr);
}
void File::read_slab(const std::string& name, int64_t first, int64_t count, float* out) const {
  slab_impl(id_, path_, name, first, count, H5T_NATIVE_FLOAT, nullptr, out);
}
void File::read_slab(const std::string& name, int64_t first, int64_t count, uint8_t* out) const {
  slab_impl(id_, path_, name, first, count, H5T_NATIVE_UINT8, nullptr, out);
}

void File::write_strings(const std::string& name, const std::vector<std::string>& values) {
  Type t(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.id, H5T_VARIABLE);
  H5Tset_cset(t.id, H5T_CSET_UTF8);
  hsize_t n = values.size();
  Space space(H5Screate_simple(1, &n, nullptr));
  Plist lcpl(H5Pcreate(H5P_LINK_CREATE));
  H5Pset_create_intermediate_group(lcpl.id, 1);
  if (H5Lexists(id_, name.c_str(), H5P_DEFAULT) > 0) H5Ldelete(id_, name.c_str(), H5P_DEFAULT);
  Dataset d(H5Dcreate2(id_, name.c_str(), t.id, space.id, lcpl.id, H5P_DEFAULT, H5P_DEFAULT));
  if (d.id < 0) fail(path_, "cannot create dataset '" + name + "'");
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (n > 0 && H5Dwrite(d.id, t.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) < 0) {
    fail(path_, "cannot write dataset '" + name + "'");
  }
}

std::vector<float> File::read_float(const std::string& name) const { return read_impl<float>(id_, path_, name, H5T_NATIVE_FLOAT); }
std::vector<double> File::read_double(const std::string& name) const { return read_impl<double>(id_, path_, name, H5T_NATIVE_DOUBLE); }
std::vector<uint8_t> File::read_uint8(const std::string& name) const { return read_impl<uint8_t>(id_, path_, name, H5T_NATIVE_UINT8); }
std::vector<int64_t> File::read_int64(const std::string& name) const { return read_impl<int64_t>(id_, path_, name, H5T_NATIVE_INT64); }

std::vector<std::string> File::read_strings(const std::string& name) const {
  Dataset d(H5Dopen2(id_, name.c_str(), H5P_DEFAULT));
  if (d.id < 0) fail(path_, "no dataset '" + name + "'");
  Space s(H5Dget_space(d.id));
  hssize_t n = H5Sget_simple_extent_npoints(s.id);
  Type t(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.id, H5T_VARIABLE);
  H5Tset_cset(t.id, H5T_CSET_UTF8);
  std::vector<char*> ptrs(static_cast<size_t>(std::max<hssize_t>(n, 0)), nullptr);
  if (n > 0 && H5Dread(d.id, t.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) < 0) {
    fail(path_, "cannot read strings '" + name + "'");
  }
  std::vector<std::string> out;
  for (char* p : ptrs) out.emplace_back(p ? p : "");
  if (n > 0) H5Dvlen_reclaim(t.id, s.id, H5P_DEFAULT, ptrs.data());
  return out;
}

namespace {
void write_attr(hid_t file, const std::string& path, const std::string& object, const std::string& key, hid_t ftype,
                hid_t mtype, const void* value) {
  Object o(H5Oopen(file, object.c_str(), H5P_DEFAULT));
  if (o.id < 0) fail(path, "no object '" + object + "' for attribute '" + key + "'");
  if (H5Aexists(o.id, key.c_str()) > 0) H5Adelete(o.id, key.c_str());
  Space s(H5Screate(H5S_SCALAR));
  Attr a(H5Acreate2(o.id, key.c_str(), ftype, s.id, H5P_DEFAULT, H5P_DEFAULT));
  if (a.id < 0 || H5Awrite(a.id, mtype, value) < 0) fail(path, "cannot write attribute '" + key + "' on '" + object + "'");
}

Attr open_attr(hid_t file, const std::string& path, const std::string& object, const std::string& key) {
  Object o(H5Oopen(file, object.c_str(), H5P_DEFAULT));
  if (o.id < 0) fail(path, "no object '" + object + "'");
  hid_t a = H5Aopen(o.id, key.c_str(), H5P_DEFAULT);
  if (a < 0) fail(path, "no attribute '" + key + "' on '" + object + "'");
  return Attr(a);
}
}  // namespace

void File::set_attr(const std::string& object, const std::string& key, const std::string& value) {
  Type t(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.id, H5T_VARIABLE);
  H5Tset_cset(t.id, H5T_CSET_UTF8);
  const char* p = value.c_str();
  write_attr(id_, path_, object, key, t.id, t.id, &p);
}
void File::set_attr(const std::string& object, const std::string& key, int64_t value) {
  write_attr(id_, path_, object, key, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}
void File::set_attr(const std::string& object, const std::string& key, double value) {
  write_attr(id_, path_, object, key, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

bool File::has_attr(const std::string& object, const std::string& key) const {
  if (!exists(object)) return false;
  return H5Aexists_by_name(id_, object.c_str(), key.c_str(), H5P_DEFAULT) > 0;
}

std::string File::attr_string(const std::string& object, const std::string& key) const {
  Attr a = open_attr(id_, path_, object, key);
  Type ft(H5Aget_type(a.id));
  if (H5Tget_class(ft.id) != H5T_STRING) fail(path_, "attribute '" + key + "' on '" + object + "' is not a string");
  if (H5Tis_variable_str(ft.id) > 0) {
    Type t(H5Tcopy(H5T_C_S1));
    H5Tset_size(t.id, H5T_VARIABLE);
    H5Tset_cset(t.id, H5Tget_cset(ft.id));
    char* p = nullptr;
    if (H5Aread(a.id, t.id, &p) < 0) fail(path_, "cannot read attribute '" + key + "'");
    std::string out = p ? p : "";
    H5free_memory(p);
    return out;
  }
  // Fixed-length strings, as h5py writes for numpy bytes attributes.
  size_t size = H5Tget_size(ft.id);
  std::string out(size, '\0');
  if (H5Aread(a.id, ft.id, out.data()) < 0) fail(path_, "cannot read attribute '" + key + "'");
  out.resize(out.find('\0') == std::string::npos ? size : out.find('\0'));
  return out;
}

int64_t File::attr_int(const std::string& object, const std::string& key) const {
  Attr a = open_attr(id_, path_, object, key);
  int64_t v = 0;
  if (H5Aread(a.id, H5T_NATIVE_INT64, &v) < 0) fail(path_, "attribute '" + key + "' is not an integer");
  return v;
}
double File::attr_double(const std::string& object, const std::string& key) const {
  Attr a = open_attr(id_, path_, object, key);
  double v = 0;
  if (H5Aread(a.id, H5T_NATIVE_DOUBLE, &v) < 0) fail(path_, "attribute '" + key + "' is not a number");
  return v;
}

void File::flush() { H5Fflush(id_, H5F_SCOPE_GLOBAL); }

}  // namespace zsad::h5
