#pragma once
// Few-shot protocol of APT (shared/specs/apt.md §1): k normal shots per class drawn without
// replacement from the class's train/good images (by seed, or from a WinCLIP seed file), and the
// sharding of classes over ranks for one-model-per-class training. Pure functions, no LibTorch.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/index.h"

namespace zsad::models::apt {

struct ShotSelection {
  std::string class_name;
  std::vector<int64_t> indices;   // positions in the candidate list given to the sampler
  std::vector<std::string> files; // the chosen img_path values (for the run log)
};

// The normal training images of one class (train split, anomaly == 0), in index order.
std::vector<data::Sample> normal_train_samples(const data::Meta& meta, const std::string& cls);

// k of the candidates, without replacement, by a generator keyed by (seed, class name): the same
// (seed, class, candidate list) always gives the same shots, independent of other classes and of
// the number of ranks. The shots are the first k of a seeded Fisher-Yates permutation, so the
// k=1 shot is part of the k=2 draw and so on (nested shot sets). Throws zsad::Error naming the
// class if it has fewer than k candidates.
ShotSelection sample_shots(const std::string& cls, const std::vector<data::Sample>& candidates, int64_t k,
                           uint64_t seed);

// WinCLIP seed file (datasets/seeds_<ds>/<cls>/selected_samples_per_run.txt): lines "#k: a b c",
// names without extension ("131" means 131.png). Returns k -> list of runs (each a name list), in
// file order. Throws zsad::Error naming the file and line when malformed.
std::map<int64_t, std::vector<std::vector<std::string>>> read_shot_list(const std::string& path);

// Picks the shots named in a seed file: run number `run` (mod the runs listed for k) of the "#k:"
// lines, names matched against the candidates' file stems (the file name, not PromptAD's index
// into an unsorted glob). Throws zsad::Error naming the file, k or the missing name.
ShotSelection shots_from_list(const std::string& cls, const std::vector<data::Sample>& candidates, int64_t k,
                              const std::string& path, int64_t run = 0);

// "{cls}" in the pattern replaced by the class name.
std::string shot_list_path(const std::string& pattern, const std::string& cls);

// Class sharding: each class goes to exactly one rank, balancing the summed image counts
// (longest-processing-time greedy: classes by decreasing count, ties by name, each to the least
// loaded rank, ties to the lowest rank). Returns the rank of every class (same order as the input).
std::vector<int> shard_classes(const std::vector<std::string>& classes, const std::vector<int64_t>& image_counts,
                               int world_size);

// The classes of one rank, in input order.
std::vector<std::string> classes_of_rank(const std::vector<std::string>& classes, const std::vector<int>& assignment,
                                         int rank);

}  // namespace zsad::models::apt
