#include <gtest/gtest.h>

#include <cmath>

#include <torch/torch.h>

#include "common/error.h"
#include "rank_threads.h"
#include "trainer/checkpoint.h"
#include "trainer/dist/store.h"
#include "trainer/loop/optim.h"
#include "trainer/loop/run_log.h"
#include "trainer/loop/train_loop.h"

using namespace zsad::trainer;

TEST(LrSchedule, ConstantWarmupCosine) {
  LrSchedule s;
  EXPECT_DOUBLE_EQ(lr_at(s, 0.1, 57), 0.1);
  s.type = "warmup";
  s.warmup_steps = 4;
  EXPECT_DOUBLE_EQ(lr_at(s, 0.1, 0), 0.025);
  EXPECT_DOUBLE_EQ(lr_at(s, 0.1, 3), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(s, 0.1, 100), 0.1);
  s.type = "cosine";
  s.warmup_steps = 0;
  s.total_steps = 10;
  s.min_lr = 0.01;
  EXPECT_DOUBLE_EQ(lr_at(s, 0.1, 0), 0.1);
  EXPECT_NEAR(lr_at(s, 0.1, 5), 0.055, 1e-12);  // halfway: (base + min) / 2
  EXPECT_NEAR(lr_at(s, 0.1, 10), 0.01, 1e-12);
  EXPECT_NEAR(lr_at(s, 0.1, 50), 0.01, 1e-12);
  // torch.optim.lr_scheduler.CosineAnnealingLR closed form at step 3 of 10.
  EXPECT_NEAR(lr_at(s, 0.1, 3), 0.01 + 0.5 * 0.09 * (1 + std::cos(M_PI * 0.3)), 1e-12);
  s.type = "linear";
  EXPECT_THROW(lr_at(s, 0.1, 0), zsad::Error);
}

class OptimizerState : public ::testing::TestWithParam<std::string> {};

TEST_P(OptimizerState, CheckpointRoundTripContinuesBitIdentically) {
  OptimConfig c;
  c.type = GetParam();
  c.momentum = 0.9;
  c.amsgrad = c.type != "sgd";
  torch::manual_seed(0);
  auto make = [] { return std::vector<at::Tensor>{torch::randn({4, 3}).requires_grad_(true), torch::randn({3}).requires_grad_(true)}; };
  auto step = [](std::vector<at::Tensor>& ps, torch::optim::Optimizer& o, int k) {
    o.zero_grad();
    torch::manual_seed(100 + k);
    (ps[0].sum(0) * ps[1] * torch::randn({3})).sum().backward();
    o.step();
  };
  auto a = make();
  std::vector<at::Tensor> b;
  for (auto& p : a) b.push_back(p.detach().clone().requires_grad_(true));
  auto oa = make_optimizer(a, c);
  for (int k = 0; k < 3; ++k) step(a, *oa, k);
  zsad::Checkpoint ck;
  save_optimizer_state(*oa, a, c, ck);
  const std::string dir = zsad::testing::fresh_temp_dir("optim");
  zsad::write_checkpoint(dir + "/o.h5", ck);
  auto back = zsad::read_checkpoint(dir + "/o.h5");
  {
    torch::NoGradGuard g;
    for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
  }
  auto ob = make_optimizer(b, c);
  load_optimizer_state(*ob, b, c, back);
  for (int k = 3; k < 6; ++k) {
    step(a, *oa, k);
    step(b, *ob, k);
  }
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i], b[i])) << c.type << " param " << i;
  OptimConfig other = c;
  other.type = c.type == "sgd" ? "adam" : "sgd";
  EXPECT_THROW(load_optimizer_state(*ob, b, other, back), zsad::Error);
}

INSTANTIATE_TEST_SUITE_P(Types, OptimizerState, ::testing::Values("adam", "adamw", "sgd"));

TEST(TrainConfig, DigestAndSeeds) {
  TrainConfig a, b;
  EXPECT_EQ(config_digest(a, 2, "m"), config_digest(b, 2, "m"));
  b.optim.lr = 2e-3;
  EXPECT_NE(config_digest(a, 2, "m"), config_digest(b, 2, "m"));
  EXPECT_NE(config_digest(a, 2, "m"), config_digest(a, 4, "m"));
  EXPECT_NE(config_digest(a, 2, "m"), config_digest(a, 2, "other"));
  a.max_steps = 7;  // training longer is a resume, not a different run
  EXPECT_EQ(config_digest(a, 2, "m"), config_digest(TrainConfig{}, 2, "m"));
  EXPECT_NE(derive_seed(5, 0), derive_seed(5, 1));
  EXPECT_NE(derive_seed(5, 0), derive_seed(6, 0));
  EXPECT_EQ(derive_seed(5, 3), derive_seed(5, 3));
  EXPECT_THROW(make_optimizer({}, OptimConfig{"lamb"}), zsad::Error);
}

TEST(RunLog, DurationFormat) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(125), "2:05");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(NAN), "?");
}

TEST(Rendezvous, MissingPeerNamesAddressAndRank) {
  zsad::dist::DistEnv env;
  env.world_size = 2;
  env.rank = 0;
  env.master_addr = "127.0.0.1";
  env.master_port = 0;  // TCPStore picks a free port
  // Rank 0 hosts; rank 1 never comes.
  try {
    zsad::dist::connect_tcp_store(env, std::chrono::milliseconds(1500));
    ADD_FAILURE() << "rendezvous succeeded without rank 1";
  } catch (const zsad::Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("127.0.0.1:"), std::string::npos) << m;
    EXPECT_EQ(m.find("127.0.0.1:0 "), std::string::npos) << m;
    EXPECT_NE(m.find("rank(s) 1 of 2"), std::string::npos) << m;
  }
}
