// Rendered sbatch scripts: directives, srun line, array ranges, validation, and the job script's
// own behaviour (requeue / stop / fail decisions) run with stub srun/zsad/requeue commands.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "common/error.h"
#include "slurm/client.h"
#include "slurm/sbatch.h"

namespace fs = std::filesystem;
using namespace zsad::slurm;

namespace {

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string l;
  while (std::getline(in, l)) out.push_back(l);
  return out;
}

std::vector<std::string> sbatch_lines(const std::string& script) {
  std::vector<std::string> out;
  for (const auto& l : lines_of(script))
    if (l.rfind("#SBATCH ", 0) == 0) out.push_back(l.substr(8));
  return out;
}

// sbatch stops reading directives at the first line that is not a comment or blank: every
// #SBATCH line must come before any command.
void expect_directives_first(const std::string& script) {
  auto ls = lines_of(script);
  ASSERT_FALSE(ls.empty());
  EXPECT_EQ(ls[0], "#!/bin/bash");
  size_t last = 0;
  for (size_t i = 0; i < ls.size(); ++i)
    if (ls[i].rfind("#SBATCH", 0) == 0) last = i;
  for (size_t i = 1; i <= last; ++i) {
    std::string t = ls[i];
    t.erase(0, t.find_first_not_of(" \t"));
    EXPECT_TRUE(t.empty() || t[0] == '#') << "line " << i << " before the last #SBATCH is a command: " << ls[i];
  }
}

ScriptRequest one_job(const std::string& dir) {
  ScriptRequest req;
  req.experiment = "demo";
  req.zsad_binary = "/opt/zsad/bin/zsad";
  req.log_dir = dir + "/.slurm";
  req.jobs.push_back(JobSpec{-1, dir, dir + "/.zsad/config.yaml", {"seed=1"}});
  return req;
}

}  // namespace

TEST(Sbatch, FourNodesTimesEightGpus) {
  Resources r;
  r.nodes = 4;
  r.ntasks_per_node = 8;
  r.gpus_per_node = 8;
  r.cpus_per_task = 10;
  r.mem = "480G";
  r.time = "2-00:00:00";
  r.partition = "gpu";
  r.account = "proj42";
  r.qos = "high";
  r.constraint = "a100";
  r.extra = {"mail-type=END", "--exclusive"};
  r.signal_seconds = 300;
  auto req = one_job("/runs/demo/1");
  std::string s = render_script(req, r);
  expect_directives_first(s);
  std::vector<std::string> want = {
      "--job-name=zsad-demo",
      "--nodes=4",
      "--ntasks-per-node=8",
      "--gpus-per-node=8",
      "--cpus-per-task=10",
      "--mem=480G",
      "--time=2-00:00:00",
      "--partition=gpu",
      "--account=proj42",
      "--qos=high",
      "--constraint=a100",
      "--output=/runs/demo/1/.slurm/%j.out",
      "--error=/runs/demo/1/.slurm/%j.err",
      "--open-mode=append",
      "--signal=USR2@300",
      "--requeue",
      "--mail-type=END",
      "--exclusive",
  };
  EXPECT_EQ(sbatch_lines(s), want);
  EXPECT_EQ(directives(req, r), want);
  // No array for a single run.
  EXPECT_EQ(s.find("--array"), std::string::npos);
  // srun: 32 ranks, one per GPU, each a `zsad job` with the run's config.
  std::string srun = srun_line(r);
  ASSERT_NE(s.find(srun), std::string::npos);
  EXPECT_NE(srun.find(" --nodes=4 "), std::string::npos) << srun;
  EXPECT_NE(srun.find(" --ntasks-per-node=8 "), std::string::npos) << srun;
  EXPECT_NE(srun.find(" --cpus-per-task=10 "), std::string::npos) << srun;  // 22.05 srun does not inherit it
  EXPECT_NE(srun.find(" --gpus-per-node=8 "), std::string::npos) << srun;
  EXPECT_NE(srun.find(" --label "), std::string::npos) << srun;
  EXPECT_NE(srun.find("--output=\"$ZSAD_JOB_DIR/run.log\""), std::string::npos) << srun;
  EXPECT_TRUE(std::regex_search(srun, std::regex(R"("\$zsad" job "\$ZSAD_JOB_CONFIG"$)"))) << srun;
  EXPECT_NE(s.find("( trap : TERM INT; " + srun_line(r) + "; echo $? > \"$rcfile\" ) &"), std::string::npos);
  EXPECT_NE(s.find("zsad='/opt/zsad/bin/zsad'"), std::string::npos);
  EXPECT_NE(s.find("ZSAD_JOB_CONFIG='/runs/demo/1/.zsad/config.yaml'"), std::string::npos);
  EXPECT_NE(s.find("export OMP_NUM_THREADS=10"), std::string::npos);
  EXPECT_NE(s.find("scontrol requeue \"$slurm_id\""), std::string::npos);
}

TEST(Sbatch, HundredJobSweepWithParallelismTen) {
  Resources r;
  r.array_parallelism = 10;
  r.setup = {"module load cuda/12.1", "source /opt/venv/bin/activate"};
  ScriptRequest req;
  req.experiment = "ablation";
  req.zsad_binary = "/usr/bin/zsad";
  req.sweep_dir = "/m/ablation/2026-01-01/10-00-00";
  req.log_dir = req.sweep_dir + "/.slurm";
  for (int i = 0; i < 100; ++i) {
    std::string d = req.sweep_dir + "/" + std::to_string(i);
    req.jobs.push_back(JobSpec{i, d, d + "/.zsad/config.yaml", {"seed=" + std::to_string(i)}});
  }
  std::string s = render_script(req, r);
  expect_directives_first(s);
  auto d = sbatch_lines(s);
  ASSERT_GE(d.size(), 3u);
  EXPECT_EQ(d[0], "--job-name=zsad-ablation");
  EXPECT_EQ(d[1], "--array=0-99%10");
  EXPECT_NE(std::find(d.begin(), d.end(), "--output=" + req.sweep_dir + "/.slurm/%A_%a.out"), d.end());
  EXPECT_NE(std::find(d.begin(), d.end(), "--error=" + req.sweep_dir + "/.slurm/%A_%a.err"), d.end());
  EXPECT_NE(std::find(d.begin(), d.end(), "--nodes=1"), d.end());
  EXPECT_NE(std::find(d.begin(), d.end(), "--ntasks-per-node=1"), d.end());
  // Each array index selects its own job directory and config.
  int cases = 0;
  std::regex case_re(R"(^  (\d+)\) ZSAD_JOB_DIR='([^']*)'; ZSAD_JOB_CONFIG='([^']*)' ;;)");
  for (const auto& l : lines_of(s)) {
    std::smatch m;
    if (!std::regex_search(l, m, case_re)) continue;
    int n = std::stoi(m[1]);
    EXPECT_EQ(m[2].str(), req.sweep_dir + "/" + std::to_string(n));
    EXPECT_EQ(m[3].str(), req.sweep_dir + "/" + std::to_string(n) + "/.zsad/config.yaml");
    EXPECT_EQ(n, cases);
    ++cases;
  }
  EXPECT_EQ(cases, 100);
  EXPECT_NE(s.find("slurm_id=\"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\""), std::string::npos);
  // Setup lines run before srun, in order.
  size_t a = s.find("module load cuda/12.1"), b = s.find("source /opt/venv/bin/activate"), c = s.find("( trap : TERM INT; srun ");
  ASSERT_NE(a, std::string::npos);
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  std::string srun = srun_line(r);
  ASSERT_NE(s.find(srun), std::string::npos);
  EXPECT_EQ(srun.find("--label"), std::string::npos) << "one rank: no labels";
  EXPECT_EQ(srun.find("--gpus-per-node"), std::string::npos);
}

TEST(Sbatch, ArraySpecCompressesRanges) {
  std::vector<int> all(100);
  for (int i = 0; i < 100; ++i) all[i] = i;
  EXPECT_EQ(array_spec(all, 10), "0-99%10");
  EXPECT_EQ(array_spec(all, 256), "0-99%100");  // min(n, parallelism), as submitit
  EXPECT_EQ(array_spec(all, 0), "0-99");
  EXPECT_EQ(array_spec({9, 3, 8, 7}, 2), "3,7-9%2");
  EXPECT_EQ(array_spec({5}, 4), "5%1");
  EXPECT_EQ(array_spec({0, 2, 4, 5, 6, 10, 11}, 0), "0,2,4-6,10-11");
  EXPECT_EQ(array_spec({1, 1, 2}, 0), "1-2");
  EXPECT_THROW(array_spec({}, 1), zsad::Error);
  EXPECT_THROW(array_spec({-1, 0}, 1), zsad::Error);
}

TEST(Sbatch, ResumedSweepArraysOnlyRemainingJobs) {
  Resources r;
  r.array_parallelism = 2;
  ScriptRequest req;
  req.experiment = "x";
  req.zsad_binary = "/z";
  req.sweep_dir = "/s";
  req.log_dir = "/s/.slurm";
  req.as_array = true;
  req.jobs.push_back(JobSpec{7, "/s/7", "/s/7/.zsad/config.yaml", {}});
  std::string s = render_script(req, r);
  EXPECT_EQ(sbatch_lines(s)[1], "--array=7%1");
  EXPECT_NE(s.find("  7) ZSAD_JOB_DIR='/s/7'"), std::string::npos);
  EXPECT_NE(s.find("--output=/s/.slurm/%A_%a.out"), std::string::npos);
}

TEST(Sbatch, ValidationNamesTheKey) {
  auto expect_error = [](Resources r, const std::string& needle) {
    try {
      validate(r);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const zsad::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  Resources ok;
  EXPECT_NO_THROW(validate(ok));
  Resources r = ok;
  r.nodes = 0;
  expect_error(r, "slurm.nodes 0");
  r = ok;
  r.ntasks_per_node = 0;
  expect_error(r, "slurm.ntasks_per_node");
  r = ok;
  r.time = "1h";
  expect_error(r, "slurm.time '1h'");
  for (const char* t : {"30", "10:00", "01:00:00", "2-00", "2-12:30", "1-00:00:00", "UNLIMITED"}) {
    r = ok;
    r.time = t;
    EXPECT_NO_THROW(validate(r)) << t;
  }
  r = ok;
  r.mem = "lots";
  expect_error(r, "slurm.mem 'lots'");
  r = ok;
  r.partition = "gpu debug";
  expect_error(r, "slurm.partition");
  r = ok;
  r.extra = {"--array=0-3"};
  expect_error(r, "slurm.extra '--array=0-3'");
  r = ok;
  r.extra = {"nodes=2"};
  expect_error(r, "slurm.extra 'nodes=2'");
  r = ok;
  r.extra = {"bad directive"};
  expect_error(r, "slurm.extra");
  r = ok;
  r.signal = "USR 2";
  expect_error(r, "slurm.signal");
  r = ok;
  r.signal_seconds = -1;
  expect_error(r, "slurm.signal_seconds");
  r = ok;
  r.max_requeues = -2;
  expect_error(r, "slurm.max_requeues");
  // render_script validates too.
  r = ok;
  r.cpus_per_task = 0;
  EXPECT_THROW(render_script(one_job("/d"), r), zsad::Error);
}

TEST(Sbatch, SignalAndRequeueOptions) {
  Resources r;
  r.signal = "SIGUSR1";
  r.signal_seconds = 60;
  r.requeue = false;
  auto d = directives(one_job("/d"), r);
  EXPECT_NE(std::find(d.begin(), d.end(), "--signal=USR1@60"), d.end());
  EXPECT_NE(std::find(d.begin(), d.end(), "--no-requeue"), d.end());
  EXPECT_EQ(std::find(d.begin(), d.end(), "--requeue"), d.end());
  r = Resources{};
  r.mpi = "pmix";
  r.srun_args = {"--cpu-bind=cores"};
  std::string line = srun_line(r);
  EXPECT_NE(line.find(" --mpi=pmix "), std::string::npos) << line;
  EXPECT_NE(line.find(" --cpu-bind=cores "), std::string::npos) << line;
}

TEST(Sbatch, ShellQuote) {
  EXPECT_EQ(shell_quote("a b"), "'a b'");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  auto r = run_command({"/bin/sh", "-c", "printf %s " + shell_quote("x'$HOME\"`y`")});
  EXPECT_EQ(r.out, "x'$HOME\"`y`");
}

TEST(Client, ParsesSbatchSqueueSacct) {
  EXPECT_EQ(parse_sbatch_job_id("1234\n"), "1234");
  EXPECT_EQ(parse_sbatch_job_id("77;cluster\n"), "77");
  EXPECT_THROW(parse_sbatch_job_id("sbatch: error: x\n"), zsad::Error);
  auto q = parse_squeue("12_0|RUNNING|None\n12_1|PENDING|JobArrayTaskLimit\n13|COMPLETING|None\n");
  ASSERT_EQ(q.size(), 3u);
  EXPECT_EQ(q["12_1"].state, "PENDING");
  EXPECT_EQ(q["12_1"].detail, "JobArrayTaskLimit");
  EXPECT_EQ(q["13"].state, "COMPLETING");
  auto a = parse_sacct("20|COMPLETED|0:0\n21|CANCELLED by 0|0:15\n22_3|FAILED|75:0\n");
  EXPECT_EQ(a["21"].state, "CANCELLED");
  EXPECT_EQ(a["22_3"].detail, "75:0");
  EXPECT_THROW(parse_squeue("garbage\n"), zsad::Error);
  EXPECT_EQ(zsad_state("PENDING"), "pending");
  EXPECT_EQ(zsad_state("REQUEUED"), "pending");
  EXPECT_EQ(zsad_state("RUNNING"), "running");
  EXPECT_EQ(zsad_state("COMPLETING"), "running");
  EXPECT_EQ(zsad_state("COMPLETED"), "completed");
  EXPECT_EQ(zsad_state("TIMEOUT"), "failed");
  EXPECT_EQ(zsad_state("NODE_FAIL"), "failed");
  EXPECT_EQ(zsad_state("CANCELLED"), "stopped");
  EXPECT_EQ(zsad_state("PREEMPTED"), "stopped");
  EXPECT_EQ(zsad_state("NOPE"), "");
}

TEST(Client, SubmissionRecordsRoundTrip) {
  fs::path dir = fs::temp_directory_path() / ("zsad_slurm_rec_" + std::to_string(getpid()));
  fs::remove_all(dir);
  EXPECT_TRUE(read_records(dir.string()).empty());
  append_record(dir.string(), SubmissionRecord{"100", "/s/a.sbatch", "0-3%2", {0, 1, 2, 3}, ""});
  append_record(dir.string(), SubmissionRecord{"105", "/s/b.sbatch", "2%1", {2}, "2026-01-01T00:00:00Z"});
  auto recs = read_records(dir.string());
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].job_id, "100");
  EXPECT_EQ(recs[0].jobs, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_FALSE(recs[0].submitted.empty());
  EXPECT_EQ(recs[1].submitted, "2026-01-01T00:00:00Z");
  EXPECT_EQ(element_id(recs[0], 3), "100_3");
  SubmissionRecord plain{"7", "/r/x.sbatch", "", {-1}, ""};
  EXPECT_EQ(element_id(plain, -1), "7");
  std::ofstream(records_path(dir.string()), std::ios::app) << "{not json\n";
  EXPECT_THROW(read_records(dir.string()), zsad::Error);
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// The job script itself, run by bash with stubs: `srun` drops its options and runs the command,
// the zsad stub logs its arguments and, as `zsad job`, exits with $STUB_CODE (or waits for a
// signal), the requeue command logs the job id.
class JobScript : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("zsad_slurm_script_" + std::to_string(getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "bin");
    write_exec(root_ / "bin" / "srun", "#!/bin/sh\nwhile [ \"${1#--}\" != \"$1\" ]; do shift; done\nexec \"$@\"\n");
    write_exec(root_ / "zsad",
               "#!/bin/bash\n"
               "echo \"$*\" >> \"$STUB_LOG\"\n"
               "if [ \"$1\" = job ]; then\n"
               "  echo \"job dir=$ZSAD_JOB_DIR num=$ZSAD_JOB_NUM cfg=$2 requeue_by=$ZSAD_SLURM_REQUEUE\" >> \"$STUB_LOG\"\n"
               "  if [ \"$STUB_CODE\" = wait ]; then\n"
               "    sleep 20 >/dev/null 2>&1 & s=$!\n"
               "    trap 'kill $s; echo \"job got TERM\" >> \"$STUB_LOG\"; exit 75' TERM\n"
               "    echo $$ > \"$STUB_LOG.started\"; wait; exit 9\n"
               "  fi\n"
               "  exit \"$STUB_CODE\"\n"
               "fi\n");
    write_exec(root_ / "requeue", "#!/bin/sh\necho \"requeue $*\" >> \"$STUB_LOG\"\n");
  }
  void TearDown() override { fs::remove_all(root_); }

  static void write_exec(const fs::path& p, const std::string& text) {
    std::ofstream(p) << text;
    chmod(p.c_str(), 0755);
  }

  std::string render(Resources r, bool array) {
    r.requeue_command = (root_ / "requeue").string();
    ScriptRequest req;
    req.experiment = "t";
    req.zsad_binary = (root_ / "zsad").string();
    req.log_dir = (root_ / "logs").string();
    if (array) {
      req.sweep_dir = root_.string();
      for (int i = 0; i < 4; ++i) {
        std::string d = (root_ / std::to_string(i)).string();
        req.jobs.push_back(JobSpec{i, d, d + "/.zsad/config.yaml", {}});
      }
    } else {
      std::string d = (root_ / "run").string();
      req.jobs.push_back(JobSpec{-1, d, d + "/.zsad/config.yaml", {}});
    }
    std::string path = (root_ / "job.sbatch").string();
    std::ofstream(path) << render_script(req, r);
    return path;
  }

  // Runs the script as SLURM would (environment of an array element or a plain job).
  CommandResult run(const std::string& script, const std::string& code, int restarts, bool array,
                    const std::string& extra = "") {
    std::string env = "PATH=" + (root_ / "bin").string() + ":$PATH STUB_LOG=" + log() + " STUB_CODE=" + code +
                      " SLURM_JOB_ID=42 SLURM_JOB_NODELIST=node[01-02]";
    if (array) env += " SLURM_ARRAY_JOB_ID=40 SLURM_ARRAY_TASK_ID=2";
    if (restarts > 0) env += " SLURM_RESTART_COUNT=" + std::to_string(restarts);
    return run_command({"/bin/bash", "-c", "export " + env + "; " + (extra.empty() ? "bash " + script : extra)});
  }

  std::string log() const { return (root_ / "calls.log").string(); }
  std::string calls() const {
    std::ifstream f(log());
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  fs::path root_;
};

TEST_F(JobScript, SyntaxIsValidBash) {
  Resources r;
  r.setup = {"export FOO=1"};
  auto res = run_command({"bash", "-n", render(r, true)});
  EXPECT_EQ(res.exit_code, 0) << res.err;
  res = run_command({"bash", "-n", render(r, false)});
  EXPECT_EQ(res.exit_code, 0) << res.err;
}

TEST_F(JobScript, CompletedArrayElementRunsItsJob) {
  auto res = run(render(Resources{}, true), "0", 0, true);
  EXPECT_EQ(res.exit_code, 0) << res.out << res.err;
  std::string c = calls();
  std::string dir = (root_ / "2").string();
  EXPECT_NE(c.find("status --set running --slurm-job 40_2 --restarts 0 " + dir), std::string::npos) << c;
  EXPECT_NE(c.find("job dir=" + dir + " num=2 cfg=" + dir + "/.zsad/config.yaml requeue_by=wrapper"),
            std::string::npos)
      << c;
  EXPECT_NE(c.find("status --set completed --exit-code 0 " + dir), std::string::npos) << c;
  EXPECT_EQ(c.find("requeue "), std::string::npos) << c;
}

TEST_F(JobScript, CheckpointedStopWithoutOwnSignalRequeues) {
  // srun returned 75 and the batch shell received nothing: SIGUSR2 reached the steps only.
  auto res = run(render(Resources{}, false), "75", 1, false);
  EXPECT_EQ(res.exit_code, 75) << res.out << res.err;
  std::string c = calls();
  std::string dir = (root_ / "run").string();
  EXPECT_NE(c.find("status --set running --slurm-job 42 --restarts 1 " + dir), std::string::npos) << c;
  EXPECT_NE(c.find("status --set pending --exit-code 75 " + dir), std::string::npos) << c;
  EXPECT_NE(c.find("requeue 42\n"), std::string::npos) << c;
  EXPECT_EQ(c.find("--set stopped"), std::string::npos) << c;
  EXPECT_NE(res.out.find("requeue 2/3"), std::string::npos) << res.out;
}

TEST_F(JobScript, ArrayElementRequeuesOnlyItself) {
  // An element's SLURM_JOB_ID may equal the array job id; `scontrol requeue <that>` would requeue
  // every element, so the element requeues ARRAYID_INDEX.
  auto res = run(render(Resources{}, true), "75", 0, true);
  EXPECT_EQ(res.exit_code, 75) << res.out << res.err;
  std::string c = calls();
  EXPECT_NE(c.find("requeue 40_2\n"), std::string::npos) << c;
  EXPECT_EQ(c.find("requeue 42"), std::string::npos) << c;
}

TEST_F(JobScript, RequeueCapStopsTheJob) {
  Resources r;
  r.max_requeues = 2;
  auto res = run(render(r, false), "75", 2, false);
  EXPECT_EQ(res.exit_code, 75);
  std::string c = calls();
  EXPECT_EQ(c.find("requeue "), std::string::npos) << c;
  EXPECT_NE(c.find("status --set stopped --exit-code 75"), std::string::npos) << c;
  EXPECT_NE(res.err.find("requeue cap reached (SLURM_RESTART_COUNT=2, slurm.max_requeues=2)"), std::string::npos)
      << res.err;
}

TEST_F(JobScript, RequeueDisabledStopsTheJob) {
  Resources r;
  r.requeue = false;
  auto res = run(render(r, false), "75", 0, false);
  EXPECT_EQ(res.exit_code, 75);
  std::string c = calls();
  EXPECT_EQ(c.find("requeue "), std::string::npos) << c;
  EXPECT_NE(c.find("status --set stopped --exit-code 75"), std::string::npos) << c;
}

TEST_F(JobScript, FailureIsRecorded) {
  auto res = run(render(Resources{}, true), "3", 0, true);
  EXPECT_EQ(res.exit_code, 3);
  std::string c = calls();
  EXPECT_NE(c.find("status --set failed --exit-code 3 " + (root_ / "2").string()), std::string::npos) << c;
  EXPECT_EQ(c.find("requeue "), std::string::npos) << c;
}

TEST_F(JobScript, SigtermToTheBatchShellStopsWithoutRequeue) {
  // scancel: SIGTERM reaches the batch shell and the steps; the job checkpoints (75) and stays stopped.
  std::string script = render(Resources{}, false);
  std::string started = log() + ".started";
  // setsid: the script leads its own process group, which gets the signal as a whole, like
  // SLURM signalling every process of the job.
  std::string driver = "setsid bash " + script + " & p=$!; for i in $(seq 200); do [ -s " + started +
                       " ] && break; sleep 0.05; done; kill -TERM -- -$p; wait $p";
  auto res = run(script, "wait", 0, false, driver);
  EXPECT_EQ(res.exit_code, 75) << res.out << res.err;
  std::string c = calls();
  EXPECT_NE(c.find("job got TERM"), std::string::npos) << c;
  EXPECT_NE(c.find("status --set stopped --exit-code 75"), std::string::npos) << c;
  EXPECT_EQ(c.find("requeue "), std::string::npos) << c;
  EXPECT_NE(res.out.find("stopped by SIGTERM"), std::string::npos) << res.out;
}

TEST_F(JobScript, UnknownArrayIndexFails) {
  std::string script = render(Resources{}, true);
  auto res = run(script, "0", 0, false, "SLURM_ARRAY_JOB_ID=40 SLURM_ARRAY_TASK_ID=9 bash " + script);
  EXPECT_EQ(res.exit_code, 1);
  EXPECT_NE(res.err.find("array index '9' is not a job of this sweep"), std::string::npos) << res.err;
  EXPECT_EQ(calls().find("job "), std::string::npos);
}
