// CLIP model: configs, architecture inference, state-dict loading errors, the forward switches
// (V-V depth, positional-embedding resize, attention chunking), and the C++-only outputs (raw CLS
// global feature, intermediate layers, deep text prompts) against Python references.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include "clip_test_util.h"
#include "common/error.h"
#include "models/clip/clip_config.h"
#include "models/clip/clip_model.h"

namespace {

using namespace zsad::models;

StateDict state_dict_of(ClipModel& m) {
  StateDict sd;
  for (const auto& item : m->named_parameters(true)) sd[item.key()] = item.value().detach().clone();
  return sd;
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return INFINITY;
  return (a - b).abs().max().item<double>();
}

at::Tensor to_tensor(const zsad::test::Array& a) {
  return at::from_blob(const_cast<float*>(a.data.data()), a.shape, at::kFloat).clone();
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const zsad::Error& e) {
    return e.what();
  }
  return "";
}

TEST(ClipConfig, NamedConfigsMatchOpenAI) {
  // Published architecture (../shared/specs/cops.md §1.1, evaluation.md §4.1).
  auto c = clip_config("ViT-L-14-336");
  EXPECT_EQ(c.vision_width, 1024);
  EXPECT_EQ(c.vision_layers, 24);
  EXPECT_EQ(c.vision_heads, 16);
  EXPECT_EQ(c.vision_patch, 14);
  EXPECT_EQ(c.vision_grid, 24);
  EXPECT_EQ(c.embed_dim, 768);
  EXPECT_EQ(c.text_width, 768);
  EXPECT_EQ(c.text_layers, 12);
  EXPECT_EQ(c.text_heads, 12);
  EXPECT_EQ(c.native_image_size(), 336);
  c.image_size = 518;
  EXPECT_EQ(c.num_patches(), 1369);
  EXPECT_EQ(clip_config("ViT-B-32").native_image_size(), 224);
  EXPECT_EQ(clip_config("ViT-B-16").vision_grid, 14);
  EXPECT_EQ(clip_config("ViT-L-14").embed_dim, 768);
  EXPECT_THROW(clip_config("ViT-H-14"), zsad::Error);
  c.image_size = 500;  // not a multiple of 14
  EXPECT_THROW(c.validate(), zsad::Error);
}

TEST(ClipConfig, ViTL14At336HasOpenAIsStateDict) {
  // 446 tensors, 427,944,193 parameters (evaluation.md §4.1, derived from OpenAI's model.py).
  ClipModel m(clip_config("ViT-L-14-336"));
  auto params = m->named_parameters(true);
  EXPECT_EQ(params.size(), 446u);
  int64_t total = 0;
  for (const auto& p : params) total += p.value().numel();
  EXPECT_EQ(total, 427944193);
  EXPECT_EQ(params["visual.transformer.resblocks.23.attn.in_proj_weight"].sizes(), at::IntArrayRef({3072, 1024}));
  EXPECT_EQ(params["transformer.resblocks.11.mlp.c_proj.weight"].sizes(), at::IntArrayRef({768, 3072}));
  EXPECT_EQ(params["visual.proj"].sizes(), at::IntArrayRef({1024, 768}));
  EXPECT_EQ(params["logit_scale"].dim(), 0);
  EXPECT_TRUE(same_architecture(infer_config(state_dict_of(m)), clip_config("ViT-L-14-336")));
  EXPECT_EQ(infer_config(state_dict_of(m)).name, "ViT-L-14-336");
}

TEST(ClipConfig, InferConfigRejectsNonViT) {
  ClipModel m(clip_config("tiny"));
  auto sd = state_dict_of(m);
  sd.erase("visual.proj");
  EXPECT_NE(error_of([&] { infer_config(sd); }).find("visual.proj"), std::string::npos);
}

TEST(ClipLoad, ErrorsNameKeyAndShapes) {
  ClipModel src(clip_config("tiny"));
  auto sd = state_dict_of(src);
  ClipModel dst(clip_config("tiny"));
  {
    auto bad = sd;
    bad["visual.ln_post.weight"] = at::ones({65});
    auto msg = error_of([&] { load_state_dict(dst, bad); });
    EXPECT_NE(msg.find("visual.ln_post.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[65]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[64]"), std::string::npos) << msg;
  }
  {
    auto bad = sd;
    bad.erase("transformer.resblocks.1.attn.out_proj.bias");
    auto msg = error_of([&] { load_state_dict(dst, bad); });
    EXPECT_NE(msg.find("missing key 'transformer.resblocks.1.attn.out_proj.bias'"), std::string::npos) << msg;
  }
  {
    auto bad = sd;
    bad["visual.head.weight"] = at::ones({2, 2});
    auto msg = error_of([&] { load_state_dict(dst, bad); });
    EXPECT_NE(msg.find("unexpected key 'visual.head.weight'"), std::string::npos) << msg;
  }
  {
    auto ok = sd;
    ok["input_resolution"] = at::scalar_tensor(32);  // JIT metadata entries are ignored
    ok["vocab_size"] = at::scalar_tensor(49408);
    for (auto& [k, v] : ok) v = v.to(at::kHalf).to(at::kFloat).to(k == "visual.proj" ? at::kHalf : at::kFloat);
    load_state_dict(dst, ok);
    auto loaded = dst->named_parameters()["visual.proj"];
    EXPECT_EQ(loaded.scalar_type(), at::kFloat);
    EXPECT_EQ(max_diff(loaded, sd["visual.proj"].to(at::kHalf).to(at::kFloat)), 0.0);
  }
}

ClipModel random_tiny(int64_t image_size = 0, int64_t layers = 3) {
  at::manual_seed(7);
  auto cfg = clip_config("tiny");
  cfg.vision_width = 128;
  cfg.vision_heads = 2;
  cfg.vision_layers = layers;
  cfg.image_size = image_size;
  ClipModel m(cfg);
  at::NoGradGuard g;
  for (auto& item : m->named_parameters()) {
    auto& p = item.value();
    if (item.key().find("ln_") != std::string::npos) {
      p.copy_(1.0 + 0.2 * at::randn(p.sizes()));
    } else if (p.dim() >= 2) {
      p.copy_(at::randn(p.sizes()) / std::sqrt(static_cast<double>(p.numel() / p.size(0))));
    } else {
      p.copy_(0.3 * at::randn(p.sizes()));
    }
  }
  return m;
}

// Vanilla CLIP through the generic differentiable blocks (a code path separate from the
// vision tower's buffered kernel).
at::Tensor vanilla_tokens(ClipModel& m, const at::Tensor& px) {
  at::NoGradGuard g;
  auto& v = m->visual;
  const int64_t B = px.size(0), W = v->cfg.vision_width;
  auto x = v->conv1(px).flatten(2).transpose(1, 2);
  x = at::cat({v->class_embedding.view({1, 1, W}).expand({B, 1, W}), x}, 1) + v->resized_positional_embedding();
  x = v->ln_pre(x);
  for (int64_t l = 0; l < v->cfg.vision_layers; ++l) x = v->transformer->block(l)->forward(x);
  return x;
}

TEST(ClipVision, DepthZeroEqualsVanillaAndOriginalPathIsUntouched) {
  auto m = random_tiny();
  at::manual_seed(3);
  auto px = at::randn({2, 3, 32, 32});
  auto x = vanilla_tokens(m, px);
  auto& v = m->visual;
  auto want_img = at::matmul(v->ln_post(x.select(1, 0)), v->proj);
  auto want_patch = at::matmul(v->ln_post(x.narrow(1, 1, x.size(1) - 1)), v->proj);
  VisionRequest r;
  r.vv_depth = 0;
  auto o0 = m->encode_vision(px, r);
  EXPECT_LT(max_diff(o0.image_features, want_img), 1e-5);
  EXPECT_LT(max_diff(o0.patch_tokens, want_patch), 1e-5);
  EXPECT_LT(max_diff(o0.global_features, at::matmul(x.select(1, 0), v->proj)), 1e-5);
  EXPECT_LT(max_diff(m->encode_image(px), want_img), 1e-5);
  for (int64_t d = 1; d <= 3; ++d) {
    r.vv_depth = d;
    auto o = m->encode_vision(px, r);
    EXPECT_LT(max_diff(o.image_features, want_img), 1e-5) << d;
    EXPECT_GT(max_diff(o.patch_tokens, want_patch), 1e-2) << d;  // the V-V path really differs
  }
  r.vv_depth = 4;
  EXPECT_THROW(m->encode_vision(px, r), zsad::Error);
  EXPECT_THROW(m->encode_image(at::randn({1, 3, 40, 40})), zsad::Error);
}

TEST(ClipVision, AttentionChunkingDoesNotChangeResults) {
  auto m = random_tiny();
  auto px = at::randn({3, 3, 32, 32});
  VisionRequest r;
  r.vv_depth = 2;
  r.layers = {1, 3};
  auto base = m->encode_vision(px, r);
  for (bool par : {true, false}) {
    for (auto [chunk, rows] : std::vector<std::pair<int64_t, int64_t>>{{2, 0}, {1, 5}, {2, 16}, {7, 1}}) {
      m->visual->parallel_heads = par;
      m->visual->heads_per_chunk = chunk;
      m->visual->rows_per_block = rows;
      auto o = m->encode_vision(px, r);
      EXPECT_LT(max_diff(o.patch_tokens, base.patch_tokens), 1e-5) << par << "/" << chunk << "/" << rows;
      EXPECT_LT(max_diff(o.layer_patch_tokens[1], base.layer_patch_tokens[1]), 1e-5) << par << "/" << chunk << "/" << rows;
    }
  }
  // Two intra-op threads split the (image, head) pairs; results do not depend on the split.
  const int threads_before = at::get_num_threads();
  at::set_num_threads(2);
  m->visual->parallel_heads = true;
  m->visual->rows_per_block = 0;
  auto two = m->encode_vision(px, r);
  at::set_num_threads(threads_before);
  EXPECT_LT(max_diff(two.patch_tokens, base.patch_tokens), 1e-5);
  // A smaller batch after a larger one reallocates the buffers and still agrees.
  auto one = m->encode_vision(px.narrow(0, 1, 1), r);
  EXPECT_LT(max_diff(one.patch_tokens, base.patch_tokens.narrow(0, 1, 1)), 1e-5);
}

TEST(ClipVision, ResizeKeepsClassPositionAndInterpolatesTheGrid) {
  at::manual_seed(11);
  auto pos = at::randn({17, 8});
  for (auto interp : {PosInterpolation::kBilinear, PosInterpolation::kBicubic}) {
    auto r = resize_positional_embedding(pos, 6, interp);
    ASSERT_EQ(r.sizes(), at::IntArrayRef({37, 8}));
    EXPECT_EQ(max_diff(r[0], pos[0]), 0.0);
    EXPECT_EQ(max_diff(resize_positional_embedding(pos, 4, interp), pos), 0.0);
  }
  // A grid that is constant per channel stays constant; a ramp along x stays monotone along x only.
  auto cst = at::cat({at::zeros({1, 2}), at::ones({16, 2}) * 3}, 0);
  EXPECT_LT(max_diff(resize_positional_embedding(cst, 7, PosInterpolation::kBilinear).narrow(0, 1, 49),
                     at::ones({49, 2}) * 3),
            1e-6);
  auto ramp = at::arange(4, at::kFloat).repeat({4}).view({16, 1});  // value = column index
  auto rr = resize_positional_embedding(at::cat({at::zeros({1, 1}), ramp}, 0), 8, PosInterpolation::kBilinear)
                .narrow(0, 1, 64)
                .view({8, 8});
  EXPECT_LT(max_diff(rr.select(0, 0), rr.select(0, 7)), 1e-6);            // rows identical
  EXPECT_TRUE((rr.select(0, 0).diff() >= 0).all().item<bool>());         // increasing along columns
  EXPECT_GT(rr[0][7].item<float>(), rr[0][0].item<float>());
}

TEST(ClipText, DeepPromptsReplacePositionsBeforeLaterLayers) {
  auto m = random_tiny();
  at::manual_seed(5);
  auto ids = at::zeros({2, 77}, at::kLong);
  ids.narrow(1, 0, 8).copy_(at::randint(1, 49000, {2, 8}));
  ids.select(1, 8).fill_(49407);
  auto x = m->token_embedding(ids);
  auto eot = ids.argmax(-1);
  auto plain = m->encode_text(ids);
  EXPECT_LT(max_diff(m->encode_text_embeddings(x, eot), plain), 1e-6);
  // A deep prompt equal to what layer 1 would see anyway cannot be told apart only if it is that
  // exact value; a random one must change the output.
  std::vector<at::Tensor> deep = {at::randn({4, 64})};
  EXPECT_GT(max_diff(m->encode_text_embeddings(x, eot, deep), plain), 1e-3);
  // Gradients flow to the deep prompt and to the input embeddings.
  auto p = at::randn({4, 64}).set_requires_grad(true);
  auto xe = x.detach().clone().set_requires_grad(true);
  m->encode_text_embeddings(xe, eot, {p}, true).sum().backward();
  ASSERT_TRUE(p.grad().defined());
  EXPECT_GT(p.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(xe.grad().abs().sum().item<double>(), 0.0);
  EXPECT_THROW(m->encode_text_embeddings(x, eot, {deep[0], deep[0]}), zsad::Error);  // tiny has 2 text layers
}

// C++-only outputs against the Python references.
TEST(ClipReferenceApi, GlobalLayersDeepPromptsAndResize) {
  zsad::test::ClipReference ref;
  ASSERT_TRUE(ref.ok()) << ref.log();
  const std::string refs = ref.path("refs.h5");
  auto model = load_clip(ref.path("state_dict.pt"));
  EXPECT_EQ(model->cfg.vision_width, 128);
  EXPECT_EQ(model->cfg.vision_heads, 2);
  EXPECT_EQ(model->cfg.text_layers, 3);
  auto px = to_tensor(zsad::test::read_array(refs, "pixels"));

  VisionRequest r;
  r.vv_depth = 3;
  auto o = model->encode_vision(px, r);
  EXPECT_LT(max_diff(o.global_features, to_tensor(zsad::test::read_array(refs, "fp32/vv3/global_features"))), 1e-4);
  EXPECT_LT(max_diff(at::matmul(o.cls_token, model->visual->proj), o.global_features), 1e-6);

  r.vv_depth = 2;
  r.layers = {1, 2, 3};
  o = model->encode_vision(px, r);
  EXPECT_LT(max_diff(at::stack(o.layer_patch_tokens, 0), to_tensor(zsad::test::read_array(refs, "api/vv2_layers_1_2_3"))),
            1e-4);
  r.vv_depth = 0;
  r.layers = {};
  EXPECT_LT(max_diff(model->encode_vision(px, r).patch_tokens,
                     to_tensor(zsad::test::read_array(refs, "api/vv0/patch_tokens"))),
            1e-4);

  auto ids = to_tensor(zsad::test::read_array(refs, "token_ids")).to(at::kLong);
  auto deep_all = to_tensor(zsad::test::read_array(refs, "api/deep_prompts"));
  std::vector<at::Tensor> deep = {deep_all[0], deep_all[1]};
  at::NoGradGuard g;
  auto x = model->token_embedding(ids);
  auto rounded = model->encode_text_embeddings(x, ids.argmax(-1), deep, true);
  auto unrounded = model->encode_text_embeddings(x, ids.argmax(-1), deep, false);
  auto want_rounded = to_tensor(zsad::test::read_array(refs, "api/deep_text_features"));
  auto want_unrounded = to_tensor(zsad::test::read_array(refs, "api/deep_text_features_noround"));
  EXPECT_LT(max_diff(rounded, want_rounded), 2e-5);
  EXPECT_LT(max_diff(unrounded, want_unrounded), 2e-5);
  EXPECT_GT(max_diff(want_rounded, want_unrounded), 5e-5);  // the rounding is observable

  auto cfg = model->cfg;
  cfg.image_size = 48;
  ClipModel big(cfg);
  load_state_dict(big, state_dict_of(model));
  EXPECT_LT(max_diff(big->visual->resized_positional_embedding(),
                     to_tensor(zsad::test::read_array(refs, "fp32/large_bilinear/pos_embed"))),
            1e-6);
  big->visual->cfg.pos_interp = PosInterpolation::kBicubic;
  EXPECT_LT(max_diff(big->visual->resized_positional_embedding(),
                     to_tensor(zsad::test::read_array(refs, "fp32/large_bicubic/pos_embed"))),
            1e-6);
}

}  // namespace
