#include "launch/config/node.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "common/error.h"

namespace zsad::config {

std::string Mark::str() const {
  if (line <= 0) return file.empty() ? std::string("<unknown>") : file;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

const char* kind_name(Node::Kind k) {
  switch (k) {
    case Node::Kind::kNull: return "null";
    case Node::Kind::kBool: return "bool";
    case Node::Kind::kInt: return "int";
    case Node::Kind::kFloat: return "float";
    case Node::Kind::kString: return "string";
    case Node::Kind::kList: return "list";
    case Node::Kind::kMap: return "map";
  }
  return "?";
}

namespace {
[[noreturn]] void type_error(const Node& n, const char* expected) {
  std::string v = n.is_scalar() ? " '" + n.scalar_text() + "'" : "";
  throw Error(n.mark().str() + ": expected " + expected + ", got " + kind_name(n.kind()) + v);
}
}  // namespace

bool Node::as_bool() const {
  if (kind_ != Kind::kBool) type_error(*this, "bool");
  return b_;
}
int64_t Node::as_int() const {
  if (kind_ != Kind::kInt) type_error(*this, "int");
  return i_;
}
double Node::as_float() const {
  if (kind_ == Kind::kInt) return static_cast<double>(i_);
  if (kind_ != Kind::kFloat) type_error(*this, "float");
  return f_;
}
const std::string& Node::as_string() const {
  if (kind_ != Kind::kString) type_error(*this, "string");
  return s_;
}

std::string format_float(double v) {
  if (std::isnan(v)) return ".nan";
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  char buf[64];
  for (int prec = 15; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  // Keep a '.' in the mantissa: "1.0", "1.0e-10". YAML 1.1 readers (PyYAML) need it to see a float.
  size_t e = s.find_first_of("eE");
  if (s.find('.') == std::string::npos && s.find('n') == std::string::npos) {
    if (e == std::string::npos) s += ".0";
    else s.insert(e, ".0");
  }
  return s;
}

std::string Node::scalar_text() const {
  switch (kind_) {
    case Kind::kNull: return "null";
    case Kind::kBool: return b_ ? "true" : "false";
    case Kind::kInt: return std::to_string(i_);
    case Kind::kFloat: return format_float(f_);
    case Kind::kString: return s_;
    case Kind::kList: return "[list]";
    case Kind::kMap: return "{map}";
  }
  return "";
}

bool Node::has(const std::string& key) const { return find(key) != nullptr; }

Node* Node::find(const std::string& key) {
  if (kind_ != Kind::kMap) return nullptr;
  for (size_t i = 0; i < keys_.size(); ++i)
    if (keys_[i] == key) return &items_[i];
  return nullptr;
}
const Node* Node::find(const std::string& key) const { return const_cast<Node*>(this)->find(key); }

Node& Node::at(const std::string& key) {
  Node* n = find(key);
  if (!n) throw Error(mark_.str() + ": missing key '" + key + "'");
  return *n;
}
const Node& Node::at(const std::string& key) const { return const_cast<Node*>(this)->at(key); }

Node& Node::set(const std::string& key, Node value) {
  if (kind_ == Kind::kNull) kind_ = Kind::kMap;
  if (kind_ != Kind::kMap) throw Error(mark_.str() + ": cannot set key '" + key + "' on a " + kind_name(kind_));
  if (Node* n = find(key)) {
    *n = std::move(value);
    return *n;
  }
  keys_.push_back(key);
  items_.push_back(std::move(value));
  return items_.back();
}

bool Node::erase(const std::string& key) {
  if (kind_ != Kind::kMap) return false;
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] == key) {
      keys_.erase(keys_.begin() + static_cast<long>(i));
      items_.erase(items_.begin() + static_cast<long>(i));
      return true;
    }
  }
  return false;
}

Node& Node::push_back(Node value) {
  if (kind_ == Kind::kNull) kind_ = Kind::kList;
  if (kind_ != Kind::kList) throw Error(mark_.str() + ": cannot append to a " + std::string(kind_name(kind_)));
  items_.push_back(std::move(value));
  return items_.back();
}

std::vector<std::string> split_path(const std::string& dotted) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : dotted) {
    if (c == '.') {
      if (cur.empty()) throw Error("invalid key '" + dotted + "': empty segment");
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (cur.empty()) throw Error("invalid key '" + dotted + "': empty segment");
  parts.push_back(cur);
  return parts;
}

std::string join_path(const std::vector<std::string>& parts) {
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? "." : "") + parts[i];
  return s;
}

namespace {
bool parse_index(const std::string& s, size_t* out) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  *out = static_cast<size_t>(std::stoul(s));
  return true;
}

Node* child(Node* n, const std::string& seg) {
  if (n->is_map()) return n->find(seg);
  size_t idx;
  if (n->is_list() && parse_index(seg, &idx) && idx < n->size()) return &n->items()[idx];
  return nullptr;
}
}  // namespace

Node* Node::find_path(const std::string& dotted) {
  Node* n = this;
  for (const auto& seg : split_path(dotted)) {
    n = child(n, seg);
    if (!n) return nullptr;
  }
  return n;
}
const Node* Node::find_path(const std::string& dotted) const { return const_cast<Node*>(this)->find_path(dotted); }

Node& Node::set_path(const std::string& dotted, Node value) {
  auto parts = split_path(dotted);
  Node* n = this;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    Node* c = child(n, parts[i]);
    if (!c) {
      if (!n->is_map() && !n->is_null())
        throw Error("cannot set '" + dotted + "': '" + join_path({parts.begin(), parts.begin() + static_cast<long>(i)}) +
                    "' is a " + kind_name(n->kind()));
      Node m = Node::map();
      m.set_mark(value.mark());
      c = &n->set(parts[i], std::move(m));
    }
    if (!c->is_map() && !c->is_list() && !c->is_null())
      throw Error("cannot set '" + dotted + "': '" + join_path({parts.begin(), parts.begin() + static_cast<long>(i) + 1}) +
                  "' is a " + kind_name(c->kind()) + " (" + c->mark().str() + ")");
    n = c;
  }
  size_t idx;
  if (n->is_list()) {
    if (!parse_index(parts.back(), &idx) || idx >= n->size())
      throw Error("cannot set '" + dotted + "': list index '" + parts.back() + "' out of range");
    n->items()[idx] = std::move(value);
    return n->items()[idx];
  }
  return n->set(parts.back(), std::move(value));
}

bool Node::erase_path(const std::string& dotted) {
  auto parts = split_path(dotted);
  Node* n = this;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    n = child(n, parts[i]);
    if (!n) return false;
  }
  size_t idx;
  if (n->is_list() && parse_index(parts.back(), &idx) && idx < n->size()) {
    n->items().erase(n->items().begin() + static_cast<long>(idx));
    return true;
  }
  return n->erase(parts.back());
}

void Node::set_mark_recursive(const Mark& m) {
  if (mark_.file.empty()) mark_ = m;
  for (auto& c : items_) c.set_mark_recursive(m);
}

bool operator==(const Node& a, const Node& b) {
  if (a.kind_ != b.kind_) return false;
  switch (a.kind_) {
    case Node::Kind::kNull: return true;
    case Node::Kind::kBool: return a.b_ == b.b_;
    case Node::Kind::kInt: return a.i_ == b.i_;
    case Node::Kind::kFloat: return a.f_ == b.f_ || (std::isnan(a.f_) && std::isnan(b.f_));
    case Node::Kind::kString: return a.s_ == b.s_;
    case Node::Kind::kList: return a.items_ == b.items_;
    case Node::Kind::kMap: return a.keys_ == b.keys_ && a.items_ == b.items_;
  }
  return false;
}

void merge_into(Node& dst, const Node& src) {
  if (dst.is_map() && src.is_map()) {
    for (size_t i = 0; i < src.size(); ++i) {
      const std::string& k = src.keys()[i];
      if (Node* d = dst.find(k)) {
        merge_into(*d, src.items()[i]);
      } else {
        dst.set(k, src.items()[i]);
      }
    }
    return;
  }
  dst = src;
}

namespace {
void collect_leaves(const Node& n, const std::string& prefix, std::vector<std::string>& out) {
  if (n.is_map() && n.size() > 0) {
    for (size_t i = 0; i < n.size(); ++i)
      collect_leaves(n.items()[i], prefix.empty() ? n.keys()[i] : prefix + "." + n.keys()[i], out);
  } else if (!prefix.empty()) {
    out.push_back(prefix);
  }
}
}  // namespace

std::vector<std::string> leaf_paths(const Node& root) {
  std::vector<std::string> out;
  collect_leaves(root, "", out);
  return out;
}

}  // namespace zsad::config
