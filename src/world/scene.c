/*
 * world/scene.c: the world's vocabulary of things (shapes, colours, positions, backgrounds), scene
 * sampling from (seed, split, index, attempt), the caption-visible description key, and the split
 * lists in which test and novel scenes never repeat a description.
 *
 * Does not draw pixels (raster.c) or text (grammar.c). The sampling order below is part of the
 * format (docs/world.md "Scene sampling"): changing it changes every world, so bump
 * MF_WORLD_FORMAT_VERSION with it.
 */
#include <stdio.h>
#include <string.h>

#include "world/world_impl.h"

static const char *const shape_names[MF_WORLD_N_SHAPES] = {"circle", "square", "triangle", "diamond", "star", "cross"};
static const char *const shape_plurals[MF_WORLD_N_SHAPES] = {"circles", "squares", "triangles",
                                                             "diamonds", "stars", "crosses"};
static const char *const color_names[MF_WORLD_N_COLORS] = {"red",    "green",  "blue", "yellow", "orange",
                                                           "purple", "pink", "white", "gray",   "black"};
static const char *const position_names[MF_WORLD_N_POSITIONS] = {
    "top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"};
static const char *const bg_names[MF_WORLD_N_BGS] = {"plain", "gradient", "noise", "stripes"};
static const char *const split_names[MF_WORLD_N_SPLITS] = {"pretrain", "calib", "train", "test", "novel"};

const struct world_hsv world_color_hsv[MF_WORLD_N_COLORS] = {
    {0, 220, 230},   /* red    (230, 31, 31) */
    {125, 210, 180}, /* green  (31, 180, 44) */
    {220, 220, 235}, /* blue   (32, 100, 235) */
    {54, 230, 240},  /* yellow (240, 218, 23) */
    {28, 240, 250},  /* orange (250, 124, 14) */
    {282, 180, 200}, /* purple (157, 58, 200) */
    {330, 110, 250}, /* pink   (250, 142, 196) */
    {0, 0, 245},     /* white  (245, 245, 245) */
    {0, 0, 128},     /* gray   (128, 128, 128) */
    {0, 0, 30},      /* black  (30, 30, 30) */
};

/* The held-out compositions of novel_test.json (colour, shape). */
static const uint8_t held_out[][2] = {
    {MF_COLOR_PURPLE, MF_SHAPE_TRIANGLE}, {MF_COLOR_ORANGE, MF_SHAPE_STAR}, {MF_COLOR_GREEN, MF_SHAPE_DIAMOND}};

const char *mf_world_shape_name(int i) { return i >= 0 && i < MF_WORLD_N_SHAPES ? shape_names[i] : NULL; }
const char *mf_world_shape_plural(int i) { return i >= 0 && i < MF_WORLD_N_SHAPES ? shape_plurals[i] : NULL; }
const char *mf_world_color_name(int i) { return i >= 0 && i < MF_WORLD_N_COLORS ? color_names[i] : NULL; }
const char *mf_world_position_name(int i) { return i >= 0 && i < MF_WORLD_N_POSITIONS ? position_names[i] : NULL; }
const char *mf_world_bg_name(int i) { return i >= 0 && i < MF_WORLD_N_BGS ? bg_names[i] : NULL; }
const char *mf_world_split_name(enum mf_world_split s)
{
    return (int)s >= 0 && s < MF_WORLD_N_SPLITS ? split_names[s] : NULL;
}

void world_pos_words(int pos, const char **vert, const char **horiz)
{
    static const char *const v[3] = {"top", NULL, "bottom"}, *const h[3] = {"left", NULL, "right"};
    *vert = v[pos / 3];
    *horiz = h[pos % 3];
}

void world_hsv_rgb(int h, int s, int v, uint8_t rgb[3])
{
    h = ((h % 360) + 360) % 360;
    s = MF_MAX(0, MF_MIN(255, s));
    v = MF_MAX(0, MF_MIN(255, v));
    if (s == 0) {
        rgb[0] = rgb[1] = rgb[2] = (uint8_t)v;
        return;
    }
    int region = h / 60, rem = h % 60;
    int p = v * (255 - s) / 255;
    int q = v * (255 - s * rem / 60) / 255;
    int t = v * (255 - s * (60 - rem) / 60) / 255;
    int r, g, b;
    switch (region) {
    case 0: r = v, g = t, b = p; break;
    case 1: r = q, g = v, b = p; break;
    case 2: r = p, g = v, b = t; break;
    case 3: r = p, g = q, b = v; break;
    case 4: r = t, g = p, b = v; break;
    default: r = v, g = p, b = q; break;
    }
    rgb[0] = (uint8_t)r;
    rgb[1] = (uint8_t)g;
    rgb[2] = (uint8_t)b;
}

void mf_world_color_rgb(int color, uint8_t rgb[3])
{
    const struct world_hsv *c = &world_color_hsv[color >= 0 && color < MF_WORLD_N_COLORS ? color : 0];
    world_hsv_rgb(c->h, c->s, c->v, rgb);
}

bool mf_world_is_held_out(int color, int shape)
{
    for (size_t i = 0; i < MF_ARRAY_LEN(held_out); i++)
        if (held_out[i][0] == color && held_out[i][1] == shape)
            return true;
    return false;
}

static bool is_bg_color(const struct mf_world_scene *s, int c) { return c == s->bg_c1 || c == s->bg_c2; }

static void sample_background(struct mf_rng *r, struct mf_world_scene *s, int avoid)
{
    s->bg = (uint8_t)world_u(r, MF_WORLD_N_BGS);
    do
        s->bg_c1 = (uint8_t)world_u(r, MF_WORLD_N_COLORS);
    while (s->bg_c1 == avoid);
    s->bg_c2 = s->bg_c1;
    if (s->bg == MF_BG_GRADIENT || s->bg == MF_BG_STRIPES)
        do
            s->bg_c2 = (uint8_t)((s->bg_c1 + 1 + world_u(r, MF_WORLD_N_COLORS - 1)) % MF_WORLD_N_COLORS);
        while (s->bg_c2 == avoid);
    s->bg_dir = (uint8_t)(s->bg == MF_BG_GRADIENT ? world_u(r, 2) : s->bg == MF_BG_STRIPES ? world_u(r, 3) : 0);
    s->bg_period = (uint16_t)(s->bg == MF_BG_STRIPES ? 96 + 32 * world_u(r, 3) : 0);
    s->noise_seed = (uint32_t)(s->bg == MF_BG_NOISE ? mf_rng_u64(r) >> 32 : 0);
}

void mf_world_sample_scene(uint64_t seed, enum mf_world_split split, int64_t index, int attempt,
                           struct mf_world_scene *s)
{
    struct mf_rng r;
    world_rng(&r, seed, (int)split, index, attempt, WORLD_STREAM_SCENE);
    memset(s, 0, sizeof *s);
    /* novel: the held-out composition of object 0 comes first, so the background can avoid it */
    int forced = split == MF_WORLD_NOVEL ? world_u(&r, (int)MF_ARRAY_LEN(held_out)) : -1;
    s->n_obj = 1 + world_u(&r, MF_WORLD_MAX_OBJECTS);
    sample_background(&r, s, forced >= 0 ? held_out[forced][0] : -1);
    int cells[MF_WORLD_N_POSITIONS];
    for (int i = 0; i < MF_WORLD_N_POSITIONS; i++)
        cells[i] = i;
    for (int i = 0; i < s->n_obj; i++) { /* partial Fisher-Yates: distinct cells */
        int j = i + world_u(&r, MF_WORLD_N_POSITIONS - i);
        int t = cells[i];
        cells[i] = cells[j];
        cells[j] = t;
    }
    for (int i = 0; i < s->n_obj; i++) {
        struct mf_world_object *o = &s->obj[i];
        if (i == 0 && forced >= 0) {
            o->color = held_out[forced][0];
            o->shape = held_out[forced][1];
        } else {
            do {
                o->color = (uint8_t)world_u(&r, MF_WORLD_N_OBJECT_COLORS);
                o->shape = (uint8_t)world_u(&r, MF_WORLD_N_SHAPES);
            } while (is_bg_color(s, o->color) || (split != MF_WORLD_NOVEL && mf_world_is_held_out(o->color, o->shape)));
        }
        o->pos = (uint8_t)cells[i];
        o->large = (uint8_t)world_u(&r, 2);
        o->dx = (int8_t)world_range(&r, -24, 24);
        o->dy = (int8_t)world_range(&r, -24, 24);
        o->scale = (int8_t)world_range(&r, -10, 10);
        o->rot = (int8_t)world_range(&r, -15, 15);
        o->dhue = (int8_t)world_range(&r, -8, 8);
        o->dsat = (int8_t)world_range(&r, -15, 15);
        o->dval = (int8_t)world_range(&r, -20, 20);
    }
}

int mf_world_scene_key(const struct mf_world_scene *s, char *buf, size_t n)
{
    int c1 = s->bg_c1, c2 = s->bg_c2;
    if (s->bg == MF_BG_STRIPES && c2 < c1) { /* "red and blue stripes" names no order */
        c1 = s->bg_c2;
        c2 = s->bg_c1;
    }
    if (s->bg == MF_BG_PLAIN || s->bg == MF_BG_NOISE)
        c2 = c1;
    char objs[MF_WORLD_N_POSITIONS][5] = {{0}};
    for (int i = 0; i < s->n_obj; i++)
        snprintf(objs[s->obj[i].pos], sizeof objs[0], "%d%d%d%d", s->obj[i].pos, s->obj[i].large, s->obj[i].color,
                 s->obj[i].shape);
    int len = snprintf(buf, n, "%d:%d:%d|%s%s%s%s%s%s%s%s%s", s->bg, c1, c2, objs[0], objs[1], objs[2], objs[3],
                       objs[4], objs[5], objs[6], objs[7], objs[8]);
    return len;
}

/* Open-addressing set of description keys (test and novel splits). */
#define KEY_LEN 48
struct keyset {
    char (*keys)[KEY_LEN];
    size_t cap;
};

static bool keyset_insert(struct keyset *ks, const char *key)
{
    size_t i = (size_t)world_fnv1a(WORLD_FNV_INIT, key, strlen(key)) & (ks->cap - 1);
    while (ks->keys[i][0]) {
        if (strcmp(ks->keys[i], key) == 0)
            return false;
        i = (i + 1) & (ks->cap - 1);
    }
    snprintf(ks->keys[i], KEY_LEN, "%s", key);
    return true;
}

enum mf_status mf_world_split_scenes(uint64_t seed, enum mf_world_split split, int64_t n,
                                     struct mf_world_scene *out, struct mf_err *err)
{
    const bool unique = split == MF_WORLD_TEST || split == MF_WORLD_NOVEL;
    if (!unique) {
        for (int64_t i = 0; i < n; i++)
            mf_world_sample_scene(seed, split, i, 0, &out[i]);
        return MF_OK;
    }
    struct keyset ks = {0};
    ks.cap = 16;
    while (ks.cap < (size_t)n * 2 + 16)
        ks.cap <<= 1;
    if (!(ks.keys = mf_calloc(ks.cap, KEY_LEN)))
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory (%zu description keys)", ks.cap);
    enum mf_status st = MF_OK;
    for (int64_t i = 0; i < n && !st; i++) {
        char key[KEY_LEN];
        int a = 0;
        for (;; a++) {
            if (a == 1000) {
                st = mf_err_set(err, MF_ERR_RANGE,
                                "%s split: scene %lld repeats an earlier description after 1000 draws (too many images)",
                                split_names[split], (long long)i);
                break;
            }
            mf_world_sample_scene(seed, split, i, a, &out[i]);
            mf_world_scene_key(&out[i], key, sizeof key);
            if (keyset_insert(&ks, key))
                break;
        }
    }
    mf_free(ks.keys);
    return st;
}
