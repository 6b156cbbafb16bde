#pragma once
// Helpers shared by the launch tests: temporary experiment trees and running the zsad CLI.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace zsad_test {

namespace fs = std::filesystem;

inline std::string env_or_fail(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) throw std::runtime_error(std::string("environment variable ") + name + " is not set (run through ctest)");
  return v;
}

inline std::string zsad_binary() { return env_or_fail("ZSAD_BINARY"); }
inline std::string source_dir() { return env_or_fail("ZSAD_SOURCE_DIR"); }

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "zsad-launch-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
    path = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

inline void write_file(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream o(p);
  o << text;
}

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

struct CliResult {
  int code = -1;
  std::string out, err;
};

// A running child with stdout/stderr captured to files in `log_dir`.
struct Child {
  pid_t pid = -1;
  std::string out_path, err_path;
};

inline Child start(const std::vector<std::string>& argv, const std::string& cwd,
                   const std::vector<std::pair<std::string, std::string>>& env, const std::string& log_dir) {
  Child c;
  static int counter = 0;
  ++counter;
  c.out_path = log_dir + "/child" + std::to_string(counter) + ".out";
  c.err_path = log_dir + "/child" + std::to_string(counter) + ".err";
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  c.pid = fork();
  if (c.pid == 0) {
    int o = open(c.out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(c.err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, 1);
    dup2(e, 2);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    execv(args[0], args.data());
    _exit(127);
  }
  return c;
}

inline CliResult finish(const Child& c) {
  int status = 0;
  waitpid(c.pid, &status, 0);
  CliResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(c.out_path);
  r.err = read_file(c.err_path);
  return r;
}

// Runs `zsad ARGS...` in `cwd` and waits.
inline CliResult run_zsad(const std::vector<std::string>& args, const std::string& cwd,
                          const std::vector<std::pair<std::string, std::string>>& env = {}) {
  std::vector<std::string> argv{zsad_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return finish(start(argv, cwd, env, cwd));
}

template <class Pred>
bool wait_until(Pred pred, double seconds) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

// Runs a python reference script beside the tests; returns stdout.
inline std::string run_python(const std::string& script, const std::vector<std::string>& args, const std::string& cwd) {
  std::vector<std::string> argv{env_or_fail("ZSAD_PYTHON"), source_dir() + "/tests/launch/" + script};
  argv.insert(argv.end(), args.begin(), args.end());
  CliResult r = finish(start(argv, cwd, {}, cwd));
  if (r.code != 0) throw std::runtime_error(script + " failed: " + r.err);
  return r.out;
}

}  // namespace zsad_test
