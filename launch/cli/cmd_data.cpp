// `zsad data index|check|synth`: build meta.json from a native layout, validate a dataset,
// generate a synthetic dataset. All work is done by data/; this file parses flags and prints.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "common/error.h"
#include "common/exit_codes.h"
#include "data/check.h"
#include "data/index.h"
#include "data/synth.h"
#include "launch/cli/args.h"
#include "launch/cli/command.h"

namespace {

using zsad::cli::Args;

const char* kDataUsage =
    "usage: zsad data index --layout L --root DIR [--out FILE] [--force]\n"
    "       zsad data check --root DIR [--meta FILE | --layout L] [--threads N]\n"
    "       zsad data synth --list-presets\n"
    "       zsad data synth --out DIR --preset NAME --seed S [--size N] [--images-per-class N] [--force]\n";

std::string layouts_joined() {
  std::string all;
  for (const auto& n : zsad::data::layout_names()) all += (all.empty() ? "" : "|") + n;
  return all;
}

int run_index(const std::vector<std::string>& tokens) {
  Args args("zsad data index --layout L --root DIR [--out FILE] [--force]\n"
            "Index a dataset in its native folder layout and write meta.json (AnomalyCLIP/CoPS format).");
  args.flag("layout", "dataset layout: " + layouts_joined())
      .flag("root", "dataset root directory")
      .flag("out", "output file (default ROOT/meta.json; '-' prints to stdout)")
      .toggle("force", "replace an existing output file");
  args.parse(tokens);
  const std::string layout = args.get("layout"), root = args.get("root");
  const std::string out = args.get_opt("out").value_or((std::filesystem::path(root) / "meta.json").string());
  // A meta.json may be hand-edited or the one published with the dataset: never replaced silently.
  if (out != "-" && std::filesystem::is_directory(out))
    throw zsad::Error("--out '" + out + "' is a directory; pass a file name");
  if (out != "-" && std::filesystem::exists(out) && !args.on("force"))
    throw zsad::Error(out + ": exists; pass --force to replace it, or --out FILE to write elsewhere");
  const zsad::data::Meta meta = zsad::data::index_dataset(layout, root);
  if (out == "-") {
    std::cout << zsad::data::meta_to_json(meta);
    return zsad::kExitSuccess;
  }
  zsad::data::write_meta(meta, out);
  for (const char* split : {"train", "test"}) {
    const auto& s = meta.split(split);
    size_t anom = 0, masks = 0;
    for (const auto& kv : s.samples)
      for (const auto& x : kv.second) {
        anom += x.anomaly;
        masks += !x.mask_path.empty();
      }
    std::cout << split << ": " << s.classes.size() << " classes, " << s.size() << " images (" << anom
              << " anomalous, " << masks << " masks)\n";
  }
  std::cout << "metrics: image " << (meta.capabilities.image_metrics ? "yes" : "no") << ", pixel "
            << (meta.capabilities.pixel_metrics ? "yes" : "no") << "\nwrote " << out << "\n";
  return zsad::kExitSuccess;
}

int run_check(const std::vector<std::string>& tokens) {
  Args args("zsad data check --root DIR [--meta FILE | --layout L] [--threads N]\n"
            "Decode every image and mask of a dataset and report problems; exit 0 only if clean.");
  args.flag("root", "dataset root directory")
      .flag("meta", "index to check (default ROOT/meta.json)")
      .flag("layout", "index the native layout on the fly instead of reading a meta.json")
      .flag("threads", "decoding threads", "2");
  args.parse(tokens);
  const std::string root = args.get("root");
  if (args.has("meta") && args.has("layout")) throw zsad::UsageError("give --meta or --layout, not both");
  zsad::data::Meta meta;
  if (args.has("layout")) {
    meta = zsad::data::index_dataset(args.get("layout"), root);
  } else {
    const std::string mp = args.get_opt("meta").value_or((std::filesystem::path(root) / "meta.json").string());
    if (!std::filesystem::exists(mp))
      throw zsad::Error(mp + ": no meta.json (run `zsad data index --layout L --root " + root +
                        "` first, or pass --layout)");
    meta = zsad::data::read_meta(mp);
  }
  const int threads = static_cast<int>(args.get_int("threads"));
  if (threads < 1) throw zsad::UsageError("--threads must be >= 1");
  const zsad::data::CheckReport report = zsad::data::check_dataset(meta, root, threads);
  std::cout << zsad::data::format_report(report);
  return report.clean() ? zsad::kExitSuccess : zsad::kExitError;
}

int run_synth(const std::vector<std::string>& tokens) {
  Args args("zsad data synth --list-presets\n"
            "zsad data synth --out DIR --preset NAME --seed S [--size N] [--images-per-class N] [--force]\n"
            "Generate a synthetic anomaly-detection dataset in MVTec layout with meta.json.");
  args.toggle("list-presets", "print the presets, one per line, name first")
      .flag("out", "output directory")
      .flag("preset", "preset name (see --list-presets)")
      .flag("seed", "random seed; the same seed gives byte-identical files")
      .flag("size", "image size in pixels", "256")
      .flag("images-per-class", "test images per class (and train images unless --train-per-class)", "50")
      .flag("train-per-class", "normal training images per class")
      .flag("anomaly-fraction", "fraction of anomalous test images, 0.3..0.5", "0.4")
      .flag("defect-scale", "defect size multiplier, 0.25..4 (1 = the presets' sizes)", "1")
      .flag("threads", "worker threads", "2")
      .toggle("force", "generate into a non-empty --out that zsad data synth made: first delete its meta.json, "
                       "synth_options.txt and the class folders of its preset and of this one");
  args.parse(tokens);
  if (args.on("list-presets")) {
    for (const auto& p : zsad::data::synth_presets()) {
      std::string cls, def;
      for (const auto& c : p.classes) cls += (cls.empty() ? "" : ",") + c;
      for (const auto& d : p.defects) def += (def.empty() ? "" : ",") + d;
      std::cout << p.name << "\t" << p.description << "\tclasses=" << cls << "\tdefects=" << def << "\n";
    }
    return zsad::kExitSuccess;
  }
  zsad::data::SynthOptions o;
  o.preset = args.get("preset");
  zsad::data::synth_preset(o.preset);  // validate before touching the disk
  const std::string seed = args.get("seed");
  try {
    size_t pos = 0;
    o.seed = std::stoull(seed, &pos);
    if (pos != seed.size()) throw std::invalid_argument(seed);
  } catch (const std::exception&) {
    throw zsad::UsageError("--seed: expected a non-negative integer, got '" + seed + "'");
  }
  o.size = static_cast<int>(args.get_int("size"));
  o.test_per_class = static_cast<int>(args.get_int("images-per-class"));
  o.train_per_class = args.has("train-per-class") ? static_cast<int>(args.get_int("train-per-class")) : o.test_per_class;
  o.anomaly_fraction = args.get_double("anomaly-fraction");
  if (o.anomaly_fraction < 0.3 || o.anomaly_fraction > 0.5) throw zsad::UsageError("--anomaly-fraction must be in [0.3, 0.5]");
  o.defect_scale = args.get_double("defect-scale");
  if (!(o.defect_scale >= 0.25 && o.defect_scale <= 4)) throw zsad::UsageError("--defect-scale must be in [0.25, 4]");
  o.threads = static_cast<int>(args.get_int("threads"));
  if (o.threads < 1 || o.threads > 256) throw zsad::UsageError("--threads must be in [1, 256]");
  if (o.size < 32) throw zsad::UsageError("--size must be >= 32");
  if (o.test_per_class < 2) throw zsad::UsageError("--images-per-class must be >= 2");
  const std::string out = args.get("out");
  // Generating over another dataset would mix two generations under one meta.json.
  namespace fs = std::filesystem;
  if (fs::exists(out) && !fs::is_directory(out)) throw zsad::Error("--out '" + out + "' exists and is not a directory");
  if (fs::exists(out) && !fs::is_empty(out)) {
    if (!args.on("force"))
      throw zsad::Error("--out '" + out + "' is not empty; pass a new or empty directory, or --force to replace " +
                        "the preset's files in it");
    // --force replaces only a dataset this command made (a real dataset may share class names).
    if (!fs::exists(fs::path(out) / zsad::data::kSynthSignatureFile))
      throw zsad::Error("--out '" + out + "' holds no " + zsad::data::kSynthSignatureFile +
                        ": not a synthetic dataset, so --force will not delete anything in it");
    // The earlier generation's classes (its preset may differ) and this one's.
    std::string earlier;
    std::getline(std::ifstream(fs::path(out) / zsad::data::kSynthSignatureFile), earlier);
    std::vector<std::string> classes = zsad::data::synth_preset(o.preset).classes;
    for (const auto& p : zsad::data::synth_presets())
      if (earlier.rfind("preset=" + p.name + " ", 0) == 0) classes.insert(classes.end(), p.classes.begin(), p.classes.end());
    for (const auto& name : classes) fs::remove_all(fs::path(out) / name);
    fs::remove(fs::path(out) / "meta.json");
    fs::remove(fs::path(out) / zsad::data::kSynthSignatureFile);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const zsad::data::Meta meta = zsad::data::synthesize_dataset(o, out);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  size_t anom = 0;
  for (const auto& kv : meta.test.samples)
    for (const auto& s : kv.second) anom += s.anomaly;
  std::cout << "preset " << o.preset << " seed " << o.seed << ": " << meta.train.classes.size() << " classes, "
            << meta.train.size() << " train, " << meta.test.size() << " test (" << anom << " anomalous) at " << o.size
            << " px in " << secs << " s\nwrote " << out << "/meta.json\n";
  return zsad::kExitSuccess;
}

int run_data(const std::vector<std::string>& tokens) {
  if (tokens.empty()) throw zsad::UsageError(std::string("missing subcommand\n") + kDataUsage);
  const std::string sub = tokens[0];
  const std::vector<std::string> rest(tokens.begin() + 1, tokens.end());
  if (sub == "index") return run_index(rest);
  if (sub == "check") return run_check(rest);
  if (sub == "synth") return run_synth(rest);
  if (sub == "--help" || sub == "-h") throw zsad::cli::HelpRequested(kDataUsage);
  throw zsad::UsageError("unknown subcommand '" + sub + "' (expected index, check or synth)\n" + kDataUsage);
}

}  // namespace

ZSAD_COMMAND("data", "index|check|synth: build meta.json, validate a dataset, generate synthetic data", run_data);
