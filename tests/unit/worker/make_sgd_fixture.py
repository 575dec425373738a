"""Writes tests/fixtures/worker/sgd_torch.txt: torch.optim.SGD (momentum 0.9, weight decay
1e-4) on 7 parameters for 6 steps with per-step learning rates and gradients defined by
closed formulas that test_optim.c recomputes. Run with a Python that has torch:
    /usr/bin/python3 tests/unit/worker/make_sgd_fixture.py
"""
import math
import os

import torch

torch.set_default_dtype(torch.float32)
n, steps = 7, 6
w = torch.tensor([math.cos(0.7 * i) for i in range(n)], dtype=torch.float32, requires_grad=True)
opt = torch.optim.SGD([w], lr=0.01, momentum=0.9, weight_decay=1e-4)
out = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "worker", "sgd_torch.txt")
with open(out, "w") as f:
    f.write("# step lr then the 7 weights after the step, float32 printed with %.9g\n")
    for s in range(steps):
        lr = 0.01 * (0.001 + 0.999 * s / 5)
        for g in opt.param_groups:
            g["lr"] = lr
        w.grad = torch.tensor([math.sin(0.3 * i + s) for i in range(n)], dtype=torch.float32)
        opt.step()
        f.write("%d %.17g %s\n" % (s, lr, " ".join("%.9g" % v for v in w.detach().tolist())))
