#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>

#include "common/error.h"
#include "rank_threads.h"
#include "trainer/checkpoint.h"

namespace fs = std::filesystem;

namespace {

zsad::Checkpoint sample(int64_t step) {
  zsad::Checkpoint ck;
  at::manual_seed(step);
  ck.tensors["params/fc.weight"] = at::randn({4, 3});
  ck.tensors["params/fc.bias"] = at::randn({4}, at::kDouble);
  ck.tensors["optimizer/0/step"] = at::scalar_tensor(step, at::kLong);
  ck.tensors["rng/rank_0"] = at::randint(0, 255, {64}, at::kByte);
  ck.tensors["method/flags"] = at::tensor({1, 0, 1}).to(at::kBool);
  ck.tensors["method/counts"] = at::arange(5, at::kInt);
  ck.ints["step"] = step;
  ck.ints["epoch"] = 2;
  ck.ints["sampler_position"] = 17;
  ck.strings["config_digest"] = "abc123";
  return ck;
}

void expect_same(const zsad::Checkpoint& a, const zsad::Checkpoint& b) {
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [k, t] : a.tensors) {
    const auto& u = b.get_tensor(k);
    EXPECT_EQ(t.scalar_type(), u.scalar_type()) << k;
    EXPECT_EQ(t.sizes(), u.sizes()) << k;
    EXPECT_TRUE(at::equal(t, u)) << k;
  }
  EXPECT_EQ(a.ints, b.ints);
  EXPECT_EQ(a.strings, b.strings);
}

void flip_byte(const std::string& path, std::streamoff off) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(off);
  char c;
  f.read(&c, 1);
  c ^= 0x10;
  f.seekp(off);
  f.write(&c, 1);
}

// Offset of the raw bytes of a float tensor inside the file (contiguous, uncompressed datasets).
std::streamoff find_bytes(const std::string& path, const at::Tensor& t) {
  std::ifstream in(path, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string needle(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  auto pos = all.find(needle);
  EXPECT_NE(pos, std::string::npos);
  return static_cast<std::streamoff>(pos);
}

}  // namespace

TEST(Checkpoint, RoundTripKeepsDtypesShapesAndBits) {
  auto dir = zsad::testing::fresh_temp_dir("ckpt");
  auto ck = sample(5);
  zsad::write_checkpoint(dir + "/a.h5", ck);
  EXPECT_FALSE(fs::exists(dir + "/a.h5.tmp"));
  auto back = zsad::read_checkpoint(dir + "/a.h5");
  expect_same(ck, back);
  EXPECT_EQ(back.get_tensor("optimizer/0/step").dim(), 0);
  fs::remove_all(dir);
}

TEST(Checkpoint, ReadableByH5py) {
  auto dir = zsad::testing::fresh_temp_dir("ckpt");
  auto ck = sample(3);
  zsad::write_checkpoint(dir + "/a.h5", ck);
  const char* py = std::getenv("ZSAD_PYTHON");
  ASSERT_TRUE(py);
  std::string script = dir + "/read.py";
  std::ofstream(script) << "import h5py, sys\n"
                           "f = h5py.File(sys.argv[1], 'r')\n"
                           "w = f['params/fc.weight'][()]\n"
                           "assert w.shape == (4, 3) and w.dtype.name == 'float32', (w.shape, w.dtype)\n"
                           "assert f['params/fc.bias'].dtype.name == 'float64'\n"
                           "assert int(f.attrs['step']) == 3 and int(f.attrs['sampler_position']) == 17\n"
                           "print('%.9g' % float(w.sum()))\n";
  std::string cmd = std::string(py) + " " + script + " " + dir + "/a.h5";
  FILE* p = popen(cmd.c_str(), "r");
  char buf[64] = {0};
  ASSERT_TRUE(fgets(buf, sizeof buf, p));
  ASSERT_EQ(pclose(p), 0);
  EXPECT_NEAR(std::atof(buf), ck.tensors["params/fc.weight"].sum().item<double>(), 1e-5);
  fs::remove_all(dir);
}

TEST(CheckpointDir, KeepsLastKByStep) {
  auto dir = zsad::testing::fresh_temp_dir("ckpt");
  zsad::CheckpointDir cd(dir, 2);
  for (int64_t s : {10, 20, 30, 100}) cd.save(sample(s));
  auto l = cd.list();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(fs::path(l[0]).filename(), "ckpt-000000030.h5");
  EXPECT_EQ(fs::path(l[1]).filename(), "ckpt-000000100.h5");
  EXPECT_THROW(zsad::CheckpointDir(dir, 1), zsad::Error);
  fs::remove_all(dir);
}

TEST(CheckpointDir, TruncatedLatestFallsBackToPrevious) {
  auto dir = zsad::testing::fresh_temp_dir("ckpt");
  zsad::CheckpointDir cd(dir, 3);
  cd.save(sample(1));
  auto latest = cd.save(sample(2));
  fs::resize_file(latest, fs::file_size(latest) / 2);
  EXPECT_THROW(zsad::read_checkpoint(latest), zsad::Error);
  std::string used;
  testing::internal::CaptureStderr();
  auto ck = cd.load_latest("abc123", &used);
  std::string err = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(ck.has_value());
  EXPECT_EQ(ck->get_int("step"), 1);
  EXPECT_EQ(used, cd.path_for(1));
  EXPECT_NE(err.find(latest), std::string::npos) << err;
  EXPECT_NE(err.find("falling back"), std::string::npos) << err;
  fs::remove_all(dir);
}

TEST(CheckpointDir, BitFlipIsRejectedWithChecksumMessage) {
  auto dir = zsad::testing::fresh_temp_dir("ckpt");
  zsad::CheckpointDir cd(dir, 3);
  cd.save(sample(1));
  auto ck2 = sample(2);
  auto latest = cd.save(ck2);
  flip_byte(latest, find_bytes(latest, ck2.tensors["params/fc.weight"]) + 5);
  try {
    zsad::read_checkpoint(latest);
    ADD_FAILURE() << "bit flip not detected";
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find("checksum mismatch"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(latest), std::string::npos) << e.what();
  }
  testing::internal::CaptureStderr();
  auto ck = cd.load_latest("abc123");
  testing::internal::GetCapturedStderr();
  ASSERT_TRUE(ck.has_value());
  EXPECT_EQ(ck->get_int("step"), 1);
  fs::remove_all(dir);
}

TEST(CheckpointDir, AllCorruptOrWrongConfigIsAnError) {
  auto dir = zsad::testing::fresh_temp_dir("ckpt");
  zsad::CheckpointDir cd(dir, 2);
  EXPECT_FALSE(cd.load_latest("x").has_value());
  auto p = cd.save(sample(1));
  try {
    cd.load_latest("other-digest");
    ADD_FAILURE();
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find("other-digest"), std::string::npos);
  }
  fs::resize_file(p, 100);
  testing::internal::CaptureStderr();
  EXPECT_THROW(cd.load_latest("abc123"), zsad::Error);
  testing::internal::GetCapturedStderr();
  fs::remove_all(dir);
}
