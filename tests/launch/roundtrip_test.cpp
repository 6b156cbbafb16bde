// Round trip: printing a resolved config and loading it back yields the identical config, for
// every experiment file in the repository (globbed at test time, so files added later count).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

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

nlohmann::ordered_json to_json(const Node& n) {
  switch (n.kind()) {
    case Node::Kind::kNull: return nullptr;
    case Node::Kind::kBool: return n.as_bool();
    case Node::Kind::kInt: return n.as_int();
    case Node::Kind::kFloat: {
      double v = n.as_float();
      if (std::isnan(v)) return {{"__float__", "nan"}};
      if (std::isinf(v)) return {{"__float__", v > 0 ? "inf" : "-inf"}};
      return v;
    }
    case Node::Kind::kString: return n.as_string();
    case Node::Kind::kList: {
      auto a = nlohmann::ordered_json::array();
      for (const auto& c : n.items()) a.push_back(to_json(c));
      return a;
    }
    case Node::Kind::kMap: {
      auto o = nlohmann::ordered_json::object();
      for (size_t i = 0; i < n.size(); ++i) o[n.keys()[i]] = to_json(n.items()[i]);
      return o;
    }
  }
  return nullptr;
}

// PyYAML must read the printed text as the same data as zsad's tree.
void expect_pyyaml_reads_same(const Node& tree, const std::string& printed, const fs::path& tmp, const std::string& tag) {
  zsad_test::write_file(tmp / (tag + ".yaml"), printed);
  zsad_test::write_file(tmp / (tag + ".json"), to_json(tree).dump());
  std::string out = zsad_test::run_python(
      "yaml_crosscheck.py", {(tmp / (tag + ".yaml")).string(), (tmp / (tag + ".json")).string()}, tmp.string());
  EXPECT_EQ(out, "ok\n") << tag << ": " << out << "\n" << printed;
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
    expect_pyyaml_reads_same(c.config, zsad::config::to_yaml(c.config), tmp.path, f.stem().string());
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

TEST(ConfigRoundTrip, PyYamlReadsTrickyValuesIdentically) {
  Node m = Node::map();
  Node strs = Node::list();
  for (const char* v : {"", "null", "~", "true", "yes", "No", "on", "OFF", "y", "n", "12", "0x1F", "1:20", "1_000", "0o17",
                        "1e5", ".5", "-.inf", "a: b", "- x", "#x", "multi\nline", "quote'\"", "${x}", "plain text",
                        "/abs/path", "C:\\dir", "@at", "%p", "*star", "&amp", "!bang", "|pipe", ">gt", "back`tick"})
    strs.push_back(Node(std::string(v)));
  m.set("strings", strs);
  Node nums = Node::list();
  for (double d : {0.0, 0.1, 1.0, 1e-10, 123456789.0, -2.5e300, 3.0000000000000004, 1e22, 5e-324})
    nums.push_back(Node(d));
  for (int64_t i : {int64_t{0}, int64_t{-7}, int64_t{9007199254740993}}) nums.push_back(Node(i));
  m.set("numbers", nums);
  m.set("yes", Node(true));
  m.set("1", Node());
  m.set("nested", Node::map());
  m.at("nested").set("list", Node::list());
  zsad_test::TempDir tmp;
  expect_pyyaml_reads_same(m, zsad::config::to_yaml(m), tmp.path, "tricky");
  EXPECT_TRUE(zsad::config::load_yaml_string(zsad::config::to_yaml(m)) == m);
}
