/*
 * world/raster.c: draws a scene record into RGB pixels with integer arithmetic only, so every
 * machine produces the same bytes (no libm, no float).
 *
 * Coordinates: a scene is laid out in units of 1/1024 of the image side; at S pixels a unit is
 * S/1024 px, and the rasteriser works in "Q10 pixels" (pixel * 1024 = unit * S), which keeps every
 * scene coordinate an exact integer. Objects are anti-aliased by 4x4 point sampling per pixel
 * (samples at 1/8, 3/8, 5/8, 7/8 of the pixel) and blended as (under * (16 - k) + colour * k + 8) / 16
 * with k samples inside. Polygons use the even-odd crossing rule with exact integer comparisons;
 * the circle is x^2 + y^2 <= R^2. Rotation uses a 16-entry cos/sin table (Q14, degrees 0..15).
 * Backgrounds are not anti-aliased; the noise texture has one value per cell of a 32 x 32 grid. docs/world.md states every rule and constant.
 *
 * Does not: overlap handling beyond drawing objects in record order (cells are far enough apart
 * that objects do not touch), gamma-correct blending.
 */
#include <string.h>

#include "world/world_impl.h"

/* cos and sin of 0..15 degrees, round(16384 * f(d)) */
static const int32_t cos_q14[16] = {16384, 16382, 16374, 16362, 16344, 16322, 16294, 16262,
                                    16225, 16182, 16135, 16083, 16026, 15964, 15897, 15826};
static const int32_t sin_q14[16] = {0,    286,  572,  857,  1143, 1428, 1713, 1997,
                                    2280, 2563, 2845, 3126, 3406, 3686, 3964, 4240};

/* Shape outlines in units of r/1024, y down, before rotation. */
struct outline {
    int n;
    int16_t v[12][2];
};
static const struct outline outlines[MF_WORLD_N_SHAPES] = {
    [MF_SHAPE_SQUARE] = {4, {{-820, -820}, {820, -820}, {820, 820}, {-820, 820}}},
    [MF_SHAPE_TRIANGLE] = {3, {{0, -1024}, {887, 512}, {-887, 512}}},
    [MF_SHAPE_DIAMOND] = {4, {{0, -1024}, {640, 0}, {0, 1024}, {-640, 0}}},
    [MF_SHAPE_STAR] = {10, {{0, -1024}, {253, -348}, {974, -316}, {409, 133}, {602, 828},
                            {0, 430}, {-602, 828}, {-409, 133}, {-974, -316}, {-253, -348}}},
    [MF_SHAPE_CROSS] = {12, {{-300, -1024}, {300, -1024}, {300, -300}, {1024, -300}, {1024, 300}, {300, 300},
                             {300, 1024}, {-300, 1024}, {-300, 300}, {-1024, 300}, {-1024, -300}, {-300, -300}}},
};
#define CIRCLE_RADIUS 920 /* circle radius in units of r/1024 */
static const int cell_center[3] = {171, 512, 853}; /* units */

static int64_t floor_div(int64_t a, int64_t b) /* b > 0 */
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

static uint8_t clamp8(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

static void draw_background(const struct mf_world_scene *s, int S, uint8_t *rgb)
{
    uint8_t c1[3], c2[3];
    mf_world_color_rgb(s->bg_c1, c1);
    mf_world_color_rgb(s->bg_c2, c2);
    const int64_t half = (int64_t)s->bg_period * S / 2; /* Q10 px */
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            uint8_t *p = rgb + ((size_t)y * S + x) * 3;
            switch (s->bg) {
            case MF_BG_GRADIENT: {
                int t = s->bg_dir == 0 ? x : y;
                for (int c = 0; c < 3; c++)
                    p[c] = (uint8_t)((c1[c] * (S - 1 - t) + c2[c] * t + (S - 1) / 2) / (S - 1));
                break;
            }
            case MF_BG_NOISE: {
                /* one value per cell of a 32 x 32 grid, so the texture scales with the image */
                int64_t cell = (int64_t)(y * 32 / S) * 32 + x * 32 / S;
                uint64_t h = world_mix64((uint64_t)s->noise_seed << 32 ^ (uint64_t)cell);
                int n = (int)(h % 49) - 24;
                for (int c = 0; c < 3; c++)
                    p[c] = clamp8(c1[c] + n);
                break;
            }
            case MF_BG_STRIPES: {
                int64_t X = (int64_t)x * 1024 + 512, Y = (int64_t)y * 1024 + 512;
                int64_t t = s->bg_dir == 0 ? Y : s->bg_dir == 1 ? X : (X + Y) * 181 / 256;
                memcpy(p, (t / half) % 2 ? c2 : c1, 3);
                break;
            }
            default: memcpy(p, c1, 3); break;
            }
        }
}

/* Even-odd rule; vertices and point in Q10 pixels. */
static bool in_polygon(const int64_t (*v)[2], int n, int64_t px, int64_t py)
{
    bool in = false;
    for (int i = 0, j = n - 1; i < n; j = i++) {
        int64_t xi = v[i][0], yi = v[i][1], xj = v[j][0], yj = v[j][1];
        if ((yi > py) == (yj > py))
            continue;
        /* px < xi + (xj - xi) (py - yi) / (yj - yi), multiplied through by (yj - yi) */
        int64_t lhs = (px - xi) * (yj - yi), rhs = (xj - xi) * (py - yi);
        if (yj > yi ? lhs < rhs : lhs > rhs)
            in = !in;
    }
    return in;
}

static void draw_object(const struct mf_world_object *o, int S, uint8_t *rgb)
{
    const int64_t cx = (int64_t)(cell_center[o->pos % 3] + o->dx) * S;
    const int64_t cy = (int64_t)(cell_center[o->pos / 3] + o->dy) * S;
    const int64_t r = (int64_t)(o->large ? 128 : 80) * (100 + o->scale) * S / 100; /* Q10 px */
    const struct world_hsv *base = &world_color_hsv[o->color];
    uint8_t col[3];
    world_hsv_rgb(base->h + o->dhue, base->s ? base->s + o->dsat : 0, base->v + o->dval, col);

    int64_t v[12][2];
    const struct outline *ol = &outlines[o->shape];
    const int a = o->rot < 0 ? -o->rot : o->rot;
    const int64_t C = cos_q14[a], Sn = o->rot < 0 ? -sin_q14[a] : sin_q14[a];
    for (int i = 0; i < ol->n; i++) {
        int64_t lx = ol->v[i][0], ly = ol->v[i][1];
        v[i][0] = cx + floor_div(r * (lx * C - ly * Sn), (int64_t)1024 * 16384);
        v[i][1] = cy + floor_div(r * (lx * Sn + ly * C), (int64_t)1024 * 16384);
    }
    const int64_t R = r * CIRCLE_RADIUS / 1024, reach = r * 5 / 4 + 1024;
    const int x0 = (int)MF_MAX(0, floor_div(cx - reach, 1024)), x1 = (int)MF_MIN(S - 1, floor_div(cx + reach, 1024));
    const int y0 = (int)MF_MAX(0, floor_div(cy - reach, 1024)), y1 = (int)MF_MIN(S - 1, floor_div(cy + reach, 1024));
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            int k = 0;
            for (int sy = 0; sy < 4; sy++)
                for (int sx = 0; sx < 4; sx++) {
                    int64_t px = (int64_t)x * 1024 + 128 + 256 * sx, py = (int64_t)y * 1024 + 128 + 256 * sy;
                    if (o->shape == MF_SHAPE_CIRCLE)
                        k += (px - cx) * (px - cx) + (py - cy) * (py - cy) <= R * R;
                    else
                        k += in_polygon((const int64_t(*)[2])v, ol->n, px, py);
                }
            if (!k)
                continue;
            uint8_t *p = rgb + ((size_t)y * S + x) * 3;
            for (int c = 0; c < 3; c++)
                p[c] = (uint8_t)((p[c] * (16 - k) + col[c] * k + 8) / 16);
        }
}

void mf_world_render(const struct mf_world_scene *s, int size, uint8_t *rgb)
{
    MF_ASSERT(size >= 16 && size <= 1024);
    draw_background(s, size, rgb);
    for (int i = 0; i < s->n_obj && i < MF_WORLD_MAX_OBJECTS; i++)
        draw_object(&s->obj[i], size, rgb);
}
