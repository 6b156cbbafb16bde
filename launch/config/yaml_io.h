#pragma once
// YAML text <-> config::Node. yaml-cpp parses; values are converted immediately so no yaml-cpp
// node outlives these functions.
#include <string>

#include "launch/config/node.h"

namespace zsad::config {

// Parses a file (throws zsad::Error "file:line:col: message" on syntax errors, duplicate keys).
// An empty file yields an empty map.
Node load_yaml_file(const std::string& path);
Node load_yaml_string(const std::string& text, const std::string& origin = "<string>");

// The `# @package X` header of a config file (first comment lines before any content); "" if none.
std::string package_header(const std::string& path);

// Types an unquoted scalar: null (null, ~, empty), bool (true/false, any case), int (decimal,
// optional sign, '_' separators), float (1.5, 1e-3, .5, inf, .inf, nan, .nan), else string.
// The same rules serve YAML plain scalars and command-line override values.
Node typed_scalar(const std::string& text);

struct EmitOptions {
  // Resolved configs contain no interpolation; a literal "${" inside a string is then written as
  // "\${" so that loading the text back does not turn it into an interpolation.
  bool escape_interpolation = false;
};

// Block-style YAML; reading the text back with load_yaml_string yields an equal Node.
std::string to_yaml(const Node& node, const EmitOptions& opts = {});

// Writes atomically (temp file + rename).
void write_text_file(const std::string& path, const std::string& text);
std::string read_text_file(const std::string& path);

}  // namespace zsad::config
