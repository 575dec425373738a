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
  ld_losses(...)       LD: main LD (positives, weight max_c sigma(student), T^2 mean-bin KL / 4),
                       VLR LD (IoU weight on the 0.25 thr <= DIoU < thr band, / 16), main KD
                       (positives, T 2 mean-class KL / the level's positive count)
  rm_pfi_losses(...)   Rank Mimicking (KL between softmaxes of the GT-class probabilities over
                       each GT's ATSS positives, / GTs per image, mean over images with GTs) and
                       PFI (mean over positions of detached P_dif * F_dif, mean over levels)
  gfl_mimic_atss_kd_losses(...)  a GFL student mimicking an ATSS teacher (Table 7's "KD"):
                       KD-QFL, and GIoU box KD between the student's integral-decoded boxes and
                       the teacher's delta-decoded ones, both / (P + eps); no centerness KD
  conflict_counts(...) paper Fig. 3: valid anchors where some class has |sigma(t) - y| > thr
                       (y the one-hot of the student's label), and the positive anchors; per
                       location when teacher and student have different anchors per location
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


def kl_mean(x, t, T):
    p = F.softmax(t / T, -1)
    return (torch.xlogy(p, p) - p * F.log_softmax(x / T, -1)).mean(-1) * T * T


def _iou_diou(a, b):
    a, b = a.double(), b.double()
    iw = (torch.min(a[:, 2], b[2]) - torch.max(a[:, 0], b[0])).clamp(min=0)
    ih = (torch.min(a[:, 3], b[3]) - torch.max(a[:, 1], b[1])).clamp(min=0)
    ov = iw * ih
    un = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[2] - b[0]) * (b[3] - b[1]) - ov).clamp(min=1e-6)
    iou = ov / un
    dx = (a[:, 0] + a[:, 2]) / 2 - (b[0] + b[2]) / 2
    dy = (a[:, 1] + a[:, 3]) / 2 - (b[1] + b[3]) / 2
    cw = torch.max(a[:, 2], b[2]) - torch.min(a[:, 0], b[0])
    ch = torch.max(a[:, 3], b[3]) - torch.min(a[:, 1], b[1])
    return iou, iou - (dx * dx + dy * dy) / (cw * cw + ch * ch + 1e-6)


def vlr_weights(cfg, anchors, valid, counts, gt):
    """LD's valuable localisation region weight per anchor of one image."""
    A = anchors.shape[0]
    vlr = torch.zeros(A, dtype=torch.float64)
    lvl = torch.cat([torch.full((n,), l, dtype=torch.long) for l, n in enumerate(counts)])
    acx, acy = (anchors[:, 0] + anchors[:, 2]) / 2.0, (anchors[:, 1] + anchors[:, 3]) / 2.0
    for j in range(gt.shape[0]):
        b = gt[j]
        gcx, gcy = (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0
        d = ((acx.double() - float(gcx)) ** 2 + (acy.double() - float(gcy)) ** 2).sqrt()
        cand = []
        for l in range(len(counts)):
            ids = torch.nonzero((lvl == l) & valid).squeeze(1)
            order = torch.sort(d[ids], stable=True)[1]
            cand.append(ids[order[:min(cfg['topk'], ids.numel())]])
        cand = torch.cat(cand)
        iou_all, diou_all = _iou_diou(anchors, b)
        ci = iou_all[cand]
        thr = ci.mean() + ci.std()
        ok = valid & (diou_all >= 0.25 * thr) & (diou_all < thr) & (iou_all > vlr)
        vlr = torch.where(ok, iou_all, vlr)
    return vlr


def ld_losses(cfg, S, T, labels, img_shapes, gts, w_cls=10.0, w_reg=0.25, t_reg=10.0, t_cls=2.0):
    K, R1 = cfg['num_classes'], cfg['reg_max'] + 1
    sizes = [(c.shape[2], c.shape[3]) for c, _ in S]
    counts = [h * w for h, w in sizes]
    div = cfg['pad_div']
    vlrs = []
    for i, (h, w) in enumerate(img_shapes):
        pad = (int(math.ceil(h / div) * div), int(math.ceil(w / div) * div))
        anchors, valid = R.anchors_and_valid(cfg, sizes, pad)
        vlrs.append(vlr_weights(cfg, anchors, valid, counts, gts[i][0]))
    cls_kd, reg_kd, o = 0, 0, 0
    for (xc, xr), (tc, tr), n in zip(S, T, counts):
        cs, ct = xc.permute(0, 2, 3, 1).reshape(-1, K), tc.permute(0, 2, 3, 1).reshape(-1, K)
        rs, rt = xr.permute(0, 2, 3, 1).reshape(-1, 4, R1), tr.permute(0, 2, 3, 1).reshape(-1, 4, R1)
        lab = torch.cat([x[o:o + n] for x in labels])
        vlr = torch.cat([x[o:o + n] for x in vlrs]).to(cs.dtype)
        o += n
        pos = lab >= 0
        kl = kl_mean(rs, rt, t_reg)                                   # (M, 4)
        w = cs.detach().sigmoid().max(1)[0]
        reg_kd = reg_kd + w_reg * (w[pos, None] * kl[pos]).sum() / 4.0 + w_reg * (vlr[:, None] * kl).sum() / 16.0
        if pos.any():
            cls_kd = cls_kd + w_cls * kl_mean(cs[pos], ct[pos], t_cls).sum() / float(pos.sum())
    return cls_kd, reg_kd


def rm_pfi_losses(cfg, S, T, sfeat, tfeat, img_shapes, gts, w_rm=4.0, w_pfi=1.5):
    K = cfg['num_classes']
    sizes = [(c.shape[2], c.shape[3]) for c, _ in S]
    counts = [h * w for h, w in sizes]
    div = cfg['pad_div']
    cs = torch.cat([c.permute(0, 2, 3, 1).reshape(c.shape[0], -1, K) for c, _ in S], 1)   # (N, A, K)
    ct = torch.cat([c.permute(0, 2, 3, 1).reshape(c.shape[0], -1, K) for c, _ in T], 1)
    with_gt = [i for i in range(len(img_shapes)) if gts[i][0].shape[0] > 0]
    rm = 0
    for i in with_gt:
        h, w = img_shapes[i]
        pad = (int(math.ceil(h / div) * div), int(math.ceil(w / div) * div))
        anchors, valid = R.anchors_and_valid(cfg, sizes, pad)
        asg = R.atss(cfg, anchors, valid, counts, gts[i][0])
        M = gts[i][0].shape[0]
        for j in range(M):
            ids = torch.nonzero(asg == j).squeeze(1)
            if ids.numel() < 2:
                continue
            c = int(gts[i][1][j])
            pt = F.softmax(ct[i, ids, c].sigmoid(), 0)
            ls = F.log_softmax(cs[i, ids, c].sigmoid(), 0)
            rm = rm + (torch.xlogy(pt, pt) - pt * ls).sum() / M
    rm = w_rm * rm / len(with_gt)
    pfi = 0
    for (xc, _), (tc, _), fs, ft in zip(S, T, sfeat, tfeat):
        pd = ((xc.sigmoid() - tc.sigmoid()) ** 2).mean(1).detach()
        fd = ((fs - ft) ** 2).mean(1)
        pfi = pfi + (pd * fd).mean()
    return rm, w_pfi * pfi / len(S)


def conflict_counts(cfg, tcls, labels, masks, thr, A_t=1, A_s=1):
    """Paper Fig. 3 counts over the valid locations (masks). tcls: the teacher's cls outputs
    (N, A_t*K, H, W); labels: the student's per image, A_s rows per location (-1 background,
    -2 MaxIoU's ignore band). Same A: per anchor row (ignored rows not counted); otherwise per
    location, with the classes of any of its student rows as targets, a conflict when any
    teacher anchor conflicts, positive when any student row is."""
    K = cfg['num_classes']
    conflicts, positives, o = 0, 0, 0
    for tc, m in zip(tcls, masks):
        N, _, H, W = tc.shape
        n = H * W * A_s
        lab = torch.stack([x[o:o + n].view(H, W, A_s) for x in labels]).long()   # (N, H, W, A_s)
        o += n
        p = tc.sigmoid().view(N, A_t, K, H, W)
        y = F.one_hot(lab.clamp(min=0), K).to(tc.dtype) * (lab >= 0)[..., None].to(tc.dtype)  # (N, H, W, A_s, K)
        valid = m > 0
        if A_t == A_s:
            conf = ((p - y.permute(0, 3, 4, 1, 2)).abs() > thr).any(2)              # (N, A, H, W)
            keep = valid[:, None] & (lab != -2).permute(0, 3, 1, 2)
            conflicts += int((conf & keep).sum())
            positives += int(((lab >= 0).permute(0, 3, 1, 2) & valid[:, None]).sum())
        else:
            yl = y.amax(3).permute(0, 3, 1, 2)[:, None]                              # (N, 1, K, H, W)
            conf = ((p - yl).abs() > thr).any(2).any(1)                              # (N, H, W)
            conflicts += int((conf & valid).sum())
            positives += int(((lab >= 0).any(3) & valid).sum())
    return conflicts, positives


# ---------------------------------------------------------------- ATSS (crosskd.md §6.2)
def cross_head_atss(tp, tcfg, sheld, theld, idx):
    """[(Xc, Xr, Xctr)] per level: the cross-head of an ATSS teacher, whose reg tower also
    gives the centerness logits."""
    out = []
    for l, (sh, th) in enumerate(zip(sheld, theld)):
        trip, ctr = [], []
        for ti, t in enumerate(('cls', 'reg')):
            a = align(sh[ti], th[ti])
            if idx != 0:
                a = torch.relu(a)
            trip.append(R.tower(tp, tcfg, t, a, l, first=idx, ctr=ctr))
        out.append((trip[0], trip[1], ctr[0]))
    return out


def atss_kd_losses(cfg, X, T, masks, labels, P, w_cls=1.0, beta=1.0, w_reg=1.0, w_ctr=1.0):
    """X, T: [(cls, deltas, centerness)] per level. KD-QFL over valid anchors / (P + eps);
    r_a (1 - GIoU) between the boxes decoded from X's and T's deltas at the anchors, r_a =
    sigmoid(max_c Tc) on valid anchors, / (P + eps); BCE(Xctr, sigmoid(Tctr)) on the GT
    positives / (P + eps)."""
    import ref_atss as RA
    sizes = [(x[0].shape[2], x[0].shape[3]) for x in X]
    anchors, _ = R.anchors_and_valid(cfg, sizes, (1 << 30, 1 << 30))
    cls_kd = reg_kd = ctr_kd = 0
    o = 0
    for l, ((xc, xr, xt), (tc, tr, tt), m) in enumerate(zip(X, T, masks)):
        N, _, H, W = xr.shape
        n = H * W
        anc = anchors[o:o + n].repeat(N, 1)
        pos = torch.cat([lab[o:o + n] for lab in labels]) >= 0
        o += n
        cls_kd = cls_kd + (kd_qfl(xc, tc, beta).sum(1) * m).sum()
        r = (torch.sigmoid(tc.max(1)[0]) * m).reshape(-1)
        bs = RA.delta_decode(anc, xr.permute(0, 2, 3, 1).reshape(-1, 4), cfg['stds'])
        bt = RA.delta_decode(anc, tr.permute(0, 2, 3, 1).reshape(-1, 4), cfg['stds'])
        keep = r > 0
        giou = R.aligned_overlaps(bs[keep], bt[keep], 'giou')
        reg_kd = reg_kd + (r[keep] * (1 - giou)).sum()
        xs, ts = xt.permute(0, 2, 3, 1).reshape(-1), tt.permute(0, 2, 3, 1).reshape(-1)
        ctr_kd = ctr_kd + F.binary_cross_entropy_with_logits(xs[pos], ts[pos].sigmoid(), reduction='sum')
    return (w_cls * cls_kd / (P + EPS32), w_reg * reg_kd / (P + EPS32), w_ctr * ctr_kd / (P + EPS32))


def gfl_mimic_atss_kd_losses(scfg, tcfg, X, T, masks, P, w_cls=1.0, beta=1.0, w_reg=1.0):
    """Prediction mimicking of an ATSS teacher by a GFL student (paper Table 7, "KD" row).
    X: [(cls, side distributions)] of the student's own head, T: [(cls, deltas, centerness)]
    of the teacher. KD-QFL over valid anchors / (P + eps); r_a (1 - GIoU) between the
    student's box (the integral of each side's distribution, times the stride, around the
    anchor centre) and the teacher's delta-decoded box at its anchor (pixels), r_a =
    sigmoid(max_c Tc) on valid anchors, / (P + eps); no centerness KD (the student has none)."""
    import ref_atss as RA
    R1 = scfg['reg_max'] + 1
    sizes = [(x[0].shape[2], x[0].shape[3]) for x in X]
    anchors, _ = R.anchors_and_valid(tcfg, sizes, (1 << 30, 1 << 30))
    cls_kd = reg_kd = 0
    o = 0
    for l, ((xc, xr), (tc, tr, _), m) in enumerate(zip(X, T, masks)):
        N, _, H, W = xr.shape
        n = H * W
        anc = anchors[o:o + n].repeat(N, 1)
        o += n
        stride = tcfg['strides'][l]
        cls_kd = cls_kd + (kd_qfl(xc, tc, beta).sum(1) * m).sum()
        r = (torch.sigmoid(tc.max(1)[0]) * m).reshape(-1)
        bs = decode(xr, R1) * stride
        bt = RA.delta_decode(anc, tr.permute(0, 2, 3, 1).reshape(-1, 4), tcfg['stds'])
        keep = r > 0
        giou = R.aligned_overlaps(bs[keep], bt[keep], 'giou')
        reg_kd = reg_kd + (r[keep] * (1 - giou)).sum()
    return w_cls * cls_kd / (P + EPS32), w_reg * reg_kd / (P + EPS32)


# ---------------------------------------------------------------- RetinaNet (crosskd.md §6.1)
def retina_kd_losses(cfg, X, T, lws, Z, w_cls=1.0, beta=1.0, w_reg=1.0):
    """X, T: [(cls, deltas)] per level, A anchors per location; lws: per image the label
    weights of every anchor row (valid and not in MaxIoU's ignore band). KD-QFL weighted by
    them and r_a (1 - GIoU) of the delta-decoded boxes (stds 1), r_a = sigmoid(max_c Tc_a) *
    lw_a, both / (Z + eps), Z = sum over images of max(positives, 1)."""
    import ref_atss as RA
    import ref_retina as RR
    K = cfg['num_classes']
    sizes = [(x[0].shape[2], x[0].shape[3]) for x in X]
    anchors, _ = RR.anchors_and_valid(cfg, sizes, (1 << 30, 1 << 30))
    A = R.num_anchors(cfg)
    cls_kd = reg_kd = 0
    o = 0
    for (xc, xr), (tc, tr) in zip(X, T):
        N, _, H, W = xr.shape
        n = H * W * A
        anc = anchors[o:o + n].repeat(N, 1)
        lw = torch.cat([m[o:o + n] for m in lws]).to(xc.dtype)
        o += n
        xcs, tcs = xc.permute(0, 2, 3, 1).reshape(-1, K), tc.permute(0, 2, 3, 1).reshape(-1, K)
        cls_kd = cls_kd + (kd_qfl(xcs, tcs, beta).sum(1) * lw).sum()
        r = torch.sigmoid(tcs.max(1)[0]) * lw
        keep = r > 0
        bs = RA.delta_decode(anc, xr.permute(0, 2, 3, 1).reshape(-1, 4), cfg['stds'])
        bt = RA.delta_decode(anc, tr.permute(0, 2, 3, 1).reshape(-1, 4), cfg['stds'])
        reg_kd = reg_kd + (r[keep] * (1 - R.aligned_overlaps(bs[keep], bt[keep], 'giou'))).sum()
    return w_cls * cls_kd / (Z + EPS32), w_reg * reg_kd / (Z + EPS32)


# ---------------------------------------------------------------- FCOS (crosskd.md §6.3)
def fcos_kd_losses(cfg, X, T, D, w_cls=0.4, beta=1.0, w_reg=0.75):
    """X, T: [(cls, log distances)] per level. KD-QFL over every point / (D + eps); r_a *
    -log(max(IoU, 1e-6)) of the boxes at the points from exp(distances), r_a =
    sigmoid(max_c Tc_a) on every point, / (D + eps)."""
    import ref_fcos as RF
    K = cfg['num_classes']
    sizes = [(x[0].shape[2], x[0].shape[3]) for x in X]
    pts, lvl = RF.points(cfg, sizes)
    cls_kd = reg_kd = 0
    for l, ((xc, xr), (tc, tr)) in enumerate(zip(X, T)):
        N = xc.shape[0]
        pp = pts[lvl == l].repeat(N, 1).to(xr.dtype)
        xcs, tcs = xc.permute(0, 2, 3, 1).reshape(-1, K), tc.permute(0, 2, 3, 1).reshape(-1, K)
        cls_kd = cls_kd + kd_qfl(xcs, tcs, beta).sum()
        r = torch.sigmoid(tcs.max(1)[0])
        ds, dt = xr.permute(0, 2, 3, 1).reshape(-1, 4).exp(), tr.permute(0, 2, 3, 1).reshape(-1, 4).exp()
        bs = torch.cat([pp - ds[:, :2], pp + ds[:, 2:]], 1)
        bt = torch.cat([pp - dt[:, :2], pp + dt[:, 2:]], 1)
        iou = R.aligned_overlaps(bs, bt).clamp(min=1e-6)
        reg_kd = reg_kd + (r * -iou.log()).sum()
    return w_cls * cls_kd / (D + EPS32), w_reg * reg_kd / (D + EPS32)
