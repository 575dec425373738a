/* kd_giou.h — 1 - GIoU of two xyxy boxes with its gradient in the first, written once for
 * the detection losses (worker/model: GFL's and ATSS's box loss) and the distillation losses
 * (worker/distill: GIoU box KD, BCKD's localisation KD), host and device (KD_HD, kd_math.h).
 *
 * MMDetection's GIoULoss with eps 1e-6 on the union and the enclosing area. The gradient is
 * PyTorch's autograd of that formula: min/max ties split the gradient in half; the clamps
 * (intersection and enclosing extents at 0, union and enclosing area at eps) pass the gradient
 * where the clamped value is >= the bound, and none where it was raised to it.
 */
#ifndef KD_KERNELS_KD_GIOU_H
#define KD_KERNELS_KD_GIOU_H

#include "kernels/kd_math.h"

/* Weight of the gradient of max(a, b) (want_max) or min(a, b) that reaches a: 1 if a is the
 * one taken, 0 if b is, 1/2 on a tie. */
KD_HD float kd_minmax_share(float a, float b, int want_max)
{
    if (a == b) return 0.5f;
    return want_max ? (float)(a > b) : (float)(a < b);
}

/* 1 - GIoU(p, t); dp[0..3] = d(1 - GIoU)/dp (t is constant). */
KD_HD float kd_giou_elem(const float *p, const float *t, float *dp)
{
    const float eps = 1e-6f;
    float ap = (p[2] - p[0]) * (p[3] - p[1]), at = (t[2] - t[0]) * (t[3] - t[1]);
    float wx = fminf(p[2], t[2]) - fmaxf(p[0], t[0]), wy = fminf(p[3], t[3]) - fmaxf(p[1], t[1]);
    float cwx = fmaxf(wx, 0.0f), cwy = fmaxf(wy, 0.0f);
    float ov = cwx * cwy, un_raw = ap + at - ov, un = fmaxf(un_raw, eps);
    float ewx = fmaxf(p[2], t[2]) - fminf(p[0], t[0]), ewy = fmaxf(p[3], t[3]) - fminf(p[1], t[1]);
    float cex = fmaxf(ewx, 0.0f), cey = fmaxf(ewy, 0.0f);
    float en_raw = cex * cey, en = fmaxf(en_raw, eps);
    float giou = ov / un - (en - un) / en;
    /* L = 1 - giou: dL/dov = -1/un, dL/dun = ov/un^2 - 1/en, dL/den = un/en^2; un = ap + at - ov */
    float dun = un_raw < eps ? 0.0f : ov / (un * un) - 1.0f / en;
    float den = en_raw < eps ? 0.0f : un / (en * en);
    float dov = -1.0f / un - dun, dap = dun;
    float dwx = wx >= 0.0f ? dov * cwy : 0.0f, dwy = wy >= 0.0f ? dov * cwx : 0.0f;
    float dewx = ewx >= 0.0f ? den * cey : 0.0f, dewy = ewy >= 0.0f ? den * cex : 0.0f;
    dp[0] = -dap * (p[3] - p[1]) - dwx * kd_minmax_share(p[0], t[0], 1) - dewx * kd_minmax_share(p[0], t[0], 0);
    dp[2] = dap * (p[3] - p[1]) + dwx * kd_minmax_share(p[2], t[2], 0) + dewx * kd_minmax_share(p[2], t[2], 1);
    dp[1] = -dap * (p[2] - p[0]) - dwy * kd_minmax_share(p[1], t[1], 1) - dewy * kd_minmax_share(p[1], t[1], 0);
    dp[3] = dap * (p[2] - p[0]) + dwy * kd_minmax_share(p[3], t[3], 0) + dewy * kd_minmax_share(p[3], t[3], 1);
    return 1.0f - giou;
}

#endif
