"""gen_kd_fixtures.py — writes the distillation fixtures in tests/fixtures/distill/ from
ref_kd.py (float64 reference, float32 weights):

  kd_student.yaml / kd_teacher.yaml   tiny GFLs with 4-block heads of equal width (student
                                      ResNet-18 base 2, teacher ResNet-18 base 2, other weights)
  kd_student.weights.safetensors, kd_teacher.weights.safetensors, kd.batch.safetensors
  kd_i<idx>.expected.safetensors      CrossKD with reused_teacher_head_idx idx (0, 1, 3, 4):
                                      cross.{cls,reg}.l (levels 1..4), loss.loss_cls_kd, loss.loss_reg_kd,
                                      loss.loss (detection + KD) and grad.<key> of that total,
                                      conflict.counts (paper Fig. 3: conflicting anchors,
                                      positives; threshold 0.5)
  kd_pm.expected.safetensors          prediction mimicking: the same KD losses on the
                                      student's own outputs
  kd_pkd.expected.safetensors         PKD alone (weight 2, FPN levels 0..3)
  kd_i3pkd.expected.safetensors       CrossKD (i 3) + PKD (weight 6, all levels)
  kd_bckd.expected.safetensors        BCKD (cls KD weight 1, localisation KD weight 4)
  kd_ld.expected.safetensors          LD (main and VLR LD weight 0.25 T 10, main KD weight 10)
  kd_rm_pfi.expected.safetensors      RM (weight 4) + PFI (weight 1.5)
  kd_atss_*.yaml, kd_atss_*.weights   tiny ATSS student and teacher (the same layouts)
  kd_atss_i3.expected.safetensors     CrossKD-ATSS (i 3): cross.{cls,reg,ctr}.l, the KD-QFL, GIoU
                                      box KD (weight 1) and centerness KD (weight 1) terms, grads
  kd_atss_pm.expected.safetensors     the same ATSS KD losses on the student's own outputs
  kd_x_{atss,retina}.expected         CrossKD of the GFL student through the ATSS / RetinaNet teacher
                                      (paper Table 7): the teacher type's KD losses, / P;
                                      conflict.counts (per location for the RetinaNet teacher)
  kd_x_atss_pm.expected               prediction mimicking of the ATSS teacher by the GFL student
                                      (Table 7's "KD"): KD-QFL and GIoU box KD (integral-decoded
                                      student boxes), / P; loss_center_kd 0
  kd_fcos_i2 / kd_fcos_pm             CrossKD (i 2) / prediction mimicking between tiny FCOSs: KD-QFL
                                      (0.4) and -log IoU box KD (0.75) on every point, / D
  kd_retina_*                         the same for tiny RetinaNets (9 anchors, KD-QFL on the
                                      label-weighted anchors, GIoU box KD, / the local avg_factor);
                                      kd_{atss,retina}_i3 also hold conflict.counts (per anchor row)

Run with Debian's PyTorch: /usr/bin/python3 tests/unit/distill/gen_kd_fixtures.py [out_dir]
"""
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'model'))
import ref_kd as K  # noqa: E402
import gen_fixtures as G  # noqa: E402
import ref_atss as RA  # noqa: E402
import ref_retina as RR  # noqa: E402
import ref_fcos as RF  # noqa: E402

R = K.R
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, '..', '..', 'fixtures', 'distill')
IDXS = (0, 1, 3, 4)
RETINA_KW = dict(head='retina', base=2, stacked=4, octave=4, ratios=[0.5, 1.0, 2.0], scales_per_octave=3,
                 stds=[1.0, 1.0, 1.0, 1.0], w_bbox=1.0, nms_iou=0.5, head_std=0.7)
ATSS_T = G.base_cfg(head='atss', base=2, stacked=4, gn_groups=2, frozen_stages=-1)
RETINA_T = G.base_cfg(frozen_stages=-1, **RETINA_KW)


def make_batch():
    g = torch.Generator().manual_seed(17)
    N, H, W = 2, 160, 64
    shapes = [(160, 50), (120, 64)]
    img = torch.randn(N, 3, H, W, generator=g)
    for i, (h, w) in enumerate(shapes):
        img[i, :, h:, :] = 0
        img[i, :, :, w:] = 0
    boxes = [np.array([[4, 6, 40, 50], [10, 60, 48, 150], [20.5, 10.25, 30.75, 24]], np.float32),
             np.array([[3, 4, 60, 40], [30, 50, 52, 110]], np.float32)]
    labels = [np.array([0, 2, 1], np.int32), np.array([1, 1], np.int32)]
    b = {'img': img.numpy(), 'img_shape': np.array(shapes, np.int32)}
    for i in range(N):
        b['gt_bboxes.%d' % i] = boxes[i]
        b['gt_labels.%d' % i] = labels[i]
    return b


def params_of(w, cfg, grad):
    shapes = R.param_shapes(cfg)
    return {k: torch.from_numpy(np.array(v)).double().requires_grad_(grad and shapes[k][1])
            for k, v in w.items() if not k.endswith('num_batches_tracked')}


def run(scfg, sw, tcfg, tw, batch, idx, mimic, pkd=0.0, name=None):
    p = params_of(sw, scfg, True)
    tp = params_of(tw, tcfg, False)
    img = torch.from_numpy(batch['img']).double()
    shapes = [tuple(int(v) for v in s) for s in batch['img_shape']]
    gts = [(torch.from_numpy(batch['gt_bboxes.%d' % i]), torch.from_numpy(batch['gt_labels.%d' % i]))
           for i in range(2)]
    hold = -1 if mimic else idx
    with torch.no_grad():
        tcls, treg, theld = R.forward(tp, tcfg, img, hold)
        tfeat = R.fpn(tp, tcfg, R.resnet(tp, tcfg, img))
    cls, reg, held = R.forward(p, scfg, img, hold)
    sfeat = R.fpn(p, scfg, R.resnet(p, scfg, img))  # the same graph as forward's (recomputed)
    det, labels = R.gfl_loss(scfg, cls, reg, shapes, gts)
    P = float(sum(int((l >= 0).sum()) for l in labels))
    masks = K.valid_masks(scfg, [(c.shape[2], c.shape[3]) for c in cls], shapes, img.dtype)
    X = list(zip(cls, reg)) if mimic else K.cross_head(tp, tcfg, held, theld, idx)
    if mimic == 'bckd':
        counts = [c.shape[2] * c.shape[3] for c in cls]
        offs = np.cumsum([0] + counts)
        has_pos = [any(bool((lab[offs[l]:offs[l + 1]] >= 0).any()) for lab in labels) for l in range(len(cls))]
        cls_kd, reg_kd = K.bckd_losses(scfg, X, list(zip(tcls, treg)), masks, has_pos, P)
    elif mimic == 'rm_pfi':
        cls_kd, feat_rm = K.rm_pfi_losses(scfg, X, list(zip(tcls, treg)), sfeat, tfeat, shapes, gts)
        reg_kd = cls_kd * 0
    elif mimic == 'ld':
        cls_kd, reg_kd = K.ld_losses(scfg, X, list(zip(tcls, treg)), labels, shapes, gts)
    else:
        cls_kd, reg_kd = K.kd_losses(scfg, X, list(zip(tcls, treg)), masks, P)
    if mimic == 'pkd':  # PKD alone: no prediction KD, the first four levels
        cls_kd, reg_kd = cls_kd * 0, reg_kd * 0
        sfeat, tfeat = sfeat[:4], tfeat[:4]
    feat_kd = K.pkd_loss(sfeat, tfeat, pkd) if pkd else feat_rm if mimic == 'rm_pfi' else cls_kd * 0
    total = det['loss'] + cls_kd + reg_kd + feat_kd
    total.backward()
    exp = {'loss.loss_cls_kd': np.array(float(cls_kd), np.float32).reshape(()),
           'loss.loss_reg_kd': np.array(float(reg_kd), np.float32).reshape(()),
           'loss.loss_feat_kd': np.array(float(feat_kd), np.float32).reshape(()),
           'loss.loss': np.array(float(total), np.float32).reshape(())}
    if name is None and not mimic:  # the paper's Fig. 3 counts at threshold 0.5 (teacher, student's ATSS)
        c, pz = K.conflict_counts(scfg, tcls, labels, masks, 0.5)
        exp['conflict.counts'] = np.array([c, pz], np.float32)
    if not mimic and not pkd:
        for l, (xc, xr) in enumerate(X):
            if l == 0:  # size: P3 holds 3/4 of the positions; the losses and gradients cover it
                continue
            exp['cross.cls.%d' % l] = xc.detach().float().numpy()
            exp['cross.reg.%d' % l] = xr.detach().float().numpy()
    for k, t in p.items():
        if t.requires_grad:
            exp['grad.' + k] = t.grad.float().numpy()
    name = name or ('kd_pm' if mimic else 'kd_i%d' % idx)
    print('%s: P %d, det %.6f, loss_cls_kd %.6f, loss_reg_kd %.6f, loss_feat_kd %.6f' % (
        name, P, float(det['loss']), float(cls_kd), float(reg_kd), float(feat_kd)))
    R.st_write(os.path.join(OUT, name + '.expected.safetensors'), exp)


def run_delta(scfg, sw, tcfg, tw, batch, idx, mimic, name):
    """ATSS (cls, deltas, centerness KD) or RetinaNet (cls, deltas KD) student and teacher."""
    p = params_of(sw, scfg, True)
    tp = params_of(tw, tcfg, False)
    img = torch.from_numpy(batch['img']).double()
    shapes = [tuple(int(v) for v in s) for s in batch['img_shape']]
    gts = [(torch.from_numpy(batch['gt_bboxes.%d' % i]), torch.from_numpy(batch['gt_labels.%d' % i]))
           for i in range(2)]
    hold = -1 if mimic else idx
    tctr, sctr = [], []
    with torch.no_grad():
        tcls, treg, theld = R.forward(tp, tcfg, img, hold, tctr)
    cls, reg, held = R.forward(p, scfg, img, hold, sctr)
    if scfg['head'] == 'fcos':
        ex = {}
        det, labels = RF.fcos_loss(scfg, cls, reg, sctr, shapes, gts, ex)
        P = float(sum(int((l >= 0).sum()) for l in labels))
        X = list(zip(cls, reg)) if mimic else K.cross_head(tp, tcfg, held, theld, idx)
        cls_kd, reg_kd = K.fcos_kd_losses(scfg, X, list(zip(tcls, treg)), ex['D'])
        ctr_kd = cls_kd * 0  # FCOS has no centerness KD (its cross-head centerness is unused)
        X = [x + (None,) for x in X]
    elif scfg['head'] == 'retina':
        det, labels = RR.retina_loss(scfg, cls, reg, shapes, gts)
        P = float(sum(int((l >= 0).sum()) for l in labels))
        lws = RR.targets(scfg, cls, shapes, gts)[3]
        Z = float(sum(max(int((l >= 0).sum()), 1) for l in labels))
        X = list(zip(cls, reg)) if mimic else K.cross_head(tp, tcfg, held, theld, idx)
        cls_kd, reg_kd = K.retina_kd_losses(scfg, X, list(zip(tcls, treg)), lws, Z)
        ctr_kd = cls_kd * 0
        X = [x + (None,) for x in X]
    else:
        det, labels = RA.atss_loss(scfg, cls, reg, sctr, shapes, gts)
        P = float(sum(int((l >= 0).sum()) for l in labels))
        masks = K.valid_masks(scfg, [(c.shape[2], c.shape[3]) for c in cls], shapes, img.dtype)
        X = list(zip(cls, reg, sctr)) if mimic else K.cross_head_atss(tp, tcfg, held, theld, idx)
        cls_kd, reg_kd, ctr_kd = K.atss_kd_losses(scfg, X, list(zip(tcls, treg, tctr)), masks, labels, P)
    total = det['loss'] + cls_kd + reg_kd + ctr_kd
    total.backward()
    if not mimic and scfg['head'] != 'fcos':  # paper Fig. 3 counts at threshold 0.5
        A = R.num_anchors(scfg)
        counts = K.conflict_counts(scfg, tcls, labels, K.valid_masks(
            scfg, [(c.shape[2], c.shape[3]) for c in cls], shapes, img.dtype), 0.5, A, A)
    exp = {'loss.loss_cls_kd': np.array(float(cls_kd), np.float32).reshape(()),
           'loss.loss_reg_kd': np.array(float(reg_kd), np.float32).reshape(()),
           'loss.loss_center_kd': np.array(float(ctr_kd), np.float32).reshape(()),
           'loss.loss_feat_kd': np.array(0.0, np.float32).reshape(()),
           'loss.loss': np.array(float(total), np.float32).reshape(())}
    if not mimic and scfg['head'] != 'fcos':
        exp['conflict.counts'] = np.array(counts, np.float32)
    if not mimic:
        for l, (xc, xr, xt) in enumerate(X):
            if l == 0:
                continue
            exp['cross.cls.%d' % l] = xc.detach().float().numpy()
            exp['cross.reg.%d' % l] = xr.detach().float().numpy()
            if xt is not None:
                exp['cross.ctr.%d' % l] = xt.detach().float().numpy()
    for k, t in p.items():
        if t.requires_grad:
            exp['grad.' + k] = t.grad.float().numpy()
    print('%s: P %d, det %.6f, loss_cls_kd %.6f, loss_reg_kd %.6f, loss_center_kd %.6f' % (
        name, P, float(det['loss']), float(cls_kd), float(reg_kd), float(ctr_kd)))
    R.st_write(os.path.join(OUT, name + '.expected.safetensors'), exp)


def main_atss(batch):
    s = G.base_cfg(head='atss', base=2, stacked=4, gn_groups=2)
    t = ATSS_T
    kd = 'kd_cfg: {method: crosskd, reused_teacher_head_idx: 3}'
    with open(os.path.join(OUT, 'kd_atss_student.yaml'), 'w') as f:
        f.write(G.yaml_of(s, teacher='kd_atss_teacher.yaml', idx=3)
                .replace('tests/unit/model/gen_fixtures.py', 'tests/unit/distill/gen_kd_fixtures.py')
                .replace(kd, kd[:-1] + ', loss_reg_kd: {loss_weight: 1.0}, loss_center_kd: {loss_weight: 1.0}}'))
    with open(os.path.join(OUT, 'kd_atss_teacher.yaml'), 'w') as f:
        f.write(G.yaml_of(t).replace('tests/unit/model/gen_fixtures.py', 'tests/unit/distill/gen_kd_fixtures.py'))
    sw, tw = G.random_weights(s, 31), G.random_weights(t, 32)
    R.st_write(os.path.join(OUT, 'kd_atss_student.weights.safetensors'), sw)
    R.st_write(os.path.join(OUT, 'kd_atss_teacher.weights.safetensors'), tw)
    run_delta(s, sw, t, tw, batch, 3, False, 'kd_atss_i3')
    run_delta(s, sw, t, tw, batch, 3, True, 'kd_atss_pm')


def run_cross_type(scfg, sw, tcfg, tw, batch, idx, name, mimic=False):
    """CrossKD of a GFL student through a teacher of another head type (paper Table 7): the
    cross-head runs the teacher's own head, the KD losses are its type's; Z = P. mimic (ATSS
    teacher only): prediction mimicking, the student's own outputs against the teacher's."""
    p = params_of(sw, scfg, True)
    tp = params_of(tw, tcfg, False)
    img = torch.from_numpy(batch['img']).double()
    shapes = [tuple(int(v) for v in s) for s in batch['img_shape']]
    gts = [(torch.from_numpy(batch['gt_bboxes.%d' % i]), torch.from_numpy(batch['gt_labels.%d' % i]))
           for i in range(2)]
    tctr = [] if tcfg['head'] == 'atss' else None
    hold = -1 if mimic else idx
    with torch.no_grad():
        tcls, treg, theld = R.forward(tp, tcfg, img, hold, tctr)
    cls, reg, held = R.forward(p, scfg, img, hold)
    det, labels = R.gfl_loss(scfg, cls, reg, shapes, gts)
    P = float(sum(int((l >= 0).sum()) for l in labels))
    sizes = [(c.shape[2], c.shape[3]) for c in cls]
    if mimic:
        masks = K.valid_masks(scfg, sizes, shapes, img.dtype)
        X = []
        cls_kd, reg_kd = K.gfl_mimic_atss_kd_losses(scfg, tcfg, list(zip(cls, reg)), list(zip(tcls, treg, tctr)),
                                                    masks, P)
        ctr_kd = cls_kd * 0
    elif tcfg['head'] == 'atss':
        masks = K.valid_masks(scfg, sizes, shapes, img.dtype)
        X = K.cross_head_atss(tp, tcfg, held, theld, idx)
        cls_kd, reg_kd, ctr_kd = K.atss_kd_losses(tcfg, X, list(zip(tcls, treg, tctr)), masks, labels, P)
    else:
        div = tcfg['pad_div']
        lws = [RR.anchors_and_valid(tcfg, sizes, (-(-h // div) * div, -(-w // div) * div))[1] for h, w in shapes]
        X = K.cross_head(tp, tcfg, held, theld, idx)
        cls_kd, reg_kd = K.retina_kd_losses(tcfg, X, list(zip(tcls, treg)), lws, P)
        ctr_kd = cls_kd * 0
    total = det['loss'] + cls_kd + reg_kd + ctr_kd
    total.backward()
    exp = {'loss.loss_cls_kd': np.array(float(cls_kd), np.float32).reshape(()),
           'loss.loss_reg_kd': np.array(float(reg_kd), np.float32).reshape(()),
           'loss.loss_feat_kd': np.array(0.0, np.float32).reshape(()),
           'loss.loss': np.array(float(total), np.float32).reshape(())}
    if not mimic:  # paper Fig. 3 counts at threshold 0.5, per location for the RetinaNet teacher
        exp['conflict.counts'] = np.array(K.conflict_counts(
            tcfg, tcls, labels, K.valid_masks(scfg, sizes, shapes, img.dtype), 0.5, R.num_anchors(tcfg), 1), np.float32)
    if tctr is not None:
        exp['loss.loss_center_kd'] = np.array(float(ctr_kd), np.float32).reshape(())
    for l, x in enumerate(X):
        if l == 0:
            continue
        for t, v in zip(('cls', 'reg', 'ctr'), x):
            exp['cross.%s.%d' % (t, l)] = v.detach().float().numpy()
    for k, t in p.items():
        if t.requires_grad:
            exp['grad.' + k] = t.grad.float().numpy()
    print('%s: P %d, det %.6f, loss_cls_kd %.6f, loss_reg_kd %.6f, loss_center_kd %.6f' % (
        name, P, float(det['loss']), float(cls_kd), float(reg_kd), float(ctr_kd)))
    R.st_write(os.path.join(OUT, name + '.expected.safetensors'), exp)


def main_fcos(batch):
    kw = dict(head='fcos', base=2, stacked=4, gn_groups=2, regress_ranges=[16, 32, 64, 128], w_bbox=1.0,
              nms_iou=0.5)
    s = G.base_cfg(**kw)
    t = G.base_cfg(frozen_stages=-1, **kw)
    kd = 'kd_cfg: {method: crosskd, reused_teacher_head_idx: 2}'
    with open(os.path.join(OUT, 'kd_fcos_student.yaml'), 'w') as f:
        f.write(G.yaml_of(s, teacher='kd_fcos_teacher.yaml', idx=2)
                .replace('tests/unit/model/gen_fixtures.py', 'tests/unit/distill/gen_kd_fixtures.py')
                .replace(kd, kd[:-1] + ', loss_cls_kd: {loss_weight: 0.4}, loss_reg_kd: {loss_weight: 0.75}}'))
    with open(os.path.join(OUT, 'kd_fcos_teacher.yaml'), 'w') as f:
        f.write(G.yaml_of(t).replace('tests/unit/model/gen_fixtures.py', 'tests/unit/distill/gen_kd_fixtures.py'))
    sw, tw = G.random_weights(s, 51), G.random_weights(t, 52)
    R.st_write(os.path.join(OUT, 'kd_fcos_student.weights.safetensors'), sw)
    R.st_write(os.path.join(OUT, 'kd_fcos_teacher.weights.safetensors'), tw)
    run_delta(s, sw, t, tw, batch, 2, False, 'kd_fcos_i2')
    run_delta(s, sw, t, tw, batch, 2, True, 'kd_fcos_pm')


def main_cross_type(batch, s, sw):
    """GFL student (kd_student) with the ATSS and the RetinaNet teachers."""
    for tname, kd in (('atss', ', loss_reg_kd: {loss_weight: 1.0}, loss_center_kd: {loss_weight: 1.0}}'),
                      ('retina', ', loss_reg_kd: {loss_weight: 1.0}}')):
        with open(os.path.join(OUT, 'kd_x_%s_student.yaml' % tname), 'w') as f:
            f.write(G.yaml_of(s, teacher='kd_%s_teacher.yaml' % tname, idx=3)
                    .replace('tests/unit/model/gen_fixtures.py', 'tests/unit/distill/gen_kd_fixtures.py')
                    .replace('reused_teacher_head_idx: 3}', 'reused_teacher_head_idx: 3' + kd))
        tcfg = ATSS_T if tname == 'atss' else RETINA_T
        tw = R.st_read(os.path.join(OUT, 'kd_%s_teacher.weights.safetensors' % tname))
        run_cross_type(s, sw, tcfg, tw, batch, 3, 'kd_x_' + tname)
        if tname == 'atss':
            run_cross_type(s, sw, tcfg, tw, batch, 3, 'kd_x_atss_pm', mimic=True)


def main_retina(batch):
    kw = RETINA_KW
    s = G.base_cfg(**kw)
    t = RETINA_T
    kd = 'kd_cfg: {method: crosskd, reused_teacher_head_idx: 3}'
    with open(os.path.join(OUT, 'kd_retina_student.yaml'), 'w') as f:
        f.write(G.yaml_of(s, teacher='kd_retina_teacher.yaml', idx=3)
                .replace('tests/unit/model/gen_fixtures.py', 'tests/unit/distill/gen_kd_fixtures.py')
                .replace(kd, kd[:-1] + ', loss_reg_kd: {loss_weight: 1.0}}'))
    with open(os.path.join(OUT, 'kd_retina_teacher.yaml'), 'w') as f:
        f.write(G.yaml_of(t).replace('tests/unit/model/gen_fixtures.py', 'tests/unit/distill/gen_kd_fixtures.py'))
    sw, tw = G.random_weights(s, 41), G.random_weights(t, 42)
    R.st_write(os.path.join(OUT, 'kd_retina_student.weights.safetensors'), sw)
    R.st_write(os.path.join(OUT, 'kd_retina_teacher.weights.safetensors'), tw)
    run_delta(s, sw, t, tw, batch, 3, False, 'kd_retina_i3')
    run_delta(s, sw, t, tw, batch, 3, True, 'kd_retina_pm')


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    s = G.base_cfg(base=2, stacked=4)
    t = G.base_cfg(base=2, stacked=4, frozen_stages=-1)
    with open(os.path.join(OUT, 'kd_student.yaml'), 'w') as f:
        f.write(G.yaml_of(s, teacher='kd_teacher.yaml', idx=3).replace('tests/unit/model/gen_fixtures.py',
                                                                         'tests/unit/distill/gen_kd_fixtures.py'))
    with open(os.path.join(OUT, 'kd_teacher.yaml'), 'w') as f:
        f.write(G.yaml_of(t).replace('tests/unit/model/gen_fixtures.py', 'tests/unit/distill/gen_kd_fixtures.py'))
    sw, tw, batch = G.random_weights(s, 21), G.random_weights(t, 22), make_batch()
    R.st_write(os.path.join(OUT, 'kd_student.weights.safetensors'), sw)
    R.st_write(os.path.join(OUT, 'kd_teacher.weights.safetensors'), tw)
    R.st_write(os.path.join(OUT, 'kd.batch.safetensors'), batch)
    for idx in IDXS:
        run(s, sw, t, tw, batch, idx, False)
    run(s, sw, t, tw, batch, 3, True)
    run(s, sw, t, tw, batch, 3, 'pkd', pkd=2.0, name='kd_pkd')
    run(s, sw, t, tw, batch, 3, False, pkd=6.0, name='kd_i3pkd')
    run(s, sw, t, tw, batch, 3, 'bckd', name='kd_bckd')
    run(s, sw, t, tw, batch, 3, 'ld', name='kd_ld')
    run(s, sw, t, tw, batch, 3, 'rm_pfi', name='kd_rm_pfi')
    main_atss(batch)
    main_retina(batch)
    main_cross_type(batch, s, sw)
    main_fcos(batch)


if __name__ == '__main__':
    main()
