#!/usr/bin/env python3
"""check_pycocotools.py - does crosskd-gen's output load in pycocotools unchanged?

Generates a small dataset (seed 7) and a small annotations-only one with crosskd-gen,
loads both with pycocotools.coco.COCO, checks ids, sizes and boxes, and scores the ground
truth against itself with COCOeval (AP must be 1.0). Prints a summary line per split; with
--write-record it also writes them to the record that test_synth.c compares the C-side
summary with (so CI, which has no pycocotools, still checks the same output).

usage: check_pycocotools.py CROSSKD_GEN RECORD [--write-record]
Exit 77 (skip) when pycocotools is not installed (pip install pycocotools).
"""
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile

try:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
except ImportError:
    print('pycocotools is not installed: skipped (pip install pycocotools)')
    sys.exit(77)

GEN_ARGS = ['--seed', '7', '--train', '30', '--val', '4', '--size-min', '64', '--size-max', '128',
            '--no-progress']


def summary(coco, split):
    anns = coco.loadAnns(coco.getAnnIds())
    crowd = sum(a['iscrowd'] for a in anns)
    area = sum(a['area'] for a in anns)
    bbox = sum(sum(a['bbox']) for a in anns)
    return 'split %s images %d annotations %d crowd %d categories %d area_sum %.2f bbox_sum %.2f' % (
        split, len(coco.getImgIds()), len(anns), crowd, len(coco.getCatIds()), area, bbox)


def check_split(root, split, ann_only=False):
    path = os.path.join(root, 'annotations', 'instances_%s.json' % split)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(path)
    imgs = coco.loadImgs(coco.getImgIds())
    assert len(imgs) > 0
    for img in imgs:
        if not ann_only:
            assert os.path.isfile(os.path.join(root, split, img['file_name'])), img['file_name']
        for a in coco.loadAnns(coco.getAnnIds(imgIds=[img['id']])):
            x, y, w, h = a['bbox']
            assert w > 0 and h > 0 and x >= 0 and y >= 0, a
            assert x + w <= img['width'] + 1e-6 and y + h <= img['height'] + 1e-6, (a, img)
            assert a['category_id'] in coco.cats
            m = coco.annToMask(a)  # polygon or RLE must rasterise
            assert m.shape == (img['height'], img['width'])
            if not ann_only:
                assert 0 < a['area'] <= w * h
                assert a['iscrowd'] or m.sum() > 0
    # the ground truth scored against itself
    dets = [{'image_id': a['image_id'], 'category_id': a['category_id'], 'bbox': a['bbox'], 'score': 1.0}
            for a in coco.loadAnns(coco.getAnnIds()) if not a['iscrowd']]
    if dets:
        with contextlib.redirect_stdout(io.StringIO()):
            res = coco.loadRes(dets)
            ev = COCOeval(coco, res, 'bbox')
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert abs(ev.stats[0] - 1.0) < 1e-9, ev.stats
    return summary(coco, split)


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    gen, record = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        a = os.path.join(tmp, 'img')
        b = os.path.join(tmp, 'ann')
        subprocess.run([gen, '--out', a] + GEN_ARGS, check=True)
        subprocess.run([gen, '--out', b, '--annotations-only', '--train', '300', '--val', '4', '--seed', '7',
                        '--no-progress'], check=True)
        lines = [check_split(a, 'train'), check_split(a, 'val'),
                 check_split(b, 'train', True), check_split(b, 'val', True)]
        with open(os.path.join(a, 'annotations', 'instances_train.json')) as f:
            json.load(f)
    for line in lines:
        print(line)
    if '--write-record' in sys.argv:
        import pycocotools
        with open(record, 'w') as f:
            f.write('# written by tests/unit/data/check_pycocotools.py --write-record (pycocotools %s)\n'
                    % getattr(pycocotools, '__version__', '?'))
            f.write('# crosskd-gen %s ; annotations-only: --train 300 --val 4 --seed 7\n' % ' '.join(GEN_ARGS))
            for line in lines:
                f.write(line + '\n')
    else:
        with open(record) as f:
            want = [l.strip() for l in f if not l.startswith('#')]
        if want != lines:
            print('summary differs from the record %s:\n%s\nvs\n%s' % (record, '\n'.join(lines), '\n'.join(want)))
            return 1
    print('pycocotools loads crosskd-gen output: ok')
    return 0


if __name__ == '__main__':
    sys.exit(main())
