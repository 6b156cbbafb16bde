// Loader throughput at 518 px (decode + PIL-exact bicubic resize + CLIP normalise + mask path),
// with 1 and 2 worker threads, for PNG sources (MVTec-like, 1024 px) and JPEG sources
// (VisA-like, 1500x1000 px). Images come from the synthetic generator, written once to /tmp.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <sys/resource.h>
#include <unistd.h>

#include "data/image.h"
#include "data/loader.h"
#include "data/synth.h"
#include "data/transforms.h"

namespace {

namespace fs = std::filesystem;
using namespace zsad::data;

constexpr int kImages = 16;

struct Corpus {
  std::string root;
  std::vector<Sample> png, jpg;
};

const Corpus& corpus() {
  static Corpus c = [] {
    Corpus out;
    out.root = (fs::temp_directory_path() / ("zsad_loader_bench_" + std::to_string(::getpid()))).string();
    fs::create_directories(out.root + "/png");
    fs::create_directories(out.root + "/jpg");
    fs::create_directories(out.root + "/mask");
    for (int i = 0; i < kImages; ++i) {
      const std::string defect = i % 2 ? "stain" : "";
      const SynthImage s = render_synth_image("objects", i % 5, defect, 1024, 1000 + i);
      const std::string n = std::to_string(i);
      write_png(out.root + "/png/" + n + ".png", s.image);
      if (!defect.empty()) write_png(out.root + "/mask/" + n + ".png", s.mask);
      // VisA-like: 1500x1000 JPEG.
      const Image wide = resize_pil(s.image, 1500, 1000, ResampleFilter::kBilinear);
      write_image(out.root + "/jpg/" + n + ".JPG", wide, 95);
      const std::string mask = defect.empty() ? "" : "mask/" + n + ".png";
      out.png.push_back({"png/" + n + ".png", mask, "obj", defect.empty() ? "good" : defect, defect.empty() ? 0 : 1});
      out.jpg.push_back({"jpg/" + n + ".JPG", "", "obj", "good", 0});
    }
    return out;
  }();
  return c;
}

// CPU seconds of the whole process (all threads): on a shared machine this is the stable number.
double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

void BM_Loader(benchmark::State& state) {
  const Corpus& c = corpus();
  const auto& samples = state.range(1) == 0 ? c.png : c.jpg;
  LoaderOptions o;
  o.image_size = 518;
  o.batch_size = 4;
  o.threads = static_cast<int>(state.range(0));
  int64_t images = 0;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    BatchLoader loader(samples, c.root, o);
    loader.start_epoch(0);
    Batch b;
    while (loader.next(b)) {
      benchmark::DoNotOptimize(b.images.data());
      images += b.size;
    }
  }
  state.SetItemsProcessed(images);
  state.counters["cpu_ms_per_image"] = 1000.0 * (process_cpu_seconds() - cpu0) / std::max<int64_t>(images, 1);
  state.SetLabel(std::string(state.range(1) == 0 ? "png 1024x1024 + masks" : "jpeg 1500x1000") + ", threads=" +
                 std::to_string(state.range(0)));
}
BENCHMARK(BM_Loader)->ArgsProduct({{1, 2}, {0, 1}})->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(2.0);

// The resize alone, 1024 -> 518, RGB.
void BM_ResizeBicubic1024To518(benchmark::State& state) {
  const Image img = render_synth_image("textures", 0, "", 1024, 1).image;
  for (auto _ : state) benchmark::DoNotOptimize(resize_pil(img, 518, 518, ResampleFilter::kBicubic).pixels.data());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ResizeBicubic1024To518)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  std::error_code ec;
  fs::remove_all(corpus().root, ec);
  return 0;
}
