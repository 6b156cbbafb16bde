"""Independent Python references for zsad's metrics (run with $ZSAD_PYTHON).

  generate OUT.h5 [--float16]     write the cross-check cases as a zsad.scores/1 file
  compute SCORES.h5 --fpr-limit L --pro-mode exact|anomalyclip [--skip-clip-prefix P]
                                  print {"classes": {cls: {metric: value|null}}, "warnings": {...}}

Image/pixel AUROC, AP and F1-max come from sklearn. The exact AUPRO follows the MVTec AD
evaluation code (compute_pro + trapezoid) with scipy.ndimage.label(mask, np.ones((3,3))).
The anomalyclip AUPRO is AnomalyCLIP's cal_pro_score with scipy labelling in place of
skimage.measure.label (both 8-connected in 2-D).
"""
import argparse
import json
import sys
import warnings
from bisect import bisect

import h5py
import numpy as np
from scipy.ndimage import label
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

KEYS = ["image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro"]
EIGHT = np.ones((3, 3), dtype=int)


# ---------------------------------------------------------------- cases
def blobs(rng, h, w, count, max_r):
    m = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(count):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        ry, rx = rng.integers(1, max_r + 1), rng.integers(1, max_r + 1)
        m[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0] = 1
    return m


def random_class(rng, n, h, w, quantize=None, img_quant=None):
    labels = (rng.random(n) < 0.5).astype(np.uint8)
    labels[0], labels[1] = 0, 1
    masks = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        if labels[i]:
            masks[i] = blobs(rng, h, w, rng.integers(1, 4), max(1, min(h, w) // 5))
    maps = rng.normal(size=(n, h, w)) + 1.5 * masks * rng.random((n, 1, 1))
    if quantize:
        maps = np.round(maps * quantize) / quantize
    img = labels * 0.8 + rng.normal(size=n)
    if img_quant:
        img = np.round(img * img_quant) / img_quant
    return dict(image_scores=img.astype(np.float32), labels=labels, anomaly_maps=maps.astype(np.float32), masks=masks)


def generate(path, float16):
    rng = np.random.default_rng(20261124)
    cases = {}
    cases["random"] = random_class(rng, 30, 24, 20)
    cases["ties"] = random_class(rng, 30, 16, 16, quantize=2, img_quant=1)
    c = random_class(rng, 12, 10, 10)
    c["anomaly_maps"][:] = 0.5
    c["image_scores"][:] = 0.25
    cases["all_equal"] = c
    c = random_class(rng, 8, 12, 12)
    c["labels"][:] = 1
    c["masks"][:] = 0
    cases["one_label_no_regions"] = c
    c = random_class(rng, 8, 6, 6)
    c["masks"][:] = 1
    cases["all_anomalous_pixels"] = c
    # Single pixels, some touching only diagonally (one 8-connected region), some isolated.
    c = random_class(rng, 10, 9, 9)
    c["masks"][:] = 0
    for i in range(10):
        if c["labels"][i]:
            for _ in range(rng.integers(1, 5)):
                y, x = rng.integers(0, 8), rng.integers(0, 8)
                c["masks"][i, y, x] = 1
                if rng.random() < 0.5:
                    c["masks"][i, y + 1, x + 1] = 1
    cases["tiny_regions"] = c
    c = random_class(rng, 40, 1, 1)
    c["masks"][:, 0, 0] = c["labels"]
    cases["one_by_one"] = c
    # Heavy tail: one huge normal-pixel outlier puts 199 of AnomalyCLIP's 200 thresholds above
    # every other pixel, so all kept FPRs are equal and its min-max stretch is 0/0.
    c = random_class(rng, 20, 16, 16)
    c["anomaly_maps"] = np.exp(rng.normal(size=c["anomaly_maps"].shape) * 2 + 1.5 * c["masks"]).astype(np.float32)
    c["anomaly_maps"][0, 0, 0] = 1e7
    c["masks"][0] = 0
    cases["heavy_tail"] = c
    c = random_class(rng, 20, 16, 16)
    c["anomaly_maps"] = (rng.pareto(1.2, size=c["anomaly_maps"].shape) + 3 * c["masks"]).astype(np.float32)
    cases["pareto"] = c
    # Signed zeros, negatives, large dynamic range.
    c = random_class(rng, 16, 8, 8)
    m = c["anomaly_maps"]
    m[rng.random(m.shape) < 0.2] = 0.0
    m[rng.random(m.shape) < 0.2] = -0.0
    m *= np.float32(1e-30) ** (rng.random(m.shape) < 0.1)
    c["image_scores"][:4] = [0.0, -0.0, 0.0, -0.0]
    cases["signed_zero"] = c
    c = random_class(rng, 25, 1, 1)
    del c["anomaly_maps"], c["masks"]
    cases["image_only"] = c
    c = random_class(rng, 6, 1, 1)
    del c["anomaly_maps"], c["masks"]
    c["labels"][:] = 0
    cases["image_only_one_label"] = c
    cases["big_parallel"] = random_class(rng, 64, 128, 128, quantize=64)
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = "zsad.scores/1"
        for name, c in cases.items():
            g = f.create_group(name)
            g["image_scores"] = c["image_scores"]
            g["labels"] = c["labels"]
            if "anomaly_maps" in c:
                maps = c["anomaly_maps"]
                if float16:  # keep the heavy tail inside float16's finite range
                    maps = np.clip(maps, -6e4, 6e4).astype(np.float16)
                g["anomaly_maps"] = maps
                g["masks"] = c["masks"]


# ---------------------------------------------------------------- references
def binary(y, s):
    y = np.asarray(y).ravel()
    s = np.asarray(s).ravel()
    if len(np.unique(y)) < 2:
        return None, None, None
    p, r, _ = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * p * r / (p + r)
    return float(roc_auc_score(y, s)), float(average_precision_score(y, s)), float(np.max(f1[np.isfinite(f1)]))


def trapezoid(x, y, x_max):
    """MVTec AD generic_util.trapezoid."""
    x, y = np.asarray(x), np.asarray(y)
    correction = 0.0
    if x_max not in x:
        ins = bisect(x, x_max)
        assert 0 < ins < len(x)
        y_interp = y[ins - 1] + ((y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1]))
        correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
    mask = x <= x_max
    x, y = x[mask], y[mask]
    return np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction


def exact_aupro(maps, masks, limit):
    fp_changes = np.zeros(maps.shape, np.uint32)
    pro_changes = np.zeros(maps.shape, np.float64)
    ok_pixels, regions = 0, 0
    for i, m in enumerate(masks):
        lab, n = label(m, EIGHT)
        regions += n
        ok = lab == 0
        ok_pixels += int(ok.sum())
        fp_changes[i][ok] = 1
        for k in range(n):
            r = lab == k + 1
            pro_changes[i][r] = 1.0 / r.sum()
    if regions == 0 or ok_pixels == 0:
        return None
    flat = maps.ravel()
    order = np.argsort(flat)[::-1]
    s = flat[order]
    fprs = np.cumsum(fp_changes.ravel()[order], dtype=np.float64) / ok_pixels
    pros = np.cumsum(pro_changes.ravel()[order]) / regions
    keep = np.append(np.diff(s) != 0, True)
    fprs = np.clip(fprs[keep], None, 1.0)
    pros = np.clip(pros[keep], None, 1.0)
    x = np.concatenate(([0.0], fprs, [1.0]))
    y = np.concatenate(([0.0], pros, [1.0]))
    return float(trapezoid(x, y, limit) / limit)


def cal_pro_score(masks, amaps, max_step=200, expect_fpr=0.3):
    """AnomalyCLIP utils/metrics.py cal_pro_score; skimage.measure.label -> scipy 8-connected."""
    binary_amaps = np.zeros_like(amaps, dtype=bool)
    min_th, max_th = amaps.min(), amaps.max()
    delta = (max_th - min_th) / max_step
    pros, fprs, ths = [], [], []
    for th in np.arange(min_th, max_th, delta):
        binary_amaps[amaps <= th], binary_amaps[amaps > th] = 0, 1
        pro = []
        for binary_amap, mask in zip(binary_amaps, masks):
            lab, n = label(mask, EIGHT)
            for k in range(1, n + 1):
                coords = np.nonzero(lab == k)
                tp_pixels = binary_amap[coords].sum()
                pro.append(tp_pixels / len(coords[0]))
        inverse_masks = 1 - masks
        fp_pixels = np.logical_and(inverse_masks, binary_amaps).sum()
        fpr = fp_pixels / inverse_masks.sum()
        pros.append(np.array(pro).mean())
        fprs.append(fpr)
        ths.append(th)
    pros, fprs, ths = np.array(pros), np.array(fprs), np.array(ths)
    idxes = fprs < expect_fpr
    fprs = fprs[idxes]
    fprs = (fprs - fprs.min()) / (fprs.max() - fprs.min())
    return auc(fprs, pros[idxes])


def clip_aupro(maps, masks, limit):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                v = cal_pro_score(masks, maps, 200, limit)
    except (ValueError, ZeroDivisionError):
        return None, "raises"
    if not np.isfinite(v):
        return None, "nan"
    return float(v), None


def compute(path, limit, mode, skip_clip_prefix):
    out, notes = {}, {}
    with h5py.File(path, "r") as f:
        for name in f:
            g = f[name]
            img = g["image_scores"][()].astype(np.float32)
            lab = g["labels"][()]
            v = dict(zip(KEYS, [None] * 7))
            v["image_auroc"], v["image_ap"], v["image_f1_max"] = binary(lab, img)
            if "anomaly_maps" in g:
                maps = g["anomaly_maps"][()].astype(np.float32)
                masks = g["masks"][()]
                v["pixel_auroc"], v["pixel_ap"], v["pixel_f1_max"] = binary(masks, maps)
                if mode == "exact":
                    v["pixel_aupro"] = exact_aupro(maps, masks, limit)
                elif skip_clip_prefix and name.startswith(skip_clip_prefix):
                    v["pixel_aupro"] = "skip"
                else:
                    v["pixel_aupro"], why = clip_aupro(maps, masks, limit)
                    if why:
                        notes[name] = why
            out[name] = v
    json.dump({"classes": out, "notes": notes}, sys.stdout)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("out")
    g.add_argument("--float16", action="store_true")
    c = sub.add_parser("compute")
    c.add_argument("scores")
    c.add_argument("--fpr-limit", type=float, default=0.3)
    c.add_argument("--pro-mode", default="exact")
    c.add_argument("--skip-clip-prefix", default="")
    a = ap.parse_args()
    if a.cmd == "generate":
        generate(a.out, a.float16)
    else:
        compute(a.scores, a.fpr_limit, a.pro_mode, a.skip_clip_prefix)


if __name__ == "__main__":
    main()
