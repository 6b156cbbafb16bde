// `zsad status` without a cluster: states from job.yaml, from a stub squeue on PATH, and the
// "no longer queued, never finished" rule; `zsad status --set`. Runs the CLI ($ZSAD_BINARY).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "slurm/client.h"
#include "slurm/sbatch.h"

namespace fs = std::filesystem;
using zsad::slurm::CommandResult;
using zsad::slurm::run_command;
using zsad::slurm::shell_quote;

namespace {

class StatusCli : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("ZSAD_BINARY");
    const char* src = std::getenv("ZSAD_SOURCE_DIR");
    ASSERT_TRUE(bin && src) << "ZSAD_BINARY / ZSAD_SOURCE_DIR not set (run through ctest)";
    zsad_ = bin;
    exp_ = std::string(src) + "/experiments/example_shell.yaml";
    root_ = fs::temp_directory_path() / ("zsad_status_cli_" + std::to_string(getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "bin");
  }
  void TearDown() override { fs::remove_all(root_); }

  CommandResult sh(const std::string& cmd) {
    return run_command({"/bin/sh", "-c",
                        "cd " + shell_quote(root_.string()) + " && export ZSAD_OUTPUT_ROOT=" + shell_quote(root_.string()) +
                            " PATH=" + shell_quote((root_ / "bin").string()) + ":$PATH; " + cmd});
  }
  std::string z() const { return shell_quote(zsad_); }

  // A local 3-job sweep; returns its directory.
  std::string local_sweep() {
    auto r = sh(z() + " sweep " + shell_quote(exp_) + " seed=0,1,2 --quiet");
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    for (const auto& e : fs::recursive_directory_iterator(root_ / "multirun"))
      if (e.path().filename() == "multirun.yaml") return e.path().parent_path().string();
    ADD_FAILURE() << "no multirun.yaml under " << root_;
    return "";
  }

  nlohmann::json status_json(const std::string& dir) {
    auto r = sh(z() + " status " + shell_quote(dir) + " --json");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  }

  void stub_squeue(const std::string& output) {
    fs::path p = root_ / "bin" / "squeue";
    std::ofstream(p) << "#!/bin/sh\ncat <<'EOF'\n" << output << "EOF\n";
    chmod(p.c_str(), 0755);
    fs::path a = root_ / "bin" / "sacct";  // accounting disabled, as on the test cluster
    std::ofstream(a) << "#!/bin/sh\necho 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n";
    chmod(a.c_str(), 0755);
  }

  std::string zsad_, exp_;
  fs::path root_;
};

}  // namespace

TEST_F(StatusCli, LocalSweepStatesAndSet) {
  std::string dir = local_sweep();
  auto j = status_json(dir);
  EXPECT_EQ(j["counts"]["completed"], 3);
  ASSERT_EQ(j["jobs"].size(), 3u);
  EXPECT_EQ(j["jobs"][1]["num"], 1);
  EXPECT_EQ(j["jobs"][1]["slurm_id"], "");
  // --set records a state; the text view lists the failed job with its log.
  auto r = sh(z() + " status --set failed --exit-code 3 " + shell_quote(dir + "/1"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = status_json(dir);
  EXPECT_EQ(j["counts"]["completed"], 2);
  EXPECT_EQ(j["counts"]["failed"], 1);
  EXPECT_EQ(j["jobs"][1]["exit_code"], 3);
  r = sh(z() + " status " + shell_quote(dir));
  EXPECT_NE(r.out.find("3 jobs, 2 completed, 1 failed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("failed: job 1 (exit 3): " + dir + "/1/run.log"), std::string::npos) << r.out;
  // Bad uses.
  EXPECT_EQ(sh(z() + " status --set done " + shell_quote(dir + "/1")).exit_code, 2);
  EXPECT_EQ(sh(z() + " status " + shell_quote(root_.string())).exit_code, 1);
}

TEST_F(StatusCli, QueueStatesWinOverJobFiles) {
  std::string dir = local_sweep();
  // Pretend the sweep was submitted as array 77: job 0 finished (its script wrote completed),
  // 1 is running, 2 is pending in the queue although its job.yaml says stopped (requeued).
  zsad::slurm::append_record(dir, zsad::slurm::SubmissionRecord{"77", dir + "/.slurm/submit_0.sbatch", "0-2%3", {0, 1, 2}, ""});
  ASSERT_EQ(sh(z() + " status --set stopped --exit-code 75 " + shell_quote(dir + "/2")).exit_code, 0);
  stub_squeue("77_1|RUNNING|None\n77_2|PENDING|BeginTime\n99|RUNNING|None\n");
  auto j = status_json(dir);
  EXPECT_EQ(j["jobs"][0]["state"], "completed");
  EXPECT_EQ(j["jobs"][0]["slurm_id"], "77_0");
  EXPECT_EQ(j["jobs"][1]["state"], "running");
  EXPECT_EQ(j["jobs"][2]["state"], "pending");
  EXPECT_NE(j["jobs"][2]["note"].get<std::string>().find("BeginTime"), std::string::npos);
  // No longer queued and its script never recorded an end: reported failed.
  ASSERT_EQ(sh(z() + " status --set running " + shell_quote(dir + "/1")).exit_code, 0);
  stub_squeue("77_2|PENDING|BeginTime\n");
  j = status_json(dir);
  EXPECT_EQ(j["jobs"][1]["state"], "failed");
  EXPECT_NE(j["jobs"][1]["note"].get<std::string>().find("no longer queued"), std::string::npos);
  // --no-slurm: job files only.
  auto r = sh(z() + " status " + shell_quote(dir) + " --no-slurm --json");
  auto k = nlohmann::json::parse(r.out);
  EXPECT_EQ(k["jobs"][1]["state"], "running");
  EXPECT_EQ(k["jobs"][2]["state"], "stopped");
}
