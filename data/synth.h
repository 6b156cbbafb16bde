#pragma once
// Synthetic anomaly-detection datasets (the embedded default: no benchmark can be downloaded
// here). Two presets of different domains, so that training on one and zero-shot testing on the
// other is a meaningful cross-dataset experiment:
//   textures: woven, grain, marble, mesh, terrazzo  (defects: scratch, crack, hole, stain,
//             contamination, colour_shift)
//   objects:  washer, capsule, gear, bracket, chip on plain backgrounds (the same defects
//             confined to the object, plus missing_part)
// Output is the MVTec layout plus meta.json. Every image is rendered from its own generator
// seeded by (seed, preset, class, image), so output is byte-identical for a seed regardless of
// the number of threads.
#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"
#include "data/index.h"

namespace zsad::data {

struct SynthPreset {
  std::string name;
  std::string description;
  std::vector<std::string> classes;
  std::vector<std::string> defects;
};

const std::vector<SynthPreset>& synth_presets();
const SynthPreset& synth_preset(const std::string& name);  // throws naming the known presets

struct SynthOptions {
  std::string preset = "textures";
  uint64_t seed = 0;
  int size = 256;
  int train_per_class = 50;        // normal training images per class
  int test_per_class = 50;         // test images per class, normal + anomalous
  double anomaly_fraction = 0.4;   // of the test images (kept within 30-50%)
  double defect_scale = 1.0;       // defect extent multiplier in [0.25, 4] (1 = the presets' sizes)
  int threads = 2;
  int png_compression = 1;
};

// One rendered image; `defect` empty renders a normal image (mask all zero).
struct SynthImage {
  Image image;  // RGB
  Image mask;   // 1 channel, 0/255, exactly the changed pixels
  Image object; // 1 channel, 0/255, where defects may appear (the object; everything for textures)
};
SynthImage render_synth_image(const std::string& preset, int class_index, const std::string& defect, int size,
                              uint64_t seed, double defect_scale = 1.0);

// Number of anomalous test images for a class with n test images.
int synth_anomalous_count(int n, double fraction);

// One line naming every option that changes the generated files; synthesize_dataset writes it to
// OUT/synth_options.txt so a later run can tell a dataset generated with other options.
std::string synth_signature(const SynthOptions& options);
inline constexpr const char* kSynthSignatureFile = "synth_options.txt";

// Writes OUT/<cls>/{train/good,test/good,test/<defect>,ground_truth/<defect>} and OUT/meta.json;
// returns the index that was written. Renders into OUT.partial and moves the result into OUT (an
// interrupted run leaves only OUT.partial); throws, moving nothing, when OUT already holds an
// entry of the same name (files of another generation are never mixed in).
Meta synthesize_dataset(const SynthOptions& options, const std::string& out_dir);

}  // namespace zsad::data
