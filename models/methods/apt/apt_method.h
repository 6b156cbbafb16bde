#pragma once
// APT behind the method interface (models/methods/method.h). APT has no global parameters: it
// trains one prompt set per class in the per-class hook prepare_class(support), the support set
// being the k normal shots (eval.datasets.<name>.shots). With several ranks, classes are sharded
// (few_shot.h shard_classes): a rank trains only its classes, writes each class state into the
// shared state directory, and loads the other ranks' classes when it first scores one of their
// images (files are written atomically; a rank waits up to method.apt.gather_timeout_s).
// The assignment and the shots are logged to <state dir>/<dataset>/shards.txt and shots.txt.
// With method.apt.class_parallel=ddp every rank trains every class instead, the step's batch
// split over the ranks and the gradients summed through DatasetContext::allreduce_sum (the
// evaluation's communicator; AptModel::set_parallel).
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "models/methods/apt/apt_model.h"
#include "models/methods/method.h"

namespace zsad::models::apt {

std::vector<MethodKey> apt_method_keys();

class AptMethod : public Method {
 public:
  explicit AptMethod(const OptionMap& options);

  std::string name() const override { return "apt"; }
  std::string display_name() const override;
  int64_t input_size() const override;
  std::string weights_path() const override { return weights_; }

  void begin_dataset(const DatasetContext& ctx) override;
  void prepare_class(const SupportSet& support) override;
  MethodOutput infer(const MethodBatch& batch) override;

  // Per-class learned state: "<cls>/t_n", "<cls>/t_a", "<cls>/ctx", "<cls>/ctx_abnormal",
  // "<cls>/meta_n", "<cls>/meta_a" (banks are rebuilt from the shots).
  std::map<std::string, at::Tensor> state_dict() override;
  void load_state_dict(const std::map<std::string, at::Tensor>& state, bool strict = true) override;

  AptModel& model() { return *model_; }
  const std::vector<int>& assignment() const { return assignment_; }

 private:
  void ensure_class(const std::string& cls);
  std::string class_file(const std::string& cls) const;

  OptionMap base_;
  ClipModel clip_{nullptr};
  Tokenize tokenize_;
  std::string weights_;
  std::unique_ptr<AptModel> model_;
  uint64_t seed_ = 0;
  int rank_ = 0, world_ = 1;
  bool shard_ = true;
  bool ddp_ = false;  // class_parallel ddp
  double gather_timeout_s_ = 3600;
  std::string state_dir_option_;  // method.apt.state_dir ("" = <run dir>/apt)
  std::string state_root_, dataset_dir_;
  std::vector<std::string> classes_;
  std::vector<int> assignment_;
  std::set<std::string> mine_;
};

// Reads/writes one class state as a small binary file (name, dims, float32 data per tensor).
void write_class_state(const std::string& path, const AptClassState& s);
AptClassState read_class_state(const std::string& path);

}  // namespace zsad::models::apt

namespace zsad::models {
// Adds "apt" to the method registry (to be called from the registry's built-in list).
void register_apt_method();
}  // namespace zsad::models
