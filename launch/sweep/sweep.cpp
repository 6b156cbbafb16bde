#include "launch/sweep/sweep.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>

#include "common/error.h"
#include "common/exit_codes.h"
#include "launch/config/compose.h"
#include "launch/config/yaml_io.h"
#include "launch/jobs/dir_lock.h"
#include "launch/local/launcher.h"
#include "launch/local/process.h"
#include "launch/overrides/override.h"

namespace zsad::launch {

namespace fs = std::filesystem;
using config::Node;
using overrides::Override;

namespace {

std::string identity(const Override& o) {
  std::string k = o.key;
  if (!k.empty() && k[0] == '/') k = k.substr(1);
  return k + (o.package.empty() ? "" : "@" + o.package);
}

SweepParam to_param(const Override& o, const std::string& config_root) {
  SweepParam p;
  p.key = identity(o);
  if (o.value_type == overrides::ValueType::kNone) {
    p.overrides.push_back(o.key_element());
    return p;
  }
  std::vector<std::string> options;
  if (o.value_type == overrides::ValueType::kGlob) {
    if (!config::is_config_group(config_root, o.key))
      throw Error("override '" + o.input + "': glob() selects options of a config group, and '" + o.key +
                  "' is not a folder under " + config_root);
    options = config::group_options(config_root, o.key[0] == '/' ? o.key.substr(1) : o.key);
  }
  auto values = o.sweep_values(options);
  if (values.empty()) throw Error("override '" + o.input + "' selects no values");
  for (const auto& v : values) p.overrides.push_back(overrides::render_override(o, &v));
  return p;
}

std::string strftime_local(std::time_t t, const char* fmt) {
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, fmt, &tm);
  return std::string(buf, n);
}

Node string_list(const std::vector<std::string>& v) {
  Node l = Node::list();
  for (const auto& s : v) l.push_back(Node(s));
  return l;
}

std::vector<std::string> strings_of(const Node& n, const std::string& what) {
  std::vector<std::string> out;
  if (n.is_null()) return out;
  if (!n.is_list()) throw Error(n.mark().str() + ": " + what + " must be a list");
  for (const auto& e : n.items()) out.push_back(e.scalar_text());
  return out;
}

}  // namespace

std::vector<SweepParam> sweep_params(const Node* sweep_block, const std::vector<std::string>& cli,
                                     const std::string& config_root) {
  std::vector<SweepParam> params;
  auto put = [&](SweepParam p) {
    for (auto& q : params) {
      if (q.key == p.key) {
        q = std::move(p);  // replaces in place, keeps the position
        return;
      }
    }
    params.push_back(std::move(p));
  };
  if (sweep_block && !sweep_block->is_null()) {
    if (!sweep_block->is_map())
      throw Error(sweep_block->mark().str() + ": 'sweep' must map keys to sweep expressions, e.g. 'trainer.lr: 1e-3,1e-2'");
    for (size_t i = 0; i < sweep_block->size(); ++i) {
      const std::string& key = sweep_block->keys()[i];
      const Node& v = sweep_block->items()[i];
      std::string text;
      if (v.is_list()) {  // YAML list = choice over its elements
        text = key + "=choice(";
        for (size_t j = 0; j < v.size(); ++j) text += (j ? "," : "") + overrides::render_value(v[j]);
        text += ")";
      } else if (v.is_string()) {
        text = key + "=" + v.as_string();
      } else if (v.is_scalar()) {
        text = key + "=" + overrides::render_value(v);
      } else {
        throw Error(v.mark().str() + ": sweep." + key + " must be a sweep expression string or a list of values");
      }
      Override o;
      try {
        o = overrides::parse_override(text);
      } catch (const Error& e) {
        throw Error(v.mark().str() + ": in sweep block: " + e.what());
      }
      put(to_param(o, config_root));
    }
  }
  for (const auto& text : cli) put(to_param(overrides::parse_override(text), config_root));
  return params;
}

std::vector<std::vector<std::string>> cartesian(const std::vector<SweepParam>& params) {
  std::vector<std::vector<std::string>> out{{}};
  for (const auto& p : params) {
    std::vector<std::vector<std::string>> next;
    next.reserve(out.size() * p.overrides.size());
    for (const auto& prefix : out) {
      for (const auto& v : p.overrides) {
        auto row = prefix;
        row.push_back(v);
        next.push_back(std::move(row));
      }
    }
    out = std::move(next);
  }
  return out;
}

std::string timestamped_dir(const std::string& root, const std::string& kind, const std::string& name,
                            std::time_t now) {
  return (fs::path(root) / kind / name / strftime_local(now, "%Y-%m-%d") / strftime_local(now, "%H-%M-%S"))
      .lexically_normal()
      .string();
}

std::string override_dirname(const std::vector<std::string>& ovs, const std::vector<std::string>& exclude) {
  std::vector<std::string> kept;
  for (const auto& s : ovs) {
    std::string key = s.substr(0, s.find('='));
    while (!key.empty() && (key[0] == '+' || key[0] == '~')) key = key.substr(1);
    if (std::find(exclude.begin(), exclude.end(), key) != exclude.end()) continue;
    kept.push_back(s);
  }
  std::sort(kept.begin(), kept.end());
  std::string out;
  for (size_t i = 0; i < kept.size(); ++i) out += (i ? "," : "") + kept[i];
  return out;
}

SweepPlan plan_sweep(const std::string& experiment, const std::vector<std::string>& cli, std::time_t now) {
  SweepPlan plan;
  plan.cli_overrides = cli;
  // Base composition: the command line's non-sweep overrides apply (they may set output.root).
  std::vector<std::string> fixed;
  for (const auto& t : cli) {
    Override o = overrides::parse_override(t);
    if (!o.is_sweep()) fixed.push_back(t);
  }
  config::ComposeRequest req;
  req.experiment = experiment;
  req.overrides = fixed;
  req.validate = false;
  req.keep_sweep_block = true;
  config::Composed base = config::compose(req);
  plan.experiment_file = base.experiment_file;
  plan.config_root = base.config_root;
  plan.name = base.name;
  plan.base_config = base.config;
  auto params = sweep_params(base.config.find("sweep"), cli, base.config_root);
  Node root = config::get_or_default(base.config, "output.root");
  plan.sweep_dir = timestamped_dir(root.is_string() ? root.as_string() : ".", "multirun", plan.name, now);
  auto rows = cartesian(params);
  for (size_t i = 0; i < rows.size(); ++i) {
    JobPlan j;
    j.num = static_cast<int>(i);
    j.overrides = rows[i];
    j.dir = (fs::path(plan.sweep_dir) / std::to_string(i)).string();
    plan.jobs.push_back(std::move(j));
  }
  // Every job's config must compose and validate before anything is created or submitted, so a
  // typo fails the sweep up front instead of failing every job.
  for (const auto& j : plan.jobs) {
    config::ComposeRequest jr;
    jr.experiment = plan.experiment_file;
    jr.overrides = j.overrides;
    try {
      check_job_config(config::compose(jr).config);
    } catch (const UsageError&) {
      throw;
    } catch (const Error& e) {
      std::string ovs;
      for (const auto& o : j.overrides) ovs += (ovs.empty() ? "" : " ") + o;
      throw Error("job " + std::to_string(j.num) + " (" + ovs + "): " + e.what());
    }
  }
  return plan;
}

SweepPlan load_sweep_plan(const std::string& sweep_dir) {
  std::string f = (fs::path(sweep_dir) / "multirun.yaml").string();
  if (!fs::exists(f)) throw Error("--resume " + sweep_dir + ": no multirun.yaml there (not a sweep directory)");
  Node m = config::load_yaml_file(f);
  SweepPlan plan;
  plan.sweep_dir = fs::path(sweep_dir).lexically_normal().string();
  plan.experiment_file = m.at("experiment_file").as_string();
  plan.config_root = m.at("config_root").as_string();
  plan.name = m.at("experiment").as_string();
  plan.cli_overrides = strings_of(m.at("overrides"), "overrides");
  if (const Node* c = m.find("config")) plan.base_config = *c;
  for (const auto& j : m.at("jobs").items()) {
    JobPlan jp;
    jp.num = static_cast<int>(j.at("num").as_int());
    jp.overrides = strings_of(j.at("overrides"), "jobs.overrides");
    jp.dir = (fs::path(plan.sweep_dir) / std::to_string(jp.num)).string();
    plan.jobs.push_back(std::move(jp));
  }
  return plan;
}

namespace {

// The text of .zsad/config.yaml: literal "${" escaped, so that `zsad job` composes it unchanged.
std::string config_record_text(const Node& resolved) {
  config::EmitOptions eo;
  eo.escape_interpolation = true;
  return config::to_yaml(resolved, eo);
}

// .zsad/config.yaml and .zsad/overrides.yaml: what ran, and the overrides that made it.
void write_config_record(const std::string& dir, const Node& resolved, const std::vector<std::string>& ovs) {
  fs::create_directories(fs::path(dir) / ".zsad");
  config::write_text_file((fs::path(dir) / ".zsad" / "config.yaml").string(), config_record_text(resolved));
  config::write_text_file((fs::path(dir) / ".zsad" / "overrides.yaml").string(), config::to_yaml(string_list(ovs)));
}

}  // namespace

void require_same_config_if_reused(const std::string& dir, const Node& resolved, bool check_contents) {
  // A run's results, checkpoints and logs must not land over another run's outputs that carry no
  // record of what made them (a sweep's top level, a copied or damaged run).
  std::error_code ec;
  if (check_contents && fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw Error("--run-dir '" + dir + "' exists and is not a directory");
  if (check_contents && fs::exists(fs::path(dir) / "multirun.yaml", ec))
    throw Error("--run-dir '" + dir + "' is a sweep directory (multirun.yaml); pass a new directory (a sweep " +
                "continues with zsad sweep --resume " + dir + ")");
  if (check_contents && fs::is_directory(dir, ec) && !fs::exists(fs::path(dir) / ".zsad", ec)) {
    for (const char* output : {"results", "checkpoints", "eval", "scores", "panels", "logs", "run.log", "metrics.jsonl",
                               "outputs", "multirun"})
      if (fs::exists(fs::path(dir) / output, ec))
        throw Error("--run-dir '" + dir + "' holds " + output + " but no zsad run record (.zsad/); pass a new " +
                    "directory (its outputs would be overwritten)");
  }
  const fs::path existing = fs::path(dir) / ".zsad" / "config.yaml";
  if (!fs::exists(existing) || config::read_text_file(existing.string()) == config_record_text(resolved)) return;
  try {
    config::load_yaml_file(existing.string());
  } catch (const Error& e) {
    throw Error("--run-dir '" + dir + "': its run record is damaged (" + e.what() +
                "); pass a new directory, or repair or remove " + existing.string());
  }
  throw Error(existing.string() + ": --run-dir '" + dir +
              "' already holds a run with a different config; pass a new directory (the same config "
              "continues that run)");
}

std::string make_run_dir(const Node& resolved, const std::string& name, const std::string& requested,
                         bool check_contents) {
  std::string dir = requested;
  if (!dir.empty()) {
    require_same_config_if_reused(dir, resolved, check_contents);
  } else {
    const Node root = config::get_or_default(resolved, "output.root");
    const std::string base =
        timestamped_dir(root.is_string() ? root.as_string() : ".", "outputs", name, std::time(nullptr));
    dir = base;
    for (int i = 1; fs::exists(dir); ++i) dir = base + "_" + std::to_string(i);
  }
  fs::create_directories(dir);
  return dir;
}

int run_as_launched_rank(const std::string& dir, const Node& resolved, const std::vector<std::string>& ovs,
                         const LaunchedRank& r, const JobRunner& runner) {
  std::optional<DirLock> lock;  // rank 0 stands for the group
  if (r.rank == 0) {
    lock.emplace(dir, kRunDirLock, "run directory");
    write_config_record(dir, resolved, ovs);
  }
  JobContext job{resolved, (fs::path(dir) / ".zsad" / "config.yaml").string(), dir, -1, r.rank, r.world_size};
  return runner(job);
}

void write_job_files(const std::string& dir, const Node& resolved, const std::vector<std::string>& ovs, int num,
                     const std::string& status, const GroupChoices& choices) {
  write_config_record(dir, resolved, ovs);
  Node job = Node::map();
  if (num >= 0) job.set("num", Node(num));
  else job.set("num", Node());
  job.set("overrides", string_list(ovs));
  job.set("override_dirname", Node(override_dirname(ovs)));
  Node ch = Node::map();
  for (const auto& [g, o] : choices) ch.set(g, Node(o));
  job.set("choices", ch);
  job.set("status", Node(status));
  job.set("exit_code", Node());
  job.set("log", Node((fs::path(dir) / "run.log").string()));
  config::write_text_file((fs::path(dir) / ".zsad" / "job.yaml").string(), config::to_yaml(job));
}

void set_job_status(const std::string& dir, const std::string& status, int exit_code) {
  std::string f = (fs::path(dir) / ".zsad" / "job.yaml").string();
  Node job = fs::exists(f) ? config::load_yaml_file(f) : Node::map();
  job.set("status", Node(status));
  job.set("exit_code", exit_code < 0 ? Node() : Node(exit_code));
  config::write_text_file(f, config::to_yaml(job));
}

std::string read_job_status(const std::string& dir) {
  std::string f = (fs::path(dir) / ".zsad" / "job.yaml").string();
  if (!fs::exists(f)) return "";
  try {
    Node job = config::load_yaml_file(f);
    const Node* s = job.find("status");
    return s && s->is_string() ? s->as_string() : "";
  } catch (const Error&) {
    return "";
  }
}

namespace {

int64_t launcher_nproc(const Node& cfg) {
  Node nproc_n = config::get_or_default(cfg, "launcher.nproc");
  int64_t nproc = nproc_n.is_int() ? nproc_n.as_int() : 1;
  if (nproc < 1) throw Error("launcher.nproc must be >= 1, got " + std::to_string(nproc));
  return nproc;
}

}  // namespace

std::vector<std::string> job_command(const Node& cfg, const std::string& config_path, const std::string& zsad) {
  std::string name = config::get_or_default(cfg, "launcher.name").scalar_text();
  const int64_t nproc = launcher_nproc(cfg);
  std::vector<std::string> job{zsad, "job", config_path};
  if (name == "local") {
    if (nproc == 1) return job;
    std::vector<std::string> cmd{zsad, "launch", "-n", std::to_string(nproc)};
    Node port = config::get_or_default(cfg, "launcher.master_port");
    if (port.is_int()) {
      cmd.push_back("--master-port");
      cmd.push_back(std::to_string(port.as_int()));
    }
    cmd.push_back("--");
    cmd.insert(cmd.end(), job.begin(), job.end());
    return cmd;
  }
  if (name == "mpirun") {
    return mpirun_command(static_cast<int>(nproc), job, strings_of(config::get_or_default(cfg, "launcher.mpirun_args"), "launcher.mpirun_args"));
  }
  throw Error("launcher.name '" + name + "' cannot run a job locally (local, mpirun)");
}

namespace {

struct Running {
  JobPlan job;
  pid_t pid = -1;
  int log_fd = -1;
  int pipe_out = -1, pipe_err = -1;  // tee mode
};

void tee_copy(int from, int to_terminal, int log_fd, bool& open) {
  char buf[8192];
  ssize_t n = read(from, buf, sizeof buf);
  if (n > 0) {
    (void)!write(to_terminal, buf, static_cast<size_t>(n));
    (void)!write(log_fd, buf, static_cast<size_t>(n));
  } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
    open = false;
  }
}

// jobs_at_once: how many jobs (with their ranks) share the machine while this one runs.
Running start_job(const JobPlan& job, const Node& resolved, const std::string& sweep_dir, const RunOptions& opts,
                  int64_t jobs_at_once = 1) {
  Running r;
  r.job = job;
  std::string cfg_path = (fs::path(job.dir) / ".zsad" / "config.yaml").string();
  std::string zsad = opts.zsad_binary.empty() ? self_executable() : opts.zsad_binary;
  SpawnOptions so;
  so.argv = job_command(resolved, cfg_path, zsad);
  so.env = {{"ZSAD_JOB_DIR", fs::absolute(job.dir).string()}};
  if (job.num >= 0) so.env.emplace_back("ZSAD_JOB_NUM", std::to_string(job.num));
  if (!sweep_dir.empty()) so.env.emplace_back("ZSAD_SWEEP_DIR", fs::absolute(sweep_dir).string());
  // run_single holds the run directory's lock itself: the job's rank 0 must not take it again.
  else so.env.emplace_back(kRunDirLockedEnv, fs::absolute(job.dir).lexically_normal().string());
  // The jobs running at once and their ranks share this machine's cores (the launchers keep a
  // value that is already set), unless the user chose.
  if (!std::getenv("OMP_NUM_THREADS")) {
    so.env.emplace_back("OMP_NUM_THREADS",
                        std::to_string(omp_threads_for(std::max<int64_t>(1, jobs_at_once) * launcher_nproc(resolved))));
  }
  std::string log = (fs::path(job.dir) / "run.log").string();
  r.log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (r.log_fd < 0) throw Error(log + ": cannot open for writing: " + std::strerror(errno));
  if (opts.tee) {
    int po[2], pe[2];
    if (pipe(po) != 0 || pipe(pe) != 0) throw Error("pipe failed");
    fcntl(po[0], F_SETFD, FD_CLOEXEC);
    fcntl(pe[0], F_SETFD, FD_CLOEXEC);
    so.stdout_fd = po[1];
    so.stderr_fd = pe[1];
    r.pid = spawn(so);
    close(po[1]);
    close(pe[1]);
    r.pipe_out = po[0];
    r.pipe_err = pe[0];
  } else {
    so.stdout_fd = r.log_fd;
    so.stderr_fd = r.log_fd;
    r.pid = spawn(so);
  }
  set_job_status(job.dir, job_state_name(JobState::kRunning), -1);
  return r;
}

// Composes a job's config; on failure writes the error to its run.log and returns false.
bool compose_job(const SweepPlan& plan, const JobPlan& job, Node& out, std::string& error,
                 GroupChoices* choices = nullptr) {
  try {
    config::ComposeRequest req;
    req.experiment = plan.experiment_file;
    req.overrides = job.overrides;
    config::Composed c = config::compose(req);
    out = std::move(c.config);
    if (choices) *choices = std::move(c.choices);
    return true;
  } catch (const std::exception& e) {
    error = e.what();
    return false;
  }
}

}  // namespace

int run_single(const std::string& dir, const Node& resolved, const std::vector<std::string>& ovs,
               const RunOptions& opts, const GroupChoices& choices) {
  const DirLock lock(dir, kRunDirLock, "run directory");  // before job.yaml: a running job's record stays
  write_job_files(dir, resolved, ovs, -1, job_state_name(JobState::kPending), choices);
  SignalWatcher signals;
  JobPlan jp;
  jp.num = -1;
  jp.overrides = ovs;
  jp.dir = dir;
  RunOptions o = opts;
  Running r = start_job(jp, resolved, "", o);
  int forwarded = 0;
  bool out_open = r.pipe_out >= 0, err_open = r.pipe_err >= 0;
  int status = 0;
  bool done = false;
  std::chrono::steady_clock::time_point drain_until{};
  while (!done || out_open || err_open) {
    if (done) {  // the job exited; whatever it left running may not hold us (see run_local)
      if (drain_until == std::chrono::steady_clock::time_point{})
        drain_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
      if (std::chrono::steady_clock::now() > drain_until) break;
    }
    std::vector<pollfd> p{{signals.fd(), POLLIN, 0}};
    if (out_open) p.push_back({r.pipe_out, POLLIN, 0});
    if (err_open) p.push_back({r.pipe_err, POLLIN, 0});
    poll(p.data(), p.size(), 50);
    if (p[0].revents & POLLIN) {
      for (int sig : signals.take()) {
        if (sig != SIGUSR2) forwarded = sig;
        signal_process_tree(r.pid, sig);
      }
    }
    for (size_t i = 1; i < p.size(); ++i) {
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (p[i].fd == r.pipe_out) tee_copy(r.pipe_out, 1, r.log_fd, out_open);
      else tee_copy(r.pipe_err, 2, r.log_fd, err_open);
    }
    if (!done && waitpid(r.pid, &status, WNOHANG) == r.pid) done = true;
  }
  if (r.pipe_out >= 0) close(r.pipe_out);
  if (r.pipe_err >= 0) close(r.pipe_err);
  close(r.log_fd);
  int code = decode_wait_status(status);
  JobState st = code == 0                                    ? JobState::kCompleted
                : (forwarded || code == kExitStoppedResumable) ? JobState::kStopped
                                                               : JobState::kFailed;
  set_job_status(dir, job_state_name(st), code);
  if (!opts.quiet && st != JobState::kCompleted)
    std::cerr << "zsad: job " << job_state_name(st) << " (exit " << code << "); log: " << (fs::path(dir) / "run.log").string()
              << "\n";
  return code;
}

int run_sweep(const SweepPlan& plan, bool resume, const RunOptions& opts) {
  const DirLock lock(plan.sweep_dir, kSweepDirLock, "sweep directory");
  if (!resume) {
    fs::create_directories(plan.sweep_dir);
    Node m = Node::map();
    m.set("experiment", Node(plan.name));
    m.set("experiment_file", Node(plan.experiment_file));
    m.set("config_root", Node(plan.config_root));
    m.set("overrides", string_list(plan.cli_overrides));
    Node jobs = Node::list();
    for (const auto& j : plan.jobs) {
      Node e = Node::map();
      e.set("num", Node(j.num));
      e.set("overrides", string_list(j.overrides));
      jobs.push_back(e);
    }
    m.set("jobs", jobs);
    m.set("config", plan.base_config);
    config::write_text_file((fs::path(plan.sweep_dir) / "multirun.yaml").string(), config::to_yaml(m));
  }
  std::vector<JobPlan> todo;
  int skipped = 0;
  for (const auto& j : plan.jobs) {
    if (resume && read_job_status(j.dir) == job_state_name(JobState::kCompleted)) {
      ++skipped;
      continue;
    }
    todo.push_back(j);
  }
  if (!opts.quiet) {
    std::cout << "sweep " << plan.sweep_dir << ": " << plan.jobs.size() << " jobs";
    if (resume) std::cout << ", " << skipped << " already completed, " << todo.size() << " to run";
    std::cout << std::endl;
  }

  // A non-local launcher (slurm) takes the whole batch.
  if (!todo.empty()) {
    Node first;
    std::string err;
    if (compose_job(plan, todo[0], first, err)) {
      std::string lname = config::get_or_default(first, "launcher.name").scalar_text();
      if (lname != "local" && lname != "mpirun") {
        auto& reg = sweep_launcher_registry();
        auto it = reg.find(lname);
        if (it == reg.end()) throw Error("launcher '" + lname + "' has no sweep launcher registered in this build");
        for (const auto& j : todo) {
          Node cfg;
          GroupChoices choices;
          if (!compose_job(plan, j, cfg, err, &choices)) throw Error("job " + std::to_string(j.num) + ": " + err);
          write_job_files(j.dir, cfg, j.overrides, j.num, job_state_name(JobState::kPending), choices);
        }
        return it->second(plan, todo);
      }
    }
  }

  SignalWatcher signals;
  int parallel = std::max(1, opts.parallel);
  std::vector<Running> running;
  size_t next = 0;
  int stopped_by = 0;
  std::vector<std::pair<int, std::string>> failed;
  std::vector<int> busy;  // jobs whose directory another process holds
  int completed = 0, stopped = 0;
  auto finish = [&](const JobPlan& j, int code) {
    JobState st = code == 0                                     ? JobState::kCompleted
                  : (stopped_by || code == kExitStoppedResumable) ? JobState::kStopped
                                                                  : JobState::kFailed;
    set_job_status(j.dir, job_state_name(st), code);
    std::string log = (fs::path(j.dir) / "run.log").string();
    if (st == JobState::kCompleted) ++completed;
    if (st == JobState::kStopped) ++stopped;
    if (st == JobState::kFailed) failed.emplace_back(j.num, log);
    if (!opts.quiet) {
      std::cout << "[job " << j.num << "] " << job_state_name(st);
      if (st != JobState::kCompleted) std::cout << " (exit " << code << "), log: " << log;
      std::cout << std::endl;
    }
  };
  while (true) {
    while (!stopped_by && next < todo.size() && static_cast<int>(running.size()) < parallel) {
      const JobPlan& j = todo[next++];
      // Still running from an earlier driver (one killed with SIGKILL leaves its jobs behind):
      // neither start it again nor touch its record; a later --resume picks it up.
      if (const std::string holder = dir_lock_holder(j.dir, kRunDirLock); !holder.empty()) {
        busy.push_back(j.num);
        if (!opts.quiet) std::cout << "[job " << j.num << "] still running (" << holder << "); not started" << std::endl;
        continue;
      }
      Node cfg;
      std::string err;
      GroupChoices choices;
      fs::create_directories(j.dir);
      if (!opts.quiet) {
        std::cout << "[job " << j.num << "] :";
        for (const auto& o : j.overrides) std::cout << " " << o;
        std::cout << std::endl;
      }
      if (!compose_job(plan, j, cfg, err, &choices)) {
        fs::create_directories(fs::path(j.dir) / ".zsad");
        std::string log = (fs::path(j.dir) / "run.log").string();
        config::write_text_file(log, "zsad: config error: " + err + "\n");
        Node job = Node::map();
        job.set("num", Node(j.num));
        job.set("overrides", string_list(j.overrides));
        job.set("override_dirname", Node(override_dirname(j.overrides)));
        config::write_text_file((fs::path(j.dir) / ".zsad" / "job.yaml").string(), config::to_yaml(job));
        finish(j, kExitError);
        continue;
      }
      write_job_files(j.dir, cfg, j.overrides, j.num, job_state_name(JobState::kPending), choices);
      if (opts.in_process) {
        set_job_status(j.dir, job_state_name(JobState::kRunning), -1);
        std::string cfg_path = (fs::path(j.dir) / ".zsad" / "config.yaml").string();
        int code;
        try {
          code = opts.in_process(JobContext{cfg, cfg_path, j.dir, j.num, 0, 1});
        } catch (const std::exception& e) {
          config::write_text_file((fs::path(j.dir) / "run.log").string(), std::string("zsad: error: ") + e.what() + "\n");
          code = kExitError;
        }
        finish(j, code);
        for (int sig : signals.take()) stopped_by = sig;
        continue;
      }
      running.push_back(start_job(j, cfg, plan.sweep_dir, opts, std::min<int64_t>(parallel, todo.size())));
    }
    if (running.empty() && (stopped_by || next >= todo.size())) break;
    pollfd p{signals.fd(), POLLIN, 0};
    poll(&p, 1, 50);
    if (p.revents & POLLIN) {
      // Every signal goes to the running jobs (their launchers escalate a second SIGINT/SIGTERM to
      // SIGKILL); no new job starts after the first one.
      for (int sig : signals.take()) {
        if (!stopped_by && !opts.quiet)
          std::cout << "zsad sweep: signal " << sig << ", stopping running jobs" << std::endl;
        stopped_by = sig;
        for (auto& r : running) signal_process_tree(r.pid, sig);
      }
    }
    for (size_t i = 0; i < running.size();) {
      int status = 0;
      if (waitpid(running[i].pid, &status, WNOHANG) == running[i].pid) {
        close(running[i].log_fd);
        finish(running[i].job, decode_wait_status(status));
        running.erase(running.begin() + static_cast<long>(i));
      } else {
        ++i;
      }
    }
  }
  if (!opts.quiet) {
    std::cout << "sweep " << plan.sweep_dir << ": " << completed + skipped << "/" << plan.jobs.size() << " completed";
    if (!failed.empty()) std::cout << ", " << failed.size() << " failed";
    if (stopped) std::cout << ", " << stopped << " stopped";
    if (stopped_by && next < todo.size()) std::cout << ", " << todo.size() - next << " not started";
    if (!busy.empty()) std::cout << ", " << busy.size() << " still running elsewhere";
    std::cout << std::endl;
  }
  for (const auto& [num, log] : failed) std::cerr << "zsad sweep: job " << num << " failed; log: " << log << "\n";
  if (!failed.empty()) return kExitError;
  if (!busy.empty()) {
    std::cerr << "zsad sweep: " << busy.size() << " job(s) still run under an earlier driver; when they end: "
              << "zsad sweep --resume " << plan.sweep_dir << "\n";
    return kExitError;
  }
  if (stopped_by || stopped) {
    std::cerr << "zsad sweep: stopped; resume with: zsad sweep --resume " << plan.sweep_dir << "\n";
    return kExitStoppedResumable;
  }
  return kExitSuccess;
}

std::map<std::string, SweepLauncher>& sweep_launcher_registry() {
  static std::map<std::string, SweepLauncher> r;
  return r;
}

}  // namespace zsad::launch
