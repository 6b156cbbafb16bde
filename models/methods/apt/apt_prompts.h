#pragma once
// APT's learnable prompts (spec §3.1), PromptAD layout without hand-written anomaly text:
//   normal   i:      [SOT] C_i (M tokens) "{cls}." [EOT]
//   abnormal (i,j):  [SOT] C_i A_j (K tokens) "{cls}." [EOT]
// C [N_n,M,W] and A [N_a,K,W] are the parameters; the class text's token embeddings are frozen
// buffers. The initial meta-prompt anchors come from a generic state-word ensemble (spec §3.2).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "models/methods/apt/apt_options.h"
#include "models/methods/cops/text_tower.h"

namespace zsad::models::apt {

using TextTower = cops::TextTower;
// Text -> zero-padded [ctx] ids (SOT ... EOT), e.g. models::make_text_tokenizer.
using Tokenize = std::function<std::vector<int64_t>(const std::string&)>;

constexpr int64_t kPlaceholderId = 343;  // "x</w>": any id; these positions are replaced

struct AptPrompts {
  at::Tensor ctx;            // C [N_n,M,W] learnable
  at::Tensor ctx_abnormal;   // A [N_a,K,W] learnable
  at::Tensor ids_normal, ids_abnormal;             // [L] int64 (L = position of EOT + 1)
  at::Tensor prefix, suffix_normal, suffix_abnormal;  // [1,W], [L-1-M,W], [L-1-M-K,W] frozen

  // class_ids: the tokenizer's ids of "{class text}." (SOT ... EOT, padded). gen seeds the
  // N(0, init_std^2) initialisation.
  static AptPrompts init(const AptOptions& o, const std::vector<int64_t>& class_ids, const TextTower& tower,
                         at::Generator gen);

  at::Tensor normal_embeddings() const;    // [N_n,L_n,W]
  at::Tensor abnormal_embeddings() const;  // [N_n*N_a,L_a,W], index i*N_a + j

  // Raw (unnormalised) text features of all prompts: {T_n [N_n,E], T_a [N_n*N_a,E]}.
  std::pair<at::Tensor, at::Tensor> encode(const TextTower& tower) const;
};

// The learnable meta-prompt of smgs_mode learnable (spec §3.2 alternative, [R]): two token
// sequences initialised from the embeddings of the tokenised texts (e.g. "a photo of a flawless
// {cls}." / "a photo of a damaged {cls}."); the word positions between SOT and EOT are the
// parameters, SOT/EOT and the padding stay frozen. Anchors: normalize(enc(sequence)).
struct LearnableMetaPrompt {
  at::Tensor words_n, words_a;           // [n_n,W], [n_a,W] learnable
  at::Tensor ids_n, ids_a;               // [L] up to and including EOT
  at::Tensor sot_n, eot_n, sot_a, eot_a; // [1,W] frozen

  static LearnableMetaPrompt init(const std::vector<int64_t>& normal_ids, const std::vector<int64_t>& abnormal_ids,
                                  const TextTower& tower);
  // (m_n, m_a), each [E] normalised; differentiable with respect to the words.
  std::pair<at::Tensor, at::Tensor> anchors(const TextTower& tower) const;
};

// Initial meta anchors (t_n0, t_a0), each normalize(mean_s normalize(enc(template(state(s))))),
// where state words get `word` ("object" or the class text). encode_ids: [N,ctx] -> [N,E].
std::pair<at::Tensor, at::Tensor> initial_meta_prompt(const AptOptions& o, const std::string& word, const Tokenize& tok,
                                                      const std::function<at::Tensor(const at::Tensor&)>& encode_ids);

}  // namespace zsad::models::apt
