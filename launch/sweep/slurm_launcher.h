#pragma once
// launcher.name=slurm: turns zsad runs and sweeps into sbatch submissions (docs/slurm.md).
// This is the glue between launch/ (configs, job directories) and slurm/ (scripts, sbatch):
// it reads the `slurm.*` keys into slurm::Resources and hands slurm/ plain job descriptions.
#include <string>
#include <vector>

#include "launch/config/node.h"
#include "launch/sweep/sweep.h"
#include "slurm/sbatch.h"

namespace zsad::launch {

// slurm.* keys of a resolved config (schema defaults for missing keys); validated.
slurm::Resources slurm_resources(const config::Node& cfg);

// True when the plan's jobs select launcher.name=slurm (composes the first job).
bool plan_uses_slurm(const SweepPlan& plan);

// The sbatch scripts a sweep would submit (one job array per distinct resource set), for --dry-run.
std::string slurm_sweep_scripts(const SweepPlan& plan);

// Submits `jobs` (their .zsad/config.yaml exist) as job arrays; records the submission in
// <sweep>/.slurm/submissions.jsonl and each job's slurm_job_id / slurm_log in its .zsad/job.yaml.
// Jobs whose recorded SLURM id is still queued are skipped (a --resume does not duplicate them).
int submit_slurm_sweep(const SweepPlan& plan, const std::vector<JobPlan>& jobs);

// `zsad run EXP --launcher slurm`: writes the job files into `dir` and submits one batch job.
int submit_slurm_run(const std::string& dir, const config::Node& resolved, const std::vector<std::string>& overrides,
                     const GroupChoices& choices = {});

// Registers submit_slurm_sweep as the "slurm" entry of sweep_launcher_registry().
void register_slurm_sweep_launcher();

// Sets extra keys in <dir>/.zsad/job.yaml (keeps the others).
void update_job_yaml(const std::string& dir, const std::vector<std::pair<std::string, config::Node>>& values);

}  // namespace zsad::launch
