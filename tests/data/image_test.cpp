// Decoding: every 8-bit mode/format PIL writes decodes to the same RGB pixels as PIL's
// convert('RGB'), masks binarise like convert('L') > 0; corrupt files raise errors naming them.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "common/error.h"
#include "data/image.h"
#include "test_util.h"

namespace zsad::data {
namespace {

using testing::TempDir;

std::vector<uint8_t> raw(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

TEST(ImageDecode, MatchesPilConvertRgbForEveryFormat) {
  TempDir d("formats");
  const auto r = testing::run_command(testing::python() + " " + testing::source_dir() + "/tests/data/pil_formats.py " +
                                      d.path.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream lst(d.path / "list.txt");
  std::string file;
  int w, h, n = 0;
  while (lst >> file >> w >> h) {
    ++n;
    const std::string stem = file.substr(0, file.find('.'));
    const Image img = read_image((d.path / file).string());
    EXPECT_EQ(img.width, w) << file;
    EXPECT_EQ(img.height, h) << file;
    EXPECT_EQ(img.channels, 3) << file;
    EXPECT_EQ(img.pixels, raw(d.path / (stem + ".rgb"))) << file << ": decoded pixels differ from PIL";
    const Image m = read_mask((d.path / file).string());
    EXPECT_EQ(m.pixels, raw(d.path / (stem + ".bin"))) << file << ": mask binarisation differs from PIL L > 0";
  }
  EXPECT_EQ(n, 12);
}

std::string error_of(const std::string& path) {
  try {
    read_image(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ImageDecode, CorruptFilesRaiseErrorsNamingTheFile) {
  TempDir d("corrupt");
  Image img(64, 48, 3, 0);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 13);
  const auto jpg = encode_image(img, ".jpg");
  const auto png = encode_png(img);
  auto put = [&](const std::string& name, std::vector<uint8_t> b) {
    testing::write_bytes(d.path / name, b);
    return (d.path / name).string();
  };
  const std::string tj = put("trunc.jpg", std::vector<uint8_t>(jpg.begin(), jpg.begin() + jpg.size() / 2));
  const std::string tp = put("trunc.png", std::vector<uint8_t>(png.begin(), png.begin() + png.size() / 2));
  const std::string zero = put("zero.png", {});
  const std::string junk = put("junk.png", {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'});
  std::vector<uint8_t> bad_data = png;
  for (size_t i = 60; i < bad_data.size() - 20; ++i) bad_data[i] ^= 0x5A;  // scramble IDAT, keep IEND
  const std::string scrambled = put("scrambled.png", bad_data);
  for (const auto& p : {tj, tp, zero, junk, scrambled}) {
    const std::string e = error_of(p);
    EXPECT_NE(e.find(p), std::string::npos) << "error for " << p << " must name it: '" << e << "'";
  }
  EXPECT_NE(error_of(tj).find("truncated"), std::string::npos);
  EXPECT_NE(error_of(zero).find("0 bytes"), std::string::npos);
  EXPECT_NE(error_of((d.path / "absent.png").string()).find("absent.png"), std::string::npos);
  // The intact files still decode.
  EXPECT_NO_THROW(read_image(put("ok.jpg", jpg)));
  EXPECT_NO_THROW(read_image(put("ok.png", png)));
}

TEST(ImageDecode, TruncationDetectedAtEveryCutAndTrailersAccepted) {
  TempDir d("cuts");
  // Baseline and progressive JPEGs written by PIL, plus OpenCV's own baseline JPEG and PNG.
  const std::string script =
      "import sys, numpy as np\nfrom PIL import Image\n"
      "a = np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)\n"
      "Image.fromarray(a).save(sys.argv[1] + '/prog.jpg', progressive=True, quality=90)\n"
      "Image.fromarray(a).save(sys.argv[1] + '/opt.jpg', optimize=True, quality=80)\n";
  testing::write_text(d.path / "w.py", script);
  const auto r = testing::run_command(testing::python() + " " + (d.path / "w.py").string() + " " + d.path.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Image img(120, 90, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>((i * 2654435761u) >> 24);
  std::vector<std::pair<std::string, std::vector<uint8_t>>> files = {
      {"prog.jpg", read_file_bytes((d.path / "prog.jpg").string())},
      {"opt.jpg", read_file_bytes((d.path / "opt.jpg").string())},
      {"cv.jpg", encode_image(img, ".jpg")},
      {"cv.png", encode_png(img)}};
  for (const auto& [name, bytes] : files) {
    const std::string full = (d.path / name).string();
    EXPECT_NO_THROW(check_complete(full, bytes)) << name;
    for (int k = 1; k < 40; ++k) {
      const size_t cut = bytes.size() * k / 40;
      const std::vector<uint8_t> part(bytes.begin(), bytes.begin() + cut);
      EXPECT_THROW(check_complete(full, part), Error) << name << " cut at " << cut << " of " << bytes.size();
    }
    EXPECT_THROW(check_complete(full, std::vector<uint8_t>(bytes.begin(), bytes.end() - 1)), Error) << name;
    // Trailing bytes after the end marker (camera trailers) are not truncation.
    std::vector<uint8_t> trailer = bytes;
    for (int i = 0; i < 5000; ++i) trailer.push_back(static_cast<uint8_t>(i * 7));
    testing::write_bytes(d.path / ("trailer_" + name), trailer);
    EXPECT_NO_THROW(read_image((d.path / ("trailer_" + name)).string())) << name;
  }
}

TEST(ImageEncode, PngRoundTripIsLossless) {
  Image img(31, 17, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 7 + 3);
  TempDir d("png");
  write_png((d.path / "x.png").string(), img);
  EXPECT_EQ(read_image((d.path / "x.png").string()).pixels, img.pixels);
  Image g(9, 5, 1);
  for (size_t i = 0; i < g.pixels.size(); ++i) g.pixels[i] = static_cast<uint8_t>(i * 29);
  write_png((d.path / "g.png").string(), g);
  const Image back = read_image((d.path / "g.png").string());
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 9; ++x)
      for (int c = 0; c < 3; ++c) EXPECT_EQ(back.at(x, y, c), g.at(x, y));
}

}  // namespace
}  // namespace zsad::data
