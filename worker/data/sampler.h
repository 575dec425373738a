/* sampler.h — the sharded, aspect-grouped batch sampler.
 *
 * Per epoch, for a dataset of n images on `world` ranks (PyTorch DistributedSampler +
 * MMDetection's AspectRatioBatchSampler):
 *   1. a permutation of 0..n-1 from (seed, epoch), the same on every rank (identity when
 *      shuffle is off);
 *   2. padded by wrapping to total = ceil(n / world) * world (indices repeat from the start,
 *      several times if world > n);
 *   3. rank r takes positions r, r + world, r + 2*world, ... : num_samples = total / world;
 *   4. batches: with grouping, each index goes to bucket portrait (w < h) or landscape and a
 *      bucket of batch_size becomes a batch; at the end the leftovers of both buckets are
 *      concatenated and cut into batch_size chunks (the last one shorter unless drop_last).
 * Every rank gets ceil(num_samples / batch_size) batches (floor with drop_last), so ranks
 * stay in lockstep. The cursor (epoch, batches consumed) resumes mid-epoch exactly: the
 * plan of an epoch is a pure function of (seed, epoch, n, world, rank, options).
 */
#ifndef KD_SAMPLER_H
#define KD_SAMPLER_H

#include <stdint.h>

#include "proto/status.h"

typedef struct kd_sampler_cursor {
    int64_t epoch;
    uint32_t batch; /* batches of this epoch already consumed */
} kd_sampler_cursor;

typedef struct kd_sampler {
    uint32_t n, world, rank, batch_size;
    int32_t shuffle, group_by_aspect, drop_last;
    uint64_t seed;
    uint8_t *portrait;     /* [n] 1 when width < height */
    /* plan of the current epoch */
    int64_t epoch;
    uint32_t *idx;         /* [num_samples] dataset indices in batch order */
    uint32_t *batch_off;   /* [n_batches + 1] */
    uint32_t n_batches, n_idx;
    uint32_t *perm;        /* scratch [n] */
} kd_sampler;

/* portrait may be NULL (no grouping information: all one bucket). */
kd_status kd_sampler_init(kd_sampler *s, uint32_t n, uint32_t world, uint32_t rank, uint32_t batch_size,
                          uint64_t seed, int shuffle, int group_by_aspect, int drop_last, const uint8_t *portrait,
                          kd_err *err);
void kd_sampler_free(kd_sampler *s);
uint32_t kd_sampler_num_samples(const kd_sampler *s);
/* Build the plan of an epoch (cheap: O(n)). */
void kd_sampler_set_epoch(kd_sampler *s, int64_t epoch);
/* Batch b of the current epoch: *count indices. */
const uint32_t *kd_sampler_batch(const kd_sampler *s, uint32_t b, uint32_t *count);

/* A deterministic uniform [0,1) from (seed, epoch, index, salt): per-sample random choices
 * (flip) that do not depend on which thread or rank computes them. */
double kd_sample_uniform(uint64_t seed, int64_t epoch, uint32_t index, uint32_t salt);

#endif
