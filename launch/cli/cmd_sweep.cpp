// zsad sweep EXPERIMENT [overrides...] [--dry-run [--json]] [--parallel N] [--resume DIR]
#include <ctime>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/exit_codes.h"
#include "launch/cli/args.h"
#include "launch/cli/command.h"
#include "launch/jobs/runner.h"
#include "launch/sweep/slurm_launcher.h"
#include "launch/sweep/sweep.h"

namespace {

int run_sweep_cmd(const std::vector<std::string>& tokens) {
  zsad::cli::Args args(
      "zsad sweep EXPERIMENT [overrides...] [--dry-run [--json]] [--parallel N] [--launcher local|mpirun|slurm]\n"
      "       zsad sweep --resume MULTIRUN_DIR [--parallel N]\n"
      "  sweeps: a=1,2,3  choice(..)  range(start,stop[,step])  glob(pattern); cartesian product, last key fastest");
  args.toggle("dry-run", "print the job table (number, overrides, output dir), or with launcher slurm the sbatch script; nothing runs")
      .toggle("json", "with --dry-run: print {\"jobs\": [{\"num\", \"overrides\", \"dir\"}]} instead")
      .flag("parallel", "jobs run at once (local execution)", "1")
      .flag("resume", "re-run the jobs of this sweep directory that have no 'completed' status")
      .flag("launcher", "shorthand for the override launcher.name=VALUE")
      .toggle("quiet", "no per-job progress lines")
      .positionals("EXPERIMENT [overrides...]", 0);
  args.parse(tokens);
  zsad::launch::RunOptions opts;
  opts.parallel = static_cast<int>(args.get_int("parallel"));
  if (opts.parallel < 1) throw zsad::UsageError("--parallel must be at least 1");
  // A sweep starts every job's ranks itself (launcher.*); started as a rank, each copy would run
  // the whole sweep.
  if (const auto r = zsad::launch::launched_rank(); r.world_size > 1)
    throw zsad::UsageError("this process is rank " + std::to_string(r.rank) + " of " + std::to_string(r.world_size) +
                           " started by a launcher; run zsad sweep once (its jobs get their ranks from launcher.*)");
  opts.quiet = args.on("quiet");
  if (args.on("json") && !args.on("dry-run")) throw zsad::UsageError("--json needs --dry-run");

  zsad::launch::SweepPlan plan;
  bool resume = args.has("resume");
  if (resume) {
    plan = zsad::launch::load_sweep_plan(args.get("resume"));
    if (!args.rest().empty()) {
      // The command line must describe the same sweep (its jobs are taken from multirun.yaml).
      std::vector<std::string> ovs(args.rest().begin() + 1, args.rest().end());
      if (args.has("launcher")) ovs.push_back("launcher.name=" + args.get("launcher"));
      auto again = zsad::launch::plan_sweep(args.rest()[0], ovs, std::time(nullptr));
      bool same = again.jobs.size() == plan.jobs.size();
      for (size_t i = 0; same && i < plan.jobs.size(); ++i) same = again.jobs[i].overrides == plan.jobs[i].overrides;
      if (!same)
        throw zsad::Error("--resume " + args.get("resume") +
                          ": the experiment and overrides given describe a different sweep than its multirun.yaml");
    }
  } else {
    if (args.rest().empty()) throw zsad::UsageError("missing EXPERIMENT");
    std::vector<std::string> ovs(args.rest().begin() + 1, args.rest().end());
    if (args.has("launcher")) ovs.push_back("launcher.name=" + args.get("launcher"));
    plan = zsad::launch::plan_sweep(args.rest()[0], ovs, std::time(nullptr));
  }
  if (args.on("dry-run")) {
    if (!args.on("json") && zsad::launch::plan_uses_slurm(plan)) {  // the sbatch script(s), not submitted
      std::cout << zsad::launch::slurm_sweep_scripts(plan);
      return zsad::kExitSuccess;
    }
    if (args.on("json")) {
      nlohmann::ordered_json jobs = nlohmann::ordered_json::array();
      for (const auto& j : plan.jobs) jobs.push_back({{"num", j.num}, {"overrides", j.overrides}, {"dir", j.dir}});
      std::cout << nlohmann::ordered_json{{"jobs", jobs}}.dump() << "\n";
    } else {
      std::cout << "sweep " << plan.sweep_dir << " (" << plan.jobs.size() << " jobs)\n";
      for (const auto& j : plan.jobs) {
        std::cout << std::setw(5) << j.num << "  " << j.dir << "  ";
        for (size_t i = 0; i < j.overrides.size(); ++i) std::cout << (i ? " " : "") << j.overrides[i];
        std::cout << "\n";
      }
    }
    return zsad::kExitSuccess;
  }
  return zsad::launch::run_sweep(plan, resume, opts);
}

}  // namespace

ZSAD_COMMAND("sweep", "expand a sweep (cartesian, last key fastest) into multirun/<exp>/<date>/<time>/<job>/ and run it",
             run_sweep_cmd);
