#pragma once
// Frozen-encoder feature cache — owned by engineer "cache". docs/feature_cache.md.
//
// One HDF5 file (data/feature_store.h format, schema zsad.features/1) per FeatureCacheKey under a
// cache directory: <dir>/<dataset>-<split>-<digest16>.h5. The key covers everything that changes
// the encoder outputs (dataset index digest incl. root and image stamps, split, weights digest, image size, resize kernel,
// positional-embedding interpolation, GELU variant, layers, attention variant + V-V depth,
// global-output variant, dtype) and is stored in the file's attributes. Built once — every rank
// encodes a contiguous slice into a shard file, rank 0 merges + validates (sha256 of every
// dataset) after a barrier and renames into place — then reused by every epoch and every sweep
// job sharing the key. A stale (key mismatch) or corrupt (digest mismatch, truncated,
// incomplete) file is detected, logged and rebuilt; it is never silently used.
//
// Typical use (CoPS training / evaluation engine):
//   auto key = clip_cache_key(cfg, clip, "visa", "test", samples, root, "raw_cls", {});
//   auto enc = make_clip_encoder(clip, samples, root, key);
//   auto cache = FeatureCache::open_or_build(key, samples, enc, cache_options_from(cfg), &comm);
//   EncodedBatch f = cache->get(batch.indices);   // global [B,D], patch [B,P,Dp], float32
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/index.h"
#include "models/clip/clip_model.h"

namespace zsad::comm { class Communicator; }
namespace zsad::models { class OptionMap; }

namespace zsad::trainer {

struct FeatureCacheKey {
  std::string dataset;           // dataset name (file name only; identity is dataset_digest)
  std::string dataset_digest;    // dataset_index_digest(samples); with the files' stamps once opened
  std::string root;              // where the images are read; non-empty = stamps still to add (with_dataset_files)
  std::string split;             // "train" / "test"
  std::string weights_digest;    // sha256 of the weights file, or "random:<arch>:seed=<n>"
  int64_t image_size = 0;
  std::string resize_kernel = "pil_bicubic";
  std::string pos_interp;        // bilinear | bicubic
  std::string gelu;              // quick_gelu | gelu
  std::vector<int64_t> layers;   // 1-based blocks whose patch tokens are cached (P = sum over layers)
  std::string attention = "vv";  // vv (dual path) | plain
  int64_t vv_depth = 0;          // number of final blocks with the V-V path
  std::string global_output;     // raw_cls (CoPS: CLS of the original path @ proj, no ln_post) | ln_post_cls
  bool fp16 = true;              // storage dtype
  std::map<std::string, std::string> extra;  // anything else that changes features

  // Canonical "name=value" lines (the digest input; also stored as file attributes).
  std::map<std::string, std::string> attributes() const;
  std::string digest() const;     // hex sha256 of attributes() (without `dataset`)
  std::string file_name() const;  // <dataset>-<split>-<digest[:16]>.h5
};

// sha256 over (img_path, mask_path, cls_name, specie_name, anomaly) of every sample, in order.
std::string dataset_index_digest(const std::vector<data::Sample>& samples);
// The dataset root (absolute, canonical) and each image's size and modification time: the same
// file names under another root (a dataset regenerated with another seed), or an image replaced in
// place, give another digest.
std::string dataset_files_digest(const std::vector<data::Sample>& samples, const std::string& root);
// `key` with its dataset_digest extended by dataset_files_digest(samples, key.root), computed on
// rank 0 only (one metadata pass, not one per rank) and broadcast, so every rank names the same
// file. open_or_build applies it; a key with an empty root is returned as is.
FeatureCacheKey with_dataset_files(const FeatureCacheKey& key, const std::vector<data::Sample>& samples,
                                   comm::Communicator* comm);

// One encoder call: `indices` are global sample indices (ascending, a contiguous run); returns
// global [B,D] and patch [B,P,Dp] (float32 or float16, any device).
struct EncodedBatch {
  at::Tensor global, patch;
};
using EncoderFn = std::function<EncodedBatch(const std::vector<int64_t>& indices)>;

struct FeatureCacheOptions {
  bool enabled = true;           // cache.enabled
  std::string dir;               // cache.dir (resolved; see default_cache_dir)
  int64_t batch_size = 8;        // cache.batch_size: images per encoder call while building
  int64_t preload_mb = 1024;     // cache.preload_mb: hold the whole file in RAM when it is at most this big
  bool verify = true;            // cache.verify: recompute the sha256 of every dataset on open
  bool log = true;               // hit/miss/time lines on stderr (rank 0)
};

// cache.dir when set; else $ZSAD_CACHE_DIR; else <output_root>/cache (output.root of the run,
// shared by every sweep job and usually on the cluster's shared scratch file system).
std::string default_cache_dir(const std::string& output_root);
// cache.* keys of the flattened run config (cache.fp16 is part of the key: see clip_cache_key).
FeatureCacheOptions cache_options_from(const models::OptionMap& cfg);

// What one open_or_build did (also printed as the log line).
struct FeatureCacheStats {
  bool hit = false;
  std::string path;
  std::string rebuild_reason;    // why an existing file was not used ("" = none existed / hit)
  int64_t encoder_calls = 0;     // by this rank during this open_or_build
  int64_t encoded_images = 0;    // by this rank
  double build_seconds = 0;      // wall time of the build (miss) or open + verify (hit)
  double encode_seconds_recorded = 0;  // encoder time the file's build took (all ranks' wall time)
  double saved_seconds = 0;      // hit: recorded encode time minus this open's time
};

class FeatureCache {
 public:
  // Opens the file for `key` when it is present, complete, carries the same key and passes
  // verification; otherwise (re)builds it. Every rank calls this (comm may be null = one process):
  // the global batch grid (batches of opts.batch_size) is split into W contiguous runs of whole
  // batches, rank r encodes run r with `encoder` (so every image sees the same batch at any world
  // size and the file is bit-identical to a 1-rank build), rank 0 merges + validates, all ranks
  // then read the merged file. Throws zsad::Error naming the file on failure.
  static std::shared_ptr<FeatureCache> open_or_build(const FeatureCacheKey& key,
                                                    const std::vector<data::Sample>& samples,
                                                    const EncoderFn& encoder, const FeatureCacheOptions& opts,
                                                    comm::Communicator* comm = nullptr);
  // Opens an existing, valid file (no build). Throws naming the file and what is wrong. `expect`
  // must be stamped (with_dataset_files), as open_or_build's keys are.
  static std::shared_ptr<FeatureCache> open(const std::string& path, const FeatureCacheKey* expect = nullptr,
                                            bool verify = true, int64_t preload_mb = 1024);

  int64_t size() const { return n_; }
  int64_t global_dim() const { return d_; }
  int64_t num_patches() const { return p_; }
  int64_t patch_dim() const { return dp_; }
  // Features of one global sample index: global [D], patch [P,Dp] (float32, CPU).
  at::Tensor global(int64_t index) const;
  at::Tensor patch(int64_t index) const;
  // Batched, any order: global [B,D], patch [B,P,Dp].
  EncodedBatch get(const std::vector<int64_t>& indices) const;
  const std::string& path() const { return path_; }
  const FeatureCacheStats& stats() const { return stats_; }
  std::map<std::string, std::string> attributes() const;

  FeatureCache(const FeatureCache&) = delete;
  FeatureCache& operator=(const FeatureCache&) = delete;
  ~FeatureCache();

 private:
  FeatureCache() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
  int64_t n_ = 0, d_ = 0, p_ = 0, dp_ = 0;
  FeatureCacheStats stats_;
};

// Every EncoderFn invocation made by FeatureCache (process-wide; tests assert zero on a warm cache).
int64_t encoder_calls();
void reset_encoder_calls();

// ---- CLIP glue ----------------------------------------------------------------------------------

// The key of `clip`'s features for these samples, from model.* of the flattened config
// (model.weights / arch / init_seed / image_size / activation / pos_interp / vv_depth) and
// cache.fp16. layers empty = the last block. global_output: raw_cls | ln_post_cls.
FeatureCacheKey clip_cache_key(const models::OptionMap& cfg, const models::ClipModel& clip,
                               const std::string& dataset, const std::string& split,
                               const std::vector<data::Sample>& samples, const std::string& root,
                               const std::string& global_output, const std::vector<int64_t>& layers);

// sha256 of a weights file; memoised per (path, size, mtime) in the process.
std::string weights_file_digest(const std::string& path);

// An EncoderFn that loads + transforms the images of `samples` (resolved against root, at
// image_size, `threads` decoding threads) and hands them to `encode` (under NoGradGuard): one image
// [1,3,S,S] per call when per_image (so an image's features never depend on its batch neighbours),
// else the whole batch [B,3,S,S]. The evaluation engine fills its caches with
// Method::encode_frozen through this.
EncoderFn make_image_encoder(const std::vector<data::Sample>& samples, const std::string& root, int64_t image_size,
                             std::function<EncodedBatch(const at::Tensor& images)> encode, int threads = 1,
                             bool per_image = true);

// Loads + transforms the images of `samples` (resolved against root, at key.image_size,
// `threads` decoding threads) and runs clip's vision tower as the key describes, one image per
// forward (make_image_encoder), i.e. exactly what Method::encode_frozen of CoPS (raw_cls) and
// WinCLIP (ln_post_cls) computes: `zsad cache` and the evaluation engine write the same bits.
EncoderFn make_clip_encoder(models::ClipModel clip, const std::vector<data::Sample>& samples, const std::string& root,
                            const FeatureCacheKey& key, int threads = 1);

}  // namespace zsad::trainer
