#pragma once
// The config schema: every key a component reads is declared once with its type, default and a
// one-line doc. Validation rejects unknown keys (with the closest known key as a hint) and values
// of the wrong type (naming file:line:col, key, expected type and value).
//
// Registering keys (see docs/config.md):
//
//   // launch/config/schemas/my_component.cpp
//   #include "launch/config/schema.h"
//   namespace zsad::config {
//   void register_my_component_schema(Schema& s) {
//     s.add("trainer.lr", Type::kFloat, 1e-3, "peak learning rate");
//     s.add("trainer.optimizer", Type::kString, "adamw", "optimizer").choices({"adamw", "sgd"});
//     s.add("trainer.warmup_steps", Type::kInt, nullptr, "warm-up steps (null: none)");
//     s.add("dataset.classes", Type::kList, Node::list(), "class names (empty = all)");
//     s.add("method.extra", Type::kMap, Node::map(), "free-form method options");  // any keys below
//   }
//   }
// and add one line calling it to register_all_schemas() in launch/config/schemas/all.cpp.
// (Explicit calls, not static registrars: objects in static libraries that nothing references
// are dropped by the linker.)
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "launch/config/node.h"

namespace zsad::config {

enum class Type { kBool, kInt, kFloat, kString, kList, kMap, kAny };
const char* type_name(Type t);

struct KeySpec {
  std::string key;     // dotted, e.g. "trainer.lr"
  Type type = Type::kAny;
  Node default_value;  // null = no default (and null is accepted)
  std::string doc;
  bool nullable = false;             // null accepted (automatically true when the default is null)
  std::vector<std::string> allowed;  // for strings: the accepted values (empty = any)
  std::optional<double> min_value, max_value;  // for numbers: inclusive bounds; a bounded number must be finite

  KeySpec& choices(std::vector<std::string> values) {
    allowed = std::move(values);
    return *this;
  }
  KeySpec& at_least(double v) {
    min_value = v;
    return *this;
  }
  KeySpec& at_most(double v) {
    max_value = v;
    return *this;
  }
  KeySpec& optional() {
    nullable = true;
    return *this;
  }
};

class Schema {
 public:
  // Declares a key; re-declaring the same key replaces it. A kMap key holds free-form content:
  // nothing below it is checked. Intermediate sections ("trainer") are implicit.
  KeySpec& add(const std::string& key, Type type, Node default_value, const std::string& doc);
  // Documents a section ("trainer") for --help-config.
  void section(const std::string& prefix, const std::string& doc);

  const KeySpec* find(const std::string& key) const;
  // True when `key` is declared, lies below a kMap/kAny key, or is a section prefix of a declared key.
  bool accepts(const std::string& key) const;
  bool is_section(const std::string& key) const;

  // Adds missing keys that have a non-null default when their parent section exists in `cfg`
  // (top-level keys always), so `trainer.lr=...` works without the experiment naming it.
  void fill_defaults(Node& cfg) const;

  // Throws zsad::Error on the first unknown key or type mismatch. Ints are promoted to floats
  // in place for kFloat keys. Keys below "tags" (free-form) are always accepted.
  void validate(Node& cfg) const;

  // The closest declared key (edit distance over full keys and last segments), "" if none close.
  std::string suggest(const std::string& key) const;

  // --help-config text: every key with type, default and doc, grouped by section.
  std::string help() const;

  const std::vector<KeySpec>& keys() const { return keys_; }

 private:
  void validate_node(Node& n, const std::string& path) const;
  std::vector<KeySpec> keys_;
  std::vector<std::pair<std::string, std::string>> sections_;
};

// The process-wide schema: built on first use by register_all_schemas().
Schema& schema_registry();
void register_all_schemas(Schema& s);
// The keys launch/ itself reads (experiment, seed, output, launcher, task, sweep, tags).
void register_core_schema(Schema& s);
// eval.*, model.*, method.* of every registered method (launch/config/schemas/eval.cpp).
void register_eval_schema(Schema& s);

// Levenshtein distance (exposed for tests and other "did you mean" hints).
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace zsad::config
