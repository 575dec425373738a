#!/usr/bin/env python3
"""make_fixtures.py - ground-truth / results pairs scored by pycocotools, for the C evaluator.

Writes into tests/fixtures/eval/ (relative to the repository root):
  <case>.gt.json, <case>.dt.json   one COCO instances file and one results list per case
  expected.txt                     what pycocotools computes, all doubles as float.hex():
      iou_thrs <10 hex>            Params().iouThrs
      rec_thrs <101 hex>           Params().recThrs
      mean <n> <hex>               np.mean of the vector x_i = ((i*7919) % 1013) / 1013, i < n
      case <name>                  then, for that case:
      stats <12 hex>               COCOeval.stats after evaluate/accumulate/summarize
      cat <id> <hex>               mean of precision[:, :, k, 0, -1] over entries > -1 (-1 if none)
      print <line>                 the 12 lines summarize() printed, verbatim
      end
  bad_*.json                       malformed or mismatched inputs for the error tests
    (pycocotools' reaction, if it has one, is recorded as "error <case> <exception type>")

Run from anywhere: python3 tests/unit/eval/make_fixtures.py. It needs pycocotools; when the
running interpreter lacks it, the script creates a throw-away virtual environment, installs
pycocotools there with pip, and re-runs itself with it. CI never runs this script: the C tests
read the committed outputs. Inputs are drawn from Python's `random` with fixed seeds.
"""
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, '..', '..', 'fixtures', 'eval'))


def ensure_pycocotools():
    try:
        import numpy  # noqa: F401
        import pycocotools  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get('KD_FIXTURE_VENV'):
        sys.exit('pycocotools still missing inside the virtual environment')
    venv = os.path.join(tempfile.gettempdir(), 'crosskd-eval-fixture-venv')
    if not os.path.exists(os.path.join(venv, 'bin', 'python')):
        subprocess.check_call([sys.executable, '-m', 'venv', venv])
    py = os.path.join(venv, 'bin', 'python')
    subprocess.check_call([py, '-m', 'pip', 'install', '--quiet', 'pycocotools'])
    env = dict(os.environ, KD_FIXTURE_VENV='1')
    os.execve(py, [py, os.path.abspath(__file__)] + sys.argv[1:], env)


# ---- building blocks ---------------------------------------------------------------------

def gt_file(images, anns, cat_ids):
    """images: list of ids; anns: list of dicts without ids (ids are assigned 1..n)."""
    out_anns = []
    for n, a in enumerate(anns):
        a = dict(a)
        a.setdefault('id', n + 1)
        a.setdefault('iscrowd', 0)
        if 'area' not in a:
            a['area'] = a['bbox'][2] * a['bbox'][3]
        out_anns.append(a)
    return {
        'images': [{'id': i, 'width': 640, 'height': 480, 'file_name': '%012d.jpg' % i} for i in images],
        'annotations': out_anns,
        'categories': [{'id': c, 'name': 'c%d' % c, 'supercategory': 's'} for c in cat_ids],
    }


def G(img, cat, box, **kw):
    d = {'image_id': img, 'category_id': cat, 'bbox': list(box)}
    d.update(kw)
    return d


def D(img, cat, box, score):
    return {'image_id': img, 'category_id': cat, 'bbox': list(box), 'score': score}


def r1(x):
    return round(x, 1)


def random_case(seed, n_img, n_cat, gt_per_img, crowd_p=0.08, fp_per_img=6, score_digits=2,
                empty_imgs=1):
    rng = random.Random(seed)
    images = sorted(rng.sample(range(1, 100000), n_img))
    cats = sorted(rng.sample(range(1, 91), n_cat))
    anns, dets = [], []
    for idx, img in enumerate(images):
        if idx < empty_imgs:
            n_gt = 0
        else:
            n_gt = rng.randint(0, gt_per_img)
        for _ in range(n_gt):
            w = r1(2 ** rng.uniform(1.5, 8.5))
            h = r1(2 ** rng.uniform(1.5, 8.5))
            x, y = r1(rng.uniform(0, 640 - min(w, 600))), r1(rng.uniform(0, 480 - min(h, 440)))
            cat = rng.choice(cats)
            crowd = 1 if rng.random() < crowd_p else 0
            area = round(w * h * rng.uniform(0.4, 1.0), 2) if rng.random() < 0.8 else w * h
            anns.append(G(img, cat, (x, y, w, h), area=area, iscrowd=crowd))
            for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
                jit = rng.choice([0.02, 0.05, 0.1, 0.2, 0.4])
                dx, dy = rng.gauss(0, jit) * w, rng.gauss(0, jit) * h
                dw, dh = w * (1 + rng.gauss(0, jit)), h * (1 + rng.gauss(0, jit))
                dcat = cat if rng.random() < 0.85 else rng.choice(cats)
                dets.append(D(img, dcat, (r1(x + dx), r1(y + dy), r1(max(dw, 0.5)), r1(max(dh, 0.5))),
                              round(rng.random(), score_digits)))
        for _ in range(rng.randint(0, fp_per_img)):
            w, h = r1(2 ** rng.uniform(1.5, 8)), r1(2 ** rng.uniform(1.5, 8))
            dets.append(D(img, rng.choice(cats), (r1(rng.uniform(0, 600)), r1(rng.uniform(0, 440)), w, h),
                          round(rng.random() * 0.6, score_digits)))
    rng.shuffle(dets)
    return gt_file(images, anns, cats), dets


def grid_case(seed, n_img, n_cat, gt_per_img, dt_per_gt=3, crowd_p=0.1):
    """Integer boxes on a coarse grid with one-digit scores: exact IoU ties, IoUs exactly at
    thresholds (1/2, 3/4, 9/10 ...), areas exactly at 32^2 and 96^2, many equal scores."""
    rng = random.Random(seed)
    images = list(range(1, n_img + 1))
    cats = list(range(1, n_cat + 1))
    sizes = [4, 8, 16, 20, 32, 40, 64, 96, 100, 128]
    anns, dets = [], []
    for img in images:
        for _ in range(rng.randint(0, gt_per_img)):
            w, h = rng.choice(sizes), rng.choice(sizes)
            x, y = 4 * rng.randint(0, 100), 4 * rng.randint(0, 80)
            cat = rng.choice(cats)
            crowd = 1 if rng.random() < crowd_p else 0
            area = rng.choice([w * h, 1024, 9216, w * h // 2])
            anns.append(G(img, cat, (x, y, w, h), area=area, iscrowd=crowd))
            for _ in range(rng.randint(0, dt_per_gt)):
                dx, dy = rng.choice([0, 0, 1, 2, 4, -2]), rng.choice([0, 0, 1, 2, -4])
                dw, dh = w + rng.choice([0, 0, 2, -2, 4, w // 2]), h + rng.choice([0, 0, 2, -1, h])
                dets.append(D(img, cat if rng.random() < 0.9 else rng.choice(cats),
                              (x + dx, y + dy, max(dw, 1), max(dh, 1)), rng.randint(0, 10) / 10))
        for _ in range(rng.randint(0, 4)):
            dets.append(D(img, rng.choice(cats), (4 * rng.randint(0, 100), 4 * rng.randint(0, 80),
                                                  rng.choice(sizes), rng.choice(sizes)),
                          rng.randint(0, 10) / 10))
    rng.shuffle(dets)
    return gt_file(images, anns, cats), dets


# ---- adversarial cases -------------------------------------------------------------------

def case_crowd():
    anns = [
        G(1, 1, (0, 0, 100, 100), area=10000, iscrowd=1),
        G(1, 1, (10, 10, 30, 30), area=900),
        G(1, 1, (60, 60, 30, 30), area=900),
        G(2, 1, (0, 0, 200, 200), area=40000, iscrowd=1),   # crowd only: npig 0 here
        G(3, 2, (0, 0, 50, 50), area=2500, iscrowd=1),
        G(3, 2, (100, 100, 20, 20), area=400),
    ]
    dets = [
        D(1, 1, (10, 10, 30, 30), 0.9),      # regular match
        D(1, 1, (12, 12, 30, 30), 0.8),      # regular taken: goes to the crowd, ignored
        D(1, 1, (5, 5, 20, 20), 0.85),       # inside crowd only
        D(1, 1, (55, 55, 40, 40), 0.7),      # crowd IoU 0.5625 vs regular 0.5625
        D(1, 1, (61, 61, 29, 29), 0.95),     # regular and also inside the crowd
        D(1, 1, (150, 150, 10, 10), 0.6),    # false positive
        D(2, 1, (10, 10, 50, 50), 0.99),
        D(2, 1, (300, 300, 50, 50), 0.5),
        D(3, 2, (0, 0, 25, 25), 0.9),
        D(3, 2, (0, 0, 100, 100), 0.8),      # crowd IoU = 2500/10000 = 0.25
        D(3, 2, (100, 100, 20, 20), 0.7),
        D(3, 2, (40, 40, 20, 20), 0.75),     # crowd IoU = 100/400
    ]
    return gt_file([1, 2, 3], anns, [1, 2]), dets


def case_score_ties():
    anns = [G(i, 1 + (i % 2), (10 * i, 10, 40, 40)) for i in range(1, 7)]
    anns += [G(i, 1, (200, 200, 60, 60)) for i in (2, 4)]
    dets = []
    for i in range(1, 7):
        dets.append(D(i, 1 + (i % 2), (300, 300, 40, 40), 0.5))       # FP, tie
        dets.append(D(i, 1 + (i % 2), (10 * i, 10, 40, 40), 0.5))     # TP, tie, later in list
        dets.append(D(i, 1, (200, 200, 60, 60), 0.5))
        dets.append(D(i, 2, (10 * i + 2, 12, 40, 40), 0.25))
    dets.append(D(3, 1, (0, 0, 5, 5), 0.5))
    return gt_file(list(range(1, 7)), anns, [1, 2]), dets


def case_equal_iou():
    anns = [
        G(1, 1, (0, 0, 10, 10)), G(1, 1, (2, 0, 10, 10)),             # equal IoU for dt (1,0,10,10)
        G(2, 1, (0, 0, 10, 10), area=5000), G(2, 1, (2, 0, 10, 10)),   # first out of 'small'
        G(3, 1, (2, 0, 10, 10)), G(3, 1, (0, 0, 10, 10), iscrowd=1),
        G(4, 1, (0, 0, 10, 10)), G(4, 1, (0, 0, 10, 10)),             # identical GT
    ]
    dets = [D(i, 1, (1, 0, 10, 10), 0.9) for i in (1, 2, 3, 4)]
    dets += [D(i, 1, (1, 0, 10, 10), 0.8) for i in (1, 2, 3, 4)]
    dets += [D(i, 1, (0, 0, 10, 10), 0.7) for i in (1, 4)]
    return gt_file([1, 2, 3, 4], anns, [1]), dets


def case_empty_categories():
    anns = [G(1, 1, (0, 0, 20, 20)), G(2, 3, (10, 10, 50, 50)), G(2, 1, (100, 100, 10, 10))]
    dets = [D(1, 1, (0, 0, 20, 21), 0.9), D(1, 2, (0, 0, 20, 20), 0.8),   # cat 2: no GT -> -1
            D(2, 2, (5, 5, 5, 5), 0.3), D(2, 1, (100, 100, 10, 10), 0.2)]  # cat 3: GT, no dt -> 0
    return gt_file([1, 2], anns, [1, 2, 3, 4]), dets


def case_images_without_gt():
    anns = [G(1, 1, (0, 0, 30, 30)), G(2, 1, (50, 50, 100, 100))]
    dets = [D(i, 1, (0, 0, 30, 30), 0.1 * i) for i in range(1, 7)]
    dets += [D(2, 1, (50, 50, 100, 100), 0.05)]
    return gt_file(list(range(1, 7)) + [99], anns, [1]), dets


def case_over_100():
    rng = random.Random(7)
    anns = [G(1, 1, (10 * k, 10 * k, 20, 20)) for k in range(12)]
    anns += [G(2, 1, (5, 5, 40, 40)), G(2, 2, (100, 100, 40, 40))]
    dets = []
    for k in range(150):   # 150 in one pair; TPs spread over the ranks, ties around rank 100
        s = 0.3 if 95 <= k <= 110 else round(1 - k / 150, 3)
        box = (10 * (k % 12), 10 * (k % 12), 20, 20) if k % 9 == 0 else (r1(rng.uniform(0, 500)), 300, 15, 15)
        dets.append(D(1, 1, box, s))
    for c in (1, 2):
        for k in range(60):
            box = (5, 5, 40, 40) if (c == 1 and k == 59) else (100, 100, 40, 40) if (c == 2 and k == 0) \
                else (r1(rng.uniform(0, 500)), 200, 30, 30)
            dets.append(D(2, c, box, round(rng.random(), 2)))
    rng.shuffle(dets)
    return gt_file([1, 2], anns, [1, 2]), dets


def case_area_boundaries():
    anns = [
        G(1, 1, (0, 0, 32, 32), area=1024), G(1, 1, (100, 0, 96, 96), area=9216),
        G(1, 1, (300, 0, 10, 10), area=0), G(1, 1, (0, 200, 40, 40), area=1024.0000000000001),
        G(1, 1, (200, 200, 50, 50), area=9215.999999999998), G(1, 1, (400, 300, 90, 90), area=1e10),
        G(1, 1, (500, 0, 5, 5), area=-3),
        G(2, 1, (0, 0, 32, 32), area=1023),
    ]
    dets = [
        D(1, 1, (0, 0, 32, 32), 0.9), D(1, 1, (100, 0, 96, 96), 0.8), D(1, 1, (300, 0, 10, 10), 0.7),
        D(1, 1, (0, 200, 40, 40), 0.6), D(1, 1, (200, 200, 50, 50), 0.5), D(1, 1, (400, 300, 90, 90), 0.4),
        D(1, 1, (500, 0, 5, 5), 0.35),
        D(1, 1, (600, 400, 32, 32), 0.3),   # unmatched, w*h = 1024 exactly
        D(1, 1, (500, 380, 96, 96), 0.2),   # unmatched, w*h = 9216 exactly
        D(1, 1, (600, 0, 31.9, 32), 0.1),
        D(2, 1, (0, 0, 32, 32.5), 0.9), D(2, 1, (0, 100, 96, 96.1), 0.8),
    ]
    return gt_file([1, 2], anns, [1]), dets


def case_iou_boundaries():
    # GT (0,0,10,10) against dt (0,0,10,h): IoU = h/10 exactly, one image per value
    hs = [5, 5.5, 6, 6.5, 7, 7.5, 8, 8.5, 9, 9.5, 10, 4.999999999, 9.999999999]
    anns, dets = [], []
    for n, h in enumerate(hs):
        anns.append(G(n + 1, 1, (0, 0, 10, 10)))
        dets.append(D(n + 1, 1, (0, 0, 10, h), 0.9 - 0.01 * n))
        anns.append(G(n + 1, 2, (0, 0, 10, 10), iscrowd=1))   # crowd: IoU = inter / dt area
        dets.append(D(n + 1, 2, (0, 0, 10, 10 + 10 * (1 - h / 10)), 0.5))
        anns.append(G(n + 1, 2, (50, 50, 10, 10)))
    return gt_file(list(range(1, len(hs) + 1)), anns, [1, 2]), dets


def case_recall_boundaries():
    # 20 GT; 7 then 14 true positives: recall exactly 0.35 and 0.7, below numpy's thresholds
    anns = [G(1 + k // 5, 1, (20 * (k % 5), 0, 10, 10)) for k in range(20)]
    dets = [D(1 + k // 5, 1, (20 * (k % 5), 0, 10, 10), 1 - 0.01 * k) for k in range(7)]
    dets += [D(5, 1, (0, 300, 10, 10), 0.5)]
    anns += [G(6 + k // 5, 2, (20 * (k % 5), 0, 10, 10)) for k in range(20)]
    dets += [D(6 + k // 5, 2, (20 * (k % 5), 0, 10, 10), 1 - 0.01 * k) for k in range(14)]
    return gt_file(list(range(1, 10)), anns, [1, 2]), dets


def case_degenerate():
    anns = [G(1, 1, (0, 0, 0, 10), area=0), G(1, 1, (5, 5, 10, 10), id=0),   # GT id 0 never counts
            G(2, 1, (0, 0, -10, 10), area=100), G(2, 1, (20, 20, 10, 10), ignore=1),
            G(3, 1, (1e6, 1e6, 1e5, 1e5), area=1e10)]
    dets = [D(1, 1, (0, 0, 0, 10), 0.9), D(1, 1, (5, 5, 10, 10), 0.8), D(1, 1, (5, 5, -10, -10), 0.7),
            D(2, 1, (-10, 0, 10, 10), 0.6), D(2, 1, (20, 20, 10, 10), 0.5), D(2, 1, (0, 0, -5, 5), 0.45),
            D(3, 1, (1e6, 1e6, 1e5, 1e5), 1), D(3, 1, (1e6, 1e6, 1e5, 9e4), 0),
            D(3, 7, (1, 1, 1, 1), 0.99),      # unknown category: dropped by pycocotools
            D(1, 1, (5, 5, 10, 10), -0.5)]
    return gt_file([1, 2, 3], anns, [1]), dets


def case_single_det():
    return gt_file([1], [G(1, 1, (0, 0, 10, 10))], [1]), [D(1, 1, (0, 0, 10, 10), 0.5)]


def case_int_values():
    anns = [G(1, 1, [0, 0, 10, 10], area=100), G(1, 1, [20, 20, 30, 30], area=900)]
    dets = [D(1, 1, [0, 0, 10, 10], 1), D(1, 1, [20, 20, 30, 30], 0), D(1, 1, [21, 20, 30, 30], 1)]
    return gt_file([1], anns, [1]), dets


CASES = {
    'crowd': case_crowd,
    'score_ties': case_score_ties,
    'equal_iou': case_equal_iou,
    'empty_categories': case_empty_categories,
    'images_without_gt': case_images_without_gt,
    'over_100': case_over_100,
    'area_boundaries': case_area_boundaries,
    'iou_boundaries': case_iou_boundaries,
    'recall_boundaries': case_recall_boundaries,
    'degenerate': case_degenerate,
    'single_det': case_single_det,
    'int_values': case_int_values,
}
for s in range(8):
    CASES['random_%d' % s] = (lambda s=s: random_case(100 + s, n_img=4 + 2 * s, n_cat=2 + s % 4,
                                                       gt_per_img=3 + s, score_digits=1 + s % 3))
CASES['random_dense'] = lambda: random_case(999, n_img=6, n_cat=2, gt_per_img=25, fp_per_img=40,
                                            score_digits=2)
CASES['grid_0'] = lambda: grid_case(31, n_img=6, n_cat=2, gt_per_img=6)
CASES['grid_1'] = lambda: grid_case(32, n_img=5, n_cat=3, gt_per_img=10, dt_per_gt=5, crowd_p=0.25)
CASES['random_crowded'] = lambda: random_case(555, n_img=8, n_cat=3, gt_per_img=8, crowd_p=0.4)


def vec(n):
    return [((i * 7919) % 1013) / 1013 for i in range(n)]


def main():
    ensure_pycocotools()
    import numpy as np
    import pycocotools
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    os.makedirs(OUT, exist_ok=True)
    lines = ['# made by tests/unit/eval/make_fixtures.py with pycocotools %s, numpy %s'
             % (getattr(pycocotools, '__version__', '?'), np.__version__)]
    p = COCOeval(iouType='bbox').params
    lines.append('iou_thrs ' + ' '.join(float(v).hex() for v in p.iouThrs))
    lines.append('rec_thrs ' + ' '.join(float(v).hex() for v in p.recThrs))
    for n in (1, 5, 7, 8, 9, 16, 100, 127, 128, 129, 1010, 8080, 80800, 100001):
        lines.append('mean %d %s' % (n, float(np.mean(np.array(vec(n)))).hex()))

    for name, make in CASES.items():
        gt, dets = make()
        gt_path = os.path.join(OUT, name + '.gt.json')
        dt_path = os.path.join(OUT, name + '.dt.json')
        with open(gt_path, 'w') as f:
            json.dump(gt, f, separators=(',', ':'))
        with open(dt_path, 'w') as f:
            json.dump(dets, f, separators=(',', ':'))
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet):
            coco_gt = COCO(gt_path)
            coco_dt = coco_gt.loadRes(dt_path)
            ev = COCOeval(coco_gt, coco_dt, 'bbox')
            ev.evaluate()
            ev.accumulate()
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            ev.summarize()
        lines.append('case ' + name)
        lines.append('stats ' + ' '.join(float(v).hex() for v in ev.stats))
        prec = ev.eval['precision']
        for k, cid in enumerate(ev.params.catIds):
            s = prec[:, :, k, 0, -1]
            s = s[s > -1]
            ap = float(np.mean(s)) if s.size else -1.0
            lines.append('cat %d %s' % (cid, ap.hex()))
        for ln in printed.getvalue().splitlines():
            lines.append('print ' + ln)
        lines.append('end')

    # malformed or mismatched inputs (used by the command-line tests)
    base_gt = gt_file([1, 2], [G(1, 1, (0, 0, 10, 10)), G(2, 1, (5, 5, 10, 10))], [1])
    bad = {
        'bad_gt.json': base_gt,
        'bad_unknown_image.dt.json': [D(1, 1, (0, 0, 10, 10), 0.9), D(42, 1, (0, 0, 10, 10), 0.8)],
        'bad_empty.dt.json': [],
        'bad_not_array.dt.json': {'image_id': 1},
        'bad_missing_score.dt.json': [{'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 1, 1]}],
        'bad_short_bbox.dt.json': [{'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 1], 'score': 1}],
        'bad_gt_no_images.json': {'annotations': [], 'categories': []},
    }
    for fname, obj in bad.items():
        with open(os.path.join(OUT, fname), 'w') as f:
            json.dump(obj, f, separators=(',', ':'))
    with open(os.path.join(OUT, 'bad_nan_score.dt.json'), 'w') as f:
        f.write('[{"image_id":1,"category_id":1,"bbox":[0,0,10,10],"score":NaN}]')
    with open(os.path.join(OUT, 'bad_truncated.dt.json'), 'w') as f:
        f.write('[{"image_id":1,"category_id":1,"bbox":[0,0,10,')
    # what pycocotools does with them
    for name in ('bad_unknown_image', 'bad_empty', 'bad_nan_score'):
        quiet = io.StringIO()
        try:
            with contextlib.redirect_stdout(quiet):
                coco_gt = COCO(os.path.join(OUT, 'bad_gt.json'))
                coco_dt = coco_gt.loadRes(os.path.join(OUT, name + '.dt.json'))
                ev = COCOeval(coco_gt, coco_dt, 'bbox')
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            lines.append('error %s none' % name)
        except Exception as e:  # recorded, not fatal: these are the cases pycocotools rejects
            lines.append('error %s %s' % (name, type(e).__name__))

    with open(os.path.join(OUT, 'expected.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print('%d cases, %d bytes in %s' % (len(CASES), total, OUT))


if __name__ == '__main__':
    main()
