#!/usr/bin/python3
"""PIL peer of tests/bench/bench_image.c: decode + resize to a 512 px long side, using PIL's
draft mode (libjpeg DCT scaling to the smallest scale covering the target, like fluke's scaled
decode) and a BILINEAR (antialiased) resize. Prints one line:
    pil_images_per_s <value>
or "skipped: PIL not found". Invoked as: bench_image_pil.py REPS LONG_SIDE FILE...
"""
import sys
import time

try:
    from PIL import Image
except ImportError:
    print("skipped: PIL not found")
    sys.exit(0)


def one(path, long_side):
    im = Image.open(path)
    w, h = im.size
    s = long_side / max(w, h)
    tw, th = max(1, round(w * s)), max(1, round(h * s))
    im.draft("RGB", (tw, th))
    im = im.convert("RGB")
    return im.resize((tw, th), Image.BILINEAR)


def main():
    reps, long_side, files = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    for f in files:  # warm-up: file cache, imports
        one(f, long_side)
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        for f in files:
            one(f, long_side)
        best = max(best, len(files) / (time.perf_counter() - t0))
    print(f"pil_images_per_s {best:.3f}")


if __name__ == "__main__":
    main()
