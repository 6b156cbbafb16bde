// Gradient-sync cost of data-parallel training: a 6.5 M-parameter MLP (fp32, 26 MB of gradients),
// per step: forward+backward on the local batch, GradReducer::synchronize (bucketed allreduce +
// averaging), optimizer step. Rank 0 prints the median of each phase and sync's share of the step.
//   zsad launch -n 2 -- ddp_sync_bench --backend gloo
//   mpirun --allow-run-as-root --oversubscribe -np 2 ddp_sync_bench --backend mpi
//   add --overlap 1 to start bucket allreduces from autograd hooks during backward
// (results: docs/benchmarks.md, "Distributed trainer").
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/clip/compute_threads.h"
#include "trainer/ddp/grad_reducer.h"
#include "trainer/dist/context.h"
#include "bench_args.h"

namespace {

using zsad::bench::arg;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  try {
    zsad::dist::DistConfig dc;
    dc.backend = arg(argc, argv, "backend", "gloo");
    dc.timeout_s = 120;
    auto ctx = zsad::dist::init_distributed(dc);
    const int threads = std::stoi(arg(argc, argv, "threads", "1"));
    zsad::models::set_compute_threads(threads);  // LibTorch and OpenBLAS pools
    const int steps = std::stoi(arg(argc, argv, "steps", "20"));
    const int64_t batch = std::stoll(arg(argc, argv, "batch", "32"));
    const double bucket_mb = std::stod(arg(argc, argv, "bucket-mb", "25"));

    torch::manual_seed(0);
    torch::nn::Sequential model(torch::nn::Linear(768, 2048), torch::nn::GELU(), torch::nn::Linear(2048, 1536),
                                torch::nn::GELU(), torch::nn::Linear(1536, 768), torch::nn::GELU(),
                                torch::nn::Linear(768, 768));
    std::vector<at::Tensor> params = model->parameters();
    int64_t n_params = 0;
    for (auto& p : params) n_params += p.numel();
    zsad::ddp::BucketOptions bo;
    bo.bucket_cap_bytes = static_cast<int64_t>(bucket_mb * (1 << 20));
    bo.overlap_with_backward = arg(argc, argv, "overlap", "0") == "1";
    zsad::ddp::GradReducer reducer(*ctx.comm, params, bo);
    reducer.broadcast_parameters();
    torch::optim::AdamW opt(params, torch::optim::AdamWOptions(1e-4));
    auto x = torch::randn({batch, 768}), y = torch::randn({batch, 768});

    std::vector<double> t_fb, t_sync, t_opt, t_step;
    using clk = std::chrono::steady_clock;
    auto ms = [](clk::time_point a, clk::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    for (int s = 0; s < steps + 3; ++s) {
      ctx.comm->barrier();
      auto t0 = clk::now();
      opt.zero_grad();
      reducer.prepare_for_backward();
      torch::mse_loss(model->forward(x), y).backward();
      auto t1 = clk::now();
      reducer.synchronize();
      auto t2 = clk::now();
      opt.step();
      auto t3 = clk::now();
      if (s < 3) continue;  // warm-up
      t_fb.push_back(ms(t0, t1));
      t_sync.push_back(ms(t1, t2));
      t_opt.push_back(ms(t2, t3));
      t_step.push_back(ms(t0, t3));
    }
    if (ctx.rank() == 0) {
      const char* alg = std::getenv("OMPI_MCA_coll_tuned_allreduce_algorithm");
      std::printf(
          "backend=%s overlap=%d world=%d params=%lld grad_MB=%.1f buckets=%zu batch=%lld threads=%d mpi_allreduce_alg=%s "
          "fwd_bwd_ms=%.1f sync_ms=%.1f optim_ms=%.1f step_ms=%.1f sync_fraction=%.2f\n",
          ctx.comm->backend(), bo.overlap_with_backward ? 1 : 0, ctx.world_size(), static_cast<long long>(n_params), n_params * 4.0 / (1 << 20),
          reducer.buckets().size(), static_cast<long long>(batch), threads, alg ? alg : "-", median(t_fb),
          median(t_sync), median(t_opt), median(t_step), median(t_sync) / median(t_step));
    }
    ctx.comm->barrier();
    ctx.comm.reset();
    std::fflush(stdout);
    std::_Exit(0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddp_sync_bench: %s\n", e.what());
    std::_Exit(1);
  }
}
