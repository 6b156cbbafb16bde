#pragma once
// One driver per run or sweep directory. Two `zsad run --run-dir D` (a double submit, or a requeue
// while the old job still runs) or two `zsad sweep --resume D` would otherwise train into the same
// checkpoints and logs at once. An exclusive flock on <dir>/<file>, held for the object's life and
// released by the kernel when the process dies (so a killed job never leaves a stale lock). The
// file names the holder (pid, host, start time) for the error the second driver prints.
#include <string>

namespace zsad::launch {

inline constexpr const char* kRunDirLock = ".zsad/lock";      // in a run directory
inline constexpr const char* kSweepDirLock = "multirun.lock";  // in a sweep directory, next to multirun.yaml
// Set by a driver that holds a run directory's lock for the job it starts (value: the directory).
inline constexpr const char* kRunDirLockedEnv = "ZSAD_RUN_DIR_LOCKED";

// Who holds <dir>/<file> ("pid N on HOST, since T"), or "" when nobody does. For a caller that
// would rather skip a busy directory than fail on it.
std::string dir_lock_holder(const std::string& dir, const std::string& file);

class DirLock {
 public:
  // Throws zsad::Error naming `what`, the directory and the holder when another process holds it.
  // On a filesystem without locks it warns once and holds nothing.
  DirLock(const std::string& dir, const std::string& file, const std::string& what);
  ~DirLock();
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace zsad::launch
