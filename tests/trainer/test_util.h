#pragma once
// Text and shell helpers shared by the trainer tests (no LibTorch).
#include <cstddef>
#include <fstream>
#include <sstream>
#include <string>

namespace zsad::testing {

// s in single quotes for /bin/sh.
inline std::string shell_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

// The whole file ("" when it cannot be read).
inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// How often `what` occurs in s (overlapping occurrences count).
inline size_t count_occurrences(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

}  // namespace zsad::testing
