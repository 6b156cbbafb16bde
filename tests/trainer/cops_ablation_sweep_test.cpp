// Must-be-true 5 of the CoPS issue at CI size: experiments/sweep/cops_ablation.yaml runs as ONE
// `zsad sweep` command (every component configuration x 2 seeds, each job = train + zero-shot
// evaluation), and `zsad leaderboard` over the sweep directory shows every configuration with
// mean +- std over the seeds.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

using zsad::testing::env;
std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}
}  // namespace

TEST(CopsAblationSweep, OneSweepCommandAndLeaderboardShowsEveryConfigurationWithMeanStd) {
  ASSERT_FALSE(env("ZSAD_BINARY").empty());
  const fs::path work = fs::temp_directory_path() / ("zsad_cops_ablation_" + std::to_string(::getpid()));
  fs::remove_all(work);
  fs::create_directories(work);
  const std::string pre = "cd '" + work.string() + "' && env -u RANK -u WORLD_SIZE OMP_NUM_THREADS=1 ZSAD_DATA_ROOT='" +
                          (work / "data").string() + "' ZSAD_OUTPUT_ROOT='" + work.string() + "' '" +
                          env("ZSAD_BINARY") + "' ";
  const std::string sweep = pre + "sweep '" + env("ZSAD_SOURCE_DIR") +
                            "/experiments/sweep/cops_ablation.yaml' 'seed=range(2)' launcher=local train.max_steps=3 "
                            "eval.panels_per_class=0 > '" + (work / "sweep.log").string() + "' 2>&1";
  ASSERT_EQ(std::system(sweep.c_str()), 0) << slurp(work / "sweep.log");

  fs::path dir;
  for (const auto& day : fs::directory_iterator(work / "multirun" / "cops_ablation"))
    for (const auto& run : fs::directory_iterator(day.path())) dir = run.path();
  ASSERT_FALSE(dir.empty());
  int jobs = 0;
  for (const auto& j : fs::directory_iterator(dir))
    if (fs::exists(j.path() / "results" / "synth_objects.json")) ++jobs;
  EXPECT_EQ(jobs, 12) << "6 configurations x 2 seeds, each with results";

  const std::string lb = pre + "leaderboard '" + dir.string() + "' --no-per-class > '" + (work / "lb.md").string() +
                         "' 2>&1";
  ASSERT_EQ(std::system(lb.c_str()), 0) << slurp(work / "lb.md");
  const std::string table = slurp(work / "lb.md");
  std::cout << table;
  for (const std::string m : {"method=cops", "method=cops_no_ests", "method=cops_no_icts", "method=cops_no_saga",
                              "method=cops_anomalyclip", "method=cops_untrained"}) {
    // The row of this configuration: its variant text, then cells "xx.x ± y.y".
    std::regex row("\\|[^\\n]*" + std::regex_replace(m, std::regex("[.=]"), "\\$&") +
                   "(\\s|\\||,|;|\\))[^\\n]*\\d+\\.\\d ± \\d+\\.\\d[^\\n]*");
    EXPECT_TRUE(std::regex_search(table, row)) << "no mean ± std row for " << m;
  }
  fs::remove_all(work);
}
