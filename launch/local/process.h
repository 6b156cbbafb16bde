#pragma once
// Child processes for the launcher and the sweeper: fork/exec with extra environment, output
// redirection, each child in its own process group (so a signal reaches its whole tree, and a
// terminal's Ctrl-C reaches only us, who forward it once).
#include <sys/types.h>

#include <atomic>
#include <string>
#include <utility>
#include <vector>

namespace zsad::launch {

struct SpawnOptions {
  std::vector<std::string> argv;
  std::vector<std::pair<std::string, std::string>> env;  // set in the child (on top of ours)
  std::string cwd;                                        // "" = ours
  int stdout_fd = -1;  // dup2'ed onto the child's stdout; -1 = inherit
  int stderr_fd = -1;  // -1 = inherit
  bool new_process_group = true;
};

// Starts the process; throws zsad::Error when fork fails. A failing exec makes the child print
// "zsad: cannot execute ARGV0: reason" and exit 127.
pid_t spawn(const SpawnOptions& opts);

// Exit status as a shell reports it: the exit code, or 128 + signal number.
int decode_wait_status(int status);

// Sends `sig` to the child's process group (or the child when it has none).
void signal_process_tree(pid_t pid, int sig);

// Installs SIGINT/SIGTERM/SIGUSR2 handlers for its lifetime; the previous handlers come back
// afterwards. `fd()` becomes readable when a signal arrives (self-pipe), for poll() loops.
class SignalWatcher {
 public:
  SignalWatcher();
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

  int fd() const;
  // The signals received since the last call, in order.
  std::vector<int> take();

 private:
  struct Impl;
  Impl* impl_;
};

// The absolute path of the running executable (/proc/self/exe).
std::string self_executable();

// A free TCP port on 127.0.0.1 (bound with port 0, then released).
int pick_free_port();

}  // namespace zsad::launch
