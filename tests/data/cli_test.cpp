// `zsad data check` on a tree seeded with one of each fault, `zsad data synth` determinism and
// a clean check of its output, `zsad data index` writing meta.json.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "data/image.h"
#include "data/index.h"
#include "test_util.h"

namespace zsad::data {
namespace {

namespace fs = std::filesystem;
using testing::run_command;
using testing::TempDir;
using testing::zsad_binary;

void put_image(const fs::path& p, int w, int h, uint8_t v) {
  Image im(w, h, 3, v);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) im.at(x, y, 1) = static_cast<uint8_t>((x * 7 + y * 3) & 255);
  fs::create_directories(p.parent_path());
  write_image(p.string(), im);
}

void put_mask(const fs::path& p, int w, int h) {
  Image m(w, h, 1, 0);
  for (int y = h / 4; y < h / 2; ++y)
    for (int x = w / 4; x < w / 2; ++x) m.at(x, y) = 255;
  fs::create_directories(p.parent_path());
  write_image(p.string(), m);
}

// A small MVTec tree with JPEG and PNG images, indexed into meta.json.
void build_tree(const fs::path& root) {
  for (int i = 0; i < 3; ++i) put_image(root / "nut/train/good" / ("00" + std::to_string(i) + ".png"), 64, 48, 90);
  for (int i = 0; i < 2; ++i) put_image(root / "nut/test/good" / ("00" + std::to_string(i) + ".jpg"), 64, 48, 120);
  for (int i = 0; i < 3; ++i) {
    const std::string n = "00" + std::to_string(i);
    put_image(root / "nut/test/crack" / (n + ".png"), 64, 48, 30);
    put_mask(root / "nut/ground_truth/crack" / (n + "_mask.png"), 64, 48);
  }
  const auto r = run_command(zsad_binary() + " data index --layout mvtec --root " + root.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

TEST(DataCheckCli, CleanTreeExitsZero) {
  TempDir d("check_clean");
  build_tree(d.path);
  const auto r = run_command(zsad_binary() + " data check --root " + d.path.string());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("clean"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("nut"), std::string::npos) << r.output;
}

TEST(DataCheckCli, FindsEveryFaultAndExitsNonZero) {
  TempDir d("check_faults");
  build_tree(d.path);
  const fs::path missing = d.path / "nut/train/good/001.png";
  const fs::path truncated = d.path / "nut/test/good/001.jpg";
  const fs::path zero = d.path / "nut/test/crack/000.png";
  const fs::path mismatch = d.path / "nut/ground_truth/crack/002_mask.png";
  fs::remove(missing);
  {
    std::vector<uint8_t> bytes = read_file_bytes(truncated.string());
    bytes.resize(bytes.size() * 2 / 3);
    testing::write_bytes(truncated, bytes);
  }
  testing::write_bytes(zero, {});
  put_mask(mismatch, 32, 48);
  const auto r = run_command(zsad_binary() + " data check --root " + d.path.string());
  EXPECT_NE(r.exit_code, 0) << r.output;
  auto line_with = [&](const fs::path& p) {
    const size_t at = r.output.find(p.string());
    if (at == std::string::npos) return std::string();
    const size_t start = r.output.rfind('\n', at) + 1;
    return r.output.substr(start, r.output.find('\n', at) - start);
  };
  EXPECT_NE(line_with(missing).find("missing-image"), std::string::npos) << r.output;
  EXPECT_NE(line_with(truncated).find("unreadable-image"), std::string::npos) << r.output;
  EXPECT_NE(line_with(truncated).find("truncated"), std::string::npos) << r.output;
  EXPECT_NE(line_with(zero).find("unreadable-image"), std::string::npos) << r.output;
  EXPECT_NE(line_with(zero).find("0 bytes"), std::string::npos) << r.output;
  EXPECT_NE(line_with(mismatch).find("mask-size-mismatch"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("4 issue(s)"), std::string::npos) << r.output;
}

TEST(DataCheckCli, AnomalyWithoutMaskAndEmptyClass) {
  TempDir d("check_nomask");
  build_tree(d.path);
  Meta m = read_meta((d.path / "meta.json").string());
  for (auto& s : m.test.samples["nut"])
    if (s.anomaly) {
      s.mask_path = "";
      break;
    }
  m.test.classes.push_back("empty_cls");
  m.test.samples["empty_cls"];
  write_meta(m, (d.path / "meta2.json").string());
  const auto r = run_command(zsad_binary() + " data check --root " + d.path.string() + " --meta " +
                             (d.path / "meta2.json").string());
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("anomaly-without-mask"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("empty-class [test/empty_cls]"), std::string::npos) << r.output;
}

TEST(DataCheckCli, UsageErrorsExitTwo) {
  EXPECT_EQ(run_command(zsad_binary() + " data").exit_code, 2);
  EXPECT_EQ(run_command(zsad_binary() + " data frobnicate").exit_code, 2);
  EXPECT_EQ(run_command(zsad_binary() + " data check --bogus 1").exit_code, 2);
  const auto r = run_command(zsad_binary() + " data index --layout nosuch --root /tmp");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("nosuch"), std::string::npos);
}

// FNV-1a over every file's relative path and bytes, in sorted path order.
std::string tree_digest(const fs::path& root, size_t* files = nullptr) {
  std::map<std::string, fs::path> all;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) all[fs::relative(e.path(), root).string()] = e.path();
  uint64_t h = 1469598103934665603ull;
  auto feed = [&](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  };
  for (const auto& [rel, p] : all) {
    feed(reinterpret_cast<const uint8_t*>(rel.data()), rel.size());
    const auto bytes = read_file_bytes(p.string());
    feed(bytes.data(), bytes.size());
  }
  if (files) *files = all.size();
  return std::to_string(h);
}

TEST(DataSynthCli, ListsPresetsNameFirst) {
  const auto r = run_command(zsad_binary() + " data synth --list-presets");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.rfind("textures", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("\nobjects"), std::string::npos) << r.output;
}

TEST(DataSynthCli, ByteDeterministicAndPassesCheck) {
  TempDir d("synth");
  for (const std::string preset : {"textures", "objects"}) {
    const fs::path a = d.path / (preset + "_a"), b = d.path / (preset + "_b"), c = d.path / (preset + "_c");
    const std::string common = " data synth --preset " + preset + " --size 64 --images-per-class 6 ";
    auto r1 = run_command(zsad_binary() + common + "--seed 11 --threads 2 --out " + a.string());
    ASSERT_EQ(r1.exit_code, 0) << r1.output;
    auto r2 = run_command(zsad_binary() + common + "--seed 11 --threads 1 --out " + b.string());
    ASSERT_EQ(r2.exit_code, 0) << r2.output;
    auto r3 = run_command(zsad_binary() + common + "--seed 12 --threads 2 --out " + c.string());
    ASSERT_EQ(r3.exit_code, 0) << r3.output;
    size_t files = 0;
    EXPECT_EQ(tree_digest(a, &files), tree_digest(b)) << preset;
    EXPECT_NE(tree_digest(a), tree_digest(c)) << preset << ": a different seed must change the data";
    // 5 classes x (6 train + 6 test) images, masks for the anomalous ones, meta.json.
    const Meta m = read_meta((a / "meta.json").string());
    EXPECT_GE(m.test.classes.size(), 4u);
    size_t anomalous = 0, masks = 0;
    for (const auto& kv : m.test.samples)
      for (const auto& s : kv.second) {
        anomalous += s.anomaly;
        masks += !s.mask_path.empty();
      }
    EXPECT_EQ(masks, anomalous);
    const double frac = double(anomalous) / m.test.size();
    EXPECT_GE(frac, 0.3);
    EXPECT_LE(frac, 0.5);
    EXPECT_EQ(files, m.train.size() + m.test.size() + masks + 2);  // + meta.json, synth_options.txt
    const auto chk = run_command(zsad_binary() + " data check --root " + a.string());
    EXPECT_EQ(chk.exit_code, 0) << chk.output;
  }
}

// Neither command replaces what is there without --force: `data synth` into a non-empty folder
// would mix two generations under one meta.json (and `data check` would call it clean), and
// `data index` would overwrite a hand-edited or published meta.json.
TEST(DataCli, ExistingOutputsAreReplacedOnlyWithForce) {
  TempDir d("data_force");
  const fs::path ds = d.path / "ds";
  const std::string gen = zsad_binary() + " data synth --preset objects --size 64 --out " + ds.string();
  ASSERT_EQ(run_command(gen + " --seed 1 --images-per-class 4").exit_code, 0);
  { std::ofstream(ds / "notes.txt") << "mine\n"; }
  const std::string before = tree_digest(ds);
  auto again = run_command(gen + " --seed 2 --images-per-class 2");
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_NE(again.output.find("is not empty"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("--force"), std::string::npos) << again.output;
  EXPECT_EQ(tree_digest(ds), before) << "the existing dataset was modified";
  auto forced = run_command(gen + " --seed 2 --images-per-class 2 --force");
  ASSERT_EQ(forced.exit_code, 0) << forced.output;
  // Only the new generation is left (plus the user's own file): images + masks + meta.json + options + notes.
  const Meta m = read_meta((ds / "meta.json").string());
  size_t masks = 0;
  for (const auto& kv : m.test.samples)
    for (const auto& smp : kv.second) masks += !smp.mask_path.empty();
  size_t files = 0;
  tree_digest(ds, &files);
  EXPECT_EQ(files, m.train.size() + m.test.size() + masks + 3);
  EXPECT_EQ(m.test.size(), 10u);  // 5 classes x 2
  EXPECT_TRUE(fs::exists(ds / "notes.txt"));
  // --force on a folder no `data synth` made deletes nothing.
  const fs::path real = d.path / "real";
  fs::create_directories(real / "capsule" / "train" / "good");
  { std::ofstream(real / "meta.json") << "{}"; }
  auto not_synth = run_command(zsad_binary() + " data synth --preset objects --size 64 --seed 1 --force --out " + real.string());
  EXPECT_EQ(not_synth.exit_code, 1) << not_synth.output;
  EXPECT_NE(not_synth.output.find("not a synthetic dataset"), std::string::npos) << not_synth.output;
  EXPECT_TRUE(fs::exists(real / "capsule" / "train" / "good"));
  EXPECT_TRUE(fs::exists(real / "meta.json"));

  TempDir t("index_force");
  build_tree(t.path);  // writes meta.json
  { std::ofstream(t.path / "meta.json") << "{\"hand\": \"edited\"}"; }
  const std::string idx = zsad_binary() + " data index --layout mvtec --root " + t.path.string();
  auto refused = run_command(idx);
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("meta.json: exists; pass --force"), std::string::npos) << refused.output;
  std::ifstream kept(t.path / "meta.json");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(kept), {}), "{\"hand\": \"edited\"}");
  ASSERT_EQ(run_command(idx + " --force").exit_code, 0);
  EXPECT_GT(read_meta((t.path / "meta.json").string()).test.size(), 0u);
}

// A generation renders into DIR.partial and moves the result into DIR: leftovers of an interrupted
// one (DIR.partial, or class folders in DIR without a meta.json) are never mixed into the next
// dataset (before: an interrupted 256-px generation left PNGs that the next 128-px one indexed).
TEST(DataSynthCli, InterruptedGenerationIsNeverMixedIn) {
  TempDir d("synth_interrupted");
  const fs::path ds = d.path / "ds";
  fs::create_directories(d.path / "ds.partial" / "gear" / "train" / "good");
  { std::ofstream(d.path / "ds.partial" / "gear" / "train" / "good" / "999.png") << "stale"; }
  const std::string gen = zsad_binary() + " data synth --preset objects --size 64 --images-per-class 2 --seed 3 --out ";
  ASSERT_EQ(run_command(gen + ds.string()).exit_code, 0);
  EXPECT_FALSE(fs::exists(d.path / "ds.partial"));
  EXPECT_FALSE(fs::exists(ds / "gear" / "train" / "good" / "999.png"));
  EXPECT_EQ(read_meta((ds / "meta.json").string()).test.size(), 10u);

  // The evaluation's on-demand generation into a root holding an older generation's class folder
  // and no meta.json: it stops naming the folder, and leaves it as it was.
  const fs::path data = d.path / "data";
  fs::create_directories(data / "synth_objects" / "gear" / "test" / "good");
  { std::ofstream(data / "synth_objects" / "gear" / "test" / "good" / "000.png") << "old"; }
  auto r = run_command("cd " + d.path.string() + " && ZSAD_DATA_ROOT=" + data.string() + " ZSAD_OUTPUT_ROOT=" +
                       (d.path / "out").string() + " " + zsad_binary() + " run " + testing::source_dir() +
                       "/experiments/apt_synth_fewshot.yaml method.apt.epochs=1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("holds files of another generation"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(data / "synth_objects" / "meta.json"));
  std::ifstream old(data / "synth_objects" / "gear" / "test" / "good" / "000.png");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(old), {}), "old");

  // --force over a dataset of another preset removes that preset's classes too.
  ASSERT_EQ(run_command(zsad_binary() + " data synth --preset textures --size 64 --images-per-class 2 --seed 1 --force --out " +
                        ds.string()).exit_code, 0);
  const Meta m = read_meta((ds / "meta.json").string());
  EXPECT_EQ(m.test.classes.size(), 5u);
  EXPECT_FALSE(fs::exists(ds / "gear"));
  auto threads = run_command(gen + (d.path / "t").string() + " --threads 100000");
  EXPECT_EQ(threads.exit_code, 2) << threads.output;
}

TEST(DataSynthCli, RunStopsOnASyntheticDatasetGeneratedWithOtherOptions) {
  // The demo's synth_textures generated with a larger defect scale than the config asks for:
  // the run must stop naming both option sets, and leave the existing dataset untouched.
  TempDir d("synth_stale");
  const fs::path ds = d.path / "data" / "synth_textures";
  auto gen = run_command(zsad_binary() + " data synth --preset textures --size 128 --images-per-class 4 --defect-scale 2 --seed 0 --out " +
                         ds.string());
  ASSERT_EQ(gen.exit_code, 0) << gen.output;
  const std::string before = tree_digest(ds);
  auto r = run_command("cd " + d.path.string() + " && ZSAD_DATA_ROOT=" + (d.path / "data").string() + " ZSAD_OUTPUT_ROOT=" +
                       (d.path / "out").string() + " " + zsad_binary() + " run " + testing::source_dir() +
                       "/experiments/demo_ci.yaml method=cops_untrained");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("defect_scale=2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("defect_scale=1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(ds.string()), std::string::npos) << r.output;
  EXPECT_EQ(tree_digest(ds), before) << "the existing dataset was modified";
}

}  // namespace
}  // namespace zsad::data
