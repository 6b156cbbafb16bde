#include "models/methods/cops/prompt_learner.h"

#include <ATen/ATen.h>

#include "common/error.h"

namespace zsad::models::cops {

at::Tensor prompt_token_ids(const CopsOptions& o) {
  std::vector<int64_t> ids(kContextLength, 0);
  size_t i = 0;
  ids[i++] = kSotId;
  for (int64_t k = 0; k < o.learnable_tokens(); ++k) ids[i++] = kXId;
  if (!o.icts) ids[i++] = kObjectId;  // code's vae_length=0 prompt "X ... X object."
  ids[i++] = kDotId;
  ids[i++] = kEotId;
  if (i > static_cast<size_t>(kContextLength))
    throw Error("method.cops.n_ctx: prompt of " + std::to_string(i) + " tokens exceeds the context length 77");
  return at::tensor(ids, at::kLong);
}

PromptLearner PromptLearner::init(const CopsOptions& o, const TextTower& tower, at::Generator gen) {
  if (!tower.embed_tokens || !tower.encode) throw Error("cops: the text tower callables are not set");
  PromptLearner p;
  const int64_t T = o.learnable_tokens();
  p.token_ids = prompt_token_ids(o);
  at::Tensor emb;
  {
    at::NoGradGuard no_grad;
    emb = tower.embed_tokens(p.token_ids).detach().to(at::kFloat).clone();
  }
  const int64_t W = emb.size(-1);
  if (emb.dim() != 2 || emb.size(0) != kContextLength)
    throw Error("cops: text tower embed_tokens returned shape " + std::to_string(emb.dim()) + "-d, expected [77, width]");
  if (W != o.feature_dim)
    throw Error("method.cops.feature_dim: " + std::to_string(o.feature_dim) + " differs from the text width " +
                std::to_string(W) + " (CoPS adds image-space vectors to token embeddings)");
  p.token_prefix = emb.narrow(0, 0, 1).clone();
  p.token_suffix = emb.narrow(0, 1 + T, kContextLength - 1 - T).clone();
  p.ctx_pos = at::empty({1, 1, T, W}, at::kFloat);
  p.ctx_pos.normal_(0.0, o.init_std, gen);
  p.ctx_neg = at::empty({1, 1, T, W}, at::kFloat);
  p.ctx_neg.normal_(0.0, o.init_std, gen);
  for (int64_t d = 0; d < o.deep_prompt_depth; ++d) {
    at::Tensor t = at::empty({o.deep_prompt_length, W}, at::kFloat);
    t.normal_(0.0, o.init_std, gen);
    p.compound_prompts_text.push_back(t);
  }
  return p;
}

at::Tensor PromptLearner::assemble(const CopsOptions& o, const at::Tensor& state_normal,
                                   const at::Tensor& state_anomaly, const at::Tensor& cls, int64_t batch,
                                   int64_t R) const {
  const int64_t C = o.context_tokens(), M = o.num_prototypes, T = o.learnable_tokens();
  const int64_t W = ctx_pos.size(-1);
  auto one = [&](const at::Tensor& ctx, const at::Tensor& state) {
    std::vector<at::Tensor> parts;
    parts.push_back(token_prefix.view({1, 1, 1, W}).expand({batch, R, 1, W}));
    parts.push_back(ctx.narrow(2, 0, C).expand({batch, R, C, W}));
    at::Tensor st = ctx.narrow(2, C, M);
    if (state.defined()) st = st + state.view({batch, 1, M, W});
    parts.push_back(st.expand({batch, R, M, W}));
    if (T > o.n_ctx) {
      at::Tensor cl = ctx.narrow(2, o.n_ctx, T - o.n_ctx);
      if (cls.defined()) cl = cl + cls.view({batch, R, 1, W});
      parts.push_back(cl.expand({batch, R, T - o.n_ctx, W}));
    }
    parts.push_back(token_suffix.view({1, 1, -1, W}).expand({batch, R, token_suffix.size(0), W}));
    return at::cat(parts, 2);
  };
  return at::cat({one(ctx_pos, state_normal), one(ctx_neg, state_anomaly)}, 1);
}

at::Tensor PromptLearner::encode(const CopsOptions& o, const TextTower& tower, const at::Tensor& prompts) const {
  const int64_t B = prompts.size(0), N2 = prompts.size(1), W = prompts.size(3);
  const int64_t eot = token_ids.argmax().item<int64_t>();
  const int64_t L = o.text_context == 0 ? eot + 1 : std::min<int64_t>(o.text_context, kContextLength);
  if (L <= eot) throw Error("method.cops.text_context: " + std::to_string(L) + " cuts off the EOT token at " + std::to_string(eot));
  at::Tensor x = prompts.narrow(2, 0, L).reshape({B * N2, L, W});
  at::Tensor ids = token_ids.narrow(0, 0, L).view({1, L}).expand({B * N2, L});
  // The code expands each deep prompt over the sequences before .half(), so the gradient of every
  // sequence is rounded to fp16 before the sum over sequences; expanding here keeps that order.
  std::vector<at::Tensor> deep = compound_prompts_text;
  if (o.deep_prompt_fp16)
    for (auto& p : deep) p = p.unsqueeze(0).expand({B * N2, p.size(0), p.size(1)});
  return average_samples(tower.encode(x, ids, deep, o.deep_prompt_fp16), B, N2);
}

at::Tensor PromptLearner::average_samples(const at::Tensor& features, int64_t B, int64_t N2) {
  at::Tensor y = features / features.norm(2, {-1}, true);
  y = y.reshape({B, 2, N2 / 2, y.size(-1)}).mean(2);
  return y / y.norm(2, {-1}, true);
}

at::Tensor PromptLearner::encode_sharing(const CopsOptions& o, const TextTower& tower, const at::Tensor& prompts,
                                         bool per_image_states) const {
  const int64_t B = prompts.size(0), N2 = prompts.size(1), W = prompts.size(3), R = N2 / 2, N = B * N2;
  const int64_t eot = token_ids.argmax().item<int64_t>();
  const int64_t L = o.text_context == 0 ? eot + 1 : std::min<int64_t>(o.text_context, kContextLength);
  // An empty batch (a rank's share of an epoch's last, partial batch) takes the plain path.
  if (!o.text_shared_prefix || !tower.encode_shared || L == kContextLength || L <= eot || B == 0)
    return encode(o, tower, prompts);
  bool deep_grad = false;
  for (const auto& p : compound_prompts_text) deep_grad = deep_grad || p.requires_grad();
  deep_grad = deep_grad && at::GradMode::is_enabled();
  const int64_t n = compound_prompts_text.empty() ? 0 : compound_prompts_text[0].size(0);
  at::Tensor x = prompts.narrow(2, 0, L);
  at::Tensor ids = token_ids.narrow(0, 0, L).view({1, L}).expand({N, L});
  // Each sequence's deep-prompt gradient is rounded to fp16 on its own (see encode()): summed over
  // a shared prefix it would round differently. (Sharing only the SOT token gains nothing measurable.)
  if (o.deep_prompt_fp16 && deep_grad && n > 0) return encode(o, tower, prompts);
  // Per polarity: SOT + the C context tokens. Per (image, polarity): also the state tokens, which
  // the R samples of an image share. Whichever runs fewer positions; deep prompts lie inside.
  const int64_t C = o.context_tokens(), S = 1 + o.n_ctx;
  const int64_t cost_pol = 2 * (1 + C) + N * (L - 1 - C);
  const int64_t cost_img = (per_image_states ? 2 * B : 2) * S + N * (L - S);
  const bool by_image = cost_img < cost_pol || n + 1 > 1 + C;
  const int64_t Lp = by_image ? S : 1 + C;
  if (n + 1 > Lp || Lp >= L) return encode(o, tower, prompts);
  at::Tensor firsts = x.view({B, 2, R, L, W}).select(2, 0).narrow(2, 0, Lp);  // [B,2,Lp,W]
  at::Tensor j = at::arange(N, at::kLong), prefix, group;
  if (by_image && per_image_states) {
    prefix = firsts.reshape({2 * B, Lp, W});
    group = at::div(j, R, "floor");  // sequence b*2R + pol*R + r -> b*2 + pol
  } else {
    prefix = firsts.select(0, 0);
    group = at::remainder(at::div(j, R, "floor"), 2);
  }
  at::Tensor rest = x.narrow(2, Lp, L - Lp).reshape({N, L - Lp, W});
  return average_samples(tower.encode_shared(prefix, group, rest, ids, compound_prompts_text, o.deep_prompt_fp16), B,
                         N2);
}

void PromptLearner::collect(NamedTensorRefs& out) {
  out.push_back({"ctx_pos", &ctx_pos});
  out.push_back({"ctx_neg", &ctx_neg});
  for (size_t i = 0; i < compound_prompts_text.size(); ++i)
    out.push_back({"compound_prompts_text." + std::to_string(i), &compound_prompts_text[i]});
}

void PromptLearner::collect_buffers(NamedTensorRefs& out) {
  out.push_back({"token_ids", &token_ids});
  out.push_back({"token_prefix", &token_prefix});
  out.push_back({"token_suffix", &token_suffix});
}

}  // namespace zsad::models::cops
