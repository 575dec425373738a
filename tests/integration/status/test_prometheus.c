/* test_prometheus.c — checks `crosskdctl metrics` output against the Prometheus text
 * exposition format 0.0.4 rules (prometheus.io "Exposition formats", "Metric and label
 * naming"), with a validator written from those rules:
 *   - the text ends with '\n'; no '\r'; printable ASCII only (our values are flattened);
 *   - `# HELP name text` (escapes \\ and \n only) and `# TYPE name counter|gauge|
 *     histogram|summary|untyped`, at most one of each per family, TYPE before the first
 *     sample of the family;
 *   - samples `name{label="value",...} value`: metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label
 *     names [a-zA-Z_][a-zA-Z0-9_]* not starting with "__", label values with escapes \\ \"
 *     \n only, values Go-float (NaN, +Inf, -Inf allowed);
 *   - a family's samples are contiguous; no duplicate name+labels;
 *   - naming: the crosskd_ prefix, counters end in _total and are >= 0, every family has
 *     HELP and TYPE.
 *
 *   test_prometheus            in-process: snapshots with hostile strings and NaN/Inf
 *   test_prometheus FILE       validate FILE (the real job's output, from status_case.sh)
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../unit/kd_test.h"
#include "daemon/metrics.h"

enum { MAX_FAMILIES = 256, MAX_SAMPLES = 8192 };

typedef struct family {
    char name[128], type[16];
    int help, n_samples;
    int closed; /* another family's sample came after ours */
} family;

typedef struct validator {
    family fam[MAX_FAMILIES];
    int n_fam;
    char *seen[MAX_SAMPLES];
    int n_seen;
    int current; /* family of the last sample, -1 none */
    int errors;
} validator;

static void verr(validator *v, int line, const char *what, const char *text)
{
    if (v->errors++ < 20) fprintf(stderr, "line %d: %s: %.120s\n", line, what, text);
}

static family *fam_get(validator *v, const char *name, size_t n)
{
    for (int i = 0; i < v->n_fam; i++)
        if (strlen(v->fam[i].name) == n && !strncmp(v->fam[i].name, name, n)) return &v->fam[i];
    if (v->n_fam == MAX_FAMILIES || n >= sizeof v->fam[0].name) return NULL;
    family *f = &v->fam[v->n_fam++];
    memset(f, 0, sizeof *f);
    memcpy(f->name, name, n);
    return f;
}

static size_t metric_name_len(const char *s)
{
    size_t i = 0;
    if (!(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':')) return 0;
    while (isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':') i++;
    return i;
}

static int go_float(const char *s, double *out)
{
    if (!strcmp(s, "NaN")) { *out = NAN; return 1; }
    if (!strcmp(s, "+Inf")) { *out = INFINITY; return 1; }
    if (!strcmp(s, "-Inf")) { *out = -INFINITY; return 1; }
    char *end;
    *out = strtod(s, &end);
    return end != s && *end == '\0' && isfinite(*out) && !strpbrk(s, "xXpP");
}

/* Family name of a sample: histogram/summary suffixes belong to their base family. */
static family *sample_family(validator *v, const char *name, size_t n)
{
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(sfx[k]);
        if (n > l && !strncmp(name + n - l, sfx[k], l)) {
            for (int i = 0; i < v->n_fam; i++)
                if (strlen(v->fam[i].name) == n - l && !strncmp(v->fam[i].name, name, n - l) &&
                    (!strcmp(v->fam[i].type, "histogram") || !strcmp(v->fam[i].type, "summary")))
                    return &v->fam[i];
        }
    }
    return fam_get(v, name, n);
}

static void check_sample(validator *v, int ln, char *line)
{
    size_t n = metric_name_len(line);
    if (!n) { verr(v, ln, "bad metric name", line); return; }
    family *f = sample_family(v, line, n);
    if (!f) { verr(v, ln, "too many families", line); return; }
    int idx = (int)(f - v->fam);
    if (!f->type[0]) verr(v, ln, "sample before its # TYPE", line);
    if (f->closed) verr(v, ln, "family samples not contiguous", line);
    if (v->current >= 0 && v->current != idx) v->fam[v->current].closed = 1;
    v->current = idx;
    f->n_samples++;
    char *p = line + n;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            size_t l = 0;
            if (!(isalpha((unsigned char)p[0]) || p[0] == '_')) { verr(v, ln, "bad label name", line); return; }
            while (isalnum((unsigned char)p[l]) || p[l] == '_') l++;
            if (l >= 2 && p[0] == '_' && p[1] == '_') verr(v, ln, "reserved label name", line);
            p += l;
            if (p[0] != '=' || p[1] != '"') { verr(v, ln, "expected =\"", line); return; }
            p += 2;
            while (*p && *p != '"') {
                if (*p == '\\') {
                    if (p[1] != '\\' && p[1] != '"' && p[1] != 'n') { verr(v, ln, "bad escape in label value", line); return; }
                    p++;
                }
                p++;
            }
            if (*p != '"') { verr(v, ln, "unterminated label value", line); return; }
            p++;
            if (*p == ',') p++;
            else if (*p != '}') { verr(v, ln, "expected , or }", line); return; }
        }
        p++;
    }
    if (*p != ' ') { verr(v, ln, "expected a space before the value", line); return; }
    *p = '\0';
    char *key = line; /* name+labels, for duplicate detection */
    char *val = p + 1, *ts = strchr(val, ' ');
    if (ts) *ts++ = '\0';
    double x;
    if (!go_float(val, &x)) verr(v, ln, "bad value", val);
    if (ts) {
        char *end;
        strtoll(ts, &end, 10);
        if (*end || end == ts) verr(v, ln, "bad timestamp", ts);
    }
    if (!strcmp(f->type, "counter") && !(x >= 0)) verr(v, ln, "counter negative or NaN", key);
    for (int i = 0; i < v->n_seen; i++)
        if (!strcmp(v->seen[i], key)) verr(v, ln, "duplicate sample", key);
    if (v->n_seen < MAX_SAMPLES) v->seen[v->n_seen++] = strdup(key);
}

/* Returns the number of rule violations in text. */
static int validate(const char *text)
{
    validator *v = calloc(1, sizeof *v);
    v->current = -1;
    size_t len = strlen(text);
    if (len == 0 || text[len - 1] != '\n') verr(v, 0, "does not end with a newline", "");
    for (size_t i = 0; i < len; i++)
        if ((text[i] < 0x20 && text[i] != '\n') || (unsigned char)text[i] >= 0x7f) {
            verr(v, 0, "non-printable or non-ASCII byte", "");
            break;
        }
    char *copy = strdup(text), *save = NULL;
    int ln = 0;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        ln++;
        if (!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7)) {
            bool help = line[2] == 'H';
            char *name = line + 7;
            size_t n = metric_name_len(name);
            if (!n || name[n] != ' ') { verr(v, ln, "bad name in comment", line); continue; }
            family *f = fam_get(v, name, n);
            if (!f) continue;
            char *rest = name + n + 1;
            if (help) {
                if (f->help++) verr(v, ln, "second # HELP", line);
                for (char *q = rest; *q; q++)
                    if (*q == '\\' && q[1] != '\\' && q[1] != 'n') verr(v, ln, "bad escape in HELP", line);
            } else {
                if (f->type[0]) verr(v, ln, "second # TYPE", line);
                if (f->n_samples) verr(v, ln, "# TYPE after samples", line);
                if (strcmp(rest, "counter") && strcmp(rest, "gauge") && strcmp(rest, "histogram") &&
                    strcmp(rest, "summary") && strcmp(rest, "untyped"))
                    verr(v, ln, "unknown type", line);
                snprintf(f->type, sizeof f->type, "%s", rest);
            }
        } else if (line[0] == '#') {
            continue; /* other comments are allowed */
        } else {
            check_sample(v, ln, line);
        }
    }
    for (int i = 0; i < v->n_fam; i++) {
        family *f = &v->fam[i];
        if (strncmp(f->name, "crosskd_", 8)) verr(v, 0, "family without the crosskd_ prefix", f->name);
        if (!f->help || !f->type[0]) verr(v, 0, "family without HELP or TYPE", f->name);
        size_t n = strlen(f->name);
        bool total = n > 6 && !strcmp(f->name + n - 6, "_total");
        if (!strcmp(f->type, "counter") != total) verr(v, 0, "_total suffix iff counter", f->name);
    }
    int errors = v->errors;
    for (int i = 0; i < v->n_seen; i++) free(v->seen[i]);
    free(copy);
    free(v);
    return errors;
}

static kd_job_status *hostile_snapshot(void)
{
    kd_job_status *st = calloc(1, sizeof *st);
    kd_job_status_init(st);
    snprintf(st->job_name, sizeof st->job_name, "job \"quoted\" back\\slash\nnewline \xc3\xa9");
    st->state = KD_JOB_RUNNING;
    st->world_size = 3;
    st->iter = 120;
    st->total_iters = 1000;
    kd_job_status_set_loss(st, "loss_cls", 0.5);
    kd_job_status_set_loss(st, "we\"ird\\term", NAN);
    kd_job_status_set_loss(st, "inf_term", INFINITY);
    kd_job_status_set_loss(st, "neg_term", -1e-30);
    st->loss_total = 1.5;
    st->lr = 1e-5;
    st->eta_seconds = -1;
    st->n_ranks = 3;
    for (int r = 0; r < 3; r++) {
        snprintf(st->ranks[r].host, sizeof st->ranks[r].host, r == 1 ? "host\"x\n" : "node%d", r);
        snprintf(st->ranks[r].device, sizeof st->ranks[r].device, "cuda:%d", r);
        st->ranks[r].state = r;
        st->ranks[r].last_step_seconds = 0.1 * r;
    }
    return st;
}

static void test_hostile(void)
{
    kd_job_status *st = hostile_snapshot();
    kd_metrics_server srv = {.connections_total = 7, .clients = 2};
    srv.requests_total[KD_VERB_STATUS] = 5;
    kd_sbuf b;
    kd_sbuf_init(&b, 1 << 20);
    kd_metrics_format(&b, st, true, &srv, 1e9);
    KD_REQUIRE(b.data && !b.overflow);
    KD_EXPECT(validate(b.data) == 0);
    KD_EXPECT_STR_CONTAINS(b.data, "crosskd_loss{term=\"we\\\"ird\\\\term\"} NaN\n");
    KD_EXPECT_STR_CONTAINS(b.data, "crosskd_loss{term=\"inf_term\"} +Inf\n");
    KD_EXPECT_STR_CONTAINS(b.data, "crosskd_eta_seconds NaN\n");
    KD_EXPECT_STR_CONTAINS(b.data, "crosskd_rank_state{rank=\"2\",state=\"stopped\"} 1\n");
    KD_EXPECT_STR_CONTAINS(b.data, "crosskd_status_requests_total{verb=\"status\"} 5\n");
    KD_EXPECT_STR_CONTAINS(b.data, "host=\"host\\\"x\\n\"");
    kd_sbuf_free(&b);
    free(st);
}

static void test_no_snapshot(void)
{
    kd_job_status st;
    kd_job_status_init(&st);
    kd_metrics_server srv = {0};
    kd_sbuf b;
    kd_sbuf_init(&b, 1 << 20);
    kd_metrics_format(&b, &st, false, &srv, 0);
    KD_REQUIRE(b.data != NULL);
    KD_EXPECT(validate(b.data) == 0);
    KD_EXPECT_STR_CONTAINS(b.data, "crosskd_up 0\n");
    kd_sbuf_free(&b);
}

/* The validator itself must catch broken text, or the tests above prove nothing. */
static void test_validator_rejects(void)
{
    const char *bad[] = {
        "# HELP crosskd_a x\n# TYPE crosskd_a gauge\ncrosskd_a 1",                  /* no final \n */
        "crosskd_a 1\n",                                                             /* no TYPE */
        "# HELP crosskd_a x\n# TYPE crosskd_a gauge\ncrosskd_a{l=\"a\nb\"} 1\n",     /* raw newline */
        "# HELP crosskd_a x\n# TYPE crosskd_a gauge\ncrosskd_a{l=\"a\\tb\"} 1\n",    /* bad escape */
        "# HELP crosskd_a x\n# TYPE crosskd_a gauge\ncrosskd_a nan\n",               /* Go wants NaN */
        "# HELP crosskd_a x\n# TYPE crosskd_a gauge\ncrosskd_a 1\ncrosskd_a 2\n",    /* duplicate */
        "# HELP crosskd_a_total x\n# TYPE crosskd_a_total counter\ncrosskd_a_total -1\n",
        "# HELP crosskd_a x\n# TYPE crosskd_a counter\ncrosskd_a 1\n",               /* no _total */
        "# HELP crosskd_a x\n# TYPE crosskd_a gauge\n# HELP crosskd_b y\n# TYPE crosskd_b gauge\n"
        "crosskd_a{x=\"1\"} 1\ncrosskd_b 1\ncrosskd_a{x=\"2\"} 1\n",                  /* not contiguous */
        "# HELP crosskd_a x\n# TYPE crosskd_a gauge\ncrosskd_a{__x=\"1\"} 1\n",       /* reserved */
        "# HELP 1bad x\n# TYPE 1bad gauge\n1bad 1\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        KD_EXPECT_MSG(validate(bad[i]) > 0, "case %zu accepted", i);
    KD_EXPECT(validate("# HELP crosskd_a x\n# TYPE crosskd_a gauge\ncrosskd_a{l=\"v\"} +Inf 1700000000000\n") == 0);
}

int main(int argc, char **argv)
{
    if (argc == 2) {
        FILE *f = fopen(argv[1], "rb");
        if (!f) { perror(argv[1]); return 1; }
        static char text[1 << 21];
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[n] = '\0';
        int errors = validate(text);
        fprintf(stderr, "%s: %d exposition-format violations\n", argv[1], errors);
        return errors ? 1 : 0;
    }
    KD_TEST_RUN(test_validator_rejects);
    KD_TEST_RUN(test_hostile);
    KD_TEST_RUN(test_no_snapshot);
    return kd_test_summary();
}
