#pragma once
// Frozen-encoder feature cache — owned by engineer "cache" (stub interface; implementation follows).
//
// One HDF5 file (data/feature_store.h format) per FeatureCacheKey under a cache directory.
// The key covers everything that changes the encoder outputs (dataset index digest, split,
// weights digest, image size, resize kernel, positional-embedding interpolation, GELU variant,
// layers, attention variant + V-V depth, global-output variant, dtype). Built once (sharded
// across ranks, rank 0 merges + validates), then reused by every epoch / sweep job sharing the
// key. Stale or corrupt files are detected, logged and rebuilt — never silently used.
#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace zsad::comm { class Communicator; }
namespace zsad::data { class FeatureStoreReader; struct Sample; }

namespace zsad::trainer {

struct FeatureCacheKey {
  std::string dataset_digest;    // digest of the dataset index (paths, labels, classes, order)
  std::string split;             // "train" / "test"
  std::string weights_digest;    // sha256 of the weights file, or of seed+config for random models
  int64_t image_size = 0;
  std::string resize_kernel;     // e.g. "bicubic"
  std::string pos_interp;        // positional-embedding interpolation
  std::string gelu;              // "quick" / "erf"
  std::vector<int> layers;       // patch-token layers (1-based)
  std::string attention;         // e.g. "vv"
  int vv_depth = 0;              // number of blocks with the V-V path
  std::string global_output;     // "raw_cls" (CoPS) or "ln_post_cls"
  bool fp16 = true;
  std::map<std::string, std::string> extra;  // anything else that changes features
  std::string digest() const;    // hex sha256 over every field (file name stem)
};

// One encoder call: `indices` are global sample indices (ascending, contiguous slice of this
// rank); returns global [B, D] and patch [B, P, Dp] (P = tokens of all cached layers).
struct EncodedBatch { at::Tensor global, patch; };
using EncoderFn = std::function<EncodedBatch(const std::vector<int64_t>& indices)>;

struct FeatureCacheOptions {
  std::string dir;               // cache directory (config key cache.dir)
  int64_t batch_size = 8;        // encoder batch while building
  bool enabled = true;
};

class FeatureCache {
 public:
  // Opens the file for `key` if present and valid; otherwise (re)builds it: every rank encodes a
  // contiguous slice of [0, num_samples), rank 0 merges and validates after a barrier.
  // `comm` may be null (single process).
  static std::shared_ptr<FeatureCache> open_or_build(const FeatureCacheKey& key, int64_t num_samples,
                                                    const EncoderFn& encoder, const FeatureCacheOptions& opts,
                                                    comm::Communicator* comm = nullptr);
  int64_t size() const;
  // Features of one global sample index: global [D], patch [P, Dp] (float32).
  at::Tensor global(int64_t index) const;
  at::Tensor patch(int64_t index) const;
  // Batched: global [B, D], patch [B, P, Dp].
  EncodedBatch get(const std::vector<int64_t>& indices) const;
  const std::string& path() const;
  bool was_hit() const;
};

// Counts every EncoderFn invocation made by the cache (tests assert zero on a warm cache).
int64_t encoder_calls();
void reset_encoder_calls();

}  // namespace zsad::trainer
