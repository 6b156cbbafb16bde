#pragma once
// The local rank launcher behind `zsad launch -n N -- CMD...` (torchrun-style environment) and the
// mpirun wrapper. Every rank gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT and OMP_NUM_THREADS = cores / N unless already set; its output lines are prefixed
// "[rank k] "; SIGINT/SIGTERM are forwarded to every rank; when one rank fails, the others get
// SIGTERM (SIGKILL after a grace period) and the failing rank's exit code is returned.
#include <cstdint>
#include <string>
#include <vector>

namespace zsad::launch {

struct LocalLaunchOptions {
  int nproc = 1;
  int master_port = 0;  // 0: pick a free port
  std::string master_addr = "127.0.0.1";
  double grace_seconds = 10.0;  // SIGTERM -> SIGKILL delay when stopping ranks
  bool prefix_output = true;
};

// Runs the ranks to completion. Returns 0 when every rank succeeded; otherwise the exit code of
// the first rank that failed (128 + signal when it was killed); after a forwarded SIGINT/SIGTERM,
// the ranks' own code (75 when they checkpointed and stopped).
int run_local(const std::vector<std::string>& command, const LocalLaunchOptions& opts);

// OMP_NUM_THREADS for a process when `processes` of them share this machine's cores (the affinity
// mask): cores / processes, at least 1. trainer.threads 0 (auto) reads it.
int omp_threads_for(int64_t processes);

// `mpirun --allow-run-as-root --oversubscribe -np N [extra...] CMD...`
std::vector<std::string> mpirun_command(int nproc, const std::vector<std::string>& command,
                                        const std::vector<std::string>& extra_args = {});

}  // namespace zsad::launch
