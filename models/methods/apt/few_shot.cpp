#include "models/methods/apt/few_shot.h"

#include <algorithm>
#include <fstream>
#include <numeric>
#include <sstream>

#include "common/error.h"
#include "common/fnv1a.h"
#include "data/rng.h"

namespace zsad::models::apt {
namespace {

std::string stem(const std::string& path) {
  const auto slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const auto dot = name.find_last_of('.');
  return dot == std::string::npos ? name : name.substr(0, dot);
}

}  // namespace

std::vector<data::Sample> normal_train_samples(const data::Meta& meta, const std::string& cls) {
  std::vector<data::Sample> out;
  auto it = meta.train.samples.find(cls);
  if (it == meta.train.samples.end()) return out;
  for (const auto& s : it->second)
    if (s.anomaly == 0) out.push_back(s);
  return out;
}

ShotSelection sample_shots(const std::string& cls, const std::vector<data::Sample>& candidates, int64_t k,
                           uint64_t seed) {
  if (k < 1) throw Error("method.apt.shots: expected >= 1, got " + std::to_string(k));
  if (static_cast<int64_t>(candidates.size()) < k)
    throw Error("class '" + cls + "' has " + std::to_string(candidates.size()) + " normal images in its support set, fewer than " +
                std::to_string(k) + " shots (raise eval.datasets.<name>.shots, or give zsad predict more --support images)");
  std::vector<int64_t> order(candidates.size());
  std::iota(order.begin(), order.end(), 0);
  data::Rng rng(data::mix_seed(seed, fnv1a64(cls), 0x5407));
  rng.shuffle(order.begin(), order.end());
  ShotSelection s;
  s.class_name = cls;
  s.indices.assign(order.begin(), order.begin() + k);
  for (auto i : s.indices) s.files.push_back(candidates[i].img_path);
  return s;
}

std::map<int64_t, std::vector<std::vector<std::string>>> read_shot_list(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open the shot-list file");
  std::map<int64_t, std::vector<std::vector<std::string>>> out;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const auto hash = line.find('#'), colon = line.find(':');
    if (hash == std::string::npos || colon == std::string::npos || colon < hash)
      throw Error(path + ":" + std::to_string(lineno) + ": expected '#k: name ...', got '" + line + "'");
    int64_t k = 0;
    try {
      k = std::stoll(line.substr(hash + 1, colon - hash - 1));
    } catch (const std::exception&) {
      throw Error(path + ":" + std::to_string(lineno) + ": shot count is not an integer in '" + line + "'");
    }
    std::istringstream is(line.substr(colon + 1));
    std::vector<std::string> names;
    for (std::string n; is >> n;) names.push_back(n);
    if (static_cast<int64_t>(names.size()) != k)
      throw Error(path + ":" + std::to_string(lineno) + ": '#" + std::to_string(k) + ":' lists " +
                  std::to_string(names.size()) + " names");
    out[k].push_back(names);
  }
  return out;
}

ShotSelection shots_from_list(const std::string& cls, const std::vector<data::Sample>& candidates, int64_t k,
                              const std::string& path, int64_t run) {
  const auto lists = read_shot_list(path);
  auto it = lists.find(k);
  if (it == lists.end() || it->second.empty()) throw Error(path + ": no '#" + std::to_string(k) + ":' line");
  const auto& names = it->second[static_cast<size_t>(run) % it->second.size()];
  ShotSelection s;
  s.class_name = cls;
  for (const auto& n : names) {
    int64_t found = -1;
    for (size_t i = 0; i < candidates.size(); ++i)
      if (stem(candidates[i].img_path) == stem(n)) {
        found = static_cast<int64_t>(i);
        break;
      }
    if (found < 0) throw Error(path + ": shot '" + n + "' is not a normal training image of class '" + cls + "'");
    if (std::find(s.indices.begin(), s.indices.end(), found) != s.indices.end())
      throw Error(path + ": shot '" + n + "' listed twice for k=" + std::to_string(k));
    s.indices.push_back(found);
    s.files.push_back(candidates[found].img_path);
  }
  return s;
}

std::string shot_list_path(const std::string& pattern, const std::string& cls) {
  std::string out = pattern;
  for (size_t p; (p = out.find("{cls}")) != std::string::npos;) out.replace(p, 5, cls);
  return out;
}

std::vector<int> shard_classes(const std::vector<std::string>& classes, const std::vector<int64_t>& image_counts,
                               int world_size) {
  if (world_size < 1) throw Error("class sharding: world size " + std::to_string(world_size) + " < 1");
  if (classes.size() != image_counts.size())
    throw Error("class sharding: " + std::to_string(classes.size()) + " classes but " +
                std::to_string(image_counts.size()) + " image counts");
  std::vector<size_t> order(classes.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (image_counts[a] != image_counts[b]) return image_counts[a] > image_counts[b];
    return classes[a] < classes[b];
  });
  std::vector<int64_t> load(world_size, 0);
  std::vector<int> rank(classes.size(), -1);
  for (size_t i : order) {
    int best = 0;
    for (int r = 1; r < world_size; ++r)
      if (load[r] < load[best]) best = r;
    rank[i] = best;
    load[best] += image_counts[i];
  }
  return rank;
}

std::vector<std::string> classes_of_rank(const std::vector<std::string>& classes, const std::vector<int>& assignment,
                                         int rank) {
  std::vector<std::string> out;
  for (size_t i = 0; i < classes.size(); ++i)
    if (assignment[i] == rank) out.push_back(classes[i]);
  return out;
}

}  // namespace zsad::models::apt
