// zsad job CONFIG.yaml: run one resolved job config in this process (started per rank by run/sweep).
#include "launch/cli/args.h"
#include "launch/cli/command.h"
#include "launch/jobs/runner.h"

namespace {

int run_job(const std::vector<std::string>& tokens) {
  zsad::cli::Args args("zsad job CONFIG.yaml   (a resolved .zsad/config.yaml; dispatches on task.name)");
  args.positionals("CONFIG.yaml", 1, 1);
  args.parse(tokens);
  return zsad::launch::run_job_config(args.rest()[0]);
}

}  // namespace

ZSAD_COMMAND("job", "run one resolved job config (.zsad/config.yaml) in this process; used by run/sweep", run_job);
