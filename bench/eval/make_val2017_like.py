#!/usr/bin/env python3
"""make_val2017_like.py - a synthetic GT/results pair shaped like COCO val2017 + a detector.

    python3 bench/eval/make_val2017_like.py OUT_DIR [SEED]

Writes OUT_DIR/gt.json and OUT_DIR/results.json:
  - 5,000 images (640x480 / 480x640 / 640x427), 80 categories with COCO's ids (1..90 with
    the ten gaps), about 36,800 annotations (per-image count geometric-like with mean ~7.4,
    48 images without any), ~1.2 % crowd, box sizes giving roughly COCO's 41/34/25 %
    small/medium/large split, 'area' = box area times a mask fill factor;
  - 100 detections per image (500,000): jittered copies of the image's objects (mostly the
    right category) plus background boxes, float32-like scores, coordinates with 2 decimals,
    written in image order as MMDetection does.
Only the standard library is used; the output is deterministic for a seed.
"""
import json
import math
import os
import random
import sys

COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else '.'
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 2017
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    images, anns, dets = [], [], []
    img_ids = sorted(rng.sample(range(1, 581930), 5000))
    empty = set(rng.sample(img_ids, 48))
    ann_id = 1
    for img in img_ids:
        W, H = rng.choice([(640, 480), (480, 640), (640, 427), (612, 612)])
        images.append({'id': img, 'width': W, 'height': H, 'file_name': '%012d.jpg' % img})
        n_gt = 0 if img in empty else min(60, 1 + int(rng.expovariate(1 / 6.8)))
        objs = []
        for _ in range(n_gt):
            # log-area spread chosen to give ~41 % small, ~34 % medium, ~25 % large
            side = math.exp(rng.gauss(math.log(50), 1.2))
            ar = math.exp(rng.gauss(0, 0.5))
            w = max(1.0, min(W - 1, side * math.sqrt(ar)))
            h = max(1.0, min(H - 1, side / math.sqrt(ar)))
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            box = [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]
            cat = rng.choice(COCO_IDS[:20]) if rng.random() < 0.5 else rng.choice(COCO_IDS)
            crowd = 1 if rng.random() < 0.012 else 0
            area = round(box[2] * box[3] * rng.uniform(0.45, 0.95), 2)
            anns.append({'id': ann_id, 'image_id': img, 'category_id': cat, 'bbox': box,
                         'area': area, 'iscrowd': crowd, 'segmentation': [[x, y, x + w, y, x + w, y + h]]})
            ann_id += 1
            objs.append((box, cat))
        mine = []
        for box, cat in objs:
            for _ in range(rng.choice([1, 2, 2, 3, 4])):
                j = rng.choice([0.03, 0.06, 0.1, 0.2, 0.35])
                x = box[0] + rng.gauss(0, j) * box[2]
                y = box[1] + rng.gauss(0, j) * box[3]
                w = max(0.5, box[2] * (1 + rng.gauss(0, j)))
                h = max(0.5, box[3] * (1 + rng.gauss(0, j)))
                c = cat if rng.random() < 0.8 else rng.choice(COCO_IDS)
                s = min(0.999, max(0.05, rng.betavariate(2.5, 2) * (1.2 - j)))
                mine.append((s, c, [x, y, w, h]))
        while len(mine) < 100:
            w = math.exp(rng.gauss(math.log(40), 1.0))
            h = math.exp(rng.gauss(math.log(40), 1.0))
            mine.append((0.05 + 0.4 * rng.random() ** 3, rng.choice(COCO_IDS),
                         [rng.uniform(0, W - 1), rng.uniform(0, H - 1), w, h]))
        mine.sort(key=lambda d: -d[0])
        for s, c, b in mine[:100]:
            x1, y1 = max(0.0, b[0]), max(0.0, b[1])
            x2, y2 = min(float(W), b[0] + b[2]), min(float(H), b[1] + b[3])
            if x2 - x1 <= 0.01 or y2 - y1 <= 0.01:
                x1, y1, x2, y2 = 0.0, 0.0, 1.0, 1.0
            dets.append({'image_id': img, 'category_id': c,
                         'bbox': [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                         'score': float('%.7g' % s)})
    cats = [{'id': c, 'name': 'class_%d' % c, 'supercategory': 'thing'} for c in COCO_IDS]
    with open(os.path.join(out, 'gt.json'), 'w') as f:
        json.dump({'info': {'description': 'synthetic val2017-like'}, 'licenses': [],
                   'images': images, 'annotations': anns, 'categories': cats}, f)
    with open(os.path.join(out, 'results.json'), 'w') as f:
        json.dump(dets, f)
    small = sum(a['area'] < 1024 for a in anns) / len(anns)
    large = sum(a['area'] > 9216 for a in anns) / len(anns)
    print('%d images, %d annotations (%.0f%% small, %.0f%% large, %d crowd), %d detections'
          % (len(images), len(anns), 100 * small, 100 * large, sum(a['iscrowd'] for a in anns), len(dets)))


if __name__ == '__main__':
    main()
