// zsad eval EXPERIMENT checkpoint=PATH [overrides...]: evaluate a method on every test dataset of
// an experiment (docs/evaluation.md). Also registers the "eval" job runner, so `zsad run EXP` with
// task.name=eval (training-free methods such as winclip_zero_shot.yaml) runs the same code.
#include <ATen/Parallel.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <iostream>

#include "common/error.h"
#include "common/exit_codes.h"
#include "common/sha256.h"
#include "launch/cli/args.h"
#include "launch/cli/command.h"
#include "launch/cli/eval_phase.h"
#include "launch/config/compose.h"
#include "launch/config/yaml_io.h"
#include "launch/jobs/runner.h"
#include "launch/sweep/sweep.h"
#include "models/clip/compute_threads.h"
#include "trainer/checkpoint.h"
#include "trainer/dist/context.h"
#include "trainer/eval/engine.h"

namespace zsad::cli {

namespace fs = std::filesystem;

namespace {
void flatten_into(const config::Node& n, const std::string& key, models::OptionMap& out) {
  if (n.is_map()) {
    for (size_t i = 0; i < n.keys().size(); ++i) {
      flatten_into(n.items()[i], key.empty() ? n.keys()[i] : key + "." + n.keys()[i], out);
    }
  } else if (n.is_list()) {
    out.values[key + ".#"] = std::to_string(n.items().size());
    for (size_t i = 0; i < n.items().size(); ++i) flatten_into(n.items()[i], key + "." + std::to_string(i), out);
  } else if (n.is_null()) {
    out.values[key] = "null";
  } else {
    out.values[key] = n.scalar_text();
  }
}
}  // namespace

models::OptionMap flatten_config(const config::Node& cfg) {
  models::OptionMap o;
  flatten_into(cfg, "", o);
  return o;
}

std::string config_digest(const config::Node& cfg) {
  config::Node c = cfg;
  for (const char* k : {"output", "launcher", "tags", "sweep"}) c.erase(k);
  for (const char* k : {"trainer.threads", "eval.loader_threads", "eval.progress_every_s", "eval.metric_threads",
                        "eval.panels_per_class", "eval.write_scores", "eval.scores_fp16", "eval.timeout_s",
                        "eval.backend", "model.device"}) {
    c.erase_path(k);
  }
  return sha256_hex(config::to_yaml(c));
}

size_t load_method_checkpoint(models::Method& method, const std::string& path) {
  Checkpoint ck = read_checkpoint(path);
  std::map<std::string, at::Tensor> state;
  for (const std::string prefix : {"method/", "params/"}) {
    for (const auto& [name, t] : ck.tensors) {
      if (name.compare(0, prefix.size(), prefix) == 0) state[name.substr(prefix.size())] = t;
    }
    if (!state.empty()) break;
  }
  if (state.empty()) throw Error(path + ": checkpoint holds no method/ or params/ tensors");
  method.load_state_dict(state, true);
  return state.size();
}

int run_eval_phase(const launch::JobContext& job, const std::string& checkpoint, const nlohmann::json& extra_timings) {
  const config::Node& cfg = job.config;
  models::OptionMap flat = flatten_config(cfg);
  models::apply_compute_threads(flat.integer("trainer.threads", 0));

  eval::EvalOptions o = eval::eval_options_from(flat);
  if (o.datasets.empty()) throw Error("eval.datasets: no test dataset in the config (add dataset@eval.datasets.<name>: <option>)");
  o.run_dir = job.job_dir.empty() ? "." : job.job_dir;
  o.config_digest = config_digest(cfg);
  o.extra_timings = extra_timings;
  const fs::path ov = fs::path(o.run_dir) / ".zsad" / "overrides.yaml";
  if (fs::exists(ov)) {
    config::Node l = config::load_yaml_file(ov.string());
    if (l.is_list()) {
      for (const auto& it : l.items()) o.overrides.push_back(it.scalar_text());
    }
  }
  if (const config::Node* tags = cfg.find("tags"); tags && tags->is_map()) {
    models::OptionMap t = flatten_config(*tags);
    for (const auto& [k, v] : t.values) o.tags[k] = v;
  }

  dist::DistConfig dc;
  dc.backend = flat.str("eval.backend", "auto");
  dc.timeout_s = flat.real("eval.timeout_s", 600.0);
  dist::DistContext ctx = dist::init_distributed(dc);

  std::unique_ptr<models::Method> method = models::make_method(flat);
  std::string ck = checkpoint.empty() ? flat.str("eval.checkpoint") : checkpoint;
  if (!ck.empty()) {
    const size_t n = load_method_checkpoint(*method, ck);
    if (ctx.rank() == 0) std::cerr << "eval: loaded " << n << " method tensors from " << ck << "\n";
  } else if (method->trainable() && ctx.rank() == 0) {
    std::cerr << "eval: warning: method '" << method->name()
              << "' is trainable but no checkpoint was given; evaluating its initial (untrained) state\n";
  }
  if (ctx.rank() == 0) {
    std::cerr << "eval: " << method->display_name() << ", " << o.datasets.size() << " dataset(s), " << ctx.world_size()
              << " rank(s), batch " << o.batch_size << " per rank -> " << o.run_dir << "\n";
  }
  try {
    eval::evaluate(*method, o, *ctx.comm);
  } catch (const comm::CommError& e) {
    std::cerr << "zsad: error: " << e.what() << std::endl;
    std::_Exit(kExitError);
  }
  return kExitSuccess;
}

namespace {

int eval_runner(const launch::JobContext& job) { return run_eval_phase(job); }

int run_eval_command(const std::vector<std::string>& tokens) {
  Args args(
      "zsad eval EXPERIMENT [checkpoint=PATH] [overrides...] [--run-dir DIR]\n"
      "  Evaluates the experiment's method on every dataset under eval.datasets; results/<dataset>.json per dataset.");
  args.flag("run-dir", "write into this directory instead of outputs/<experiment>/<date>/<time>/ (under a launcher: "
                       "every rank must get the same one)")
      .toggle("cfg", "print the resolved config and exit")
      .positionals("EXPERIMENT [checkpoint=PATH] [overrides...]", 1);
  args.parse(tokens);
  config::ComposeRequest req;
  req.experiment = args.rest()[0];
  for (size_t i = 1; i < args.rest().size(); ++i) {
    const std::string& t = args.rest()[i];
    if (t.rfind("checkpoint=", 0) == 0) req.overrides.push_back("eval.checkpoint=" + t.substr(11));
    else req.overrides.push_back(t);
  }
  req.overrides.push_back("task.name=eval");
  config::Composed c = config::compose(req);
  if (args.on("cfg")) {
    config::EmitOptions eo;
    eo.escape_interpolation = true;
    std::cout << config::to_yaml(c.config, eo);
    return kExitSuccess;
  }
  launch::check_job_config(c.config);
  // A checkpoint that is not there fails now, before a run directory is created for it.
  const config::Node ck = config::get_or_default(c.config, "eval.checkpoint");
  if (ck.is_string() && !ck.as_string().empty() && !std::filesystem::is_regular_file(ck.as_string()))
    throw Error("checkpoint '" + ck.as_string() + "' " +
                (std::filesystem::is_directory(ck.as_string())
                     ? "is a directory; pass a checkpoint file (e.g. <run dir>/checkpoints/ckpt-<step>.h5)"
                     : "does not exist"));
  // Already a rank of a launched group: every rank runs in this process and shares --run-dir.
  const launch::LaunchedRank launched = launch::launched_rank();
  if (launched.world_size > 1 && !args.has("run-dir"))
    throw UsageError("under a launcher (WORLD_SIZE > 1) zsad eval needs --run-dir DIR shared by every rank");
  const std::string dir =
      launch::make_run_dir(c.config, c.name, args.has("run-dir") ? args.get("run-dir") : "", launched.rank == 0);
  std::vector<std::string> ovs(req.overrides.begin(), req.overrides.end() - 1);
  if (launched.world_size > 1) return launch::run_as_launched_rank(dir, c.config, ovs, launched, eval_runner);
  std::cerr << "zsad eval: " << dir << "\n";
  launch::RunOptions opts;
  opts.tee = true;
  return launch::run_single(dir, c.config, ovs, opts);
}

}  // namespace

}  // namespace zsad::cli

ZSAD_JOB_RUNNER("eval", "evaluate the method on every eval.datasets entry (checkpoint: eval.checkpoint)",
                zsad::cli::eval_runner, [](const zsad::config::Node& cfg) {
                  zsad::eval::dataset_specs_from(zsad::cli::flatten_config(cfg));
                });
ZSAD_COMMAND("eval", "evaluate an experiment's method on its test datasets: zsad eval EXP checkpoint=PATH [overrides]",
             zsad::cli::run_eval_command);
