// Evaluation throughput with the frozen-feature cache (issue 7 point 4). Owned by engineer
// "evalcache"; numbers in docs/benchmarks.md ("Evaluation with the feature cache").
//
// Runs the EVALUATION ENGINE (trainer/eval/engine.h: eval::evaluate — loading, inference,
// upsampling + smoothing, per-class metrics, results/scores files) of a CLIP method with random
// weights on a synthetic `objects` dataset, three times with one method instance:
//   (untimed warm-up: one blank image per class through infer(), so WinCLIP's per-class text
//   features are computed before any timed run)
//   uncached: cache disabled: the method runs its encoder on every decoded image;
//   cold:     cache enabled, no file yet: every image runs through the encoder (one forward per
//             image), the file is written, then the scoring loop reads it;
//   warm:     the file exists: open + sha256 verify, no encoder, no image decoding.
// Prints images/s of each (N / wall time of eval::evaluate), warm/cold and warm/uncached ratios,
// the encoder forwards of each run, and whether the cached runs' per-image scores are identical
// to the uncached ones (float32 cache: they must be).
//
// usage: eval_cache_bench [--method winclip|cops] [--arch ViT-B-16] [--size 224]
//                         [--per-class 2] [--data-size 512] [--eval-size 0] [--threads 2]
//                         [--dtype float32] [--templates 2] [--dir DIR]
// --templates: WinCLIP prompt templates used (the first N of the paper's 22; text features are
// computed once per class in the untimed warm-up, so N only shortens the warm-up).
#include <ATen/ATen.h>

#include <chrono>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <string>

#include "models/clip/compute_threads.h"
#include "data/index.h"
#include "data/synth.h"
#include "models/methods/method.h"
#include "models/methods/winclip/winclip.h"
#include "results/scores_file.h"
#include "trainer/comm/communicator.h"
#include "trainer/eval/engine.h"
#include "trainer/feature_cache.h"
#include "bench_args.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

using zsad::bench::arg;

std::map<std::string, std::vector<float>> read_scores(const std::string& path) {
  std::map<std::string, std::vector<float>> out;
  zsad::results::ScoresReader rd(path);
  for (const auto& c : rd.classes()) out[c] = rd.read(c).image_scores;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string method_name = arg(argc, argv, "method", "winclip");
  const std::string arch = arg(argc, argv, "arch", "ViT-B-16");
  const int64_t size = std::stoll(arg(argc, argv, "size", "224"));
  const int per_class = std::stoi(arg(argc, argv, "per-class", "2"));
  const int data_size = std::stoi(arg(argc, argv, "data-size", "512"));
  const int64_t eval_size = std::stoll(arg(argc, argv, "eval-size", "0"));
  const int threads = std::stoi(arg(argc, argv, "threads", "2"));
  const std::string dtype = arg(argc, argv, "dtype", "float32");
  const int templates = std::max(1, std::min(22, std::stoi(arg(argc, argv, "templates", "2"))));
  const std::string dir =
      arg(argc, argv, "dir", (fs::temp_directory_path() / ("zsad_eval_cache_bench_" + std::to_string(::getpid()))).string());
  zsad::models::set_compute_threads(threads);  // LibTorch and OpenBLAS pools
  fs::remove_all(dir);
  fs::create_directories(dir);

  // Synthetic dataset (objects preset: 5 classes).
  zsad::data::SynthOptions so;
  so.preset = "objects";
  so.size = data_size;
  so.train_per_class = 1;
  so.test_per_class = per_class;
  so.threads = threads;
  const std::string root = dir + "/data";
  zsad::data::Meta meta = zsad::data::synthesize_dataset(so, root);
  const int64_t N = static_cast<int64_t>(meta.split("test").flat().size());

  zsad::models::OptionMap mo;
  mo.set("method.name", method_name);
  mo.set("seed", "0");
  mo.set("model.arch", arch);
  mo.set("model.weights", "null");
  mo.set("model.init_seed", "0");
  mo.set("model.image_size", std::to_string(size));
  mo.set("model.activation", "quick_gelu");
  mo.set("model.pos_interp", "bilinear");
  mo.set("model.vv_depth", "-1");
  // WinCLIP's text features are computed once per class (untimed warm-up below); the full ensemble
  // (12 states x 22 templates) costs minutes of text tower here and says nothing about the cache.
  if (method_name == "winclip" && templates < 22) {
    const auto& all = zsad::models::winclip::default_templates();
    mo.set_list("method.winclip.templates", std::vector<std::string>(all.begin(), all.begin() + templates));
  }
  auto t = Clock::now();
  auto method = zsad::models::make_method(mo);
  const double build_s = std::chrono::duration<double>(Clock::now() - t).count();
  auto comm = zsad::comm::make_local_communicator();

  std::cout << "eval_cache_bench: " << method->display_name() << ", " << arch << " at " << size << " px (random weights, "
            << build_s << " s to build), " << N << " synthetic test images (" << data_size << " px PNG), eval size "
            << (eval_size > 0 ? eval_size : size) << ", " << threads << " thread(s), cache " << dtype << std::endl;

  struct Run {
    double seconds = 0;
    int64_t forwards = 0;
    std::string cache;
    std::map<std::string, std::vector<float>> scores;
  };
  auto run = [&](const std::string& name, bool use_cache) {
    zsad::eval::EvalOptions o;
    zsad::eval::DatasetSpec d;
    d.name = "synth_objects";
    d.root = root;
    d.eval_size = eval_size;
    o.datasets = {d};
    o.run_dir = dir + "/" + name;
    o.batch_size = 1;
    o.write_scores = true;
    o.panels_per_class = 0;
    o.git_revision = "bench";
    o.progress_every_s = 1e9;
    o.threads_per_rank = threads;
    o.use_cache = use_cache;
    o.cache.dir = dir + "/cache";
    o.cache.batch_size = 4;
    o.cache_dtype = dtype;
    o.cache_threads = 1;
    const int64_t f0 = method->encoder_forwards();
    const auto t0 = Clock::now();
    auto reps = zsad::eval::evaluate(*method, o, *comm);
    Run r;
    r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    r.forwards = method->encoder_forwards() - f0;
    r.cache = reps.at(0).cache_state.empty() ? "off" : reps.at(0).cache_state;
    r.scores = read_scores(o.run_dir + "/scores/synth_objects.h5");
    return r;
  };
  // Untimed warm-up: one forward of a blank image per class, so per-class state the method
  // computes once (WinCLIP's prompt-ensemble text features) is not charged to the first run.
  {
    const auto classes = meta.split("test").classes;
    const int64_t C = static_cast<int64_t>(classes.size());
    zsad::models::DatasetContext ctx;
    ctx.name = "warm-up";
    ctx.classes = classes;
    method->begin_dataset(ctx);
    zsad::models::MethodBatch b;
    b.images = at::zeros({C, 3, size, size});
    b.class_names = classes;
    for (int64_t i = 0; i < C; ++i) b.indices.push_back(i);
    const auto t0 = Clock::now();
    method->infer(b);
    std::cout << "warm-up (untimed): " << C << " classes in " << std::chrono::duration<double>(Clock::now() - t0).count()
              << " s" << std::endl;
  }
  Run plain = run("uncached", false);
  Run cold = run("cold", true);
  Run warm = run("warm", true);

  auto ips = [&](const Run& r) { return static_cast<double>(N) / r.seconds; };
  std::cout << std::fixed << std::setprecision(2);
  std::cout << "\n  run        cache   encoder forwards   wall s    images/s\n";
  for (auto [name, r] : {std::pair<const char*, const Run*>{"uncached", &plain}, {"cold    ", &cold}, {"warm    ", &warm}})
    std::cout << "  " << name << "   " << std::setw(5) << r->cache << "   " << std::setw(16) << r->forwards << "   "
              << std::setw(7) << r->seconds << "   " << std::setw(9) << ips(*r) << "\n";
  std::cout << "\n  warm / cold images/s:     " << ips(warm) / ips(cold) << "x\n";
  std::cout << "  warm / uncached images/s: " << ips(warm) / ips(plain) << "x\n";
  std::cout << "  cold / uncached images/s: " << ips(cold) / ips(plain) << "x\n";
  double d_cold = 0, d_warm = 0;
  for (const auto& [c, s] : plain.scores)
    for (size_t i = 0; i < s.size(); ++i) {
      d_cold = std::max(d_cold, static_cast<double>(std::abs(s[i] - cold.scores.at(c)[i])));
      d_warm = std::max(d_warm, static_cast<double>(std::abs(s[i] - warm.scores.at(c)[i])));
    }
  std::cout << std::scientific << std::setprecision(2) << "  max |score - uncached score|: cold " << d_cold << ", warm "
            << d_warm << (d_cold == 0 && d_warm == 0 ? " (identical)" : "") << "\n";
  std::error_code ec;
  std::uintmax_t bytes = 0;
  for (const auto& e : fs::directory_iterator(dir + "/cache", ec))
    if (e.path().extension() == ".h5") bytes += e.file_size();
  std::cout << std::fixed << std::setprecision(1) << "  cache file: " << bytes / 1048576.0 << " MiB\n";
  fs::remove_all(dir);
  return 0;
}
