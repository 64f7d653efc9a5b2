/*
 * world/generate.c: `multiflow world`: draws every split's scenes, writes their captions,
 * questions and scene records, renders and PNG-encodes the images on a thread pool, and commits
 * the directory atomically.
 *
 * Determinism: scenes, captions and questions are drawn in one thread in a fixed order (each from
 * its own (seed, split, index) stream, so the order only matters for the test and novel redraws);
 * images are pure functions of their scene records, so the thread count changes nothing. PNGs are
 * written by libpng with fixed settings (8-bit RGB, no interlace, filter "none" on every row, zlib
 * level 1, default strategy, window and memory level, no text or time chunks: on these scenes the
 * fastest setting measured, and smaller than "sub" at level 6). The content hash
 * (world.json) covers decoded pixels and text, so it also holds where another zlib would compress
 * differently.
 *
 * Does not: resume a killed run (the world takes seconds), or write anything outside the temporary
 * directory before the final rename.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/pool.h"
#include "core/progress.h"
#include "io/fs.h"
#include "world/grammar.h"

#define QUESTIONS_PER_IMAGE 5
#define VQA_ANSWERS 10 /* each question carries its answer ten times, as VQA v2's ten annotators */

struct split_plan {
    enum mf_world_split split;
    int64_t n;
    int n_captions;
    enum mf_world_caption_kind kind;
    struct mf_world_scene *scenes; /* (n) */
    size_t *cap_off;  /* (n, n_captions) offsets of the captions in text */
    char *text;       /* the captions, NUL-terminated one after another */
    size_t text_len, text_cap;
    int width; /* digits of the file names */
};

struct mf_world_opts mf_world_opts_default(void)
{
    return (struct mf_world_opts){.seed = 0, .n_pretrain = 50000, .n_calib = 1000, .n_train = 5000,
                                  .n_test = 1000, .n_novel = 1000, .size = 64, .n_threads = 1, .force = false};
}

/* ---- text files: written and hashed as they go ---- */

struct out {
    FILE *f;
    char path[MF_PATH_MAX];
    uint64_t *hash;
    bool failed;
};

static enum mf_status out_open(struct out *o, const char *dir, const char *name, uint64_t *hash, struct mf_err *err)
{
    o->hash = hash;
    o->failed = false;
    if (!mf_fs_join(o->path, sizeof o->path, dir, name))
        return mf_err_set(err, MF_ERR_ARG, "%s/%s: path too long", dir, name);
    if (!(o->f = fopen(o->path, "wb")))
        return mf_err_set(err, MF_ERR_IO, "%s: cannot create", o->path);
    return MF_OK;
}

static void out_write(struct out *o, const char *s, size_t n)
{
    if (o->hash)
        *o->hash = world_fnv1a(*o->hash, s, n);
    if (fwrite(s, 1, n, o->f) != n)
        o->failed = true;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void out_printf(struct out *o, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    MF_ASSERT(n >= 0 && (size_t)n < sizeof buf);
    out_write(o, buf, (size_t)n);
}

/* A JSON string; the world's texts are ASCII without quotes, but escape anyway. */
static void out_str(struct out *o, const char *s)
{
    out_write(o, "\"", 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            out_printf(o, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            out_printf(o, "\\u%04x", (unsigned char)*s);
        else
            out_write(o, s, 1);
    }
    out_write(o, "\"", 1);
}

static enum mf_status out_close(struct out *o, struct mf_err *err)
{
    bool bad = o->failed;
    if (fclose(o->f) != 0)
        bad = true;
    o->f = NULL;
    return bad ? mf_err_set(err, MF_ERR_IO, "%s: write failed", o->path) : MF_OK;
}

static void image_name(char *buf, size_t n, const struct split_plan *p, int64_t i)
{
    snprintf(buf, n, "%s/%0*" PRId64 ".png", mf_world_split_name(p->split), p->width, i);
}

/* ---- annotation files ---- */

/* {"image": ..., "caption": [...]} per image; jsonl: one per line, else a JSON array. */
static enum mf_status write_captions(const char *dir, const char *name, const struct split_plan *p, bool jsonl,
                                     uint64_t *hash, struct mf_err *err)
{
    struct out o;
    enum mf_status st = out_open(&o, dir, name, hash, err);
    if (st)
        return st;
    if (!jsonl)
        out_write(&o, "[\n", 2);
    for (int64_t i = 0; i < p->n; i++) {
        char img[64];
        image_name(img, sizeof img, p, i);
        out_write(&o, "{\"image\": ", 10);
        out_str(&o, img);
        out_write(&o, ", \"caption\": [", 14);
        for (int k = 0; k < p->n_captions; k++) {
            if (k)
                out_write(&o, ", ", 2);
            out_str(&o, p->text + p->cap_off[i * p->n_captions + k]);
        }
        out_write(&o, "]}", 2);
        out_write(&o, jsonl || i == p->n - 1 ? "\n" : ",\n", jsonl || i == p->n - 1 ? 1 : 2);
    }
    if (!jsonl)
        out_write(&o, "]\n", 2);
    return out_close(&o, err);
}

static enum mf_status write_vqa(const char *dir, const char *name, const struct split_plan *p, uint64_t seed,
                                int64_t *qid, uint64_t *hash, struct mf_err *err)
{
    struct out o;
    enum mf_status st = out_open(&o, dir, name, hash, err);
    if (st)
        return st;
    out_write(&o, "[\n", 2);
    bool first = true;
    for (int64_t i = 0; i < p->n; i++) {
        struct mf_world_qa qa[QUESTIONS_PER_IMAGE];
        int nq = mf_world_questions(&p->scenes[i], world_seed(seed, (int)p->split, i, 0, WORLD_STREAM_QUESTION),
                                    QUESTIONS_PER_IMAGE, qa);
        char img[64];
        image_name(img, sizeof img, p, i);
        for (int k = 0; k < nq; k++) {
            if (!first)
                out_write(&o, ",\n", 2);
            first = false;
            out_write(&o, "{\"image\": ", 10);
            out_str(&o, img);
            out_write(&o, ", \"question\": ", 14);
            out_str(&o, qa[k].question);
            out_write(&o, ", \"answer\": [", 13);
            for (int a = 0; a < VQA_ANSWERS; a++) {
                if (a)
                    out_write(&o, ", ", 2);
                out_str(&o, mf_world_answer(qa[k].answer));
            }
            out_printf(&o, "], \"question_id\": %" PRId64 ", \"question_type\": \"%s\", \"answer_type\": \"%s\"}",
                       (*qid)++, mf_world_qtype_name(qa[k].type), mf_world_answer_type(qa[k].type));
        }
    }
    out_write(&o, "\n]\n", 3);
    return out_close(&o, err);
}

static void scene_json(struct out *o, const char *img, const char *split, const struct mf_world_scene *s)
{
    char key[64];
    mf_world_scene_key(s, key, sizeof key);
    out_write(o, "{\"image\": ", 10);
    out_str(o, img);
    out_printf(o, ", \"split\": \"%s\", \"key\": \"%s\", \"background\": {\"kind\": \"%s\", \"colors\": [\"%s\"", split,
               key, mf_world_bg_name(s->bg), mf_world_color_name(s->bg_c1));
    if (s->bg == MF_BG_GRADIENT || s->bg == MF_BG_STRIPES)
        out_printf(o, ", \"%s\"", mf_world_color_name(s->bg_c2));
    out_printf(o, "], \"dir\": %d, \"period\": %d, \"noise_seed\": %" PRIu32 "}, \"objects\": [", s->bg_dir,
               s->bg_period, s->noise_seed);
    for (int i = 0; i < s->n_obj; i++) {
        const struct mf_world_object *b = &s->obj[i];
        out_printf(o,
                   "%s{\"shape\": \"%s\", \"color\": \"%s\", \"size\": \"%s\", \"position\": \"%s\", \"dx\": %d, "
                   "\"dy\": %d, \"scale\": %d, \"rotation\": %d, \"hue\": %d, \"saturation\": %d, \"value\": %d}",
                   i ? ", " : "", mf_world_shape_name(b->shape), mf_world_color_name(b->color),
                   b->large ? "large" : "small", mf_world_position_name(b->pos), b->dx, b->dy, b->scale, b->rot,
                   b->dhue, b->dsat, b->dval);
    }
    out_write(o, "]}\n", 3);
}

/* ---- images ---- */

struct png_mem {
    uint8_t *buf;
    size_t len, cap;
    bool nomem;
    char msg[200];
};

static void png_w_error(png_structp png, png_const_charp msg)
{
    struct png_mem *m = png_get_error_ptr(png);
    snprintf(m->msg, sizeof m->msg, "%s", msg);
    png_longjmp(png, 1);
}
static void png_w_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }
static void png_w_write(png_structp png, png_bytep data, size_t n)
{
    struct png_mem *m = png_get_io_ptr(png);
    if (m->len + n > m->cap) {
        size_t cap = MF_MAX(m->cap * 2, m->len + n + 4096);
        uint8_t *b = mf_realloc(m->buf, cap);
        if (!b) {
            m->nomem = true;
            png_error(png, "out of memory");
        }
        m->buf = b;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, data, n);
    m->len += n;
}
static void png_w_flush(png_structp png) { (void)png; }
/* libpng's own allocations go through the project's hooks too (failure injection, counting) */
static png_voidp png_w_malloc(png_structp png, png_alloc_size_t n)
{
    void *p = mf_malloc(n);
    if (!p)
        ((struct png_mem *)png_get_mem_ptr(png))->nomem = true;
    return p;
}
static void png_w_free(png_structp png, png_voidp p)
{
    (void)png;
    mf_free(p);
}

/* Encodes rgb (S, S, 3) into m (reset first). rows: (S) scratch. */
static bool png_encode(struct png_mem *m, const uint8_t *rgb, int S, png_bytep *rows)
{
    m->len = 0;
    m->msg[0] = '\0';
    m->nomem = false;
    png_structp png = png_create_write_struct_2(PNG_LIBPNG_VER_STRING, m, png_w_error, png_w_warning, m,
                                                png_w_malloc, png_w_free);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        snprintf(m->msg, sizeof m->msg, "out of memory");
        m->nomem = true;
        return false;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return false;
    }
    png_set_write_fn(png, m, png_w_write, png_w_flush);
    png_set_IHDR(png, info, (png_uint_32)S, (png_uint_32)S, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_NONE);
    png_set_compression_level(png, 1);
    png_set_compression_strategy(png, 0 /* Z_DEFAULT_STRATEGY */);
    png_set_compression_window_bits(png, 15);
    png_set_compression_mem_level(png, 8);
    for (int y = 0; y < S; y++)
        rows[y] = (png_bytep)(rgb + (size_t)y * S * 3);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return true;
}

/* One image file: open, write, close, no stdio buffer (three system calls per image). */
static bool write_file(const char *path, const uint8_t *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        return false;
    bool ok = true;
    for (size_t done = 0; ok && done < len;) {
        ssize_t w = write(fd, buf + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        done += ok ? (size_t)w : 0;
    }
    return close(fd) == 0 && ok;
}

#define MAX_WORKERS 256

struct render_job {
    const struct split_plan *p;
    const char *dir;
    int S;
    int64_t first, count;
    uint64_t *pixel_hash; /* (p->n) */
    struct {
        uint8_t *rgb;
        png_bytep *rows;
        struct png_mem png;
        enum mf_status st;
        struct mf_err err;
    } w[MAX_WORKERS];
};

static void render_kernel(void *arg, int ith, int nth)
{
    struct render_job *j = arg;
    int64_t b, e;
    mf_split_range(j->count, ith, nth, &b, &e);
    for (int64_t k = j->first + b; k < j->first + e && !j->w[ith].st; k++) {
        const struct mf_world_scene *s = &j->p->scenes[k];
        mf_world_render(s, j->S, j->w[ith].rgb);
        j->pixel_hash[k] = world_fnv1a(WORLD_FNV_INIT, j->w[ith].rgb, (size_t)j->S * j->S * 3);
        char name[64], path[MF_PATH_MAX];
        image_name(name, sizeof name, j->p, k);
        if (!mf_fs_join(path, sizeof path, j->dir, name)) {
            j->w[ith].st = mf_err_set(&j->w[ith].err, MF_ERR_ARG, "%s/%s: path too long", j->dir, name);
            break;
        }
        if (!png_encode(&j->w[ith].png, j->w[ith].rgb, j->S, j->w[ith].rows)) {
            j->w[ith].st = mf_err_set(&j->w[ith].err, j->w[ith].png.nomem ? MF_ERR_NOMEM : MF_ERR_INTERNAL,
                                      "%s: PNG encoding failed: %s", path, j->w[ith].png.msg);
            break;
        }
        if (!write_file(path, j->w[ith].png.buf, j->w[ith].png.len))
            j->w[ith].st = mf_err_set(&j->w[ith].err, MF_ERR_IO, "%s: cannot write", path);
    }
}

static enum mf_status render_all(struct split_plan *plans, int n_plans, const char *dir, int S, int n_threads,
                                 uint64_t *hash, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    const int nth = MF_MAX(1, MF_MIN(n_threads, MAX_WORKERS));
    struct mf_pool *pool = nth > 1 ? mf_pool_create(nth) : NULL;
    struct render_job *j = mf_calloc(1, sizeof *j);
    uint64_t *ph = NULL;
    if ((nth > 1 && !pool) || !j) {
        st = mf_err_set(err, MF_ERR_NOMEM, "cannot start %d rendering threads", nth);
        goto done;
    }
    for (int t = 0; t < nth; t++) {
        j->w[t].rgb = mf_malloc((size_t)S * S * 3);
        j->w[t].rows = mf_malloc((size_t)S * sizeof(png_bytep));
        if (!j->w[t].rgb || !j->w[t].rows) {
            st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    int64_t total = 0;
    for (int i = 0; i < n_plans; i++)
        total += plans[i].n;
    struct mf_progress pg;
    mf_progress_begin(&pg, "world", "img", total);
    for (int i = 0; i < n_plans && !st; i++) {
        struct split_plan *p = &plans[i];
        mf_free(ph);
        if (!(ph = mf_malloc((size_t)MF_MAX(p->n, 1) * sizeof *ph))) {
            st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
            break;
        }
        j->p = p;
        j->dir = dir;
        j->S = S;
        j->pixel_hash = ph;
        const int64_t block = 64 * (int64_t)nth;
        for (int64_t b = 0; b < p->n && !st; b += block) {
            j->first = b;
            j->count = MF_MIN(block, p->n - b);
            mf_pool_run(pool, render_kernel, j);
            for (int t = 0; t < nth && !st; t++)
                if (j->w[t].st) {
                    st = j->w[t].st;
                    *err = j->w[t].err;
                }
            mf_progress_add(&pg, j->count);
        }
        for (int64_t k = 0; k < p->n && !st; k++) /* per-image hashes, in order */
            *hash = world_fnv1a(*hash, &ph[k], sizeof ph[k]);
    }
    mf_progress_end(&pg);
done:
    if (j)
        for (int t = 0; t < nth; t++) {
            mf_free(j->w[t].rgb);
            mf_free(j->w[t].rows);
            mf_free(j->w[t].png.buf);
        }
    mf_free(j);
    mf_free(ph);
    mf_pool_free(pool);
    return st;
}

/* ---- the whole world ---- */

static enum mf_status draw_texts(struct split_plan *p, uint64_t seed, int64_t *n_captions, struct mf_err *err)
{
    enum mf_status st = mf_world_split_scenes(seed, p->split, p->n, p->scenes, err);
    for (int64_t i = 0; i < p->n && !st; i++) {
        size_t *off = p->cap_off + i * p->n_captions;
        int k = 0;
        for (int a = 0; k < p->n_captions; a++) {
            if (p->text_cap - p->text_len < MF_WORLD_TEXT_MAX) {
                size_t cap = p->text_cap * 2 + 4 * MF_WORLD_TEXT_MAX;
                char *t = mf_realloc(p->text, cap);
                if (!t)
                    return mf_err_set(err, MF_ERR_NOMEM, "out of memory (captions)");
                p->text = t;
                p->text_cap = cap;
            }
            char *c = p->text + p->text_len;
            int len = mf_world_caption(&p->scenes[i], world_seed(seed, (int)p->split, i, a, WORLD_STREAM_CAPTION),
                                       p->kind, c, MF_WORLD_TEXT_MAX);
            if (len < 0)
                return mf_err_set(err, MF_ERR_INTERNAL, "%s image %" PRId64 ": caption too long",
                                  mf_world_split_name(p->split), i);
            bool dup = false;
            for (int q = 0; q < k && !dup; q++)
                dup = strcmp(p->text + off[q], c) == 0;
            if (!dup || a >= 100) { /* distinct references (a one-object scene has hundreds of paraphrases) */
                off[k++] = p->text_len;
                p->text_len += (size_t)len + 1;
            }
        }
        *n_captions += p->n_captions;
    }
    return st;
}

enum mf_status mf_world_generate(const char *dir, const struct mf_world_opts *o, struct mf_world_summary *sum,
                                 struct mf_err *err)
{
    const double t0 = mf_time_now();
    const int64_t lim = INT64_C(10000000);
    if (o->n_pretrain < 0 || o->n_pretrain > lim || o->n_calib < 0 || o->n_calib > lim || o->n_train < 0 ||
        o->n_train > lim || o->n_test < 1 || o->n_test > lim || o->n_novel < 0 || o->n_novel > lim)
        return mf_err_set(err, MF_ERR_ARG, "image counts must lie in [0, %" PRId64 "] (test: at least 1)", lim);
    if (o->size < 16 || o->size > 1024)
        return mf_err_set(err, MF_ERR_ARG, "image size %d outside [16, 1024]", o->size);
    struct split_plan plans[MF_WORLD_N_SPLITS] = {
        {.split = MF_WORLD_PRETRAIN, .n = o->n_pretrain, .n_captions = 2, .kind = MF_WORLD_CAPTION_PARTIAL},
        {.split = MF_WORLD_CALIB, .n = o->n_calib, .n_captions = 2, .kind = MF_WORLD_CAPTION_PARTIAL},
        {.split = MF_WORLD_TRAIN, .n = o->n_train, .n_captions = 5, .kind = MF_WORLD_CAPTION_FULL},
        {.split = MF_WORLD_TEST, .n = o->n_test, .n_captions = 5, .kind = MF_WORLD_CAPTION_FULL},
        {.split = MF_WORLD_NOVEL, .n = o->n_novel, .n_captions = 5, .kind = MF_WORLD_CAPTION_FULL},
    };
    struct mf_world_summary S = {0};
    S.content_hash = WORLD_FNV_INIT;
    struct mf_atomic_dir ad;
    enum mf_status st = mf_atomic_dir_open(dir, o->force, &ad, err);
    if (st)
        return st;
    for (int i = 0; i < MF_WORLD_N_SPLITS && !st; i++) {
        struct split_plan *p = &plans[i];
        p->width = 6;
        for (int64_t m = 1000000; m <= p->n - 1; m *= 10)
            p->width++;
        size_t n = (size_t)MF_MAX(p->n, 1);
        p->scenes = mf_malloc(n * sizeof *p->scenes);
        p->cap_off = mf_malloc(n * (size_t)p->n_captions * sizeof *p->cap_off);
        if (!p->scenes || !p->cap_off) {
            st = mf_err_set(err, MF_ERR_NOMEM, "out of memory (%" PRId64 " %s scenes)", p->n,
                            mf_world_split_name(p->split));
            break;
        }
        char sub[MF_PATH_MAX];
        if (!mf_fs_join(sub, sizeof sub, ad.tmp, mf_world_split_name(p->split)) || mkdir(sub, 0777) != 0) {
            st = mf_err_set(err, MF_ERR_IO, "%s: cannot create the image directory", sub);
            break;
        }
        st = draw_texts(p, o->seed, &S.n_captions, err);
        S.n_images += p->n;
    }
    if (!st)
        st = render_all(plans, MF_WORLD_N_SPLITS, ad.tmp, o->size, o->n_threads, &S.content_hash, err);

    /* text files, hashed in this order after the pixels */
    uint64_t *h = &S.content_hash;
    int64_t qid = 0;
    static const struct {
        const char *name;
        enum mf_world_split split;
        bool jsonl;
    } caption_files[] = {{"pretrain.jsonl", MF_WORLD_PRETRAIN, true},      {"calib.jsonl", MF_WORLD_CALIB, true},
                         {"retrieval_train.json", MF_WORLD_TRAIN, false}, {"retrieval_test.json", MF_WORLD_TEST, false},
                         {"caption_train.json", MF_WORLD_TRAIN, false},   {"caption_test.json", MF_WORLD_TEST, false},
                         {"novel_test.json", MF_WORLD_NOVEL, false}};
    for (size_t i = 0; i < MF_ARRAY_LEN(caption_files) && !st; i++)
        st = write_captions(ad.tmp, caption_files[i].name, &plans[caption_files[i].split], caption_files[i].jsonl, h,
                            err);
    if (!st)
        st = write_vqa(ad.tmp, "vqa_train.json", &plans[MF_WORLD_TRAIN], o->seed, &qid, h, err);
    if (!st)
        st = write_vqa(ad.tmp, "vqa_test.json", &plans[MF_WORLD_TEST], o->seed, &qid, h, err);
    S.n_questions = qid;
    struct out f;
    if (!st && !(st = out_open(&f, ad.tmp, "answers.json", h, err))) {
        out_write(&f, "[", 1);
        for (int i = 0; i < mf_world_n_answers(); i++) {
            out_write(&f, i ? ", " : "", i ? 2 : 0);
            out_str(&f, mf_world_answer(i));
        }
        out_write(&f, "]\n", 2);
        st = out_close(&f, err);
    }
    if (!st && !(st = out_open(&f, ad.tmp, "scenes.jsonl", h, err))) {
        for (int i = 0; i < MF_WORLD_N_SPLITS; i++)
            for (int64_t k = 0; k < plans[i].n; k++) {
                char img[64];
                image_name(img, sizeof img, &plans[i], k);
                scene_json(&f, img, mf_world_split_name(plans[i].split), &plans[i].scenes[k]);
            }
        st = out_close(&f, err);
    }
    if (!st && !(st = out_open(&f, ad.tmp, "vocab.txt", h, err))) {
        for (int i = 0; i < mf_world_vocab_size(); i++)
            out_printf(&f, "%s\n", mf_world_vocab_token(i));
        st = out_close(&f, err);
    }
    if (!st && !(st = out_open(&f, ad.tmp, "world.json", NULL, err))) {
        out_printf(&f,
                   "{\n  \"format\": \"multiflow-world\",\n  \"version\": %d,\n  \"seed\": %" PRIu64
                   ",\n  \"size\": %d,\n  \"counts\": {",
                   MF_WORLD_FORMAT_VERSION, o->seed, o->size);
        for (int i = 0; i < MF_WORLD_N_SPLITS; i++)
            out_printf(&f, "%s\"%s\": %" PRId64, i ? ", " : "", mf_world_split_name(plans[i].split), plans[i].n);
        out_printf(&f, "},\n  \"captions_per_image\": {");
        for (int i = 0; i < MF_WORLD_N_SPLITS; i++)
            out_printf(&f, "%s\"%s\": %d", i ? ", " : "", mf_world_split_name(plans[i].split), plans[i].n_captions);
        out_printf(&f, "},\n  \"questions_per_image\": %d,\n  \"answers_per_question\": %d,\n  \"held_out\": [",
                   QUESTIONS_PER_IMAGE, VQA_ANSWERS);
        bool first = true;
        for (int c = 0; c < MF_WORLD_N_OBJECT_COLORS; c++)
            for (int s = 0; s < MF_WORLD_N_SHAPES; s++)
                if (mf_world_is_held_out(c, s)) {
                    out_printf(&f, "%s\"%s %s\"", first ? "" : ", ", mf_world_color_name(c), mf_world_shape_name(s));
                    first = false;
                }
        out_printf(&f,
                   "],\n  \"images\": %" PRId64 ",\n  \"captions\": %" PRId64 ",\n  \"questions\": %" PRId64
                   ",\n  \"answers\": %d,\n  \"vocab_size\": %d,\n  \"embedding_rows\": %d,\n"
                   "  \"max_caption_tokens\": %d,\n  \"content_hash\": \"%016" PRIx64 "\"\n}\n",
                   S.n_images, S.n_captions, S.n_questions, mf_world_n_answers(), mf_world_vocab_size(),
                   mf_world_vocab_size() + 2, MF_WORLD_MAX_CAPTION_PIECES + 2, S.content_hash);
        st = out_close(&f, err);
    }
    for (int i = 0; i < MF_WORLD_N_SPLITS; i++) {
        mf_free(plans[i].scenes);
        mf_free(plans[i].cap_off);
        mf_free(plans[i].text);
    }
    if (st) {
        mf_atomic_dir_abort(&ad);
        return st;
    }
    if ((st = mf_atomic_dir_commit(&ad, err)))
        return st;
    S.seconds = mf_time_now() - t0;
    if (sum)
        *sum = S;
    return MF_OK;
}
