/* test_sampler.c — the sharded sampler: equal per-rank counts and batch counts, coverage
 * and wrap padding, determinism, different epochs differ, orientation-pure batches,
 * resumability, for world sizes 1, 2 and 3 (and a world larger than the dataset). */
#include <stdlib.h>
#include <string.h>

#include "kd_test.h"
#include "worker/data/sampler.h"

static void check_world(uint32_t n, uint32_t world, uint32_t bs, int group, int drop_last)
{
    uint8_t *portrait = malloc(n);
    for (uint32_t i = 0; i < n; i++) portrait[i] = (uint8_t)((i * 7 + 3) % 5 < 2);
    uint32_t *seen = calloc(n, sizeof *seen);
    uint32_t ns_expected = (n + world - 1) / world, nb0 = 0;
    kd_err e;
    for (uint32_t r = 0; r < world; r++) {
        kd_sampler s, s2;
        KD_REQUIRE(kd_sampler_init(&s, n, world, r, bs, 42, 1, group, drop_last, portrait, &e) == KD_OK);
        KD_REQUIRE(kd_sampler_init(&s2, n, world, r, bs, 42, 1, group, drop_last, portrait, &e) == KD_OK);
        KD_EXPECT(kd_sampler_num_samples(&s) == ns_expected);
        kd_sampler_set_epoch(&s, 3);
        kd_sampler_set_epoch(&s2, 3);
        uint32_t want_batches = drop_last ? ns_expected / bs : (ns_expected + bs - 1) / bs;
        KD_EXPECT_MSG(s.n_batches == want_batches, "n=%u world=%u rank=%u: %u batches, want %u", n, world, r,
                      s.n_batches, want_batches);
        if (r == 0) nb0 = s.n_batches;
        KD_EXPECT(s.n_batches == nb0); /* lockstep */
        /* determinism: same plan twice */
        KD_EXPECT(s.n_idx == s2.n_idx && !memcmp(s.idx, s2.idx, s.n_idx * sizeof *s.idx));
        uint32_t total = 0, mixed = 0;
        for (uint32_t b = 0; b < s.n_batches; b++) {
            uint32_t cnt;
            const uint32_t *ix = kd_sampler_batch(&s, b, &cnt);
            KD_EXPECT(cnt >= 1 && cnt <= bs);
            for (uint32_t k = 0; k < cnt; k++) {
                KD_REQUIRE(ix[k] < n);
                seen[ix[k]]++;
                if (group && portrait[ix[k]] != portrait[ix[0]]) mixed++;
            }
            total += cnt;
        }
        if (!drop_last) KD_EXPECT(total == ns_expected);
        /* only the leftover batches at the end may mix orientations */
        KD_EXPECT(mixed <= 2 * bs);
        /* resume: a fresh sampler at the same epoch yields the same batch b */
        kd_sampler_set_epoch(&s2, 4);
        kd_sampler_set_epoch(&s2, 3);
        uint32_t c1, c2;
        const uint32_t *b1 = kd_sampler_batch(&s, s.n_batches / 2, &c1), *b2 = kd_sampler_batch(&s2, s.n_batches / 2, &c2);
        KD_EXPECT(c1 == c2 && (c1 == 0 || !memcmp(b1, b2, c1 * sizeof *b1)));
        kd_sampler_free(&s);
        kd_sampler_free(&s2);
    }
    if (!drop_last) {
        /* every index appears; the padding repeats at most ceil(world/n)+1 times */
        uint32_t covered = 0, extra = 0;
        for (uint32_t i = 0; i < n; i++) {
            covered += seen[i] > 0;
            extra += seen[i] > 1 ? seen[i] - 1 : 0;
        }
        KD_EXPECT_MSG(covered == n, "n=%u world=%u: %u covered", n, world, covered);
        KD_EXPECT(extra == ns_expected * world - n);
    }
    free(seen);
    free(portrait);
}

static void test_worlds(void)
{
    static const uint32_t ns[] = {1, 2, 5, 7, 10, 31, 100, 1001};
    for (uint32_t w = 1; w <= 3; w++)
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
            for (uint32_t bs = 1; bs <= 4; bs++)
                for (int group = 0; group <= 1; group++) {
                    check_world(ns[i], w, bs, group, 0);
                    check_world(ns[i], w, bs, group, 1);
                }
    check_world(2, 5, 2, 1, 0); /* world larger than the dataset: wraps several times */
}

static void test_epochs_and_seeds(void)
{
    kd_sampler a, b;
    kd_err e;
    KD_REQUIRE(kd_sampler_init(&a, 1000, 2, 1, 2, 7, 1, 0, 0, NULL, &e) == KD_OK);
    KD_REQUIRE(kd_sampler_init(&b, 1000, 2, 1, 2, 8, 1, 0, 0, NULL, &e) == KD_OK);
    kd_sampler_set_epoch(&a, 0);
    uint32_t *first = malloc(a.n_idx * sizeof *first);
    memcpy(first, a.idx, a.n_idx * sizeof *first);
    kd_sampler_set_epoch(&a, 1);
    KD_EXPECT(memcmp(first, a.idx, a.n_idx * sizeof *first) != 0); /* epochs differ */
    kd_sampler_set_epoch(&b, 0);
    KD_EXPECT(memcmp(first, b.idx, b.n_idx * sizeof *first) != 0); /* seeds differ */
    kd_sampler_free(&a);
    kd_sampler_free(&b);
    /* no shuffle: rank r takes r, r+world, ... */
    KD_REQUIRE(kd_sampler_init(&a, 7, 3, 2, 4, 7, 0, 0, 0, NULL, &e) == KD_OK);
    kd_sampler_set_epoch(&a, 0);
    KD_EXPECT(a.n_idx == 3 && a.idx[0] == 2 && a.idx[1] == 5 && a.idx[2] == 1); /* 8 wraps to 1 */
    kd_sampler_free(&a);
    free(first);
    /* flip decisions: deterministic and about half */
    int heads = 0;
    for (uint32_t i = 0; i < 10000; i++) heads += kd_sample_uniform(1, 2, i, 0) < 0.5;
    KD_EXPECT(heads > 4800 && heads < 5200);
    KD_EXPECT(kd_sample_uniform(1, 2, 3, 0) == kd_sample_uniform(1, 2, 3, 0));
    KD_EXPECT(kd_sampler_init(&a, 0, 1, 0, 2, 0, 1, 0, 0, NULL, &e) == KD_EINVAL);
    KD_EXPECT(kd_sampler_init(&a, 10, 2, 2, 2, 0, 1, 0, 0, NULL, &e) == KD_EINVAL);
}

int main(void)
{
    KD_TEST_RUN(test_worlds);
    KD_TEST_RUN(test_epochs_and_seeds);
    return kd_test_summary();
}
