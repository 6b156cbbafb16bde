#pragma once
// What CoPS needs from the frozen CLIP text tower, as two callables, so the prompt learner does
// not depend on one CLIP implementation (tests plug in a tiny tower; make_cops_text_tower() in
// cops_clip.h adapts models/clip's ClipModel).
#include <functional>
#include <vector>

#include <ATen/core/Tensor.h>

namespace zsad::models::cops {

struct TextTower {
  // Token-embedding rows for ids [L] (int64) -> [L, width]; frozen (no gradient needed).
  std::function<at::Tensor(const at::Tensor& ids)> embed_tokens;
  // CLIP's encode_text on embedded prompts: x [N,L,width] + positional_embedding[:L] -> transformer
  // (causal mask) in which, before layer i = 1..deep.size() (0-based), token positions 1..n are
  // replaced by deep[i-1] ([n,width] or per sequence [N,n,width]; rounded to fp16 and back when
  // deep_fp16, the gradient passing through the same rounding) -> ln_final -> the row
  // at argmax(ids) of each sequence -> @ text_projection -> [N, embed_dim], NOT normalised.
  // Gradients flow to x and to the deep prompts; the tower's own weights stay frozen.
  std::function<at::Tensor(const at::Tensor& prompts, const at::Tensor& ids,
                           const std::vector<at::Tensor>& deep, bool deep_fp16)>
      encode;
  // Optional (may be empty): encode() of sequences whose first Lp positions are shared, given once
  // per group: sequence j = cat(prefix[group[j]], rest[j]) with prefix [G,Lp,W], group [N] int64,
  // rest [N,L-Lp,W], ids [N,L]. Same result as encode() on the full sequences; the shared positions
  // run once per group (their gradient is the sum over the group's sequences). Deep prompts lie
  // inside the prefix as [n,W] (Lp > n), or in the rest (Lp <= 1).
  std::function<at::Tensor(const at::Tensor& prefix, const at::Tensor& group, const at::Tensor& rest,
                           const at::Tensor& ids, const std::vector<at::Tensor>& deep, bool deep_fp16)>
      encode_shared;
};

}  // namespace zsad::models::cops
