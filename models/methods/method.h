#pragma once
// The method interface every anomaly-detection method implements (CoPS, APT, baselines), and the
// registry that builds one from `method.name`. The evaluation engine (trainer/eval/) and the
// training loop only talk to this interface, so they stay method-agnostic.
//
// Lifecycle at evaluation:
//   auto m = make_method(options);                 // options: the run config, flattened (OptionMap)
//   m->load_state_dict(checkpoint_state, true);    // trained methods: the checkpoint's method/ tensors
//   for each test dataset:
//     m->begin_dataset(ctx);                       // classes + the dataset's per-method settings
//     for each class: m->prepare_class(support);   // few-shot hook; zero-shot methods ignore it
//     for each batch: out = m->infer(batch);       // image scores + maps at patch resolution
// Upsampling, smoothing, metrics are the engine's job (models/postprocess.h).
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "models/clip/clip_model.h"

namespace zsad::models {

// A flattened config subtree: dotted key -> scalar text as written in YAML ("0.07", "true",
// "bilinear"). A list is stored as "<key>.#" = count and "<key>.0", "<key>.1", ... (elements that
// are maps are flattened below their index). Built by the trainer from the resolved config.
class OptionMap {
 public:
  std::map<std::string, std::string> values;

  bool has(const std::string& key) const;
  // Typed getters; a present but malformed value throws zsad::Error naming the key and value.
  std::string str(const std::string& key, const std::string& def = "") const;
  int64_t integer(const std::string& key, int64_t def) const;
  double real(const std::string& key, double def) const;
  bool flag(const std::string& key, bool def) const;
  std::vector<std::string> list(const std::string& key, const std::vector<std::string>& def = {}) const;
  // Keys below `prefix.` with the prefix removed (e.g. sub("method.cops") -> {"alpha": ...}).
  OptionMap sub(const std::string& prefix) const;
  // The same options with `over`'s values replacing or adding keys.
  OptionMap merged(const OptionMap& over) const;
  void set(const std::string& key, const std::string& value) { values[key] = value; }
  void set_list(const std::string& key, const std::vector<std::string>& items);
};

// One batch as a method sees it. Images are CLIP-normalised at the method's input size.
struct MethodBatch {
  at::Tensor images;                     // [B,3,S,S] float32
  at::Tensor masks;                      // [B,1,S,S] float32 0/1 (training; may be undefined at test)
  at::Tensor labels;                     // [B] int64 0/1: training only (infer never gets labels)
  std::vector<std::string> class_names;  // per image
  std::vector<int64_t> indices;          // global sample indices in the split (never rank-local)
  uint64_t seed = 0;                     // run seed; per-image randomness = f(seed, index)
  int64_t step = 0;                      // training step (0 at test)
};

struct MethodOutput {
  at::Tensor image_scores;  // [B] float32, the method's own image score (its fusion rule applied)
  at::Tensor anomaly_maps;  // [B,h,w] float32 at patch resolution (undefined: image-only method)
};

// Batch-spanning reductions for losses under data parallelism (trainer/ddp/global_ops.h fills them);
// empty functions = single process.
struct TrainContext {
  std::function<at::Tensor(const at::Tensor&)> global_sum;  // allreduce-sum, detached
  std::function<at::Tensor(const at::Tensor&)> gather;      // concat over ranks along dim 0
  double grad_scale = 1.0;                                  // world size when gradients are averaged
  int64_t step = 0, epoch = 0;
  int rank = 0, world_size = 1;
};

// What the engine tells a method about the dataset it is about to score.
struct DatasetContext {
  std::string name;                  // test dataset name (for logs only; never for settings)
  std::vector<std::string> classes;  // index order
  OptionMap options;                 // the dataset config's `method_options.<method name>` block
  bool training = false;             // true when the dataset is a training set
  // The evaluation's communicator (trainer/comm) for methods that train across ranks while
  // evaluating (APT method.apt.class_parallel=ddp): in-place sum over ranks, every rank ends with
  // the same bytes; every rank must call it equally often. Empty = single process.
  std::function<void(at::Tensor&)> allreduce_sum;
  int rank = 0, world_size = 1;      // this process in the evaluation (whatever launched it)
  std::string run_dir;               // the run directory, shared by the ranks (zsad predict: --out; "" = none)
};

// Few-shot support set of one class (normal training images). Empty images for zero-shot runs.
struct SupportSet {
  std::string class_name;
  at::Tensor images;                 // [K,3,S,S] or undefined
  std::vector<int64_t> indices;      // train-split global indices of the shots
  std::vector<std::string> names;    // the shots' img_path (as in the dataset index), same order
};

// A config key a method reads (registered into the launch schema as method.<key> / model.<key>).
struct MethodKey {
  std::string key;            // full dotted key, e.g. "method.winclip.temperature"
  std::string type;           // bool | int | float | string | list | map
  std::string default_yaml;   // YAML text of the default ("null" = none)
  std::string doc;
  std::vector<std::string> choices;  // strings only
};

using NamedTensorList = std::vector<std::pair<std::string, at::Tensor>>;

// Frozen-feature hook (the evaluation engine's feature cache, trainer/feature_cache.h,
// docs/feature_cache.md). A method whose image encoder is frozen and whose inference applies no
// random augmentation describes the encoder outputs infer() needs; the engine then fills (once per
// cache key, sharded over ranks) a cache with encode_frozen() and installs a feature source for the
// dataset's scoring loop, so infer() reads the features by global sample index instead of running
// the encoder. The cache key is derived from `clip` and the model.* options (weights or init seed,
// image size, activation, positional interpolation, vv_depth), `global_output` and `layers`.
struct FrozenFeatureSpec {
  ClipModel clip{nullptr};        // the frozen encoder
  OptionMap model_options;        // model.* the encoder was built from (cache key)
  std::string global_output;      // raw_cls (CLS of the original path @ proj, CoPS) | ln_post_cls (OpenAI)
  std::vector<int64_t> layers;    // 1-based blocks of the patch tokens (empty = the last)
};
// (global [B,D], patch [B,P,Dp]) float32 for the batch's global sample indices.
using FeatureSource = std::function<std::pair<at::Tensor, at::Tensor>(const MethodBatch&)>;

class Method {
 public:
  virtual ~Method() = default;

  virtual std::string name() const = 0;                         // registry name (method.name)
  virtual std::string display_name() const { return name(); }   // name in tables
  virtual int64_t input_size() const = 0;                       // image size the method consumes
  virtual std::string default_upsampling() const { return "bilinear"; }  // when the dataset sets none
  virtual std::string weights_path() const { return ""; }       // for the results' weights digest

  // Training (methods without trainable parameters return an empty list and are never trained).
  virtual NamedTensorList named_parameters() { return {}; }
  bool trainable() { return !named_parameters().empty(); }
  // Named loss terms; "total" is what the optimizer minimises. Default: throws (training-free).
  virtual std::map<std::string, at::Tensor> train_step(const MethodBatch& batch, const TrainContext& ctx);

  // Evaluation.
  virtual void begin_dataset(const DatasetContext&) {}
  virtual void prepare_class(const SupportSet&) {}
  virtual MethodOutput infer(const MethodBatch& batch) = 0;

  // Frozen-feature cache hook (see FrozenFeatureSpec). Default: nothing cacheable (the method
  // runs its encoder itself, e.g. APT); then encode_frozen / set_feature_source are never called.
  virtual std::optional<FrozenFeatureSpec> frozen_features() const { return std::nullopt; }
  // The features infer() would compute itself from these images ([B,3,S,S]): global [B,D] and
  // patch [B,P,Dp], float32 on the CPU, computed exactly as infer() computes them (so a float32
  // cache gives the scores of an uncached run). Default: throws.
  virtual std::pair<at::Tensor, at::Tensor> encode_frozen(const at::Tensor& images);
  // Installs the source infer() takes its frozen features from (nullptr: encode the images again).
  // While a source is installed, infer() must not read batch.images (it may be a [B,0] placeholder
  // that only carries the batch size). Default: throws.
  virtual void set_feature_source(FeatureSource source);
  // Image-encoder forwards this method has run (infer() without a source, encode_frozen()); tests
  // and the engine's log use it to show that a warm cache runs no encoder.
  int64_t encoder_forwards() const { return encoder_forwards_; }

  // State saved into the trainer's checkpoint under "method/<name>" (parameters and buffers).
  virtual std::map<std::string, at::Tensor> state_dict() { return {}; }
  // strict: every expected key present and none unknown. Throws zsad::Error naming the key.
  virtual void load_state_dict(const std::map<std::string, at::Tensor>& state, bool strict = true);

 protected:
  int64_t encoder_forwards_ = 0;
};

using MethodFactory = std::function<std::unique_ptr<Method>(const OptionMap& options)>;

struct MethodInfo {
  std::string name;
  std::string display_name;
  std::string doc;
  std::vector<MethodKey> keys;  // config keys the method declares
  MethodFactory make;
};

// Registered methods by name; built-ins (winclip, ...) are registered on first access.
const std::map<std::string, MethodInfo>& method_registry();
void register_method(MethodInfo info);
// Builds `options.str("method.name")`; throws zsad::Error listing the known names.
std::unique_ptr<Method> make_method(const OptionMap& options);

// The model.* entries of a flattened config (FrozenFeatureSpec::model_options).
OptionMap model_options_of(const OptionMap& options);

// Config keys of the model group (model.*) shared by every CLIP-based method.
std::vector<MethodKey> clip_model_keys();

// Builds the CLIP model described by `model.*`: model.arch, model.weights (path; null = random
// weights initialised from model.init_seed), model.image_size, model.activation, model.pos_interp,
// model.device. Frozen (eval, no gradients).
ClipModel build_clip_model(const OptionMap& options);

// Text -> [context_length] zero-padded token ids (SOT ... EOT). With model.vocab (or
// $ZSAD_CLIP_VOCAB) set: CLIP's BPE tokenizer. Without a vocabulary and with random weights
// (model.weights null, e.g. the tiny test/demo CLIP): a deterministic word-hash tokenizer, since
// random text towers give meaningless text features either way. Real weights without a
// vocabulary: zsad::Error naming model.vocab.
using TextTokenizer = std::function<std::vector<int64_t>(const std::string& text)>;
TextTokenizer make_text_tokenizer(const OptionMap& options, int64_t context_length, int64_t vocab_size);

}  // namespace zsad::models
