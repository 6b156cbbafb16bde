#include "launch/config/yaml_io.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

#include "common/error.h"

namespace zsad::config {

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Digits with optional single '_' separators between digits.
bool digits_ok(const std::string& s, size_t b, size_t e) {
  if (b >= e) return false;
  if (!is_digit(s[b]) || !is_digit(s[e - 1])) return false;
  for (size_t i = b; i < e; ++i) {
    if (s[i] == '_') {
      if (!is_digit(s[i - 1]) || !is_digit(s[i + 1])) return false;
    } else if (!is_digit(s[i])) {
      return false;
    }
  }
  return true;
}

std::string strip_underscores(const std::string& s) {
  std::string o;
  for (char c : s)
    if (c != '_') o += c;
  return o;
}

bool looks_int(const std::string& s) {
  size_t b = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
  return digits_ok(s, b, s.size());
}

// [sign] (digits [. [digits]] | . digits) [e [sign] digits]
bool looks_float(const std::string& s) {
  size_t i = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
  size_t mant_b = i;
  size_t dot = s.find('.', i);
  size_t e = s.find_first_of("eE", i);
  size_t mant_e = e == std::string::npos ? s.size() : e;
  bool mant_ok;
  bool has_dot = dot != std::string::npos && dot < mant_e;
  if (has_dot) {
    bool left = dot == mant_b || digits_ok(s, mant_b, dot);
    bool right = dot + 1 == mant_e || digits_ok(s, dot + 1, mant_e);
    bool any = dot > mant_b || dot + 1 < mant_e;
    mant_ok = left && right && any;
  } else {
    mant_ok = digits_ok(s, mant_b, mant_e);
  }
  if (!mant_ok) return false;
  if (e == std::string::npos) return has_dot;
  size_t j = e + 1;
  if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
  return digits_ok(s, j, s.size());
}

}  // namespace

Node typed_scalar(const std::string& text) {
  const std::string& s = text;
  if (s.empty() || s == "~") return Node();
  std::string l = lower(s);
  if (l == "null") return Node();
  if (l == "true") return Node(true);
  if (l == "false") return Node(false);
  if (l == "inf" || l == ".inf" || l == "+inf" || l == "+.inf") return Node(std::numeric_limits<double>::infinity());
  if (l == "-inf" || l == "-.inf") return Node(-std::numeric_limits<double>::infinity());
  if (l == "nan" || l == ".nan") return Node(std::numeric_limits<double>::quiet_NaN());
  if (looks_int(s)) {
    errno = 0;
    std::string d = strip_underscores(s);
    long long v = std::strtoll(d.c_str(), nullptr, 10);
    if (errno == ERANGE) return Node(std::strtod(d.c_str(), nullptr));  // too big for int64
    return Node(static_cast<int64_t>(v));
  }
  if (looks_float(s)) return Node(std::strtod(strip_underscores(s).c_str(), nullptr));
  return Node(s);
}

namespace {

Mark to_mark(const YAML::Mark& m, const std::string& origin) {
  return Mark{origin, m.line + 1, m.column + 1};
}

Node convert(const YAML::Node& y, const std::string& origin) {
  Node out;
  switch (y.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      out = Node();
      break;
    case YAML::NodeType::Scalar:
      // yaml-cpp tags plain scalars "?" and quoted/block scalars "!": only plain ones are typed.
      out = (y.Tag() == "?" || y.Tag().empty()) ? typed_scalar(y.Scalar()) : Node(y.Scalar());
      break;
    case YAML::NodeType::Sequence:
      out = Node::list();
      for (const auto& item : y) out.push_back(convert(item, origin));
      break;
    case YAML::NodeType::Map:
      out = Node::map();
      for (const auto& kv : y) {
        if (!kv.first.IsScalar())
          throw Error(to_mark(kv.first.Mark(), origin).str() + ": map keys must be scalars");
        std::string key = kv.first.Scalar();
        if (out.has(key))
          throw Error(to_mark(kv.first.Mark(), origin).str() + ": duplicate key '" + key + "'");
        out.set(key, convert(kv.second, origin)).set_key_mark(to_mark(kv.first.Mark(), origin));
      }
      break;
  }
  out.set_mark(to_mark(y.Mark(), origin));
  return out;
}

}  // namespace

Node load_yaml_string(const std::string& text, const std::string& origin) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    throw Error(to_mark(e.mark, origin).str() + ": YAML syntax error: " + e.msg);
  }
  if (docs.size() > 1) throw Error(origin + ": expected one YAML document, found " + std::to_string(docs.size()));
  if (docs.empty() || docs[0].IsNull()) {
    Node m = Node::map();
    m.set_mark(Mark{origin, 1, 1});
    return m;
  }
  return convert(docs[0], origin);
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot read file");
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

Node load_yaml_file(const std::string& path) { return load_yaml_string(read_text_file(path), path); }

std::string package_header(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos) continue;
    if (line[b] != '#') break;
    std::string body = line.substr(b + 1);
    size_t p = body.find_first_not_of(" \t");
    if (p != std::string::npos && body.compare(p, 8, "@package") == 0) {
      std::string rest = body.substr(p + 8);
      size_t s = rest.find_first_not_of(" \t");
      size_t e = rest.find_last_not_of(" \t\r");
      return s == std::string::npos ? std::string() : rest.substr(s, e - s + 1);
    }
  }
  return "";
}

namespace {

// Plain scalars that YAML 1.1 readers (PyYAML, used by Python aggregation scripts) would not read
// as strings: yes/no/on/off/y/n, and number-like text (0x1F, 1:20, 1_0). Quoting them keeps the
// printed config readable identically everywhere.
bool yaml11_special(const std::string& s) {
  std::string l = lower(s);
  for (const char* w : {"yes", "no", "on", "off", "y", "n"})
    if (l == w) return true;
  size_t i = (!s.empty() && (s[0] == '+' || s[0] == '-' || s[0] == '.')) ? 1 : 0;
  if (i < s.size() && s[0] == '.' ) return true;
  return i < s.size() && is_digit(s[i]);
}

void emit(YAML::Emitter& out, const Node& n, const EmitOptions& opts) {
  switch (n.kind()) {
    case Node::Kind::kNull: out << YAML::Null; break;
    case Node::Kind::kBool: out << (n.as_bool() ? "true" : "false"); break;
    case Node::Kind::kInt: out << std::to_string(n.as_int()); break;
    case Node::Kind::kFloat: out << format_float(n.as_float()); break;
    case Node::Kind::kString: {
      std::string s = n.as_string();
      if (opts.escape_interpolation) {
        std::string e;
        for (size_t i = 0; i < s.size(); ++i) {
          if (s[i] == '$' && i + 1 < s.size() && s[i + 1] == '{') e += '\\';
          e += s[i];
        }
        s = e;
      }
      // Quote whenever the plain form would read back as something else (numbers, bools, "null",
      // ""), or has surrounding whitespace.
      Node back = typed_scalar(s);
      bool quote = !back.is_string() || back.as_string() != s || s.empty() || s.front() == ' ' ||
                   s.back() == ' ' || s.find('\n') != std::string::npos || yaml11_special(s);
      if (quote) out << YAML::DoubleQuoted;
      out << s;
      break;
    }
    case Node::Kind::kList:
      if (n.size() == 0) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        break;
      }
      out << YAML::BeginSeq;
      for (const auto& c : n.items()) emit(out, c, opts);
      out << YAML::EndSeq;
      break;
    case Node::Kind::kMap:
      if (n.size() == 0) {
        out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
        break;
      }
      out << YAML::BeginMap;
      for (size_t i = 0; i < n.size(); ++i) {
        const std::string& k = n.keys()[i];
        out << YAML::Key;
        Node back = typed_scalar(k);
        if (!back.is_string() || back.as_string() != k || k.empty() || yaml11_special(k)) out << YAML::DoubleQuoted;
        out << k << YAML::Value;
        emit(out, n.items()[i], opts);
      }
      out << YAML::EndMap;
      break;
  }
}

}  // namespace

std::string to_yaml(const Node& node, const EmitOptions& opts) {
  YAML::Emitter out;
  out.SetIndent(2);
  emit(out, node, opts);
  if (!out.good()) throw Error("YAML emitter: " + out.GetLastError());
  std::string s = out.c_str();
  if (s.empty() || s.back() != '\n') s += '\n';
  return s;
}

void write_text_file(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
    if (!o) throw Error(path + ": cannot write file");
    o << text;
    if (!o) throw Error(path + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error(path + ": cannot rename " + tmp);
}

}  // namespace zsad::config
