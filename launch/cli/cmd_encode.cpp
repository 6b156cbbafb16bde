// `zsad encode`: CLIP image/text embeddings of given pixels and texts, written to HDF5.
// The contract (dataset names, shapes, meaning) is issue 2's; `zsad encode --help` repeats it.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <iostream>
#include <thread>

#include "common/error.h"
#include "common/h5.h"
#include "launch/cli/args.h"
#include "launch/cli/command.h"
#include "models/clip/clip_model.h"
#include "models/clip/compute_threads.h"
#include "models/clip/tokenizer.h"

namespace {

using zsad::Error;
using zsad::UsageError;

int run_encode(const std::vector<std::string>& tokens) {
  zsad::cli::Args args(
      "zsad encode --weights PATH [--arch auto|NAME] [--image-size N] [--pos-interp bilinear|bicubic]\n"
      "            [--vv-depth N] [--vocab PATH] [--pixels IN.h5] [--texts TEXT...] [--threads N] --out OUT.h5\n"
      "Runs CLIP on `pixels` [N,3,S,S] float32 (already normalised) from IN.h5 and/or on TEXTs and writes\n"
      "OUT.h5: image_features [N,D] (ln_post(CLS) @ proj), patch_tokens [N,P,D] (V-V path, ln_post, proj;\n"
      "only with --vv-depth > 0), text_features [M,D], token_ids [M,77] int64. Features are not normalised.\n"
      "Weights: OpenAI .pt (TorchScript), torch.save state dict, or safetensors.");
  args.flag("weights", "CLIP weight file (OpenAI .pt, torch.save state dict, safetensors)")
      .flag("arch", "architecture: auto (inferred from the weights) or ViT-B-32, ViT-B-16, ViT-L-14, ViT-L-14-336",
            "auto")
      .flag("image-size", "input size in pixels; the positional embedding is resized to it (0 = native)", "0")
      .flag("pos-interp", "positional-embedding resize: bilinear (CoPS/AnomalyCLIP) or bicubic (open_clip)",
            "bilinear")
      .flag("act", "MLP activation: quick_gelu (OpenAI) or gelu (open_clip configs without quick_gelu)",
            "quick_gelu")
      .flag("vv-depth", "number of final vision blocks with dual-path V-V attention (0 = none)", "0")
      .flag("vocab", "bpe_simple_vocab_16e6.txt.gz (needed with --texts)")
      .flag("pixels", "HDF5 file with dataset `pixels` [N,3,S,S] float32")
      .multi("texts", "texts to encode")
      .flag("threads", "LibTorch intra-op threads (default: all cores)")
      .flag("batch", "images per forward pass", "8")
      .flag("device", "cpu or cuda[:i] (CUDA needs a CUDA LibTorch)", "cpu")
      .flag("out", "output HDF5 file");
  args.parse(tokens);

  const std::string weights = args.get("weights");
  const std::string out_path = args.get("out");
  const auto pixels_path = args.get_opt("pixels");
  const bool have_texts = args.has("texts");
  if (!pixels_path && !have_texts) throw UsageError("nothing to encode: give --pixels and/or --texts");
  if (have_texts && !args.has("vocab")) throw UsageError("--texts needs --vocab PATH (bpe_simple_vocab_16e6.txt.gz)");
  const int64_t image_size = args.get_int("image-size");
  const int64_t vv_depth = args.get_int("vv-depth");
  const int64_t batch = args.get_int("batch");
  if (image_size < 0) throw UsageError("--image-size must be >= 0");
  if (vv_depth < 0) throw UsageError("--vv-depth must be >= 0");
  if (batch < 1) throw UsageError("--batch must be >= 1");
  int64_t threads = args.has("threads") ? args.get_int("threads")
                                        : static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  if (threads < 1) throw UsageError("--threads must be >= 1");
  zsad::models::set_compute_threads(static_cast<int>(threads));

  zsad::models::ClipConfig runtime;
  try {
    runtime.pos_interp = zsad::models::parse_pos_interpolation(args.get("pos-interp"));
    runtime.activation = zsad::models::parse_activation(args.get("act"));
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  runtime.image_size = image_size;
  runtime.device = args.get("device");

  // Inputs are checked before the (possibly large) weights are read.
  std::vector<int64_t> pix_shape;
  std::unique_ptr<zsad::h5::File> pix_file;
  if (pixels_path) {
    pix_file = std::make_unique<zsad::h5::File>(*pixels_path, zsad::h5::File::Mode::kRead);
    if (!pix_file->exists("pixels")) throw Error(*pixels_path + ": no dataset 'pixels'");
    pix_shape = pix_file->shape("pixels");
    if (pix_shape.size() != 4 || pix_shape[1] != 3) {
      std::string s;
      for (auto d : pix_shape) s += (s.empty() ? "" : ",") + std::to_string(d);
      throw Error(*pixels_path + ": dataset 'pixels' has shape [" + s + "], expected [N,3,H,W]");
    }
  }
  std::unique_ptr<zsad::models::Tokenizer> tokenizer;
  if (have_texts) tokenizer = std::make_unique<zsad::models::Tokenizer>(args.get("vocab"));

  at::NoGradGuard no_grad;
  auto model = zsad::models::load_clip(weights, args.get("arch"), &runtime);
  const auto& cfg = model->cfg;
  if (vv_depth > cfg.vision_layers) {
    throw Error("--vv-depth " + std::to_string(vv_depth) + " exceeds the " + std::to_string(cfg.vision_layers) +
                " vision blocks of " + cfg.name);
  }

  if (pixels_path && (pix_shape[2] != cfg.input_size() || pix_shape[3] != cfg.input_size())) {
    const auto S = std::to_string(cfg.input_size());
    throw Error(*pixels_path + ": pixels are " + std::to_string(pix_shape[2]) + "x" + std::to_string(pix_shape[3]) +
                " but the model runs at " + S + "x" + S + " (set --image-size to resize the positional embedding)");
  }

  zsad::h5::File out(out_path, zsad::h5::File::Mode::kTruncate);
  out.set_attr("/", "arch", cfg.name);
  out.set_attr("/", "weights", weights);
  out.set_attr("/", "image_size", cfg.input_size());
  out.set_attr("/", "vv_depth", vv_depth);
  out.set_attr("/", "pos_interp", std::string(cfg.pos_interp == zsad::models::PosInterpolation::kBilinear ? "bilinear" : "bicubic"));

  if (pixels_path) {
    const int64_t N = pix_shape[0], S = cfg.input_size();
    const int64_t D = cfg.embed_dim, P = cfg.num_patches();
    out.create("image_features", {N, D}, {});
    if (vv_depth > 0) out.create("patch_tokens", {N, P, D}, {zsad::h5::DType::kFloat32, true});
    std::vector<float> buf;
    for (int64_t first = 0; first < N; first += batch) {
      const int64_t n = std::min(batch, N - first);
      buf.resize(static_cast<size_t>(n * 3 * S * S));
      pix_file->read_slab("pixels", first, n, buf.data());
      auto pixels = at::from_blob(buf.data(), {n, 3, S, S}, at::kFloat);
      zsad::models::VisionRequest req;
      req.vv_depth = vv_depth;
      req.patch_tokens = vv_depth > 0;
      auto r = model->encode_vision(pixels, req);
      auto img = r.image_features.to(at::kCPU).contiguous();
      out.write_slab("image_features", first, n, img.data_ptr<float>());
      if (vv_depth > 0) {
        auto pt = r.patch_tokens.to(at::kCPU).contiguous();
        out.write_slab("patch_tokens", first, n, pt.data_ptr<float>());
      }
    }
    model->visual->release_workspace();
  }

  if (have_texts) {
    const auto& texts = args.list("texts");
    const int64_t M = static_cast<int64_t>(texts.size()), ctx = cfg.context_length;
    std::vector<int64_t> ids;
    ids.reserve(static_cast<size_t>(M * ctx));
    for (int64_t i = 0; i < M; ++i) {
      bool truncated = false;
      auto row = tokenizer->tokenize_padded(texts[static_cast<size_t>(i)], ctx, &truncated);
      if (truncated) {
        std::cerr << "zsad encode: warning: text " << i << " (0-based) is longer than " << ctx
                  << " tokens; truncated with EOT last\n";
      }
      ids.insert(ids.end(), row.begin(), row.end());
    }
    auto id_tensor = at::from_blob(ids.data(), {M, ctx}, at::kLong);
    auto feats = model->encode_text(id_tensor).to(at::kCPU).contiguous();
    out.write("text_features", feats.data_ptr<float>(), {M, cfg.embed_dim});
    out.write("token_ids", ids.data(), {M, ctx});
  }
  out.flush();
  return 0;
}

}  // namespace

ZSAD_COMMAND("encode", "CLIP image/text embeddings (OpenAI weights) to HDF5", run_encode);
