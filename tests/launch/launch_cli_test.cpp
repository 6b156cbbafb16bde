// `zsad launch -n N -- CMD`: torchrun-style environment, "[rank k] " prefixes, exit codes,
// stopping the other ranks when one fails, signal forwarding, and the mpirun wrapper.
#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <set>

#include "launch/local/launcher.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

std::vector<std::string> lines_with(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  std::istringstream is(text);
  std::string l;
  while (std::getline(is, l))
    if (l.rfind(prefix, 0) == 0) out.push_back(l);
  return out;
}

// experiments/hello.yaml in `dir`: an echo task (prints rank/world, experiment and seed) writing
// its outputs under `dir`. Returns its path.
std::string write_echo_experiment(const zsad_test::TempDir& dir) {
  zsad_test::write_file(dir.path / "experiments/hello.yaml",
                        "experiment: hello\nseed: 4\ntask:\n  name: echo\n  exit_code: 0\noutput:\n  root: " +
                            dir.str() + "\n");
  return (dir.path / "experiments/hello.yaml").string();
}

}  // namespace

TEST(LaunchCli, TwoRanksGetTorchrunEnvironmentAndPrefixes) {
  zsad_test::TempDir dir;
  auto r = zsad_test::run_zsad(
      {"launch", "-n", "2", "--", "/bin/sh", "-c",
       "echo \"R=$RANK W=$WORLD_SIZE L=$LOCAL_RANK LW=$LOCAL_WORLD_SIZE A=$MASTER_ADDR P=$MASTER_PORT\"; "
       "echo \"to stderr $RANK\" >&2"},
      dir.str());
  ASSERT_EQ(r.code, 0) << r.err;
  std::regex re("^\\[rank (\\d)\\] R=(\\d) W=2 L=(\\d) LW=2 A=127\\.0\\.0\\.1 P=(\\d+)$");
  std::set<std::string> ports;
  std::set<int> ranks;
  for (const auto& line : lines_with(r.out, "[rank ")) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, re)) << line;
    EXPECT_EQ(m[1], m[2]);  // the prefix names the rank that printed
    EXPECT_EQ(m[2], m[3]);
    ranks.insert(std::stoi(m[2]));
    ports.insert(m[4]);
  }
  EXPECT_EQ(ranks, (std::set<int>{0, 1}));
  ASSERT_EQ(ports.size(), 1u);  // one rendezvous port for all ranks
  EXPECT_GT(std::stoi(*ports.begin()), 0);
  EXPECT_EQ(lines_with(r.err, "[rank 0] to stderr 0").size(), 1u) << r.err;
  EXPECT_EQ(lines_with(r.err, "[rank 1] to stderr 1").size(), 1u) << r.err;
}

TEST(LaunchCli, MasterPortAndThreads) {
  zsad_test::TempDir dir;
  auto r = zsad_test::run_zsad({"launch", "-n", "2", "--master-port", "29517", "--", "/bin/sh", "-c",
                                "echo P=$MASTER_PORT T=$OMP_NUM_THREADS"},
                               dir.str());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines_with(r.out, "[rank 0] P=29517 T=1").size(), 1u) << r.out;  // ctest sets 1
  EXPECT_EQ(lines_with(r.out, "[rank 1] P=29517 T=1").size(), 1u) << r.out;
  // OMP_NUM_THREADS = cores / N is the default when unset; a value the user set is kept
  std::vector<std::string> argv{zsad_test::zsad_binary(), "launch", "-n", "1", "--", "/bin/sh", "-c", "echo T=$OMP_NUM_THREADS"};
  auto child = zsad_test::start(argv, dir.str(), {{"OMP_NUM_THREADS", "3"}}, dir.str());
  auto kept = zsad_test::finish(child);
  EXPECT_NE(kept.out.find("[rank 0] T=3"), std::string::npos) << kept.out;
}

TEST(LaunchCli, FailingRankExitCodeStopsTheOthers) {
  zsad_test::TempDir dir;
  auto t0 = std::chrono::steady_clock::now();
  auto r = zsad_test::run_zsad({"launch", "-n", "2", "--", "/bin/sh", "-c",
                                "if [ $RANK = 1 ]; then sleep 0.3; exit 7; fi; sleep 60; echo survived"},
                               dir.str());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.code, 7) << r.err;
  EXPECT_LT(secs, 30.0);  // rank 0 was stopped, not waited for
  EXPECT_EQ(r.out.find("survived"), std::string::npos);
  EXPECT_NE(r.err.find("rank 1 exited with code 7"), std::string::npos) << r.err;
  // a rank killed by a signal reports 128 + signal
  r = zsad_test::run_zsad({"launch", "-n", "2", "--", "/bin/sh", "-c", "if [ $RANK = 0 ]; then kill -9 $$; fi; sleep 60"},
                          dir.str());
  EXPECT_EQ(r.code, 128 + 9) << r.err;
}

TEST(LaunchCli, SigtermIsForwardedToEveryRank) {
  zsad_test::TempDir dir;
  std::vector<std::string> argv{
      zsad_test::zsad_binary(), "launch", "-n", "2", "--", "/bin/sh", "-c",
      "trap 'echo got-term; exit 75' TERM; touch ready.$RANK; while true; do sleep 0.05; done"};
  auto child = zsad_test::start(argv, dir.str(), {}, dir.str());
  ASSERT_TRUE(zsad_test::wait_until(
      [&] { return fs::exists(dir.path / "ready.0") && fs::exists(dir.path / "ready.1"); }, 30));
  kill(child.pid, SIGTERM);
  auto r = zsad_test::finish(child);
  EXPECT_EQ(r.code, 75) << r.out << r.err;  // the ranks checkpointed and stopped: resumable
  EXPECT_EQ(lines_with(r.out, "[rank 0] got-term").size(), 1u) << r.out;
  EXPECT_EQ(lines_with(r.out, "[rank 1] got-term").size(), 1u) << r.out;
}

TEST(LaunchCli, MpirunWrapsTheSameCommand) {
  EXPECT_EQ(zsad::launch::mpirun_command(4, {"zsad", "job", "c.yaml"}, {"--bind-to", "none"}),
            (std::vector<std::string>{"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "4", "--bind-to", "none",
                                      "zsad", "job", "c.yaml"}));
  zsad_test::TempDir dir;
  auto r = zsad_test::run_zsad({"launch", "--mpirun", "-n", "2", "--", "/bin/sh", "-c", "echo mpi-rank=$OMPI_COMM_WORLD_RANK"},
                               dir.str());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("mpi-rank=0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mpi-rank=1"), std::string::npos) << r.out;
}

TEST(LaunchCli, UsageErrors) {
  zsad_test::TempDir dir;
  auto r = zsad_test::run_zsad({"launch", "-n", "0", "--", "true"}, dir.str());
  EXPECT_EQ(r.code, 2);
  r = zsad_test::run_zsad({"launch", "-n", "2"}, dir.str());
  EXPECT_EQ(r.code, 2);
  r = zsad_test::run_zsad({"launch", "-n", "1", "--", "/nonexistent/program"}, dir.str());
  EXPECT_EQ(r.code, 127);
  EXPECT_NE(r.err.find("cannot execute /nonexistent/program"), std::string::npos) << r.err;
}

TEST(LaunchCli, SecondSignalKillsRanksThatIgnoreTheFirst) {
  zsad_test::TempDir dir;
  std::vector<std::string> argv{zsad_test::zsad_binary(), "launch", "-n", "2", "--", "/bin/sh", "-c",
                                "trap 'echo ignoring' TERM; touch ready.$RANK; while true; do sleep 0.05; done"};
  auto child = zsad_test::start(argv, dir.str(), {}, dir.str());
  ASSERT_TRUE(zsad_test::wait_until(
      [&] { return fs::exists(dir.path / "ready.0") && fs::exists(dir.path / "ready.1"); }, 30));
  kill(child.pid, SIGTERM);
  ASSERT_TRUE(zsad_test::wait_until(
      [&] { return lines_with(zsad_test::read_file(child.out_path), "[rank 1] ignoring").size() == 1 &&
                   lines_with(zsad_test::read_file(child.out_path), "[rank 0] ignoring").size() == 1; },
      30));
  kill(child.pid, SIGTERM);  // "now": SIGKILL
  auto r = zsad_test::finish(child);
  EXPECT_EQ(r.code, 128 + 9) << r.out << r.err;
}

TEST(RunCli, SigtermStopsASingleRunResumably) {
  zsad_test::TempDir dir;
  zsad_test::write_file(dir.path / "experiments/long.yaml",
                        "task:\n  name: sleep\n  seconds: 60\noutput:\n  root: " + dir.str() + "\n");
  std::vector<std::string> argv{zsad_test::zsad_binary(), "run", (dir.path / "experiments/long.yaml").string()};
  auto child = zsad_test::start(argv, dir.str(), {}, dir.str());
  std::string run_dir;
  ASSERT_TRUE(zsad_test::wait_until(
      [&] {
        try {
          for (const auto& e : fs::recursive_directory_iterator(dir.path / "outputs"))
            if (e.path().filename() == "job.yaml") run_dir = e.path().parent_path().parent_path().string();
          // the task has installed its signal handlers once it announces the sleep
          return !run_dir.empty() &&
                 zsad_test::read_file(run_dir + "/run.log").find("sleep task: sleeping 60 s") != std::string::npos;
        } catch (...) {
          return false;
        }
      },
      30));
  auto t0 = std::chrono::steady_clock::now();
  kill(child.pid, SIGTERM);
  auto r = zsad_test::finish(child);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 20.0);
  EXPECT_EQ(r.code, 75) << r.out << r.err;
  std::string job = zsad_test::read_file(run_dir + "/.zsad/job.yaml");
  EXPECT_NE(job.find("status: stopped"), std::string::npos) << job;
  EXPECT_NE(job.find("exit_code: 75"), std::string::npos) << job;
  EXPECT_NE(zsad_test::read_file(run_dir + "/run.log").find("stopped by signal 15"), std::string::npos);
  EXPECT_NE(r.out.find("stopped by signal 15"), std::string::npos) << r.out;  // tee'd to the terminal
}

TEST(LaunchCli, LeftoverBackgroundProcessDoesNotHoldTheLauncher) {
  zsad_test::TempDir dir;
  auto t0 = std::chrono::steady_clock::now();
  auto r = zsad_test::run_zsad({"launch", "-n", "2", "--", "/bin/sh", "-c", "sleep 20 & echo started $RANK"}, dir.str());
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 15.0);
  EXPECT_EQ(lines_with(r.out, "[rank 1] started 1").size(), 1u) << r.out;
}

// `zsad launch -n 2 -- zsad run EXP`: without --run-dir each rank would create its own run
// directory and launcher, so the ranks stop with a usage error before writing anything; with a
// shared --run-dir both ranks run the task in-process, in that one directory.
TEST(LaunchCli, RunUnderLaunchSharesOneRunDirectory) {
  zsad_test::TempDir dir;
  const std::string exp = write_echo_experiment(dir);
  auto bad = zsad_test::run_zsad({"launch", "-n", "2", "--", zsad_test::zsad_binary(), "run", exp}, dir.str());
  EXPECT_EQ(bad.code, 2) << bad.out << bad.err;
  EXPECT_NE(bad.err.find("pass --run-dir DIR (the same on every rank)"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(dir.path / "outputs")) << "no run directory may be created";

  const std::string run_dir = (dir.path / "shared_run").string();
  auto r = zsad_test::run_zsad(
      {"launch", "-n", "2", "--", zsad_test::zsad_binary(), "run", exp, "seed=7", "--run-dir", run_dir}, dir.str());
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  std::set<std::string> echoed;
  for (const auto& line : lines_with(r.out, "[rank ")) echoed.insert(line);
  EXPECT_EQ(echoed, (std::set<std::string>{"[rank 0] rank 0/2 job -1 experiment=hello seed=7",
                                           "[rank 1] rank 1/2 job -1 experiment=hello seed=7"}))
      << r.out;
  EXPECT_NE(zsad_test::read_file(run_dir + "/.zsad/config.yaml").find("seed: 7"), std::string::npos);
  EXPECT_NE(zsad_test::read_file(run_dir + "/.zsad/overrides.yaml").find("seed=7"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir.path / "outputs"));

  // A sweep under a launcher would run once per rank: refused before anything is written.
  auto sweep = zsad_test::run_zsad({"launch", "-n", "2", "--", zsad_test::zsad_binary(), "sweep", exp, "seed=1,2"},
                                   dir.str());
  EXPECT_EQ(sweep.code, 2) << sweep.out << sweep.err;
  EXPECT_NE(sweep.err.find("run zsad sweep once"), std::string::npos) << sweep.err;
  EXPECT_FALSE(fs::exists(dir.path / "multirun"));
}

// `zsad run --run-dir D` on a directory that already holds a run: the same config continues it,
// another config is refused before it can overwrite that run's record.
TEST(RunCli, ReusedRunDirNeedsTheSameConfig) {
  zsad_test::TempDir dir;
  const std::string exp = write_echo_experiment(dir);
  const std::string run_dir = (dir.path / "kept").string();
  auto first = zsad_test::run_zsad({"run", exp, "seed=5", "--run-dir", run_dir}, dir.str());
  ASSERT_EQ(first.code, 0) << first.err;
  const std::string recorded = zsad_test::read_file(run_dir + "/.zsad/config.yaml");
  ASSERT_NE(recorded.find("seed: 5"), std::string::npos) << recorded;
  auto again = zsad_test::run_zsad({"run", exp, "seed=5", "--run-dir", run_dir}, dir.str());
  EXPECT_EQ(again.code, 0) << again.err;
  auto other = zsad_test::run_zsad({"run", exp, "seed=6", "--run-dir", run_dir}, dir.str());
  EXPECT_EQ(other.code, 1) << other.out << other.err;
  EXPECT_NE(other.err.find("already holds a run with a different config"), std::string::npos) << other.err;
  EXPECT_EQ(zsad_test::read_file(run_dir + "/.zsad/config.yaml"), recorded);
  auto launched = zsad_test::run_zsad(
      {"launch", "-n", "2", "--", zsad_test::zsad_binary(), "run", exp, "seed=6", "--run-dir", run_dir}, dir.str());
  EXPECT_EQ(launched.code, 1) << launched.out << launched.err;
  EXPECT_EQ(zsad_test::read_file(run_dir + "/.zsad/config.yaml"), recorded);
}

// The directory of the sweep started under dir.path, once its job 0 has announced its sleep (its
// signal handlers are installed and it holds its directory); "" after 30 s without.
std::string sweep_dir_once_job0_sleeps(const zsad_test::TempDir& dir) {
  std::string sweep_dir;
  const bool ok = zsad_test::wait_until(
      [&] {
        if (!fs::exists(dir.path / "multirun")) return false;
        for (const auto& e : fs::recursive_directory_iterator(dir.path / "multirun"))
          if (e.path().filename() == "multirun.yaml") sweep_dir = e.path().parent_path().string();
        return !sweep_dir.empty() && fs::exists(sweep_dir + "/0/run.log") &&
               zsad_test::read_file(sweep_dir + "/0/run.log").find("sleep task: sleeping") != std::string::npos;
      },
      30);
  return ok ? sweep_dir : "";
}

// One driver per run directory and per sweep directory: a second `zsad run --run-dir D` (a double
// submit, a requeue while the old job still runs) or `zsad sweep --resume` stops before writing,
// naming the holder; the lock goes with the process, so the next run after a stop proceeds.
TEST(RunCli, OneDriverPerRunOrSweepDirectory) {
  zsad_test::TempDir dir;
  const std::string exp = (dir.path / "experiments/nap.yaml").string();
  zsad_test::write_file(exp, "task:\n  name: sleep\n  seconds: 30\noutput:\n  root: " + dir.str() + "\n");
  const std::string run_dir = (dir.path / "run").string();
  auto first = zsad_test::start({zsad_test::zsad_binary(), "run", exp, "--run-dir", run_dir}, dir.str(), {}, dir.str());
  ASSERT_TRUE(zsad_test::wait_until(
      [&] {
        try {
          return zsad_test::read_file(run_dir + "/run.log").find("sleep task: sleeping") != std::string::npos;
        } catch (...) {
          return false;
        }
      },
      30));
  const std::string log_before = zsad_test::read_file(run_dir + "/run.log");
  auto second = zsad_test::run_zsad({"run", exp, "--run-dir", run_dir}, dir.str());
  EXPECT_EQ(second.code, 1) << second.out << second.err;
  EXPECT_NE(second.err.find("is in use by another zsad process (pid " + std::to_string(first.pid)), std::string::npos)
      << second.err;
  EXPECT_EQ(zsad_test::read_file(run_dir + "/run.log"), log_before);  // the running job's log is untouched
  EXPECT_NE(zsad_test::read_file(run_dir + "/.zsad/job.yaml").find("status: running"), std::string::npos);
  // What a SLURM task runs (`zsad job`, no driver): it locks too, while the driver's own job did not
  // trip over the driver's lock.
  auto job = zsad_test::run_zsad({"job", run_dir + "/.zsad/config.yaml"}, dir.str());
  EXPECT_EQ(job.code, 1) << job.out << job.err;
  EXPECT_NE(job.err.find("is in use by another zsad process"), std::string::npos) << job.err;
  kill(first.pid, SIGTERM);
  EXPECT_EQ(zsad_test::finish(first).code, 75);
  // The stopped run continues (and is stopped again at once: only the lock is under test here).
  auto third = zsad_test::start({zsad_test::zsad_binary(), "run", exp, "--run-dir", run_dir}, dir.str(), {}, dir.str());
  ASSERT_TRUE(zsad_test::wait_until(  // run.log is appended to: the second "sleeping" is this run's
      [&] {
        const std::string log = zsad_test::read_file(run_dir + "/run.log");
        const auto at = log.find("sleep task: sleeping");
        return at != std::string::npos && log.find("sleep task: sleeping", at + 1) != std::string::npos;
      },
      30));
  kill(third.pid, SIGTERM);
  EXPECT_EQ(zsad_test::finish(third).code, 75);

  auto sweep = zsad_test::start({zsad_test::zsad_binary(), "sweep", exp, "seed=1,2"}, dir.str(), {}, dir.str());
  const std::string sweep_dir = sweep_dir_once_job0_sleeps(dir);
  ASSERT_FALSE(sweep_dir.empty()) << "job 0 of the sweep never started sleeping";
  auto resume = zsad_test::run_zsad({"sweep", "--resume", sweep_dir}, dir.str());
  EXPECT_EQ(resume.code, 1) << resume.out << resume.err;
  EXPECT_NE(resume.err.find("sweep directory '" + sweep_dir + "' is in use"), std::string::npos) << resume.err;
  kill(sweep.pid, SIGTERM);
  EXPECT_EQ(zsad_test::finish(sweep).code, 75);
}

// --run-dir takes a new directory, one holding a zsad run, or one with unrelated files (notes, an
// sbatch --output log); a file, a sweep directory, or zsad outputs without a run record are
// refused before anything is written (they would be overwritten).
TEST(RunCli, RunDirIsNewEmptyOrARun) {
  zsad_test::TempDir dir;
  const std::string exp = write_echo_experiment(dir);
  auto refused = [&](const std::string& run_dir, const std::string& why) {
    auto r = zsad_test::run_zsad({"run", exp, "--run-dir", run_dir}, dir.str());
    EXPECT_EQ(r.code, 1) << run_dir << "\n" << r.out << r.err;
    EXPECT_NE(r.err.find(why), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(fs::path(run_dir) / ".zsad" / "job.yaml")) << run_dir;
  };
  zsad_test::write_file(dir.path / "copied/results/synth.json", "{}\n");
  refused((dir.path / "copied").string(), "holds results but no zsad run record");
  EXPECT_EQ(zsad_test::read_file(dir.path / "copied/results/synth.json"), "{}\n");
  zsad_test::write_file(dir.path / "output_root/outputs/hello/keep.txt", "x");
  refused((dir.path / "output_root").string(), "holds outputs but no zsad run record");
  zsad_test::write_file(dir.path / "a_file", "x");
  refused((dir.path / "a_file").string(), "exists and is not a directory");
  zsad_test::write_file(dir.path / "sweep/multirun.yaml", "experiment: hello\n");
  refused((dir.path / "sweep").string(), "is a sweep directory (multirun.yaml)");
  fs::create_directories(dir.path / "empty");
  EXPECT_EQ(zsad_test::run_zsad({"run", exp, "--run-dir", (dir.path / "empty").string()}, dir.str()).code, 0);
  EXPECT_TRUE(fs::exists(dir.path / "empty/.zsad/config.yaml"));
  zsad_test::write_file(dir.path / "mine/slurm-17.out", "sbatch log\n");
  EXPECT_EQ(zsad_test::run_zsad({"run", exp, "--run-dir", (dir.path / "mine").string()}, dir.str()).code, 0);
  EXPECT_EQ(zsad_test::read_file(dir.path / "mine/slurm-17.out"), "sbatch log\n");
}

// `zsad eval EXP checkpoint=PATH` with no such file (or a directory) says so, before a run
// directory is created (before: "unreadable (truncated or corrupt?)" from inside a failed run).
TEST(EvalCli, MissingCheckpointStopsBeforeARunDirectory) {
  zsad_test::TempDir dir;
  const std::string exp = write_echo_experiment(dir);
  auto missing = zsad_test::run_zsad({"eval", exp, "checkpoint=" + dir.str() + "/nope.h5"}, dir.str());
  EXPECT_EQ(missing.code, 1) << missing.out << missing.err;
  EXPECT_NE(missing.err.find("checkpoint '" + dir.str() + "/nope.h5' does not exist"), std::string::npos) << missing.err;
  auto a_dir = zsad_test::run_zsad({"eval", exp, "checkpoint=" + dir.str()}, dir.str());
  EXPECT_EQ(a_dir.code, 1) << a_dir.out << a_dir.err;
  EXPECT_NE(a_dir.err.find("is a directory; pass a checkpoint file"), std::string::npos) << a_dir.err;
  EXPECT_FALSE(fs::exists(dir.path / "outputs"));
}

// A sweep driver killed with SIGKILL leaves its running job behind (holding the job directory's
// lock). `--resume` neither starts that job again nor marks it failed: it says it still runs,
// runs the others, and exits 1 asking for another --resume once it has ended.
TEST(SweepResumeCli, LeavesAJobStillRunningUnderAnEarlierDriverAlone) {
  zsad_test::TempDir dir;
  const std::string exp = (dir.path / "experiments/nap.yaml").string();
  zsad_test::write_file(exp, "task:\n  name: sleep\n  seconds: 1\noutput:\n  root: " + dir.str() + "\n");
  auto sweep = zsad_test::start({zsad_test::zsad_binary(), "sweep", exp, "task.seconds=60,0.1"}, dir.str(), {}, dir.str());
  const std::string sweep_dir = sweep_dir_once_job0_sleeps(dir);
  ASSERT_FALSE(sweep_dir.empty()) << "job 0 of the sweep never started sleeping";
  kill(sweep.pid, SIGKILL);
  zsad_test::finish(sweep);
  const std::string holder = zsad_test::read_file(sweep_dir + "/0/.zsad/lock");
  const std::string log0 = zsad_test::read_file(sweep_dir + "/0/run.log");
  auto resume = zsad_test::run_zsad({"sweep", "--resume", sweep_dir}, dir.str());
  EXPECT_EQ(resume.code, 1) << resume.out << resume.err;
  EXPECT_NE(resume.out.find("[job 0] still running (pid "), std::string::npos) << resume.out;
  EXPECT_NE(resume.err.find("zsad sweep --resume " + sweep_dir), std::string::npos) << resume.err;
  EXPECT_NE(zsad_test::read_file(sweep_dir + "/0/.zsad/job.yaml").find("status: running"), std::string::npos);
  EXPECT_EQ(zsad_test::read_file(sweep_dir + "/0/run.log"), log0);
  EXPECT_NE(zsad_test::read_file(sweep_dir + "/1/.zsad/job.yaml").find("status: completed"), std::string::npos);
  // End the orphan (its pid is in the lock file: "pid N on HOST, since T").
  const pid_t orphan = static_cast<pid_t>(std::stol(holder.substr(4)));
  ASSERT_GT(orphan, 1);
  kill(orphan, SIGKILL);
}
