#include "launch/overrides/override.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "launch/config/yaml_io.h"

namespace zsad::overrides {

using config::Node;

namespace {

bool is_space(char c) { return c == ' ' || c == '\t'; }
bool is_ident_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

class Parser {
 public:
  explicit Parser(const std::string& text) : s_(text) {}

  Override parse() {
    Override o;
    o.input = s_;
    mark_ = config::Mark{"override '" + s_ + "'", 0, 0};
    // prefix
    if (s_.compare(0, 3, "+++") == 0) fail("too many '+' (use +key=value to add or ++key=value to add or replace)", 0);
    if (s_.compare(0, 2, "++") == 0) {
      o.type = OverrideType::kForceAdd;
      pos_ = 2;
    } else if (!s_.empty() && s_[0] == '+') {
      o.type = OverrideType::kAdd;
      pos_ = 1;
    } else if (!s_.empty() && s_[0] == '~') {
      o.type = OverrideType::kDelete;
      pos_ = 1;
    }
    if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '~'))
      fail(std::string("unexpected '") + s_[pos_] + "' after the prefix", pos_);
    // key
    size_t key_begin = pos_;
    size_t eq = s_.find('=', pos_);
    size_t key_end = eq == std::string::npos ? s_.size() : eq;
    std::string key = s_.substr(key_begin, key_end - key_begin);
    // trim
    size_t kb = key.find_first_not_of(" \t"), ke = key.find_last_not_of(" \t");
    if (kb == std::string::npos) {
      if (eq == std::string::npos) fail("empty override (expected key=value)", 0);
      fail("missing key before '='", key_end);
    }
    key = key.substr(kb, ke - kb + 1);
    key_begin += kb;
    std::string pkg;
    if (auto at = key.find('@'); at != std::string::npos) {
      pkg = key.substr(at + 1);
      key = key.substr(0, at);
      if (pkg.empty()) fail("missing package name after '@'", key_begin + at + 1);
      if (key.empty()) fail("missing group before '@'", key_begin);
    }
    check_key(key, key_begin, "key");
    if (!pkg.empty()) check_key(pkg, key_begin + key.size() + 1, "package");
    o.key = key;
    o.package = pkg;
    if (eq == std::string::npos) {
      if (o.type == OverrideType::kDelete) return o;
      fail("missing '=' (expected key=value; ~key deletes a key)", s_.size());
    }
    pos_ = eq + 1;
    skip_ws();
    if (at_end()) {  // "key=" is the empty string
      o.value_type = ValueType::kElement;
      o.value = Node(std::string());
      o.value.set_mark(mark_);
      return o;
    }
    // function call at the top level?
    size_t save = pos_;
    std::string ident;
    while (pos_ < s_.size() && (is_ident_char(s_[pos_]) || s_[pos_] == '.')) ident += s_[pos_++];
    size_t after_ident = pos_;
    skip_ws();
    if (!ident.empty() && pos_ < s_.size() && s_[pos_] == '(') {
      parse_function(o, ident, save);
      skip_ws();
      if (!at_end()) fail(std::string("unexpected '") + s_[pos_] + "' after " + ident + "(...)", pos_);
    } else {
      (void)after_ident;
      pos_ = save;
      std::vector<Node> elems;
      elems.push_back(parse_element(true));
      skip_ws();
      while (!at_end() && s_[pos_] == ',') {
        ++pos_;
        skip_ws();
        if (at_end() || s_[pos_] == ',') fail("empty value in sweep list", pos_);
        elems.push_back(parse_element(true));
        skip_ws();
      }
      if (!at_end()) unexpected();
      if (elems.size() == 1) {
        o.value_type = ValueType::kElement;
        o.value = elems[0];
      } else {
        o.value_type = ValueType::kChoice;
        o.choices = elems;
      }
    }
    if (o.type == OverrideType::kDelete && o.is_sweep()) fail("~key=value takes one value, not a sweep", eq + 1);
    return o;
  }

 private:
  [[noreturn]] void fail(const std::string& problem, size_t col) const {
    throw OverrideError("override '" + s_ + "': " + problem + " at column " + std::to_string(col + 1));
  }
  [[noreturn]] void unexpected() const {
    char c = s_[pos_];
    if (c == ']' || c == '}' || c == ')') fail(std::string("unbalanced '") + c + "' (nothing to close)", pos_);
    fail(std::string("unexpected '") + c + "'", pos_);
  }

  void check_key(const std::string& key, size_t col, const char* what) const {
    for (size_t i = 0; i < key.size(); ++i) {
      char c = key[i];
      if (!(is_ident_char(c) || c == '.' || c == '/'))
        fail(std::string("invalid character '") + c + "' in " + what + " '" + key + "'", col + i);
    }
    if (key.front() == '.' || key.back() == '.' || key.find("..") != std::string::npos)
      fail(std::string("empty segment in ") + what + " '" + key + "'", col);
    if (key.front() == '/' && key.size() == 1) fail(std::string("empty ") + what, col);
    if (key.find("//") != std::string::npos || key.back() == '/')
      fail(std::string("empty path segment in ") + what + " '" + key + "'", col);
  }

  bool at_end() const { return pos_ >= s_.size(); }
  void skip_ws() {
    while (pos_ < s_.size() && is_space(s_[pos_])) ++pos_;
  }

  Node marked(Node n) const {
    n.set_mark(mark_);
    return n;
  }

  // element: list | dict | quoted | primitive. `top` = directly in the override (':' allowed).
  Node parse_element(bool top) {
    skip_ws();
    if (at_end()) fail("missing value", pos_);
    char c = s_[pos_];
    if (c == '[') return parse_list();
    if (c == '{') return parse_dict();
    if (c == '\'' || c == '"') {
      Node q = parse_quoted();
      return q;
    }
    return parse_primitive(top);
  }

  Node parse_quoted() {
    char q = s_[pos_];
    size_t open = pos_++;
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != q) {
      if (s_[pos_] == '\\' && pos_ + 1 < s_.size() && (s_[pos_ + 1] == q || s_[pos_ + 1] == '\\')) ++pos_;
      out += s_[pos_++];
    }
    if (at_end()) fail(std::string("unterminated quoted string (missing closing ") + q + ")", open);
    ++pos_;
    return marked(Node(out));
  }

  Node parse_primitive(bool top) {
    size_t begin = pos_;
    std::string out;
    bool literal = false;  // escapes or interpolation: always a string
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == '\\' && pos_ + 1 < s_.size()) {
        out += s_[pos_ + 1];
        pos_ += 2;
        literal = true;
        continue;
      }
      if (c == '$' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '{') {
        size_t open = pos_;
        int depth = 0;
        while (pos_ < s_.size()) {
          if (s_[pos_] == '{') ++depth;
          if (s_[pos_] == '}' && --depth == 0) break;
          out += s_[pos_++];
        }
        if (at_end()) fail("unterminated interpolation '${' (missing '}')", open);
        out += s_[pos_++];
        literal = true;
        continue;
      }
      if (c == ',' || c == ']' || c == '}') break;
      if (c == ':' && !top) break;
      if (c == '(' ) {
        std::string name = out;
        while (!name.empty() && is_space(name.back())) name.pop_back();
        if (!name.empty() && name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.") == std::string::npos)
          fail("function call '" + name + "(...)' is only allowed as the whole value, not inside a list or dict", begin);
        fail("unexpected '(' (quote the value or escape it as \\()", pos_);
      }
      if (c == ')') fail("unbalanced ')' (nothing to close)", pos_);
      if (c == '[' || c == '{') fail(std::string("unexpected '") + c + "' inside a value (quote the value or escape it)", pos_);
      if (c == '\'' || c == '"') fail(std::string("unexpected quote ") + c + " inside an unquoted value", pos_);
      if (c == '=') fail("unexpected '=' in value (quote the value or escape it as \\=)", pos_);
      out += c;
      ++pos_;
    }
    while (!out.empty() && is_space(out.back())) out.pop_back();
    if (out.empty()) fail("missing value", begin);
    if (literal) return marked(Node(out));
    return marked(config::typed_scalar(out));
  }

  Node parse_list() {
    size_t open = pos_++;
    Node list = marked(Node::list());
    skip_ws();
    if (!at_end() && s_[pos_] == ']') {
      ++pos_;
      return list;
    }
    while (true) {
      skip_ws();
      if (at_end()) fail("unbalanced '[' (missing ']')", open);
      if (s_[pos_] == ',' || s_[pos_] == ']') fail("empty list element", pos_);
      list.push_back(parse_element(false));
      skip_ws();
      if (at_end()) fail("unbalanced '[' (missing ']')", open);
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == ']') {
        ++pos_;
        return list;
      }
      if (s_[pos_] == '}') fail("mismatched '}' inside '[' (expected ']')", pos_);
      fail(std::string("unexpected '") + s_[pos_] + "' in list (expected ',' or ']')", pos_);
    }
  }

  Node parse_dict() {
    size_t open = pos_++;
    Node dict = marked(Node::map());
    skip_ws();
    if (!at_end() && s_[pos_] == '}') {
      ++pos_;
      return dict;
    }
    while (true) {
      skip_ws();
      if (at_end()) fail("unbalanced '{' (missing '}')", open);
      std::string key;
      size_t kpos = pos_;
      if (s_[pos_] == '\'' || s_[pos_] == '"') {
        key = parse_quoted().as_string();
      } else {
        while (pos_ < s_.size() && (is_ident_char(s_[pos_]) || s_[pos_] == '.')) key += s_[pos_++];
      }
      if (key.empty()) fail("missing dict key", kpos);
      skip_ws();
      if (at_end()) fail("unbalanced '{' (missing '}')", open);
      if (s_[pos_] != ':') fail("expected ':' after dict key '" + key + "'", pos_);
      ++pos_;
      if (dict.has(key)) fail("duplicate dict key '" + key + "'", kpos);
      dict.set(key, parse_element(false));
      skip_ws();
      if (at_end()) fail("unbalanced '{' (missing '}')", open);
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == '}') {
        ++pos_;
        return dict;
      }
      if (s_[pos_] == ']') fail("mismatched ']' inside '{' (expected '}')", pos_);
      fail(std::string("unexpected '") + s_[pos_] + "' in dict (expected ',' or '}')", pos_);
    }
  }

  // Function arguments: elements or name=element; returns positional and keyword args.
  void parse_args(const std::string& fname, size_t open, std::vector<Node>& pos_args,
                  std::vector<std::pair<std::string, Node>>& kw_args) {
    skip_ws();
    if (!at_end() && s_[pos_] == ')') {
      ++pos_;
      return;
    }
    while (true) {
      skip_ws();
      if (at_end()) fail("unbalanced '(' in " + fname + "(...) (missing ')')", open);
      if (s_[pos_] == ',' || s_[pos_] == ')') fail("empty argument in " + fname + "(...)", pos_);
      // keyword?
      size_t save = pos_;
      std::string name;
      while (pos_ < s_.size() && is_ident_char(s_[pos_])) name += s_[pos_++];
      skip_ws();
      if (!name.empty() && pos_ < s_.size() && s_[pos_] == '=') {
        ++pos_;
        kw_args.emplace_back(name, parse_arg(fname, open));
      } else {
        pos_ = save;
        if (!kw_args.empty()) fail("positional argument after a keyword argument in " + fname + "(...)", pos_);
        pos_args.push_back(parse_arg(fname, open));
      }
      skip_ws();
      if (at_end()) fail("unbalanced '(' in " + fname + "(...) (missing ')')", open);
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == ')') {
        ++pos_;
        return;
      }
      fail(std::string("unexpected '") + s_[pos_] + "' in " + fname + "(...) (expected ',' or ')')", pos_);
    }
  }

  Node parse_arg(const std::string& fname, size_t open) {
    skip_ws();
    if (at_end()) fail("unbalanced '(' in " + fname + "(...) (missing ')')", open);
    char c = s_[pos_];
    if (c == '[' || c == '{' || c == '\'' || c == '"') return parse_element(false);
    // primitive up to , or )
    size_t begin = pos_;
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != ',' && s_[pos_] != ')') {
      if (s_[pos_] == '(') fail("nested function calls are not supported in " + fname + "(...)", pos_);
      if (s_[pos_] == '\\' && pos_ + 1 < s_.size()) ++pos_;
      out += s_[pos_++];
    }
    while (!out.empty() && is_space(out.back())) out.pop_back();
    if (out.empty()) fail("empty argument in " + fname + "(...)", begin);
    return marked(config::typed_scalar(out));
  }

  void parse_function(Override& o, const std::string& name, size_t name_pos) {
    size_t open = pos_++;
    std::vector<Node> args;
    std::vector<std::pair<std::string, Node>> kw;
    if (name == "choice") {
      parse_args(name, open, args, kw);
      if (!kw.empty()) fail("choice() takes no keyword arguments", name_pos);
      if (args.empty()) fail("choice() needs at least one value", name_pos);
      o.value_type = ValueType::kChoice;
      o.choices = args;
      return;
    }
    if (name == "range") {
      parse_args(name, open, args, kw);
      for (auto& [k, v] : kw) {
        if (k != "start" && k != "stop" && k != "step") fail("range() has no argument '" + k + "'", name_pos);
        (void)v;
      }
      std::vector<Node> a = args;
      Node start = Node(int64_t{0}), stop, step = Node(int64_t{1});
      if (a.size() + kw.size() == 0 || a.size() > 3)
        fail("range() needs 1 to 3 arguments: range(stop) or range(start, stop[, step])", name_pos);
      if (a.size() == 1) {
        stop = a[0];
      } else if (a.size() >= 2) {
        start = a[0];
        stop = a[1];
        if (a.size() == 3) step = a[2];
      }
      for (auto& [k, v] : kw) (k == "start" ? start : k == "stop" ? stop : step) = v;
      if (stop.is_null()) fail("range() needs a stop value", name_pos);
      for (const Node* n : {&start, &stop, &step})
        if (!n->is_number())
          fail("range() arguments must be numbers, got '" + n->scalar_text() + "'", name_pos);
      if (step.as_float() == 0.0) fail("range() step must not be 0", name_pos);
      if (!std::isfinite(start.as_float()) || !std::isfinite(stop.as_float()) || !std::isfinite(step.as_float()))
        fail("range() arguments must be finite", name_pos);
      o.value_type = ValueType::kRange;
      o.range_start = start;
      o.range_stop = stop;
      o.range_step = step;
      if (o.sweep_values().empty())
        fail("range(" + start.scalar_text() + ", " + stop.scalar_text() + ", " + step.scalar_text() +
                 ") is empty (stop is exclusive)",
             name_pos);
      return;
    }
    if (name == "glob") {
      parse_args(name, open, args, kw);
      auto strings = [&](const Node& n, std::vector<std::string>& out) {
        if (n.is_list()) {
          for (const auto& e : n.items()) out.push_back(e.scalar_text());
        } else {
          out.push_back(n.scalar_text());
        }
      };
      if (args.empty() && kw.empty()) fail("glob() needs a pattern: glob(*) or glob([a*,b*], exclude=c*)", name_pos);
      if (args.size() > 2) fail("glob() takes at most 2 arguments (include, exclude)", name_pos);
      if (!args.empty()) strings(args[0], o.glob_include);
      if (args.size() == 2) strings(args[1], o.glob_exclude);
      for (auto& [k, v] : kw) {
        if (k == "include") strings(v, o.glob_include);
        else if (k == "exclude") strings(v, o.glob_exclude);
        else fail("glob() has no argument '" + k + "'", name_pos);
      }
      if (o.glob_include.empty()) fail("glob() needs an include pattern", name_pos);
      o.value_type = ValueType::kGlob;
      return;
    }
    if (name == "interval" || name == "tag")
      fail(name + "() is only meaningful for optimizing sweepers; zsad's sweeper expands choice, range and glob",
           name_pos);
    fail("unknown function '" + name + "' (known: choice, range, glob)", name_pos);
  }

  const std::string& s_;
  size_t pos_ = 0;
  config::Mark mark_;
};

}  // namespace

std::string Override::prefix() const {
  switch (type) {
    case OverrideType::kChange: return "";
    case OverrideType::kAdd: return "+";
    case OverrideType::kForceAdd: return "++";
    case OverrideType::kDelete: return "~";
  }
  return "";
}

std::string Override::key_element() const { return prefix() + key + (package.empty() ? "" : "@" + package); }

bool glob_match(const std::string& p, const std::string& s) {
  size_t pi = 0, si = 0, star = std::string::npos, mark = 0;
  while (si < s.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == s[si])) {
      ++pi;
      ++si;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (star != std::string::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

std::vector<Node> Override::sweep_values(const std::vector<std::string>& group_options) const {
  std::vector<Node> out;
  switch (value_type) {
    case ValueType::kNone: break;
    case ValueType::kElement: out.push_back(value); break;
    case ValueType::kChoice: out = choices; break;
    case ValueType::kRange: {
      bool ints = range_start.is_int() && range_stop.is_int() && range_step.is_int();
      if (ints) {
        int64_t a = range_start.as_int(), b = range_stop.as_int(), st = range_step.as_int();
        for (int64_t v = a; st > 0 ? v < b : v > b; v += st) {
          out.push_back(Node(v));
          if (out.size() > 100000) throw OverrideError("override '" + input + "': range() yields more than 100000 values");
        }
      } else {
        double a = range_start.as_float(), b = range_stop.as_float(), st = range_step.as_float();
        double eps = std::abs(st) * 1e-9;
        for (int64_t i = 0;; ++i) {
          double v = a + static_cast<double>(i) * st;
          if (st > 0 ? v >= b - eps : v <= b + eps) break;
          // 3 * 3.3 is 9.899999999999999 in binary; Hydra shows 9.9, so round to 15 digits.
          char buf[64];
          std::snprintf(buf, sizeof buf, "%.15g", v);
          out.push_back(Node(std::strtod(buf, nullptr)));
          if (out.size() > 100000) throw OverrideError("override '" + input + "': range() yields more than 100000 values");
        }
      }
      break;
    }
    case ValueType::kGlob:
      for (const auto& opt : group_options) {
        bool inc = false, exc = false;
        for (const auto& p : glob_include) inc = inc || glob_match(p, opt);
        for (const auto& p : glob_exclude) exc = exc || glob_match(p, opt);
        if (inc && !exc) out.push_back(Node(opt));
      }
      break;
  }
  for (auto& n : out) n.set_mark(config::Mark{"override '" + input + "'", 0, 0});
  return out;
}

Override parse_override(const std::string& text) { return Parser(text).parse(); }

std::vector<Override> parse_overrides(const std::vector<std::string>& texts) {
  std::vector<Override> out;
  for (const auto& t : texts) out.push_back(parse_override(t));
  return out;
}

std::string render_value(const Node& v) {
  switch (v.kind()) {
    case Node::Kind::kNull: return "null";
    case Node::Kind::kBool:
    case Node::Kind::kInt: return v.scalar_text();
    case Node::Kind::kFloat: {
      std::string s = v.scalar_text();
      if (s == ".inf") return "inf";
      if (s == "-.inf") return "-inf";
      if (s == ".nan") return "nan";
      return s;
    }
    case Node::Kind::kString: {
      const std::string& s = v.as_string();
      bool safe = !s.empty() && !is_space(s.front()) && !is_space(s.back()) && config::typed_scalar(s).is_string();
      for (char c : s)
        if (std::string("\\()[]{}:=,'\"$").find(c) != std::string::npos || c == '\n') safe = false;
      if (safe) return s;
      std::string q = "'";
      for (char c : s) {
        if (c == '\'' || c == '\\') q += '\\';
        q += c;
      }
      return q + "'";
    }
    case Node::Kind::kList: {
      std::string s = "[";
      for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + render_value(v[i]);
      return s + "]";
    }
    case Node::Kind::kMap: {
      std::string s = "{";
      for (size_t i = 0; i < v.size(); ++i) {
        const std::string& k = v.keys()[i];
        bool plain = !k.empty();
        for (char c : k)
          if (!(is_ident_char(c) || c == '.')) plain = false;
        s += (i ? "," : "") + (plain ? k : render_value(Node(k))) + ":" + render_value(v.items()[i]);
      }
      return s + "}";
    }
  }
  return "";
}

std::string render_override(const Override& o, const Node* value) {
  std::string s = o.key_element();
  if (!value) return s;
  return s + "=" + render_value(*value);
}

}  // namespace zsad::overrides
