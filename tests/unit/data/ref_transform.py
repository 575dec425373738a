#!/usr/bin/env python3
"""ref_transform.py - an independent reference of MMDetection's Resize/RandomFlip rules
(mmcv rescale_size + _scale_size, HorizontalBoxes rescale_/clip_/flip_) in plain Python,
without PyTorch, OpenCV or numpy. float32 arithmetic is emulated with struct round trips.
Writes tests/fixtures/data/transform_ref.txt, which test_transform.c compares against:
  w h scale_w scale_h new_w new_h w_scale h_scale flip x1 y1 x2 y2 -> X1 Y1 X2 Y2
Run: python3 tests/unit/data/ref_transform.py > tests/fixtures/data/transform_ref.txt
"""
import random
import struct


def f32(x):
    return struct.unpack('f', struct.pack('f', x))[0]


def rescale_size(w, h, scale):
    # mmcv.image.geometric.rescale_size with keep_ratio
    max_long_edge, max_short_edge = max(scale), min(scale)
    scale_factor = min(max_long_edge / max(h, w), max_short_edge / min(h, w))
    # _scale_size: int(w * scale + 0.5)
    return int(w * scale_factor + 0.5), int(h * scale_factor + 0.5)


def transform_box(box, w_scale, h_scale, new_w, new_h, flip):
    # HorizontalBoxes.rescale_: float32 boxes times a float32 tensor of the scale factors
    sx, sy = f32(w_scale), f32(h_scale)
    x1, y1, x2, y2 = (f32(f32(box[0]) * sx), f32(f32(box[1]) * sy),
                      f32(f32(box[2]) * sx), f32(f32(box[3]) * sy))
    # clip_ to img_shape (h, w)
    x1, x2 = min(max(x1, 0.0), new_w), min(max(x2, 0.0), new_w)
    y1, y2 = min(max(y1, 0.0), new_h), min(max(y2, 0.0), new_h)
    if flip:  # flip_ horizontal: x1' = W - x2, x2' = W - x1
        x1, x2 = f32(new_w - x2), f32(new_w - x1)
    return x1, y1, x2, y2


def main():
    rnd = random.Random(5)
    cases = [(640, 480), (640, 427), (480, 640), (640, 360), (640, 640), (500, 375),
             (1, 1), (32, 32), (33, 4000), (4000, 33), (192, 320), (211, 157), (1333, 800)]
    cases += [(rnd.randint(16, 2000), rnd.randint(16, 2000)) for _ in range(60)]
    scales = [(1333, 800), (800, 1333), (320, 192), (512, 512)]
    print('# w h scale_w scale_h new_w new_h w_scale h_scale flip x1 y1 x2 y2 X1 Y1 X2 Y2')
    for (w, h) in cases:
        for scale in scales:
            nw, nh = rescale_size(w, h, scale)
            ws, hs = nw / w, nh / h
            for flip in (0, 1):
                x = rnd.uniform(-0.1 * w, w)
                y = rnd.uniform(-0.1 * h, h)
                box = (x, y, x + rnd.uniform(1, w), y + rnd.uniform(1, h))
                box = tuple(f32(v) for v in box)
                out = transform_box(box, ws, hs, nw, nh, flip)
                print(w, h, scale[0], scale[1], nw, nh, repr(ws), repr(hs), flip,
                      ' '.join(repr(v) for v in box), ' '.join(repr(float(v)) for v in out))


if __name__ == '__main__':
    main()
