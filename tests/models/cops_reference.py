#!/usr/bin/env python3
"""python3-torch reference for the CoPS C++ port (tests/models/cops_*.cpp).

Written from shared/specs/cops.md (the official cqylunlun/CoPS train.py / test.py / lib/cops.py
behaviour): modules are nn.MultiheadAttention / nn.Linear / nn.LayerNorm as in the code, the
prompt learner loops over samples and images as the code does, F.cosine_similarity over the
broadcast [B,P,M,D] tensor, AnomalyCLIP's FocalLoss and BinaryDiceLoss, torch.optim.Adam.

Writes one HDF5 file: params/<checkpoint name>, clip/<text tower key>, tok/{ids,rows},
in/<input>, out/<expected value>, grad/<name>, step1/<name> (parameters after the update).

usage: cops_reference.py --case components|step|infer --out FILE [--dtype float32|float64] [...]
"""
import argparse
import math
from collections import OrderedDict

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SOT, EOT, X_ID, DOT_ID, OBJECT_ID = 49406, 49407, 343, 269, 14115
CTX_LEN = 77


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class PrototypeExtractor(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(d)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(d, d)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(d, d))]))

    def forward(self, t, image):
        x = t.unsqueeze(0).repeat((image.shape[0], 1, 1))
        x = x + self.attn(self.ln_1(x), self.ln_1(image), self.ln_1(image), need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class VaeEncoder(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, d), nn.ReLU())
        self.mean = nn.Linear(d, d)
        self.log_var = nn.Linear(d, d)

    def forward(self, x):
        h = self.net(x)
        return self.mean(h), self.log_var(h)


class VaeDecoder(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))

    def forward(self, x):
        return self.net(x)


# ---- tiny CLIP text tower in OpenAI layout (LND, nn.MultiheadAttention, causal mask) ----------

class TextBlock(nn.Module):
    def __init__(self, w, heads, mask, index, n_deep):
        super().__init__()
        self.attn = nn.MultiheadAttention(w, heads)
        self.ln_1 = nn.LayerNorm(w)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(w, 4 * w)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(4 * w, w))]))
        self.ln_2 = nn.LayerNorm(w)
        self.mask = mask
        self.index = index
        self.n_deep = n_deep

    def forward(self, inputs):
        x, deep, counter, fp16 = inputs
        if not (self.index == 0 or counter > len(deep) - 1):
            prefix = x[:1, :, :]
            suffix = x[1 + self.n_deep:, :, :]
            ctx = deep[counter].expand(x.shape[1], -1, -1).permute(1, 0, 2)
            if fp16:
                ctx = ctx.half()  # the code's .half(); torch.cat promotes back
            x = torch.cat([prefix, ctx, suffix], dim=0)
            counter += 1
        m = self.mask.to(dtype=x.dtype)
        x = x + self.attn(self.ln_1(x), self.ln_1(x), self.ln_1(x), need_weights=False, attn_mask=m)[0]
        x = x + self.mlp(self.ln_2(x))
        return [x, deep, counter, fp16]


class TinyText(nn.Module):
    def __init__(self, w, layers, heads, embed, n_deep):
        super().__init__()
        mask = torch.empty(CTX_LEN, CTX_LEN)
        mask.fill_(float("-inf"))
        mask.triu_(1)
        self.token_embedding = nn.Embedding(49408, w)
        self.positional_embedding = nn.Parameter(torch.randn(CTX_LEN, w) * 0.01)
        self.blocks = nn.ModuleList([TextBlock(w, heads, mask, i, n_deep) for i in range(layers)])
        self.ln_final = nn.LayerNorm(w)
        self.text_projection = nn.Parameter(torch.randn(w, embed) * w ** -0.5)

    def clip_state(self):
        out = {}
        for k, v in self.state_dict().items():
            out[k.replace("blocks.", "transformer.resblocks.")] = v
        return out

    def encode_text_learn(self, prompts, tokenized, deep, fp16):
        x = prompts + self.positional_embedding
        x = x.reshape(-1, *x.shape[-2:]).permute(1, 0, 2)
        x = self.blocks_forward(x, deep, fp16)
        x = self.ln_final(x.permute(1, 0, 2))
        tokenized = tokenized.reshape(-1, tokenized.shape[-1])
        x = x[torch.arange(x.shape[0]), tokenized.argmax(dim=-1)] @ self.text_projection
        x = x / x.norm(dim=-1, keepdim=True)
        x = x.reshape(*prompts.shape[:2], -1)
        return x.reshape(x.shape[0], 2, -1, x.shape[-1])

    def blocks_forward(self, x, deep, fp16):
        state = [x, deep, 0, fp16]
        for b in self.blocks:
            state = b(state)
        return state[0]


# ---- prompt learner (code layout) ------------------------------------------------------------

def token_ids(icts, n_ctx, cls_len):
    ids = [SOT] + [X_ID] * (n_ctx + (cls_len if icts else 0)) + ([] if icts else [OBJECT_ID]) + [DOT_ID, EOT]
    return torch.tensor(ids + [0] * (CTX_LEN - len(ids)), dtype=torch.long)


class PromptLearner(nn.Module):
    def __init__(self, o, text, dtype):
        super().__init__()
        d = o.dim
        self.o = o
        self.T = o.n_ctx + (o.cls_len if o.icts else 0)
        self.ctx_pos = nn.Parameter(torch.randn(1, 1, self.T, d) * 0.3)
        self.ctx_neg = nn.Parameter(torch.randn(1, 1, self.T, d) * 0.3)
        self.extractor = PrototypeExtractor(d, o.heads)
        self.t_n = nn.Parameter(torch.randn(o.M, d) * 0.5)
        self.t_a = nn.Parameter(torch.randn(o.M, d) * 0.5)
        self.vae_encoder = VaeEncoder(d)
        self.vae_decoder = VaeDecoder(d)
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(torch.randn(o.deep_len, d) * 0.3) for _ in range(o.depth)])
        ids = token_ids(o.icts, o.n_ctx, o.cls_len)
        self.ids = ids
        with torch.no_grad():
            emb = text.token_embedding(ids.view(1, -1)).to(dtype)
        self.prefix = emb[:, :1].reshape(1, 1, 1, d)
        self.suffix = emb[:, 1 + self.T:].reshape(1, 1, -1, d)
        # non-trivial LayerNorm / bias values so that every term is exercised
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.LayerNorm):
                    m.weight.add_(torch.randn_like(m.weight) * 0.2)
                    m.bias.add_(torch.randn_like(m.bias) * 0.1)
                if isinstance(m, nn.Linear):
                    m.weight.mul_(2.0)
                    m.bias.add_(torch.randn_like(m.bias) * 0.05)
            self.extractor.attn.in_proj_bias.add_(torch.randn_like(self.extractor.attn.in_proj_bias) * 0.1)

    def checkpoint(self):
        return OrderedDict((k, v) for k, v in self.state_dict().items())

    def prompts(self, B, agg_prototype, bias):
        """The code's PromptLearner.forward up to the text encoder: [B, 2R, 77, D]."""
        o = self.o
        n_ctx_wo = o.n_ctx
        ctx_pos = self.ctx_pos.repeat(B, 1, 1, 1)
        ctx_neg = self.ctx_neg.repeat(B, 1, 1, 1)
        pos_context = ctx_pos[:, :, :n_ctx_wo - o.M]
        neg_context = ctx_neg[:, :, :n_ctx_wo - o.M]
        if agg_prototype is None:
            pos_state = ctx_pos[:, :, n_ctx_wo - o.M:n_ctx_wo]
            neg_state = ctx_neg[:, :, n_ctx_wo - o.M:n_ctx_wo]
        elif o.assignment == "code":
            pos_state = ctx_pos[:, :, n_ctx_wo - o.M:n_ctx_wo] + agg_prototype[:, 1:]
            neg_state = ctx_neg[:, :, n_ctx_wo - o.M:n_ctx_wo] + agg_prototype[:, :1]
        else:
            pos_state = ctx_pos[:, :, n_ctx_wo - o.M:n_ctx_wo] + agg_prototype[:, :1]
            neg_state = ctx_neg[:, :, n_ctx_wo - o.M:n_ctx_wo] + agg_prototype[:, 1:]
        bias = bias.reshape(B, 1, -1, bias.shape[-1])
        pos_list, neg_list = [], []
        for i in range(bias.shape[-2]):
            b = bias[:, :, i, :].unsqueeze(2)
            pos_class = ctx_pos[:, :, n_ctx_wo:] + b
            neg_class = ctx_neg[:, :, n_ctx_wo:] + b
            cp = torch.cat([pos_context, pos_state, pos_class], dim=2)
            cn = torch.cat([neg_context, neg_state, neg_class], dim=2)
            pp, nn_ = [], []
            for j in range(B):
                pp.append(torch.cat([self.prefix, cp[j].unsqueeze(0), self.suffix], dim=2))
                nn_.append(torch.cat([self.prefix, cn[j].unsqueeze(0), self.suffix], dim=2))
            pos_list.append(torch.cat(pp, 0).reshape(B, CTX_LEN, -1))
            neg_list.append(torch.cat(nn_, 0).reshape(B, CTX_LEN, -1))
        P = torch.stack(pos_list, 1).reshape(B, -1, CTX_LEN, self.prefix.shape[-1])
        N = torch.stack(neg_list, 1).reshape(B, -1, CTX_LEN, self.prefix.shape[-1])
        return torch.cat([P, N], 1)

    def text_features(self, text, prompts, fp16):
        R2 = prompts.shape[1]
        tok = self.ids.view(1, -1).repeat(prompts.shape[0] * R2, 1)
        return text.encode_text_learn(prompts, tok, list(self.compound_prompts_text), fp16)


# ---- losses (AnomalyCLIP / CoPS utils/loss.py behaviour) -------------------------------------

def focal_loss(logit, target, gamma=2, smooth=1e-5):
    num_class = logit.shape[1]
    logit = logit.view(logit.size(0), logit.size(1), -1).permute(0, 2, 1).contiguous().view(-1, num_class)
    target = torch.squeeze(target, 1).view(-1, 1)
    alpha = torch.ones(num_class, 1)
    idx = target.cpu().long()
    one_hot = torch.FloatTensor(target.size(0), num_class).zero_().scatter_(1, idx, 1)
    one_hot = torch.clamp(one_hot, smooth / (num_class - 1), 1.0 - smooth)
    pt = (one_hot * logit).sum(1) + smooth
    logpt = pt.log()
    alpha = torch.squeeze(alpha[idx])
    return (-1 * alpha * torch.pow((1 - pt), gamma) * logpt).mean()


def dice_loss(inp, targets):
    b = targets.size()[0]
    i = inp.reshape(b, -1)
    t = targets.reshape(b, -1)
    eff = (2 * (i * t).sum(1) + 1) / (i.sum(1) + t.sum(1) + 1)
    return 1 - eff.sum() / b


def average_neighbor(x, k):
    B, N, C = x.shape
    H = int(N ** 0.5)
    x = x.transpose(1, 2).reshape(B, C, H, H)
    out = sum([F.avg_pool2d(x, kernel_size=k, stride=1, padding=k // 2)]) / 1
    return out.flatten(2).transpose(1, 2)


def distance(f, proto):
    d = 1. - F.cosine_similarity(f.unsqueeze(2), proto.unsqueeze(1), dim=-1)
    return torch.min(d, dim=2)[0]


def compute_similarity(v, t):
    B, *_, C = t.shape
    t = t.reshape(B, -1, C).transpose(1, 2)
    s = torch.bmm(v, t)
    return s.reshape(*s.shape[:2], 2, -1).mean(dim=-1)


def minmax_weight(d_n, d_a, alpha):
    d_n = (d_n - d_n.min()) / (d_n.max() - d_n.min())
    d_a = 1 - (d_a - d_a.min()) / (d_a.max() - d_a.min())
    return alpha * d_n + (1 - alpha) * d_a


# ---- helpers -------------------------------------------------------------------------------

class Writer:
    def __init__(self, path):
        self.f = h5py.File(path, "w")

    def put(self, name, t):
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu()
            t = t.numpy() if t.dtype in (torch.long, torch.int64) else t.double().numpy()
        self.f.create_dataset(name, data=np.asarray(t))

    def attr(self, k, v):
        self.f.attrs[k] = v


def make_inputs(o, B, side, ps, gen_seed):
    g = torch.Generator().manual_seed(gen_seed)
    D = o.dim
    H = side * ps
    glob = torch.randn(B, D, generator=g) * 0.7 + 0.2
    patch = torch.randn(B, side * side, D, generator=g) * 0.5
    patch[:, :, :4] += 1.0  # shared direction: cosines away from 0
    mask = torch.zeros(B, H, H)
    for b in range(1, B):  # image 0 stays normal
        y0, x0 = (b * 3) % (H - 4), (b * 5) % (H - 5)
        mask[b, y0:y0 + 4, x0:x0 + 5] = 1
        mask[b, H - 2:, 1] = 1  # a thin region touching one patch partially
    label = (mask.flatten(1).amax(1) > 0).long()
    return glob, patch, mask, label, g


def build(o, dtype):
    torch.manual_seed(o.seed)
    text = TinyText(o.dim, o.layers, o.text_heads, o.dim, o.deep_len)
    with torch.no_grad():
        for m in text.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.add_(torch.randn_like(m.weight) * 0.2)
                m.bias.add_(torch.randn_like(m.bias) * 0.1)
        text.token_embedding.weight.mul_(0.1)
    pl = PromptLearner(o, text, dtype)
    text = text.to(dtype)
    pl = pl.to(dtype)
    pl.prefix = pl.prefix.to(dtype)
    pl.suffix = pl.suffix.to(dtype)
    for p in text.parameters():
        p.requires_grad_(False)
    return text, pl


def write_model(w, pl, text, o):
    for k, v in pl.checkpoint().items():
        w.put("params/" + k, v)
    for k, v in text.clip_state().items():
        if k == "token_embedding.weight":
            continue
        w.put("clip/" + k, v)
    ids = torch.tensor(sorted({0, SOT, EOT, X_ID, DOT_ID, OBJECT_ID}), dtype=torch.long)
    w.put("tok/ids", ids)
    w.put("tok/rows", text.token_embedding.weight[ids])
    for k in ("dim", "heads", "M", "n_ctx", "cls_len", "depth", "deep_len", "layers", "text_heads"):
        w.attr(k, getattr(o, k))


# ---- cases -----------------------------------------------------------------------------------

def case_components(o, w, dtype):
    text, pl = build(o, dtype)
    write_model(w, pl, text, o)
    if o.torch_save:
        # The released checkpoints' layout: {"prompt_learner": state_dict minus projector*,
        # extractor_*, vae_encoder*, token*}, float32 tensors in an OrderedDict.
        sd = OrderedDict((k, v.detach().float().clone()) for k, v in pl.state_dict().items()
                         if not k.startswith(("projector", "extractor_", "vae_encoder", "token")))
        torch.save({"prompt_learner": sd}, o.torch_save)
    B, side, ps = o.batch, o.side, o.patch_px
    glob, patch, mask, label, g = make_inputs(o, B, side, ps, o.seed + 1)
    glob, patch, mask = glob.to(dtype), patch.to(dtype), mask.to(dtype)
    eps = torch.randn(B, 1, o.dim, generator=g).to(dtype)
    for k, v in dict(glob=glob, patch=patch, mask=mask, label=label, eps=eps).items():
        w.put("in/" + k, v)
    with torch.no_grad():
        for k in (3, 5):
            w.put(f"out/smooth{k}", average_neighbor(patch, k))
        f = average_neighbor(patch, 3)
        gt_p = F.max_pool2d(mask.unsqueeze(1), (ps, ps)).reshape(B, -1)
        w.put("out/gt_p", gt_p)
        P_n = pl.extractor(pl.t_n, f)
        P_a = pl.extractor(pl.t_a, f)
        w.put("out/P_n", P_n)
        w.put("out/P_a", P_a)
        d_n, d_a = distance(f, P_n), distance(f, P_a)
        w.put("out/d_n", d_n)
        w.put("out/d_a", d_a)
        w.put("out/gather", d_n[gt_p == 0].mean())
        w.put("out/scatter", d_a[gt_p != 0].mean())
        mean, log_var = pl.vae_encoder(glob)
        z = torch.exp(0.5 * log_var) * eps[:, 0] + mean
        bias = pl.vae_decoder(z).unsqueeze(1).unsqueeze(1)
        w.put("out/mu", mean)
        w.put("out/log_var", log_var)
        w.put("out/s", bias.reshape(B, 1, -1))
        w.put("out/kl", -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(dim=1).mean())
        w.put("out/rec_all_pairs", (glob - bias).pow(2).sum(1).mean())
        w.put("out/rec_per_sample", (glob - bias.reshape(B, -1)).pow(2).sum(1).mean())
        # prompt assembly: both assignments, R = 3 samples, and the ICTS-off layout is in its own case
        R = 3
        srand = torch.randn(B, R, o.dim, generator=g).to(dtype)
        w.put("in/s3", srand)
        agg = torch.stack([P_n, P_a], 1)
        w.put("out/prompts_code", pl.prompts(B, agg, srand.reshape(B * R, -1)))
        o.assignment = "figure"
        w.put("out/prompts_figure", pl.prompts(B, agg, srand.reshape(B * R, -1)))
        o.assignment = "code"
        # focal / dice on random probabilities at mask resolution
        probs = torch.softmax(torch.randn(B, 2, side * ps, side * ps, generator=g).to(dtype) * 2, 1)
        w.put("in/probs", probs)
        w.put("out/focal", focal_loss(probs, mask))
        w.put("out/dice", dice_loss(probs[:, 1], mask))
        w.put("out/dice_inv", dice_loss(probs[:, 0], 1 - mask))
        logits = torch.randn(B, 2, generator=g).to(dtype) * 3
        w.put("in/logits", logits)
        w.put("out/ce", F.cross_entropy(logits, label))
        # SAGA: the code at batch 1 (per image) and over the whole batch tensor
        pp = torch.softmax(torch.randn(B, side * side, 2, generator=g).to(dtype), -1)
        w.put("in/patch_probs", pp)
        alpha, beta = 0.35, 0.9
        per = torch.stack([minmax_weight(d_n[b:b + 1], d_a[b:b + 1], alpha)[0] for b in range(B)])
        w.put("out/saga_per_image", per)
        w.put("out/saga_batch", minmax_weight(d_n, d_a, alpha))
        pg = torch.softmax(logits, -1)
        weighted = pp * per.unsqueeze(-1)
        score = beta * pg[:, 1] + (1 - beta) * torch.amax(weighted[..., 1], dim=-1)
        w.put("out/fused", score)
        w.put("out/weighted_probs", weighted)


def train_step(o, pl, text, glob, patch, mask, label, eps):
    B = glob.shape[0]
    ps = mask.shape[-1] // o.side
    gt_mask_ = F.max_pool2d(mask.unsqueeze(1), (ps, ps)).squeeze(1).reshape(B, -1)
    zero = torch.tensor(0.0, dtype=glob.dtype)
    if o.icts:
        mean, log_var = pl.vae_encoder(glob)
        std = torch.exp(0.5 * log_var)
        z = std * eps.permute(1, 0, 2) + mean
        z = z.reshape(-1, z.shape[-1])
        bias = pl.vae_decoder(z).unsqueeze(1).unsqueeze(1)
        kl = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(dim=1).mean()
        rec = (glob - bias).pow(2).sum(1).mean() if o.recon else zero
    else:
        bias = torch.zeros(glob.shape, dtype=glob.dtype)
        kl, rec = zero, zero
    f = average_neighbor(patch, o.train_kernel)
    if o.ests:
        P_n = pl.extractor(pl.t_n, f)
        d_n = distance(f, P_n)
        P_a = pl.extractor(pl.t_a, f)
        d_a = distance(f, P_a)
        agg = torch.stack([P_n, P_a], 1).detach()
        gather = d_n[gt_mask_ == 0].mean()
        sel = d_a[gt_mask_ != 0]
        scatter = sel.mean() if len(sel) != 0 else zero
    else:
        agg, gather, scatter = None, zero, zero
    prompts = pl.prompts(B, agg, bias)
    tf = pl.text_features(text, prompts, o.fp16).mean(dim=2)
    tf = tf / tf.norm(dim=-1, keepdim=True)
    pf = f / f.norm(dim=-1, keepdim=True)
    sim = (compute_similarity(pf, tf) / 0.07).softmax(-1)
    side = o.side
    smap = sim.reshape(B, side, side, -1).permute(0, 3, 1, 2)
    smap = F.interpolate(smap, mask.shape[-1], mode="nearest")
    focal = focal_loss(smap, mask)
    dice = dice_loss(smap[:, 1], mask)
    dice_inv = dice_loss(smap[:, 0], 1 - mask)
    gn = glob / glob.norm(dim=-1, keepdim=True)
    isim = compute_similarity(gn.unsqueeze(1), tf)[:, 0] / 0.07
    image = F.cross_entropy(isim, label)
    patch_l = focal + dice + dice_inv
    total = image + 4 * patch_l + gather + scatter + kl + rec
    return OrderedDict(image=image, focal=focal, dice=dice, dice_inv=dice_inv, patch=patch_l, gather=gather,
                       scatter=scatter, kl=kl, rec=rec, total=total)


def case_step(o, w, dtype):
    text, pl = build(o, dtype)
    write_model(w, pl, text, o)
    B = o.batch
    glob, patch, mask, label, g = make_inputs(o, B, o.side, o.patch_px, o.seed + 1)
    glob, patch, mask = glob.to(dtype), patch.to(dtype), mask.to(dtype)
    params = OrderedDict((k, p) for k, p in pl.named_parameters())
    opt = torch.optim.Adam(list(params.values()), lr=1e-3, betas=(0.5, 0.999))
    for step in range(o.steps):
        eps = torch.randn(B, 1, o.dim, generator=g).to(dtype)
        pfx = f"s{step}/"
        for k, v in dict(glob=glob, patch=patch, mask=mask, label=label, eps=eps).items():
            w.put(pfx + "in/" + k, v)
        losses = train_step(o, pl, text, glob, patch, mask, label, eps)
        for k, v in losses.items():
            w.put(pfx + "loss/" + k, v)
        opt.zero_grad()
        losses["total"].backward()
        for k, p in params.items():
            if p.grad is not None:
                w.put(pfx + "grad/" + k, p.grad)
        opt.step()
        for k, p in params.items():
            w.put(pfx + "param/" + k, p)
        # keep the next step's inputs different
        patch = patch.roll(1, 0)
        mask = mask.roll(1, 0)
        glob = glob.roll(1, 0)
        label = label.roll(1, 0)


def case_infer(o, w, dtype):
    text, pl = build(o, dtype)
    write_model(w, pl, text, o)
    B, R = o.batch, o.r_test
    glob, patch, mask, label, g = make_inputs(o, B, o.side, o.patch_px, o.seed + 1)
    glob, patch = glob.to(dtype), patch.to(dtype)
    z = torch.randn(B, R, o.dim, generator=g).to(dtype)
    w.put("in/glob", glob)
    w.put("in/patch", patch)
    w.put("in/z", z)
    scores, maps, gprob = [], [], []
    with torch.no_grad():
        for b in range(B):  # test.py runs batch 1
            gb, fb = glob[b:b + 1], patch[b:b + 1]
            bias = pl.vae_decoder(z[b].reshape(-1, o.dim)).unsqueeze(1).unsqueeze(1)
            f = average_neighbor(fb, o.test_kernel)
            P_n = pl.extractor(pl.t_n, f)
            d_n = distance(f, P_n)
            P_a = pl.extractor(pl.t_a, f)
            d_a = distance(f, P_a)
            agg = torch.stack([P_n, P_a], 1)
            tf = pl.text_features(text, pl.prompts(1, agg, bias), o.fp16).mean(dim=2)
            tf = tf / tf.norm(dim=-1, keepdim=True)
            pf = f / f.norm(dim=-1, keepdim=True)
            sim = (compute_similarity(pf, tf) / 0.07).softmax(-1)
            sim = sim * minmax_weight(d_n, d_a, o.alpha).unsqueeze(-1)
            maps.append(sim[0, :, 1].reshape(o.side, o.side))
            gn = gb / gb.norm(dim=-1, keepdim=True)
            isim = (compute_similarity(gn.unsqueeze(1), tf) / 0.07).softmax(-1)[:, 0, 1]
            gprob.append(isim[0])
            scores.append((o.beta * isim + (1 - o.beta) * torch.amax(sim[..., 1], dim=-1))[0])
    w.put("out/image_score", torch.stack(scores))
    w.put("out/anomaly_map", torch.stack(maps))
    w.put("out/global_prob", torch.stack(gprob))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", required=True, choices=["components", "step", "infer"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--M", type=int, default=6)
    ap.add_argument("--n_ctx", type=int, default=12)
    ap.add_argument("--cls_len", type=int, default=2)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--deep_len", type=int, default=4)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--text_heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--side", type=int, default=4)
    ap.add_argument("--patch_px", type=int, default=3)
    ap.add_argument("--train_kernel", type=int, default=3)
    ap.add_argument("--test_kernel", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=0.35)
    ap.add_argument("--beta", type=float, default=0.9)
    ap.add_argument("--r_test", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--recon", type=int, default=1)
    ap.add_argument("--fp16", type=int, default=1)
    ap.add_argument("--ests", type=int, default=1)
    ap.add_argument("--icts", type=int, default=1)
    ap.add_argument("--assignment", default="code", choices=["code", "figure"])
    ap.add_argument("--torch_save", default="", help="components: also write an official-layout .pth here")
    o = ap.parse_args()
    dtype = torch.float64 if o.dtype == "float64" else torch.float32
    torch.set_num_threads(1)
    w = Writer(o.out)
    {"components": case_components, "step": case_step, "infer": case_infer}[o.case](o, w, dtype)
    w.f.close()


if __name__ == "__main__":
    main()
