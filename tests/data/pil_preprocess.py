"""Reference CLIP preprocessing as CoPS/AnomalyCLIP run it (PIL + torchvision semantics, numpy).

Usage: pil_preprocess.py MANIFEST. Each line: `image_path mask_path|- size out_prefix`; writes
out_prefix.img.f32 ([3,S,S] float32) and out_prefix.mask.u8 ([S,S] 0/1).
"""
import sys

import numpy as np
from PIL import Image

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def main(manifest):
    for line in open(manifest):
        img_path, mask_path, size, out = line.split()
        size = int(size)
        img = Image.open(img_path).convert("RGB").resize((size, size), Image.BICUBIC)
        x = np.asarray(img, dtype=np.uint8).astype(np.float32) / np.float32(255)  # ToTensor
        x = x.transpose(2, 0, 1)
        x = (x - MEAN[:, None, None]) / STD[:, None, None]  # Normalize
        x.astype(np.float32).tofile(out + ".img.f32")
        if mask_path == "-":
            m = np.zeros((size, size), dtype=np.uint8)
        else:
            raw = np.array(Image.open(mask_path).convert("L")) > 0
            mimg = Image.fromarray(raw.astype(np.uint8) * 255, mode="L").resize((size, size), Image.BILINEAR)
            m = (np.asarray(mimg, dtype=np.float32) / np.float32(255) > 0.5).astype(np.uint8)
        m.tofile(out + ".mask.u8")


if __name__ == "__main__":
    main(sys.argv[1])
