/* test_crosskd.c — the pieces CrossKD is built from (crosskd.md §4), end to end against the
 * PyTorch reference: the student keeps the post-ReLU output of head block idx per level and
 * tower, the teacher is an inference-mode model holding the same, and the cross-head is
 *   align_scale(student held; teacher statistics) -> ReLU -> teacher blocks idx.. and
 *   prediction conv (+ teacher Scale)   [kd_head_tower_fwd with the teacher's parameters]
 * A synthetic KD loss sum(cross * kdw) (fixture weights) is back-propagated through the
 * teacher layers with no parameter gradients (kd_head_tower_bwd, with_param_grads = 0),
 * ReLU and align_scale into the student's held-feature gradient (m->d_held, use_d_held),
 * and added to the detection loss's backward. Every student gradient must match the
 * reference's kdgrad.* (same tolerance as test_fixture.c's grads: rtol 2e-3, atol 1e-3 of
 * the tensor's max), and the cross-head outputs match cross.* on levels 0..3.
 * This file is also the worked example of the API for the distillation module.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_test.h"
#include "proto/log.h"
#include "worker/model/model.h"
#include "worker/options.h"

static const char *dir;

static void crosskd_gradients(void)
{
    static kd_config sc, tc;
    kd_err err;
    char p[1024];
    snprintf(p, sizeof p, "%s/r18.yaml", dir);
    KD_REQUIRE(kd_options_load(&sc, p, NULL, 0, &err) == KD_OK);
    snprintf(p, sizeof p, "%s/r50t.yaml", dir);
    KD_REQUIRE(kd_options_load(&tc, p, NULL, 0, &err) == KD_OK);
    const kd_backend *be;
    KD_REQUIRE(kd_backend_open("cpu", 0, &be, &err) == KD_OK);
    kd_tfile batch, ref;
    snprintf(p, sizeof p, "%s/r18.batch.safetensors", dir);
    KD_REQUIRE(kd_tfile_read(p, &batch, &err) == KD_OK);
    snprintf(p, sizeof p, "%s/r18.expected.safetensors", dir);
    KD_REQUIRE(kd_tfile_read(p, &ref, &err) == KD_OK);
    const kd_tf_tensor *img = kd_tfile_get(&batch, "img");
    int N = (int)img->shape[0], H = (int)img->shape[2], W = (int)img->shape[3];
    int idx = (int)sc.model.kd_cfg.reused_teacher_head_idx;
    kd_model_opts so = {N, H, W, 0, idx}, to = {N, H, W, 1, idx};
    kd_model *st, *te;
    KD_REQUIRE(kd_model_create(be, &sc.model, &so, &st, &err) == KD_OK);
    KD_REQUIRE(kd_model_create(be, &tc.model, &to, &te, &err) == KD_OK);
    snprintf(p, sizeof p, "%s/r18.weights.safetensors", dir);
    KD_REQUIRE(kd_model_load(st, p, &err) == KD_OK);
    snprintf(p, sizeof p, "%s/r50t.weights.safetensors", dir);
    KD_REQUIRE(kd_model_load(te, p, &err) == KD_OK);
    float *dimg = be->alloc(be, img->bytes);
    be->copy_from_host(be, dimg, img->data, img->bytes);
    KD_REQUIRE(kd_model_forward(te, dimg, N, H, W, &err) == KD_OK);
    KD_REQUIRE(kd_model_forward(st, dimg, N, H, W, &err) == KD_OK);

    double worst_cross = 0;
    for (int l = 0; l < kd_model_num_levels(st); l++)
        for (int t = 0; t < 2; t++) {
            kd_shape hs = idx == 0 ? st->fpn.out_s[l] : st->lvl_s[l];
            size_t e = kd_shape_elems(hs);
            int C = hs.c;
            float *al = be->alloc(be, e * 4), *dal = be->alloc(be, e * 4);
            float *s0 = be->alloc(be, e * 4), *s1 = be->alloc(be, e * 4);
            float *stats = be->alloc(be, (size_t)C * 4 * 4);
            float *mt = stats, *sdt = stats + C, *mx = stats + 2 * C, *sx = stats + 3 * C;
            be->channel_stats(be, hs, te->held[l][t], mt, sdt);
            be->align_scale_fwd(be, hs, st->held[l][t], mt, sdt, al, mx, sx);
            if (idx > 0) be->relu_fwd(be, e, al, al);
            size_t ae = kd_head_tower_acts_elems(&te->head, hs, idx);
            float *abuf = be->alloc(be, ae * 4);
            kd_head_tower_acts acts;
            kd_head_tower_acts_bind(&te->head, hs, idx, abuf, &acts);
            int PC = t == KD_TOWER_CLS ? te->head.K : 4 * (te->head.R + 1);
            size_t pe = (size_t)hs.n * PC * hs.h * hs.w;
            float *pred = be->alloc(be, pe * 4), *dpred = be->alloc(be, pe * 4);
            kd_head_tower_fwd(be, &te->head, &te->params, t, l, idx, hs, al, &acts, pred, NULL);
            char k[64];
            snprintf(k, sizeof k, "cross.%s.%d", t ? "reg" : "cls", l);
            const kd_tf_tensor *rc = kd_tfile_get(&ref, k);
            KD_REQUIRE(rc && kd_tf_elems(rc) == pe);
            float *hp = malloc(pe * 4);
            be->copy_to_host(be, hp, pred, pe * 4);
            if (l < kd_model_num_levels(st) - 1)
                for (size_t i = 0; i < pe; i++)
                    worst_cross = fmax(worst_cross, fabs(hp[i] - ((float *)rc->data)[i]) /
                                                        (0.1 + fabs(((float *)rc->data)[i])));
            free(hp);
            snprintf(k, sizeof k, "kdw.%s.%d", t ? "reg" : "cls", l);
            const kd_tf_tensor *kw = kd_tfile_get(&ref, k);
            KD_REQUIRE(kw && kd_tf_elems(kw) == pe);
            be->copy_from_host(be, dpred, kw->data, pe * 4);
            /* teacher layers: input gradient only */
            kd_head_tower_bwd(be, &te->head, &te->params, t, l, idx, hs, al, &acts, dpred, NULL, dal,
                              0, 0, -1, NULL, s0, s1);
            if (idx > 0) be->relu_bwd(be, e, al, dal, dal, 0);
            be->align_scale_bwd(be, hs, st->held[l][t], mx, sx, sdt, dal, st->d_held[l][t], 0);
            be->free(be, pred);
            be->free(be, dpred);
            be->free(be, abuf);
            be->free(be, stats);
            be->free(be, s0);
            be->free(be, s1);
            be->free(be, al);
            be->free(be, dal);
        }
    fprintf(stderr, "cross-head outputs within %.3g of (0.1 + |ref|) (levels 0..3)\n", worst_cross);
    KD_EXPECT(worst_cross < 3e-4); /* align_scale amplifies float32 rounding; reached 3.5e-5 */

    const kd_tf_tensor *bimg;
    kd_image_gt *gts;
    KD_REQUIRE(kd_batch_file_gts(&batch, "the batch file", &bimg, &gts, &err) == KD_OK);
    kd_det_loss *ls = kd_det_loss_create(st);
    kd_det_loss_stats stats;
    KD_REQUIRE(kd_det_loss_prepare(ls, st, gts, &stats, &err) == KD_OK);
    double P, Wn;
    kd_det_loss_normalisers(&stats, 1, &P, &Wn);
    kd_det_losses lo;
    kd_det_loss_compute(ls, st, P, Wn, 1.0, &lo);
    st->use_d_held = 1;
    kd_model_zero_grad(st);
    kd_model_backward(st);

    const kd_params *Pm = &st->params;
    float *gh = malloc(Pm->train_elems * 4);
    be->copy_to_host(be, gh, Pm->grad, Pm->train_elems * 4);
    double worst = 0;
    int checked = 0;
    for (int i = 0; i < Pm->n; i++) {
        if (!Pm->p[i].trainable) continue;
        char k[160];
        snprintf(k, sizeof k, "kdgrad.%s", Pm->p[i].name);
        const kd_tf_tensor *r = kd_tfile_get(&ref, k);
        KD_EXPECT_MSG(r && kd_tf_elems(r) == Pm->p[i].elems, "%s", k);
        if (!r || kd_tf_elems(r) != Pm->p[i].elems) continue;
        const float *rv = r->data, *cv = gh + Pm->p[i].offset;
        double mx = 0;
        for (size_t j = 0; j < Pm->p[i].elems; j++) mx = fmax(mx, fabs(rv[j]));
        int bad = 0;
        for (size_t j = 0; j < Pm->p[i].elems; j++) {
            double d = fabs((double)cv[j] - rv[j]);
            if (!(d <= 1e-3 * mx + 2e-3 * fabs(rv[j]))) bad++;
            worst = fmax(worst, d / (mx > 0 ? mx : 1));
        }
        KD_EXPECT_MSG(bad == 0, "%s: %d elements off", k, bad);
        checked++;
    }
    fprintf(stderr, "%d student gradients with the CrossKD path, worst %.3g of max |ref|\n", checked, worst);
    KD_EXPECT(checked > 50);
    free(gh);
    kd_det_loss_destroy(ls);
    be->free(be, dimg);
    free(gts);
    kd_tfile_free(&batch);
    kd_tfile_free(&ref);
    kd_model_destroy(st);
    kd_model_destroy(te);
    be->close(be);
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    dir = argv[1];
    kd_log_init(0);
    kd_log_set_level(KD_LOG_WARN);
    KD_TEST_RUN(crosskd_gradients);
    return kd_test_summary();
}
