#include "trainer/dist/context.h"

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

namespace zsad::dist {

namespace {

// Under mpirun there is no MASTER_ADDR: rank 0 hosts a TCPStore on a free port and broadcasts
// "host:port" over MPI, so heartbeats (and the names of missing ranks) work as with gloo.
void attach_heartbeat_store(DistContext& ctx, std::chrono::milliseconds timeout) {
  const int rank = ctx.comm->rank();
  at::Tensor buf = at::zeros({256}, at::kByte);
  StorePtr store;
  if (rank == 0) {
    char host[200] = {0};
    if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "127.0.0.1");
    DistEnv e;
    e.rank = 0;
    e.world_size = ctx.comm->world_size();
    e.master_addr = host;
    c10d::TCPStoreOptions so;
    so.port = 0;
    so.isServer = true;
    so.waitWorkers = false;
    so.timeout = timeout;
    store = c10::make_intrusive<c10d::TCPStore>(e.master_addr, so);
    std::string where = e.master_addr + ":" + std::to_string(static_cast<c10d::TCPStore&>(*store).getPort());
    std::memcpy(buf.data_ptr<uint8_t>(), where.data(), std::min<size_t>(where.size(), 255));
  }
  ctx.comm->broadcast(buf, 0);
  std::string where(reinterpret_cast<const char*>(buf.data_ptr<uint8_t>()));
  if (rank != 0) {
    DistEnv e;
    e.rank = rank;
    e.world_size = ctx.comm->world_size();
    e.master_addr = where.substr(0, where.rfind(':'));
    e.master_port = std::stoi(where.substr(where.rfind(':') + 1));
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(e.master_port);
    so.isServer = false;
    so.waitWorkers = false;
    so.timeout = timeout;
    store = c10::make_intrusive<c10d::TCPStore>(e.master_addr, so);
  }
  ctx.store = store;
  ctx.monitor->attach_store(store, where);
}

}  // namespace

DistContext init_distributed(const DistConfig& c, const EnvMap& env) {
  DistContext ctx;
  ctx.env = detect_env(env, c.overrides);
  // Gloo's TCP pairs send with writev(2), which raises SIGPIPE when the peer has died; its default
  // action ends this rank before it can name the missing peer. Gloo handles EPIPE itself and Python
  // (so torch.distributed) ignores SIGPIPE at start; the ranks here ignore it too.
  if (ctx.env.world_size > 1) std::signal(SIGPIPE, SIG_IGN);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(c.timeout_s * 1000));
  comm::CommOptions o;
  o.backend = comm::parse_backend(c.backend);
  o.cuda_tensors = c.cuda;
  o.timeout = timeout;
  o.gloo_hostname = c.gloo_hostname;
  if (o.gloo_hostname.empty() && (ctx.env.master_addr == "127.0.0.1" || ctx.env.master_addr == "localhost")) {
    o.gloo_hostname = "127.0.0.1";
  }
  o.cuda_device = c.cuda ? cuda_device_for(ctx.env.local_rank, 1 << 20) : -1;
  if (o.backend == comm::Backend::kMpi) {
    // MPI brings its own rendezvous (mpirun); ranks come from MPI itself.
    ctx.monitor = std::make_shared<RankMonitor>(StorePtr(), ctx.env.rank, ctx.env.world_size, "mpirun");
    ctx.comm = comm::make_communicator(o, StorePtr(), ctx.env.rank, ctx.env.world_size, ctx.monitor);
    if (ctx.comm->world_size() > 1) attach_heartbeat_store(ctx, timeout);
    return ctx;
  }
  if (ctx.env.world_size > 1) {
    ctx.store = connect_tcp_store(ctx.env, timeout);
    ctx.monitor = std::make_shared<RankMonitor>(ctx.store, ctx.env.rank, ctx.env.world_size,
                                                ctx.env.master_addr + ":" + std::to_string(ctx.env.master_port));
  }
  ctx.comm = comm::make_communicator(o, ctx.store, ctx.env.rank, ctx.env.world_size, ctx.monitor);
  return ctx;
}

}  // namespace zsad::dist
