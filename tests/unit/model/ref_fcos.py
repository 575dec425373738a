"""ref_fcos.py — an independent PyTorch FCOS head loss and inference with MMDetection 3.0
semantics (crosskd.md §6.3; FCOSHead with a GN head, norm_on_bbox False, centerness on the
cls tower, no centre sampling), for cross-checking crosskd's C FCOSHead. Backbone, FPN and
towers are ref_gfl.py's (cfg['head'] = 'fcos'; reg = Scale * conv_reg, the log distances).

  points       ((x + 0.5) s, (y + 0.5) s); every point is used (no valid flags);
  targets      a gt containing the point (min side distance > 0) whose max side distance is
               in the level's regress range, the smallest-area one (first on ties);
  losses       focal / max(P, 1); IoU loss -log(max(IoU, 1e-6)) between the boxes decoded at
               the points from exp(reg) and from the target distances, weighted by the
               centerness targets, / max(1e-6, sum of the targets) (MMDetection's centerness_denorm;
               see fcos_loss.c); centerness BCE / max(P, 1);
  inference    sigmoid scores > thr, top nms_pre per level, decode clipped to the image,
               scores times sigmoid(centerness), rescale, class-aware NMS, max_per_img.
"""
import torch
import torch.nn.functional as F

import ref_atss as RA
import ref_gfl as R

INF = 1e8


def points(cfg, sizes):
    pts, lvl = [], []
    for l, ((h, w), s) in enumerate(zip(sizes, cfg['strides'])):
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing='ij')
        pts.append(torch.stack([((xs + 0.5) * s).reshape(-1), ((ys + 0.5) * s).reshape(-1)], 1))
        lvl.append(torch.full((h * w,), l, dtype=torch.long))
    return torch.cat(pts), torch.cat(lvl)


def ranges(cfg):
    b = cfg['regress_ranges']
    return [(-1.0 if l == 0 else b[l - 1], b[l] if l < len(b) else INF) for l in range(cfg['num_outs'])]


def targets_single(cfg, pts, lvl, gt):
    n = pts.shape[0]
    if gt.shape[0] == 0:
        return torch.full((n,), -1, dtype=torch.long), torch.zeros(n, 4)
    rr = torch.tensor(ranges(cfg), dtype=torch.float32)[lvl]            # (n, 2)
    xs, ys = pts[:, 0:1], pts[:, 1:2]
    d = torch.stack([xs - gt[None, :, 0], ys - gt[None, :, 1], gt[None, :, 2] - xs, gt[None, :, 3] - ys], 2)
    areas = ((gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]))[None].repeat(n, 1)
    mx = d.max(2)[0]
    areas[d.min(2)[0] <= 0] = INF
    areas[~((mx >= rr[:, 0:1]) & (mx <= rr[:, 1:2]))] = INF
    amin, arg = areas.min(1)
    asg = torch.where(amin == INF, torch.full_like(arg, -1), arg)
    return asg, d[torch.arange(n), arg]


def fcos_loss(cfg, cls, reg, ctr, img_shapes, gts, extras=None):
    """extras (a dict): gets 'D', the centerness-target normaliser (FCOS's KD uses it)."""
    N, K = cls[0].shape[0], cfg['num_classes']
    sizes = [(c.shape[2], c.shape[3]) for c in cls]
    pts, lvl = points(cfg, sizes)
    labels, tds = [], []
    for i in range(N):
        gb, gl = gts[i]
        asg, td = targets_single(cfg, pts, lvl, gb)
        labels.append(torch.where(asg >= 0, gl[asg.clamp(min=0)].long(), asg))
        tds.append(td)
    # flatten like FCOSHead.loss_by_feat: level-major, then image, then position
    fc = torch.cat([c.permute(0, 2, 3, 1).reshape(-1, K) for c in cls])
    fr = torch.cat([r.permute(0, 2, 3, 1).reshape(-1, 4) for r in reg]).exp()
    ft = torch.cat([t.permute(0, 2, 3, 1).reshape(-1) for t in ctr])
    counts = [h * w for h, w in sizes]
    offs = [sum(counts[:l]) for l in range(len(counts) + 1)]
    cat = lambda xs: torch.cat([torch.cat([x[offs[l]:offs[l + 1]] for x in xs]) for l in range(len(counts))])
    lab, td = cat(labels), cat(tds)
    fp = cat([pts] * N)
    pos = torch.nonzero(lab >= 0).squeeze(1)
    Np = max(float(pos.numel()), 1.0)
    onehot = torch.zeros_like(fc)
    onehot[pos, lab[pos]] = 1
    res = {'loss_cls': cfg['w_cls'] * RA.focal(fc, onehot, cfg['gamma'], cfg['alpha']).sum() / (Np + R.EPS32)}
    t = td[pos]
    lr, tb = t[:, [0, 2]], t[:, [1, 3]]
    ct = torch.sqrt((lr.min(1)[0] / lr.max(1)[0]) * (tb.min(1)[0] / tb.max(1)[0])).to(fc.dtype)
    D = max(float(ct.sum()), 1e-6)  # centerness_denorm: MMDetection clamps at 1e-6
    if extras is not None:
        extras['D'] = D
    pp, d = fp[pos].to(fc.dtype), fr[pos]
    bp = torch.cat([pp - d[:, :2], pp + d[:, 2:]], 1)
    bt = (torch.cat([fp[pos] - t[:, :2], fp[pos] + t[:, 2:]], 1)).to(fc.dtype)
    iou = R.aligned_overlaps(bp, bt).clamp(min=1e-6)
    res['loss_bbox'] = cfg['w_bbox'] * (ct * -iou.log()).sum() / (D + R.EPS32)
    res['loss_centerness'] = cfg['w_ctr'] * F.binary_cross_entropy_with_logits(ft[pos], ct, reduction='sum') / (Np + R.EPS32)
    res['loss'] = res['loss_cls'] + res['loss_bbox'] + res['loss_centerness']
    # labels per image in the C row order (level-major within the image)
    return res, labels


def predict(cfg, cls, reg, ctr, i, img_hw, scale_hw):
    K = cfg['num_classes']
    sizes = [(c.shape[2], c.shape[3]) for c in cls]
    pts, lvl = points(cfg, sizes)
    boxes, scores, labels = [], [], []
    for l, (c, r, ct) in enumerate(zip(cls, reg, ctr)):
        pp = pts[lvl == l].to(r.dtype)
        sc = c[i].permute(1, 2, 0).reshape(-1, K).sigmoid()
        d = r[i].permute(1, 2, 0).reshape(-1, 4).exp()
        cf = ct[i].permute(1, 2, 0).reshape(-1).sigmoid()
        m = sc > cfg['score_thr']
        v = sc[m]
        idx = torch.nonzero(m)
        order = torch.sort(v, descending=True, stable=True)[1][:cfg['nms_pre']]
        v, idx = v[order], idx[order]
        loc, lab = idx[:, 0], idx[:, 1]
        b = torch.cat([pp[loc] - d[loc, :2], pp[loc] + d[loc, 2:]], 1)
        b = torch.stack([b[:, 0].clamp(0, img_hw[1]), b[:, 1].clamp(0, img_hw[0]),
                         b[:, 2].clamp(0, img_hw[1]), b[:, 3].clamp(0, img_hw[0])], 1)
        boxes.append(b)
        scores.append(v * cf[loc])
        labels.append(lab)
    return R.post_nms(cfg, torch.cat(boxes), torch.cat(scores), torch.cat(labels), scale_hw)
