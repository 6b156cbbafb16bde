"""Helpers for bench/metrics_bench.sh (run with /usr/bin/python3: numpy, h5py, sklearn, scipy).

  generate OUT.h5 --images N [--size 518] [--seed 0]
      one class "bench" with N images of size x size: float32 anomaly maps (blocky low-res noise
      upsampled 14x, like 37x37 ViT patch maps, plus a signal on anomalous regions), uint8 masks
      with 1-3 elliptic defects on half of the images.
  reference SCORES.h5
      pixel AUROC + AP (sklearn) and exact AUPRO (MVTec AD algorithm, tests/results/
      metrics_reference.py) on the same file; prints JSON with values and seconds.
"""
import argparse
import json
import os
import sys
import time

import h5py
import numpy as np


def generate(out, images, size, seed):
    rng = np.random.default_rng(seed)
    patch = 14
    low = -(-size // patch)
    yy, xx = np.mgrid[0:size, 0:size]
    with h5py.File(out, "w") as f:
        f.attrs["schema"] = "zsad.scores/1"
        g = f.create_group("bench")
        maps = g.create_dataset("anomaly_maps", (images, size, size), np.float32, chunks=(1, size, size))
        masks = g.create_dataset("masks", (images, size, size), np.uint8, chunks=(1, size, size))
        labels = (np.arange(images) % 2).astype(np.uint8)
        scores = rng.normal(size=images).astype(np.float32) + labels
        for i in range(images):
            m = np.zeros((size, size), np.uint8)
            if labels[i]:
                for _ in range(rng.integers(1, 4)):
                    cy, cx = rng.integers(0, size, 2)
                    ry, rx = rng.integers(4, size // 8, 2)
                    m[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = 1
            base = np.repeat(np.repeat(rng.random((low, low), dtype=np.float32), patch, 0), patch, 1)[:size, :size]
            amap = 0.7 * base + 0.3 * rng.random((size, size), dtype=np.float32) + 0.4 * m
            maps[i] = amap
            masks[i] = m
        g["image_scores"] = scores
        g["labels"] = labels


def reference(path):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "results"))
    from metrics_reference import exact_aupro  # noqa: E402
    from sklearn.metrics import average_precision_score, roc_auc_score

    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        maps = f["bench/anomaly_maps"][()]
        masks = f["bench/masks"][()]
    t_read = time.perf_counter() - t0
    c0 = time.process_time()
    t = time.perf_counter()
    auroc = roc_auc_score(masks.ravel(), maps.ravel())
    t_auroc = time.perf_counter() - t
    t = time.perf_counter()
    ap = average_precision_score(masks.ravel(), maps.ravel())
    t_ap = time.perf_counter() - t
    t = time.perf_counter()
    aupro = exact_aupro(maps, masks, 0.3)
    t_aupro = time.perf_counter() - t
    cpu = time.process_time() - c0
    json.dump({"pixel_auroc": auroc, "pixel_ap": ap, "pixel_aupro": aupro, "read_s": t_read, "auroc_s": t_auroc,
               "ap_s": t_ap, "aupro_s": t_aupro, "metrics_s": t_auroc + t_ap + t_aupro, "metrics_cpu_s": cpu}, sys.stdout)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("out")
    g.add_argument("--images", type=int, required=True)
    g.add_argument("--size", type=int, default=518)
    g.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("reference")
    r.add_argument("scores")
    a = ap.parse_args()
    if a.cmd == "generate":
        generate(a.out, a.images, a.size, a.seed)
    else:
        reference(a.scores)
