#pragma once
// A small strict flag parser shared by every subcommand: `--flag value`, `--flag=value`,
// boolean switches, multi-valued flags (`--texts a b c`), positionals. Anything unknown is a
// UsageError naming the flag, so main() can print usage and exit 2.
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace zsad::cli {

// Thrown by Args::parse on --help; main() prints the text to stdout and exits 0.
class HelpRequested : public std::exception {
 public:
  explicit HelpRequested(std::string text) : text_(std::move(text)) {}
  const char* what() const noexcept override { return text_.c_str(); }

 private:
  std::string text_;
};

class Args {
 public:
  // `usage` is printed with errors; declare flags before parse().
  explicit Args(std::string usage) : usage_(std::move(usage)) {}

  Args& flag(const std::string& name, const std::string& help, std::optional<std::string> default_value = std::nullopt);
  Args& multi(const std::string& name, const std::string& help);  // takes every following non-flag token
  Args& toggle(const std::string& name, const std::string& help);
  // Positionals: everything that is not a flag. Allow key=value tokens (Hydra overrides) through.
  Args& positionals(const std::string& name, size_t min_count, size_t max_count = SIZE_MAX);

  void parse(const std::vector<std::string>& tokens);

  bool has(const std::string& name) const;
  std::string get(const std::string& name) const;  // throws UsageError when missing and no default
  std::optional<std::string> get_opt(const std::string& name) const;
  int64_t get_int(const std::string& name) const;
  double get_double(const std::string& name) const;
  bool on(const std::string& name) const;
  const std::vector<std::string>& list(const std::string& name) const;
  const std::vector<std::string>& rest() const { return positional_; }
  std::string help() const;

 private:
  struct Spec {
    enum Kind { kValue, kMulti, kToggle } kind;
    std::string help;
    std::optional<std::string> default_value;
  };
  std::string usage_;
  std::map<std::string, Spec> specs_;
  std::vector<std::string> order_;
  std::map<std::string, std::string> values_;
  std::map<std::string, std::vector<std::string>> multis_;
  std::set<std::string> toggles_;
  std::vector<std::string> positional_;
  std::string positional_name_;
  size_t positional_min_ = 0, positional_max_ = SIZE_MAX;
};

}  // namespace zsad::cli
