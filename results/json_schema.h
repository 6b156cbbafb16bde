#pragma once
// A small JSON Schema (draft 2020-12) validator for the keywords zsad's schemas use:
// type, enum, const, properties, required, additionalProperties, minProperties, items,
// minItems, maxItems, minimum, maximum, exclusiveMinimum, exclusiveMaximum, minLength, pattern,
// $ref (local "#/$defs/..."), anyOf, oneOf, allOf. Unknown keywords (title, description, ...)
// are ignored. Errors carry the JSON pointer of the offending value.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace zsad::results {

// Returns every violation as "<json pointer>: <reason>" (empty = valid).
std::vector<std::string> schema_errors(const nlohmann::json& schema, const nlohmann::json& instance);

// The results file schema (results/schema/results.schema.json, compiled into the library).
const nlohmann::json& results_schema();

}  // namespace zsad::results
