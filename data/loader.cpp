#include "data/loader.h"

#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "data/image.h"
#include "data/rng.h"
#include "data/transforms.h"

namespace zsad::data {

std::vector<float> Batch::masks_float() const {
  std::vector<float> out(masks.size());
  for (size_t i = 0; i < masks.size(); ++i) out[i] = masks[i] ? 1.0f : 0.0f;
  return out;
}

void load_sample(const Sample& s, const std::string& root, int size, bool load_mask, float* image_out,
                 uint8_t* mask_out) {
  const Image img = read_image(resolve_path(root, s.img_path));
  preprocess_image(img, size, image_out);
  if (load_mask && !s.mask_path.empty()) {
    preprocess_mask(read_mask(resolve_path(root, s.mask_path)), size, mask_out);
  } else if (mask_out) {  // null: the caller wants no mask (e.g. few-shot support images)
    std::memset(mask_out, 0, static_cast<size_t>(size) * size);
  }
}

BatchLoader::BatchLoader(std::vector<Sample> samples, std::string root, LoaderOptions options)
    : samples_(std::move(samples)), root_(std::move(root)), opt_(options) {
  if (opt_.batch_size < 1) throw Error("loader: batch_size must be >= 1");
  if (opt_.image_size < 1) throw Error("loader: image_size must be >= 1");
  if (opt_.threads < 1) opt_.threads = 1;
  indices_.resize(samples_.size());
  for (size_t i = 0; i < indices_.size(); ++i) indices_[i] = static_cast<int64_t>(i);
}

BatchLoader::~BatchLoader() { stop(); }

void BatchLoader::set_indices(std::vector<int64_t> indices) {
  for (int64_t i : indices)
    if (i < 0 || i >= static_cast<int64_t>(samples_.size()))
      throw Error("loader: sample index " + std::to_string(i) + " out of range [0, " + std::to_string(samples_.size()) + ")");
  stop();
  indices_ = std::move(indices);
  started_ = false;
}

size_t BatchLoader::num_batches() const {
  const size_t n = indices_.size(), b = static_cast<size_t>(opt_.batch_size);
  return opt_.drop_last ? n / b : (n + b - 1) / b;
}

void BatchLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
  ready_.clear();
  stopping_ = false;
}

void BatchLoader::start_epoch(uint64_t epoch) {
  stop();
  order_ = indices_;
  if (opt_.shuffle) {
    Rng rng(mix_seed(opt_.seed, epoch, 0x6c6f6164ull));
    rng.shuffle(order_.begin(), order_.end());
  }
  total_ = num_batches();
  started_ = true;
  next_to_make_ = next_to_deliver_ = 0;
  error_.clear();
  const int n = std::max(1, std::min<int>(opt_.threads, static_cast<int>(std::max<size_t>(total_, 1))));
  for (int t = 0; t < n; ++t) workers_.emplace_back(&BatchLoader::worker, this);
}

Batch BatchLoader::make_batch(size_t b) const {
  const size_t first = b * opt_.batch_size;
  const size_t count = std::min<size_t>(opt_.batch_size, order_.size() - first);
  const int S = opt_.image_size;
  const size_t plane = static_cast<size_t>(S) * S;
  Batch out;
  out.size = static_cast<int>(count);
  out.image_size = S;
  out.images.resize(count * 3 * plane);
  out.masks.resize(count * plane);
  for (size_t i = 0; i < count; ++i) {
    const int64_t gi = order_[first + i];
    const Sample& s = samples_[gi];
    load_sample(s, root_, S, opt_.load_masks, out.images.data() + i * 3 * plane, out.masks.data() + i * plane);
    out.labels.push_back(s.anomaly);
    out.class_names.push_back(s.cls_name);
    out.specie_names.push_back(s.specie_name);
    out.paths.push_back(s.img_path);
    out.indices.push_back(gi);
    out.has_mask.push_back(opt_.load_masks && !s.mask_path.empty());
  }
  return out;
}

void BatchLoader::worker() {
  set_single_threaded_decoding();
  const size_t window = static_cast<size_t>(opt_.threads) * std::max(1, opt_.prefetch_per_thread);
  for (;;) {
    size_t b;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !error_.empty() || next_to_make_ >= total_ || next_to_make_ < next_to_deliver_ + window; });
      if (stopping_ || !error_.empty() || next_to_make_ >= total_) return;
      b = next_to_make_++;
    }
    try {
      Batch batch = make_batch(b);
      std::lock_guard<std::mutex> lock(mu_);
      ready_.emplace(b, std::move(batch));
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mu_);
      if (error_.empty()) error_ = e.what();
    }
    cv_.notify_all();
  }
}

bool BatchLoader::next(Batch& out) {
  if (!started_) start_epoch(0);
  std::unique_lock<std::mutex> lock(mu_);
  if (next_to_deliver_ >= total_) return false;
  cv_.wait(lock, [&] { return !error_.empty() || ready_.count(next_to_deliver_) > 0; });
  if (!error_.empty() && !ready_.count(next_to_deliver_)) {
    const std::string msg = error_;
    lock.unlock();
    throw Error("loader: " + msg);
  }
  auto it = ready_.find(next_to_deliver_);
  out = std::move(it->second);
  ready_.erase(it);
  ++next_to_deliver_;
  lock.unlock();
  cv_.notify_all();
  return true;
}

}  // namespace zsad::data
