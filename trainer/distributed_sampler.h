#pragma once
// Which dataset indices this rank visits in an epoch, with the semantics of Python's
// torch.utils.data.DistributedSampler (platform.md §3.2): shuffle with torch.randperm under a
// generator seeded seed + epoch, pad by wrapping around (or drop the tail with drop_last), then take
// every num_replicas-th index starting at rank. Unlike LibTorch's make_data_loader shuffle, every
// epoch gets a new order, and the position inside the epoch is part of the checkpoint so a resumed
// epoch continues where it stopped.
#include <cstdint>
#include <vector>

namespace zsad {

class DistributedSampler {
 public:
  DistributedSampler(int64_t dataset_size, int num_replicas, int rank, bool shuffle = true, uint64_t seed = 0,
                     bool drop_last = false);

  // Starts epoch `epoch` at position 0.
  void set_epoch(int64_t epoch);
  // Continues an epoch from a checkpoint: the next index handed out is indices()[position].
  void restore(int64_t epoch, int64_t position);

  int64_t epoch() const { return epoch_; }
  int64_t position() const { return position_; }
  int64_t num_samples() const { return num_samples_; }  // per rank per epoch
  int64_t total_size() const { return num_samples_ * num_replicas_; }

  // This rank's indices for the current epoch (Python's list(iter(sampler))).
  const std::vector<int64_t>& indices() const { return indices_; }

  // The next min(n, remaining) indices of the epoch; empty when the epoch is exhausted.
  std::vector<int64_t> next(int64_t n);
  bool exhausted() const { return position_ >= num_samples_; }
  // The same positions as next(n), minus the wrap-around copies that only pad the epoch to a
  // multiple of num_replicas (global position >= dataset size). The union over ranks of one call
  // each is then a set of distinct samples: the epoch's last global batch may be smaller, and on
  // some ranks empty.
  std::vector<int64_t> next_unpadded(int64_t n);

 private:
  void build();

  int64_t size_;
  int num_replicas_;
  int rank_;
  bool shuffle_;
  uint64_t seed_;
  bool drop_last_;
  int64_t num_samples_ = 0;
  int64_t epoch_ = 0;
  int64_t position_ = 0;
  std::vector<int64_t> indices_;
};

}  // namespace zsad
