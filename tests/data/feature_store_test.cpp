// Feature store: shards written by "ranks", merged, validated; corruption is detected; values
// round-trip (fp16 within half precision) and Python's h5py reads the layout.
#include <gtest/gtest.h>

#include <cmath>

#include "common/error.h"
#include "common/h5.h"
#include "data/feature_store.h"
#include "test_util.h"

namespace zsad::data {
namespace {

using testing::TempDir;

constexpr int64_t N = 7, D = 5, P = 4, Dp = 3;

float gval(int64_t r, int64_t j) { return 0.01f * static_cast<float>(r * 10 + j) - 0.2f; }
float pval(int64_t r, int64_t p, int64_t j) { return std::sin(0.1f * static_cast<float>(r * 100 + p * 10 + j)); }

void write_shard(const std::string& path, const FeatureStoreSpec& spec, int64_t first, int64_t rows) {
  FeatureShardWriter w(path, spec, first, rows);
  // Two writes per shard, the second first, to exercise out-of-order filling.
  const int64_t half = rows / 2;
  for (auto [a, n] : {std::pair<int64_t, int64_t>{first + half, rows - half}, {first, half}}) {
    if (n == 0) continue;
    std::vector<float> g, p;
    FeatureIndex ix;
    for (int64_t r = a; r < a + n; ++r) {
      for (int64_t j = 0; j < D; ++j) g.push_back(gval(r, j));
      for (int64_t q = 0; q < P; ++q)
        for (int64_t j = 0; j < Dp; ++j) p.push_back(pval(r, q, j));
      ix.paths.push_back("img/" + std::to_string(r) + ".png");
      ix.labels.push_back(r % 2);
      ix.classes.push_back(r < 4 ? "bottle" : "cable");
    }
    w.write(a, n, g.data(), p.data(), ix);
  }
  w.finish();
}

FeatureStoreSpec spec(bool fp16) {
  FeatureStoreSpec s;
  s.num_images = N;
  s.global_dim = D;
  s.num_patches = P;
  s.patch_dim = Dp;
  s.fp16 = fp16;
  s.attributes = {{"weights_sha256", "abc123"}, {"image_size", "518"}};
  return s;
}

TEST(FeatureStore, ShardsMergeValidateAndRoundTrip) {
  TempDir d("features");
  for (bool fp16 : {true, false}) {
    const std::string s0 = (d.path / "s0.h5").string(), s1 = (d.path / "s1.h5").string();
    const std::string out = (d.path / (fp16 ? "f16.h5" : "f32.h5")).string();
    write_shard(s1, spec(fp16), 4, 3);
    write_shard(s0, spec(fp16), 0, 4);
    EXPECT_THROW(validate_feature_store(s0), Error) << "a shard is not a complete store";
    merge_feature_shards({s1, s0}, out);
    EXPECT_NO_THROW(validate_feature_store(out));
    FeatureStoreReader r(out);
    EXPECT_EQ(r.spec().attributes.at("weights_sha256"), "abc123");
    EXPECT_EQ(r.index().paths[5], "img/5.png");
    EXPECT_EQ(r.index().labels[5], 1);
    EXPECT_EQ(r.index().classes[6], "cable");
    std::vector<float> g(N * D), p(N * P * Dp);
    r.read_global(0, N, g.data());
    r.read_patch(0, N, p.data());
    const float tol = fp16 ? 1e-3f : 0.0f;
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < D; ++j) EXPECT_NEAR(g[i * D + j], gval(i, j), tol);
    for (int64_t i = 0; i < N; ++i)
      for (int64_t q = 0; q < P; ++q)
        for (int64_t j = 0; j < Dp; ++j) EXPECT_NEAR(p[(i * P + q) * Dp + j], pval(i, q, j), tol);
    h5::File f(out, h5::File::Mode::kRead);
    EXPECT_EQ(f.stored_type("patch"), fp16 ? h5::DType::kFloat16 : h5::DType::kFloat32);
  }
}

TEST(FeatureStore, DetectsGapsUnwrittenRowsAndCorruption) {
  TempDir d("features_bad");
  const std::string s0 = (d.path / "s0.h5").string(), s2 = (d.path / "s2.h5").string();
  write_shard(s0, spec(true), 0, 3);
  write_shard(s2, spec(true), 4, 3);
  EXPECT_THROW(merge_feature_shards({s0, s2}, (d.path / "gap.h5").string()), Error);
  {
    FeatureShardWriter w((d.path / "partial.h5").string(), spec(true), 0, N);
    EXPECT_THROW(w.finish(), Error);
  }
  const std::string s1 = (d.path / "s1.h5").string(), out = (d.path / "ok.h5").string();
  write_shard(s1, spec(true), 3, 1);
  merge_feature_shards({s0, s1, s2}, out);
  ASSERT_NO_THROW(validate_feature_store(out));
  {
    h5::File f(out, h5::File::Mode::kReadWrite);
    std::vector<float> row(D, 9.0f);
    f.write_slab("global", 2, 1, row.data());
  }
  try {
    validate_feature_store(out);
    FAIL() << "corruption not detected";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("global"), std::string::npos) << e.what();
  }
}

TEST(FeatureStore, ReadableFromH5py) {
  TempDir d("features_py");
  const std::string s0 = (d.path / "s0.h5").string(), out = (d.path / "all.h5").string();
  write_shard(s0, spec(true), 0, N);
  merge_feature_shards({s0}, out);
  const std::string script =
      "import h5py,sys,numpy as np\n"
      "f=h5py.File(sys.argv[1],'r')\n"
      "assert f['global'].shape==(7,5), f['global'].shape\n"
      "assert f['patch'].shape==(7,4,3) and f['patch'].dtype==np.float16\n"
      "assert f['global'].chunks[0]==1\n"
      "p=[x.decode() if isinstance(x,bytes) else x for x in f['index/paths'][:]]\n"
      "assert p[3]=='img/3.png', p\n"
      "assert list(f['index/labels'][:])==[0,1,0,1,0,1,0]\n"
      "assert abs(float(f['global'][2,1]) - (0.01*21-0.2)) < 1e-3\n"
      "assert f.attrs['schema'] in ('zsad.features/1', b'zsad.features/1')\n"
      "print('ok')\n";
  testing::write_text(d.path / "check.py", script);
  const auto r = testing::run_command(testing::python() + " " + (d.path / "check.py").string() + " " + out);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace zsad::data
