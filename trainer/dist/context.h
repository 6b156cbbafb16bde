#pragma once
// A process's place in a distributed job and its communicator, built in one call:
// detect_env -> rendezvous store -> rank monitor -> communicator.
#include <memory>
#include <string>

#include "trainer/comm/communicator.h"
#include "trainer/dist/env.h"
#include "trainer/dist/rank_monitor.h"
#include "trainer/dist/store.h"

namespace zsad::dist {

struct DistConfig {
  std::string backend = "auto";        // auto | gloo | mpi | nccl | local
  double timeout_s = 60.0;             // rendezvous and per-collective timeout
  DistOverrides overrides;             // explicit rank/world/address beat the environment
  std::string gloo_hostname;           // empty: 127.0.0.1 for a loopback master, else this host's name
  bool cuda = false;                   // tensors live on the GPU (resolves backend auto)
};

struct DistContext {
  DistEnv env;
  StorePtr store;                      // null for world size 1 and for mpi
  std::shared_ptr<RankMonitor> monitor;
  std::unique_ptr<comm::Communicator> comm;

  int rank() const { return comm->rank(); }
  int world_size() const { return comm->world_size(); }
};

// Throws zsad::Error (rendezvous problems name address:port and the missing ranks).
DistContext init_distributed(const DistConfig& c, const EnvMap& env = process_env());

}  // namespace zsad::dist
