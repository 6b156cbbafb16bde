// zsad launch -n N [--master-port P] [--mpirun] -- CMD...: start N ranks with torchrun-style env.
#include <unistd.h>

#include <iostream>

#include "common/error.h"
#include "launch/cli/args.h"
#include "launch/cli/command.h"
#include "launch/local/launcher.h"

namespace {

int run_launch(const std::vector<std::string>& tokens) {
  // Accept torchrun-like short flags before "--".
  std::vector<std::string> t;
  bool after = false;
  for (const auto& s : tokens) {
    if (s == "--") after = true;
    if (!after && s == "-n") t.push_back("--nproc");
    else t.push_back(s);
  }
  zsad::cli::Args args("zsad launch -n N [--master-port P] [--mpirun] -- CMD [ARGS...]");
  args.flag("nproc", "number of ranks (also -n)", "1")
      .flag("master-port", "MASTER_PORT for rank 0's store (default: a free port)")
      .flag("grace", "seconds between SIGTERM and SIGKILL when stopping ranks", "10")
      .toggle("mpirun", "run the command through mpirun --allow-run-as-root --oversubscribe -np N instead")
      .toggle("no-prefix", "do not prefix output lines with [rank k]")
      .positionals("CMD", 1);
  args.parse(t);
  int n = static_cast<int>(args.get_int("nproc"));
  if (n < 1) throw zsad::UsageError("-n must be at least 1, got " + std::to_string(n));
  if (args.on("mpirun")) {
    auto cmd = zsad::launch::mpirun_command(n, args.rest());
    std::vector<char*> argv;
    for (auto& s : cmd) argv.push_back(const_cast<char*>(s.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    throw zsad::Error("cannot execute mpirun (is OpenMPI installed?)");
  }
  zsad::launch::LocalLaunchOptions opts;
  opts.nproc = n;
  if (auto p = args.get_opt("master-port")) opts.master_port = static_cast<int>(args.get_int("master-port"));
  opts.grace_seconds = args.get_double("grace");
  opts.prefix_output = !args.on("no-prefix");
  return zsad::launch::run_local(args.rest(), opts);
}

}  // namespace

ZSAD_COMMAND("launch", "spawn N local ranks (RANK, WORLD_SIZE, MASTER_ADDR/PORT set): launch -n N -- CMD", run_launch);
