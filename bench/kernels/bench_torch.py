#!/usr/bin/python3
"""bench_torch.py -- PyTorch's side of bench/kernels/bench_kernels.c: the same operations on
the same shapes, on the CPU with the same thread count.

Standalone it prints one line per measurement, "<key> <best milliseconds>", the best of
--reps runs after a warm-up:
    /usr/bin/python3 bench/kernels/bench_torch.py --threads 2 --reps 5
With --serve (how bench_kernels runs it) it sets every case up and warms it, prints
"ready", then for each key read from stdin runs that operation once and prints
"<key> <milliseconds>", so the C program can alternate single runs of both sides.
"""
import argparse
import sys
import time

import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--quick", action="store_true", help="small shapes (smoke test)")
ap.add_argument("--serve", action="store_true", help="run single operations named on stdin")
args = ap.parse_args()
if args.threads > 0:
    torch.set_num_threads(args.threads)
torch.manual_seed(0)


CASES = {}


def best_ms(fn, reps):
    if args.serve:
        return None
    fn()  # warm-up: primitive creation, allocations
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def report(key, fn):
    if not args.serve:
        print(key, "%.3f" % best_ms(fn, args.reps), flush=True)


def conv_case(key, n, c, h, w, co, k, stride, pad):
    x = torch.randn(n, c, h, w)
    wt = torch.randn(co, c, k, k) * 0.01
    xg = x.clone().requires_grad_()
    wg = wt.clone().requires_grad_()
    y = F.conv2d(x, wt, None, stride, pad)
    g = torch.randn_like(y)

    def fwd():
        with torch.no_grad():
            F.conv2d(x, wt, None, stride, pad)

    def fwd_bwd():
        xg.grad = None
        wg.grad = None
        F.conv2d(xg, wg, None, stride, pad).backward(g)

    CASES[key + "_fwd"], CASES[key + "_fb"] = fwd, fwd_bwd
    report(key + "_fwd", fwd)
    report(key + "_fb", fwd_bwd)


def gn_relu(n, c, h, w, groups):
    x = torch.randn(n, c, h, w)
    gamma, beta = torch.rand(c) + 0.5, torch.randn(c) * 0.1
    xg, gg, bg = x.clone().requires_grad_(), gamma.clone().requires_grad_(), beta.clone().requires_grad_()
    g = torch.randn_like(x)

    def fwd():
        with torch.no_grad():
            F.relu(F.group_norm(x, groups, gamma, beta, 1e-5), inplace=True)

    def fwd_bwd():
        xg.grad = gg.grad = bg.grad = None
        F.relu(F.group_norm(xg, groups, gg, bg, 1e-5), inplace=True).backward(g)

    CASES["gn_relu_fwd"], CASES["gn_relu_fb"] = fwd, fwd_bwd
    report("gn_relu_fwd", fwd)
    report("gn_relu_fb", fwd_bwd)


def align_scale(stu_feat, tea_feat):  # CrossKD's released code (crosskd_gfl.py)
    N, C, H, W = stu_feat.size()
    stu = stu_feat.permute(1, 0, 2, 3).reshape(C, -1)
    stu_mean = stu.mean(dim=-1, keepdim=True)
    stu_std = stu.std(dim=-1, keepdim=True)
    stu = (stu - stu_mean) / (stu_std + 1e-6)
    tea = tea_feat.permute(1, 0, 2, 3).reshape(C, -1)
    tea_mean = tea.mean(dim=-1, keepdim=True)
    tea_std = tea.std(dim=-1, keepdim=True)
    stu = stu * tea_std + tea_mean
    return stu.reshape(C, N, H, W).permute(1, 0, 2, 3)


def align(n, c, h, w):
    s, t = torch.relu(torch.randn(n, c, h, w)), torch.relu(torch.randn(n, c, h, w))
    sg = s.clone().requires_grad_()
    g = torch.randn_like(s)

    def fwd():
        with torch.no_grad():
            align_scale(s, t)

    def fwd_bwd():
        sg.grad = None
        align_scale(sg, t).backward(g)

    CASES["align_fwd"], CASES["align_fb"] = fwd, fwd_bwd
    report("align_fwd", fwd)
    report("align_fb", fwd_bwd)


def maxpool(n, c, h, w):
    x = torch.randn(n, c, h, w)
    xg = x.clone().requires_grad_()
    g = torch.randn_like(F.max_pool2d(x, 3, 2, 1))

    def fwd():
        with torch.no_grad():
            F.max_pool2d(x, 3, 2, 1)

    def fwd_bwd():
        xg.grad = None
        F.max_pool2d(xg, 3, 2, 1).backward(g)

    CASES["maxpool_fwd"], CASES["maxpool_fb"] = fwd, fwd_bwd
    report("maxpool_fwd", fwd)
    report("maxpool_fb", fwd_bwd)


def upadd(n, c, h, w):
    top, lat = torch.randn(n, c, h, w), torch.randn(n, c, 2 * h, 2 * w)

    def fwd():  # MMDetection's FPN: laterals[i - 1] += F.interpolate(laterals[i], size=...)
        with torch.no_grad():
            lat.add_(F.interpolate(top, size=(2 * h, 2 * w), mode="nearest"))

    CASES["upadd_fwd"] = fwd
    report("upadd_fwd", fwd)


def softmax17(rows):
    x = torch.randn(rows, 17)
    xg = x.clone().requires_grad_()
    g = torch.randn_like(x)

    def fwd():
        with torch.no_grad():
            torch.softmax(x, dim=-1)

    def fwd_bwd():
        xg.grad = None
        torch.softmax(xg, dim=-1).backward(g)

    CASES["softmax_fwd"], CASES["softmax_fb"] = fwd, fwd_bwd
    report("softmax_fwd", fwd)
    report("softmax_fb", fwd_bwd)


if args.quick:
    conv_case("conv_head", 1, 32, 20, 24, 32, 3, 1, 1)
    conv_case("conv_res", 1, 16, 24, 20, 16, 3, 1, 1)
    conv_case("conv_res1x1", 1, 32, 24, 20, 16, 1, 1, 0)
    gn_relu(1, 32, 20, 24, 8)
    align(1, 32, 20, 24)
    maxpool(1, 8, 20, 24)
    upadd(1, 16, 10, 12)
    softmax17(1000)
else:
    conv_case("conv_head", 2, 256, 100, 152, 256, 3, 1, 1)
    conv_case("conv_res", 2, 128, 100, 168, 128, 3, 1, 1)
    conv_case("conv_res1x1", 2, 256, 200, 336, 64, 1, 1, 0)
    gn_relu(2, 256, 100, 152, 32)
    align(2, 256, 100, 152)
    maxpool(2, 64, 400, 672)
    upadd(2, 256, 50, 84)
    softmax17(2 * 100 * 152 * 4)

if args.serve:
    for fn in CASES.values():
        fn()  # warm-up
    print("ready", flush=True)
    for line in sys.stdin:
        key = line.strip()
        if key not in CASES:
            print(key, "nan", flush=True)
            continue
        t0 = time.perf_counter()
        CASES[key]()
        print(key, "%.3f" % ((time.perf_counter() - t0) * 1e3), flush=True)
