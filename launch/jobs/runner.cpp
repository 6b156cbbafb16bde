#include "launch/jobs/runner.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <thread>

#include "common/error.h"
#include "common/exit_codes.h"
#include "launch/config/compose.h"
#include "launch/config/yaml_io.h"
#include "launch/jobs/dir_lock.h"
#include "launch/local/process.h"
#include "trainer/dist/env.h"

namespace zsad::launch {

namespace fs = std::filesystem;

namespace {

std::atomic<int> g_stop{0};
void on_stop(int sig) { g_stop = sig; }

int run_shell(const JobContext& job) {
  config::Node cmd = config::get_or_default(job.config, "task.command");
  if (!cmd.is_string() || cmd.as_string().empty())
    throw Error("task 'shell' needs task.command (a shell command string)");
  SpawnOptions so;
  so.argv = {"/bin/sh", "-c", cmd.as_string()};
  so.cwd = job.job_dir;
  so.new_process_group = false;  // signals to the job's process group reach the shell too
  // SIGTERM/SIGINT/SIGUSR2 sent to the job (scancel, SLURM's --signal, a forwarded Ctrl-C) reach
  // the shell as well; the command decides (e.g. trap, save, exit 75) and its exit code is the
  // job's. Handlers (not SIG_IGN) so the shell starts with default dispositions it can trap.
  g_stop = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGUSR2, &sa, nullptr);
  pid_t pid = spawn(so);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw Error("waitpid failed");
  }
  // The handlers stay installed: a signal sent to every process of the job (SLURM signals the
  // task and then its whole process tree) may reach us again just after the shell exited.
  return decode_wait_status(status);
}

int run_sleep(const JobContext& job) {
  double seconds = config::get_or_default(job.config, "task.seconds").as_float();
  int code = static_cast<int>(config::get_or_default(job.config, "task.exit_code").as_int());
  g_stop = 0;
  struct sigaction sa {}, old_term {}, old_int {};
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGINT, &sa, &old_int);
  std::cout << "sleep task: sleeping " << seconds << " s" << std::endl;  // handlers are in place now
  auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
  while (std::chrono::steady_clock::now() < end && !g_stop)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  sigaction(SIGTERM, &old_term, nullptr);
  sigaction(SIGINT, &old_int, nullptr);
  if (g_stop) {
    std::cout << "sleep task: stopped by signal " << g_stop.load() << " (resumable)" << std::endl;
    return kExitStoppedResumable;
  }
  std::cout << "sleep task: slept " << seconds << " s" << std::endl;
  return code;
}

int run_echo(const JobContext& job) {
  std::cout << "rank " << job.rank << "/" << job.world_size << " job " << job.job_num
            << " experiment=" << config::get_or_default(job.config, "experiment").scalar_text()
            << " seed=" << config::get_or_default(job.config, "seed").scalar_text() << std::endl;
  return static_cast<int>(config::get_or_default(job.config, "task.exit_code").as_int());
}

void register_builtins(std::map<std::string, JobRunnerEntry>& r) {
  r["shell"] = {"run task.command with /bin/sh -c in the job directory", run_shell, {}};
  r["sleep"] = {"sleep task.seconds (SIGTERM/SIGINT: exit 75, resumable), then exit task.exit_code", run_sleep, {}};
  r["echo"] = {"print rank, job number, experiment and seed; exit task.exit_code", run_echo, {}};
}

int env_int(const char* name, int dflt) {
  const char* v = std::getenv(name);
  if (!v || !*v) return dflt;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  return *end == '\0' ? static_cast<int>(x) : dflt;
}

}  // namespace

std::map<std::string, JobRunnerEntry>& job_runner_registry() {
  static auto* r = [] {
    auto* m = new std::map<std::string, JobRunnerEntry>();
    register_builtins(*m);
    return m;
  }();
  return *r;
}

void register_job_runner(const std::string& name, const std::string& doc, JobRunner fn, JobConfigCheck check) {
  job_runner_registry()[name] = JobRunnerEntry{doc, std::move(fn), std::move(check)};
}

void check_job_config(const config::Node& cfg) {
  const config::Node task = config::get_or_default(cfg, "task.name");
  if (!task.is_string()) return;
  auto it = job_runner_registry().find(task.as_string());
  if (it != job_runner_registry().end() && it->second.check) it->second.check(cfg);
}

int run_job_config(const std::string& config_path) {
  // Composing a resolved config yields it unchanged (the round-trip property), and also undoes the
  // "\${" escaping of literal text, validates it, and lets `zsad job` take a plain experiment file.
  config::ComposeRequest req;
  req.experiment = config_path;
  config::Node cfg = config::compose(req).config;
  fs::path p = fs::absolute(config_path);
  std::string job_dir;
  if (p.parent_path().filename() == ".zsad") job_dir = p.parent_path().parent_path().string();
  else if (const char* d = std::getenv("ZSAD_JOB_DIR")) job_dir = d;
  else job_dir = p.parent_path().string();
  config::Node task = config::get_or_default(cfg, "task.name");
  std::string name = task.is_string() ? task.as_string() : "";
  auto& reg = job_runner_registry();
  auto it = reg.find(name);
  if (it == reg.end()) {
    std::string known;
    for (const auto& [k, v] : reg) known += (known.empty() ? "" : ", ") + k;
    throw Error(config_path + ": task.name '" + name + "' has no registered job runner (known: " + known + ")");
  }
  if (it->second.check) it->second.check(cfg);
  // Rank discovery (torchrun vars -> SLURM_PROCID/SLURM_NTASKS of an srun step -> OpenMPI -> single).
  dist::DistEnv d = dist::detect_env(dist::process_env());
  JobContext ctx{cfg, p.string(), job_dir, env_int("ZSAD_JOB_NUM", -1), d.rank, d.world_size};
  // A job run by SLURM (sbatch, array task) or by a sweep has no driver holding its directory:
  // rank 0 locks it, so a double submission stops here instead of training twice into it.
  std::optional<DirLock> lock;
  const char* locked = std::getenv(kRunDirLockedEnv);
  const std::string here = fs::absolute(job_dir).lexically_normal().string();
  if (d.rank == 0 && p.parent_path().filename() == ".zsad" && !(locked && here == locked))
    lock.emplace(job_dir, kRunDirLock, "run directory");
  return it->second.run(ctx);
}

LaunchedRank launched_rank() {
  const dist::DistEnv d = dist::detect_env(dist::process_env());
  return {d.rank, d.world_size};
}

}  // namespace zsad::launch
