#include "models/methods/cops/cops_clip.h"

#include <cmath>
#include <limits>

#include <ATen/ATen.h>

#include "common/error.h"

namespace zsad::models::cops {
namespace {

const at::TensorOptions kLongOpt = at::TensorOptions().dtype(at::kLong);

// Positions [0, len) without [a, a + n).
at::Tensor rows_except(int64_t len, int64_t a, int64_t n) {
  return at::cat({at::arange(0, a, kLongOpt), at::arange(a + n, len, kLongOpt)});
}

// One residual block on a run of positions x [N,Lx,W] whose queries see `mask` [Lx, Lpre + Lx]
// (additive): the keys/values of Lpre earlier positions pk/pv [N,H,Lpre,hd] (if defined), then
// their own. The outputs are computed for `rows` only (undefined = all, empty = none): the same
// operations as ResidualAttentionBlockImpl::forward restricted to those rows, since a row's output
// depends on the other positions only through their keys and values. k_out/v_out receive this
// run's keys/values [N,H,Lx,hd] when asked for.
at::Tensor block_part(ResidualAttentionBlock blk, const at::Tensor& x, const at::Tensor& mask, const at::Tensor& rows,
                      const at::Tensor& pk, const at::Tensor& pv, at::Tensor* k_out = nullptr,
                      at::Tensor* v_out = nullptr) {
  if (!rows.defined() && !pk.defined() && !k_out) return blk->forward(x, mask);  // the literal block
  ClipAttentionImpl& a = *blk->attn;
  const int64_t N = x.size(0), L = x.size(1), W = a.width, H = a.heads, hd = W / H;
  at::Tensor h = blk->ln_1->forward(x);
  at::Tensor kv = at::linear(h, a.in_proj_weight.narrow(0, W, 2 * W), a.in_proj_bias.narrow(0, W, 2 * W))
                      .view({N, L, 2, H, hd})
                      .permute({2, 0, 3, 1, 4});
  at::Tensor k = kv[0], v = kv[1];
  if (k_out) *k_out = k;
  if (v_out) *v_out = v;
  if (rows.defined() && rows.numel() == 0) return {};
  if (pk.defined()) {
    k = at::cat({pk, k}, 2);
    v = at::cat({pv, v}, 2);
  }
  at::Tensor hr = rows.defined() ? h.index_select(1, rows) : h;
  at::Tensor mr = rows.defined() ? mask.index_select(0, rows) : mask;
  const int64_t R = hr.size(1);
  at::Tensor q = at::linear(hr, a.in_proj_weight.narrow(0, 0, W), a.in_proj_bias.narrow(0, 0, W))
                     .view({N, R, H, hd})
                     .transpose(1, 2);
  q = q * (1.0 / std::sqrt(static_cast<double>(hd)));
  at::Tensor ctx = at::matmul(at::softmax(at::matmul(q, k.transpose(-2, -1)) + mr, -1), v);  // [N,H,R,hd]
  at::Tensor y = (rows.defined() ? x.index_select(1, rows) : x) +
                 a.out_proj->forward(ctx.permute({0, 2, 1, 3}).reshape({N, R, W}));
  return y + blk->mlp->forward(blk->ln_2->forward(y));
}

// A run of consecutive token positions [start, start + len) of N sequences.
struct Run {
  at::Tensor x;  // [N, len (minus the gap), W]
  int64_t start = 0, len = 0;
  int64_t gap = 0;  // > 0: positions 1..gap are not held (the next layer replaces them)
};

// encode_text_embeddings for L <= context_length tokens, built from the model's own blocks, for
// sequences whose first Lp positions come from `prefix` [G,Lp,W] (row group[j] for sequence j) and
// the rest from `rest` [N,L-Lp,W] (Lp may be 0: no prefix). Same result as the full sequences,
// with less work:
//  - the causal mask makes the EOT row independent of later positions, so CoPS runs only up to EOT
//    (17 of 77 tokens, ~4.5x less work);
//  - a prefix shared by several sequences runs once; their later positions read its keys/values;
//  - before a layer that replaces positions 1..n by a deep prompt, the previous layer's outputs at
//    1..n are discarded, so that layer computes them only as keys/values;
//  - the last layer only needs the EOT row (when every sequence has its EOT at the same position).
// Deep prompts must lie inside the prefix (then [n,W]: shared) or, with Lp <= 1, in the rest.
at::Tensor encode_runs(ClipModel& model, const at::Tensor& prefix_in, const at::Tensor& group, const at::Tensor& rest_in,
                       const at::Tensor& ids, const std::vector<at::Tensor>& deep, bool round_fp16) {
  const int64_t Lp = prefix_in.defined() ? prefix_in.size(1) : 0;
  const int64_t N = rest_in.size(0), Lr = rest_in.size(1), L = Lp + Lr, W = rest_in.size(2);
  const int64_t layers = model->cfg.text_layers, depth = static_cast<int64_t>(deep.size());
  // No sequences (a rank's empty share of an epoch's last, partial batch): no embeddings.
  if (N == 0) return rest_in.new_zeros({0, model->text_projection.size(1)});
  if (depth > layers - 1)
    throw Error(std::to_string(deep.size()) + " deep text prompts for " + std::to_string(layers) +
                " text layers (at most layers - 1)");
  for (const auto& p : deep) {
    const int64_t n = p.size(-2);
    if (n + 1 > L) throw Error("deep text prompt of " + std::to_string(n) + " tokens does not fit " + std::to_string(L));
    if (Lp > 1 && (n + 1 > Lp || p.dim() != 2))
      throw Error("cops text tower: a deep prompt must lie inside the shared prefix and be shared ([n,W])");
  }
  at::Tensor eot = ids.argmax(-1).to(at::kLong);
  const int64_t e0 = eot[0].item<int64_t>();
  const bool same_eot = (eot == e0).all().item<bool>();
  if ((eot < Lp).any().item<bool>()) throw Error("cops text tower: EOT inside the shared prefix");
  at::Tensor mask = at::full({L, L}, -std::numeric_limits<double>::infinity(), rest_in.options()).triu_(1);
  at::Tensor pos = model->positional_embedding;
  Run pre{Lp ? prefix_in + pos.narrow(0, 0, Lp) : at::Tensor(), 0, Lp, 0};
  Run run{rest_in + pos.narrow(0, Lp, Lr), Lp, Lr, 0};
  Run& deep_run = Lp > 1 ? pre : run;  // the run holding positions 1..n
  const at::Tensor mask_pre = Lp ? mask.narrow(0, 0, Lp).narrow(1, 0, Lp) : at::Tensor();
  const at::Tensor mask_run = mask.narrow(0, Lp, Lr);
  for (int64_t i = 0; i < layers; ++i) {
    if (i >= 1 && i <= depth) {
      at::Tensor p = deep[i - 1];
      if (round_fp16) p = p.to(at::kHalf).to(at::kFloat);
      const int64_t n = p.size(-2), M = deep_run.x.size(0), a = 1 - deep_run.start;
      if (p.dim() == 2) p = p.unsqueeze(0).expand({M, n, p.size(1)});
      const int64_t keep = deep_run.len - a - n;
      deep_run.x = at::cat({deep_run.x.narrow(1, 0, a), p.to(deep_run.x.scalar_type()),
                            deep_run.x.narrow(1, deep_run.gap > 0 ? a : a + n, keep)},
                           1);
      deep_run.gap = 0;
    }
    ResidualAttentionBlock blk = model->transformer->block(i);
    const bool last = i == layers - 1;
    const int64_t next_n = i + 1 <= depth ? deep[i].size(-2) : 0;
    at::Tensor pk, pv;
    if (Lp) {
      at::Tensor rows;  // all
      if (last) rows = at::empty({0}, kLongOpt);
      else if (next_n && &deep_run == &pre) rows = rows_except(Lp, 1, next_n);
      at::Tensor y = block_part(blk, pre.x, mask_pre, rows, {}, {}, &pk, &pv);
      if (!last) pre.x = y;
      if (rows.defined() && !last) pre.gap = next_n;
      pk = pk.index_select(0, group);
      pv = pv.index_select(0, group);
    }
    at::Tensor rows;  // all
    if (last && same_eot) rows = at::full({1}, e0 - Lp, kLongOpt);
    else if (next_n && &deep_run == &run) rows = rows_except(Lr, 1 - Lp, next_n);
    run.x = block_part(blk, run.x, mask_run, rows, pk, pv);
    if (rows.defined() && !last) run.gap = next_n;
  }
  at::Tensor x = model->ln_final->forward(run.x);
  if (same_eot && x.size(1) == 1) return at::matmul(x.squeeze(1), model->text_projection);
  at::Tensor idx = (eot - Lp).view({N, 1, 1}).expand({N, 1, W});
  return at::matmul(x.gather(1, idx).squeeze(1), model->text_projection);
}

}  // namespace

TextTower make_cops_text_tower(ClipModel model) {
  // The tower is frozen: without this, autograd would also compute the weight gradients of every
  // text block in each backward (the CoPS gradient only needs the input/deep-prompt path).
  for (auto& item : model->named_parameters())
    if (item.key().rfind("visual.", 0) != 0) item.value().set_requires_grad(false);
  TextTower t;
  t.embed_tokens = [model](const at::Tensor& ids) mutable {
    at::NoGradGuard no_grad;
    return model->token_embedding->forward(ids.to(model->token_embedding->weight.device())).detach();
  };
  t.encode = [model](const at::Tensor& prompts, const at::Tensor& ids, const std::vector<at::Tensor>& deep,
                     bool fp16) mutable {
    if (prompts.size(1) == model->cfg.context_length)
      return model->encode_text_embeddings(prompts, ids.argmax(-1), deep, fp16);
    return encode_runs(model, {}, {}, prompts, ids, deep, fp16);
  };
  t.encode_shared = [model](const at::Tensor& prefix, const at::Tensor& group, const at::Tensor& rest,
                            const at::Tensor& ids, const std::vector<at::Tensor>& deep, bool fp16) mutable {
    return encode_runs(model, prefix, group, rest, ids, deep, fp16);
  };
  return t;
}

}  // namespace zsad::models::cops
