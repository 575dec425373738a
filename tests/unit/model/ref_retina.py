"""ref_retina.py — an independent PyTorch RetinaNet head loss and inference with MMDetection
3.0.0rc6 semantics (crosskd.md §6.1, coco.md §3.10), for cross-checking crosskd's C
RetinaHead. Backbone, FPN and the towers (no norm, conv bias, no Scale: cfg['head'] =
'retina') are ref_gfl.py's; written here from the reference's formulas:

  anchors      A = ratios x scales_per_octave per location, ratio-major: h_ratio = sqrt(r),
               w_ratio = 1/h_ratio, scale = octave * 2^(i/spo), w = s * w_ratio * scale,
               centred at (x*s, y*s) (center_offset 0), rows (y, x, anchor) (float32);
  MaxIoU       pos >= 0.5, neg in [0, 0.4), the rest ignored (label weight 0); then each gt's
               best anchors (all ties, min_pos_iou 0) are its positives, later gts overwrite;
  losses       focal (alpha 0.25, gamma 2) over label-weighted anchors and classes, L1 on the
               deltas (DeltaXYWHBBoxCoder means 0, stds 1) of positives, both / (Pl + eps) with
               Pl = sum over images of max(positives, 1);
  inference    sigmoid scores > thr, top nms_pre per level over (anchor, class) pairs, delta
               decode clipped to the image, rescale, class-aware NMS (0.5), max_per_img.
"""
import math

import numpy as np
import torch

import ref_atss as RA
import ref_gfl as R


def anchors_and_valid(cfg, sizes, pad_hw):
    anc, val = [], []
    octs = torch.tensor([2 ** (i / cfg['scales_per_octave']) for i in range(cfg['scales_per_octave'])],
                        dtype=torch.float32) * cfg['octave']
    hr = torch.sqrt(torch.tensor(cfg['ratios'], dtype=torch.float32))
    wr = 1 / hr
    for (h, w), s in zip(sizes, cfg['strides']):
        ws = (s * wr[:, None] * octs[None, :]).reshape(-1)
        hs = (s * hr[:, None] * octs[None, :]).reshape(-1)
        base = torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], 1)          # (A, 4)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing='ij')
        cx, cy = (xs * s).reshape(-1), (ys * s).reshape(-1)
        shifts = torch.stack([cx, cy, cx, cy], 1)
        anc.append((shifts[:, None, :] + base[None, :, :]).reshape(-1, 4))
        vh, vw = min(math.ceil(pad_hw[0] / s), h), min(math.ceil(pad_hw[1] / s), w)
        v = ((ys < vh) & (xs < vw)).reshape(-1)
        val.append(v[:, None].expand(-1, base.shape[0]).reshape(-1))
    return torch.cat(anc), torch.cat(val)


def max_iou(anchors, valid, gt, pos_thr=0.5, neg_thr=0.4, min_pos=0.0):
    """gt index per anchor, -1 negative, -2 ignored (invalid anchors -1)."""
    A = anchors.shape[0]
    out = torch.full((A,), -1, dtype=torch.long)
    if gt.shape[0] == 0:
        return out
    vidx = torch.nonzero(valid).squeeze(1)
    ov = R.iou_matrix(anchors[vidx], gt)                               # (V, G) float32
    mx, arg = ov.max(1)
    a = torch.full((vidx.numel(),), -2, dtype=torch.long)
    a[(mx >= 0) & (mx < neg_thr)] = -1
    a[mx >= pos_thr] = arg[mx >= pos_thr]
    gmax = ov.max(0)[0]
    for j in range(gt.shape[0]):
        if gmax[j] >= min_pos:
            a[ov[:, j] == gmax[j]] = j
    out[vidx] = a
    return out


def delta_encode(anchors, gt, stds):
    pxy, pwh = (anchors[:, :2] + anchors[:, 2:]) * 0.5, anchors[:, 2:] - anchors[:, :2]
    gxy, gwh = (gt[:, :2] + gt[:, 2:]) * 0.5, gt[:, 2:] - gt[:, :2]
    d = torch.cat([(gxy - pxy) / pwh, torch.log(gwh / pwh)], 1)
    return d / torch.tensor(stds, dtype=d.dtype)


def targets(cfg, cls, img_shapes, gts):
    sizes = [(c.shape[2], c.shape[3]) for c in cls]
    A = R.num_anchors(cfg)
    counts = [h * w * A for h, w in sizes]
    div, labels, tgts, valids, anchors = cfg['pad_div'], [], [], [], None
    for i in range(cls[0].shape[0]):
        h, w = img_shapes[i]
        anchors, valid = anchors_and_valid(cfg, sizes, (math.ceil(h / div) * div, math.ceil(w / div) * div))
        gb, gl = gts[i]
        asg = max_iou(anchors, valid, gb)
        lab = torch.where(asg >= 0, gl[asg.clamp(min=0)].long(), asg)
        tg = torch.zeros(anchors.shape[0], 4, dtype=torch.float32)
        tg[asg >= 0] = gb[asg[asg >= 0]]
        labels.append(lab)
        tgts.append(tg)
        valids.append(valid & (asg != -2))
    return counts, labels, tgts, valids, anchors


def retina_loss(cfg, cls, reg, img_shapes, gts):
    N, K = cls[0].shape[0], cfg['num_classes']
    counts, labels, tgts, lws, anchors = targets(cfg, cls, img_shapes, gts)
    Pl = float(sum(max(int((l >= 0).sum()), 1) for l in labels))
    res = {'loss_cls': 0, 'loss_bbox': 0}
    o = 0
    for l, (c, r) in enumerate(zip(cls, reg)):
        n = counts[l]
        cs = c.permute(0, 2, 3, 1).reshape(-1, K)
        rs = r.permute(0, 2, 3, 1).reshape(-1, 4)
        lab = torch.cat([x[o:o + n] for x in labels])
        tg = torch.cat([x[o:o + n] for x in tgts])
        lw = torch.cat([x[o:o + n] for x in lws]).to(cs.dtype)
        anc = anchors[o:o + n].repeat(N, 1)
        o += n
        pos = torch.nonzero(lab >= 0).squeeze(1)
        onehot = torch.zeros_like(cs)
        onehot[pos, lab[pos]] = 1
        res['loss_cls'] = res['loss_cls'] + cfg['w_cls'] * \
            (RA.focal(cs, onehot, cfg['gamma'], cfg['alpha']) * lw[:, None]).sum() / (Pl + R.EPS32)
        t = delta_encode(anc[pos], tg[pos], [float(v) for v in np.float32(cfg['stds'])]).to(cs.dtype)
        res['loss_bbox'] = res['loss_bbox'] + cfg['w_bbox'] * (rs[pos] - t).abs().sum() / (Pl + R.EPS32)
    res['loss'] = res['loss_cls'] + res['loss_bbox']
    return res, labels


def predict(cfg, cls, reg, i, img_hw, scale_hw):
    K, A = cfg['num_classes'], R.num_anchors(cfg)
    sizes = [(c.shape[2], c.shape[3]) for c in cls]
    anchors, _ = anchors_and_valid(cfg, sizes, (1 << 30, 1 << 30))
    boxes, scores, labels, o = [], [], [], 0
    for l, (c, r) in enumerate(zip(cls, reg)):
        n = sizes[l][0] * sizes[l][1] * A
        anc = anchors[o:o + n]
        o += n
        sc = c[i].permute(1, 2, 0).reshape(-1, K).sigmoid()
        rp = r[i].permute(1, 2, 0).reshape(-1, 4)
        m = sc > cfg['score_thr']
        v = sc[m]
        idx = torch.nonzero(m)
        order = torch.sort(v, descending=True, stable=True)[1][:cfg['nms_pre']]
        v, idx = v[order], idx[order]
        loc, lab = idx[:, 0], idx[:, 1]
        boxes.append(RA.delta_decode(anc[loc], rp[loc], cfg['stds'], img_hw))
        scores.append(v)
        labels.append(lab)
    return R.post_nms(cfg, torch.cat(boxes), torch.cat(scores), torch.cat(labels), scale_hw)
