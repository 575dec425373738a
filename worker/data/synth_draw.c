/* synth_draw.c — the drawing half of the synthetic dataset (see synth.h): the random
 * generator, the category table, textured backgrounds, anti-aliased rotated shapes with
 * textures, clutter strokes and pixel noise. Canvas pixels are RGB uint8, row-major;
 * a pixel's centre is (x + 0.5, y + 0.5); shapes are sampled at 4 points per pixel.
 */
#include "worker/data/synth.h"

#include <math.h>
#include <string.h>

/* ---- xoshiro256** seeded through splitmix64 ---------------------------------------- */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void kd_rng_seed(kd_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xD1342543DE82EF95ull + 0x2545F4914F6CDD1Dull);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t kd_rng_next(kd_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double kd_rng_uniform(kd_rng *r) { return (double)(kd_rng_next(r) >> 11) * 0x1.0p-53; }

int kd_rng_int(kd_rng *r, int lo, int hi)
{
    if (hi <= lo) return lo;
    return lo + (int)(kd_rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* ---- categories --------------------------------------------------------------------- */

enum { SH_DISC, SH_SQUARE, SH_TRIANGLE, SH_RING, SH_STAR, SH_CROSS, SH_HEXAGON, SH_DIAMOND, SH_CRESCENT, SH_CAPSULE };
enum { TX_SOLID, TX_STRIPES, TX_DOTS, TX_CHECKER, TX_GRADIENT };

#define RED {220, 40, 40}
#define GREEN {40, 170, 60}
#define BLUE {40, 70, 220}
#define YELLOW {235, 210, 40}
#define MAGENTA {200, 50, 200}
#define CYAN {40, 200, 215}
#define ORANGE {240, 130, 30}
#define WHITE {240, 240, 240}
#define DARK {35, 35, 45}

/* Neighbouring entries share a shape, a colour or a texture on purpose. */
static const kd_synth_category g_cats[KD_SYNTH_MAX_CATEGORIES] = {
    {"red_disc", SH_DISC, TX_SOLID, RED, RED},
    {"blue_square", SH_SQUARE, TX_SOLID, BLUE, BLUE},
    {"green_triangle", SH_TRIANGLE, TX_SOLID, GREEN, GREEN},
    {"yellow_ring", SH_RING, TX_SOLID, YELLOW, YELLOW},
    {"striped_blue_disc", SH_DISC, TX_STRIPES, BLUE, WHITE},
    {"dotted_red_square", SH_SQUARE, TX_DOTS, RED, YELLOW},
    {"orange_star", SH_STAR, TX_SOLID, ORANGE, ORANGE},
    {"checked_green_cross", SH_CROSS, TX_CHECKER, GREEN, DARK},
    {"magenta_hexagon", SH_HEXAGON, TX_SOLID, MAGENTA, MAGENTA},
    {"striped_cyan_diamond", SH_DIAMOND, TX_STRIPES, CYAN, DARK},
    {"dotted_blue_triangle", SH_TRIANGLE, TX_DOTS, BLUE, WHITE},
    {"yellow_crescent", SH_CRESCENT, TX_SOLID, YELLOW, YELLOW},
    {"striped_red_ring", SH_RING, TX_STRIPES, RED, WHITE},
    {"cyan_capsule", SH_CAPSULE, TX_SOLID, CYAN, CYAN},
    {"dotted_magenta_star", SH_STAR, TX_DOTS, MAGENTA, WHITE},
    {"shaded_green_disc", SH_DISC, TX_GRADIENT, GREEN, YELLOW},
    {"checked_orange_hexagon", SH_HEXAGON, TX_CHECKER, ORANGE, DARK},
    {"shaded_magenta_square", SH_SQUARE, TX_GRADIENT, MAGENTA, CYAN},
    {"red_cross", SH_CROSS, TX_SOLID, RED, RED},
    {"orange_diamond", SH_DIAMOND, TX_SOLID, ORANGE, ORANGE},
    {"dotted_blue_crescent", SH_CRESCENT, TX_DOTS, BLUE, YELLOW},
    {"checked_red_capsule", SH_CAPSULE, TX_CHECKER, RED, WHITE},
    {"shaded_orange_triangle", SH_TRIANGLE, TX_GRADIENT, ORANGE, RED},
    {"checked_cyan_disc", SH_DISC, TX_CHECKER, CYAN, DARK},
};

const kd_synth_category *kd_synth_category_get(int i)
{
    return i >= 0 && i < KD_SYNTH_MAX_CATEGORIES ? &g_cats[i] : NULL;
}

/* ---- backgrounds -------------------------------------------------------------------- */

static inline uint8_t clamp_u8(double v) { return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)(v + 0.5); }

static void muted_colour(kd_rng *r, double out[3])
{
    double g = 60 + 140 * kd_rng_uniform(r);
    for (int k = 0; k < 3; k++) out[k] = g + 40 * (kd_rng_uniform(r) - 0.5);
}

void kd_synth_background(kd_synth_canvas *c, kd_rng *r)
{
    double a[3], b[3];
    muted_colour(r, a);
    muted_colour(r, b);
    int kind = kd_rng_int(r, 0, 3);
    double ang = kd_rng_uniform(r) * 6.283185307179586, ca = cos(ang), sa = sin(ang);
    double freq = 0.02 + 0.12 * kd_rng_uniform(r);
    /* value noise: a coarse grid of random values, bilinearly interpolated */
    enum { G = 12 };
    double grid[G + 1][G + 1];
    for (int i = 0; i <= G; i++)
        for (int j = 0; j <= G; j++) grid[i][j] = kd_rng_uniform(r);
    int cell = kd_rng_int(r, 6, 16);
    for (int y = 0; y < c->h; y++)
        for (int x = 0; x < c->w; x++) {
            double t;
            double px = x + 0.5, py = y + 0.5;
            if (kind == 0) t = (px * ca + py * sa) / (c->w + c->h) + 0.5;
            else if (kind == 1) {
                double gx = fmod(px / (c->w / (double)(G - 1)) , (double)G), gy = fmod(py / (c->h / (double)(G - 1)), (double)G);
                int ix = (int)gx, iy = (int)gy;
                double fx = gx - ix, fy = gy - iy;
                t = (grid[iy][ix] * (1 - fx) + grid[iy][ix + 1] * fx) * (1 - fy) +
                    (grid[iy + 1][ix] * (1 - fx) + grid[iy + 1][ix + 1] * fx) * fy;
            } else if (kind == 2) t = 0.5 + 0.5 * sin((px * ca + py * sa) * freq);
            else t = (((x / cell) + (y / cell)) & 1) ? 0.75 : 0.25;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            uint8_t *p = &c->rgb[3 * ((size_t)y * c->w + x)];
            for (int k = 0; k < 3; k++) p[k] = clamp_u8(a[k] * (1 - t) + b[k] * t);
            c->owner[(size_t)y * c->w + x] = -1;
        }
}

/* ---- shapes ------------------------------------------------------------------------- */

static int inside(int shape, double u, double v)
{
    double au = fabs(u), av = fabs(v), r2 = u * u + v * v;
    switch (shape) {
    case SH_DISC: return r2 <= 1.0;
    case SH_SQUARE: return au <= 0.85 && av <= 0.85;
    case SH_TRIANGLE: return v <= 0.8 && v >= -1.0 && au <= (v + 1.0) * 0.5;
    case SH_RING: return r2 <= 1.0 && r2 >= 0.36;
    case SH_STAR: {
        if (r2 > 1.0) return 0;
        double th = atan2(v, u) * 5.0 / 6.283185307179586 + 0.25;
        double f = th - floor(th);
        double rad = 0.42 + 0.58 * fabs(1.0 - 2.0 * f);
        return r2 <= rad * rad;
    }
    case SH_CROSS: return (au <= 0.32 && av <= 1.0) || (av <= 0.32 && au <= 1.0);
    case SH_HEXAGON: return av <= 0.866 && au * 0.866 + av * 0.5 <= 0.866;
    case SH_DIAMOND: return au + av <= 1.0;
    case SH_CRESCENT: return r2 <= 1.0 && ((u - 0.45) * (u - 0.45) + v * v) >= 0.64;
    case SH_CAPSULE: { /* a stadium: points within 0.45 of the segment u in [-0.55, 0.55] */
        double cu = au > 0.55 ? au - 0.55 : 0.0;
        return cu * cu + v * v <= 0.2025;
    }
    }
    return 0;
}

static void texel(const kd_synth_shape *s, double u, double v, double out[3])
{
    double t = 0.0;
    switch (s->texture) {
    case TX_SOLID: t = 0.0; break;
    case TX_STRIPES: t = sin((u + v) * s->tex_scale + s->tex_phase) > 0.0 ? 1.0 : 0.0; break;
    case TX_DOTS: {
        double gu = u * s->tex_scale * 0.5 + s->tex_phase, gv = v * s->tex_scale * 0.5;
        double fu = gu - floor(gu) - 0.5, fv = gv - floor(gv) - 0.5;
        t = fu * fu + fv * fv < 0.09 ? 1.0 : 0.0;
        break;
    }
    case TX_CHECKER: {
        int a = (int)floor(u * s->tex_scale * 0.4 + 8.0), b = (int)floor(v * s->tex_scale * 0.4 + 8.0);
        t = ((a + b) & 1) ? 1.0 : 0.0;
        break;
    }
    case TX_GRADIENT: t = (u + 1.0) * 0.5; break;
    }
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double shade = 1.0 - 0.12 * v; /* light from the top */
    for (int k = 0; k < 3; k++) out[k] = (s->rgb[k] * (1.0 - t) + s->rgb2[k] * t) * shade;
}

long kd_synth_draw_shape(kd_synth_canvas *c, const kd_synth_shape *s, int owner_id)
{
    long owned = 0;
    double R = (s->rx > s->ry ? s->rx : s->ry) * 1.05 + 1.0;
    int x0 = (int)floor(s->cx - R), x1 = (int)ceil(s->cx + R), y0 = (int)floor(s->cy - R), y1 = (int)ceil(s->cy + R);
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > c->w) x1 = c->w;
    if (y1 > c->h) y1 = c->h;
    double ca = cos(s->angle), sa = sin(s->angle);
    static const double off[4][2] = {{0.25, 0.25}, {0.75, 0.25}, {0.25, 0.75}, {0.75, 0.75}};
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            int hits = 0;
            for (int k = 0; k < 4; k++) {
                double dx = x + off[k][0] - s->cx, dy = y + off[k][1] - s->cy;
                double u = (dx * ca + dy * sa) / s->rx, v = (-dx * sa + dy * ca) / s->ry;
                hits += inside(s->shape, u, v);
            }
            if (!hits) continue;
            double dx = x + 0.5 - s->cx, dy = y + 0.5 - s->cy;
            double u = (dx * ca + dy * sa) / s->rx, v = (-dx * sa + dy * ca) / s->ry;
            double col[3], a = hits / 4.0;
            texel(s, u, v, col);
            uint8_t *p = &c->rgb[3 * ((size_t)y * c->w + x)];
            for (int k = 0; k < 3; k++) p[k] = clamp_u8(p[k] * (1.0 - a) + col[k] * a);
            if (hits >= 2) {
                c->owner[(size_t)y * c->w + x] = (int16_t)owner_id;
                owned++;
            }
        }
    return owned;
}

/* A thick line segment of random colour: clutter that is no object. */
void kd_synth_draw_stroke(kd_synth_canvas *c, kd_rng *r)
{
    double x0 = kd_rng_uniform(r) * c->w, y0 = kd_rng_uniform(r) * c->h;
    double len = (0.1 + 0.5 * kd_rng_uniform(r)) * (c->w > c->h ? c->w : c->h);
    double ang = kd_rng_uniform(r) * 6.283185307179586;
    double x1 = x0 + len * cos(ang), y1 = y0 + len * sin(ang);
    double half = 0.6 + 1.8 * kd_rng_uniform(r);
    double col[3];
    for (int k = 0; k < 3; k++) col[k] = 255.0 * kd_rng_uniform(r);
    int bx0 = (int)floor(fmin(x0, x1) - half), bx1 = (int)ceil(fmax(x0, x1) + half);
    int by0 = (int)floor(fmin(y0, y1) - half), by1 = (int)ceil(fmax(y0, y1) + half);
    if (bx0 < 0) bx0 = 0;
    if (by0 < 0) by0 = 0;
    if (bx1 > c->w) bx1 = c->w;
    if (by1 > c->h) by1 = c->h;
    double dx = x1 - x0, dy = y1 - y0, l2 = dx * dx + dy * dy;
    for (int y = by0; y < by1; y++)
        for (int x = bx0; x < bx1; x++) {
            double px = x + 0.5 - x0, py = y + 0.5 - y0;
            double t = l2 > 0 ? (px * dx + py * dy) / l2 : 0;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            double ex = px - t * dx, ey = py - t * dy, d = sqrt(ex * ex + ey * ey);
            double a = half + 0.5 - d;
            if (a <= 0) continue;
            if (a > 1) a = 1;
            uint8_t *p = &c->rgb[3 * ((size_t)y * c->w + x)];
            for (int k = 0; k < 3; k++) p[k] = clamp_u8(p[k] * (1.0 - a) + col[k] * a);
            if (a >= 0.5) c->owner[(size_t)y * c->w + x] = -1;
        }
}

/* Additive noise, roughly Gaussian (sum of 3 uniforms), sigma drawn per image in [2, 9]. */
void kd_synth_noise(kd_synth_canvas *c, kd_rng *r)
{
    double sigma = 2.0 + 7.0 * kd_rng_uniform(r);
    double scale = sigma * 2.0; /* sum of 3 U(-.5,.5) has sd 0.5 */
    size_t n = (size_t)c->w * c->h * 3;
    for (size_t i = 0; i < n; i++) {
        uint64_t b = kd_rng_next(r);
        double s = ((double)(b & 0xFFFFF) + (double)((b >> 20) & 0xFFFFF) + (double)((b >> 40) & 0xFFFFF)) *
                       (1.0 / 1048576.0) -
                   1.5;
        c->rgb[i] = clamp_u8(c->rgb[i] + s * scale);
    }
}
