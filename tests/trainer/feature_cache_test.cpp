// Feature cache (trainer/feature_cache.h): build once, reuse with zero encoder forwards, key
// invalidation, truncated / corrupt files rebuilt, 2-rank sharded build == 1-rank build.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <filesystem>
#include <chrono>
#include <cmath>
#include <fstream>
#include <set>

#include "common/error.h"
#include "common/h5.h"
#include "data/feature_store.h"
#include "data/synth.h"
#include "models/methods/method.h"
#include "rank_threads.h"
#include "tiny_clip_fixture.h"
#include "trainer/feature_cache.h"

namespace fs = std::filesystem;
using zsad::trainer::EncodedBatch;
using zsad::trainer::FeatureCache;
using zsad::trainer::FeatureCacheKey;
using zsad::trainer::FeatureCacheOptions;

namespace {

// A small synthetic dataset shared by the tests of this binary (generated once).
struct Dataset {
  std::string root;
  std::vector<zsad::data::Sample> samples;
};
const Dataset& dataset() {
  static Dataset d = [] {
    Dataset out;
    out.root = zsad::testing::fresh_temp_dir("fc_data");
    zsad::data::Meta m = zsad::testing::synthesize_small_objects(out.root, 3);
    out.samples = m.test.flat();
    return out;
  }();
  return d;
}

zsad::models::OptionMap tiny_options(int64_t image_size = 64, int64_t init_seed = 0, int64_t vv_depth = -1,
                                     const std::string& dtype = "float32") {
  zsad::models::OptionMap o;
  zsad::testing::set_tiny_clip_options(o, image_size, init_seed, vv_depth);
  o.set("cache.dtype", dtype);
  return o;
}

struct ClipSetup {
  zsad::models::ClipModel clip{nullptr};
  FeatureCacheKey key;
  zsad::trainer::EncoderFn encoder;
};
ClipSetup clip_setup(const zsad::models::OptionMap& o) {
  ClipSetup s;
  s.clip = zsad::models::build_clip_model(o);
  s.key = zsad::trainer::clip_cache_key(o, s.clip, "synth", "test", dataset().samples, dataset().root, "raw_cls", {});
  s.encoder = zsad::trainer::make_clip_encoder(s.clip, dataset().samples, dataset().root, s.key);
  return s;
}

FeatureCacheOptions options(const std::string& dir) {
  FeatureCacheOptions o;
  o.dir = dir;
  o.batch_size = 3;
  o.log = false;
  return o;
}

// A fake encoder: row i is a function of i only (so any sharding must give the same file).
EncodedBatch fake_encode(const std::vector<int64_t>& idx) {
  const int64_t b = static_cast<int64_t>(idx.size());
  at::Tensor ix = at::tensor(idx, at::kDouble).view({b, 1});
  EncodedBatch e;
  e.global = at::sin(ix * 0.37 + at::arange(6, at::kDouble).view({1, 6})).to(at::kFloat);
  e.patch = at::cos(ix.view({b, 1, 1}) * 1.3 + at::arange(20, at::kDouble).view({1, 4, 5}) * 0.11).to(at::kFloat);
  return e;
}

FeatureCacheKey fake_key(int64_t n) {
  FeatureCacheKey k;
  k.dataset = "fake";
  k.dataset_digest = "n=" + std::to_string(n);
  k.split = "test";
  k.weights_digest = "fake";
  k.fp16 = false;
  return k;
}

std::vector<zsad::data::Sample> fake_samples(int64_t n) {
  std::vector<zsad::data::Sample> s(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    s[i].img_path = "img" + std::to_string(i) + ".png";
    s[i].cls_name = i % 2 ? "a" : "b";
    s[i].anomaly = static_cast<int>(i % 3 == 0);
  }
  return s;
}

std::vector<int64_t> all_indices(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

// Runs the encoder directly in the cache's batches of 3 (BLAS results depend on the batch shape).
EncodedBatch encode_in_threes(const zsad::trainer::EncoderFn& enc, int64_t n) {
  std::vector<at::Tensor> g, p;
  for (int64_t lo = 0; lo < n; lo += 3) {
    std::vector<int64_t> idx;
    for (int64_t i = lo; i < std::min(n, lo + 3); ++i) idx.push_back(i);
    EncodedBatch e = enc(idx);
    g.push_back(e.global);
    p.push_back(e.patch);
  }
  return {at::cat(g), at::cat(p)};
}

}  // namespace

TEST(FeatureCache, FirstRunBuildsSecondRunReusesWithZeroEncoderForwards) {
  const std::string dir = zsad::testing::fresh_temp_dir("fc_warm");
  ClipSetup s = clip_setup(tiny_options());
  const int64_t n = static_cast<int64_t>(dataset().samples.size());
  ASSERT_GE(n, 10);

  zsad::trainer::reset_encoder_calls();
  auto cold = FeatureCache::open_or_build(s.key, dataset().samples, s.encoder, options(dir));
  EXPECT_FALSE(cold->stats().hit);
  EXPECT_EQ(zsad::trainer::encoder_calls(), (n + 2) / 3);  // batches of 3
  EXPECT_TRUE(fs::exists(cold->path()));
  EncodedBatch a = cold->get(all_indices(n));

  // The cached features are exactly what the CLIP vision tower gives for the same images (fp32 store).
  EncodedBatch direct = encode_in_threes(s.encoder, n);
  EXPECT_TRUE(at::equal(a.global, direct.global));
  EXPECT_TRUE(at::equal(a.patch, direct.patch));
  EXPECT_EQ(a.patch.size(1), 64);  // 8x8 patch grid at 64 px
  // The global output is CoPS' raw CLS (no ln_post): it differs from OpenAI's image features.
  zsad::models::VisionRequest req;
  req.vv_depth = 2;
  at::Tensor img = at::zeros({1, 3, 64, 64});
  auto v = s.clip->encode_vision(img, req);
  EXPECT_FALSE(at::allclose(v.global_features, v.image_features));

  zsad::trainer::reset_encoder_calls();
  auto warm = FeatureCache::open_or_build(s.key, dataset().samples, s.encoder, options(dir));
  EXPECT_TRUE(warm->stats().hit);
  EXPECT_EQ(zsad::trainer::encoder_calls(), 0);
  EXPECT_EQ(warm->path(), cold->path());
  EncodedBatch b = warm->get(all_indices(n));
  EXPECT_TRUE(at::equal(a.global, b.global));
  EXPECT_TRUE(at::equal(a.patch, b.patch));
  // Per-index access and arbitrary order.
  EXPECT_TRUE(at::equal(warm->global(5), a.global[5]));
  EXPECT_TRUE(at::equal(warm->patch(7), a.patch[7]));
  EncodedBatch sh = warm->get({9, 2, 4});
  EXPECT_TRUE(at::equal(sh.patch[0], a.patch[9]));
  EXPECT_TRUE(at::equal(sh.global[1], a.global[2]));

  // The on-disk reader path (no preload) reads the same rows.
  const FeatureCacheKey stamped = zsad::trainer::with_dataset_files(s.key, dataset().samples, nullptr);
  auto disk = FeatureCache::open(cold->path(), &stamped, true, /*preload_mb=*/0);
  EncodedBatch c = disk->get({9, 2, 3, 4});
  EXPECT_TRUE(at::equal(c.patch[0], a.patch[9]));
  EXPECT_TRUE(at::equal(c.patch[2], a.patch[3]));
  EXPECT_TRUE(at::equal(c.global[3], a.global[4]));
  fs::remove_all(dir);
}

TEST(FeatureCache, Float16StoreHoldsTheRoundedFeatures) {
  const std::string dir = zsad::testing::fresh_temp_dir("fc_fp16");
  ClipSetup s = clip_setup(tiny_options(64, 0, -1, "float16"));
  EXPECT_TRUE(s.key.fp16);
  const int64_t n = static_cast<int64_t>(dataset().samples.size());
  auto c = FeatureCache::open_or_build(s.key, dataset().samples, s.encoder, options(dir));
  EncodedBatch direct = encode_in_threes(s.encoder, n);
  EncodedBatch got = c->get(all_indices(n));
  EXPECT_TRUE(at::equal(got.global, direct.global.to(at::kHalf).to(at::kFloat)));
  // Exactly the fp16 rounding (to nearest even) of the encoder's output.
  EXPECT_TRUE(at::equal(got.patch, direct.patch.to(at::kHalf).to(at::kFloat)));
  EXPECT_FALSE(at::equal(got.patch, direct.patch));  // really stored as fp16
  zsad::h5::File f(c->path(), zsad::h5::File::Mode::kRead);
  EXPECT_EQ(f.stored_type("patch"), zsad::h5::DType::kFloat16);
  fs::remove_all(dir);
}

TEST(FeatureCache, ImageSizeWeightsAndAttentionDepthInvalidate) {
  const std::string dir = zsad::testing::fresh_temp_dir("fc_keys");
  ClipSetup base = clip_setup(tiny_options());
  auto c0 = FeatureCache::open_or_build(base.key, dataset().samples, base.encoder, options(dir));
  EncodedBatch f0 = c0->get({0, 1});

  struct Variant {
    const char* what;
    zsad::models::OptionMap o;
  };
  std::vector<Variant> variants = {{"image size", tiny_options(72)},
                                   {"weights", tiny_options(64, 1)},
                                   {"attention depth", tiny_options(64, 0, 1)}};
  std::set<std::string> paths{c0->path()};
  for (auto& v : variants) {
    ClipSetup s = clip_setup(v.o);
    EXPECT_NE(s.key.digest(), base.key.digest()) << v.what;
    zsad::trainer::reset_encoder_calls();
    auto c = FeatureCache::open_or_build(s.key, dataset().samples, s.encoder, options(dir));
    EXPECT_FALSE(c->stats().hit) << v.what;
    EXPECT_GT(zsad::trainer::encoder_calls(), 0) << v.what;
    paths.insert(c->path());
    EncodedBatch f = c->get({0, 1});
    // The features really changed (so reusing the old file would have been wrong).
    if (f.patch.sizes() == f0.patch.sizes()) EXPECT_FALSE(at::allclose(f.patch, f0.patch)) << v.what;
  }
  EXPECT_EQ(paths.size(), 4u);
  // The original key still hits.
  zsad::trainer::reset_encoder_calls();
  EXPECT_TRUE(FeatureCache::open_or_build(base.key, dataset().samples, base.encoder, options(dir))->stats().hit);
  EXPECT_EQ(zsad::trainer::encoder_calls(), 0);
  // Other key fields change the digest too.
  FeatureCacheKey k = base.key;
  k.global_output = "ln_post_cls";
  EXPECT_NE(k.digest(), base.key.digest());
  k = base.key;
  k.split = "train";
  EXPECT_NE(k.digest(), base.key.digest());
  k = base.key;
  k.layers = {1};
  EXPECT_NE(k.digest(), base.key.digest());
  k = base.key;
  k.fp16 = !k.fp16;
  EXPECT_NE(k.digest(), base.key.digest());
  auto samples = dataset().samples;
  samples[3].anomaly ^= 1;
  EXPECT_NE(zsad::trainer::dataset_index_digest(samples), base.key.dataset_digest);
  fs::remove_all(dir);
}

// The same file names under another root, or one image replaced in place (new size or time), give
// another cache file: the cache must not serve features of other pixels (it did: the key held only
// the index, so a regenerated dataset with another seed hit the old file). The stamps are rank 0's:
// a rank that reaches the data through another path (a symlink; a per-node copy) names the same file.
TEST(FeatureCache, FileStampsFromRankZeroNameTheCacheFile) {
  const std::string dir = zsad::testing::fresh_temp_dir("fc_files");
  const auto& samples = dataset().samples;
  const fs::path copy = fs::path(dir) / "copy";
  fs::copy(dataset().root, copy, fs::copy_options::recursive);
  using zsad::trainer::dataset_files_digest;
  const std::string base = dataset_files_digest(samples, dataset().root);
  EXPECT_EQ(dataset_files_digest(samples, dataset().root), base);  // deterministic
  const std::string copied = dataset_files_digest(samples, copy.string());
  EXPECT_NE(copied, base);
  // Same file, same size, only its modification time moves.
  const fs::path img = copy / samples[2].img_path;
  fs::last_write_time(img, fs::last_write_time(img) + std::chrono::seconds(5));
  const std::string touched = dataset_files_digest(samples, copy.string());
  EXPECT_NE(touched, copied);
  // Another size at the same time.
  const auto when = fs::last_write_time(img);
  { std::ofstream(img, std::ios::app) << "x"; }
  fs::last_write_time(img, when);
  EXPECT_NE(dataset_files_digest(samples, copy.string()), touched);

  // The key as clip_cache_key makes it carries the root; opening stamps it.
  FeatureCacheKey key = clip_setup(tiny_options()).key;
  EXPECT_EQ(key.root, dataset().root);
  const FeatureCacheKey stamped = zsad::trainer::with_dataset_files(key, samples, nullptr);
  EXPECT_NE(stamped.file_name(), key.file_name());
  FeatureCacheKey elsewhere = key;
  elsewhere.root = copy.string();
  EXPECT_NE(zsad::trainer::with_dataset_files(elsewhere, samples, nullptr).file_name(), stamped.file_name());
  // Two ranks, rank 1 reaching the data through a symlink: both take rank 0's stamps.
  const fs::path link = fs::path(dir) / "link";
  fs::create_directory_symlink(copy, link);
  std::vector<std::string> names(2);
  zsad::testing::run_ranks(2, [&](zsad::testing::RankContext& ctx) {
    FeatureCacheKey k = key;
    k.root = ctx.rank == 0 ? dataset().root : link.string();
    names[ctx.rank] = zsad::trainer::with_dataset_files(k, samples, &ctx.comm).file_name();
  });
  EXPECT_EQ(names[0], stamped.file_name());
  EXPECT_EQ(names[1], names[0]);
  fs::remove_all(dir);
}

TEST(FeatureCache, TruncatedFileIsDetectedAndRebuilt) {
  const std::string dir = zsad::testing::fresh_temp_dir("fc_trunc");
  const int64_t n = 23;
  auto samples = fake_samples(n);
  const FeatureCacheKey key = fake_key(n);
  auto c0 = FeatureCache::open_or_build(key, samples, fake_encode, options(dir));
  EncodedBatch ref = c0->get(all_indices(n));
  const std::string path = c0->path();
  c0.reset();
  const auto size = fs::file_size(path);
  fs::resize_file(path, size / 2);
  EXPECT_THROW(FeatureCache::open(path, &key), std::exception);

  zsad::trainer::reset_encoder_calls();
  auto c1 = FeatureCache::open_or_build(key, samples, fake_encode, options(dir));
  EXPECT_FALSE(c1->stats().hit);
  EXPECT_FALSE(c1->stats().rebuild_reason.empty());
  EXPECT_GT(zsad::trainer::encoder_calls(), 0);
  EncodedBatch got = c1->get(all_indices(n));
  EXPECT_TRUE(at::equal(got.global, ref.global));
  EXPECT_TRUE(at::equal(got.patch, ref.patch));
  EXPECT_EQ(fs::file_size(path), size);
  fs::remove_all(dir);
}

TEST(FeatureCache, ModifiedDataAndStaleKeyAreRebuilt) {
  const std::string dir = zsad::testing::fresh_temp_dir("fc_corrupt");
  const int64_t n = 11;
  auto samples = fake_samples(n);
  const FeatureCacheKey key = fake_key(n);
  auto c0 = FeatureCache::open_or_build(key, samples, fake_encode, options(dir));
  const std::string path = c0->path();
  EncodedBatch ref = c0->get(all_indices(n));
  c0.reset();
  {  // overwrite one patch row in place (a valid HDF5 file whose data no longer matches its digest)
    zsad::h5::File f(path, zsad::h5::File::Mode::kReadWrite);
    std::vector<float> row(20, 0.5f);
    f.write_slab("patch", 4, 1, row.data());
  }
  zsad::trainer::reset_encoder_calls();
  auto c1 = FeatureCache::open_or_build(key, samples, fake_encode, options(dir));
  EXPECT_FALSE(c1->stats().hit);
  EXPECT_NE(c1->stats().rebuild_reason.find("sha256"), std::string::npos) << c1->stats().rebuild_reason;
  EXPECT_TRUE(at::equal(c1->get(all_indices(n)).patch, ref.patch));
  c1.reset();

  // A file under this key's name that was built for another key is stale: rebuilt, not used.
  FeatureCacheKey other = key;
  other.weights_digest = "other";
  const std::string dir2 = zsad::testing::fresh_temp_dir("fc_stale");
  auto wrong = [](const std::vector<int64_t>& idx) {
    EncodedBatch e = fake_encode(idx);
    e.global = e.global + 1;
    return e;
  };
  auto c2 = FeatureCache::open_or_build(other, samples, wrong, options(dir2));
  fs::copy_file(c2->path(), path, fs::copy_options::overwrite_existing);
  auto c3 = FeatureCache::open_or_build(key, samples, fake_encode, options(dir));
  EXPECT_FALSE(c3->stats().hit);
  EXPECT_NE(c3->stats().rebuild_reason.find("weights_digest"), std::string::npos) << c3->stats().rebuild_reason;
  EXPECT_TRUE(at::equal(c3->get(all_indices(n)).global, ref.global));
  fs::remove_all(dir);
  fs::remove_all(dir2);
}

TEST(FeatureCache, TwoRankShardedBuildEqualsOneRankBuild) {
  const int64_t n = 13;  // uneven split: rows [0,6) and [6,13)
  auto samples = fake_samples(n);
  const FeatureCacheKey key = fake_key(n);
  const std::string dir1 = zsad::testing::fresh_temp_dir("fc_w1");
  const std::string dir2 = zsad::testing::fresh_temp_dir("fc_w2");
  auto one = FeatureCache::open_or_build(key, samples, fake_encode, options(dir1));

  std::vector<std::vector<int64_t>> seen(2);
  std::vector<std::string> paths(2);
  std::vector<EncodedBatch> got(2);
  zsad::testing::run_ranks(2, [&](zsad::testing::RankContext& ctx) {
    auto enc = [&, r = ctx.rank](const std::vector<int64_t>& idx) {
      seen[r].insert(seen[r].end(), idx.begin(), idx.end());
      return fake_encode(idx);
    };
    auto c = FeatureCache::open_or_build(key, samples, enc, options(dir2), &ctx.comm);
    paths[ctx.rank] = c->path();
    got[ctx.rank] = c->get(all_indices(n));
    // Second open on both ranks: a hit, no encoder call.
    auto again = FeatureCache::open_or_build(key, samples, enc, options(dir2), &ctx.comm);
    EXPECT_TRUE(again->stats().hit);
  });
  EXPECT_EQ(seen[0], std::vector<int64_t>({0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(seen[1], std::vector<int64_t>({6, 7, 8, 9, 10, 11, 12}));
  EXPECT_EQ(paths[0], paths[1]);
  EXPECT_EQ(fs::path(paths[0]).filename(), fs::path(one->path()).filename());
  // No shard or temporary files are left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir2))
    if (e.path().extension() == ".h5") ++files;
  EXPECT_EQ(files, 1);

  EncodedBatch ref = one->get(all_indices(n));
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(at::equal(got[r].global, ref.global));
    EXPECT_TRUE(at::equal(got[r].patch, ref.patch));
  }
  // Same datasets, index and recorded digests as the single-rank file.
  zsad::h5::File a(one->path(), zsad::h5::File::Mode::kRead), b(paths[0], zsad::h5::File::Mode::kRead);
  for (const char* attr : {"global_sha256", "patch_sha256", "index_sha256", "key_digest"}) {
    const std::string k = std::string(attr) == "key_digest" ? "attr.key_digest" : attr;
    EXPECT_EQ(a.attr_string("/", k), b.attr_string("/", k)) << attr;
  }
  EXPECT_EQ(a.read_strings("index/paths"), b.read_strings("index/paths"));
  EXPECT_EQ(a.read_int64("index/labels"), b.read_int64("index/labels"));
  EXPECT_EQ(a.read_float("patch"), b.read_float("patch"));
  EXPECT_EQ(b.attr_int("/", "build_world_size"), 2);
  fs::remove_all(dir1);
  fs::remove_all(dir2);
}

TEST(FeatureCache, EncoderFailureOnOneRankFailsEveryRankAndLeavesNoFile) {
  const int64_t n = 10;
  auto samples = fake_samples(n);
  const FeatureCacheKey key = fake_key(n);
  const std::string dir = zsad::testing::fresh_temp_dir("fc_fail");
  std::vector<std::string> errors(2);
  zsad::testing::run_ranks(2, [&](zsad::testing::RankContext& ctx) {
    auto enc = [r = ctx.rank](const std::vector<int64_t>& idx) {
      if (r == 1) throw zsad::Error("image 7 is unreadable");
      return fake_encode(idx);
    };
    try {
      FeatureCache::open_or_build(key, samples, enc, options(dir), &ctx.comm);
    } catch (const std::exception& e) {
      errors[ctx.rank] = e.what();
    }
  });
  EXPECT_NE(errors[0].find("another rank"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("image 7 is unreadable"), std::string::npos) << errors[1];
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().extension(), ".lock") << e.path();  // no shard, no file
  fs::remove_all(dir);
}
