#!/usr/bin/env python3
"""compare_random.py - many random cases through pycocotools and crosskd-eval --json.

    python3 tests/unit/eval/compare_random.py BUILD_DIR/tools/crosskd-eval [N] [SEED]

Generates N cases (default 200) with the generators of make_fixtures.py (smooth random
boxes and integer-grid boxes with exact IoU and area boundaries, crowds, score ties, more
than 100 detections per image and category), evaluates each with pycocotools and with
crosskd-eval, and prints the largest difference over the 12 stats and the per-category APs
(0 expected: the evaluator is bit-identical). Exit 1 on any difference. Development aid,
not run by CI (it needs pycocotools; the script installs it like make_fixtures.py does).
"""
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402


def main():
    mf.ensure_pycocotools()
    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    prog = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    rng = random.Random(seed)
    worst, bad = 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dt_path = os.path.join(tmp, 'gt.json'), os.path.join(tmp, 'dt.json')
        for c in range(n):
            s = rng.randrange(1 << 30)
            kind = c % 3
            if kind == 0:
                gt, dets = mf.random_case(s, n_img=rng.randint(1, 12), n_cat=rng.randint(1, 6),
                                          gt_per_img=rng.randint(0, 20), crowd_p=rng.random() * 0.3,
                                          fp_per_img=rng.randint(0, 30), score_digits=rng.randint(1, 4),
                                          empty_imgs=rng.randint(0, 2))
            elif kind == 1:
                gt, dets = mf.grid_case(s, n_img=rng.randint(1, 10), n_cat=rng.randint(1, 4),
                                        gt_per_img=rng.randint(0, 15), dt_per_gt=rng.randint(1, 6),
                                        crowd_p=rng.random() * 0.4)
            else:   # many detections in few pairs: the 100 cap and its ties
                gt, dets = mf.grid_case(s, n_img=2, n_cat=1, gt_per_img=40, dt_per_gt=6)
            if not dets:
                continue
            with open(gt_path, 'w') as f:
                json.dump(gt, f)
            with open(dt_path, 'w') as f:
                json.dump(dets, f)
            with contextlib.redirect_stdout(io.StringIO()):
                cg = COCO(gt_path)
                ev = COCOeval(cg, cg.loadRes(dt_path), 'bbox')
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            want = [float(v) for v in ev.stats]
            for k, cid in enumerate(ev.params.catIds):
                p = ev.eval['precision'][:, :, k, 0, -1]
                p = p[p > -1]
                want.append(float(np.mean(p)) if p.size else -1.0)
            out = subprocess.run([prog, '--json', gt_path, dt_path], capture_output=True, text=True)
            if out.returncode != 0:
                print('case %d (seed %d): exit %d: %s' % (c, s, out.returncode, out.stderr))
                bad += 1
                continue
            js = json.loads(out.stdout)
            got = js['stats'] + [js['per_category'][str(cid)] for cid in ev.params.catIds]
            diff = max(abs(a - b) for a, b in zip(got, want))
            worst = max(worst, diff)
            if diff != 0:
                bad += 1
                print('case %d (kind %d, seed %d): max difference %g' % (c, kind, s, diff))
    print('%d cases, %d differing, largest difference %g' % (n, bad, worst))
    sys.exit(1 if bad else 0)


if __name__ == '__main__':
    main()
