/* kd_test.h — the tiny assertion harness of the C unit tests.
 *
 * A test program is a main() that calls KD_TEST_RUN(fn) for each case; each case uses
 * KD_EXPECT* (records a failure and goes on) or KD_REQUIRE (returns from the case).
 * main returns kd_test_summary(): 0 only when every expectation held, so meson counts
 * the program as failed otherwise. Skipping a whole program: return KD_TEST_SKIP (77).
 */
#ifndef KD_TEST_H
#define KD_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#define KD_TEST_SKIP 77

static int kd_test_failures_;
static int kd_test_cases_;
static int kd_test_case_failed_;

#define KD_EXPECT(cond)                                                                  \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: expectation failed: %s\n", __FILE__, __LINE__, #cond); \
            kd_test_failures_++;                                                         \
            kd_test_case_failed_ = 1;                                                    \
        }                                                                                \
    } while (0)

#define KD_EXPECT_MSG(cond, ...)                                                         \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: expectation failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                \
            fputc('\n', stderr);                                                         \
            kd_test_failures_++;                                                         \
            kd_test_case_failed_ = 1;                                                    \
        }                                                                                \
    } while (0)

#define KD_REQUIRE(cond)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: requirement failed: %s\n", __FILE__, __LINE__, #cond); \
            kd_test_failures_++;                                                         \
            kd_test_case_failed_ = 1;                                                    \
            return;                                                                      \
        }                                                                                \
    } while (0)

/* |a-b| <= atol + rtol*|b| */
#define KD_EXPECT_NEAR(a, b, atol, rtol)                                                 \
    do {                                                                                 \
        double a_ = (double)(a), b_ = (double)(b);                                       \
        if (!(fabs(a_ - b_) <= (atol) + (rtol) * fabs(b_))) {                            \
            fprintf(stderr, "%s:%d: %s = %.9g, expected %s = %.9g (atol %g, rtol %g)\n",  \
                    __FILE__, __LINE__, #a, a_, #b, b_, (double)(atol), (double)(rtol)); \
            kd_test_failures_++;                                                         \
            kd_test_case_failed_ = 1;                                                    \
        }                                                                                \
    } while (0)

#define KD_EXPECT_STR_CONTAINS(haystack, needle)                                         \
    do {                                                                                 \
        const char *h_ = (haystack), *n_ = (needle);                                     \
        if (!h_ || !strstr(h_, n_)) {                                                    \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, \
                    h_ ? h_ : "(null)", n_);                                             \
            kd_test_failures_++;                                                         \
            kd_test_case_failed_ = 1;                                                    \
        }                                                                                \
    } while (0)

#define KD_TEST_RUN(fn)                                                                  \
    do {                                                                                 \
        kd_test_case_failed_ = 0;                                                        \
        kd_test_cases_++;                                                                \
        fn();                                                                            \
        fprintf(stderr, "%s %s\n", kd_test_case_failed_ ? "FAIL" : "ok  ", #fn);         \
    } while (0)

static inline int kd_test_summary(void)
{
    fprintf(stderr, "%d cases, %d failed expectations\n", kd_test_cases_, kd_test_failures_);
    return kd_test_failures_ ? 1 : 0;
}

#endif
