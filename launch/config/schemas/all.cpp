// The one list of schema builders. Add a line per component (see docs/config.md).
#include "launch/config/schema.h"

namespace zsad::config {

void register_slurm_schema(Schema& s);  // launch/config/schemas/slurm.cpp
void register_cache_schema(Schema& s);  // launch/config/schemas/cache.cpp
void register_train_schema(Schema& s);  // launch/config/schemas/train.cpp

void register_all_schemas(Schema& s) {
  register_core_schema(s);
  register_eval_schema(s);
  register_slurm_schema(s);
  register_cache_schema(s);
  register_train_schema(s);
}

}  // namespace zsad::config
