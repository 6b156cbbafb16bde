#pragma once
// sbatch job scripts for zsad jobs (docs/slurm.md). launch/ hands this library plain job
// descriptions (job directory, resolved config path, overrides) plus the resources read from the
// config's `slurm.*` keys; this library never includes launch/.
//
// Layout A of platform.md §2.1: one task per GPU. The batch script runs
//   srun --nodes=N --ntasks-per-node=T --cpus-per-task=C [--gpus-per-node=G] ZSAD job CFG
// so every rank is a `zsad job` process that finds its rank in SLURM_PROCID/SLURM_STEP_NUM_TASKS/
// SLURM_LOCALID (trainer/dist/env.h), MASTER_ADDR in the first host of SLURM_STEP_NODELIST and
// MASTER_PORT derived from SLURM_JOB_ID and SLURM_STEP_ID.
//
// A sweep is one job array: the array index IS the sweep job number (`--array=0-99%10`; after a
// partial --resume only the remaining numbers, e.g. `--array=3,7-9%2`), and a `case` statement in
// the script maps it to that job's directory.
//
// Preemption (the script is the "wrapper"; the ranks never requeue themselves):
//   `--signal=USR2@S` makes SLURM send SIGUSR2 to every job step S seconds before the time limit
//   (and at preemption with preempt_send_user_signal). The ranks checkpoint and exit 75. srun
//   returns 75 and the batch shell, which received no signal itself, runs the requeue command
//   (`scontrol requeue <id>`, id = SLURM_JOB_ID, or ARRAYID_INDEX for an array element: an
//   element's SLURM_JOB_ID can equal the array's id, which would requeue every element) unless
//   SLURM_RESTART_COUNT reached max_requeues.
//   `scancel` sends SIGTERM to the steps AND the batch shell: the ranks checkpoint and exit 75,
//   the script sees its own SIGTERM and records the job as stopped without requeueing it.
#include <map>
#include <string>
#include <vector>

namespace zsad::slurm {

// What one job (or every element of a job array) asks SLURM for; mirrors the `slurm.*` keys.
struct Resources {
  int nodes = 1;
  int ntasks_per_node = 1;  // ranks per node (one per GPU on GPU nodes)
  int gpus_per_node = 0;    // 0: no --gpus-per-node
  int cpus_per_task = 1;    // also OMP_NUM_THREADS of each rank
  std::string mem;          // "" or e.g. "64G", "0" (all of the node)
  std::string time = "01:00:00";
  std::string partition, account, qos, constraint;  // "" = not set
  std::string job_name;                              // "" = zsad-<experiment>
  std::vector<std::string> extra;      // more directives: "mail-type=END" or "--exclusive"
  std::vector<std::string> setup;      // shell lines run before srun (module load, source venv, ...)
  std::vector<std::string> srun_args;  // more srun arguments
  std::string mpi;                     // srun --mpi=VALUE ("pmix" for the mpi backend); "" = none
  std::string signal = "USR2";         // sent signal_seconds before the time limit
  int signal_seconds = 120;
  bool requeue = true;                 // --requeue and requeue after a checkpointed USR2 stop
  int max_requeues = 3;                // cap on SLURM_RESTART_COUNT for self-requeues
  std::string requeue_command = "scontrol requeue";  // "" = never requeue; gets the job id appended
  int array_parallelism = 256;         // %P of --array (min with the number of jobs); 0 = no limit
};

// Throws zsad::Error naming the offending `slurm.<key>` and value.
void validate(const Resources& r);

// One job: its directory holds .zsad/config.yaml and gets run.log.
struct JobSpec {
  int num = -1;                        // sweep job number = array index; -1 for a single run
  std::string dir;                     // absolute
  std::string config_path;             // absolute, usually <dir>/.zsad/config.yaml
  std::vector<std::string> overrides;  // shown in a comment
};

struct ScriptRequest {
  std::string experiment;    // names the job (zsad-<experiment>)
  std::string zsad_binary;   // absolute path of the zsad executable the ranks run
  std::string log_dir;       // absolute; %j / %A_%a batch logs go here
  std::string sweep_dir;     // "" for a single run
  std::vector<JobSpec> jobs; // one job: a plain batch job (unless as_array); several: a job array
  bool as_array = false;     // force a job array even for one job (a resumed sweep with one job left)
};

// The complete sbatch script (bash), directives first.
std::string render_script(const ScriptRequest& req, const Resources& r);

// The #SBATCH directives (without the "#SBATCH " prefix), in the order the script lists them.
std::vector<std::string> directives(const ScriptRequest& req, const Resources& r);

// The srun command line the script runs (one string, shell syntax).
std::string srun_line(const Resources& r);

// "--array" value: sorted indices compressed into ranges, "%P" with P = min(count, parallelism)
// (no "%" when parallelism <= 0). {0..99}, 10 -> "0-99%10"; {3,7,8,9}, 2 -> "3,7-9%2".
std::string array_spec(std::vector<int> indices, int parallelism);

// POSIX shell single-quoting.
std::string shell_quote(const std::string& s);

}  // namespace zsad::slurm
