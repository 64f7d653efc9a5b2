/*
 * world/questions.c: questions about a scene with answers from a fixed list (docs/world.md
 * "Questions"): the colour of a shape, the shape of a colour, how many, yes/no presence, where.
 *
 * A question is asked only when its answer is unique: "what color is the circle?" needs exactly one
 * circle, "where is the red star?" exactly one red star. Presence questions are yes or no with equal
 * odds, and a "no" never names a held-out composition (it would teach that they never occur).
 * A type the scene cannot support is replaced by a presence question.
 */
#include <stdio.h>
#include <string.h>

#include "world/grammar.h"

static const char *const answers[] = {
    "red", "green", "blue", "yellow", "orange", "purple", "pink", "white",          /* 0..7 colours */
    "circle", "square", "triangle", "diamond", "star", "cross",                     /* 8..13 shapes */
    "0", "1", "2", "3",                                                             /* 14..17 counts */
    "yes", "no",                                                                    /* 18, 19 */
    "top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right", /* 20.. */
};
enum { A_COLOR = 0, A_SHAPE = 8, A_COUNT = 14, A_YES = 18, A_NO = 19, A_POS = 20 };

const char *mf_world_answer(int i) { return i >= 0 && i < (int)MF_ARRAY_LEN(answers) ? answers[i] : NULL; }
int mf_world_n_answers(void) { return (int)MF_ARRAY_LEN(answers); }

const char *mf_world_qtype_name(enum mf_world_qtype t)
{
    static const char *const n[MF_WORLD_N_QTYPES] = {"color", "shape", "count", "presence", "where"};
    return (int)t >= 0 && t < MF_WORLD_N_QTYPES ? n[t] : NULL;
}

const char *mf_world_answer_type(enum mf_world_qtype t)
{
    return t == MF_Q_PRESENCE ? "yes/no" : t == MF_Q_COUNT ? "number" : "other";
}

/* The question's words, then "?". */
static void say(struct mf_world_qa *q, const char *const *words)
{
    struct world_sb b;
    world_sb_init(&b, q->question, sizeof q->question);
    for (; *words; words++)
        world_sb_word(&b, *words);
    world_sb_word(&b, "?");
}

static int count_if(const struct mf_world_scene *s, int color, int shape)
{
    int k = 0;
    for (int i = 0; i < s->n_obj; i++)
        k += (color < 0 || s->obj[i].color == color) && (shape < 0 || s->obj[i].shape == shape);
    return k;
}

/* One question of type t, or false when the scene does not support it. */
static bool ask(const struct mf_world_scene *s, struct mf_rng *r, enum mf_world_qtype t, struct mf_world_qa *q)
{
    const struct mf_world_object *o = &s->obj[world_u(r, s->n_obj)];
    const char *shape = mf_world_shape_name(o->shape), *color = mf_world_color_name(o->color);
    q->type = t;
    switch (t) {
    case MF_Q_COLOR: {
        if (count_if(s, -1, o->shape) != 1)
            return false;
        const char *const f[3][8] = {{"what", "color", "is", "the", shape, NULL},
                                     {"what", "is", "the", "color", "of", "the", shape, NULL},
                                     {"which", "color", "is", "the", shape, NULL}};
        say(q, f[world_u(r, 3)]);
        q->answer = A_COLOR + o->color;
        return true;
    }
    case MF_Q_SHAPE: {
        if (count_if(s, o->color, -1) != 1)
            return false;
        const char *const f[3][8] = {{"what", "shape", "is", "the", color, "object", NULL},
                                     {"what", "is", "the", color, "shape", NULL},
                                     {"which", "shape", "is", color, NULL}};
        say(q, f[world_u(r, 3)]);
        q->answer = A_SHAPE + o->shape;
        return true;
    }
    case MF_Q_COUNT: {
        int form = world_u(r, 4);
        int c = form < 2 ? -1 : world_u(r, MF_WORLD_N_OBJECT_COLORS), sh = form == 3 ? world_u(r, MF_WORLD_N_SHAPES) : -1;
        if (form == 3)
            c = -1;
        const char *const f[4][8] = {{"how", "many", "objects", "are", "there", NULL},
                                     {"how", "many", "shapes", "are", "in", "the", "picture", NULL},
                                     {"how", "many", c >= 0 ? mf_world_color_name(c) : "", "objects", "are", "there", NULL},
                                     {"how", "many", sh >= 0 ? mf_world_shape_plural(sh) : "", "are", "there", NULL}};
        say(q, f[form]);
        q->answer = A_COUNT + count_if(s, c, sh);
        return true;
    }
    case MF_Q_PRESENCE: {
        int form = world_u(r, 3), c = o->color, sh = o->shape; /* "yes": a present object */
        bool yes = world_u(r, 2) == 0;
        if (form == 1)
            c = -1;
        if (form == 2)
            sh = -1;
        for (int tries = 0; !yes; tries++) {
            if (tries == 64)
                return false;
            c = form == 1 ? -1 : world_u(r, MF_WORLD_N_OBJECT_COLORS);
            sh = form == 2 ? -1 : world_u(r, MF_WORLD_N_SHAPES);
            if (count_if(s, c, sh) == 0 && !(c >= 0 && sh >= 0 && mf_world_is_held_out(c, sh)))
                break;
        }
        const char *cw = c >= 0 ? mf_world_color_name(c) : NULL, *sw = sh >= 0 ? mf_world_shape_name(sh) : NULL;
        const char *const f[3][8] = {{"is", "there", cw ? world_article(cw) : "", cw, sw, NULL},
                                     {"is", "there", sw ? world_article(sw) : "", sw, NULL},
                                     {"is", "there", cw ? world_article(cw) : "", cw, "object", NULL}};
        say(q, f[form]);
        q->answer = count_if(s, c, sh) ? A_YES : A_NO;
        return true;
    }
    default: {
        if (count_if(s, o->color, o->shape) != 1)
            return false;
        const char *const f[2][12] = {{"where", "is", "the", color, shape, NULL},
                                      {"in", "which", "part", "of", "the", "picture", "is", "the", color, shape, NULL}};
        say(q, f[world_u(r, 2)]);
        q->answer = A_POS + o->pos;
        return true;
    }
    }
}

int mf_world_questions(const struct mf_world_scene *s, uint64_t seed, int max, struct mf_world_qa *out)
{
    struct mf_rng r;
    mf_rng_seed(&r, world_mix64(seed));
    int n = 0;
    for (int t = 0; t < MF_WORLD_N_QTYPES && n < max; t++) {
        struct mf_world_qa *q = &out[n];
        bool ok = false;
        for (int tries = 0; tries < 8 && !ok; tries++) { /* another object, or a presence question */
            ok = ask(s, &r, tries < 4 ? (enum mf_world_qtype)t : MF_Q_PRESENCE, q);
            for (int k = 0; ok && k < n; k++)
                ok = strcmp(out[k].question, q->question) != 0;
        }
        n += ok;
    }
    return n;
}
