"""Ground-truth masks at an evaluation size other than the model's input size, as the references
build them (PIL resize BILINEAR of the L mask, /255 > 0.5), for tests/trainer/eval_engine_test.cpp.

usage: eval_masks_reference.py ROOT IMAGE_SCORES.csv SCORES.h5 CLASS SIZE
Exits 1 (printing the first difference) unless the scores file's masks for CLASS equal the reference.
"""
import csv
import os
import sys

import h5py
import numpy as np
from PIL import Image

root, scores_csv, scores_h5, cls, size = sys.argv[1:6]
size = int(size)
rows = [r for r in csv.DictReader(open(scores_csv)) if r["class"] == cls]
masks = h5py.File(scores_h5, "r")[cls]["masks"][()]
assert masks.shape == (len(rows), size, size), masks.shape
for i, r in enumerate(rows):
    p = r["path"]  # <cls>/test/<defect>/<stem>.png
    parts = p.split("/")
    ref = np.zeros((size, size), dtype=np.uint8)
    if parts[2] != "good":
        m = os.path.join(root, parts[0], "ground_truth", parts[2], os.path.splitext(parts[3])[0] + "_mask.png")
        img = Image.open(m).convert("L").point(lambda v: 255 if v > 0 else 0)
        ref = (np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0 > 0.5).astype(np.uint8)
    if not np.array_equal(ref, masks[i]):
        print(f"{p}: {(ref != masks[i]).sum()} pixels differ")
        sys.exit(1)
    if int(r["label"]) == 1 and ref.sum() == 0:
        print(f"{p}: anomalous image with an empty reference mask")
        sys.exit(1)
print("ok", len(rows))
