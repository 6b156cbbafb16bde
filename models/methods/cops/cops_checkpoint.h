#pragma once
// The officially released CoPS checkpoints (results/models/{visa,mvtec}/epoch_N.pth): a torch.save
// dict {"prompt_learner": state_dict} whose keys are CopsModel::state_dict(false)'s
// (ctx_pos, ctx_neg, extractor.*, t_n, t_a, vae_decoder.*, compound_prompts_text.N).
#include <map>
#include <string>

#include <ATen/core/Tensor.h>

namespace zsad::models::cops {

// Reads the "prompt_learner" entry through the project's torch.save reader, as float32. Keys the
// official train.py strips before saving (projector*, extractor_*, token*) are dropped if an
// unfiltered file carries them; vae_encoder.* is kept when present. Throws zsad::Error naming the
// path when the file or the entry is missing.
std::map<std::string, at::Tensor> read_official_checkpoint(const std::string& path);

}  // namespace zsad::models::cops
