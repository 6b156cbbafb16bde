#pragma once
// Fixtures shared by the feature-cache and evaluation tests: the tiny random CLIP's model.*
// options and a small synthetic "objects" dataset.
#include <cstdint>
#include <string>

#include "data/synth.h"
#include "models/methods/method.h"

namespace zsad::testing {

// model.* for the tiny random CLIP (no weights file, quick_gelu, bilinear position interpolation).
inline void set_tiny_clip_options(zsad::models::OptionMap& o, int64_t image_size, int64_t init_seed,
                                  int64_t vv_depth) {
  o.set("model.arch", "tiny");
  o.set("model.weights", "null");
  o.set("model.init_seed", std::to_string(init_seed));
  o.set("model.image_size", std::to_string(image_size));
  o.set("model.activation", "quick_gelu");
  o.set("model.pos_interp", "bilinear");
  o.set("model.vv_depth", std::to_string(vv_depth));
}

// The "objects" preset at 64 px, one training image and `test_per_class` test images per class.
inline zsad::data::Meta synthesize_small_objects(const std::string& root, int test_per_class) {
  zsad::data::SynthOptions so;
  so.preset = "objects";
  so.size = 64;
  so.train_per_class = 1;
  so.test_per_class = test_per_class;
  so.threads = 1;
  return zsad::data::synthesize_dataset(so, root);
}

}  // namespace zsad::testing
