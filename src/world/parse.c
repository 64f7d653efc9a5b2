/*
 * world/parse.c: reads a caption back with the world's grammar and checks it against a scene
 * record: the test that every caption the generator writes is true of its image.
 *
 * Written from the grammar of docs/world.md, not from grammar.c's code paths: it finds the
 * background phrase by its head noun ("background", "stripes", "gradient"), cuts the rest into
 * clauses at "," and "and", and reads each clause as one object phrase in any word order (so the
 * fronted "at the top left there is a small red circle" reads like "a small red circle at the top
 * left"), or as a total count ("three shapes"). Then it looks for an assignment of the scene's
 * objects to the phrases (at most 3! orders) under which every stated attribute holds.
 *
 * Does not: accept synonyms or forms the grammar does not produce; it is strict on purpose.
 */
#include <stdio.h>
#include <string.h>

#include "world/grammar.h"

#define MAX_TOK 96
#define MAX_CLAIMS 8

struct claim {
    int count, size, color, shape, pos;
};

static int find(const char *w, const char *const *list, int n)
{
    for (int i = 0; i < n; i++)
        if (list[i] && strcmp(w, list[i]) == 0)
            return i;
    return -1;
}

static int color_of(const char *w)
{
    for (int c = 0; c < MF_WORLD_N_COLORS; c++)
        if (strcmp(w, mf_world_color_name(c)) == 0)
            return c;
    return -1;
}

static bool is(const char *a, const char *b) { return strcmp(a, b) == 0; }

/* Splits text into words; "," and "?" become words of their own. */
static int tokenize(const char *text, char *store, size_t cap, const char **tok, struct mf_err *err)
{
    int n = 0;
    size_t used = 0;
    for (const char *p = text; *p;) {
        if (*p == ' ') {
            p++;
            continue;
        }
        size_t k = (*p == ',' || *p == '?') ? 1 : strcspn(p, " ,?");
        if (n == MAX_TOK || used + k + 1 > cap)
            return mf_err_set(err, MF_ERR_FORMAT, "caption too long for the grammar"), -1;
        memcpy(store + used, p, k);
        store[used + k] = '\0';
        tok[n++] = store + used;
        used += k + 1;
        p += k;
    }
    return n;
}

/* Background phrase tokens[b..e] (preposition and article removed) -> kind and colours. */
static enum mf_status parse_background(const char **t, int b, int e, int *kind, int *c1, int *c2, struct mf_err *err)
{
    int n = e - b + 1;
    const char **w = t + b;
    *c2 = -1;
    if (is(w[n - 1], "background") && n == 2 && (*c1 = color_of(w[0])) >= 0) {
        *kind = MF_BG_PLAIN;
        return MF_OK;
    }
    if (is(w[n - 1], "background") && n == 3 && (*c1 = color_of(w[1])) >= 0) {
        if (is(w[0], "plain"))
            *kind = MF_BG_PLAIN;
        else if (is(w[0], "noisy") || is(w[0], "speckled"))
            *kind = MF_BG_NOISE;
        else
            goto bad;
        return MF_OK;
    }
    int m = is(w[n - 1], "background") ? n - 1 : n; /* "gradient background" == "gradient" */
    if (m == 4 && (*c1 = color_of(w[0])) >= 0 && (*c2 = color_of(w[2])) >= 0) {
        if (is(w[1], "to") && is(w[3], "gradient")) {
            *kind = MF_BG_GRADIENT;
            return MF_OK;
        }
        if (is(w[1], "and") && ((m == n && is(w[3], "stripes")) || (m < n && is(w[3], "striped")))) {
            *kind = MF_BG_STRIPES;
            return MF_OK;
        }
    }
bad:
    return mf_err_set(err, MF_ERR_FORMAT, "background phrase '%s ... %s' is not in the grammar", w[0], w[n - 1]);
}

/* One clause: an object phrase in any order, or a total count ("three shapes"). */
static enum mf_status parse_clause(const char **t, int b, int e, struct claim *c, int *total, struct mf_err *err)
{
    static const char *const counts[] = {"a", "an", "one", "two", "three"};
    static const int count_val[] = {1, 1, 1, 2, 3};
    static const char *const fillers[] = {"there", "is", "are", "with"};
    *c = (struct claim){0, -1, -1, -1, -1};
    bool count_noun = false, seen_pos = false;
    for (int i = b; i <= e; i++) {
        const char *w = t[i];
        int k;
        if (find(w, fillers, 4) >= 0)
            continue;
        if ((k = find(w, counts, 5)) >= 0) {
            if (c->count)
                return mf_err_set(err, MF_ERR_FORMAT, "two counts in one phrase ('%s')", w);
            c->count = count_val[k];
        } else if (is(w, "small") || is(w, "little") || is(w, "large") || is(w, "big")) {
            if (c->size >= 0)
                return mf_err_set(err, MF_ERR_FORMAT, "two sizes in one phrase ('%s')", w);
            c->size = is(w, "large") || is(w, "big");
        } else if ((k = color_of(w)) >= 0) {
            if (c->color >= 0)
                return mf_err_set(err, MF_ERR_FORMAT, "two colours in one phrase ('%s')", w);
            c->color = k;
        } else if (is(w, "objects") || is(w, "shapes") || is(w, "things")) {
            count_noun = true;
        } else if (is(w, "in") || is(w, "at") || is(w, "on") || is(w, "near")) {
            /* prep "the" [top|bottom] [left|right|center|middle] [corner|side] */
            const char *prep = w, *v = NULL, *h = NULL, *tail = NULL;
            if (seen_pos || i + 2 > e || !is(t[i + 1], "the"))
                return mf_err_set(err, MF_ERR_FORMAT, "position phrase at '%s' is not in the grammar", w);
            i += 2;
            if (i <= e && (is(t[i], "top") || is(t[i], "bottom")))
                v = t[i++];
            if (i <= e && (is(t[i], "left") || is(t[i], "right") || is(t[i], "center") || is(t[i], "middle")))
                h = t[i++];
            if (i <= e && (is(t[i], "corner") || is(t[i], "side")))
                tail = t[i++];
            i--;
            bool center = h && (is(h, "center") || is(h, "middle"));
            bool ok = (v || h) && !(v && center) &&
                      (!tail || (is(tail, "corner") ? v && h : !v && h && !center)) &&
                      (v && h ? (tail ? is(prep, "in") : is(prep, "at"))
                       : v    ? is(prep, "at") || is(prep, "near")
                       : center ? is(prep, "in")
                                : is(prep, "on"));
            if (!ok)
                return mf_err_set(err, MF_ERR_FORMAT, "position phrase '%s the %s%s%s' is not in the grammar", prep,
                                  v ? v : "", v && h ? " " : "", h ? h : "");
            c->pos = (v ? (is(v, "top") ? 0 : 6) : 3) + (h && !center ? (is(h, "left") ? 0 : 2) : 1);
            seen_pos = true;
        } else {
            int s1 = -1, s2 = -1;
            for (int s = 0; s < MF_WORLD_N_SHAPES; s++) {
                if (is(w, mf_world_shape_name(s)))
                    s1 = s;
                if (is(w, mf_world_shape_plural(s)))
                    s2 = s;
            }
            if (s1 < 0 && s2 < 0)
                return mf_err_set(err, MF_ERR_FORMAT, "word '%s' is not in the grammar", w);
            if (c->shape >= 0)
                return mf_err_set(err, MF_ERR_FORMAT, "two shapes in one phrase ('%s')", w);
            c->shape = s1 >= 0 ? s1 : s2;
            if ((s1 >= 0) != (c->count == 1))
                return mf_err_set(err, MF_ERR_FORMAT, "'%s' does not agree with its count %d", w, c->count);
        }
    }
    if (count_noun) {
        if (c->count < 2 || c->color >= 0 || c->shape >= 0 || c->size >= 0 || seen_pos)
            return mf_err_set(err, MF_ERR_FORMAT, "a total count is 'two|three objects|shapes|things'");
        *total = c->count;
        c->count = 0;
        return MF_OK;
    }
    if (c->shape < 0 || c->color < 0 || c->count == 0)
        return mf_err_set(err, MF_ERR_FORMAT, "a phrase without a count, colour and shape ('%s ... %s')", t[b], t[e]);
    if (c->count > 1 && seen_pos)
        return mf_err_set(err, MF_ERR_FORMAT, "a counted group has no position");
    return MF_OK;
}

static bool slot_matches(const struct claim *c, const struct mf_world_object *o)
{
    return c->color == o->color && c->shape == o->shape && (c->size < 0 || c->size == o->large) &&
           (c->pos < 0 || c->pos == o->pos);
}

enum mf_status mf_world_check_caption(const struct mf_world_scene *s, const char *caption,
                                      struct mf_world_claims *out, struct mf_err *err)
{
    char store[2 * MF_WORLD_TEXT_MAX];
    const char *t[MAX_TOK];
    int n = tokenize(caption, store, sizeof store, t, err);
    if (n < 0)
        return MF_ERR_FORMAT;
    if (n == 0)
        return mf_err_set(err, MF_ERR_FORMAT, "empty caption");
    /* the background phrase: its head noun, back over its words, then the article and preposition */
    int bg_kind = -1, bg1 = -1, bg2 = -1, hb = -1, he = -1;
    static const char *const bg_words[] = {"plain", "noisy", "speckled", "gradient", "to", "and", "striped"};
    for (int i = 0; i < n; i++) {
        if (!is(t[i], "background") && !is(t[i], "stripes") && !is(t[i], "gradient"))
            continue;
        if (he >= 0)
            return mf_err_set(err, MF_ERR_FORMAT, "two background phrases");
        he = i;
        if (is(t[i], "gradient") && i + 1 < n && is(t[i + 1], "background"))
            he = ++i;
        hb = he;
        while (hb > 0 && (color_of(t[hb - 1]) >= 0 || find(t[hb - 1], bg_words, 7) >= 0))
            hb--;
        enum mf_status st = parse_background(t, hb, he, &bg_kind, &bg1, &bg2, err);
        if (st)
            return st;
        if (hb > 0 && (is(t[hb - 1], "a") || is(t[hb - 1], "an"))) {
            if (!is(t[hb - 1], world_article(t[hb])))
                return mf_err_set(err, MF_ERR_FORMAT, "'%s %s'", t[hb - 1], t[hb]);
            hb--;
        }
        if (hb > 0 && (is(t[hb - 1], "on") || is(t[hb - 1], "against")))
            hb--;
        else if (hb > 0)
            return mf_err_set(err, MF_ERR_FORMAT, "background phrase without 'on' or 'against'");
    }
    /* clauses of the rest */
    struct claim cl[MAX_CLAIMS];
    int n_cl = 0, total = 0, start = -1;
    bool after_delim = true; /* "," and "and" join two phrases: never first, last or doubled */
    for (int i = 0; i <= n; i++) {
        bool in_bg = i >= hb && i <= he && he >= 0;
        bool delim = i < n && !in_bg && (is(t[i], ",") || is(t[i], "and"));
        if ((delim || i == n) && after_delim && (delim || n_cl || total))
            return mf_err_set(err, MF_ERR_FORMAT, "'%s' without a phrase on both sides", delim ? t[i] : t[n - 1]);
        if (!in_bg && i < n)
            after_delim = delim;
        bool cut = i == n || in_bg || delim;
        if (!cut) {
            if (start < 0)
                start = i;
            continue;
        }
        if (start >= 0) {
            if (n_cl == MAX_CLAIMS)
                return mf_err_set(err, MF_ERR_FORMAT, "too many phrases");
            int tot = 0;
            enum mf_status st = parse_clause(t, start, i - 1, &cl[n_cl], &tot, err);
            if (st)
                return st;
            if (tot)
                total = tot;
            else
                n_cl++;
            start = -1;
        }
    }
    if (!n_cl && !total)
        return mf_err_set(err, MF_ERR_FORMAT, "no object phrase");
    /* a/an agreement everywhere */
    for (int i = 0; i + 1 < n; i++)
        if ((is(t[i], "a") || is(t[i], "an")) && !is(t[i], world_article(t[i + 1])))
            return mf_err_set(err, MF_ERR_FORMAT, "'%s %s'", t[i], t[i + 1]);

    /* truth */
    int named = 0;
    struct mf_world_claims c = {0, true, true, bg_kind >= 0};
    struct claim slot[MF_WORLD_MAX_OBJECTS];
    for (int i = 0; i < n_cl; i++)
        for (int k = 0; k < cl[i].count; k++) {
            if (named == s->n_obj)
                return mf_err_set(err, MF_ERR_RANGE, "names more objects than the scene's %d", s->n_obj);
            slot[named++] = cl[i];
            c.all_sizes = c.all_sizes && cl[i].size >= 0;
            c.all_positions = c.all_positions && cl[i].pos >= 0;
        }
    c.n_objects = named;
    if (named != s->n_obj)
        return mf_err_set(err, MF_ERR_RANGE, "names %d objects, the scene has %d", named, s->n_obj);
    if (total && total != s->n_obj)
        return mf_err_set(err, MF_ERR_RANGE, "says %d objects, the scene has %d", total, s->n_obj);
    if (bg_kind >= 0) {
        bool ok = bg_kind == s->bg;
        if (bg_kind == MF_BG_STRIPES) /* "red and blue stripes" names no order */
            ok = ok && ((bg1 == s->bg_c1 && bg2 == s->bg_c2) || (bg1 == s->bg_c2 && bg2 == s->bg_c1));
        else
            ok = ok && bg1 == s->bg_c1 && (bg_kind != MF_BG_GRADIENT || bg2 == s->bg_c2);
        if (!ok)
            return mf_err_set(err, MF_ERR_RANGE, "the background is not a %s %s one", mf_world_color_name(bg1),
                              mf_world_bg_name(bg_kind));
    }
    static const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    bool found = false;
    for (int p = 0; p < 6 && !found; p++) {
        bool ok = true;
        for (int k = 0; k < s->n_obj && ok; k++) {
            if (perms[p][k] >= s->n_obj) {
                ok = false;
                break;
            }
            ok = slot_matches(&slot[k], &s->obj[perms[p][k]]);
        }
        found = ok;
    }
    if (!found)
        return mf_err_set(err, MF_ERR_RANGE, "no object of the scene fits every phrase (e.g. '%s %s')",
                          mf_world_color_name(slot[0].color), mf_world_shape_name(slot[0].shape));
    if (out)
        *out = c;
    return MF_OK;
}
