#include "models/methods/cops/cops_clip.h"

#include <limits>

#include <ATen/ATen.h>

#include "common/error.h"

namespace zsad::models::cops {
namespace {

// encode_text_embeddings for L <= context_length tokens, built from the model's own blocks: the
// causal mask makes the EOT row of a prompt independent of the positions after it, so CoPS runs
// only up to EOT (17 of 77 tokens, ~4.5x less text-tower work) with the same result.
at::Tensor encode_prefix(ClipModel& model, const at::Tensor& x_in, const at::Tensor& eot,
                         const std::vector<at::Tensor>& deep, bool round_fp16) {
  const int64_t N = x_in.size(0), L = x_in.size(1), W = x_in.size(2);
  if (static_cast<int64_t>(deep.size()) > model->cfg.text_layers - 1)
    throw Error(std::to_string(deep.size()) + " deep text prompts for " + std::to_string(model->cfg.text_layers) +
                " text layers (at most layers - 1)");
  at::Tensor mask = at::full({L, L}, -std::numeric_limits<double>::infinity(), x_in.options()).triu_(1);
  at::Tensor x = x_in + model->positional_embedding.narrow(0, 0, L);
  for (int64_t i = 0; i < model->cfg.text_layers; ++i) {
    if (i >= 1 && i <= static_cast<int64_t>(deep.size())) {
      at::Tensor p = deep[i - 1];
      if (round_fp16) p = p.to(at::kHalf).to(at::kFloat);
      if (p.dim() == 2) p = p.unsqueeze(0).expand({N, p.size(0), p.size(1)});
      const int64_t n = p.size(1);
      if (n + 1 > L) throw Error("deep text prompt of " + std::to_string(n) + " tokens does not fit " + std::to_string(L));
      x = at::cat({x.narrow(1, 0, 1), p.to(x.scalar_type()), x.narrow(1, 1 + n, L - 1 - n)}, 1);
    }
    x = model->transformer->block(i)->forward(x, mask);
  }
  x = model->ln_final->forward(x);
  at::Tensor idx = eot.to(at::kLong).view({N, 1, 1}).expand({N, 1, W});
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
