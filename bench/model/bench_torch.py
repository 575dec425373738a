"""bench_torch.py — the PyTorch side of bench/model: training steps (forward, GFL losses,
backward, SGD momentum 0.9 weight decay 1e-4) of tests/unit/model/ref_gfl.py in float32 on the
same synthetic batch shape, best of several timed runs. Prints one line of key=value.

  /usr/bin/python3 bench/model/bench_torch.py DEPTH BASE FROZEN FPN STACKED FEAT GROUPS K N H W STEPS REPEATS THREADS
"""
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'tests', 'unit', 'model'))
import ref_gfl as R  # noqa: E402


def rss_mb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 1e6


def main():
    a = [int(v) for v in sys.argv[1:]]
    depth, base, frozen, fpn, stacked, feat, groups, K, N, H, W, steps, repeats, threads = a
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = dict(depth=depth, base=base, frozen_stages=frozen, fpn_out=fpn, start_level=1, num_outs=5,
               num_classes=K, stacked=stacked, feat=feat, gn_groups=groups, reg_max=16,
               strides=[8, 16, 32, 64, 128], octave=8, topk=9, pad_div=32, beta=2.0,
               w_cls=1.0, w_bbox=2.0, w_dfl=0.25)
    base_rss = rss_mb()
    p, train = {}, []
    for k, (shape, tr) in R.param_shapes(cfg).items():
        if k.endswith('num_batches_tracked'):
            continue
        if k.endswith('running_var') or k.endswith('.scale') or (k.endswith('.weight') and len(shape) == 1):
            t = torch.ones(shape)
        elif k.endswith('integral.project'):
            t = torch.arange(shape[0], dtype=torch.float32)
        elif len(shape) == 4:
            t = torch.randn(shape) * (2.0 / (shape[1] * shape[2] * shape[3])) ** 0.5
        else:
            t = torch.zeros(shape)
        if k == 'bbox_head.gfl_cls.bias':
            t.fill_(-4.59512)
        p[k] = t.requires_grad_(tr)
        if tr:
            train.append(p[k])
    opt = torch.optim.SGD(train, lr=0.001, momentum=0.9, weight_decay=1e-4)
    img = torch.randn(N, 3, H, W)
    gts = []
    for i in range(N):
        b = torch.tensor([[0.1 * W, 0.1 * H, 0.5 * W, 0.6 * H], [0.4 * W, 0.3 * H, 0.9 * W, 0.8 * H],
                          [0.2 * W, 0.5 * H, 0.45 * W, 0.95 * H]], dtype=torch.float32)
        gts.append((b, torch.tensor([0, 1 % K, 2 % K], dtype=torch.int32)))

    def step():
        opt.zero_grad(set_to_none=False)
        cls, reg, _ = R.forward(p, cfg, img)
        losses, _ = R.gfl_loss(cfg, cls, reg, [(H, W)] * N, gts)
        losses['loss'].backward()
        opt.step()
        return float(losses['loss'])

    step()
    step()
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        dt = time.perf_counter() - t0
        best = max(best, N * steps / dt)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    print('images_per_s=%.4f peak_rss_mb=%.1f base_rss_mb=%.1f' % (best, peak, base_rss))


if __name__ == '__main__':
    main()
