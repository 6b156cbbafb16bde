// The batch loader: complete, deterministic order for a seed (independent of the thread count),
// explicit index lists, batch contents equal to the Python reference preprocessing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

#include "common/error.h"
#include "data/loader.h"
#include "data/synth.h"
#include "test_util.h"

namespace zsad::data {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

class LoaderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("loader");
    SynthOptions o;
    o.preset = "objects";
    o.seed = 4;
    o.size = 72;
    o.train_per_class = 2;
    o.test_per_class = 5;
    meta_ = new Meta(synthesize_dataset(o, dir_->path.string()));
    // One JPEG in the mix, so the decode path of both formats is compared with PIL.
    Image im = read_image((dir_->path / "gear/test/good/000.png").string());
    write_image((dir_->path / "gear/test/good/000.jpg").string(), im, 90);
  }
  static void TearDownTestSuite() {
    delete meta_;
    delete dir_;
  }
  static std::vector<Sample> samples() { return meta_->test.flat(); }
  static std::vector<int64_t> epoch_indices(LoaderOptions o, uint64_t epoch = 0) {
    BatchLoader loader(samples(), dir_->path.string(), o);
    loader.start_epoch(epoch);
    std::vector<int64_t> seen;
    Batch b;
    while (loader.next(b)) seen.insert(seen.end(), b.indices.begin(), b.indices.end());
    return seen;
  }
  static TempDir* dir_;
  static Meta* meta_;
};
TempDir* LoaderTest::dir_ = nullptr;
Meta* LoaderTest::meta_ = nullptr;

TEST_F(LoaderTest, EpochCoversEveryIndexOnceInASeededOrder) {
  LoaderOptions o;
  o.image_size = 32;
  o.batch_size = 4;
  o.shuffle = true;
  o.seed = 9;
  o.threads = 2;
  const auto a = epoch_indices(o);
  o.threads = 1;
  const auto b = epoch_indices(o);
  EXPECT_EQ(a, b) << "order must not depend on the thread count";
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  ASSERT_EQ(sorted.size(), samples().size());
  for (size_t i = 0; i < sorted.size(); ++i) EXPECT_EQ(sorted[i], static_cast<int64_t>(i));
  EXPECT_NE(a, epoch_indices(o, 1)) << "a new epoch reshuffles";
  o.seed = 10;
  EXPECT_NE(a, epoch_indices(o)) << "another seed, another order";
  o.shuffle = false;
  const auto plain = epoch_indices(o);
  EXPECT_TRUE(std::is_sorted(plain.begin(), plain.end()));
}

TEST_F(LoaderTest, ExplicitIndicesAndDropLast) {
  LoaderOptions o;
  o.image_size = 24;
  o.batch_size = 2;
  o.drop_last = true;
  BatchLoader loader(samples(), dir_->path.string(), o);
  loader.set_indices({7, 3, 11, 0, 5});
  EXPECT_EQ(loader.num_batches(), 2u);
  loader.start_epoch(0);
  Batch b;
  std::vector<int64_t> seen;
  while (loader.next(b)) {
    EXPECT_EQ(b.size, 2);
    EXPECT_EQ(b.images.size(), 2u * 3 * 24 * 24);
    EXPECT_EQ(b.masks.size(), 2u * 24 * 24);
    seen.insert(seen.end(), b.indices.begin(), b.indices.end());
  }
  EXPECT_EQ(seen, (std::vector<int64_t>{7, 3, 11, 0}));
  EXPECT_THROW(loader.set_indices({1000}), Error);
}

TEST_F(LoaderTest, BatchesMatchPythonReferencePreprocessing) {
  const auto all = samples();
  // Replace one normal PNG by its JPEG copy for this comparison.
  std::vector<Sample> list = all;
  for (auto& s : list)
    if (s.img_path == "gear/test/good/000.png") s.img_path = "gear/test/good/000.jpg";
  LoaderOptions o;
  o.image_size = 40;
  o.batch_size = 5;
  o.threads = 2;
  BatchLoader loader(list, dir_->path.string(), o);
  std::ofstream man(dir_->path / "manifest.txt");
  std::vector<Batch> batches;
  Batch b;
  while (loader.next(b)) batches.push_back(b);
  size_t k = 0;
  for (const auto& bb : batches)
    for (int i = 0; i < bb.size; ++i, ++k) {
      const Sample& s = list[bb.indices[i]];
      man << resolve_path(dir_->path.string(), s.img_path) << " "
          << (s.mask_path.empty() ? "-" : resolve_path(dir_->path.string(), s.mask_path)) << " 40 "
          << (dir_->path / ("ref" + std::to_string(k))).string() << "\n";
      EXPECT_EQ(bb.labels[i], s.anomaly);
      EXPECT_EQ(bb.class_names[i], s.cls_name);
    }
  man.close();
  const auto r = testing::run_command(testing::python() + " " + testing::source_dir() + "/tests/data/pil_preprocess.py " +
                                      (dir_->path / "manifest.txt").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  k = 0;
  double max_diff = 0;
  size_t mask_diff = 0, mask_on = 0;
  for (const auto& bb : batches)
    for (int i = 0; i < bb.size; ++i, ++k) {
      const fs::path pre = dir_->path / ("ref" + std::to_string(k));
      std::ifstream fi(pre.string() + ".img.f32", std::ios::binary), fm(pre.string() + ".mask.u8", std::ios::binary);
      std::vector<float> ref(3 * 40 * 40);
      std::vector<uint8_t> refm(40 * 40);
      fi.read(reinterpret_cast<char*>(ref.data()), ref.size() * 4);
      fm.read(reinterpret_cast<char*>(refm.data()), refm.size());
      ASSERT_TRUE(fi && fm) << pre;
      for (size_t j = 0; j < ref.size(); ++j)
        max_diff = std::max(max_diff, double(std::abs(ref[j] - bb.images[i * ref.size() + j])));
      for (size_t j = 0; j < refm.size(); ++j) {
        mask_diff += refm[j] != bb.masks[i * refm.size() + j];
        mask_on += refm[j];
      }
    }
  EXPECT_EQ(k, list.size());
  EXPECT_LT(max_diff, 1e-5) << "decode + resize + normalise must equal PIL/torchvision";
  EXPECT_EQ(mask_diff, 0u);
  EXPECT_GT(mask_on, 0u) << "anomalous samples must carry non-empty masks";
}

TEST_F(LoaderTest, MissingFileErrorNamesIt) {
  std::vector<Sample> list = samples();
  list[2].img_path = "nowhere/absent.png";
  LoaderOptions o;
  o.image_size = 16;
  o.batch_size = 2;
  BatchLoader loader(list, dir_->path.string(), o);
  Batch b;
  try {
    while (loader.next(b)) {
    }
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nowhere/absent.png"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace zsad::data
