// Keys of the frozen-feature cache (trainer/feature_cache.h, docs/feature_cache.md). Owned by
// engineer "cache".
#include "launch/config/schema.h"

namespace zsad::config {

void register_cache_schema(Schema& s) {
  s.section("cache", "frozen-encoder feature cache (docs/feature_cache.md)");
  s.add("cache.enabled", Type::kBool, true,
        "use the feature cache when the encoder is frozen and there is no random augmentation");
  s.add("cache.dir", Type::kString, nullptr,
        "cache directory (null: $ZSAD_CACHE_DIR, else <output.root>/cache); put it on a file system every rank sees");
  s.add("cache.dtype", Type::kString, "float16", "storage dtype of cached features").choices({"float16", "float32"});
  s.add("cache.batch_size", Type::kInt, 8, "images per encoder forward while building").at_least(1);
  s.add("cache.loader_threads", Type::kInt, 1, "image decoding threads per rank while building").at_least(1);
  s.add("cache.preload_mb", Type::kInt, 1024, "hold a cache file in RAM when it is at most this many MiB (else read per batch)").at_least(0);
  s.add("cache.verify", Type::kBool, true, "recompute every dataset's sha256 when opening an existing file");
  s.add("cache.global_output", Type::kString, "auto",
        "global feature: raw_cls (CLS of the original path @ proj, CoPS), ln_post_cls (OpenAI), auto (by method)")
      .choices({"auto", "raw_cls", "ln_post_cls"});
  s.add("cache.layers", Type::kList, Node::list(), "1-based vision blocks whose patch tokens are cached (empty: the last)");
}

}  // namespace zsad::config
