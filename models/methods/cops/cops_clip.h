#pragma once
// Adapts models/clip's ClipModel to the TextTower CoPS expects.
#include "models/clip/clip_model.h"
#include "models/methods/cops/text_tower.h"

namespace zsad::models::cops {

// The tower shares the model (handle copy) and freezes its text parameters (requires_grad=false),
// so a backward through it computes input and deep-prompt gradients only, never weight gradients. Full-length prompts go through
// ClipModel::encode_text_embeddings; shorter ones (method.cops.text_context = 0: up to EOT) run the
// model's own blocks with the positional embedding and causal mask cut to that length.
TextTower make_cops_text_tower(ClipModel model);

}  // namespace zsad::models::cops
