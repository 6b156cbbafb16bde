#!/usr/bin/env python3
"""Writes weight files in every format the C++ readers (models/clip/weights.h) accept, plus the
values Python itself reads back from them, for tests/models/weights_*.cpp.

Usage: $ZSAD_PYTHON make_weight_files.py OUTDIR

Files (OUTDIR/...):
  state_dict.pth          torch.save(OrderedDict) of a module's state_dict + extra entries of every
                          dtype, views of one storage (transpose, slice with offset), two names for
                          one tensor, a Parameter, a 0-dim and an empty tensor
  state_dict_p4.pth       the same with pickle_protocol=4 (FRAME, MEMOIZE, STACK_GLOBAL, ...)
  state_dict_p1.pth       the same with pickle_protocol=1 (text INT/LONG, no PROTO/NEWTRUE/TUPLE1-3)
  state_dict_cuda.pth     state_dict.pth with every storage location tag rewritten to 'cuda:0'
  whole_module.pth        torch.save(module): a pickled nn.Module (names as its state_dict())
  open_clip_like.pt       {"epoch", "name", "state_dict": {"module."...}, "optimizer": Adam state
                          with 1-element param_groups list, 1-element lists, nested dicts, tuples,
                          a big int, floats, None}
  cops.pth                {"prompt_learner": state_dict} in CoPS's key layout (shared/specs/cops.md §2),
                          location tags 'cuda:0' (as the released checkpoints were saved on GPU)
  scripted.pt             a traced module with OpenAI CLIP's parameter names (fp32, cpu)
  scripted_cuda_fp16.pt   the same module in fp16, its archive rewritten so storages say 'cuda:0'
                          (what OpenAI's released .pt files look like; shared/specs/toolchain.md §5)
  weights.safetensors     hand-written safetensors (F16/F32/F64/BF16/I64/I32/U8/BOOL, 0-dim, empty)
  legacy.pth              torch.save(..., _use_new_zipfile_serialization=False)
  plain.zip               an ordinary zip archive (one text file)
  expected.h5             one group per file; one dataset per flattened tensor name holding the values
                          read back by Python (float64 for floating, int64 otherwise), attributes
                          dtype, shape, and for torch.save files stride, offset, storage (an id that
                          is equal exactly when Python's tensors share a storage)
"""
import collections
import io
import json
import os
import pickle
import pickletools
import struct
import sys
import zipfile

import h5py
import numpy as np
import torch


def flatten(obj, prefix, out):
    """The flattening the C++ reader documents: dict keys (str or int) and list/tuple indices joined
    with '.', tensors are leaves, everything else is ignored."""
    def child(k):
        return k if prefix == "" else prefix + "." + k
    if isinstance(obj, torch.Tensor):
        assert prefix not in out, prefix
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                continue
            if isinstance(k, int) and not -2**63 <= k < 2**63:
                continue                             # keys beyond int64 are skipped
            flatten(v, child(str(k)), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, child(str(i)), out)
    return out


DTYPE_NAMES = {
    torch.float32: "float32", torch.float16: "float16", torch.float64: "float64", torch.bfloat16: "bfloat16",
    torch.int64: "int64", torch.int32: "int32", torch.int16: "int16", torch.int8: "int8",
    torch.uint8: "uint8", torch.bool: "bool",
}


def write_expected(h5, group, tensors, layout):
    g = h5.create_group(group)
    storage_ids = {}
    for name, t in tensors.items():
        t = t.detach()
        if t.is_floating_point():
            values = t.double().reshape(-1).numpy()
        else:
            values = t.long().reshape(-1).numpy().astype(np.int64)
        d = g.create_dataset(name, data=values)
        d.attrs["dtype"] = DTYPE_NAMES[t.dtype]
        d.attrs["shape"] = ",".join(str(s) for s in t.shape)
        if layout:
            d.attrs["stride"] = ",".join(str(s) for s in t.stride())
            d.attrs["offset"] = np.int64(t.storage_offset())
            ptr = t.storage().data_ptr()
            d.attrs["storage"] = np.int64(storage_ids.setdefault(ptr, len(storage_ids)))


def retag_locations(src, dst, new_tag="cuda:0"):
    """Copies the zip archive `src` to `dst`, rewriting the location tag of every storage in its
    data.pkl from 'cpu' to `new_tag`. Only the pickle's 'cpu' string ops are re-encoded; memo
    references (BINGET) point at memo slots, not byte offsets, so other ops stay valid. The result
    is checked: every persistent id carries the new tag and everything else unpickles equal."""
    zin = zipfile.ZipFile(src)
    names = zin.namelist()
    pkl_names = [n for n in names if n.endswith("/data.pkl")]
    assert len(pkl_names) == 1, pkl_names
    data = zin.read(pkl_names[0])
    ops = list(pickletools.genops(data))
    assert not any(op.name == "FRAME" for op, _, _ in ops), "framed pickles cannot be rewritten this way"
    out = bytearray()
    replaced = 0
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
        raw = data[pos:end]
        if op.name in ("BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8") and arg == "cpu":
            enc = new_tag.encode()
            raw = b"X" + struct.pack("<I", len(enc)) + enc
            replaced += 1
        out += raw
    assert replaced >= 1, "no 'cpu' location tag found"
    new_data = bytes(out)

    # Verify: same object graph, every storage now tagged new_tag.
    class Recorder(pickle.Unpickler):
        def __init__(self, f):
            super().__init__(f)
            self.tags = []

        def find_class(self, module, name):
            class Fake(dict):                       # stands for any class: records what it gets
                def __init__(self, *a, **k):
                    super().__init__()
                    self.args, self.state = a, None

                def __setstate__(self, state):
                    self.state = state

                def __repr__(self):
                    args, state = getattr(self, "args", None), getattr(self, "state", None)
                    return f"{module}.{name}({args!r}, {dict(self)!r}, {state!r})"
            return Fake

        def persistent_load(self, pid):
            self.tags.append(pid[3])
            return ("storage", pid[2])

    old_r, new_r = Recorder(io.BytesIO(data)), Recorder(io.BytesIO(new_data))
    old_obj, new_obj = old_r.load(), new_r.load()
    assert set(old_r.tags) == {"cpu"}, old_r.tags
    assert new_r.tags and set(new_r.tags) == {new_tag}, new_r.tags
    assert len(old_r.tags) == len(new_r.tags)
    assert repr(old_obj) == repr(new_obj)

    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as zout:
        for n in names:
            zout.writestr(zipfile.ZipInfo(n), new_data if n == pkl_names[0] else zin.read(n))


class Block(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(width, width // 64 if width >= 64 else 1)
        self.ln_1 = torch.nn.LayerNorm(width)
        self.mlp = torch.nn.Sequential(collections.OrderedDict(
            [("c_fc", torch.nn.Linear(width, width * 4)), ("c_proj", torch.nn.Linear(width * 4, width))]))
        self.ln_2 = torch.nn.LayerNorm(width)


class Transformer(torch.nn.Module):
    def __init__(self, width, layers):
        super().__init__()
        self.resblocks = torch.nn.Sequential(*[Block(width) for _ in range(layers)])


class Visual(torch.nn.Module):
    def __init__(self, width, patch, grid, out):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = torch.nn.Parameter(torch.randn(width))
        self.positional_embedding = torch.nn.Parameter(torch.randn(grid * grid + 1, width))
        self.ln_pre = torch.nn.LayerNorm(width)
        self.transformer = Transformer(width, 2)
        self.ln_post = torch.nn.LayerNorm(width)
        self.proj = torch.nn.Parameter(torch.randn(width, out))


class TinyClipLike(torch.nn.Module):
    """OpenAI CLIP's parameter names (not its forward): enough to test a weight container."""

    def __init__(self):
        super().__init__()
        self.visual = Visual(64, 8, 2, 32)
        self.transformer = Transformer(64, 1)
        self.token_embedding = torch.nn.Embedding(50, 64)
        self.positional_embedding = torch.nn.Parameter(torch.randn(7, 64))
        self.ln_final = torch.nn.LayerNorm(64)
        self.text_projection = torch.nn.Parameter(torch.randn(64, 32))
        self.logit_scale = torch.nn.Parameter(torch.tensor(4.6052))
        self.register_buffer("attn_mask", torch.full((7, 7), float("-inf")).triu(1))
        self.register_buffer("counter", torch.tensor([3, -2**40], dtype=torch.int64))

    def forward(self, x):
        return x * self.logit_scale.exp() + self.visual.proj.sum() + self.counter[0]


class WholeModule(torch.nn.Module):
    """Saved whole with torch.save(module): nested modules, a Parameter of None, a persistent and
    a non-persistent buffer (state_dict() leaves the latter out)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(8)
        self.visual = Visual(64, 8, 2, 32)
        self.ln_final = torch.nn.LayerNorm(64)
        self.head = torch.nn.Linear(4, 2, bias=False)  # _parameters["bias"] is None
        self.register_buffer("kept", torch.randn(3, generator=g))
        self.register_buffer("dropped", torch.ones(2), persistent=False)
        randomise(self, g)


def randomise(module, gen):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def extra_entries():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(4, 6, generator=g)
    shared = torch.randn(5, generator=g)
    e = collections.OrderedDict()
    e["views.base"] = base
    e["views.transposed"] = base.t()                 # non-contiguous, same storage
    e["views.rows"] = base[1:3]                      # storage offset 6
    e["views.column"] = base[:, 2]                   # offset 2, stride 6
    e["shared.a"] = shared                           # two names, one tensor
    e["shared.b"] = shared
    e["dtype.float16"] = (torch.randn(3, 2, generator=g) * 100).half()
    e["dtype.bfloat16"] = torch.randn(5, generator=g).bfloat16()
    e["dtype.float64"] = torch.randn(2, 2, generator=g).double() * 1e10
    e["dtype.int64"] = torch.tensor([0, -1, 2**62 + 12345, -(2**50)], dtype=torch.int64)
    e["dtype.int32"] = torch.tensor([[7, -2**31], [2**31 - 1, 0]], dtype=torch.int32)
    e["dtype.int16"] = torch.tensor([-300, 300], dtype=torch.int16)
    e["dtype.int8"] = torch.tensor([-128, 127, 0], dtype=torch.int8)
    e["dtype.uint8"] = torch.tensor([0, 255, 17], dtype=torch.uint8)
    e["dtype.bool"] = torch.tensor([True, False, True])
    e["scalar"] = torch.tensor(2.5)
    e["empty"] = torch.zeros(0, 3)
    e["param"] = torch.nn.Parameter(torch.randn(2, 3, generator=g))
    half_base = torch.randn(10, generator=g).half()
    e["half_view"] = half_base[3:7].view(2, 2)       # fp16 view with offset
    return e


def make_state_dict():
    torch.manual_seed(0)
    m = TinyClipLike()
    randomise(m, torch.Generator().manual_seed(2))
    sd = m.state_dict()                              # an OrderedDict with _metadata
    assert isinstance(sd, collections.OrderedDict) and hasattr(sd, "_metadata")
    sd.update(extra_entries())
    return m, sd


def make_open_clip_like(m):
    opt = torch.optim.Adam(m.visual.transformer.parameters(), lr=1e-3)
    m.visual.transformer.resblocks[0].ln_1.weight.sum().backward()
    opt.step()
    g = torch.Generator().manual_seed(3)
    sd = collections.OrderedDict(("module." + k, v) for k, v in m.state_dict().items())
    ckpt = {
        "epoch": 7,
        "name": "tiny-openai",
        "state_dict": sd,
        "optimizer": opt.state_dict(),               # {"state": {0: {...}}, "param_groups": [{... "params": [...]}]}
        "scaler": None,
        "lr": 1.5e-4,
        "big": 2**80 + 1,
        "neg": -123456789,
        "one_list": [torch.randn(3, generator=g)],  # the 1-element list LibTorch's pickle_load cannot read
        "nested": {"a": {"b": torch.randn(2, generator=g), "c": [torch.arange(3), torch.ones(1)]}, "n": 3},
        "tuple": (torch.randn(1, generator=g),),
        "strings": ["x"],
        5: torch.tensor([5.0]),                      # an int key
        # int keys in every pickle int encoding: BININT1/BININT2/BININT (negative), LONG1 of 6
        # and 8 bytes at both int64 limits, and one beyond int64 (skipped)
        "int_keys": {k: torch.tensor([float(i)]) for i, k in enumerate(
            [255, 65535, -5, 2**40, 2**63 - 1, -(2**63), 2**64])},
    }
    assert len(ckpt["optimizer"]["param_groups"]) == 1
    return ckpt


def make_cops_state_dict(width=64, layers=2):
    """CoPS's checkpoint layout (shared/specs/cops.md §2): ctx_pos, ctx_neg, extractor.*, t_n, t_a,
    vae_decoder.*, compound_prompts_text.0-7, small width."""
    class Extractor(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = torch.nn.MultiheadAttention(width, 1, batch_first=True)
            self.ln_1 = torch.nn.LayerNorm(width)
            self.mlp = torch.nn.Sequential(collections.OrderedDict(
                [("c_fc", torch.nn.Linear(width, width)), ("c_proj", torch.nn.Linear(width, width))]))
            self.ln_2 = torch.nn.LayerNorm(width)

    class PromptLearner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ctx_pos = torch.nn.Parameter(torch.randn(1, 1, 14, width) * 0.02)
            self.ctx_neg = torch.nn.Parameter(torch.randn(1, 1, 14, width) * 0.02)
            self.extractor = Extractor()
            self.t_n = torch.nn.Parameter(torch.randn(6, width) * 0.02)
            self.t_a = torch.nn.Parameter(torch.randn(6, width) * 0.02)
            self.vae_decoder = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(),
                                                   torch.nn.Linear(width, width))
            self.compound_prompts_text = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.randn(4, width) * 0.02) for _ in range(8)])

    torch.manual_seed(4)
    pl = PromptLearner()
    randomise(pl, torch.Generator().manual_seed(5))
    return pl.state_dict()


def safetensors_tensors():
    g = torch.Generator().manual_seed(6)
    return collections.OrderedDict([
        ("visual.proj", torch.randn(4, 3, generator=g).half()),
        ("visual.class_embedding", torch.randn(4, generator=g)),
        ("f64", torch.randn(2, 3, generator=g).double()),
        ("bf16", torch.randn(3, 2, generator=g).bfloat16()),
        ("i64", torch.tensor([1, -2, 2**40], dtype=torch.int64)),
        ("i32", torch.tensor([[-5, 6]], dtype=torch.int32)),
        ("u8", torch.tensor([0, 200, 255], dtype=torch.uint8)),
        ("mask", torch.tensor([[True, False], [False, True]])),
        ("logit_scale", torch.tensor(4.6052)),
        ("empty", torch.zeros(0, 2)),
    ])


def write_safetensors(path, tensors):
    codes = {torch.float16: "F16", torch.float32: "F32", torch.float64: "F64", torch.bfloat16: "BF16",
             torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
    header = {"__metadata__": {"format": "pt", "note": "hand-written by make_weight_files.py"}}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        t = t.contiguous()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        assert len(raw) == t.numel() * t.element_size()
        header[name] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)         # the reference implementation pads with spaces
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    p = lambda n: os.path.join(out, n)
    h5 = h5py.File(p("expected.h5.tmp"), "w")

    m, sd = make_state_dict()
    torch.save(sd, p("state_dict.pth"))
    torch.save(sd, p("state_dict_p4.pth"), pickle_protocol=4)
    torch.save(sd, p("state_dict_p1.pth"), pickle_protocol=1)  # text INT/LONG, no PROTO, no TUPLE1-3
    retag_locations(p("state_dict.pth"), p("state_dict_cuda.pth"))
    for name in ("state_dict.pth", "state_dict_p4.pth", "state_dict_p1.pth", "state_dict_cuda.pth"):
        back = torch.load(p(name), map_location="cpu")
        assert isinstance(back, collections.OrderedDict) and list(back.keys()) == list(sd.keys())
        write_expected(h5, name, flatten(back, "", {}), layout=True)

    whole = WholeModule()
    torch.save(whole, p("whole_module.pth"))       # a pickled nn.Module, not a state dict
    write_expected(h5, "whole_module.pth", dict(whole.state_dict()), layout=False)

    ckpt = make_open_clip_like(m)
    torch.save(ckpt, p("open_clip_like.pt"))
    write_expected(h5, "open_clip_like.pt", flatten(torch.load(p("open_clip_like.pt")), "", {}), layout=True)

    cops = {"prompt_learner": make_cops_state_dict()}
    torch.save(cops, p("cops_cpu.pth"))
    retag_locations(p("cops_cpu.pth"), p("cops.pth"))
    os.remove(p("cops_cpu.pth"))
    write_expected(h5, "cops.pth", flatten(torch.load(p("cops.pth"), map_location="cpu"), "", {}), layout=True)

    traced = torch.jit.trace(m, torch.zeros(2))
    traced.save(p("scripted.pt"))
    write_expected(h5, "scripted.pt", dict(torch.jit.load(p("scripted.pt")).state_dict()), layout=False)
    traced.half()
    traced.save(p("scripted_fp16_cpu.pt"))
    retag_locations(p("scripted_fp16_cpu.pt"), p("scripted_cuda_fp16.pt"))
    os.remove(p("scripted_fp16_cpu.pt"))
    loaded = torch.jit.load(p("scripted_cuda_fp16.pt"), map_location="cpu")
    assert loaded.visual.proj.dtype == torch.float16
    if not torch.cuda.is_available():               # the tag is real: without map_location it needs CUDA
        try:
            torch.jit.load(p("scripted_cuda_fp16.pt"))
            raise AssertionError("cuda-tagged archive loaded without CUDA")
        except RuntimeError:
            pass
    write_expected(h5, "scripted_cuda_fp16.pt", dict(loaded.state_dict()), layout=False)

    st = safetensors_tensors()
    write_safetensors(p("weights.safetensors"), st)
    write_expected(h5, "weights.safetensors", st, layout=False)

    torch.save(collections.OrderedDict([("w", torch.ones(2))]), p("legacy.pth"), _use_new_zipfile_serialization=False)

    with zipfile.ZipFile(p("plain.zip"), "w") as z:   # a zip that is not a PyTorch archive
        z.writestr("hello.txt", "not weights")

    h5.close()
    os.replace(p("expected.h5.tmp"), p("expected.h5"))


if __name__ == "__main__":
    main()
