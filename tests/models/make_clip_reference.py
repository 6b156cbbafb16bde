#!/usr/bin/env python3
"""Builds a small CLIP in OpenAI's exact module layout (clip/model.py) with random weights,
saves it in every weight format `zsad encode` reads, and writes reference outputs.

usage: make_clip_reference.py OUT_DIR [--cases tokenizer_cases.jsonl]

Files written to OUT_DIR:
  traced.pt            torch.jit.trace + save of the fp32 model (TorchScript archive)
  openai_fp16.pt       the traced archive rewritten like OpenAI's release: the tensors OpenAI's
                       convert_weights makes fp16 are fp16, every storage is tagged cuda:0
  state_dict.pt        torch.save(model.state_dict())  (zip format, OrderedDict)
  model.safetensors    safetensors written by hand (header length, JSON header, raw bytes)
  wrong_shape.pt, missing_key.pt, extra_key.pt, not_clip.pt   state dicts that must be rejected
  refs.h5              inputs and reference outputs (see write_refs)

The reference V-V dual path follows ../shared/specs/cops.md §1.2 (CoPS lib/clip.py); the deep
text prompts follow §1.7. Every computation here is independent of the C++ implementation.
"""
import argparse
import copy
import json
import math
import os
import pickletools
import struct
import sys
import zipfile
from collections import OrderedDict

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Architecture of the test model: widths are multiples of 64 because heads = width / 64 is how
# OpenAI's build_model infers the architecture.
VISION_WIDTH, VISION_LAYERS, PATCH, GRID = 128, 3, 8, 4
TEXT_WIDTH, TEXT_LAYERS, CONTEXT, VOCAB = 64, 3, 77, 49408
EMBED = 64
IMAGE = PATCH * GRID          # 32
LARGE_IMAGE = 48              # positional embedding resized from 4x4 to 6x6
VV_DEPTHS = (VISION_LAYERS, 1)
N_IMAGES = 3


# ---------------------------------------------------------------------------------------------
# OpenAI's module layout (names and parameter shapes as in clip/model.py, ViT variant).

class LayerNorm(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width, heads, attn_mask=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(width * 4, width)),
        ]))
        self.ln_2 = LayerNorm(width)
        self.attn_mask = attn_mask

    def attention(self, x):
        mask = self.attn_mask.to(dtype=x.dtype, device=x.device) if self.attn_mask is not None else None
        return self.attn(x, x, x, need_weights=False, attn_mask=mask)[0]

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, attn_mask=None):
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, attn_mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    def __init__(self, resolution, patch, width, layers, heads, output_dim):
        super().__init__()
        self.input_resolution = resolution
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((resolution // patch) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def embed(self, x, pos):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + pos.to(x.dtype)
        return self.ln_pre(x)

    def forward(self, x):
        x = self.embed(x, self.positional_embedding)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class CLIP(nn.Module):
    def __init__(self):
        super().__init__()
        self.context_length = CONTEXT
        self.visual = VisionTransformer(IMAGE, PATCH, VISION_WIDTH, VISION_LAYERS, VISION_WIDTH // 64, EMBED)
        self.transformer = Transformer(TEXT_WIDTH, TEXT_LAYERS, TEXT_WIDTH // 64, self.build_attention_mask())
        self.vocab_size = VOCAB
        self.token_embedding = nn.Embedding(VOCAB, TEXT_WIDTH)
        self.positional_embedding = nn.Parameter(torch.empty(CONTEXT, TEXT_WIDTH))
        self.ln_final = LayerNorm(TEXT_WIDTH)
        self.text_projection = nn.Parameter(torch.empty(TEXT_WIDTH, EMBED))
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))

    def build_attention_mask(self):
        mask = torch.empty(CONTEXT, CONTEXT)
        mask.fill_(float("-inf"))
        mask.triu_(1)
        return mask

    def encode_image(self, image):
        return self.visual(image)

    def encode_text(self, text):
        x = self.token_embedding(text) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection

    def forward(self, image, text):
        return self.encode_image(image), self.encode_text(text)


def randomize(model, gen):
    """Random weights everywhere (also LayerNorm and biases, which default to 1/0), scaled so
    activations stay O(1) and the attention maps are neither flat nor one-hot."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue
            if "ln_" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif p.dim() >= 2 and "embedding" not in name:
                fan_in = p.shape[1] if name.endswith("weight") else p.shape[0]
                if p.dim() == 4:
                    fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            else:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


# ---------------------------------------------------------------------------------------------
# Reference computations beyond OpenAI's encode_image / encode_text.

def resize_pos(pos, grid, mode):
    g0 = int(round(math.sqrt(pos.shape[0] - 1)))
    if grid == g0:
        return pos
    img = pos[1:].reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
    if mode == "bilinear":  # CoPS / AnomalyCLIP: F.interpolate(mode='bilinear'), align_corners False
        img = F.interpolate(img, size=(grid, grid), mode="bilinear", align_corners=False)
    else:                   # open_clip resize_pos_embed
        img = F.interpolate(img, size=(grid, grid), mode="bicubic", antialias=True, align_corners=False)
    img = img.permute(0, 2, 3, 1).reshape(grid * grid, -1)
    return torch.cat([pos[:1], img], 0)


def vision_dual(model, pixels, depth, pos, layers=()):
    """CoPS/AnomalyCLIP dual-path forward: the last `depth` blocks compute q/k/v once from
    ln_1(x_ori); x_ori gets softmax(qk^T)v + MLP (vanilla CLIP), the V-V path x gets
    softmax(vv^T)v and no MLP. Returns (image_features, global_features, patch_tokens, layer tokens)."""
    vis = model.visual
    x = vis.embed(pixels, pos).permute(1, 0, 2)  # [N,B,W], OpenAI's layout
    blocks = list(vis.transformer.resblocks)
    L = len(blocks)
    x_vv = None
    taken = {}
    for i, blk in enumerate(blocks):
        if i < L - depth:
            x = blk(x)
        else:
            if x_vv is None:
                x_vv = x
            Ntok, B, W = x.shape
            H = W // 64
            hd = W // H
            h = blk.ln_1(x)
            qkv = F.linear(h, blk.attn.in_proj_weight, blk.attn.in_proj_bias)
            qkv = qkv.reshape(Ntok, B, 3, H, hd).permute(2, 1, 3, 0, 4)  # [3,B,H,N,hd]
            q, k, v = qkv[0], qkv[1], qkv[2]
            scale = hd ** -0.5
            ori = torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1) @ v
            vv = torch.softmax(v @ v.transpose(-2, -1) * scale, dim=-1) @ v
            merge = lambda t: t.permute(2, 0, 1, 3).reshape(Ntok, B, W)
            x_vv = x_vv + blk.attn.out_proj(merge(vv))
            x = x + blk.attn.out_proj(merge(ori))
            x = x + blk.mlp(blk.ln_2(x))
        if (i + 1) in layers:
            src = x_vv if x_vv is not None else x
            taken[i + 1] = vis.ln_post(src.permute(1, 0, 2)[:, 1:]) @ vis.proj
    x_b = x.permute(1, 0, 2)
    image = vis.ln_post(x_b[:, 0]) @ vis.proj
    glob = x_b[:, 0] @ vis.proj
    src = (x_vv if x_vv is not None else x).permute(1, 0, 2)
    patches = vis.ln_post(src[:, 1:]) @ vis.proj
    return image, glob, patches, [taken[l] for l in layers]


def text_deep(model, ids, deep, round_fp16=True):
    """CoPS/MaPLe deep prompts: before block i (i = 1..len(deep)), token positions 1..n are
    replaced by deep[i-1] (rounded to fp16 as CoPS' .half() does)."""
    x = model.token_embedding(ids) + model.positional_embedding
    x = x.permute(1, 0, 2)  # [L,M,W]
    for i, blk in enumerate(model.transformer.resblocks):
        if 1 <= i <= len(deep):
            p = deep[i - 1]
            if round_fp16:
                p = p.half().float()
            n = p.shape[0]
            p = p.unsqueeze(1).expand(n, x.shape[1], x.shape[2])
            x = torch.cat([x[:1], p, x[1 + n:]], 0)
        x = blk(x)
    x = model.ln_final(x.permute(1, 0, 2))
    return x[torch.arange(x.shape[0]), ids.argmax(-1)] @ model.text_projection


# ---------------------------------------------------------------------------------------------
# Writers.

FP16_NAMES = ("proj", "text_projection")


def openai_fp16_names(model):
    """The tensors OpenAI's convert_weights() turns to fp16: Conv/Linear weights and biases,
    MultiheadAttention in_proj_*, and the `proj` / `text_projection` matrices."""
    names = set()
    for mod_name, mod in model.named_modules():
        prefix = mod_name + "." if mod_name else ""
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            for p in ("weight", "bias"):
                if getattr(mod, p, None) is not None:
                    names.add(prefix + p)
        if isinstance(mod, nn.MultiheadAttention):
            for p in ("in_proj_weight", "in_proj_bias"):
                names.add(prefix + p)
        for p in FP16_NAMES:
            if isinstance(getattr(mod, p, None), nn.Parameter):
                names.add(prefix + p)
    return names


def patch_pickle_locations(data, new_location):
    """Rewrites every 'cpu' string in a protocol-2 pickle (the storage location inside the
    persistent ids of a TorchScript data.pkl) to `new_location`, re-encoding the opcode. Protocol 2
    has no FRAME opcodes and memo references are indices, so changing lengths is safe."""
    ops = list(pickletools.genops(data))
    out = bytearray()
    count = 0
    for idx, (op, arg, pos) in enumerate(ops):
        end = ops[idx + 1][2] if idx + 1 < len(ops) else len(data)
        if op.name == "FRAME":
            raise RuntimeError("pickle uses FRAME opcodes; cannot patch safely")
        if op.name in ("BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8") and arg == "cpu":
            enc = new_location.encode("utf-8")
            out += b"X" + struct.pack("<I", len(enc)) + enc
            count += 1
        else:
            out += data[pos:end]
    return bytes(out), count


def rewrite_like_openai(src, dst):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        patched = 0
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("/data.pkl") or info.filename.endswith("/constants.pkl"):
                data, n = patch_pickle_locations(data, "cuda:0")
                patched += n
            zout.writestr(info.filename, data, compress_type=zipfile.ZIP_STORED)
    if patched == 0:
        raise RuntimeError("no storage locations found to patch in " + src)
    return patched


def write_safetensors(path, tensors):
    dtypes = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = t.numpy().tobytes() if t.dtype != torch.float16 else t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--cases", default=os.path.join(os.environ.get("ZSAD_SHARED_DIR", "../shared"), "clip",
                                                    "tokenizer_cases.jsonl"))
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)

    model = CLIP().eval()
    randomize(model, gen)
    for p in model.parameters():
        p.requires_grad_(False)

    # Inputs.
    pixels = torch.randn(N_IMAGES, 3, IMAGE, IMAGE, generator=gen)
    pixels_large = torch.randn(N_IMAGES, 3, LARGE_IMAGE, LARGE_IMAGE, generator=gen)
    with open(args.cases, encoding="utf-8") as f:
        cases = [json.loads(line) for line in f if line.strip()][:3]
    texts = [c["text"] for c in cases]
    ids = torch.zeros(len(cases), CONTEXT, dtype=torch.long)
    for i, c in enumerate(cases):
        ids[i, : len(c["ids"])] = torch.tensor(c["ids"])

    # Weight files.
    traced = torch.jit.trace(model, (pixels, ids), check_trace=False)
    traced.save(os.path.join(args.out_dir, "traced.pt"))

    fp16 = openai_fp16_names(model)
    # trace a copy: traced modules share their parameter tensors with the traced module
    half_model = torch.jit.trace(copy.deepcopy(model), (pixels, ids), check_trace=False)
    with torch.no_grad():
        for name, p in half_model.named_parameters():
            if name in fp16:
                p.data = p.data.half()
    half_model.save(os.path.join(args.out_dir, "fp16_cpu.pt"))
    rewrite_like_openai(os.path.join(args.out_dir, "fp16_cpu.pt"), os.path.join(args.out_dir, "openai_fp16.pt"))
    os.remove(os.path.join(args.out_dir, "fp16_cpu.pt"))
    # Self-check: the rewritten archive still loads (to CPU) and holds fp16 tensors.
    check = torch.jit.load(os.path.join(args.out_dir, "openai_fp16.pt"), map_location="cpu")
    assert check.state_dict()["visual.proj"].dtype == torch.float16

    sd = model.state_dict()
    torch.save(sd, os.path.join(args.out_dir, "state_dict.pt"))
    write_safetensors(os.path.join(args.out_dir, "model.safetensors"), sd)

    bad = OrderedDict(sd)
    bad["visual.ln_post.weight"] = torch.ones(VISION_WIDTH + 64)
    torch.save(bad, os.path.join(args.out_dir, "wrong_shape.pt"))
    bad = OrderedDict(sd)
    del bad["visual.ln_post.bias"]
    torch.save(bad, os.path.join(args.out_dir, "missing_key.pt"))
    bad = OrderedDict(sd)
    bad["visual.extra_head.weight"] = torch.ones(3, 3)
    torch.save(bad, os.path.join(args.out_dir, "extra_key.pt"))
    torch.save(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).state_dict(),
               os.path.join(args.out_dir, "not_clip.pt"))

    # fp16-rounded twin of the model: what the OpenAI-style file holds, computed in fp32.
    model16 = CLIP().eval()
    model16.load_state_dict(sd)
    with torch.no_grad():
        for name, p in model16.named_parameters():
            if name in fp16:
                p.copy_(p.half().float())

    refs = {"pixels": pixels, "pixels_large": pixels_large, "token_ids": ids}
    with torch.no_grad():
        for tag, m in (("fp32", model), ("fp16", model16)):
            refs[f"{tag}/text_features"] = m.encode_text(ids)
            refs[f"{tag}/image_features"] = m.encode_image(pixels)
            pos = m.visual.positional_embedding
            for d in VV_DEPTHS:
                img, glob, patches, _ = vision_dual(m, pixels, d, pos)
                refs[f"{tag}/vv{d}/image_features"] = img
                refs[f"{tag}/vv{d}/global_features"] = glob
                refs[f"{tag}/vv{d}/patch_tokens"] = patches
            for mode in ("bilinear", "bicubic"):
                pos_l = resize_pos(pos, LARGE_IMAGE // PATCH, mode)
                img, glob, patches, _ = vision_dual(m, pixels_large, VISION_LAYERS, pos_l)
                refs[f"{tag}/large_{mode}/image_features"] = img
                refs[f"{tag}/large_{mode}/patch_tokens"] = patches
                refs[f"{tag}/large_{mode}/pos_embed"] = pos_l
        # C++-API-only references (fp32 model): intermediate layers, vanilla patch tokens, deep prompts.
        _, _, patches0, layers = vision_dual(model, pixels, 2, model.visual.positional_embedding, layers=(1, 2, 3))
        refs["api/vv2_layers_1_2_3"] = torch.stack(layers, 0)
        refs["api/vv0/patch_tokens"] = vision_dual(model, pixels, 0, model.visual.positional_embedding)[2]
        deep = [torch.randn(4, TEXT_WIDTH, generator=gen) for _ in range(TEXT_LAYERS - 1)]
        refs["api/deep_prompts"] = torch.stack(deep, 0)
        refs["api/deep_text_features"] = text_deep(model, ids, deep, round_fp16=True)
        refs["api/deep_text_features_noround"] = text_deep(model, ids, deep, round_fp16=False)

    with h5py.File(os.path.join(args.out_dir, "refs.h5"), "w") as f:
        for k, v in refs.items():
            f.create_dataset(k, data=v.detach().cpu().numpy())
        f.create_dataset("texts", data=np.array([t.encode("utf-8") for t in texts], dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
        f.attrs["image_size"] = IMAGE
        f.attrs["large_image_size"] = LARGE_IMAGE
        f.attrs["vision_layers"] = VISION_LAYERS
    with open(os.path.join(args.out_dir, "texts.json"), "w", encoding="utf-8") as f:
        json.dump(texts, f)
    with open(os.path.join(args.out_dir, "texts.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in texts))
    print("wrote", args.out_dir)


if __name__ == "__main__":
    main()
