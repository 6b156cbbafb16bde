// CoPS with and without the feature cache (issue 8 point 6, issue 7 point 4). Numbers in
// docs/benchmarks.md ("CoPS training with the feature cache").
// On a shared machine run it with OMP_WAIT_POLICY=passive: with libgomp's default spin-wait, the
// OpenMP workers spinning between ATen's small parallel regions take the cores from OpenBLAS's own
// GEMM threads, which doubles the cached step (see the doc).
//
// Part 1 — training: one epoch of CoPS on `--images` synthetic images (random pixels, random
// masks/labels) at the CLIP shapes of --arch/--size with random weights, batch --batch:
//   uncached: frozen CLIP vision forward + CoPS step (prompt learner, text tower) + backward + Adam;
//   cached:   the same steps reading (g, F) from a FeatureCache file (float32) filled by the
//             uncached epoch's encoder outputs; both models start from the same init and noise, and
//             their parameters after the epoch are compared.
//   Per-step split: encoder | prompt learner forward | text encoder forward | backward | optimizer.
//   The epoch is also extrapolated to VisA's 2162 training images (271 steps of 8).
// Part 2 — evaluation throughput (images/s) of encode + CoPS inference with a cold cache (the
//   cache is built: every image runs through the encoder) and a warm cache (open + verify + read).
//
// Part 0 (only with --step-only K): K CoPS training steps on random cached-shape features (no
//   encoder, no cache file), the per-step split, and with --profile FILE a chrome trace of the last
//   step (forward + backward) from the autograd profiler; then exit.
//
// usage: cops_cache_bench [--arch ViT-L-14-336] [--size 518] [--batch 8] [--images 16]
//                         [--eval-images 8] [--threads 2] [--dir DIR] [--step-only K [--profile FILE]]
//                         [--cops key=value ...]
#include <ATen/ATen.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/optim/adam.h>

#include <chrono>
#include <ctime>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <string>

#include "models/clip/compute_threads.h"
#include "models/methods/cops/cops_clip.h"
#include "models/methods/cops/cops_model.h"
#include "models/methods/method.h"
#include "trainer/feature_cache.h"
#include "bench_args.h"

namespace fs = std::filesystem;
namespace cops = zsad::models::cops;
using Clock = std::chrono::steady_clock;

namespace {

using zsad::bench::arg;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Split {
  double encoder = 0, prompt = 0, text = 0, backward = 0, optimizer = 0, cache_read = 0;
  double total() const { return encoder + prompt + text + backward + optimizer + cache_read; }
};

}  // namespace

int main(int argc, char** argv) {
  const std::string arch = arg(argc, argv, "arch", "ViT-L-14-336");
  const int64_t size = std::stoll(arg(argc, argv, "size", "518"));
  const int64_t B = std::stoll(arg(argc, argv, "batch", "8"));
  const int64_t N = std::stoll(arg(argc, argv, "images", "16"));
  const int64_t NE = std::stoll(arg(argc, argv, "eval-images", "8"));
  const int threads = std::stoi(arg(argc, argv, "threads", "2"));
  const std::string dir = arg(argc, argv, "dir", (fs::temp_directory_path() / "zsad_cops_cache_bench").string());
  zsad::models::set_compute_threads(threads);  // LibTorch and OpenBLAS pools
  fs::remove_all(dir);
  fs::create_directories(dir);

  zsad::models::OptionMap mo;
  mo.set("model.arch", arch);
  mo.set("model.weights", "null");
  mo.set("model.init_seed", "0");
  mo.set("model.image_size", std::to_string(size));
  mo.set("model.vv_depth", "-1");
  mo.set("cache.dtype", "float32");
  zsad::models::ClipModel clip = zsad::models::build_clip_model(mo);
  const auto& cc = clip->cfg;
  cops::CopsOptions o;
  o.feature_dim = cc.embed_dim;
  if (cc.embed_dim % 64 != 0 || cc.embed_dim < 768) o.extractor_heads = std::max<int64_t>(1, cc.embed_dim / 16);
  if (cc.text_layers < 9) o.deep_prompt_depth = std::max<int64_t>(1, cc.text_layers - 1);
  for (int i = 1; i + 1 < argc; ++i)  // --cops key=value: any method.cops switch (A/B of the exact forms)
    if (std::string(argv[i]) == "--cops") {
      const std::string kv = argv[i + 1];
      const auto eq = kv.find('=');
      cops::set_cops_option(o, kv.substr(0, eq), eq == std::string::npos ? "" : kv.substr(eq + 1));
    }
  o.validate();
  const int64_t D = o.feature_dim, S = cc.input_size();
  std::cout << "cops_cache_bench: " << arch << " at " << S << " px (" << cc.num_patches() << " patches), random weights, batch "
            << B << ", " << N << " training images, " << threads << " thread(s)\n";
  auto env = [](const char* k) { const char* v = std::getenv(k); return std::string(v ? v : "unset"); };
  std::cout << "environment: OMP_WAIT_POLICY=" << env("OMP_WAIT_POLICY") << " GOMP_SPINCOUNT=" << env("GOMP_SPINCOUNT")
            << " OPENBLAS_NUM_THREADS=" << env("OPENBLAS_NUM_THREADS") << "\n";

  // Timed text tower: the CoPS step's text encoder forward is measured inside the step.
  double text_fwd = 0;
  cops::TextTower base = cops::make_cops_text_tower(clip);
  cops::TextTower timed = base;
  timed.encode = [&](const at::Tensor& x, const at::Tensor& ids, const std::vector<at::Tensor>& deep, bool fp16) {
    const auto t = Clock::now();
    at::Tensor r = base.encode(x, ids, deep, fp16);
    text_fwd += since(t);
    return r;
  };
  timed.encode_shared = [&](const at::Tensor& pre, const at::Tensor& grp, const at::Tensor& rest, const at::Tensor& ids,
                            const std::vector<at::Tensor>& deep, bool fp16) {
    const auto t = Clock::now();
    at::Tensor r = base.encode_shared(pre, grp, rest, ids, deep, fp16);
    text_fwd += since(t);
    return r;
  };

  // One timed training step: forward (text_fwd is filled by the timed text tower), backward, Adam.
  auto timed_step = [&](cops::CopsModel& model, torch::optim::Adam& opt, const cops::CopsBatch& cb, Split& sp) {
    text_fwd = 0;
    auto t = Clock::now();
    auto losses = model.train_step(cb);
    const double fwd = since(t);
    sp.text += text_fwd;
    sp.prompt += fwd - text_fwd;
    t = Clock::now();
    opt.zero_grad();
    losses.at("total").backward();
    sp.backward += since(t);
    t = Clock::now();
    opt.step();
    sp.optimizer += since(t);
    return losses;
  };

  // Synthetic inputs (CLIP-normalised range), masks with a square defect on anomalous images.
  at::manual_seed(1);
  at::Tensor images = at::randn({N, 3, S, S});
  at::Tensor labels = (at::arange(N) % 2).to(at::kLong);
  at::Tensor masks = at::zeros({N, S, S});
  for (int64_t i = 0; i < N; ++i)
    if (labels[i].item<int64_t>()) masks[i].narrow(0, S / 4, S / 4).narrow(1, S / 3, S / 4).fill_(1);
  std::vector<zsad::data::Sample> samples(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) {
    samples[i].img_path = "synthetic/" + std::to_string(i) + ".png";
    samples[i].cls_name = "synthetic";
    samples[i].anomaly = static_cast<int>(labels[i].item<int64_t>());
  }
  const int64_t step_only = std::stoll(arg(argc, argv, "step-only", "0"));
  if (step_only > 0) {  // Part 0: the cached step alone, on random features of the cached shapes
    const std::string profile = arg(argc, argv, "profile", "");
    cops::CopsModel model(o, timed, 0);
    torch::optim::Adam opt(model.trainable_parameters(), torch::optim::AdamOptions(1e-3).betas({0.5, 0.999}).eps(1e-8));
    Split sp;
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < B; ++i) idx.push_back(i % N);
    at::Tensor lab = at::arange(B) % 2, msk = at::zeros({B, S, S});
    for (int64_t i = 0; i < B; ++i) msk[i].copy_(masks[i % N]);
    const std::clock_t cpu0 = std::clock();
    for (int64_t step = 0; step < step_only; ++step) {
      std::unique_ptr<torch::autograd::profiler::RecordProfile> prof;
      if (!profile.empty() && step + 1 == step_only)
        prof = std::make_unique<torch::autograd::profiler::RecordProfile>(profile);
      cops::CopsBatch cb;
      cb.global = at::randn({B, D});
      cb.patch = at::randn({B, cc.num_patches(), D});
      cb.mask = msk;
      cb.label = lab;
      cb.noise = cops::vae_noise(0, 0, static_cast<uint64_t>(step), idx, o.r_train, D);
      auto losses = timed_step(model, opt, cb, sp);
      std::cout << "  step " << step << ": total loss " << losses.at("total").item<double>() << "\n";
    }
    const double k = static_cast<double>(step_only);
    std::cout << std::fixed << std::setprecision(3) << "[cached step] per step (s): prompt_learner " << sp.prompt / k
              << "  text_encoder " << sp.text / k << "  backward " << sp.backward / k << "  optimizer "
              << sp.optimizer / k << "  total " << sp.total() / k << "  (process CPU "
              << static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC / k << " s)\n";
    // Inference on the same shapes (R = r_test prior samples per image), e.g. to compare
    // --cops text_shared_prefix=true|false.
    cops::CopsBatch ib;
    ib.global = at::randn({B, D});
    ib.patch = at::randn({B, cc.num_patches(), D});
    ib.noise = cops::vae_noise(0, 1, 0, idx, o.r_test, D);
    text_fwd = 0;
    const auto ti = Clock::now();
    const std::clock_t icpu = std::clock();
    model.infer(ib);
    std::cout << "[inference] batch " << B << ", R " << o.r_test << ": " << since(ti) << " s (text encoder " << text_fwd
              << " s, process CPU " << static_cast<double>(std::clock() - icpu) / CLOCKS_PER_SEC << " s)\n";
    return 0;
  }
  zsad::models::VisionRequest req;
  req.vv_depth = cc.vision_layers;
  req.patch_tokens = true;

  std::map<int64_t, std::pair<at::Tensor, at::Tensor>> encoded;  // by image, from the uncached epoch
  auto run_epoch = [&](cops::CopsModel& model, std::shared_ptr<zsad::trainer::FeatureCache> cache, Split& sp) {
    torch::optim::Adam opt(model.trainable_parameters(), torch::optim::AdamOptions(1e-3).betas({0.5, 0.999}).eps(1e-8));
    int64_t step = 0;
    const auto t_epoch = Clock::now();
    for (int64_t lo = 0; lo < N; lo += B, ++step) {
      const int64_t b = std::min(B, N - lo);
      std::vector<int64_t> idx;
      for (int64_t i = lo; i < lo + b; ++i) idx.push_back(i);
      cops::CopsBatch cb;
      auto t = Clock::now();
      if (cache) {
        zsad::trainer::EncodedBatch e = cache->get(idx);
        cb.global = e.global;
        cb.patch = e.patch;
        sp.cache_read += since(t);
      } else {
        at::NoGradGuard ng;
        zsad::models::VisionOutput v = clip->encode_vision(images.narrow(0, lo, b), req);
        cb.global = v.global_features.to(at::kFloat);
        cb.patch = v.patch_tokens.to(at::kFloat);
        for (int64_t i = 0; i < b; ++i) encoded[lo + i] = {cb.global[i].clone(), cb.patch[i].clone()};
        sp.encoder += since(t);
      }
      cb.mask = masks.narrow(0, lo, b);
      cb.label = labels.narrow(0, lo, b);
      cb.noise = cops::vae_noise(0, 0, static_cast<uint64_t>(step), idx, o.r_train, D);
      timed_step(model, opt, cb, sp);
    }
    return since(t_epoch);
  };

  // ---- Part 1: training epoch without and with the cache ----
  cops::CopsModel uncached(o, timed, 0), cached(o, timed, 0);
  Split su, sc;
  const double epoch_u = run_epoch(uncached, nullptr, su);
  zsad::trainer::FeatureCacheOptions co;
  co.dir = dir + "/train";
  co.batch_size = B;
  co.log = false;
  zsad::trainer::FeatureCacheKey key =
      zsad::trainer::clip_cache_key(mo, clip, "bench", "train", samples, "", "raw_cls", {});  // no files: in-memory images
  auto fill = [&](const std::vector<int64_t>& idx) {  // the uncached epoch's outputs: no second forward
    std::vector<at::Tensor> g, p;
    for (int64_t i : idx) {
      g.push_back(encoded.at(i).first);
      p.push_back(encoded.at(i).second);
    }
    return zsad::trainer::EncodedBatch{at::stack(g), at::stack(p)};
  };
  auto t = Clock::now();
  auto cache = zsad::trainer::FeatureCache::open_or_build(key, samples, fill, co);
  const double write_s = since(t);
  t = Clock::now();
  cache = zsad::trainer::FeatureCache::open_or_build(key, samples, fill, co);  // warm: open + sha256 verify
  const double open_s = since(t);
  const double epoch_c = run_epoch(cached, cache, sc);
  double max_diff = 0;
  auto su_sd = uncached.state_dict(true), sc_sd = cached.state_dict(true);
  for (const auto& [k, v] : su_sd) max_diff = std::max(max_diff, (v - sc_sd.at(k)).abs().max().item<double>());

  const int64_t steps = (N + B - 1) / B;
  auto per_step = [&](const Split& s, double v) { return v / static_cast<double>(steps); };
  std::cout << std::fixed << std::setprecision(3);
  std::cout << "\n[training] " << steps << " steps per epoch of " << N << " images\n";
  std::cout << "  per step (s)        encoder  cache_read  prompt_learner  text_encoder  backward  optimizer   total\n";
  for (auto [name, s] : {std::pair<const char*, const Split*>{"  without cache   ", &su}, {"  with cache      ", &sc}}) {
    std::cout << name << std::setw(10) << per_step(*s, s->encoder) << std::setw(12) << per_step(*s, s->cache_read)
              << std::setw(16) << per_step(*s, s->prompt) << std::setw(14) << per_step(*s, s->text) << std::setw(10)
              << per_step(*s, s->backward) << std::setw(11) << per_step(*s, s->optimizer) << std::setw(8)
              << per_step(*s, s->total()) << "\n";
  }
  const double enc_share = su.encoder / su.total();
  std::cout << "  epoch without cache " << epoch_u << " s, with cache " << epoch_c << " s -> " << std::setprecision(1)
            << epoch_u / epoch_c << "x (encoder = " << 100 * enc_share << "% of an uncached step)\n"
            << std::setprecision(3);
  std::cout << "  cache: write " << write_s << " s, warm open + verify " << open_s << " s (once per run, not per epoch)\n";
  const double visa_steps = 271;
  std::cout << "  extrapolated VisA epoch (2162 images, 271 steps): without cache " << std::setprecision(0)
            << visa_steps * su.total() / steps << " s, with cache " << visa_steps * sc.total() / steps << " s\n"
            << std::setprecision(3);
  std::cout << "  max |param difference| after the epoch (with vs without cache): " << std::scientific << max_diff
            << std::fixed << "\n";

  // ---- Part 2: evaluation throughput, cold vs warm cache ----
  const int64_t ne = std::min(NE, N);
  std::vector<zsad::data::Sample> es(samples.begin(), samples.begin() + ne);
  zsad::trainer::FeatureCacheKey ek = zsad::trainer::clip_cache_key(mo, clip, "bench", "test", es, "", "raw_cls", {});
  zsad::trainer::FeatureCacheOptions eo = co;
  eo.dir = dir + "/eval";
  auto encoder = [&](const std::vector<int64_t>& idx) {
    at::NoGradGuard ng;
    zsad::models::VisionOutput v = clip->encode_vision(images.narrow(0, idx.front(), static_cast<int64_t>(idx.size())), req);
    return zsad::trainer::EncodedBatch{v.global_features, v.patch_tokens};
  };
  auto evaluate = [&](bool expect_hit) {
    const auto t0 = Clock::now();
    zsad::trainer::reset_encoder_calls();
    auto c = zsad::trainer::FeatureCache::open_or_build(ek, es, encoder, eo);
    if (c->stats().hit != expect_hit) std::cerr << "unexpected cache state\n";
    at::NoGradGuard ng;
    for (int64_t lo = 0; lo < ne; lo += B) {
      std::vector<int64_t> idx;
      for (int64_t i = lo; i < std::min(ne, lo + B); ++i) idx.push_back(i);
      auto e = c->get(idx);
      cops::CopsBatch cb;
      cb.global = e.global;
      cb.patch = e.patch;
      cb.noise = cops::vae_noise(0, 1, 0, idx, o.r_test, D);
      cached.infer(cb);
    }
    return std::make_pair(since(t0), zsad::trainer::encoder_calls());
  };
  auto [cold_s, cold_calls] = evaluate(false);
  auto [warm_s, warm_calls] = evaluate(true);
  std::cout << "\n[evaluation] " << ne << " images, encode (cold) or read (warm) + CoPS inference (R=10)\n";
  std::cout << "  cold cache: " << ne / cold_s << " images/s (" << cold_calls << " encoder forwards)\n";
  std::cout << "  warm cache: " << ne / warm_s << " images/s (" << warm_calls << " encoder forwards)\n";
  std::cout << "  ratio warm/cold: " << std::setprecision(1) << cold_s / warm_s << "x\n";
  fs::remove_all(dir);
  return 0;
}
