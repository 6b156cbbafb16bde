"""Writes small images in many modes/formats with PIL plus PIL's own convert('RGB') (and the
reference mask binarisation convert('L') > 0) as raw bytes, for the decode parity test.

Usage: pil_formats.py DIR. Writes DIR/<name>.<ext>, DIR/<name>.rgb (H*W*3) and DIR/<name>.bin
(H*W, 0/255), and DIR/list.txt with `name.ext width height`.
"""
import os
import sys

import numpy as np
from PIL import Image


def main(d):
    rng = np.random.default_rng(5)
    h, w = 37, 53
    base = rng.integers(0, 256, size=(h, w, 4), dtype=np.uint8)
    base[5:15, 5:20] = 0
    base[20:30, 30:50, :3] = 255
    cases = [
        ("rgb_png", Image.fromarray(base[..., :3], "RGB"), "png"),
        ("grey_png", Image.fromarray(base[..., 0], "L"), "png"),
        ("rgba_png", Image.fromarray(base, "RGBA"), "png"),
        ("la_png", Image.fromarray(base[..., :2], "LA"), "png"),
        ("palette_png", Image.fromarray(base[..., :3], "RGB").convert("P", palette=Image.ADAPTIVE, colors=16), "png"),
        ("rgb_bmp", Image.fromarray(base[..., :3], "RGB"), "bmp"),
        ("grey_bmp", Image.fromarray(base[..., 1], "L"), "bmp"),
        ("rgb_tif", Image.fromarray(base[..., :3], "RGB"), "tif"),
        ("grey_tiff", Image.fromarray(base[..., 2], "L"), "tiff"),
        ("rgb_jpg", Image.fromarray(base[..., :3], "RGB"), "jpg"),
        ("grey_jpg", Image.fromarray(base[..., 0], "L"), "JPG"),
        ("ids_png", Image.fromarray((base[..., 0] % 4).astype(np.uint8), "L"), "png"),
    ]
    with open(os.path.join(d, "list.txt"), "w") as lst:
        for name, img, ext in cases:
            path = os.path.join(d, f"{name}.{ext}")
            img.save(path)
            back = Image.open(path)
            np.asarray(back.convert("RGB"), dtype=np.uint8).tofile(os.path.join(d, name + ".rgb"))
            binm = (np.array(back.convert("L")) > 0).astype(np.uint8) * 255
            binm.tofile(os.path.join(d, name + ".bin"))
            lst.write(f"{name}.{ext} {w} {h}\n")


if __name__ == "__main__":
    main(sys.argv[1])
