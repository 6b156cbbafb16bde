#include "slurm/sbatch.h"

#include <algorithm>
#include <regex>
#include <set>
#include <sstream>

#include "common/error.h"

namespace zsad::slurm {

namespace {

bool has_space_or_newline(const std::string& s) {
  return s.find_first_of(" \t\r\n") != std::string::npos;
}

void check_word(const std::string& key, const std::string& v) {
  if (has_space_or_newline(v))
    throw Error("slurm." + key + " '" + v + "': expected a single word (no spaces or newlines)");
}

// Directive name of an extra entry: "--mail-type=END" / "mail-type=END" -> "mail-type".
std::string directive_name(const std::string& d) {
  std::string s = d.rfind("--", 0) == 0 ? d.substr(2) : d;
  return s.substr(0, s.find('='));
}

std::string normalize_extra(const std::string& d) { return d.rfind("--", 0) == 0 ? d.substr(2) : d; }

std::string job_name(const ScriptRequest& req, const Resources& r) {
  if (!r.job_name.empty()) return r.job_name;
  return "zsad-" + (req.experiment.empty() ? std::string("job") : req.experiment);
}

bool is_array(const ScriptRequest& req) { return req.as_array || req.jobs.size() > 1; }

}  // namespace

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

void validate(const Resources& r) {
  if (r.nodes < 1) throw Error("slurm.nodes " + std::to_string(r.nodes) + ": expected at least 1");
  if (r.ntasks_per_node < 1)
    throw Error("slurm.ntasks_per_node " + std::to_string(r.ntasks_per_node) + ": expected at least 1");
  if (r.gpus_per_node < 0)
    throw Error("slurm.gpus_per_node " + std::to_string(r.gpus_per_node) + ": expected 0 or more");
  if (r.cpus_per_task < 1)
    throw Error("slurm.cpus_per_task " + std::to_string(r.cpus_per_task) + ": expected at least 1");
  // sbatch --time: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
  // days-hours:minutes, days-hours:minutes:seconds; "UNLIMITED"/"INFINITE" too.
  static const std::regex time_re(R"(^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2}|UNLIMITED|INFINITE|unlimited|infinite)$)");
  if (!r.time.empty() && !std::regex_match(r.time, time_re))
    throw Error("slurm.time '" + r.time +
                "': expected minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (sbatch --time)");
  static const std::regex mem_re(R"(^\d+([KMGTkmgt][Bb]?)?$)");
  if (!r.mem.empty() && !std::regex_match(r.mem, mem_re))
    throw Error("slurm.mem '" + r.mem + "': expected a size such as 64G, 500M or 0 (sbatch --mem)");
  check_word("partition", r.partition);
  check_word("account", r.account);
  check_word("qos", r.qos);
  check_word("constraint", r.constraint);
  check_word("job_name", r.job_name);
  check_word("mpi", r.mpi);
  static const std::regex sig_re(R"(^(SIG)?[A-Z][A-Z0-9]*$|^\d+$)");
  if (!std::regex_match(r.signal, sig_re))
    throw Error("slurm.signal '" + r.signal + "': expected a signal name (USR2) or number");
  if (r.signal_seconds < 0 || r.signal_seconds > 65535)
    throw Error("slurm.signal_seconds " + std::to_string(r.signal_seconds) + ": expected 0..65535");
  if (r.max_requeues < 0)
    throw Error("slurm.max_requeues " + std::to_string(r.max_requeues) + ": expected 0 or more");
  if (r.array_parallelism < 0)
    throw Error("slurm.array_parallelism " + std::to_string(r.array_parallelism) + ": expected 0 (no limit) or more");
  if (r.requeue_command.find('\n') != std::string::npos)
    throw Error("slurm.requeue_command: expected one line");
  static const std::regex extra_re(R"(^(--)?[A-Za-z][A-Za-z0-9-]*(=[^\n]*)?$)");
  static const std::set<std::string> managed = {"job-name", "array", "nodes", "ntasks-per-node", "gpus-per-node",
                                                "cpus-per-task", "mem", "time", "partition", "account", "qos",
                                                "constraint", "output", "error", "open-mode", "signal",
                                                "requeue", "no-requeue", "N", "n", "c", "t", "p", "A", "o", "e",
                                                "J", "a", "C", "q"};
  for (const auto& e : r.extra) {
    if (!std::regex_match(e, extra_re))
      throw Error("slurm.extra '" + e + "': expected a directive such as 'mail-type=END' or '--exclusive'");
    if (managed.count(directive_name(e)))
      throw Error("slurm.extra '" + e + "': --" + directive_name(e) +
                  " is rendered from its own slurm.* key (or by zsad); set that key instead");
  }
  for (const auto& a : r.srun_args) {
    if (a.find('\n') != std::string::npos) throw Error("slurm.srun_args '" + a + "': expected one line");
  }
}

std::string array_spec(std::vector<int> indices, int parallelism) {
  if (indices.empty()) throw Error("job array with no jobs");
  std::sort(indices.begin(), indices.end());
  indices.erase(std::unique(indices.begin(), indices.end()), indices.end());
  if (indices.front() < 0) throw Error("job array index " + std::to_string(indices.front()) + ": expected >= 0");
  std::string out;
  size_t i = 0;
  while (i < indices.size()) {
    size_t j = i;
    while (j + 1 < indices.size() && indices[j + 1] == indices[j] + 1) ++j;
    if (!out.empty()) out += ",";
    out += std::to_string(indices[i]);
    if (j > i) out += "-" + std::to_string(indices[j]);
    i = j + 1;
  }
  if (parallelism > 0) out += "%" + std::to_string(std::min<size_t>(indices.size(), parallelism));
  return out;
}

std::vector<std::string> directives(const ScriptRequest& req, const Resources& r) {
  if (req.jobs.empty()) throw Error("sbatch script with no jobs");
  std::vector<std::string> d;
  d.push_back("--job-name=" + job_name(req, r));
  bool array = is_array(req);
  if (array) {
    std::vector<int> nums;
    for (const auto& j : req.jobs) {
      if (j.num < 0) throw Error("job array element " + j.dir + " has no sweep job number");
      nums.push_back(j.num);
    }
    d.push_back("--array=" + array_spec(nums, r.array_parallelism));
  }
  d.push_back("--nodes=" + std::to_string(r.nodes));
  d.push_back("--ntasks-per-node=" + std::to_string(r.ntasks_per_node));
  if (r.gpus_per_node > 0) d.push_back("--gpus-per-node=" + std::to_string(r.gpus_per_node));
  d.push_back("--cpus-per-task=" + std::to_string(r.cpus_per_task));
  if (!r.mem.empty()) d.push_back("--mem=" + r.mem);
  if (!r.time.empty()) d.push_back("--time=" + r.time);
  if (!r.partition.empty()) d.push_back("--partition=" + r.partition);
  if (!r.account.empty()) d.push_back("--account=" + r.account);
  if (!r.qos.empty()) d.push_back("--qos=" + r.qos);
  if (!r.constraint.empty()) d.push_back("--constraint=" + r.constraint);
  std::string pattern = array ? "%A_%a" : "%j";
  d.push_back("--output=" + req.log_dir + "/" + pattern + ".out");
  d.push_back("--error=" + req.log_dir + "/" + pattern + ".err");
  d.push_back("--open-mode=append");  // a requeued job appends to the same files
  std::string sig = r.signal.rfind("SIG", 0) == 0 ? r.signal.substr(3) : r.signal;
  d.push_back("--signal=" + sig + "@" + std::to_string(r.signal_seconds));
  d.push_back(r.requeue ? "--requeue" : "--no-requeue");
  for (const auto& e : r.extra) d.push_back("--" + normalize_extra(e));
  return d;
}

std::string srun_line(const Resources& r) {
  std::ostringstream s;
  s << "srun --nodes=" << r.nodes << " --ntasks-per-node=" << r.ntasks_per_node
    << " --cpus-per-task=" << r.cpus_per_task;
  if (r.gpus_per_node > 0) s << " --gpus-per-node=" << r.gpus_per_node;
  if (!r.mpi.empty()) s << " --mpi=" << r.mpi;
  if (r.nodes * r.ntasks_per_node > 1) s << " --label";
  s << " --output=\"$ZSAD_JOB_DIR/run.log\" --open-mode=append";
  for (const auto& a : r.srun_args) s << " " << a;
  s << " \"$zsad\" job \"$ZSAD_JOB_CONFIG\"";
  return s.str();
}

std::string render_script(const ScriptRequest& req, const Resources& r) {
  validate(r);
  if (req.zsad_binary.empty()) throw Error("sbatch script: no zsad executable path");
  if (req.log_dir.empty()) throw Error("sbatch script: no log directory");
  std::ostringstream s;
  bool array = is_array(req);
  s << "#!/bin/bash\n";
  for (const auto& d : directives(req, r)) s << "#SBATCH " << d << "\n";
  s << "#\n# zsad job script (docs/slurm.md), experiment " << (req.experiment.empty() ? "?" : req.experiment);
  if (array) s << ", sweep " << req.sweep_dir << ": " << req.jobs.size() << " jobs, array index = sweep job number";
  s << "\n# " << r.nodes << " node(s) x " << r.ntasks_per_node << " rank(s); each rank runs `zsad job CONFIG`.\n";
  s << "set -u\n\n";
  if (array) {
    s << "case \"${SLURM_ARRAY_TASK_ID:-}\" in\n";
    for (const auto& j : req.jobs) {
      s << "  " << j.num << ") ZSAD_JOB_DIR=" << shell_quote(j.dir) << "; ZSAD_JOB_CONFIG=" << shell_quote(j.config_path)
        << " ;;";
      if (!j.overrides.empty()) {
        s << "  #";
        for (const auto& o : j.overrides) s << " " << o;
      }
      s << "\n";
    }
    s << "  *) echo \"zsad: array index '${SLURM_ARRAY_TASK_ID:-}' is not a job of this sweep\" >&2; exit 1 ;;\n"
      << "esac\n"
      << "ZSAD_JOB_NUM=$SLURM_ARRAY_TASK_ID\n"
      << "slurm_id=\"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"\n";
  } else {
    const JobSpec& j = req.jobs.front();
    s << "ZSAD_JOB_DIR=" << shell_quote(j.dir) << "\nZSAD_JOB_CONFIG=" << shell_quote(j.config_path) << "\n";
    s << "ZSAD_JOB_NUM=" << j.num << "\n";
    s << "slurm_id=\"$SLURM_JOB_ID\"\n";
  }
  s << "export ZSAD_JOB_DIR ZSAD_JOB_CONFIG ZSAD_JOB_NUM\n";
  if (!req.sweep_dir.empty()) s << "export ZSAD_SWEEP_DIR=" << shell_quote(req.sweep_dir) << "\n";
  s << "export ZSAD_SLURM_REQUEUE=wrapper   # this script requeues; the ranks must not\n";
  s << "export OMP_NUM_THREADS=" << r.cpus_per_task << "\n";
  s << "zsad=" << shell_quote(req.zsad_binary) << "\n";
  s << "requeue=" << (r.requeue && !r.requeue_command.empty() ? 1 : 0) << "\n";
  s << "max_requeues=" << r.max_requeues << "\n";
  s << "restarts=${SLURM_RESTART_COUNT:-0}\n";
  if (!r.setup.empty()) {
    s << "\n# setup (slurm.setup)\n";
    for (const auto& line : r.setup) s << line << "\n";
  }
  s << R"SH(
echo "zsad: slurm job $slurm_id (SLURM_JOB_ID=$SLURM_JOB_ID) on ${SLURM_JOB_NODELIST:-?}, SLURM_RESTART_COUNT=$restarts, job dir $ZSAD_JOB_DIR"
"$zsad" status --set running --slurm-job "$slurm_id" --restarts "$restarts" "$ZSAD_JOB_DIR" ||
  echo "zsad: warning: could not record the running state in $ZSAD_JOB_DIR/.zsad/job.yaml" >&2

# SIGTERM/SIGINT reaching this shell (scancel, time limit): stop without requeue. SLURM signals
# the job steps itself, so nothing is forwarded (a second signal could escalate to a kill).
# SIGUSR2 (--signal) reaches only the job steps: the ranks checkpoint and exit 75, see below.
stop=
trap 'stop=TERM' TERM
trap 'stop=INT' INT
)SH";
  s << "# srun runs in a subshell that records its exit code: a trapped signal interrupts `wait`, and\n"
       "# the status bash reports after that is not reliable. The subshell's `trap :` lets a SIGTERM\n"
       "# sent to every process of the job pass without killing it (srun itself starts with defaults).\n";
  s << "rcfile=$(mktemp \"${TMPDIR:-/tmp}/zsad-srun.XXXXXX\")\n";
  s << "( trap : TERM INT; " << srun_line(r) << "; echo $? > \"$rcfile\" ) &\n";
  s << R"SH(step=$!
wait "$step"
while kill -0 "$step" 2>/dev/null; do wait "$step"; done
code=$(cat "$rcfile" 2>/dev/null)
rm -f "$rcfile"
[ -n "$code" ] || code=1

if [ "$code" -eq 0 ]; then
  state=completed
elif [ -n "$stop" ]; then
  state=stopped
  echo "zsad: stopped by SIG$stop (exit $code); not requeued"
elif [ "$code" -eq 75 ]; then
  state=stopped
  if [ "$requeue" -eq 1 ] && [ "$restarts" -lt "$max_requeues" ]; then
    echo "zsad: ranks checkpointed after SIG)SH"
    << (r.signal.rfind("SIG", 0) == 0 ? r.signal.substr(3) : r.signal) << R"SH( (preemption or time limit); requeue $((restarts + 1))/$max_requeues"
    "$zsad" status --set pending --exit-code 75 "$ZSAD_JOB_DIR" || true
    if )SH" << (r.requeue_command.empty() ? std::string("false") : r.requeue_command)
    << R"SH( "$slurm_id"; then   # A_a for an array element: the bare id may name the whole array
      exit 75
    fi
    echo "zsad: requeue command failed; the job stays stopped" >&2
  elif [ "$requeue" -eq 1 ]; then
    echo "zsad: stopped after a checkpoint; requeue cap reached (SLURM_RESTART_COUNT=$restarts, slurm.max_requeues=$max_requeues)" >&2
  fi
else
  state=failed
fi
"$zsad" status --set "$state" --exit-code "$code" "$ZSAD_JOB_DIR" || true
echo "zsad: job $state (exit $code)"
exit "$code"
)SH";
  return s.str();
}

}  // namespace zsad::slurm
