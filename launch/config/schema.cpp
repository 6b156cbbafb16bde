#include "launch/config/schema.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <sstream>

#include "common/error.h"

namespace zsad::config {

const char* type_name(Type t) {
  switch (t) {
    case Type::kBool: return "bool";
    case Type::kInt: return "int";
    case Type::kFloat: return "float";
    case Type::kString: return "string";
    case Type::kList: return "list";
    case Type::kMap: return "map";
    case Type::kAny: return "any";
  }
  return "?";
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

KeySpec& Schema::add(const std::string& key, Type type, Node default_value, const std::string& doc) {
  split_path(key);  // validates the key
  KeySpec spec;
  spec.key = key;
  spec.type = type;
  spec.nullable = default_value.is_null();
  spec.default_value = std::move(default_value);
  spec.default_value.set_mark(Mark{"<schema default of " + key + ">", 0, 0});
  spec.doc = doc;
  for (auto& k : keys_) {
    if (k.key == key) {
      k = std::move(spec);
      return k;
    }
  }
  keys_.push_back(std::move(spec));
  return keys_.back();
}

void Schema::section(const std::string& prefix, const std::string& doc) {
  for (auto& s : sections_) {
    if (s.first == prefix) {
      s.second = doc;
      return;
    }
  }
  sections_.emplace_back(prefix, doc);
}

const KeySpec* Schema::find(const std::string& key) const {
  for (const auto& k : keys_)
    if (k.key == key) return &k;
  return nullptr;
}

bool Schema::is_section(const std::string& key) const {
  std::string p = key + ".";
  for (const auto& k : keys_)
    if (k.key.compare(0, p.size(), p) == 0) return true;
  for (const auto& s : sections_)
    if (s.first == key) return true;
  return false;
}

bool Schema::accepts(const std::string& key) const {
  if (find(key) || is_section(key)) return true;
  if (key == "tags" || key.compare(0, 5, "tags.") == 0) return true;
  // below a free-form key?
  for (const auto& k : keys_) {
    if ((k.type == Type::kMap || k.type == Type::kAny) && key.size() > k.key.size() &&
        key.compare(0, k.key.size() + 1, k.key + ".") == 0)
      return true;
  }
  return false;
}

std::string Schema::suggest(const std::string& key) const {
  std::vector<std::string> cands;
  for (const auto& k : keys_) {
    cands.push_back(k.key);
    auto parts = split_path(k.key);
    for (size_t i = 1; i < parts.size(); ++i)
      cands.push_back(join_path({parts.begin(), parts.begin() + static_cast<long>(i)}));
  }
  std::string best;
  size_t best_d = SIZE_MAX;
  std::string last = key.substr(key.rfind('.') == std::string::npos ? 0 : key.rfind('.') + 1);
  for (const auto& c : cands) {
    size_t d = edit_distance(key, c);
    // same leaf name in another section ("lr" vs "trainer.lr") is a good hint too
    std::string clast = c.substr(c.rfind('.') == std::string::npos ? 0 : c.rfind('.') + 1);
    if (clast == last && d > 0) d = std::min(d, static_cast<size_t>(2));
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  size_t limit = std::max<size_t>(2, key.size() / 3);
  return best_d <= limit ? best : "";
}

void Schema::fill_defaults(Node& cfg) const {
  for (const auto& k : keys_) {
    if (k.default_value.is_null()) continue;
    size_t dot = k.key.rfind('.');
    if (dot != std::string::npos) {
      const Node* parent = cfg.find_path(k.key.substr(0, dot));
      if (!parent || !parent->is_map()) continue;
    }
    if (!cfg.find_path(k.key)) cfg.set_path(k.key, k.default_value);
  }
}

namespace {
std::string value_text(const Node& n) {
  if (n.is_string()) return "'" + n.as_string() + "'";
  if (n.is_scalar()) return n.scalar_text();
  return "";  // a map or list: its kind, already named by the caller, says it
}

// "float 1.5", "string 'x'", "map" (no contents for maps and lists).
std::string kind_and_value(const Node& n) {
  const std::string v = value_text(n);
  return std::string(kind_name(n.kind())) + (v.empty() ? "" : " " + v);
}

bool type_ok(Type t, const Node& n) {
  switch (t) {
    case Type::kBool: return n.is_bool();
    case Type::kInt: return n.is_int();
    case Type::kFloat: return n.is_number();
    case Type::kString: return n.is_string();
    case Type::kList: return n.is_list();
    case Type::kMap: return n.is_map();
    case Type::kAny: return true;
  }
  return false;
}
}  // namespace

void Schema::validate_node(Node& n, const std::string& path) const {
  if (!path.empty()) {
    if (path == "tags" || path.compare(0, 5, "tags.") == 0) return;  // free-form tags
    if (const KeySpec* spec = find(path)) {
      if (n.is_null()) {
        if (spec->nullable) return;
        throw Error(n.mark().str() + ": key '" + path + "' expects " + type_name(spec->type) + ", got null");
      }
      if (!type_ok(spec->type, n))
        throw Error(n.mark().str() + ": key '" + path + "' expects " + type_name(spec->type) + ", got " +
                    kind_and_value(n));
      if (spec->type == Type::kFloat && n.is_int()) {
        Mark m = n.mark();
        n = Node(static_cast<double>(n.as_int()));
        n.set_mark(m);
      }
      if ((spec->min_value || spec->max_value) && (spec->type == Type::kInt || spec->type == Type::kFloat)) {
        const double v = n.is_int() ? static_cast<double>(n.as_int()) : n.as_float();
        const bool ok = std::isfinite(v) && (!spec->min_value || v >= *spec->min_value) &&
                        (!spec->max_value || v <= *spec->max_value);
        if (!ok) {
          std::ostringstream want;
          want << (spec->type == Type::kInt ? "an integer" : "a finite number");
          if (spec->min_value && spec->max_value) want << " in [" << *spec->min_value << ", " << *spec->max_value << "]";
          else if (spec->min_value) want << " >= " << *spec->min_value;
          else want << " <= " << *spec->max_value;
          throw Error(n.mark().str() + ": key '" + path + "' expects " + want.str() + ", got " + value_text(n));
        }
      }
      if (!spec->allowed.empty() &&
          std::find(spec->allowed.begin(), spec->allowed.end(), n.as_string()) == spec->allowed.end()) {
        std::string opts;
        for (const auto& a : spec->allowed) opts += (opts.empty() ? "" : ", ") + a;
        throw Error(n.mark().str() + ": key '" + path + "' must be one of {" + opts + "}, got " + value_text(n));
      }
      return;
    } else if (!is_section(path)) {
      std::string hint = suggest(path);
      throw Error(n.key_mark().str() + ": unknown key '" + path + "'" +
                  (hint.empty() ? std::string() : " (did you mean '" + hint + "'?)") +
                  "; add new keys to the schema (docs/config.md) or use +tags." +
                  path.substr(path.rfind('.') == std::string::npos ? 0 : path.rfind('.') + 1) +
                  "=... for free-form tags");
    } else if (!n.is_map()) {
      if (n.is_null()) return;  // an empty section
      throw Error(n.mark().str() + ": key '" + path + "' is a section and expects a map, got " +
                  kind_and_value(n));
    }
  }
  if (!n.is_map()) throw Error(n.mark().str() + ": the config must be a map, got " + kind_name(n.kind()));
  for (size_t i = 0; i < n.size(); ++i)
    validate_node(n.items()[i], path.empty() ? n.keys()[i] : path + "." + n.keys()[i]);
}

void Schema::validate(Node& cfg) const { validate_node(cfg, ""); }

std::string Schema::help() const {
  std::vector<const KeySpec*> sorted;
  for (const auto& k : keys_) sorted.push_back(&k);
  std::stable_sort(sorted.begin(), sorted.end(), [](const KeySpec* a, const KeySpec* b) {
    std::string sa = a->key.find('.') == std::string::npos ? "" : a->key.substr(0, a->key.find('.'));
    std::string sb = b->key.find('.') == std::string::npos ? "" : b->key.substr(0, b->key.find('.'));
    return sa < sb;
  });
  std::ostringstream os;
  std::string cur_section = "\x01";
  for (const KeySpec* k : sorted) {
    std::string sec = k->key.find('.') == std::string::npos ? "" : k->key.substr(0, k->key.find('.'));
    if (sec != cur_section) {
      cur_section = sec;
      os << "\n" << (sec.empty() ? "(top level)" : sec);
      for (const auto& s : sections_)
        if (s.first == sec) os << " — " << s.second;
      os << "\n";
    }
    std::string def = k->default_value.is_null()  ? "null"
                      : k->default_value.is_scalar() ? k->default_value.scalar_text()
                      : k->default_value.size() == 0 ? (k->default_value.is_list() ? "[]" : "{}")
                                                     : std::string("(") + kind_name(k->default_value.kind()) + ")";
    if (k->default_value.is_string()) def = "'" + def + "'";
    os << "  " << k->key << " : " << type_name(k->type) << (k->nullable ? "?" : "") << " = " << def;
    if (!k->allowed.empty()) {
      os << "  {";
      for (size_t i = 0; i < k->allowed.size(); ++i) os << (i ? "|" : "") << k->allowed[i];
      os << "}";
    }
    if (k->min_value) os << "  >= " << *k->min_value;
    if (k->max_value) os << "  <= " << *k->max_value;
    os << "\n      " << k->doc << "\n";
  }
  os << "\n+tags.<name>=<value> adds free-form tags; every schema accepts them.\n";
  return os.str();
}

Schema& schema_registry() {
  static Schema* s = [] {
    auto* schema = new Schema();
    register_all_schemas(*schema);
    return schema;
  }();
  return *s;
}

}  // namespace zsad::config
