#pragma once
// Where this process sits in a distributed job: rank discovery from the launcher's environment.
// First match wins: torchrun vars -> SLURM vars of an srun step -> OpenMPI vars -> single process; explicitly
// configured values override whatever was detected. Pure functions over an environment map, so
// every rule is unit-tested without touching the real environment (DESIGN.md §4).
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace zsad::dist {

using EnvMap = std::map<std::string, std::string>;

// Which launcher the values came from.
enum class Launcher { kSingle, kTorchrun, kSlurm, kOpenMpi, kExplicit };
const char* launcher_name(Launcher l);

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  Launcher launcher = Launcher::kSingle;
};

// Values from the job config; every set field beats the environment.
struct DistOverrides {
  std::optional<int> rank;
  std::optional<int> world_size;
  std::optional<int> local_rank;
  std::optional<std::string> master_addr;
  std::optional<int> master_port;
};

// The snapshot of the process environment (environ) as a map.
EnvMap process_env();

// Detects rank/world/address from `env`, then applies `overrides`. Throws zsad::Error naming the
// variable when a value is not an integer or rank >= world size.
DistEnv detect_env(const EnvMap& env, const DistOverrides& overrides = {});

// Expands a SLURM hostlist: "node[01-04,07]" -> node01..node04,node07; "a1,b[2-3]" -> a1,b2,b3.
// Zero padding of a range's start is kept ("n[08-10]" -> n08,n09,n10). Throws zsad::Error on
// unbalanced brackets or a reversed range.
std::vector<std::string> expand_nodelist(const std::string& nodelist);

// First host of a SLURM nodelist, without expanding every range.
std::string first_host(const std::string& nodelist);

// Rendezvous port in [20000, 60000) derived from "SLURM_JOB_ID.SLURM_STEP_ID", so that all ranks of a
// step (and the step after a requeue) agree without talking to each other.
int port_from_job_id(const std::string& job_id);

// The CUDA device a rank should use: local_rank modulo the visible devices (SLURM does not hide
// the other GPUs of a node from a task). Returns -1 when no device is visible.
int cuda_device_for(int local_rank, int visible_devices);

}  // namespace zsad::dist
