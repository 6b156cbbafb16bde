#pragma once
// The one table of exit codes and job states shared by every zsad command (docs/exit-codes.md).

namespace zsad {

enum ExitCode : int {
  kExitSuccess = 0,
  kExitError = 1,
  kExitUsage = 2,
  // Stopped by SIGTERM/SIGINT/SIGUSR2 after a checkpoint was written; re-running resumes.
  // 75 is sysexits' EX_TEMPFAIL ("temporary failure, try again").
  kExitStoppedResumable = 75,
};

enum class JobState { kPending, kRunning, kCompleted, kFailed, kStopped };

inline const char* job_state_name(JobState s) {
  switch (s) {
    case JobState::kPending: return "pending";
    case JobState::kRunning: return "running";
    case JobState::kCompleted: return "completed";
    case JobState::kFailed: return "failed";
    case JobState::kStopped: return "stopped";
  }
  return "unknown";
}

}  // namespace zsad
