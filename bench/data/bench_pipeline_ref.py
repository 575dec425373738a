#!/usr/bin/env python3
"""bench_pipeline_ref.py - the same per-image work as bench_pipeline.c, with OpenCV (what
MMDetection uses: cv2.imdecode, cv2.resize INTER_LINEAR) and with PIL (Image.open,
resize BILINEAR), then flip every other image, BGR->RGB, float32 (x - mean) / std into a
zero-padded CHW array. One thread; bytes are read into memory first; best of REPEATS.

usage: bench_pipeline_ref.py DIR [REPEATS=5]   (DIR: the JPEGs bench_pipeline wrote)
Needs numpy and opencv-python-headless and/or pillow (pip install ...); a missing one is skipped.
"""
import glob
import io
import os
import sys
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')
import numpy as np  # noqa: E402

MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


def new_size(w, h, scale=(1333, 800)):
    sf = min(max(scale) / max(w, h), min(scale) / min(w, h))
    return int(w * sf + 0.5), int(h * sf + 0.5)


def finish(rgb, flip, out):
    if flip:
        rgb = rgb[:, ::-1]
    x = (rgb.astype(np.float32) - MEAN) / STD
    h, w = x.shape[:2]
    out[:] = 0
    out[:, :h, :w] = x.transpose(2, 0, 1)


def run_cv2(blobs, out):
    import cv2
    cv2.setNumThreads(1)
    for i, b in enumerate(blobs):
        img = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        img = cv2.resize(img, new_size(w, h), interpolation=cv2.INTER_LINEAR)
        finish(img[..., ::-1], i & 1, out)


def run_cv2_u8(blobs, out):
    """OpenCV's share alone: decode + resize + flip in uint8, no float conversion."""
    import cv2
    cv2.setNumThreads(1)
    for i, b in enumerate(blobs):
        img = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        img = cv2.resize(img, new_size(w, h), interpolation=cv2.INTER_LINEAR)
        if i & 1:
            img = cv2.flip(img, 1)


def run_pil(blobs, out):
    from PIL import Image
    for i, b in enumerate(blobs):
        im = Image.open(io.BytesIO(b)).convert('RGB')
        im = im.resize(new_size(*im.size), Image.BILINEAR)
        finish(np.asarray(im), i & 1, out)


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    files = sorted(glob.glob(os.path.join(sys.argv[1], '*.jpg')))
    blobs = [open(f, 'rb').read() for f in files]
    out = np.zeros((3, 800, 1088), np.float32)
    for name, fn in (('OpenCV + numpy normalise', run_cv2), ('PIL + numpy normalise', run_pil),
                     ('OpenCV decode+resize+flip only (uint8, no normalise)', run_cv2_u8)):
        try:
            fn(blobs[:1], out)
        except ImportError as e:
            print('%s: skipped (%s)' % (name, e))
            continue
        best = min(_time(fn, blobs, out) for _ in range(reps))
        print('%s, %d images, best of %d: %.1f img/s per core (%.2f ms/img)' % (
            name, len(blobs), reps, len(blobs) / best, 1e3 * best / len(blobs)))
    return 0


def _time(fn, blobs, out):
    t = time.perf_counter()
    fn(blobs, out)
    return time.perf_counter() - t


if __name__ == '__main__':
    sys.exit(main())
