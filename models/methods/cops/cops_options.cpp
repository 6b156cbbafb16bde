#include "models/methods/cops/cops_options.h"

#include <functional>
#include <sstream>

#include "common/error.h"

namespace zsad::models::cops {
namespace {

const char kPrefix[] = "method.cops.";

// Shortest decimal text that reads back to the same double ("0.26", not "0.26000000000000001").
std::string fmt_double(double v) {
  for (int precision = 15; precision <= 17; ++precision) {
    std::ostringstream os;
    os.precision(precision);
    os << v;
    if (precision == 17 || std::stod(os.str()) == v) return os.str();
  }
  return {};
}

bool parse_bool(const std::string& key, const std::string& v) {
  if (v == "true" || v == "True" || v == "on" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "False" || v == "off" || v == "0" || v == "no") return false;
  throw Error("method.cops." + key + ": expected true/false, got '" + v + "'");
}

int64_t parse_int(const std::string& key, const std::string& v) {
  try {
    size_t pos = 0;
    long long x = std::stoll(v, &pos);
    if (pos == v.size()) return x;
  } catch (const std::exception&) {
  }
  throw Error("method.cops." + key + ": expected an integer, got '" + v + "'");
}

double parse_double(const std::string& key, const std::string& v) {
  try {
    size_t pos = 0;
    double x = std::stod(v, &pos);
    if (pos == v.size()) return x;
  } catch (const std::exception&) {
  }
  throw Error("method.cops." + key + ": expected a number, got '" + v + "'");
}

struct KeyDef {
  const char* name;
  const char* help;
  std::function<void(CopsOptions&, const std::string&)> set;
  std::function<std::string(const CopsOptions&)> get;
  const char* type = "string";
  std::vector<std::string> choices = {};
};

#define ZSAD_INT_KEY(field, help)                                                            \
  KeyDef{#field, help, [](CopsOptions& o, const std::string& v) { o.field = parse_int(#field, v); }, \
         [](const CopsOptions& o) { return std::to_string(o.field); }, "int"}
#define ZSAD_DOUBLE_KEY(field, help)                                                             \
  KeyDef{#field, help, [](CopsOptions& o, const std::string& v) { o.field = parse_double(#field, v); }, \
         [](const CopsOptions& o) { return fmt_double(o.field); }, "float"}
#define ZSAD_BOOL_KEY(field, help)                                                             \
  KeyDef{#field, help, [](CopsOptions& o, const std::string& v) { o.field = parse_bool(#field, v); }, \
         [](const CopsOptions& o) { return std::string(o.field ? "true" : "false"); }, "bool"}

const std::vector<KeyDef>& key_table() {
  static const std::vector<KeyDef> table = {
      ZSAD_INT_KEY(feature_dim, "CLIP embedding dim D (= text width)"),
      ZSAD_INT_KEY(num_prototypes, "M prototypes per state (prt_length)"),
      ZSAD_INT_KEY(extractor_heads, "attention heads of the prototype extractor"),
      ZSAD_INT_KEY(n_ctx, "context + state tokens per prompt (prompt_length)"),
      ZSAD_INT_KEY(cls_len, "class tokens receiving the VAE sample"),
      ZSAD_INT_KEY(deep_prompt_depth, "deep compound text prompts (layers 2..depth+1)"),
      ZSAD_INT_KEY(deep_prompt_length, "tokens per deep prompt (t_n_ctx)"),
      ZSAD_BOOL_KEY(deep_prompt_fp16, "round deep prompts to fp16 before use (code's .half())"),
      ZSAD_DOUBLE_KEY(init_std, "std of the N(0, std) initialisation"),
      ZSAD_BOOL_KEY(ests, "ESTS: prototype extractor, center losses, prototype injection"),
      ZSAD_BOOL_KEY(icts, "ICTS: VAE class tokens (off = prompt 'X*12 object.')"),
      ZSAD_BOOL_KEY(saga, "SAGA: test-time spatial weighting of patch probabilities"),
      KeyDef{"assignment", "prototype-to-prompt assignment: code (P_a->normal) | figure (P_n->normal)",
             [](CopsOptions& o, const std::string& v) {
               if (v == "code") o.assignment = PrototypeAssignment::kCode;
               else if (v == "figure") o.assignment = PrototypeAssignment::kFigure;
               else throw Error("method.cops.assignment: expected code|figure, got '" + v + "'");
             },
             [](const CopsOptions& o) {
               return std::string(o.assignment == PrototypeAssignment::kCode ? "code" : "figure");
             }, "string", {"code", "figure"}},
      ZSAD_BOOL_KEY(reconstruction, "VAE reconstruction loss (code: off when training on VisA)"),
      KeyDef{"reconstruction_mode", "all_pairs (code's broadcast) | per_sample",
             [](CopsOptions& o, const std::string& v) {
               if (v == "all_pairs") o.reconstruction_mode = ReconstructionMode::kAllPairs;
               else if (v == "per_sample") o.reconstruction_mode = ReconstructionMode::kPerSample;
               else throw Error("method.cops.reconstruction_mode: expected all_pairs|per_sample, got '" + v + "'");
             },
             [](const CopsOptions& o) {
               return std::string(o.reconstruction_mode == ReconstructionMode::kAllPairs ? "all_pairs" : "per_sample");
             }, "string", {"all_pairs", "per_sample"}},
      ZSAD_INT_KEY(r_train, "posterior VAE samples per image in training"),
      ZSAD_INT_KEY(r_test, "prior VAE samples per image at test"),
      ZSAD_DOUBLE_KEY(temperature, "softmax temperature of the cosine logits"),
      ZSAD_DOUBLE_KEY(w_image, "weight of the image CE loss"),
      ZSAD_DOUBLE_KEY(w_patch, "weight of focal + dice + inverse dice"),
      ZSAD_DOUBLE_KEY(w_gather, "weight of the gather (normal center) loss"),
      ZSAD_DOUBLE_KEY(w_scatter, "weight of the scatter (anomaly center) loss"),
      ZSAD_DOUBLE_KEY(w_kl, "weight of the VAE KL loss"),
      ZSAD_DOUBLE_KEY(w_rec, "weight of the VAE reconstruction loss"),
      ZSAD_DOUBLE_KEY(focal_gamma, "focal loss gamma"),
      ZSAD_DOUBLE_KEY(focal_smooth, "focal loss one-hot clamp and pt offset"),
      KeyDef{"train_upsample", "patch map upsampling in training: nearest | bilinear",
             [](CopsOptions& o, const std::string& v) {
               if (v == "nearest") o.train_upsample = UpsampleMode::kNearest;
               else if (v == "bilinear") o.train_upsample = UpsampleMode::kBilinear;
               else throw Error("method.cops.train_upsample: expected nearest|bilinear, got '" + v + "'");
             },
             [](const CopsOptions& o) {
               return std::string(o.train_upsample == UpsampleMode::kNearest ? "nearest" : "bilinear");
             }, "string", {"nearest", "bilinear"}},
      ZSAD_INT_KEY(train_kernel, "avg-pool smoothing kernel on the training set (3 MVTec, else 5)"),
      ZSAD_INT_KEY(test_kernel, "avg-pool smoothing kernel on the test set (3 VisA, else 5)"),
      ZSAD_DOUBLE_KEY(alpha, "SAGA weight of minmax(d_n) (0.35 VisA, else 0.26)"),
      ZSAD_DOUBLE_KEY(beta, "image score weight of the global probability (1.0 VisA, else 0.9)"),
      KeyDef{"saga_minmax", "range of the SAGA min-max: per_image | batch (code's tensor-wide, run at batch 1)",
             [](CopsOptions& o, const std::string& v) {
               if (v == "per_image") o.saga_minmax = MinMaxScope::kPerImage;
               else if (v == "batch") o.saga_minmax = MinMaxScope::kBatch;
               else throw Error("method.cops.saga_minmax: expected per_image|batch, got '" + v + "'");
             },
             [](const CopsOptions& o) {
               return std::string(o.saga_minmax == MinMaxScope::kPerImage ? "per_image" : "batch");
             }, "string", {"per_image", "batch"}},
      ZSAD_INT_KEY(text_context, "tokens run through the text tower: 0 = up to EOT (exact), 77 = code"),
      ZSAD_BOOL_KEY(patch_resolution_losses, "focal/dice of the nearest-upsampled map per patch with pixel counts (exact)"),
      ZSAD_BOOL_KEY(text_shared_prefix, "run prompt prefixes shared by several prompts once (exact; not through fp16 gradients)"),
  };
  return table;
}

}  // namespace

void CopsOptions::validate() const {
  auto bad = [](const std::string& key, const std::string& what) {
    throw Error(std::string(kPrefix) + key + ": " + what);
  };
  if (feature_dim <= 0) bad("feature_dim", "must be positive, got " + std::to_string(feature_dim));
  if (extractor_heads <= 0 || feature_dim % extractor_heads != 0)
    bad("extractor_heads", "must divide feature_dim " + std::to_string(feature_dim) + ", got " +
                               std::to_string(extractor_heads));
  if (num_prototypes <= 0) bad("num_prototypes", "must be positive");
  if (n_ctx < num_prototypes)
    bad("n_ctx", "must be >= num_prototypes " + std::to_string(num_prototypes) + ", got " + std::to_string(n_ctx));
  if (cls_len < 0) bad("cls_len", "must be >= 0");
  if (deep_prompt_depth < 0) bad("deep_prompt_depth", "must be >= 0");
  if (deep_prompt_depth > 0 && (deep_prompt_length <= 0 || deep_prompt_length > learnable_tokens()))
    bad("deep_prompt_length", "must be in 1.." + std::to_string(learnable_tokens()) + ", got " +
                                  std::to_string(deep_prompt_length));
  if (r_train <= 0) bad("r_train", "must be positive");
  if (r_test <= 0) bad("r_test", "must be positive");
  if (!(temperature > 0)) bad("temperature", "must be positive");
  if (train_kernel <= 0 || train_kernel % 2 == 0) bad("train_kernel", "must be a positive odd number, got " + std::to_string(train_kernel));
  if (test_kernel <= 0 || test_kernel % 2 == 0) bad("test_kernel", "must be a positive odd number, got " + std::to_string(test_kernel));
  if (text_context < 0) bad("text_context", "must be >= 0");
}

std::vector<CopsOptionKey> cops_option_keys() {
  CopsOptions defaults;
  std::vector<CopsOptionKey> out;
  for (const auto& k : key_table())
    out.push_back({std::string(kPrefix) + k.name, k.get(defaults), k.help, k.type, k.choices});
  return out;
}

void set_cops_option(CopsOptions& o, const std::string& key, const std::string& value) {
  std::string name = key;
  if (name.rfind(kPrefix, 0) == 0) name = name.substr(sizeof(kPrefix) - 1);
  for (const auto& k : key_table()) {
    if (name == k.name) {
      k.set(o, value);
      return;
    }
  }
  std::string known;
  for (const auto& k : key_table()) known += (known.empty() ? "" : ", ") + std::string(k.name);
  throw Error("unknown CoPS option '" + key + "' (known: " + known + ")");
}

CopsOptions cops_options_from(const std::map<std::string, std::string>& kv) {
  CopsOptions o;
  for (const auto& [k, v] : kv) set_cops_option(o, k, v);
  o.validate();
  return o;
}

std::map<std::string, std::string> cops_options_to_map(const CopsOptions& o) {
  std::map<std::string, std::string> out;
  for (const auto& k : key_table()) out[std::string(kPrefix) + k.name] = k.get(o);
  return out;
}

}  // namespace zsad::models::cops
