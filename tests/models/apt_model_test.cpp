// APT per-class model on a tiny random CLIP with the real BPE tokenizer: training runs and is
// reproducible, the switches change what they should, scoring has the documented shapes/ranges.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <unistd.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "models/clip/clip_model.h"
#include "models/clip/tokenizer.h"
#include "models/methods/apt/apt_components.h"
#include "models/methods/apt/apt_method.h"
#include "models/methods/apt/apt_model.h"
#include "models/methods/cops/cops_clip.h"
#include "apt_test_util.h"

namespace apt = zsad::models::apt;

namespace {

using zsad::test::apt::tiny_clip;
using zsad::test::apt::shots;

std::string vocab() {
  const char* d = std::getenv("ZSAD_SHARED_DIR");
  return std::string(d && *d ? d : "/work/shared") + "/clip/bpe_simple_vocab_16e6.txt.gz";
}

const zsad::models::Tokenizer& tokenizer() {
  static zsad::models::Tokenizer t(vocab());
  return t;
}

apt::AptOptions small_options() {
  apt::AptOptions o;
  o.shots = 2;
  o.epochs = 4;
  o.steps_per_epoch = 2;
  o.memory_layers = {1, 2};
  o.lr = 0.05;
  return o;
}

apt::Tokenize tok() {
  return [](const std::string& s) { return tokenizer().tokenize_padded(s); };
}

}  // namespace

TEST(AptModelTest, TrainsReproduciblyAndScores) {
  auto clip = tiny_clip();
  apt::AptModel a(small_options(), clip, tok()), b(small_options(), clip, tok());
  const int64_t S = a.image_size();
  ASSERT_EQ(S, 32);
  auto x = shots(2, S);
  const auto& sa = a.fit_class("metal_nut", x, 7);
  const auto& sb = b.fit_class("metal_nut", x, 7);
  EXPECT_TRUE(at::equal(sa.ctx, sb.ctx));
  EXPECT_TRUE(at::equal(sa.t_n, sb.t_n));
  EXPECT_TRUE(at::equal(sa.meta_a, sb.meta_a));
  ASSERT_EQ(sa.history.size(), 8u);
  for (const auto& h : sa.history) {
    for (const auto& [k, v] : h) EXPECT_TRUE(std::isfinite(v)) << k;
    EXPECT_TRUE(h.count("guidance"));
    EXPECT_TRUE(h.count("v2t"));
  }
  // Cosine LR per epoch: epoch 0 at the base rate, then lower.
  EXPECT_DOUBLE_EQ(sa.history[0].at("lr"), 0.05);
  EXPECT_LT(sa.history[7].at("lr"), sa.history[0].at("lr"));
  // Memory bank: 2 layers of k*P rows (P = 16), normalised.
  ASSERT_EQ(sa.banks.size(), 2u);
  EXPECT_EQ(sa.banks[0].size(0), 2 * 16);
  EXPECT_NEAR(sa.banks[1].norm(2, {-1}).mean().item<double>(), 1.0, 1e-5);
  // The EMA meta-prompt moved away from its initial anchor but stays unit length.
  EXPECT_GT((sa.meta_a - sa.meta_a0).abs().max().item<double>(), 0.0);
  EXPECT_NEAR(sa.meta_a.norm().item<double>(), 1.0, 1e-5);

  auto test = apt::clip_normalize(at::rand({3, 3, S, S}));
  auto out = a.score("metal_nut", test);
  ASSERT_EQ(out.image_scores.sizes(), (std::vector<int64_t>{3}));
  ASSERT_EQ(out.anomaly_maps.sizes(), (std::vector<int64_t>{3, 4, 4}));
  EXPECT_GT(out.image_scores.min().item<double>(), 0.0);
  EXPECT_LT(out.image_scores.max().item<double>(), 1.0);
  // Harmonic fusion of text and visual maps.
  EXPECT_LT((out.anomaly_maps - 1.0 / (1.0 / out.text_maps + 1.0 / out.visual_maps)).abs().max().item<double>(), 1e-6);
  // A shot itself is at distance 0 from the bank: its visual map is 0 everywhere.
  auto self = a.score("metal_nut", x.narrow(0, 0, 1));
  EXPECT_LT(self.visual_maps.abs().max().item<double>(), 1e-5);
  EXPECT_THROW(a.score("unknown", test), std::exception);
}

TEST(AptModelTest, SwitchesChangeWhatTheyShould) {
  auto clip = tiny_clip();
  auto x = shots(2, 32);
  auto base = small_options();
  apt::AptModel m_base(base, clip, tok());
  const auto ctx_trained = m_base.fit_class("bottle", x, 3).ctx.clone();

  auto untrained = base;
  untrained.train = false;
  apt::AptModel m_un(untrained, clip, tok());
  const auto& su = m_un.fit_class("bottle", x, 3);
  EXPECT_TRUE(su.history.empty());
  EXPECT_FALSE(at::equal(su.ctx, ctx_trained));  // same init, training moved the prompts

  auto off = base;
  off.smgs_mode = apt::SmgsMode::kNone;
  apt::AptModel m_off(off, clip, tok());
  const auto& so = m_off.fit_class("bottle", x, 3);
  EXPECT_FALSE(so.history.front().count("guidance"));
  EXPECT_FALSE(at::equal(so.ctx, ctx_trained));
  EXPECT_TRUE(at::equal(so.meta_a, so.meta_a0));  // no update without SMGS

  auto fixed = base;
  fixed.smgs_mode = apt::SmgsMode::kFixed;
  apt::AptModel m_fix(fixed, clip, tok());
  const auto& sf = m_fix.fit_class("bottle", x, 3);
  EXPECT_TRUE(sf.history.front().count("guidance"));
  EXPECT_TRUE(at::equal(sf.meta_a, sf.meta_a0));

  // Texture classes and object_mask none use the whole image.
  auto tex = base;
  tex.texture_classes = {"bottle"};
  tex.epochs = 0;
  apt::AptModel m_tex(tex, clip, tok());
  EXPECT_EQ(m_tex.fit_class("bottle", x, 3).object_masks.sum().item<int64_t>(), 2 * 32 * 32);

  // Visual-only fusion scores with the memory bank alone; text-only ignores it.
  auto vis = base;
  vis.fusion = apt::ScoreFusion::kVisual;
  vis.epochs = 0;
  apt::AptModel m_vis(vis, clip, tok());
  m_vis.fit_class("bottle", x, 3);
  auto test = apt::clip_normalize(at::rand({2, 3, 32, 32}));
  auto ov = m_vis.score("bottle", test);
  EXPECT_TRUE(at::equal(ov.anomaly_maps, ov.visual_maps));

  auto bad = base;
  bad.memory_layers = {3, 8};  // the tiny tower has 2 blocks
  EXPECT_THROW(apt::AptModel(bad, clip, tok()), std::exception);
}

TEST(AptModelTest, PromptLayoutMatchesPromptAD) {
  auto clip = tiny_clip();
  auto o = small_options();
  auto tower = zsad::models::apt::TextTower{};
  apt::AptModel m(o, clip, tok());
  // Token ids: [SOT] x*M "metal nut ." [EOT] and [SOT] x*(M+K) "metal nut ." [EOT].
  const auto cls_ids = tokenizer().tokenize_padded("metal nut.");
  const auto body = tokenizer().encode("metal nut.");
  auto t = zsad::models::cops::make_cops_text_tower(clip);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  auto p = apt::AptPrompts::init(o, cls_ids, t, gen);
  std::vector<int64_t> want{49406, 343, 343, 343, 343};
  want.insert(want.end(), body.begin(), body.end());
  want.push_back(49407);
  EXPECT_EQ(std::vector<int64_t>(p.ids_normal.data_ptr<int64_t>(), p.ids_normal.data_ptr<int64_t>() + p.ids_normal.numel()),
            want);
  EXPECT_EQ(p.ids_abnormal.numel(), p.ids_normal.numel() + 1);
  auto xn = p.normal_embeddings(), xa = p.abnormal_embeddings();
  EXPECT_EQ(xn.sizes(), (std::vector<int64_t>{3, static_cast<int64_t>(want.size()), 64}));
  EXPECT_EQ(xa.sizes(), (std::vector<int64_t>{12, static_cast<int64_t>(want.size()) + 1, 64}));
  // Abnormal prompt (i,j) = [SOT, C_i, A_j, class...]; check (2,3).
  EXPECT_TRUE(at::equal(xa[2 * 4 + 3].narrow(0, 1, 4), p.ctx[2]));
  EXPECT_TRUE(at::equal(xa[2 * 4 + 3].narrow(0, 5, 1), p.ctx_abnormal[3]));
  auto emb = clip->token_embedding->forward(p.ids_abnormal);
  EXPECT_TRUE(at::allclose(xa[7].narrow(0, 6, xa.size(1) - 6), emb.narrow(0, 6, xa.size(1) - 6)));
  EXPECT_TRUE(at::allclose(xn[1].narrow(0, 0, 1), emb.narrow(0, 0, 1)));
  // Initial meta-prompt: unit anchors from the state-word ensemble.
  auto mp = apt::initial_meta_prompt(o, "object", tok(), [&](const at::Tensor& ids) { return clip->encode_text(ids); });
  auto mn = mp.first, ma = mp.second;
  EXPECT_NEAR(mn.norm().item<double>(), 1.0, 1e-5);
  EXPECT_FALSE(at::allclose(mn, ma));
  (void)tower;
}

TEST(AptOptimizers, SgdMomentumAndAdamMatchTorchFormulasByHand) {
  // SGD (torch): d = g + wd p; buf = d (first), then m buf + d; p -= lr buf.
  auto p = at::tensor({1.0}, at::kDouble);
  apt::SgdState sgd;
  sgd.step({p}, {at::tensor({0.5}, at::kDouble)}, 0.1, 0.9, 0.01);  // d = 0.51, p = 1 - 0.051
  EXPECT_NEAR(p.item<double>(), 0.949, 1e-15);
  sgd.step({p}, {at::tensor({0.5}, at::kDouble)}, 0.1, 0.9, 0.01);  // d = 0.50949, buf = 0.459 + 0.50949
  EXPECT_NEAR(p.item<double>(), 0.949 - 0.1 * (0.9 * 0.51 + 0.50949), 1e-15);
  // Adam: first step moves by lr * g/(|g| + eps) after bias correction.
  auto q = at::tensor({1.0, -2.0}, at::kDouble);
  apt::AdamState adam;
  adam.step({q}, {at::tensor({0.5, -4.0}, at::kDouble)}, 0.01, 0.9, 0.999, 1e-8, 0.0);
  EXPECT_NEAR(q[0].item<double>(), 1.0 - 0.01 * 0.5 / (0.5 + 1e-8), 1e-15);
  EXPECT_NEAR(q[1].item<double>(), -2.0 + 0.01 * 4.0 / (4.0 + 1e-8), 1e-15);
  // Second step with g = 1: m = 0.9*0.05 + 0.1 = 0.145, v = 0.999*0.00025 + 0.001 (first coord).
  adam.step({q}, {at::tensor({1.0, 0.0}, at::kDouble)}, 0.01, 0.9, 0.999, 1e-8, 0.0);
  const double m = 0.145 / (1 - 0.81), v = (0.999 * 0.00025 + 0.001) / (1 - 0.999 * 0.999);
  EXPECT_NEAR(q[0].item<double>(), 1.0 - 0.01 * 0.5 / (0.5 + 1e-8) - 0.01 * m / (std::sqrt(v) + 1e-8), 1e-14);
  // Cosine schedule: base at 0, eta_min at T_max, midpoint halfway.
  EXPECT_DOUBLE_EQ(apt::cosine_lr(0.002, 1e-5, 0, 100), 0.002);
  EXPECT_NEAR(apt::cosine_lr(0.002, 1e-5, 50, 100), (0.002 + 1e-5) / 2, 1e-15);
  EXPECT_NEAR(apt::cosine_lr(0.002, 1e-5, 100, 100), 1e-5, 1e-15);
}

TEST(AptModelTest, ClassStateFileRoundTrip) {
  auto clip = tiny_clip();
  apt::AptModel m(small_options(), clip, tok());
  auto o = small_options();
  o.epochs = 1;
  apt::AptModel m1(o, clip, tok());
  const auto& s = m1.fit_class("gear", shots(2, 32), 5);
  const std::string path = "/tmp/zsad_apt_state_" + std::to_string(::getpid()) + ".bin";
  apt::write_class_state(path, s);
  auto r = apt::read_class_state(path);
  std::remove(path.c_str());
  EXPECT_EQ(r.class_name, "gear");
  EXPECT_TRUE(at::equal(r.t_n, s.t_n));
  EXPECT_TRUE(at::equal(r.ctx_abnormal, s.ctx_abnormal));
  ASSERT_EQ(r.banks.size(), s.banks.size());
  EXPECT_TRUE(at::equal(r.banks[1], s.banks[1]));
  // A model holding the loaded state scores exactly like the one that trained it.
  m.set_class_state(r);
  auto test = apt::clip_normalize(at::rand({2, 3, 32, 32}));
  EXPECT_TRUE(at::equal(m.score("gear", test).image_scores, m1.score("gear", test).image_scores));
}
