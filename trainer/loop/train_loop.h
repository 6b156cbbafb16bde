#pragma once
// The training loop every method plugs into through TrainTask: epochs and steps over a
// DistributedSampler, optimizer + LR schedule, DDP gradient sync (GradReducer), clipping,
// non-finite loss handling, signals, logging and HDF5 checkpoints with bit-identical resume.
// Config is plain structs; launch/ maps YAML keys onto them.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "trainer/checkpoint.h"
#include "trainer/comm/communicator.h"
#include "trainer/ddp/grad_reducer.h"
#include "trainer/loop/optim.h"

namespace zsad::trainer {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

struct StepContext {
  comm::Communicator& comm;  // for global_sum / all_gather_with_grad (trainer/ddp/global_ops.h)
  int64_t step;              // optimizer step being computed (0-based)
  int64_t epoch;
  int micro_step;            // 0 .. grad_accum_steps-1
};

// What a method provides. The loop owns sampling: train_step receives the dataset indices of this
// rank's micro-batch and returns named loss terms; the loop minimises their sum.
class TrainTask {
 public:
  virtual ~TrainTask() = default;
  virtual NamedTensors named_parameters() = 0;
  virtual int64_t dataset_size() = 0;
  virtual NamedTensors train_step(const std::vector<int64_t>& sample_ids, StepContext& ctx) = 0;
  // Part of the checkpoint's config digest: a resume with a different method config is refused.
  virtual std::string config_digest() { return ""; }
  // Method state beyond parameters (buffers, EMA, ...), under ck.tensors["method/..."].
  virtual void save_state(Checkpoint&) {}
  virtual void load_state(const Checkpoint&) {}
};

struct TrainConfig {
  int64_t epochs = 1;
  int64_t max_steps = -1;           // stop after this many optimizer steps in total (-1: epochs decide)
  int64_t global_batch_size = 32;   // samples per optimizer step over all ranks
  int64_t grad_accum_steps = 1;     // micro-steps per optimizer step; intermediate ones do not sync
  bool shuffle = true;
  bool drop_last = false;           // sampler: drop the tail instead of padding by wrap-around
  // Run the epoch's last global batch when it is smaller than global_batch_size (torch DataLoader's
  // drop_last=False, what the CoPS code does) instead of dropping it. Ranks then hold uneven local
  // batches, some possibly empty, so the task's losses must use global normalisers and accept an
  // empty batch (CopsTrainTask does). Needs grad_accum_steps == 1.
  bool keep_partial_batch = false;
  uint64_t seed = 0;
  OptimConfig optim;
  LrSchedule schedule;
  double grad_clip_norm = 0.0;      // <= 0: off
  std::string on_nonfinite = "abort";  // abort | skip
  bool sync_gradients = true;       // false only for control experiments
  ddp::BucketOptions buckets;
  std::string run_dir = "run";
  int64_t log_every = 10;
  int64_t checkpoint_every = 0;     // steps; 0 = only at the end and on stop
  int keep_last = 2;
  bool resume = true;               // continue from the newest valid checkpoint in run_dir/checkpoints
  int num_threads = 1;              // threads per rank; 0 = auto (models/clip/compute_threads.h; the CLI passes trainer.threads)
  bool log_sample_ids = false;      // run_dir/samples/rank<r>.txt: "<step> <id> <id> ..."
};

struct TrainResult {
  int exit_code = 0;                // kExitSuccess, or kExitStoppedResumable after a signal
  int64_t steps = 0;                // optimizer steps done (in total, including before a resume)
  int64_t skipped_steps = 0;
  std::string last_checkpoint;
};

// Thrown when a loss term is not finite and on_nonfinite == "abort"; names step, ranks and terms.
class NonFiniteLoss : public Error {
 public:
  explicit NonFiniteLoss(const std::string& what) : Error(what) {}
};

// Runs training to the end, or until a stop signal (then checkpoint + exit_code 75). Collective
// failures propagate as comm::CommError naming the missing rank; callers should exit non-zero
// right away (std::_Exit after printing), since peers are gone.
TrainResult train(TrainTask& task, const TrainConfig& config, comm::Communicator& comm);

// Digest of everything that must match for a resume to continue the same trajectory.
std::string config_digest(const TrainConfig& c, int world_size, const std::string& task_digest);

// A 64-bit seed for stream `stream` derived from one user seed (splitmix64), so per-rank streams
// are independent and reproducible.
uint64_t derive_seed(uint64_t seed, uint64_t stream);

}  // namespace zsad::trainer
