// The training loop's epoch arithmetic (trainer::train with TrainConfig::keep_partial_batch) on a
// 9-sample linear regression with a globally normalised loss, ranks as threads (gloo):
//  - keep: ceil(9/4) = 3 steps per epoch, the last of 1 sample, so one of 2 ranks holds none;
//    every epoch visits each sample exactly once, and 1 and 2 ranks give the same parameters;
//  - drop: floor(N / global batch) steps of distinct samples at any world size (15 samples at
//    batch 8 used to give 2 ranks a second step padded with a wrap-around copy);
//  - a checkpoint taken right after the partial step resumes to the uninterrupted result.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <vector>

#include <ATen/ATen.h>

#include "trainer/ddp/global_ops.h"
#include "trainer/loop/train_loop.h"
#include "rank_threads.h"

namespace {

using zsad::trainer::NamedTensors;

struct StepIds {
  int64_t epoch;
  std::vector<int64_t> ids;
};

// y = x.w + b on fixed data; loss = sum of squared errors over the global batch / its size, with
// the gradient of this rank's part scaled by the world size (the reducer averages over ranks).
class LinearTask : public zsad::trainer::TrainTask {
 public:
  explicit LinearTask(int64_t n) {
    auto g = at::detail::createCPUGenerator(7);
    x_ = at::randn({n, 3}, g);
    y_ = at::randn({n, 1}, g);
    w_ = at::zeros({3, 1}).set_requires_grad(true);
    b_ = at::zeros({1}).set_requires_grad(true);
  }
  NamedTensors named_parameters() override { return {{"w", w_}, {"b", b_}}; }
  int64_t dataset_size() override { return x_.size(0); }
  NamedTensors train_step(const std::vector<int64_t>& ids, zsad::trainer::StepContext& ctx) override {
    steps[ctx.step] = {ctx.epoch, ids};
    auto idx = at::tensor(ids, at::kLong);
    auto err = at::matmul(x_.index_select(0, idx), w_) + b_ - y_.index_select(0, idx);
    auto local = err.pow(2).sum();
    const double count = zsad::ddp::global_count(ctx.comm, static_cast<double>(ids.size()));
    auto total = zsad::ddp::global_sum(ctx.comm, local.detach());
    const double W = ctx.comm.world_size();
    return {{"mse", total / count + (local - local.detach()) * (W / count)}};
  }
  std::string config_digest() override { return "linear-3"; }

  std::map<int64_t, StepIds> steps;  // step -> this rank's epoch and ids
  at::Tensor w_, b_;

 private:
  at::Tensor x_, y_;
};

struct RunResult {
  std::vector<std::map<int64_t, StepIds>> steps;  // per rank
  at::Tensor params;                               // rank 0's [w; b]
  int64_t steps_done = 0;
};

RunResult train_on(int world, int64_t n, int64_t batch, bool keep, const std::string& run_dir, int64_t max_steps = -1) {
  RunResult out;
  out.steps.resize(world);
  std::mutex mu;
  zsad::testing::run_ranks(world, [&](zsad::testing::RankContext& rc) {
    LinearTask task(n);
    zsad::trainer::TrainConfig c;
    c.epochs = 2;
    c.max_steps = max_steps;
    c.global_batch_size = batch;
    c.keep_partial_batch = keep;
    c.seed = 5;
    c.optim.type = "sgd";
    c.optim.lr = 0.1;
    c.run_dir = run_dir;
    c.log_every = 100;
    auto res = zsad::trainer::train(task, c, rc.comm);
    std::lock_guard<std::mutex> lock(mu);
    out.steps[rc.rank] = task.steps;
    if (rc.rank == 0) {
      out.params = at::cat({task.w_.detach().flatten(), task.b_.detach()});
      out.steps_done = res.steps;
    }
  });
  return out;
}

// Ids of every step, all ranks together.
std::map<int64_t, std::multiset<int64_t>> union_per_step(const RunResult& r) {
  std::map<int64_t, std::multiset<int64_t>> u;
  for (const auto& rank : r.steps)
    for (const auto& [step, s] : rank) u[step].insert(s.ids.begin(), s.ids.end());
  return u;
}

struct OneVsTwo {
  std::map<int64_t, std::multiset<int64_t>> per_step;  // ids of every step, all ranks together
  RunResult one, two;
};

// The same run on 1 and on 2 ranks: both take `steps` steps with the same global batch at every
// step and end with the same parameters.
OneVsTwo one_vs_two(int64_t samples, int64_t batch, bool keep, const std::string& dir, int steps) {
  OneVsTwo r{{}, train_on(1, samples, batch, keep, dir + "/w1"), train_on(2, samples, batch, keep, dir + "/w2")};
  EXPECT_EQ(r.one.steps_done, steps);
  EXPECT_EQ(r.two.steps_done, steps);
  r.per_step = union_per_step(r.one);
  EXPECT_EQ(r.per_step.size(), static_cast<size_t>(steps));
  EXPECT_EQ(r.per_step, union_per_step(r.two));
  EXPECT_LT((r.one.params - r.two.params).abs().max().item<double>(), 1e-6);
  return r;
}

}  // namespace

TEST(PartialBatch, KeptLastBatchVisitsEverySampleOnceAtAnyWorldSize) {
  const std::string dir = zsad::testing::fresh_temp_dir("partial_keep");
  const OneVsTwo r = one_vs_two(9, 4, true, dir, 6);  // 2 epochs of ceil(9/4) = 3 steps
  const auto& u1 = r.per_step;
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::multiset<int64_t> seen;
    for (int64_t s = 3 * epoch; s < 3 * epoch + 3; ++s) seen.insert(u1.at(s).begin(), u1.at(s).end());
    EXPECT_EQ(seen, (std::multiset<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8})) << "epoch " << epoch;
    EXPECT_EQ(u1.at(3 * epoch + 2).size(), 1u);  // the partial batch
  }
  bool empty_rank = false;
  for (const auto& rank : r.two.steps)
    for (const auto& [step, s] : rank) empty_rank = empty_rank || s.ids.empty();
  EXPECT_TRUE(empty_rank) << "no rank was left without samples: the case tests nothing new";
  EXPECT_GT(r.one.params.abs().max().item<double>(), 1e-2);  // training moved the parameters
  std::filesystem::remove_all(dir);
}

TEST(PartialBatch, DroppedLastBatchLeavesDistinctSamplesAndTheSameStepCount) {
  const std::string dir = zsad::testing::fresh_temp_dir("partial_drop");
  const OneVsTwo r = one_vs_two(15, 8, false, dir, 2);  // 2 epochs of floor(15/8) = 1 step
  for (const auto& [step, ids] : r.per_step) {
    EXPECT_EQ(ids.size(), 8u) << "step " << step;
    EXPECT_EQ(std::set<int64_t>(ids.begin(), ids.end()).size(), ids.size()) << "step " << step << " repeats a sample";
  }
  std::filesystem::remove_all(dir);
}

TEST(PartialBatch, ResumeRightAfterThePartialStepContinuesIdentically) {
  const std::string dir = zsad::testing::fresh_temp_dir("partial_resume");
  RunResult whole = train_on(2, 9, 4, true, dir + "/whole");
  RunResult first = train_on(2, 9, 4, true, dir + "/split", /*max_steps=*/3);  // ends after epoch 0's partial step
  ASSERT_EQ(first.steps_done, 3);
  RunResult rest = train_on(2, 9, 4, true, dir + "/split");  // resumes from that checkpoint
  ASSERT_EQ(rest.steps_done, 6);
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(rest.steps[r].size(), 3u) << "rank " << r << " did not resume at step 3";
    for (const auto& [step, s] : rest.steps[r]) {
      EXPECT_EQ(s.epoch, 1) << "rank " << r << " step " << step;
      EXPECT_EQ(s.ids, whole.steps[r].at(step).ids) << "rank " << r << " step " << step;
    }
  }
  EXPECT_TRUE(at::equal(rest.params, whole.params));
  std::filesystem::remove_all(dir);
}
