#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "common/error.h"
#include "common/h5.h"

namespace fs = std::filesystem;

TEST(H5, RoundTripsArraysAttributesAndHalfPrecision) {
  fs::path p = fs::temp_directory_path() / "zsad_h5_roundtrip.h5";
  std::vector<float> a = {0.5f, -1.25f, 3.0f, 65504.0f, 1e-3f, 7.0f};
  std::vector<uint8_t> m = {0, 1, 1, 0};
  {
    zsad::h5::File f(p.string(), zsad::h5::File::Mode::kTruncate);
    f.write("/cls/a", a.data(), {2, 3});
    f.write("/cls/a16", a.data(), {2, 3}, {zsad::h5::DType::kFloat16, true, 0});
    f.write("/cls/m", m.data(), {4});
    f.write_strings("/names", {"bottle", "métal nut"});
    f.set_attr("/", "schema", std::string("zsad.test/1"));
    f.set_attr("/cls", "count", int64_t{42});
  }
  zsad::h5::File f(p.string(), zsad::h5::File::Mode::kRead);
  EXPECT_EQ(f.shape("/cls/a"), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.read_float("/cls/a"), a);
  EXPECT_EQ(f.stored_type("/cls/a16"), zsad::h5::DType::kFloat16);
  auto h = f.read_float("/cls/a16");
  EXPECT_FLOAT_EQ(h[0], 0.5f);
  EXPECT_FLOAT_EQ(h[3], 65504.0f);
  EXPECT_NEAR(h[4], 1e-3f, 1e-6f);  // fp16 rounding
  EXPECT_EQ(f.read_uint8("/cls/m"), m);
  EXPECT_EQ(f.read_strings("/names"), (std::vector<std::string>{"bottle", "métal nut"}));
  EXPECT_EQ(f.attr_string("/", "schema"), "zsad.test/1");
  EXPECT_EQ(f.attr_int("/cls", "count"), 42);
  EXPECT_EQ(f.children("/"), (std::vector<std::string>{"cls", "names"}));
  EXPECT_TRUE(f.is_group("/cls"));
  EXPECT_FALSE(f.exists("/cls/nope"));
  float row[3];
  f.read_slab("/cls/a", 1, 1, row);
  EXPECT_EQ(row[0], 65504.0f);
  fs::remove(p);
}

TEST(H5, MissingOrCorruptFileNamesThePath) {
  fs::path p = fs::temp_directory_path() / "zsad_h5_corrupt.h5";
  {
    FILE* fp = std::fopen(p.c_str(), "wb");
    std::fputs("not an hdf5 file", fp);
    std::fclose(fp);
  }
  try {
    zsad::h5::File f(p.string(), zsad::h5::File::Mode::kRead);
    FAIL() << "expected an error";
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos);
  }
  fs::remove(p);
}

TEST(H5, Float16WritesRoundToNearestEvenIncludingMantissaCarry) {
  fs::path p = fs::temp_directory_path() / "zsad_h5_half.h5";
  // Values whose fp16 rounding carries into the exponent, ties, overflow and subnormals.
  std::vector<float> in = {-0.249996f, 0.499999f, 2049.0f, 2051.0f, 65519.0f, 65520.0f,
                           1e-8f, 5.9604645e-8f, 8.940697e-8f, 1.0f / 3.0f};
  std::vector<float> expect = {-0.25f, 0.5f, 2048.0f, 2052.0f, 65504.0f, INFINITY,
                               0.0f, 5.9604645e-8f, 1.1920929e-7f, 0.333251953125f};
  {
    zsad::h5::File f(p.string(), zsad::h5::File::Mode::kTruncate);
    f.write("/h", in.data(), {static_cast<int64_t>(in.size())}, {zsad::h5::DType::kFloat16, false, 0});
    f.create("/s", {2, 5}, {zsad::h5::DType::kFloat16, true, 0});
    f.write_slab("/s", 0, 2, in.data());
  }
  zsad::h5::File f(p.string(), zsad::h5::File::Mode::kRead);
  EXPECT_EQ(f.read_float("/h"), expect);
  EXPECT_EQ(f.read_float("/s"), expect);
  fs::remove(p);
}
