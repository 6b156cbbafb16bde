#pragma once
// Readers for CLIP weight files. Every reader returns CPU tensors keyed by their dotted
// state-dict names (e.g. "visual.transformer.resblocks.3.attn.in_proj_weight"), in the dtype
// stored in the file; callers convert (fp16 -> fp32) when copying into a model.
#include <ATen/core/Tensor.h>

#include <map>
#include <string>

namespace zsad::models {

using StateDict = std::map<std::string, at::Tensor>;

enum class WeightFormat {
  kTorchScript,   // OpenAI's released .pt: a TorchScript archive (storages may be tagged cuda:0, fp16)
  kTorchSave,     // Python torch.save zip archive (state dict, possibly nested / OrderedDict)
  kSafetensors,   // open_clip / HF safetensors
};

// Detects the format from the file's bytes (not its name). Throws zsad::Error naming the
// path when the file is missing, empty, truncated or of no known format.
WeightFormat detect_weight_format(const std::string& path);

// Reads any of the formats above. Nested dicts in torch.save files are flattened with '.'
// ("state_dict.visual.proj"); a leading "module." (DDP) is kept — strip with strip_prefix.
StateDict read_weights(const std::string& path);

StateDict read_torchscript_weights(const std::string& path);  // parameters + buffers, by name
StateDict read_torch_save(const std::string& path);          // own unpickler (LibTorch 1.13 cannot read OrderedDict)
StateDict read_safetensors(const std::string& path);

// Returns the entries whose key starts with `prefix`, with the prefix removed.
StateDict strip_prefix(const StateDict& sd, const std::string& prefix);

// Added by the weight readers (additive, existing signatures unchanged):
// "torchscript" / "torch.save" / "safetensors", for messages.
const char* weight_format_name(WeightFormat f);

// open_clip's convention for training checkpoints: keep only the "state_dict." sub-dict when
// there is one (dropping optimizer/epoch entries), then drop a "module." (DDP) prefix when every
// key has it. A plain state dict is returned unchanged.
StateDict unwrap_checkpoint(const StateDict& sd);

// The tensors under one top-level entry of a torch.save file, with "<entry>." removed, e.g.
// read_torch_save_entry("epoch_10.pth", "prompt_learner") for CoPS's released checkpoints
// ({"prompt_learner": state_dict}). Throws naming the path and the entries that do exist when
// `entry` holds no tensors.
StateDict read_torch_save_entry(const std::string& path, const std::string& entry);

}  // namespace zsad::models
