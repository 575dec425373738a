#!/usr/bin/python3
"""make_fixtures.py -- writes tests/fixtures/kernels/kernels.safetensors: inputs and PyTorch's
outputs (and, for the differentiable operations, PyTorch autograd's gradients for a given
upstream gradient) for every CPU kernel, read by tests/unit/kernels/test_fixtures.c.

Run from the repository root with Debian's PyTorch (1.13, CPU):
    /usr/bin/python3 tests/unit/kernels/make_fixtures.py
Tensor names are "<case>.<role>"; the case's parameters (stride, groups, ...) are in the
file's __metadata__ as "<case>.<param>". Everything is float32 except max-pool indices
(int64). The safetensors file is written here with struct + json (no extra packages).
"""
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(20261123)
torch.set_num_threads(1)

tensors = {}  # insertion order = file order
meta = {"generator": "tests/unit/kernels/make_fixtures.py", "torch": torch.__version__}


def put(name, t):
    tensors[name] = t.detach().contiguous()


def rnd(*shape, lo=-1.0, hi=1.0):
    return torch.rand(*shape, dtype=torch.float32) * (hi - lo) + lo


def grads(out, inputs, name_prefix, names):
    g = rnd(*out.shape)
    put(name_prefix + ".dy", g)
    gs = torch.autograd.grad(out, inputs, g)
    for n, t in zip(names, gs):
        put(name_prefix + "." + n, t)


# ---- convolution: forward and the three gradients --------------------------------------
def conv_case(name, n, c, h, w, co, k, stride, pad, bias):
    x = rnd(n, c, h, w).requires_grad_()
    wt = (rnd(co, c, k, k) * 0.5).requires_grad_()
    b = (rnd(co) * 0.5).requires_grad_() if bias else None
    y = F.conv2d(x, wt, b, stride=stride, padding=pad)
    put(name + ".x", x)
    put(name + ".w", wt)
    if bias:
        put(name + ".b", b)
    put(name + ".y", y)
    ins = [x, wt] + ([b] if bias else [])
    grads(y, ins, name, ["dx", "dw", "db"][: len(ins)])
    meta[name + ".stride"] = str(stride)
    meta[name + ".pad"] = str(pad)


conv_case("conv_a", 2, 3, 9, 7, 4, 3, 2, 1, True)
conv_case("conv_b", 1, 5, 6, 6, 3, 1, 2, 0, False)
conv_case("conv_c", 1, 3, 15, 13, 2, 7, 2, 3, True)
conv_case("conv_d", 3, 8, 5, 6, 8, 3, 1, 1, True)

# ---- GEMM -----------------------------------------------------------------------------
a, b = rnd(5, 7), rnd(7, 3)
put("gemm.a", a)
put("gemm.b", b)
put("gemm.c", a @ b)
put("gemm.c_tn", a.t() @ a[:, :4])  # A^T (7x5) @ the first 4 columns of A (5x4, row stride 7)

# ---- GroupNorm (+ fused ReLU), BatchNorm in inference mode ----------------------------
x = rnd(2, 8, 5, 3, lo=-2, hi=3).requires_grad_()
gamma = rnd(8, lo=0.5, hi=1.5).requires_grad_()
beta = rnd(8, lo=-0.5, hi=0.5).requires_grad_()
y = F.group_norm(x, 4, gamma, beta, eps=1e-5)
put("gn.x", x)
put("gn.gamma", gamma)
put("gn.beta", beta)
put("gn.y", y)
put("gn.y_relu", F.relu(y))
grads(F.relu(y), [x, gamma, beta], "gn", ["dx_relu", "dgamma_relu", "dbeta_relu"])
meta["gn.groups"] = "4"
meta["gn.eps"] = "1e-5"

x = rnd(3, 4, 3, 5, lo=-2, hi=2).requires_grad_()
rm, rv = rnd(4, lo=-0.5, hi=0.5), rnd(4, lo=0.2, hi=2.0)
gamma = rnd(4, lo=-1.5, hi=1.5).requires_grad_()
beta = rnd(4, lo=-0.5, hi=0.5).requires_grad_()
y = F.batch_norm(x, rm, rv, gamma, beta, training=False, eps=1e-5)
for n_, t in [("x", x), ("rmean", rm), ("rvar", rv), ("gamma", gamma), ("beta", beta), ("y", y),
              ("y_relu", F.relu(y))]:
    put("bn." + n_, t)
grads(F.relu(y), [x, gamma, beta], "bn", ["dx_relu", "dgamma_relu", "dbeta_relu"])
meta["bn.eps"] = "1e-5"

# ---- activations, Scale, softmax ------------------------------------------------------
x = rnd(3, 4, 5, 6, lo=-3, hi=3)
put("relu.x", x)
put("relu.y", F.relu(x))
x = torch.cat([rnd(50, lo=-10, hi=10), torch.tensor([-1e4, -100.0, -88.0, 0.0, 88.0, 100.0, 1e4])])
x.requires_grad_()
y = torch.sigmoid(x)
put("sigmoid.x", x)
put("sigmoid.y", y)
grads(y, [x], "sigmoid", ["dx"])
x = rnd(2, 5, 3, 4).requires_grad_()
s = torch.tensor([1.37]).requires_grad_()
put("scale.x", x)
put("scale.s", s)
put("scale.y", s * x)
grads(s * x, [x, s], "scale", ["dx", "ds"])
x = rnd(6, 17, lo=-4, hi=4)
x[2] += 5000.0  # a row of huge logits
x[4, 3] = -float("inf")
x.requires_grad_()
put("softmax.x", x)
put("softmax.y", torch.softmax(x, dim=-1))
put("softmax.logy", torch.log_softmax(x, dim=-1))
grads(torch.softmax(x, dim=-1), [x], "softmax", ["dx"])
g = rnd(6, 17)
put("softmax.logdy", g)
put("softmax.logdx", torch.autograd.grad(torch.log_softmax(x, dim=-1), [x], g)[0])

# ---- max-pool 3x3 s2 p1 and the FPN upsample-add -------------------------------------
x = rnd(2, 3, 9, 7).requires_grad_()
y, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
put("maxpool.x", x)
put("maxpool.y", y)
put("maxpool.idx", idx)
grads(y, [x], "maxpool", ["dx"])
for name, (n, c, h, w), (oh, ow) in [("upadd_2x", (2, 3, 4, 5), (8, 10)),
                                     ("upadd_odd", (1, 2, 3, 5), (7, 11)),
                                     ("upadd_fpn", (1, 2, 13, 21), (25, 42))]:
    top, lat = rnd(n, c, h, w).requires_grad_(), rnd(n, c, oh, ow)
    y = lat + F.interpolate(top, size=(oh, ow), mode="nearest")
    put(name + ".top", top)
    put(name + ".lat", lat)
    put(name + ".y", y)
    grads(y, [top], name, ["dtop"])


# ---- CrossKD align_scale (the released code, crosskd_gfl.py) ---------------------------
def align_scale(stu_feat, tea_feat):
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


S = torch.relu(rnd(2, 6, 5, 4, lo=-0.5, hi=2)).requires_grad_()
T = torch.relu(rnd(2, 6, 5, 4, lo=-1, hi=3))
A = align_scale(S, T)
put("align.s", S)
put("align.t", T)
put("align.t_mean", T.permute(1, 0, 2, 3).reshape(6, -1).mean(-1))
put("align.t_std", T.permute(1, 0, 2, 3).reshape(6, -1).std(-1))
put("align.y", A)
grads(A, [S], "align", ["dx"])


# ---- write ----------------------------------------------------------------------------
def write_safetensors(path, tensors, meta):
    dtypes = {torch.float32: ("F32", 4), torch.int64: ("I64", 8)}
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, t in tensors.items():
        code, size = dtypes[t.dtype]
        raw = t.numpy().tobytes()
        assert len(raw) == t.numel() * size
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


assert sys.byteorder == "little"
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
out = os.path.join(root, "tests", "fixtures", "kernels", "kernels.safetensors")
write_safetensors(out, tensors, meta)
print("wrote %s: %d tensors, %d bytes" % (os.path.relpath(out), len(tensors), os.path.getsize(out)))
