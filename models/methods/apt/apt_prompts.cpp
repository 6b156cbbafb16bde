#include "models/methods/apt/apt_prompts.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "common/error.h"
#include "models/methods/apt/apt_components.h"

namespace zsad::models::apt {
namespace {

// [SOT] + n placeholders + class tokens up to and including EOT. SOT is the first id and EOT the
// largest (CLIP's argmax convention), so the word-hash tokenizer of random-weight runs works too.
std::vector<int64_t> splice(const std::vector<int64_t>& class_ids, int64_t n) {
  if (class_ids.size() < 2) throw Error("APT prompts: class token ids are empty");
  const auto eot = std::max_element(class_ids.begin(), class_ids.end()) - class_ids.begin();
  std::vector<int64_t> out{class_ids[0]};
  for (int64_t i = 0; i < n; ++i) out.push_back(kPlaceholderId);
  for (int64_t i = 1; i <= eot; ++i) out.push_back(class_ids[i]);
  return out;
}

}  // namespace

AptPrompts AptPrompts::init(const AptOptions& o, const std::vector<int64_t>& class_ids, const TextTower& tower,
                            at::Generator gen) {
  AptPrompts p;
  const int64_t M = o.n_ctx, K = o.n_abnormal_ctx;
  auto idn = splice(class_ids, M), ida = splice(class_ids, M + K);
  if (static_cast<int64_t>(ida.size()) > static_cast<int64_t>(class_ids.size()))
    throw Error("APT prompts: class text plus " + std::to_string(M + K) + " context tokens exceed the context length");
  p.ids_normal = at::tensor(idn, at::kLong);
  p.ids_abnormal = at::tensor(ida, at::kLong);
  at::Tensor en, ea;
  {
    at::NoGradGuard ng;
    en = tower.embed_tokens(p.ids_normal).to(at::kFloat).clone();
    ea = tower.embed_tokens(p.ids_abnormal).to(at::kFloat).clone();
  }
  const int64_t W = en.size(-1);
  p.prefix = en.narrow(0, 0, 1).clone();
  p.suffix_normal = en.narrow(0, 1 + M, en.size(0) - 1 - M).clone();
  p.suffix_abnormal = ea.narrow(0, 1 + M + K, ea.size(0) - 1 - M - K).clone();
  p.ctx = at::empty({o.n_normal_prompts, M, W}, at::kFloat);
  p.ctx.normal_(0.0, o.init_std, gen);
  p.ctx_abnormal = at::empty({o.n_abnormal_prompts, K, W}, at::kFloat);
  p.ctx_abnormal.normal_(0.0, o.init_std, gen);
  return p;
}

at::Tensor AptPrompts::normal_embeddings() const {
  const int64_t N = ctx.size(0), W = ctx.size(2);
  return at::cat({prefix.unsqueeze(0).expand({N, 1, W}), ctx,
                  suffix_normal.unsqueeze(0).expand({N, suffix_normal.size(0), W})},
                 1);
}

at::Tensor AptPrompts::abnormal_embeddings() const {
  const int64_t N = ctx.size(0), Na = ctx_abnormal.size(0), M = ctx.size(1), K = ctx_abnormal.size(1),
                W = ctx.size(2);
  auto c = ctx.unsqueeze(1).expand({N, Na, M, W});
  auto a = ctx_abnormal.unsqueeze(0).expand({N, Na, K, W});
  auto pre = prefix.view({1, 1, 1, W}).expand({N, Na, 1, W});
  auto suf = suffix_abnormal.view({1, 1, -1, W}).expand({N, Na, suffix_abnormal.size(0), W});
  return at::cat({pre, c, a, suf}, 2).reshape({N * Na, -1, W});
}

std::pair<at::Tensor, at::Tensor> AptPrompts::encode(const TextTower& tower) const {
  auto xn = normal_embeddings(), xa = abnormal_embeddings();
  auto idn = ids_normal.view({1, -1}).expand({xn.size(0), ids_normal.size(0)});
  auto ida = ids_abnormal.view({1, -1}).expand({xa.size(0), ids_abnormal.size(0)});
  return {tower.encode(xn, idn, {}, false), tower.encode(xa, ida, {}, false)};
}

LearnableMetaPrompt LearnableMetaPrompt::init(const std::vector<int64_t>& normal_ids,
                                              const std::vector<int64_t>& abnormal_ids, const TextTower& tower) {
  LearnableMetaPrompt m;
  auto one = [&](const std::vector<int64_t>& ids_in, at::Tensor& ids, at::Tensor& sot, at::Tensor& words,
                 at::Tensor& eot) {
    if (ids_in.size() < 3) throw Error("APT learnable meta-prompt: the text has no tokens");
    const auto e = std::max_element(ids_in.begin(), ids_in.end()) - ids_in.begin();
    if (e < 2) throw Error("APT learnable meta-prompt: the text has no tokens between SOT and EOT");
    ids = at::tensor(std::vector<int64_t>(ids_in.begin(), ids_in.begin() + e + 1), at::kLong);
    at::NoGradGuard ng;
    auto emb = tower.embed_tokens(ids).to(at::kFloat).clone();
    sot = emb.narrow(0, 0, 1).clone();
    words = emb.narrow(0, 1, e - 1).clone();
    eot = emb.narrow(0, e, 1).clone();
  };
  one(normal_ids, m.ids_n, m.sot_n, m.words_n, m.eot_n);
  one(abnormal_ids, m.ids_a, m.sot_a, m.words_a, m.eot_a);
  return m;
}

std::pair<at::Tensor, at::Tensor> LearnableMetaPrompt::anchors(const TextTower& tower) const {
  auto enc = [&](const at::Tensor& sot, const at::Tensor& words, const at::Tensor& eot, const at::Tensor& ids) {
    auto x = at::cat({sot, words, eot}, 0).unsqueeze(0);
    auto f = tower.encode(x, ids.view({1, -1}), {}, false)[0];
    return f / f.norm();
  };
  return {enc(sot_n, words_n, eot_n, ids_n), enc(sot_a, words_a, eot_a, ids_a)};
}

std::pair<at::Tensor, at::Tensor> initial_meta_prompt(const AptOptions& o, const std::string& word, const Tokenize& tok,
                                                      const std::function<at::Tensor(const at::Tensor&)>& encode_ids) {
  auto ensemble = [&](const std::vector<std::string>& states) {
    std::vector<at::Tensor> rows;
    for (const auto& s : states) rows.push_back(at::tensor(tok(fill_template(o.meta_template, fill_template(s, word))), at::kLong));
    at::Tensor f;
    {
      at::NoGradGuard ng;
      f = encode_ids(at::stack(rows)).to(at::kFloat);
    }
    return anchor(f, AnchorMean::kNormalized);
  };
  return {ensemble(o.normal_states), ensemble(o.abnormal_states)};
}

}  // namespace zsad::models::apt
