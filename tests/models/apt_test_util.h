#pragma once
// Shared by the APT tests: a frozen tiny random CLIP, a word-hash tokenizer (no vocabulary file),
// small Adam training options, random CLIP-normalised shots and the max |a - b| of two tensors.
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "models/clip/clip_model.h"
#include "models/methods/apt/apt_components.h"
#include "models/methods/apt/apt_model.h"
#include "models/methods/apt/apt_prompts.h"
#include "models/methods/method.h"

namespace zsad::test::apt {

// The tiny CLIP config with seed 1234, in eval mode, parameters frozen.
inline ::zsad::models::ClipModel tiny_clip() {
  at::manual_seed(1234);
  ::zsad::models::ClipModel m(::zsad::models::clip_config("tiny"));
  m->eval();
  for (auto& p : m->parameters()) p.set_requires_grad(false);
  return m;
}

// A deterministic word-hash tokenizer (thread-safe): SOT, one id per word, EOT (the largest id).
inline ::zsad::models::apt::Tokenize hash_tok() {
  return [](const std::string& s) {
    std::vector<int64_t> ids(77, 0);
    ids[0] = 49406;
    size_t n = 1;
    std::string w;
    auto flush = [&] {
      if (w.empty() || n >= 76) return;
      uint64_t h = 1469598103934665603ull;
      for (char c : w) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
      ids[n++] = static_cast<int64_t>(h % 49000) + 1;
      w.clear();
    };
    for (char c : s) {
      if (c == ' ') flush();
      else w += c;
    }
    flush();
    ids[n] = 49407;
    return ids;
  };
}

// 2 shots, 3 epochs of 2 steps, memory layers 1 and 2, Adam at lr 0.05, prompts initialised with std 1.
inline ::zsad::models::apt::AptOptions small_adam_options() {
  ::zsad::models::apt::AptOptions o;
  o.shots = 2;
  o.epochs = 3;
  o.steps_per_epoch = 2;
  o.memory_layers = {1, 2};
  o.optimizer = ::zsad::models::apt::Optimizer::kAdam;
  o.lr = 0.05;
  o.init_std = 1.0;
  return o;
}

// k random shots [k,3,S,S] (seed 99), CLIP-normalised.
inline at::Tensor shots(int64_t k, int64_t S) {
  at::manual_seed(99);
  return ::zsad::models::apt::clip_normalize(at::rand({k, 3, S, S}));
}

inline double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

// Method options for APT on the tiny CLIP at 32 px with 2 shots (memory bank on its 2 blocks).
inline ::zsad::models::OptionMap tiny_apt_method_options(const std::string& seed, const std::string& epochs) {
  ::zsad::models::OptionMap o;
  o.set("method.name", "apt");
  o.set("model.arch", "tiny");
  o.set("model.image_size", "32");
  o.set("model.init_seed", "3");
  o.set("seed", seed);
  o.set("method.apt.shots", "2");
  o.set("method.apt.epochs", epochs);
  o.set("method.apt.memory_layers", "[1, 2]");
  return o;
}

}  // namespace zsad::test::apt
