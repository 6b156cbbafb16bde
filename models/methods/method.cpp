#include "models/methods/method.h"

#include <ATen/ATen.h>

#include <cstdlib>
#include <mutex>
#include <optional>
#include <sstream>

#include "common/error.h"
#include "common/fnv1a.h"
#include "models/clip/tokenizer.h"

namespace zsad::models {

// Built-in methods (one line each; explicit calls because static registrars in static libraries
// are dropped by the linker).
void register_winclip_method();
void register_cops_method();  // models/methods/cops/cops_method.cpp
void register_apt_method();   // models/methods/apt/apt_method.cpp

// ---------------------------------------------------------------------------------------------
// OptionMap

bool OptionMap::has(const std::string& key) const {
  auto it = values.find(key);
  if (it != values.end()) return it->second != "null" && it->second != "~";
  return values.count(key + ".#") > 0;
}

std::string OptionMap::str(const std::string& key, const std::string& def) const {
  auto it = values.find(key);
  if (it == values.end() || it->second == "null" || it->second == "~") return def;
  return it->second;
}

int64_t OptionMap::integer(const std::string& key, int64_t def) const {
  if (!has(key)) return def;
  const std::string v = str(key);
  try {
    size_t pos = 0;
    int64_t r = std::stoll(v, &pos);
    if (pos != v.size()) throw std::invalid_argument(v);
    return r;
  } catch (const std::exception&) {
    throw Error("config key '" + key + "': expected an integer, got '" + v + "'");
  }
}

double OptionMap::real(const std::string& key, double def) const {
  if (!has(key)) return def;
  const std::string v = str(key);
  try {
    size_t pos = 0;
    double r = std::stod(v, &pos);
    if (pos != v.size()) throw std::invalid_argument(v);
    return r;
  } catch (const std::exception&) {
    throw Error("config key '" + key + "': expected a number, got '" + v + "'");
  }
}

bool OptionMap::flag(const std::string& key, bool def) const {
  if (!has(key)) return def;
  std::string v = str(key);
  for (auto& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "off") return false;
  throw Error("config key '" + key + "': expected true or false, got '" + v + "'");
}

std::vector<std::string> OptionMap::list(const std::string& key, const std::vector<std::string>& def) const {
  auto it = values.find(key + ".#");
  if (it == values.end()) {
    if (has(key)) return {str(key)};  // a scalar where a list is expected: one element
    return def;
  }
  const int64_t n = std::stoll(it->second);
  std::vector<std::string> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(str(key + "." + std::to_string(i)));
  return out;
}

OptionMap OptionMap::sub(const std::string& prefix) const {
  OptionMap o;
  const std::string p = prefix + ".";
  for (auto it = values.lower_bound(p); it != values.end() && it->first.compare(0, p.size(), p) == 0; ++it) {
    o.values[it->first.substr(p.size())] = it->second;
  }
  return o;
}

OptionMap OptionMap::merged(const OptionMap& over) const {
  OptionMap o = *this;
  for (const auto& [k, v] : over.values) {
    // A list in `over` replaces the whole list.
    if (k.size() > 2 && k.compare(k.size() - 2, 2, ".#") == 0) {
      const std::string base = k.substr(0, k.size() - 2) + ".";
      for (auto it = o.values.lower_bound(base); it != o.values.end() && it->first.compare(0, base.size(), base) == 0;) {
        it = o.values.erase(it);
      }
    }
  }
  for (const auto& [k, v] : over.values) o.values[k] = v;
  return o;
}

void OptionMap::set_list(const std::string& key, const std::vector<std::string>& items) {
  values[key + ".#"] = std::to_string(items.size());
  for (size_t i = 0; i < items.size(); ++i) values[key + "." + std::to_string(i)] = items[i];
}

// ---------------------------------------------------------------------------------------------
// Method defaults

std::map<std::string, at::Tensor> Method::train_step(const MethodBatch&, const TrainContext&) {
  throw Error("method '" + name() + "' is training-free: it has no train_step (use task.name=eval)");
}

std::pair<at::Tensor, at::Tensor> Method::encode_frozen(const at::Tensor&) {
  throw Error("method '" + name() + "' offers no frozen features to cache (frozen_features() is empty)");
}

void Method::set_feature_source(FeatureSource) {
  throw Error("method '" + name() + "' cannot take its features from a feature cache (frozen_features() is empty)");
}

OptionMap model_options_of(const OptionMap& options) {
  OptionMap out;
  for (const auto& [k, v] : options.values)
    if (k.compare(0, 6, "model.") == 0) out.values[k] = v;
  return out;
}

void Method::load_state_dict(const std::map<std::string, at::Tensor>& state, bool strict) {
  if (strict && !state.empty()) {
    throw Error("method '" + name() + "' has no state, but the checkpoint holds '" + state.begin()->first + "'");
  }
}

// ---------------------------------------------------------------------------------------------
// Registry

namespace {
std::map<std::string, MethodInfo>& registry_storage() {
  static std::map<std::string, MethodInfo> r;
  return r;
}
std::once_flag builtins_once;
void ensure_builtins() {
  std::call_once(builtins_once, [] {
    register_winclip_method();
    register_cops_method();
    register_apt_method();
  });
}
}  // namespace

const std::map<std::string, MethodInfo>& method_registry() {
  ensure_builtins();
  return registry_storage();
}

void register_method(MethodInfo info) { registry_storage()[info.name] = std::move(info); }

std::unique_ptr<Method> make_method(const OptionMap& options) {
  const auto& reg = method_registry();
  const std::string name = options.str("method.name");
  auto it = reg.find(name);
  if (it == reg.end()) {
    std::string known;
    for (const auto& [n, _] : reg) known += (known.empty() ? "" : ", ") + n;
    throw Error("method.name '" + name + "': no such method (registered: " + known + ")");
  }
  return it->second.make(options);
}

// ---------------------------------------------------------------------------------------------
// CLIP from config

std::vector<MethodKey> clip_model_keys() {
  return {
      {"model.arch", "string", "tiny", "CLIP architecture (tiny, ViT-B-32, ViT-B-16, ViT-L-14, ViT-L-14-336, auto)", {}},
      {"model.weights", "string", "null", "CLIP weight file (.pt TorchScript, torch.save, safetensors); null = random", {}},
      {"model.init_seed", "int", "0", "seed of the random weights when model.weights is null", {}},
      {"model.image_size", "int", "0", "input size (0 = the architecture's native size)", {}},
      {"model.activation", "string", "quick_gelu", "MLP activation", {"quick_gelu", "gelu"}},
      {"model.pos_interp", "string", "bilinear", "positional-embedding interpolation", {"bilinear", "bicubic"}},
      {"model.vocab", "string", "null", "bpe_simple_vocab_16e6.txt.gz (null: $ZSAD_CLIP_VOCAB; random weights: hash tokenizer)", {}},
      {"model.device", "string", "cpu", "device (cpu, cuda, cuda:N)", {}},
      {"model.vv_depth", "int", "-1", "final vision blocks run with V-V attention (-1 = all)", {}},
  };
}

namespace {

// model.device names a device this LibTorch can use, or the error says which key and why.
void check_device(const std::string& name) {
  std::optional<at::Device> dev;
  try {
    dev.emplace(name);
  } catch (const std::exception&) {
    throw Error("model.device: expected cpu, cuda or cuda:N, got '" + name + "'");
  }
  if (dev->is_cuda() && !at::hasCUDA())
    throw Error("model.device '" + name + "': this LibTorch build has no CUDA support (Debian's is CPU-only); "
                "use model.device=cpu or a CUDA build of LibTorch");
}

}  // namespace

ClipModel build_clip_model(const OptionMap& o) {
  ClipConfig runtime;
  runtime.activation = parse_activation(o.str("model.activation", "quick_gelu"));
  runtime.pos_interp = parse_pos_interpolation(o.str("model.pos_interp", "bilinear"));
  runtime.image_size = o.integer("model.image_size", 0);
  runtime.device = o.str("model.device", "cpu");
  check_device(runtime.device);
  const std::string arch = o.str("model.arch", "tiny");
  const std::string weights = o.str("model.weights");
  if (!weights.empty()) return load_clip(weights, arch, &runtime);
  if (arch == "auto") throw Error("model.arch 'auto' needs model.weights (random weights need a named architecture)");
  ClipConfig cfg = clip_config(arch);
  cfg.activation = runtime.activation;
  cfg.pos_interp = runtime.pos_interp;
  cfg.image_size = runtime.image_size;
  cfg.device = runtime.device;
  cfg.validate();
  // Random weights from the global generator, seeded; serialised so concurrent builds stay deterministic.
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  at::manual_seed(static_cast<uint64_t>(o.integer("model.init_seed", 0)));
  ClipModel model(cfg);
  model->eval();
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  if (cfg.device != "cpu") model->to(at::Device(cfg.device));
  return model;
}


TextTokenizer make_text_tokenizer(const OptionMap& o, int64_t context_length, int64_t vocab_size) {
  std::string vocab = o.str("model.vocab");
  if (vocab.empty()) {
    if (const char* env = std::getenv("ZSAD_CLIP_VOCAB")) vocab = env;
  }
  if (!vocab.empty()) {
    auto tok = std::make_shared<Tokenizer>(vocab);
    return [tok, context_length](const std::string& text) { return tok->tokenize_padded(text, context_length); };
  }
  if (!o.str("model.weights").empty()) {
    throw Error("model.vocab: CLIP weights '" + o.str("model.weights") +
                "' need the BPE vocabulary bpe_simple_vocab_16e6.txt.gz (set model.vocab or $ZSAD_CLIP_VOCAB)");
  }
  // Word-hash tokenizer for random weights: lower-cased words and punctuation, ids in [1, vocab-3].
  const int64_t sot = vocab_size - 2, eot = vocab_size - 1;
  return [context_length, vocab_size, sot, eot](const std::string& text) {
    std::vector<int64_t> ids{sot};
    std::string word;
    auto flush = [&] {
      if (!word.empty()) ids.push_back(1 + static_cast<int64_t>(fnv1a64(word) % static_cast<uint64_t>(vocab_size - 3)));
      word.clear();
    };
    for (char ch : text) {
      const auto c = static_cast<unsigned char>(ch);
      if (std::isalnum(c)) {
        word += static_cast<char>(std::tolower(c));
      } else {
        flush();
        if (!std::isspace(c)) {
          word = std::string(1, ch);
          flush();
        }
      }
    }
    flush();
    if (static_cast<int64_t>(ids.size()) > context_length - 1) ids.resize(static_cast<size_t>(context_length - 1));
    ids.push_back(eot);
    ids.resize(static_cast<size_t>(context_length), 0);
    return ids;
  };
}

}  // namespace zsad::models
