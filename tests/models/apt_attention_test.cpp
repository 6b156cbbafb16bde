// Locality-Aware Attention (shared/specs/apt.md §4.2, attn_mode local): the mask equals one built
// by hand, the windowed dual path equals a direct ATen computation of one block, and with an
// unbounded window, V-V scores and the CLS column it reduces to the V-V path.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <ATen/ATen.h>

#include "common/error.h"
#include "models/clip/clip_model.h"
#include "models/methods/apt/apt_components.h"
#include "models/methods/apt/apt_model.h"

namespace apt = zsad::models::apt;
using zsad::models::ClipModel;
using zsad::models::VisionRequest;

namespace {

// 32 px, patch 4: an 8x8 grid; 4 heads of 16 dims; 2 blocks.
ClipModel grid8_clip(bool parallel_heads) {
  auto cfg = zsad::models::clip_config("tiny");
  cfg.vision_patch = 4;
  cfg.vision_grid = 8;
  cfg.vision_heads = 4;
  at::manual_seed(77);
  ClipModel m(cfg);
  m->eval();
  for (auto& p : m->parameters()) p.set_requires_grad(false);
  m->visual->parallel_heads = parallel_heads;
  return m;
}

at::Tensor images(int64_t B, int64_t S) {
  at::manual_seed(5);
  return at::randn({B, 3, S, S});
}

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

// Allowed[i][j] by enumerating each patch's neighbourhood (a different construction from the
// library's distance test).
at::Tensor hand_mask(int64_t g, int64_t w, bool cls_col) {
  const int64_t N = g * g + 1;
  auto m = at::full({N, N}, -std::numeric_limits<float>::infinity());
  for (int64_t j = 0; j < N; ++j) m[0][j] = 0;
  for (int64_t r = 0; r < g; ++r)
    for (int64_t c = 0; c < g; ++c) {
      const int64_t i = 1 + r * g + c;
      if (cls_col) m[i][0] = 0;
      for (int64_t dr = -w; dr <= w; ++dr)
        for (int64_t dc = -w; dc <= w; ++dc) {
          const int64_t rr = r + dr, cc = c + dc;
          if (rr >= 0 && rr < g && cc >= 0 && cc < g) m[i][1 + rr * g + cc] = 0;
        }
    }
  return m;
}

}  // namespace

TEST(AptLocalAttention, MaskEqualsHandBuiltMask) {
  for (int64_t w : {0, 1, 2})
    for (bool cls : {false, true}) {
      auto m = zsad::models::locality_attention_mask(5, w, cls);
      ASSERT_EQ(m.sizes(), (std::vector<int64_t>{26, 26}));
      EXPECT_TRUE(at::equal(m, hand_mask(5, w, cls))) << "w " << w << " cls " << cls;
    }
  // w = 1 on a 5x5 grid: corner 4, edge 6, interior 9 allowed patches; CLS row global.
  auto allowed = (zsad::models::locality_attention_mask(5, 1) == 0).sum(1);
  EXPECT_EQ(allowed[0].item<int64_t>(), 26);
  EXPECT_EQ(allowed[1].item<int64_t>(), 4);           // (0,0)
  EXPECT_EQ(allowed[1 + 2].item<int64_t>(), 6);       // (0,2)
  EXPECT_EQ(allowed[1 + 2 * 5 + 2].item<int64_t>(), 9);  // (2,2)
  EXPECT_THROW(zsad::models::locality_attention_mask(5, -1), zsad::Error);
}

TEST(AptLocalAttention, WindowedBlockEqualsDirectComputation) {
  for (bool par : {true, false}) {
    auto clip = grid8_clip(par);
    const auto& cfg = clip->cfg;
    const int64_t S = cfg.input_size(), g = cfg.input_grid(), W = cfg.vision_width, H = cfg.vision_heads, hd = W / H;
    ASSERT_EQ(g, 8);
    auto x = images(2, S);
    for (int64_t w : {1, 2}) {
      VisionRequest req;
      req.vv_depth = 1;  // only the last block is dual-path
      req.local_window = w;
      req.layers = {1};  // the original path's tokens entering block 2
      req.project_layers = false;
      auto out = clip->encode_vision(x, req);
      // Direct: patch rows of block 2 attend with q k^T / sqrt(hd) within the window, no CLS.
      auto x1 = out.layer_patch_tokens[0];  // [B,P,W]
      auto blk = clip->visual->transformer->block(1);
      auto h = at::layer_norm(x1, {W}, blk->ln_1->weight, blk->ln_1->bias, 1e-5);
      auto qkv = at::linear(h, blk->attn->in_proj_weight, blk->attn->in_proj_bias);
      auto heads = [&](int64_t part) {
        return qkv.narrow(-1, part * W, W).reshape({2, g * g, H, hd}).permute({0, 2, 1, 3});
      };
      auto q = heads(0), k = heads(1), v = heads(2);
      auto mask = hand_mask(g, w, false).narrow(0, 1, g * g).narrow(1, 1, g * g);
      auto att = at::softmax(at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(hd)) + mask, -1);
      auto ctx = at::matmul(att, v).permute({0, 2, 1, 3}).reshape({2, g * g, W});
      auto x_vv = x1 + at::linear(ctx, blk->attn->out_proj->weight, blk->attn->out_proj->bias);
      auto expect = at::matmul(clip->visual->ln_post(x_vv), clip->visual->proj);
      EXPECT_LT(max_diff(out.patch_tokens, expect), 1e-4) << "w " << w << " parallel_heads " << par;
      // The global feature is the original path's: untouched by the window.
      VisionRequest vv;
      vv.vv_depth = 1;
      auto ref = clip->encode_vision(x, vv);
      EXPECT_TRUE(at::equal(out.image_features, ref.image_features));
      EXPECT_GT(max_diff(out.patch_tokens, ref.patch_tokens), 1e-3);  // and it is not the V-V path
    }
  }
}

TEST(AptLocalAttention, UnboundedWindowWithVvScoresAndClsIsTheVvPath) {
  for (bool par : {true, false}) {
    auto clip = grid8_clip(par);
    auto x = images(2, clip->cfg.input_size());
    VisionRequest vv;
    vv.vv_depth = 2;
    vv.layers = {1, 2};
    auto ref = clip->encode_vision(x, vv);
    VisionRequest loc = vv;
    loc.local_window = 8;  // covers the whole 8x8 grid
    loc.local_qk = false;
    loc.local_cls = true;
    auto out = clip->encode_vision(x, loc);
    EXPECT_LT(max_diff(out.patch_tokens, ref.patch_tokens), 1e-5) << "parallel_heads " << par;
    EXPECT_LT(max_diff(out.layer_patch_tokens[0], ref.layer_patch_tokens[0]), 1e-5);
    // Without the CLS column the same window differs (patch rows no longer see CLS).
    loc.local_cls = false;
    EXPECT_GT(max_diff(clip->encode_vision(x, loc).patch_tokens, ref.patch_tokens), 1e-4);
  }
}

TEST(AptLocalAttention, AptAttnModeSwitchesOnlyThePatchFeatures) {
  auto clip = grid8_clip(true);
  apt::AptOptions o;
  o.memory_layers = {1, 2};
  apt::Tokenize tok = [](const std::string&) {
    std::vector<int64_t> ids(77, 0);
    ids[0] = 49406;
    ids[1] = 49407;
    return ids;
  };
  apt::AptModel vv(o, clip, tok);
  o.attn_mode = apt::AttnMode::kLocal;
  apt::AptModel local(o, clip, tok);
  auto x = images(2, clip->cfg.input_size());
  auto a = vv.encode(x), b = local.encode(x);
  EXPECT_TRUE(at::equal(a.global, b.global));
  EXPECT_TRUE(at::equal(a.layers[1], b.layers[1]));  // memory bank: original path
  EXPECT_GT(max_diff(a.patches, b.patches), 1e-3);
  // The option round-trips through its key.
  apt::AptOptions p;
  apt::set_apt_option(p, "method.apt.attn_mode", "local");
  apt::set_apt_option(p, "attn_window", "2");
  apt::set_apt_option(p, "attn_local_scores", "vv");
  EXPECT_EQ(p.attn_mode, apt::AttnMode::kLocal);
  EXPECT_EQ(p.attn_window, 2);
  EXPECT_EQ(p.attn_local_scores, apt::LocalScores::kVv);
  EXPECT_THROW(apt::set_apt_option(p, "attn_mode", "windowed"), zsad::Error);
}
