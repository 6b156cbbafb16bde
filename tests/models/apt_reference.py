"""Independent numpy reference of APT's scoring and loss pieces (shared/specs/apt.md §3.3, §4).

Reads float64 arrays written by tests/models/apt_components_test.cpp from DIR (name.bin, raw
little-endian float64, shapes in DIR/shapes.txt "name d0 d1 ..."), writes its results the same way
into DIR/out_*.bin with DIR/out_shapes.txt.
"""
import os
import sys

import numpy as np


def load(d):
    arrs = {}
    with open(os.path.join(d, "shapes.txt")) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            shape = tuple(int(x) for x in parts[1:])
            arrs[parts[0]] = np.fromfile(os.path.join(d, parts[0] + ".bin"), dtype="<f8").reshape(shape)
    return arrs


def save(d, out):
    with open(os.path.join(d, "out_shapes.txt"), "w") as f:
        for k, v in out.items():
            v = np.asarray(v, dtype="<f8")
            v.tofile(os.path.join(d, "out_" + k + ".bin"))
            f.write(" ".join([k] + [str(s) for s in v.shape]) + "\n")


def l2n(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def main():
    d = sys.argv[1]
    a = load(d)
    out = {}
    # Memory bank: v_p = mean_l min_j (1 - <q_l,p / |q_l,p|, bank_l,j>) / 2, PromptAD's WinCLIP+ map.
    vs = []
    for l in range(2):
        q = l2n(a["q%d" % l])                 # [B,P,C]
        bank = a["bank%d" % l]                # [N,C] normalised
        sims = np.einsum("bpc,nc->bpn", q, bank)
        vs.append(((1.0 - sims) / 2.0).min(-1))
    v = (vs[0] + vs[1]) / 2.0
    out["visual"] = v
    text = a["text_map"]
    out["harmonic"] = 1.0 / (1.0 / text + 1.0 / v)
    out["mean"] = (text + v) / 2.0
    # PromptAD one-class terms on clean features f [N,E].
    f, tn, ta, ta_all = a["f"], a["t_n"], a["t_a"], a["t_a_all"]
    tau = float(a["tau"][0])
    logits = tau * np.concatenate([(f @ tn)[:, None], f @ ta_all.T], axis=1)
    out["v2t"] = np.array([-log_softmax(logits)[:, 0].mean()])
    dp = ((f - tn) ** 2).sum(-1)
    dn = ((f - ta) ** 2).sum(-1)
    out["triplet"] = np.array([np.maximum(dp - dn + 0.0, 0.0).mean()])
    # ProGrad KL with temperature T.
    T = float(a["T"][0])
    tea, stu = a["teacher"], a["student"]
    e = np.exp((tea / T) - (tea / T).max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    out["kl"] = np.array([-(p * log_softmax(stu / T)).sum(-1).mean() * T * T])
    # Anchors: normalize(mean(raw)) and normalize(mean(normalize)).
    feats = a["feats"]
    m = feats.mean(0)
    out["anchor_raw"] = m / np.linalg.norm(m)
    m2 = l2n(feats).mean(0)
    out["anchor_norm"] = m2 / np.linalg.norm(m2)
    save(d, out)


if __name__ == "__main__":
    main()
