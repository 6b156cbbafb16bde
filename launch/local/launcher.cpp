#include "launch/local/launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "common/error.h"
#include "launch/local/process.h"
#include "models/clip/compute_threads.h"

namespace zsad::launch {

namespace {

struct Stream {
  int fd = -1;
  int out_fd = 1;  // where prefixed lines go
  std::string buf;
};

struct Rank {
  pid_t pid = -1;
  bool running = false;
  int code = 0;
  Stream out, err;
};

void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    off += static_cast<size_t>(n);
  }
}

void flush_lines(Stream& s, const std::string& prefix, bool final) {
  size_t start = 0;
  std::string out;
  while (true) {
    size_t nl = s.buf.find('\n', start);
    if (nl == std::string::npos) break;
    out += prefix + s.buf.substr(start, nl - start + 1);
    start = nl + 1;
  }
  s.buf.erase(0, start);
  if (final && !s.buf.empty()) {
    out += prefix + s.buf + "\n";
    s.buf.clear();
  }
  if (!out.empty()) write_all(s.out_fd, out);
}

}  // namespace

int omp_threads_for(int64_t processes) {
  return static_cast<int>(std::max<int64_t>(1, models::process_cpus() / std::max<int64_t>(1, processes)));
}

std::vector<std::string> mpirun_command(int nproc, const std::vector<std::string>& command,
                                        const std::vector<std::string>& extra_args) {
  std::vector<std::string> out{"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", std::to_string(nproc)};
  out.insert(out.end(), extra_args.begin(), extra_args.end());
  out.insert(out.end(), command.begin(), command.end());
  return out;
}

int run_local(const std::vector<std::string>& command, const LocalLaunchOptions& opts) {
  if (command.empty()) throw UsageError("no command to launch (usage: zsad launch -n N -- CMD...)");
  if (opts.nproc < 1) throw UsageError("-n must be at least 1, got " + std::to_string(opts.nproc));
  int port = opts.master_port > 0 ? opts.master_port : pick_free_port();
  SignalWatcher signals;
  std::vector<Rank> ranks(static_cast<size_t>(opts.nproc));
  // A rank that cannot be started (no file descriptors, no processes left) ends the ones already
  // running before the error propagates: none is left waiting for a peer that never comes.
  auto abandon = [&](const std::string& why) {
    for (auto& rk : ranks)
      if (rk.running) {
        signal_process_tree(rk.pid, SIGKILL);
        waitpid(rk.pid, nullptr, 0);
        rk.running = false;
      }
    throw Error(why);
  };
  for (int r = 0; r < opts.nproc; ++r) {
    Rank& rank = ranks[static_cast<size_t>(r)];
    int out_pipe[2], err_pipe[2];
    if (pipe(out_pipe) != 0)
      abandon("cannot start rank " + std::to_string(r) + " of " + std::to_string(opts.nproc) + ": pipe: " +
              std::strerror(errno) + " (ulimit -n?)");
    if (pipe(err_pipe) != 0) {
      const int err = errno;
      close(out_pipe[0]);
      close(out_pipe[1]);
      abandon("cannot start rank " + std::to_string(r) + " of " + std::to_string(opts.nproc) + ": pipe: " +
              std::strerror(err) + " (ulimit -n?)");
    }
    for (int fd : {out_pipe[0], err_pipe[0]}) fcntl(fd, F_SETFD, FD_CLOEXEC);
    SpawnOptions so;
    so.argv = command;
    so.env = {{"RANK", std::to_string(r)},
              {"WORLD_SIZE", std::to_string(opts.nproc)},
              {"LOCAL_RANK", std::to_string(r)},
              {"LOCAL_WORLD_SIZE", std::to_string(opts.nproc)},
              {"GROUP_RANK", "0"},
              {"MASTER_ADDR", opts.master_addr},
              {"MASTER_PORT", std::to_string(port)}};
    // The ranks share this machine's cores, unless the user chose.
    if (!std::getenv("OMP_NUM_THREADS")) so.env.emplace_back("OMP_NUM_THREADS", std::to_string(omp_threads_for(opts.nproc)));
    so.stdout_fd = opts.prefix_output ? out_pipe[1] : -1;
    so.stderr_fd = opts.prefix_output ? err_pipe[1] : -1;
    try {
      rank.pid = spawn(so);
    } catch (const std::exception& e) {
      for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) close(fd);
      abandon("cannot start rank " + std::to_string(r) + " of " + std::to_string(opts.nproc) + ": " + e.what());
    }
    rank.running = true;
    close(out_pipe[1]);
    close(err_pipe[1]);
    if (opts.prefix_output) {
      rank.out = Stream{out_pipe[0], 1, ""};
      rank.err = Stream{err_pipe[0], 2, ""};
    } else {
      close(out_pipe[0]);
      close(err_pipe[0]);
    }
  }

  using Clock = std::chrono::steady_clock;
  bool stopping = false;
  Clock::time_point kill_at{};
  int first_failure = 0;
  bool failure_seen = false;
  int forwarded = 0;
  Clock::time_point drain_until{};
  auto stop_all = [&](int sig) {
    for (auto& rk : ranks)
      if (rk.running) signal_process_tree(rk.pid, sig);
    if (!stopping) {
      stopping = true;
      kill_at = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(opts.grace_seconds * 1000));
    }
  };

  while (true) {
    bool any_running = false, any_open = false;
    for (auto& rk : ranks) {
      any_running = any_running || rk.running;
      any_open = any_open || rk.out.fd >= 0 || rk.err.fd >= 0;
    }
    if (!any_running && !any_open) break;
    // Every rank has exited but something they started still holds the pipes: drain briefly,
    // then stop listening (a leftover background process must not keep the launcher alive).
    if (!any_running) {
      if (drain_until == Clock::time_point{}) drain_until = Clock::now() + std::chrono::milliseconds(500);
      if (Clock::now() > drain_until) {
        for (auto& rk : ranks) {
          for (Stream* s : {&rk.out, &rk.err}) {
            if (s->fd < 0) continue;
            flush_lines(*s, "[rank " + std::to_string(&rk - ranks.data()) + "] ", true);
            close(s->fd);
            s->fd = -1;
          }
        }
        break;
      }
    }

    std::vector<pollfd> pfds;
    std::vector<std::pair<size_t, Stream*>> owners;
    pfds.push_back({signals.fd(), POLLIN, 0});
    owners.emplace_back(SIZE_MAX, nullptr);
    for (size_t r = 0; r < ranks.size(); ++r) {
      for (Stream* s : {&ranks[r].out, &ranks[r].err}) {
        if (s->fd >= 0) {
          pfds.push_back({s->fd, POLLIN, 0});
          owners.emplace_back(r, s);
        }
      }
    }
    poll(pfds.data(), pfds.size(), 50);
    if (pfds[0].revents & POLLIN) {
      // Every signal is forwarded; the ranks decide (checkpoint, exit 75). A second SIGINT/SIGTERM
      // means "now": SIGKILL. No kill timer here: a checkpoint may take long.
      for (int sig : signals.take()) {
        if (sig != SIGUSR2 && forwarded) {
          for (auto& rk : ranks)
            if (rk.running) signal_process_tree(rk.pid, SIGKILL);
          continue;
        }
        if (sig != SIGUSR2) forwarded = sig;
        for (auto& rk : ranks)
          if (rk.running) signal_process_tree(rk.pid, sig);
      }
    }
    for (size_t i = 1; i < pfds.size(); ++i) {
      if (!(pfds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Stream* s = owners[i].second;
      char buf[8192];
      ssize_t n = read(s->fd, buf, sizeof buf);
      std::string prefix = "[rank " + std::to_string(owners[i].first) + "] ";
      if (n > 0) {
        s->buf.append(buf, static_cast<size_t>(n));
        flush_lines(*s, prefix, false);
      } else if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        flush_lines(*s, prefix, true);
        close(s->fd);
        s->fd = -1;
      }
    }
    for (auto& rk : ranks) {
      if (!rk.running) continue;
      int status = 0;
      pid_t p = waitpid(rk.pid, &status, WNOHANG);
      if (p == rk.pid) {
        rk.running = false;
        rk.code = decode_wait_status(status);
        if (rk.code != 0 && !failure_seen) {
          failure_seen = true;
          first_failure = rk.code;
          if (!stopping && !forwarded) {
            std::string msg = "zsad launch: rank " + std::to_string(&rk - ranks.data()) + " exited with code " +
                              std::to_string(rk.code) + "; stopping the other ranks\n";
            write_all(2, msg);
          }
          // A rank that stopped resumably after our forwarded signal is not a failure: the others
          // are checkpointing too and must not be hurried.
          if (!(forwarded && rk.code == 75)) stop_all(SIGTERM);
        }
      }
    }
    if (stopping && Clock::now() > kill_at) {
      for (auto& rk : ranks)
        if (rk.running) signal_process_tree(rk.pid, SIGKILL);
      kill_at = Clock::now() + std::chrono::hours(1);
    }
  }
  if (failure_seen) return first_failure;
  return 0;
}

}  // namespace zsad::launch
