"""Writes a CoPS checkpoint in the official release layout (train.py: torch.save({"prompt_learner":
state_dict minus projector*/extractor_*/vae_encoder*/token*}, path)) with the default ViT-L-14-336
shapes (D 768, M 6, 14 learnable tokens, deep prompts 8 x 4), plus the expected tensors as HDF5.

usage: import_checkpoint_make.py OUT.pth REF.h5 VARIANT [tiny]
VARIANT: ok | unfiltered (keeps projector/extractor_/token_* and vae_encoder, as an unfiltered
state_dict would) | missing (no ctx_neg) | badshape (t_a with 5 prototypes) | unknown (an extra key)
"""
import sys
from collections import OrderedDict

import h5py
import torch
from torch import nn

D, M, T, DEPTH, DEEP_LEN = 768, 6, 14, 8, 4
if len(sys.argv) > 4 and sys.argv[4] == "tiny":  # the tiny CLIP of experiments/demo.yaml (64-d, 1 deep prompt)
    D, DEPTH = 64, 1


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Extractor(nn.Module):  # Prototype_Extractor: pre-LN cross-attention block
    def __init__(self, d, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads)
        self.ln_1 = nn.LayerNorm(d)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(d, d)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(d, d))]))


class VaeEncoder(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, d), nn.ReLU())
        self.mean = nn.Linear(d, d)
        self.log_var = nn.Linear(d, d)


class VaeDecoder(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))


class PromptLearner(nn.Module):
    def __init__(self):
        super().__init__()
        self.ctx_pos = nn.Parameter(torch.randn(1, 1, T, D) * 0.02)
        self.ctx_neg = nn.Parameter(torch.randn(1, 1, T, D) * 0.02)
        self.t_n = nn.Parameter(torch.randn(M, D) * 0.02)
        self.t_a = nn.Parameter(torch.randn(M, D) * 0.02)
        self.extractor = Extractor(D, 4)
        self.extractor_ = Extractor(D, 4)      # defined but unused in the code
        self.projector = nn.Linear(1024, D)      # defined but unused
        self.vae_encoder = VaeEncoder(D)
        self.vae_decoder = VaeDecoder(D)
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(torch.randn(DEEP_LEN, D) * 0.02) for _ in range(DEPTH)])
        self.register_buffer("token_prefix", torch.randn(2, 1, D))


def main():
    out, ref, variant = sys.argv[1:4]
    torch.manual_seed(7)
    pl = PromptLearner()
    with torch.no_grad():  # make every tensor distinctive (LayerNorm weights are not all ones)
        for p in pl.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    full = pl.state_dict()
    if variant == "unfiltered":
        sd = OrderedDict((k, v.clone()) for k, v in full.items())
        expect = OrderedDict((k, v) for k, v in full.items()
                             if not k.startswith(("projector", "extractor_", "token")))
    else:
        sd = OrderedDict((k, v.clone()) for k, v in full.items()
                         if not k.startswith(("projector", "extractor_", "vae_encoder", "token")))
        expect = OrderedDict(sd)
    if variant == "missing":
        del sd["ctx_neg"]
    elif variant == "badshape":
        sd["t_a"] = torch.randn(M - 1, D)
    elif variant == "unknown":
        sd["prompt_scale"] = torch.ones(3)
    elif variant not in ("ok", "unfiltered"):
        raise SystemExit("unknown variant " + variant)
    torch.save({"prompt_learner": sd}, out)
    with h5py.File(ref, "w") as f:
        for k, v in expect.items():
            f.create_dataset("ref/" + k, data=v.detach().float().numpy())


if __name__ == "__main__":
    main()
