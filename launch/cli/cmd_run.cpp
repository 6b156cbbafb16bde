// zsad run EXPERIMENT [overrides...]: compose, validate, create the run directory, run the job.
#include <iostream>

#include "common/error.h"
#include "common/exit_codes.h"
#include "launch/cli/args.h"
#include "launch/cli/command.h"
#include "launch/config/compose.h"
#include "launch/config/schema.h"
#include "launch/config/yaml_io.h"
#include "launch/jobs/runner.h"
#include "launch/sweep/slurm_launcher.h"
#include "launch/sweep/sweep.h"

namespace {

int run_run(const std::vector<std::string>& tokens) {
  zsad::cli::Args args(
      "zsad run EXPERIMENT [overrides...] [--cfg] [--help-config] [--launcher local|mpirun|slurm]\n"
      "  EXPERIMENT: a YAML file or a name under ./experiments/; overrides use Hydra's grammar (docs/config.md)");
  args.toggle("cfg", "print the resolved config and exit (nothing runs)")
      .toggle("help-config", "list every config key with type, default and doc, and exit")
      .toggle("help-tasks", "list the registered job runners (task.name) and exit")
      .flag("launcher", "shorthand for the override launcher.name=VALUE (slurm: submit with sbatch)")
      .flag("run-dir", "write into this directory instead of outputs/<experiment>/<date>/<time>/ (required when "
                       "this process is one rank of a launched group: the same directory on every rank)")
      .positionals("EXPERIMENT [overrides...]", 0);
  args.parse(tokens);
  if (args.on("help-config")) {
    std::cout << zsad::config::schema_registry().help();
    return zsad::kExitSuccess;
  }
  if (args.on("help-tasks")) {
    for (const auto& [name, e] : zsad::launch::job_runner_registry()) std::cout << "  " << name << "  " << e.doc << "\n";
    return zsad::kExitSuccess;
  }
  if (args.rest().empty()) throw zsad::UsageError("missing EXPERIMENT");
  zsad::config::ComposeRequest req;
  req.experiment = args.rest()[0];
  req.overrides.assign(args.rest().begin() + 1, args.rest().end());
  if (args.has("launcher")) req.overrides.push_back("launcher.name=" + args.get("launcher"));
  req.keep_sweep_block = true;
  zsad::config::Composed c = zsad::config::compose(req);
  if (c.config.erase("sweep"))
    std::cerr << "zsad run: note: the experiment's sweep: block is ignored here (run it with `zsad sweep`)\n";
  if (args.on("cfg")) {
    zsad::config::EmitOptions eo;
    eo.escape_interpolation = true;
    std::cout << zsad::config::to_yaml(c.config, eo);
    return zsad::kExitSuccess;
  }
  // Fail before creating a run directory when nothing can run the task.
  std::string task = zsad::config::get_or_default(c.config, "task.name").scalar_text();
  if (!zsad::launch::job_runner_registry().count(task)) {
    std::string known;
    for (const auto& [name, e] : zsad::launch::job_runner_registry()) known += (known.empty() ? "" : ", ") + name;
    throw zsad::Error("task.name '" + task + "' has no registered job runner in this build (known: " + known + ")");
  }
  zsad::launch::check_job_config(c.config);
  // Started as one rank of a group (zsad launch -n N -- zsad run ..., mpirun): each rank would make
  // its own run directory and start its own launcher, so the ranks run the task in this process
  // and share --run-dir instead.
  const zsad::launch::LaunchedRank launched = zsad::launch::launched_rank();
  if (launched.world_size > 1 && !args.has("run-dir")) {
    throw zsad::UsageError("this process is rank " + std::to_string(launched.rank) + " of " +
                           std::to_string(launched.world_size) +
                           " started by a launcher; pass --run-dir DIR (the same on every rank), or let zsad "
                           "start the ranks: zsad run EXP launcher.nproc=N (or launcher=local2, launcher=mpirun)");
  }
  const std::string unique =
      zsad::launch::make_run_dir(c.config, c.name, args.has("run-dir") ? args.get("run-dir") : "", launched.rank == 0);
  if (launched.world_size > 1)
    return zsad::launch::run_as_launched_rank(unique, c.config, req.overrides, launched,
                                              zsad::launch::job_runner_registry().at(task).run);
  std::cerr << "zsad run: " << unique << "\n";
  if (zsad::config::get_or_default(c.config, "launcher.name").scalar_text() == "slurm")
    return zsad::launch::submit_slurm_run(unique, c.config, req.overrides, c.choices);  // sbatch; does not wait
  zsad::launch::RunOptions opts;
  opts.tee = true;
  return zsad::launch::run_single(unique, c.config, req.overrides, opts, c.choices);
}

}  // namespace

ZSAD_COMMAND("run", "compose an experiment (+ overrides), create outputs/<exp>/<date>/<time>/, run its task", run_run);
