// The Hydra override grammar: every form, and malformed inputs that must produce an error naming
// the problem (never a crash or a silent misparse).
#include <gtest/gtest.h>

#include <cmath>

#include "common/error.h"
#include "launch/config/compose.h"
#include "launch/overrides/override.h"
#include "test_util.h"

using zsad::config::Node;
using zsad::overrides::Override;
using zsad::overrides::OverrideType;
using zsad::overrides::parse_override;
using zsad::overrides::ValueType;

namespace {

Override P(const std::string& s) { return parse_override(s); }

std::vector<std::string> texts(const std::vector<Node>& v) {
  std::vector<std::string> out;
  for (const auto& n : v) out.push_back(zsad::overrides::render_value(n));
  return out;
}

}  // namespace

TEST(OverrideGrammar, KeyValueForms) {
  auto o = P("trainer.lr=0.1");
  EXPECT_EQ(o.type, OverrideType::kChange);
  EXPECT_EQ(o.key, "trainer.lr");
  ASSERT_EQ(o.value_type, ValueType::kElement);
  EXPECT_TRUE(o.value.is_float());
  EXPECT_DOUBLE_EQ(o.value.as_float(), 0.1);

  o = P("+tags.a=x");
  EXPECT_EQ(o.type, OverrideType::kAdd);
  EXPECT_EQ(o.key, "tags.a");
  EXPECT_EQ(o.value.as_string(), "x");
  EXPECT_EQ(o.key_element(), "+tags.a");

  o = P("++seed=3");
  EXPECT_EQ(o.type, OverrideType::kForceAdd);
  EXPECT_EQ(o.value.as_int(), 3);

  o = P("~trainer.lr");
  EXPECT_EQ(o.type, OverrideType::kDelete);
  EXPECT_EQ(o.value_type, ValueType::kNone);
  o = P("~seed=0");
  EXPECT_EQ(o.type, OverrideType::kDelete);
  EXPECT_EQ(o.value.as_int(), 0);

  o = P("server/db=mysql");
  EXPECT_EQ(o.key, "server/db");
  EXPECT_EQ(o.value.as_string(), "mysql");
  o = P("dataset@train=visa");
  EXPECT_EQ(o.key, "dataset");
  EXPECT_EQ(o.package, "train");
  EXPECT_EQ(o.key_element(), "dataset@train");
}

TEST(OverrideGrammar, Primitives) {
  EXPECT_TRUE(P("a=null").value.is_null());
  EXPECT_TRUE(P("a=NULL").value.is_null());
  EXPECT_EQ(P("a=True").value.as_bool(), true);
  EXPECT_EQ(P("a=FALSE").value.as_bool(), false);
  EXPECT_EQ(P("a=-42").value.as_int(), -42);
  EXPECT_EQ(P("a=1_000").value.as_int(), 1000);
  EXPECT_DOUBLE_EQ(P("a=1e-3").value.as_float(), 1e-3);
  EXPECT_DOUBLE_EQ(P("a=-1.5E+2").value.as_float(), -150.0);
  EXPECT_DOUBLE_EQ(P("a=.5").value.as_float(), 0.5);
  EXPECT_TRUE(P("a=1e-3").value.is_float());
  EXPECT_TRUE(std::isinf(P("a=inf").value.as_float()));
  EXPECT_LT(P("a=-inf").value.as_float(), 0);
  EXPECT_TRUE(std::isnan(P("a=nan").value.as_float()));
  // quoted strings stay strings
  EXPECT_EQ(P("a='1'").value.as_string(), "1");
  EXPECT_EQ(P("a=\"true\"").value.as_string(), "true");
  EXPECT_EQ(P("a='it\\'s, (fine)'").value.as_string(), "it's, (fine)");
  EXPECT_EQ(P("a=\"x = [y]\"").value.as_string(), "x = [y]");
  // unquoted: inner spaces kept, outer trimmed; escapes; empty value; interpolation kept as text
  EXPECT_EQ(P("a=  hello world  ").value.as_string(), "hello world");
  EXPECT_EQ(P("a=x\\,y").value.as_string(), "x,y");
  EXPECT_EQ(P("a=").value.as_string(), "");
  EXPECT_EQ(P("a=${b.c}").value.as_string(), "${b.c}");
  EXPECT_EQ(P("a=run_${seed}_x").value.as_string(), "run_${seed}_x");
  EXPECT_EQ(P("a=/data/mvtec").value.as_string(), "/data/mvtec");
  EXPECT_EQ(P("a=http://host:80").value.as_string(), "http://host:80");
}

TEST(OverrideGrammar, ListsAndDicts) {
  Node l = P("a=[1, b, 'c d', [2.5, null]]").value;
  ASSERT_TRUE(l.is_list());
  ASSERT_EQ(l.size(), 4u);
  EXPECT_EQ(l[0].as_int(), 1);
  EXPECT_EQ(l[1].as_string(), "b");
  EXPECT_EQ(l[2].as_string(), "c d");
  ASSERT_TRUE(l[3].is_list());
  EXPECT_DOUBLE_EQ(l[3][0].as_float(), 2.5);
  EXPECT_TRUE(l[3][1].is_null());
  EXPECT_EQ(P("a=[]").value.size(), 0u);

  Node d = P("a={x: 1, y: [a, b], 'z w': {q: true}}").value;
  ASSERT_TRUE(d.is_map());
  EXPECT_EQ(d.keys(), (std::vector<std::string>{"x", "y", "z w"}));
  EXPECT_EQ(d.at("x").as_int(), 1);
  EXPECT_EQ(d.at("y").size(), 2u);
  EXPECT_TRUE(d.at("z w").at("q").as_bool());
  EXPECT_TRUE(P("a={}").value.is_map());
}

TEST(OverrideGrammar, Sweeps) {
  auto o = P("a=1,2,3");
  EXPECT_EQ(o.value_type, ValueType::kChoice);
  EXPECT_EQ(texts(o.sweep_values()), (std::vector<std::string>{"1", "2", "3"}));
  o = P("a=x, 'y,z' ,[1,2]");
  EXPECT_EQ(texts(o.sweep_values()), (std::vector<std::string>{"x", "'y,z'", "[1,2]"}));
  o = P("+tags.b=choice(x, y, z)");
  EXPECT_EQ(o.type, OverrideType::kAdd);
  EXPECT_EQ(texts(o.sweep_values()), (std::vector<std::string>{"x", "y", "z"}));
  // range: stop exclusive, like Python's range
  EXPECT_EQ(texts(P("s=range(3)").sweep_values()), (std::vector<std::string>{"0", "1", "2"}));
  EXPECT_EQ(texts(P("s=range(1,4)").sweep_values()), (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(texts(P("s=range(5,0,-2)").sweep_values()), (std::vector<std::string>{"5", "3", "1"}));
  EXPECT_EQ(texts(P("s=range(start=2, stop=4)").sweep_values()), (std::vector<std::string>{"2", "3"}));
  // Hydra's documented float example: range(0,10,3.3) -> 0.0, 3.3, 6.6, 9.9
  auto f = P("lr=range(0,10,3.3)").sweep_values();
  ASSERT_EQ(f.size(), 4u);
  const double expect[] = {0.0, 3.3, 6.6, 9.9};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(f[i].is_float());
    EXPECT_DOUBLE_EQ(f[i].as_float(), expect[i]);
  }
  EXPECT_EQ(P("lr=range(0,1,0.25)").sweep_values().size(), 4u);  // 1.0 excluded
  // glob over group options
  o = P("method=glob(*)");
  EXPECT_EQ(o.value_type, ValueType::kGlob);
  std::vector<std::string> opts{"apt", "cops", "cops_lite", "winclip"};
  EXPECT_EQ(texts(o.sweep_values(opts)), opts);
  EXPECT_EQ(texts(P("method=glob(cops*)").sweep_values(opts)), (std::vector<std::string>{"cops", "cops_lite"}));
  EXPECT_EQ(texts(P("method=glob([a*,w*])").sweep_values(opts)), (std::vector<std::string>{"apt", "winclip"}));
  EXPECT_EQ(texts(P("method=glob(*, exclude=cops_*)").sweep_values(opts)),
            (std::vector<std::string>{"apt", "cops", "winclip"}));
}

TEST(OverrideGrammar, RenderRoundTrip) {
  for (const std::string& s : {"a=1", "a=x y", "a='1'", "a='a,b'", "a=[1,'x,y',{k:v}]", "a={p:1,q:[a,b]}",
                               "a=null", "a='null'", "a=1e-05", "a=-inf", "a=''", "a=\"it's\"", "a='${x}'"}) {
    Override o = P(s);
    std::string r = zsad::overrides::render_override(o, &o.value);
    Override back = P(r);
    EXPECT_TRUE(back.value == o.value) << s << " rendered as " << r;
  }
}

struct Bad {
  std::string input;
  std::string problem;
};

TEST(OverrideGrammar, MalformedInputsNameTheProblem) {
  const std::vector<Bad> bad = {
      {"=5", "missing key before '='"},
      {"", "empty override"},
      {"a", "missing '='"},
      {"+++a=1", "too many '+'"},
      {"a..b=1", "empty segment"},
      {"a.=1", "empty segment"},
      {"a b=1", "invalid character ' '"},
      {"@pkg=1", "missing group before '@'"},
      {"db@=1", "missing package name"},
      {"a=[1,2", "unbalanced '['"},
      {"a=1]", "unbalanced ']'"},
      {"a=[1,2]]", "unbalanced ']'"},
      {"a=1)", "unbalanced ')'"},
      {"a={x:1", "unbalanced '{'"},
      {"a=[1}", "mismatched '}'"},
      {"a={x:1]", "mismatched ']'"},
      {"a={x 1}", "expected ':' after dict key 'x'"},
      {"a={x:1,x:2}", "duplicate dict key 'x'"},
      {"a=\"unterminated", "unterminated quoted string"},
      {"a='x", "unterminated quoted string"},
      {"a=${b", "unterminated interpolation"},
      {"a=x=y", "unexpected '='"},
      {"a=1,,2", "empty value in sweep"},
      {"a=[1,,2]", "empty list element"},
      {"a=foo(1)", "unknown function 'foo'"},
      {"a=interval(0,1)", "optimizing sweepers"},
      {"a=choice()", "at least one value"},
      {"a=choice(1,2", "unbalanced '('"},
      {"a=[1,choice(2,3)]", "only allowed as the whole value"},
      {"a=range()", "range() needs 1 to 3 arguments"},
      {"a=range(1,2,3,4)", "range() needs 1 to 3 arguments"},
      {"a=range(1,2,0)", "step must not be 0"},
      {"a=range(a,b)", "must be numbers"},
      {"a=range(5,1)", "is empty"},
      {"a=range(1,x=2)", "has no argument 'x'"},
      {"a=glob()", "glob() needs a pattern"},
      {"~a=1,2", "takes one value"},
  };
  ASSERT_GE(bad.size(), 25u);
  for (const auto& b : bad) {
    try {
      parse_override(b.input);
      ADD_FAILURE() << "no error for '" << b.input << "'";
    } catch (const zsad::overrides::OverrideError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(b.problem), std::string::npos) << "'" << b.input << "' -> " << msg;
      EXPECT_NE(msg.find("override '" + b.input + "'"), std::string::npos) << msg;
      EXPECT_NE(msg.find("at column"), std::string::npos) << msg;
    }
  }
}

// Errors that need the config: missing keys without '+', deleting missing keys, schema types.
class OverrideSemantics : public ::testing::Test {
 protected:
  void SetUp() override {
    zsad_test::write_file(dir.path / "experiments/trainer/default.yaml", "lr: 0.001\nepochs: 1\n");
    zsad_test::write_file(dir.path / "experiments/trainer/fast.yaml", "lr: 0.01\n");
    zsad_test::write_file(dir.path / "experiments/exp.yaml",
                          "defaults:\n  - trainer: default\n  - _self_\nseed: 0\n");
  }
  std::string error_of(const std::vector<std::string>& ovs) {
    zsad::config::ComposeRequest req;
    req.experiment = (dir.path / "experiments/exp.yaml").string();
    req.overrides = ovs;
    try {
      zsad::config::compose(req);
    } catch (const zsad::Error& e) {
      return e.what();
    }
    return "";
  }
  zsad_test::TempDir dir;
};

TEST_F(OverrideSemantics, SemanticErrors) {
  const std::vector<Bad> bad = {
      {"trainer.lrr=0.1", "key 'trainer.lrr' is not in the config (did you mean 'trainer.lr'?); use '+trainer.lrr=...'"},
      {"nope.x=1", "key 'nope.x' is not in the config"},
      {"~nope", "cannot delete 'nope': key is not in the config"},
      {"~seed=5", "cannot delete 'seed': its value is 0"},
      {"+seed=1", "key 'seed' already exists"},
      {"trainer.lr=abc", "key 'trainer.lr' expects float, got string 'abc'"},
      {"seed=1.5", "key 'seed' expects int, got float 1.5"},
      {"trainer.optimizer=adagrad", "must be one of {adamw, adam, sgd}"},
      {"+trainer.lr_typo=1", "unknown key 'trainer.lr_typo' (did you mean 'trainer.lr'?)"},
      {"trainer=slow", "option 'slow' not found in config group 'trainer' (available: default, fast)"},
      {"launcher=local", "key 'launcher' is not in the config"},  // no launcher folder: a plain key
      {"seed=1,2", "is a sweep"},
      {"+trainer=fast", "group 'trainer' is already in the defaults list; use 'trainer=OPTION'"},
  };
  for (const auto& b : bad) {
    std::string msg = error_of({b.input});
    EXPECT_NE(msg.find(b.problem), std::string::npos) << "'" << b.input << "' -> " << msg;
  }
  // type errors name where the value came from
  std::string msg = error_of({"trainer.lr=abc"});
  EXPECT_NE(msg.find("override 'trainer.lr=abc'"), std::string::npos) << msg;
}

TEST_F(OverrideSemantics, GroupOverrideNotInDefaults) {
  zsad_test::write_file(dir.path / "experiments/launcher/local.yaml", "name: local\n");
  std::string msg = error_of({"launcher=local"});
  EXPECT_NE(msg.find("group 'launcher' is not in the defaults list; use '+launcher=local'"), std::string::npos) << msg;
  EXPECT_EQ(error_of({"+launcher=local"}), "");
  msg = error_of({"~launcher"});
  EXPECT_NE(msg.find("cannot delete group 'launcher'"), std::string::npos) << msg;
}
