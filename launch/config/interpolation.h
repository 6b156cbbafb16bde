#pragma once
// Interpolation, resolved eagerly over a whole composed config:
//   ${a.b.c}          value at an absolute key (a whole-string reference keeps the type: int, map, ...)
//   "lr_${a.b}_x"     inside strings: the referenced scalar's text is spliced in
//   ${.sibling}       relative: one leading dot = the map holding this key, each further dot one level up
//   ${env:VAR}        environment variable (error when unset), ${env:VAR,default} (also ${oc.env:...})
//   ${now:%Y-%m-%d}   current local time (strftime format)
//   \${...}           a literal "${...}"
// A reference cycle is an error naming the cycle ("a -> b -> a").
#include <string>

#include "launch/config/node.h"

namespace zsad::config {

bool has_interpolation(const std::string& s);

// Resolves every interpolation in `root` in place.
void resolve_interpolations(Node& root);

}  // namespace zsad::config
