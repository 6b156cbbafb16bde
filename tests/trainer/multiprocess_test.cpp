// Multi-process trainer tests: the ddp_worker executable (tests/trainer/worker/) trains a small MLP
// under `zsad launch -n 2`, plain torchrun-style env (when a test must signal one rank) and
// `mpirun -np 2` (mpi backend). Each rank runs with one intra-op thread (OMP_NUM_THREADS=1).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <ATen/ATen.h>

#include "common/exit_codes.h"
#include "rank_threads.h"
#include "trainer/checkpoint.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::string worker() {
  return (fs::read_symlink("/proc/self/exe").parent_path() / "ddp_worker").string();
}

int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  ::close(s);
  return port;
}

struct Proc {
  pid_t pid = -1;
  std::string log;
};

// Starts argv with the current environment minus launcher variables, plus `extra`; stdout+stderr go
// to `log`.
Proc spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& extra, const std::string& log) {
  Proc p;
  p.log = log;
  p.pid = ::fork();
  if (p.pid == 0) {
    for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
                          "SLURM_NTASKS", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"})
      ::unsetenv(v);
    for (const auto& [k, v] : extra) ::setenv(k.c_str(), v.c_str(), 1);
    ::setenv("OMP_NUM_THREADS", "1", 1);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return p;
}

// Exit status (WEXITSTATUS, or 128+signal) or nullopt after `timeout_s`.
std::optional<int> wait_for(pid_t pid, double timeout_s) {
  auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (Clock::now() < deadline) {
    int st = 0;
    pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::nullopt;
}

int run_to_end(const Proc& p, double timeout_s = 120) {
  auto rc = wait_for(p.pid, timeout_s);
  if (!rc) {
    ::kill(p.pid, SIGKILL);
    ::waitpid(p.pid, nullptr, 0);
    ADD_FAILURE() << "process did not finish within " << timeout_s << " s; log " << p.log;
    return -1;
  }
  return *rc;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> common_args(const std::string& run_dir, std::vector<std::string> more) {
  std::vector<std::string> a{worker(), "--run-dir", run_dir};
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

// Two ranks with torchrun-style variables, started directly (so a test can signal one of them).
std::vector<Proc> spawn_two(const std::string& run_dir, const std::vector<std::string>& more) {
  const std::string port = std::to_string(free_port());
  std::vector<Proc> ps;
  for (int r = 0; r < 2; ++r) {
    ps.push_back(spawn(common_args(run_dir, more),
                       {{"RANK", std::to_string(r)}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", std::to_string(r)},
                        {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", port}},
                       run_dir + ".rank" + std::to_string(r) + ".out"));
  }
  return ps;
}

zsad::Checkpoint dump(const std::string& run_dir, int rank) {
  return zsad::read_checkpoint(run_dir + "/final/rank" + std::to_string(rank) + ".h5");
}

void expect_bit_identical(const zsad::Checkpoint& a, const zsad::Checkpoint& b, const std::string& what) {
  ASSERT_EQ(a.tensors.size(), b.tensors.size()) << what;
  int params = 0, optim = 0;
  for (const auto& [k, t] : a.tensors) {
    ASSERT_TRUE(b.tensors.count(k)) << what << ": " << k;
    EXPECT_TRUE(at::equal(t, b.tensors.at(k))) << what << ": " << k << " differs";
    params += k.rfind("params/", 0) == 0;
    optim += k.rfind("optimizer/", 0) == 0;
  }
  EXPECT_EQ(params, 4) << what;
  EXPECT_GE(optim, 12) << what;  // step, exp_avg, exp_avg_sq per parameter
}

double max_rel_error(const zsad::Checkpoint& a, const zsad::Checkpoint& ref) {
  double worst = 0;
  for (const auto& [k, t] : ref.tensors) {
    if (k.rfind("params/", 0) != 0) continue;
    const at::Tensor& u = a.tensors.at(k);
    double scale = std::max(t.abs().max().item<double>(), 1e-12);
    worst = std::max(worst, (u - t).abs().max().item<double>() / scale);
  }
  return worst;
}

// step -> ids, per rank, from <run>/samples/rank<r>.txt ("<step> <epoch> ids...").
std::map<int64_t, std::pair<int64_t, std::vector<int64_t>>> samples(const std::string& run_dir, int rank) {
  std::map<int64_t, std::pair<int64_t, std::vector<int64_t>>> out;
  std::ifstream in(run_dir + "/samples/rank" + std::to_string(rank) + ".txt");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    int64_t step, epoch, id;
    ls >> step >> epoch;
    auto& e = out[step];
    e.first = epoch;
    while (ls >> id) e.second.push_back(id);
  }
  return out;
}

void expect_disjoint_covering_shards(const std::string& run_dir, int64_t n_samples, int64_t epochs) {
  auto s0 = samples(run_dir, 0), s1 = samples(run_dir, 1);
  ASSERT_EQ(s0.size(), s1.size());
  std::map<int64_t, std::multiset<int64_t>> per_epoch[2];
  for (int r = 0; r < 2; ++r) {
    for (const auto& [step, e] : (r == 0 ? s0 : s1)) per_epoch[r][e.first].insert(e.second.begin(), e.second.end());
  }
  ASSERT_EQ(static_cast<int64_t>(per_epoch[0].size()), epochs);
  for (const auto& [epoch, ids0] : per_epoch[0]) {
    const auto& ids1 = per_epoch[1][epoch];
    std::multiset<int64_t> all(ids0);
    all.insert(ids1.begin(), ids1.end());
    EXPECT_EQ(static_cast<int64_t>(all.size()), n_samples) << "epoch " << epoch;
    for (int64_t i = 0; i < n_samples; ++i) EXPECT_EQ(all.count(i), 1u) << "epoch " << epoch << " sample " << i;
  }
}

// Single-process reference run (world size 1) with the same global batch.
zsad::Checkpoint single_process(const std::string& dir, const std::vector<std::string>& more) {
  auto p = spawn(common_args(dir, more), {}, dir + ".out");
  EXPECT_EQ(run_to_end(p), 0) << slurp(dir + ".out");
  return dump(dir, 0);
}

const std::vector<std::string> kExact{"--noise", "0", "--steps", "12"};  // 64 samples / 16 = 4 steps per epoch

}  // namespace

TEST(MultiProcess, GlooTwoRanksViaZsadLaunchEqualSingleProcess) {
  const std::string base = zsad::testing::fresh_temp_dir("mp");
  auto ref = single_process(base + "/single", kExact);
  const char* zsad_bin = std::getenv("ZSAD_BINARY");
  ASSERT_TRUE(zsad_bin && fs::exists(zsad_bin)) << "ZSAD_BINARY (the zsad CLI) is not built";
  std::vector<std::string> argv{zsad_bin, "launch", "-n", "2", "--"};
  auto w = common_args(base + "/ddp", kExact);
  argv.insert(argv.end(), w.begin(), w.end());
  auto p = spawn(argv, {}, base + "/ddp.out");
  ASSERT_EQ(run_to_end(p), 0) << slurp(base + "/ddp.out");
  auto r0 = dump(base + "/ddp", 0), r1 = dump(base + "/ddp", 1);
  expect_bit_identical(r0, r1, "rank 0 vs rank 1");
  EXPECT_LT(max_rel_error(r0, ref), 1e-5);
  expect_disjoint_covering_shards(base + "/ddp", 64, 3);
  fs::remove_all(base);
}

TEST(MultiProcess, ControlWithoutGradientSyncDiverges) {
  const std::string base = zsad::testing::fresh_temp_dir("mp");
  auto ref = single_process(base + "/single", kExact);
  auto more = kExact;
  more.push_back("--no-sync");
  auto ps = spawn_two(base + "/nosync", more);
  for (auto& p : ps) ASSERT_EQ(run_to_end(p), 0) << slurp(p.log);
  auto r0 = dump(base + "/nosync", 0), r1 = dump(base + "/nosync", 1);
  EXPECT_GT(max_rel_error(r1, r0), 1e-3) << "ranks did not diverge without sync: the equality test could not fail";
  EXPECT_GT(max_rel_error(r0, ref), 1e-3);
  fs::remove_all(base);
}

TEST(MultiProcess, GradientAccumulationEqualsFullBatch) {
  // 2 ranks x 2 micro-steps of 4 samples == one process with the whole 16-sample batch.
  const std::string base = zsad::testing::fresh_temp_dir("mp");
  auto ref = single_process(base + "/single", kExact);
  auto more = kExact;
  more.insert(more.end(), {"--accum", "2"});
  for (auto& p : spawn_two(base + "/accum", more)) ASSERT_EQ(run_to_end(p), 0) << slurp(p.log);
  auto r0 = dump(base + "/accum", 0), r1 = dump(base + "/accum", 1);
  expect_bit_identical(r0, r1, "rank 0 vs rank 1");
  EXPECT_LT(max_rel_error(r0, ref), 1e-5);
  EXPECT_NE(slurp(base + "/accum/logs/rank0.log").find("local batch 4 x 2 micro-steps"), std::string::npos);
  expect_disjoint_covering_shards(base + "/accum", 64, 3);
  fs::remove_all(base);
}

TEST(MultiProcess, OverlapWithBackwardIsBitIdenticalToPlainSync) {
  const std::string base = zsad::testing::fresh_temp_dir("mp");
  for (auto& p : spawn_two(base + "/plain", kExact)) ASSERT_EQ(run_to_end(p), 0) << slurp(p.log);
  auto more = kExact;
  more.push_back("--overlap");
  for (auto& p : spawn_two(base + "/overlap", more)) ASSERT_EQ(run_to_end(p), 0) << slurp(p.log);
  for (int r = 0; r < 2; ++r) {
    expect_bit_identical(dump(base + "/plain", r), dump(base + "/overlap", r), "rank " + std::to_string(r));
  }
  fs::remove_all(base);
}

TEST(MultiProcess, MpiTwoRanksEqualSingleProcess) {
  const std::string base = zsad::testing::fresh_temp_dir("mp");
  auto ref = single_process(base + "/single", kExact);
  std::vector<std::string> argv{"/usr/bin/mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2",
                                "-x", "OMP_NUM_THREADS=1"};
  auto w = common_args(base + "/mpi", kExact);
  w.push_back("--backend");
  w.push_back("mpi");
  argv.insert(argv.end(), w.begin(), w.end());
  auto p = spawn(argv, {}, base + "/mpi.out");
  ASSERT_EQ(run_to_end(p), 0) << slurp(base + "/mpi.out");
  auto r0 = dump(base + "/mpi", 0), r1 = dump(base + "/mpi", 1);
  expect_bit_identical(r0, r1, "mpi rank 0 vs rank 1");
  EXPECT_LT(max_rel_error(r0, ref), 1e-5);
  EXPECT_NE(slurp(base + "/mpi/logs/rank0.log").find("(mpi)"), std::string::npos);
  expect_disjoint_covering_shards(base + "/mpi", 64, 3);
  fs::remove_all(base);
}

class Resume : public ::testing::TestWithParam<int> {};

TEST_P(Resume, StopAndResumeIsBitIdenticalToStraightRun) {
  // 2N straight vs N, stop (final checkpoint), resume, N more. N = 6 stops mid-epoch (4 steps per
  // epoch at world 1 and 2), the schedule is cosine over 2N, inputs carry per-rank RNG noise.
  const int world = GetParam();
  const std::string base = zsad::testing::fresh_temp_dir("resume");
  auto run = [&](const std::string& dir, int steps) {
    std::vector<std::string> more{"--steps", std::to_string(steps), "--schedule-steps", "12", "--checkpoint-every", "5"};
    if (world == 1) {
      auto p = spawn(common_args(dir, more), {}, dir + ".out");
      EXPECT_EQ(run_to_end(p), 0) << slurp(dir + ".out");
    } else {
      for (auto& p : spawn_two(dir, more)) EXPECT_EQ(run_to_end(p), 0) << slurp(p.log);
    }
  };
  run(base + "/straight", 12);
  run(base + "/resumed", 6);
  ASSERT_EQ(dump(base + "/resumed", 0).get_int("step"), 6);
  run(base + "/resumed", 12);
  EXPECT_NE(slurp(base + "/resumed/logs/rank0.log").find("resumed from"), std::string::npos);
  for (int r = 0; r < world; ++r) {
    expect_bit_identical(dump(base + "/straight", r), dump(base + "/resumed", r), "rank " + std::to_string(r));
  }
  fs::remove_all(base);
}

INSTANTIATE_TEST_SUITE_P(Worlds, Resume, ::testing::Values(1, 2));

namespace {

// Waits until rank 0 has logged step >= `step` (metrics.jsonl).
bool wait_for_step(const std::string& run_dir, int step, double timeout_s) {
  auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (Clock::now() < deadline) {
    std::ifstream in(run_dir + "/metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      auto pos = line.find("\"step\":");
      if (pos != std::string::npos && std::atoi(line.c_str() + pos + 7) >= step) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

}  // namespace

TEST(Faults, SigtermOnOneRankCheckpointsExits75AndResumesIdentically) {
  const std::string base = zsad::testing::fresh_temp_dir("sigterm");
  std::vector<std::string> more{"--steps", "40", "--schedule-steps", "40", "--log-every", "1"};
  for (auto& p : spawn_two(base + "/straight", more)) ASSERT_EQ(run_to_end(p), 0) << slurp(p.log);

  auto slow = more;
  slow.insert(slow.end(), {"--step-sleep-ms", "60"});
  auto ps = spawn_two(base + "/stopped", slow);
  ASSERT_TRUE(wait_for_step(base + "/stopped", 5, 60)) << slurp(ps[0].log);
  ::kill(ps[1].pid, SIGTERM);  // only rank 1 is signalled; rank 0 learns it through the allreduce
  auto t0 = Clock::now();
  auto rc0 = wait_for(ps[0].pid, 20), rc1 = wait_for(ps[1].pid, 20);
  ASSERT_TRUE(rc0 && rc1);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 10.0);
  EXPECT_EQ(*rc0, zsad::kExitStoppedResumable) << slurp(ps[0].log);
  EXPECT_EQ(*rc1, zsad::kExitStoppedResumable) << slurp(ps[1].log);
  zsad::CheckpointDir cd(base + "/stopped/checkpoints", 2);
  auto ck = cd.load_latest("");
  ASSERT_TRUE(ck.has_value());
  const int64_t stopped_at = ck->get_int("step");
  EXPECT_GE(stopped_at, 5);
  EXPECT_LT(stopped_at, 40);
  EXPECT_NE(slurp(ps[0].log).find("stop requested"), std::string::npos);

  for (auto& p : spawn_two(base + "/stopped", more)) ASSERT_EQ(run_to_end(p), 0) << slurp(p.log);
  for (int r = 0; r < 2; ++r) {
    expect_bit_identical(dump(base + "/straight", r), dump(base + "/stopped", r), "rank " + std::to_string(r));
  }
  fs::remove_all(base);
}

class DeadPeer : public ::testing::TestWithParam<int> {};

TEST_P(DeadPeer, SurvivorExitsNonZeroWithinTimeoutNamingTheRank) {
  // SIGKILL (dead) or SIGSTOP (stalled) rank 1 mid-epoch; rank 0 must exit non-zero within the
  // collective timeout + 10 s and name rank 1.
  const int sig = GetParam();
  const double timeout_s = 5;
  const std::string base = zsad::testing::fresh_temp_dir("dead");
  auto ps = spawn_two(base + "/run", {"--steps", "100000", "--log-every", "1", "--step-sleep-ms", "20", "--timeout",
                                      std::to_string(timeout_s)});
  ASSERT_TRUE(wait_for_step(base + "/run", 3, 60)) << slurp(ps[0].log);
  ::kill(ps[1].pid, sig);
  auto t0 = Clock::now();
  auto rc0 = wait_for(ps[0].pid, timeout_s + 10);
  double took = std::chrono::duration<double>(Clock::now() - t0).count();
  ::kill(ps[1].pid, SIGKILL);
  ::kill(ps[1].pid, SIGCONT);
  ::waitpid(ps[1].pid, nullptr, 0);
  if (!rc0) {
    ::kill(ps[0].pid, SIGKILL);
    ::waitpid(ps[0].pid, nullptr, 0);
  }
  ASSERT_TRUE(rc0.has_value()) << "rank 0 still running " << took << " s after its peer was stopped";
  EXPECT_NE(*rc0, 0);
  std::string log = slurp(ps[0].log);
  EXPECT_NE(log.find("rank 1 is missing"), std::string::npos) << "rank 0 exit status " << *rc0 << "\n" << log;
  fs::remove_all(base);
}

INSTANTIATE_TEST_SUITE_P(Signals, DeadPeer, ::testing::Values(SIGKILL, SIGSTOP));

class DeadPeerMpi : public ::testing::TestWithParam<int> {};

TEST_P(DeadPeerMpi, JobEndsNonZeroWithinTimeoutNamingTheRank) {
  // mpi backend: an MPI call cannot time out, so rank 0's watchdog (stall) or mpirun (death) must
  // end the job within the timeout + 10 s.
  const int sig = GetParam();
  const double timeout_s = 5;
  const std::string base = zsad::testing::fresh_temp_dir("deadmpi");
  const std::string run = base + "/run";
  std::vector<std::string> argv{"/usr/bin/mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
                                "-np", "2", "-x", "OMP_NUM_THREADS=1"};
  auto w = common_args(run, {"--backend", "mpi", "--steps", "100000", "--log-every", "1", "--step-sleep-ms", "20",
                             "--timeout", std::to_string(timeout_s)});
  argv.insert(argv.end(), w.begin(), w.end());
  auto p = spawn(argv, {}, base + "/mpirun.out");
  ASSERT_TRUE(wait_for_step(run, 3, 60)) << slurp(p.log);
  const pid_t victim = std::atoi(slurp(run + "/pid.rank1").c_str());
  ASSERT_GT(victim, 0);
  ::kill(victim, sig);
  auto rc = wait_for(p.pid, timeout_s + 10);
  ::kill(victim, SIGKILL);
  ::kill(victim, SIGCONT);
  if (!rc) {
    ::kill(p.pid, SIGKILL);
    ::waitpid(p.pid, nullptr, 0);
  }
  ASSERT_TRUE(rc.has_value()) << "mpirun still running " << timeout_s + 10 << " s after rank 1 was stopped";
  EXPECT_NE(*rc, 0);
  std::string log = slurp(p.log);
  EXPECT_NE(log.find(sig == SIGSTOP ? "rank 1 is missing" : "rank 1"), std::string::npos) << log;
  fs::remove_all(base);
}

INSTANTIATE_TEST_SUITE_P(Signals, DeadPeerMpi, ::testing::Values(SIGKILL, SIGSTOP));

TEST(Faults, NonFiniteLossAbortsNamingStepRankAndTerms) {
  const std::string base = zsad::testing::fresh_temp_dir("nan");
  auto ps = spawn_two(base + "/run", {"--nan-step", "3", "--nan-rank", "1"});
  for (auto& p : ps) EXPECT_EQ(run_to_end(p), 1) << slurp(p.log);
  std::string l1 = slurp(ps[1].log);
  EXPECT_NE(l1.find("non-finite loss at step 3"), std::string::npos) << l1;
  EXPECT_NE(l1.find("mse=nan"), std::string::npos) << l1;
  EXPECT_NE(slurp(ps[0].log).find("on rank(s) 1"), std::string::npos);
  fs::remove_all(base);
}

TEST(Faults, NonFiniteLossSkipKeepsRanksInStep) {
  const std::string base = zsad::testing::fresh_temp_dir("nan");
  auto ps = spawn_two(base + "/run", {"--nan-step", "3", "--nan-rank", "0", "--on-nonfinite", "skip"});
  for (auto& p : ps) ASSERT_EQ(run_to_end(p), 0) << slurp(p.log);
  auto r0 = dump(base + "/run", 0), r1 = dump(base + "/run", 1);
  EXPECT_EQ(r0.get_int("skipped_steps"), 1);
  EXPECT_EQ(r1.get_int("skipped_steps"), 1);
  expect_bit_identical(r0, r1, "after a skipped step");
  fs::remove_all(base);
}
