#pragma once
// Parallel batch loader: decode + CLIP transform on std::thread workers, batches delivered in a
// deterministic order. Plain arrays (no LibTorch): the trainer wraps a Batch into tensors with
// from_blob. The loader takes an explicit list of global sample indices, so a distributed
// sampler can hand each rank its shard; with shuffle on, the order is a permutation seeded by
// (seed, epoch) and is the same for any number of threads.
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/index.h"

namespace zsad::data {

struct LoaderOptions {
  int image_size = 518;
  int batch_size = 8;
  int threads = 2;
  bool shuffle = false;
  uint64_t seed = 0;
  bool drop_last = false;
  int prefetch_per_thread = 2;  // batches a worker may run ahead of the consumer
  bool load_masks = true;
};

struct Batch {
  int size = 0;
  int image_size = 0;
  std::vector<float> images;         // [B,3,S,S], CLIP-normalised
  std::vector<uint8_t> masks;        // [B,1,S,S], 0/1 (all zero without a mask)
  std::vector<int> labels;           // anomaly 0/1
  std::vector<std::string> class_names;
  std::vector<std::string> specie_names;
  std::vector<std::string> paths;    // img_path as indexed
  std::vector<int64_t> indices;      // global sample indices
  std::vector<uint8_t> has_mask;     // 1 when the sample had a mask file
  std::vector<float> masks_float() const;  // [B,1,S,S] as 0.0/1.0
};

// Decode one sample and write its transformed image [3,S,S] and mask [S,S] (0/1).
void load_sample(const Sample& sample, const std::string& root, int image_size, bool load_mask, float* image_out,
                 uint8_t* mask_out);

class BatchLoader {
 public:
  BatchLoader(std::vector<Sample> samples, std::string root, LoaderOptions options);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // Restrict iteration to these global indices (in this order before shuffling). Default: all.
  void set_indices(std::vector<int64_t> indices);
  // Begin an epoch: stops any running workers, fixes the order, starts the workers.
  void start_epoch(uint64_t epoch = 0);
  // Next batch of the epoch in order; false once the epoch is exhausted. Decoding errors are
  // rethrown here as zsad::Error naming the file.
  bool next(Batch& out);

  size_t num_batches() const;
  const std::vector<Sample>& samples() const { return samples_; }
  const std::vector<int64_t>& epoch_order() const { return order_; }

 private:
  void stop();
  void worker();
  Batch make_batch(size_t b) const;

  std::vector<Sample> samples_;
  std::string root_;
  LoaderOptions opt_;
  std::vector<int64_t> indices_;
  std::vector<int64_t> order_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  std::map<size_t, Batch> ready_;
  size_t next_to_make_ = 0, next_to_deliver_ = 0, total_ = 0;
  bool stopping_ = false;
  bool started_ = false;
  std::string error_;
};

}  // namespace zsad::data
