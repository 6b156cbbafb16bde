// Keys of the "train" job runner (launch/cli/cmd_train.cpp): the training set and the training
// loop settings beyond the core trainer.* keys (trainer/loop/train_loop.h TrainConfig).
#include "launch/config/schema.h"

namespace zsad::config {

void register_train_schema(Schema& s) {
  s.section("train", "the train job runner: training set and loop settings (docs/distributed.md)");
  s.add("train.dataset", Type::kMap, Node::map(),
        "training set: a dataset config (experiments/dataset/*.yaml) placed with dataset@train.dataset");
  s.add("train.enabled", Type::kBool, true, "false: evaluate the method as initialised (e.g. untrained prompts)");
  s.add("train.eval", Type::kBool, true, "evaluate every eval.datasets entry after training");
  s.add("train.cache", Type::kBool, true, "read frozen encoder features from the feature cache (false: encode every step)");
  s.add("train.max_steps", Type::kInt, -1, "stop after this many optimizer steps (-1: trainer.epochs decide)")
      .at_least(-1);
  s.add("train.grad_accum_steps", Type::kInt, 1, "micro-steps per optimizer step").at_least(1);
  s.add("train.drop_last_batch", Type::kBool, false,
        "drop the epoch's last global batch when it is smaller than trainer.batch_size (false: train on it, as the "
        "CoPS code's DataLoader does; needs train.grad_accum_steps 1)");
  s.add("train.shuffle", Type::kBool, true, "shuffle the training set every epoch (DistributedSampler, seed + epoch)");
  s.add("train.beta1", Type::kFloat, 0.9, "Adam beta1").at_least(0).at_most(1);
  s.add("train.beta2", Type::kFloat, 0.999, "Adam beta2").at_least(0).at_most(1);
  s.add("train.eps", Type::kFloat, 1e-8, "Adam eps").at_least(0);
  s.add("train.grad_clip_norm", Type::kFloat, 0.0, "gradient clipping by global norm (<= 0: off)");
  s.add("train.on_nonfinite", Type::kString, "abort", "non-finite loss").choices({"abort", "skip"});
  s.add("train.log_every", Type::kInt, 10, "steps between progress lines / metrics.jsonl records (0 = 1)").at_least(0);
  s.add("train.checkpoint_every", Type::kInt, 0, "steps between checkpoints (0: at the end and on a stop signal)").at_least(0);
  s.add("train.keep_last", Type::kInt, 2, "checkpoints kept (>= 2)").at_least(2);
  s.add("train.resume", Type::kBool, true, "continue from the newest valid checkpoint of the run directory");
  s.add("train.log_sample_ids", Type::kBool, false, "write samples/rank<r>.txt: '<step> <epoch> <id>...' per micro-step");
  s.add("train.backend", Type::kString, "auto", "communicator backend").choices({"auto", "gloo", "mpi", "nccl", "local"});
  s.add("train.timeout_s", Type::kFloat, 600.0, "rendezvous / collective timeout (seconds)").at_least(1);
}

}  // namespace zsad::config
