/* plot.h — the distillation experiment's figures (bench/distill/run.sh), drawn without Python:
 *
 *   kd-distill-plot curve --out F.svg --key K[+K2...] [--scale S] [--title T] LABEL=FILE[,FILE...] ...
 *       line plot of a logged scalar against the iteration, one line per LABEL, read from the
 *       trainer's JSON-lines logs (<work_dir>/logs/scalars.jsonl). K1+K2 plots the sum of
 *       several keys; a line of the log counts only when it has all of them and "iter". With
 *       several files for one LABEL (seeds) the line is their mean at the iterations every
 *       file has. When an iteration is logged twice (a resumed run), the later value counts.
 *   kd-distill-plot draw --gt GT.json --images DIR --image-id ID --out F.png [--score-thr T]
 *                        [--max-dets N] RESULTS.json ...
 *       one validation image drawn as panels side by side: the ground truth, then the
 *       detections of each COCO results file with score >= T (default 0.3), at most the N
 *       best of them (default 0: all); box colour = category.
 *
 * Conventions: the SVG is plain SVG 1.1 text, 760x460 user units; the PNG is 8-bit RGB.
 * Bad input (unreadable file, a line that is not JSON, an unknown image id) is reported
 * with the file and line, and the program exits 1; usage errors exit 2.
 */
#ifndef KD_DISTILL_PLOT_H
#define KD_DISTILL_PLOT_H

#include <stddef.h>

#include "proto/status.h"

typedef struct kd_plot_point {
    double x, y;
} kd_plot_point;

typedef struct kd_plot_series {
    char label[128];
    kd_plot_point *pts; /* sorted by x, one point per x */
    size_t n;
} kd_plot_series;

/* Values of key (K or K1+K2+...) times scale against "iter" from one JSON-lines file. */
kd_status kd_plot_series_load(const char *path, const char *key, double scale, kd_plot_series *out, kd_err *err);
/* The mean of several series at the x every one of them has; `out` gets label. */
void kd_plot_series_mean(const kd_plot_series *in, size_t n_in, const char *label, kd_plot_series *out);
void kd_plot_series_free(kd_plot_series *s);

/* Write the line plot; y_label names the axis. */
kd_status kd_plot_svg_write(const char *path, const char *title, const char *y_label, const kd_plot_series *s,
                            size_t n_series, kd_err *err);

typedef struct kd_plot_draw_cfg {
    const char *gt_path, *images_dir, *out_path;
    long long image_id;
    double score_thr;
    int max_dets;         /* the best max_dets boxes per panel; 0 = all */
    const char **results; /* COCO results files, one panel each after the ground truth */
    int n_results;
} kd_plot_draw_cfg;

kd_status kd_plot_draw_run(const kd_plot_draw_cfg *c, kd_err *err);

#endif
