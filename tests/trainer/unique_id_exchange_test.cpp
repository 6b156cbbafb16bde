#include <gtest/gtest.h>

#include <atomic>

#include "common/error.h"
#include "rank_threads.h"
#include "trainer/comm/unique_id_exchange.h"

#include <torch/csrc/distributed/c10d/FileStore.hpp>

TEST(UniqueIdExchange, EveryRankGetsRankZerosBytes) {
  // The store-based exchange the nccl backend uses for its ncclUniqueId (128 bytes), run on CPU.
  const int W = 4;
  const std::string dir = zsad::testing::fresh_temp_dir("uid");
  std::vector<std::vector<uint8_t>> got(W);
  std::atomic<int> made{0};
  std::vector<std::thread> ts;
  for (int r = 0; r < W; ++r) {
    ts.emplace_back([&, r] {
      auto store = zsad::dist::connect_file_store(dir + "/fs", r, W, std::chrono::seconds(20));
      if (r != 0) std::this_thread::sleep_for(std::chrono::milliseconds(10 * r));
      got[r] = zsad::comm::exchange_unique_id(
          *store, r, "zsad/nccl/unique_id",
          [&] {
            ++made;
            std::vector<uint8_t> id(128);
            for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(i * 7 + 3);
            return id;
          },
          std::chrono::seconds(10));
      store->add("done", 1);
      while (store->add("done", 0) < W) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(made.load(), 1);
  ASSERT_EQ(got[0].size(), 128u);
  EXPECT_EQ(got[0][1], 10);
  for (int r = 1; r < W; ++r) EXPECT_EQ(got[r], got[0]) << "rank " << r;
}

TEST(UniqueIdExchange, MissingRootTimesOutNamingTheKey) {
  const std::string dir = zsad::testing::fresh_temp_dir("uid");
  auto store = c10::make_intrusive<c10d::FileStore>(dir + "/fs", 1);
  store->set("unrelated", std::vector<uint8_t>{1});  // a FileStore's file exists once written
  try {
    zsad::comm::exchange_unique_id(*store, 1, "zsad/nccl/unique_id", [] { return std::vector<uint8_t>{}; },
                                   std::chrono::milliseconds(300));
    ADD_FAILURE() << "no timeout";
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find("zsad/nccl/unique_id"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("rank 0"), std::string::npos) << e.what();
  }
}
