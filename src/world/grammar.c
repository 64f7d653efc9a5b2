/*
 * world/grammar.c: captions of a scene drawn from the world's grammar (docs/world.md "Captions"),
 * and the closed list of words the grammar and the question templates use (vocab.c turns it into
 * vocab.txt).
 *
 * A caption is a list of object phrases (determiner or count, optional size, colour, shape, optional
 * position phrase) joined by ", " and " and ", in one of five templates, with or without a
 * background phrase. Full captions (downstream splits) state every object's size and position and
 * the background; partial ones (pretraining) state colour and shape always and the rest usually,
 * and may group equal objects ("two blue squares"). Captions longer than
 * MF_WORLD_MAX_CAPTION_PIECES tokens are redrawn; the last resort is the most compact form, which
 * always fits. parse.c reads the same grammar back.
 */
#include <stdio.h>
#include <string.h>

#include "world/grammar.h"

/* Every word a caption, question or answer may contain (vocab.c writes them in this order). */
const char *const world_words[] = {
    /* determiners and counts */ "a", "an", "one", "two", "three", "the",
    /* sizes */ "small", "little", "large", "big",
    /* colours */ "red", "green", "blue", "yellow", "orange", "purple", "pink", "white", "gray", "black",
    /* shapes */ "circle", "square", "triangle", "diamond", "star", "cross", "circles", "squares", "triangles",
    "diamonds", "stars", "crosses",
    /* positions */ "in", "at", "on", "near", "top", "bottom", "left", "right", "center", "middle", "corner", "side",
    /* backgrounds */ "against", "plain", "noisy", "speckled", "gradient", "to", "striped", "stripes", "background",
    /* caption glue */ "there", "is", "are", "with", "and", "objects", "shapes", "things", ",",
    /* questions and answers */ "what", "which", "how", "many", "where", "color", "shape", "object", "of", "any",
    "part", "picture", "?", "yes", "no", "0", "1", "2", "3", NULL};

/* ---- a caption under construction ---- */

static void sb_word(struct world_sb *b, const char *w)
{
    size_t k = strlen(w);
    bool glue = strcmp(w, ",") == 0 || strcmp(w, "?") == 0;
    size_t need = b->len + k + (b->len && !glue ? 1 : 0) + 1;
    if (need > b->cap) {
        b->overflow = true;
        return;
    }
    if (b->len && !glue)
        b->buf[b->len++] = ' ';
    memcpy(b->buf + b->len, w, k + 1);
    b->len += k;
    b->pieces++;
}

void world_sb_init(struct world_sb *b, char *buf, size_t cap)
{
    b->buf = buf;
    b->cap = cap;
    b->len = 0;
    b->pieces = 0;
    b->overflow = cap == 0;
    if (cap)
        buf[0] = '\0';
}

void world_sb_word(struct world_sb *b, const char *w) { sb_word(b, w); }

/* "a" or "an" before word w */
const char *world_article(const char *w) { return strchr("aeiou", w[0]) ? "an" : "a"; }

/* ---- object phrases ---- */

struct item {
    int count;      /* 1..3 */
    int size;       /* -1 unnamed, 0 small, 1 large */
    int color, shape;
    int pos;        /* -1 unnamed */
};

static const char *size_word(struct mf_rng *r, int size, bool compact)
{
    static const char *const w[2][2] = {{"small", "little"}, {"large", "big"}};
    return w[size][compact || world_u(r, 4) ? 0 : 1];
}

static void noun_phrase(struct world_sb *b, struct mf_rng *r, const struct item *it, bool compact)
{
    static const char *const counts[4] = {NULL, NULL, "two", "three"};
    const char *sz = it->size >= 0 ? size_word(r, it->size, compact) : NULL;
    const char *col = mf_world_color_name(it->color);
    if (it->count == 1)
        sb_word(b, world_article(sz ? sz : col));
    else
        sb_word(b, counts[it->count]);
    if (sz)
        sb_word(b, sz);
    sb_word(b, col);
    sb_word(b, it->count == 1 ? mf_world_shape_name(it->shape) : mf_world_shape_plural(it->shape));
}

static void position_phrase(struct world_sb *b, struct mf_rng *r, int pos, bool compact)
{
    const char *v, *h;
    world_pos_words(pos, &v, &h);
    int form = compact ? 0 : world_u(r, 2);
    if (v && h) { /* corner: "at the top left" | "in the top left corner" */
        sb_word(b, form ? "in" : "at");
        sb_word(b, "the");
        sb_word(b, v);
        sb_word(b, h);
        if (form)
            sb_word(b, "corner");
    } else if (v) { /* "at the top" | "near the top" */
        sb_word(b, form ? "near" : "at");
        sb_word(b, "the");
        sb_word(b, v);
    } else if (h) { /* "on the left" | "on the left side" */
        sb_word(b, "on");
        sb_word(b, "the");
        sb_word(b, h);
        if (form)
            sb_word(b, "side");
    } else { /* "in the center" | "in the middle" */
        sb_word(b, "in");
        sb_word(b, "the");
        sb_word(b, form ? "middle" : "center");
    }
}

static void object_phrase(struct world_sb *b, struct mf_rng *r, const struct item *it, bool compact)
{
    noun_phrase(b, r, it, compact);
    if (it->pos >= 0)
        position_phrase(b, r, it->pos, compact);
}

/* "A", "A and B", "A, B and C" */
static void object_list(struct world_sb *b, struct mf_rng *r, const struct item *it, int n, bool compact)
{
    for (int i = 0; i < n; i++) {
        if (i > 0)
            sb_word(b, i == n - 1 ? "and" : ",");
        object_phrase(b, r, &it[i], compact);
    }
}

/* The background as a noun phrase; docs/world.md lists the forms. */
static void background_np(struct world_sb *b, struct mf_rng *r, const struct mf_world_scene *s, bool compact)
{
    const char *c1 = mf_world_color_name(s->bg_c1), *c2 = mf_world_color_name(s->bg_c2);
    int form = compact ? 0 : world_u(r, 2);
    switch (s->bg) {
    case MF_BG_PLAIN: /* "a plain C background" | "a C background" */
        sb_word(b, world_article(form ? c1 : "plain"));
        if (!form)
            sb_word(b, "plain");
        sb_word(b, c1);
        sb_word(b, "background");
        break;
    case MF_BG_NOISE: /* "a noisy C background" | "a speckled C background" */
        sb_word(b, "a");
        sb_word(b, form ? "speckled" : "noisy");
        sb_word(b, c1);
        sb_word(b, "background");
        break;
    case MF_BG_GRADIENT: /* "a C1 to C2 gradient" [background] */
        sb_word(b, world_article(c1));
        sb_word(b, c1);
        sb_word(b, "to");
        sb_word(b, c2);
        sb_word(b, "gradient");
        if (form)
            sb_word(b, "background");
        break;
    default: { /* "C1 and C2 stripes" | "a C1 and C2 striped background", either colour first */
        if (!compact && world_u(r, 2)) {
            const char *t = c1;
            c1 = c2;
            c2 = t;
        }
        if (form)
            sb_word(b, world_article(c1));
        sb_word(b, c1);
        sb_word(b, "and");
        sb_word(b, c2);
        sb_word(b, form ? "striped" : "stripes");
        if (form)
            sb_word(b, "background");
    }
    }
}

static void background_suffix(struct world_sb *b, struct mf_rng *r, const struct mf_world_scene *s, bool compact)
{
    sb_word(b, compact || world_u(r, 3) ? "on" : "against");
    background_np(b, r, s, compact);
}

/* Items of a caption: the objects in a random order; partial captions drop sizes and positions at
 * random and may merge objects of one colour and shape into a counted group. */
static int make_items(struct mf_rng *r, const struct mf_world_scene *s, enum mf_world_caption_kind kind, struct item *it)
{
    int order[MF_WORLD_MAX_OBJECTS];
    for (int i = 0; i < s->n_obj; i++)
        order[i] = i;
    for (int i = s->n_obj - 1; i > 0; i--) {
        int j = world_u(r, i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    const bool full = kind == MF_WORLD_CAPTION_FULL;
    const bool group = !full && world_u(r, 2) == 0;
    bool used[MF_WORLD_MAX_OBJECTS] = {false};
    int n = 0;
    for (int a = 0; a < s->n_obj; a++) {
        const struct mf_world_object *o = &s->obj[order[a]];
        if (used[a])
            continue;
        struct item x = {1, o->large, o->color, o->shape, o->pos};
        bool same_size = true;
        if (group)
            for (int b2 = a + 1; b2 < s->n_obj; b2++) {
                const struct mf_world_object *p = &s->obj[order[b2]];
                if (!used[b2] && p->color == o->color && p->shape == o->shape) {
                    used[b2] = true;
                    x.count++;
                    same_size = same_size && p->large == o->large;
                }
            }
        if (x.count > 1) {
            x.pos = -1;
            if (!same_size || world_u(r, 5) == 0)
                x.size = -1;
        } else if (!full) {
            if (world_u(r, 5) == 0) /* size named 80 % */
                x.size = -1;
            if (world_u(r, 10) < 3) /* position named 70 % */
                x.pos = -1;
        }
        it[n++] = x;
    }
    return n;
}

static void caption_once(struct world_sb *b, struct mf_rng *r, const struct mf_world_scene *s,
                         enum mf_world_caption_kind kind, bool compact)
{
    struct item it[MF_WORLD_MAX_OBJECTS];
    int n = make_items(r, s, kind, it);
    const bool bg = kind == MF_WORLD_CAPTION_FULL || world_u(r, 2) == 0;
    int t = compact ? 0 : world_u(r, 5);
    if (t == 2 && !bg)
        t = 0;
    if (t == 3 && s->n_obj < 2)
        t = 1;
    if (t == 4 && it[0].pos < 0)
        t = 1;
    switch (t) {
    case 1: /* there is/are OL [on BG] */
        sb_word(b, "there");
        sb_word(b, it[0].count > 1 ? "are" : "is");
        object_list(b, r, it, n, compact);
        if (bg)
            background_suffix(b, r, s, compact);
        break;
    case 2: /* BG with OL */
        background_np(b, r, s, compact);
        sb_word(b, "with");
        object_list(b, r, it, n, compact);
        break;
    case 3: { /* N objects|shapes|things [on BG] , OL */
        static const char *const nums[4] = {NULL, "one", "two", "three"};
        static const char *const nouns[3] = {"objects", "shapes", "things"};
        sb_word(b, nums[s->n_obj]);
        sb_word(b, nouns[world_u(r, 3)]);
        if (bg)
            background_suffix(b, r, s, compact);
        sb_word(b, ",");
        object_list(b, r, it, n, compact);
        break;
    }
    case 4: { /* PP there is NP [, ...] and ... [on BG] */
        struct item first = it[0];
        position_phrase(b, r, first.pos, compact);
        sb_word(b, "there");
        sb_word(b, "is");
        first.pos = -1;
        noun_phrase(b, r, &first, compact);
        for (int i = 1; i < n; i++) {
            sb_word(b, i == n - 1 ? "and" : ",");
            object_phrase(b, r, &it[i], compact);
        }
        if (bg)
            background_suffix(b, r, s, compact);
        break;
    }
    default: /* OL [on BG] */
        object_list(b, r, it, n, compact);
        if (bg)
            background_suffix(b, r, s, compact);
    }
}

int mf_world_caption(const struct mf_world_scene *s, uint64_t seed, enum mf_world_caption_kind kind, char *buf,
                     size_t n)
{
    struct mf_rng r;
    mf_rng_seed(&r, world_mix64(seed));
    struct world_sb b;
    for (int attempt = 0; attempt <= 20; attempt++) {
        world_sb_init(&b, buf, n);
        caption_once(&b, &r, s, kind, attempt == 20);
        if (b.overflow)
            return -1;
        if (b.pieces <= MF_WORLD_MAX_CAPTION_PIECES)
            return (int)b.len;
    }
    return -1; /* unreachable: the compact form of three objects is 31 tokens */
}
