// `zsad sweep` end to end: job order (cross-checked with Python's itertools.product), the sweep
// block, the on-disk layout, failures, parallel jobs, multi-rank jobs, and resume after SIGTERM.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "launch/config/yaml_io.h"
#include "models/clip/compute_threads.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

class SweepCli : public ::testing::Test {
 protected:
  void SetUp() override {
    put("task/shell.yaml", "name: shell\ncommand: \"true\"\n");
    put("exp.yaml", "defaults:\n  - task: shell\n  - _self_\nseed: 0\ntrainer:\n  lr: 0.001\n  optimizer: adamw\n"
                    "output:\n  root: " + out_root() + "\n");
  }
  void put(const std::string& rel, const std::string& text) { zsad_test::write_file(dir.path / "experiments" / rel, text); }
  std::string out_root() const { return (dir.path / "out").string(); }
  std::string exp(const std::string& name = "exp") const { return (dir.path / "experiments" / (name + ".yaml")).string(); }

  json dry_run(const std::vector<std::string>& extra, const std::string& name = "exp") {
    std::vector<std::string> args{"sweep", exp(name)};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back("--dry-run");
    args.push_back("--json");
    auto r = zsad_test::run_zsad(args, dir.str());
    EXPECT_EQ(r.code, 0) << r.err;
    return json::parse(r.out);
  }

  // Expected job overrides from the Python reference (itertools.product).
  std::vector<std::vector<std::string>> reference(const std::vector<std::vector<std::string>>& params) {
    std::string out = zsad_test::run_python("sweep_order_ref.py", {json(params).dump()}, dir.str());
    return json::parse(out).get<std::vector<std::vector<std::string>>>();
  }

  void expect_jobs(const json& j, const std::vector<std::vector<std::string>>& expected) {
    ASSERT_TRUE(j.contains("jobs"));
    ASSERT_EQ(j["jobs"].size(), expected.size()) << j.dump(2);
    std::set<std::string> parents;
    std::regex dir_re(".*/multirun/exp/\\d{4}-\\d{2}-\\d{2}/\\d{2}-\\d{2}-\\d{2}/(\\d+)$");
    for (size_t i = 0; i < expected.size(); ++i) {
      const json& job = j["jobs"][i];
      EXPECT_EQ(job["num"].get<int>(), static_cast<int>(i));
      EXPECT_EQ(job["overrides"].get<std::vector<std::string>>(), expected[i]) << "job " << i;
      std::string d = job["dir"].get<std::string>();
      std::smatch m;
      ASSERT_TRUE(std::regex_match(d, m, dir_re)) << d;
      EXPECT_EQ(m[1].str(), std::to_string(i));
      EXPECT_EQ(d.rfind(out_root(), 0), 0u) << d;
      parents.insert(fs::path(d).parent_path().string());
    }
    EXPECT_EQ(parents.size(), 1u);
  }

  zsad_test::TempDir dir;
};

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  std::string l;
  while (std::getline(is, l))
    if (!l.empty()) out.push_back(l);
  return out;
}

std::string status_of(const std::string& job_dir) {
  auto n = zsad::config::load_yaml_file(job_dir + "/.zsad/job.yaml");
  return n.at("status").as_string();
}

std::string only_sweep_dir(const std::string& out_root) {
  std::vector<std::string> found;
  for (const auto& e : fs::recursive_directory_iterator(out_root))
    if (e.path().filename() == "multirun.yaml") found.push_back(e.path().parent_path().string());
  EXPECT_EQ(found.size(), 1u);
  return found.empty() ? "" : found[0];
}

}  // namespace

TEST_F(SweepCli, DryRunJsonSchemaKeysHydraOrder) {
  json j = dry_run({"trainer.lr=0.1,0.2", "trainer.optimizer=adamw,adam,sgd"});
  expect_jobs(j, reference({{"trainer.lr=0.1", "trainer.lr=0.2"},
                            {"trainer.optimizer=adamw", "trainer.optimizer=adam", "trainer.optimizer=sgd"}}));
  // k1 is the slowest key: the first three jobs share k1's first value
  EXPECT_EQ(j["jobs"][2]["overrides"][0], "trainer.lr=0.1");
  EXPECT_EQ(j["jobs"][3]["overrides"][0], "trainer.lr=0.2");
  EXPECT_FALSE(fs::exists(out_root())) << "a dry run must not create anything";
}

TEST_F(SweepCli, DryRunJsonFreeFormTags) {
  json j = dry_run({"+tags.a=1,2", "+tags.b=x,y,z"});
  expect_jobs(j, reference({{"+tags.a=1", "+tags.a=2"}, {"+tags.b=x", "+tags.b=y", "+tags.b=z"}}));
}

TEST_F(SweepCli, RangeChoiceAndFixedOverridesInEveryJob) {
  json j = dry_run({"seed=range(2)", "trainer.lr=0.5", "trainer.optimizer=choice(sgd,adam)"});
  expect_jobs(j, reference({{"seed=0", "seed=1"}, {"trainer.lr=0.5"}, {"trainer.optimizer=sgd", "trainer.optimizer=adam"}}));
}

TEST_F(SweepCli, GlobOverGroupOptions) {
  put("task/echo.yaml", "name: echo\n");
  put("task/sleep.yaml", "name: sleep\n");
  json j = dry_run({"task=glob(s*)", "seed=1,2"});
  expect_jobs(j, reference({{"task=shell", "task=sleep"}, {"seed=1", "seed=2"}}));
}

TEST_F(SweepCli, SweepBlockFromFileReplacedInPlace) {
  put("ablation.yaml",
      "defaults:\n  - exp\n  - _self_\nexperiment: exp\nsweep:\n  seed: 0,1\n  trainer.lr: [0.1, 0.2]\n");
  json file_only = dry_run({}, "ablation");
  expect_jobs(file_only, reference({{"seed=0", "seed=1"}, {"trainer.lr=0.1", "trainer.lr=0.2"}}));
  // seed keeps its (slowest) position though it is given on the command line
  json replaced = dry_run({"seed=5,6,7"}, "ablation");
  expect_jobs(replaced, reference({{"seed=5", "seed=6", "seed=7"}, {"trainer.lr=0.1", "trainer.lr=0.2"}}));
  // a new key is appended after the file's keys (fastest)
  json appended = dry_run({"trainer.optimizer=sgd,adam"}, "ablation");
  expect_jobs(appended, reference({{"seed=0", "seed=1"},
                                   {"trainer.lr=0.1", "trainer.lr=0.2"},
                                   {"trainer.optimizer=sgd", "trainer.optimizer=adam"}}));
}

TEST_F(SweepCli, TextDryRunAndErrors) {
  auto r = zsad_test::run_zsad({"sweep", exp(), "seed=1,2", "--dry-run"}, dir.str());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("(2 jobs)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("seed=2"), std::string::npos) << r.out;
  r = zsad_test::run_zsad({"sweep", exp(), "seed=range(1,2,0)", "--dry-run"}, dir.str());
  EXPECT_EQ(r.code, 2) << r.err;  // malformed override: usage error
  EXPECT_NE(r.err.find("step must not be 0"), std::string::npos) << r.err;
  r = zsad_test::run_zsad({"sweep", exp(), "sed=1,2", "--dry-run"}, dir.str());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("did you mean 'seed'"), std::string::npos) << r.err;
}

TEST_F(SweepCli, LayoutFailuresAndStatus) {
  put("fails.yaml", "defaults:\n  - exp\n  - _self_\nexperiment: exp\ntask:\n  command: \"test $ZSAD_JOB_NUM != 1\"\n");
  auto r = zsad_test::run_zsad({"sweep", exp("fails"), "seed=3,4,5", "trainer.lr=0.5"}, dir.str());
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  std::string sweep = only_sweep_dir(out_root());
  EXPECT_NE(r.err.find("job 1 failed; log: " + sweep + "/1/run.log"), std::string::npos) << r.err;
  EXPECT_EQ(status_of(sweep + "/0"), "completed");
  EXPECT_EQ(status_of(sweep + "/1"), "failed");
  EXPECT_EQ(status_of(sweep + "/2"), "completed");
  auto job = zsad::config::load_yaml_file(sweep + "/1/.zsad/job.yaml");
  EXPECT_EQ(job.at("num").as_int(), 1);
  EXPECT_EQ(job.at("exit_code").as_int(), 1);
  EXPECT_EQ(job.at("override_dirname").as_string(), "trainer.lr=0.5");  // seed excluded
  auto ovs = zsad::config::load_yaml_file(sweep + "/1/.zsad/overrides.yaml");
  ASSERT_EQ(ovs.size(), 2u);
  EXPECT_EQ(ovs[0].as_string(), "seed=4");
  auto cfg = zsad::config::load_yaml_file(sweep + "/1/.zsad/config.yaml");
  EXPECT_EQ(cfg.at("seed").as_int(), 4);
  EXPECT_DOUBLE_EQ(cfg.find_path("trainer.lr")->as_float(), 0.5);
  EXPECT_TRUE(fs::exists(sweep + "/1/run.log"));
  auto mr = zsad::config::load_yaml_file(sweep + "/multirun.yaml");
  EXPECT_EQ(mr.at("jobs").size(), 3u);
  // single run layout
  r = zsad_test::run_zsad({"run", exp(), "seed=8"}, dir.str());
  ASSERT_EQ(r.code, 0) << r.err;
  int runs = 0;
  std::regex run_re(".*/outputs/exp/\\d{4}-\\d{2}-\\d{2}/\\d{2}-\\d{2}-\\d{2}(_\\d+)?$");
  for (const auto& e : fs::recursive_directory_iterator(out_root() + "/outputs")) {
    if (e.path().filename() != ".zsad") continue;
    std::string d = e.path().parent_path().string();
    EXPECT_TRUE(std::regex_match(d, run_re)) << d;
    EXPECT_EQ(status_of(d), "completed");
    EXPECT_TRUE(fs::exists(d + "/run.log"));
    EXPECT_EQ(zsad::config::load_yaml_file(d + "/.zsad/config.yaml").at("seed").as_int(), 8);
    ++runs;
  }
  EXPECT_EQ(runs, 1);
}

TEST_F(SweepCli, ParallelJobsOverlap) {
  // Each job announces its start and waits (up to 5 s) until the other job has started too.
  put("par.yaml",
      "defaults:\n  - exp\n  - _self_\nexperiment: exp\ntask:\n  command: >-\n"
      "    touch $ZSAD_SWEEP_DIR/start.$ZSAD_JOB_NUM;\n"
      "    for i in $(seq 100); do [ -e $ZSAD_SWEEP_DIR/start.0 ] && [ -e $ZSAD_SWEEP_DIR/start.1 ] &&"
      " touch $ZSAD_SWEEP_DIR/overlap.$ZSAD_JOB_NUM && break; sleep 0.05; done\n");
  auto r = zsad_test::run_zsad({"sweep", exp("par"), "seed=0,1", "--parallel", "2"}, dir.str());
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  std::string sweep = only_sweep_dir(out_root());
  EXPECT_TRUE(fs::exists(sweep + "/overlap.0"));
  EXPECT_TRUE(fs::exists(sweep + "/overlap.1"));
}

TEST_F(SweepCli, JobsAtOnceShareTheCoresThroughOmpNumThreads) {
  // trainer.threads 0 (auto) reads OMP_NUM_THREADS: one job alone gets every core, P jobs at once
  // a P-th each, ranks of a job through `zsad launch` a share of that; a value the user set is kept.
  ::unsetenv("OMP_NUM_THREADS");
  const int cpus = zsad::models::process_cpus();
  put("threads.yaml", "defaults:\n  - exp\n  - _self_\nexperiment: exp\ntask:\n  command: >-\n"
                      "    echo threads=$OMP_NUM_THREADS >> $ZSAD_JOB_DIR/threads.txt\n");
  auto threads_of = [](const std::string& job_dir) { return zsad_test::read_file(job_dir + "/threads.txt"); };
  auto r = zsad_test::run_zsad({"run", exp("threads"), "--run-dir", (dir.path / "alone").string()}, dir.str());
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(threads_of((dir.path / "alone").string()), "threads=" + std::to_string(cpus) + "\n");
  r = zsad_test::run_zsad({"sweep", exp("threads"), "seed=0,1", "--parallel", "2"}, dir.str());
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  std::string sweep = only_sweep_dir(out_root());
  for (const char* j : {"/0", "/1"})
    EXPECT_EQ(threads_of(sweep + j), "threads=" + std::to_string(std::max(1, cpus / 2)) + "\n") << j;
  r = zsad_test::run_zsad({"run", exp("threads"), "launcher.nproc=2", "--run-dir", (dir.path / "ranks").string()},
                          dir.str());
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const std::string each = "threads=" + std::to_string(std::max(1, cpus / 2)) + "\n";
  EXPECT_EQ(threads_of((dir.path / "ranks").string()), each + each);
  r = zsad_test::run_zsad({"run", exp("threads"), "--run-dir", (dir.path / "user").string()}, dir.str(),
                          {{"OMP_NUM_THREADS", "3"}});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(threads_of((dir.path / "user").string()), "threads=3\n");
}

TEST_F(SweepCli, MultiRankJobsThroughLaunchers) {
  put("task/echo.yaml", "name: echo\n");
  auto r = zsad_test::run_zsad({"sweep", exp(), "task=echo", "launcher.nproc=2", "seed=1,2"}, dir.str());
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  std::string sweep = only_sweep_dir(out_root());
  std::string log = zsad_test::read_file(sweep + "/1/run.log");
  EXPECT_NE(log.find("[rank 0] rank 0/2 job 1 experiment=exp seed=2"), std::string::npos) << log;
  EXPECT_NE(log.find("[rank 1] rank 1/2 job 1 experiment=exp seed=2"), std::string::npos) << log;
  // mpirun wraps the same job command
  r = zsad_test::run_zsad({"run", exp(), "task=echo", "launcher.name=mpirun", "launcher.nproc=2"}, dir.str());
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("rank 0/2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rank 1/2"), std::string::npos) << r.out;
}

TEST_F(SweepCli, ResumeAfterSigtermRunsEveryJobExactlyOnce) {
  put("slow.yaml",
      "defaults:\n  - exp\n  - _self_\nexperiment: exp\ntask:\n"
      "  command: \"sleep 0.4 && echo $ZSAD_JOB_NUM >> $ZSAD_SWEEP_DIR/ran.txt\"\n");
  std::vector<std::string> argv{zsad_test::zsad_binary(), "sweep", exp("slow"), "seed=range(6)"};
  auto child = zsad_test::start(argv, dir.str(), {}, dir.str());
  std::string sweep;
  // Signal while job 2 sleeps: jobs 0 and 1 are completed, job 2 is running.
  ASSERT_TRUE(zsad_test::wait_until(
      [&] {
        // The sweeper is creating and renaming files meanwhile: any filesystem race means "not yet".
        try {
          if (!fs::exists(out_root())) return false;
          for (const auto& e : fs::recursive_directory_iterator(out_root()))
            if (e.path().filename() == "multirun.yaml") sweep = e.path().parent_path().string();
          if (sweep.empty() || !fs::exists(sweep + "/2/.zsad/job.yaml")) return false;
          return status_of(sweep + "/2") == "running";
        } catch (...) {
          return false;
        }
      },
      60));
  // multirun.yaml was written before the first job
  EXPECT_LE(fs::last_write_time(sweep + "/multirun.yaml"), fs::last_write_time(sweep + "/0/.zsad/config.yaml"));
  kill(child.pid, SIGTERM);
  auto first = zsad_test::finish(child);
  EXPECT_EQ(first.code, 75) << first.out << first.err;  // stopped, resumable
  EXPECT_NE(first.err.find("zsad sweep --resume " + sweep), std::string::npos) << first.err;
  auto before = lines_of(zsad_test::read_file(sweep + "/ran.txt"));
  ASSERT_GE(before.size(), 2u);
  ASSERT_LT(before.size(), 6u) << "the sweep finished before the signal; nothing left to resume";
  int completed = 0;
  for (int i = 0; i < 6; ++i) {
    std::string d = sweep + "/" + std::to_string(i);
    if (fs::exists(d + "/.zsad/job.yaml") && status_of(d) == "completed") ++completed;
  }
  EXPECT_EQ(completed, static_cast<int>(before.size()));  // finished jobs are intact and recorded
  EXPECT_EQ(status_of(sweep + "/" + std::to_string(before.size())), "stopped");

  auto resumed = zsad_test::run_zsad({"sweep", "--resume", sweep}, dir.str());
  ASSERT_EQ(resumed.code, 0) << resumed.out << resumed.err;
  EXPECT_NE(resumed.out.find(std::to_string(before.size()) + " already completed"), std::string::npos) << resumed.out;
  auto after = lines_of(zsad_test::read_file(sweep + "/ran.txt"));
  std::multiset<std::string> counts(after.begin(), after.end());
  ASSERT_EQ(after.size(), 6u) << zsad_test::read_file(sweep + "/ran.txt");
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(counts.count(std::to_string(i)), 1u) << "job " << i;
    EXPECT_EQ(status_of(sweep + "/" + std::to_string(i)), "completed");
  }
  // resuming a finished sweep runs nothing
  auto again = zsad_test::run_zsad({"sweep", "--resume", sweep}, dir.str());
  EXPECT_EQ(again.code, 0);
  EXPECT_EQ(lines_of(zsad_test::read_file(sweep + "/ran.txt")).size(), 6u);
}

TEST_F(SweepCli, LiteralDollarBracesReachTheTask) {
  // YAML "\${HOME}" is the literal text ${HOME}; it must survive config.yaml and reach the shell.
  put("lit.yaml", "defaults:\n  - exp\n  - _self_\nexperiment: exp\ntask:\n  command: \"echo '\\\\${HOME}' > lit.txt\"\n");
  auto r = zsad_test::run_zsad({"run", exp("lit")}, dir.str());
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  int found = 0;
  for (const auto& e : fs::recursive_directory_iterator(out_root() + "/outputs"))
    if (e.path().filename() == "lit.txt") {
      EXPECT_EQ(zsad_test::read_file(e.path()), "${HOME}\n");
      ++found;
    }
  EXPECT_EQ(found, 1);
}

TEST_F(SweepCli, HelpConfigListsKeysWithTypesDefaultsAndDocs) {
  auto r = zsad_test::run_zsad({"run", "--help-config"}, dir.str());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("  seed : int = 0\n      global random seed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  launcher.name : string = 'local'  {local|mpirun|slurm}"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  launcher.master_port : int? = null"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("+tags.<name>=<value>"), std::string::npos) << r.out;
  r = zsad_test::run_zsad({"run", "--help-tasks"}, dir.str());
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* t : {"shell", "sleep", "echo"}) EXPECT_NE(r.out.find(std::string("  ") + t + "  "), std::string::npos) << r.out;
}
