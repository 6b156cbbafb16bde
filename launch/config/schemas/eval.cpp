// Keys of the evaluation engine (eval.*), the CLIP model group (model.*) and every method in the
// method registry (method.name + each method's declared keys). Dataset entries under
// eval.datasets.<name> are free-form here and validated by trainer/eval (eval::dataset_specs_from).
#include "launch/config/schema.h"
#include "launch/config/yaml_io.h"
#include "models/methods/method.h"

namespace zsad::config {

namespace {
Type method_key_type(const std::string& t) {
  if (t == "bool") return Type::kBool;
  if (t == "int") return Type::kInt;
  if (t == "float") return Type::kFloat;
  if (t == "string") return Type::kString;
  if (t == "list") return Type::kList;
  if (t == "map") return Type::kMap;
  return Type::kAny;
}

void add_method_key(Schema& s, const models::MethodKey& k) {
  Node def;
  if (k.default_yaml != "null") {
    def = (k.type == "list" || k.type == "map") ? load_yaml_string(k.default_yaml, k.key) : typed_scalar(k.default_yaml);
    if (k.type == "string" && !def.is_string()) def = Node(k.default_yaml);
    if (k.type == "float" && def.is_int()) def = Node(static_cast<double>(def.as_int()));
  }
  auto& spec = s.add(k.key, method_key_type(k.type), def, k.doc);
  if (!k.choices.empty()) spec.choices(k.choices);
}
}  // namespace

void register_eval_schema(Schema& s) {
  s.section("method", "the anomaly-detection method (models/methods/, registry by method.name)");
  std::vector<std::string> names;
  for (const auto& [name, info] : models::method_registry()) names.push_back(name);
  s.add("method.name", Type::kString, nullptr, "method from the registry (models/methods/method.h)").choices(names);
  for (const auto& [name, info] : models::method_registry()) {
    for (const auto& k : info.keys) add_method_key(s, k);
  }
  s.section("model", "the CLIP backbone");
  for (const auto& k : models::clip_model_keys()) add_method_key(s, k);

  s.section("eval", "zero-shot evaluation engine (docs/evaluation.md)");
  s.add("eval.checkpoint", Type::kString, nullptr, "checkpoint (HDF5) whose method/ (or params/) tensors are loaded");
  s.add("eval.datasets", Type::kMap, Node::map(),
        "test datasets: eval.datasets.<name> = a dataset config (experiments/dataset/*.yaml)");
  s.add("eval.order", Type::kList, Node::list(), "evaluation order of the datasets (default: by name)");
  s.add("eval.batch_size", Type::kInt, 1, "images per rank per forward").at_least(1);
  s.add("eval.loader_threads", Type::kInt, 1, "decoding threads per rank").at_least(1);
  s.add("eval.write_scores", Type::kBool, false, "write scores/<dataset>.h5 (zsad.scores/1)");
  s.add("eval.scores_fp16", Type::kBool, false, "store anomaly maps as float16 in scores files");
  s.add("eval.panels_per_class", Type::kInt, 2, "PNG panels (image | GT | overlay) per class under panels/").at_least(0);
  s.add("eval.shard", Type::kString, "contiguous", "how images are split across ranks").choices({"contiguous", "strided"});
  s.add("eval.progress_every_s", Type::kFloat, 2.0, "seconds between rank-0 progress lines");
  s.add("eval.metric_threads", Type::kInt, 1, "threads for sorting in the metrics").at_least(1);
  s.add("eval.train_dataset", Type::kString, nullptr, "training dataset recorded in results (null: training-free)");
  s.add("eval.backend", Type::kString, "auto", "communicator backend").choices({"auto", "gloo", "mpi", "nccl", "local"});
  s.add("eval.timeout_s", Type::kFloat, 600.0, "rendezvous / collective timeout (seconds)").at_least(1);
}

}  // namespace zsad::config
