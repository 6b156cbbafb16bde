// Corrupt, truncated, empty, foreign and legacy weight files: each read gives a zsad::Error
// that names the file and fits on one line; nothing crashes.
#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "common/error.h"
#include "models/clip/weights.h"
#include "tests/models/weights_fixture.h"

namespace zsad::models {
namespace {

using test::expect_one_line_error;
using test::slurp;
using test::weight_file;
using test::write_file_bytes;

// Every public reader gives the same kind of error for `path`.
void expect_all_readers_fail(const std::string& path, const std::string& needle) {
  expect_one_line_error([&] { detect_weight_format(path); }, path, needle);
  expect_one_line_error([&] { read_weights(path); }, path, needle);
}

TEST(WeightsErrors, MissingFileAndDirectory) {
  const std::string missing = weight_file("does_not_exist.pt");
  expect_all_readers_fail(missing, "cannot open");
  expect_one_line_error([&] { read_torch_save(missing); }, missing, "cannot open");
  expect_one_line_error([&] { read_safetensors(missing); }, missing, "cannot open");
  expect_one_line_error([&] { read_torchscript_weights(missing); }, missing, "cannot open");
  const std::string dir = test::weight_files_dir();
  expect_all_readers_fail(dir, "directory");
}

TEST(WeightsErrors, EmptyAndTinyFiles) {
  const std::string empty = weight_file("zero_bytes.pt");
  write_file_bytes(empty, "");
  expect_all_readers_fail(empty, "empty file");
  expect_one_line_error([&] { read_torch_save(empty); }, empty, "empty file");
  expect_one_line_error([&] { read_safetensors(empty); }, empty, "empty file");
  expect_one_line_error([&] { read_torchscript_weights(empty); }, empty, "empty file");
  const std::string tiny = weight_file("three_bytes.pt");
  write_file_bytes(tiny, "abc");
  expect_all_readers_fail(tiny, "truncated");
}

TEST(WeightsErrors, RandomBytesAreNotAWeightFile) {
  std::mt19937 rng(7);
  std::string bytes(4096, '\0');
  for (auto& c : bytes) c = static_cast<char>(rng() & 0xff);
  const std::string path = weight_file("random.bin");
  write_file_bytes(path, bytes);
  expect_all_readers_fail(path, "not a CLIP weight file (expected TorchScript archive, torch.save zip or safetensors)");
  expect_one_line_error([&] { read_torch_save(path); }, path, "not a torch.save zip archive");
  expect_one_line_error([&] { read_torchscript_weights(path); }, path, "cannot load TorchScript archive");
}

TEST(WeightsErrors, LegacyTorchSaveAsksToResave) {
  const std::string path = weight_file("legacy.pth");
  expect_all_readers_fail(path, "legacy (non-zip) torch.save format is not supported; re-save");
  expect_one_line_error([&] { read_torch_save(path); }, path, "legacy");
}

TEST(WeightsErrors, ForeignZipArchive) {
  const std::string path = weight_file("plain.zip");
  expect_all_readers_fail(path, "not in a subdirectory: hello.txt)");  // LibTorch's message, without its NUL
  expect_one_line_error([&] { read_torch_save(path); }, path, "cannot read torch.save archive");
}

TEST(WeightsErrors, TruncatedZipArchives) {
  for (const std::string name : {"state_dict.pth", "scripted_cuda_fp16.pt", "cops.pth"}) {
    const std::string bytes = slurp(weight_file(name));
    ASSERT_GT(bytes.size(), 1000u);
    for (size_t keep : {bytes.size() / 2, bytes.size() - 30, size_t{100}}) {
      const std::string path = weight_file("truncated_" + std::to_string(keep) + "_" + name);
      write_file_bytes(path, bytes.substr(0, keep));
      SCOPED_TRACE(path);
      expect_all_readers_fail(path, "truncated or corrupt zip archive");
      expect_one_line_error([&] { read_torch_save(path); }, path, "cannot read torch.save archive");
      expect_one_line_error([&] { read_torchscript_weights(path); }, path, "cannot load TorchScript archive");
    }
  }
}

TEST(WeightsErrors, TruncatedAndCorruptSafetensors) {
  const std::string bytes = slurp(weight_file("weights.safetensors"));
  const std::string cut = weight_file("cut.safetensors");
  write_file_bytes(cut, bytes.substr(0, bytes.size() - 5));
  expect_one_line_error([&] { read_weights(cut); }, cut, "truncated safetensors file: tensor '");
  expect_one_line_error([&] { read_safetensors(cut); }, cut, "truncated");

  const std::string head_cut = weight_file("head_cut.safetensors");
  write_file_bytes(head_cut, bytes.substr(0, 40));
  expect_all_readers_fail(head_cut, "truncated safetensors file: its header claims");

  std::string bad_json = bytes;
  bad_json[9] = '#';  // header starts at byte 8 with '{'
  const std::string bj = weight_file("bad_json.safetensors");
  write_file_bytes(bj, bad_json);
  expect_one_line_error([&] { read_weights(bj); }, bj, "not valid JSON");

  // A header whose offsets disagree with shape x dtype.
  const std::string header = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})";
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[static_cast<size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  file += header + std::string(16, '\0');
  const std::string off = weight_file("bad_offsets.safetensors");
  write_file_bytes(off, file);
  expect_one_line_error([&] { read_weights(off); }, off, "tensor 'w': data_offsets span 12 bytes but shape and dtype need 16");

  const std::string header2 = R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})";
  std::string file2(8, '\0');
  for (int i = 0; i < 8; ++i) file2[static_cast<size_t>(i)] = static_cast<char>((header2.size() >> (8 * i)) & 0xff);
  file2 += header2 + std::string(2, '\0');
  const std::string dt = weight_file("bad_dtype.safetensors");
  write_file_bytes(dt, file2);
  expect_one_line_error([&] { read_weights(dt); }, dt, "unsupported dtype 'F8_E4M3'");
}

// Rewrites a torch.save archive with LibTorch's own zip writer, replacing records.
void rewrite_archive(const std::string& src, const std::string& dst, const std::map<std::string, std::string>& replace,
                     const std::set<std::string>& drop = {}) {
  caffe2::serialize::PyTorchStreamReader reader(src);
  caffe2::serialize::PyTorchStreamWriter writer(dst);
  for (const auto& name : reader.getAllRecords()) {
    if (name == "version" || name == ".data/version" || drop.count(name)) continue;  // the writer adds the version
    auto it = replace.find(name);
    if (it != replace.end()) {
      writer.writeRecord(name, it->second.data(), it->second.size());
    } else {
      at::DataPtr ptr;
      size_t n = 0;
      std::tie(ptr, n) = reader.getRecord(name);
      writer.writeRecord(name, ptr.get(), n);
    }
  }
  writer.writeEndOfFile();
}

std::string record(const std::string& path, const std::string& name) {
  caffe2::serialize::PyTorchStreamReader reader(path);
  at::DataPtr ptr;
  size_t n = 0;
  std::tie(ptr, n) = reader.getRecord(name);
  return std::string(static_cast<const char*>(ptr.get()), n);
}

TEST(WeightsErrors, RewrittenArchiveStillReadsThenMissingOrShortStorage) {
  const std::string src = weight_file("state_dict.pth");
  // Sanity check of the rewriting itself: unchanged records read back equal.
  const std::string same = weight_file("rewritten_same.pth");
  rewrite_archive(src, same, {});
  test::expect_matches_python(read_torch_save(same), "state_dict.pth", true);

  const std::string missing = weight_file("missing_storage.pth");
  rewrite_archive(src, missing, {}, {"data/0"});
  expect_one_line_error([&] { read_torch_save(missing); }, missing, "archive has no record 'data/0'");

  const std::string shorter = weight_file("short_storage.pth");
  const std::string d0 = record(src, "data/0");
  rewrite_archive(src, shorter, {{"data/0", d0.substr(0, d0.size() - 4)}});
  expect_one_line_error([&] { read_weights(shorter); }, shorter, "record 'data/0' holds");
}

TEST(WeightsTorchScriptFallback, UncompilableCodeStillYieldsTheWeights) {
  // An archive whose TorchScript code cannot be compiled (as an archive from a newer PyTorch
  // might be): the weights come from data.pkl through the project's unpickler.
  const std::string src = weight_file("scripted_cuda_fp16.pt");
  const std::string dst = weight_file("broken_code.pt");
  rewrite_archive(src, dst, {{"code/__torch__.py", "def forward(self:\n  this is not python\n"}});
  EXPECT_EQ(detect_weight_format(dst), WeightFormat::kTorchScript);
  test::expect_matches_python(read_torchscript_weights(dst), "scripted_cuda_fp16.pt", false);
  // Both broken: the TorchScript error is reported.
  const std::string both = weight_file("broken_code_and_pickle.pt");
  rewrite_archive(src, both, {{"code/__torch__.py", "garbage("}, {"data.pkl", "\x80\x02garbage"}});
  expect_one_line_error([&] { read_weights(both); }, both, "cannot load TorchScript archive");
}

TEST(WeightsErrors, CorruptPicklesNeverCrash) {
  // Truncations and random byte changes of data.pkl: every read either succeeds or throws a
  // one-line zsad::Error naming the file.
  const std::string src = weight_file("open_clip_like.pt");
  const std::string pkl = record(src, "data.pkl");
  std::mt19937 rng(11);
  int errors = 0, successes = 0;
  for (int iter = 0; iter < 150; ++iter) {
    std::string bad = pkl;
    if (iter % 3 == 0) {
      bad.resize(rng() % pkl.size());
    } else {
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) bad[rng() % bad.size()] = static_cast<char>(rng() & 0xff);
    }
    const std::string path = weight_file("fuzz.pt");
    rewrite_archive(src, path, {{"data.pkl", bad}});
    try {
      read_torch_save(path);
      ++successes;
    } catch (const zsad::Error& e) {
      ++errors;
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "iteration " << iter << ": not a zsad::Error: " << e.what();
    }
  }
  EXPECT_GT(errors, 50);  // truncations alone are a third of the cases and must all fail
  (void)successes;
}

}  // namespace
}  // namespace zsad::models
