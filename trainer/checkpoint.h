#pragma once
// The one checkpoint format: an HDF5 file (readable with h5py) holding named tensors (parameters
// under params/, optimizer state under optimizer/, RNG states under rng/, a method's own state
// under method/) plus integer and string attributes on the root (step, epoch, sampler position,
// world size, config digest). A CRC-32 over every name, dtype, shape, byte and attribute is stored
// as the root attribute "checksum"; loading recomputes it. Files are written to a temporary name,
// fsynced and renamed, so a crash never leaves a half-written ckpt-*.h5; the directory keeps the
// last k >= 2, and a corrupt latest falls back to the previous one.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace zsad {

struct Checkpoint {
  std::map<std::string, at::Tensor> tensors;  // "params/fc.weight", "optimizer/0/exp_avg", ...
  std::map<std::string, int64_t> ints;        // "step", "epoch", "sampler_position", "world_size"
  std::map<std::string, std::string> strings; // "config_digest", "optimizer", ...

  int64_t get_int(const std::string& key) const;             // throws naming the key when absent
  const at::Tensor& get_tensor(const std::string& name) const;
};

// Writes `ck` to `path` atomically (path + ".tmp", fsync, rename, fsync of the directory).
void write_checkpoint(const std::string& path, const Checkpoint& ck);

// Reads and verifies the checksum; throws zsad::Error naming the file and what is wrong
// (unreadable/truncated HDF5, checksum mismatch, missing attribute).
Checkpoint read_checkpoint(const std::string& path);

// The directory of a run's checkpoints: ckpt-<step, 9 digits>.h5.
class CheckpointDir {
 public:
  CheckpointDir(std::string dir, int keep_last = 2);

  // Path of the checkpoint for `step`.
  std::string path_for(int64_t step) const;
  // Existing checkpoints, oldest first (by step number, not mtime).
  std::vector<std::string> list() const;
  // Writes ck (ck.ints["step"] decides the name) and removes all but the newest keep_last.
  std::string save(const Checkpoint& ck);
  // Loads the newest checkpoint that verifies and whose config digest equals `config_digest`
  // (when non-empty). A corrupt file is skipped with a message on stderr naming it and the reason;
  // a digest mismatch is an error (resuming a different configuration is never what you want).
  // Returns nullopt when the directory holds no checkpoint; throws when none is usable.
  std::optional<Checkpoint> load_latest(const std::string& config_digest, std::string* loaded_path = nullptr) const;

 private:
  std::string dir_;
  int keep_;
};

}  // namespace zsad
