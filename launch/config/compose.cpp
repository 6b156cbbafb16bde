#include "launch/config/compose.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include "common/error.h"
#include "launch/config/interpolation.h"
#include "launch/config/yaml_io.h"

namespace zsad::config {

namespace fs = std::filesystem;
using overrides::Override;
using overrides::OverrideType;
using overrides::ValueType;

namespace {

std::string join_group(const std::string& dir, const std::string& rel) {
  if (dir.empty()) return rel;
  if (rel.empty()) return dir;
  return dir + "/" + rel;
}

std::string dots(const std::string& group) {
  std::string s = group;
  std::replace(s.begin(), s.end(), '/', '.');
  return s;
}

std::string join_pkg(const std::string& parent, const std::string& child) {
  if (child == "_global_") return "";
  if (child.compare(0, 9, "_global_.") == 0) return child.substr(9);
  if (parent.empty()) return child;
  if (child.empty()) return parent;
  return parent + "." + child;
}

std::string join_list(const std::vector<std::string>& v, const std::string& sep = ", ") {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

struct Choice {
  bool null = false;
  std::vector<std::string> options;
  Mark mark;
  bool operator==(const Choice& o) const { return null == o.null && options == o.options; }
};

struct DefaultEntry {
  enum Kind { kSelf, kConfig, kGroup } kind = kSelf;
  bool is_override = false;
  bool optional = false;
  std::string group;    // absolute group path ("method", "server/db")
  std::string package;  // explicit @pkg
  Choice choice;        // for groups
  std::string config;   // for kConfig: path from root without .yaml
  std::string written;  // group or config path as written (relative to the file, or absolute)
  bool absolute = false;
  Mark mark;
  std::string key() const { return group + (package.empty() ? "" : "@" + package); }
};

void check_rel_path(const std::string& p, const Mark& m) {
  if (p.empty()) throw Error(m.str() + ": empty path in defaults list");
  if (p.find("..") != std::string::npos) throw Error(m.str() + ": '..' is not allowed in defaults paths ('" + p + "')");
}

Choice parse_choice(const Node& v, const Mark& m) {
  Choice c;
  c.mark = m;
  if (v.is_null()) {
    c.null = true;
  } else if (v.is_list()) {
    for (const auto& e : v.items()) {
      if (!e.is_scalar() || e.is_null()) throw Error(e.mark().str() + ": group options must be names");
      c.options.push_back(e.scalar_text());
    }
  } else if (v.is_scalar()) {
    c.options.push_back(v.scalar_text());
  } else {
    throw Error(v.mark().str() + ": a group option must be a name, a list of names or null");
  }
  return c;
}

std::vector<DefaultEntry> parse_defaults(const Node& list, const std::string& file_dir) {
  std::vector<DefaultEntry> out;
  if (list.is_null()) return out;
  if (!list.is_list()) throw Error(list.mark().str() + ": 'defaults' must be a list");
  for (const auto& item : list.items()) {
    DefaultEntry e;
    e.mark = item.mark();
    if (item.is_string()) {
      std::string s = item.as_string();
      if (s == "_self_") {
        e.kind = DefaultEntry::kSelf;
      } else {
        e.kind = DefaultEntry::kConfig;
        if (auto at = s.find('@'); at != std::string::npos) {
          e.package = s.substr(at + 1);
          s = s.substr(0, at);
        }
        if (s.size() > 5 && s.compare(s.size() - 5, 5, ".yaml") == 0) s = s.substr(0, s.size() - 5);
        check_rel_path(s, e.mark);
        e.absolute = s[0] == '/';
        e.written = e.absolute ? s.substr(1) : s;
        e.config = e.absolute ? s.substr(1) : join_group(file_dir, s);
      }
    } else if (item.is_map() && item.size() == 1) {
      std::string k = item.keys()[0];
      // "override group", "optional group"
      while (true) {
        if (k.compare(0, 9, "override ") == 0) {
          e.is_override = true;
          k = k.substr(9);
        } else if (k.compare(0, 9, "optional ") == 0) {
          e.optional = true;
          k = k.substr(9);
        } else {
          break;
        }
        k = k.substr(k.find_first_not_of(' ') == std::string::npos ? k.size() : k.find_first_not_of(' '));
      }
      if (auto at = k.find('@'); at != std::string::npos) {
        e.package = k.substr(at + 1);
        k = k.substr(0, at);
      }
      check_rel_path(k, e.mark);
      if (k.find(' ') != std::string::npos)
        throw Error(e.mark.str() + ": unknown keyword in defaults entry '" + item.keys()[0] +
                    "' (expected 'override GROUP', 'optional GROUP' or 'GROUP')");
      e.kind = DefaultEntry::kGroup;
      e.absolute = k[0] == '/';
      e.written = e.absolute ? k.substr(1) : k;
      e.group = e.absolute ? k.substr(1) : join_group(file_dir, k);
      e.choice = parse_choice(item.items()[0], e.mark);
    } else {
      throw Error(item.mark().str() + ": a defaults entry must be '_self_', a config name, or 'group: option'");
    }
    out.push_back(std::move(e));
  }
  return out;
}

class Composer {
 public:
  explicit Composer(std::string root) : root_(std::move(root)) {}

  std::map<std::string, Choice> cli_choice;
  std::vector<DefaultEntry> cli_append;
  std::map<std::string, Mark> cli_remove;

  Node build(const std::string& primary) {
    std::map<std::string, Choice> previous;
    Node result;
    for (int iter = 0; iter < 16; ++iter) {
      file_overrides_ = previous;
      collected_.clear();
      seen_groups_.clear();
      override_entries_.clear();
      choices_.clear();
      result = load(primary, "", "", true);
      if (collected_ == previous) break;
      previous = collected_;
    }
    for (const auto& e : override_entries_) {
      if (!seen_groups_.count(e.key()))
        throw Error(e.mark.str() + ": could not override '" + e.key() +
                    "': no match in the defaults list (use a plain 'GROUP: OPTION' entry to add a group)");
    }
    for (const auto& [k, c] : cli_choice) {
      if (!seen_groups_.count(k))
        throw Error("override '" + k + "=" + join_list(c.options, ",") + "': group '" + k +
                    "' is not in the defaults list; use '+" + k + "=" + join_list(c.options, ",") + "' to add it");
    }
    for (const auto& [k, m] : cli_remove) {
      if (!seen_groups_.count(k))
        throw Error(m.str() + ": cannot delete group '" + k + "': it is not in the defaults list");
    }
    return result;
  }

  const std::vector<std::pair<std::string, std::string>>& choices() const { return choices_; }

 private:
  std::string file_for(const std::string& rel) const { return (fs::path(root_) / (rel + ".yaml")).string(); }

  Node load(const std::string& file, const std::string& default_pkg, const std::string& explicit_pkg, bool primary) {
    if (std::find(stack_.begin(), stack_.end(), file) != stack_.end()) {
      std::string cyc;
      for (const auto& f : stack_) cyc += f + " -> ";
      throw Error("defaults cycle: " + cyc + file);
    }
    stack_.push_back(file);
    Node raw = load_yaml_file(file);
    if (!raw.is_map()) throw Error(raw.mark().str() + ": a config file must hold a map, got " + kind_name(raw.kind()));
    std::string pkg;
    if (!primary) {
      std::string header = package_header(file);
      if (!explicit_pkg.empty()) pkg = explicit_pkg;
      else if (!header.empty()) pkg = header == "_group_" ? default_pkg : join_pkg("", header);
      else pkg = default_pkg;
    }
    std::string rel_dir = fs::relative(fs::path(file).parent_path(), root_).generic_string();
    if (rel_dir == ".") rel_dir.clear();
    std::vector<DefaultEntry> entries;
    if (const Node* d = raw.find("defaults")) {
      entries = parse_defaults(*d, rel_dir);
      raw.erase("defaults");
    }
    Node self = Node::map();
    self.set_mark(raw.mark());
    if (pkg.empty()) {
      self = raw;
    } else {
      self.set_path(pkg, raw);
    }
    Node result = Node::map();
    result.set_mark(raw.mark());
    bool self_done = false;
    for (const auto& e : entries) {
      switch (e.kind) {
        case DefaultEntry::kSelf:
          merge_into(result, self);
          self_done = true;
          break;
        case DefaultEntry::kConfig: {
          std::string f = file_for(e.config);
          if (!fs::exists(f)) throw Error(e.mark.str() + ": config '" + e.config + "' not found (" + f + ")");
          // Hydra: a relative entry's package is relative to this file's package.
          std::string wdir = dots(fs::path(e.written).parent_path().generic_string());
          std::string cpkg = e.absolute ? wdir : join_pkg(pkg, wdir);
          merge_into(result, load(f, cpkg, e.package.empty() ? "" : join_pkg(pkg, e.package), false));
          break;
        }
        case DefaultEntry::kGroup:
          if (e.is_override) {
            override_entries_.push_back(e);
            collected_[e.key()] = e.choice;  // last one wins (depth-first order)
          } else {
            merge_into(result, load_group(e, pkg));
          }
          break;
      }
    }
    if (!self_done) merge_into(result, self);
    if (primary) {
      for (const auto& e : cli_append) {
        if (seen_groups_.count(e.key()))
          throw Error(e.mark.str() + ": group '" + e.key() + "' is already in the defaults list; use '" + e.key() +
                      "=OPTION' to change it (or '++" + e.key() + "=OPTION')");
        merge_into(result, load_group(e, ""));
      }
    }
    stack_.pop_back();
    return result;
  }

  Node load_group(const DefaultEntry& e, const std::string& parent_pkg) {
    const std::string key = e.key();
    seen_groups_.insert(key);
    Node out = Node::map();
    if (cli_remove.count(key)) return out;
    Choice c = e.choice;
    if (auto it = file_overrides_.find(key); it != file_overrides_.end()) c = it->second;
    if (auto it = cli_choice.find(key); it != cli_choice.end()) c = it->second;
    choices_.emplace_back(key, c.null ? "null" : join_list(c.options, ","));
    if (c.null) return out;
    std::string pkg = e.package.empty() ? (e.absolute ? dots(e.group) : join_pkg(parent_pkg, dots(e.written)))
                                        : join_pkg(parent_pkg, e.package);
    for (const auto& opt : c.options) {
      std::string f = file_for(e.group + "/" + opt);
      if (!fs::exists(f)) {
        if (e.optional) continue;
        if (!fs::is_directory(fs::path(root_) / e.group))
          throw Error(c.mark.str() + ": config group '" + e.group + "' does not exist (no folder " +
                      (fs::path(root_) / e.group).string() + ")");
        throw Error(c.mark.str() + ": option '" + opt + "' not found in config group '" + e.group +
                    "' (available: " + join_list(group_options(root_, e.group)) + ")");
      }
      merge_into(out, load(f, pkg, e.package.empty() ? "" : pkg, false));
    }
    return out;
  }

  std::string root_;
  std::map<std::string, Choice> file_overrides_;
  std::map<std::string, Choice> collected_;
  std::set<std::string> seen_groups_;
  std::vector<DefaultEntry> override_entries_;
  std::vector<std::pair<std::string, std::string>> choices_;
  std::vector<std::string> stack_;
};

std::string value_where(const Node& n) {
  std::string v = n.is_scalar() ? (n.is_string() ? "'" + n.as_string() + "'" : n.scalar_text())
                                : std::string("a ") + kind_name(n.kind());
  return v + " at " + n.mark().str();
}

}  // namespace

bool is_config_group(const std::string& root, const std::string& key) {
  if (key.empty() || key.find('.') != std::string::npos || key.find("..") != std::string::npos) return false;
  std::string k = key[0] == '/' ? key.substr(1) : key;
  return !k.empty() && fs::is_directory(fs::path(root) / k);
}

std::vector<std::string> group_options(const std::string& root, const std::string& group) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(root) / group, ec)) {
    if (e.is_regular_file() && e.path().extension() == ".yaml") out.push_back(e.path().stem().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string find_config_root(const std::string& experiment_file) {
  fs::path p = fs::absolute(experiment_file).lexically_normal().parent_path();
  for (fs::path q = p; !q.empty(); q = q.parent_path()) {
    if (q.filename() == "experiments") return q.string();
    if (q == q.root_path()) break;
  }
  return p.string();
}

std::string find_experiment_file(const std::string& arg) {
  if (arg.empty()) throw UsageError("missing experiment (a YAML file or a name under experiments/)");
  if (fs::is_regular_file(arg)) return fs::absolute(arg).lexically_normal().string();
  std::vector<fs::path> dirs{"experiments"};
  if (const char* env = std::getenv("ZSAD_EXPERIMENTS_DIR")) dirs.insert(dirs.begin(), env);
  std::string name = arg;
  if (name.size() < 5 || name.compare(name.size() - 5, 5, ".yaml") != 0) name += ".yaml";
  for (const auto& d : dirs) {
    fs::path p = d / name;
    if (fs::is_regular_file(p)) return fs::absolute(p).lexically_normal().string();
  }
  std::vector<std::string> avail;
  for (const auto& d : dirs) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(d, ec))
      if (e.is_regular_file() && e.path().extension() == ".yaml") avail.push_back(e.path().stem().string());
  }
  std::sort(avail.begin(), avail.end());
  throw Error("experiment '" + arg + "' not found (not a file, and no " + name + " in ./experiments/" +
              (std::getenv("ZSAD_EXPERIMENTS_DIR") ? " or $ZSAD_EXPERIMENTS_DIR" : "") + ")" +
              (avail.empty() ? std::string() : "; available: " + join_list(avail)));
}

void apply_key_override(Node& cfg, const Override& o, const Schema* schema) {
  const std::string& key = o.key;
  if (key.find('/') != std::string::npos || !o.package.empty())
    throw Error("override '" + o.input + "': '" + o.key_element() + "' is not a config group (no such folder)");
  if (o.is_sweep())
    throw Error("override '" + o.input + "' is a sweep; run it with `zsad sweep`");
  Node* existing = nullptr;
  try {
    existing = cfg.find_path(key);
  } catch (const Error&) {
    throw Error("override '" + o.input + "': malformed key '" + key + "'");
  }
  auto hint = [&]() -> std::string {
    std::string h;
    if (schema) h = schema->suggest(key);
    if (h.empty()) {
      size_t best = SIZE_MAX;
      for (const auto& p : leaf_paths(cfg)) {
        size_t d = edit_distance(p, key);
        if (d < best && d <= std::max<size_t>(2, key.size() / 3)) {
          best = d;
          h = p;
        }
      }
    }
    return h.empty() ? "" : " (did you mean '" + h + "'?)";
  };
  Node value = o.value;
  value.set_mark_recursive(value.mark());
  switch (o.type) {
    case OverrideType::kChange:
      if (!existing) {
        if (schema && schema->find(key)) {
          cfg.set_path(key, value);
          return;
        }
        throw Error("override '" + o.input + "': key '" + key + "' is not in the config" + hint() +
                    "; use '+" + key + "=...' to add it");
      }
      if (existing->is_map() && value.is_map()) {
        merge_into(*existing, value);  // dicts merge, as in Hydra
      } else {
        *existing = value;
      }
      return;
    case OverrideType::kAdd:
      if (existing)
        throw Error("override '" + o.input + "': key '" + key + "' already exists (" + value_where(*existing) +
                    "); use '" + key + "=...' to change it or '++" + key + "=...' to add or replace");
      cfg.set_path(key, value);
      return;
    case OverrideType::kForceAdd:
      if (existing && existing->is_map() && value.is_map()) merge_into(*existing, value);
      else cfg.set_path(key, value);
      return;
    case OverrideType::kDelete:
      if (!existing) throw Error("override '" + o.input + "': cannot delete '" + key + "': key is not in the config" + hint());
      if (o.value_type == ValueType::kElement && !(*existing == o.value))
        throw Error("override '" + o.input + "': cannot delete '" + key + "': its value is " + value_where(*existing) +
                    ", not " + overrides::render_value(o.value));
      cfg.erase_path(key);
      return;
  }
}

Node get_or_default(const Node& cfg, const std::string& key, const Schema* schema) {
  if (const Node* n = cfg.find_path(key)) return *n;
  const Schema& s = schema ? *schema : schema_registry();
  if (const KeySpec* k = s.find(key)) return k->default_value;
  return Node();
}

Composed compose(const ComposeRequest& req) {
  Composed out;
  out.experiment_file = find_experiment_file(req.experiment);
  out.config_root = find_config_root(out.experiment_file);
  const Schema* schema = req.use_schema ? (req.schema ? req.schema : &schema_registry()) : nullptr;

  Composer composer(out.config_root);
  std::vector<Override> key_overrides;
  for (const auto& text : req.overrides) {
    Override o = overrides::parse_override(text);
    if (o.is_sweep()) throw UsageError("override '" + text + "' is a sweep; run it with `zsad sweep`");
    bool group = is_config_group(out.config_root, o.key);
    if (!group) {
      key_overrides.push_back(o);
      continue;
    }
    std::string key = (o.key[0] == '/' ? o.key.substr(1) : o.key) + (o.package.empty() ? "" : "@" + o.package);
    Mark m{"override '" + text + "'", 0, 0};
    if (o.type == OverrideType::kDelete) {
      composer.cli_remove[key] = m;
      continue;
    }
    Choice c = parse_choice(o.value, m);
    if (!c.null && c.options.size() == 1 && c.options[0].empty())
      throw Error("override '" + text + "': missing option for group '" + key + "' (available: " +
                  join_list(group_options(out.config_root, o.key[0] == '/' ? o.key.substr(1) : o.key)) + ")");
    if (o.type == OverrideType::kAdd) {
      DefaultEntry e;
      e.kind = DefaultEntry::kGroup;
      e.group = o.key[0] == '/' ? o.key.substr(1) : o.key;
      e.written = e.group;
      e.absolute = true;
      e.package = o.package;
      e.choice = c;
      e.mark = m;
      composer.cli_append.push_back(e);
    } else {
      composer.cli_choice[key] = c;  // kChange; kForceAdd is decided below
    }
  }
  // ++group=opt: swap when the group is in the defaults list, append otherwise.
  for (const auto& text : req.overrides) {
    Override o = overrides::parse_override(text);
    if (o.type != OverrideType::kForceAdd || !is_config_group(out.config_root, o.key)) continue;
    std::string key = (o.key[0] == '/' ? o.key.substr(1) : o.key) + (o.package.empty() ? "" : "@" + o.package);
    Composer probe(out.config_root);
    bool present = true;
    try {
      probe.build(out.experiment_file);
      present = false;
      for (const auto& [g, opt] : probe.choices())
        if (g == key) present = true;
    } catch (const Error&) {
    }
    if (!present) {
      DefaultEntry e;
      e.kind = DefaultEntry::kGroup;
      e.group = o.key[0] == '/' ? o.key.substr(1) : o.key;
      e.written = e.group;
      e.absolute = true;
      e.package = o.package;
      e.choice = composer.cli_choice[key];
      e.mark = e.choice.mark;
      composer.cli_choice.erase(key);
      composer.cli_append.push_back(e);
    }
  }

  Node cfg = composer.build(out.experiment_file);
  out.choices = composer.choices();

  if (!cfg.has("experiment")) {
    Node n(fs::path(out.experiment_file).stem().string());
    n.set_mark(Mark{out.experiment_file, 0, 0});
    // The name goes first so that printed configs start with it.
    Node reordered = Node::map();
    reordered.set_mark(cfg.mark());
    reordered.set("experiment", n);
    for (size_t i = 0; i < cfg.size(); ++i) reordered.set(cfg.keys()[i], cfg.items()[i]);
    cfg = std::move(reordered);
  }
  if (schema) schema->fill_defaults(cfg);
  for (const auto& o : key_overrides) apply_key_override(cfg, o, schema);
  if (!req.keep_sweep_block) cfg.erase("sweep");
  if (req.resolve) resolve_interpolations(cfg);
  if (schema && req.validate && req.resolve) schema->validate(cfg);
  if (const Node* e = cfg.find("experiment"); e && e->is_string()) {
    out.name = e->as_string();
    // The name is a folder level of outputs/ and multirun/: one plain folder name, never a path.
    if (out.name.empty() || out.name == "." || out.name == ".." || out.name.find('/') != std::string::npos)
      throw Error(e->mark().str() + ": key 'experiment' expects a plain name (used as a folder under outputs/ " +
                  "and multirun/), got '" + out.name + "'");
  } else {
    out.name = fs::path(out.experiment_file).stem().string();
  }
  out.config = std::move(cfg);
  return out;
}

}  // namespace zsad::config
