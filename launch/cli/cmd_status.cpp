// zsad status DIR: the state of every job of a sweep (or of one run), from the SLURM queue
// (squeue), accounting (sacct, when enabled) and the jobs' .zsad/job.yaml; failed jobs' logs.
// zsad status --set STATE [...] JOB_DIR: records a state in job.yaml (used by the SLURM job scripts).
#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/exit_codes.h"
#include "launch/cli/args.h"
#include "launch/cli/command.h"
#include "launch/config/yaml_io.h"
#include "launch/sweep/slurm_launcher.h"
#include "launch/sweep/sweep.h"
#include "slurm/client.h"

namespace {

namespace fs = std::filesystem;
using zsad::config::Node;

struct JobRow {
  int num = -1;
  std::string dir;
  std::string overrides;
  std::string state;
  std::string note;
  std::string slurm_id;
  std::string log;
  std::string slurm_log;
  Node exit_code;
};

Node read_job_yaml(const std::string& dir) {
  std::string f = (fs::path(dir) / ".zsad" / "job.yaml").string();
  if (!fs::exists(f)) return Node::map();
  try {
    return zsad::config::load_yaml_file(f);
  } catch (const zsad::Error&) {
    return Node::map();
  }
}

std::string text_of(const Node& job, const std::string& key) {
  const Node* n = job.find(key);
  return n && n->is_scalar() && !n->is_null() ? n->scalar_text() : "";
}

bool is_final(const std::string& s) { return s == "completed" || s == "failed" || s == "stopped"; }

int set_state(const zsad::cli::Args& args) {
  if (args.rest().size() != 1) throw zsad::UsageError("--set needs exactly one JOB_DIR");
  const std::string& dir = args.rest()[0];
  std::string state = args.get("set");
  static const std::vector<std::string> states = {"pending", "running", "completed", "failed", "stopped"};
  if (std::find(states.begin(), states.end(), state) == states.end())
    throw zsad::UsageError("--set '" + state + "': expected pending, running, completed, failed or stopped");
  if (!fs::exists(fs::path(dir) / ".zsad"))
    throw zsad::Error(dir + ": not a job directory (no .zsad/ folder)");
  std::vector<std::pair<std::string, Node>> values{{"status", Node(state)}};
  values.emplace_back("exit_code", args.has("exit-code") ? Node(static_cast<int64_t>(args.get_int("exit-code"))) : Node());
  if (args.has("slurm-job")) values.emplace_back("slurm_job_id", Node(args.get("slurm-job")));
  if (args.has("restarts")) values.emplace_back("slurm_restarts", Node(static_cast<int64_t>(args.get_int("restarts"))));
  zsad::launch::update_job_yaml(dir, values);
  return zsad::kExitSuccess;
}

int run_status(const std::vector<std::string>& tokens) {
  zsad::cli::Args args(
      "zsad status DIR [--json] [--no-slurm]\n"
      "  DIR: a sweep directory (multirun.yaml) or a run directory (.zsad/job.yaml)\n"
      "zsad status --set STATE [--exit-code N] [--slurm-job ID] [--restarts N] JOB_DIR   (used by job scripts)");
  args.toggle("json", "print {\"dir\", \"counts\", \"jobs\": [{num, state, slurm_id, dir, log, slurm_log, ...}]}")
      .toggle("no-slurm", "do not ask squeue/sacct; job.yaml states only")
      .flag("set", "record STATE in JOB_DIR/.zsad/job.yaml")
      .flag("exit-code", "with --set: the exit code")
      .flag("slurm-job", "with --set: the SLURM job id (A_a for array elements)")
      .flag("restarts", "with --set: SLURM_RESTART_COUNT")
      .positionals("DIR", 1, 1);
  args.parse(tokens);
  if (args.has("set")) return set_state(args);
  const std::string dir = args.rest()[0];

  std::vector<JobRow> rows;
  bool sweep = fs::exists(fs::path(dir) / "multirun.yaml");
  if (sweep) {
    auto plan = zsad::launch::load_sweep_plan(dir);
    for (const auto& j : plan.jobs) {
      JobRow r;
      r.num = j.num;
      r.dir = j.dir;
      for (const auto& o : j.overrides) r.overrides += (r.overrides.empty() ? "" : " ") + o;
      rows.push_back(r);
    }
  } else if (fs::exists(fs::path(dir) / ".zsad" / "job.yaml")) {
    JobRow r;
    r.dir = fs::path(dir).lexically_normal().string();
    rows.push_back(r);
  } else {
    throw zsad::Error(dir + ": neither a sweep directory (multirun.yaml) nor a run directory (.zsad/job.yaml)");
  }

  // SLURM ids: the submission records (newest wins), else job.yaml.
  std::map<int, std::string> record_ids;
  for (const auto& rec : zsad::slurm::read_records(dir))
    for (int n : rec.jobs) record_ids[n] = zsad::slurm::element_id(rec, n);
  for (auto& r : rows) {
    auto it = record_ids.find(r.num);
    if (it != record_ids.end()) r.slurm_id = it->second;
  }
  bool any_slurm = !record_ids.empty();
  for (auto& r : rows) any_slurm = any_slurm || !text_of(read_job_yaml(r.dir), "slurm_job_id").empty();

  // The queue is read BEFORE job.yaml: a job that leaves the queue has written its final state
  // first, so "not queued" + "running in job.yaml" means the job script never finished.
  std::map<std::string, zsad::slurm::QueueEntry> queue;
  bool have_queue = false;
  std::string slurm_note;
  if (any_slurm && !args.on("no-slurm")) {
    try {
      queue = zsad::slurm::query_queue();
      have_queue = true;
    } catch (const zsad::Error& e) {
      slurm_note = std::string("squeue unavailable (") + e.what() + "); states from job.yaml";
    }
  }
  std::vector<std::string> unqueued;
  for (auto& r : rows) {
    Node job = read_job_yaml(r.dir);
    if (r.slurm_id.empty()) r.slurm_id = text_of(job, "slurm_job_id");
    r.log = text_of(job, "log");
    if (r.log.empty()) r.log = (fs::path(r.dir) / "run.log").string();
    r.slurm_log = text_of(job, "slurm_log");
    if (const Node* e = job.find("exit_code")) r.exit_code = *e;
    std::string recorded = text_of(job, "status");
    if (recorded.empty()) recorded = "pending";
    auto q = have_queue && !r.slurm_id.empty() ? queue.find(r.slurm_id) : queue.end();
    if (q != queue.end()) {
      r.state = zsad::slurm::zsad_state(q->second.state);
      if (r.state.empty()) r.state = "running";
      r.note = "slurm " + q->second.state + (q->second.detail.empty() || q->second.detail == "None" ? "" : " (" + q->second.detail + ")");
    } else {
      r.state = recorded;
      if (have_queue && !r.slurm_id.empty() && !is_final(recorded)) unqueued.push_back(r.slurm_id);
    }
  }
  // Submitted, no longer queued, and no final state recorded: ask accounting, else report it.
  if (!unqueued.empty()) {
    auto acct = zsad::slurm::query_accounting(unqueued);
    for (auto& r : rows) {
      if (r.slurm_id.empty() || is_final(r.state) || queue.count(r.slurm_id)) continue;
      if (acct && acct->count(r.slurm_id)) {
        const auto& e = acct->at(r.slurm_id);
        r.state = zsad::slurm::zsad_state(e.state);
        if (r.state == "failed" && e.detail.rfind("75:", 0) == 0) r.state = "stopped";
        r.note = "sacct " + e.state + " " + e.detail;
      } else {
        r.note = "no longer queued; its job script recorded '" + r.state + "' last (killed?)";
        r.state = "failed";
      }
    }
  }

  std::map<std::string, int> counts;
  for (const auto& r : rows) ++counts[r.state];
  if (args.on("json")) {
    nlohmann::ordered_json jobs = nlohmann::ordered_json::array();
    for (const auto& r : rows) {
      nlohmann::ordered_json j{{"num", r.num}, {"state", r.state}, {"slurm_id", r.slurm_id}, {"dir", r.dir},
                               {"log", r.log},  {"slurm_log", r.slurm_log}, {"note", r.note}};
      j["exit_code"] = r.exit_code.is_int() ? nlohmann::ordered_json(r.exit_code.as_int()) : nlohmann::ordered_json();
      j["overrides"] = r.overrides;
      jobs.push_back(j);
    }
    nlohmann::ordered_json c = nlohmann::ordered_json::object();
    for (const auto& [k, v] : counts) c[k] = v;
    std::cout << nlohmann::ordered_json{{"dir", dir}, {"counts", c}, {"jobs", jobs}}.dump() << "\n";
    return zsad::kExitSuccess;
  }
  std::cout << (sweep ? "sweep " : "run ") << dir << ": " << rows.size() << " job" << (rows.size() == 1 ? "" : "s");
  for (const char* s : {"completed", "running", "pending", "stopped", "failed"})
    if (counts.count(s)) std::cout << ", " << counts[s] << " " << s;
  std::cout << "\n";
  if (!slurm_note.empty()) std::cout << "  note: " << slurm_note << "\n";
  std::cout << "  " << std::setw(4) << "num" << "  " << std::left << std::setw(10) << "state" << std::setw(14) << "slurm id"
            << "overrides\n";
  for (const auto& r : rows) {
    std::cout << "  " << std::right << std::setw(4) << (r.num >= 0 ? std::to_string(r.num) : "-") << "  " << std::left
              << std::setw(10) << r.state << std::setw(14) << (r.slurm_id.empty() ? "-" : r.slurm_id) << r.overrides;
    if (!r.note.empty()) std::cout << "  [" << r.note << "]";
    std::cout << "\n" << std::right;
  }
  for (const auto& r : rows) {
    if (r.state != "failed") continue;
    std::cout << "failed: job " << (r.num >= 0 ? std::to_string(r.num) : "-");
    if (r.exit_code.is_int()) std::cout << " (exit " << r.exit_code.as_int() << ")";
    std::cout << ": " << r.log;
    if (!r.slurm_log.empty()) {
      std::string err = r.slurm_log.substr(0, r.slurm_log.size() - 4) + ".err";
      std::cout << ", " << r.slurm_log << ", " << err;
    }
    std::cout << "\n";
  }
  return zsad::kExitSuccess;
}

// The slurm sweep launcher lives in zsad_launch; registering it here (a file of the executable)
// keeps it from being dropped by the static linker.
struct RegisterSlurm {
  RegisterSlurm() { zsad::launch::register_slurm_sweep_launcher(); }
} register_slurm;

}  // namespace

ZSAD_COMMAND("status", "state of every job of a sweep or run dir (SLURM queue, accounting, job.yaml); failed jobs' logs",
             run_status);
