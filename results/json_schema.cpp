#include "results/json_schema.h"

#include <cmath>
#include <regex>

#include "common/error.h"

namespace zsad::results {

extern const char* const kResultsSchemaText;  // generated from schema/results.schema.json

namespace {

using nlohmann::json;

std::string describe(const json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

bool has_type(const json& v, const std::string& t) {
  if (t == "null") return v.is_null();
  if (t == "boolean") return v.is_boolean();
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "string") return v.is_string();
  if (t == "number") return v.is_number();
  if (t == "integer") {
    if (v.is_number_integer()) return true;
    if (v.is_number_float()) {
      double d = v.get<double>();
      return std::isfinite(d) && d == std::floor(d);
    }
    return false;
  }
  return false;
}

class Validator {
 public:
  explicit Validator(const json& root) : root_(root) {}

  void check(const json& s, const json& v, const std::string& path, std::vector<std::string>& errs) const {
    if (s.is_boolean()) {
      if (!s.get<bool>()) errs.push_back(at(path) + "no value is allowed here");
      return;
    }
    if (!s.is_object()) return;
    if (auto it = s.find("$ref"); it != s.end()) check(resolve(it->get<std::string>()), v, path, errs);
    if (auto it = s.find("type"); it != s.end()) {
      bool ok = false;
      std::string names;
      if (it->is_string()) {
        ok = has_type(v, it->get<std::string>());
        names = it->get<std::string>();
      } else {
        for (const auto& t : *it) {
          ok = ok || has_type(v, t.get<std::string>());
          names += (names.empty() ? "" : " or ") + t.get<std::string>();
        }
      }
      if (!ok) {
        errs.push_back(at(path) + "expected " + names + ", got " + describe(v));
        return;
      }
    }
    if (auto it = s.find("const"); it != s.end() && v != *it) {
      errs.push_back(at(path) + "expected " + it->dump() + ", got " + describe(v));
    }
    if (auto it = s.find("enum"); it != s.end()) {
      bool found = false;
      for (const auto& e : *it) found = found || e == v;
      if (!found) errs.push_back(at(path) + describe(v) + " is not one of " + it->dump());
    }
    if (v.is_number()) {
      const double d = v.get<double>();
      if (!std::isfinite(d)) errs.push_back(at(path) + "number is not finite");
      if (auto it = s.find("minimum"); it != s.end() && d < it->get<double>()) {
        errs.push_back(at(path) + describe(v) + " is below the minimum " + it->dump());
      }
      if (auto it = s.find("maximum"); it != s.end() && d > it->get<double>()) {
        errs.push_back(at(path) + describe(v) + " is above the maximum " + it->dump());
      }
      if (auto it = s.find("exclusiveMinimum"); it != s.end() && d <= it->get<double>()) {
        errs.push_back(at(path) + describe(v) + " must be greater than " + it->dump());
      }
      if (auto it = s.find("exclusiveMaximum"); it != s.end() && d >= it->get<double>()) {
        errs.push_back(at(path) + describe(v) + " must be less than " + it->dump());
      }
    }
    if (v.is_string()) {
      const auto& str = v.get_ref<const std::string&>();
      if (auto it = s.find("minLength"); it != s.end() && str.size() < it->get<size_t>()) {
        errs.push_back(at(path) + "string shorter than " + it->dump() + " characters");
      }
      if (auto it = s.find("pattern"); it != s.end()) {
        if (!std::regex_search(str, std::regex(it->get<std::string>(), std::regex::ECMAScript))) {
          errs.push_back(at(path) + describe(v) + " does not match the pattern " + it->dump());
        }
      }
    }
    if (v.is_object()) {
      if (auto it = s.find("required"); it != s.end()) {
        for (const auto& k : *it) {
          if (!v.contains(k.get<std::string>())) errs.push_back(at(path) + "missing required key '" + k.get<std::string>() + "'");
        }
      }
      if (auto it = s.find("minProperties"); it != s.end() && v.size() < it->get<size_t>()) {
        errs.push_back(at(path) + "needs at least " + it->dump() + " entries");
      }
      const json* props = s.contains("properties") ? &s["properties"] : nullptr;
      const json* extra = s.contains("additionalProperties") ? &s["additionalProperties"] : nullptr;
      for (auto kv = v.begin(); kv != v.end(); ++kv) {
        const std::string child = path + "/" + escape(kv.key());
        if (props && props->contains(kv.key())) {
          check((*props)[kv.key()], kv.value(), child, errs);
        } else if (extra) {
          if (extra->is_boolean() && !extra->get<bool>()) {
            errs.push_back(at(path) + "unexpected key '" + kv.key() + "'");
          } else {
            check(*extra, kv.value(), child, errs);
          }
        }
      }
    }
    if (v.is_array()) {
      if (auto it = s.find("minItems"); it != s.end() && v.size() < it->get<size_t>()) {
        errs.push_back(at(path) + "needs at least " + it->dump() + " items");
      }
      if (auto it = s.find("maxItems"); it != s.end() && v.size() > it->get<size_t>()) {
        errs.push_back(at(path) + "allows at most " + it->dump() + " items");
      }
      if (auto it = s.find("items"); it != s.end()) {
        for (size_t i = 0; i < v.size(); ++i) check(*it, v[i], path + "/" + std::to_string(i), errs);
      }
    }
    if (auto it = s.find("allOf"); it != s.end()) {
      for (const auto& sub : *it) check(sub, v, path, errs);
    }
    if (auto it = s.find("anyOf"); it != s.end()) {
      size_t matches = count_matches(*it, v, path, true);
      if (matches == 0) errs.push_back(at(path) + describe(v) + " matches none of the allowed forms");
    }
    if (auto it = s.find("oneOf"); it != s.end()) {
      size_t matches = count_matches(*it, v, path, false);
      if (matches != 1) errs.push_back(at(path) + describe(v) + " must match exactly one allowed form (matches " + std::to_string(matches) + ")");
    }
  }

 private:
  static std::string at(const std::string& path) { return (path.empty() ? "/" : path) + ": "; }
  static std::string escape(const std::string& key) {
    std::string out;
    for (char c : key) {
      if (c == '~') out += "~0";
      else if (c == '/') out += "~1";
      else out += c;
    }
    return out;
  }
  size_t count_matches(const json& alternatives, const json& v, const std::string& path, bool stop_at_first) const {
    size_t n = 0;
    for (const auto& sub : alternatives) {
      std::vector<std::string> e;
      check(sub, v, path, e);
      if (e.empty()) {
        ++n;
        if (stop_at_first) break;
      }
    }
    return n;
  }
  const json& resolve(const std::string& ref) const {
    if (ref.rfind("#/", 0) != 0) throw Error("JSON schema: only local $ref are supported, got '" + ref + "'");
    return root_.at(json::json_pointer(ref.substr(1)));
  }
  const json& root_;
};

}  // namespace

std::vector<std::string> schema_errors(const nlohmann::json& schema, const nlohmann::json& instance) {
  std::vector<std::string> errs;
  Validator(schema).check(schema, instance, "", errs);
  return errs;
}

const nlohmann::json& results_schema() {
  static const nlohmann::json schema = nlohmann::json::parse(kResultsSchemaText);
  return schema;
}

}  // namespace zsad::results
