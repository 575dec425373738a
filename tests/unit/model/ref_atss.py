"""ref_atss.py — an independent PyTorch ATSS head loss and inference with MMDetection 3.0
semantics (crosskd.md §6.2, coco.md §3.10), for cross-checking crosskd's C ATSSHead. The
backbone, FPN, towers (GN, Scale, atss_centerness on the reg tower: cfg['head'] = 'atss'),
anchors and the ATSS assigner are ref_gfl.py's; written here from the reference's formulas:

  focal loss (alpha 0.25, gamma 2) over valid anchors and classes with one-hot targets,
    / (P + eps), P = number of positives;
  GIoU (weight 2) between delta-decoded boxes (DeltaXYWHBBoxCoder, means 0, stds
    [0.1, 0.1, 0.2, 0.2], dw/dh clamped to |log(16/1000)|) and the matched gt boxes, in
    pixels, weighted by the centerness targets, / (1 + eps) / max(1, sum of the targets);
  centerness BCE-with-logits against the targets on positives, / (P + eps);
  inference: sigmoid scores > thr, top nms_pre per level, delta decode clipped to the image,
    scores times sigmoid(centerness) after the top-k, rescale, class-aware NMS, max_per_img.

Gradients come from autograd. Geometry (anchors, centerness targets) is float32 as in
MMDetection; the network and losses run in the parameters' dtype (float64 in the fixtures).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

import ref_gfl as R

MAX_RATIO = abs(math.log(16 / 1000))


def centerness_target(anchors, gts):
    """float32, MMDetection's ATSSHead.centerness_target."""
    cx = (anchors[:, 2] + anchors[:, 0]) / 2
    cy = (anchors[:, 3] + anchors[:, 1]) / 2
    l_, t_ = cx - gts[:, 0], cy - gts[:, 1]
    r_, b_ = gts[:, 2] - cx, gts[:, 3] - cy
    lr = torch.stack([l_, r_], 1)
    tb = torch.stack([t_, b_], 1)
    return torch.sqrt((lr.min(1)[0] / lr.max(1)[0]) * (tb.min(1)[0] / tb.max(1)[0]))


def delta_decode(anchors, deltas, stds, max_hw=None):
    a = anchors.to(deltas.dtype)
    d = deltas * torch.tensor(stds, dtype=deltas.dtype)
    pxy = (a[:, :2] + a[:, 2:]) * 0.5
    pwh = a[:, 2:] - a[:, :2]
    dwh = d[:, 2:].clamp(min=-MAX_RATIO, max=MAX_RATIO)
    gxy = pxy + pwh * d[:, :2]
    gwh = pwh * dwh.exp()
    b = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], 1)
    if max_hw is not None:
        b = torch.stack([b[:, 0].clamp(0, max_hw[1]), b[:, 1].clamp(0, max_hw[0]),
                         b[:, 2].clamp(0, max_hw[1]), b[:, 3].clamp(0, max_hw[0])], 1)
    return b


def focal(pred, target, gamma, alpha):
    p = pred.sigmoid()
    pt = (1 - p) * target + p * (1 - target)
    w = (alpha * target + (1 - alpha) * (1 - target)) * pt.pow(gamma)
    return F.binary_cross_entropy_with_logits(pred, target, reduction='none') * w


def atss_loss(cfg, cls, reg, ctr, img_shapes, gts):
    """Student ATSS losses and the assignment labels per image."""
    N, K = cls[0].shape[0], cfg['num_classes']
    counts, labels_all, tgt_all, valid_all, anchors = R.targets(cfg, cls, img_shapes, gts)
    P = float(sum(int((l >= 0).sum()) for l in labels_all))
    res = {'loss_cls': 0, 'loss_bbox': 0, 'loss_centerness': 0}
    bbox_raw, csum, o = [], 0.0, 0
    for l, (c, r, ct) in enumerate(zip(cls, reg, ctr)):
        n = counts[l]
        cs = c.permute(0, 2, 3, 1).reshape(-1, K)
        rs = r.permute(0, 2, 3, 1).reshape(-1, 4)
        cts = ct.permute(0, 2, 3, 1).reshape(-1)
        lab = torch.cat([x[o:o + n] for x in labels_all])
        tg = torch.cat([x[o:o + n] for x in tgt_all])
        lw = torch.cat([x[o:o + n] for x in valid_all]).to(cs.dtype)
        anc = anchors[o:o + n].repeat(N, 1)
        o += n
        pos = torch.nonzero(lab >= 0).squeeze(1)
        onehot = torch.zeros_like(cs)
        onehot[pos, lab[pos]] = 1
        lc = cfg['w_cls'] * (focal(cs, onehot, cfg['gamma'], cfg['alpha']) * lw[:, None]).sum() / (P + R.EPS32)
        if pos.numel():
            t_ctr = centerness_target(anc[pos], tg[pos]).to(cs.dtype)
            box = delta_decode(anc[pos], rs[pos], cfg['stds'])
            giou = R.aligned_overlaps(box, tg[pos].to(cs.dtype), 'giou')
            lb = cfg['w_bbox'] * (t_ctr * (1 - giou)).sum() / (1.0 + R.EPS32)
            lctr = cfg['w_ctr'] * F.binary_cross_entropy_with_logits(cts[pos], t_ctr, reduction='sum') / (P + R.EPS32)
            csum += float(t_ctr.sum())
        else:
            lb = rs.sum() * 0
            lctr = cts.sum() * 0
        res['loss_cls'] = res['loss_cls'] + lc
        res['loss_centerness'] = res['loss_centerness'] + lctr
        bbox_raw.append(lb)
    W = max(1.0, csum)
    for lb in bbox_raw:
        res['loss_bbox'] = res['loss_bbox'] + lb / W
    res['loss'] = res['loss_cls'] + res['loss_bbox'] + res['loss_centerness']
    return res, labels_all


def predict(cfg, cls, reg, ctr, i, img_hw, scale_hw):
    K = cfg['num_classes']
    sizes = [(c.shape[2], c.shape[3]) for c in cls]
    anchors, _ = R.anchors_and_valid(cfg, sizes, (1 << 30, 1 << 30))
    boxes, scores, labels, o = [], [], [], 0
    for l, (c, r, ct) in enumerate(zip(cls, reg, ctr)):
        n = sizes[l][0] * sizes[l][1]
        anc = anchors[o:o + n]
        o += n
        sc = c[i].permute(1, 2, 0).reshape(-1, K).sigmoid()
        rp = r[i].permute(1, 2, 0).reshape(-1, 4)
        cf = ct[i].permute(1, 2, 0).reshape(-1).sigmoid()
        m = sc > cfg['score_thr']
        v = sc[m]
        idx = torch.nonzero(m)
        order = torch.sort(v, descending=True, stable=True)[1][:cfg['nms_pre']]
        v, idx = v[order], idx[order]
        loc, lab = idx[:, 0], idx[:, 1]
        b = delta_decode(anc[loc], rp[loc], cfg['stds'], img_hw)
        boxes.append(b)
        scores.append(v * cf[loc])
        labels.append(lab)
    return R.post_nms(cfg, torch.cat(boxes), torch.cat(scores), torch.cat(labels), scale_hw)
