#include "models/clip/clip_model.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/nn/init.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "common/error.h"
#include "models/clip/compute_threads.h"

namespace zsad::models {

namespace {

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? "," : "") << s[i];
  os << "]";
  return os.str();
}

at::Tensor activate(const at::Tensor& x, ClipActivation act) {
  if (act == ClipActivation::kQuickGelu) return x * at::sigmoid(x * 1.702);
  return at::gelu(x);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Generic (differentiable) modules, used by the text tower and the plain vision path.

ClipAttentionImpl::ClipAttentionImpl(int64_t width_, int64_t heads_) : width(width_), heads(heads_) {
  in_proj_weight = register_parameter("in_proj_weight", at::empty({3 * width, width}));
  in_proj_bias = register_parameter("in_proj_bias", at::zeros({3 * width}));
  out_proj = register_module("out_proj", torch::nn::Linear(width, width));
  torch::nn::init::xavier_uniform_(in_proj_weight);
}

at::Tensor ClipAttentionImpl::forward(const at::Tensor& x, const at::Tensor& mask) {
  const int64_t B = x.size(0), L = x.size(1), hd = width / heads;
  auto qkv = at::linear(x, in_proj_weight, in_proj_bias).view({B, L, 3, heads, hd}).permute({2, 0, 3, 1, 4});
  auto q = qkv[0] * (1.0 / std::sqrt(static_cast<double>(hd)));
  auto scores = at::matmul(q, qkv[1].transpose(-2, -1));  // [B,H,L,L]
  if (mask.defined()) scores = scores + mask;
  auto ctx = at::matmul(at::softmax(scores, -1), qkv[2]);  // [B,H,L,hd]
  return out_proj(ctx.permute({0, 2, 1, 3}).reshape({B, L, width}));
}

ClipMlpImpl::ClipMlpImpl(int64_t width, ClipActivation act_) : act(act_) {
  c_fc = register_module("c_fc", torch::nn::Linear(width, 4 * width));
  c_proj = register_module("c_proj", torch::nn::Linear(4 * width, width));
}

at::Tensor ClipMlpImpl::forward(const at::Tensor& x) { return c_proj(activate(c_fc(x), act)); }

ResidualAttentionBlockImpl::ResidualAttentionBlockImpl(int64_t width, int64_t heads, ClipActivation act) {
  attn = register_module("attn", ClipAttention(width, heads));
  ln_1 = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(1e-5)));
  mlp = register_module("mlp", ClipMlp(width, act));
  ln_2 = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(1e-5)));
}

at::Tensor ResidualAttentionBlockImpl::forward(const at::Tensor& x, const at::Tensor& mask) {
  auto y = x + attn(ln_1(x), mask);
  return y + mlp(ln_2(y));
}

ClipTransformerImpl::ClipTransformerImpl(int64_t width_, int64_t layers_, int64_t heads_, ClipActivation act)
    : width(width_), layers(layers_), heads(heads_) {
  resblocks = register_module("resblocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i) resblocks->push_back(ResidualAttentionBlock(width, heads, act));
}

ResidualAttentionBlock ClipTransformerImpl::block(int64_t i) const {
  return ResidualAttentionBlock(resblocks->ptr<ResidualAttentionBlockImpl>(i));
}

// ---------------------------------------------------------------------------------------------
// Vision tower: inference-only forward with buffers reused across blocks and calls.
//
// Why not the generic module: at 518 px (1370 tokens) and batch 8 one dual-path layer needs
// two [8,16,1370,1370] attention maps (1.9 GB). Allocating them fresh per layer costs more in
// first-touch page faults than the attention arithmetic itself (CoPS' Python code reaches 13% of
// the matmul rate this way). Here q/k/v are computed once per block, the attention runs per image
// and per chunk of heads / query rows into a small preallocated score buffer that stays in cache,
// and the linear layers write into preallocated outputs (addmm_out).

struct VisionTransformerImpl::Workspace {
  int64_t rows = 0, width = 0, heads = 0, tokens = 0, chunk = 0, block = 0;
  at::Tensor qkv;            // [B*N, 3W]
  at::Tensor a_ori, a_vv;    // [B*N, W] attention context (heads merged), before out_proj
  at::Tensor fc, tmp;        // [B*N, 4W]
  // parallel_heads: [T, N, hd] per thread; otherwise [H, N, hd] of one image.
  // q and vs are pre-scaled by 1/sqrt(hd) (a power of two for hd = 64: exact).
  at::Tensor q, k, v, vs;
  at::Tensor scores;         // parallel_heads: [T, block * N]; otherwise flat chunk * block * N
  bool parallel = false;
  int64_t threads = 0;

  bool fits(int64_t r, int64_t w, int64_t h, int64_t n, int64_t c, int64_t b, bool par, int64_t t,
            const at::TensorOptions& o) const {
    return qkv.defined() && r == rows && w == width && h == heads && n == tokens && c == chunk && b == block &&
           par == parallel && t == threads && qkv.device() == o.device();
  }
};

VisionTransformerImpl::VisionTransformerImpl(const ClipConfig& c) : cfg(c) {
  const int64_t W = cfg.vision_width;
  conv1 = register_module(
      "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, W, cfg.vision_patch).stride(cfg.vision_patch).bias(false)));
  const double scale = 1.0 / std::sqrt(static_cast<double>(W));
  class_embedding = register_parameter("class_embedding", at::randn({W}) * scale);
  positional_embedding =
      register_parameter("positional_embedding", at::randn({cfg.vision_grid * cfg.vision_grid + 1, W}) * scale);
  ln_pre = register_module("ln_pre", torch::nn::LayerNorm(torch::nn::LayerNormOptions({W}).eps(1e-5)));
  transformer = register_module("transformer",
                                ClipTransformer(W, cfg.vision_layers, cfg.vision_heads, cfg.activation));
  ln_post = register_module("ln_post", torch::nn::LayerNorm(torch::nn::LayerNormOptions({W}).eps(1e-5)));
  proj = register_parameter("proj", at::randn({W, cfg.embed_dim}) * scale);
}

at::Tensor resize_positional_embedding(const at::Tensor& pos, int64_t grid, PosInterpolation interp) {
  const int64_t p0 = pos.size(0), W = pos.size(1);
  const auto g0 = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(p0 - 1))));
  if (g0 * g0 + 1 != p0) {
    throw Error("positional embedding with " + std::to_string(p0) + " rows is not grid*grid + 1");
  }
  if (grid == g0) return pos;
  auto img = pos.narrow(0, 1, p0 - 1).reshape({1, g0, g0, W}).permute({0, 3, 1, 2});
  at::Tensor out;
  if (interp == PosInterpolation::kBilinear) {
    out = at::upsample_bilinear2d(img, {grid, grid}, /*align_corners=*/false, c10::nullopt, c10::nullopt);
  } else {
    out = at::_upsample_bicubic2d_aa(img, {grid, grid}, /*align_corners=*/false, c10::nullopt, c10::nullopt);
  }
  out = out.permute({0, 2, 3, 1}).reshape({grid * grid, W});
  return at::cat({pos.narrow(0, 0, 1), out}, 0);
}

at::Tensor VisionTransformerImpl::resized_positional_embedding() const {
  return resize_positional_embedding(positional_embedding, cfg.input_grid(), cfg.pos_interp);
}

void VisionTransformerImpl::release_workspace() { ws_.reset(); }

namespace {

// One attention path for one image: ctx[h] = softmax(qs[h] kt[h]) v[h], where qs is pre-scaled.
// `out` is [H,N,hd] (any strides with a unit last stride; it may be a view of [N,W]).
void attention_path(const at::Tensor& qs, const at::Tensor& k, const at::Tensor& v, at::Tensor& scores_flat,
                    const at::Tensor& out, int64_t chunk, int64_t block, const at::Tensor* mask = nullptr) {
  const int64_t H = qs.size(0), N = qs.size(1);
  for (int64_t h0 = 0; h0 < H; h0 += chunk) {
    const int64_t c = std::min(chunk, H - h0);
    auto kt = k.narrow(0, h0, c).transpose(1, 2);
    auto vh = v.narrow(0, h0, c);
    for (int64_t r0 = 0; r0 < N; r0 += block) {
      const int64_t r = std::min(block, N - r0);
      auto s = scores_flat.narrow(0, 0, c * r * N).view({c, r, N});
      at::bmm_out(s, qs.narrow(0, h0, c).narrow(1, r0, r), kt);
      if (mask) s.add_(mask->narrow(0, r0, r));  // additive mask [N,N], broadcast over heads
      at::_softmax_out(s, s, -1, false);
      auto o = out.narrow(0, h0, c).narrow(1, r0, r);
      at::bmm_out(o, s, vh);
    }
  }
}

// OpenBLAS (pthreads build, Debian's libblas.so.3 alternative) runs its own thread pool; inside
// our OpenMP region every BLAS call must stay on the calling thread. Found at run time so any
// BLAS links; with another BLAS this is a no-op.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : previous_(blas_threads()) {
    if (previous_ > 1) set_blas_threads(1);
  }
  ~SingleThreadedBlas() {
    if (previous_ > 1) set_blas_threads(previous_);
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int previous_ = 0;
};

// One head of one image: out = softmax(qs kt) v, in blocks of `block` query rows. qs, k, v are
// [N,hd] contiguous; out is [N,hd] with unit column stride (a column slice of [N,W]).
void head_attention(const at::Tensor& qs, const at::Tensor& k, const at::Tensor& v, const at::Tensor& scores,
                    const at::Tensor& out, int64_t block, const at::Tensor* mask = nullptr) {
  const int64_t N = qs.size(0);
  const auto kt = k.t();
  for (int64_t r0 = 0; r0 < N; r0 += block) {
    const int64_t r = std::min(block, N - r0);
    auto s = scores.narrow(0, 0, r * N).view({r, N});
    at::mm_out(s, qs.narrow(0, r0, r), kt);
    if (mask) s.add_(mask->narrow(0, r0, r));  // additive mask [N,N]
    at::_softmax_out(s, s, -1, false);
    auto o = out.narrow(0, r0, r);
    at::mm_out(o, s, v);
  }
}

// out (=|+=) x @ w^T (+ bias). With split, rows are cut into 2 chunks per thread handed out
// dynamically and every chunk is one single-threaded BLAS call: BLAS' own idle workers then never
// spin (OpenBLAS busy-waits ~0.1 s after each call) while the attention region runs, and a thread
// the OS deschedules does not stall the others.
void linear_rows(const at::Tensor& out, const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                 bool accumulate, bool split, int64_t threads) {
  auto one = [&](int64_t r0, int64_t r) {
    auto o = out.narrow(0, r0, r);
    auto xs = x.narrow(0, r0, r);
    if (accumulate) {
      o.addmm_(xs, w.t());
      if (bias.defined()) o.add_(bias);
    } else {
      at::addmm_out(o, bias, xs, w.t());
    }
  };
  const int64_t rows = x.size(0);
  if (!split || threads <= 1) return one(0, rows);
  const int64_t chunks = 2 * threads, per = (rows + chunks - 1) / chunks;
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    at::NoGradGuard no_grad_here;
    for (int64_t c = next++; c * per < rows; c = next++) one(c * per, std::min(per, rows - c * per));
  });
}

void quick_gelu_inplace(at::Tensor& x, at::Tensor& tmp) {
  at::mul_out(tmp, x, at::scalar_tensor(1.702, x.options()));
  tmp.sigmoid_();
  x.mul_(tmp);
}

}  // namespace

at::Tensor locality_attention_mask(int64_t grid, int64_t window, bool cls_column) {
  if (grid < 1 || window < 0)
    throw Error("locality attention mask: grid " + std::to_string(grid) + ", window " + std::to_string(window) +
                " (expected grid >= 1, window >= 0)");
  const int64_t N = grid * grid + 1;
  auto m = at::full({N, N}, -std::numeric_limits<float>::infinity(), at::kFloat);
  auto a = m.accessor<float, 2>();
  for (int64_t j = 0; j < N; ++j) a[0][j] = 0.f;  // the CLS row stays global
  for (int64_t i = 1; i < N; ++i) {
    const int64_t ri = (i - 1) / grid, ci = (i - 1) % grid;
    if (cls_column) a[i][0] = 0.f;
    for (int64_t j = 1; j < N; ++j) {
      const int64_t rj = (j - 1) / grid, cj = (j - 1) % grid;
      if (std::max(std::abs(ri - rj), std::abs(ci - cj)) <= window) a[i][j] = 0.f;
    }
  }
  return m;
}

VisionOutput VisionTransformerImpl::forward(const at::Tensor& pixels, const VisionRequest& request) {
  at::NoGradGuard no_grad;
  const int64_t S = cfg.input_size(), W = cfg.vision_width, H = cfg.vision_heads, hd = W / H;
  const int64_t L = cfg.vision_layers;
  if (pixels.dim() != 4 || pixels.size(1) != 3 || pixels.size(2) != S || pixels.size(3) != S) {
    throw Error("CLIP vision input has shape " + shape_str(pixels.sizes()) + ", expected [B,3," + std::to_string(S) +
                "," + std::to_string(S) + "] for model " + cfg.name);
  }
  if (request.vv_depth < 0 || request.vv_depth > L) {
    throw Error("V-V depth " + std::to_string(request.vv_depth) + " is outside 0.." + std::to_string(L));
  }
  for (auto l : request.layers) {
    if (l < 1 || l > L) throw Error("requested layer " + std::to_string(l) + " is outside 1.." + std::to_string(L));
  }
  // Locality-Aware Attention replaces the V-V attention of the dual path (mask built once).
  const bool local = request.local_window >= 0 && request.vv_depth > 0;
  const int64_t B = pixels.size(0);
  auto x_in = pixels.to(positional_embedding.device(), at::kFloat);

  // Patch embedding, class token, positional embedding, ln_pre -> x_ori [B*N, W].
  auto patches = conv1(x_in).flatten(2).transpose(1, 2);  // [B, g*g, W]
  const int64_t N = patches.size(1) + 1;
  auto tokens = at::cat({class_embedding.view({1, 1, W}).expand({B, 1, W}), patches}, 1);
  tokens = tokens + resized_positional_embedding().unsqueeze(0);
  at::Tensor x_ori = ln_pre(tokens).reshape({B * N, W}).contiguous();
  at::Tensor x_vv;

  const int64_t chunk = std::max<int64_t>(1, std::min(heads_per_chunk, H));
  const int64_t block = rows_per_block > 0 ? std::min(rows_per_block, N) : N;
  const auto opts = x_ori.options();
  // The per-head OpenMP path is for CPU tensors; CUDA runs the chunked path.
  const bool par = parallel_heads && x_ori.device().is_cpu();
  const int64_t T = par ? at::get_num_threads() : 1;
  if (!ws_ || !ws_->fits(B * N, W, H, N, chunk, block, par, T, opts)) {
    ws_.reset();  // free the old buffers before allocating new ones
    auto ws = std::make_shared<Workspace>();
    ws->rows = B * N, ws->width = W, ws->heads = H, ws->tokens = N, ws->chunk = chunk, ws->block = block;
    ws->parallel = par, ws->threads = T;
    ws->qkv = at::empty({B * N, 3 * W}, opts);
    ws->a_ori = at::empty({B * N, W}, opts);
    ws->fc = at::empty({B * N, 4 * W}, opts);
    ws->tmp = at::empty({B * N, 4 * W}, opts);
    const int64_t lead = par ? T : H;
    ws->q = at::empty({lead, N, hd}, opts);
    ws->k = at::empty({lead, N, hd}, opts);
    ws->v = at::empty({lead, N, hd}, opts);
    ws->vs = at::empty({lead, N, hd}, opts);
    ws->scores = par ? at::empty({T, block * N}, opts) : at::empty({chunk * block * N}, opts);
    ws_ = ws;
  }
  Workspace& ws = *ws_;
  const bool split = par && split_linears;
  std::optional<SingleThreadedBlas> single_blas_all;
  if (split) single_blas_all.emplace();
  if (request.vv_depth > 0 && !ws.a_vv.defined()) ws.a_vv = at::empty({B * N, W}, opts);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const bool quick = cfg.activation == ClipActivation::kQuickGelu;
  at::Tensor loc_mask;
  if (local) loc_mask = locality_attention_mask(cfg.input_grid(), request.local_window, request.local_cls).to(opts);
  const at::Tensor* loc = local ? &loc_mask : nullptr;

  auto patch_part = [&](const at::Tensor& x) { return x.view({B, N, W}).narrow(1, 1, N - 1); };
  auto project = [&](const at::Tensor& x) { return at::matmul(ln_post(x), proj); };

  VisionOutput out;
  const std::set<int64_t> wanted(request.layers.begin(), request.layers.end());
  std::map<int64_t, at::Tensor> layer_tokens;
  // Phase timings (cheap: a clock read per phase), read by the benchmark.
  auto last = std::chrono::steady_clock::now();
  auto tick = [&](double& acc) {
    auto now = std::chrono::steady_clock::now();
    acc += std::chrono::duration<double>(now - last).count();
    last = now;
  };
  for (int64_t l = 0; l < L; ++l) {
    auto blk = transformer->block(l);
    const bool dual = l >= L - request.vv_depth;
    if (dual && !x_vv.defined()) x_vv = x_ori.clone();  // the V-V path starts from this block's input

    auto h = at::layer_norm(x_ori, {W}, blk->ln_1->weight, blk->ln_1->bias, 1e-5);
    linear_rows(ws.qkv, h, blk->attn->in_proj_weight, blk->attn->in_proj_bias, false, split, T);
    tick(timings.qkv);
    if (par) {
      SingleThreadedBlas single_blas;
      // Tasks are (image, head) pairs handed out dynamically, so a thread that the OS deschedules
      // (2 shared cores) does not hold back the others.
      std::atomic<int64_t> next_task{0};
      at::parallel_for(0, T, 1, [&](int64_t, int64_t) {
        at::NoGradGuard no_grad_here;
        const int64_t t = at::get_thread_num();
        auto q = ws.q[t], k = ws.k[t], v = ws.v[t], vs = ws.vs[t], sc = ws.scores[t];
        for (int64_t task = next_task++; task < B * H; task = next_task++) {
          const int64_t b = task / H, head = task % H;
          auto rows = ws.qkv.narrow(0, b * N, N);
          q.copy_(rows.narrow(1, head * hd, hd)).mul_(scale);
          k.copy_(rows.narrow(1, W + head * hd, hd));
          v.copy_(rows.narrow(1, 2 * W + head * hd, hd));
          head_attention(q, k, v, sc, ws.a_ori.narrow(0, b * N, N).narrow(1, head * hd, hd), block);
          if (dual) {
            auto o_vv = ws.a_vv.narrow(0, b * N, N).narrow(1, head * hd, hd);
            if (local && request.local_qk) {
              head_attention(q, k, v, sc, o_vv, block, loc);
            } else {
              vs.copy_(v).mul_(scale);
              head_attention(vs, v, v, sc, o_vv, block, loc);
            }
          }
        }
      });
    }
    for (int64_t b = 0; b < B && !par; ++b) {
      auto qkv_b = ws.qkv.narrow(0, b * N, N).view({N, 3, H, hd});
      ws.q.copy_(qkv_b.select(1, 0).permute({1, 0, 2})).mul_(scale);
      ws.k.copy_(qkv_b.select(1, 1).permute({1, 0, 2}));
      ws.v.copy_(qkv_b.select(1, 2).permute({1, 0, 2}));
      auto o_ori = ws.a_ori.narrow(0, b * N, N).view({N, H, hd}).permute({1, 0, 2});
      attention_path(ws.q, ws.k, ws.v, ws.scores, o_ori, chunk, block);
      if (dual) {
        auto o_vv = ws.a_vv.narrow(0, b * N, N).view({N, H, hd}).permute({1, 0, 2});
        if (local && request.local_qk) {
          attention_path(ws.q, ws.k, ws.v, ws.scores, o_vv, chunk, block, loc);
        } else {
          at::mul_out(ws.vs, ws.v, at::scalar_tensor(scale, opts));
          attention_path(ws.vs, ws.v, ws.v, ws.scores, o_vv, chunk, block, loc);
        }
      }
    }
    tick(timings.attention);
    const auto& wo = blk->attn->out_proj->weight;
    const auto& bo = blk->attn->out_proj->bias;
    linear_rows(x_ori, ws.a_ori, wo, bo, true, split, T);
    if (dual) linear_rows(x_vv, ws.a_vv, wo, bo, true, split, T);  // no MLP on the V-V path
    tick(timings.out_proj);

    auto h2 = at::layer_norm(x_ori, {W}, blk->ln_2->weight, blk->ln_2->bias, 1e-5);
    linear_rows(ws.fc, h2, blk->mlp->c_fc->weight, blk->mlp->c_fc->bias, false, split, T);
    at::Tensor act = ws.fc;
    if (quick) {
      quick_gelu_inplace(ws.fc, ws.tmp);
    } else {
      at::gelu_out(ws.tmp, ws.fc);
      act = ws.tmp;
    }
    linear_rows(x_ori, act, blk->mlp->c_proj->weight, blk->mlp->c_proj->bias, true, split, T);
    tick(timings.mlp);

    if (wanted.count(l + 1)) {
      auto t = patch_part(x_vv.defined() ? x_vv : x_ori);
      layer_tokens[l + 1] = request.project_layers ? project(t) : t.clone();
    }
  }
  for (auto l : request.layers) out.layer_patch_tokens.push_back(layer_tokens.at(l));

  auto cls = x_ori.view({B, N, W}).select(1, 0);
  out.cls_token = cls.clone();
  out.image_features = project(cls);
  out.global_features = at::matmul(cls, proj);
  if (request.patch_tokens) out.patch_tokens = project(patch_part(x_vv.defined() ? x_vv : x_ori));
  return out;
}

// ---------------------------------------------------------------------------------------------

ClipModelImpl::ClipModelImpl(const ClipConfig& c) : cfg(c) {
  cfg.validate();
  visual = register_module("visual", VisionTransformer(cfg));
  transformer = register_module("transformer",
                                ClipTransformer(cfg.text_width, cfg.text_layers, cfg.text_heads, cfg.activation));
  token_embedding = register_module("token_embedding", torch::nn::Embedding(cfg.vocab_size, cfg.text_width));
  positional_embedding =
      register_parameter("positional_embedding", at::randn({cfg.context_length, cfg.text_width}) * 0.01);
  ln_final = register_module("ln_final", torch::nn::LayerNorm(torch::nn::LayerNormOptions({cfg.text_width}).eps(1e-5)));
  text_projection = register_parameter("text_projection", at::randn({cfg.text_width, cfg.embed_dim}) *
                                                              (1.0 / std::sqrt(static_cast<double>(cfg.text_width))));
  logit_scale = register_parameter("logit_scale", at::scalar_tensor(std::log(1.0 / 0.07)));
}

at::Tensor ClipModelImpl::encode_image(const at::Tensor& pixels) {
  VisionRequest r;
  r.patch_tokens = false;
  return visual->forward(pixels, r).image_features;
}

VisionOutput ClipModelImpl::encode_vision(const at::Tensor& pixels, const VisionRequest& request) {
  return visual->forward(pixels, request);
}

at::Tensor ClipModelImpl::encode_text(const at::Tensor& ids) const {
  if (ids.dim() != 2 || ids.size(1) != cfg.context_length) {
    throw Error("CLIP text input has shape " + shape_str(ids.sizes()) + ", expected [M," +
                std::to_string(cfg.context_length) + "]");
  }
  auto ids_d = ids.to(positional_embedding.device(), at::kLong);
  if (ids_d.numel() > 0 && (ids_d.min().item<int64_t>() < 0 || ids_d.max().item<int64_t>() >= cfg.vocab_size)) {
    throw Error("CLIP text input holds token ids outside 0.." + std::to_string(cfg.vocab_size - 1));
  }
  return encode_text_embeddings(token_embedding.ptr()->forward(ids_d), ids_d.argmax(-1));
}

at::Tensor ClipModelImpl::encode_text_embeddings(const at::Tensor& x_in, const at::Tensor& eot,
                                                 const std::vector<at::Tensor>& deep_prompts, bool round_fp16) const {
  const int64_t M = x_in.size(0), Lc = cfg.context_length, W = cfg.text_width;
  if (x_in.dim() != 3 || x_in.size(1) != Lc || x_in.size(2) != W) {
    throw Error("CLIP text embeddings have shape " + shape_str(x_in.sizes()) + ", expected [M," + std::to_string(Lc) +
                "," + std::to_string(W) + "]");
  }
  if (static_cast<int64_t>(deep_prompts.size()) > cfg.text_layers - 1) {
    throw Error(std::to_string(deep_prompts.size()) + " deep text prompts for " + std::to_string(cfg.text_layers) +
                " text layers (at most layers - 1)");
  }
  if (!causal_mask_.defined() || causal_mask_.device() != x_in.device()) {
    causal_mask_ = at::full({Lc, Lc}, -std::numeric_limits<float>::infinity(), x_in.options().dtype(at::kFloat))
                       .triu_(1);
  }
  auto x = x_in + positional_embedding;
  for (int64_t i = 0; i < cfg.text_layers; ++i) {
    if (i >= 1 && i <= static_cast<int64_t>(deep_prompts.size())) {
      auto p = deep_prompts[i - 1];
      if (round_fp16) p = p.to(at::kHalf).to(at::kFloat);
      if (p.dim() == 2) p = p.unsqueeze(0).expand({M, p.size(0), p.size(1)});
      const int64_t n = p.size(1);
      if (p.size(0) != M || p.size(2) != W || n + 1 > Lc) {
        throw Error("deep text prompt " + std::to_string(i - 1) + " has shape " + shape_str(deep_prompts[i - 1].sizes()) +
                    ", expected [n," + std::to_string(W) + "] or [M,n," + std::to_string(W) + "]");
      }
      x = at::cat({x.narrow(1, 0, 1), p.to(x.dtype()), x.narrow(1, 1 + n, Lc - 1 - n)}, 1);
    }
    x = transformer->block(i)->forward(x, causal_mask_);
  }
  x = ln_final.ptr()->forward(x);
  auto idx = eot.to(x.device(), at::kLong).view({M, 1, 1}).expand({M, 1, W});
  return at::matmul(x.gather(1, idx).squeeze(1), text_projection);
}

// ---------------------------------------------------------------------------------------------

void load_state_dict(ClipModel& model, const StateDict& sd) {
  static const std::set<std::string> kIgnored = {"input_resolution", "context_length", "vocab_size"};
  at::NoGradGuard no_grad;
  std::set<std::string> used;
  auto copy_into = [&](const std::string& key, at::Tensor& target) {
    auto it = sd.find(key);
    if (it == sd.end()) {
      throw Error("CLIP weights: missing key '" + key + "' (model '" + model->cfg.name + "' expects shape " +
                  shape_str(target.sizes()) + ")");
    }
    const auto& src = it->second;
    if (!src.defined() || src.sizes() != target.sizes()) {
      throw Error("CLIP weights: key '" + key + "' has shape " + (src.defined() ? shape_str(src.sizes()) : "undefined") +
                  " in the file, model '" + model->cfg.name + "' expects " + shape_str(target.sizes()));
    }
    target.copy_(src.to(at::kFloat));
    used.insert(key);
  };
  for (auto& item : model->named_parameters(true)) copy_into(item.key(), item.value());
  for (auto& item : model->named_buffers(true)) copy_into(item.key(), item.value());
  for (const auto& [key, value] : sd) {
    if (used.count(key) || kIgnored.count(key)) continue;
    throw Error("CLIP weights: unexpected key '" + key + "' with shape " +
                (value.defined() ? shape_str(value.sizes()) : "undefined") + " (model '" + model->cfg.name + "'" +
                " has no such parameter)");
  }
}

StateDict unwrap_clip_state_dict(const StateDict& sd) {
  if (sd.count("visual.proj") || sd.count("visual.conv1.weight")) return sd;
  for (const std::string prefix : {"state_dict.", "model.", "module.", "state_dict.module.", "model.module."}) {
    if (sd.count(prefix + "visual.proj") || sd.count(prefix + "visual.conv1.weight")) return strip_prefix(sd, prefix);
  }
  return sd;
}

ClipModel load_clip(const std::string& path, const std::string& arch, const ClipConfig* runtime) {
  StateDict sd = unwrap_clip_state_dict(read_weights(path));
  ClipConfig cfg;
  try {
    cfg = infer_config(sd);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  if (arch != "auto" && !arch.empty()) {
    auto named = clip_config(arch);
    if (!same_architecture(cfg, named)) {
      throw Error(path + ": weights are " + cfg.describe() + ", not the requested architecture " + named.describe());
    }
    cfg.name = named.name;
  }
  if (runtime) {
    cfg.activation = runtime->activation;
    cfg.image_size = runtime->image_size;
    cfg.pos_interp = runtime->pos_interp;
    cfg.device = runtime->device;
  }
  try {
    cfg.validate();
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  ClipModel model(cfg);
  try {
    load_state_dict(model, sd);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  model->eval();
  model->to(at::Device(cfg.device));
  return model;
}

}  // namespace zsad::models
