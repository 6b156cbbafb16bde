#pragma once
// The evaluation phase of a job, shared by the "eval" job runner (zsad eval, zsad run with
// task.name=eval) and by training runners, which call it after training with their checkpoint.
#include <string>

#include <nlohmann/json.hpp>

#include "launch/config/node.h"
#include "launch/jobs/runner.h"
#include "models/methods/method.h"

namespace zsad::cli {

// The resolved config flattened for models/ and trainer/ (models::OptionMap: dotted scalars,
// lists as key.# + key.N).
models::OptionMap flatten_config(const config::Node& cfg);

// SHA-256 of the resolved config without output/launcher/logging/resource keys (results digests).
std::string config_digest(const config::Node& cfg);

// Builds the method from the config, loads `checkpoint` (HDF5 from trainer/checkpoint.h; "" = the
// config's eval.checkpoint, or none), sets up the communicator from the launcher's environment and
// evaluates every dataset under eval.datasets into job.job_dir. extra_timings (e.g. {"train_s": ..})
// are recorded in every results file. Returns an exit code.
int run_eval_phase(const launch::JobContext& job, const std::string& checkpoint = "",
                   const nlohmann::json& extra_timings = nlohmann::json::object());

// Loads a checkpoint's method state into `method`: tensors under "method/" (preferred) or "params/",
// prefix removed, strict. Returns the number of tensors loaded.
size_t load_method_checkpoint(models::Method& method, const std::string& path);

}  // namespace zsad::cli
