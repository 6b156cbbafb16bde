// `zsad encode` against Python references (tests/models/make_clip_reference.py): a small CLIP in
// OpenAI's module layout saved as a TorchScript archive, an OpenAI-style fp16/cuda:0 archive, a
// torch.save state dict and safetensors; plus corrupt / truncated / wrong-architecture files.
#include <gtest/gtest.h>

#include <fstream>

#include "clip_test_util.h"

namespace {

using zsad::test::Array;
using zsad::test::ClipReference;
using zsad::test::max_abs_diff;
using zsad::test::read_array;
using zsad::test::RunResult;
using zsad::test::shell_quote;

constexpr double kTol = 1e-4;

std::string zsad_binary() { return zsad::test::env_or("ZSAD_BINARY", "zsad"); }
std::string vocab_path() {
  return zsad::test::env_or("ZSAD_SHARED_DIR", "../shared") + "/clip/bpe_simple_vocab_16e6.txt.gz";
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(f, line);) out.push_back(line);
  return out;
}

void write_pixels(const std::string& refs, const std::string& name, const std::string& out) {
  Array a = read_array(refs, name);
  zsad::h5::File f(out, zsad::h5::File::Mode::kTruncate);
  f.write("pixels", a.data.data(), a.shape);
}

RunResult encode(const ClipReference& ref, const std::string& args) {
  return zsad::test::run_command(shell_quote(zsad_binary()) + " encode " + args, ref.dir());
}

int count_lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

class EncodeTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(ref_.ok()) << "make_clip_reference.py failed:\n" << ref_.log(); }
  ClipReference ref_;
};

TEST_F(EncodeTest, ParityOnEveryWeightFormat) {
  const std::string refs = ref_.path("refs.h5");
  write_pixels(refs, "pixels", ref_.path("px.h5"));
  write_pixels(refs, "pixels_large", ref_.path("px_large.h5"));
  std::string texts;
  for (const auto& t : read_lines(ref_.path("texts.txt"))) texts += " " + shell_quote(t);
  ASSERT_FALSE(texts.empty());
  const Array ref_ids = read_array(refs, "token_ids");

  struct Case {
    std::string file, tag;
  };
  for (const Case& c : {Case{"traced.pt", "fp32"}, Case{"openai_fp16.pt", "fp16"}, Case{"state_dict.pt", "fp32"},
                        Case{"model.safetensors", "fp32"}}) {
    SCOPED_TRACE(c.file);
    const std::string w = shell_quote(ref_.path(c.file)), out = ref_.path("out.h5");
    // Native size: image, text and V-V patch tokens on all blocks and on the last block only.
    for (int depth : {3, 1}) {
      SCOPED_TRACE("vv-depth " + std::to_string(depth));
      auto r = encode(ref_, "--weights " + w + " --pixels " + shell_quote(ref_.path("px.h5")) + " --vv-depth " +
                                std::to_string(depth) + " --vocab " + shell_quote(vocab_path()) + " --texts" + texts +
                                " --threads 1 --out " + shell_quote(out));
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_LT(max_abs_diff(read_array(out, "image_features"), read_array(refs, c.tag + "/image_features")), kTol);
      EXPECT_LT(max_abs_diff(read_array(out, "patch_tokens"),
                             read_array(refs, c.tag + "/vv" + std::to_string(depth) + "/patch_tokens")),
                kTol);
      EXPECT_LT(max_abs_diff(read_array(out, "text_features"), read_array(refs, c.tag + "/text_features")), kTol);
      EXPECT_EQ(max_abs_diff(read_array(out, "token_ids"), ref_ids), 0.0);
    }
    // Larger input: positional embedding resized (bilinear default; bicubic = open_clip).
    for (std::string interp : {"bilinear", "bicubic"}) {
      SCOPED_TRACE(interp);
      auto r = encode(ref_, "--weights " + w + " --pixels " + shell_quote(ref_.path("px_large.h5")) +
                                " --image-size 48 --vv-depth 3 --pos-interp " + interp + " --out " + shell_quote(out));
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_LT(max_abs_diff(read_array(out, "image_features"),
                             read_array(refs, c.tag + "/large_" + interp + "/image_features")),
                kTol);
      EXPECT_LT(max_abs_diff(read_array(out, "patch_tokens"),
                             read_array(refs, c.tag + "/large_" + interp + "/patch_tokens")),
                kTol);
    }
  }
}

TEST_F(EncodeTest, Fp16FileDiffersFromFp32References) {
  // Guards the fp16 parity check above: the fp16-rounded references must be distinguishable.
  const std::string refs = ref_.path("refs.h5");
  EXPECT_GT(max_abs_diff(read_array(refs, "fp16/image_features"), read_array(refs, "fp32/image_features")), 10 * kTol);
  write_pixels(refs, "pixels", ref_.path("px.h5"));
  auto r = encode(ref_, "--weights " + shell_quote(ref_.path("openai_fp16.pt")) + " --pixels " +
                            shell_quote(ref_.path("px.h5")) + " --out " + shell_quote(ref_.path("o.h5")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GT(max_abs_diff(read_array(ref_.path("o.h5"), "image_features"), read_array(refs, "fp32/image_features")),
            10 * kTol);
  EXPECT_FALSE(zsad::h5::File(ref_.path("o.h5"), zsad::h5::File::Mode::kRead).exists("patch_tokens"));
}

void expect_one_line_error(const RunResult& r, const std::string& must_contain = "") {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  if (!must_contain.empty()) EXPECT_NE(r.err.find(must_contain), std::string::npos) << r.err;
}

TEST_F(EncodeTest, BadWeightFilesGiveOneLineErrors) {
  write_pixels(ref_.path("refs.h5"), "pixels", ref_.path("px.h5"));
  const std::string tail = " --pixels " + shell_quote(ref_.path("px.h5")) + " --out " + shell_quote(ref_.path("o.h5"));
  auto run = [&](const std::string& file, const std::string& extra = "") {
    return encode(ref_, "--weights " + shell_quote(file) + extra + tail);
  };
  // Truncated copies of every format, garbage, an empty file, a missing file.
  for (std::string name : {"traced.pt", "openai_fp16.pt", "state_dict.pt", "model.safetensors"}) {
    for (double frac : {0.5, 0.999}) {
      SCOPED_TRACE(name + " truncated to " + std::to_string(frac));
      std::string bytes = zsad::test::slurp(ref_.path(name));
      const std::string cut = ref_.path("cut_" + name);
      std::ofstream(cut, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() * frac));
      expect_one_line_error(run(cut));
    }
  }
  {
    const std::string junk = ref_.path("junk.pt");
    std::ofstream f(junk, std::ios::binary);
    for (int i = 0; i < 100000; ++i) f.put(static_cast<char>((i * 2654435761u) >> 24));
    f.close();
    expect_one_line_error(run(junk));
    std::ofstream(ref_.path("empty.pt")).close();
    expect_one_line_error(run(ref_.path("empty.pt")));
    expect_one_line_error(run(ref_.path("does_not_exist.pt")));
  }
  // Wrong architecture / wrong contents.
  expect_one_line_error(run(ref_.path("not_clip.pt")), "visual.proj");
  expect_one_line_error(run(ref_.path("wrong_shape.pt")), "visual.ln_post.weight");
  expect_one_line_error(run(ref_.path("wrong_shape.pt")), "[192]");
  expect_one_line_error(run(ref_.path("missing_key.pt")), "visual.ln_post.bias");
  expect_one_line_error(run(ref_.path("extra_key.pt")), "visual.extra_head.weight");
  expect_one_line_error(run(ref_.path("state_dict.pt"), " --arch ViT-B-32"), "ViT-B-32");
  expect_one_line_error(run(ref_.path("state_dict.pt"), " --vv-depth 4"), "4");
}

TEST_F(EncodeTest, PixelsOfTheWrongSizeAreAnError) {
  write_pixels(ref_.path("refs.h5"), "pixels_large", ref_.path("px_large.h5"));
  auto r = encode(ref_, "--weights " + shell_quote(ref_.path("state_dict.pt")) + " --pixels " +
                            shell_quote(ref_.path("px_large.h5")) + " --out " + shell_quote(ref_.path("o.h5")));
  expect_one_line_error(r, "48");
  write_pixels(ref_.path("refs.h5"), "pixels", ref_.path("px.h5"));
  r = encode(ref_, "--weights " + shell_quote(ref_.path("state_dict.pt")) + " --image-size 48 --pixels " +
                       shell_quote(ref_.path("px.h5")) + " --out " + shell_quote(ref_.path("o.h5")));
  expect_one_line_error(r, "32");
}

TEST_F(EncodeTest, UsageErrorsExitTwo) {
  const std::string w = " --weights " + shell_quote(ref_.path("state_dict.pt")) + " --out " + shell_quote(ref_.path("o.h5"));
  EXPECT_EQ(encode(ref_, w).exit_code, 2);                              // nothing to encode
  EXPECT_EQ(encode(ref_, w + " --texts hello").exit_code, 2);           // --texts without --vocab
  EXPECT_EQ(encode(ref_, w + " --texts hi --vocab x --bogus 1").exit_code, 2);
  EXPECT_EQ(encode(ref_, w + " --texts hi --vocab x --pos-interp nearest").exit_code, 2);
}

}  // namespace
