#include "trainer/loop/train_loop.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/types.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim.h>

#include "common/exit_codes.h"
#include "models/clip/compute_threads.h"
#include "trainer/distributed_sampler.h"
#include "trainer/loop/run_log.h"
#include "trainer/loop/stop_signals.h"
#include "common/fnv1a.h"

namespace zsad::trainer {

uint64_t derive_seed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::string config_digest(const TrainConfig& c, int world_size, const std::string& task_digest) {
  std::ostringstream o;
  o << "world_size=" << world_size << ";global_batch_size=" << c.global_batch_size
    << ";grad_accum_steps=" << c.grad_accum_steps << ";shuffle=" << c.shuffle << ";drop_last=" << c.drop_last
    << ";keep_partial_batch=" << c.keep_partial_batch << ";seed=" << c.seed << ";"
    << describe(c.optim) << ";" << describe(c.schedule) << ";grad_clip_norm=" << c.grad_clip_norm
    << ";sync_gradients=" << c.sync_gradients << ";task=" << task_digest;
  const std::string s = o.str();
  const uint64_t h = fnv1a64(s);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

namespace {

at::Tensor rng_state() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_rng_state(const at::Tensor& s) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(s);
}

void seed_rng(uint64_t seed) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(seed);
}

}  // namespace

TrainResult train(TrainTask& task, const TrainConfig& c, comm::Communicator& comm) {
  models::apply_compute_threads(c.num_threads);
  const int rank = comm.rank();
  const int W = comm.world_size();
  if (c.grad_accum_steps < 1) throw Error("train grad_accum_steps " + std::to_string(c.grad_accum_steps) + ": expected >= 1");
  if (c.global_batch_size % (W * c.grad_accum_steps) != 0) {
    throw Error("train global_batch_size " + std::to_string(c.global_batch_size) + " is not divisible by world size " +
                std::to_string(W) + " x grad_accum_steps " + std::to_string(c.grad_accum_steps));
  }
  if (c.on_nonfinite != "abort" && c.on_nonfinite != "skip") {
    throw Error("train on_nonfinite '" + c.on_nonfinite + "': expected abort or skip");
  }
  const int64_t local_batch = c.global_batch_size / (W * c.grad_accum_steps);
  const int64_t accum = c.grad_accum_steps;

  RunLog log(c.run_dir, rank, W);
  NamedTensors named = task.named_parameters();
  std::vector<at::Tensor> params;
  for (auto& [n, p] : named) params.push_back(p);
  auto opt = make_optimizer(params, c.optim);
  ddp::GradReducer reducer(comm, params, c.buckets);
  DistributedSampler sampler(task.dataset_size(), W, rank, c.shuffle, c.seed, c.drop_last);
  if (c.keep_partial_batch && accum > 1) {
    throw Error("train: keeping the last partial batch (train.drop_last_batch false) needs grad_accum_steps 1, got " +
                std::to_string(accum) + "; set train.drop_last_batch=true");
  }
  // Steps over the epoch's distinct samples (the sampler's wrap-around padding never enters a
  // step), so the step count and each step's global batch do not depend on the world size.
  const int64_t distinct = std::min(task.dataset_size(), sampler.total_size());
  const int64_t global_step_samples = local_batch * W * accum;
  const int64_t steps_per_epoch = c.keep_partial_batch
                                      ? (distinct + global_step_samples - 1) / global_step_samples
                                      : distinct / global_step_samples;
  if (steps_per_epoch == 0) {
    throw Error("train: the dataset's " + std::to_string(distinct) + " samples are fewer than one step (" +
                std::to_string(global_step_samples) + " samples); lower the batch size or keep the partial batch");
  }
  // Where this rank's epoch ends in its share of the sampler's order.
  const int64_t epoch_positions = std::min(sampler.num_samples(), steps_per_epoch * local_batch * accum);
  int64_t total_steps = c.epochs * steps_per_epoch;
  if (c.max_steps >= 0) total_steps = std::min(total_steps, c.max_steps);
  const std::string digest = config_digest(c, W, task.config_digest());
  CheckpointDir ckdir(c.run_dir + "/checkpoints", c.keep_last);

  int64_t step = 0;
  int64_t epoch = 0;
  seed_rng(derive_seed(c.seed, static_cast<uint64_t>(rank)));
  std::optional<Checkpoint> ck;
  std::string ck_path;
  if (c.resume) ck = ckdir.load_latest(digest, &ck_path);
  if (ck) {
    at::NoGradGuard no_grad;
    for (auto& [n, p] : named) {
      const at::Tensor& v = ck->get_tensor("params/" + n);
      if (v.sizes() != p.sizes()) {
        throw Error("checkpoint '" + ck_path + "': parameter '" + n + "' has shape " + c10::str(v.sizes()) +
                    ", the model has " + c10::str(p.sizes()));
      }
      p.detach().copy_(v);
    }
    load_optimizer_state(*opt, params, c.optim, *ck);
    task.load_state(*ck);
    step = ck->get_int("step");
    epoch = ck->get_int("epoch");
    sampler.restore(epoch, ck->get_int("sampler_position"));
    set_rng_state(ck->get_tensor("rng/rank_" + std::to_string(rank)));
    log.info("resumed from " + ck_path + " at step " + std::to_string(step) + " epoch " + std::to_string(epoch), true);
  } else {
    reducer.broadcast_parameters(0);
    sampler.set_epoch(0);
    log.info("starting: world size " + std::to_string(W) + " (" + comm.backend() + "), " +
                 std::to_string(total_steps) + " steps, local batch " + std::to_string(local_batch) + " x " +
                 std::to_string(accum) + " micro-steps, config digest " + digest,
             true);
  }
  install_stop_handlers();

  std::ofstream samples;
  if (c.log_sample_ids) {
    std::filesystem::create_directories(c.run_dir + "/samples");
    samples.open(c.run_dir + "/samples/rank" + std::to_string(rank) + ".txt", std::ios::app);
  }

  TrainResult res;
  auto save = [&]() {
    if (c.sync_gradients) ddp::verify_parameters_consistent(comm, params);
    Checkpoint out;
    for (auto& [n, p] : named) out.tensors["params/" + n] = p.detach();
    save_optimizer_state(*opt, params, c.optim, out);
    task.save_state(out);
    out.ints["step"] = step;
    out.ints["epoch"] = epoch;
    out.ints["sampler_position"] = sampler.position();
    out.ints["world_size"] = W;
    out.strings["config_digest"] = digest;
    at::Tensor states = comm.allgather(rng_state());
    for (int r = 0; r < W; ++r) out.tensors["rng/rank_" + std::to_string(r)] = states[r];
    std::string path = ckdir.path_for(step);
    if (rank == 0) path = ckdir.save(out);
    comm.barrier();  // nobody leaves (or exits) before the file is in place
    log.info("checkpoint " + path);
    return path;
  };

  int64_t since_log = 0;
  bool stop = false;
  while (step < total_steps) {
    if (sampler.position() >= epoch_positions) {
      sampler.set_epoch(++epoch);
      continue;
    }
    const double lr = lr_at(c.schedule, c.optim.lr, step);
    set_lr(*opt, lr);
    opt->zero_grad();
    bool bad = false;
    std::string bad_msg;
    std::vector<std::pair<std::string, double>> terms_now;
    for (int64_t m = 0; m < accum; ++m) {
      std::vector<int64_t> ids = sampler.next_unpadded(local_batch);
      if (samples.is_open()) {
        samples << step << " " << epoch;
        for (auto id : ids) samples << " " << id;
        samples << "\n";
      }
      StepContext sc{comm, step, epoch, static_cast<int>(m)};
      NamedTensors terms = task.train_step(ids, sc);
      if (terms.empty()) throw Error("train: the task returned no loss terms");
      at::Tensor total = terms[0].second;
      for (size_t i = 1; i < terms.size(); ++i) total = total + terms[i].second;
      terms_now.clear();
      for (auto& [n, t] : terms) terms_now.emplace_back(n, t.detach().item<double>());
      const bool finite = std::isfinite(total.detach().item<double>());
      // Ranks agree on non-finite losses and stop requests at every micro-step, so that all of them
      // take the same branch (and issue the same collectives) below.
      std::vector<int> nonfinite_ranks;
      if (W > 1) {
        at::Tensor flags = at::tensor({finite ? 0.f : 1.f, stop_requested() ? 1.f : 0.f});
        at::Tensor all = comm.allgather(flags);
        auto a = all.accessor<float, 2>();
        for (int r = 0; r < W; ++r) {
          if (a[r][0] != 0.f) nonfinite_ranks.push_back(r);
          if (a[r][1] != 0.f) stop = true;
        }
      } else {
        if (!finite) nonfinite_ranks.push_back(0);
        stop = stop || stop_requested();
      }
      if (!nonfinite_ranks.empty()) {
        bad = true;
        std::ostringstream m_;
        m_ << "non-finite loss at step " << step << " (epoch " << epoch << ", micro-step " << m << ") on rank(s)";
        for (int r : nonfinite_ranks) m_ << " " << r;
        if (!finite) {
          m_ << "; rank " << rank << " terms:";
          for (auto& [n, v] : terms_now) m_ << " " << n << "=" << v;
        }
        bad_msg = m_.str();
        continue;
      }
      if (c.sync_gradients && m == accum - 1) reducer.prepare_for_backward();
      // A rank whose share of a partial batch is empty may have a loss without a graph: it adds
      // no gradient (the reducer counts its undefined gradients as zeros).
      if (total.requires_grad()) (accum > 1 ? total / static_cast<double>(accum) : total).backward();
    }
    if (bad) {
      if (c.on_nonfinite == "abort") {
        log.info(bad_msg, true);
        throw NonFiniteLoss(bad_msg);
      }
      ++res.skipped_steps;
      log.info(bad_msg + "; step skipped (on_nonfinite=skip)", true);
      opt->zero_grad();
    } else {
      if (c.sync_gradients) reducer.synchronize();
      if (c.grad_clip_norm > 0) torch::nn::utils::clip_grad_norm_(params, c.grad_clip_norm);
      opt->step();
    }
    ++step;
    ++since_log;
    if (step % std::max<int64_t>(1, c.log_every) == 0 || step == total_steps) {
      at::Tensor v = at::zeros({static_cast<int64_t>(terms_now.size())}, at::kDouble);
      for (size_t i = 0; i < terms_now.size(); ++i) v[i] = terms_now[i].second;
      if (W > 1) {
        comm.allreduce(v, comm::ReduceOp::kSum);
        v.div_(W);
      }
      LossTerms mean;
      double loss = 0;
      for (size_t i = 0; i < terms_now.size(); ++i) {
        mean.emplace_back(terms_now[i].first, v[i].item<double>());
        loss += mean.back().second;
      }
      log.step(epoch, step, total_steps, loss, mean, lr, since_log);
      since_log = 0;
    }
    if (stop) {
      res.last_checkpoint = save();
      log.info("stop requested (signal " + std::to_string(stop_signal()) + " on some rank): checkpoint written at step " +
                   std::to_string(step) + ", exiting with " + std::to_string(kExitStoppedResumable),
               true);
      res.exit_code = kExitStoppedResumable;
      res.steps = step;
      return res;
    }
    if (c.checkpoint_every > 0 && step % c.checkpoint_every == 0 && step < total_steps) res.last_checkpoint = save();
  }
  res.last_checkpoint = save();
  res.steps = step;
  log.info("finished at step " + std::to_string(step), true);
  return res;
}

}  // namespace zsad::trainer
