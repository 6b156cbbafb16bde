"""Reference post-processing for tests/models/postprocess_test.cpp.

Reads DIR/spec.txt (lines "k H W S"), DIR/in_k.f32 (float32 [H,W] little-endian) and writes
  DIR/g32_k.f32  scipy.ndimage.gaussian_filter(float32 map, sigma=4)        (defaults: truncate 4, mode reflect)
  DIR/g64_k.f64  scipy.ndimage.gaussian_filter(float64 map, sigma=4)
  DIR/bl_k.f32   torch F.interpolate(bilinear, align_corners=False) to S x S
  DIR/ba_k.f32   torch F.interpolate(bilinear, align_corners=True)
  DIR/nn_k.f32   torch F.interpolate(nearest)
"""
import os
import sys

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F

d = sys.argv[1]
for line in open(os.path.join(d, "spec.txt")):
    k, H, W, S = (int(x) for x in line.split())
    m = np.fromfile(os.path.join(d, f"in_{k}.f32"), dtype="<f4").reshape(H, W)
    scipy.ndimage.gaussian_filter(m, sigma=4).astype("<f4").tofile(os.path.join(d, f"g32_{k}.f32"))
    scipy.ndimage.gaussian_filter(m.astype(np.float64), sigma=4).astype("<f8").tofile(os.path.join(d, f"g64_{k}.f64"))
    t = torch.from_numpy(m.copy())[None, None]
    F.interpolate(t, size=(S, S), mode="bilinear", align_corners=False)[0, 0].numpy().astype("<f4").tofile(
        os.path.join(d, f"bl_{k}.f32"))
    F.interpolate(t, size=(S, S), mode="bilinear", align_corners=True)[0, 0].numpy().astype("<f4").tofile(
        os.path.join(d, f"ba_{k}.f32"))
    F.interpolate(t, size=(S, S), mode="nearest")[0, 0].numpy().astype("<f4").tofile(os.path.join(d, f"nn_{k}.f32"))
print("ok")
