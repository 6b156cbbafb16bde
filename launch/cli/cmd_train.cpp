// The "train" job runner (task.name=train, the default task): trains the configured method on
// train.dataset through the training loop (trainer/loop), sharded across the job's ranks, then
// evaluates the trained method on every eval.datasets entry with the evaluation engine, on the
// same communicator. A training-free method, or train.enabled=false (e.g. CoPS with untrained
// prompts), skips training and is evaluated as it is. `zsad train EXP [overrides]` = `zsad run EXP
// task.name=train [overrides]`.
#include <ATen/Parallel.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#include "common/error.h"
#include "common/exit_codes.h"
#include "data/index.h"
#include "launch/cli/command.h"
#include "launch/cli/eval_phase.h"
#include "launch/config/yaml_io.h"
#include "launch/jobs/runner.h"
#include "models/clip/compute_threads.h"
#include "models/methods/cops/cops_method.h"
#include "trainer/dist/context.h"
#include "trainer/eval/engine.h"
#include "trainer/feature_cache.h"
#include "trainer/loop/train_loop.h"
#include "trainer/tasks/cops_train_task.h"

namespace zsad::cli {
namespace {

namespace fs = std::filesystem;

// The training set's spec: train.dataset.* read by the engine's dataset parser (same keys as a
// test dataset, so one experiments/dataset/<name>.yaml serves both).
eval::DatasetSpec train_dataset_spec(const models::OptionMap& flat) {
  models::OptionMap d = flat.sub("train.dataset");
  if (d.values.empty()) throw Error("train.dataset: no training dataset in the config (add dataset@train.dataset: <option>)");
  const std::string name = d.str("name", "train");
  models::OptionMap m;
  for (const auto& [k, v] : d.values) m.values["eval.datasets." + name + "." + k] = v;
  std::vector<eval::DatasetSpec> specs = eval::dataset_specs_from(m);
  if (specs.size() != 1) throw Error("train.dataset: expected one dataset config");
  return specs[0];
}

trainer::TrainConfig train_config_from(const models::OptionMap& flat, const std::string& run_dir) {
  trainer::TrainConfig c;
  c.epochs = flat.integer("trainer.epochs", 1);
  c.max_steps = flat.integer("train.max_steps", -1);
  c.global_batch_size = flat.integer("trainer.batch_size", 8);
  c.grad_accum_steps = flat.integer("train.grad_accum_steps", 1);
  c.shuffle = flat.flag("train.shuffle", true);
  c.keep_partial_batch = !flat.flag("train.drop_last_batch", false);
  c.seed = static_cast<uint64_t>(flat.integer("seed", 0));
  c.optim.type = flat.str("trainer.optimizer", "adamw");
  c.optim.lr = flat.real("trainer.lr", 1e-3);
  c.optim.beta1 = flat.real("train.beta1", 0.9);
  c.optim.beta2 = flat.real("train.beta2", 0.999);
  c.optim.eps = flat.real("train.eps", 1e-8);
  c.optim.weight_decay = flat.real("trainer.weight_decay", 0.0);
  c.grad_clip_norm = flat.real("train.grad_clip_norm", 0.0);
  c.on_nonfinite = flat.str("train.on_nonfinite", "abort");
  c.run_dir = run_dir;
  c.log_every = flat.integer("train.log_every", 10);
  c.checkpoint_every = flat.integer("train.checkpoint_every", 0);
  c.keep_last = static_cast<int>(flat.integer("train.keep_last", 2));
  c.resume = flat.flag("train.resume", true);
  c.num_threads = static_cast<int>(flat.integer("trainer.threads", 0));
  c.log_sample_ids = flat.flag("train.log_sample_ids", false);
  return c;
}

// The dataset settings of a train job (training set when training runs, eval sets when they are
// evaluated), checked before the job starts: not after hours of training.
void check_train_config(const config::Node& cfg) {
  const models::OptionMap flat = flatten_config(cfg);
  if (flat.flag("train.enabled", true) && !flat.sub("train.dataset").values.empty()) train_dataset_spec(flat);
  if (flat.flag("train.eval", true)) eval::dataset_specs_from(flat);
}

int run_train(const launch::JobContext& job) {
  const config::Node& cfg = job.config;
  models::OptionMap flat = flatten_config(cfg);
  const int threads = models::apply_compute_threads(flat.integer("trainer.threads", 0));
  const std::string run_dir = job.job_dir.empty() ? "." : job.job_dir;

  dist::DistConfig dc;
  dc.backend = flat.str("train.backend", "auto");
  dc.timeout_s = flat.real("train.timeout_s", 600.0);
  dist::DistContext ctx = dist::init_distributed(dc);
  const bool rank0 = ctx.rank() == 0;

  try {
    std::unique_ptr<models::Method> method = models::make_method(flat);
    const bool train_enabled = flat.flag("train.enabled", true) && method->trainable();
    if (flat.flag("train.enabled", true) && !method->trainable() && rank0)
      std::cerr << "train: method '" << method->name() << "' has no trainable parameters; evaluating only\n";
    std::optional<std::string> train_name;
    nlohmann::json timings = nlohmann::json::object();
    if (train_enabled) {
      auto* cops = dynamic_cast<models::cops::CopsMethod*>(method.get());
      if (!cops) throw Error("method.name '" + method->name() + "': no training task for this method (task.name=train)");
      const auto t0 = std::chrono::steady_clock::now();
      eval::DatasetSpec spec = train_dataset_spec(flat);
      train_name = spec.name;
      data::Meta meta = eval::load_dataset_meta(spec, *ctx.comm, "train");
      data::Split split = meta.split(spec.split);
      if (!spec.classes.empty()) {
        data::Split f;
        for (const auto& c : spec.classes) {
          auto it = split.samples.find(c);
          if (it == split.samples.end()) throw Error("train.dataset.classes: no class '" + c + "' in " + spec.name);
          for (const auto& s : it->second) f.add(s);
        }
        split = f;
      }
      std::vector<data::Sample> samples = split.flat();
      models::DatasetContext dctx;
      dctx.name = spec.name;
      dctx.classes = split.classes;
      dctx.options = spec.method_options.sub(method->name());
      dctx.training = true;
      method->begin_dataset(dctx);

      std::shared_ptr<trainer::FeatureCache> cache;
      if (flat.flag("train.cache", true)) {
        trainer::FeatureCacheKey key =
            trainer::clip_cache_key(flat, cops->clip(), spec.name, spec.split, samples, spec.root, "raw_cls", {});
        trainer::EncoderFn enc = trainer::make_clip_encoder(cops->clip(), samples, spec.root, key, threads);
        cache = trainer::FeatureCache::open_or_build(key, samples, enc, trainer::cache_options_from(flat), ctx.comm.get());
      }
      trainer::CopsTrainTaskOptions to;
      to.root = spec.root;
      to.seed = static_cast<uint64_t>(flat.integer("seed", 0));
      to.digest = config_digest(cfg);
      trainer::CopsTrainTask task(*cops, samples, to, cache);
      trainer::TrainConfig tc = train_config_from(flat, run_dir);
      if (rank0) {
        std::cerr << "train: " << method->display_name() << " on " << spec.name << " (" << samples.size() << " images, "
                  << (cache ? "cached features" : "encoder every step") << "), " << ctx.world_size() << " rank(s), "
                  << tc.epochs << " epoch(s), global batch " << tc.global_batch_size << "\n";
      }
      trainer::TrainResult r = trainer::train(task, tc, *ctx.comm);
      cops->set_feature_source(nullptr);
      if (r.exit_code != kExitSuccess) return r.exit_code;
      timings["train_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (rank0) std::cerr << "train: " << r.steps << " steps, checkpoint " << r.last_checkpoint << "\n";
    } else if (rank0) {
      std::cerr << "train: " << method->display_name()
                << (method->trainable() ? " evaluated untrained (train.enabled=false)" : " is training-free") << "\n";
    }
    if (!flat.flag("train.eval", true)) return kExitSuccess;

    eval::EvalOptions o = eval::eval_options_from(flat);
    if (o.datasets.empty()) return kExitSuccess;
    o.run_dir = run_dir;
    o.config_digest = config_digest(cfg);
    o.extra_timings = timings;
    if (train_name) o.train_dataset = *train_name;
    const fs::path ov = fs::path(run_dir) / ".zsad" / "overrides.yaml";
    if (fs::exists(ov)) {
      config::Node l = config::load_yaml_file(ov.string());
      if (l.is_list())
        for (const auto& it : l.items()) o.overrides.push_back(it.scalar_text());
    }
    if (const config::Node* tags = cfg.find("tags"); tags && tags->is_map()) {
      models::OptionMap t = flatten_config(*tags);
      for (const auto& [k, v] : t.values) o.tags[k] = v;
    }
    if (rank0) {
      std::cerr << "eval: " << method->display_name() << ", " << o.datasets.size() << " dataset(s), "
                << ctx.world_size() << " rank(s) -> " << run_dir << "\n";
    }
    eval::evaluate(*method, o, *ctx.comm);
  } catch (const comm::CommError& e) {
    std::cerr << "zsad: error: " << e.what() << std::endl;
    std::_Exit(kExitError);
  }
  return kExitSuccess;
}

int run_train_command(const std::vector<std::string>& tokens) {
  if (!tokens.empty() && (tokens[0] == "--help" || tokens[0] == "-h")) {
    std::cout << "zsad train EXPERIMENT [overrides...]\n"
                 "  = zsad run EXPERIMENT task.name=train [overrides...]: trains the method on train.dataset\n"
                 "  (sharded over launcher.nproc ranks), then evaluates it on every eval.datasets entry.\n";
    return kExitSuccess;
  }
  std::vector<std::string> t = tokens;
  if (t.empty()) throw UsageError("zsad train: missing EXPERIMENT");
  t.insert(t.begin() + 1, "task.name=train");
  return command_registry().at("run").run(t);
}

}  // namespace
}  // namespace zsad::cli

ZSAD_JOB_RUNNER("train", "train the method on train.dataset, then evaluate every eval.datasets entry",
                zsad::cli::run_train, zsad::cli::check_train_config);
ZSAD_COMMAND("train", "train an experiment's method, then evaluate it: zsad train EXP [overrides]",
             zsad::cli::run_train_command);
