// Round trip: printing a resolved config and loading it back yields the identical config, for
// every experiment file in the repository (globbed at test time, so files added later count).
#include <gtest/gtest.h>

#include <algorithm>

#include "common/error.h"
#include "launch/config/compose.h"
#include "launch/config/yaml_io.h"
#include "test_util.h"

using zsad::config::Node;
namespace fs = std::filesystem;

namespace {

std::vector<fs::path> experiment_yaml_files() {
  std::vector<fs::path> out;
  fs::path root = fs::path(zsad_test::source_dir()) / "experiments";
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file() && e.path().extension() == ".yaml") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

zsad::config::Composed compose_file(const std::string& file) {
  zsad::config::ComposeRequest req;
  req.experiment = file;
  req.validate = false;  // other components' keys may not be registered in this test binary
  return zsad::config::compose(req);
}

}  // namespace

TEST(ConfigRoundTrip, EveryExperimentFileInTheRepo) {
  auto files = experiment_yaml_files();
  ASSERT_GE(files.size(), 3u) << "expected experiment files under experiments/";
  fs::path root = fs::path(zsad_test::source_dir()) / "experiments";
  zsad_test::TempDir tmp;
  int composed = 0;
  for (const auto& f : files) {
    SCOPED_TRACE(f.string());
    // Every file (group options too) survives load -> emit -> load unchanged.
    Node raw = zsad::config::load_yaml_file(f.string());
    Node raw_back = zsad::config::load_yaml_string(zsad::config::to_yaml(raw), "raw-back");
    EXPECT_TRUE(raw_back == raw) << zsad::config::to_yaml(raw);
    if (f.parent_path() != root) continue;  // group options are not experiments
    // Experiments: compose + resolve, print, load the printed text as an experiment, compose again.
    zsad::config::Composed c = compose_file(f.string());
    zsad::config::EmitOptions eo;
    eo.escape_interpolation = true;
    std::string printed = zsad::config::to_yaml(c.config, eo);
    fs::path copy = tmp.path / ("printed_" + f.filename().string());
    zsad_test::write_file(copy, printed);
    zsad::config::Composed again = compose_file(copy.string());
    EXPECT_TRUE(again.config == c.config) << "printed:\n" << printed << "\nreloaded:\n"
                                          << zsad::config::to_yaml(again.config, eo);
    EXPECT_EQ(zsad::config::to_yaml(again.config, eo), printed);
    ++composed;
  }
  EXPECT_GE(composed, 3);
}

TEST(ConfigRoundTrip, CliCfgOutputReloadsIdentically) {
  zsad_test::TempDir tmp;
  std::string exp = zsad_test::source_dir() + "/experiments/example_delta.yaml";
  auto first = zsad_test::run_zsad({"run", exp, "seed=9", "+tags.note='a, b'", "--cfg"}, tmp.str());
  ASSERT_EQ(first.code, 0) << first.err;
  EXPECT_NE(first.out.find("seed: 9"), std::string::npos) << first.out;
  zsad_test::write_file(tmp.path / "printed.yaml", first.out);
  auto second = zsad_test::run_zsad({"run", (tmp.path / "printed.yaml").string(), "--cfg"}, tmp.str());
  ASSERT_EQ(second.code, 0) << second.err;
  EXPECT_EQ(second.out, first.out);
  // the delta experiment really changed things relative to its base
  auto base = zsad_test::run_zsad({"run", zsad_test::source_dir() + "/experiments/example_shell.yaml", "--cfg"},
                                  tmp.str());
  ASSERT_EQ(base.code, 0) << base.err;
  EXPECT_NE(base.out, first.out);
}

TEST(ConfigRoundTrip, LiteralDollarBracesSurvive) {
  zsad_test::TempDir tmp;
  zsad_test::write_file(tmp.path / "experiments/lit.yaml", "a: \\${kept}\nb: ${a}\nc: x\n");
  zsad::config::Composed c = compose_file((tmp.path / "experiments/lit.yaml").string());
  EXPECT_EQ(c.config.at("a").as_string(), "${kept}");
  EXPECT_EQ(c.config.at("b").as_string(), "${kept}");
  zsad::config::EmitOptions eo;
  eo.escape_interpolation = true;
  zsad_test::write_file(tmp.path / "experiments/lit2.yaml", zsad::config::to_yaml(c.config, eo));
  zsad::config::Composed again = compose_file((tmp.path / "experiments/lit2.yaml").string());
  EXPECT_TRUE(again.config == c.config);
}
