#include "trainer/distributed_sampler.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "common/error.h"

namespace zsad {

DistributedSampler::DistributedSampler(int64_t dataset_size, int num_replicas, int rank, bool shuffle, uint64_t seed,
                                       bool drop_last)
    : size_(dataset_size), num_replicas_(num_replicas), rank_(rank), shuffle_(shuffle), seed_(seed),
      drop_last_(drop_last) {
  if (num_replicas < 1 || rank < 0 || rank >= num_replicas) {
    throw Error("DistributedSampler: rank " + std::to_string(rank) + " with num_replicas " +
                std::to_string(num_replicas) + ": expected 0 <= rank < num_replicas");
  }
  if (dataset_size < 1) throw Error("DistributedSampler: dataset size " + std::to_string(dataset_size) + ": expected >= 1");
  if (drop_last_ && size_ % num_replicas_ != 0) {
    num_samples_ = (size_ - num_replicas_ + num_replicas_ - 1) / num_replicas_;  // ceil((N - R) / R)
  } else {
    num_samples_ = (size_ + num_replicas_ - 1) / num_replicas_;
  }
  build();
}

void DistributedSampler::set_epoch(int64_t epoch) {
  epoch_ = epoch;
  position_ = 0;
  build();
}

void DistributedSampler::restore(int64_t epoch, int64_t position) {
  if (position < 0 || position > num_samples_) {
    throw Error("DistributedSampler: saved position " + std::to_string(position) + " outside [0, " +
                std::to_string(num_samples_) + "] (dataset size or world size changed?)");
  }
  epoch_ = epoch;
  build();
  position_ = position;
}

void DistributedSampler::build() {
  std::vector<int64_t> all;
  if (shuffle_) {
    at::Generator gen = at::detail::createCPUGenerator(seed_ + static_cast<uint64_t>(epoch_));
    at::Tensor perm = at::randperm(size_, gen, at::TensorOptions().dtype(at::kLong));
    all.assign(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + size_);
  } else {
    all.resize(size_);
    for (int64_t i = 0; i < size_; ++i) all[i] = i;
  }
  const int64_t total = total_size();
  if (!drop_last_) {
    for (int64_t i = 0; static_cast<int64_t>(all.size()) < total; ++i) all.push_back(all[i % size_]);
  } else {
    all.resize(total);
  }
  indices_.clear();
  for (int64_t i = rank_; i < total; i += num_replicas_) indices_.push_back(all[i]);
}

std::vector<int64_t> DistributedSampler::next(int64_t n) {
  int64_t end = std::min(num_samples_, position_ + n);
  std::vector<int64_t> out(indices_.begin() + position_, indices_.begin() + end);
  position_ = end;
  return out;
}

std::vector<int64_t> DistributedSampler::next_unpadded(int64_t n) {
  const int64_t end = std::min(num_samples_, position_ + n);
  std::vector<int64_t> out;
  // Local position p is global position p * num_replicas + rank in the (padded) epoch order.
  for (int64_t p = position_; p < end; ++p)
    if (p * num_replicas_ + rank_ < size_) out.push_back(indices_[static_cast<size_t>(p)]);
  position_ = end;
  return out;
}

}  // namespace zsad
