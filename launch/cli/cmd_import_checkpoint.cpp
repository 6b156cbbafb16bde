// zsad import-checkpoint --format cops PATH.pth --out CKPT.h5: converts an officially released
// CoPS checkpoint (torch.save {"prompt_learner": state_dict}, ../shared/specs/cops.md §2) into the
// trainer's HDF5 checkpoint (trainer/checkpoint.h), so `checkpoint=CKPT.h5` works in zsad eval /
// predict / run. Names and shapes are validated against the CoPS parameter set (CopsModel); the
// structural sizes (feature dim, prototypes, deep-prompt depth and length) are read from the file,
// anything else can be set with --set method.cops.KEY=VALUE. docs/feature_cache.md.
#include <ATen/ATen.h>

#include <filesystem>
#include <iostream>

#include "common/error.h"
#include "common/exit_codes.h"
#include "common/sha256.h"
#include "launch/cli/args.h"
#include "launch/cli/command.h"
#include "models/methods/cops/cops_checkpoint.h"
#include "models/methods/cops/cops_model.h"
#include "models/methods/cops/cops_options.h"
#include "trainer/checkpoint.h"

namespace zsad::cli {
namespace {

namespace fs = std::filesystem;
namespace cops = zsad::models::cops;

// The frozen token embeddings do not enter the checkpoint; a zero tower is enough to build the
// parameter set (its encode is never called).
cops::TextTower shape_only_tower(int64_t width) {
  cops::TextTower t;
  t.embed_tokens = [width](const at::Tensor& ids) { return at::zeros({ids.size(0), width}, at::kFloat); };
  t.encode = [](const at::Tensor&, const at::Tensor&, const std::vector<at::Tensor>&, bool) -> at::Tensor {
    throw Error("import-checkpoint: the text tower is not available here");
  };
  return t;
}

const at::Tensor& need(const std::map<std::string, at::Tensor>& sd, const std::string& key, int64_t dims,
                       const std::string& path) {
  auto it = sd.find(key);
  if (it == sd.end()) throw Error(path + ": prompt_learner has no '" + key + "' (not a CoPS checkpoint?)");
  if (it->second.dim() != dims)
    throw Error(path + ": prompt_learner." + key + " has " + std::to_string(it->second.dim()) + " dimensions, expected " +
                std::to_string(dims));
  return it->second;
}

std::string shape_text(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? "," : "") + std::to_string(t.size(i));
  return s + "]";
}

int run_import(const std::vector<std::string>& tokens) {
  Args args(
      "zsad import-checkpoint --format cops PATH.pth --out CKPT.h5 [--set method.cops.KEY=VALUE ...]\n"
      "  Converts a released CoPS checkpoint ({\"prompt_learner\": state_dict}) into a zsad checkpoint;\n"
      "  then: zsad eval EXP checkpoint=CKPT.h5");
  args.flag("format", "source format (cops: the official CoPS release, results/models/*/epoch_N.pth)", "cops")
      .flag("out", "output checkpoint (.h5)")
      .multi("set", "method.cops.KEY=VALUE options that shape the parameters beyond what the file shows")
      .toggle("force", "overwrite --out if it exists")
      .positionals("PATH.pth", 1, 1);
  args.parse(tokens);
  const std::string format = args.get("format");
  if (format != "cops") throw UsageError("--format: only 'cops' is supported, got '" + format + "'");
  const std::string in = args.rest().at(0);
  const std::string out = args.get("out");
  if (fs::exists(out) && !args.on("force")) throw Error(out + ": exists (use --force to overwrite)");
  if (!fs::exists(in)) throw Error(in + ": no such file");

  std::map<std::string, at::Tensor> sd = cops::read_official_checkpoint(in);
  // Structural sizes from the file.
  cops::CopsOptions o;
  const at::Tensor& tn = need(sd, "t_n", 2, in);
  o.feature_dim = tn.size(1);
  o.num_prototypes = tn.size(0);
  int64_t depth = 0;
  while (sd.count("compound_prompts_text." + std::to_string(depth))) ++depth;
  o.deep_prompt_depth = depth;
  if (depth > 0) o.deep_prompt_length = need(sd, "compound_prompts_text.0", 2, in).size(0);
  // The head count does not shape any parameter; keep 12 (the code's) when it divides D.
  while (o.extractor_heads > 1 && o.feature_dim % o.extractor_heads != 0) --o.extractor_heads;
  for (const std::string& kv : args.list("set")) {
    const auto eq = kv.find('=');
    const std::string prefix = "method.cops.";
    if (eq == std::string::npos || kv.compare(0, prefix.size(), prefix) != 0)
      throw UsageError("--set: expected method.cops.KEY=VALUE, got '" + kv + "'");
    cops::set_cops_option(o, kv.substr(prefix.size(), eq - prefix.size()), kv.substr(eq + 1));
  }
  o.validate();
  cops::CopsModel model(o, shape_only_tower(o.feature_dim), 0);
  const bool has_encoder = std::any_of(sd.begin(), sd.end(), [](const auto& kv) { return kv.first.rfind("vae_encoder.", 0) == 0; });
  // Every expected name present with the expected shape, nothing unknown.
  const std::map<std::string, at::Tensor> expected = model.state_dict(has_encoder);
  for (const auto& [k, v] : sd) {
    auto it = expected.find(k);
    if (it == expected.end()) throw Error(in + ": prompt_learner." + k + " is not a CoPS parameter (expected names: ctx_pos, ctx_neg, extractor.*, t_n, t_a, vae_decoder.*, compound_prompts_text.N)");
    if (!it->second.sizes().equals(v.sizes()))
      throw Error(in + ": prompt_learner." + k + " has shape " + shape_text(v) + ", CoPS expects " + shape_text(it->second) +
                  " (structural options: feature_dim " + std::to_string(o.feature_dim) + ", num_prototypes " +
                  std::to_string(o.num_prototypes) + "; others via --set method.cops.KEY=VALUE)");
  }
  for (const auto& [k, v] : expected)
    if (!sd.count(k)) throw Error(in + ": prompt_learner has no '" + k + "' (an incomplete CoPS checkpoint)");
  model.load_state_dict(sd, true);

  Checkpoint ck;
  int64_t params = 0;
  for (const auto& [k, v] : model.state_dict(has_encoder)) {
    ck.tensors["method/" + k] = v.detach().to(at::kFloat).contiguous().clone();
    params += v.numel();
  }
  ck.ints["step"] = 0;
  ck.ints["epoch"] = 0;
  ck.ints["imported"] = 1;
  ck.strings["method"] = "cops";
  ck.strings["imported_from"] = fs::absolute(in).string();
  ck.strings["imported_format"] = "cops-official";
  ck.strings["imported_sha256"] = sha256_file_hex(in);
  ck.strings["config_digest"] = "";
  if (fs::path(out).has_parent_path()) fs::create_directories(fs::path(out).parent_path());
  write_checkpoint(out, ck);
  std::cout << "import-checkpoint: " << in << " -> " << out << " (" << ck.tensors.size() << " tensors, " << params
            << " parameters" << (has_encoder ? ", with vae_encoder" : "") << "; feature_dim " << o.feature_dim
            << ", prototypes " << o.num_prototypes << ", deep prompts " << depth << "x" << o.deep_prompt_length << ")\n";
  return kExitSuccess;
}

}  // namespace

ZSAD_COMMAND("import-checkpoint",
             "convert a released checkpoint: zsad import-checkpoint --format cops PATH.pth --out CKPT.h5",
             run_import);

}  // namespace zsad::cli
