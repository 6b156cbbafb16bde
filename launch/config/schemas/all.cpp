// The one list of schema builders. Add a line per component (see docs/config.md).
#include "launch/config/schema.h"

namespace zsad::config {

void register_all_schemas(Schema& s) {
  register_core_schema(s);
}

}  // namespace zsad::config
