/*
 * multiflow/world.h: a deterministic procedural image-caption-question world (issue 10), the data
 * that BLIP-mini is pretrained on and that the benchmark prunes, fine-tunes and evaluates on.
 *
 *     struct mf_err err = {0};
 *     struct mf_world_opts o = mf_world_opts_default();     // 50,000 pretrain, 1,000 test, 64 px
 *     o.seed = 7;
 *     struct mf_world_summary sum;
 *     if (mf_world_generate("world/", &o, &sum, &err) != MF_OK)  // atomic: all or nothing
 *         fprintf(stderr, "error: %s\n", err.msg);
 *
 *     // one scene, its pixels, a caption and the caption's check against the scene
 *     struct mf_world_scene sc;
 *     mf_world_sample_scene(7, MF_WORLD_PRETRAIN, 0, 0, &sc);
 *     uint8_t rgb[64 * 64 * 3];
 *     mf_world_render(&sc, 64, rgb);
 *     char cap[MF_WORLD_TEXT_MAX];
 *     mf_world_caption(&sc, 7, MF_WORLD_CAPTION_FULL, cap, sizeof cap);
 *     struct mf_world_claims cl;
 *     if (mf_world_check_caption(&sc, cap, &cl, &err) != MF_OK) ...   // false or unparseable
 *
 * Everything is a pure function of (seed, split, index): integer and fixed-point arithmetic only
 * (no libm), its own PRNG (core/rng.h, xoshiro256**), so the same seed gives the same pixels,
 * captions and questions on every machine and for every thread count. The exact colours, drawing
 * rules, grammar, question templates and files: docs/world.md.
 * Thread safety: every function is reentrant; mf_world_generate uses o->n_threads workers itself.
 */
#ifndef MF_WORLD_H
#define MF_WORLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiflow/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MF_WORLD_FORMAT_VERSION 1
#define MF_WORLD_MAX_OBJECTS 3
#define MF_WORLD_N_SHAPES 6
#define MF_WORLD_N_OBJECT_COLORS 8 /* colours an object may take: the first 8 of enum mf_world_color */
#define MF_WORLD_N_COLORS 10       /* plus gray and black, background only */
#define MF_WORLD_N_POSITIONS 9
#define MF_WORLD_TEXT_MAX 512        /* bytes of any caption or question, NUL included */
#define MF_WORLD_MAX_CAPTION_PIECES 32 /* WordPiece tokens of a caption without [CLS]/[SEP] */

enum mf_world_shape { MF_SHAPE_CIRCLE, MF_SHAPE_SQUARE, MF_SHAPE_TRIANGLE, MF_SHAPE_DIAMOND, MF_SHAPE_STAR, MF_SHAPE_CROSS };
enum mf_world_color {
    MF_COLOR_RED, MF_COLOR_GREEN, MF_COLOR_BLUE, MF_COLOR_YELLOW, MF_COLOR_ORANGE, MF_COLOR_PURPLE,
    MF_COLOR_PINK, MF_COLOR_WHITE, MF_COLOR_GRAY, MF_COLOR_BLACK
};
enum mf_world_bg { MF_BG_PLAIN, MF_BG_GRADIENT, MF_BG_NOISE, MF_BG_STRIPES, MF_WORLD_N_BGS };
/* Positions are the 3x3 grid cells in row-major order: 0 top left, 1 top, 2 top right, 3 left,
 * 4 center, 5 right, 6 bottom left, 7 bottom, 8 bottom right. */

enum mf_world_split {
    MF_WORLD_PRETRAIN, /* pretrain.jsonl */
    MF_WORLD_CALIB,    /* calib.jsonl: the pretraining distribution, for pruning */
    MF_WORLD_TRAIN,    /* retrieval/caption/vqa_train.json */
    MF_WORLD_TEST,     /* retrieval/caption/vqa_test.json: distinguishable scenes */
    MF_WORLD_NOVEL,    /* novel_test.json: every scene holds a held-out composition */
    MF_WORLD_N_SPLITS
};

/* One object; the jitter fields are drawn once and stored so the record alone fixes the pixels. */
struct mf_world_object {
    uint8_t shape, color, large, pos; /* enum mf_world_shape, enum mf_world_color (< 8), 0/1, 0..8 */
    int8_t dx, dy;                    /* centre offset in 1/1024 of the image side, [-24, 24] */
    int8_t scale;                     /* size jitter in percent, [-10, 10] */
    int8_t rot;                       /* rotation in degrees, [-15, 15] (clockwise on screen) */
    int8_t dhue, dsat, dval;          /* colour jitter: hue degrees [-8, 8], saturation [-15, 15], value [-20, 20] */
};

struct mf_world_scene {
    int n_obj; /* 1..3, objects in distinct cells */
    struct mf_world_object obj[MF_WORLD_MAX_OBJECTS];
    uint8_t bg;          /* enum mf_world_bg */
    uint8_t bg_c1, bg_c2; /* enum mf_world_color; gradient and stripes: c2 != c1; plain and noise: c2 == c1 */
    uint8_t bg_dir;      /* gradient: 0 left->right, 1 top->bottom; stripes: 0 horizontal, 1 vertical, 2 diagonal */
    uint16_t bg_period;  /* stripes: period in 1/1024 of the image side (96, 128 or 160) */
    uint32_t noise_seed; /* noise: seed of the per-pixel hash */
};

/* Names: "circle" / "circles", "red", "top left"; NULL out of range. */
const char *mf_world_shape_name(int shape);
const char *mf_world_shape_plural(int shape);
const char *mf_world_color_name(int color);
const char *mf_world_position_name(int pos);
const char *mf_world_bg_name(int bg); /* "plain", "gradient", "noise", "stripes" */
const char *mf_world_split_name(enum mf_world_split split); /* "pretrain", "calib", "train", "test", "novel" */
/* The colour's RGB before jitter (docs/world.md table). */
void mf_world_color_rgb(int color, uint8_t rgb[3]);
/* True for the compositions held out of every split but novel (purple triangle, orange star,
 * green diamond). */
bool mf_world_is_held_out(int color, int shape);

/* Draws scene `index` of a split (attempt > 0: the redraws the generator makes when a test scene
 * repeats the description of an earlier one). Pure function of its arguments. */
void mf_world_sample_scene(uint64_t seed, enum mf_world_split split, int64_t index, int attempt,
                           struct mf_world_scene *out);
/* The n scenes a world with this seed and these counts holds in split (what mf_world_generate
 * draws, test and novel redraws included): out is (n). MF_ERR_NOMEM. */
enum mf_status mf_world_split_scenes(uint64_t seed, enum mf_world_split split, int64_t n,
                                     struct mf_world_scene *out, struct mf_err *err);
/* The caption-visible description (background kind and colours, then every object's position,
 * size, colour and shape) as a short canonical string; returns its length (< n on success). Two
 * scenes with equal keys cannot be told apart by any caption. */
int mf_world_scene_key(const struct mf_world_scene *s, char *buf, size_t n);

/* Renders s into rgb (size, size, 3), row-major, 8 bits per channel. size in [16, 1024]. */
void mf_world_render(const struct mf_world_scene *s, int size, uint8_t *rgb);

enum mf_world_caption_kind {
    MF_WORLD_CAPTION_FULL,    /* every object's size, colour, shape and position, and the background */
    MF_WORLD_CAPTION_PARTIAL, /* colour and shape of every object; size, position, background usually */
};
/* One caption drawn from the grammar with the generator `seed` (each seed a paraphrase); at most
 * MF_WORLD_MAX_CAPTION_PIECES tokens. Returns the length, or -1 if n is too small. */
int mf_world_caption(const struct mf_world_scene *s, uint64_t seed, enum mf_world_caption_kind kind, char *buf,
                     size_t n);

/* What a parsed caption says, for checks beyond truth. */
struct mf_world_claims {
    int n_objects;        /* objects named (counts included) */
    bool all_sizes;       /* every object's size named */
    bool all_positions;   /* every object's position named */
    bool background;      /* the background named */
};
/* Parses caption with the grammar of docs/world.md and checks it against s: every object named
 * exactly once with its colour and shape, every size, position, count and background it states
 * true. MF_OK when true; MF_ERR_FORMAT (with the word at fault) when it is not in the grammar;
 * MF_ERR_RANGE when it is grammatical but false of s. claims may be NULL. */
enum mf_status mf_world_check_caption(const struct mf_world_scene *s, const char *caption,
                                      struct mf_world_claims *claims, struct mf_err *err);

enum mf_world_qtype { MF_Q_COLOR, MF_Q_SHAPE, MF_Q_COUNT, MF_Q_PRESENCE, MF_Q_WHERE, MF_WORLD_N_QTYPES };
struct mf_world_qa {
    char question[MF_WORLD_TEXT_MAX];
    int answer;                /* index into mf_world_answer() */
    enum mf_world_qtype type;
};
/* Up to max questions about s (one per type where the scene allows it), drawn with seed. */
int mf_world_questions(const struct mf_world_scene *s, uint64_t seed, int max, struct mf_world_qa *out);
/* The fixed answer list: answer i (NULL past the end), and its size. */
const char *mf_world_answer(int i);
int mf_world_n_answers(void);
const char *mf_world_qtype_name(enum mf_world_qtype t);   /* "color", "shape", "count", "presence", "where" */
const char *mf_world_answer_type(enum mf_world_qtype t);  /* VQA's "yes/no", "number", "other" */

/* The world's WordPiece vocabulary, one token per line in BERT's vocab.txt form: [PAD] [UNK]
 * [CLS] [SEP] [MASK], every word of the grammar, then single characters (ASCII punctuation,
 * digits, letters) and their "##" pieces, so any ASCII text tokenises. [DEC] and [ENC] are NOT
 * lines: the BLIP loader appends them as ids V and V+1 (BLIP's init_tokenizer, models.md §3.2),
 * so a model's word embeddings need mf_world_vocab_size() + 2 rows. */
int mf_world_vocab_size(void);
const char *mf_world_vocab_token(int i);
enum mf_status mf_world_write_vocab(const char *path, struct mf_err *err);

struct mf_world_opts {
    uint64_t seed;
    int64_t n_pretrain; /* images, two captions each (default 50,000) */
    int64_t n_calib;    /* images, two captions each (default 1,000) */
    int64_t n_train;    /* downstream training images, five captions and five questions each (default 5,000) */
    int64_t n_test;     /* downstream test images, same (default 1,000) */
    int64_t n_novel;    /* held-out-composition test images, five captions each (default 1,000) */
    int size;           /* pixels per side (default 64) */
    int n_threads;      /* rendering workers (default 1); the output does not depend on it */
    bool force;         /* replace an existing output directory */
};
struct mf_world_opts mf_world_opts_default(void);

struct mf_world_summary {
    int64_t n_images, n_captions, n_questions;
    uint64_t content_hash; /* FNV-1a 64 over every image's pixels and every text file, in order */
    double seconds;
};

/* Writes the world into dir atomically (a temporary sibling renamed at the end): images under
 * <split>/NNNNNN.png, pretrain.jsonl, calib.jsonl, retrieval_{train,test}.json,
 * caption_{train,test}.json, vqa_{train,test}.json, answers.json, novel_test.json, scenes.jsonl,
 * vocab.txt, world.json. dir existing without o->force is MF_ERR_EXISTS. */
enum mf_status mf_world_generate(const char *dir, const struct mf_world_opts *o, struct mf_world_summary *sum,
                                 struct mf_err *err);

#ifdef __cplusplus
}
#endif
#endif
