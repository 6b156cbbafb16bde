// zsad cache EXPERIMENT [overrides...]: precomputes the frozen-encoder features of the experiment's
// training set (train.dataset) and test sets (eval.datasets) into the feature cache
// (trainer/feature_cache.h, docs/feature_cache.md), so training epochs, evaluations and every sweep
// job sharing a key start warm. Runs on one process or under `zsad launch -n N` / mpirun (each
// rank encodes a contiguous slice; rank 0 merges). Owned by engineer "cache".
#include <ATen/Parallel.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#include "common/error.h"
#include "common/exit_codes.h"
#include "data/index.h"
#include "launch/cli/args.h"
#include "launch/cli/command.h"
#include "launch/cli/eval_phase.h"
#include "launch/config/compose.h"
#include "launch/config/yaml_io.h"
#include "models/clip/compute_threads.h"
#include "trainer/dist/context.h"
#include "trainer/eval/engine.h"
#include "trainer/feature_cache.h"

namespace zsad::cli {
namespace {

namespace fs = std::filesystem;

struct Target {
  eval::DatasetSpec spec;
  std::string role;  // train | test
};

// train.dataset.* (one dataset config) parsed by the same code as eval.datasets.<name>.*.
std::vector<Target> targets_from(const models::OptionMap& flat, const std::string& only) {
  std::vector<Target> out;
  models::OptionMap train = flat.sub("train.dataset");
  if (!train.values.empty() && (only.empty() || only == "train")) {
    models::OptionMap as_eval;
    const std::string name = train.str("name", "train");
    for (const auto& [k, v] : train.values) as_eval.set("eval.datasets." + name + "." + k, v);
    for (auto& s : eval::dataset_specs_from(as_eval)) out.push_back({s, "train"});
  }
  if (only.empty() || only == "test")
    for (auto& s : eval::dataset_specs_from(flat)) out.push_back({s, "test"});
  return out;
}

// The dataset index as the training / evaluation code resolves it (meta.json, indexer layout, or
// a synthetic preset generated on first use by rank 0).
std::vector<data::Sample> load_samples(const eval::DatasetSpec& s, comm::Communicator& comm) {
  data::Meta meta = eval::load_dataset_meta(s, comm, "cache");
  data::Split split = meta.split(s.split);
  if (!s.classes.empty()) {
    data::Split f;
    for (const auto& c : s.classes) {
      auto it = split.samples.find(c);
      if (it == split.samples.end()) throw Error("dataset " + s.name + ": no class '" + c + "'");
      for (const auto& x : it->second) f.add(x);
    }
    split = f;
  }
  return split.flat();
}

int run_cache_command(const std::vector<std::string>& tokens) {
  Args args(
      "zsad cache EXPERIMENT [overrides...] [--only train|test] [--dry-run]\n"
      "  Precomputes frozen-encoder features of train.dataset and every eval.datasets entry into cache.dir.\n"
      "  Under `zsad launch -n N` every rank encodes a slice.");
  args.flag("only", "only the training set (train) or only the test sets (test)", "")
      .toggle("dry-run", "print each dataset's cache file and whether it is present, encode nothing")
      .positionals("EXPERIMENT [overrides...]", 1);
  args.parse(tokens);
  const std::string only = args.get("only");
  if (!only.empty() && only != "train" && only != "test") throw UsageError("--only: expected train or test, got '" + only + "'");
  config::ComposeRequest req;
  req.experiment = args.rest()[0];
  for (size_t i = 1; i < args.rest().size(); ++i) req.overrides.push_back(args.rest()[i]);
  config::Composed c = config::compose(req);
  models::OptionMap flat = flatten_config(c.config);
  zsad::models::apply_compute_threads(flat.integer("trainer.threads", 0));

  dist::DistConfig dc;
  dc.backend = flat.str("eval.backend", "auto");
  dc.timeout_s = flat.real("eval.timeout_s", 600.0);
  dist::DistContext ctx = dist::init_distributed(dc);
  const bool rank0 = ctx.rank() == 0;

  trainer::FeatureCacheOptions opts = trainer::cache_options_from(flat);
  std::string global_output = flat.str("cache.global_output", "auto");
  if (global_output == "auto") global_output = flat.str("method.name") == "cops" ? "raw_cls" : "ln_post_cls";
  std::vector<int64_t> layers;
  for (const auto& l : flat.list("cache.layers")) layers.push_back(std::stoll(l));
  const int threads = static_cast<int>(std::max<int64_t>(1, flat.integer("cache.loader_threads", 1)));

  std::vector<Target> targets = targets_from(flat, only);
  if (targets.empty())
    throw Error(only.empty() ? std::string("the experiment has no train.dataset and no eval.datasets entry")
                             : "--only " + only + ": the experiment has no " +
                                   (only == "train" ? "train.dataset" : "eval.datasets entry"));
  models::ClipModel clip = models::build_clip_model(flat);
  if (rank0)
    std::cerr << "cache: " << targets.size() << " dataset(s), " << ctx.world_size() << " rank(s), dir " << opts.dir
              << ", " << flat.str("cache.dtype", "float16") << ", global " << global_output << "\n";
  int64_t hits = 0, misses = 0;
  double saved = 0, spent = 0;
  for (const auto& t : targets) {
    std::vector<data::Sample> samples = load_samples(t.spec, *ctx.comm);
    trainer::FeatureCacheKey key =
        trainer::clip_cache_key(flat, clip, t.spec.name, t.spec.split, samples, t.spec.root, global_output, layers);
    if (args.on("dry-run")) {
      const trainer::FeatureCacheKey stamped = trainer::with_dataset_files(key, samples, ctx.comm.get());
      if (rank0) {
        const std::string p = (fs::path(opts.dir) / stamped.file_name()).string();
        std::cout << t.role << " " << t.spec.name << " (" << t.spec.split << ", " << samples.size() << " images): " << p
                  << (fs::exists(p) ? " [present]" : " [absent]") << "\n";
      }
      continue;
    }
    trainer::EncoderFn enc = trainer::make_clip_encoder(clip, samples, t.spec.root, key, threads);
    auto cache = trainer::FeatureCache::open_or_build(key, samples, enc, opts, ctx.comm.get());
    const auto& st = cache->stats();
    (st.hit ? hits : misses) += 1;
    saved += st.saved_seconds;
    spent += st.hit ? 0.0 : st.build_seconds;
    if (rank0)
      std::cout << t.role << " " << t.spec.name << " (" << t.spec.split << ", " << cache->size() << " images): "
                << (st.hit ? "hit" : "built") << " " << cache->path() << "\n";
  }
  if (rank0 && !args.on("dry-run"))
    std::cerr << "cache: " << hits << " hit(s), " << misses << " miss(es); built in " << spent << " s, saved " << saved
              << " s of encoding\n";
  ctx.comm->barrier();
  return kExitSuccess;
}

}  // namespace
}  // namespace zsad::cli

ZSAD_COMMAND("cache", "precompute frozen-encoder features of an experiment's datasets: zsad cache EXP [overrides]",
             zsad::cli::run_cache_command);
