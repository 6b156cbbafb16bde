// APT few-shot protocol: shot sampling (deterministic, without replacement), WinCLIP shot-list
// files, class sharding over ranks (every class on exactly one rank, balanced by image count).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <random>
#include <set>

#include "models/methods/apt/few_shot.h"

namespace apt = zsad::models::apt;
using zsad::data::Sample;

namespace {

std::vector<Sample> candidates(int n) {
  std::vector<Sample> v;
  for (int i = 0; i < n; ++i) {
    Sample s;
    char name[32];
    std::snprintf(name, sizeof(name), "cls/train/good/%03d.png", i);
    s.img_path = name;
    s.cls_name = "cls";
    v.push_back(s);
  }
  return v;
}

}  // namespace

TEST(AptShots, DeterministicWithoutReplacementAndNested) {
  const auto c = candidates(20);
  for (int64_t k : {1, 2, 4, 20}) {
    for (uint64_t seed : {0ull, 1ull, 111ull}) {
      auto a = apt::sample_shots("bottle", c, k, seed);
      auto b = apt::sample_shots("bottle", c, k, seed);
      EXPECT_EQ(a.indices, b.indices);
      EXPECT_EQ(a.files, b.files);
      ASSERT_EQ(static_cast<int64_t>(a.indices.size()), k);
      std::set<int64_t> uniq(a.indices.begin(), a.indices.end());
      EXPECT_EQ(static_cast<int64_t>(uniq.size()), k) << "drawn with replacement";
      for (size_t i = 0; i < a.indices.size(); ++i) {
        EXPECT_GE(a.indices[i], 0);
        EXPECT_LT(a.indices[i], 20);
        EXPECT_EQ(a.files[i], c[a.indices[i]].img_path);
      }
    }
  }
  // Nested: the k=2 shots start with the k=1 shot, k=4 with the k=2 shots.
  auto s1 = apt::sample_shots("bottle", c, 1, 7), s2 = apt::sample_shots("bottle", c, 2, 7),
       s4 = apt::sample_shots("bottle", c, 4, 7);
  EXPECT_EQ(s2.indices[0], s1.indices[0]);
  EXPECT_TRUE(std::equal(s2.indices.begin(), s2.indices.end(), s4.indices.begin()));
  // Seeds and classes give different draws (4 of 20: a collision of all 10 pairs is ~impossible).
  std::set<std::vector<int64_t>> draws;
  for (uint64_t seed = 0; seed < 10; ++seed) draws.insert(apt::sample_shots("bottle", c, 4, seed).indices);
  EXPECT_GE(draws.size(), 9u);
  EXPECT_NE(apt::sample_shots("bottle", c, 4, 3).indices, apt::sample_shots("cable", c, 4, 3).indices);
  EXPECT_THROW(apt::sample_shots("bottle", candidates(3), 4, 0), std::exception);
}

TEST(AptShots, RoughlyUniformOverCandidates) {
  // Each of 10 candidates should be the single shot about 1/10 of the time over 2000 seeds.
  const auto c = candidates(10);
  std::vector<int> hits(10, 0);
  for (uint64_t seed = 0; seed < 2000; ++seed) ++hits[apt::sample_shots("x", c, 1, seed).indices[0]];
  for (int h : hits) {
    EXPECT_GT(h, 140);  // mean 200, sd ~13.4
    EXPECT_LT(h, 260);
  }
}

TEST(AptShots, ShotListFileByStem) {
  const std::string path = "/tmp/zsad_apt_shots_" + std::to_string(getpid()) + ".txt";
  {
    std::ofstream f(path);
    f << "#1: 013\n#2: 004 011\n#4: 001 019 007 002\n#1: 005\n";
  }
  const auto c = candidates(20);
  auto lists = apt::read_shot_list(path);
  ASSERT_EQ(lists.size(), 3u);
  EXPECT_EQ(lists[1].size(), 2u);
  auto s = apt::shots_from_list("cls", c, 4, path);
  EXPECT_EQ(s.indices, (std::vector<int64_t>{1, 19, 7, 2}));
  EXPECT_EQ(s.files[1], "cls/train/good/019.png");
  EXPECT_EQ(apt::shots_from_list("cls", c, 1, path, 1).indices, (std::vector<int64_t>{5}));
  EXPECT_EQ(apt::shots_from_list("cls", c, 1, path, 2).indices, (std::vector<int64_t>{13}));  // wraps
  EXPECT_THROW(apt::shots_from_list("cls", candidates(5), 4, path), std::exception);  // 019 missing
  {
    std::ofstream f(path);
    f << "#2: 004\n";
  }
  EXPECT_THROW(apt::read_shot_list(path), std::exception);
  std::remove(path.c_str());
  EXPECT_EQ(apt::shot_list_path("seeds_mvtec/{cls}/selected_samples_per_run.txt", "bottle"),
            "seeds_mvtec/bottle/selected_samples_per_run.txt");
}

TEST(AptSharding, EveryClassOnExactlyOneRankAndBalanced) {
  std::mt19937 gen(5);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + static_cast<int>(gen() % 20);
    const int world = 1 + static_cast<int>(gen() % 6);
    std::vector<std::string> classes;
    std::vector<int64_t> counts;
    for (int i = 0; i < n; ++i) {
      classes.push_back("c" + std::to_string(i));
      counts.push_back(1 + static_cast<int64_t>(gen() % 300));
    }
    auto a = apt::shard_classes(classes, counts, world);
    ASSERT_EQ(a.size(), classes.size());
    EXPECT_EQ(a, apt::shard_classes(classes, counts, world));  // pure
    std::vector<int64_t> load(world, 0);
    std::multiset<std::string> seen;
    for (int r = 0; r < world; ++r)
      for (const auto& c : apt::classes_of_rank(classes, a, r)) seen.insert(c);
    EXPECT_EQ(seen, std::multiset<std::string>(classes.begin(), classes.end()));  // each exactly once
    for (int i = 0; i < n; ++i) {
      ASSERT_GE(a[i], 0);
      ASSERT_LT(a[i], world);
      load[a[i]] += counts[i];
    }
    // Greedy LPT bound: the most loaded rank exceeds the least loaded by at most one class.
    const auto mx = *std::max_element(load.begin(), load.end()), mn = *std::min_element(load.begin(), load.end());
    EXPECT_LE(mx - mn, *std::max_element(counts.begin(), counts.end()));
    // With at least as many classes as ranks, no rank is idle.
    if (n >= world) EXPECT_GT(mn, 0);
  }
  // By hand: a5 -> r0 (5,0); b4 -> r1 (5,4); c3 -> r1 (5,7); d3 -> r0 (8,7); e3 -> r1 (8,10).
  auto a = apt::shard_classes({"a", "b", "c", "d", "e"}, {5, 4, 3, 3, 3}, 2);
  EXPECT_EQ(a, (std::vector<int>{0, 1, 1, 0, 1}));
  EXPECT_THROW(apt::shard_classes({"a"}, {1, 2}, 2), std::exception);
  EXPECT_THROW(apt::shard_classes({"a"}, {1}, 0), std::exception);
}
