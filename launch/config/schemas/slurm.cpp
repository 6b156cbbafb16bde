// Keys read by the SLURM launcher (launcher.name=slurm; docs/slurm.md). Rendered by slurm/sbatch.h.
#include "launch/config/schema.h"

namespace zsad::config {

void register_slurm_schema(Schema& s) {
  s.section("slurm", "sbatch resources, job arrays and preemption for launcher.name=slurm (docs/slurm.md)");
  s.add("slurm.nodes", Type::kInt, 1, "--nodes: nodes per job (each sweep job may itself be multi-node)");
  s.add("slurm.ntasks_per_node", Type::kInt, nullptr,
        "--ntasks-per-node: ranks per node, one per GPU (null: launcher.nproc)");
  s.add("slurm.gpus_per_node", Type::kInt, 0, "--gpus-per-node (0: not requested)");
  s.add("slurm.cpus_per_task", Type::kInt, 1, "--cpus-per-task; also each rank's OMP_NUM_THREADS");
  s.add("slurm.mem", Type::kString, nullptr, "--mem per node, e.g. 64G (null: cluster default)");
  s.add("slurm.time", Type::kAny, "01:00:00", "--time limit: minutes (int), HH:MM:SS or D-HH:MM:SS");
  s.add("slurm.partition", Type::kString, nullptr, "--partition (null: cluster default)");
  s.add("slurm.account", Type::kString, nullptr, "--account");
  s.add("slurm.qos", Type::kString, nullptr, "--qos");
  s.add("slurm.constraint", Type::kString, nullptr, "--constraint");
  s.add("slurm.job_name", Type::kString, nullptr, "--job-name (null: zsad-<experiment>)");
  s.add("slurm.extra", Type::kAny, Node::list(),
        "more #SBATCH directives: a list ['mail-type=END', '--exclusive'] or a map {mail-type: END}");
  s.add("slurm.setup", Type::kList, Node::list(), "shell lines run before srun (module load ..., source venv)");
  s.add("slurm.srun_args", Type::kList, Node::list(), "extra srun arguments");
  s.add("slurm.mpi", Type::kString, nullptr, "srun --mpi=VALUE, e.g. pmix for the mpi backend (null: none)");
  s.add("slurm.signal", Type::kString, "USR2", "signal sent before the time limit (USR2: NCCL may use USR1)");
  s.add("slurm.signal_seconds", Type::kInt, 120, "seconds before the time limit the signal is sent (--signal=SIG@S)");
  s.add("slurm.requeue", Type::kBool, true, "--requeue, and requeue a job whose ranks checkpointed after the signal");
  s.add("slurm.max_requeues", Type::kInt, 3, "cap on requeues (SLURM_RESTART_COUNT) before a job stays stopped");
  s.add("slurm.requeue_command", Type::kString, "scontrol requeue",
        "command the job script runs (with the job id appended) to requeue itself ('' = never)");
  s.add("slurm.array_parallelism", Type::kInt, 256, "--array=0-(N-1)%P: sweep jobs running at once (0: no limit)");
  s.add("slurm.zsad_binary", Type::kString, nullptr, "zsad executable the ranks run (null: this one)");
}

}  // namespace zsad::config
