#include "trainer/eval/engine.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "common/h5.h"
#include "common/sha256.h"
#include "data/image.h"
#include "data/index.h"
#include "data/loader.h"
#include "data/synth.h"
#include "data/transforms.h"
#include "models/clip/compute_threads.h"
#include "models/postprocess.h"
#include "results/metrics/accumulator.h"
#include "results/run_result.h"
#include "results/scores_file.h"
#include "trainer/eval/panels.h"

namespace zsad::eval {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::vector<int64_t> shard_indices(int64_t n, int rank, int world, const std::string& mode) {
  if (world < 1 || rank < 0 || rank >= world) throw Error("shard_indices: rank " + std::to_string(rank) + " of " + std::to_string(world));
  std::vector<int64_t> out;
  if (mode == "strided") {
    for (int64_t i = rank; i < n; i += world) out.push_back(i);
  } else if (mode == "contiguous") {
    const int64_t b = n * rank / world, e = n * (rank + 1) / world;
    for (int64_t i = b; i < e; ++i) out.push_back(i);
  } else {
    throw Error("eval.shard '" + mode + "': expected contiguous or strided");
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Config

namespace {

std::string fmt_num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

const std::set<std::string>& dataset_keys() {
  static const std::set<std::string> k = {"name", "root", "meta", "layout", "split", "eval_size", "upsampling",
                                          "smoothing_sigma", "metrics", "pro_mode", "fpr_limit", "shots", "classes",
                                          "method_options", "synth", "description"};
  return k;
}

}  // namespace

std::vector<DatasetSpec> dataset_specs_from(const models::OptionMap& cfg) {
  models::OptionMap all = cfg.sub("eval.datasets");
  // Dataset names in config order are not recoverable from a sorted map; sort by name for a
  // stable order, then by explicit eval.order when given.
  std::vector<std::string> names;
  for (const auto& [k, v] : all.values) {
    const std::string n = k.substr(0, k.find('.'));
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  }
  auto order = cfg.list("eval.order");
  if (!order.empty()) {
    for (const auto& n : order) {
      if (std::find(names.begin(), names.end(), n) == names.end()) {
        throw Error("eval.order: '" + n + "' is not under eval.datasets");
      }
    }
    std::vector<std::string> rest;
    for (const auto& n : names) {
      if (std::find(order.begin(), order.end(), n) == order.end()) rest.push_back(n);
    }
    names = order;
    names.insert(names.end(), rest.begin(), rest.end());
  }
  std::vector<DatasetSpec> out;
  for (const auto& n : names) {
    models::OptionMap d = all.sub(n);
    const std::string p = "eval.datasets." + n + ".";
    for (const auto& [k, v] : d.values) {
      const std::string top = k.substr(0, k.find('.'));
      if (!dataset_keys().count(top)) {
        throw Error("config key '" + p + k + "': unknown dataset setting (known: name, root, meta, layout, split, eval_size, "
                    "upsampling, smoothing_sigma, metrics, pro_mode, fpr_limit, shots, classes, method_options, synth)");
      }
    }
    if (d.values.empty()) continue;  // a null entry removes a dataset
    DatasetSpec s;
    s.name = d.str("name", n);
    s.root = d.str("root");
    if (s.root.empty()) throw Error("config key '" + p + "root': the dataset root is required");
    s.meta = d.str("meta");
    s.layout = d.str("layout");
    if (!s.layout.empty()) {  // checked even when a meta.json makes the layout unused
      const auto& known = data::layout_names();
      if (std::find(known.begin(), known.end(), s.layout) == known.end()) {
        std::string all;
        for (const auto& n : known) all += (all.empty() ? "" : ", ") + n;
        throw Error("config key '" + p + "layout': unknown layout '" + s.layout + "' (known: " + all + ")");
      }
    }
    s.split = d.str("split", "test");
    s.eval_size = d.integer("eval_size", 518);
    // Checked here, before any image is scored (an absurd size or sigma otherwise ends in bad_alloc,
    // and a negative sigma only in the results schema after the whole evaluation).
    if (s.eval_size < 0 || s.eval_size > kMaxMapSize)
      throw Error("config key '" + p + "eval_size': expected 0 (the method's input size) .. " +
                  std::to_string(kMaxMapSize) + ", got " + std::to_string(s.eval_size));
    s.upsampling = d.str("upsampling");
    if (!s.upsampling.empty()) models::parse_upsample(s.upsampling);
    s.smoothing_sigma = d.real("smoothing_sigma", 4.0);
    if (!(s.smoothing_sigma >= 0 && s.smoothing_sigma <= kMaxSmoothingSigma))
      throw Error("config key '" + p + "smoothing_sigma': expected 0 (none) .. " + fmt_num(kMaxSmoothingSigma) +
                  " pixels, got " + fmt_num(s.smoothing_sigma));
    s.metrics = d.list("metrics");
    for (const auto& m : s.metrics) {
      if (!results::is_metric_key(m)) throw Error("config key '" + p + "metrics': unknown metric '" + m + "'");
    }
    s.pro_mode = d.str("pro_mode", "exact");
    results::parse_pro_mode(s.pro_mode);
    s.fpr_limit = d.real("fpr_limit", 0.3);
    if (!(s.fpr_limit > 0 && s.fpr_limit <= 1))
      throw Error("config key '" + p + "fpr_limit': expected a false-positive rate in (0, 1], got " + fmt_num(s.fpr_limit));
    s.shots = d.integer("shots", 0);
    if (s.shots < 0) throw Error("config key '" + p + "shots': expected >= 0, got " + std::to_string(s.shots));
    s.classes = d.list("classes");
    s.method_options = d.sub("method_options");
    s.synth_preset = d.str("synth.preset");
    s.synth_size = static_cast<int>(d.integer("synth.size", 256));
    s.synth_images_per_class = static_cast<int>(d.integer("synth.images_per_class", 50));
    s.synth_train_per_class = static_cast<int>(d.integer("synth.train_per_class", 50));
    s.synth_anomaly_fraction = d.real("synth.anomaly_fraction", 0.4);
    s.synth_defect_scale = d.real("synth.defect_scale", 1.0);
    s.synth_seed = static_cast<uint64_t>(d.integer("synth.seed", 0));
    if (!s.synth_preset.empty()) {  // the generator's own limits, named by key before anything runs
      data::synth_preset(s.synth_preset);
      auto bad = [&](const std::string& key, const std::string& want, const std::string& got) {
        throw Error("config key '" + p + "synth." + key + "': expected " + want + ", got " + got);
      };
      if (s.synth_size < 32 || s.synth_size > 4096) bad("size", "32 .. 4096 pixels", std::to_string(s.synth_size));
      if (s.synth_images_per_class < 2) bad("images_per_class", ">= 2", std::to_string(s.synth_images_per_class));
      if (s.synth_train_per_class < 0) bad("train_per_class", ">= 0", std::to_string(s.synth_train_per_class));
      if (!(s.synth_anomaly_fraction >= 0.3 && s.synth_anomaly_fraction <= 0.5))
        bad("anomaly_fraction", "0.3 .. 0.5", fmt_num(s.synth_anomaly_fraction));
      if (!(s.synth_defect_scale >= 0.25 && s.synth_defect_scale <= 4))
        bad("defect_scale", "0.25 .. 4", fmt_num(s.synth_defect_scale));
      if (d.integer("synth.seed", 0) < 0) bad("seed", ">= 0", std::to_string(d.integer("synth.seed", 0)));
    }
    out.push_back(std::move(s));
  }
  return out;
}

EvalOptions eval_options_from(const models::OptionMap& cfg) {
  EvalOptions o;
  o.datasets = dataset_specs_from(cfg);
  o.batch_size = cfg.integer("eval.batch_size", 1);
  if (o.batch_size < 1) throw Error("config key 'eval.batch_size': must be >= 1");
  o.loader_threads = static_cast<int>(cfg.integer("eval.loader_threads", 1));
  o.write_scores = cfg.flag("eval.write_scores", false);
  o.scores_fp16 = cfg.flag("eval.scores_fp16", false);
  o.panels_per_class = cfg.integer("eval.panels_per_class", 2);
  o.shard = cfg.str("eval.shard", "contiguous");
  shard_indices(0, 0, 1, o.shard);
  o.seed = static_cast<uint64_t>(cfg.integer("seed", 0));
  o.progress_every_s = cfg.real("eval.progress_every_s", 2.0);
  o.metric_threads = static_cast<int>(cfg.integer("eval.metric_threads", 1));
  o.method_name = cfg.str("method.name");
  const std::string train = cfg.str("eval.train_dataset");
  if (!train.empty()) o.train_dataset = train;
  o.threads_per_rank = models::resolve_compute_threads(cfg.integer("trainer.threads", 0));
  o.cache = trainer::cache_options_from(cfg);
  o.use_cache = o.cache.enabled;
  o.cache_dtype = cfg.str("cache.dtype", "float16");
  o.cache_threads = static_cast<int>(std::max<int64_t>({1, cfg.integer("cache.loader_threads", 1), o.loader_threads}));
  return o;
}

// ---------------------------------------------------------------------------------------------
// Helpers

std::string detect_git_revision() {
  if (const char* env = std::getenv("ZSAD_GIT_REVISION")) return env;
  std::vector<std::string> dirs = {"."};
  if (const char* src = std::getenv("ZSAD_SOURCE_DIR")) dirs.insert(dirs.begin(), src);
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) dirs.push_back(exe.parent_path().string());
  for (const auto& d : dirs) {
    std::string cmd = "git -C '" + d + "' rev-parse HEAD 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) continue;
    char buf[128] = {0};
    std::string out;
    if (fgets(buf, sizeof buf, p)) out = buf;
    pclose(p);
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    if (out.size() == 40) return out;
  }
  return "unknown";
}

nlohmann::json hardware_info(int world_size, int threads_per_rank) {
  nlohmann::json h;
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  h["hostname"] = host;
  std::ifstream cpu("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpu, line)) {
    if (line.rfind("model name", 0) == 0) {
      h["cpu"] = line.substr(line.find(':') + 2);
      break;
    }
  }
  h["cores"] = std::thread::hardware_concurrency();
  h["world_size"] = world_size;
  h["threads_per_rank"] = threads_per_rank;
  h["device"] = "cpu";
  return h;
}

namespace {

std::string file_sha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot read (weights digest)");
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) h.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  return h.hex_digest();
}

std::string fmt_eta(double s) {
  if (!std::isfinite(s) || s < 0) s = 0;
  const auto t = static_cast<int64_t>(std::lround(s));
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(t / 3600), (long long)(t / 60 % 60), (long long)(t % 60));
  else std::snprintf(buf, sizeof buf, "%lld:%02lld", (long long)(t / 60), (long long)(t % 60));
  return buf;
}

std::string safe_name(std::string s) {
  for (auto& c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) c = '_';
  }
  return s;
}

class RankLog {
 public:
  RankLog(const std::string& run_dir, int rank) {
    fs::create_directories(fs::path(run_dir) / "logs");
    out_.open((fs::path(run_dir) / "logs" / ("eval_rank" + std::to_string(rank) + ".log")).string(), std::ios::app);
  }
  void line(const std::string& s) {
    out_ << s << "\n";
    out_.flush();
  }

 private:
  std::ofstream out_;
};

struct Item {
  int64_t global = 0;  // index in the flat split
  int cls = 0;
  int64_t pos = 0;     // position within its class
};

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw Error(path + ": cannot write");
    f << text;
  }
  fs::rename(tmp, path);
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot read");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Overrides that distinguish runs in tables: resource, logging, output and launcher keys dropped
// (a 2-rank run of the same configuration is the same variant).
std::vector<std::string> variant_overrides(const std::vector<std::string>& overrides) {
  static const std::vector<std::string> prefixes = {"launcher", "output", "tags", "hydra"};
  static const std::set<std::string> keys = {
      "checkpoint",          "eval.checkpoint",  "trainer.threads",   "eval.loader_threads", "eval.progress_every_s",
      "eval.panels_per_class", "eval.write_scores", "eval.scores_fp16", "eval.metric_threads", "eval.backend",
      "eval.timeout_s",      "eval.batch_size",  "eval.shard",        "model.device",        "task.name"};
  std::vector<std::string> out;
  for (const auto& ov : overrides) {
    std::string k = ov.substr(0, ov.find('='));
    while (!k.empty() && (k[0] == '+' || k[0] == '~')) k.erase(0, 1);
    const std::string group = k.substr(0, k.find_first_of(".@/"));
    if (keys.count(k) || std::find(prefixes.begin(), prefixes.end(), group) != prefixes.end()) continue;
    out.push_back(ov);
  }
  return out;
}

at::Tensor to_tensor(const std::vector<float>& v, std::vector<int64_t> shape) {
  return at::from_blob(const_cast<float*>(v.data()), shape, at::kFloat).clone();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The engine

std::vector<DatasetReport> evaluate(models::Method& method, const EvalOptions& o, comm::Communicator& comm) {
  const int rank = comm.rank(), world = comm.world_size();
  RankLog log(o.run_dir, rank);
  std::vector<DatasetReport> reports;
  const std::string git = o.git_revision.empty() ? detect_git_revision() : o.git_revision;
  std::optional<std::string> weights_digest;
  if (!method.weights_path().empty() && rank == 0) weights_digest = file_sha256(method.weights_path());
  const int64_t S_in = method.input_size();

  for (const auto& spec : o.datasets) {
    const auto t0 = Clock::now();
    data::Meta meta = load_dataset_meta(spec, comm, "eval");
    data::Split split = meta.split(spec.split);
    if (!spec.classes.empty()) {
      data::Split f;
      for (const auto& c : spec.classes) {
        if (!split.samples.count(c)) throw Error("eval.datasets." + spec.name + ".classes: no class '" + c + "' in the index");
        for (const auto& smp : split.samples.at(c)) f.add(smp);
      }
      split = f;
    }
    const std::vector<data::Sample> samples = split.flat();
    const auto N = static_cast<int64_t>(samples.size());
    if (N == 0) throw Error("eval.datasets." + spec.name + ": the " + spec.split + " split is empty");
    const std::string dataset_digest = sha256_hex(data::meta_to_json(meta));
    data::Capabilities caps = meta.layout.empty() ? data::infer_capabilities(meta) : meta.capabilities;

    std::vector<Item> items(static_cast<size_t>(N));
    std::vector<int64_t> class_start(split.classes.size() + 1, 0), class_size(split.classes.size(), 0);
    {
      int64_t g = 0;
      for (size_t c = 0; c < split.classes.size(); ++c) {
        class_start[c] = g;
        for (size_t k = 0; k < split.samples.at(split.classes[c]).size(); ++k, ++g) {
          items[static_cast<size_t>(g)] = {g, static_cast<int>(c), static_cast<int64_t>(k)};
        }
        class_size[c] = g - class_start[c];
      }
      class_start[split.classes.size()] = g;
    }

    const int64_t E = spec.eval_size > 0 ? spec.eval_size : S_in;
    models::PostprocessOptions pp;
    pp.eval_size = E;
    pp.upsample = models::parse_upsample(spec.upsampling.empty() ? method.default_upsampling() : spec.upsampling);
    pp.sigma = spec.smoothing_sigma;

    const fs::path ds_dir = fs::path(o.run_dir) / "eval" / safe_name(spec.name);
    fs::create_directories(ds_dir);
    const std::vector<int64_t> shard = shard_indices(N, rank, world, o.shard);
    {
      std::ostringstream msg;
      msg << "eval " << spec.name << ": rank " << rank << "/" << world << " scores " << shard.size() << " of " << N
          << " images";
      if (!shard.empty()) msg << " (indices " << shard.front() << ".." << shard.back() << ", " << o.shard << ")";
      std::cout << msg.str() << std::endl;
      log.line(msg.str());
    }

    // Method setup for this dataset.
    models::DatasetContext ctx;
    ctx.name = spec.name;
    ctx.classes = split.classes;
    ctx.options = spec.method_options.sub(o.method_name.empty() ? method.name() : o.method_name);
    ctx.rank = rank;
    ctx.world_size = world;
    ctx.allreduce_sum = [&comm](at::Tensor& t) { comm.allreduce(t); };
    ctx.run_dir = o.run_dir;
    method.begin_dataset(ctx);
    for (const auto& cls : split.classes) {
      models::SupportSet sup;
      sup.class_name = cls;
      if (spec.shots > 0) {
        const data::Split& train = meta.split("train");
        auto it = train.samples.find(cls);
        std::vector<float> buf;
        int64_t k = 0;
        int64_t base = 0;
        for (const auto& c : train.classes) {
          if (c == cls) break;
          base += static_cast<int64_t>(train.samples.at(c).size());
        }
        if (it != train.samples.end()) {
          for (size_t i = 0; i < it->second.size() && k < spec.shots; ++i) {
            if (it->second[i].anomaly) continue;
            buf.resize(static_cast<size_t>((k + 1) * 3 * S_in * S_in));
            data::load_sample(it->second[i], spec.root, static_cast<int>(S_in), false,
                              buf.data() + static_cast<size_t>(k * 3 * S_in * S_in), nullptr);
            sup.indices.push_back(base + static_cast<int64_t>(i));
            sup.names.push_back(it->second[i].img_path);
            ++k;
          }
        }
        if (k < spec.shots) {
          throw Error("eval.datasets." + spec.name + ".shots = " + std::to_string(spec.shots) + ": class '" + cls +
                      "' has only " + std::to_string(k) + " normal training images");
        }
        sup.images = to_tensor(buf, {k, 3, S_in, S_in});
      }
      method.prepare_class(sup);
    }

    // Frozen features from the feature cache (built here, sharded, on a miss).
    std::shared_ptr<trainer::FeatureCache> cache;
    std::optional<models::FrozenFeatureSpec> frozen;
    if (o.use_cache) frozen = method.frozen_features();
    if (frozen) {
      models::OptionMap kc = frozen->model_options;
      kc.set("cache.dtype", o.cache_dtype);
      const trainer::FeatureCacheKey key =
          trainer::clip_cache_key(kc, frozen->clip, spec.name, spec.split, samples, spec.root, frozen->global_output,
                                  frozen->layers);
      trainer::EncoderFn enc = trainer::make_image_encoder(
          samples, spec.root, S_in,
          [&method](const at::Tensor& images) {
            auto [g, p] = method.encode_frozen(images);
            return trainer::EncodedBatch{g, p};
          },
          o.cache_threads);
      cache = trainer::FeatureCache::open_or_build(key, samples, enc, o.cache, &comm);
      const auto& st = cache->stats();
      std::ostringstream msg;
      msg << "eval " << spec.name << ": frozen features from the feature cache " << cache->path() << " ("
          << (st.hit ? "hit" : "miss, built") << "; this rank encoded " << st.encoded_images << " images in "
          << st.encoder_calls << " encoder calls; " << (st.hit ? "opened" : "built") << " in " << st.build_seconds
          << " s; encoding saved " << st.saved_seconds << " s)";
      log.line(msg.str());
      std::shared_ptr<trainer::FeatureCache> c = cache;
      method.set_feature_source([c](const models::MethodBatch& mb) {
        trainer::EncodedBatch e = c->get(mb.indices);
        return std::make_pair(e.global, e.patch);
      });
    } else if (rank == 0) {
      log.line("eval " + spec.name + ": no feature cache (" +
               (o.use_cache ? "method '" + method.name() + "' runs its own encoder" : std::string("cache.enabled is false")) +
               ")");
    }
    // The source serves this dataset's indices only: removed when the dataset is done (or throws).
    struct SourceGuard {
      models::Method& m;
      bool on;
      ~SourceGuard() {
        if (on) m.set_feature_source(nullptr);
      }
    } source_guard{method, static_cast<bool>(cache)};
    const int64_t forwards_before = method.encoder_forwards();

    // Panels: the first panels_per_class images of each class (global choice, written by the owner of the image).
    std::set<int64_t> panel_set;
    for (size_t c = 0; c < split.classes.size(); ++c) {
      for (int64_t k = 0; k < std::min(o.panels_per_class, class_size[c]); ++k) panel_set.insert(class_start[c] + k);
    }

    const bool pixel = caps.pixel_metrics;
    std::vector<results::ClassAccumulator> accs(split.classes.size());
    std::vector<int64_t> rank_class_count(split.classes.size(), 0);
    for (int64_t g : shard) rank_class_count[static_cast<size_t>(items[static_cast<size_t>(g)].cls)]++;
    for (size_t c = 0; c < accs.size(); ++c) {
      accs[c].reserve(rank_class_count[c], pixel ? rank_class_count[c] * E * E : 0);
    }
    std::unique_ptr<results::ScoresWriter> part;
    const fs::path scores_dir = fs::path(o.run_dir) / "scores";
    const std::string part_path = (scores_dir / (safe_name(spec.name) + ".rank" + std::to_string(rank) + ".part.h5")).string();
    std::vector<int64_t> part_written(split.classes.size(), 0);
    bool has_maps = pixel;
    if (o.write_scores) {
      fs::create_directories(scores_dir);
      part = std::make_unique<results::ScoresWriter>(part_path, o.scores_fp16);
    }

    std::vector<double> local_scores(static_cast<size_t>(N), 0.0), local_count(static_cast<size_t>(N), 0.0);
    std::ofstream shard_file((ds_dir / ("shard_rank" + std::to_string(rank) + ".tsv")).string());
    shard_file << "index\tclass\tlabel\tscore\tpath\n";

    data::LoaderOptions lo;
    lo.image_size = static_cast<int>(S_in);
    lo.batch_size = static_cast<int>(o.batch_size);
    lo.threads = std::max(1, o.loader_threads);
    lo.shuffle = false;
    lo.load_masks = pixel && E == S_in;
    // With cached features no image is decoded: batches carry indices, labels and (when the loader
    // would have read them) masks at the input size, exactly as data::BatchLoader makes them.
    std::unique_ptr<data::BatchLoader> loader;
    size_t cached_pos = 0;
    if (!cache) {
      loader = std::make_unique<data::BatchLoader>(samples, spec.root, lo);
      loader->set_indices(shard);
      loader->start_epoch(0);
    }
    auto next_batch = [&](data::Batch& out) -> bool {
      if (loader) return loader->next(out);
      if (cached_pos >= shard.size()) return false;
      const size_t n = std::min(shard.size() - cached_pos, static_cast<size_t>(o.batch_size));
      out = data::Batch();
      out.size = static_cast<int>(n);
      out.image_size = static_cast<int>(S_in);
      if (lo.load_masks) out.masks.assign(n * static_cast<size_t>(S_in * S_in), 0);
      for (size_t i = 0; i < n; ++i) {
        const int64_t g = shard[cached_pos + i];
        const data::Sample& smp = samples[static_cast<size_t>(g)];
        out.indices.push_back(g);
        out.labels.push_back(smp.anomaly);
        out.class_names.push_back(smp.cls_name);
        out.specie_names.push_back(smp.specie_name);
        out.paths.push_back(smp.img_path);
        out.has_mask.push_back(smp.mask_path.empty() ? 0 : 1);
        if (lo.load_masks && !smp.mask_path.empty())
          data::preprocess_mask(data::read_mask(data::resolve_path(spec.root, smp.mask_path)), static_cast<int>(S_in),
                                out.masks.data() + i * static_cast<size_t>(S_in * S_in));
      }
      cached_pos += n;
      return true;
    };
    data::Batch b;
    int64_t done = 0;
    auto last_print = Clock::now();
    const auto start = Clock::now();
    bool declared = false;
    std::vector<uint8_t> mask_buf(static_cast<size_t>(E * E));
    while (next_batch(b)) {
      const int64_t B = b.size;
      models::MethodBatch mb;
      // A cached batch carries its size in a [B,0] placeholder (the method reads no pixels).
      mb.images = cache ? at::empty({B, 0}, at::kFloat) : to_tensor(b.images, {B, 3, S_in, S_in});
      // No labels: a method never sees the test set's ground truth.
      mb.class_names = b.class_names;
      mb.indices = b.indices;
      mb.seed = o.seed;
      models::MethodOutput out = method.infer(mb);
      at::Tensor scores = out.image_scores.to(at::kFloat).contiguous().cpu();
      if (scores.numel() != B) throw Error("method '" + method.name() + "' returned " + std::to_string(scores.numel()) + " image scores for a batch of " + std::to_string(B));
      at::Tensor maps;
      if (pixel) {
        if (!out.anomaly_maps.defined()) throw Error("method '" + method.name() + "' returned no anomaly maps, but dataset " + spec.name + " has pixel metrics");
        maps = models::postprocess_maps(out.anomaly_maps.to(at::kFloat).cpu(), pp).contiguous();
      }
      if (part && !declared) {
        for (size_t c = 0; c < split.classes.size(); ++c) {
          if (rank_class_count[c] > 0) part->begin_class(split.classes[c], rank_class_count[c], has_maps ? E : 0, has_maps ? E : 0);
        }
        declared = true;
      }
      const float* sp = scores.data_ptr<float>();
      for (int64_t i = 0; i < B; ++i) {
        const int64_t g = b.indices[static_cast<size_t>(i)];
        const Item& it = items[static_cast<size_t>(g)];
        const data::Sample& smp = samples[static_cast<size_t>(g)];
        const auto label = static_cast<uint8_t>(b.labels[static_cast<size_t>(i)]);
        const float score = sp[i];
        if (!std::isfinite(score)) throw Error("method '" + method.name() + "': non-finite image score for " + smp.img_path);
        const float* map = nullptr;
        const uint8_t* mask = nullptr;
        if (pixel) {
          map = maps.data_ptr<float>() + i * E * E;
          if (lo.load_masks) {
            mask = b.masks.data() + static_cast<size_t>(i * E * E);
          } else {
            std::fill(mask_buf.begin(), mask_buf.end(), 0);
            if (!smp.mask_path.empty() && smp.anomaly) {
              data::Image m = data::read_mask(data::resolve_path(spec.root, smp.mask_path));
              data::preprocess_mask(m, static_cast<int>(E), mask_buf.data());
            }
            mask = mask_buf.data();
          }
          accs[static_cast<size_t>(it.cls)].add_image(score, label, map, mask, E, E);
        } else {
          accs[static_cast<size_t>(it.cls)].add_image(score, label);
        }
        if (part) part->write_image(split.classes[static_cast<size_t>(it.cls)], part_written[static_cast<size_t>(it.cls)]++, score, label, map, mask);
        local_scores[static_cast<size_t>(g)] = static_cast<double>(score);
        local_count[static_cast<size_t>(g)] += 1.0;
        char sbuf[32];
        std::snprintf(sbuf, sizeof sbuf, "%.9g", static_cast<double>(score));
        shard_file << g << "\t" << smp.cls_name << "\t" << int(label) << "\t" << sbuf << "\t" << smp.img_path << "\n";
        if (panel_set.count(g) && pixel) {
          data::Image rgb = data::read_image(data::resolve_path(spec.root, smp.img_path));
          data::Image small = data::resize_pil(rgb, static_cast<int>(E), static_cast<int>(E), data::ResampleFilter::kBicubic);
          const fs::path pdir = fs::path(o.run_dir) / "panels" / safe_name(spec.name) / safe_name(smp.cls_name);
          fs::create_directories(pdir);
          const std::string stem = fs::path(smp.img_path).stem().string();
          data::write_png((pdir / (std::to_string(g) + "_" + safe_name(smp.specie_name) + "_" + safe_name(stem) + ".png")).string(),
                          make_panel(small, mask, map, static_cast<int>(E)));
        }
      }
      done += B;
      const auto now = Clock::now();
      if (rank == 0 && (std::chrono::duration<double>(now - last_print).count() >= o.progress_every_s ||
                        done == static_cast<int64_t>(shard.size()))) {
        const double el = std::chrono::duration<double>(now - start).count();
        const double rate = el > 0 ? done / el : 0;
        const double eta = rate > 0 ? (static_cast<double>(shard.size()) - done) / rate : 0;
        char line[256];
        std::snprintf(line, sizeof line, "eval %s: %lld/%lld images on rank 0 (%lld in all), %.1f img/s per rank, ~%.1f img/s total, ETA %s",
                      spec.name.c_str(), (long long)done, (long long)shard.size(), (long long)N, rate, rate * world,
                      fmt_eta(eta).c_str());
        std::cerr << line << std::endl;
        last_print = now;
      }
    }
    shard_file.close();
    if (part) {
      if (!declared) {
        for (size_t c = 0; c < split.classes.size(); ++c) {
          if (rank_class_count[c] > 0) part->begin_class(split.classes[c], rank_class_count[c], has_maps ? E : 0, has_maps ? E : 0);
        }
      }
      part->close();
      part.reset();
    }
    const double infer_s = std::chrono::duration<double>(Clock::now() - start).count();
    const int64_t scoring_forwards = method.encoder_forwards() - forwards_before;
    {
      std::ostringstream msg;
      msg << "eval " << spec.name << ": rank " << rank << " scored " << done << " images in " << infer_s << " s";
      if (cache) msg << " (cached features, " << scoring_forwards << " encoder forwards)";
      log.line(msg.str());
      std::cout << msg.str() << std::endl;
    }

    // Coverage check and the per-image score listing (every image exactly once).
    at::Tensor sc = at::from_blob(local_scores.data(), {N}, at::kDouble).clone();
    at::Tensor cnt = at::from_blob(local_count.data(), {N}, at::kDouble).clone();
    comm.allreduce(sc);
    comm.allreduce(cnt);
    {
      const double* cp = cnt.data_ptr<double>();
      for (int64_t i = 0; i < N; ++i) {
        if (cp[i] != 1.0) {
          throw Error("eval " + spec.name + ": image " + std::to_string(i) + " (" + samples[static_cast<size_t>(i)].img_path +
                      ") was scored " + std::to_string(static_cast<int64_t>(cp[i])) + " times across ranks (expected once)");
        }
      }
    }
    if (rank == 0) {
      std::ostringstream csv;
      csv << "index,class,label,score,path\n";
      const double* s = sc.data_ptr<double>();
      for (int64_t i = 0; i < N; ++i) {
        char sbuf[32];
        std::snprintf(sbuf, sizeof sbuf, "%.9g", s[i]);
        csv << i << "," << samples[static_cast<size_t>(i)].cls_name << "," << samples[static_cast<size_t>(i)].anomaly << "," << sbuf
            << "," << samples[static_cast<size_t>(i)].img_path << "\n";
      }
      write_text_atomic((ds_dir / "image_scores.csv").string(), csv.str());
    }

    // Accumulators: each class goes to its owner rank (class index mod world) through files in the run dir.
    const size_t C = split.classes.size();
    const fs::path xdir = ds_dir / ".exchange";
    if (world > 1) {
      fs::create_directories(xdir);
      for (size_t c = 0; c < C; ++c) {
        if (static_cast<int>(c % world) == rank) continue;
        write_text_atomic((xdir / ("c" + std::to_string(c) + ".r" + std::to_string(rank) + ".acc")).string(), accs[c].serialize());
        accs[c] = results::ClassAccumulator();
      }
      comm.barrier();
    }
    results::MetricOptions mo;
    mo.fpr_limit = spec.fpr_limit;
    mo.pro_mode = results::parse_pro_mode(spec.pro_mode);
    mo.threads = std::max(1, o.metric_threads);
    constexpr int64_t K = static_cast<int64_t>(results::kMetricKeys.size());
    at::Tensor vals = at::zeros({static_cast<int64_t>(C), K}, at::kDouble);
    at::Tensor defined = at::zeros({static_cast<int64_t>(C), K}, at::kDouble);
    std::vector<std::string> warnings;
    for (size_t c = 0; c < C; ++c) {
      if (static_cast<int>(c % world) != rank) continue;
      results::ClassAccumulator acc = std::move(accs[c]);
      for (int r = 0; r < world; ++r) {
        if (r == rank) continue;
        const std::string p = (xdir / ("c" + std::to_string(c) + ".r" + std::to_string(r) + ".acc")).string();
        acc.merge(results::ClassAccumulator::deserialize(read_text(p), p));
        fs::remove(p);
      }
      if (acc.images() != class_size[c]) {
        throw Error("eval " + spec.name + ": class '" + split.classes[c] + "' merged " + std::to_string(acc.images()) +
                    " images, expected " + std::to_string(class_size[c]));
      }
      results::ClassMetrics cm = acc.compute(mo);
      for (const auto& w : cm.warnings) warnings.push_back(split.classes[c] + ": " + w);
      for (int64_t k = 0; k < K; ++k) {
        if (cm.metrics.at(static_cast<size_t>(k))) {
          vals[static_cast<int64_t>(c)][k] = *cm.metrics.at(static_cast<size_t>(k));
          defined[static_cast<int64_t>(c)][k] = 1.0;
        }
      }
    }
    for (const auto& w : warnings) log.line("warning: " + w);
    comm.allreduce(vals);
    comm.allreduce(defined);
    accs.clear();

    // Merged scores file (rank 0 reads every rank's part, one class at a time).
    if (o.write_scores) {
      comm.barrier();
      if (rank == 0) {
        const std::string final_path = (scores_dir / (safe_name(spec.name) + ".h5")).string();
        results::ScoresWriter w(final_path, o.scores_fp16);
        for (size_t c = 0; c < C; ++c) w.begin_class(split.classes[c], class_size[c], has_maps ? E : 0, has_maps ? E : 0);
        for (int r = 0; r < world; ++r) {
          const std::string pp_path = (scores_dir / (safe_name(spec.name) + ".rank" + std::to_string(r) + ".part.h5")).string();
          results::ScoresReader rd(pp_path);
          const auto rshard = shard_indices(N, r, world, o.shard);
          for (size_t c = 0; c < C; ++c) {
            std::vector<int64_t> pos;
            for (int64_t g : rshard) {
              if (items[static_cast<size_t>(g)].cls == static_cast<int>(c)) pos.push_back(items[static_cast<size_t>(g)].pos);
            }
            if (pos.empty()) continue;
            results::ClassScores cs = rd.read(split.classes[c]);
            for (size_t k = 0; k < pos.size(); ++k) {
              w.write_image(split.classes[c], pos[k], cs.image_scores[k], cs.labels[k],
                            has_maps ? cs.anomaly_maps.data() + k * E * E : nullptr,
                            has_maps ? cs.masks.data() + k * E * E : nullptr);
            }
          }
        }
        w.close();
        for (int r = 0; r < world; ++r) {
          fs::remove(scores_dir / (safe_name(spec.name) + ".rank" + std::to_string(r) + ".part.h5"));
        }
      }
    }

    DatasetReport rep;
    rep.name = spec.name;
    rep.images = N;
    rep.rank_images = done;
    rep.encoder_forwards = scoring_forwards;
    if (cache) {
      rep.cache_state = cache->stats().hit ? "hit" : "built";
      rep.cache_path = cache->path();
      rep.cache_saved_s = cache->stats().saved_seconds;
    }
    if (rank == 0) {
      results::DatasetMetrics dm;
      const double* vp = vals.data_ptr<double>();
      const double* dp = defined.data_ptr<double>();
      for (size_t c = 0; c < C; ++c) {
        results::MetricValues mv;
        for (int64_t k = 0; k < K; ++k) {
          const std::string key = results::kMetricKeys[static_cast<size_t>(k)];
          const bool wanted = spec.metrics.empty() || std::find(spec.metrics.begin(), spec.metrics.end(), key) != spec.metrics.end();
          if (wanted && dp[c * K + k] > 0) mv.at(static_cast<size_t>(k)) = vp[c * K + k];
        }
        dm.classes[split.classes[c]] = mv;
      }
      dm.mean = results::class_mean(dm.classes);
      rep.metrics = dm;
      rep.seconds = std::chrono::duration<double>(Clock::now() - t0).count();

      results::RunResult rr;
      // Tables show the method's display name ("WinCLIP-style (no windows)", "CoPS w/o ESTS");
      // the registry name (method.name) is kept in tags.method.
      rr.method = method.display_name();
      rr.variant = results::make_variant(variant_overrides(o.overrides));
      rr.train_dataset = o.train_dataset;
      rr.test_dataset = spec.name;
      rr.seed = static_cast<int64_t>(o.seed);
      rr.protocol.eval_size = E;
      rr.protocol.upsampling = models::upsample_name(pp.upsample);
      rr.protocol.smoothing_sigma = spec.smoothing_sigma;
      rr.protocol.fpr_limit = spec.fpr_limit;
      rr.protocol.pro_mode = mo.pro_mode;
      rr.digests.config = o.config_digest.empty() ? std::string(64, '0') : o.config_digest;
      rr.digests.weights = weights_digest;
      rr.digests.dataset = dataset_digest;
      rr.overrides = o.overrides;
      rr.git_revision = git;
      rr.metrics = dm;
      rr.timings = o.extra_timings;
      rr.timings["eval_s"] = rep.seconds;
      rr.timings["inference_s_rank0"] = infer_s;
      rr.timings["images"] = N;
      rr.timings["images_per_s"] = rep.seconds > 0 ? N / rep.seconds : 0.0;
      if (cache) {
        rr.timings["feature_cache_hit"] = cache->stats().hit ? 1 : 0;
        rr.timings["feature_cache_s"] = cache->stats().build_seconds;
        rr.timings["feature_cache_saved_s"] = cache->stats().saved_seconds;
      }
      rr.hardware = hardware_info(world, o.threads_per_rank);
      rr.tags = o.tags;
      rr.tags["method"] = o.method_name.empty() ? method.name() : o.method_name;
      fs::create_directories(fs::path(o.run_dir) / "results");
      rep.results_path = (fs::path(o.run_dir) / "results" / (safe_name(spec.name) + ".json")).string();
      results::write_run_result(rep.results_path, rr);
      std::ostringstream msg;
      msg << "eval " << spec.name << ": " << N << " images in " << rep.seconds << " s";
      for (size_t k = 0; k < results::kMetricKeys.size(); ++k) {
        if (dm.mean.at(k)) {
          char buf[64];
          std::snprintf(buf, sizeof buf, " %s %.1f", results::kMetricKeys[k], 100.0 * *dm.mean.at(k));
          msg << buf;
        }
      }
      msg << " -> " << rep.results_path;
      std::cerr << msg.str() << std::endl;
      log.line(msg.str());
    }
    if (world > 1) {
      comm.barrier();
      if (rank == 0) fs::remove_all(xdir);
    }
    reports.push_back(std::move(rep));
  }
  // Run summary of the feature cache (rank 0): hits, misses, encoding time saved.
  int64_t hits = 0, built = 0;
  double saved = 0;
  for (const auto& r : reports) {
    hits += r.cache_state == "hit";
    built += r.cache_state == "built";
    saved += r.cache_saved_s;
  }
  if (rank == 0 && hits + built > 0) {
    std::ostringstream msg;
    msg << "eval: feature cache: " << hits << " hit(s), " << built << " miss(es) built; encoding saved " << saved << " s";
    std::cerr << msg.str() << std::endl;
    log.line(msg.str());
  }
  return reports;
}

// ---------------------------------------------------------------------------------------------
// predict

void predict(models::Method& method, const PredictOptions& o) {
  if (o.images.empty()) throw Error("predict: no images");
  if (o.eval_size < 0 || o.eval_size > kMaxMapSize)
    throw Error("predict: --eval-size expected 0 (the method's input size) .. " + std::to_string(kMaxMapSize) + ", got " +
                std::to_string(o.eval_size));
  if (!(o.smoothing_sigma >= 0 && o.smoothing_sigma <= kMaxSmoothingSigma))
    throw Error("predict: --sigma expected 0 (none) .. " + fmt_num(kMaxSmoothingSigma) + ", got " + fmt_num(o.smoothing_sigma));
  if (o.batch_size < 1) throw Error("predict: --batch-size expected >= 1, got " + std::to_string(o.batch_size));
  const int64_t S_in = method.input_size();
  const int64_t E = o.eval_size > 0 ? o.eval_size : S_in;
  models::PostprocessOptions pp;
  pp.eval_size = E;
  pp.upsample = models::parse_upsample(o.upsampling.empty() ? method.default_upsampling() : o.upsampling);
  pp.sigma = o.smoothing_sigma;
  if (fs::exists(o.out_dir) && !fs::is_directory(o.out_dir))
    throw Error("predict: --out '" + o.out_dir + "' exists and is not a directory");
  models::DatasetContext ctx;
  ctx.name = "predict";
  ctx.classes = {o.class_name};
  ctx.run_dir = o.out_dir;
  method.begin_dataset(ctx);
  models::SupportSet sup;
  sup.class_name = o.class_name;
  if (!o.support.empty()) {
    const auto K = static_cast<int64_t>(o.support.size());
    std::vector<float> buf(static_cast<size_t>(K * 3 * S_in * S_in));
    for (int64_t i = 0; i < K; ++i) {
      const std::string& path = o.support[static_cast<size_t>(i)];
      data::preprocess_image(data::read_image(path), static_cast<int>(S_in), buf.data() + i * 3 * S_in * S_in);
      sup.indices.push_back(i);
      sup.names.push_back(path);
    }
    sup.images = to_tensor(buf, {K, 3, S_in, S_in});
  }
  method.prepare_class(sup);
  // Only now: a method that cannot score (e.g. few-shot without --support) leaves no scores or
  // overlay folder (its own state folder, e.g. OUT/apt, may exist).
  fs::create_directories(o.out_dir);
  // A rerun into the same OUT replaces the earlier overlays too, so they always match scores.csv.
  for (const auto& e : fs::directory_iterator(o.out_dir))
    if (e.path().filename() == "overlays" && e.is_directory())
      for (const auto& f : fs::directory_iterator(e.path()))
        if (f.path().extension() == ".png") fs::remove(f.path());
  if (o.overlays) fs::create_directories(fs::path(o.out_dir) / "overlays");
  const auto N = static_cast<int64_t>(o.images.size());
  std::vector<float> all_maps, sc;
  bool have_maps = true;
  std::ostringstream csv;
  csv << "path,score\n";
  for (int64_t b0 = 0; b0 < N; b0 += o.batch_size) {
    const int64_t B = std::min(o.batch_size, N - b0);
    std::vector<float> buf(static_cast<size_t>(B * 3 * S_in * S_in));
    std::vector<data::Image> originals;
    for (int64_t i = 0; i < B; ++i) {
      data::Image img = data::read_image(o.images[static_cast<size_t>(b0 + i)]);
      data::preprocess_image(img, static_cast<int>(S_in), buf.data() + i * 3 * S_in * S_in);
      if (o.overlays) originals.push_back(data::resize_pil(img, static_cast<int>(E), static_cast<int>(E), data::ResampleFilter::kBicubic));
    }
    models::MethodBatch mb;
    mb.images = to_tensor(buf, {B, 3, S_in, S_in});
    mb.class_names.assign(static_cast<size_t>(B), o.class_name);
    for (int64_t i = 0; i < B; ++i) mb.indices.push_back(b0 + i);
    models::MethodOutput out = method.infer(mb);
    at::Tensor scores = out.image_scores.to(at::kFloat).contiguous().cpu();
    at::Tensor maps;
    if (out.anomaly_maps.defined()) maps = models::postprocess_maps(out.anomaly_maps.to(at::kFloat).cpu(), pp).contiguous();
    else have_maps = false;
    for (int64_t i = 0; i < B; ++i) {
      char sbuf[32];
      std::snprintf(sbuf, sizeof sbuf, "%.9g", static_cast<double>(scores.data_ptr<float>()[i]));
      sc.push_back(scores.data_ptr<float>()[i]);
      csv << o.images[static_cast<size_t>(b0 + i)] << "," << sbuf << "\n";
      std::cout << o.images[static_cast<size_t>(b0 + i)] << "\t" << sbuf << "\n";
      if (maps.defined()) {
        const float* m = maps.data_ptr<float>() + i * E * E;
        all_maps.insert(all_maps.end(), m, m + E * E);
        if (o.overlays) {
          const std::string stem = fs::path(o.images[static_cast<size_t>(b0 + i)]).stem().string();
          data::write_png((fs::path(o.out_dir) / "overlays" / (std::to_string(b0 + i) + "_" + safe_name(stem) + ".png")).string(),
                          make_panel(originals[static_cast<size_t>(i)], nullptr, m, static_cast<int>(E)));
        }
      }
    }
  }
  write_text_atomic((fs::path(o.out_dir) / "scores.csv").string(), csv.str());
  h5::File f((fs::path(o.out_dir) / "maps.h5").string(), h5::File::Mode::kTruncate);
  f.set_attr("/", "schema", std::string("zsad.predict/1"));
  f.set_attr("/", "method", method.name());
  f.write_strings("paths", o.images);
  f.write("image_scores", sc.data(), {N});
  if (have_maps && !all_maps.empty()) {
    h5::WriteOptions wo;
    wo.chunk_leading = true;
    f.write("anomaly_maps", all_maps.data(), {N, E, E}, wo);
  }
  f.flush();
}

data::Meta load_dataset_meta(const DatasetSpec& s, comm::Communicator& comm, const std::string& who) {
  const fs::path root(s.root);
  const std::string default_meta = (root / "meta.json").string();
  if (!s.synth_preset.empty() && s.meta.empty()) {
    // Rank 0 decides and generates; the others wait (the decision is never taken per rank, so all
    // ranks issue the same collectives). A lock file serialises concurrent jobs of a sweep.
    comm.barrier();
    if (comm.rank() == 0) {
      fs::create_directories(root.parent_path().empty() ? fs::path(".") : root.parent_path());
      const std::string lock_path = s.root + ".lock";
      const int fd = ::open(lock_path.c_str(), O_CREAT | O_RDWR, 0644);
      if (fd < 0) throw Error(lock_path + ": cannot create the generation lock");
      ::flock(fd, LOCK_EX);
      try {
        data::SynthOptions so;
        so.preset = s.synth_preset;
        so.seed = s.synth_seed;
        so.size = s.synth_size;
        so.test_per_class = s.synth_images_per_class;
        so.train_per_class = s.synth_train_per_class;
        so.anomaly_fraction = s.synth_anomaly_fraction;
        so.defect_scale = s.synth_defect_scale;
        so.threads = 2;
        if (!fs::exists(default_meta)) {
          std::cerr << who << " " << s.name << ": generating synthetic dataset (preset " << s.synth_preset << ") in "
                    << s.root << "\n";
          data::synthesize_dataset(so, s.root);
        } else {
          // Never reuse (or overwrite) a dataset generated with other options: say so instead.
          const fs::path sig_path = root / data::kSynthSignatureFile;
          std::string found;
          if (std::ifstream in(sig_path); in) std::getline(in, found);
          const std::string wanted = data::synth_signature(so);
          if (found != wanted)
            throw Error(who + " dataset " + s.name + ": '" + s.root + "' holds a synthetic dataset generated with " +
                        (found.empty() ? std::string("unrecorded options (no ") + data::kSynthSignatureFile + ")"
                                       : "'" + found + "'") +
                        ", but the config asks for '" + wanted +
                        "'; delete that directory or set the dataset's root elsewhere");
        }
      } catch (...) {
        ::flock(fd, LOCK_UN);
        ::close(fd);
        throw;
      }
      ::flock(fd, LOCK_UN);
      ::close(fd);
    }
    comm.barrier();
  }
  if (!s.meta.empty()) return data::read_meta(data::resolve_path(s.root, s.meta));
  if (fs::exists(default_meta)) return data::read_meta(default_meta);
  if (!s.layout.empty()) return data::index_dataset(s.layout, s.root);
  throw Error(who + " dataset " + s.name + ": no meta.json under '" + s.root + "' and no 'layout' to index it with");
}


}  // namespace zsad::eval
