// zsad predict EXPERIMENT [checkpoint=PATH] [overrides...] --images DIR|FILES... --out DIR [--support DIR|FILES...]
// Scores unlabelled images (no masks, no metrics): per-image score, anomaly maps (HDF5) and PNG
// overlays — what a user runs on new parts from the line. docs/evaluation.md.
#include <ATen/Parallel.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "common/error.h"
#include "common/exit_codes.h"
#include "launch/cli/args.h"
#include "launch/cli/command.h"
#include "launch/cli/eval_phase.h"
#include "launch/config/compose.h"
#include "models/clip/compute_threads.h"
#include "trainer/eval/engine.h"

namespace {

namespace fs = std::filesystem;

bool is_image_file(const fs::path& p) {
  std::string e = p.extension().string();
  for (auto& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e == ".png" || e == ".jpg" || e == ".jpeg" || e == ".bmp" || e == ".tif" || e == ".tiff";
}

// Files as given, and the image files under each directory (recursively, sorted).
std::vector<std::string> image_files(const std::string& flag, const std::vector<std::string>& inputs) {
  std::vector<std::string> out;
  for (const auto& in : inputs) {
    if (fs::is_directory(in)) {
      std::vector<std::string> found;
      for (const auto& e : fs::recursive_directory_iterator(in)) {
        if (e.is_regular_file() && is_image_file(e.path())) found.push_back(e.path().string());
      }
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
    } else if (fs::exists(in)) {
      out.push_back(in);
    } else {
      throw zsad::Error("--" + flag + ": '" + in + "' does not exist");
    }
  }
  return out;
}

int run_predict(const std::vector<std::string>& tokens) {
  zsad::cli::Args args(
      "zsad predict EXPERIMENT [checkpoint=PATH] [overrides...] --images DIR|FILES... --out DIR\n"
      "             [--support DIR|FILES...]   (few-shot methods: normal images of the class)\n"
      "  Writes OUT/scores.csv (path,score), OUT/maps.h5 (anomaly_maps [N,S,S], image_scores, paths) and\n"
      "  OUT/overlays/*.png (image | image | overlay with colour bar).");
  args.multi("images", "image files and/or directories (searched recursively, sorted)")
      .multi("support", "normal images of the class for few-shot methods (APT draws method.apt.shots of them)")
      .flag("out", "output directory")
      .flag("class", "class name used in the prompts", std::string("object"))
      .flag("eval-size", "map size (0 = the method's input size)", std::string("0"))
      .flag("upsampling", "bilinear | bilinear_align_corners | nearest (default: the method's)", std::string(""))
      .flag("sigma", "Gaussian smoothing sigma (0 = none)", std::string("4"))
      .flag("batch-size", "images per forward", std::string("1"))
      .toggle("no-overlays", "do not write PNG overlays")
      .positionals("EXPERIMENT [checkpoint=PATH] [overrides...]", 1);
  args.parse(tokens);
  if (!args.has("out")) throw zsad::UsageError("missing --out DIR");
  zsad::config::ComposeRequest req;
  req.experiment = args.rest()[0];
  for (size_t i = 1; i < args.rest().size(); ++i) {
    const std::string& t = args.rest()[i];
    if (t.rfind("checkpoint=", 0) == 0) req.overrides.push_back("eval.checkpoint=" + t.substr(11));
    else req.overrides.push_back(t);
  }
  zsad::config::Composed c = zsad::config::compose(req);
  zsad::models::OptionMap flat = zsad::cli::flatten_config(c.config);
  zsad::models::apply_compute_threads(flat.integer("trainer.threads", 0));

  zsad::eval::PredictOptions po;
  po.images = image_files("images", args.list("images"));
  if (po.images.empty()) throw zsad::UsageError("--images: no image files found");
  if (args.has("support")) {
    po.support = image_files("support", args.list("support"));
    if (po.support.empty()) throw zsad::UsageError("--support: no image files found");
    // A file named twice (a directory and a file inside it) is one shot, not two.
    std::vector<std::string> unique;
    for (const auto& f : po.support) {
      const std::string canon = fs::weakly_canonical(f).string();
      if (std::none_of(unique.begin(), unique.end(), [&](const std::string& u) { return fs::weakly_canonical(u) == canon; }))
        unique.push_back(f);
    }
    if (unique.size() != po.support.size())
      std::cerr << "zsad predict: note: " << po.support.size() - unique.size() << " repeated --support file(s) ignored\n";
    po.support = unique;
  }
  po.out_dir = args.get("out");
  po.class_name = args.get("class");
  po.eval_size = args.get_int("eval-size");
  po.upsampling = args.get("upsampling");
  po.smoothing_sigma = args.get_double("sigma");
  po.batch_size = args.get_int("batch-size");
  po.overlays = !args.on("no-overlays");

  std::unique_ptr<zsad::models::Method> method = zsad::models::make_method(flat);
  const std::string ck = flat.str("eval.checkpoint");
  if (!ck.empty()) {
    zsad::cli::load_method_checkpoint(*method, ck);
  } else if (method->trainable()) {
    std::cerr << "zsad predict: warning: method '" << method->name()
              << "' is trainable but no checkpoint was given; scoring with its initial (untrained) state\n";
  }
  zsad::eval::predict(*method, po);
  std::cerr << "zsad predict: " << po.images.size() << " images -> " << po.out_dir << "\n";
  return zsad::kExitSuccess;
}

}  // namespace

ZSAD_COMMAND("predict", "score unlabelled images: per-image score, HDF5 maps, PNG overlays", run_predict);
