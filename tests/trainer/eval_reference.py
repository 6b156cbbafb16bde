"""Recomputes an evaluation run's metrics from its own outputs with sklearn, for
tests/trainer/eval_engine_test.cpp.

usage: eval_reference.py IMAGE_SCORES.csv SCORES.h5 OUT.json
IMAGE_SCORES.csv: index,class,label,score,path (the engine's per-image listing).
SCORES.h5: zsad.scores/1 (per class image_scores, labels, anomaly_maps, masks).
Writes {"classes": {cls: {image_auroc, image_ap, pixel_auroc, pixel_ap}}, "h5_scores": {cls: [...]}}.
"""
import csv
import json
import sys

import h5py
import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

scores_csv, scores_h5, out = sys.argv[1:4]
by_class = {}
for row in csv.DictReader(open(scores_csv)):
    by_class.setdefault(row["class"], ([], []))
    by_class[row["class"]][0].append(int(row["label"]))
    by_class[row["class"]][1].append(float(row["score"]))
res = {"classes": {}, "h5_scores": {}}
f = h5py.File(scores_h5, "r")
for cls, (labels, scores) in by_class.items():
    g = f[cls]
    maps = g["anomaly_maps"][()].astype(np.float64).ravel()
    masks = g["masks"][()].ravel()
    res["classes"][cls] = {
        "image_auroc": roc_auc_score(labels, scores),
        "image_ap": average_precision_score(labels, scores),
        "pixel_auroc": roc_auc_score(masks, maps),
        "pixel_ap": average_precision_score(masks, maps),
    }
    res["h5_scores"][cls] = [float(x) for x in g["image_scores"][()]]
json.dump(res, open(out, "w"))
