/* coco_json.c — COCO annotation and results files (see coco_json.h).
 *
 * A small pull parser over the whole file read into memory (NUL-terminated), written for
 * this one format instead of building a DOM: objects and arrays are walked key by key,
 * fields the project does not use (segmentation, info, licenses, urls, ...) are skipped
 * without converting their numbers, and the fields it keeps are converted in place.
 * Measured against jansson on a COCO-train-sized file in bench/data (see bench/README.md).
 *
 * Numbers: the JSON grammar is validated here; a decimal with at most 19 significant
 * digits whose mantissa is <= 2^53 and whose decimal exponent is within +-22 is converted
 * with one exact multiply or divide (Clinger's fast path, correctly rounded); anything else
 * goes to strtod, so every double equals what Python's json module produces.
 *
 * Errors: a syntax error gives "file: line L, column C: ..."; a semantic error names the
 * element, "file: annotations[3] (id 18): field 'bbox' must be an array of 4 numbers".
 * On any error the output is left empty.
 */
#include "proto/coco_json.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the reader ------------------------------------------------------------------- */

typedef struct jp {
    const char *beg, *p, *end;
    const char *path;
    kd_err *err;
    int failed;
    char *sbuf; /* decoded string with escapes */
    size_t scap_bytes;
} jp;

enum { JP_MAX_DEPTH = 512 };

static void jp_pos(const jp *j, const char *at, int *line, int *col)
{
    int l = 1, c = 1;
    for (const char *q = j->beg; q < at && q < j->end; q++) {
        if (*q == '\n') { l++; c = 1; } else c++;
    }
    *line = l;
    *col = c;
}

static int jp_syntax(jp *j, const char *what)
{
    if (j->failed) return -1;
    int line, col;
    jp_pos(j, j->p, &line, &col);
    if (j->p >= j->end)
        kd_errf(j->err, KD_EINVAL, "%s: line %d, column %d: unexpected end of file (%s)", j->path,
                line, col, what);
    else
        kd_errf(j->err, KD_EINVAL, "%s: line %d, column %d: %s", j->path, line, col, what);
    j->failed = 1;
    return -1;
}

static inline void jp_ws(jp *j)
{
    const char *p = j->p;
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
    j->p = p;
}

static int jp_expect(jp *j, char c, const char *what)
{
    jp_ws(j);
    if (*j->p != c) return jp_syntax(j, what);
    j->p++;
    return 0;
}

static void jp_put_utf8(char *o, size_t *n, uint32_t cp)
{
    if (cp < 0x80) o[(*n)++] = (char)cp;
    else if (cp < 0x800) {
        o[(*n)++] = (char)(0xC0 | (cp >> 6));
        o[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        o[(*n)++] = (char)(0xE0 | (cp >> 12));
        o[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        o[(*n)++] = (char)(0xF0 | (cp >> 18));
        o[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        o[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
}

static int jp_hex4(const char *p, uint32_t *v)
{
    uint32_t r = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        r <<= 4;
        if (c >= '0' && c <= '9') r |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') r |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') r |= (uint32_t)(c - 'A' + 10);
        else return -1;
    }
    *v = r;
    return 0;
}

/* Parse a string at j->p (after whitespace). *s points into the file when the string has
 * no escapes, else into j->sbuf; either way NOT NUL-terminated: use *len. */
static int jp_string(jp *j, const char **s, size_t *len)
{
    jp_ws(j);
    if (*j->p != '"') return jp_syntax(j, "expected a string");
    const char *q = ++j->p;
    while (*q != '"' && *q != '\\') {
        if ((unsigned char)*q < 0x20) {
            j->p = q;
            return jp_syntax(j, q >= j->end ? "unterminated string" : "control character in string");
        }
        q++;
    }
    if (*q == '"') {
        *s = j->p;
        *len = (size_t)(q - j->p);
        j->p = q + 1;
        return 0;
    }
    /* escapes: decode into the scratch buffer (the output is never longer than the input) */
    size_t n = (size_t)(q - j->p);
    const char *r = j->p;
    const char *e = q;
    while (*e != '"') {
        if (e >= j->end) { j->p = e; return jp_syntax(j, "unterminated string"); }
        if (*e == '\\' && e[1]) e++;
        e++;
    }
    size_t need = (size_t)(e - r) + 4;
    if (need > j->scap_bytes) {
        char *nb = realloc(j->sbuf, need);
        if (!nb) { j->failed = 1; return kd_errf(j->err, KD_ENOMEM, "%s: out of memory", j->path), -1; }
        j->sbuf = nb;
        j->scap_bytes = need;
    }
    memcpy(j->sbuf, r, n);
    q = r + n;
    while (*q != '"') {
        unsigned char c = (unsigned char)*q;
        if (c < 0x20) { j->p = q; return jp_syntax(j, "control character in string"); }
        if (c != '\\') { j->sbuf[n++] = (char)c; q++; continue; }
        q++;
        switch (*q) {
        case '"': j->sbuf[n++] = '"'; break;
        case '\\': j->sbuf[n++] = '\\'; break;
        case '/': j->sbuf[n++] = '/'; break;
        case 'b': j->sbuf[n++] = '\b'; break;
        case 'f': j->sbuf[n++] = '\f'; break;
        case 'n': j->sbuf[n++] = '\n'; break;
        case 'r': j->sbuf[n++] = '\r'; break;
        case 't': j->sbuf[n++] = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (jp_hex4(q + 1, &cp)) { j->p = q; return jp_syntax(j, "bad \\u escape"); }
            q += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && q[1] == '\\' && q[2] == 'u' && !jp_hex4(q + 3, &lo) &&
                lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                q += 6;
            }
            jp_put_utf8(j->sbuf, &n, cp);
            break;
        }
        default: j->p = q; return jp_syntax(j, "bad escape in string");
        }
        q++;
    }
    *s = j->sbuf;
    *len = n;
    j->p = q + 1;
    return 0;
}

static const double jp_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                    1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Parse a number at j->p (after whitespace), validating the JSON grammar. */
static int jp_number(jp *j, double *out)
{
    const char *s = j->p, *q = s;
    int neg = 0;
    if (*q == '-') { neg = 1; q++; }
    if (*q < '0' || *q > '9') return jp_syntax(j, "expected a value");
    uint64_t mant = 0;
    int ndig = 0, exp10 = 0;
    if (*q == '0') q++;
    else
        while (*q >= '0' && *q <= '9') {
            if (ndig < 19) { mant = mant * 10 + (uint64_t)(*q - '0'); ndig += mant != 0; }
            else { exp10++; ndig++; }
            q++;
        }
    if (*q == '.') {
        q++;
        if (*q < '0' || *q > '9') { j->p = q; return jp_syntax(j, "expected a digit after '.'"); }
        while (*q >= '0' && *q <= '9') {
            if (ndig < 19) { mant = mant * 10 + (uint64_t)(*q - '0'); ndig += mant != 0; exp10--; }
            else ndig++;
            q++;
        }
    }
    if (*q == 'e' || *q == 'E') {
        q++;
        int eneg = 0, ev = 0;
        if (*q == '+' || *q == '-') eneg = *q++ == '-';
        if (*q < '0' || *q > '9') { j->p = q; return jp_syntax(j, "expected a digit in exponent"); }
        while (*q >= '0' && *q <= '9') {
            if (ev < 100000) ev = ev * 10 + (*q - '0');
            q++;
        }
        exp10 += eneg ? -ev : ev;
    }
    j->p = q;
    if (ndig <= 19 && mant <= (UINT64_C(1) << 53) && exp10 >= -22 && exp10 <= 22) {
        double v = (double)mant;
        v = exp10 < 0 ? v / jp_pow10[-exp10] : v * jp_pow10[exp10];
        *out = neg ? -v : v;
        return 0;
    }
    *out = strtod(s, NULL); /* grammar already validated; strtod stops at the same place */
    return 0;
}

static int jp_skip(jp *j, int depth)
{
    jp_ws(j);
    if (depth > JP_MAX_DEPTH) return jp_syntax(j, "nesting too deep");
    char c = *j->p;
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        jp_ws(j);
        if (*j->p == close) { j->p++; return 0; }
        for (;;) {
            if (c == '{') {
                const char *k;
                size_t kl;
                if (jp_string(j, &k, &kl) || jp_expect(j, ':', "expected ':'")) return -1;
            }
            if (jp_skip(j, depth + 1)) return -1;
            jp_ws(j);
            if (*j->p == ',') { j->p++; continue; }
            if (*j->p == close) { j->p++; return 0; }
            return jp_syntax(j, c == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    if (c == '"') {
        const char *s;
        size_t l;
        return jp_string(j, &s, &l);
    }
    if (!strncmp(j->p, "true", 4)) { j->p += 4; return 0; }
    if (!strncmp(j->p, "false", 5)) { j->p += 5; return 0; }
    if (!strncmp(j->p, "null", 4)) { j->p += 4; return 0; }
    double d;
    return jp_number(j, &d);
}

/* Container walking: begin consumes the opening bracket; next returns 1 when an element
 * (and for objects its key and ':') was reached, 0 at the closing bracket, -1 on error. */
static int jp_obj_next(jp *j, int *first, const char **key, size_t *klen)
{
    jp_ws(j);
    if (*first) {
        *first = 0;
        if (*j->p == '}') { j->p++; return 0; }
    } else {
        if (*j->p == '}') { j->p++; return 0; }
        if (*j->p != ',') return jp_syntax(j, "expected ',' or '}'");
        j->p++;
    }
    if (jp_string(j, key, klen)) return -1;
    if (jp_expect(j, ':', "expected ':'")) return -1;
    jp_ws(j);
    return 1;
}

static int jp_arr_next(jp *j, int *first)
{
    jp_ws(j);
    if (*first) {
        *first = 0;
        if (*j->p == ']') { j->p++; return 0; }
    } else {
        if (*j->p == ']') { j->p++; return 0; }
        if (*j->p != ',') return jp_syntax(j, "expected ',' or ']'");
        j->p++;
    }
    jp_ws(j);
    return 1;
}

static inline int jp_is_num_start(const jp *j) { return *j->p == '-' || (*j->p >= '0' && *j->p <= '9'); }

static inline int key_is(const char *k, size_t kl, const char *lit)
{
    size_t n = strlen(lit);
    return kl == n && !memcmp(k, lit, n);
}

/* Field readers: return 0 and set *ok=1 on success; on a type mismatch the value is
 * skipped, *bad receives a description, and 0 is returned (the caller adds the element
 * path); -1 only on a syntax error. */
static int rd_int(jp *j, int64_t *v, const char *field, char *bad, size_t bad_bytes)
{
    if (jp_is_num_start(j)) {
        double d;
        if (jp_number(j, &d)) return -1;
        if (d == floor(d) && fabs(d) <= 9007199254740992.0) { *v = (int64_t)d; return 0; }
    } else if (jp_skip(j, 0)) return -1;
    if (!bad[0]) snprintf(bad, bad_bytes, "field '%s' must be an integer", field);
    return 0;
}

static int rd_num(jp *j, double *v, const char *field, char *bad, size_t bad_bytes)
{
    if (jp_is_num_start(j)) {
        if (jp_number(j, v)) return -1;
        if (isfinite(*v)) return 0;
    } else if (jp_skip(j, 0)) return -1;
    if (!bad[0]) snprintf(bad, bad_bytes, "field '%s' must be a finite number", field);
    return 0;
}

static int rd_box(jp *j, double box[4], const char *field, char *bad, size_t bad_bytes)
{
    int n = 0, ok = 1;
    if (*j->p != '[') {
        ok = 0;
        if (jp_skip(j, 0)) return -1;
    } else {
        j->p++;
        int first = 1, r;
        while ((r = jp_arr_next(j, &first)) == 1) {
            if (jp_is_num_start(j)) {
                double d;
                if (jp_number(j, &d)) return -1;
                if (n < 4) box[n] = d;
                if (!isfinite(d)) ok = 0;
            } else {
                ok = 0;
                if (jp_skip(j, 0)) return -1;
            }
            n++;
        }
        if (r < 0) return -1;
    }
    if ((!ok || n != 4) && !bad[0]) snprintf(bad, bad_bytes, "field '%s' must be an array of 4 numbers", field);
    return 0;
}

/* ---- growing arrays --------------------------------------------------------------- */

static int grow(void **p, size_t *cap, size_t n, size_t elem_bytes)
{
    if (n < *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 1024;
    void *q = realloc(*p, nc * elem_bytes);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

static int str_add(kd_coco_file *f, size_t *cap, const char *s, size_t len, uint32_t *off)
{
    if (f->strings_bytes + len + 1 > UINT32_MAX) return -1;
    while (f->strings_bytes + len + 1 > *cap) {
        size_t nc = *cap ? *cap * 2 : 65536;
        char *q = realloc(f->strings, nc);
        if (!q) return -1;
        f->strings = q;
        *cap = nc;
    }
    memcpy(f->strings + f->strings_bytes, s, len);
    *off = (uint32_t)f->strings_bytes;
    f->strings_bytes += len + 1;
    f->strings[f->strings_bytes - 1] = '\0';
    return 0;
}

static int read_whole(const char *path, char **buf, size_t *n, kd_err *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return kd_errf(err, errno == ENOENT ? KD_ENOTFOUND : KD_EIO, "%s: cannot open: %s", path,
                            strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return kd_errf(err, KD_EIO, "%s: not a regular file", path);
    }
    size_t sz = (size_t)st.st_size;
    char *b = malloc(sz + 8);
    if (!b) { fclose(fp); return kd_errf(err, KD_ENOMEM, "%s: cannot allocate %zu bytes", path, sz); }
    size_t got = fread(b, 1, sz, fp);
    int bad = ferror(fp);
    fclose(fp);
    if (bad || got != sz) { free(b); return kd_errf(err, KD_EIO, "%s: read failed", path); }
    memset(b + sz, 0, 8);
    *buf = b;
    *n = sz;
    return KD_OK;
}

/* ---- the instances file ----------------------------------------------------------- */

typedef struct idx_pair { int64_t id; size_t i; } idx_pair;

static int cmp_pair(const void *a, const void *b)
{
    const idx_pair *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Build a sorted (id, index) table; report the first duplicate. */
static kd_status sorted_ids(idx_pair **out, size_t n, const int64_t *ids, const char *path,
                            const char *what, kd_err *err)
{
    idx_pair *t = malloc((n ? n : 1) * sizeof *t);
    if (!t) return kd_errf(err, KD_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) t[i] = (idx_pair){ids[i], i};
    qsort(t, n, sizeof *t, cmp_pair);
    for (size_t i = 1; i < n; i++)
        if (t[i].id == t[i - 1].id) {
            kd_errf(err, KD_EINVAL, "%s: %s[%zu] (id %lld): duplicate id (also %s[%zu])", path, what, t[i].i,
                    (long long)t[i].id, what, t[i - 1].i);
            free(t);
            return KD_EINVAL;
        }
    *out = t;
    return KD_OK;
}

static int find_id(const idx_pair *t, size_t n, int64_t id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && t[lo].id == id;
}

enum { F_ID = 1, F_W = 2, F_H = 4, F_FN = 8, F_IMG = 16, F_CAT = 32, F_BOX = 64, F_AREA = 128, F_NAME = 256 };

static const char *first_missing(unsigned seen, unsigned need)
{
    static const struct { unsigned bit; const char *name; } names[] = {
        {F_ID, "id"},     {F_W, "width"}, {F_H, "height"},     {F_FN, "file_name"},       {F_IMG, "image_id"},
        {F_CAT, "category_id"}, {F_BOX, "bbox"}, {F_AREA, "area"}, {F_NAME, "name"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((need & names[i].bit) && !(seen & names[i].bit)) return names[i].name;
    return NULL;
}

/* Report a bad element: "path: what[i] (id N): text". */
static kd_status elem_err(jp *j, const char *what, size_t i, int have_id, int64_t id, const char *text)
{
    if (have_id)
        kd_errf(j->err, KD_EINVAL, "%s: %s[%zu] (id %lld): %s", j->path, what, i, (long long)id, text);
    else
        kd_errf(j->err, KD_EINVAL, "%s: %s[%zu]: %s", j->path, what, i, text);
    j->failed = 1;
    return KD_EINVAL;
}

typedef struct coco_caps { size_t img, ann, cat, str; } coco_caps;

/* One element of images / annotations / categories. kind: 0, 1, 2. */
static int parse_elem(jp *j, kd_coco_file *f, coco_caps *caps, int kind, size_t idx)
{
    static const char *what[] = {"images", "annotations", "categories"};
    if (*j->p != '{') {
        if (jp_skip(j, 0)) return -1;
        return elem_err(j, what[kind], idx, 0, 0, "must be an object"), -1;
    }
    j->p++;
    char bad[160] = "";
    unsigned seen = 0;
    int64_t id = 0, w = 0, h = 0, img = 0, cat = 0, crowd = 0;
    double box[4] = {0, 0, 0, 0}, area = 0;
    const char *fn = NULL;
    size_t fn_len = 0;
    uint32_t str_off = 0;
    int first = 1, r;
    const char *k;
    size_t kl;
    while ((r = jp_obj_next(j, &first, &k, &kl)) == 1) {
        int rc = 0;
        if (key_is(k, kl, "id")) { rc = rd_int(j, &id, "id", bad, sizeof bad); seen |= F_ID; }
        else if (kind == 0 && key_is(k, kl, "width")) { rc = rd_int(j, &w, "width", bad, sizeof bad); seen |= F_W; }
        else if (kind == 0 && key_is(k, kl, "height")) { rc = rd_int(j, &h, "height", bad, sizeof bad); seen |= F_H; }
        else if ((kind == 0 && key_is(k, kl, "file_name")) || (kind == 2 && key_is(k, kl, "name"))) {
            seen |= kind == 0 ? F_FN : F_NAME;
            if (*j->p == '"') {
                if (jp_string(j, &fn, &fn_len)) return -1;
                if (memchr(fn, '\0', fn_len) && !bad[0])
                    snprintf(bad, sizeof bad, "field '%s' contains a NUL character", kind ? "name" : "file_name");
                else if (str_add(f, &caps->str, fn, fn_len, &str_off))
                    return kd_errf(j->err, KD_ENOMEM, "%s: out of memory", j->path), j->failed = 1, -1;
            } else {
                rc = jp_skip(j, 0);
                if (!bad[0]) snprintf(bad, sizeof bad, "field '%s' must be a string", kind ? "name" : "file_name");
            }
        } else if (kind == 1 && key_is(k, kl, "image_id")) { rc = rd_int(j, &img, "image_id", bad, sizeof bad); seen |= F_IMG; }
        else if (kind == 1 && key_is(k, kl, "category_id")) { rc = rd_int(j, &cat, "category_id", bad, sizeof bad); seen |= F_CAT; }
        else if (kind == 1 && key_is(k, kl, "bbox")) { rc = rd_box(j, box, "bbox", bad, sizeof bad); seen |= F_BOX; }
        else if (kind == 1 && key_is(k, kl, "area")) { rc = rd_num(j, &area, "area", bad, sizeof bad); seen |= F_AREA; }
        else if (kind == 1 && key_is(k, kl, "iscrowd")) {
            if (*j->p == 't' || *j->p == 'f') { /* tolerate JSON booleans */
                crowd = *j->p == 't';
                rc = jp_skip(j, 0);
            } else {
                rc = rd_int(j, &crowd, "iscrowd", bad, sizeof bad);
                if (!rc && crowd != 0 && crowd != 1 && !bad[0]) snprintf(bad, sizeof bad, "field 'iscrowd' must be 0 or 1");
            }
        } else rc = jp_skip(j, 0);
        if (rc) return -1;
    }
    if (r < 0) return -1;
    int have_id = (seen & F_ID) && !strstr(bad, "'id'");
    if (bad[0]) return elem_err(j, what[kind], idx, have_id, id, bad), -1;
    static const unsigned need[] = {F_ID | F_W | F_H | F_FN, F_ID | F_IMG | F_CAT | F_BOX | F_AREA, F_ID | F_NAME};
    const char *miss = first_missing(seen, need[kind]);
    if (miss) {
        snprintf(bad, sizeof bad, "missing field '%s'", miss);
        return elem_err(j, what[kind], idx, have_id, id, bad), -1;
    }
    if (kind == 0) {
        if (w <= 0 || h <= 0 || w > INT32_MAX || h > INT32_MAX)
            return elem_err(j, what[kind], idx, 1, id, "width and height must be positive"), -1;
        if (grow((void **)&f->images, &caps->img, f->n_images, sizeof *f->images)) goto oom;
        f->images[f->n_images++] = (kd_coco_image){id, (int32_t)w, (int32_t)h, str_off};
    } else if (kind == 1) {
        if (cat < INT32_MIN || cat > INT32_MAX)
            return elem_err(j, what[kind], idx, 1, id, "category_id out of range"), -1;
        if (grow((void **)&f->anns, &caps->ann, f->n_anns, sizeof *f->anns)) goto oom;
        kd_coco_ann *a = &f->anns[f->n_anns++];
        a->id = id;
        a->image_id = img;
        a->category_id = (int32_t)cat;
        a->iscrowd = (int32_t)crowd;
        memcpy(a->bbox, box, sizeof box);
        a->area = area;
    } else {
        if (id < INT32_MIN || id > INT32_MAX) return elem_err(j, what[kind], idx, 1, id, "id out of range"), -1;
        if (grow((void **)&f->cats, &caps->cat, f->n_cats, sizeof *f->cats)) goto oom;
        f->cats[f->n_cats++] = (kd_coco_category){(int32_t)id, str_off};
    }
    return 0;
oom:
    j->failed = 1;
    return kd_errf(j->err, KD_ENOMEM, "%s: out of memory", j->path), -1;
}

static int parse_list(jp *j, kd_coco_file *f, coco_caps *caps, int kind, const char *key)
{
    if (*j->p != '[') {
        kd_errf(j->err, KD_EINVAL, "%s: field '%s' must be an array", j->path, key);
        j->failed = 1;
        return -1;
    }
    j->p++;
    int first = 1, r;
    size_t i = 0;
    while ((r = jp_arr_next(j, &first)) == 1)
        if (parse_elem(j, f, caps, kind, i++)) return -1;
    return r;
}

void kd_coco_file_free(kd_coco_file *f)
{
    if (!f) return;
    free(f->images);
    free(f->anns);
    free(f->cats);
    free(f->strings);
    memset(f, 0, sizeof *f);
}

static kd_status check_refs(jp *j, kd_coco_file *f)
{
    idx_pair *imgs = NULL, *cats = NULL, *anns = NULL;
    kd_status st;
    size_t most = f->n_images > f->n_anns ? f->n_images : f->n_anns;
    int64_t *tmp = malloc((most + f->n_cats + 1) * sizeof *tmp);
    if (!tmp) return kd_errf(j->err, KD_ENOMEM, "%s: out of memory", j->path);
    for (size_t i = 0; i < f->n_images; i++) tmp[i] = f->images[i].id;
    if ((st = sorted_ids(&imgs, f->n_images, tmp, j->path, "images", j->err))) goto done;
    for (size_t i = 0; i < f->n_cats; i++) tmp[i] = f->cats[i].id;
    if ((st = sorted_ids(&cats, f->n_cats, tmp, j->path, "categories", j->err))) goto done;
    for (size_t i = 0; i < f->n_anns; i++) tmp[i] = f->anns[i].id;
    if ((st = sorted_ids(&anns, f->n_anns, tmp, j->path, "annotations", j->err))) goto done;
    for (size_t i = 0; i < f->n_anns; i++) {
        const kd_coco_ann *a = &f->anns[i];
        if (!find_id(imgs, f->n_images, a->image_id)) {
            st = kd_errf(j->err, KD_EINVAL, "%s: annotations[%zu] (id %lld): image_id %lld is not in images",
                         j->path, i, (long long)a->id, (long long)a->image_id);
            goto done;
        }
        if (!find_id(cats, f->n_cats, a->category_id)) {
            st = kd_errf(j->err, KD_EINVAL, "%s: annotations[%zu] (id %lld): category_id %d is not in categories",
                         j->path, i, (long long)a->id, a->category_id);
            goto done;
        }
    }
done:
    free(tmp);
    free(imgs);
    free(cats);
    free(anns);
    return st;
}

static kd_status coco_parse_owned(char *buf, size_t n, const char *path, kd_coco_file *out, kd_err *err);

kd_status kd_coco_file_load(const char *path, kd_coco_file *out, kd_err *err)
{
    memset(out, 0, sizeof *out);
    char *buf;
    size_t n;
    kd_status st = read_whole(path, &buf, &n, err);
    if (st) return st;
    return coco_parse_owned(buf, n, path, out, err);
}

kd_status kd_coco_file_parse(const char *name, const char *text, size_t n_bytes, kd_coco_file *out, kd_err *err)
{
    memset(out, 0, sizeof *out);
    char *buf = malloc(n_bytes + 8);
    if (!buf) return kd_errf(err, KD_ENOMEM, "%s: out of memory", name);
    memcpy(buf, text, n_bytes);
    memset(buf + n_bytes, 0, 8);
    return coco_parse_owned(buf, n_bytes, name, out, err);
}

/* Parse buf (n bytes followed by NUL padding); frees buf. */
static kd_status coco_parse_owned(char *buf, size_t n, const char *path, kd_coco_file *out, kd_err *err)
{
    jp j = {.beg = buf, .p = buf, .end = buf + n, .path = path, .err = err};
    kd_coco_file f = {0};
    coco_caps caps = {0};
    unsigned seen = 0;
    if (jp_expect(&j, '{', "the file must hold one JSON object")) goto fail;
    int first = 1, r;
    const char *k;
    size_t kl;
    while ((r = jp_obj_next(&j, &first, &k, &kl)) == 1) {
        int kind = key_is(k, kl, "images") ? 0 : key_is(k, kl, "annotations") ? 1 : key_is(k, kl, "categories") ? 2 : -1;
        if (kind < 0) {
            if (jp_skip(&j, 0)) goto fail;
            continue;
        }
        if (seen & (1u << kind)) {
            kd_errf(err, KD_EINVAL, "%s: field '%.*s' appears twice", path, (int)kl, k);
            goto fail;
        }
        seen |= 1u << kind;
        if (parse_list(&j, &f, &caps, kind, kind == 0 ? "images" : kind == 1 ? "annotations" : "categories")) goto fail;
    }
    if (r < 0) goto fail;
    jp_ws(&j);
    if (j.p != j.end) { jp_syntax(&j, "extra data after the JSON object"); goto fail; }
    if (!(seen & 1)) { kd_errf(err, KD_EINVAL, "%s: missing field 'images'", path); goto fail; }
    if (!(seen & 4)) { kd_errf(err, KD_EINVAL, "%s: missing field 'categories'", path); goto fail; }
    if (check_refs(&j, &f)) goto fail;
    free(buf);
    free(j.sbuf);
    *out = f;
    return KD_OK;
fail:
    free(buf);
    free(j.sbuf);
    kd_coco_file_free(&f);
    return err ? (err->code ? err->code : KD_EINVAL) : KD_EINVAL;
}

/* ---- results files ---------------------------------------------------------------- */

kd_status kd_coco_results_load(const char *path, kd_coco_det **out, size_t *n_out, kd_err *err)
{
    *out = NULL;
    *n_out = 0;
    char *buf;
    size_t n;
    kd_status st = read_whole(path, &buf, &n, err);
    if (st) return st;
    jp j = {.beg = buf, .p = buf, .end = buf + n, .path = path, .err = err};
    kd_coco_det *d = NULL;
    size_t nd = 0, cap = 0;
    if (jp_expect(&j, '[', "a results file must hold one JSON array")) goto fail;
    int first = 1, r;
    while ((r = jp_arr_next(&j, &first)) == 1) {
        size_t idx = nd;
        if (*j.p != '{') {
            if (jp_skip(&j, 0)) goto fail;
            elem_err(&j, "results", idx, 0, 0, "must be an object");
            goto fail;
        }
        j.p++;
        char bad[160] = "";
        unsigned seen = 0;
        int64_t img = 0, cat = 0;
        double box[4] = {0, 0, 0, 0}, score = 0;
        int f1 = 1, r1;
        const char *k;
        size_t kl;
        while ((r1 = jp_obj_next(&j, &f1, &k, &kl)) == 1) {
            int rc;
            if (key_is(k, kl, "image_id")) { rc = rd_int(&j, &img, "image_id", bad, sizeof bad); seen |= 1; }
            else if (key_is(k, kl, "category_id")) { rc = rd_int(&j, &cat, "category_id", bad, sizeof bad); seen |= 2; }
            else if (key_is(k, kl, "bbox")) { rc = rd_box(&j, box, "bbox", bad, sizeof bad); seen |= 4; }
            else if (key_is(k, kl, "score")) { rc = rd_num(&j, &score, "score", bad, sizeof bad); seen |= 8; }
            else rc = jp_skip(&j, 0);
            if (rc) goto fail;
        }
        if (r1 < 0) goto fail;
        static const char *fields[] = {"image_id", "category_id", "bbox", "score"};
        for (int b = 0; b < 4 && !bad[0]; b++)
            if (!(seen & (1u << b))) snprintf(bad, sizeof bad, "missing field '%s'", fields[b]);
        if (!bad[0] && (cat < INT32_MIN || cat > INT32_MAX)) snprintf(bad, sizeof bad, "category_id out of range");
        if (bad[0]) { elem_err(&j, "results", idx, 0, 0, bad); goto fail; }
        if (grow((void **)&d, &cap, nd, sizeof *d)) { kd_errf(err, KD_ENOMEM, "%s: out of memory", path); goto fail; }
        d[nd++] = (kd_coco_det){img, (int32_t)cat, {box[0], box[1], box[2], box[3]}, score};
    }
    if (r < 0) goto fail;
    jp_ws(&j);
    if (j.p != j.end) { jp_syntax(&j, "extra data after the JSON array"); goto fail; }
    free(buf);
    free(j.sbuf);
    *out = d;
    *n_out = nd;
    return KD_OK;
fail:
    free(buf);
    free(j.sbuf);
    free(d);
    return err ? (err->code ? err->code : KD_EINVAL) : KD_EINVAL;
}

kd_status kd_coco_results_write(const char *path, const kd_coco_det *dets, size_t n, kd_err *err)
{
    for (size_t i = 0; i < n; i++) {
        const kd_coco_det *d = &dets[i];
        if (!isfinite(d->score) || !isfinite(d->bbox[0]) || !isfinite(d->bbox[1]) || !isfinite(d->bbox[2]) ||
            !isfinite(d->bbox[3]))
            return kd_errf(err, KD_EINVAL, "%s: results[%zu]: non-finite bbox or score", path, i);
    }
    FILE *fp = fopen(path, "wb");
    if (!fp) return kd_errf(err, KD_EIO, "%s: cannot create: %s", path, strerror(errno));
    setvbuf(fp, NULL, _IOFBF, 1 << 20);
    fputc('[', fp);
    for (size_t i = 0; i < n; i++) {
        const kd_coco_det *d = &dets[i];
        fprintf(fp, "%s{\"image_id\": %lld, \"category_id\": %d, \"bbox\": [%.17g, %.17g, %.17g, %.17g], \"score\": %.17g}",
                i ? ",\n " : "", (long long)d->image_id, d->category_id, d->bbox[0], d->bbox[1], d->bbox[2],
                d->bbox[3], d->score);
    }
    fputs("]\n", fp);
    int bad = ferror(fp);
    if (fclose(fp) || bad) return kd_errf(err, KD_EIO, "%s: write failed: %s", path, strerror(errno));
    return KD_OK;
}
