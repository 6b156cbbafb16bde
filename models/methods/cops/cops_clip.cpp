#include "models/methods/cops/cops_clip.h"

#include <ATen/ATen.h>

namespace zsad::models::cops {

TextTower make_cops_text_tower(ClipModel model) {
  TextTower t;
  t.embed_tokens = [model](const at::Tensor& ids) mutable {
    at::NoGradGuard no_grad;
    return model->token_embedding->forward(ids.to(model->token_embedding->weight.device())).detach();
  };
  t.encode = [model](const at::Tensor& prompts, const at::Tensor& ids, const std::vector<at::Tensor>& deep,
                     bool fp16) mutable {
    const int64_t Lc = model->cfg.context_length, L = prompts.size(1);
    at::Tensor x = prompts;
    if (L < Lc) x = at::cat({x, at::zeros({x.size(0), Lc - L, x.size(2)}, x.options())}, 1);
    return model->encode_text_embeddings(x, ids.argmax(-1), deep, fp16);
  };
  return t;
}

}  // namespace zsad::models::cops
