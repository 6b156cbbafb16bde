// SMGS variants beyond the EMA anchor: the learnable (bi-level) meta-prompt and the gating of the
// EMA update on a held-out synthetic AUROC.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include <ATen/ATen.h>

#include "common/error.h"
#include "models/clip/clip_model.h"
#include "models/methods/apt/apt_components.h"
#include "models/methods/apt/apt_method.h"
#include "models/methods/apt/apt_model.h"
#include "models/methods/apt/apt_prompts.h"
#include "models/methods/cops/cops_clip.h"
#include "apt_test_util.h"

namespace apt = zsad::models::apt;

namespace {

using zsad::test::apt::tiny_clip;
using zsad::test::apt::hash_tok;
using zsad::test::apt::shots;
using zsad::test::apt::max_diff;

apt::AptOptions base() { return zsad::test::apt::small_adam_options(); }

}  // namespace

TEST(AptLearnableMeta, InitialAnchorsAreTheEncodedTexts) {
  auto clip = tiny_clip();
  auto tok = hash_tok();
  auto o = base();
  o.smgs_mode = apt::SmgsMode::kLearnable;
  o.epochs = 0;
  apt::AptModel m(o, clip, tok);
  const auto& st = m.fit_class("metal_nut", shots(2, 32), 7);
  auto enc = [&](const std::string& text) {
    auto f = clip->encode_text(at::tensor(tok(text), at::kLong).view({1, -1}))[0];
    return f / f.norm();
  };
  // PromptAD's class-name mapping: metal_nut -> "metal nut".
  EXPECT_LT(max_diff(st.meta_n0, enc("a photo of a flawless metal nut.")), 1e-5);
  EXPECT_LT(max_diff(st.meta_a0, enc("a photo of a damaged metal nut.")), 1e-5);
  EXPECT_GT(max_diff(st.meta_a0, enc("a photo of a flawless metal nut.")), 1e-3);
}

TEST(AptLearnableMeta, OuterStepMovesOnlyTheMetaPromptInnerStepOnlyThePrompts) {
  auto clip = tiny_clip();
  const auto x = shots(2, 32);
  // Guidance weight 0 (additive only): the meta-prompt cannot influence the prompts, so with
  // the outer steps running the prompts must equal those trained without SMGS, bit for bit: the
  // outer step leaves the prompts (and the inner batches) alone.
  auto o = base();
  o.smgs_mode = apt::SmgsMode::kLearnable;
  o.smgs_grad = apt::SmgsGrad::kAdditive;
  o.smgs_weight = 0.0;
  o.smgs_meta_lr_scale = 1.0;
  apt::AptModel learn(o, clip, hash_tok());
  const auto a = learn.fit_class("gear", x, 7);
  auto none_o = base();
  none_o.smgs_mode = apt::SmgsMode::kNone;
  apt::AptModel none(none_o, clip, hash_tok());
  const auto b = none.fit_class("gear", x, 7);
  EXPECT_TRUE(at::equal(a.ctx, b.ctx));
  EXPECT_TRUE(at::equal(a.ctx_abnormal, b.ctx_abnormal));
  // ... while the outer steps did train the meta-prompt (one per inner step).
  EXPECT_GT(max_diff(a.meta_a, a.meta_a0), 1e-4);
  EXPECT_GT(max_diff(a.meta_n, a.meta_n0), 1e-4);
  ASSERT_EQ(a.history.size(), 6u);
  for (const auto& h : a.history) EXPECT_TRUE(h.count("meta_outer"));
  EXPECT_LT(a.history.back().at("meta_outer"), a.history.front().at("meta_outer"));

  // Outer lr 0: the inner steps (guided by the meta-prompt, weight 1) move the prompts but leave
  // the meta-prompt exactly at its initialisation.
  o.smgs_weight = 1.0;
  o.smgs_meta_lr_scale = 0.0;
  apt::AptModel frozen(o, clip, hash_tok());
  const auto c = frozen.fit_class("gear", x, 7);
  EXPECT_TRUE(at::equal(c.meta_a, c.meta_a0));
  EXPECT_TRUE(at::equal(c.meta_n, c.meta_n0));
  EXPECT_GT(max_diff(c.ctx, b.ctx), 1e-6);  // the guidance acted on the prompts

  // smgs_meta_every 3: outer steps at inner steps 3 and 6 only.
  o.smgs_meta_lr_scale = 1.0;
  o.smgs_meta_every = 3;
  apt::AptModel sparse(o, clip, hash_tok());
  const auto d = sparse.fit_class("gear", x, 7);
  for (size_t s = 0; s < d.history.size(); ++s) EXPECT_EQ(d.history[s].count("meta_outer"), (s % 3 == 2) ? 1u : 0u);
}

TEST(AptAuroc, MatchesAHandCountWithTies) {
  // Positive/negative pairs: 0.35 beats 0.1 (1) not 0.4 (0); 0.8 beats both (2); 0.4 beats 0.1 (1)
  // and ties 0.4 (1/2): 4.5 of 6 pairs.
  auto s = at::tensor({0.1, 0.4, 0.35, 0.8, 0.4});
  auto y = at::tensor({0, 0, 1, 1, 1});
  EXPECT_DOUBLE_EQ(apt::binary_auroc(s, y), 4.5 / 6.0);
  EXPECT_DOUBLE_EQ(apt::binary_auroc(-s, y), 1.5 / 6.0);
  EXPECT_DOUBLE_EQ(apt::binary_auroc(s, at::zeros({5})), 0.5);
  EXPECT_THROW(apt::binary_auroc(s, at::zeros({4})), zsad::Error);
}

TEST(AptSmgsGate, UpdatesOnlyWhenTheHeldOutAurocImproves) {
  auto clip = tiny_clip();
  const auto x = shots(2, 32);
  auto o = base();
  o.epochs = 6;
  o.steps_per_epoch = 1;
  o.smgs_gate_metric = "pixel";
  apt::AptModel off(o, clip, hash_tok());
  const auto ref = off.fit_class("gear", x, 7);
  EXPECT_GT(max_diff(ref.meta_a, ref.meta_a0), 1e-4);

  // A margin no AUROC can clear: every update is rejected and the meta-prompt stays at its
  // initial anchor, bit for bit.
  o.smgs_gate = true;
  o.smgs_gate_margin = 2.0;
  apt::AptModel never(o, clip, hash_tok());
  const auto n = never.fit_class("gear", x, 7);
  EXPECT_TRUE(at::equal(n.meta_a, n.meta_a0));
  EXPECT_TRUE(at::equal(n.meta_n, n.meta_n0));
  int gated = 0;
  for (const auto& h : n.history)
    if (h.count("gate_accept")) {
      ++gated;
      EXPECT_EQ(h.at("gate_accept"), 0.0);
    }
  EXPECT_EQ(gated, 6);

  // A margin every AUROC clears: the run equals the ungated one (the held-out evaluation
  // disturbs nothing).
  o.smgs_gate_margin = -2.0;
  apt::AptModel always(o, clip, hash_tok());
  const auto a = always.fit_class("gear", x, 7);
  EXPECT_TRUE(at::equal(a.meta_a, ref.meta_a));
  EXPECT_TRUE(at::equal(a.ctx, ref.ctx));

  // Margin 0: an update is applied iff the AUROC exceeds the one at the last applied update.
  o.smgs_gate_margin = 0.0;
  apt::AptModel gate(o, clip, hash_tok());
  const auto g = gate.fit_class("gear", x, 7);
  double reference = -1;
  int accepted = 0, rejected = 0;
  for (const auto& h : g.history) {
    if (!h.count("gate_auroc")) continue;
    if (reference >= 0) EXPECT_DOUBLE_EQ(h.at("gate_reference"), reference);
    const bool improves = h.at("gate_auroc") > h.at("gate_reference");
    EXPECT_EQ(h.at("gate_accept"), improves ? 1.0 : 0.0) << h.at("gate_auroc") << " vs " << h.at("gate_reference");
    reference = improves ? h.at("gate_auroc") : h.at("gate_reference");
    (improves ? accepted : rejected) += 1;
    EXPECT_GE(h.at("gate_auroc"), 0.0);
    EXPECT_LE(h.at("gate_auroc"), 1.0);
  }
  EXPECT_EQ(accepted + rejected, 6);
  std::cout << "gate: " << accepted << " accepted, " << rejected << " rejected" << std::endl;
  EXPECT_GE(accepted, 1);
  EXPECT_GE(rejected, 1);
  // The gate needs the EMA mode.
  o.smgs_mode = apt::SmgsMode::kFixed;
  EXPECT_THROW(o.validate(), zsad::Error);
}

// docs/apt.md lists every method.apt.* key in its key table (so new switches are documented).
TEST(AptDocs, EveryKeyHasARowInTheKeyTable) {
  const char* src = std::getenv("ZSAD_SOURCE_DIR");
  std::ifstream f(std::string(src && *src ? src : "/work/main") + "/docs/apt.md");
  ASSERT_TRUE(f.good());
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string doc = ss.str();
  const auto keys = apt::apt_method_keys();
  EXPECT_GE(keys.size(), 70u);
  for (const auto& k : keys) {
    const std::string name = k.key.substr(std::string("method.apt.").size());
    EXPECT_NE(doc.find("| `" + name + "` |"), std::string::npos) << name << " has no row in docs/apt.md";
  }
}
