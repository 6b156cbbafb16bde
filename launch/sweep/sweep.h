#pragma once
// Sweeps (Hydra's BasicSweeper semantics) and the on-disk layout of runs.
//
// Parameters come from the experiment's `sweep:` block first, then the command line; a command-line
// key already in the block replaces it in place. Every command-line override is a parameter (a
// plain `a=1` is a one-value sweep), so each job's override list names all of them. Jobs are the
// cartesian product, last parameter varying fastest, numbered 0..N-1 across the whole sweep.
//
// Layout: <output.root>/outputs/<experiment>/<YYYY-MM-DD>/<HH-MM-SS>/ for `zsad run`,
//         <output.root>/multirun/<experiment>/<YYYY-MM-DD>/<HH-MM-SS>/<num>/ for `zsad sweep`;
// each job dir holds .zsad/config.yaml (resolved), .zsad/overrides.yaml, .zsad/job.yaml
// (num, overrides, override_dirname without seed, status, exit_code, log) and run.log;
// the sweep root holds multirun.yaml, written before any job starts.
#include <ctime>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "launch/config/node.h"
#include "launch/jobs/runner.h"

namespace zsad::launch {

struct SweepParam {
  std::string key;                     // identity: key (+@package), without the +/++/~ prefix
  std::vector<std::string> overrides;  // one rendered override per value, e.g. "+tags.a=1"
};

// `sweep_block` may be null. `config_root` serves glob() over group options.
std::vector<SweepParam> sweep_params(const config::Node* sweep_block, const std::vector<std::string>& cli,
                                     const std::string& config_root);
// Cartesian product, last parameter fastest.
std::vector<std::vector<std::string>> cartesian(const std::vector<SweepParam>& params);

struct JobPlan {
  int num = 0;
  std::vector<std::string> overrides;
  std::string dir;
};

struct SweepPlan {
  std::string experiment_file;
  std::string config_root;
  std::string name;
  std::string sweep_dir;
  std::vector<std::string> cli_overrides;
  config::Node base_config;  // composed with the block, no per-job overrides (for multirun.yaml)
  std::vector<JobPlan> jobs;
};

// Composes the experiment once to read its sweep block and output root, then expands the jobs.
SweepPlan plan_sweep(const std::string& experiment, const std::vector<std::string>& cli, std::time_t now);
// Reads a sweep written by run_sweep (multirun.yaml) for --resume.
SweepPlan load_sweep_plan(const std::string& sweep_dir);

// <root>/<kind>/<name>/<YYYY-MM-DD>/<HH-MM-SS> (local time).
std::string timestamped_dir(const std::string& root, const std::string& kind, const std::string& name, std::time_t now);
// Sorted "k=v" joined by ',' leaving out `exclude` keys (Hydra's override_dirname; seed excluded).
std::string override_dirname(const std::vector<std::string>& overrides,
                             const std::vector<std::string>& exclude = {"seed"});

// --- job directories ---
// `choices` (group -> selected option, from compose) is recorded in job.yaml for aggregation.
using GroupChoices = std::vector<std::pair<std::string, std::string>>;
void write_job_files(const std::string& dir, const config::Node& resolved, const std::vector<std::string>& overrides,
                     int num, const std::string& status, const GroupChoices& choices = {});
void set_job_status(const std::string& dir, const std::string& status, int exit_code);
// `--run-dir DIR` of a run that is already there: the same config continues it (training resumes
// from its checkpoints); another config would overwrite its record, so that is a zsad::Error
// naming DIR/.zsad/config.yaml. With `check_contents` (rank 0 / the driver) also a zsad::Error
// when DIR is a file, a sweep directory, or holds zsad outputs (results/, checkpoints/, ...)
// without a run record; other files (notes, an sbatch --output log) are left alone and allowed.
void require_same_config_if_reused(const std::string& dir, const config::Node& resolved, bool check_contents = true);
// The directory of a single run (`zsad run`/`zsad eval`), created: `requested` (--run-dir, checked
// with require_same_config_if_reused) or a new <output.root>/outputs/<name>/<date>/<time>, with a
// _1, _2, ... suffix when another run started in the same second. Ranks other than 0 of a launched
// group pass check_contents = false: they may arrive after rank 0 has started writing.
std::string make_run_dir(const config::Node& resolved, const std::string& name, const std::string& requested,
                         bool check_contents = true);
// Runs the config's task in this process as rank `r` of a launched group (`zsad launch -n N --
// zsad run EXP --run-dir D`). Every rank passes the same `dir`; rank 0 records .zsad/config.yaml
// and .zsad/overrides.yaml there (no job.yaml: no driver tracks the job's state).
int run_as_launched_rank(const std::string& dir, const config::Node& resolved, const std::vector<std::string>& overrides,
                         const LaunchedRank& r, const JobRunner& runner);
std::string read_job_status(const std::string& dir);  // "" when the job has no job.yaml

// The command that runs a job's ranks, from the config's launcher section:
// local/1 rank: ZSAD job CFG; local/N: ZSAD launch -n N [--master-port P] -- ZSAD job CFG;
// mpirun: mpirun --allow-run-as-root --oversubscribe -np N [args] ZSAD job CFG.
std::vector<std::string> job_command(const config::Node& cfg, const std::string& config_path,
                                     const std::string& zsad_binary);

struct RunOptions {
  std::string zsad_binary;  // "" = this executable
  bool tee = false;         // also copy the job's output to our stdout/stderr (zsad run)
  int parallel = 1;         // jobs at once (sweeps)
  bool quiet = false;       // no per-job progress lines
  // When set, sweeps call this in this process, one job after another, instead of starting
  // `zsad job` processes (output is not captured in run.log). For tests and embedding.
  std::function<int(const JobContext&)> in_process;
};

// `zsad run`: composes nothing; writes .zsad/ files into `dir`, runs the job, records its status,
// returns its exit code. SIGINT/SIGTERM are forwarded to the job (status "stopped").
int run_single(const std::string& dir, const config::Node& resolved, const std::vector<std::string>& overrides,
               const RunOptions& opts, const GroupChoices& choices = {});

// `zsad sweep`: writes multirun.yaml (unless resuming), then runs every job whose status is not
// "completed", composing each job's config when it starts. Returns 0 when all jobs completed,
// 1 when some failed (each reported with its log path), 75 when a signal stopped the sweep
// (finished jobs stay intact; `--resume` runs the rest).
int run_sweep(const SweepPlan& plan, bool resume, const RunOptions& opts);

// Sweep launchers other than local execution (e.g. "slurm", registered by the code that submits
// job arrays): receive the plan and the jobs still to run, whose .zsad/config.yaml already exist.
using SweepLauncher = std::function<int(const SweepPlan&, const std::vector<JobPlan>& jobs)>;
std::map<std::string, SweepLauncher>& sweep_launcher_registry();

}  // namespace zsad::launch
