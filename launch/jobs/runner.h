#pragma once
// What a job runs. A job is a resolved config file; `zsad job CONFIG.yaml` (started once per rank
// by the launcher) loads it and calls the runner registered under the config key `task.name`.
//
// Built in: `shell` (task.command with /bin/sh -c in the job directory), `sleep` (task.seconds;
// SIGTERM -> exit 75 = stopped, resumable), `echo` (prints rank and config summary). Register more
// — e.g. "train", "eval" — from a file compiled into the `zsad` executable (launch/cli/*.cpp):
//
//   #include "launch/jobs/runner.h"
//   static int run_train(const zsad::launch::JobContext& job) { ...; return zsad::kExitSuccess; }
//   ZSAD_JOB_RUNNER("train", "train the method, then evaluate every test set", run_train);
//
// (or call register_job_runner() from code that runs before dispatch). A runner returns an exit
// code from common/exit_codes.h: 0 completed, 75 stopped after a checkpoint (resumable), else failed.
#include <functional>
#include <map>
#include <string>

#include "launch/config/node.h"

namespace zsad::launch {

struct JobContext {
  const config::Node& config;  // fully resolved
  std::string config_path;     // .../.zsad/config.yaml
  std::string job_dir;         // the run/job directory (holds .zsad/, run.log)
  int job_num = -1;            // sweep job number; -1 for a single run
  int rank = 0;                // from RANK / WORLD_SIZE (torchrun-style env), 0/1 otherwise
  int world_size = 1;
};

using JobRunner = std::function<int(const JobContext&)>;

// Checks a resolved config beyond the schema (e.g. dataset settings) and throws zsad::Error naming
// the key: what would otherwise stop a job only after it started, or after a sweep's first jobs ran.
using JobConfigCheck = std::function<void(const config::Node&)>;

struct JobRunnerEntry {
  std::string doc;
  JobRunner run;
  JobConfigCheck check;  // may be empty
};

// Registered runners by task name (the built-ins are present on first access).
std::map<std::string, JobRunnerEntry>& job_runner_registry();
void register_job_runner(const std::string& name, const std::string& doc, JobRunner fn, JobConfigCheck check = {});
// The check of cfg's task runner, if it has one (zsad run/eval before the run directory, zsad sweep
// for every job before anything is created).
void check_job_config(const config::Node& cfg);

// Loads a resolved config and runs its task in this process; returns the runner's exit code.
// Throws zsad::Error when task.name has no runner (listing the registered ones).
int run_job_config(const std::string& config_path);

// The rank of this process when a launcher started it — `zsad launch`/torchrun (RANK, WORLD_SIZE),
// a task of an srun step, or mpirun (OMPI_COMM_WORLD_*) — else rank 0 of 1 (dist::detect_env). An
// sbatch script's own shell is not a rank: there `zsad run` is the driver.
struct LaunchedRank {
  int rank = 0;
  int world_size = 1;
};
LaunchedRank launched_rank();

struct JobRunnerRegistrar {
  JobRunnerRegistrar(const std::string& name, const std::string& doc, JobRunner fn, JobConfigCheck check = {}) {
    register_job_runner(name, doc, std::move(fn), std::move(check));
  }
};

#define ZSAD_JOB_RUNNER_CONCAT2(a, b) a##b
#define ZSAD_JOB_RUNNER_CONCAT(a, b) ZSAD_JOB_RUNNER_CONCAT2(a, b)
#define ZSAD_JOB_RUNNER(name, doc, ...) \
  static ::zsad::launch::JobRunnerRegistrar ZSAD_JOB_RUNNER_CONCAT(zsad_job_runner_, __LINE__)(name, doc, __VA_ARGS__)

}  // namespace zsad::launch
