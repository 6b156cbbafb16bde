#pragma once
// Helpers shared by the results tests: temp dirs, running the Python references and the CLI.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

namespace zsad::results::testing {

inline std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}
inline std::string python() { return env_or("ZSAD_PYTHON", "/usr/bin/python3"); }
inline std::string source_dir() {
  return env_or("ZSAD_SOURCE_DIR", std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().string());
}
inline std::string script(const std::string& name) { return source_dir() + "/tests/results/" + name; }

struct CommandResult {
  int status;
  std::string out;
};

// Runs a shell command, capturing stdout (stderr is appended when merge_stderr).
inline CommandResult run(const std::string& cmd, bool merge_stderr = false) {
  std::string full = cmd + (merge_stderr ? " 2>&1" : "");
  FILE* p = popen(full.c_str(), "r");
  if (!p) return {-1, ""};
  std::string out;
  char buf[65536];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

inline std::string temp_dir(const std::string& name) {
  auto dir = std::filesystem::path(::testing::TempDir()) / ("zsad_results_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace zsad::results::testing
