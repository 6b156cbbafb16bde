// The sweeper as a library: in-process job callbacks, resume, job commands per launcher, job files.
#include <gtest/gtest.h>

#include <map>

#include "common/error.h"
#include "launch/config/yaml_io.h"
#include "launch/sweep/sweep.h"
#include "test_util.h"

namespace fs = std::filesystem;
using zsad::config::Node;

TEST(SweepLib, InProcessJobsAndResume) {
  zsad_test::TempDir dir;
  zsad_test::write_file(dir.path / "experiments/task/shell.yaml", "name: shell\ncommand: 'true'\n");
  zsad_test::write_file(dir.path / "experiments/exp.yaml",
                        "defaults:\n  - task: shell\n  - _self_\nseed: 0\noutput:\n  root: " + dir.str() + "\n");
  auto plan = zsad::launch::plan_sweep((dir.path / "experiments/exp.yaml").string(), {"seed=range(4)"}, 0);
  ASSERT_EQ(plan.jobs.size(), 4u);
  std::map<int, int> calls;
  bool stop_job_2 = true;
  zsad::launch::RunOptions opts;
  opts.quiet = true;
  opts.in_process = [&](const zsad::launch::JobContext& job) {
    ++calls[job.job_num];
    EXPECT_EQ(job.config.at("seed").as_int(), job.job_num);  // seed=range(4) in job order
    EXPECT_TRUE(fs::exists(job.config_path));
    if (job.job_num == 2 && stop_job_2) return 75;  // e.g. preempted after a checkpoint
    return job.job_num == 3 ? 4 : 0;
  };
  // one job failed, one stopped: the sweep reports the failure
  EXPECT_EQ(zsad::launch::run_sweep(plan, false, opts), 1);
  EXPECT_EQ(zsad::launch::read_job_status(plan.jobs[0].dir), "completed");
  EXPECT_EQ(zsad::launch::read_job_status(plan.jobs[2].dir), "stopped");
  EXPECT_EQ(zsad::launch::read_job_status(plan.jobs[3].dir), "failed");
  auto job = zsad::config::load_yaml_file(plan.jobs[1].dir + "/.zsad/job.yaml");
  EXPECT_EQ(job.at("choices").at("task").as_string(), "shell");
  EXPECT_EQ(job.at("override_dirname").as_string(), "");  // only seed, which is excluded

  // resume from multirun.yaml: only jobs 2 and 3 run again
  stop_job_2 = false;
  auto again = zsad::launch::load_sweep_plan(plan.sweep_dir);
  ASSERT_EQ(again.jobs.size(), 4u);
  EXPECT_EQ(again.jobs[3].overrides, plan.jobs[3].overrides);
  EXPECT_EQ(zsad::launch::run_sweep(again, true, opts), 1);  // job 3 fails again
  EXPECT_EQ(calls, (std::map<int, int>{{0, 1}, {1, 1}, {2, 2}, {3, 2}}));
  EXPECT_EQ(zsad::launch::read_job_status(plan.jobs[2].dir), "completed");
}

TEST(SweepLib, JobCommandPerLauncher) {
  auto cfg = zsad::config::load_yaml_string("launcher:\n  name: local\n  nproc: 1\n");
  EXPECT_EQ(zsad::launch::job_command(cfg, "c.yaml", "/bin/zsad"), (std::vector<std::string>{"/bin/zsad", "job", "c.yaml"}));
  cfg = zsad::config::load_yaml_string("launcher:\n  name: local\n  nproc: 3\n  master_port: 29600\n");
  EXPECT_EQ(zsad::launch::job_command(cfg, "c.yaml", "/bin/zsad"),
            (std::vector<std::string>{"/bin/zsad", "launch", "-n", "3", "--master-port", "29600", "--", "/bin/zsad", "job",
                                      "c.yaml"}));
  cfg = zsad::config::load_yaml_string("launcher:\n  name: mpirun\n  nproc: 2\n  mpirun_args: [--bind-to, none]\n");
  EXPECT_EQ(zsad::launch::job_command(cfg, "c.yaml", "z"),
            (std::vector<std::string>{"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", "--bind-to", "none",
                                      "z", "job", "c.yaml"}));
  // no launcher section: the schema defaults (local, 1 rank)
  EXPECT_EQ(zsad::launch::job_command(Node::map(), "c.yaml", "z"), (std::vector<std::string>{"z", "job", "c.yaml"}));
  cfg = zsad::config::load_yaml_string("launcher:\n  name: slurm\n");
  EXPECT_THROW(zsad::launch::job_command(cfg, "c.yaml", "z"), zsad::Error);
}

TEST(SweepLib, OverrideDirnameAndLayout) {
  EXPECT_EQ(zsad::launch::override_dirname({"seed=1", "trainer.lr=0.1", "+tags.a=x"}), "+tags.a=x,trainer.lr=0.1");
  EXPECT_EQ(zsad::launch::override_dirname({"seed=1", "b=2"}, {}), "b=2,seed=1");
  // 2021-03-04 05:06:07 local time
  std::tm tm{};
  tm.tm_year = 121;
  tm.tm_mon = 2;
  tm.tm_mday = 4;
  tm.tm_hour = 5;
  tm.tm_min = 6;
  tm.tm_sec = 7;
  tm.tm_isdst = -1;
  std::time_t t = std::mktime(&tm);
  EXPECT_EQ(zsad::launch::timestamped_dir("/r", "multirun", "exp", t), "/r/multirun/exp/2021-03-04/05-06-07");
  EXPECT_EQ(zsad::launch::timestamped_dir(".", "outputs", "exp", t), "outputs/exp/2021-03-04/05-06-07");
}

TEST(SweepLib, SweepParamsOrder) {
  Node block = zsad::config::load_yaml_string("a: 1,2\nb: [x, y]\nc: 5\n");
  auto p = zsad::launch::sweep_params(&block, {"b=z", "d=range(2)", "~e"}, "/nonexistent");
  ASSERT_EQ(p.size(), 5u);
  EXPECT_EQ(p[0].key, "a");
  EXPECT_EQ(p[1].overrides, (std::vector<std::string>{"b=z"}));  // replaced in place
  EXPECT_EQ(p[2].overrides, (std::vector<std::string>{"c=5"}));
  EXPECT_EQ(p[3].overrides, (std::vector<std::string>{"d=0", "d=1"}));
  EXPECT_EQ(p[4].overrides, (std::vector<std::string>{"~e"}));
  auto rows = zsad::launch::cartesian(p);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[1], (std::vector<std::string>{"a=1", "b=z", "c=5", "d=1", "~e"}));
  EXPECT_EQ(rows[2][0], "a=2");
  Node bad = zsad::config::load_yaml_string("a: range(1,2,0)\n", "exp.yaml");
  try {
    zsad::launch::sweep_params(&bad, {}, "/nonexistent");
    ADD_FAILURE();
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find("exp.yaml:1:4: in sweep block"), std::string::npos) << e.what();
  }
}
