// Keys read by launch/ itself: naming, seeding, output layout, launcher, the job's task, sweeps.
#include "launch/config/schema.h"

namespace zsad::config {

void register_core_schema(Schema& s) {
  s.add("experiment", Type::kString, nullptr,
        "experiment name used in output paths (default: the experiment file's name)");
  s.add("seed", Type::kInt, 0, "global random seed");
  s.add("tags", Type::kMap, Node::map(), "free-form tags (+tags.<name>=value); never validated");
  s.add("sweep", Type::kMap, nullptr,
        "named ablation: key -> sweep expression ('1,2,3', 'range(0,3)', 'glob(*)'); expanded by zsad sweep");

  s.section("output", "where runs are written");
  s.add("output.root", Type::kString, ".",
        "root of outputs/<experiment>/<date>/<time>/ and multirun/<experiment>/<date>/<time>/<job>/");

  s.section("launcher", "how each job's ranks are started");
  s.add("launcher.name", Type::kString, "local", "rank launcher").choices({"local", "mpirun", "slurm"});
  s.add("launcher.nproc", Type::kInt, 1, "ranks per job (local: processes on this machine)").at_least(1).at_most(65536);
  s.add("launcher.master_port", Type::kInt, nullptr, "rendezvous port (null or 0: pick a free port)")
      .at_least(0)
      .at_most(65535);
  s.add("launcher.mpirun_args", Type::kList, Node::list(), "extra arguments placed after 'mpirun'");

  s.section("task", "what a job runs: the job runner registered under task.name");
  s.add("task.name", Type::kString, "train", "job runner (built in: shell, sleep, echo; others register more)");
  s.add("task.command", Type::kString, nullptr, "shell task: command run with /bin/sh -c in the job directory");
  s.add("task.seconds", Type::kFloat, 0.0, "sleep task: seconds to sleep (SIGTERM -> exit 75, resumable)").at_least(0);
  s.add("task.exit_code", Type::kInt, 0, "sleep/echo task: exit code to return (for testing failure handling)");

  s.section("trainer", "training loop");
  s.add("trainer.lr", Type::kFloat, 1e-3, "peak learning rate").at_least(0);
  s.add("trainer.epochs", Type::kInt, 1, "training epochs").at_least(1);
  s.add("trainer.batch_size", Type::kInt, 8, "global batch size (split across ranks)").at_least(1);
  s.add("trainer.optimizer", Type::kString, "adamw", "optimizer").choices({"adamw", "adam", "sgd"});
  s.add("trainer.weight_decay", Type::kFloat, 0.0, "decoupled weight decay").at_least(0);
  s.add("trainer.threads", Type::kInt, 0,
        "threads per rank (LibTorch intra-op and OpenBLAS); 0 = auto: OMP_NUM_THREADS, else SLURM_CPUS_PER_TASK, "
        "else this process's CPUs / ranks on the node")
      .at_least(0);
}

}  // namespace zsad::config
