#include "launch/cli/args.h"

#include <cstdlib>
#include <sstream>

#include "common/error.h"

namespace zsad::cli {

Args& Args::flag(const std::string& name, const std::string& help, std::optional<std::string> default_value) {
  specs_[name] = Spec{Spec::kValue, help, std::move(default_value)};
  order_.push_back(name);
  return *this;
}
Args& Args::multi(const std::string& name, const std::string& help) {
  specs_[name] = Spec{Spec::kMulti, help, std::nullopt};
  order_.push_back(name);
  return *this;
}
Args& Args::toggle(const std::string& name, const std::string& help) {
  specs_[name] = Spec{Spec::kToggle, help, std::nullopt};
  order_.push_back(name);
  return *this;
}
Args& Args::positionals(const std::string& name, size_t min_count, size_t max_count) {
  positional_name_ = name;
  positional_min_ = min_count;
  positional_max_ = max_count;
  return *this;
}

void Args::parse(const std::vector<std::string>& tokens) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    if (t == "--help" || t == "-h") throw HelpRequested(help());
    if (t.size() > 2 && t.compare(0, 2, "--") == 0) {
      std::string name = t.substr(2), inline_value;
      bool has_inline = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_inline = true;
      }
      auto it = specs_.find(name);
      if (it == specs_.end()) throw UsageError("unknown flag --" + name);
      switch (it->second.kind) {
        case Spec::kToggle:
          if (has_inline) throw UsageError("flag --" + name + " takes no value");
          toggles_.insert(name);
          break;
        case Spec::kValue:
          if (has_inline) {
            values_[name] = inline_value;
          } else {
            if (i + 1 >= tokens.size()) throw UsageError("flag --" + name + " needs a value");
            values_[name] = tokens[++i];
          }
          break;
        case Spec::kMulti: {
          auto& out = multis_[name];
          if (has_inline) out.push_back(inline_value);
          while (i + 1 < tokens.size() && tokens[i + 1].compare(0, 2, "--") != 0) out.push_back(tokens[++i]);
          if (out.empty()) throw UsageError("flag --" + name + " needs at least one value");
          break;
        }
      }
    } else if (t == "--") {
      for (++i; i < tokens.size(); ++i) positional_.push_back(tokens[i]);
    } else {
      positional_.push_back(t);
    }
  }
  if (positional_name_.empty() && !positional_.empty()) throw UsageError("unexpected argument '" + positional_[0] + "'");
  if (positional_.size() < positional_min_) throw UsageError("missing " + positional_name_);
  if (positional_.size() > positional_max_) throw UsageError("too many arguments: '" + positional_.back() + "'");
}

bool Args::has(const std::string& name) const {
  return values_.count(name) || multis_.count(name) || toggles_.count(name);
}

std::optional<std::string> Args::get_opt(const std::string& name) const {
  if (auto it = values_.find(name); it != values_.end()) return it->second;
  if (auto it = specs_.find(name); it != specs_.end()) return it->second.default_value;
  return std::nullopt;
}

std::string Args::get(const std::string& name) const {
  auto v = get_opt(name);
  if (!v) throw UsageError("missing required flag --" + name);
  return *v;
}

int64_t Args::get_int(const std::string& name) const {
  std::string v = get(name);
  char* end = nullptr;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0') throw UsageError("flag --" + name + " expects an integer, got '" + v + "'");
  return x;
}

double Args::get_double(const std::string& name) const {
  std::string v = get(name);
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0') throw UsageError("flag --" + name + " expects a number, got '" + v + "'");
  return x;
}

bool Args::on(const std::string& name) const { return toggles_.count(name) > 0; }

const std::vector<std::string>& Args::list(const std::string& name) const {
  static const std::vector<std::string> empty;
  auto it = multis_.find(name);
  return it == multis_.end() ? empty : it->second;
}

std::string Args::help() const {
  std::ostringstream os;
  os << "usage: " << usage_ << "\n";
  for (const auto& name : order_) {
    const Spec& s = specs_.at(name);
    os << "  --" << name << (s.kind == Spec::kValue ? " VALUE" : s.kind == Spec::kMulti ? " VALUE..." : "");
    os << "  " << s.help;
    if (s.default_value) os << " (default: " << *s.default_value << ")";
    os << "\n";
  }
  return os.str();
}

}  // namespace zsad::cli
