"""Reference for the resize parity test: PIL Image.resize on raw 8-bit buffers.

Usage: pil_resize.py DIR. DIR/manifest.txt has lines `name width height channels filter out_w out_h`
(filter: bicubic|bilinear); reads DIR/name.raw (row-major, interleaved) and writes DIR/name.pil.raw.
"""
import os
import sys

import numpy as np
from PIL import Image


def main(d):
    with open(os.path.join(d, "manifest.txt")) as f:
        for line in f:
            name, w, h, c, filt, ow, oh = line.split()
            w, h, c, ow, oh = int(w), int(h), int(c), int(ow), int(oh)
            a = np.fromfile(os.path.join(d, name + ".raw"), dtype=np.uint8)
            a = a.reshape(h, w) if c == 1 else a.reshape(h, w, c)
            img = Image.fromarray(a, mode="L" if c == 1 else "RGB")
            r = img.resize((ow, oh), Image.BICUBIC if filt == "bicubic" else Image.BILINEAR)
            np.asarray(r, dtype=np.uint8).tofile(os.path.join(d, name + ".pil.raw"))


if __name__ == "__main__":
    main(sys.argv[1])
