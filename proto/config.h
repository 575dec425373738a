/* config.h — one option table drives everything about configuration (DESIGN.md §9).
 *
 * A table of kd_opt rows (dotted key, type, range, default, one-line doc, offset into a
 * plain struct) is used to
 *   - fill the struct with defaults,
 *   - parse YAML files (libyaml) into it, with `base:` inheritance relative to the
 *     including file, and report every problem as `file:line:column: message`,
 *   - apply `--set a.b.c=value` overrides,
 *   - print `--help`, dump the effective config as YAML, and hash it.
 * The struct is plain data (fixed-size strings and lists, no pointers), so a config can be
 * copied, compared and broadcast to other ranks as bytes.
 *
 * Keys follow MMDetection's config names where MMDetection has one. A YAML mapping is a
 * prefix of keys: `model: {backbone: {depth: 50}}` sets `model.backbone.depth`, so files
 * read like MMDetection's nested dicts, and a base's values are overridden leaf by leaf.
 */
#ifndef KD_CONFIG_H
#define KD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/status.h"

#define KD_CFG_STR_BYTES 512 /* fixed string capacity, including the NUL */
#define KD_CFG_LIST_MAX 16   /* fixed list capacity */
#define KD_CFG_FILE_MAX_BYTES (1u << 20) /* a config larger than 1 MiB is refused */
#define KD_CFG_BASE_DEPTH_MAX 16

typedef enum kd_opt_type {
    KD_OPT_INT,   /* long long; `choices` may restrict it to listed values, e.g. "18|34|50|101" */
    KD_OPT_FLOAT, /* double */
    KD_OPT_BOOL,  /* bool; true/false (also yes/no, on/off, True/False) */
    KD_OPT_STR,   /* char[KD_CFG_STR_BYTES] */
    KD_OPT_ENUM,  /* int index into `choices` ("a|b|c"); written as the name */
    KD_OPT_LIST,  /* kd_cfg_list of numbers; `min`/`max` bound each element */
} kd_opt_type;

typedef struct kd_cfg_list {
    int n;
    double v[KD_CFG_LIST_MAX];
} kd_cfg_list;

typedef struct kd_opt {
    const char *key;     /* dotted path, e.g. "model.backbone.depth" */
    kd_opt_type type;
    size_t offset;       /* offsetof(struct, field) */
    double min, max;     /* numeric range (inclusive); ignored when min > max */
    const char *def;     /* default, written as YAML text ("50", "[8, 11]", "cpu", "") */
    const char *choices; /* ENUM: "cpu|cuda"; INT: optional allowed values "18|34" */
    int list_min, list_max; /* LIST: allowed element counts */
    const char *doc;     /* one line */
} kd_opt;

typedef struct kd_opt_table {
    const kd_opt *opts;
    size_t n_opts;
    size_t struct_bytes;
} kd_opt_table;

/* Fill cfg (struct_bytes) with every option's default. */
kd_status kd_config_defaults(const kd_opt_table *t, void *cfg, kd_err *err);
/* Apply a YAML file (and, first, its `base:` chain) over cfg. */
kd_status kd_config_load_file(const kd_opt_table *t, void *cfg, const char *path, kd_err *err);
/* Apply a YAML document held in memory; `name` is used in messages in place of a file. */
kd_status kd_config_load_string(const kd_opt_table *t, void *cfg, const char *name,
                                const char *text, size_t text_bytes, kd_err *err);
/* Apply one "a.b.c=value" override (value is YAML: 3, 0.5, true, [1, 2], text). */
kd_status kd_config_set(const kd_opt_table *t, void *cfg, const char *assignment, kd_err *err);

/* Lookup by exact key; NULL when absent. */
const kd_opt *kd_config_find(const kd_opt_table *t, const char *key);
/* Format one option's current value as YAML text. */
void kd_config_format_value(const kd_opt *o, const void *cfg, char *out, size_t cap);
/* Dump every option as nested YAML (the effective config). */
void kd_config_dump(const kd_opt_table *t, const void *cfg, FILE *out);
/* Print the option reference: key, type, range or choices, default, doc. */
void kd_config_print_help(const kd_opt_table *t, FILE *out);
/* FNV-1a 64 of the YAML dump: equal configs have equal hashes. */
uint64_t kd_config_hash(const kd_opt_table *t, const void *cfg);

#endif
