/* config.c — YAML configs parsed through one option table (see config.h).
 *
 * Conventions:
 * - Messages are `file:line:column: message`, 1-based, pointing at the offending key or
 *   value; libyaml's own syntax errors are reported the same way with its problem text.
 * - A file is read whole (at most KD_CFG_FILE_MAX_BYTES), NUL bytes are refused before
 *   libyaml sees them, and the document root must be a mapping.
 * - `base:` (top level only) names another file relative to the including file's folder;
 *   it is applied first, then the including file's own keys. Cycles and chains deeper than
 *   KD_CFG_BASE_DEPTH_MAX are errors naming the chain.
 * - A key set twice in one file is an error; a key set in a base and again in a file that
 *   inherits from it is the normal override.
 * - On error the config may be partly updated; callers exit (nothing is saved from it).
 */
#include "proto/config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

typedef struct load_ctx {
    const kd_opt_table *t;
    void *cfg;
    const char *name;      /* file name used in messages */
    unsigned char *seen;   /* per option: already set in this file */
    const char *chain[KD_CFG_BASE_DEPTH_MAX]; /* realpaths of the files being loaded */
    int depth;
} load_ctx;

static kd_status load_file_at(load_ctx *parent, const kd_opt_table *t, void *cfg,
                              const char *path, kd_err *err);

/* ---- values ---------------------------------------------------------------------- */

static void *field(const kd_opt *o, void *cfg) { return (char *)cfg + o->offset; }
static const void *cfield(const kd_opt *o, const void *cfg) { return (const char *)cfg + o->offset; }

static bool ranged(const kd_opt *o) { return o->min <= o->max; }

static int choice_index(const char *choices, const char *s)
{
    int idx = 0;
    size_t len = strlen(s);
    for (const char *p = choices; p && *p; idx++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, s, n) == 0) return idx;
        p = bar ? bar + 1 : NULL;
    }
    return -1;
}

static void choice_name(const char *choices, int idx, char *out, size_t cap)
{
    const char *p = choices;
    for (int i = 0; p && i < idx; i++) {
        p = strchr(p, '|');
        if (p) p++;
    }
    if (!p) { snprintf(out, cap, "?"); return; }
    const char *bar = strchr(p, '|');
    size_t n = bar ? (size_t)(bar - p) : strlen(p);
    snprintf(out, cap, "%.*s", (int)n, p);
}

static bool parse_ll(const char *s, long long *out)
{
    if (!*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double *out)
{
    if (!*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno == ERANGE || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"true", "yes", "on"}, *no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) { *out = true; return true; }
        if (strcasecmp(s, no[i]) == 0) { *out = false; return true; }
    }
    return false;
}

static const char *type_name(const kd_opt *o)
{
    switch (o->type) {
    case KD_OPT_INT: return "an integer";
    case KD_OPT_FLOAT: return "a number";
    case KD_OPT_BOOL: return "true or false";
    case KD_OPT_STR: return "a string";
    case KD_OPT_ENUM: return "one of the choices";
    case KD_OPT_LIST: return "a list of numbers";
    }
    return "?";
}

/* Check a number against the option's range; `what` names it in the message. */
static kd_status check_range(const kd_opt *o, double v, const char *text, kd_err *err)
{
    if (ranged(o) && (v < o->min || v > o->max))
        return kd_errf(err, KD_EINVAL, "%s: %s is out of range [%.10g, %.10g]", o->key, text, o->min,
                       o->max);
    return KD_OK;
}

/* Set a scalar option from text; `plain` is false for quoted YAML scalars. */
static kd_status set_scalar(const kd_opt *o, void *cfg, const char *s, bool plain, kd_err *err)
{
    void *f = field(o, cfg);
    bool is_null = plain && (!*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0);
    if (is_null && o->type != KD_OPT_STR)
        return kd_errf(err, KD_EINVAL, "%s: missing value (expected %s)", o->key, type_name(o));
    switch (o->type) {
    case KD_OPT_INT: {
        long long v;
        if (!plain || !parse_ll(s, &v))
            return kd_errf(err, KD_EINVAL, "%s: expected an integer, got '%s'", o->key, s);
        if (o->choices && choice_index(o->choices, s) < 0)
            return kd_errf(err, KD_EINVAL, "%s: %s is not one of %s", o->key, s, o->choices);
        if (check_range(o, (double)v, s, err)) return err ? err->code : KD_EINVAL;
        *(long long *)f = v;
        return KD_OK;
    }
    case KD_OPT_FLOAT: {
        double v;
        if (!plain || !parse_double(s, &v))
            return kd_errf(err, KD_EINVAL, "%s: expected a number, got '%s'", o->key, s);
        if (check_range(o, v, s, err)) return err ? err->code : KD_EINVAL;
        *(double *)f = v;
        return KD_OK;
    }
    case KD_OPT_BOOL: {
        bool v;
        if (!plain || !parse_bool(s, &v))
            return kd_errf(err, KD_EINVAL, "%s: expected true or false, got '%s'", o->key, s);
        *(bool *)f = v;
        return KD_OK;
    }
    case KD_OPT_STR:
        if (strlen(s) >= KD_CFG_STR_BYTES)
            return kd_errf(err, KD_EINVAL, "%s: string longer than %d bytes", o->key,
                           KD_CFG_STR_BYTES - 1);
        snprintf((char *)f, KD_CFG_STR_BYTES, "%s", is_null ? "" : s);
        return KD_OK;
    case KD_OPT_ENUM: {
        int idx = choice_index(o->choices, s);
        if (idx < 0) return kd_errf(err, KD_EINVAL, "%s: '%s' is not one of %s", o->key, s, o->choices);
        *(int *)f = idx;
        return KD_OK;
    }
    case KD_OPT_LIST:
        return kd_errf(err, KD_EINVAL, "%s: expected a list like [1, 2], got '%s'", o->key, s);
    }
    return KD_EINVAL;
}

/* The shortest decimal that reads back as the same double (0.9, not 0.90000000000000002),
 * so the dumped config is what a person would write and still round-trips exactly. */
static int format_double(char *out, size_t cap, double v)
{
    int n = 0;
    for (int prec = 1; prec <= 17; prec++) {
        n = snprintf(out, cap, "%.*g", prec, v);
        if (n < 0 || (size_t)n >= cap || strtod(out, NULL) == v) break;
    }
    return n;
}

void kd_config_format_value(const kd_opt *o, const void *cfg, char *out, size_t cap)
{
    const void *f = cfield(o, cfg);
    switch (o->type) {
    case KD_OPT_INT: snprintf(out, cap, "%lld", *(const long long *)f); break;
    case KD_OPT_FLOAT: format_double(out, cap, *(const double *)f); break;
    case KD_OPT_BOOL: snprintf(out, cap, "%s", *(const bool *)f ? "true" : "false"); break;
    case KD_OPT_STR: {
        const char *s = (const char *)f;
        if (!*s) snprintf(out, cap, "''");
        else if (strpbrk(s, ":#'\"{}[],&*!|>%@`") || s[0] == ' ' || s[0] == '-')
            snprintf(out, cap, "'%s'", s);
        else snprintf(out, cap, "%s", s);
        break;
    }
    case KD_OPT_ENUM: choice_name(o->choices, *(const int *)f, out, cap); break;
    case KD_OPT_LIST: {
        const kd_cfg_list *l = f;
        size_t n = (size_t)snprintf(out, cap, "[");
        for (int i = 0; i < l->n && n < cap; i++) {
            if (i) n += (size_t)snprintf(out + n, cap - n, ", ");
            if (n < cap) n += (size_t)format_double(out + n, cap - n, l->v[i]);
        }
        if (n < cap) snprintf(out + n, cap - n, "]");
        break;
    }
    }
}

/* ---- lookup ---------------------------------------------------------------------- */

const kd_opt *kd_config_find(const kd_opt_table *t, const char *key)
{
    for (size_t i = 0; i < t->n_opts; i++)
        if (strcmp(t->opts[i].key, key) == 0) return &t->opts[i];
    return NULL;
}

static bool is_prefix(const kd_opt_table *t, const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; i < t->n_opts; i++)
        if (strncmp(t->opts[i].key, prefix, n) == 0 && t->opts[i].key[n] == '.') return true;
    return false;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[128];
    if (la >= 127 || lb >= 127) return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t sub = prev + (a[i - 1] != b[j - 1]);
            size_t best = row[j] + 1 < row[j - 1] + 1 ? row[j] + 1 : row[j - 1] + 1;
            row[j] = sub < best ? sub : best;
            prev = cur;
        }
    }
    return row[lb];
}

/* "unknown key 'x'" plus the closest known key when it is a likely typo. */
static kd_status unknown_key(const kd_opt_table *t, const char *key, kd_err *err)
{
    size_t best = SIZE_MAX;
    const char *hint = NULL;
    for (size_t i = 0; i < t->n_opts; i++) {
        size_t d = edit_distance(key, t->opts[i].key);
        if (d < best) { best = d; hint = t->opts[i].key; }
    }
    if (hint && best <= 3)
        return kd_errf(err, KD_EINVAL, "unknown key '%s' (did you mean '%s'?)", key, hint);
    return kd_errf(err, KD_EINVAL, "unknown key '%s' (see --help for the list of options)", key);
}

/* ---- YAML walking ---------------------------------------------------------------- */

static kd_status at(load_ctx *c, const yaml_node_t *n, kd_err *err)
{
    return kd_err_prefix(err, "%s:%zu:%zu: ", c->name, n->start_mark.line + 1,
                         n->start_mark.column + 1);
}

static bool scalar_is_plain(const yaml_node_t *n)
{
    return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ||
           n->data.scalar.style == YAML_ANY_SCALAR_STYLE;
}

static kd_status apply_list(load_ctx *c, yaml_document_t *doc, const kd_opt *o,
                            const yaml_node_t *seq, kd_err *err)
{
    kd_cfg_list l = {0};
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        yaml_node_t *e = yaml_document_get_node(doc, *it);
        if (l.n >= KD_CFG_LIST_MAX) {
            kd_errf(err, KD_EINVAL, "%s: more than %d elements", o->key, KD_CFG_LIST_MAX);
            return at(c, e, err);
        }
        double v;
        const char *s = e->type == YAML_SCALAR_NODE ? (const char *)e->data.scalar.value : "";
        if (e->type != YAML_SCALAR_NODE || !scalar_is_plain(e) || !parse_double(s, &v)) {
            kd_errf(err, KD_EINVAL, "%s: element %d: expected a number", o->key, l.n);
            return at(c, e, err);
        }
        if (check_range(o, v, s, err)) return at(c, e, err);
        l.v[l.n++] = v;
    }
    if (l.n < o->list_min || l.n > o->list_max) {
        if (o->list_min == o->list_max)
            kd_errf(err, KD_EINVAL, "%s: expected %d elements, got %d", o->key, o->list_min, l.n);
        else
            kd_errf(err, KD_EINVAL, "%s: expected %d to %d elements, got %d", o->key, o->list_min,
                    o->list_max, l.n);
        return at(c, seq, err);
    }
    *(kd_cfg_list *)field(o, c->cfg) = l;
    return KD_OK;
}

static kd_status apply_value(load_ctx *c, yaml_document_t *doc, const kd_opt *o,
                             const yaml_node_t *v, kd_err *err)
{
    if (v->type == YAML_SEQUENCE_NODE) {
        if (o->type != KD_OPT_LIST) {
            kd_errf(err, KD_EINVAL, "%s: expected %s, got a list", o->key, type_name(o));
            return at(c, v, err);
        }
        return apply_list(c, doc, o, v, err);
    }
    if (v->type == YAML_MAPPING_NODE) {
        kd_errf(err, KD_EINVAL, "%s: expected %s, got a mapping", o->key, type_name(o));
        return at(c, v, err);
    }
    if (set_scalar(o, c->cfg, (const char *)v->data.scalar.value, scalar_is_plain(v), err))
        return at(c, v, err);
    return KD_OK;
}

static kd_status walk_mapping(load_ctx *c, yaml_document_t *doc, const yaml_node_t *map,
                              const char *prefix, kd_err *err)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        if (k->type != YAML_SCALAR_NODE) {
            kd_errf(err, KD_EINVAL, "keys must be plain names");
            return at(c, k, err);
        }
        const char *name = (const char *)k->data.scalar.value;
        if (!*prefix && strcmp(name, "base") == 0) continue; /* handled before the walk */
        char key[256];
        if ((size_t)snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", name) >= sizeof key) {
            kd_errf(err, KD_EINVAL, "key too long");
            return at(c, k, err);
        }
        const kd_opt *o = kd_config_find(c->t, key);
        if (!o && v->type == YAML_MAPPING_NODE && is_prefix(c->t, key)) {
            if (walk_mapping(c, doc, v, key, err)) return err ? err->code : KD_EINVAL;
            continue;
        }
        if (!o) {
            unknown_key(c->t, key, err);
            return at(c, k, err);
        }
        size_t idx = (size_t)(o - c->t->opts);
        if (c->seen[idx]) {
            kd_errf(err, KD_EINVAL, "duplicate key '%s'", key);
            return at(c, k, err);
        }
        c->seen[idx] = 1;
        if (apply_value(c, doc, o, v, err)) return err ? err->code : KD_EINVAL;
    }
    return KD_OK;
}

/* `base: other.yaml` at the top level: load it (relative to this file) before the rest. */
static kd_status apply_base(load_ctx *c, yaml_document_t *doc, const yaml_node_t *root, kd_err *err)
{
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        if (k->type != YAML_SCALAR_NODE || strcmp((const char *)k->data.scalar.value, "base") != 0)
            continue;
        if (v->type != YAML_SCALAR_NODE || !*v->data.scalar.value) {
            kd_errf(err, KD_EINVAL, "base: expected a file name");
            return at(c, v, err);
        }
        const char *rel = (const char *)v->data.scalar.value;
        char path[PATH_MAX];
        const char *slash = strrchr(c->name, '/');
        if (rel[0] == '/' || !slash) snprintf(path, sizeof path, "%s", rel);
        else snprintf(path, sizeof path, "%.*s/%s", (int)(slash - c->name), c->name, rel);
        if (load_file_at(c, c->t, c->cfg, path, err)) {
            kd_err_prefix(err, "in base '%s': ", rel);
            return at(c, v, err);
        }
    }
    return KD_OK;
}

static kd_status yaml_error(const char *name, const yaml_parser_t *ps, const char *text,
                            size_t bytes, kd_err *err)
{
    const yaml_mark_t *m = ps->problem ? &ps->problem_mark : &ps->context_mark;
    bool tab = m->index < bytes && text[m->index] == '\t';
    return kd_errf(err, KD_EINVAL, "%s:%zu:%zu: invalid YAML: %s%s%s%s", name, m->line + 1,
                   m->column + 1, ps->problem ? ps->problem : "syntax error",
                   ps->context ? " " : "", ps->context ? ps->context : "",
                   tab ? " (a tab: YAML indentation must use spaces)" : "");
}

static kd_status load_text(load_ctx *c, const char *text, size_t bytes, kd_err *err)
{
    if (memchr(text, '\0', bytes)) {
        const char *z = memchr(text, '\0', bytes);
        size_t line = 1, col = 1;
        for (const char *p = text; p < z; p++, col++)
            if (*p == '\n') { line++; col = 0; }
        return kd_errf(err, KD_EINVAL, "%s:%zu:%zu: not a text file (NUL byte)", c->name, line, col);
    }
    yaml_parser_t ps;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&ps)) return kd_errf(err, KD_ENOMEM, "%s: out of memory", c->name);
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, bytes);
    kd_status st = KD_OK;
    if (!yaml_parser_load(&ps, &doc)) {
        st = yaml_error(c->name, &ps, text, bytes, err);
        yaml_parser_delete(&ps);
        return st;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        st = kd_errf(err, KD_EINVAL, "%s:1:1: empty config (expected a mapping of options)", c->name);
    } else if (root->type != YAML_MAPPING_NODE) {
        kd_errf(err, KD_EINVAL, "the top level must be a mapping of options");
        st = at(c, root, err);
    } else {
        c->seen = kd_xcalloc(c->t->n_opts, 1);
        st = apply_base(c, &doc, root, err);
        if (!st) {
            memset(c->seen, 0, c->t->n_opts);
            st = walk_mapping(c, &doc, root, "", err);
        }
        free(c->seen);
        c->seen = NULL;
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&ps);
    return st;
}

static kd_status read_whole(const char *path, char **out, size_t *bytes, kd_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return kd_errf(err, KD_ENOTFOUND, "%s: cannot open: %s", path, strerror(errno));
    char *buf = kd_xmalloc(KD_CFG_FILE_MAX_BYTES + 1);
    size_t n = fread(buf, 1, KD_CFG_FILE_MAX_BYTES + 1, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(buf);
        return kd_errf(err, KD_EIO, "%s: read error", path);
    }
    if (n > KD_CFG_FILE_MAX_BYTES) {
        free(buf);
        return kd_errf(err, KD_EINVAL, "%s: larger than the %u-byte limit for a config file", path,
                       KD_CFG_FILE_MAX_BYTES);
    }
    *out = buf;
    *bytes = n;
    return KD_OK;
}

static kd_status load_file_at(load_ctx *parent, const kd_opt_table *t, void *cfg,
                              const char *path, kd_err *err)
{
    load_ctx c = {.t = t, .cfg = cfg, .name = path};
    char real[PATH_MAX];
    if (!realpath(path, real)) return kd_errf(err, KD_ENOTFOUND, "%s: cannot open: %s", path, strerror(errno));
    if (parent) {
        c.depth = parent->depth;
        memcpy(c.chain, parent->chain, sizeof c.chain);
    }
    for (int i = 0; i < c.depth; i++)
        if (strcmp(c.chain[i], real) == 0) return kd_errf(err, KD_EINVAL, "%s: cyclic base: the file includes itself", path);
    if (c.depth >= KD_CFG_BASE_DEPTH_MAX)
        return kd_errf(err, KD_EINVAL, "%s: base chain deeper than %d files", path, KD_CFG_BASE_DEPTH_MAX);
    c.chain[c.depth++] = real;
    char *text = NULL;
    size_t bytes = 0;
    if (read_whole(path, &text, &bytes, err)) return err ? err->code : KD_EIO;
    kd_status st = load_text(&c, text, bytes, err);
    free(text);
    return st;
}

kd_status kd_config_load_file(const kd_opt_table *t, void *cfg, const char *path, kd_err *err)
{
    return load_file_at(NULL, t, cfg, path, err);
}

kd_status kd_config_load_string(const kd_opt_table *t, void *cfg, const char *name,
                                const char *text, size_t text_bytes, kd_err *err)
{
    load_ctx c = {.t = t, .cfg = cfg, .name = name};
    return load_text(&c, text, text_bytes, err);
}

/* ---- defaults, overrides, output --------------------------------------------------- */

kd_status kd_config_defaults(const kd_opt_table *t, void *cfg, kd_err *err)
{
    memset(cfg, 0, t->struct_bytes);
    for (size_t i = 0; i < t->n_opts; i++) {
        char assign[KD_CFG_STR_BYTES + 300];
        snprintf(assign, sizeof assign, "%s=%s", t->opts[i].key, t->opts[i].def ? t->opts[i].def : "");
        if (kd_config_set(t, cfg, assign, err))
            return kd_err_prefix(err, "bad default in the option table: ");
    }
    return KD_OK;
}

kd_status kd_config_set(const kd_opt_table *t, void *cfg, const char *assignment, kd_err *err)
{
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return kd_errf(err, KD_EINVAL, "--set %s: expected key=value", assignment);
    char key[256];
    if ((size_t)(eq - assignment) >= sizeof key) return kd_errf(err, KD_EINVAL, "--set: key too long");
    snprintf(key, sizeof key, "%.*s", (int)(eq - assignment), assignment);
    const kd_opt *o = kd_config_find(t, key);
    if (!o) {
        unknown_key(t, key, err);
        return kd_err_prefix(err, "--set: ");
    }
    /* The value is YAML text (3, 0.5, true, [1, 2], text): parse it as a one-node
     * document and apply it through the same code as a file's value. */
    const char *value = eq + 1;
    load_ctx c = {.t = t, .cfg = cfg, .name = "--set"};
    yaml_parser_t ps;
    yaml_document_t ydoc;
    kd_status st = KD_OK;
    if (!yaml_parser_initialize(&ps)) return kd_errf(err, KD_ENOMEM, "out of memory");
    yaml_parser_set_input_string(&ps, (const unsigned char *)value, strlen(value));
    if (!yaml_parser_load(&ps, &ydoc)) {
        st = kd_errf(err, KD_EINVAL, "--set %s: invalid value: %s", key, ps.problem ? ps.problem : "syntax error");
    } else {
        yaml_node_t *root = yaml_document_get_root_node(&ydoc);
        if (!root) st = set_scalar(o, cfg, "", true, err);
        else if (apply_value(&c, &ydoc, o, root, err)) st = err ? err->code : KD_EINVAL;
        yaml_document_delete(&ydoc);
    }
    yaml_parser_delete(&ps);
    return st;
}

void kd_config_dump(const kd_opt_table *t, const void *cfg, FILE *out)
{
    const char *prev = "";
    for (size_t i = 0; i < t->n_opts; i++) {
        const char *key = t->opts[i].key;
        /* Length of the common dotted prefix (whole components) with the previous key. */
        size_t common = 0;
        for (size_t j = 0; key[j] && key[j] == prev[j]; j++)
            if (key[j] == '.') common = j + 1;
        int depth = 0;
        for (size_t j = 0; j < common; j++) depth += key[j] == '.';
        /* Open every mapping between the common prefix and the leaf. */
        const char *p = key + common;
        for (const char *dot; (dot = strchr(p, '.')); p = dot + 1, depth++)
            fprintf(out, "%*s%.*s:\n", 2 * depth, "", (int)(dot - p), p);
        char val[KD_CFG_STR_BYTES + 64];
        kd_config_format_value(&t->opts[i], cfg, val, sizeof val);
        fprintf(out, "%*s%s: %s\n", 2 * depth, "", p, val);
        prev = key;
    }
}

void kd_config_print_help(const kd_opt_table *t, FILE *out)
{
    for (size_t i = 0; i < t->n_opts; i++) {
        const kd_opt *o = &t->opts[i];
        char range[128] = "";
        if (o->type == KD_OPT_ENUM || (o->type == KD_OPT_INT && o->choices))
            snprintf(range, sizeof range, ", one of %s", o->choices);
        else if (ranged(o) && o->type != KD_OPT_BOOL && o->type != KD_OPT_STR)
            snprintf(range, sizeof range, ", %s[%.10g, %.10g]", o->type == KD_OPT_LIST ? "each in " : "",
                     o->min, o->max);
        fprintf(out, "  %s  (%s%s, default %s)\n      %s\n", o->key, type_name(o), range,
                o->def && *o->def ? o->def : "''", o->doc);
    }
}

uint64_t kd_config_hash(const kd_opt_table *t, const void *cfg)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < t->n_opts; i++) {
        char val[KD_CFG_STR_BYTES + 64];
        kd_config_format_value(&t->opts[i], cfg, val, sizeof val);
        for (const char *s = t->opts[i].key; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
        h = (h ^ '=') * 1099511628211ull;
        for (const char *s = val; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
        h = (h ^ '\n') * 1099511628211ull;
    }
    return h;
}
