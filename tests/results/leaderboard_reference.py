"""Synthetic results tree + independently computed leaderboard expectations (run with $ZSAD_PYTHON).

  make-tree DIR    writes DIR/<runs>/results/<dataset>.json (zsad.results/1), malformed files,
                   and prints the expected main table as JSON:
                   {"columns": [[dataset, metric], ...], "rows": {label: {"n": .., "cells": [text, ...],
                    "values": [[mean_pct|null, std_pct|null], ...]}}, "per_class": {...}, "bad": [paths]}

Row labels follow docs/results.md: "method (variant; train: X)". Cell text: percent with one
decimal, "mean ± std" when n >= 2, "–" when undefined, "**...**" for the best of a column.
"""
import json
import os
import sys

import numpy as np

KEYS = ["image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro"]
SHOWN = ["image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "pixel_aupro"]
DATASETS = {"mvtec": ["bottle", "cable", "screw"], "visa": ["candle", "pcb1"], "headct": ["brain"]}
SPECIAL = "tag=a&b%c$#_{x}~^\\"


def configs():
    # (method, variant, train_dataset, seeds)
    return [
        ("cops", ["lr=0.001", "shots=0"], "visa", [0, 1, 2]),
        ("cops", ["lr=0.01", "shots=0"], "visa", [0, 1, 2]),
        ("apt", [SPECIAL], "mvtec", [3, 4]),
        ("winclip", [], None, [0]),
    ]


def label(method, variant, train):
    rest = []
    if variant:
        rest.append(", ".join(variant))
    if train:
        rest.append("train: " + train)
    return method + (" (" + "; ".join(rest) + ")" if rest else "")


def pct(x):
    s = "%.1f" % (100 * x)
    return "0.0" if s == "-0.0" else s


def text(values):
    if not values:
        return "–", None, None
    m = float(np.mean(values))
    if len(values) >= 2:
        sd = float(np.std(values, ddof=1))
        return pct(m) + " ± " + pct(sd), m, sd
    return pct(m), m, None


def make_tree(root):
    rng = np.random.default_rng(42)
    runs = {}  # (label, dataset) -> {seed: {metric: mean}}, per class too
    per_class = {}
    job = 0
    for method, variant, train, seeds in configs():
        lab = label(method, variant, train)
        for seed in seeds:
            job += 1
            rundir = os.path.join(root, "multirun", method, str(job), "results")
            os.makedirs(rundir, exist_ok=True)
            for ds, classes in DATASETS.items():
                cls_vals = {}
                for c in classes:
                    v = {k: float(rng.uniform(0.5, 1.0)) for k in KEYS}
                    if ds == "headct":
                        for k in KEYS:
                            if k.startswith("pixel_"):
                                v[k] = None
                    if c == "screw":
                        v["image_auroc"] = None  # one class undefined: mean over the others
                    cls_vals[c] = v
                mean = {}
                for k in KEYS:
                    d = [cls_vals[c][k] for c in classes if cls_vals[c][k] is not None]
                    mean[k] = float(np.mean(d)) if d else None
                doc = {
                    "schema": "zsad.results/1", "method": method, "variant": sorted(variant),
                    "train_dataset": train, "test_dataset": ds, "seed": seed,
                    "protocol": {"eval_size": 518, "upsampling": "bilinear", "smoothing_sigma": 4.0,
                                 "fpr_limit": 0.3, "pro_mode": "exact"},
                    "digests": {"config": "a" * 64, "weights": None, "dataset": "b" * 64},
                    "overrides": variant + ["seed=%d" % seed], "git_revision": "deadbeef",
                    "metrics": {"classes": cls_vals, "mean": mean},
                    "timings": {"eval_s": 1.5}, "hardware": {"host": "test"},
                }
                with open(os.path.join(rundir, ds + ".json"), "w") as f:
                    json.dump(doc, f)
                for k in SHOWN:
                    if mean[k] is not None:
                        runs.setdefault((lab, ds, k), {})[seed] = mean[k]
                    for c in classes:
                        if cls_vals[c][k] is not None:
                            per_class.setdefault((lab, ds, k, c), []).append(cls_vals[c][k])
    # Malformed and mismatched files: each must be reported and skipped.
    bad = os.path.join(root, "broken", "results")
    os.makedirs(bad, exist_ok=True)
    good = json.load(open(os.path.join(root, "multirun", "cops", "1", "results", "mvtec.json")))
    bads = {}
    with open(os.path.join(bad, "truncated.json"), "w") as f:
        f.write(json.dumps(good)[:200])
    bads["truncated.json"] = "not valid JSON"
    d = dict(good, schema="zsad.results/2")
    json.dump(d, open(os.path.join(bad, "future.json"), "w"))
    bads["future.json"] = "zsad.results/2"
    d = dict(good)
    del d["metrics"]
    json.dump(d, open(os.path.join(bad, "no_metrics.json"), "w"))
    bads["no_metrics.json"] = "metrics"
    d = json.loads(json.dumps(good))
    d["metrics"]["mean"]["image_auroc"] = 1.5
    json.dump(d, open(os.path.join(bad, "out_of_range.json"), "w"))
    bads["out_of_range.json"] = "maximum"
    json.dump([1, 2, 3], open(os.path.join(bad, "array.json"), "w"))
    bads["array.json"] = "schema"
    # Unrelated JSON outside a results/ directory is ignored silently.
    json.dump({"lr": 0.1}, open(os.path.join(root, "multirun", "config.json"), "w"))

    labels = sorted({k[0] for k in runs} | {label(m, v, t) for m, v, t, _ in configs()})
    columns = []
    for ds in sorted(DATASETS):
        for k in SHOWN:
            if any((lab, ds, k) in runs for lab in labels):
                columns.append([ds, k])
    metrics_with = {k: sum(1 for c in columns if c[1] == k) for k in SHOWN}
    for k in SHOWN:
        if metrics_with[k]:
            columns.append(["Mean", k])
    rows = {}
    for lab in labels:
        cells, values = [], []
        for ds, k in columns:
            if ds != "Mean":
                by_seed = runs.get((lab, ds, k), {})
                t, m, sd = text(list(by_seed.values()))
            else:
                dss = [c[0] for c in columns if c[1] == k and c[0] != "Mean" and (lab, c[0], k) in runs]
                seeds = sorted(runs[(lab, dss[0], k)])
                per_seed = [np.mean([runs[(lab, d, k)][s] for d in dss]) for s in seeds]
                t, m, sd = text(per_seed)
            cells.append(t)
            values.append([None if m is None else 100 * m, None if sd is None else 100 * sd])
        n = max(len(runs.get((lab, ds, k), {})) for ds, k in columns if ds != "Mean")
        rows[lab] = {"n": n, "cells": cells, "values": values}
    # Best per column: highest displayed value, bold.
    for j in range(len(columns)):
        shown = [float(rows[l]["cells"][j].split(" ")[0]) for l in labels if rows[l]["cells"][j] != "–"]
        best = max(shown)
        for l in labels:
            c = rows[l]["cells"][j]
            if c != "–" and float(c.split(" ")[0]) == best:
                rows[l]["cells"][j] = "**" + c + "**"
    pc = {}
    for (lab, ds, k, c), vals in per_class.items():
        t, m, sd = text(vals)
        pc["%s|%s/%s|%s" % (lab, ds, k, c)] = [100 * m, None if sd is None else 100 * sd, len(vals)]
    json.dump({"columns": columns, "rows": rows, "per_class": pc, "bad": bads, "special": SPECIAL}, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "make-tree":
        make_tree(sys.argv[2])
