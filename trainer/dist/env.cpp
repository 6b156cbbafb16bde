#include "trainer/dist/env.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/error.h"
#include "common/fnv1a.h"

extern char** environ;

namespace zsad::dist {

const char* launcher_name(Launcher l) {
  switch (l) {
    case Launcher::kSingle: return "single";
    case Launcher::kTorchrun: return "torchrun";
    case Launcher::kSlurm: return "slurm";
    case Launcher::kOpenMpi: return "openmpi";
    case Launcher::kExplicit: return "explicit";
  }
  return "unknown";
}

EnvMap process_env() {
  EnvMap env;
  for (char** e = environ; e && *e; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq) env.emplace(std::string(*e, eq - *e), std::string(eq + 1));
  }
  return env;
}

namespace {

const std::string* find(const EnvMap& env, const std::string& key) {
  auto it = env.find(key);
  if (it == env.end() || it->second.empty()) return nullptr;
  return &it->second;
}

int to_int(const std::string& key, const std::string& value) {
  errno = 0;
  char* end = nullptr;
  long v = std::strtol(value.c_str(), &end, 10);
  if (errno != 0 || end == value.c_str() || *end != '\0' || v < 0 || v > 1 << 30) {
    throw Error("environment variable " + key + "='" + value + "': expected a non-negative integer");
  }
  return static_cast<int>(v);
}

int int_or(const EnvMap& env, const std::string& key, int fallback) {
  const std::string* v = find(env, key);
  return v ? to_int(key, *v) : fallback;
}

// Splits "a1,b[2-3],c" at the commas that are outside brackets.
std::vector<std::string> split_top_level(const std::string& s, const std::string& whole) {
  std::vector<std::string> parts;
  std::string cur;
  int depth = 0;
  for (char c : s) {
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (depth < 0) throw Error("SLURM nodelist '" + whole + "': unbalanced ']'");
    if (c == ',' && depth == 0) {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (depth != 0) throw Error("SLURM nodelist '" + whole + "': unbalanced '['");
  parts.push_back(cur);
  return parts;
}

std::string pad(long v, size_t width) {
  std::string s = std::to_string(v);
  if (s.size() < width) s.insert(0, width - s.size(), '0');
  return s;
}

// Values of one bracket body "01-04,07" as strings (padding from each range's start).
std::vector<std::string> expand_range_list(const std::string& body, const std::string& whole) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= body.size()) {
    size_t comma = body.find(',', pos);
    std::string item = body.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (item.empty()) throw Error("SLURM nodelist '" + whole + "': empty range item");
    size_t dash = item.find('-');
    if (dash == std::string::npos) {
      out.push_back(item);
    } else {
      std::string a = item.substr(0, dash), b = item.substr(dash + 1);
      if (a.empty() || b.empty() || a.find_first_not_of("0123456789") != std::string::npos ||
          b.find_first_not_of("0123456789") != std::string::npos) {
        throw Error("SLURM nodelist '" + whole + "': range '" + item + "' is not <digits>-<digits>");
      }
      long lo = std::stol(a), hi = std::stol(b);
      if (hi < lo) throw Error("SLURM nodelist '" + whole + "': reversed range '" + item + "'");
      for (long v = lo; v <= hi; ++v) out.push_back(pad(v, a.size()));
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

// One top-level element such as "rack[1-2]-node[01-02]": cartesian product of its bracket groups.
std::vector<std::string> expand_element(const std::string& elem, const std::string& whole) {
  std::vector<std::string> acc{""};
  size_t pos = 0;
  while (pos < elem.size()) {
    size_t open = elem.find('[', pos);
    std::string literal = elem.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    for (auto& a : acc) a += literal;
    if (open == std::string::npos) break;
    size_t close = elem.find(']', open);
    if (close == std::string::npos) throw Error("SLURM nodelist '" + whole + "': unbalanced '['");
    std::vector<std::string> vals = expand_range_list(elem.substr(open + 1, close - open - 1), whole);
    std::vector<std::string> next;
    next.reserve(acc.size() * vals.size());
    for (const auto& a : acc)
      for (const auto& v : vals) next.push_back(a + v);
    acc = std::move(next);
    pos = close + 1;
  }
  return acc;
}

}  // namespace

std::vector<std::string> expand_nodelist(const std::string& nodelist) {
  std::vector<std::string> hosts;
  if (nodelist.empty()) return hosts;
  for (const auto& elem : split_top_level(nodelist, nodelist)) {
    if (elem.empty()) throw Error("SLURM nodelist '" + nodelist + "': empty host name");
    for (auto& h : expand_element(elem, nodelist)) hosts.push_back(std::move(h));
  }
  return hosts;
}

std::string first_host(const std::string& nodelist) {
  if (nodelist.empty()) throw Error("SLURM nodelist is empty: expected at least one host");
  std::string first = split_top_level(nodelist, nodelist).front();
  if (first.empty()) throw Error("SLURM nodelist '" + nodelist + "': empty host name");
  // Only the first value of every bracket group matters.
  std::string out;
  size_t pos = 0;
  while (pos < first.size()) {
    size_t open = first.find('[', pos);
    out += first.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    if (open == std::string::npos) break;
    size_t close = first.find(']', open);
    if (close == std::string::npos) throw Error("SLURM nodelist '" + nodelist + "': unbalanced '['");
    out += expand_range_list(first.substr(open + 1, close - open - 1), nodelist).front();
    pos = close + 1;
  }
  return out;
}

int port_from_job_id(const std::string& job_id) {
  // FNV-1a over the id's text: array jobs ("123_4") and plain ids hash alike, and the value
  // does not depend on the platform's std::hash.
  return 20000 + static_cast<int>(fnv1a64(job_id) % 40000);
}

int cuda_device_for(int local_rank, int visible_devices) {
  if (visible_devices <= 0) return -1;
  return local_rank % visible_devices;
}

DistEnv detect_env(const EnvMap& env, const DistOverrides& o) {
  DistEnv d;
  if (find(env, "RANK") && find(env, "WORLD_SIZE")) {
    d.launcher = Launcher::kTorchrun;
    d.rank = int_or(env, "RANK", 0);
    d.world_size = int_or(env, "WORLD_SIZE", 1);
    // Users launching torchrun-style under SLURM often lack LOCAL_RANK (lightning-pose#220).
    d.local_rank = int_or(env, "LOCAL_RANK", int_or(env, "SLURM_LOCALID", 0));
    if (const auto* a = find(env, "MASTER_ADDR")) d.master_addr = *a;
    d.master_port = int_or(env, "MASTER_PORT", d.master_port);
  } else if (find(env, "SLURM_PROCID") && find(env, "SLURM_NTASKS") &&
             (find(env, "SLURM_STEP_ID") || find(env, "SLURM_STEPID")) &&
             int_or(env, "OMPI_COMM_WORLD_SIZE", 1) <= 1) {
    // Only a task of a job step (srun) is a SLURM rank. An sbatch script's batch shell carries
    // SLURM_PROCID=0 and the allocation's SLURM_NTASKS too, and so does every process that
    // `mpirun` starts from it; there the OpenMPI variables (or a single process) apply. Across
    // nodes, mpirun starts its daemons in a job step of one task per node and its processes
    // inherit that step's variables, so an OpenMPI world of more than one process wins.
    d.launcher = Launcher::kSlurm;
    d.rank = int_or(env, "SLURM_PROCID", 0);
    // The step's own task count: `srun --preserve-env` keeps the allocation's SLURM_NTASKS.
    d.world_size = int_or(env, "SLURM_STEP_NUM_TASKS", int_or(env, "SLURM_NTASKS", 1));
    d.local_rank = int_or(env, "SLURM_LOCALID", 0);
    if (const auto* a = find(env, "MASTER_ADDR")) {
      d.master_addr = *a;
    } else if (const auto* sn = find(env, "SLURM_STEP_NODELIST")) {
      d.master_addr = first_host(*sn);  // a step may run on a subset of the job's nodes; its rank 0 is on the first
    } else if (const auto* nl = find(env, "SLURM_JOB_NODELIST")) {
      d.master_addr = first_host(*nl);
    } else if (const auto* nl2 = find(env, "SLURM_NODELIST")) {
      d.master_addr = first_host(*nl2);
    }
    if (find(env, "MASTER_PORT")) {
      d.master_port = int_or(env, "MASTER_PORT", d.master_port);
    } else if (const auto* id = find(env, "SLURM_JOB_ID")) {
      // Keyed by job and step, so that steps running at once in one allocation get different ports.
      const auto* step = find(env, "SLURM_STEP_ID");
      d.master_port = port_from_job_id(*id + "." + *(step ? step : find(env, "SLURM_STEPID")));
    }
  } else if (find(env, "OMPI_COMM_WORLD_RANK") && find(env, "OMPI_COMM_WORLD_SIZE")) {
    d.launcher = Launcher::kOpenMpi;
    d.rank = int_or(env, "OMPI_COMM_WORLD_RANK", 0);
    d.world_size = int_or(env, "OMPI_COMM_WORLD_SIZE", 1);
    d.local_rank = int_or(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0);
    if (const auto* a = find(env, "MASTER_ADDR")) d.master_addr = *a;
    d.master_port = int_or(env, "MASTER_PORT", d.master_port);
  }
  bool any_override = o.rank || o.world_size || o.local_rank || o.master_addr || o.master_port;
  if (o.rank) d.rank = *o.rank;
  if (o.world_size) d.world_size = *o.world_size;
  if (o.local_rank) d.local_rank = *o.local_rank;
  if (o.master_addr) d.master_addr = *o.master_addr;
  if (o.master_port) d.master_port = *o.master_port;
  if (any_override && d.launcher == Launcher::kSingle) d.launcher = Launcher::kExplicit;
  if (d.world_size < 1) throw Error("world size " + std::to_string(d.world_size) + ": expected >= 1");
  if (d.rank >= d.world_size) {
    throw Error("rank " + std::to_string(d.rank) + " is not below world size " + std::to_string(d.world_size) +
                " (launcher " + launcher_name(d.launcher) + ")");
  }
  if (d.master_port <= 0 || d.master_port > 65535) {
    throw Error("master port " + std::to_string(d.master_port) + ": expected 1..65535");
  }
  return d;
}

}  // namespace zsad::dist
