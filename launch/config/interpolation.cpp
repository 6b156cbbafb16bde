#include "launch/config/interpolation.h"

#include <cstdlib>
#include <ctime>
#include <set>

#include "common/error.h"
#include "launch/config/yaml_io.h"

namespace zsad::config {

bool has_interpolation(const std::string& s) {
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    if (s[i] == '\\' && s[i + 1] == '$') {
      ++i;
      continue;
    }
    if (s[i] == '$' && s[i + 1] == '{') return true;
  }
  // an escaped "\${" still needs un-escaping
  return s.find("\\${") != std::string::npos;
}

namespace {

using Path = std::vector<std::string>;

struct Piece {
  bool expr = false;
  std::string text;  // literal text, or the expression inside ${...}
};

// Splits "a ${x} b \${y}" into literal and expression pieces. `where` names the key for errors.
std::vector<Piece> split_pieces(const std::string& s, const std::string& where) {
  std::vector<Piece> out;
  std::string lit;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '\\' && i + 2 < s.size() + 1 && s.compare(i, 3, "\\${") == 0) {
      lit += "${";
      i += 3;
      continue;
    }
    if (s[i] == '$' && i + 1 < s.size() && s[i + 1] == '{') {
      size_t depth = 1, j = i + 2;
      while (j < s.size() && depth > 0) {
        if (s[j] == '$' && j + 1 < s.size() && s[j + 1] == '{') {
          ++depth;
          j += 2;
          continue;
        }
        if (s[j] == '}') --depth;
        ++j;
      }
      if (depth != 0) throw Error(where + ": unterminated interpolation in '" + s + "' (missing '}')");
      if (!lit.empty()) out.push_back({false, lit});
      lit.clear();
      out.push_back({true, s.substr(i + 2, j - 1 - (i + 2))});
      i = j;
      continue;
    }
    lit += s[i++];
  }
  if (!lit.empty()) out.push_back({false, lit});
  return out;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

class Resolver {
 public:
  explicit Resolver(Node& root) : root_(root) {}

  void resolve(Node& n, const Path& path) {
    if (n.is_string() && has_interpolation(n.as_string())) {
      std::string key = join_path(path);
      if (done_.count(key)) return;  // already resolved; the text may hold a literal "${"
      if (in_progress_.count(key)) {
        std::string cycle;
        bool on = false;
        for (const auto& k : stack_) {
          if (k == key) on = true;
          if (on) cycle += k + " -> ";
        }
        throw Error(n.mark().str() + ": interpolation cycle: " + cycle + key);
      }
      in_progress_.insert(key);
      stack_.push_back(key);
      Mark m = n.mark();
      Node v = evaluate(n.as_string(), path, m);
      v.set_mark(m);
      v.set_mark_recursive(m);
      stack_.pop_back();
      in_progress_.erase(key);
      n = std::move(v);
      mark_done(n, key);
      return;
    }
    if (n.is_map()) {
      for (size_t i = 0; i < n.size(); ++i) {
        Path p = path;
        p.push_back(n.keys()[i]);
        resolve(n.items()[i], p);
      }
    } else if (n.is_list()) {
      for (size_t i = 0; i < n.size(); ++i) {
        Path p = path;
        p.push_back(std::to_string(i));
        resolve(n.items()[i], p);
      }
    }
  }

 private:
  std::string where(const Path& path, const Mark& m) const {
    return m.str() + ": key '" + join_path(path) + "'";
  }

  Node evaluate(const std::string& s, const Path& path, const Mark& m) {
    auto pieces = split_pieces(s, where(path, m));
    if (pieces.size() == 1 && pieces[0].expr) return evaluate_expr(pieces[0].text, path, m);
    std::string out;
    for (const auto& p : pieces) {
      if (!p.expr) {
        out += p.text;
        continue;
      }
      Node v = evaluate_expr(p.text, path, m);
      if (!v.is_scalar())
        throw Error(where(path, m) + ": '${" + p.text + "}' is a " + kind_name(v.kind()) +
                    " and cannot be placed inside a string");
      out += v.scalar_text();
    }
    return Node(out);
  }

  // Splits resolver arguments at top-level commas (commas inside ${...} or quotes stay).
  std::vector<std::string> split_args(const std::string& s) {
    std::vector<std::string> args;
    std::string cur;
    int depth = 0;
    char quote = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      char c = s[i];
      if (quote) {
        if (c == quote) quote = 0;
        cur += c;
        continue;
      }
      if (c == '\'' || c == '"') quote = c;
      if (c == '$' && i + 1 < s.size() && s[i + 1] == '{') ++depth;
      if (c == '}' && depth > 0) --depth;
      if (c == ',' && depth == 0) {
        args.push_back(trim(cur));
        cur.clear();
        continue;
      }
      cur += c;
    }
    args.push_back(trim(cur));
    return args;
  }

  std::string arg_text(const std::string& a, const Path& path, const Mark& m) {
    if (a.size() >= 2 && (a.front() == '\'' || a.front() == '"') && a.back() == a.front())
      return a.substr(1, a.size() - 2);
    if (has_interpolation(a)) return evaluate(a, path, m).scalar_text();
    return a;
  }

  Node evaluate_expr(const std::string& raw, const Path& path, const Mark& m) {
    std::string e = trim(raw);
    // resolver call "name:args"
    size_t colon = e.find(':');
    bool is_call = colon != std::string::npos && colon > 0;
    if (is_call) {
      for (size_t i = 0; i < colon; ++i) {
        char c = e[i];
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.')) is_call = false;
      }
    }
    if (is_call) {
      std::string name = e.substr(0, colon);
      auto args = split_args(e.substr(colon + 1));
      if (name == "env" || name == "oc.env") {
        if (args.empty() || args[0].empty() || args.size() > 2)
          throw Error(where(path, m) + ": '${" + e + "}': expected ${env:VAR} or ${env:VAR,default}");
        const char* v = std::getenv(args[0].c_str());
        if (v) return typed_scalar(v);
        if (args.size() == 2) {
          const std::string& d = args[1];
          if (d.size() >= 2 && (d.front() == '\'' || d.front() == '"') && d.back() == d.front())
            return Node(d.substr(1, d.size() - 2));
          if (has_interpolation(d)) return evaluate(d, path, m);
          return typed_scalar(d);
        }
        throw Error(where(path, m) + ": environment variable '" + args[0] +
                    "' is not set (give a default: ${env:" + args[0] + ",value})");
      }
      if (name == "now") {
        std::string fmt = arg_text(e.substr(colon + 1), path, m);
        std::time_t t = std::time(nullptr);
        std::tm tm{};
        localtime_r(&t, &tm);
        char buf[256];
        size_t n = std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
        return Node(std::string(buf, n));
      }
      throw Error(where(path, m) + ": unknown resolver '" + name + "' in '${" + e +
                  "}' (known: env, oc.env, now)");
    }
    if (e.empty()) throw Error(where(path, m) + ": empty interpolation '${}'");
    // key reference, absolute or relative
    Path target;
    size_t i = 0;
    if (e[0] == '.') {
      size_t dots = 0;
      while (i < e.size() && e[i] == '.') ++dots, ++i;
      if (dots > path.size())
        throw Error(where(path, m) + ": relative interpolation '${" + e + "}' goes above the config root");
      target.assign(path.begin(), path.end() - static_cast<long>(dots));
    }
    std::string rest = e.substr(i);
    // a[0] -> a.0
    std::string norm;
    for (char c : rest) {
      if (c == '[') norm += '.';
      else if (c != ']') norm += c;
    }
    if (!norm.empty()) {
      std::vector<std::string> segs;
      try {
        segs = split_path(norm);
      } catch (const Error&) {
        throw Error(where(path, m) + ": malformed interpolation key '${" + e + "}'");
      }
      target.insert(target.end(), segs.begin(), segs.end());
    }
    Node* n = &root_;
    Path cur;
    for (const auto& seg : target) {
      if (n->is_string() && has_interpolation(n->as_string())) resolve(*n, cur);
      Node* c = nullptr;
      if (n->is_map()) {
        c = n->find(seg);
      } else if (n->is_list()) {
        char* endp = nullptr;
        unsigned long idx = std::strtoul(seg.c_str(), &endp, 10);
        if (*endp == '\0' && idx < n->size()) c = &n->items()[idx];
      }
      if (!c)
        throw Error(where(path, m) + ": interpolation '${" + e + "}' refers to missing key '" + join_path(target) + "'");
      cur.push_back(seg);
      n = c;
    }
    resolve(*n, cur);
    return *n;
  }

  // Strings produced by resolution are final: literal "${" in them must not be resolved again.
  void mark_done(const Node& n, const std::string& key) {
    if (n.is_string()) done_.insert(key);
    for (size_t i = 0; i < n.items().size(); ++i)
      mark_done(n.items()[i], key + "." + (n.is_map() ? n.keys()[i] : std::to_string(i)));
  }

  Node& root_;
  std::set<std::string> done_;
  std::set<std::string> in_progress_;
  std::vector<std::string> stack_;
};

}  // namespace

void resolve_interpolations(Node& root) {
  Resolver r(root);
  r.resolve(root, {});
}

}  // namespace zsad::config
