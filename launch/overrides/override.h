#pragma once
// Hydra's command-line override grammar, parsed by hand so that every error names the problem
// and the column:
//   key=value  +key=value (add)  ++key=value (add or replace)  ~key / ~key=value (delete)
//   group=option  group@package=option (swap a config group; decided by compose: a key that names
//   a folder under experiments/ is a group)
//   values: null, true/false (any case), ints (1_000), floats (1e-3, inf, nan), 'quoted' or
//   "quoted" strings, unquoted strings (may contain spaces and ${interpolations}; escape
//   \ ( ) [ ] { } : = , with a backslash), lists [a, b], dicts {a: 1, b: [x]}, empty (key=).
//   sweeps: a,b,c   choice(a,b,c)   range(stop) range(start,stop[,step]) (stop exclusive, floats ok)
//   glob(pattern) glob([p1,p2], exclude=[p3]) over a config group's options.
#include <string>
#include <vector>

#include "common/error.h"
#include "launch/config/node.h"

namespace zsad::overrides {

// A syntax error in an override; message: "override 'TEXT': PROBLEM at column N".
class OverrideError : public UsageError {
 public:
  explicit OverrideError(const std::string& what) : UsageError(what) {}
};

enum class OverrideType { kChange, kAdd, kForceAdd, kDelete };
enum class ValueType { kNone, kElement, kChoice, kRange, kGlob };

struct Override {
  OverrideType type = OverrideType::kChange;
  std::string key;      // "trainer.lr", "method", "server/db"
  std::string package;  // from "group@package", "" if none
  ValueType value_type = ValueType::kNone;
  config::Node value;                  // kElement
  std::vector<config::Node> choices;   // kChoice ("a,b,c" or choice(...))
  config::Node range_start, range_stop, range_step;  // kRange (ints, or floats when any is a float)
  std::vector<std::string> glob_include, glob_exclude;  // kGlob
  std::string input;                   // the text as typed

  bool is_sweep() const { return value_type == ValueType::kChoice || value_type == ValueType::kRange || value_type == ValueType::kGlob; }
  std::string prefix() const;            // "", "+", "++", "~"
  std::string key_element() const;       // prefix + key (+ "@package")
  // The values of a sweep in order (range expanded). kGlob needs the group's options (sorted).
  std::vector<config::Node> sweep_values(const std::vector<std::string>& group_options = {}) const;
};

Override parse_override(const std::string& text);
std::vector<Override> parse_overrides(const std::vector<std::string>& texts);

// A value in override syntax such that parse_override("k=" + render_value(v)) gives v back:
// strings unquoted when safe, otherwise single-quoted; lists [a,b]; dicts {a:1}.
std::string render_value(const config::Node& v);

// "key=value" / "+key=value" / "~key" for one concrete (non-sweep) value.
std::string render_override(const Override& o, const config::Node* value);

// fnmatch-style matching used by glob(): '*' any run, '?' one char.
bool glob_match(const std::string& pattern, const std::string& s);

}  // namespace zsad::overrides
