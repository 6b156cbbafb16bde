"""Checks that two zsad run directories hold the same results: every results/<dataset>.json has
identical metrics, and (with --checkpoints) the latest checkpoints hold bit-identical tensors and
the same step. Used by tests/slurm/cluster_test.sh (SLURM vs `zsad launch -n 2`, preempted vs
uninterrupted). Run with $ZSAD_PYTHON (needs h5py, numpy)."""
import glob
import json
import os
import sys

import h5py
import numpy as np


def results(run):
    out = {}
    for f in sorted(glob.glob(os.path.join(run, "results", "*.json"))):
        with open(f) as fh:
            out[os.path.basename(f)] = json.load(fh)["metrics"]
    return out


def latest_checkpoint(run):
    cks = sorted(glob.glob(os.path.join(run, "checkpoints", "ckpt-*.h5")))
    if not cks:
        sys.exit(f"FAIL: no checkpoints in {run}")
    return cks[-1]


def tensors(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.split("/")[0] in ("params", "method", "optimizer"):
                out[name] = np.array(obj)
        f.visititems(visit)
        step = int(f.attrs["step"])
    return out, step


def main():
    a, b = sys.argv[1], sys.argv[2]
    ra, rb = results(a), results(b)
    if not ra:
        sys.exit(f"FAIL: no results/*.json in {a}")
    if sorted(ra) != sorted(rb):
        sys.exit(f"FAIL: results files differ: {sorted(ra)} vs {sorted(rb)}")
    for name in ra:
        if ra[name] != rb[name]:
            sys.exit(f"FAIL: {name}: metrics differ:\n{ra[name]['mean']}\n{rb[name]['mean']}")
    print(f"results identical: {', '.join(sorted(ra))}")
    if "--checkpoints" in sys.argv:
        ta, sa = tensors(latest_checkpoint(a))
        tb, sb = tensors(latest_checkpoint(b))
        if sa != sb:
            sys.exit(f"FAIL: final steps differ: {sa} vs {sb}")
        if sorted(ta) != sorted(tb):
            sys.exit("FAIL: checkpoint tensor names differ")
        if not ta:
            sys.exit("FAIL: no tensors in the checkpoints")
        for k in ta:
            if ta[k].shape != tb[k].shape or not np.array_equal(ta[k], tb[k]):
                sys.exit(f"FAIL: tensor {k} differs")
        print(f"checkpoints identical: step {sa}, {len(ta)} tensors")


if __name__ == "__main__":
    main()
