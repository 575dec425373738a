/* loader.c — batch building and the loader thread pool (see loader.h).
 *
 * Pool: n_slots = num_workers + prefetch_batches batch buffers, each FREE, BUSY (a worker
 * fills it), READY or HANDED (the consumer holds it). Workers claim batch numbers in
 * order, at most n_slots ahead of the consumer, and copy the batch's indices under the lock,
 * so the sampler can move to another epoch at any time. A generation counter, bumped by
 * kd_loader_start, discards batches of a previous start. Buffers grow to the largest batch
 * seen and are never freed before kd_loader_destroy.
 */
#include "worker/data/loader.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/log.h"
#include "worker/data/image_decode.h"
#include "worker/data/transform.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---- one batch ---------------------------------------------------------------------- */

struct kd_loader_ctx {
    kd_data_cfg cfg;
    const kd_coco_index *idx;
    char prefix[2 * KD_DATA_PATH_BYTES];
    kd_image_decoder dec;
    kd_transform_ws ws;
    kd_image *imgs;   /* [batch_size] decoded images */
    int32_t *ok;      /* [batch_size] 1 decoded, 0 replaced */
    uint32_t *keep;   /* [batch_size] dataset indices kept */
};

kd_status kd_loader_ctx_create(const kd_data_cfg *cfg, const kd_coco_index *idx, kd_loader_ctx **out, kd_err *err)
{
    kd_loader_ctx *c = calloc(1, sizeof *c);
    if (!c) return kd_errf(err, KD_ENOMEM, "loader: out of memory");
    c->cfg = *cfg;
    c->idx = idx;
    kd_data_path_join(cfg, cfg->img_prefix, c->prefix, sizeof c->prefix);
    size_t pl = strlen(c->prefix);
    if (pl && c->prefix[pl - 1] != '/' && pl + 1 < sizeof c->prefix) strcat(c->prefix, "/");
    kd_status st = kd_image_decoder_init(&c->dec, err);
    c->imgs = calloc((size_t)cfg->batch_size, sizeof *c->imgs);
    c->ok = calloc((size_t)cfg->batch_size, sizeof *c->ok);
    c->keep = calloc((size_t)cfg->batch_size, sizeof *c->keep);
    if (st || !c->imgs || !c->ok || !c->keep) {
        kd_loader_ctx_destroy(c);
        return st ? st : kd_errf(err, KD_ENOMEM, "loader: out of memory");
    }
    *out = c;
    return KD_OK;
}

void kd_loader_ctx_destroy(kd_loader_ctx *c)
{
    if (!c) return;
    if (c->imgs)
        for (int32_t i = 0; i < c->cfg.batch_size; i++) kd_image_free(&c->imgs[i]);
    free(c->imgs), free(c->ok), free(c->keep);
    kd_image_decoder_free(&c->dec);
    kd_transform_ws_free(&c->ws);
    free(c);
}

void kd_batch_free(kd_batch *b)
{
    free(b->img), free(b->meta), free(b->gt_boxes), free(b->gt_labels), free(b->ig_boxes), free(b->ig_labels);
    memset(b, 0, sizeof *b);
}

static void batch_reserve(kd_batch *b, int32_t batch_size, size_t img_elems, size_t boxes)
{
    if (!b->meta) b->meta = kd_xcalloc((size_t)batch_size, sizeof *b->meta);
    if (img_elems > b->img_cap_elems) {
        free(b->img);
        b->img = kd_xmalloc(img_elems * sizeof(float));
        b->img_cap_elems = img_elems;
    }
    if (boxes > b->box_cap_elems || !b->gt_boxes) {
        size_t nb = boxes < 64 ? 64 : boxes;
        b->gt_boxes = kd_xrealloc(b->gt_boxes, nb * 4 * sizeof(float));
        b->ig_boxes = kd_xrealloc(b->ig_boxes, nb * 4 * sizeof(float));
        b->gt_labels = kd_xrealloc(b->gt_labels, nb * sizeof(int32_t));
        b->ig_labels = kd_xrealloc(b->ig_labels, nb * sizeof(int32_t));
        b->box_cap_elems = nb;
    }
}

void kd_loader_build_batch(kd_loader_ctx *c, const uint32_t *indices, uint32_t count, int64_t epoch, kd_batch *b)
{
    double t0 = now_s();
    const kd_data_cfg *cfg = &c->cfg;
    const kd_coco_index *x = c->idx;
    uint32_t n = 0, n_bad = 0;
    size_t boxes = 0;
    char path[3 * KD_DATA_PATH_BYTES];
    if (count > (uint32_t)cfg->batch_size) count = (uint32_t)cfg->batch_size;
    /* decode */
    for (uint32_t k = 0; k < count; k++) {
        uint32_t i = indices[k];
        const kd_coco_index_image *im = &x->images[i];
        snprintf(path, sizeof path, "%s%s", c->prefix, kd_coco_index_file_name(x, i));
        kd_err e = {0};
        kd_image *img = &c->imgs[n];
        if (kd_image_read(&c->dec, path, img, &e) == KD_OK) {
            if (img->w != im->width || img->h != im->height)
                KD_WARN("data: %s: decoded size %dx%d differs from the annotation file's %dx%d; using the decoded size",
                        path, img->w, img->h, im->width, im->height);
            c->ok[n] = 1;
        } else {
            n_bad++;
            KD_WARN("data: bad image, %s: %s", cfg->on_bad_image == KD_BAD_IMAGE_SKIP ? "skipped" : "replaced", e.msg);
            if (cfg->on_bad_image == KD_BAD_IMAGE_SKIP) continue;
            img->w = im->width;
            img->h = im->height;
            c->ok[n] = 0;
        }
        c->keep[n++] = i;
        if (c->ok[n - 1]) boxes += im->n_boxes;
    }
    /* shapes */
    int32_t maxh = 0, maxw = 0;
    batch_reserve(b, cfg->batch_size, 0, boxes);
    for (uint32_t k = 0; k < n; k++) {
        kd_batch_image *m = &b->meta[k];
        const kd_image *img = &c->imgs[k];
        memset(m, 0, sizeof *m);
        m->index = c->keep[k];
        m->image_id = x->images[m->index].id;
        m->ori_w = img->w;
        m->ori_h = img->h;
        kd_resize_shape(img->w, img->h, cfg->scale_w, cfg->scale_h, &m->img_w, &m->img_h, &m->scale_w, &m->scale_h);
        m->flip = cfg->flip_prob > 0 && kd_sample_uniform(cfg->seed, epoch, m->index, 1) < (double)cfg->flip_prob;
        m->replaced = !c->ok[k];
        if (m->img_h > maxh) maxh = m->img_h;
        if (m->img_w > maxw) maxw = m->img_w;
    }
    int32_t H = n ? kd_pad_to(maxh, cfg->pad_divisor) : 0, W = n ? kd_pad_to(maxw, cfg->pad_divisor) : 0;
    size_t plane = (size_t)H * W;
    batch_reserve(b, cfg->batch_size, plane * 3 * n, boxes);
    b->n = (int32_t)n;
    b->H = H;
    b->W = W;
    b->n_gt = b->n_ig = 0;
    for (uint32_t k = 0; k < n; k++) {
        kd_batch_image *m = &b->meta[k];
        float *dst = b->img + plane * 3 * k;
        /* zero the padding (and the whole image when it is a stand-in) */
        for (int ch = 0; ch < 3; ch++) {
            float *p = dst + plane * ch;
            int32_t rows = m->replaced ? 0 : m->img_h, cols = m->replaced ? 0 : m->img_w;
            for (int32_t y = 0; y < rows; y++) memset(p + (size_t)y * W + cols, 0, (size_t)(W - cols) * sizeof(float));
            memset(p + (size_t)rows * W, 0, (size_t)(H - rows) * W * sizeof(float));
        }
        m->gt_begin = b->n_gt;
        m->ig_begin = b->n_ig;
        if (m->replaced) continue;
        kd_transform_image(&c->ws, c->imgs[k].bgr, m->ori_w, m->ori_h, m->img_w, m->img_h, m->flip, cfg->to_rgb,
                           cfg->mean, cfg->std, dst, (size_t)W, plane);
        const kd_coco_index_image *im = &x->images[m->index];
        for (uint32_t j = 0; j < im->n_boxes; j++) {
            uint32_t bi = im->box_begin + j;
            int ign = x->ignore[bi];
            float *out = ign ? b->ig_boxes + 4 * (size_t)b->n_ig : b->gt_boxes + 4 * (size_t)b->n_gt;
            kd_transform_boxes(x->boxes + 4 * (size_t)bi, 1, m->scale_w, m->scale_h, m->img_w, m->img_h, m->flip, out);
            if (ign) b->ig_labels[b->n_ig++] = x->labels[bi];
            else b->gt_labels[b->n_gt++] = x->labels[bi];
        }
        m->n_gt = b->n_gt - m->gt_begin;
        m->n_ig = b->n_ig - m->ig_begin;
    }
    b->epoch = epoch;
    b->n_bad = n_bad;
    b->build_seconds = now_s() - t0;
}

/* ---- the pool ----------------------------------------------------------------------- */

enum { SLOT_FREE, SLOT_BUSY, SLOT_READY, SLOT_HANDED };

typedef struct slot {
    kd_batch b;
    int state;
    uint32_t batch_no;
    uint64_t gen;
    uint32_t *indices; /* [batch_size] */
    uint32_t count;
} slot;

struct kd_loader {
    kd_data_cfg cfg;
    const kd_coco_index *idx;
    kd_sampler sampler;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, ready_cv;
    slot *slots;
    int n_slots;
    pthread_t *threads;
    kd_loader_ctx **ctx; /* [max(1, num_workers)] */
    int n_threads;
    int stop;
    uint64_t gen;
    int64_t epoch;
    uint32_t next_produce, next_consume;
    int handed; /* slot index held by the consumer, or -1 */
    kd_loader_stats stats;
    kd_loader_stats since_start; /* for the end-of-epoch log line */
    double wait_max;
    int logged;
};

static int claim(kd_loader *l)
{
    if (l->next_produce >= l->sampler.n_batches || l->next_produce >= l->next_consume + (uint32_t)l->n_slots) return -1;
    for (int s = 0; s < l->n_slots; s++)
        if (l->slots[s].state == SLOT_FREE) {
            slot *sl = &l->slots[s];
            const uint32_t *ix = kd_sampler_batch(&l->sampler, l->next_produce, &sl->count);
            memcpy(sl->indices, ix, sl->count * sizeof *ix);
            sl->batch_no = l->next_produce++;
            sl->gen = l->gen;
            sl->state = SLOT_BUSY;
            return s;
        }
    return -1;
}

static void *worker_main(void *arg)
{
    void **a = arg;
    kd_loader *l = a[0];
    kd_loader_ctx *ctx = a[1];
    free(arg);
    pthread_mutex_lock(&l->mu);
    for (;;) {
        int s = -1;
        while (!l->stop && (s = claim(l)) < 0) pthread_cond_wait(&l->work_cv, &l->mu);
        if (l->stop) break;
        slot *sl = &l->slots[s];
        int64_t epoch = l->epoch;
        pthread_mutex_unlock(&l->mu);
        kd_loader_build_batch(ctx, sl->indices, sl->count, epoch, &sl->b);
        pthread_mutex_lock(&l->mu);
        sl->b.batch_index = sl->batch_no;
        sl->state = sl->gen == l->gen ? SLOT_READY : SLOT_FREE;
        pthread_cond_broadcast(&l->ready_cv);
        pthread_cond_broadcast(&l->work_cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

kd_status kd_loader_create(const kd_data_cfg *cfg, const kd_coco_index *idx, uint32_t world, uint32_t rank,
                           kd_loader **out, kd_err *err)
{
    kd_status st = kd_data_cfg_check(cfg, err);
    if (st) return st;
    kd_loader *l = calloc(1, sizeof *l);
    if (!l) return kd_errf(err, KD_ENOMEM, "loader: out of memory");
    l->cfg = *cfg;
    l->idx = idx;
    l->handed = -1;
    uint8_t *portrait = malloc(idx->n_images ? idx->n_images : 1);
    if (!portrait) { free(l); return kd_errf(err, KD_ENOMEM, "loader: out of memory"); }
    for (uint32_t i = 0; i < idx->n_images; i++) portrait[i] = idx->images[i].width < idx->images[i].height;
    st = kd_sampler_init(&l->sampler, idx->n_images, world, rank, (uint32_t)cfg->batch_size, cfg->seed, cfg->shuffle,
                         cfg->group_by_aspect, cfg->drop_last, portrait, err);
    free(portrait);
    if (st) { free(l); return st; }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work_cv, NULL);
    pthread_cond_init(&l->ready_cv, NULL);
    l->n_threads = cfg->num_workers;
    l->n_slots = cfg->num_workers + cfg->prefetch_batches;
    if (l->n_slots < 1) l->n_slots = 1;
    l->slots = kd_xcalloc((size_t)l->n_slots, sizeof *l->slots);
    for (int s = 0; s < l->n_slots; s++) l->slots[s].indices = kd_xcalloc((size_t)cfg->batch_size, sizeof(uint32_t));
    int n_ctx = l->n_threads > 0 ? l->n_threads : 1;
    l->ctx = kd_xcalloc((size_t)n_ctx, sizeof *l->ctx);
    for (int t = 0; t < n_ctx; t++)
        if ((st = kd_loader_ctx_create(cfg, idx, &l->ctx[t], err))) {
            kd_loader_destroy(l);
            return st;
        }
    l->epoch = -1;
    l->threads = kd_xcalloc((size_t)(l->n_threads ? l->n_threads : 1), sizeof *l->threads);
    for (int t = 0; t < l->n_threads; t++) {
        void **arg = kd_xmalloc(2 * sizeof(void *));
        arg[0] = l, arg[1] = l->ctx[t];
        if (pthread_create(&l->threads[t], NULL, worker_main, arg)) {
            free(arg);
            l->n_threads = t;
            kd_loader_destroy(l);
            return kd_errf(err, KD_ENOMEM, "loader: cannot start thread %d", t);
        }
    }
    *out = l;
    return KD_OK;
}

void kd_loader_destroy(kd_loader *l)
{
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    for (int t = 0; t < l->n_threads; t++) pthread_join(l->threads[t], NULL);
    int n_ctx = l->cfg.num_workers > 0 ? l->cfg.num_workers : 1;
    if (l->ctx)
        for (int t = 0; t < n_ctx; t++) kd_loader_ctx_destroy(l->ctx[t]);
    if (l->slots)
        for (int s = 0; s < l->n_slots; s++) {
            kd_batch_free(&l->slots[s].b);
            free(l->slots[s].indices);
        }
    free(l->slots), free(l->ctx), free(l->threads);
    kd_sampler_free(&l->sampler);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->ready_cv);
    free(l);
}

uint32_t kd_loader_num_batches(const kd_loader *l)
{
    uint32_t ns = kd_sampler_num_samples(&l->sampler), bs = (uint32_t)l->cfg.batch_size;
    return l->cfg.drop_last ? ns / bs : (ns + bs - 1) / bs;
}

void kd_loader_start(kd_loader *l, kd_sampler_cursor at)
{
    pthread_mutex_lock(&l->mu);
    l->gen++;
    for (int s = 0; s < l->n_slots; s++)
        if (l->slots[s].state == SLOT_READY || l->slots[s].state == SLOT_HANDED) l->slots[s].state = SLOT_FREE;
    l->handed = -1;
    if (l->sampler.epoch != at.epoch) kd_sampler_set_epoch(&l->sampler, at.epoch);
    l->epoch = at.epoch;
    l->next_produce = l->next_consume = at.batch < l->sampler.n_batches ? at.batch : l->sampler.n_batches;
    memset(&l->since_start, 0, sizeof l->since_start);
    l->wait_max = 0;
    l->logged = 0;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
}

kd_status kd_loader_next(kd_loader *l, const kd_batch **out, double *wait_seconds)
{
    double t0 = now_s();
    *out = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->handed >= 0) {
        l->slots[l->handed].state = SLOT_FREE;
        l->handed = -1;
        pthread_cond_broadcast(&l->work_cv);
    }
    if (l->epoch < 0 || l->next_consume >= l->sampler.n_batches) {
        if (l->epoch >= 0 && !l->logged && l->since_start.batches) {
            const kd_loader_stats *s = &l->since_start;
            KD_INFO("data: epoch %lld: %llu batches, %llu images, data_time mean %.2f ms max %.2f ms, "
                    "build %.2f ms/batch on %d threads, %llu bad images",
                    (long long)l->epoch, (unsigned long long)s->batches, (unsigned long long)s->images,
                    1e3 * s->wait_seconds / (double)s->batches, 1e3 * l->wait_max,
                    1e3 * s->build_seconds / (double)s->batches, l->n_threads, (unsigned long long)s->bad_images);
            l->logged = 1;
        }
        pthread_mutex_unlock(&l->mu);
        if (wait_seconds) *wait_seconds = 0;
        return KD_ENOTFOUND;
    }
    int found = -1;
    for (;;) {
        for (int s = 0; s < l->n_slots; s++)
            if (l->slots[s].state == SLOT_READY && l->slots[s].gen == l->gen && l->slots[s].batch_no == l->next_consume)
                found = s;
        if (found >= 0) break;
        if (l->n_threads == 0) { /* synchronous: build it here */
            int s = claim(l);
            KD_CHECK(s >= 0, "loader: no free slot in synchronous mode");
            slot *sl = &l->slots[s];
            pthread_mutex_unlock(&l->mu);
            kd_loader_build_batch(l->ctx[0], sl->indices, sl->count, l->epoch, &sl->b);
            pthread_mutex_lock(&l->mu);
            sl->b.batch_index = sl->batch_no;
            sl->state = SLOT_READY;
            continue;
        }
        pthread_cond_wait(&l->ready_cv, &l->mu);
    }
    slot *sl = &l->slots[found];
    sl->state = SLOT_HANDED;
    l->handed = found;
    l->next_consume++;
    double w = now_s() - t0;
    l->stats.batches++;
    l->stats.images += (uint64_t)sl->b.n;
    l->stats.bad_images += sl->b.n_bad;
    l->stats.wait_seconds += w;
    l->stats.build_seconds += sl->b.build_seconds;
    l->since_start.batches++;
    l->since_start.images += (uint64_t)sl->b.n;
    l->since_start.bad_images += sl->b.n_bad;
    l->since_start.wait_seconds += w;
    l->since_start.build_seconds += sl->b.build_seconds;
    if (w > l->wait_max) l->wait_max = w;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    if (wait_seconds) *wait_seconds = w;
    *out = &sl->b;
    return KD_OK;
}

kd_sampler_cursor kd_loader_cursor(const kd_loader *l)
{
    kd_loader *m = (kd_loader *)l;
    pthread_mutex_lock(&m->mu);
    kd_sampler_cursor c = {l->epoch, l->next_consume};
    pthread_mutex_unlock(&m->mu);
    return c;
}

kd_loader_stats kd_loader_get_stats(const kd_loader *l)
{
    kd_loader *m = (kd_loader *)l;
    pthread_mutex_lock(&m->mu);
    kd_loader_stats s = l->stats;
    pthread_mutex_unlock(&m->mu);
    return s;
}
