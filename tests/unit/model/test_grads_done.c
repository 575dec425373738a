/* test_grads_done.c — the backward's gradient-ready notifications (kd_model.grads_done), which
 * start the all-reduce buckets while the backward goes on (worker/grad_sync.h): on the r50
 * fixture (every stage trainable) and again with frozen_stages=1, one real training step
 * records, at each notification, the gradients [lo, end) it declares final; at the end of the
 * backward they must be exactly what was recorded (nothing is added to a range after it was
 * declared final), lo must only go down, the first must be the head's start and there must
 * be one per trainable backbone block besides the head's and the neck's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_test.h"
#include "worker/model/model.h"
#include "worker/options.h"

static const char *dir;

#define MAX_CALLS 64
typedef struct record {
    const kd_model *m;
    int n;
    size_t lo[MAX_CALLS];
    float *snap[MAX_CALLS];
} record;

static void on_done(void *ctx, size_t lo)
{
    record *r = ctx;
    KD_EXPECT(r->n < MAX_CALLS);
    if (r->n >= MAX_CALLS) return;
    const kd_params *P = &r->m->params;
    size_t n = P->train_elems - lo;
    r->snap[r->n] = malloc((n + 1) * sizeof(float));
    r->m->be->copy_to_host(r->m->be, r->snap[r->n], P->grad + lo, n * sizeof(float));
    r->lo[r->n++] = lo;
}

static int trainable_blocks(const kd_model *m)
{
    int k = 0;
    for (int i = 0; i < m->bb.n_blk; i++) k += !m->bb.blk[i].frozen;
    return k;
}

static void step(const char *set)
{
    static kd_config cfg;
    kd_err err;
    char p[1024];
    snprintf(p, sizeof p, "%s/r50.yaml", dir);
    const char *sets[1] = {set};
    KD_REQUIRE(kd_options_load(&cfg, p, sets, set ? 1 : 0, &err) == KD_OK);
    const kd_backend *be;
    KD_REQUIRE(kd_backend_open("cpu", 0, &be, &err) == KD_OK);
    kd_tfile batch;
    snprintf(p, sizeof p, "%s/r50.batch.safetensors", dir);
    KD_REQUIRE(kd_tfile_read(p, &batch, &err) == KD_OK);
    const kd_tf_tensor *img;
    kd_image_gt *gts;
    KD_REQUIRE(kd_batch_file_gts(&batch, p, &img, &gts, &err) == KD_OK);
    int N = (int)img->shape[0], H = (int)img->shape[2], W = (int)img->shape[3];
    KD_REQUIRE(N == 2);
    kd_model *m;
    kd_model_opts o = {N, H, W, 0, -1};
    KD_REQUIRE(kd_model_create(be, &cfg.model, &o, &m, &err) == KD_OK);
    snprintf(p, sizeof p, "%s/r50.weights.safetensors", dir);
    KD_REQUIRE(kd_model_load(m, p, &err) == KD_OK);
    float *dimg = be->alloc(be, img->bytes);
    be->copy_from_host(be, dimg, img->data, img->bytes);
    KD_REQUIRE(kd_model_forward(m, dimg, N, H, W, &err) == KD_OK);
    kd_gfl_loss *ls = kd_gfl_loss_create(m);
    kd_gfl_loss_stats st;
    KD_REQUIRE(kd_gfl_loss_prepare(ls, m, gts, &st, &err) == KD_OK);
    double P, Wn;
    kd_gfl_loss_normalisers(&st, 1, &P, &Wn);
    kd_gfl_losses L;
    kd_gfl_loss_compute(ls, m, P, Wn, 1.0, &L);

    record r = {.m = m};
    m->grads_done = on_done;
    m->grads_done_ctx = &r;
    kd_model_zero_grad(m);
    kd_model_backward(m);

    const kd_params *Pm = &m->params;
    float *final = malloc((Pm->train_elems + 1) * sizeof(float));
    be->copy_to_host(be, final, Pm->grad, Pm->train_elems * sizeof(float));
    KD_EXPECT(r.n == 2 + trainable_blocks(m));
    KD_EXPECT(r.n > 0 && r.lo[0] == m->grad_lo_head && m->grad_lo_head > 0);
    KD_EXPECT(m->grad_lo_neck < m->grad_lo_head);
    size_t nonzero = 0;
    for (int i = 0; i < r.n; i++) {
        if (i) KD_EXPECT_MSG(r.lo[i] <= r.lo[i - 1], "notification %d: lo %zu after %zu", i, r.lo[i], r.lo[i - 1]);
        size_t n = Pm->train_elems - r.lo[i];
        KD_EXPECT_MSG(memcmp(r.snap[i], final + r.lo[i], n * sizeof(float)) == 0,
                      "notification %d (lo %zu): the range changed after it was declared final", i, r.lo[i]);
        for (size_t k = 0; k < n; k++) nonzero += r.snap[i][k] != 0.0f;
        free(r.snap[i]);
    }
    KD_EXPECT(nonzero > 0);
    free(final);
    kd_gfl_loss_destroy(ls);
    be->free(be, dimg);
    kd_model_destroy(m);
    free(gts);
    kd_tfile_free(&batch);
    be->close(be);
}

static void all_trainable(void) { step(NULL); }
static void frozen_stem_and_stage1(void) { step("model.backbone.frozen_stages=1"); }

int main(int argc, char **argv)
{
    dir = argc > 1 ? argv[1] : "tests/fixtures/model";
    KD_TEST_RUN(all_trainable);
    KD_TEST_RUN(frozen_stem_and_stage1);
    return kd_test_summary();
}
