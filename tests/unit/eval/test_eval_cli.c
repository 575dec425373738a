/* test_eval_cli.c — crosskd-eval as a user runs it: output, exit codes, error messages.
 *
 * Runs the program (argv[1]) on the fixtures (argv[2]) in a child process and checks:
 * the printed summary equals pycocotools' byte for byte, --json round-trips the stats bit
 * for bit, usage errors exit 2, every malformed or mismatched input exits 1 with a message
 * naming the problem, and no run ends by a signal — also on a few hundred deterministic
 * mutations (byte substitutions, deletions, truncations) of a GT and a results file.
 * Arguments: PROGRAM FIXTURE_DIR SCRATCH_DIR.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kd_test.h"

static const char *g_prog, *g_dir, *g_tmp;

typedef struct run_out {
    int exited, code;
    char out[65536], err[8192];
} run_out;

static void read_all(FILE *f, char *buf, size_t cap)
{
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
}

/* Run the program with up to 4 arguments (NULL-terminated), relative paths under g_dir
 * when they start with '@'. */
static void run(run_out *r, const char *a0, const char *a1, const char *a2, const char *a3)
{
    const char *in[4] = {a0, a1, a2, a3};
    static char paths[4][1024];
    char *argv[6] = {(char *)g_prog};
    int n = 1;
    for (int i = 0; i < 4 && in[i]; i++) {
        if (in[i][0] == '@') {
            snprintf(paths[i], sizeof paths[i], "%s/%s", g_dir, in[i] + 1);
            argv[n++] = paths[i];
        } else argv[n++] = (char *)in[i];
    }
    argv[n] = NULL;
    FILE *fo = tmpfile(), *fe = tmpfile();
    memset(r, 0, sizeof *r);
    if (!fo || !fe) {
        r->code = -1;
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fileno(fo), 1);
        dup2(fileno(fe), 2);
        execv(g_prog, argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    r->exited = WIFEXITED(status);
    r->code = r->exited ? WEXITSTATUS(status) : -WTERMSIG(status);
    read_all(fo, r->out, sizeof r->out);
    read_all(fe, r->err, sizeof r->err);
    fclose(fo);
    fclose(fe);
}

/* The 'print' lines and stats of one case in expected.txt. */
static int expected_of(const char *name, char *printed, size_t cap, double stats[12])
{
    char path[1024];
    snprintf(path, sizeof path, "%s/expected.txt", g_dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[4096];
    int on = 0, found = 0;
    size_t len = 0;
    printed[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "case ", 5)) {
            line[strcspn(line, "\n")] = '\0';
            on = !strcmp(line + 5, name);
            found |= on;
        } else if (on && !strncmp(line, "print ", 6)) {
            size_t l = strlen(line + 6);
            if (len + l < cap) {
                memcpy(printed + len, line + 6, l + 1);
                len += l;
            }
        } else if (on && !strncmp(line, "stats ", 6)) {
            char *p = line + 6, *end;
            for (int s = 0; s < 12; s++, p = end) stats[s] = strtod(p, &end);
        }
    }
    fclose(f);
    return found ? 0 : -1;
}

static void test_usage(void)
{
    run_out r;
    run(&r, NULL, NULL, NULL, NULL);
    KD_EXPECT(r.exited && r.code == 2);
    KD_EXPECT_STR_CONTAINS(r.err, "usage: crosskd-eval");
    run(&r, "--help", NULL, NULL, NULL);
    KD_EXPECT(r.exited && r.code == 0);
    KD_EXPECT_STR_CONTAINS(r.out, "Exit status: 0 success, 1 bad input");
    run(&r, "--bogus", "@crowd.gt.json", "@crowd.dt.json", NULL);
    KD_EXPECT(r.exited && r.code == 2);
    KD_EXPECT_STR_CONTAINS(r.err, "unknown option '--bogus'");
    run(&r, "@crowd.gt.json", "@crowd.dt.json", "@crowd.dt.json", NULL);
    KD_EXPECT(r.exited && r.code == 2);
    KD_EXPECT_STR_CONTAINS(r.err, "too many arguments");
    run(&r, "@crowd.gt.json", NULL, NULL, NULL);
    KD_EXPECT(r.exited && r.code == 2);
}

static void test_summary_matches_pycocotools(void)
{
    static const char *cases[] = {"crowd", "random_5", "degenerate", "over_100", "empty_categories"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char want[4096], gt[256], dt[256];
        double stats[12];
        KD_REQUIRE(expected_of(cases[i], want, sizeof want, stats) == 0);
        snprintf(gt, sizeof gt, "@%s.gt.json", cases[i]);
        snprintf(dt, sizeof dt, "@%s.dt.json", cases[i]);
        run_out r;
        run(&r, gt, dt, NULL, NULL);
        KD_EXPECT_MSG(r.exited && r.code == 0, "%s: exit %d: %s", cases[i], r.code, r.err);
        KD_EXPECT_MSG(!strcmp(r.out, want), "%s:\n%s\nvs pycocotools:\n%s", cases[i], r.out, want);
    }
}

static void test_json(void)
{
    char want[4096];
    double stats[12];
    KD_REQUIRE(expected_of("random_6", want, sizeof want, stats) == 0);
    run_out r;
    run(&r, "--json", "@random_6.gt.json", "@random_6.dt.json", NULL);
    KD_REQUIRE(r.exited && r.code == 0);
    KD_REQUIRE(!strncmp(r.out, "{\"stats\": [", 11));
    char *p = r.out + 11, *end;
    for (int s = 0; s < 12; s++) {
        double v = strtod(p, &end);
        KD_EXPECT_MSG(end != p && !memcmp(&v, &stats[s], 8), "stats[%d] = %.17g vs %.17g", s, v, stats[s]);
        p = end + (*end == ',' ? 2 : 0);
    }
    KD_EXPECT(!strncmp(p, "], \"per_category\": {\"", 21));
    KD_EXPECT(strstr(r.out, "}}\n") != NULL);
    /* a category with no ground truth reads -1 */
    run(&r, "--json", "@empty_categories.gt.json", "@empty_categories.dt.json", NULL);
    KD_EXPECT(r.exited && r.code == 0);
    KD_EXPECT_STR_CONTAINS(r.out, "\"2\": -1");
    KD_EXPECT_STR_CONTAINS(r.out, "\"3\": 0");
}

/* Each malformed or mismatched input: exit 1, message naming the problem, no signal. */
static void test_bad_inputs(void)
{
    static const struct {
        const char *gt, *dt, *msg;
    } bad[] = {
        {"@bad_gt.json", "@bad_unknown_image.dt.json", "detection 1: image_id 42 is not an image of the ground truth"},
        {"@bad_gt.json", "@bad_empty.dt.json", "the results list is empty"},
        {"@bad_gt.json", "@bad_nan_score.dt.json", "bad_nan_score.dt.json: line 1"},
        {"@bad_gt.json", "@bad_truncated.dt.json", "unexpected end of file"},
        {"@bad_gt.json", "@bad_not_array.dt.json", "must hold one JSON array"},
        {"@bad_gt.json", "@bad_missing_score.dt.json", "missing field 'score'"},
        {"@bad_gt.json", "@bad_short_bbox.dt.json", "field 'bbox' must be an array of 4 numbers"},
        {"@bad_gt_no_images.json", "@crowd.dt.json", "missing field 'images'"},
        {"@bad_gt.json", "@bad_gt.json", "must hold one JSON array"},
        {"@crowd.dt.json", "@crowd.dt.json", "must hold one JSON object"},
        {"@no_such_file.json", "@crowd.dt.json", "no_such_file.json"},
        {"@bad_gt.json", "@no_such_results.json", "no_such_results.json"},
        {"@crowd.gt.json", "@random_0.dt.json", "is not an image of the ground truth"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        run_out r;
        run(&r, bad[i].gt, bad[i].dt, NULL, NULL);
        KD_EXPECT_MSG(r.exited, "%s %s: killed by signal %d", bad[i].gt, bad[i].dt, -r.code);
        KD_EXPECT_MSG(r.code == 1, "%s %s: exit %d", bad[i].gt, bad[i].dt, r.code);
        KD_EXPECT_MSG(r.out[0] == '\0', "%s %s: printed '%s'", bad[i].gt, bad[i].dt, r.out);
        KD_EXPECT_STR_CONTAINS(r.err, bad[i].msg);
        KD_EXPECT_STR_CONTAINS(r.err, "crosskd-eval: ");
    }
}

static void test_notes(void)
{
    run_out r;
    run(&r, "@degenerate.gt.json", "@degenerate.dt.json", NULL, NULL);
    KD_EXPECT(r.exited && r.code == 0);
    KD_EXPECT_STR_CONTAINS(r.err, "1 detection(s) have a category_id that is not in");
    run(&r, "@over_100.gt.json", "@over_100.dt.json", NULL, NULL);
    KD_EXPECT(r.exited && r.code == 0);
    KD_EXPECT_STR_CONTAINS(r.err, "50 detection(s) beyond the 100 best per image and category");
}

static uint64_t g_lcg = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n)
{
    g_lcg = g_lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_lcg >> 33) % n;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    *len = s ? fread(s, 1, (size_t)n, f) : 0;
    fclose(f);
    return s;
}

/* Mutated inputs: exit 0 (still valid) or 1 (rejected with a message), never a signal. */
static void test_mutations(void)
{
    static const char alphabet[] = "[]{},:\"0123456789.-+eE nulltrueNaN\\";
    const char *names[2] = {"crowd.gt.json", "crowd.dt.json"};
    int n_ok = 0, n_rejected = 0;
    for (int which = 0; which < 2; which++) {
        char src[1024], dst[1024], other[1100];
        snprintf(src, sizeof src, "%s/%s", g_dir, names[which]);
        snprintf(dst, sizeof dst, "%s/mutated_%s", g_tmp, names[which]);
        snprintf(other, sizeof other, "@%s", names[1 - which]);
        size_t len = 0;
        char *orig = slurp(src, &len);
        KD_REQUIRE(orig && len > 10);
        char *buf = malloc(len + 1);
        for (int it = 0; it < 150; it++) {
            memcpy(buf, orig, len);
            size_t n = len;
            int kind = rnd(3);
            if (kind == 0) {            /* substitute 1-3 bytes */
                for (int k = 0, m = 1 + (int)rnd(3); k < m; k++) buf[rnd((uint32_t)n)] = alphabet[rnd(sizeof alphabet - 1)];
            } else if (kind == 1) {     /* delete a short span */
                size_t at = rnd((uint32_t)n), span = 1 + rnd(8);
                if (at + span > n) span = n - at;
                memmove(buf + at, buf + at + span, n - at - span);
                n -= span;
            } else n = rnd((uint32_t)n); /* truncate */
            FILE *f = fopen(dst, "wb");
            KD_REQUIRE(f);
            fwrite(buf, 1, n, f);
            fclose(f);
            run_out r;
            if (which == 0) run(&r, dst, other, NULL, NULL);
            else run(&r, other, dst, NULL, NULL);
            KD_EXPECT_MSG(r.exited, "mutation %d of %s: killed by signal %d", it, names[which], -r.code);
            KD_EXPECT_MSG(r.code == 0 || r.code == 1, "mutation %d of %s: exit %d", it, names[which], r.code);
            if (r.code == 1) {
                KD_EXPECT_MSG(r.err[0] != '\0' && r.out[0] == '\0', "mutation %d of %s: no message", it, names[which]);
                n_rejected++;
            } else if (r.code == 0) n_ok++;
        }
        remove(dst);
        free(buf);
        free(orig);
    }
    fprintf(stderr, "mutations: %d evaluated, %d rejected with a message\n", n_ok, n_rejected);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s CROSSKD_EVAL FIXTURE_DIR SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    g_prog = argv[1];
    g_dir = argv[2];
    g_tmp = argv[3];
    KD_TEST_RUN(test_usage);
    KD_TEST_RUN(test_summary_matches_pycocotools);
    KD_TEST_RUN(test_json);
    KD_TEST_RUN(test_bad_inputs);
    KD_TEST_RUN(test_notes);
    KD_TEST_RUN(test_mutations);
    return kd_test_summary();
}
