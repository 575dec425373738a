/* plot_curve.c — logged scalars to SVG line plots (plot.h, "curve").
 *
 * Reading: each line of a scalars.jsonl is one JSON object (jansson); lines without "iter" or
 * without one of the summed keys are skipped, blank lines too. Points are sorted by iteration
 * and an iteration logged twice keeps its later value (a resumed run logs again from its
 * checkpoint). Drawing: axes with 1/2/5 x 10^k ticks covering the data, a light grid, one
 * polyline per series (circle markers when a series has at most 24 points), the legend in
 * the top-left corner inside the plot, and the title above it.
 */
#include "plot.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SVG_W = 760, SVG_H = 460, M_LEFT = 70, M_RIGHT = 20, M_TOP = 40, M_BOTTOM = 50 };

static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

typedef struct read_point {
    double x, y;
    size_t idx; /* order of reading */
} read_point;

static int read_point_cmp(const void *a, const void *b)
{
    const read_point *p = a, *q = b;
    if (p->x != q->x) return (p->x > q->x) - (p->x < q->x);
    return (p->idx > q->idx) - (p->idx < q->idx);
}

/* Sum of the '+'-separated keys of obj into *v; 0 when one is missing or not a number. */
static int line_value(json_t *obj, const char *key, double *v)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", key);
    double sum = 0;
    for (char *save = NULL, *k = strtok_r(buf, "+", &save); k; k = strtok_r(NULL, "+", &save)) {
        json_t *j = json_object_get(obj, k);
        if (!json_is_number(j)) return 0;
        sum += json_number_value(j);
    }
    *v = sum;
    return 1;
}

/* Sort by x; of points with equal x keep the one read last. */
static void series_sort_unique(kd_plot_series *s)
{
    read_point *tmp = kd_xmalloc(sizeof *tmp * (s->n ? s->n : 1));
    for (size_t i = 0; i < s->n; i++) tmp[i] = (read_point){s->pts[i].x, s->pts[i].y, i};
    qsort(tmp, s->n, sizeof *tmp, read_point_cmp);
    size_t m = 0;
    for (size_t i = 0; i < s->n; i++)
        if (i + 1 == s->n || tmp[i + 1].x != tmp[i].x) s->pts[m++] = (kd_plot_point){tmp[i].x, tmp[i].y};
    s->n = m;
    free(tmp);
}

kd_status kd_plot_series_load(const char *path, const char *key, double scale, kd_plot_series *out, kd_err *err)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) return kd_errf(err, KD_EIO, "%s: cannot open", path);
    size_t cap = 0, line_no = 0;
    char *line = NULL;
    size_t line_cap = 0;
    kd_status st = KD_OK;
    while (getline(&line, &line_cap, f) >= 0) {
        line_no++;
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        json_error_t je;
        json_t *obj = json_loads(line, 0, &je);
        if (!json_is_object(obj)) {
            st = kd_errf(err, KD_EINVAL, "%s:%zu: not a JSON object (%s)", path, line_no, obj ? "other type" : je.text);
            json_decref(obj);
            break;
        }
        json_t *it = json_object_get(obj, "iter");
        double v;
        if (json_is_number(it) && line_value(obj, key, &v)) {
            if (out->n == cap) {
                cap = cap ? 2 * cap : 256;
                out->pts = kd_xrealloc(out->pts, sizeof *out->pts * cap);
            }
            out->pts[out->n++] = (kd_plot_point){json_number_value(it), v * scale};
        }
        json_decref(obj);
    }
    free(line);
    fclose(f);
    if (!st) series_sort_unique(out);
    if (st) kd_plot_series_free(out);
    return st;
}

static int series_find(const kd_plot_series *s, double x, double *y)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->pts[mid].x < x) lo = mid + 1;
        else hi = mid;
    }
    if (lo < s->n && s->pts[lo].x == x) {
        *y = s->pts[lo].y;
        return 1;
    }
    return 0;
}

void kd_plot_series_mean(const kd_plot_series *in, size_t n_in, const char *label, kd_plot_series *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->label, sizeof out->label, "%s", label);
    if (n_in == 0) return;
    out->pts = kd_xmalloc(sizeof *out->pts * (in[0].n ? in[0].n : 1));
    for (size_t i = 0; i < in[0].n; i++) {
        double sum = in[0].pts[i].y, y;
        size_t k = 1;
        for (; k < n_in && series_find(&in[k], in[0].pts[i].x, &y); k++) sum += y;
        if (k == n_in) out->pts[out->n++] = (kd_plot_point){in[0].pts[i].x, sum / (double)n_in};
    }
}

void kd_plot_series_free(kd_plot_series *s)
{
    free(s->pts);
    s->pts = NULL;
    s->n = 0;
}

/* ---- SVG ------------------------------------------------------------------------------ */

typedef struct axis {
    double lo, hi, step;
} axis;

/* Ticks at multiples of a 1/2/5 x 10^k step, about 6 of them, covering [lo, hi]. */
static axis axis_nice(double lo, double hi)
{
    if (!(hi > lo)) {
        double d = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1.0;
        lo -= d, hi += d;
    }
    double raw = (hi - lo) / 6, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
    return (axis){floor(lo / step) * step, ceil(hi / step) * step, step};
}

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
}

static double map(double v, axis a, double p0, double p1) { return p0 + (v - a.lo) / (a.hi - a.lo) * (p1 - p0); }

static void svg_axes(FILE *f, axis ax, axis ay, const char *y_label)
{
    const double x0 = M_LEFT, x1 = SVG_W - M_RIGHT, y0 = SVG_H - M_BOTTOM, y1 = M_TOP;
    fprintf(f, "<rect x='%d' y='%d' width='%d' height='%d' fill='white' stroke='#444'/>\n", M_LEFT, M_TOP,
            SVG_W - M_LEFT - M_RIGHT, SVG_H - M_TOP - M_BOTTOM);
    for (double v = ax.lo; v <= ax.hi + ax.step * 1e-6; v += ax.step) {
        double x = map(v, ax, x0, x1);
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", x, y0, x, y1);
        fprintf(f, "<text x='%.1f' y='%.1f' font-size='12' text-anchor='middle'>%g</text>\n", x, y0 + 16, v);
    }
    for (double v = ay.lo; v <= ay.hi + ay.step * 1e-6; v += ay.step) {
        double y = map(v, ay, y0, y1);
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", x0, y, x1, y);
        fprintf(f, "<text x='%.1f' y='%.1f' font-size='12' text-anchor='end'>%.4g</text>\n", x0 - 6, y + 4,
                fabs(v) < ay.step * 1e-6 ? 0.0 : v);
    }
    fprintf(f, "<text x='%.1f' y='%d' font-size='13' text-anchor='middle'>iteration</text>\n", (x0 + x1) / 2,
            SVG_H - 12);
    fprintf(f, "<text x='16' y='%.1f' font-size='13' text-anchor='middle' transform='rotate(-90 16 %.1f)'>",
            (y0 + y1) / 2, (y0 + y1) / 2);
    xml_text(f, y_label);
    fputs("</text>\n", f);
}

static void svg_series(FILE *f, const kd_plot_series *s, const char *colour, axis ax, axis ay)
{
    const double x0 = M_LEFT, x1 = SVG_W - M_RIGHT, y0 = SVG_H - M_BOTTOM, y1 = M_TOP;
    fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='1.6' points='", colour);
    for (size_t i = 0; i < s->n; i++)
        fprintf(f, "%.1f,%.1f ", map(s->pts[i].x, ax, x0, x1), map(s->pts[i].y, ay, y0, y1));
    fputs("'/>\n", f);
    if (s->n <= 24)
        for (size_t i = 0; i < s->n; i++)
            fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n", map(s->pts[i].x, ax, x0, x1),
                    map(s->pts[i].y, ay, y0, y1), colour);
}

kd_status kd_plot_svg_write(const char *path, const char *title, const char *y_label, const kd_plot_series *s,
                            size_t n_series, kd_err *err)
{
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (size_t k = 0; k < n_series; k++)
        for (size_t i = 0; i < s[k].n; i++) {
            xlo = fmin(xlo, s[k].pts[i].x), xhi = fmax(xhi, s[k].pts[i].x);
            ylo = fmin(ylo, s[k].pts[i].y), yhi = fmax(yhi, s[k].pts[i].y);
        }
    if (!isfinite(xlo)) return kd_errf(err, KD_EINVAL, "%s: no points to draw (is the key logged?)", path);
    FILE *f = fopen(path, "w");
    if (!f) return kd_errf(err, KD_EIO, "%s: cannot create", path);
    axis ax = axis_nice(fmin(xlo, 0), xhi), ay = axis_nice(ylo, yhi);
    fprintf(f, "<?xml version='1.0' encoding='UTF-8'?>\n<svg xmlns='http://www.w3.org/2000/svg' width='%d' "
               "height='%d' viewBox='0 0 %d %d' font-family='sans-serif'>\n<rect width='100%%' height='100%%' "
               "fill='white'/>\n<text x='%d' y='24' font-size='14'>", SVG_W, SVG_H, SVG_W, SVG_H, M_LEFT);
    xml_text(f, title);
    fputs("</text>\n", f);
    svg_axes(f, ax, ay, y_label);
    for (size_t k = 0; k < n_series; k++) {
        const char *c = palette[k % (sizeof palette / sizeof palette[0])];
        svg_series(f, &s[k], c, ax, ay);
        double ly = M_TOP + 18 + 18 * (double)k;
        fprintf(f, "<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' stroke='%s' stroke-width='3'/>\n", M_LEFT + 10,
                ly - 4, M_LEFT + 34, ly - 4, c);
        fprintf(f, "<text x='%d' y='%.1f' font-size='12'>", M_LEFT + 40, ly);
        xml_text(f, s[k].label);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
    if (fclose(f)) return kd_errf(err, KD_EIO, "%s: write failed", path);
    return KD_OK;
}
