#include "launch/sweep/slurm_launcher.h"

#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "common/error.h"
#include "common/exit_codes.h"
#include "launch/config/compose.h"
#include "launch/config/yaml_io.h"
#include "launch/local/process.h"
#include "slurm/client.h"

namespace zsad::launch {

namespace fs = std::filesystem;
using config::Node;

namespace {

Node key_value(const Node& cfg, const std::string& key) { return config::get_or_default(cfg, "slurm." + key); }

int int_key(const Node& cfg, const std::string& key, int dflt) {
  Node n = key_value(cfg, key);
  if (n.is_null()) return dflt;
  if (!n.is_int()) throw Error("slurm." + key + ": expected an int, got '" + n.scalar_text() + "'");
  return static_cast<int>(n.as_int());
}

std::string str_key(const Node& cfg, const std::string& key) {
  Node n = key_value(cfg, key);
  if (n.is_null()) return "";
  if (!n.is_scalar()) throw Error("slurm." + key + ": expected a string");
  return n.scalar_text();
}

std::vector<std::string> list_key(const Node& cfg, const std::string& key) {
  Node n = key_value(cfg, key);
  std::vector<std::string> out;
  if (n.is_null()) return out;
  if (!n.is_list()) throw Error("slurm." + key + ": expected a list of strings");
  for (const auto& e : n.items()) {
    if (!e.is_scalar()) throw Error("slurm." + key + ": expected a list of strings");
    out.push_back(e.scalar_text());
  }
  return out;
}

std::string zsad_binary_of(const Node& cfg) {
  std::string b = str_key(cfg, "zsad_binary");
  return b.empty() ? self_executable() : fs::absolute(b).string();
}

std::string abs(const std::string& p) { return fs::absolute(p).lexically_normal().string(); }

Node compose_job_config(const SweepPlan& plan, const JobPlan& j) {
  config::ComposeRequest req;
  req.experiment = plan.experiment_file;
  req.overrides = j.overrides;
  try {
    return config::compose(req).config;
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    throw Error("job " + std::to_string(j.num) + ": " + e.what());
  }
}

// Scripts differ only in their jobs when the resources (and the executable) are equal.
std::string resources_key(const slurm::Resources& r, const std::string& zsad) {
  slurm::ScriptRequest probe;
  probe.experiment = "x";
  probe.zsad_binary = zsad;
  probe.log_dir = "/";
  probe.jobs.push_back(slurm::JobSpec{0, "/", "/", {}});
  probe.as_array = true;
  return slurm::render_script(probe, r);
}

struct Group {
  slurm::Resources resources;
  std::string zsad;
  std::vector<slurm::JobSpec> jobs;
};

std::vector<Group> group_jobs(const SweepPlan& plan, const std::vector<JobPlan>& jobs) {
  std::vector<Group> groups;
  std::map<std::string, size_t> index;
  for (const auto& j : jobs) {
    Node cfg = compose_job_config(plan, j);
    slurm::Resources r;
    try {
      r = slurm_resources(cfg);
    } catch (const Error& e) {
      throw Error("job " + std::to_string(j.num) + ": " + e.what());
    }
    std::string zsad = zsad_binary_of(cfg);
    std::string key = resources_key(r, zsad);
    auto it = index.find(key);
    if (it == index.end()) {
      it = index.emplace(key, groups.size()).first;
      groups.push_back(Group{r, zsad, {}});
    }
    std::string dir = abs(j.dir);
    groups[it->second].jobs.push_back(
        slurm::JobSpec{j.num, dir, (fs::path(dir) / ".zsad" / "config.yaml").string(), j.overrides});
  }
  return groups;
}

slurm::ScriptRequest sweep_request(const SweepPlan& plan, const Group& g) {
  slurm::ScriptRequest req;
  req.experiment = plan.name;
  req.zsad_binary = g.zsad;
  req.sweep_dir = abs(plan.sweep_dir);
  req.log_dir = (fs::path(req.sweep_dir) / ".slurm").string();
  req.jobs = g.jobs;
  req.as_array = true;
  return req;
}

std::string log_path(const std::string& log_dir, const std::string& element_id) {
  return (fs::path(log_dir) / (element_id + ".out")).string();
}

}  // namespace

slurm::Resources slurm_resources(const Node& cfg) {
  slurm::Resources r;
  r.nodes = int_key(cfg, "nodes", r.nodes);
  Node nproc = config::get_or_default(cfg, "launcher.nproc");
  r.ntasks_per_node = int_key(cfg, "ntasks_per_node", nproc.is_int() ? static_cast<int>(nproc.as_int()) : 1);
  r.gpus_per_node = int_key(cfg, "gpus_per_node", r.gpus_per_node);
  r.cpus_per_task = int_key(cfg, "cpus_per_task", r.cpus_per_task);
  r.mem = str_key(cfg, "mem");
  r.time = str_key(cfg, "time");
  r.partition = str_key(cfg, "partition");
  r.account = str_key(cfg, "account");
  r.qos = str_key(cfg, "qos");
  r.constraint = str_key(cfg, "constraint");
  r.job_name = str_key(cfg, "job_name");
  Node extra = key_value(cfg, "extra");
  if (extra.is_map()) {  // {mail-type: END, exclusive: true}
    for (size_t i = 0; i < extra.size(); ++i) {
      const Node& v = extra.items()[i];
      const std::string& k = extra.keys()[i];
      if (v.is_null() || (v.is_bool() && v.as_bool())) r.extra.push_back(k);
      else if (v.is_bool()) continue;
      else if (v.is_scalar()) r.extra.push_back(k + "=" + v.scalar_text());
      else throw Error("slurm.extra." + k + ": expected a scalar value");
    }
  } else if (!extra.is_null()) {
    r.extra = list_key(cfg, "extra");
  }
  r.setup = list_key(cfg, "setup");
  r.srun_args = list_key(cfg, "srun_args");
  r.mpi = str_key(cfg, "mpi");
  r.signal = str_key(cfg, "signal");
  r.signal_seconds = int_key(cfg, "signal_seconds", r.signal_seconds);
  Node rq = key_value(cfg, "requeue");
  if (!rq.is_null()) {
    if (!rq.is_bool()) throw Error("slurm.requeue: expected true or false, got '" + rq.scalar_text() + "'");
    r.requeue = rq.as_bool();
  }
  r.max_requeues = int_key(cfg, "max_requeues", r.max_requeues);
  r.requeue_command = str_key(cfg, "requeue_command");
  r.array_parallelism = int_key(cfg, "array_parallelism", r.array_parallelism);
  slurm::validate(r);
  return r;
}

bool plan_uses_slurm(const SweepPlan& plan) {
  if (plan.jobs.empty()) return false;
  Node cfg = compose_job_config(plan, plan.jobs.front());
  return config::get_or_default(cfg, "launcher.name").scalar_text() == "slurm";
}

std::string slurm_sweep_scripts(const SweepPlan& plan) {
  std::string out;
  for (const auto& g : group_jobs(plan, plan.jobs)) out += slurm::render_script(sweep_request(plan, g), g.resources);
  return out;
}

void update_job_yaml(const std::string& dir, const std::vector<std::pair<std::string, Node>>& values) {
  std::string f = (fs::path(dir) / ".zsad" / "job.yaml").string();
  Node job = fs::exists(f) ? config::load_yaml_file(f) : Node::map();
  for (const auto& [k, v] : values) job.set(k, v);
  fs::create_directories(fs::path(dir) / ".zsad");
  config::write_text_file(f, config::to_yaml(job));
}

int submit_slurm_sweep(const SweepPlan& plan, const std::vector<JobPlan>& all_jobs) {
  std::string sweep_dir = abs(plan.sweep_dir);
  auto records = slurm::read_records(sweep_dir);
  // Jobs submitted before (a --resume) whose SLURM element is still queued are not submitted again.
  std::vector<JobPlan> jobs = all_jobs;
  if (!records.empty()) {
    std::map<int, std::string> last_id;
    for (const auto& rec : records)
      for (int n : rec.jobs) last_id[n] = slurm::element_id(rec, n);
    auto queue = slurm::query_queue();
    jobs.clear();
    for (const auto& j : all_jobs) {
      auto it = last_id.find(j.num);
      if (it != last_id.end() && queue.count(it->second)) {
        std::cout << "[job " << j.num << "] still queued as SLURM job " << it->second << " (" << queue[it->second].state
                  << "); not submitted again" << std::endl;
        continue;
      }
      jobs.push_back(j);
    }
    if (jobs.empty()) {
      std::cout << "nothing to submit" << std::endl;
      return kExitSuccess;
    }
  }
  auto groups = group_jobs(plan, jobs);
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    auto req = sweep_request(plan, groups[gi]);
    fs::create_directories(req.log_dir);
    std::string script_text = slurm::render_script(req, groups[gi].resources);
    std::string script = (fs::path(req.log_dir) / ("submit_" + std::to_string(records.size() + gi) + ".sbatch")).string();
    config::write_text_file(script, script_text);
    std::string id = slurm::submit(script);
    slurm::SubmissionRecord rec;
    rec.job_id = id;
    rec.script = script;
    std::vector<int> nums;
    for (const auto& j : req.jobs) nums.push_back(j.num);
    rec.array = slurm::array_spec(nums, groups[gi].resources.array_parallelism);
    rec.jobs = nums;
    slurm::append_record(sweep_dir, rec);
    for (const auto& j : req.jobs) {
      std::string eid = slurm::element_id(rec, j.num);
      update_job_yaml(j.dir, {{"slurm_job_id", Node(eid)}, {"slurm_log", Node(log_path(req.log_dir, eid))}});
    }
    std::cout << "submitted job array " << id << " (--array=" << rec.array << ", " << nums.size() << " jobs): " << script
              << std::endl;
  }
  std::cout << "watch: zsad status " << plan.sweep_dir << std::endl;
  return kExitSuccess;
}

int submit_slurm_run(const std::string& dir_in, const Node& resolved, const std::vector<std::string>& overrides,
                     const GroupChoices& choices) {
  std::string dir = abs(dir_in);
  slurm::Resources r = slurm_resources(resolved);
  write_job_files(dir, resolved, overrides, -1, job_state_name(JobState::kPending), choices);
  slurm::ScriptRequest req;
  req.experiment = config::get_or_default(resolved, "experiment").scalar_text();
  req.zsad_binary = zsad_binary_of(resolved);
  req.log_dir = (fs::path(dir) / ".slurm").string();
  req.jobs.push_back(slurm::JobSpec{-1, dir, (fs::path(dir) / ".zsad" / "config.yaml").string(), overrides});
  fs::create_directories(req.log_dir);
  auto records = slurm::read_records(dir);
  std::string script = (fs::path(req.log_dir) / ("submit_" + std::to_string(records.size()) + ".sbatch")).string();
  config::write_text_file(script, slurm::render_script(req, r));
  std::string id = slurm::submit(script);
  slurm::SubmissionRecord rec;
  rec.job_id = id;
  rec.script = script;
  rec.jobs = {-1};
  slurm::append_record(dir, rec);
  update_job_yaml(dir, {{"slurm_job_id", Node(id)}, {"slurm_log", Node(log_path(req.log_dir, id))}});
  std::cout << "submitted batch job " << id << ": " << script << "\nwatch: zsad status " << dir_in << std::endl;
  return kExitSuccess;
}

void register_slurm_sweep_launcher() { sweep_launcher_registry()["slurm"] = submit_slurm_sweep; }

}  // namespace zsad::launch
