#include "trainer/feature_cache.h"

#include <ATen/ATen.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "common/h5.h"
#include "common/sha256.h"
#include "data/feature_store.h"
#include "data/loader.h"
#include "models/methods/method.h"
#include "trainer/comm/communicator.h"

namespace zsad::trainer {

namespace fs = std::filesystem;

namespace {

std::atomic<int64_t> g_encoder_calls{0};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string join_ints(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

std::string fmt_s(double s) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(s < 10 ? 2 : 1) << s << " s";
  return o.str();
}

// flock()-based lock on <path>.lock: serialises concurrent jobs building the same key; released
// by the kernel when the process dies, so a crashed builder never leaves a stale lock.
class FileLock {
 public:
  explicit FileLock(const std::string& path) {
    fd_ = ::open(path.c_str(), O_CREAT | O_RDWR, 0644);
    if (fd_ < 0) return;  // read-only cache dir etc.: run unlocked (rename keeps files whole)
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      waited_ = true;
      ::flock(fd_, LOCK_EX);
    }
  }
  ~FileLock() {
    if (fd_ >= 0) {
      ::flock(fd_, LOCK_UN);
      ::close(fd_);
    }
  }
  bool waited() const { return waited_; }

 private:
  int fd_ = -1;
  bool waited_ = false;
};

// Returns "" when `attrs` (a file's) carry exactly the key `want`, else the first difference.
std::string key_difference(const std::map<std::string, std::string>& file_attrs, const FeatureCacheKey& want) {
  for (const auto& [k, v] : want.attributes()) {
    auto it = file_attrs.find("key." + k);
    if (it == file_attrs.end()) return "key field '" + k + "' missing in the file";
    if (it->second != v) return "key field '" + k + "' differs (file '" + it->second + "', now '" + v + "')";
  }
  auto it = file_attrs.find("key_digest");
  if (it == file_attrs.end() || it->second != want.digest()) return "key digest differs";
  return "";
}

void broadcast_ints(comm::Communicator* comm, std::vector<int64_t>& v) {
  if (!comm || comm->world_size() == 1) return;
  at::Tensor t = at::tensor(v, at::kLong);
  comm->broadcast(t, 0);
  for (size_t i = 0; i < v.size(); ++i) v[i] = t[static_cast<int64_t>(i)].item<int64_t>();
}

double allreduce_max(comm::Communicator* comm, double x) {
  if (!comm || comm->world_size() == 1) return x;
  at::Tensor t = at::tensor({x}, at::kDouble);
  comm->allreduce(t, comm::ReduceOp::kMax);
  return t.item<double>();
}

}  // namespace

int64_t encoder_calls() { return g_encoder_calls.load(); }
void reset_encoder_calls() { g_encoder_calls = 0; }

// ---- key ----------------------------------------------------------------------------------------

std::map<std::string, std::string> FeatureCacheKey::attributes() const {
  std::map<std::string, std::string> a;
  a["dataset_digest"] = dataset_digest;
  a["split"] = split;
  a["weights_digest"] = weights_digest;
  a["image_size"] = std::to_string(image_size);
  a["resize_kernel"] = resize_kernel;
  a["pos_interp"] = pos_interp;
  a["gelu"] = gelu;
  a["layers"] = join_ints(layers);
  a["attention"] = attention;
  a["vv_depth"] = std::to_string(vv_depth);
  a["global_output"] = global_output;
  a["dtype"] = fp16 ? "float16" : "float32";
  for (const auto& [k, v] : extra) a["extra." + k] = v;
  return a;
}

std::string FeatureCacheKey::digest() const {
  std::string text = "zsad.feature_cache_key/1\n";
  for (const auto& [k, v] : attributes()) text += k + "=" + v + "\n";
  return sha256_hex(text);
}

std::string FeatureCacheKey::file_name() const {
  std::string name = dataset.empty() ? "dataset" : dataset;
  for (char& c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) c = '_';
  return name + "-" + (split.empty() ? "split" : split) + "-" + digest().substr(0, 16) + ".h5";
}

std::string dataset_index_digest(const std::vector<data::Sample>& samples) {
  Sha256 h;
  const std::string n = std::to_string(samples.size());
  h.update(n);
  for (const auto& s : samples) {
    for (const std::string* f : {&s.img_path, &s.mask_path, &s.cls_name, &s.specie_name}) {
      h.update(*f);
      h.update("\0", 1);
    }
    const int64_t a = s.anomaly;
    h.update(&a, sizeof a);
  }
  return h.hex_digest();
}

std::string dataset_files_digest(const std::vector<data::Sample>& samples, const std::string& root) {
  Sha256 h;
  std::error_code ec;
  const fs::path abs_root = fs::weakly_canonical(fs::absolute(root.empty() ? "." : root), ec);
  h.update(abs_root.string());
  h.update("\0", 1);
  for (const auto& s : samples) {
    struct stat st {};
    const bool found = ::stat((abs_root / s.img_path).c_str(), &st) == 0;
    const int64_t stamp[3] = {found ? 1 : 0, found ? static_cast<int64_t>(st.st_size) : 0,
                              found ? static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec : 0};
    h.update(stamp, sizeof stamp);
  }
  return h.hex_digest();
}

FeatureCacheKey with_dataset_files(const FeatureCacheKey& key, const std::vector<data::Sample>& samples,
                                   comm::Communicator* comm) {
  if (key.root.empty()) return key;  // features of in-memory images: no files to stamp
  FeatureCacheKey out = key;
  const int rank = comm ? comm->rank() : 0;
  std::string digest;
  if (rank == 0) digest = sha256_hex(key.dataset_digest + ":" + dataset_files_digest(samples, key.root));
  // Rank 0's view decides: other nodes may see other mtimes (a per-node copy of the data) or
  // another canonical root (a symlink), and every rank must name the same cache file.
  std::vector<int64_t> chars(64, 0);
  if (rank == 0) std::copy(digest.begin(), digest.end(), chars.begin());
  broadcast_ints(comm, chars);
  digest.assign(chars.begin(), chars.end());
  out.dataset_digest = digest;
  out.root.clear();  // stamped
  return out;
}

// ---- options ------------------------------------------------------------------------------------

std::string default_cache_dir(const std::string& output_root) {
  if (const char* e = std::getenv("ZSAD_CACHE_DIR"); e && *e) return e;
  return (fs::path(output_root.empty() ? "." : output_root) / "cache").string();
}

FeatureCacheOptions cache_options_from(const models::OptionMap& cfg) {
  FeatureCacheOptions o;
  o.enabled = cfg.flag("cache.enabled", true);
  o.dir = cfg.str("cache.dir");
  if (o.dir.empty() || o.dir == "null") o.dir = default_cache_dir(cfg.str("output.root", "."));
  o.batch_size = cfg.integer("cache.batch_size", 8);
  if (o.batch_size <= 0) throw Error("cache.batch_size: expected a positive integer, got " + std::to_string(o.batch_size));
  o.preload_mb = cfg.integer("cache.preload_mb", 1024);
  o.verify = cfg.flag("cache.verify", true);
  return o;
}

// ---- reader -------------------------------------------------------------------------------------

struct FeatureCache::Impl {
  std::unique_ptr<data::FeatureStoreReader> reader;
  at::Tensor global, patch;  // preloaded (stored dtype), or undefined
  std::map<std::string, std::string> attrs;
};

FeatureCache::~FeatureCache() = default;

std::shared_ptr<FeatureCache> FeatureCache::open(const std::string& path, const FeatureCacheKey* expect, bool verify,
                                                 int64_t preload_mb) {
  if (!fs::exists(path)) throw Error(path + ": feature cache file does not exist");
  if (expect && !expect->root.empty())
    throw Error(path + ": FeatureCache::open needs a key stamped with with_dataset_files (root '" + expect->root + "')");
  if (verify) data::validate_feature_store(path);  // schema, completeness, shapes, every sha256
  auto reader = std::make_unique<data::FeatureStoreReader>(path);
  const auto& spec = reader->spec();
  if (reader->first_row() != 0 || reader->rows() != spec.num_images)
    throw Error(path + ": a shard, not a merged feature cache");
  if (expect) {
    const std::string diff = key_difference(spec.attributes, *expect);
    if (!diff.empty()) throw Error(path + ": stale feature cache: " + diff);
  }
  std::shared_ptr<FeatureCache> c(new FeatureCache());
  c->impl_ = std::make_unique<Impl>();
  c->path_ = path;
  c->n_ = spec.num_images;
  c->d_ = spec.global_dim;
  c->p_ = spec.num_patches;
  c->dp_ = spec.patch_dim;
  c->impl_->attrs = spec.attributes;
  const int64_t elem = spec.fp16 ? 2 : 4;
  const double mb = static_cast<double>(c->n_ * (c->d_ + c->p_ * c->dp_) * elem) / (1024.0 * 1024.0);
  if (mb <= static_cast<double>(preload_mb)) {
    const auto dt = spec.fp16 ? at::kHalf : at::kFloat;
    at::Tensor g = at::empty({c->n_, c->d_}, at::kFloat);
    if (c->n_ > 0) reader->read_global(0, c->n_, g.data_ptr<float>());
    c->impl_->global = g.to(dt);
    if (c->p_ > 0) {
      at::Tensor p = at::empty({c->n_, c->p_, c->dp_}, dt);
      const int64_t block = std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(c->p_ * c->dp_, 1));
      for (int64_t r = 0; r < c->n_; r += block) {
        const int64_t n = std::min(block, c->n_ - r);
        at::Tensor tmp = at::empty({n, c->p_, c->dp_}, at::kFloat);
        reader->read_patch(r, n, tmp.data_ptr<float>());
        p.narrow(0, r, n).copy_(tmp);
      }
      c->impl_->patch = p;
    }
  }
  c->impl_->reader = std::move(reader);
  return c;
}

std::map<std::string, std::string> FeatureCache::attributes() const { return impl_->attrs; }

at::Tensor FeatureCache::global(int64_t index) const { return get({index}).global[0]; }
at::Tensor FeatureCache::patch(int64_t index) const { return get({index}).patch[0]; }

EncodedBatch FeatureCache::get(const std::vector<int64_t>& indices) const {
  const int64_t b = static_cast<int64_t>(indices.size());
  for (int64_t i : indices)
    if (i < 0 || i >= n_)
      throw Error(path_ + ": sample index " + std::to_string(i) + " outside [0, " + std::to_string(n_) + ")");
  EncodedBatch out;
  if (impl_->global.defined()) {
    at::Tensor ix = at::tensor(indices, at::kLong);
    out.global = impl_->global.index_select(0, ix).to(at::kFloat);
    if (p_ > 0) out.patch = impl_->patch.index_select(0, ix).to(at::kFloat);
    return out;
  }
  out.global = at::empty({b, d_}, at::kFloat);
  if (p_ > 0) out.patch = at::empty({b, p_, dp_}, at::kFloat);
  // Runs of consecutive indices are read with one hyperslab each.
  for (int64_t i = 0; i < b;) {
    int64_t j = i + 1;
    while (j < b && indices[j] == indices[j - 1] + 1) ++j;
    impl_->reader->read_global(indices[i], j - i, out.global[i].data_ptr<float>());
    if (p_ > 0) impl_->reader->read_patch(indices[i], j - i, out.patch[i].data_ptr<float>());
    i = j;
  }
  return out;
}

// ---- build --------------------------------------------------------------------------------------

std::shared_ptr<FeatureCache> FeatureCache::open_or_build(const FeatureCacheKey& unstamped,
                                                         const std::vector<data::Sample>& samples,
                                                         const EncoderFn& encoder, const FeatureCacheOptions& opts,
                                                         comm::Communicator* comm) {
  const auto t0 = Clock::now();
  const FeatureCacheKey key = with_dataset_files(unstamped, samples, comm);
  const int rank = comm ? comm->rank() : 0;
  const int world = comm ? comm->world_size() : 1;
  const bool log = opts.log && rank == 0;
  if (opts.dir.empty()) throw Error("cache.dir: empty feature cache directory");
  const std::string path = (fs::path(opts.dir) / key.file_name()).string();
  const int64_t n = static_cast<int64_t>(samples.size());
  const int64_t calls_before = g_encoder_calls.load();

  // Rank 0 decides: hit (1) or build (0); [1] = a token naming this build's shard files.
  std::vector<int64_t> decision{0, 0};
  std::unique_ptr<FileLock> lock;
  std::string reason;
  std::shared_ptr<FeatureCache> hit;
  if (rank == 0) {
    std::error_code ec;
    fs::create_directories(opts.dir, ec);
    if (ec) throw Error(opts.dir + ": cannot create the feature cache directory (cache.dir): " + ec.message());
    lock = std::make_unique<FileLock>(path + ".lock");
    if (lock->waited() && log) std::cerr << "cache: waited for another job building " << path << "\n";
    if (fs::exists(path)) {
      try {
        hit = open(path, &key, opts.verify, opts.preload_mb);
        if (hit->size() != n)
          throw Error(path + ": holds " + std::to_string(hit->size()) + " images, the dataset has " + std::to_string(n));
        decision[0] = 1;
      } catch (const std::exception& e) {
        hit.reset();
        reason = e.what();
        if (log) std::cerr << "cache: rejecting " << path << ": " << reason << " -> rebuilding\n";
        fs::remove(path, ec);
      }
    }
    decision[1] = static_cast<int64_t>(::getpid()) * 1000 + (std::chrono::system_clock::now().time_since_epoch().count() % 1000);
  }
  broadcast_ints(comm, decision);

  if (decision[0] == 1) {
    std::shared_ptr<FeatureCache> c = rank == 0 ? hit : open(path, &key, false, opts.preload_mb);
    c->stats_.hit = true;
    c->stats_.path = path;
    c->stats_.build_seconds = seconds_since(t0);
    {
      h5::File f(path, h5::File::Mode::kRead);
      if (f.has_attr("/", "build_encode_seconds"))
        c->stats_.encode_seconds_recorded = std::stod(f.attr_string("/", "build_encode_seconds"));
    }
    c->stats_.saved_seconds = std::max(0.0, c->stats_.encode_seconds_recorded - c->stats_.build_seconds);
    if (log)
      std::cerr << "cache: hit " << path << " (" << n << " images; opened" << (opts.verify ? " + verified" : "") << " in "
                << fmt_s(c->stats_.build_seconds) << ", encoding took " << fmt_s(c->stats_.encode_seconds_recorded)
                << " -> saved " << fmt_s(c->stats_.saved_seconds) << ")\n";
    return c;
  }

  // ---- miss: every rank encodes its contiguous slice into a shard file ----
  if (log)
    std::cerr << "cache: miss " << path << " (" << (reason.empty() ? "no file" : "rebuild") << "): encoding " << n
              << " images on " << world << " rank(s)\n";
  const std::string token = std::to_string(decision[1]);
  auto shard_path = [&](int r) { return path + ".tmp-" + token + ".shard" + std::to_string(r); };
  // Shards are whole batches of the global batch grid [0,bs), [bs,2bs), ...: every image is encoded
  // in the same batch whatever the world size, so the file is bit-identical to a 1-rank build
  // (BLAS results of a row may depend on the other rows of its batch).
  const int64_t bs = opts.batch_size, nb = (n + bs - 1) / bs;
  const int64_t first = std::min(n, nb * rank / world * bs), last = std::min(n, nb * (rank + 1) / world * bs);
  std::string error;
  const auto te = Clock::now();
  int64_t encoded = 0;
  try {
    // Probe the feature shapes from the first batch of this rank (or of the dataset for an empty slice).
    data::FeatureStoreSpec spec;
    spec.num_images = n;
    spec.fp16 = key.fp16;
    spec.attributes["key_digest"] = key.digest();
    for (const auto& [k, v] : key.attributes()) spec.attributes["key." + k] = v;
    std::unique_ptr<data::FeatureShardWriter> writer;
    auto index_of = [&](int64_t lo, int64_t cnt) {
      data::FeatureIndex ix;
      for (int64_t i = lo; i < lo + cnt; ++i) {
        ix.paths.push_back(samples[i].img_path);
        ix.labels.push_back(samples[i].anomaly);
        ix.classes.push_back(samples[i].cls_name);
      }
      return ix;
    };
    auto shapes_from = [&](const EncodedBatch& e) {
      spec.global_dim = e.global.size(1);
      if (e.patch.defined()) {
        spec.num_patches = e.patch.size(1);
        spec.patch_dim = e.patch.size(2);
      }
    };
    if (n == 0) throw Error(path + ": cannot cache an empty dataset");
    for (int64_t lo = first; lo < last; lo += opts.batch_size) {
      const int64_t cnt = std::min(opts.batch_size, last - lo);
      std::vector<int64_t> idx(cnt);
      for (int64_t i = 0; i < cnt; ++i) idx[i] = lo + i;
      ++g_encoder_calls;
      EncodedBatch e = encoder(idx);
      if (!e.global.defined() || e.global.dim() != 2 || e.global.size(0) != cnt)
        throw Error(path + ": encoder returned global features of the wrong shape (expected [" + std::to_string(cnt) + ",D])");
      if (e.patch.defined() && (e.patch.dim() != 3 || e.patch.size(0) != cnt))
        throw Error(path + ": encoder returned patch features of the wrong shape (expected [" + std::to_string(cnt) + ",P,D])");
      if (!writer) {
        shapes_from(e);
        writer = std::make_unique<data::FeatureShardWriter>(shard_path(rank), spec, first, last - first);
      }
      at::Tensor g = e.global.detach().to(at::kCPU, at::kFloat).contiguous();
      at::Tensor p = e.patch.defined() ? e.patch.detach().to(at::kCPU, at::kFloat).contiguous() : at::Tensor();
      if (key.fp16) {
        // Round to fp16 here (to nearest even): HDF5 1.10's float -> custom-half conversion
        // mis-rounds values whose mantissa carries into the exponent (-0.249996 -> -0.125).
        // Exactly representable values convert exactly.
        g = g.to(at::kHalf).to(at::kFloat);
        if (p.defined()) p = p.to(at::kHalf).to(at::kFloat);
      }
      if (g.size(1) != spec.global_dim || (p.defined() && (p.size(1) != spec.num_patches || p.size(2) != spec.patch_dim)))
        throw Error(path + ": encoder output shape changed between batches");
      writer->write(lo, cnt, g.data_ptr<float>(), p.defined() ? p.data_ptr<float>() : nullptr, index_of(lo, cnt));
      encoded += cnt;
    }
    if (!writer) {
      // Empty slice (more ranks than images): learn the shapes from one sample, write an empty shard.
      ++g_encoder_calls;
      shapes_from(encoder({0}));
      writer = std::make_unique<data::FeatureShardWriter>(shard_path(rank), spec, first, 0);
    }
    writer->finish();
  } catch (const std::exception& e) {
    error = e.what();
  }
  const double encode_s = allreduce_max(comm, seconds_since(te));
  // Everyone learns whether any rank failed (so no rank waits forever for a merge).
  const double failed = allreduce_max(comm, error.empty() ? 0.0 : 1.0);
  if (failed > 0) {
    std::error_code ec;
    fs::remove(shard_path(rank), ec);
    throw Error(path + ": building the feature cache failed" + (error.empty() ? " on another rank" : ": " + error));
  }
  std::vector<int64_t> merged{0};
  if (rank == 0) {
    std::vector<std::string> shards;
    for (int r = 0; r < world; ++r) shards.push_back(shard_path(r));
    const std::string tmp = path + ".tmp-" + token;
    try {
      data::merge_feature_shards(shards, tmp);
      {
        h5::File f(tmp, h5::File::Mode::kReadWrite);
        std::ostringstream s;
        s << std::setprecision(17) << encode_s;
        f.set_attr("/", "build_encode_seconds", s.str());
        f.set_attr("/", "build_world_size", static_cast<int64_t>(world));
      }
      data::validate_feature_store(tmp);
      fs::rename(tmp, path);
      merged[0] = 1;
    } catch (const std::exception& e) {
      error = e.what();
      std::error_code ec;
      fs::remove(tmp, ec);
    }
    std::error_code ec;
    for (const auto& s : shards) fs::remove(s, ec);
  }
  broadcast_ints(comm, merged);
  if (merged[0] != 1) throw Error(path + ": merging the feature cache shards failed" + (error.empty() ? "" : ": " + error));
  lock.reset();
  std::shared_ptr<FeatureCache> c = open(path, &key, false, opts.preload_mb);
  c->stats_.hit = false;
  c->stats_.path = path;
  c->stats_.rebuild_reason = reason;
  c->stats_.encoder_calls = g_encoder_calls.load() - calls_before;
  c->stats_.encoded_images = encoded;
  c->stats_.build_seconds = seconds_since(t0);
  c->stats_.encode_seconds_recorded = encode_s;
  if (log)
    std::cerr << "cache: built " << path << " (" << n << " images, " << world << " rank(s), encoding "
              << fmt_s(encode_s) << ", total " << fmt_s(c->stats_.build_seconds) << ")\n";
  return c;
}

// ---- CLIP glue ----------------------------------------------------------------------------------

std::string weights_file_digest(const std::string& path) {
  static std::mutex mu;
  static std::map<std::string, std::string> memo;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw Error(path + ": cannot stat the weights file (model.weights)");
  const std::string id = path + "|" + std::to_string(st.st_size) + "|" + std::to_string(st.st_mtime);
  {
    std::lock_guard<std::mutex> l(mu);
    if (auto it = memo.find(id); it != memo.end()) return it->second;
  }
  const std::string d = sha256_file_hex(path);
  std::lock_guard<std::mutex> l(mu);
  memo[id] = d;
  return d;
}

FeatureCacheKey clip_cache_key(const models::OptionMap& cfg, const models::ClipModel& clip, const std::string& dataset,
                               const std::string& split, const std::vector<data::Sample>& samples,
                               const std::string& root, const std::string& global_output,
                               const std::vector<int64_t>& layers) {
  const models::ClipConfig& c = clip->cfg;
  FeatureCacheKey k;
  k.dataset = dataset;
  k.dataset_digest = dataset_index_digest(samples);
  k.root = root;
  k.split = split;
  const std::string w = cfg.str("model.weights");
  if (!w.empty() && w != "null") {
    k.weights_digest = weights_file_digest(w);
  } else {
    std::ostringstream s;
    s << "random:" << c.name << ":init_seed=" << cfg.integer("model.init_seed", 0) << ":vision=" << c.vision_width << "x"
      << c.vision_layers << "x" << c.vision_heads << "/p" << c.vision_patch << "/g" << c.vision_grid << ":embed=" << c.embed_dim
      << ":text=" << c.text_width << "x" << c.text_layers;
    k.weights_digest = "random-" + sha256_hex(s.str());
  }
  k.image_size = c.input_size();
  k.pos_interp = c.pos_interp == models::PosInterpolation::kBicubic ? "bicubic" : "bilinear";
  k.gelu = c.activation == models::ClipActivation::kGelu ? "gelu" : "quick_gelu";
  k.layers = layers.empty() ? std::vector<int64_t>{c.vision_layers} : layers;
  for (int64_t l : k.layers)
    if (l < 1 || l > c.vision_layers)
      throw Error("feature cache layers: block " + std::to_string(l) + " outside 1.." + std::to_string(c.vision_layers));
  const int64_t vv = cfg.integer("model.vv_depth", -1);
  k.vv_depth = vv < 0 ? c.vision_layers : std::min(vv, c.vision_layers);
  k.attention = k.vv_depth > 0 ? "vv" : "plain";
  if (global_output != "raw_cls" && global_output != "ln_post_cls")
    throw Error("feature cache global output: expected raw_cls or ln_post_cls, got '" + global_output + "'");
  k.global_output = global_output;
  const std::string dt = cfg.str("cache.dtype", "float16");
  if (dt != "float16" && dt != "float32") throw Error("cache.dtype: expected float16 or float32, got '" + dt + "'");
  k.fp16 = dt == "float16";
  return k;
}

EncoderFn make_image_encoder(const std::vector<data::Sample>& samples, const std::string& root, int64_t image_size,
                             std::function<EncodedBatch(const at::Tensor& images)> encode, int threads,
                             bool per_image) {
  const int64_t s = image_size;
  threads = std::max(1, threads);
  return [samples, root, s, encode = std::move(encode), threads, per_image](const std::vector<int64_t>& idx) {
    const int64_t b = static_cast<int64_t>(idx.size());
    at::Tensor images = at::empty({b, 3, s, s}, at::kFloat);
    float* base = images.data_ptr<float>();
    std::vector<std::string> errors(static_cast<size_t>(threads));
    auto work = [&](int t) {
      try {
        for (int64_t i = t; i < b; i += threads)
          data::load_sample(samples.at(static_cast<size_t>(idx[i])), root, static_cast<int>(s), false,
                            base + i * 3 * s * s, nullptr);
      } catch (const std::exception& e) {
        errors[t] = e.what();
      }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
    work(0);
    for (auto& th : pool) th.join();
    for (const auto& e : errors)
      if (!e.empty()) throw Error(e);
    at::NoGradGuard ng;
    if (!per_image || b == 1) return encode(images);
    // One forward per image: the stored features of an image do not depend on which images share
    // its batch (BLAS rounds differently for other shapes), so a float32 cache reproduces an
    // uncached batch-1 evaluation bit for bit, and files built by `zsad cache`, by training or by
    // the evaluation engine, on any number of ranks, hold the same bits.
    std::vector<at::Tensor> gs, ps;
    for (int64_t i = 0; i < b; ++i) {
      EncodedBatch e = encode(images.slice(0, i, i + 1));
      gs.push_back(e.global.to(at::kCPU));
      if (e.patch.defined()) ps.push_back(e.patch.to(at::kCPU));
    }
    EncodedBatch out;
    out.global = at::cat(gs, 0);
    if (!ps.empty()) out.patch = at::cat(ps, 0);
    return out;
  };
}

EncoderFn make_clip_encoder(models::ClipModel clip, const std::vector<data::Sample>& samples, const std::string& root,
                            const FeatureCacheKey& key, int threads) {
  const int64_t last = clip->cfg.vision_layers;
  models::VisionRequest req;
  req.vv_depth = key.attention == "vv" ? key.vv_depth : 0;
  const bool final_only = key.layers.size() == 1 && key.layers[0] == last;
  req.patch_tokens = final_only;
  if (!final_only) req.layers = key.layers;
  const bool raw_cls = key.global_output == "raw_cls";
  return make_image_encoder(
      samples, root, key.image_size,
      [clip, req, raw_cls, final_only](const at::Tensor& images) mutable {
        const auto dev = clip->visual->proj.device();
        models::VisionOutput v = clip->encode_vision(images.to(dev), req);
        EncodedBatch out;
        out.global = (raw_cls ? v.global_features : v.image_features).to(at::kCPU, at::kFloat);
        out.patch = final_only ? v.patch_tokens.to(at::kCPU, at::kFloat)
                               : at::cat(v.layer_patch_tokens, 1).to(at::kCPU, at::kFloat);
        return out;
      },
      threads);
}

}  // namespace zsad::trainer
