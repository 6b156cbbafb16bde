#pragma once
// Hydra-style composition. An experiment file (the primary config) may start with a `defaults:`
// list naming config-group options (folders under experiments/) and `_self_`:
//
//   defaults:
//     - trainer: default          # experiments/trainer/default.yaml, placed under `trainer:`
//     - dataset@train: visa       # placed under `train:` instead
//     - optional extras: none     # a missing option is not an error
//     - base                      # another config file (experiments/base.yaml) at this package
//     - override /launcher: local # replaces the choice made elsewhere in the defaults tree
//     - _self_                    # this file's own keys (implicitly last when omitted)
//
// `# @package _global_` in a group option's header places its keys at the root (experiment deltas:
// `+experiment=foo`), `# @package a.b` at a.b. Command-line `group=option` swaps a group,
// `+group=option` appends one to the primary defaults list, `~group` removes one. Then key
// overrides apply (key=v must exist or be declared in the schema; +key=v must not exist; ++key=v
// either; ~key must exist), interpolations resolve, and the schema validates.
#include <string>
#include <utility>
#include <vector>

#include "launch/config/node.h"
#include "launch/config/schema.h"
#include "launch/overrides/override.h"

namespace zsad::config {

struct ComposeRequest {
  std::string experiment;              // a YAML path, or a name looked up in ./experiments/
  std::vector<std::string> overrides;  // command line, no sweeps
  const Schema* schema = nullptr;      // null: the process-wide schema_registry()
  bool use_schema = true;              // false: no defaults filled, no validation
  bool resolve = true;                 // resolve interpolations
  bool validate = true;                // schema validation (needs resolve)
  bool keep_sweep_block = false;       // keep the `sweep:` map in the result
};

struct Composed {
  Node config;
  std::string experiment_file;  // absolute path
  std::string config_root;      // the experiments/ folder holding the config groups
  std::string name;             // config key `experiment`, defaulting to the file's stem
  std::vector<std::pair<std::string, std::string>> choices;  // group -> selected option(s), in order
};

Composed compose(const ComposeRequest& req);

// Finds the experiment file for a command-line argument (path, or name under ./experiments/ or
// $ZSAD_EXPERIMENTS_DIR); throws listing the available experiments.
std::string find_experiment_file(const std::string& arg);
// The nearest ancestor folder named "experiments", else the file's own folder.
std::string find_config_root(const std::string& experiment_file);
// True when `key` ("method", "server/db") names a folder under root.
bool is_config_group(const std::string& root, const std::string& key);
// Option names (file stems) of a group, sorted.
std::vector<std::string> group_options(const std::string& root, const std::string& group);

// Applies one concrete key override (not a group override) to cfg. `schema` may be null.
void apply_key_override(Node& cfg, const overrides::Override& o, const Schema* schema);

// Reads a key, falling back to the schema default (for keys whose section the config omits).
Node get_or_default(const Node& cfg, const std::string& key, const Schema* schema = nullptr);

}  // namespace zsad::config
