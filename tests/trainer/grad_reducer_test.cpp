#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "rank_threads.h"
#include "trainer/ddp/global_ops.h"
#include "trainer/ddp/grad_reducer.h"

using zsad::ddp::assign_buckets;
using zsad::testing::RankContext;
using zsad::testing::run_ranks;

namespace {
at::Tensor param(std::vector<int64_t> shape, at::ScalarType t = at::kFloat) {
  return at::zeros(shape, at::TensorOptions().dtype(t)).requires_grad_(true);
}
}  // namespace

TEST(AssignBuckets, ReverseOrderAndCapRule) {
  // 4-byte floats: sizes 100 B, 400 B, 40 B, 800 B; cap 500 B, first cap 200 B.
  std::vector<at::Tensor> ps{param({25}), param({100}), param({10}), param({200})};
  auto b = assign_buckets(ps, 500, 200);
  // Reverse order: 3 (800 B >= first cap 200) closes alone; then 2 + 1 (440 B) + 0 (540 B >= 500) close.
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0], (std::vector<size_t>{3}));
  EXPECT_EQ(b[1], (std::vector<size_t>{2, 1, 0}));
}

TEST(AssignBuckets, ParameterLargerThanCapGetsOwnBucket) {
  std::vector<at::Tensor> ps{param({10}), param({10000}), param({10})};
  auto b = assign_buckets(ps, 1000, 1000);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0], (std::vector<size_t>{2, 1}));  // closes after the tensor that reaches the cap
  EXPECT_EQ(b[1], (std::vector<size_t>{0}));
  auto c = assign_buckets({param({10000}), param({10})}, 1000, 1000);
  EXPECT_EQ(c[0], (std::vector<size_t>{1, 0}));
  auto d = assign_buckets({param({10}), param({10000})}, 1000, 1000);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0], (std::vector<size_t>{1}));
}

TEST(AssignBuckets, MixedDtypesNeverShareABucket) {
  std::vector<at::Tensor> ps{param({4}), param({4}, at::kDouble), param({4}), param({4}, at::kDouble)};
  auto b = assign_buckets(ps, 1 << 20, 1 << 20);
  ASSERT_EQ(b.size(), 2u);
  for (const auto& bucket : b) {
    for (size_t i : bucket) EXPECT_EQ(ps[i].scalar_type(), ps[bucket[0]].scalar_type());
  }
  size_t total = b[0].size() + b[1].size();
  EXPECT_EQ(total, 4u);
}

// Each rank sets a known local gradient; after synchronize every rank holds the mean.
class ReducerAtWorld : public ::testing::TestWithParam<int> {};

TEST_P(ReducerAtWorld, SynchronizeAveragesAcrossBucketsAndDtypes) {
  const int W = GetParam();
  run_ranks(W, [&](RankContext& c) {
    std::vector<at::Tensor> ps{param({300}), param({7}, at::kDouble), param({2, 50}), param({1}), param({3}, at::kDouble)};
    zsad::ddp::BucketOptions o;
    o.bucket_cap_bytes = 256;
    o.first_bucket_cap_bytes = 64;
    zsad::ddp::GradReducer red(c.comm, ps, o);
    ASSERT_GE(red.buckets().size(), 3u);
    for (int step = 0; step < 2; ++step) {
      for (size_t i = 0; i < ps.size(); ++i) {
        auto g = at::arange(ps[i].numel(), ps[i].options().requires_grad(false)).reshape(ps[i].sizes());
        ps[i].mutable_grad() = g * (c.rank + 1) + static_cast<double>(i + step);
      }
      red.synchronize();
      for (size_t i = 0; i < ps.size(); ++i) {
        auto base = at::arange(ps[i].numel(), ps[i].options().requires_grad(false)).reshape(ps[i].sizes());
        // mean over ranks of base*(r+1) + i + step = base*(W+1)/2 + i + step
        auto expect = base * ((W + 1) / 2.0) + static_cast<double>(i + step);
        ASSERT_TRUE(at::allclose(ps[i].grad(), expect, 1e-6, 1e-6)) << "param " << i << " rank " << c.rank;
        ASSERT_EQ(ps[i].grad().scalar_type(), ps[i].scalar_type());
      }
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Worlds, ReducerAtWorld, ::testing::Values(2, 3, 4));

TEST(GradReducer, ParametersWithoutGradients) {
  run_ranks(2, [&](RankContext& c) {
    at::Tensor frozen = at::ones({3});  // requires_grad = false: never synchronised
    at::Tensor a = param({4}), only_rank1 = param({2}), unused = param({5});
    {
      zsad::ddp::BucketOptions o;
      o.find_unused_parameters = true;
      zsad::ddp::GradReducer red(c.comm, {frozen, a, only_rank1, unused}, o);
      EXPECT_EQ(red.parameters().size(), 3u);
      a.mutable_grad() = at::full({4}, 2.0f * (c.rank + 1));
      if (c.rank == 1) only_rank1.mutable_grad() = at::full({2}, 4.0f);
      red.synchronize();
      EXPECT_TRUE(at::equal(a.grad(), at::full({4}, 3.0f)));
      ASSERT_TRUE(only_rank1.grad().defined());
      EXPECT_TRUE(at::equal(only_rank1.grad(), at::full({2}, 2.0f)));  // (0 + 4) / 2
      EXPECT_FALSE(unused.grad().defined());                          // unused everywhere stays undefined
      EXPECT_FALSE(frozen.grad().defined());
    }
    a.mutable_grad() = at::Tensor();
    only_rank1.mutable_grad() = at::Tensor();
    {
      zsad::ddp::GradReducer red(c.comm, {a, unused}, {});
      a.mutable_grad() = at::ones({4});
      red.synchronize();
      ASSERT_TRUE(unused.grad().defined());  // without find_unused: zeros, like a used parameter
      EXPECT_TRUE(at::equal(unused.grad(), at::zeros({5})));
    }
  });
}

TEST(GradReducer, BroadcastAndConsistencyCheck) {
  run_ranks(3, [&](RankContext& c) {
    at::Tensor w = at::full({10}, static_cast<float>(c.rank)).requires_grad_(true);
    at::Tensor d = at::full({2}, 5.0 + c.rank, at::kDouble).requires_grad_(true);
    zsad::ddp::GradReducer red(c.comm, {w, d});
    EXPECT_THROW(zsad::ddp::verify_parameters_consistent(c.comm, {w, d}), zsad::Error);
    red.broadcast_parameters(0);
    EXPECT_TRUE(at::equal(w, at::zeros({10})));
    EXPECT_TRUE(at::equal(d, at::full({2}, 5.0, at::kDouble)));
    EXPECT_NO_THROW(zsad::ddp::verify_parameters_consistent(c.comm, {w, d}));
    if (c.rank == 2) {
      at::NoGradGuard g;
      w[3].add_(1e-7f);
    }
    try {
      zsad::ddp::verify_parameters_consistent(c.comm, {w, d});
      ADD_FAILURE() << "a one-ulp difference went unnoticed";
    } catch (const zsad::Error& e) {
      EXPECT_NE(std::string(e.what()).find("rank 2"), std::string::npos) << e.what();
    }
  });
}

TEST(GradReducer, TrainingStepMatchesSingleProcessFullBatch) {
  // Linear regression: 2 ranks with half of a global batch each + reducer == one process on the
  // whole batch (mean loss), up to float rounding.
  torch::manual_seed(0);
  at::Tensor X = torch::randn({8, 5}), Y = torch::randn({8, 1});
  at::Tensor W0 = torch::randn({5, 1});
  at::Tensor ref = W0.clone().requires_grad_(true);
  torch::mse_loss(X.mm(ref), Y).backward();
  at::Tensor ref_grad = ref.grad().clone();
  run_ranks(2, [&](RankContext& c) {
    at::Tensor w = (c.rank == 0 ? W0.clone() : at::zeros({5, 1})).requires_grad_(true);
    zsad::ddp::GradReducer red(c.comm, {w});
    red.broadcast_parameters();
    at::Tensor x = X.narrow(0, 4 * c.rank, 4), y = Y.narrow(0, 4 * c.rank, 4);
    torch::mse_loss(x.mm(w), y).backward();
    red.synchronize();
    ASSERT_TRUE(at::allclose(w.grad(), ref_grad, 1e-5, 1e-6));
  });
}

TEST(GlobalOps, SumCountAndAllGatherWithGrad) {
  // Loss over the gathered batch: sum_i ||e_i||^2 / global count. Distributed gradient (after the
  // reducer's averaging) must equal the single-process gradient over the full batch.
  torch::manual_seed(1);
  at::Tensor X = torch::randn({6, 3});
  at::Tensor W0 = torch::randn({3, 2});
  at::Tensor ref = W0.clone().requires_grad_(true);
  {
    at::Tensor e = X.mm(ref);
    // An all-pairs term: needs every sample's embedding.
    at::Tensor sim = e.mm(e.t());
    (sim.pow(2).sum() / 36.0).backward();
  }
  at::Tensor ref_grad = ref.grad().clone();
  run_ranks(3, [&](RankContext& c) {
    at::Tensor w = W0.clone().requires_grad_(true);
    zsad::ddp::GradReducer red(c.comm, {w});
    at::Tensor x = X.narrow(0, 2 * c.rank, 2);
    at::Tensor e = x.mm(w);
    at::Tensor all = zsad::ddp::all_gather_with_grad(c.comm, e);
    ASSERT_EQ(all.size(0), 6);
    double n = zsad::ddp::global_count(c.comm, 2.0);
    ASSERT_EQ(n, 6.0);
    at::Tensor s = zsad::ddp::global_sum(c.comm, at::full({1}, 1.0f + c.rank));
    ASSERT_EQ(s.item<float>(), 6.0f);
    at::Tensor sim = e.mm(all.t());  // this rank's rows of the all-pairs matrix
    (sim.pow(2).sum() / (n * n) * c.comm.world_size()).backward();
    red.synchronize();
    ASSERT_TRUE(at::allclose(w.grad(), ref_grad, 1e-5, 1e-6)) << w.grad() << ref_grad;
  });
}

TEST(GradReducer, OverlapWithBackwardEqualsPostBackwardSync) {
  // Real backward through a small net on 3 ranks; hooks launch buckets during backward. The result
  // must equal the plain reducer's (same data), including gradient accumulation (the first
  // micro-step is not armed) and a parameter that gets no gradient.
  run_ranks(3, [&](RankContext& c) {
    std::vector<at::Tensor> got[2];
    for (int overlap = 0; overlap < 2; ++overlap) {
      // Per-thread generators: the ranks are threads, and torch::manual_seed's global generator
      // would be shared (and interleaved) between them.
      at::Generator g = at::detail::createCPUGenerator(7);
      at::Tensor w1 = torch::randn({6, 5}, g).requires_grad_(true), b1 = torch::randn({6}, g).requires_grad_(true);
      at::Tensor w2 = torch::randn({1, 6}, g).requires_grad_(true), unused = torch::randn({4}, g).requires_grad_(true);
      zsad::ddp::BucketOptions o;
      o.bucket_cap_bytes = 32;
      o.first_bucket_cap_bytes = 16;
      o.overlap_with_backward = overlap == 1;
      o.find_unused_parameters = true;
      zsad::ddp::GradReducer red(c.comm, {unused, w1, b1, w2}, o);  // reverse order: unused bucket last
      ASSERT_GE(red.buckets().size(), 3u);
      for (int step = 0; step < 2; ++step) {
        for (auto* p : {&w1, &b1, &w2}) p->mutable_grad() = at::Tensor();
        for (int micro = 0; micro < 2; ++micro) {
          at::Tensor x = torch::randn({4, 5}, at::detail::createCPUGenerator(100 * c.rank + 10 * step + micro));
          if (micro == 1) red.prepare_for_backward();
          (torch::tanh(x.mm(w1.t()) + b1).mm(w2.t())).pow(2).mean().backward();
        }
        red.synchronize();
      }
      got[overlap] = {w1.grad().clone(), b1.grad().clone(), w2.grad().clone()};
      // The buckets holding w1, b1, w2 start from hooks (2 per step); the unused one at synchronize().
      EXPECT_EQ(red.buckets_started_in_backward(), overlap ? 4 : 0);
      EXPECT_FALSE(unused.grad().defined());
    }
    for (size_t i = 0; i < 3; ++i) ASSERT_TRUE(at::equal(got[0][i], got[1][i])) << "param " << i << " rank " << c.rank;
  });
}
