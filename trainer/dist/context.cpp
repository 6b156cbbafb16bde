#include "trainer/dist/context.h"

namespace zsad::dist {

DistContext init_distributed(const DistConfig& c, const EnvMap& env) {
  DistContext ctx;
  ctx.env = detect_env(env, c.overrides);
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
