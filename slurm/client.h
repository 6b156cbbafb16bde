#pragma once
// Talking to SLURM through its client commands (sbatch, squeue, sacct): submission, queue states,
// and the submission records kept in a run or sweep directory (<dir>/.slurm/submissions.jsonl).
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace zsad::slurm {

struct CommandResult {
  int exit_code = 0;  // 127: could not execute; 128+N: killed by signal N
  std::string out, err;
};

// Runs argv (PATH lookup, no shell) and collects its stdout and stderr.
CommandResult run_command(const std::vector<std::string>& argv);

// The job id in `sbatch --parsable` output ("123" or "123;cluster"); throws when there is none.
std::string parse_sbatch_job_id(const std::string& out);

// `sbatch --parsable SCRIPT`: returns the job id; throws zsad::Error quoting sbatch's stderr.
std::string submit(const std::string& script_path);
// `sbatch --test-only SCRIPT`: validates the script against the cluster without queueing it.
CommandResult test_only(const std::string& script_path);

struct QueueEntry {
  std::string id;     // "123" or "123_4" (array element)
  std::string state;  // SLURM's state name (PENDING, RUNNING, COMPLETED, ...)
  std::string detail; // squeue reason or sacct exit code
};

// Parses `squeue -h -r -o '%i|%T|%r'` (one element per line, arrays expanded by -r).
std::map<std::string, QueueEntry> parse_squeue(const std::string& out);
// Parses `sacct -n -P -X -o JobID,State,ExitCode` ("CANCELLED by 0" -> CANCELLED).
std::map<std::string, QueueEntry> parse_sacct(const std::string& out);

// The caller's jobs in the queue (pending, running, completing); throws when squeue fails.
std::map<std::string, QueueEntry> query_queue();
// Finished and running jobs from accounting; std::nullopt when sacct is unavailable or accounting
// is disabled (as on the test cluster).
std::optional<std::map<std::string, QueueEntry>> query_accounting(const std::vector<std::string>& job_ids);

// SLURM state -> zsad job state name (pending, running, completed, failed, stopped);
// "" for a state it does not know.
std::string zsad_state(const std::string& slurm_state);

// One sbatch submission, appended to <dir>/.slurm/submissions.jsonl.
struct SubmissionRecord {
  std::string job_id;       // SLURM job id (the array job id for arrays)
  std::string script;       // the submitted script
  std::string array;        // --array value ("" for a plain job)
  std::vector<int> jobs;    // sweep job numbers it runs (-1 for a single run)
  std::string submitted;    // UTC time, ISO 8601
};

std::string records_path(const std::string& dir);  // <dir>/.slurm/submissions.jsonl
void append_record(const std::string& dir, const SubmissionRecord& rec);
std::vector<SubmissionRecord> read_records(const std::string& dir);  // [] when there are none

// The SLURM id of one job: "<array id>_<num>" for array elements, the job id otherwise.
std::string element_id(const SubmissionRecord& rec, int num);

}  // namespace zsad::slurm
