#include "models/methods/apt/apt_method.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <unistd.h>

#include "common/error.h"
#include "models/methods/apt/apt_components.h"
#include "models/methods/apt/few_shot.h"

namespace zsad::models::apt {
namespace {

namespace fs = std::filesystem;

// Keys of the method glue, not of the model (AptOptions).
const char kShardKey[] = "shard_classes";
const char kStateDirKey[] = "state_dir";
const char kTimeoutKey[] = "gather_timeout_s";

bool glue_key(const std::string& k) { return k == kShardKey || k == kStateDirKey || k == kTimeoutKey; }

// method.apt.* (lists flattened as key.# / key.N by OptionMap) -> AptOptions.
AptOptions parse(const OptionMap& all) {
  const OptionMap o = all.sub("method.apt");
  AptOptions a;
  std::set<std::string> lists;
  for (const auto& [k, v] : o.values) {
    const auto hash = k.find(".#");
    if (hash != std::string::npos) lists.insert(k.substr(0, hash));
  }
  for (const auto& [k, v] : o.values) {
    if (k.find('.') != std::string::npos || glue_key(k) || lists.count(k)) continue;
    if (v == "null" || v == "~") {
      if (k == "shot_list") a.shot_list.clear();
      continue;
    }
    set_apt_option(a, k, v);
  }
  for (const auto& k : lists) {
    std::string text = "[";
    const auto items = o.list(k);
    for (size_t i = 0; i < items.size(); ++i) text += (i ? "," : "") + items[i];
    set_apt_option(a, k, text + "]");
  }
  a.validate();
  return a;
}

std::string safe(const std::string& s) {
  std::string o = s;
  for (auto& c : o)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) c = '_';
  return o;
}

void put_tensor(std::ofstream& f, const std::string& name, const at::Tensor& t) {
  auto c = t.detach().to(at::kFloat).contiguous().cpu();
  const uint32_t n = static_cast<uint32_t>(name.size()), nd = static_cast<uint32_t>(c.dim());
  f.write(reinterpret_cast<const char*>(&n), 4);
  f.write(name.data(), n);
  f.write(reinterpret_cast<const char*>(&nd), 4);
  for (auto s : c.sizes()) {
    const int64_t d = s;
    f.write(reinterpret_cast<const char*>(&d), 8);
  }
  f.write(reinterpret_cast<const char*>(c.data_ptr<float>()), static_cast<std::streamsize>(c.numel() * 4));
}

}  // namespace

void write_class_state(const std::string& path, const AptClassState& s) {
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw Error(tmp + ": cannot write the APT class state");
    f.write("ZAPT1\n", 6);
    const uint32_t n = static_cast<uint32_t>(s.class_name.size());
    f.write(reinterpret_cast<const char*>(&n), 4);
    f.write(s.class_name.data(), n);
    put_tensor(f, "t_n", s.t_n);
    put_tensor(f, "t_a", s.t_a);
    put_tensor(f, "ctx", s.ctx);
    put_tensor(f, "ctx_abnormal", s.ctx_abnormal);
    put_tensor(f, "meta_n", s.meta_n);
    put_tensor(f, "meta_a", s.meta_a);
    put_tensor(f, "meta_n0", s.meta_n0);
    put_tensor(f, "meta_a0", s.meta_a0);
    for (size_t i = 0; i < s.banks.size(); ++i) put_tensor(f, "bank" + std::to_string(i), s.banks[i]);
    f.write("END\n", 4);
    if (!f) throw Error(tmp + ": write failed");
  }
  fs::rename(tmp, path);  // atomic: readers never see a partial file
}

AptClassState read_class_state(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open the APT class state");
  char magic[6];
  f.read(magic, 6);
  if (std::string(magic, 6) != "ZAPT1\n") throw Error(path + ": not an APT class state file");
  auto get_str = [&](uint32_t n) {
    std::string s(n, '\0');
    f.read(&s[0], n);
    return s;
  };
  uint32_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 4);
  AptClassState s;
  s.class_name = get_str(n);
  std::map<std::string, at::Tensor> t;
  while (f) {
    uint32_t len = 0;
    f.read(reinterpret_cast<char*>(&len), 4);
    if (!f) break;
    const std::string name = get_str(len);
    if (name.rfind("END", 0) == 0 || len > 1024) break;
    uint32_t nd = 0;
    f.read(reinterpret_cast<char*>(&nd), 4);
    std::vector<int64_t> dims(nd);
    for (auto& d : dims) f.read(reinterpret_cast<char*>(&d), 8);
    auto x = at::empty(dims, at::kFloat);
    f.read(reinterpret_cast<char*>(x.data_ptr<float>()), static_cast<std::streamsize>(x.numel() * 4));
    if (!f) throw Error(path + ": truncated APT class state (tensor '" + name + "')");
    t[name] = x;
  }
  for (const char* k : {"t_n", "t_a", "ctx", "ctx_abnormal", "meta_n", "meta_a", "meta_n0", "meta_a0"})
    if (!t.count(k)) throw Error(path + ": APT class state lacks '" + std::string(k) + "'");
  s.t_n = t["t_n"];
  s.t_a = t["t_a"];
  s.ctx = t["ctx"];
  s.ctx_abnormal = t["ctx_abnormal"];
  s.meta_n = t["meta_n"];
  s.meta_a = t["meta_a"];
  s.meta_n0 = t["meta_n0"];
  s.meta_a0 = t["meta_a0"];
  for (size_t i = 0; t.count("bank" + std::to_string(i)); ++i) s.banks.push_back(t["bank" + std::to_string(i)]);
  return s;
}

std::vector<MethodKey> apt_method_keys() {
  std::vector<MethodKey> out;
  for (const auto& k : apt_option_keys()) {
    std::string def = k.default_value;
    if (k.type == "string" && def.size() >= 2 && def.front() == '"') def = def.substr(1, def.size() - 2);
    out.push_back({"method.apt." + k.name, k.type, def, "[" + k.status + "] " + k.help, k.choices});
  }
  out.push_back({std::string("method.apt.") + kShardKey, "bool", "true",
                 "[impl] with several ranks, train each class on one rank only (balanced), gather the states", {}});
  out.push_back({std::string("method.apt.") + kStateDirKey, "string", "null",
                 "[impl] directory of the per-class states shared by the ranks (null: <run dir>/apt, <--out>/apt under zsad predict; ./apt_state without either)",
                 {}});
  out.push_back({std::string("method.apt.") + kTimeoutKey, "float", "3600",
                 "[impl] seconds a rank waits for another rank's class state", {}});
  return out;
}

AptMethod::AptMethod(const OptionMap& options) : base_(options) {
  clip_ = build_clip_model(options);
  weights_ = options.str("model.weights");
  tokenize_ = make_text_tokenizer(options, clip_->cfg.context_length, clip_->cfg.vocab_size);
  seed_ = static_cast<uint64_t>(options.integer("seed", 0));
  shard_ = options.flag(std::string("method.apt.") + kShardKey, true);
  gather_timeout_s_ = options.real(std::string("method.apt.") + kTimeoutKey, 3600.0);
  state_dir_option_ = options.str(std::string("method.apt.") + kStateDirKey);
  AptOptions o = parse(options);
  if (!options.has("method.apt.vv_depth") && options.has("model.vv_depth"))
    o.vv_depth = options.integer("model.vv_depth", -1);
  model_ = std::make_unique<AptModel>(o, clip_, tokenize_);
  model_->log = [this](const std::string& line) { std::cout << "[apt rank " << rank_ << "] " << line << std::endl; };
}

std::string AptMethod::display_name() const {
  // Variants and k are part of the name so that leaderboard rows separate them.
  const auto& o = model_->options();
  std::string base = "APT";
  if (o.fusion == ScoreFusion::kVisual) base = "APT memory bank only";
  else if (!o.train) base = "APT untrained prompts";
  else if (o.smgs_mode == SmgsMode::kNone) base = "APT w/o SMGS";
  return base + " (k=" + std::to_string(o.shots) + ")";
}

int64_t AptMethod::input_size() const { return clip_->cfg.input_size(); }

void AptMethod::begin_dataset(const DatasetContext& ctx) {
  // The evaluation says which rank this is (RANK/WORLD_SIZE exist only under zsad launch and
  // torchrun, not under srun or mpirun) and where the run lives (the ranks exchange class states there).
  rank_ = ctx.rank;
  world_ = std::max(1, ctx.world_size);
  if (!state_dir_option_.empty()) state_root_ = state_dir_option_;
  else if (!ctx.run_dir.empty()) state_root_ = ctx.run_dir + "/apt";
  else state_root_ = "apt_state";
  OptionMap over;
  for (const auto& [k, v] : ctx.options.values) over.values["method.apt." + k] = v;
  if (!over.values.empty()) {
    AptOptions o = parse(base_.merged(over));
    o.vv_depth = model_->options().vv_depth;
    auto log = model_->log;
    model_ = std::make_unique<AptModel>(o, clip_, tokenize_);
    model_->log = log;
  }
  classes_ = ctx.classes;
  mine_.clear();
  ddp_ = model_->options().class_parallel == ClassParallel::kDdp;
  if (ddp_) {
    // Every class on every rank, its training batch split over the ranks (AptModel::fit_class).
    AptParallel p;
    if (ctx.world_size > 1 && ctx.allreduce_sum) {
      p.rank = ctx.rank;
      p.world_size = ctx.world_size;
      p.allreduce_sum = ctx.allreduce_sum;
    } else if (world_ > 1) {
      std::cout << "[apt rank " << rank_ << "] class_parallel ddp without the engine's communicator: every rank "
                << "trains every class on the whole batch" << std::endl;
    }
    model_->set_parallel(p);
    assignment_.assign(classes_.size(), -1);
    for (const auto& c : classes_) mine_.insert(c);
    dataset_dir_ = state_root_ + "/" + safe(ctx.name.empty() ? "dataset" : ctx.name);
    fs::create_directories(dataset_dir_);
    if (p.rank == 0) {
      std::ofstream f(dataset_dir_ + "/shards.txt");
      f << "# class_parallel ddp: every class trained by all " << p.world_size << " ranks (rank -1 = all)\n";
      for (const auto& c : classes_) f << c << " -1\n";
    }
    std::cout << "apt " << ctx.name << ": rank " << p.rank << "/" << p.world_size << " trains all " << classes_.size()
              << " classes data-parallel (class_parallel ddp)" << std::endl;
    return;
  }
  model_->set_parallel(AptParallel{});
  // Every class costs the same (k shots, the same number of steps): equal weights.
  const std::vector<int64_t> weights(classes_.size(), model_->options().shots);
  const int world = shard_ ? world_ : 1;
  assignment_ = shard_classes(classes_, weights, world);
  for (const auto& c : classes_of_rank(classes_, assignment_, world > 1 ? rank_ : 0)) mine_.insert(c);
  {
    // Every class on exactly one rank (shard_classes guarantees it; a violation would train a
    // class twice or never, so it is checked on every run).
    std::map<std::string, int> owners;
    for (int r = 0; r < world; ++r)
      for (const auto& c : classes_of_rank(classes_, assignment_, r)) ++owners[c];
    for (const auto& c : classes_)
      if (owners[c] != 1)
        throw Error("apt: class '" + c + "' is assigned to " + std::to_string(owners[c]) + " ranks (expected exactly 1)");
  }
  dataset_dir_ = state_root_ + "/" + safe(ctx.name.empty() ? "dataset" : ctx.name);
  fs::create_directories(dataset_dir_);
  if (rank_ == 0) {
    std::ofstream f(dataset_dir_ + "/shards.txt");
    f << "# class rank (world " << world << ")\n";
    for (size_t i = 0; i < classes_.size(); ++i) f << classes_[i] << " " << assignment_[i] << "\n";
  }
  std::ostringstream msg;
  msg << "apt " << ctx.name << ": rank " << rank_ << "/" << world_ << " trains " << mine_.size() << " of "
      << classes_.size() << " classes:";
  for (const auto& c : mine_) msg << " " << c;
  std::cout << msg.str() << std::endl;
}

std::string AptMethod::class_file(const std::string& cls) const {
  return dataset_dir_ + "/class_" + safe(cls) + ".seed" + std::to_string(seed_) + ".bin";
}

void AptMethod::prepare_class(const SupportSet& support) {
  const auto& o = model_->options();
  if (!support.images.defined() || support.images.size(0) == 0)
    throw Error("apt: class '" + support.class_name +
                "' has no support set; APT is few-shot: give it normal images of the class (zsad eval/run: "
                "eval.datasets.<name>.shots >= method.apt.shots; zsad predict: --support)");
  if (!mine_.count(support.class_name)) return;  // another rank trains it
  const int64_t n = support.images.size(0);
  // The engine supplies n normal training images (with their file names); k of them are drawn by
  // seed, or named in a WinCLIP shot list (matched by file stem).
  const bool named = static_cast<int64_t>(support.names.size()) == n;
  std::vector<data::Sample> cands(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    cands[i].img_path = named ? support.names[i]
                              : std::to_string(i < static_cast<int64_t>(support.indices.size()) ? support.indices[i] : i);
  ShotSelection sel;
  if (!o.shot_list.empty()) {
    if (!named)
      throw Error("method.apt.shot_list: the support set of class '" + support.class_name +
                  "' carries no file names (the engine's support pool is needed)");
    const std::string path = shot_list_path(o.shot_list, support.class_name);
    const int64_t run = o.shot_list_run < 0 ? static_cast<int64_t>(seed_) : o.shot_list_run;
    try {
      sel = shots_from_list(support.class_name, cands, o.shots, path, run);
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + " (the support pool is the first " + std::to_string(n) +
                  " normal training images: raise eval.datasets.<name>.shots to include the listed files)");
    }
  } else if (n == o.shots) {
    sel.class_name = support.class_name;
    for (int64_t i = 0; i < n; ++i) {
      sel.indices.push_back(i);
      sel.files.push_back(cands[i].img_path);
    }
  } else {
    const uint64_t shot_seed = o.shot_seed < 0 ? seed_ : static_cast<uint64_t>(o.shot_seed);
    sel = sample_shots(support.class_name, cands, o.shots, shot_seed);
  }
  auto idx = at::tensor(sel.indices, at::kLong);
  auto shots = support.images.index_select(0, idx).to(at::kFloat);
  {
    std::ofstream f(dataset_dir_ + "/shots.rank" + std::to_string(rank_) + ".txt", std::ios::app);
    f << support.class_name;
    for (const auto& s : sel.files) f << " " << s;
    f << "\n";
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto& st = model_->fit_class(support.class_name, shots, seed_);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[apt rank " << rank_ << "] class " << support.class_name << ": " << o.shots << " shots, "
            << st.history.size() << " steps in " << secs << " s" << std::endl;
  if (!ddp_ && shard_ && world_ > 1) write_class_state(class_file(support.class_name), st);
}

void AptMethod::ensure_class(const std::string& cls) {
  if (model_->has_class(cls)) return;
  const std::string path = class_file(cls);
  const auto t0 = std::chrono::steady_clock::now();
  while (!fs::exists(path)) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > gather_timeout_s_)
      throw Error("apt: no state for class '" + cls + "' after " + std::to_string(gather_timeout_s_) + " s (" + path +
                  "; is its rank alive?)");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  AptClassState s = read_class_state(path);
  if (s.class_name != cls) throw Error(path + ": holds class '" + s.class_name + "', expected '" + cls + "'");
  model_->set_class_state(std::move(s));
}

MethodOutput AptMethod::infer(const MethodBatch& batch) {
  at::NoGradGuard ng;
  const int64_t B = batch.images.size(0);
  if (static_cast<int64_t>(batch.class_names.size()) != B)
    throw Error("apt: batch of " + std::to_string(B) + " images carries " + std::to_string(batch.class_names.size()) +
                " class names (APT scores each image with its class's prompts)");
  const at::Tensor images = batch.images.to(at::kFloat);
  const auto feats = model_->encode(model_->options().bgr_test_quirk ? bgr_as_rgb(images) : images);
  MethodOutput out;
  out.image_scores = at::empty({B}, at::kFloat);
  const int64_t h = model_->grid();
  out.anomaly_maps = at::empty({B, h, h}, at::kFloat);
  std::map<std::string, std::vector<int64_t>> groups;
  for (int64_t i = 0; i < B; ++i) groups[batch.class_names[i]].push_back(i);
  for (const auto& [cls, rows] : groups) {
    ensure_class(cls);
    auto idx = at::tensor(rows, at::kLong);
    AptFeatures f;
    f.global = feats.global.index_select(0, idx);
    f.patches = feats.patches.index_select(0, idx);
    for (const auto& l : feats.layers) f.layers.push_back(l.index_select(0, idx));
    auto s = model_->score_features(model_->class_state(cls), f);
    out.image_scores.index_copy_(0, idx, s.image_scores.to(at::kFloat));
    out.anomaly_maps.index_copy_(0, idx, s.anomaly_maps.to(at::kFloat));
  }
  return out;
}

std::map<std::string, at::Tensor> AptMethod::state_dict() {
  std::map<std::string, at::Tensor> out;
  for (const auto& [cls, s] : model_->classes()) {
    out[cls + "/t_n"] = s.t_n;
    out[cls + "/t_a"] = s.t_a;
    out[cls + "/ctx"] = s.ctx;
    out[cls + "/ctx_abnormal"] = s.ctx_abnormal;
    out[cls + "/meta_n"] = s.meta_n;
    out[cls + "/meta_a"] = s.meta_a;
  }
  return out;
}

void AptMethod::load_state_dict(const std::map<std::string, at::Tensor>& state, bool strict) {
  // Class models are trained from the support set at evaluation; a checkpoint adds nothing.
  if (strict && !state.empty())
    throw Error("apt: per-class prompts are trained in prepare_class; checkpoint key '" + state.begin()->first +
                "' is not loaded; APT evaluates without a checkpoint (drop eval.checkpoint)");
}

}  // namespace zsad::models::apt

namespace zsad::models {
void register_apt_method() {
  MethodInfo info;
  info.name = "apt";
  info.display_name = "APT";
  info.doc = "APT few-shot adaptive prompt tuning (arXiv 2508.16157), a labelled reconstruction (docs/apt.md)";
  info.keys = apt::apt_method_keys();
  info.make = [](const OptionMap& o) { return std::make_unique<apt::AptMethod>(o); };
  register_method(std::move(info));
}
}  // namespace zsad::models
