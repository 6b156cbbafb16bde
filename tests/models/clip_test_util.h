#pragma once
// Helpers shared by the CLIP tests: run make_clip_reference.py into a fresh temp dir, read
// reference arrays from its refs.h5, run the zsad CLI.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/h5.h"

namespace zsad::test {

inline std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

inline std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

inline std::string make_temp_dir(const std::string& stem) {
  std::string templ = "/tmp/" + stem + "_XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  const char* dir = mkdtemp(buf.data());
  if (!dir) throw std::runtime_error("mkdtemp failed");
  return dir;
}

inline void remove_dir(const std::string& dir) {
  if (dir.rfind("/tmp/", 0) == 0) std::system(("rm -rf " + shell_quote(dir)).c_str());
}

struct RunResult {
  int exit_code = -1;
  std::string out, err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs a shell command line, capturing stdout and stderr.
inline RunResult run_command(const std::string& cmd, const std::string& scratch_dir) {
  const std::string o = scratch_dir + "/cmd.out", e = scratch_dir + "/cmd.err";
  int status = std::system((cmd + " >" + shell_quote(o) + " 2>" + shell_quote(e)).c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(o);
  r.err = slurp(e);
  return r;
}

// A temp dir filled by tests/models/make_clip_reference.py; removed on destruction.
class ClipReference {
 public:
  ClipReference() {
    dir_ = make_temp_dir("zsad_clip_ref");
    const std::string py = env_or("ZSAD_PYTHON", "/usr/bin/python3");
    const std::string src = env_or("ZSAD_SOURCE_DIR", ".");
    auto r = run_command(shell_quote(py) + " " + shell_quote(src + "/tests/models/make_clip_reference.py") + " " +
                             shell_quote(dir_),
                         dir_);
    ok_ = r.exit_code == 0;
    log_ = r.out + r.err;
  }
  ~ClipReference() { remove_dir(dir_); }
  ClipReference(const ClipReference&) = delete;
  ClipReference& operator=(const ClipReference&) = delete;

  bool ok() const { return ok_; }
  const std::string& log() const { return log_; }
  const std::string& dir() const { return dir_; }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_, log_;
  bool ok_ = false;
};

struct Array {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

inline Array read_array(const std::string& file, const std::string& name) {
  h5::File f(file, h5::File::Mode::kRead);
  return Array{f.shape(name), f.read_float(name)};
}

// Max |a - b|; shapes must agree (reported as a test failure otherwise).
inline double max_abs_diff(const Array& a, const Array& b) {
  EXPECT_EQ(a.shape, b.shape);
  if (a.shape != b.shape || a.data.size() != b.data.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.data.size(); ++i) {
    double d = std::fabs(static_cast<double>(a.data[i]) - b.data[i]);
    if (std::isnan(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

}  // namespace zsad::test
