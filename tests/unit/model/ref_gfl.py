"""ref_gfl.py — an independent PyTorch GFL with MMDetection 3.0 semantics (crosskd.md §3, §5.1),
written for cross-checking crosskd's C model. It does not import MMDetection: every layer,
the anchors, the ATSS assigner and the QFL/GIoU/DFL losses with their normalisers are written
here from the reference's formulas, and gradients come from autograd (so they are independent
of the C model's hand-written backward).

Parameters are a dict {MMDetection state-dict key: tensor}. The network runs in the dtype of
the parameters given (the fixtures use float64, so the reference is exact to ~1e-15 and the
comparison measures only the C side's float32 error). Geometry (anchors, ATSS) runs in float32
as in MMDetection; ATSS ties in distance take the lower anchor index (a stable sort), and the
candidate IoU mean/std are taken in float64 (as the C side does).

Also a small safetensors reader/writer (the format is 8-byte header length + JSON + bytes).
"""
import json
import math
import struct

import numpy as np
import torch
import torch.nn.functional as F

EPS32 = float(np.finfo(np.float32).eps)

# ---------------------------------------------------------------- safetensors
_DT = {'F32': np.float32, 'F64': np.float64, 'I32': np.int32, 'I64': np.int64, 'U8': np.uint8}
_DT_INV = {np.dtype(v).str: k for k, v in _DT.items()}


def st_write(path, tensors):
    hdr, off, blobs = {}, 0, []
    for name in sorted(tensors):
        a = np.array(tensors[name], order='C')  # keeps 0-d tensors 0-d
        b = a.tobytes()
        hdr[name] = {'dtype': _DT_INV[a.dtype.str], 'shape': list(a.shape),
                     'data_offsets': [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr, separators=(',', ':'), sort_keys=True).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def st_read(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == '__metadata__':
            continue
        b0, b1 = v['data_offsets']
        out[k] = np.frombuffer(data[b0:b1], dtype=_DT[v['dtype']]).reshape(v['shape']).copy()
    return out


# ---------------------------------------------------------------- architecture
def resnet_arch(depth):
    return {18: ('basic', [2, 2, 2, 2]), 34: ('basic', [3, 4, 6, 3]),
            50: ('bottleneck', [3, 4, 6, 3]), 101: ('bottleneck', [3, 4, 23, 3])}[depth]


PREFIX = {'fcos': 'conv'}  # FCOSHead's conv_cls / conv_reg / conv_centerness


def num_anchors(cfg):
    return len(cfg.get('ratios', [1.0])) * cfg.get('scales_per_octave', 1) if cfg.get('head') == 'retina' else 1


def param_shapes(cfg):
    """Ordered {key: (shape, trainable)} of a GFL detector with MMDetection names."""
    out = {}
    kind, blocks = resnet_arch(cfg['depth'])
    exp = 4 if kind == 'bottleneck' else 1
    base, frozen = cfg['base'], cfg['frozen_stages']

    def bn(pre, c, tr):
        out[pre + '.weight'] = ((c,), tr)
        out[pre + '.bias'] = ((c,), tr)
        out[pre + '.running_mean'] = ((c,), False)
        out[pre + '.running_var'] = ((c,), False)
        out[pre + '.num_batches_tracked'] = ((), False)

    out['backbone.conv1.weight'] = ((base, 3, 7, 7), frozen < 0)
    bn('backbone.bn1', base, frozen < 0)
    inpl = base
    stage_c = []
    for s in range(4):
        planes, tr = base << s, frozen < s + 1
        for j in range(blocks[s]):
            stride = 2 if (j == 0 and s > 0) else 1
            pre = 'backbone.layer%d.%d' % (s + 1, j)
            if kind == 'basic':
                convs = [(inpl, planes, 3), (planes, planes, 3)]
            else:
                convs = [(inpl, planes, 1), (planes, planes, 3), (planes, planes * 4, 1)]
            for k, (ci, co, ks) in enumerate(convs):
                out['%s.conv%d.weight' % (pre, k + 1)] = ((co, ci, ks, ks), tr)
                bn('%s.bn%d' % (pre, k + 1), co, tr)
            if stride != 1 or inpl != planes * exp:
                out[pre + '.downsample.0.weight'] = ((planes * exp, inpl, 1, 1), tr)
                bn(pre + '.downsample.1', planes * exp, tr)
            inpl = planes * exp
        stage_c.append(inpl)
    C = cfg['fpn_out']
    for i in range(4 - cfg['start_level']):
        out['neck.lateral_convs.%d.conv.weight' % i] = ((C, stage_c[cfg['start_level'] + i], 1, 1), True)
        out['neck.lateral_convs.%d.conv.bias' % i] = ((C,), True)
    for i in range(cfg['num_outs']):
        out['neck.fpn_convs.%d.conv.weight' % i] = ((C, C, 3, 3), True)
        out['neck.fpn_convs.%d.conv.bias' % i] = ((C,), True)
    Fc, R1, K = cfg['feat'], cfg['reg_max'] + 1, cfg['num_classes']
    head = cfg.get('head', 'gfl')
    A = num_anchors(cfg)
    pre = PREFIX.get(head, head)
    for t in ('cls', 'reg'):
        for j in range(cfg['stacked']):
            out['bbox_head.%s_convs.%d.conv.weight' % (t, j)] = ((Fc, C if j == 0 else Fc, 3, 3), True)
            if head == 'retina':  # ConvModule without norm: conv bias
                out['bbox_head.%s_convs.%d.conv.bias' % (t, j)] = ((Fc,), True)
                continue
            out['bbox_head.%s_convs.%d.gn.weight' % (t, j)] = ((Fc,), True)
            out['bbox_head.%s_convs.%d.gn.bias' % (t, j)] = ((Fc,), True)
    out['bbox_head.%s_cls.weight' % pre] = ((A * K, Fc, 3, 3), True)
    out['bbox_head.%s_cls.bias' % pre] = ((A * K,), True)
    RC = 4 * R1 if head == 'gfl' else 4 * A
    out['bbox_head.%s_reg.weight' % pre] = ((RC, Fc, 3, 3), True)
    out['bbox_head.%s_reg.bias' % pre] = ((RC,), True)
    if head in ('atss', 'fcos'):
        out['bbox_head.%s_centerness.weight' % pre] = ((1, Fc, 3, 3), True)
        out['bbox_head.%s_centerness.bias' % pre] = ((1,), True)
    for l in range(cfg['num_outs'] if head != 'retina' else 0):
        out['bbox_head.scales.%d.scale' % l] = ((), True)
    if head == 'gfl':
        out['bbox_head.integral.project'] = ((R1,), False)
    return out


# ---------------------------------------------------------------- forward
def conv_bn(p, x, conv, bnp, stride, pad, relu):
    y = F.conv2d(x, p[conv + '.weight'], None, stride, pad)
    y = F.batch_norm(y, p[bnp + '.running_mean'], p[bnp + '.running_var'], p[bnp + '.weight'],
                     p[bnp + '.bias'], training=False, eps=1e-5)
    return F.relu(y) if relu else y


def resnet(p, cfg, x):
    kind, blocks = resnet_arch(cfg['depth'])
    x = conv_bn(p, x, 'backbone.conv1', 'backbone.bn1', 2, 3, True)
    x = F.max_pool2d(x, 3, 2, 1)
    outs = []
    for s in range(4):
        for j in range(blocks[s]):
            stride = 2 if (j == 0 and s > 0) else 1
            pre = 'backbone.layer%d.%d' % (s + 1, j)
            if kind == 'basic':
                y = conv_bn(p, x, pre + '.conv1', pre + '.bn1', stride, 1, True)
                y = conv_bn(p, y, pre + '.conv2', pre + '.bn2', 1, 1, False)
            else:
                caffe = cfg.get('style', 'pytorch') == 'caffe'  # stride on conv1 (1x1)
                y = conv_bn(p, x, pre + '.conv1', pre + '.bn1', stride if caffe else 1, 0, True)
                y = conv_bn(p, y, pre + '.conv2', pre + '.bn2', 1 if caffe else stride, 1, True)
                y = conv_bn(p, y, pre + '.conv3', pre + '.bn3', 1, 0, False)
            if pre + '.downsample.0.weight' in p:
                idn = conv_bn(p, x, pre + '.downsample.0', pre + '.downsample.1', stride, 0, False)
            else:
                idn = x
            x = F.relu(y + idn)
        outs.append(x)
    return outs


def fpn(p, cfg, feats):
    st = cfg['start_level']
    lat = [F.conv2d(feats[st + i], p['neck.lateral_convs.%d.conv.weight' % i],
                    p['neck.lateral_convs.%d.conv.bias' % i]) for i in range(4 - st)]
    for i in range(len(lat) - 1, 0, -1):
        lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[2:], mode='nearest')
    outs = [F.conv2d(lat[i], p['neck.fpn_convs.%d.conv.weight' % i],
                     p['neck.fpn_convs.%d.conv.bias' % i], 1, 1) for i in range(len(lat))]
    for i in range(len(lat), cfg['num_outs']):
        src = F.relu(outs[-1]) if cfg.get('relu_extra') and i > len(lat) else outs[-1]
        outs.append(F.conv2d(src, p['neck.fpn_convs.%d.conv.weight' % i],
                             p['neck.fpn_convs.%d.conv.bias' % i], 2, 1))
    return outs


def tower(p, cfg, t, x, level, first=0, held=None, hold_idx=-1, ctr=None):
    """Blocks first..S-1 (conv, GN, ReLU) and the prediction conv; held[...] gets the
    post-ReLU output of block hold_idx (1-based; 0 = the input); ctr[...] gets the ATSS
    centerness logits (reg tower; FCOS: cls tower). FCOS's reg is Scale * conv_reg, the log of
    the distances (the C model's convention; consumers apply exp)."""
    head = cfg.get('head', 'gfl')
    pre = PREFIX.get(head, head)
    if hold_idx == 0 and held is not None:
        held.append(x)
    for j in range(first, cfg['stacked']):
        x = F.conv2d(x, p['bbox_head.%s_convs.%d.conv.weight' % (t, j)],
                     p.get('bbox_head.%s_convs.%d.conv.bias' % (t, j)), 1, 1)
        if head != 'retina':
            x = F.group_norm(x, cfg['gn_groups'], p['bbox_head.%s_convs.%d.gn.weight' % (t, j)],
                             p['bbox_head.%s_convs.%d.gn.bias' % (t, j)], eps=1e-5)
        x = F.relu(x)
        if held is not None and j + 1 == hold_idx:
            held.append(x)
    if ctr is not None and ((head == 'atss' and t == 'reg') or (head == 'fcos' and t == 'cls')):
        ctr.append(F.conv2d(x, p['bbox_head.%s_centerness.weight' % pre], p['bbox_head.%s_centerness.bias' % pre], 1, 1))
    if t == 'cls':
        return F.conv2d(x, p['bbox_head.%s_cls.weight' % pre], p['bbox_head.%s_cls.bias' % pre], 1, 1)
    reg = F.conv2d(x, p['bbox_head.%s_reg.weight' % pre], p['bbox_head.%s_reg.bias' % pre], 1, 1)
    return reg if head == 'retina' else reg * p['bbox_head.scales.%d.scale' % level]


def forward(p, cfg, img, hold_idx=-1, ctr=None):
    """Head outputs per level; with a list ctr, the centerness logits are appended to it."""
    feats = fpn(p, cfg, resnet(p, cfg, img))
    cls, reg, held = [], [], []
    for l, x in enumerate(feats):
        hc, hr = [], []
        cls.append(tower(p, cfg, 'cls', x, l, 0, hc, hold_idx, ctr))
        reg.append(tower(p, cfg, 'reg', x, l, 0, hr, hold_idx, ctr))
        held.append((hc[0] if hc else None, hr[0] if hr else None))
    return cls, reg, held


# ---------------------------------------------------------------- anchors, ATSS
def anchors_and_valid(cfg, sizes, pad_hw):
    """float32 anchors (A,4) over levels of sizes [(H,W)], valid flags for one pad shape."""
    anc, val = [], []
    for (h, w), s in zip(sizes, cfg['strides']):
        half = np.float32(cfg['octave'] * s * 0.5)
        ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing='ij')
        cx, cy = (xs * np.float32(s)).ravel(), (ys * np.float32(s)).ravel()
        anc.append(np.stack([cx - half, cy - half, cx + half, cy + half], 1))
        vh, vw = min(math.ceil(pad_hw[0] / s), h), min(math.ceil(pad_hw[1] / s), w)
        val.append(((ys < vh) & (xs < vw)).ravel())
    return torch.from_numpy(np.concatenate(anc)), torch.from_numpy(np.concatenate(val))


def iou_matrix(a, b, eps=1e-6):
    area1 = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area2 = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    ov = wh[..., 0] * wh[..., 1]
    un = (area1[:, None] + area2[None, :] - ov).clamp(min=eps)
    return ov / un


def atss(cfg, anchors, valid, level_counts, gt):
    """Assigned gt index per anchor (-1 negative/invalid)."""
    A = anchors.shape[0]
    assigned = torch.full((A,), -1, dtype=torch.long)
    if gt.shape[0] == 0:
        return assigned
    vidx = torch.nonzero(valid).squeeze(1)
    va = anchors[vidx]
    ious = iou_matrix(va, gt)                                   # (V, G) float32
    acx, acy = (va[:, 0] + va[:, 2]) / 2.0, (va[:, 1] + va[:, 3]) / 2.0
    gcx, gcy = (gt[:, 0] + gt[:, 2]) / 2.0, (gt[:, 1] + gt[:, 3]) / 2.0
    dx, dy = acx[:, None] - gcx[None, :], acy[:, None] - gcy[None, :]
    dist = (dx * dx + dy * dy).sqrt()
    # valid anchors per level
    lvl = torch.zeros(A, dtype=torch.long)
    o = 0
    for l, n in enumerate(level_counts):
        lvl[o:o + n] = l
        o += n
    vl = lvl[vidx]
    best = torch.full((A,), -math.inf, dtype=torch.float32)
    for g in range(gt.shape[0]):
        cand = []
        for l in range(len(level_counts)):
            ids = torch.nonzero(vl == l).squeeze(1)
            if ids.numel() == 0:
                continue
            d = dist[ids, g]
            order = torch.sort(d, stable=True)[1]
            cand.append(ids[order[:min(cfg['topk'], ids.numel())]])
        cand = torch.cat(cand)
        if cand.numel() < 2:
            continue
        ci = ious[cand, g]
        c64 = ci.double()
        thr = c64.mean() + c64.std()
        b = gt[g]
        cx, cy = acx[cand], acy[cand]
        m = torch.stack([cx - b[0], cy - b[1], b[2] - cx, b[3] - cy], 1).min(1)[0]
        pos = (c64 >= thr) & (m > 0.01)
        for k in torch.nonzero(pos).squeeze(1).tolist():
            a = int(vidx[cand[k]])
            if ci[k] > best[a]:
                best[a] = ci[k]
                assigned[a] = g
    return assigned


# ---------------------------------------------------------------- losses
def aligned_overlaps(p, t, mode='iou', eps=1e-6):
    ap = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1])
    at = (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])
    lt = torch.max(p[:, :2], t[:, :2])
    rb = torch.min(p[:, 2:], t[:, 2:])
    wh = (rb - lt).clamp(min=0)
    ov = wh[:, 0] * wh[:, 1]
    un = torch.max(ap + at - ov, torch.full_like(ov, eps))
    iou = ov / un
    if mode == 'iou':
        return iou
    elt = torch.min(p[:, :2], t[:, :2])
    erb = torch.max(p[:, 2:], t[:, 2:])
    ewh = (erb - elt).clamp(min=0)
    en = torch.max(ewh[:, 0] * ewh[:, 1], torch.full_like(ov, eps))
    return iou - (en - un) / en


def qfl(pred, label, score, beta):
    """MMDetection quality_focal_loss, per anchor summed over classes; label -1 = negative."""
    sig = pred.sigmoid()
    loss = F.binary_cross_entropy_with_logits(pred, torch.zeros_like(pred), reduction='none') * sig.pow(beta)
    pos = torch.nonzero(label >= 0).squeeze(1)
    if pos.numel():
        pl = label[pos]
        sf = score[pos] - sig[pos, pl]
        loss = loss.clone()
        loss[pos, pl] = F.binary_cross_entropy_with_logits(pred[pos, pl], score[pos], reduction='none') * \
            sf.abs().pow(beta)
    return loss.sum(1)


def dfl(pred, target):
    dl = target.long()
    dr = dl + 1
    wl = dr.to(pred.dtype) - target
    wr = target - dl.to(pred.dtype)
    return F.cross_entropy(pred, dl, reduction='none') * wl + F.cross_entropy(pred, dr, reduction='none') * wr


def targets(cfg, cls, img_shapes, gts):
    """ATSS targets per image: (anchors per level, labels, matched boxes, valid flags, anchors)."""
    sizes = [(c.shape[2], c.shape[3]) for c in cls]
    counts = [h * w for h, w in sizes]
    div = cfg['pad_div']
    labels_all, tgt_all, valid_all, anchors = [], [], [], None
    for i in range(cls[0].shape[0]):
        h, w = img_shapes[i]
        pad = (int(math.ceil(h / div) * div), int(math.ceil(w / div) * div))
        anchors, valid = anchors_and_valid(cfg, sizes, pad)
        gb, gl = gts[i]
        asg = atss(cfg, anchors, valid, counts, gb)
        lab = torch.where(asg >= 0, gl[asg.clamp(min=0)].long(), torch.full_like(asg, -1))
        tg = torch.zeros(anchors.shape[0], 4, dtype=torch.float32)
        if gb.shape[0]:
            tg[asg >= 0] = gb[asg[asg >= 0]]
        labels_all.append(lab)
        tgt_all.append(tg)
        valid_all.append(valid)
    return counts, labels_all, tgt_all, valid_all, anchors


def gfl_loss(cfg, cls, reg, img_shapes, gts, world_P=None, world_W=None):
    """Student GFL losses. gts: list of (boxes float32 (M,4), labels int (M,)).
    Returns dict of losses, and the assignment labels per image (A,)."""
    N = cls[0].shape[0]
    K, R = cfg['num_classes'], cfg['reg_max']
    counts, labels_all, tgt_all, valid_all, anchors = targets(cfg, cls, img_shapes, gts)
    num_pos = float(sum(int((l >= 0).sum()) for l in labels_all))
    P = num_pos if world_P is None else world_P
    res = {'loss_cls': 0, 'loss_bbox': 0, 'loss_dfl': 0}
    wsum_levels, bbox_raw, dfl_raw = 0.0, [], []
    o = 0
    for l, (c, r) in enumerate(zip(cls, reg)):
        s = cfg['strides'][l]
        n = counts[l]
        cs = c.permute(0, 2, 3, 1).reshape(-1, K)
        rs = r.permute(0, 2, 3, 1).reshape(-1, 4 * (R + 1))
        lab = torch.cat([x[o:o + n] for x in labels_all])
        tg = torch.cat([x[o:o + n] for x in tgt_all])
        lw = torch.cat([x[o:o + n] for x in valid_all]).to(cs.dtype)
        anc = anchors[o:o + n].repeat(N, 1)
        o += n
        pos = torch.nonzero(lab >= 0).squeeze(1)
        score = torch.zeros(cs.shape[0], dtype=cs.dtype)
        if pos.numel():
            pa = anc[pos]
            centers = torch.stack([(pa[:, 0] + pa[:, 2]) / 2.0, (pa[:, 1] + pa[:, 3]) / 2.0], 1) / np.float32(s)
            centers = centers.to(cs.dtype)
            wt = cs.detach().sigmoid().max(1)[0][pos]
            pr = rs[pos].reshape(-1, R + 1)
            proj = torch.arange(R + 1, dtype=cs.dtype)
            corners = (F.softmax(pr, 1) @ proj).reshape(-1, 4)
            box = torch.cat([centers - corners[:, :2], centers + corners[:, 2:]], 1)
            tb = (tg[pos] / np.float32(s)).to(cs.dtype)
            score[pos] = aligned_overlaps(box.detach(), tb)
            t4 = torch.cat([centers - tb[:, :2], tb[:, 2:] - centers], 1).clamp(min=0, max=R - 0.1)
            lb = cfg['w_bbox'] * (wt * (1 - aligned_overlaps(box, tb, 'giou'))).sum() / (1.0 + EPS32)
            ld = cfg['w_dfl'] * (dfl(pr, t4.reshape(-1)) * wt[:, None].expand(-1, 4).reshape(-1)).sum() / (4.0 + EPS32)
            wsum = float(wt.sum())
        else:
            lb = rs.sum() * 0
            ld = rs.sum() * 0
            wsum = 0.0
        lc = cfg['w_cls'] * (qfl(cs, lab, score, cfg['beta']) * lw).sum() / (P + EPS32)
        res['loss_cls'] = res['loss_cls'] + lc
        bbox_raw.append(lb)
        dfl_raw.append(ld)
        wsum_levels += wsum
    W = max(1.0, wsum_levels) if world_W is None else world_W
    for lb, ld in zip(bbox_raw, dfl_raw):
        res['loss_bbox'] = res['loss_bbox'] + lb / W
        res['loss_dfl'] = res['loss_dfl'] + ld / W
    res['loss'] = res['loss_cls'] + res['loss_bbox'] + res['loss_dfl']
    return res, labels_all


# ---------------------------------------------------------------- inference
def predict(cfg, cls, reg, i, img_hw, scale_hw):
    K, R = cfg['num_classes'], cfg['reg_max']
    boxes, scores, labels = [], [], []
    for l, (c, r) in enumerate(zip(cls, reg)):
        s = cfg['strides'][l]
        h, w = c.shape[2], c.shape[3]
        sc = c[i].permute(1, 2, 0).reshape(-1, K).sigmoid()
        rp = r[i].permute(1, 2, 0).reshape(-1, R + 1)
        d = (F.softmax(rp, 1) @ torch.arange(R + 1, dtype=rp.dtype)).reshape(-1, 4) * s
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
        pts = torch.stack([xs.reshape(-1) * s, ys.reshape(-1) * s], 1).to(rp.dtype)
        m = sc > cfg['score_thr']
        v = sc[m]
        idx = torch.nonzero(m)
        order = torch.sort(v, descending=True, stable=True)[1][:cfg['nms_pre']]
        v, idx = v[order], idx[order]
        loc, lab = idx[:, 0], idx[:, 1]
        b = torch.cat([pts[loc] - d[loc, :2], pts[loc] + d[loc, 2:]], 1)
        b[:, 0::2] = b[:, 0::2].clamp(0, img_hw[1])
        b[:, 1::2] = b[:, 1::2].clamp(0, img_hw[0])
        boxes.append(b)
        scores.append(v)
        labels.append(lab)
    return post_nms(cfg, torch.cat(boxes), torch.cat(scores), torch.cat(labels), scale_hw)


def post_nms(cfg, b, s_, lab, scale_hw):
    """Rescale, min_bbox_size, score order, class-aware greedy NMS, max_per_img."""
    b = b / torch.tensor([scale_hw[1], scale_hw[0], scale_hw[1], scale_hw[0]], dtype=b.dtype)
    keep = ((b[:, 2] - b[:, 0]) > cfg['min_bbox_size']) & ((b[:, 3] - b[:, 1]) > cfg['min_bbox_size'])
    b, s_, lab = b[keep], s_[keep], lab[keep]
    order = torch.sort(s_, descending=True, stable=True)[1]
    b, s_, lab = b[order], s_[order], lab[order]
    kept = []
    sup = torch.zeros(len(s_), dtype=torch.bool)
    for a in range(len(s_)):
        if sup[a]:
            continue
        kept.append(a)
        for c in range(a + 1, len(s_)):
            if lab[c] == lab[a] and not sup[c]:
                if float(aligned_overlaps(b[a:a + 1], b[c:c + 1], eps=0)[0]) > cfg['nms_iou']:
                    sup[c] = True
    kept = kept[:cfg['max_per_img']]
    return b[kept], s_[kept], lab[kept]
