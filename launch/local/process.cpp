#include "launch/local/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/error.h"

namespace zsad::launch {

pid_t spawn(const SpawnOptions& opts) {
  if (opts.argv.empty()) throw Error("spawn: empty command");
  // Prepare everything that allocates before fork.
  std::vector<char*> argv;
  for (const auto& a : opts.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) throw Error(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    if (opts.new_process_group) setpgid(0, 0);
    // Default dispositions in the child (we may have handlers or ignored signals installed).
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGUSR2, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (opts.stdout_fd >= 0) dup2(opts.stdout_fd, 1);
    if (opts.stderr_fd >= 0) dup2(opts.stderr_fd, 2);
    for (const auto& [k, v] : opts.env) setenv(k.c_str(), v.c_str(), 1);
    if (!opts.cwd.empty() && chdir(opts.cwd.c_str()) != 0) {
      std::string msg = "zsad: cannot enter directory " + opts.cwd + ": " + std::strerror(errno) + "\n";
      (void)!write(2, msg.data(), msg.size());
      _exit(127);
    }
    execvp(argv[0], argv.data());
    std::string msg = std::string("zsad: cannot execute ") + argv[0] + ": " + std::strerror(errno) + "\n";
    (void)!write(2, msg.data(), msg.size());
    _exit(127);
  }
  if (opts.new_process_group) setpgid(pid, pid);  // also from the parent: no race with kill()
  return pid;
}

int decode_wait_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

void signal_process_tree(pid_t pid, int sig) {
  if (pid <= 0) return;
  if (kill(-pid, sig) != 0) kill(pid, sig);
}

namespace {
int g_pipe[2] = {-1, -1};
void on_signal(int sig) {
  int saved = errno;
  char c = static_cast<char>(sig);
  if (g_pipe[1] >= 0) (void)!write(g_pipe[1], &c, 1);
  errno = saved;
}
}  // namespace

struct SignalWatcher::Impl {
  struct sigaction old_int {}, old_term {}, old_usr2 {};
};

SignalWatcher::SignalWatcher() : impl_(new Impl) {
  if (g_pipe[0] < 0) {
    if (pipe(g_pipe) != 0) throw Error("pipe failed");
    for (int fd : g_pipe) {
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
      fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
  }
  take();  // forget signals from an earlier watcher
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, &impl_->old_int);
  sigaction(SIGTERM, &sa, &impl_->old_term);
  sigaction(SIGUSR2, &sa, &impl_->old_usr2);
}

SignalWatcher::~SignalWatcher() {
  sigaction(SIGINT, &impl_->old_int, nullptr);
  sigaction(SIGTERM, &impl_->old_term, nullptr);
  sigaction(SIGUSR2, &impl_->old_usr2, nullptr);
  delete impl_;
}

int SignalWatcher::fd() const { return g_pipe[0]; }

std::vector<int> SignalWatcher::take() {
  std::vector<int> out;
  char buf[64];
  ssize_t n;
  while ((n = read(g_pipe[0], buf, sizeof buf)) > 0)
    for (ssize_t i = 0; i < n; ++i) out.push_back(static_cast<unsigned char>(buf[i]));
  return out;
}

std::string self_executable() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw Error("cannot resolve /proc/self/exe");
  return std::string(buf, static_cast<size_t>(n));
}

int pick_free_port() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) throw Error(std::string("socket failed: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(s);
    throw Error(std::string("bind failed: ") + std::strerror(errno));
  }
  socklen_t len = sizeof addr;
  getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(s);
  return port;
}

}  // namespace zsad::launch
