#pragma once
// zsad's own config tree. yaml-cpp is used only to read and write text: its nodes have reference
// semantics (assigning one node to another aliases them), which corrupts documents during
// merges, so the model is this value type. Maps keep insertion order; every value remembers
// where it came from (file:line:col, or the command-line override that set it).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace zsad::config {

// Where a value was written. `file` is a path, or a description such as "override 'a=1'".
struct Mark {
  std::string file;
  int line = 0;    // 1-based; 0 = unknown
  int column = 0;  // 1-based
  std::string str() const;  // "file:line:col" (or just `file` when no line is known)
};

class Node {
 public:
  enum class Kind { kNull, kBool, kInt, kFloat, kString, kList, kMap };

  Node() = default;  // null
  Node(std::nullptr_t) {}
  Node(bool b) : kind_(Kind::kBool), b_(b) {}
  Node(int v) : kind_(Kind::kInt), i_(v) {}
  Node(int64_t v) : kind_(Kind::kInt), i_(v) {}
  Node(double v) : kind_(Kind::kFloat), f_(v) {}
  Node(const char* s) : kind_(Kind::kString), s_(s) {}
  Node(std::string s) : kind_(Kind::kString), s_(std::move(s)) {}

  static Node map() { Node n; n.kind_ = Kind::kMap; return n; }
  static Node list() { Node n; n.kind_ = Kind::kList; return n; }

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_map() const { return kind_ == Kind::kMap; }
  bool is_scalar() const { return kind_ != Kind::kList && kind_ != Kind::kMap; }

  // Typed access; throws zsad::Error naming the mark and the actual type on mismatch.
  bool as_bool() const;
  int64_t as_int() const;
  double as_float() const;  // ints are promoted
  const std::string& as_string() const;

  // Scalar rendered as text (the form used in overrides and string interpolation).
  std::string scalar_text() const;

  // --- map ---
  size_t size() const { return items_.size(); }
  const std::vector<std::string>& keys() const { return keys_; }
  bool has(const std::string& key) const;
  Node* find(const std::string& key);
  const Node* find(const std::string& key) const;
  Node& at(const std::string& key);              // throws when missing
  const Node& at(const std::string& key) const;  // throws when missing
  Node& set(const std::string& key, Node value);  // insert at the end or replace in place
  bool erase(const std::string& key);
  // --- list ---
  Node& push_back(Node value);
  Node& operator[](size_t i) { return items_.at(i); }
  const Node& operator[](size_t i) const { return items_.at(i); }
  // Children of a list or map, in order (for a map, parallel to keys()).
  std::vector<Node>& items() { return items_; }
  const std::vector<Node>& items() const { return items_; }

  // --- dotted paths ("trainer.optim.lr", list elements by index: "a.0") ---
  const Node* find_path(const std::string& dotted) const;
  Node* find_path(const std::string& dotted);
  // Creates intermediate maps; throws when an intermediate is a scalar.
  Node& set_path(const std::string& dotted, Node value);
  bool erase_path(const std::string& dotted);

  const Mark& mark() const { return mark_; }
  void set_mark(Mark m) { mark_ = std::move(m); }
  // For a map value: where its key was written (unknown-key errors point there); else mark().
  const Mark& key_mark() const { return key_mark_.file.empty() ? mark_ : key_mark_; }
  void set_key_mark(Mark m) { key_mark_ = std::move(m); }
  // Sets the mark on this node and every descendant that has none.
  void set_mark_recursive(const Mark& m);

  // Structural equality (kinds, values, key order); marks are ignored; NaN equals NaN.
  friend bool operator==(const Node& a, const Node& b);
  friend bool operator!=(const Node& a, const Node& b) { return !(a == b); }

 private:
  Kind kind_ = Kind::kNull;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0.0;
  std::string s_;
  std::vector<std::string> keys_;  // map keys, parallel to items_
  std::vector<Node> items_;
  Mark mark_;
  Mark key_mark_;
};

const char* kind_name(Node::Kind k);

// Recursive merge (OmegaConf semantics): maps merge key by key, everything else (lists included)
// is replaced by `src`.
void merge_into(Node& dst, const Node& src);

// Split "a.b.0" into {"a","b","0"}; throws on empty segments.
std::vector<std::string> split_path(const std::string& dotted);
std::string join_path(const std::vector<std::string>& parts);

// Formats a float so that reading it back yields the same double and it still reads as a float
// ("1.0", "0.001", "1e-10", ".inf", ".nan").
std::string format_float(double v);

// All leaf paths (scalars, lists, empty maps) in document order.
std::vector<std::string> leaf_paths(const Node& root);

}  // namespace zsad::config
