// Composition (defaults lists, _self_, override, packages), interpolation and schema validation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "common/error.h"
#include "launch/config/compose.h"
#include "launch/config/interpolation.h"
#include "launch/config/schema.h"
#include "launch/config/yaml_io.h"
#include "test_util.h"

using zsad::config::Node;
namespace fs = std::filesystem;

namespace {

class ComposeTree : public ::testing::Test {
 protected:
  void put(const std::string& rel, const std::string& text) { zsad_test::write_file(root() / rel, text); }
  fs::path root() const { return dir.path / "experiments"; }
  zsad::config::Composed compose(const std::string& exp, const std::vector<std::string>& ovs = {},
                                 bool use_schema = false) {
    zsad::config::ComposeRequest req;
    req.experiment = (root() / (exp + ".yaml")).string();
    req.overrides = ovs;
    req.use_schema = use_schema;
    return zsad::config::compose(req);
  }
  std::string error_of(const std::string& exp, const std::vector<std::string>& ovs = {}, bool use_schema = false) {
    try {
      compose(exp, ovs, use_schema);
    } catch (const zsad::Error& e) {
      return e.what();
    }
    return "";
  }
  zsad_test::TempDir dir;
};

Node resolved(const std::string& yaml) {
  Node n = zsad::config::load_yaml_string(yaml, "test.yaml");
  zsad::config::resolve_interpolations(n);
  return n;
}

std::string resolve_error(const std::string& yaml) {
  try {
    resolved(yaml);
  } catch (const zsad::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_F(ComposeTree, SelfOrderDecidesWhoWins) {
  put("trainer/default.yaml", "lr: 0.1\nepochs: 3\n");
  put("self_last.yaml", "defaults:\n  - trainer: default\n  - _self_\ntrainer:\n  lr: 0.5\n");
  put("self_first.yaml", "defaults:\n  - _self_\n  - trainer: default\ntrainer:\n  lr: 0.5\n");
  put("self_implicit.yaml", "defaults:\n  - trainer: default\ntrainer:\n  lr: 0.5\n");
  EXPECT_DOUBLE_EQ(compose("self_last").config.find_path("trainer.lr")->as_float(), 0.5);
  EXPECT_DOUBLE_EQ(compose("self_first").config.find_path("trainer.lr")->as_float(), 0.1);
  EXPECT_DOUBLE_EQ(compose("self_implicit").config.find_path("trainer.lr")->as_float(), 0.5);  // Hydra >= 1.1
  EXPECT_EQ(compose("self_first").config.find_path("trainer.epochs")->as_int(), 3);
}

TEST_F(ComposeTree, GlobalPackageExperimentDeltasAndOverride) {
  put("trainer/default.yaml", "lr: 0.1\nepochs: 3\n");
  put("trainer/fast.yaml", "lr: 0.9\nepochs: 1\n");
  put("base.yaml", "defaults:\n  - trainer: default\n  - _self_\nseed: 1\nname: base\n");
  put("delta.yaml",
      "# @package _global_\n# deltas over base\ndefaults:\n  - base\n  - override /trainer: fast\n  - _self_\n"
      "name: delta\ntrainer:\n  epochs: 7\n");
  Node c = compose("delta").config;
  EXPECT_DOUBLE_EQ(c.find_path("trainer.lr")->as_float(), 0.9);  // override chose fast.yaml
  EXPECT_EQ(c.find_path("trainer.epochs")->as_int(), 7);          // the delta's own value wins
  EXPECT_EQ(c.at("seed").as_int(), 1);
  EXPECT_EQ(c.at("name").as_string(), "delta");
  EXPECT_FALSE(c.has("defaults"));

  // +experiment=foo with a _global_ group option (Hydra's experiment pattern)
  put("experiment/foo.yaml", "# @package _global_\ndefaults:\n  - override /trainer: fast\nseed: 42\n");
  Node e = compose("base", {"+experiment=foo"}).config;
  EXPECT_EQ(e.at("seed").as_int(), 42);
  EXPECT_DOUBLE_EQ(e.find_path("trainer.lr")->as_float(), 0.9);
  EXPECT_FALSE(e.has("experiment") && e.at("experiment").is_map());
}

TEST_F(ComposeTree, PackagesAndNestedGroups) {
  put("dataset/visa.yaml", "root: /data/visa\nclasses: [candle, pcb1]\n");
  put("dataset/mvtec.yaml", "root: /data/mvtec\n");
  put("server/apache.yaml", "defaults:\n  - db: mysql\nport: 80\n");
  put("server/db/mysql.yaml", "driver: mysql\n");
  put("server/db/sqlite.yaml", "driver: sqlite\n");
  put("model/vit.yaml", "# @package backbone.vision\nwidth: 768\n");
  put("exp.yaml",
      "defaults:\n  - dataset@train: visa\n  - dataset@test: mvtec\n  - server: apache\n  - model: vit\n"
      "  - optional extras: none\n  - nothing: null\n");
  put("nothing/x.yaml", "x: 1\n");
  auto c = compose("exp");
  EXPECT_EQ(c.config.find_path("train.root")->as_string(), "/data/visa");
  EXPECT_EQ(c.config.find_path("train.classes")->size(), 2u);
  EXPECT_EQ(c.config.find_path("test.root")->as_string(), "/data/mvtec");
  EXPECT_EQ(c.config.find_path("server.port")->as_int(), 80);
  EXPECT_EQ(c.config.find_path("server.db.driver")->as_string(), "mysql");  // relative group server/db
  EXPECT_EQ(c.config.find_path("backbone.vision.width")->as_int(), 768);    // header package
  EXPECT_FALSE(c.config.has("nothing"));
  EXPECT_FALSE(c.config.has("extras"));
  // command-line swap of a nested group, and of a packaged group
  auto d = compose("exp", {"server/db=sqlite", "dataset@test=visa"});
  EXPECT_EQ(d.config.find_path("server.db.driver")->as_string(), "sqlite");
  EXPECT_EQ(d.config.find_path("test.root")->as_string(), "/data/visa");
  // removing a group
  auto r = compose("exp", {"~server"});
  EXPECT_FALSE(r.config.has("server"));
  // choices are recorded in order
  ASSERT_GE(d.choices.size(), 3u);
  EXPECT_EQ(d.choices[0].first, "dataset@train");
  EXPECT_EQ(d.choices[0].second, "visa");
}

TEST_F(ComposeTree, ListOfOptionsMergesInOrder) {
  put("aug/flip.yaml", "flip: true\np: 0.5\n");
  put("aug/noise.yaml", "noise: 0.1\np: 0.2\n");
  put("exp.yaml", "defaults:\n  - aug: [flip, noise]\n");
  Node c = compose("exp").config;
  EXPECT_TRUE(c.find_path("aug.flip")->as_bool());
  EXPECT_DOUBLE_EQ(c.find_path("aug.p")->as_float(), 0.2);
}

TEST_F(ComposeTree, OverridesAssignListsMergeDicts) {
  put("exp.yaml", "opt:\n  betas: [0.9, 0.999]\n  extra: {a: 1, b: 2}\n");
  Node c = compose("exp", {"opt.betas=[0.5]", "opt.extra={b: 3, c: 4}", "++opt.new=x", "~opt.extra.a"}).config;
  EXPECT_EQ(c.find_path("opt.betas")->size(), 1u);
  EXPECT_FALSE(c.find_path("opt.extra.a"));
  EXPECT_EQ(c.find_path("opt.extra.b")->as_int(), 3);
  EXPECT_EQ(c.find_path("opt.extra.c")->as_int(), 4);
  EXPECT_EQ(c.find_path("opt.new")->as_string(), "x");
  // the value remembers it came from the command line
  EXPECT_NE(c.find_path("opt.new")->mark().str().find("override '++opt.new=x'"), std::string::npos);
}

TEST_F(ComposeTree, CompositionErrors) {
  put("trainer/default.yaml", "lr: 0.1\n");
  put("missing_opt.yaml", "defaults:\n  - trainer: nope\n");
  put("bad_override.yaml", "defaults:\n  - override /trainer: default\n");
  put("cyc_a.yaml", "defaults:\n  - cyc_b\n");
  put("cyc_b.yaml", "defaults:\n  - cyc_a\n");
  put("not_list.yaml", "defaults: trainer\n");
  put("dotdot.yaml", "defaults:\n  - ../etc: passwd\n");
  std::string m = error_of("missing_opt");
  EXPECT_NE(m.find("missing_opt.yaml:2:"), std::string::npos) << m;
  EXPECT_NE(m.find("option 'nope' not found in config group 'trainer' (available: default)"), std::string::npos) << m;
  m = error_of("bad_override");
  EXPECT_NE(m.find("could not override 'trainer': no match in the defaults list"), std::string::npos) << m;
  m = error_of("cyc_a");
  EXPECT_NE(m.find("defaults cycle"), std::string::npos) << m;
  EXPECT_NE(m.find("cyc_b.yaml"), std::string::npos) << m;
  EXPECT_NE(error_of("not_list").find("'defaults' must be a list"), std::string::npos);
  EXPECT_NE(error_of("dotdot").find("'..' is not allowed"), std::string::npos);
}

TEST_F(ComposeTree, MarksPointAtTheSource) {
  put("trainer/default.yaml", "# comment\nepochs: 2\nlr:   0.1\n");
  put("exp.yaml", "defaults:\n  - trainer: default\n");
  Node c = compose("exp").config;
  const auto& m = c.find_path("trainer.lr")->mark();
  EXPECT_NE(m.file.find("trainer/default.yaml"), std::string::npos);
  EXPECT_EQ(m.line, 3);
  EXPECT_EQ(m.column, 7);
}

TEST_F(ComposeTree, SchemaErrorsNameFileLineKeyTypeValue) {
  put("exp.yaml", "seed: 0\ntrainer:\n  lr: fast\n");
  std::string m = error_of("exp", {}, true);
  EXPECT_NE(m.find("exp.yaml:3:7: key 'trainer.lr' expects float, got string 'fast'"), std::string::npos) << m;
  put("typo.yaml", "seed: 0\ntrainer:\n  epohcs: 3\n");
  m = error_of("typo", {}, true);
  EXPECT_NE(m.find("typo.yaml:3:3: unknown key 'trainer.epohcs' (did you mean 'trainer.epochs'?)"), std::string::npos)
      << m;
  put("top.yaml", "sed: 1\n");
  m = error_of("top", {}, true);
  EXPECT_NE(m.find("unknown key 'sed' (did you mean 'seed'?)"), std::string::npos) << m;
  // free-form tags always pass; ints are promoted for float keys; defaults fill existing sections
  put("ok.yaml", "trainer:\n  lr: 1\n");
  auto c = compose("ok", {"+tags.anything=1", "+tags.nested.deep=x"}, true);
  EXPECT_TRUE(c.config.find_path("trainer.lr")->is_float());
  EXPECT_EQ(c.config.find_path("tags.anything")->as_int(), 1);
  EXPECT_EQ(c.config.find_path("trainer.epochs")->as_int(), 1);  // schema default
  EXPECT_EQ(c.config.at("experiment").as_string(), "ok");        // defaults to the file name
  // a declared key can be set without '+' even when its section is absent
  auto d = compose("ok", {"launcher.nproc=2"}, true);
  EXPECT_EQ(d.config.find_path("launcher.nproc")->as_int(), 2);
}

TEST(ConfigSchema, RegistrationValidationAndHelp) {
  zsad::config::Schema s;
  s.section("method", "the anomaly detection method");
  s.add("method.name", zsad::config::Type::kString, "cops", "method name").choices({"cops", "apt"});
  s.add("method.prompt_len", zsad::config::Type::kInt, 12, "learnable prompt tokens");
  s.add("method.ckpt", zsad::config::Type::kString, nullptr, "checkpoint (null: none)");
  s.add("method.extra", zsad::config::Type::kMap, Node::map(), "free-form");
  Node c = zsad::config::load_yaml_string("method:\n  name: apt\n  ckpt: null\n  extra: {anything: [1]}\n", "m.yaml");
  s.fill_defaults(c);
  EXPECT_EQ(c.find_path("method.prompt_len")->as_int(), 12);
  EXPECT_NO_THROW(s.validate(c));
  Node bad = zsad::config::load_yaml_string("method:\n  name: winclip\n", "m.yaml");
  try {
    s.validate(bad);
    ADD_FAILURE();
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find("m.yaml:2:9: key 'method.name' must be one of {cops, apt}, got 'winclip'"),
              std::string::npos)
        << e.what();
  }
  Node bad2 = zsad::config::load_yaml_string("method:\n  prompt_len: [1]\n", "m.yaml");
  EXPECT_THROW(s.validate(bad2), zsad::Error);
  std::string h = s.help();
  EXPECT_NE(h.find("method.prompt_len : int = 12"), std::string::npos) << h;
  EXPECT_NE(h.find("learnable prompt tokens"), std::string::npos);
  EXPECT_NE(h.find("the anomaly detection method"), std::string::npos);
  EXPECT_EQ(s.suggest("method.prompt_lenn"), "method.prompt_len");
  EXPECT_EQ(s.suggest("completely.different.thing"), "");
  // the process-wide registry holds the core keys
  EXPECT_NE(zsad::config::schema_registry().find("trainer.lr"), nullptr);
  EXPECT_NE(zsad::config::schema_registry().find("launcher.nproc"), nullptr);
}

// Numeric bounds: a value outside them (or inf/nan for a bounded float) is refused at compose time
// naming file:line:col, key, the range and the value; before, trainer.batch_size=0 ended the job in
// SIGFPE and trainer.lr=.inf failed only inside the job.
TEST_F(ComposeTree, BoundedKeysNameTheRangeAndTheValue) {
  put("b.yaml", "seed: 0\ntrainer:\n  batch_size: 0\n");
  std::string m = error_of("b", {}, true);
  EXPECT_NE(m.find("b.yaml:3:15: key 'trainer.batch_size' expects an integer >= 1, got 0"), std::string::npos) << m;
  put("ok.yaml", "trainer:\n  lr: 1\n");
  m = error_of("ok", {"trainer.lr=.inf"}, true);
  EXPECT_NE(m.find("key 'trainer.lr' expects a finite number >= 0, got .inf"), std::string::npos) << m;
  m = error_of("ok", {"trainer.lr=nan"}, true);
  EXPECT_NE(m.find("key 'trainer.lr' expects a finite number >= 0"), std::string::npos) << m;
  m = error_of("ok", {"launcher.master_port=99999"}, true);
  EXPECT_NE(m.find("key 'launcher.master_port' expects an integer in [0, 65535], got 99999"), std::string::npos) << m;
  m = error_of("ok", {"trainer.epochs=-5"}, true);
  EXPECT_NE(m.find("key 'trainer.epochs' expects an integer >= 1, got -5"), std::string::npos) << m;
  // The bounds themselves, and null where null is allowed, pass.
  auto c = compose("ok", {"trainer.lr=0", "trainer.batch_size=1", "launcher.master_port=0", "train.max_steps=-1"}, true);
  EXPECT_EQ(c.config.find_path("trainer.batch_size")->as_int(), 1);
  EXPECT_NO_THROW(compose("ok", {"launcher.master_port=null"}, true));
  EXPECT_NE(zsad::config::schema_registry().help().find("trainer.batch_size : int = 8  >= 1"), std::string::npos);
}

TEST(ConfigInterpolation, ReferencesKeepTypes) {
  Node c = resolved("a:\n  b: 3\n  m: {x: 1}\nc: ${a.b}\nd: ${a.m}\ne: \"lr_${a.b}_x\"\nl: [p, q]\nf: ${l.1}\ng: ${l[0]}\n");
  EXPECT_EQ(c.at("c").as_int(), 3);
  ASSERT_TRUE(c.at("d").is_map());
  EXPECT_EQ(c.at("d").at("x").as_int(), 1);
  EXPECT_EQ(c.at("e").as_string(), "lr_3_x");
  EXPECT_EQ(c.at("f").as_string(), "q");
  EXPECT_EQ(c.at("g").as_string(), "p");
}

TEST(ConfigInterpolation, ChainsRelativeEscapes) {
  Node c = resolved("a: ${b}\nb: ${c}\nc: 7\nsec:\n  x: 1\n  y: ${.x}\n  sub:\n    z: ${..x}\nlit: \\${not.a.ref}\n");
  EXPECT_EQ(c.at("a").as_int(), 7);
  EXPECT_EQ(c.find_path("sec.y")->as_int(), 1);
  EXPECT_EQ(c.find_path("sec.sub.z")->as_int(), 1);
  EXPECT_EQ(c.at("lit").as_string(), "${not.a.ref}");
}

TEST(ConfigInterpolation, EnvironmentVariables) {
  setenv("ZSAD_TEST_VAR", "42", 1);
  unsetenv("ZSAD_TEST_UNSET");
  Node c = resolved("a: ${env:ZSAD_TEST_VAR}\nb: ${oc.env:ZSAD_TEST_UNSET,fallback}\nc: \"x${env:ZSAD_TEST_VAR}\"\n"
                    "d: ${env:ZSAD_TEST_UNSET,'quoted, default'}\n");
  EXPECT_EQ(c.at("a").as_int(), 42);
  EXPECT_EQ(c.at("b").as_string(), "fallback");
  EXPECT_EQ(c.at("c").as_string(), "x42");
  EXPECT_EQ(c.at("d").as_string(), "quoted, default");
  std::string m = resolve_error("a: ${env:ZSAD_TEST_UNSET}\n");
  EXPECT_NE(m.find("environment variable 'ZSAD_TEST_UNSET' is not set"), std::string::npos) << m;
}

TEST(ConfigInterpolation, CyclesAndMissingKeysAreNamed) {
  std::string m = resolve_error("a: ${b}\nb: ${c}\nc: ${a}\n");
  EXPECT_NE(m.find("interpolation cycle: a -> b -> c -> a"), std::string::npos) << m;
  m = resolve_error("x:\n  self: ${x.self}\n");
  EXPECT_NE(m.find("interpolation cycle: x.self -> x.self"), std::string::npos) << m;
  m = resolve_error("a: ${nope.key}\n");
  EXPECT_NE(m.find("test.yaml:1:4: key 'a': interpolation '${nope.key}' refers to missing key 'nope.key'"),
            std::string::npos)
      << m;
  m = resolve_error("a: ${foo:bar}\n");
  EXPECT_NE(m.find("unknown resolver 'foo'"), std::string::npos) << m;
  m = resolve_error("a: \"x ${b\"\nb: 1\n");
  EXPECT_NE(m.find("unterminated interpolation"), std::string::npos) << m;
  m = resolve_error("m: {k: 1}\na: \"x ${m}\"\n");
  EXPECT_NE(m.find("cannot be placed inside a string"), std::string::npos) << m;
}

TEST_F(ComposeTree, InterpolationSeesOverrides) {
  put("exp.yaml", "seed: 0\nname: run_${seed}\n");
  EXPECT_EQ(compose("exp", {"seed=5"}).config.at("name").as_string(), "run_5");
}

TEST(ConfigYaml, ScalarsTypesAndErrors) {
  Node c = zsad::config::load_yaml_string(
      "i: 12\nf: 1e-3\ng: 2.5\nq: '12'\nb: True\nn: ~\ne:\ns: yes\ninf: .inf\nlst: [1, 'a']\n", "t.yaml");
  EXPECT_TRUE(c.at("i").is_int());
  EXPECT_TRUE(c.at("f").is_float());
  EXPECT_DOUBLE_EQ(c.at("f").as_float(), 1e-3);
  EXPECT_TRUE(c.at("q").is_string());
  EXPECT_TRUE(c.at("b").as_bool());
  EXPECT_TRUE(c.at("n").is_null());
  EXPECT_TRUE(c.at("e").is_null());
  EXPECT_EQ(c.at("s").as_string(), "yes");  // YAML 1.2: not a bool
  EXPECT_TRUE(std::isinf(c.at("inf").as_float()));
  EXPECT_EQ(c.keys(), (std::vector<std::string>{"i", "f", "g", "q", "b", "n", "e", "s", "inf", "lst"}));
  try {
    zsad::config::load_yaml_string("a: 1\nb: [1, 2\n", "broken.yaml");
    ADD_FAILURE();
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find("broken.yaml:"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("YAML syntax error"), std::string::npos) << e.what();
  }
  try {
    zsad::config::load_yaml_string("a: 1\nb: 2\na: 3\n", "dup.yaml");
    ADD_FAILURE();
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find("dup.yaml:3:1: duplicate key 'a'"), std::string::npos) << e.what();
  }
}

TEST(ConfigYaml, EmitReadBackTrickyValues) {
  Node n = Node::list();
  for (const char* s : {"", "null", "~", "true", "False", "12", "1e-3", "-.inf", " padded ", "a: b", "- x", "#x",
                        "multi\nline", "quote'\"", "${x}", "[1]", "{a}", "@at", "%p", "yes", "0x1F", "1_000"})
    n.push_back(Node(std::string(s)));
  Node m = Node::map();
  m.set("strings", n);
  m.set("floats", Node::list());
  for (double d : {0.1, 1.0, 1e-10, 123456789.0, -2.5e300, 3.0000000000000004})
    m.at("floats").push_back(Node(d));
  m.set("weird key: x", Node(int64_t{-9007199254740993}));
  m.set("empty_map", Node::map());
  m.set("empty_list", Node::list());
  m.set("null", Node());
  std::string text = zsad::config::to_yaml(m);
  Node back = zsad::config::load_yaml_string(text, "back.yaml");
  EXPECT_TRUE(back == m) << text;
}
