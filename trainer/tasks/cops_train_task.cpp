#include "trainer/tasks/cops_train_task.h"

#include <ATen/ATen.h>

#include "common/error.h"
#include "data/image.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "trainer/ddp/global_ops.h"

namespace zsad::trainer {

at::Tensor gather_variable(comm::Communicator& comm, const at::Tensor& local) {
  const int W = comm.world_size();
  if (W == 1) return local.detach().clone();
  at::Tensor x = local.detach().contiguous();
  at::Tensor n = at::full({1}, x.size(0), at::kLong);
  at::Tensor counts = comm.allgather(n).reshape({W});
  const int64_t max_n = counts.max().item<int64_t>();
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape[0] = max_n;
  at::Tensor padded = at::zeros(shape, x.options());
  if (x.size(0) > 0) padded.narrow(0, 0, x.size(0)).copy_(x);
  at::Tensor all = comm.allgather(padded);  // [W,max_n,...]
  std::vector<at::Tensor> parts;
  for (int r = 0; r < W; ++r) parts.push_back(all[r].narrow(0, 0, counts[r].item<int64_t>()));
  return at::cat(parts, 0);
}

models::TrainContext make_train_context(comm::Communicator& comm, int64_t step, int64_t epoch) {
  models::TrainContext t;
  t.step = step;
  t.epoch = epoch;
  t.rank = comm.rank();
  t.world_size = comm.world_size();
  if (comm.world_size() > 1) {
    comm::Communicator* c = &comm;
    t.global_sum = [c](const at::Tensor& x) { return ddp::global_sum(*c, x); };
    t.gather = [c](const at::Tensor& x) { return gather_variable(*c, x); };
    t.grad_scale = static_cast<double>(comm.world_size());
  }
  return t;
}

CopsTrainTask::CopsTrainTask(models::cops::CopsMethod& method, std::vector<data::Sample> samples,
                             CopsTrainTaskOptions options, std::shared_ptr<FeatureCache> cache)
    : method_(method), samples_(std::move(samples)), opt_(std::move(options)), cache_(std::move(cache)) {
  if (samples_.empty()) throw Error("cops training: the training split has no samples (root '" + opt_.root + "')");
  if (cache_) {
    if (cache_->size() != static_cast<int64_t>(samples_.size()))
      throw Error("cops training: feature cache '" + cache_->path() + "' holds " + std::to_string(cache_->size()) +
                  " samples, the training split has " + std::to_string(samples_.size()));
    std::shared_ptr<FeatureCache> c = cache_;
    method_.set_feature_source([c](const models::MethodBatch& b) {
      EncodedBatch f = c->get(b.indices);
      return std::make_pair(f.global, f.patch);
    });
  }
}

NamedTensors CopsTrainTask::named_parameters() {
  NamedTensors out;
  for (auto& [n, t] : method_.named_parameters()) out.emplace_back(n, t);
  return out;
}

models::MethodBatch CopsTrainTask::make_batch(const std::vector<int64_t>& ids, int64_t step) const {
  const int64_t B = static_cast<int64_t>(ids.size());
  const int S = static_cast<int>(method_.input_size());
  models::MethodBatch b;
  b.indices = ids;
  b.seed = opt_.seed;
  b.step = step;
  at::Tensor masks = at::zeros({B, 1, S, S}, at::kByte);
  at::Tensor labels = at::zeros({B}, at::kLong);
  at::Tensor images;
  if (!cache_) images = at::empty({B, 3, S, S}, at::kFloat);
  for (int64_t i = 0; i < B; ++i) {
    const int64_t g = ids[static_cast<size_t>(i)];
    if (g < 0 || g >= static_cast<int64_t>(samples_.size()))
      throw Error("cops training: sample index " + std::to_string(g) + " out of range");
    const data::Sample& s = samples_[static_cast<size_t>(g)];
    labels[i] = static_cast<int64_t>(s.anomaly);
    b.class_names.push_back(s.cls_name);
    uint8_t* mptr = masks[i].data_ptr<uint8_t>();
    if (images.defined()) {
      data::load_sample(s, opt_.root, S, true, images[i].data_ptr<float>(), mptr);
    } else if (!s.mask_path.empty()) {
      data::Image m = data::read_mask(data::resolve_path(opt_.root, s.mask_path));
      data::preprocess_mask(m, S, mptr);
    }
  }
  // The method reads the batch size from `images`; with cached features a [B,0] placeholder
  // carries it without decoding anything.
  b.images = images.defined() ? images : at::empty({B, 0}, at::kFloat);
  b.masks = masks.to(at::kFloat);
  b.labels = labels;
  return b;
}

NamedTensors CopsTrainTask::train_step(const std::vector<int64_t>& ids, StepContext& ctx) {
  models::MethodBatch b = make_batch(ids, ctx.step);
  models::TrainContext tc = make_train_context(ctx.comm, ctx.step, ctx.epoch);
  std::map<std::string, at::Tensor> L = method_.train_step(b, tc);
  const auto& o = method_.model().options();
  // The loop minimises the sum of the returned terms: return the weighted terms of "total".
  NamedTensors out;
  out.emplace_back("image", o.w_image * L.at("image"));
  out.emplace_back("patch", o.w_patch * L.at("patch"));
  out.emplace_back("gather", o.w_gather * L.at("gather"));
  out.emplace_back("scatter", o.w_scatter * L.at("scatter"));
  out.emplace_back("kl", o.w_kl * L.at("kl"));
  out.emplace_back("rec", o.w_rec * L.at("rec"));
  return out;
}

std::string CopsTrainTask::config_digest() { return opt_.digest; }

void CopsTrainTask::save_state(Checkpoint& ck) {
  for (const auto& [n, t] : method_.state_dict()) ck.tensors["method/" + n] = t;
}

void CopsTrainTask::load_state(const Checkpoint&) {
  // Parameters come back through params/ (the loop); method/ is the same values for evaluation.
}

}  // namespace zsad::trainer
