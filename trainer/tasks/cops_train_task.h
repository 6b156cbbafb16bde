#pragma once
// CoPS training as a trainer::TrainTask (trainer/loop/train_loop.h): the loop owns sampling
// (DistributedSampler shards), the optimizer, DDP gradient averaging and checkpoints; this task
// turns the rank's sample ids into a models::MethodBatch and calls CopsMethod::train_step.
//  - Frozen features come from the feature cache (trainer/feature_cache.h) by global sample index
//    when one is given, otherwise the frozen CLIP runs on the decoded images every step.
//  - Masks/labels are read per step from the dataset index (masks at the method's input size).
//  - Batch-spanning losses see the global batch: TrainContext.global_sum = allreduce,
//    gather = variable-size all-gather (ranks may hold different counts), grad_scale = world size
//    (the reducer averages gradients), so every loss term is independent of the number of ranks.
//  - The VAE's eps is keyed by (run seed, optimizer step, global sample index): never by rank.
// Checkpoints: params/<name> (the loop) plus method/<name> = CopsMethod::state_dict() (the eval
// phase and `zsad eval checkpoint=` load method/ strictly).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/index.h"
#include "models/methods/cops/cops_method.h"
#include "trainer/comm/communicator.h"
#include "trainer/feature_cache.h"
#include "trainer/loop/train_loop.h"

namespace zsad::trainer {

// Concatenation along dim 0 over ranks in rank order when ranks hold different dim-0 sizes
// (sizes exchanged first, then a padded allgather). No gradient.
at::Tensor gather_variable(comm::Communicator& comm, const at::Tensor& local);

// models::TrainContext whose reductions run on `comm` (grad_scale = world size).
models::TrainContext make_train_context(comm::Communicator& comm, int64_t step, int64_t epoch);

struct CopsTrainTaskOptions {
  std::string root;           // dataset root (sample paths are resolved against it)
  uint64_t seed = 0;          // run seed: VAE noise key
  std::string digest;         // method config digest (resume refuses a different one)
};

class CopsTrainTask : public TrainTask {
 public:
  // `method` must outlive the task. `cache` may be null (then the encoder runs on the images).
  CopsTrainTask(models::cops::CopsMethod& method, std::vector<data::Sample> samples, CopsTrainTaskOptions options,
                std::shared_ptr<FeatureCache> cache = nullptr);

  NamedTensors named_parameters() override;
  int64_t dataset_size() override { return static_cast<int64_t>(samples_.size()); }
  NamedTensors train_step(const std::vector<int64_t>& sample_ids, StepContext& ctx) override;
  std::string config_digest() override;
  void save_state(Checkpoint& ck) override;
  void load_state(const Checkpoint& ck) override;

  // The MethodBatch of these global indices (images only without a cache); exposed for tests.
  models::MethodBatch make_batch(const std::vector<int64_t>& ids, int64_t step) const;

 private:
  models::cops::CopsMethod& method_;
  std::vector<data::Sample> samples_;
  CopsTrainTaskOptions opt_;
  std::shared_ptr<FeatureCache> cache_;
};

}  // namespace zsad::trainer
