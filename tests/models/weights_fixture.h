#pragma once
// Shared by tests/models/weights_*.cpp: runs tests/models/make_weight_files.py with $ZSAD_PYTHON
// once per script version (ctest runs every test in its own process; the files are cached in
// the test working directory under a name derived from the script's contents) and compares a
// StateDict with the values Python read back (expected.h5).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "common/error.h"
#include "common/h5.h"
#include "models/clip/weights.h"
#include "clip_test_util.h"

namespace zsad::test {

inline std::string env_or_fail(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) throw std::runtime_error(std::string("environment variable ") + name + " is not set (run through ctest)");
  return v;
}

inline void write_file_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Directory with the generated weight files (created on first use).
inline std::string weight_files_dir() {
  namespace fs = std::filesystem;
  static std::string dir;
  if (!dir.empty()) return dir;
  const std::string script = env_or_fail("ZSAD_SOURCE_DIR") + "/tests/models/make_weight_files.py";
  const std::string python = env_or_fail("ZSAD_PYTHON");
  const std::string text = slurp(script);
  if (text.empty()) throw std::runtime_error("cannot read " + script);
  uint64_t h = 1469598103934665603ull;  // FNV-1a of the script: a new script version regenerates
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  std::ostringstream name;
  name << "weight_files_" << std::hex << h;
  const fs::path final_dir = fs::absolute(name.str());
  if (!fs::exists(final_dir / "expected.h5")) {
    const fs::path tmp = fs::absolute(name.str() + ".tmp" + std::to_string(::getpid()));
    fs::remove_all(tmp);
    const std::string cmd = "'" + python + "' '" + script + "' '" + tmp.string() + "'";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed: " + cmd);
    std::error_code ec;
    fs::rename(tmp, final_dir, ec);  // another test process may have won the race: use its copy
    if (ec) fs::remove_all(tmp);
    if (!fs::exists(final_dir / "expected.h5")) throw std::runtime_error("no expected.h5 in " + final_dir.string());
  }
  dir = final_dir.string();
  return dir;
}

inline std::string weight_file(const std::string& name) { return weight_files_dir() + "/" + name; }

inline std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kHalf: return "float16";
    case at::kDouble: return "float64";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return "other";
  }
}

inline std::string join(at::IntArrayRef v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

// Compares `sd` with group `group` of expected.h5: same names, dtypes, shapes, exact values; with
// `layout`, also strides, storage offsets and which tensors share a storage.
inline void expect_matches_python(const models::StateDict& sd, const std::string& group, bool layout) {
  h5::File f(weight_file("expected.h5"), h5::File::Mode::kRead);
  const auto names = f.children("/" + group);
  ASSERT_FALSE(names.empty());
  std::set<std::string> expected(names.begin(), names.end()), got;
  for (const auto& kv : sd) got.insert(kv.first);
  ASSERT_EQ(got, expected) << group;

  std::map<int64_t, const void*> storage_by_id;
  std::map<const void*, int64_t> id_by_storage;
  for (const auto& name : names) {
    SCOPED_TRACE(group + " / " + name);
    const std::string ds = "/" + group + "/" + name;
    const at::Tensor& t = sd.at(name);
    EXPECT_TRUE(t.device().is_cpu());
    EXPECT_EQ(dtype_name(t.scalar_type()), f.attr_string(ds, "dtype"));
    EXPECT_EQ(join(t.sizes()), f.attr_string(ds, "shape"));
    if (at::isFloatingType(t.scalar_type())) {
      const auto want = f.read_double(ds);
      const at::Tensor v = t.to(at::kDouble).contiguous().reshape({-1});
      ASSERT_EQ(static_cast<size_t>(v.numel()), want.size());
      const double* p = v.data_ptr<double>();
      size_t bad = 0;
      for (size_t i = 0; i < want.size(); ++i) bad += !(p[i] == want[i] || (std::isnan(p[i]) && std::isnan(want[i])));
      EXPECT_EQ(bad, 0u) << "values differ";
    } else {
      const auto want = f.read_int64(ds);
      const at::Tensor v = t.to(at::kLong).contiguous().reshape({-1});
      ASSERT_EQ(static_cast<size_t>(v.numel()), want.size());
      const int64_t* p = v.data_ptr<int64_t>();
      size_t bad = 0;
      for (size_t i = 0; i < want.size(); ++i) bad += p[i] != want[i];
      EXPECT_EQ(bad, 0u) << "values differ";
    }
    if (layout) {
      EXPECT_EQ(join(t.strides()), f.attr_string(ds, "stride"));
      EXPECT_EQ(t.storage_offset(), f.attr_int(ds, "offset"));
      if (t.numel() > 0) {
        const int64_t id = f.attr_int(ds, "storage");
        const void* storage = t.storage().data();
        auto a = storage_by_id.emplace(id, storage);
        auto b = id_by_storage.emplace(storage, id);
        EXPECT_EQ(a.first->second, storage) << "Python shares this storage with another tensor; C++ does not";
        EXPECT_EQ(b.first->second, id) << "C++ shares this storage with another tensor; Python does not";
      }
    }
  }
}

// Runs `fn`, expects a zsad::Error whose message names `path`, contains `needle` and is one line.
template <typename Fn>
void expect_one_line_error(Fn fn, const std::string& path, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error for " << path;
  } catch (const zsad::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "expected '" << needle << "' in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line message: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a zsad::Error: " << e.what();
  }
}

}  // namespace zsad::test
