#!/usr/bin/env python3
"""run_bench.py - crosskd-eval against pycocotools on a val2017-sized pair, same run, one core.

    python3 bench/eval/run_bench.py BUILD_DIR [--data DIR] [--c-repeats N] [--py-repeats N]

1. Makes DIR/gt.json and DIR/results.json with make_val2017_like.py unless present
   (DIR defaults to a folder under the system temporary directory).
2. Times, pinned to one core (taskset -c 0 when available; OMP/BLAS threads = 1):
   - crosskd-eval --json GT RESULTS, whole process (parse + evaluate + print), best of N;
   - bench_eval: parse and evaluation separately (best of N evaluations in one process);
   - pycocotools in a fresh interpreter: COCO(gt), loadRes, evaluate, accumulate,
     summarize, each phase timed; best of N runs per phase and for the total.
3. Checks that the 12 stats agree bit for bit, and prints a Markdown table for
   bench/README.md. Needs pycocotools (installed into a throw-away venv if missing, like
   tests/unit/eval/make_fixtures.py does).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'tests', 'unit', 'eval'))
import make_fixtures as mf  # noqa: E402  (ensure_pycocotools)

PY_SNIPPET = r'''
import json, sys, time, io, contextlib
t0 = time.perf_counter()
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
t_imp = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1]); t1 = time.perf_counter()
    dt = gt.loadRes(sys.argv[2]); t2 = time.perf_counter()
    ev = COCOeval(gt, dt, 'bbox'); ev.evaluate(); t3 = time.perf_counter()
    ev.accumulate(); t4 = time.perf_counter()
    ev.summarize(); t5 = time.perf_counter()
print(json.dumps({'load_gt': t1 - t_imp, 'load_res': t2 - t1, 'evaluate': t3 - t2,
                  'accumulate': t4 - t3, 'summarize': t5 - t4, 'total': t5 - t_imp,
                  'stats': [float(v).hex() for v in ev.stats]}))
'''


def pinned(cmd):
    if shutil.which('taskset'):
        return ['taskset', '-c', '0'] + cmd
    return cmd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('build_dir')
    ap.add_argument('--data', default=os.path.join(tempfile.gettempdir(), 'crosskd-eval-bench'))
    ap.add_argument('--c-repeats', type=int, default=7)
    ap.add_argument('--py-repeats', type=int, default=3)
    args = ap.parse_args()
    mf.ensure_pycocotools()
    env = dict(os.environ, OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1', MKL_NUM_THREADS='1')
    gt, res = os.path.join(args.data, 'gt.json'), os.path.join(args.data, 'results.json')
    if not (os.path.exists(gt) and os.path.exists(res)):
        subprocess.check_call([sys.executable, os.path.join(HERE, 'make_val2017_like.py'), args.data])
    prog = os.path.join(args.build_dir, 'tools', 'crosskd-eval')
    bench = os.path.join(args.build_dir, 'bench', 'eval', 'bench_eval')

    c_total = []
    for _ in range(args.c_repeats):
        t = time.perf_counter()
        out = subprocess.run(pinned([prog, '--json', gt, res]), capture_output=True, text=True, env=env)
        c_total.append(time.perf_counter() - t)
        if out.returncode:
            sys.exit('crosskd-eval failed: ' + out.stderr)
    c_stats = json.loads(out.stdout)['stats']
    out = subprocess.run(pinned([bench, gt, res, str(args.c_repeats)]), capture_output=True, text=True,
                         env=env, check=True)
    split = dict(kv.split('=') for kv in out.stdout.split('\n')[0].split())

    py = []
    for _ in range(args.py_repeats):
        out = subprocess.run(pinned([sys.executable, '-c', PY_SNIPPET, gt, res]), capture_output=True,
                             text=True, env=env)
        if out.returncode:
            sys.exit('pycocotools failed: ' + out.stderr)
        py.append(json.loads(out.stdout))
    best = {k: min(r[k] for r in py) for k in ('load_gt', 'load_res', 'evaluate', 'accumulate',
                                                'summarize', 'total')}
    same = all(float.fromhex(h) == v for h, v in zip(py[0]['stats'], c_stats))

    c_best = min(c_total)
    c_eval = float(split['eval_best_s'])
    py_eval = best['evaluate'] + best['accumulate'] + best['summarize']
    print('data: %s images, %s GT boxes, %s detections' % (split['images'], split['gt'], split['dets']))
    print('stats identical to pycocotools (bitwise): %s' % same)
    print()
    print('| phase (one core, best of runs) | pycocotools | crosskd | ratio |')
    print('| --- | --- | --- | --- |')
    print('| load GT + results | %.2f s | %.3f s | %.0fx |' % (
        best['load_gt'] + best['load_res'], float(split['load_gt_s']) + float(split['load_dt_s']),
        (best['load_gt'] + best['load_res']) / (float(split['load_gt_s']) + float(split['load_dt_s']))))
    print('| evaluate + accumulate + summarize | %.2f s | %.3f s | %.0fx |' % (py_eval, c_eval, py_eval / c_eval))
    print('| whole run, files to the 12 numbers | %.2f s | %.3f s | %.0fx |' % (
        best['total'], c_best, best['total'] / c_best))
    print()
    print('pycocotools phases (best): ' + ', '.join('%s %.2f s' % (k, v) for k, v in best.items()))
    print('crosskd-eval whole-process runs: ' + ', '.join('%.3f' % t for t in sorted(c_total)))
    print('pycocotools totals: ' + ', '.join('%.2f' % r['total'] for r in py))
    sys.exit(0 if same else 1)


if __name__ == '__main__':
    main()
