#pragma once
// Adapts models/clip's ClipModel to the TextTower CoPS expects.
#include "models/clip/clip_model.h"
#include "models/methods/cops/text_tower.h"

namespace zsad::models::cops {

// The model must outlive the returned tower (it is captured by handle). Prompts shorter than the
// context length (method.cops.text_context = 0) are zero-padded to it: the causal mask makes the
// EOT row independent of the padding.
TextTower make_cops_text_tower(ClipModel model);

}  // namespace zsad::models::cops
