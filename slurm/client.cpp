#include "slurm/client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"

namespace zsad::slurm {

namespace fs = std::filesystem;

namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

std::string first_line(const std::string& s) {
  std::string t = trim(s);
  return t.substr(0, t.find('\n'));
}

}  // namespace

CommandResult run_command(const std::vector<std::string>& argv) {
  if (argv.empty()) throw Error("run_command: empty command");
  int po[2], pe[2];
  if (pipe2(po, O_CLOEXEC) != 0) throw Error(std::string("pipe failed: ") + std::strerror(errno));
  if (pipe2(pe, O_CLOEXEC) != 0) {
    close(po[0]);
    close(po[1]);
    throw Error(std::string("pipe failed: ") + std::strerror(errno));
  }
  pid_t pid = fork();
  if (pid < 0) throw Error(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    dup2(po[1], 1);
    dup2(pe[1], 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    std::string msg = "cannot execute " + argv[0] + ": " + std::strerror(errno) + "\n";
    (void)!write(2, msg.data(), msg.size());
    _exit(127);
  }
  close(po[1]);
  close(pe[1]);
  CommandResult r;
  bool out_open = true, err_open = true;
  char buf[8192];
  while (out_open || err_open) {
    pollfd p[2] = {{out_open ? po[0] : -1, POLLIN, 0}, {err_open ? pe[0] : -1, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(p[i].fd, buf, sizeof buf);
      if (n > 0) (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      else if (n == 0 || errno != EINTR) (i == 0 ? out_open : err_open) = false;
    }
  }
  close(po[0]);
  close(pe[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::string parse_sbatch_job_id(const std::string& out) {
  std::string line = first_line(out);
  std::string id = line.substr(0, line.find(';'));
  if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
    throw Error("sbatch --parsable printed '" + line + "', expected a job id");
  return id;
}

std::string submit(const std::string& script_path) {
  CommandResult r = run_command({"sbatch", "--parsable", script_path});
  if (r.exit_code != 0)
    throw Error("sbatch " + script_path + " failed (exit " + std::to_string(r.exit_code) + "): " + first_line(r.err));
  return parse_sbatch_job_id(r.out);
}

CommandResult test_only(const std::string& script_path) {
  return run_command({"sbatch", "--test-only", script_path});
}

std::map<std::string, QueueEntry> parse_squeue(const std::string& out) {
  std::map<std::string, QueueEntry> m;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty()) continue;
    auto f = split(line, '|');
    if (f.size() < 2) throw Error("squeue output line '" + line + "': expected 'id|state|reason'");
    QueueEntry e{trim(f[0]), trim(f[1]), f.size() > 2 ? trim(f[2]) : ""};
    m[e.id] = e;
  }
  return m;
}

std::map<std::string, QueueEntry> parse_sacct(const std::string& out) {
  std::map<std::string, QueueEntry> m;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty()) continue;
    auto f = split(line, '|');
    if (f.size() < 2) throw Error("sacct output line '" + line + "': expected 'JobID|State|ExitCode'");
    std::string state = trim(f[1]);
    state = state.substr(0, state.find(' '));  // "CANCELLED by 0"
    QueueEntry e{trim(f[0]), state, f.size() > 2 ? trim(f[2]) : ""};
    m[e.id] = e;
  }
  return m;
}

std::map<std::string, QueueEntry> query_queue() {
  CommandResult r = run_command({"squeue", "-h", "-r", "--me", "-o", "%i|%T|%r"});
  if (r.exit_code != 0) throw Error("squeue failed (exit " + std::to_string(r.exit_code) + "): " + first_line(r.err));
  return parse_squeue(r.out);
}

std::optional<std::map<std::string, QueueEntry>> query_accounting(const std::vector<std::string>& job_ids) {
  if (job_ids.empty()) return std::map<std::string, QueueEntry>{};
  std::string ids;
  for (const auto& j : job_ids) ids += (ids.empty() ? "" : ",") + j;
  CommandResult r = run_command({"sacct", "-n", "-P", "-X", "-j", ids, "-o", "JobID,State,ExitCode"});
  if (r.exit_code != 0) return std::nullopt;
  return parse_sacct(r.out);
}

std::string zsad_state(const std::string& s) {
  static const std::map<std::string, std::string> m = {
      {"PENDING", "pending"},       {"REQUEUED", "pending"},     {"REQUEUE_HOLD", "pending"},
      {"REQUEUE_FED", "pending"},   {"RESV_DEL_HOLD", "pending"}, {"SUSPENDED", "pending"},
      {"CONFIGURING", "running"},   {"RUNNING", "running"},      {"COMPLETING", "running"},
      {"STAGE_OUT", "running"},     {"SIGNALING", "running"},    {"RESIZING", "running"},
      {"COMPLETED", "completed"},   {"FAILED", "failed"},        {"NODE_FAIL", "failed"},
      {"BOOT_FAIL", "failed"},      {"OUT_OF_MEMORY", "failed"}, {"TIMEOUT", "failed"},
      {"DEADLINE", "failed"},       {"CANCELLED", "stopped"},    {"PREEMPTED", "stopped"},
      {"REVOKED", "stopped"},
  };
  auto it = m.find(s);
  return it == m.end() ? "" : it->second;
}

std::string records_path(const std::string& dir) { return (fs::path(dir) / ".slurm" / "submissions.jsonl").string(); }

void append_record(const std::string& dir, const SubmissionRecord& rec) {
  fs::create_directories(fs::path(dir) / ".slurm");
  std::string submitted = rec.submitted;
  if (submitted.empty()) {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    submitted = buf;
  }
  nlohmann::ordered_json j{{"job_id", rec.job_id},
                           {"script", rec.script},
                           {"array", rec.array},
                           {"jobs", rec.jobs},
                           {"submitted", submitted}};
  std::string path = records_path(dir);
  std::ofstream f(path, std::ios::app);
  if (!f) throw Error(path + ": cannot open for appending");
  f << j.dump() << "\n";
  if (!f) throw Error(path + ": write failed");
}

std::vector<SubmissionRecord> read_records(const std::string& dir) {
  std::vector<SubmissionRecord> out;
  std::string path = records_path(dir);
  std::ifstream f(path);
  if (!f) return out;
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    ++n;
    if (trim(line).empty()) continue;
    try {
      auto j = nlohmann::json::parse(line);
      SubmissionRecord r;
      r.job_id = j.at("job_id").get<std::string>();
      r.script = j.value("script", "");
      r.array = j.value("array", "");
      r.jobs = j.at("jobs").get<std::vector<int>>();
      r.submitted = j.value("submitted", "");
      out.push_back(std::move(r));
    } catch (const std::exception& e) {
      throw Error(path + ":" + std::to_string(n) + ": not a submission record: " + e.what());
    }
  }
  return out;
}

std::string element_id(const SubmissionRecord& rec, int num) {
  if (rec.array.empty()) return rec.job_id;
  return rec.job_id + "_" + std::to_string(num);
}

}  // namespace zsad::slurm
