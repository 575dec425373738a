/* sampler.c — the sharded, aspect-grouped batch sampler (see sampler.h).
 * The permutation is a Fisher-Yates shuffle driven by a splitmix64 stream seeded with
 * (seed, epoch); it is this project's own, not PyTorch's torch.randperm sequence.
 */
#include "worker/data/sampler.h"

#include <stdlib.h>
#include <string.h>

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double kd_sample_uniform(uint64_t seed, int64_t epoch, uint32_t index, uint32_t salt)
{
    uint64_t z = mix64(seed + 0x9E3779B97F4A7C15ull);
    z = mix64(z ^ ((uint64_t)epoch * 0xD1342543DE82EF95ull));
    z = mix64(z ^ (((uint64_t)salt << 32) | index));
    return (double)(z >> 11) * 0x1.0p-53;
}

kd_status kd_sampler_init(kd_sampler *s, uint32_t n, uint32_t world, uint32_t rank, uint32_t batch_size,
                          uint64_t seed, int shuffle, int group_by_aspect, int drop_last, const uint8_t *portrait,
                          kd_err *err)
{
    memset(s, 0, sizeof *s);
    if (n == 0) return kd_errf(err, KD_EINVAL, "sampler: the dataset is empty (after filtering)");
    if (world == 0 || rank >= world) return kd_errf(err, KD_EINVAL, "sampler: rank %u of world %u", rank, world);
    if (batch_size == 0) return kd_errf(err, KD_EINVAL, "sampler: batch_size must be >= 1");
    s->n = n, s->world = world, s->rank = rank, s->batch_size = batch_size;
    s->seed = seed, s->shuffle = shuffle, s->group_by_aspect = group_by_aspect && portrait, s->drop_last = drop_last;
    s->portrait = malloc(n);
    s->perm = malloc((size_t)n * sizeof *s->perm);
    uint32_t ns = kd_sampler_num_samples(s);
    s->idx = malloc((size_t)ns * sizeof *s->idx);
    s->batch_off = malloc(((size_t)ns + 2) * sizeof *s->batch_off);
    if (!s->portrait || !s->perm || !s->idx || !s->batch_off) {
        kd_sampler_free(s);
        return kd_errf(err, KD_ENOMEM, "sampler: out of memory");
    }
    if (portrait) memcpy(s->portrait, portrait, n);
    else memset(s->portrait, 0, n);
    s->epoch = -1;
    return KD_OK;
}

void kd_sampler_free(kd_sampler *s)
{
    free(s->portrait), free(s->perm), free(s->idx), free(s->batch_off);
    memset(s, 0, sizeof *s);
}

uint32_t kd_sampler_num_samples(const kd_sampler *s)
{
    return (uint32_t)(((uint64_t)s->n + s->world - 1) / s->world);
}

void kd_sampler_set_epoch(kd_sampler *s, int64_t epoch)
{
    uint32_t n = s->n, ns = kd_sampler_num_samples(s), bs = s->batch_size;
    for (uint32_t i = 0; i < n; i++) s->perm[i] = i;
    if (s->shuffle) {
        uint64_t st = mix64(s->seed ^ 0x5DEECE66Dull) ^ ((uint64_t)epoch * 0x9E3779B97F4A7C15ull);
        for (uint32_t i = n - 1; i > 0; i--) {
            st += 0x9E3779B97F4A7C15ull;
            uint64_t r = mix64(st);
            uint32_t j = (uint32_t)(r % ((uint64_t)i + 1)); /* bias < 2^-32 */
            uint32_t t = s->perm[i];
            s->perm[i] = s->perm[j];
            s->perm[j] = t;
        }
    }
    /* this rank's stream: positions rank + k*world of the wrapped permutation */
    uint32_t *stream = s->idx; /* filled in place, then regrouped */
    for (uint32_t k = 0; k < ns; k++) {
        uint64_t pos = (uint64_t)s->rank + (uint64_t)k * s->world;
        stream[k] = s->perm[pos % n];
    }
    s->n_batches = 0;
    s->n_idx = 0;
    if (!s->group_by_aspect) {
        uint32_t full = ns / bs, rest = ns % bs;
        for (uint32_t b = 0; b < full; b++) s->batch_off[s->n_batches++] = b * bs;
        if (rest && !s->drop_last) s->batch_off[s->n_batches++] = full * bs;
        s->n_idx = (full * bs) + (s->drop_last ? 0 : rest);
        s->batch_off[s->n_batches] = s->n_idx;
        s->epoch = epoch;
        return;
    }
    /* aspect buckets: emit a batch whenever a bucket fills, in stream order */
    uint32_t *bucket[2], fill[2] = {0, 0};
    bucket[0] = malloc((size_t)bs * sizeof(uint32_t));
    bucket[1] = malloc((size_t)bs * sizeof(uint32_t));
    uint32_t *out = s->perm; /* reuse as output scratch: ns <= n is not guaranteed, so check */
    uint32_t *tmp = ns <= n ? out : malloc((size_t)ns * sizeof(uint32_t));
    KD_CHECK(bucket[0] && bucket[1] && tmp);
    uint32_t w = 0;
    for (uint32_t k = 0; k < ns; k++) {
        uint32_t i = stream[k];
        int g = s->portrait[i] ? 0 : 1; /* MMDetection: bucket 0 if width < height */
        bucket[g][fill[g]++] = i;
        if (fill[g] == bs) {
            s->batch_off[s->n_batches++] = w;
            memcpy(tmp + w, bucket[g], (size_t)bs * sizeof(uint32_t));
            w += bs;
            fill[g] = 0;
        }
    }
    /* leftovers: bucket 0 then bucket 1, cut into batch_size chunks */
    uint32_t left = fill[0] + fill[1], base = w;
    memcpy(tmp + w, bucket[0], (size_t)fill[0] * sizeof(uint32_t));
    memcpy(tmp + w + fill[0], bucket[1], (size_t)fill[1] * sizeof(uint32_t));
    uint32_t keep = s->drop_last ? left / bs * bs : left;
    for (uint32_t o = 0; o < keep; o += bs) s->batch_off[s->n_batches++] = base + o;
    w = base + keep;
    memcpy(s->idx, tmp, (size_t)w * sizeof(uint32_t));
    s->n_idx = w;
    s->batch_off[s->n_batches] = w;
    if (tmp != out) free(tmp);
    free(bucket[0]);
    free(bucket[1]);
    s->epoch = epoch;
}

const uint32_t *kd_sampler_batch(const kd_sampler *s, uint32_t b, uint32_t *count)
{
    if (b >= s->n_batches) {
        *count = 0;
        return NULL;
    }
    *count = s->batch_off[b + 1] - s->batch_off[b];
    return s->idx + s->batch_off[b];
}
