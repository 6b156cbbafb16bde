#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "rank_threads.h"

using zsad::comm::ReduceOp;
using zsad::testing::RankContext;
using zsad::testing::run_ranks;

class CollectivesAtWorld : public ::testing::TestWithParam<int> {};

TEST_P(CollectivesAtWorld, AllreduceSumAndMax) {
  const int W = GetParam();
  run_ranks(W, [&](RankContext& c) {
    for (auto dtype : {at::kFloat, at::kDouble, at::kLong}) {
      at::Tensor t = at::arange(6, at::TensorOptions().dtype(dtype)) * (c.rank + 1);
      c.comm.allreduce(t, ReduceOp::kSum);
      at::Tensor expect = at::arange(6, at::TensorOptions().dtype(dtype)) * (W * (W + 1) / 2);
      ASSERT_TRUE(at::equal(t, expect)) << "rank " << c.rank << " dtype " << dtype;
      at::Tensor m = at::full({3}, c.rank == 1 ? 9.0 : -1.0 * c.rank, at::TensorOptions().dtype(dtype));
      c.comm.allreduce(m, ReduceOp::kMax);
      ASSERT_TRUE(at::equal(m, at::full({3}, 9.0, at::TensorOptions().dtype(dtype))));
    }
  });
}

TEST_P(CollectivesAtWorld, AllreduceManyKeepsEachTensorApart) {
  const int W = GetParam();
  run_ranks(W, [&](RankContext& c) {
    std::vector<at::Tensor> ts{at::full({1000}, 1.0f * c.rank), at::full({3}, 2.0), at::ones({5}, at::kLong)};
    c.comm.allreduce_many(ts, ReduceOp::kSum);
    ASSERT_TRUE(at::equal(ts[0], at::full({1000}, W * (W - 1) / 2.0f)));
    ASSERT_TRUE(at::equal(ts[1], at::full({3}, 2.0 * W)));
    ASSERT_TRUE(at::equal(ts[2], at::full({5}, static_cast<int64_t>(W), at::kLong)));
  });
}

TEST_P(CollectivesAtWorld, BroadcastFromEveryRoot) {
  const int W = GetParam();
  run_ranks(W, [&](RankContext& c) {
    for (int root = 0; root < W; ++root) {
      at::Tensor t = at::full({2, 3}, 10.0f * c.rank + 1);
      c.comm.broadcast(t, root);
      ASSERT_TRUE(at::equal(t, at::full({2, 3}, 10.0f * root + 1))) << "root " << root << " rank " << c.rank;
    }
  });
}

TEST_P(CollectivesAtWorld, AllgatherInRankOrder) {
  const int W = GetParam();
  run_ranks(W, [&](RankContext& c) {
    at::Tensor t = at::full({2, 2}, static_cast<double>(c.rank), at::kDouble);
    at::Tensor all = c.comm.allgather(t);
    ASSERT_EQ(all.sizes(), (std::vector<int64_t>{W, 2, 2}));
    for (int r = 0; r < W; ++r) ASSERT_TRUE(at::equal(all[r], at::full({2, 2}, static_cast<double>(r), at::kDouble)));
    c.comm.barrier();
  });
}

INSTANTIATE_TEST_SUITE_P(Worlds, CollectivesAtWorld, ::testing::Values(2, 3, 4));

TEST(Collectives, TimeoutNamesTheMissingRank) {
  // Rank 1 never joins the allreduce: rank 0 must fail within the timeout (+ diagnosis), naming rank 1.
  std::string message;
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(
      run_ranks(
          2,
          [&](RankContext& c) {
            if (c.rank == 0) {
              at::Tensor t = at::ones({4});
              try {
                c.comm.allreduce(t);
              } catch (const zsad::comm::CommError& e) {
                message = e.what();
                throw;
              }
            } else {
              std::this_thread::sleep_for(std::chrono::seconds(4));
              throw std::runtime_error("rank 1 gives up");
            }
          },
          std::chrono::milliseconds(1500)),
      std::exception);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(secs, 15.0);
  EXPECT_NE(message.find("rank 1"), std::string::npos) << message;
  EXPECT_NE(message.find("allreduce"), std::string::npos) << message;
}

TEST(Collectives, LocalBackendIsIdentity) {
  auto c = zsad::comm::make_local_communicator();
  at::Tensor t = at::arange(3);
  c->allreduce(t);
  EXPECT_TRUE(at::equal(t, at::arange(3)));
  EXPECT_EQ(c->allgather(t).sizes(), (std::vector<int64_t>{1, 3}));
}

TEST(Collectives, BackendNames) {
  EXPECT_EQ(zsad::comm::parse_backend("gloo"), zsad::comm::Backend::kGloo);
  EXPECT_THROW(zsad::comm::parse_backend("ucc"), zsad::Error);
}
