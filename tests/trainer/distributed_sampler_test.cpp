#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "trainer/distributed_sampler.h"

namespace {

std::string run(const std::string& cmd) {
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
  if (!p) throw std::runtime_error("popen failed: " + cmd);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p.get())) > 0) out.append(buf.data(), n);
  return out;
}

std::vector<std::vector<int64_t>> python_reference(int64_t n, int replicas, int seed, int epoch, bool shuffle,
                                                   bool drop_last) {
  const char* py = std::getenv("ZSAD_PYTHON");
  const char* src = std::getenv("ZSAD_SOURCE_DIR");
  EXPECT_TRUE(py && src) << "ZSAD_PYTHON / ZSAD_SOURCE_DIR not set (run through ctest)";
  std::string cmd = std::string(py) + " " + src + "/tests/trainer/sampler_reference.py " + std::to_string(n) + " " +
                    std::to_string(replicas) + " " + std::to_string(seed) + " " + std::to_string(epoch) + " " +
                    (shuffle ? "1" : "0") + " " + (drop_last ? "1" : "0");
  auto j = nlohmann::json::parse(run(cmd));
  return j.get<std::vector<std::vector<int64_t>>>();
}

}  // namespace

struct SamplerCase {
  int64_t n;
  int replicas;
  int seed;
  int epoch;
  bool shuffle;
  bool drop_last;
};

class SamplerVsPython : public ::testing::TestWithParam<SamplerCase> {};

TEST_P(SamplerVsPython, SameIndicesAsTorchDistributedSampler) {
  const SamplerCase c = GetParam();
  auto ref = python_reference(c.n, c.replicas, c.seed, c.epoch, c.shuffle, c.drop_last);
  ASSERT_EQ(ref.size(), static_cast<size_t>(c.replicas));
  for (int r = 0; r < c.replicas; ++r) {
    zsad::DistributedSampler s(c.n, c.replicas, r, c.shuffle, c.seed, c.drop_last);
    s.set_epoch(c.epoch);
    EXPECT_EQ(s.indices(), ref[r]) << "rank " << r;
    EXPECT_EQ(s.num_samples(), static_cast<int64_t>(ref[r].size()));
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, SamplerVsPython,
                         ::testing::Values(SamplerCase{10, 2, 0, 0, true, false}, SamplerCase{10, 3, 0, 0, true, false},
                                           SamplerCase{10, 3, 0, 0, true, true}, SamplerCase{11, 4, 7, 3, true, false},
                                           SamplerCase{11, 4, 7, 3, true, true}, SamplerCase{3, 5, 1, 2, true, false},
                                           SamplerCase{2, 7, 0, 0, false, false}, SamplerCase{17, 3, 5, 1, false, true},
                                           SamplerCase{1000, 4, 42, 9, true, false}));

TEST(DistributedSampler, ShardsAreDisjointAndCoverWhenDivisible) {
  const int64_t n = 24;
  std::multiset<int64_t> seen;
  for (int r = 0; r < 4; ++r) {
    zsad::DistributedSampler s(n, 4, r, true, 3);
    s.set_epoch(1);
    for (auto i : s.indices()) seen.insert(i);
  }
  ASSERT_EQ(seen.size(), static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(seen.count(i), 1u) << i;
}

TEST(DistributedSampler, EpochsDiffer) {
  zsad::DistributedSampler s(50, 2, 0, true, 0);
  s.set_epoch(0);
  auto a = s.indices();
  s.set_epoch(1);
  EXPECT_NE(a, s.indices());
}

TEST(DistributedSampler, ResumeContinuesMidEpoch) {
  zsad::DistributedSampler a(37, 3, 1, true, 11);
  a.set_epoch(2);
  std::vector<int64_t> straight;
  while (!a.exhausted()) {
    auto b = a.next(4);
    straight.insert(straight.end(), b.begin(), b.end());
  }
  zsad::DistributedSampler first(37, 3, 1, true, 11);
  first.set_epoch(2);
  std::vector<int64_t> resumed = first.next(4);
  auto more = first.next(4);
  resumed.insert(resumed.end(), more.begin(), more.end());
  zsad::DistributedSampler second(37, 3, 1, true, 11);
  second.restore(first.epoch(), first.position());
  while (!second.exhausted()) {
    auto b = second.next(4);
    resumed.insert(resumed.end(), b.begin(), b.end());
  }
  EXPECT_EQ(straight, resumed);
  EXPECT_EQ(straight, a.indices());
  EXPECT_THROW(second.restore(2, 1000), zsad::Error);
}

TEST(DistributedSampler, RejectsBadRank) {
  EXPECT_THROW(zsad::DistributedSampler(10, 2, 2), zsad::Error);
  EXPECT_THROW(zsad::DistributedSampler(0, 2, 0), zsad::Error);
}
