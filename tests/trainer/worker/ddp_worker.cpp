// Worker for the multi-process trainer tests: trains a small MLP on a synthetic regression set
// through zsad::trainer::train, with rank discovery from the launcher's environment
// (zsad launch / mpirun / plain env). Writes <run-dir>/final/rank<r>.h5 (parameters + optimizer
// state of this rank) so tests can compare ranks and runs bit for bit.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include <torch/torch.h>

#include "common/error.h"
#include "trainer/checkpoint.h"
#include "trainer/dist/context.h"
#include "trainer/loop/optim.h"
#include "trainer/loop/train_loop.h"

namespace {

struct MlpImpl : torch::nn::Module {
  MlpImpl() {
    fc1 = register_module("fc1", torch::nn::Linear(8, 32));
    fc2 = register_module("fc2", torch::nn::Linear(32, 1));
  }
  torch::Tensor forward(torch::Tensor x) { return fc2(torch::tanh(fc1(x))); }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

class RegressionTask : public zsad::trainer::TrainTask {
 public:
  RegressionTask(int64_t n, int init_seed, double noise, int step_sleep_ms, int64_t nan_step, int nan_rank, int rank)
      : noise_(noise), sleep_ms_(step_sleep_ms), nan_step_(nan_step), nan_rank_(nan_rank), rank_(rank) {
    torch::manual_seed(init_seed);  // ranks start from different weights: rank 0's are broadcast
    model_ = Mlp();
    auto g = at::detail::createCPUGenerator(1234);
    x_ = at::randn({n, 8}, g);
    y_ = torch::sin(x_.sum(1, true)) + 0.1 * at::randn({n, 1}, g);
  }
  zsad::trainer::NamedTensors named_parameters() override {
    zsad::trainer::NamedTensors out;
    for (auto& p : model_->named_parameters()) out.emplace_back(p.key(), p.value());
    return out;
  }
  int64_t dataset_size() override { return x_.size(0); }
  zsad::trainer::NamedTensors train_step(const std::vector<int64_t>& ids, zsad::trainer::StepContext& ctx) override {
    if (sleep_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
    auto idx = torch::tensor(ids, torch::kLong);
    auto x = x_.index_select(0, idx), y = y_.index_select(0, idx);
    // A little noise from the per-rank generator: resume must restore the RNG state exactly.
    if (noise_ > 0) x = x + noise_ * torch::randn_like(x);
    auto pred = model_->forward(x);
    auto mse = torch::mse_loss(pred, y);
    auto reg = 1e-4 * model_->fc1->weight.pow(2).sum();
    if (ctx.step == nan_step_ && (nan_rank_ < 0 || nan_rank_ == rank_)) mse = mse * std::nan("");
    return {{"mse", mse}, {"reg", reg}};
  }
  std::string config_digest() override { return "mlp-8-32-1"; }

 private:
  Mlp model_{nullptr};
  at::Tensor x_, y_;
  double noise_;
  int sleep_ms_;
  int64_t nan_step_;
  int nan_rank_;
  int rank_;
};

std::string arg(int argc, char** argv, const std::string& name, const std::string& def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (name == argv[i]) return argv[i + 1];
  return def;
}
bool has(int argc, char** argv, const std::string& name) {
  for (int i = 1; i < argc; ++i)
    if (name == argv[i]) return true;
  return false;
}

[[noreturn]] void leave(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(code);  // peers may be gone: never wait in communicator destructors
}

}  // namespace

int main(int argc, char** argv) {
  int rank = -1;
  try {
    zsad::dist::DistConfig dc;
    dc.backend = arg(argc, argv, "--backend", "gloo");
    dc.timeout_s = std::stod(arg(argc, argv, "--timeout", "30"));
    auto ctx = zsad::dist::init_distributed(dc);
    rank = ctx.rank();
    {
      // For fault tests under mpirun, which hides the ranks' pids.
      const std::string run_dir = arg(argc, argv, "--run-dir", "run");
      std::filesystem::create_directories(run_dir);
      std::FILE* f = std::fopen((run_dir + "/pid.rank" + std::to_string(rank)).c_str(), "w");
      if (f) {
        std::fprintf(f, "%d\n", static_cast<int>(::getpid()));
        std::fclose(f);
      }
    }

    zsad::trainer::TrainConfig c;
    c.run_dir = arg(argc, argv, "--run-dir", "run");
    c.epochs = std::stoll(arg(argc, argv, "--epochs", "100"));
    c.max_steps = std::stoll(arg(argc, argv, "--steps", "12"));
    c.global_batch_size = std::stoll(arg(argc, argv, "--batch", "16"));
    c.grad_accum_steps = std::stoll(arg(argc, argv, "--accum", "1"));
    c.seed = std::stoull(arg(argc, argv, "--seed", "5"));
    c.optim.type = arg(argc, argv, "--optim", "adamw");
    c.optim.lr = std::stod(arg(argc, argv, "--lr", "0.01"));
    c.optim.weight_decay = 0.01;
    c.schedule.type = "cosine";
    c.schedule.warmup_steps = 2;
    c.schedule.total_steps = std::stoll(arg(argc, argv, "--schedule-steps", "24"));
    c.grad_clip_norm = 1.0;
    c.sync_gradients = !has(argc, argv, "--no-sync");
    c.log_every = std::stoll(arg(argc, argv, "--log-every", "4"));
    c.checkpoint_every = std::stoll(arg(argc, argv, "--checkpoint-every", "0"));
    c.log_sample_ids = true;
    c.on_nonfinite = arg(argc, argv, "--on-nonfinite", "abort");
    c.num_threads = 1;
    c.buckets.bucket_cap_bytes = 512;  // several buckets even for this small model
    c.buckets.first_bucket_cap_bytes = 256;
    c.buckets.overlap_with_backward = has(argc, argv, "--overlap");

    RegressionTask task(std::stoll(arg(argc, argv, "--samples", "64")), 100 + rank, std::stod(arg(argc, argv, "--noise", "0.001")),
                        std::stoi(arg(argc, argv, "--step-sleep-ms", "0")), std::stoll(arg(argc, argv, "--nan-step", "-1")),
                        std::stoi(arg(argc, argv, "--nan-rank", "-1")), rank);
    auto result = zsad::trainer::train(task, c, *ctx.comm);

    zsad::Checkpoint out;
    std::vector<at::Tensor> params;
    for (auto& [n, p] : task.named_parameters()) {
      out.tensors["params/" + n] = p.detach();
      params.push_back(p);
    }
    // Re-read this run's final checkpoint for the optimizer state and copy it into the dump.
    auto ck = zsad::read_checkpoint(result.last_checkpoint);
    for (auto& [k, t] : ck.tensors)
      if (k.rfind("optimizer/", 0) == 0) out.tensors[k] = t;
    out.ints["step"] = result.steps;
    out.ints["skipped_steps"] = result.skipped_steps;
    std::filesystem::create_directories(c.run_dir + "/final");
    zsad::write_checkpoint(c.run_dir + "/final/rank" + std::to_string(rank) + ".h5", out);
    ctx.comm.reset();  // orderly shutdown (MPI_Finalize for mpi) when every rank got here
    std::printf("rank %d done: %lld steps, exit %d\n", rank, static_cast<long long>(result.steps), result.exit_code);
    leave(result.exit_code);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[zsad] rank %d: error: %s\n", rank, e.what());
    leave(1);
  }
}
