// APT across ranks and the support set's names: data parallelism of one class (class_parallel
// ddp) with simulated ranks (threads behind an in-process allreduce) gives the single-process
// prompts; a WinCLIP shot list selects the named support images.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include "common/error.h"
#include "models/clip/clip_model.h"
#include "models/methods/apt/apt_components.h"
#include "models/methods/apt/apt_method.h"
#include "models/methods/apt/apt_model.h"
#include "models/methods/method.h"
#include "apt_test_util.h"
#include "clip_test_util.h"
#include "in_process_group.h"

namespace apt = zsad::models::apt;
namespace fs = std::filesystem;
using zsad::models::OptionMap;

namespace {

using zsad::test::apt::tiny_clip;
using zsad::test::apt::hash_tok;
using zsad::test::apt::tiny_apt_method_options;
using zsad::test::apt::shots;
using zsad::test::apt::max_diff;

// Every rank deposits a tensor; all receive the element-wise sum (summed in rank order).
class InProcessSum : public zsad::test::InProcessExchange {
 public:
  using InProcessExchange::InProcessExchange;
  void allreduce(int rank, at::Tensor& t) {
    auto all = exchange(rank, t);
    at::Tensor sum = all[0].clone();
    for (size_t r = 1; r < all.size(); ++r) sum += all[r];
    t.copy_(sum);
  }
  std::function<void(at::Tensor&)> hook(int rank) {
    return [this, rank](at::Tensor& t) { allreduce(rank, t); };
  }
  int64_t calls() const { return collectives(); }
};

apt::AptOptions ddp_options() {
  apt::AptOptions o = zsad::test::apt::small_adam_options();
  o.variants_per_shot = 2;  // global batch 2 clean + 4 synthetic
  return o;
}

// Trains one class on `world` simulated ranks; returns every rank's state.
std::vector<apt::AptClassState> fit_on_ranks(const apt::AptOptions& o, int world, const at::Tensor& x) {
  std::vector<std::unique_ptr<apt::AptModel>> models;
  for (int r = 0; r < world; ++r) models.push_back(std::make_unique<apt::AptModel>(o, tiny_clip(), hash_tok()));
  InProcessSum group(world);
  for (int r = 0; r < world; ++r) {
    apt::AptParallel p;
    p.rank = r;
    p.world_size = world;
    p.allreduce_sum = group.hook(r);
    models[r]->set_parallel(p);
  }
  std::vector<apt::AptClassState> out(world);
  std::vector<std::string> errors(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        out[r] = models[r]->fit_class("metal_nut", x, 7);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  EXPECT_GT(group.calls(), 0);
  return out;
}

void expect_same_training(const apt::AptClassState& one, const apt::AptClassState& many, const std::string& what) {
  EXPECT_LT(max_diff(one.ctx, many.ctx), 1e-5) << what;
  EXPECT_LT(max_diff(one.ctx_abnormal, many.ctx_abnormal), 1e-5) << what;
  EXPECT_LT(max_diff(one.meta_n, many.meta_n), 1e-5) << what;
  EXPECT_LT(max_diff(one.meta_a, many.meta_a), 1e-5) << what;
  EXPECT_LT(max_diff(one.t_a, many.t_a), 1e-5) << what;
  ASSERT_EQ(one.history.size(), many.history.size()) << what;
  for (size_t s = 0; s < one.history.size(); ++s)
    for (const auto& [k, v] : one.history[s]) {
      ASSERT_TRUE(many.history[s].count(k)) << what << " step " << s << " lacks " << k;
      EXPECT_NEAR(many.history[s].at(k), v, 1e-5 * std::max(1.0, std::abs(v))) << what << " step " << s << " " << k;
    }
}

}  // namespace

TEST(AptSynthesis, VariantsEqualTheBatchRowsTheyName) {
  at::manual_seed(3);
  auto imgs = at::rand({2, 3, 32, 32});
  const auto cfg = apt::synthesis_config(apt::AptOptions{});
  auto all = apt::synthesize_batch(imgs, at::Tensor(), 3, cfg, 11, 1, 5);
  auto some = apt::synthesize_variants(imgs, at::Tensor(), 3, cfg, 11, 1, 5, {4, 1, 5});
  ASSERT_EQ(some.images.size(0), 3);
  EXPECT_TRUE(at::equal(some.images[0], all.images[4]));
  EXPECT_TRUE(at::equal(some.images[1], all.images[1]));
  EXPECT_TRUE(at::equal(some.masks[2], all.masks[5]));
  EXPECT_FALSE(at::equal(some.images[0], all.images[1]));
  EXPECT_THROW(apt::synthesize_variants(imgs, at::Tensor(), 3, cfg, 11, 1, 5, {6}), zsad::Error);
}

TEST(AptDdp, TwoRanksGiveTheOneRankPromptsProjectionAndKl) {
  const auto o = ddp_options();
  const auto x = shots(2, 32);
  apt::AptModel single(o, tiny_clip(), hash_tok());
  const auto one = single.fit_class("metal_nut", x, 7);
  // The prompts did move (the comparison is not between two untouched initialisations).
  apt::AptOptions untrained = o;
  untrained.train = false;
  apt::AptModel init(untrained, tiny_clip(), hash_tok());
  EXPECT_GT(max_diff(init.fit_class("metal_nut", x, 7).ctx, one.ctx), 1e-2);

  const auto two = fit_on_ranks(o, 2, x);
  for (int r = 0; r < 2; ++r) {
    expect_same_training(one, two[r], "rank " + std::to_string(r) + "/2");
    // Each rank encoded only its share: 6 images, 3 on each rank.
    for (const auto& h : two[r].history) EXPECT_EQ(h.at("local_batch"), 3.0);
  }
  EXPECT_TRUE(at::equal(two[0].ctx, two[1].ctx));  // the ranks stay bit-identical
}

TEST(AptDdp, ThreeRanksGiveTheOneRankPromptsAdditiveL2) {
  auto o = ddp_options();
  o.smgs_loss = apt::SmgsLoss::kL2;  // sample-independent guidance: counted once over the ranks
  o.smgs_grad = apt::SmgsGrad::kBoth;
  o.optimizer = apt::Optimizer::kSgd;
  o.lr = 0.5;
  const auto x = shots(2, 32);
  apt::AptModel single(o, tiny_clip(), hash_tok());
  const auto one = single.fit_class("metal_nut", x, 7);
  const auto three = fit_on_ranks(o, 3, x);
  for (int r = 0; r < 3; ++r) {
    expect_same_training(one, three[r], "rank " + std::to_string(r) + "/3");
    for (const auto& h : three[r].history) EXPECT_EQ(h.at("local_batch"), 2.0);
  }
  // More ranks than images in the batch is an error naming the key (before any collective).
  apt::AptModel crowded(o, tiny_clip(), hash_tok());
  crowded.set_parallel({0, 7, [](at::Tensor&) {}});
  try {
    crowded.fit_class("metal_nut", x, 7);
    ADD_FAILURE() << "7 ranks for 6 images were accepted";
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find("class_parallel"), std::string::npos) << e.what();
  }
}

// The latent synthesis: a rank perturbs the tokens of its variants' shots, whichever rank holds
// those shots' clean rows.
TEST(AptDdp, TwoRanksLatentSynthesis) {
  auto o = ddp_options();
  o.synth_space = apt::SynthSpace::kLatent;
  const auto x = shots(2, 32);
  apt::AptModel single(o, tiny_clip(), hash_tok());
  const auto one = single.fit_class("metal_nut", x, 7);
  apt::AptOptions pixel = ddp_options();
  apt::AptModel other(pixel, tiny_clip(), hash_tok());
  EXPECT_GT(max_diff(other.fit_class("metal_nut", x, 7).ctx, one.ctx), 1e-3) << "latent trained like pixel";
  const auto two = fit_on_ranks(o, 2, x);
  for (int r = 0; r < 2; ++r) expect_same_training(one, two[r], "rank " + std::to_string(r) + "/2");
}

TEST(AptDdp, TwoRanksLearnableMetaPromptOuterStepsToo) {
  auto o = ddp_options();
  o.smgs_mode = apt::SmgsMode::kLearnable;
  o.smgs_meta_lr_scale = 1.0;
  const auto x = shots(2, 32);
  apt::AptModel single(o, tiny_clip(), hash_tok());
  const auto one = single.fit_class("metal_nut", x, 7);
  EXPECT_GT(max_diff(one.meta_a, one.meta_a0), 1e-4);  // the outer steps moved the meta-prompt
  const auto two = fit_on_ranks(o, 2, x);
  for (int r = 0; r < 2; ++r) expect_same_training(one, two[r], "rank " + std::to_string(r) + "/2");
}

TEST(AptDdp, MethodTrainsEveryClassOnAllRanksThroughTheDatasetContext) {
  const std::string dir = "/tmp/zsad_apt_ddp_" + std::to_string(::getpid());
  auto options = [&](const std::string& parallel) {
    OptionMap o = tiny_apt_method_options("5", "2");
    o.set("method.apt.init_std", "1.0");
    o.set("method.apt.optimizer", "adam");
    o.set("method.apt.lr", "0.05");
    o.set("method.apt.class_parallel", parallel);
    o.set("method.apt.state_dir", dir + "_" + parallel);
    return o;
  };
  at::manual_seed(21);
  zsad::models::SupportSet sup;
  sup.class_name = "gear";
  sup.images = apt::clip_normalize(at::rand({3, 3, 32, 32}));
  sup.indices = {0, 1, 2};
  sup.names = {"g/train/good/000.png", "g/train/good/001.png", "g/train/good/002.png"};

  auto single = zsad::models::make_method(options("shard"));
  zsad::models::DatasetContext ctx1;
  ctx1.name = "d";
  ctx1.classes = {"gear"};
  single->begin_dataset(ctx1);
  single->prepare_class(sup);
  const auto ref = dynamic_cast<apt::AptMethod&>(*single).model().class_state("gear").ctx.clone();

  std::vector<std::unique_ptr<zsad::models::Method>> ranks;
  for (int r = 0; r < 2; ++r) ranks.push_back(zsad::models::make_method(options("ddp")));
  InProcessSum group(2);
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      try {
        zsad::models::DatasetContext ctx = ctx1;
        ctx.rank = r;
        ctx.world_size = 2;
        ctx.allreduce_sum = group.hook(r);
        ranks[r]->begin_dataset(ctx);
        ranks[r]->prepare_class(sup);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(errors[r], "") << "rank " << r;
    auto& m = dynamic_cast<apt::AptMethod&>(*ranks[r]);
    ASSERT_TRUE(m.model().has_class("gear")) << "rank " << r;  // trained here, not gathered
    EXPECT_LT(max_diff(m.model().class_state("gear").ctx, ref), 1e-5) << "rank " << r;
    EXPECT_EQ(m.model().class_state("gear").history.front().at("local_batch"), 3.0);
  }
  EXPECT_GT(group.calls(), 0);
  std::ifstream shards(dir + "_ddp/d/shards.txt");
  std::string first;
  std::getline(shards, first);
  EXPECT_NE(first.find("ddp"), std::string::npos) << first;
  fs::remove_all(dir + "_ddp");
  fs::remove_all(dir + "_shard");
}

TEST(AptShotList, SelectsTheNamedSupportImages) {
  const std::string dir = "/tmp/zsad_apt_shotlist_" + std::to_string(::getpid());
  fs::create_directories(dir + "/gear");
  {
    std::ofstream f(dir + "/gear/selected_samples_per_run.txt");
    f << "#1: 004\n#2: 003 001\n#1: 002\n#2: 000 004\n";
  }
  auto make = [&](const std::string& run) {
    OptionMap o = tiny_apt_method_options("0", "0");
    o.set("method.apt.shot_list", dir + "/{cls}/selected_samples_per_run.txt");
    o.set("method.apt.shot_list_run", run);
    o.set("method.apt.state_dir", dir + "/state" + run);
    return zsad::models::make_method(o);
  };
  at::manual_seed(5);
  zsad::models::SupportSet sup;
  sup.class_name = "gear";
  sup.images = apt::clip_normalize(at::rand({5, 3, 32, 32}));
  sup.indices = {10, 11, 12, 13, 14};
  for (int i = 0; i < 5; ++i) sup.names.push_back("synth/gear/train/good/00" + std::to_string(i) + ".png");
  zsad::models::DatasetContext ctx;
  ctx.name = "d";
  ctx.classes = {"gear"};

  for (const auto& [run, picks] : std::vector<std::pair<std::string, std::vector<int64_t>>>{{"0", {3, 1}}, {"1", {0, 4}}}) {
    auto m = make(run);
    m->begin_dataset(ctx);
    m->prepare_class(sup);
    auto& am = dynamic_cast<apt::AptMethod&>(*m);
    // The memory bank holds exactly the named shots' features, in the list's order.
    auto f = am.model().encode(sup.images.index_select(0, at::tensor(picks, at::kLong)));
    auto bank = f.layers[0] / f.layers[0].norm(2, {-1}, true);
    EXPECT_LT(max_diff(am.model().class_state("gear").banks[0], bank.reshape({-1, bank.size(-1)})), 1e-6) << "run " << run;
    // The run directory logs the chosen file names.
    std::ifstream log(dir + "/state" + run + "/d/shots.rank0.txt");
    std::string line;
    std::getline(log, line);
    EXPECT_EQ(line, "gear " + sup.names[picks[0]] + " " + sup.names[picks[1]]) << "run " << run;
  }
  // A listed file outside the support pool, and a support set without names, are errors.
  {
    auto m = make("0");
    m->begin_dataset(ctx);
    auto small = sup;
    small.images = sup.images.narrow(0, 0, 3);
    small.indices.resize(3);
    small.names.resize(3);
    try {
      m->prepare_class(small);
      ADD_FAILURE() << "a listed shot outside the pool was accepted";
    } catch (const zsad::Error& e) {
      EXPECT_NE(std::string(e.what()).find("003"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("eval.datasets.<name>.shots"), std::string::npos) << e.what();
    }
    auto nameless = sup;
    nameless.names.clear();
    EXPECT_THROW(m->prepare_class(nameless), zsad::Error);
  }
  fs::remove_all(dir);
}

namespace {

std::string env_or(const char* name, const std::string& def) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : def;
}

// Runs the synthetic APT experiment through the CLI; returns its run directory.
fs::path run_cli(const fs::path& root, const std::string& args) {
  const std::string src = env_or("ZSAD_SOURCE_DIR", "/work/main");
  // Own data root: the synthetic dataset is generated there (never a stale copy in the tree).
  const std::string cmd = "cd " + src + " && ZSAD_OUTPUT_ROOT=" + root.string() +
                          " ZSAD_DATA_ROOT=" + (root.parent_path() / "data").string() + " " +
                          env_or("ZSAD_BINARY", "zsad") +
                          " run apt_synth_fewshot method.apt.epochs=3 seed=1 " + args + " > " +
                          (root / "log.txt").string() + " 2>&1";
  fs::create_directories(root);
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.path().filename() == "synth_objects.json" && e.path().parent_path().filename() == "results")
      return e.path().parent_path().parent_path();
  ADD_FAILURE() << "no results/synth_objects.json under " << root;
  return root;
}

}  // namespace

// Two processes (gloo, launcher local2) training every class data-parallel give the metrics of
// one process: the engine's communicator reaches APT through DatasetContext::allreduce_sum.
TEST(AptDdpCli, TwoProcessRunEqualsOneProcess) {
  const fs::path root = "/tmp/zsad_apt_ddp_cli_" + std::to_string(::getpid());
  const auto one = run_cli(root / "one", "method.apt.class_parallel=ddp launcher=local");
  const auto two = run_cli(root / "two", "method.apt.class_parallel=ddp launcher=local2");
  std::ifstream shards(two / "apt" / "synth_objects" / "shards.txt");
  std::string first;
  std::getline(shards, first);
  EXPECT_NE(first.find("all 2 ranks"), std::string::npos) << first;
  const std::string py = env_or("ZSAD_PYTHON", "/usr/bin/python3");
  const std::string check =
      py + " -c \"import json,sys\n"
           "a=json.load(open(sys.argv[1]))['metrics']; b=json.load(open(sys.argv[2]))['metrics']\n"
           "def flat(d,p=''):\n"
           "  return {p+k: v for k, v in d.items() if isinstance(v,(int,float))} | "
           "{kk: vv for k, v in d.items() if isinstance(v, dict) for kk, vv in flat(v, p+k+'/').items()}\n"
           "fa, fb = flat(a), flat(b)\n"
           "assert len(fa) > 10 and fa.keys() == fb.keys(), (len(fa), fa.keys() ^ fb.keys())\n"
           "bad = [k for k in fa if abs(fa[k]-fb[k]) > 1e-4]\n"
           "assert not bad, [(k, fa[k], fb[k]) for k in bad]\n\" " +
      (one / "results" / "synth_objects.json").string() + " " + (two / "results" / "synth_objects.json").string();
  EXPECT_EQ(std::system(check.c_str()), 0);
  fs::remove_all(root);
}

// Ranks started by mpirun have no RANK/WORLD_SIZE: APT takes its rank from the evaluation and keeps
// its class states in the run directory, so the classes are split between the two processes
// (before, each process trained every class as "rank 0 of 1" and wrote ./apt_state in its cwd).
TEST(AptShardCli, MpirunRanksSplitTheClassesInTheRunDirectory) {
  const fs::path root = "/tmp/zsad_apt_mpirun_" + std::to_string(::getpid());
  const fs::path cwd = root / "cwd", run = root / "run";
  fs::create_directories(cwd);
  const std::string src = env_or("ZSAD_SOURCE_DIR", "/work/main");
  const std::string cmd = "cd " + cwd.string() + " && env -u RANK -u WORLD_SIZE ZSAD_DATA_ROOT=" +
                          (root / "data").string() +
                          " mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS=1 -x ZSAD_DATA_ROOT " +
                          env_or("ZSAD_BINARY", "zsad") + " run " + src +
                          "/experiments/apt_synth_fewshot.yaml method.apt.epochs=2 seed=1 --run-dir " + run.string() +
                          " > " + (root / "log.txt").string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << zsad::test::slurp((root / "log.txt").string());
  const std::string log = zsad::test::slurp((root / "log.txt").string());
  EXPECT_TRUE(fs::exists(run / "results" / "synth_objects.json")) << log;
  EXPECT_FALSE(fs::exists(cwd / "apt_state")) << "class states left in the working directory";
  std::ifstream shards(run / "apt" / "synth_objects" / "shards.txt");
  ASSERT_TRUE(shards.good()) << log;
  std::string header, cls;
  std::getline(shards, header);
  EXPECT_NE(header.find("world 2"), std::string::npos) << header;
  std::map<int, int> per_rank;
  int r = -1;
  while (shards >> cls >> r) ++per_rank[r];
  EXPECT_EQ(per_rank.size(), 2u);   // both ranks own classes
  EXPECT_GT(per_rank[0], 0);
  EXPECT_GT(per_rank[1], 0);
  EXPECT_EQ(per_rank[0] + per_rank[1], 5);  // the preset's 5 classes, each once
  EXPECT_NE(log.find("rank 1/2 trains"), std::string::npos) << log;
  fs::remove_all(root);
}


namespace {

// "key<sep>value" lines of a CSV with a header, keyed by `key_col`, value `val_col`.
std::map<std::string, std::string> csv_columns(const fs::path& file, int key_col, int val_col) {
  std::map<std::string, std::string> out;
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<std::string> cols;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, ',');) cols.push_back(c);
    if (static_cast<int>(cols.size()) > std::max(key_col, val_col)) out[cols[key_col]] = cols[val_col];
  }
  return out;
}

}  // namespace

// `zsad predict` on APT: the --support images are the class's shot pool. Given the pool the
// evaluation uses (the class's first 8 normal training images), it draws the same shots and scores
// the test images exactly as `zsad eval`; its class state stays under --out, not in the cwd.
// Without --support it stops with an error that names the flag.
TEST(AptPredictCli, SupportImagesGiveTheEvaluationsShotsAndScores) {
  const fs::path root = "/tmp/zsad_apt_predict_" + std::to_string(::getpid());
  const fs::path cwd = root / "cwd", run = root / "run", out = root / "pred", data = root / "data";
  fs::create_directories(cwd);
  const std::string exp = env_or("ZSAD_SOURCE_DIR", "/work/main") + "/experiments/apt_synth_fewshot.yaml";
  const std::string zsad = "cd " + cwd.string() + " && ZSAD_DATA_ROOT=" + data.string() + " " +
                           env_or("ZSAD_BINARY", "zsad") + " ";
  const std::string common = " method.apt.epochs=2 seed=1 ";
  const std::string log = (root / "log.txt").string();
  const std::string eval = zsad + "eval " + exp + common + "'+eval.datasets.synth_objects.classes=[gear]' " +
                           "eval.write_scores=true --run-dir " + run.string() + " > " + log + " 2>&1";
  ASSERT_EQ(std::system(eval.c_str()), 0) << eval << "\n" << zsad::test::slurp(log);

  const fs::path gear = data / "synth_objects" / "gear";
  std::vector<std::string> pool;
  for (const auto& e : fs::directory_iterator(gear / "train" / "good")) pool.push_back(e.path().string());
  std::sort(pool.begin(), pool.end());
  ASSERT_GE(pool.size(), 8u);
  pool.resize(8);  // eval.datasets.synth_objects.shots in the experiment
  std::string support;
  for (const auto& p : pool) support += " " + p;

  const std::string predict_base = zsad + "predict " + exp + common + "--images " + (gear / "test").string() +
                                   " --class gear --eval-size 128 --batch-size 8 --out " + out.string();
  const std::string without = predict_base + " > " + log + " 2>&1";
  EXPECT_EQ(WEXITSTATUS(std::system(without.c_str())), 1);
  EXPECT_NE(zsad::test::slurp(log).find("--support"), std::string::npos) << zsad::test::slurp(log);
  EXPECT_FALSE(fs::exists(out / "scores.csv"));

  const std::string with = predict_base + " --support" + support + " > " + log + " 2>&1";
  ASSERT_EQ(std::system(with.c_str()), 0) << with << "\n" << zsad::test::slurp(log);
  EXPECT_FALSE(fs::exists(cwd / "apt_state")) << "class state left in the working directory";

  // The same shots: "gear <file> ..." in both logs (the evaluation names them relative to its root).
  std::ifstream eval_shots(run / "apt" / "synth_objects" / "shots.rank0.txt");
  std::ifstream pred_shots(out / "apt" / "predict" / "shots.rank0.txt");
  ASSERT_TRUE(eval_shots.good() && pred_shots.good());
  std::string cls_e, cls_p, a, b;
  eval_shots >> cls_e;
  pred_shots >> cls_p;
  EXPECT_EQ(cls_e, "gear");
  EXPECT_EQ(cls_p, "gear");
  int n_shots = 0;
  while (eval_shots >> a && pred_shots >> b) {
    EXPECT_EQ((data / "synth_objects" / a).string(), b);
    ++n_shots;
  }
  EXPECT_EQ(n_shots, 4);  // method.apt.shots in the experiment

  // The same scores, image by image (eval: path in column 4, score in 3; predict: path, score).
  const auto by_eval = csv_columns(run / "eval" / "synth_objects" / "image_scores.csv", 4, 3);
  const auto by_pred = csv_columns(out / "scores.csv", 0, 1);
  ASSERT_EQ(by_pred.size(), 20u);
  ASSERT_EQ(by_eval.size(), by_pred.size());
  for (const auto& [path, score] : by_pred) {
    const std::string rel = fs::relative(path, data / "synth_objects").string();
    ASSERT_TRUE(by_eval.count(rel)) << rel;
    EXPECT_EQ(by_eval.at(rel), score) << rel;
  }

  // Again into the same OUT with one image and a repeated --support file: one overlay is left (the
  // earlier 20 are replaced), and the repeat is one shot, not two.
  const std::string one = (gear / "test" / "good" / "000.png").string();
  const std::string again = zsad + "predict " + exp + common + "--images " + one +
                            " --class gear --eval-size 128 --batch-size 8 --out " + out.string() + " --support" +
                            support + " " + pool[0] + " > " + log + " 2>&1";
  ASSERT_EQ(std::system(again.c_str()), 0) << again << "\n" << zsad::test::slurp(log);
  EXPECT_NE(zsad::test::slurp(log).find("1 repeated --support file(s) ignored"), std::string::npos) << zsad::test::slurp(log);
  int overlays = 0;
  for (const auto& e : fs::directory_iterator(out / "overlays")) overlays += e.path().extension() == ".png";
  EXPECT_EQ(overlays, 1);
  EXPECT_EQ(csv_columns(out / "scores.csv", 0, 1).size(), 1u);
  fs::remove_all(root);
}
