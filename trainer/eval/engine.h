#pragma once
// The zero-shot evaluation engine: every test dataset of an experiment, sharded across ranks
// (each image exactly once, no padding), batched inference through the models::Method interface,
// upsampling + Gaussian smoothing (models/postprocess.h), per-class accumulators moved to one owner
// rank per class, metrics, results/<dataset>.json (zsad.results/1), optional scores/<dataset>.h5,
// per-image score listings, PNG panels and a rank-0 progress line. docs/evaluation.md.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/index.h"
#include "models/methods/method.h"
#include "results/metrics/metrics.h"
#include "trainer/comm/communicator.h"
#include "trainer/feature_cache.h"

namespace zsad::eval {

// One test dataset, from its config file (experiments/dataset/<name>.yaml placed under
// eval.datasets.<name>). Every per-dataset setting lives here — never derived from the name.
struct DatasetSpec {
  std::string name;
  std::string root;
  std::string meta;                  // meta.json (relative to root or absolute); "" = <root>/meta.json if present
  std::string layout;                // indexer layout used when there is no meta.json
  std::string split = "test";
  int64_t eval_size = 518;           // square evaluation size of maps and masks (<= 0: the method's input size)
  std::string upsampling;            // bilinear | bilinear_align_corners | nearest ("" = the method's default)
  double smoothing_sigma = 4.0;      // scipy gaussian_filter sigma (0 = none)
  std::vector<std::string> metrics;  // metric keys reported (empty = every defined one)
  std::string pro_mode = "exact";    // exact | anomalyclip
  double fpr_limit = 0.3;
  int64_t shots = 0;                 // few-shot support images per class (0 = zero-shot)
  std::vector<std::string> classes;  // restrict to these classes (empty = all)
  models::OptionMap method_options;  // method_options.<method>.* (without the prefix) for every method
  // Synthetic data generated when the root has no meta.json (data/synth.h presets).
  std::string synth_preset;          // "" = never generate
  int synth_size = 256, synth_images_per_class = 50, synth_train_per_class = 50;
  double synth_anomaly_fraction = 0.4;
  double synth_defect_scale = 1.0;
  uint64_t synth_seed = 0;
};

struct EvalOptions {
  std::vector<DatasetSpec> datasets;
  std::string run_dir = ".";
  int64_t batch_size = 1;            // images per rank per forward
  int loader_threads = 1;
  bool write_scores = false;         // scores/<dataset>.h5
  bool scores_fp16 = false;
  int64_t panels_per_class = 2;      // PNG panels per class (0 = none)
  std::string shard = "contiguous";  // contiguous | strided
  uint64_t seed = 0;
  double progress_every_s = 2.0;
  int metric_threads = 1;
  // What the results files record.
  std::string method_name;
  std::optional<std::string> train_dataset;
  std::vector<std::string> overrides;
  std::string config_digest;
  std::string git_revision;          // "" = detect (ZSAD_GIT_REVISION, then `git rev-parse HEAD`)
  nlohmann::json tags = nlohmann::json::object();
  nlohmann::json extra_timings = nlohmann::json::object();  // e.g. train_s, added to every results file
  int threads_per_rank = 1;
  // Frozen-feature cache (trainer/feature_cache.h, docs/feature_cache.md): per dataset, when
  // use_cache and the method offers frozen features (Method::frozen_features), the encoder outputs
  // are read from (or first written to, sharded across ranks) the cache file of their key, and the
  // scoring loop decodes no images. eval_options_from: use_cache = cache.enabled, cache.*.
  bool use_cache = false;
  trainer::FeatureCacheOptions cache;
  std::string cache_dtype = "float16";  // cache.dtype (part of the key)
  int cache_threads = 1;                // image decoding threads while building
};

struct DatasetReport {
  std::string name;
  int64_t images = 0;        // in the whole dataset
  int64_t rank_images = 0;   // scored by this rank
  double seconds = 0;
  results::DatasetMetrics metrics;  // valid on rank 0
  // Feature cache: "" (not used), "hit" or "built"; its file; this rank's encoder forwards while
  // scoring (0 with a cache) and the encoding time the cache saved (hit: recorded build time).
  std::string cache_state;
  std::string cache_path;
  int64_t encoder_forwards = 0;
  double cache_saved_s = 0;
  std::string results_path;         // rank 0
};

// The global indices of rank `rank`'s shard of n images: every index in exactly one shard, no
// padding. contiguous: [r*n/W, (r+1)*n/W); strided: r, r+W, r+2W, ...
std::vector<int64_t> shard_indices(int64_t n, int rank, int world_size, const std::string& mode);

// Builds EvalOptions from the flattened run config (eval.*, method.name, seed, ...). Errors name the key.
EvalOptions eval_options_from(const models::OptionMap& config);
// The dataset specs under eval.datasets.<name>.*; unknown keys are errors naming them.
std::vector<DatasetSpec> dataset_specs_from(const models::OptionMap& config);

// The dataset index as training, caching and evaluation all resolve it: meta.json, the layout
// indexer, or a synthetic preset that rank 0 generates on first use (under a lock file, so the
// jobs of a sweep do not race). Collective: every rank must call it. `who` prefixes messages.
data::Meta load_dataset_meta(const DatasetSpec& s, comm::Communicator& comm, const std::string& who);

// Evaluates `method` on every dataset of `o`. Every rank calls it; collectives go through `comm`.
std::vector<DatasetReport> evaluate(models::Method& method, const EvalOptions& o, comm::Communicator& comm);

// Unlabelled images (zsad predict): per-image score, the post-processed map (HDF5) and a PNG overlay.
// Bounds of the map size and the Gaussian sigma (dataset settings and zsad predict flags): real
// maps are 240-1024 px and sigma 4; beyond these the buffers alone exhaust memory.
inline constexpr int64_t kMaxMapSize = 4096;
inline constexpr double kMaxSmoothingSigma = 256.0;

struct PredictOptions {
  std::vector<std::string> images;  // files
  std::vector<std::string> support; // normal reference images of the class (few-shot methods draw their shots here)
  std::string out_dir;
  int64_t eval_size = 0;            // <= 0: the method's input size
  std::string upsampling;           // "" = method default
  double smoothing_sigma = 4.0;
  std::string class_name = "object";
  int64_t batch_size = 1;
  bool overlays = true;
};
// Writes <out>/scores.csv (path,score), <out>/maps.h5 (maps [N,S,S], paths) and <out>/overlays/*.png.
// The method's per-run state (APT's class prompts) goes under <out> as under a run directory.
void predict(models::Method& method, const PredictOptions& o);

// "abc123..." of the source tree, "unknown" when neither ZSAD_GIT_REVISION nor git is available.
std::string detect_git_revision();
nlohmann::json hardware_info(int world_size, int threads_per_rank);

}  // namespace zsad::eval
