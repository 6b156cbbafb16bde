#include "models/methods/cops/cops_clip.h"

#include <cmath>
#include <limits>

#include <ATen/ATen.h>

#include "common/error.h"

namespace zsad::models::cops {
namespace {

// One residual block for the output rows `rows` [R] (int64 positions) only; every position still
// supplies its key and value. The same operations as ResidualAttentionBlockImpl::forward restricted
// to those rows (a row's output depends on the other rows only through their keys and values).
at::Tensor block_rows(ResidualAttentionBlock blk, const at::Tensor& x, const at::Tensor& mask,
                      const at::Tensor& rows) {
  ClipAttentionImpl& a = *blk->attn;
  const int64_t N = x.size(0), L = x.size(1), R = rows.size(0), W = a.width, H = a.heads, hd = W / H;
  at::Tensor h = blk->ln_1->forward(x);
  at::Tensor q = at::linear(h.index_select(1, rows), a.in_proj_weight.narrow(0, 0, W), a.in_proj_bias.narrow(0, 0, W))
                     .view({N, R, H, hd})
                     .transpose(1, 2);
  at::Tensor kv = at::linear(h, a.in_proj_weight.narrow(0, W, 2 * W), a.in_proj_bias.narrow(0, W, 2 * W))
                      .view({N, L, 2, H, hd})
                      .permute({2, 0, 3, 1, 4});
  q = q * (1.0 / std::sqrt(static_cast<double>(hd)));
  at::Tensor scores = at::matmul(q, kv[0].transpose(-2, -1)) + mask.index_select(0, rows);  // [N,H,R,L]
  at::Tensor ctx = at::matmul(at::softmax(scores, -1), kv[1]);                                // [N,H,R,hd]
  at::Tensor y = x.index_select(1, rows) + a.out_proj->forward(ctx.permute({0, 2, 1, 3}).reshape({N, R, W}));
  return y + blk->mlp->forward(blk->ln_2->forward(y));
}

// encode_text_embeddings for L <= context_length tokens, built from the model's own blocks: the
// causal mask makes the EOT row of a prompt independent of the positions after it, so CoPS runs
// only up to EOT (17 of 77 tokens, ~4.5x less text-tower work) with the same result.
// Rows whose output nothing reads are not computed (same result, ~20% less work at CoPS' shapes):
//  - before a layer that replaces positions 1..n by a deep prompt, the previous layer's outputs at
//    1..n are discarded, so that layer computes them only as keys/values;
//  - the last layer only needs the EOT row (when every sequence has its EOT at the same position).
at::Tensor encode_prefix(ClipModel& model, const at::Tensor& x_in, const at::Tensor& eot,
                         const std::vector<at::Tensor>& deep, bool round_fp16) {
  const int64_t N = x_in.size(0), L = x_in.size(1), W = x_in.size(2);
  const int64_t layers = model->cfg.text_layers, depth = static_cast<int64_t>(deep.size());
  if (depth > layers - 1)
    throw Error(std::to_string(deep.size()) + " deep text prompts for " + std::to_string(layers) +
                " text layers (at most layers - 1)");
  for (const auto& p : deep)
    if (p.size(-2) + 1 > L)
      throw Error("deep text prompt of " + std::to_string(p.size(-2)) + " tokens does not fit " + std::to_string(L));
  at::Tensor eot_l = eot.to(at::kLong);
  const int64_t e0 = eot_l[0].item<int64_t>();
  const bool same_eot = (eot_l == e0).all().item<bool>();
  const auto lopt = at::TensorOptions().dtype(at::kLong);
  at::Tensor mask = at::full({L, L}, -std::numeric_limits<double>::infinity(), x_in.options()).triu_(1);
  at::Tensor x = x_in + model->positional_embedding.narrow(0, 0, L);
  int64_t gap = 0;  // > 0: x holds positions {0, 1+gap..L-1} (1..gap were left out: replaced now)
  for (int64_t i = 0; i < layers; ++i) {
    if (i >= 1 && i <= depth) {
      at::Tensor p = deep[i - 1];
      if (round_fp16) p = p.to(at::kHalf).to(at::kFloat);
      if (p.dim() == 2) p = p.unsqueeze(0).expand({N, p.size(0), p.size(1)});
      const int64_t n = p.size(1);
      x = at::cat({x.narrow(1, 0, 1), p.to(x.scalar_type()), x.narrow(1, gap > 0 ? 1 : 1 + n, L - 1 - n)}, 1);
      gap = 0;
    }
    ResidualAttentionBlock blk = model->transformer->block(i);
    if (i == layers - 1 && same_eot) {
      x = block_rows(blk, x, mask, at::full({1}, e0, lopt));
    } else if (i + 1 <= depth) {
      const int64_t n = deep[i].size(-2);
      x = block_rows(blk, x, mask, at::cat({at::zeros({1}, lopt), at::arange(1 + n, L, lopt)}));
      gap = n;
    } else {
      x = blk->forward(x, mask);
    }
  }
  x = model->ln_final->forward(x);
  if (same_eot && x.size(1) == 1) return at::matmul(x.squeeze(1), model->text_projection);
  at::Tensor idx = eot_l.view({N, 1, 1}).expand({N, 1, W});
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
    return encode_prefix(model, prompts, ids.argmax(-1), deep, fp16);
  };
  return t;
}

}  // namespace zsad::models::cops
