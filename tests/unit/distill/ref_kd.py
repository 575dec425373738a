"""ref_kd.py — the PyTorch reference of crosskd's distillation (crosskd.md §4, §5.2;
kd-methods.md §6), built on tests/unit/model/ref_gfl.py (imported as a module, unchanged):

  align(s, t)          align_scale: student held feature standardised with its own per-channel
                       mean / unbiased std over (N, H, W) (differentiable) and rescaled to the
                       teacher's (constants), eps 1e-6 on the std
  cross_head(...)      per level and tower: align, ReLU when idx > 0, the teacher's blocks
                       idx.. and prediction conv (+ teacher Scale) — ref_gfl.tower(first=idx)
  valid_masks(...)     MMDetection's valid flags per level (N, H, W) for each image's pad shape
  kd_qfl(x, t, beta)   BCE(x, sigmoid(t)) * |sigmoid(x) - sigmoid(t)|^beta (factor not detached)
  kd_losses(...)       loss_cls_kd = w * sum valid KD-QFL / (P + eps);
                       loss_reg_kd = w * sum_a r_a sum_sides T^2 KL(softmax(Tr/T) || softmax(Xr/T))
                                     / (4 + eps) / R,  r_a = sigmoid(max_c Tc) on valid anchors,
                                     R = sum r_a (local)
  pkd_loss(fs, ft, w)   PKD per level: w * mean((norm(Fs) - norm(Ft))^2) / 2, norm = per-channel
                       standardisation over (N, H, W) with the unbiased std + 1e-6
  bckd_losses(...)     BCKD: KD-QFL (beta 1) on the student's logits over valid anchors, and
                       v_a * (1 - GIoU(b_S, b_T)) over valid anchors, v_a = max_c |sigma(t) -
                       sigma(x)| (detached), boxes decoded from the distributions at the anchor
                       centres (stride units); both / (max(P, 1) + eps); levels without a
                       positive anchor contribute nothing (BCKD's code)
Gradients come from autograd: the teacher's tensors never require grad, so the KD gradient
reaches the student only through the cross-head inputs (or, for prediction mimicking, its
own outputs).
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'model'))
import ref_gfl as R  # noqa: E402

EPS32 = R.EPS32


def align(s, t):
    dims = (0, 2, 3)
    ms, ss = s.mean(dims, keepdim=True), s.std(dims, keepdim=True)
    mt, st = t.mean(dims, keepdim=True), t.std(dims, keepdim=True)
    return (s - ms) / (ss + 1e-6) * st + mt


def cross_head(tp, tcfg, sheld, theld, idx):
    """Cross-head predictions [(Xc_l, Xr_l)] from the held features [(cls, reg)] per level."""
    out = []
    for l, (sh, th) in enumerate(zip(sheld, theld)):
        pair = []
        for ti, t in enumerate(('cls', 'reg')):
            a = align(sh[ti], th[ti])
            if idx != 0:
                a = torch.relu(a)
            pair.append(R.tower(tp, tcfg, t, a, l, first=idx))
        out.append(tuple(pair))
    return out


def valid_masks(cfg, sizes, img_shapes, dtype):
    div, masks = cfg['pad_div'], []
    for (h, w), s in zip(sizes, cfg['strides']):
        m = torch.zeros(len(img_shapes), h, w, dtype=dtype)
        for i, (ih, iw) in enumerate(img_shapes):
            ph, pw = math.ceil(ih / div) * div, math.ceil(iw / div) * div
            m[i, :min(math.ceil(ph / s), h), :min(math.ceil(pw / s), w)] = 1
        masks.append(m)
    return masks


def kd_qfl(x, t, beta):
    tt = t.sigmoid()
    return F.binary_cross_entropy_with_logits(x, tt, reduction='none') * (x.sigmoid() - tt).abs().pow(beta)


def kd_losses(cfg, X, T, masks, P, w_cls=1.0, beta=1.0, w_reg=4.0, temp=1.0):
    """X, T: [(cls, reg)] per level (source predictions, teacher predictions)."""
    R1 = cfg['reg_max'] + 1
    cls_kd = 0
    rs = [torch.sigmoid(tc.max(1)[0]) * m for (tc, _), m in zip(T, masks)]
    Rsum = float(sum(r.sum() for r in rs))
    reg_kd = 0
    for (xc, xr), (tc, tr), m, r in zip(X, T, masks, rs):
        cls_kd = cls_kd + (kd_qfl(xc, tc, beta).sum(1) * m).sum()
        N, _, H, W = xr.shape
        p = F.softmax(tr.view(N, 4, R1, H, W) / temp, 2)
        lq = F.log_softmax(xr.view(N, 4, R1, H, W) / temp, 2)
        kl = (torch.xlogy(p, p) - p * lq).sum(2) * temp * temp      # (N, 4, H, W)
        reg_kd = reg_kd + (kl.sum(1) * r).sum()
    cls_kd = w_cls * cls_kd / (P + EPS32)
    reg_kd = w_reg * reg_kd / (4.0 + EPS32) / Rsum if Rsum > 0 else reg_kd * 0
    return cls_kd, reg_kd


def pkd_norm(f):
    dims = (0, 2, 3)
    return (f - f.mean(dims, keepdim=True)) / (f.std(dims, keepdim=True) + 1e-6)


def pkd_loss(fs, ft, w):
    return w * sum(((pkd_norm(a) - pkd_norm(b)) ** 2).mean() / 2 for a, b in zip(fs, ft))


def decode(reg, R1):
    N, _, H, W = reg.shape
    d = (F.softmax(reg.view(N, 4, R1, H, W), 2) * torch.arange(R1, dtype=reg.dtype).view(1, 1, R1, 1, 1)).sum(2)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=reg.dtype), torch.arange(W, dtype=reg.dtype), indexing='ij')
    b = torch.stack([xs - d[:, 0], ys - d[:, 1], xs + d[:, 2], ys + d[:, 3]], 1)   # (N, 4, H, W)
    return b.permute(0, 2, 3, 1).reshape(-1, 4)


def bckd_losses(cfg, S, T, masks, level_has_pos, P, w_cls=1.0, w_loc=4.0):
    R1 = cfg['reg_max'] + 1
    ns = max(P, 1.0)
    cls, loc = 0, 0
    for (xc, xr), (tc, tr), m, hp in zip(S, T, masks, level_has_pos):
        if not hp:
            continue
        cls = cls + (kd_qfl(xc, tc, 1.0).sum(1) * m).sum()
        v = ((tc.sigmoid() - xc.sigmoid()).abs().max(1)[0] * m).detach().reshape(-1)
        g = R.aligned_overlaps(decode(xr, R1), decode(tr, R1).detach(), 'giou')
        loc = loc + (v * (1 - g)).sum()
    return w_cls * cls / (ns + EPS32), w_loc * loc / (ns + EPS32)
