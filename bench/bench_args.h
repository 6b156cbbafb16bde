#pragma once
// `--name value` flags of the benchmark programs (they take a few numbers, no validation needed
// beyond std::stoi/stod throwing on garbage).
#include <string>

namespace zsad::bench {

inline std::string arg(int argc, char** argv, const std::string& name, const std::string& def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == "--" + name) return argv[i + 1];
  return def;
}

}  // namespace zsad::bench
