/* world: the procedural world of issue 10 (include/multiflow/world.h, docs/world.md).
 *
 * A small world is generated once (and again at another thread count): its content hash must equal
 * the committed one and every file must be byte-identical across thread counts; every caption in
 * the written annotation files (read back with the loader the other verbs use) is true of its
 * scene by the grammar's parser, and the parser catches false ones; every caption, question and
 * answer tokenises into whole vocabulary words (no [UNK]); held-out compositions appear only in
 * novel_test; no object takes a background colour; every test caption picks out exactly its own
 * image among the test scenes; every answer is recomputed from its question and the scene. */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "io/annotations.h"
#include "io/fs.h"
#include "multiflow/world.h"
#include "text/wordpiece.h"

/* Content hash (pixels and text) of the world small_opts() describes. It changes whenever the
 * format does: bump MF_WORLD_FORMAT_VERSION and docs/world.md with it, then update this value. */
#define SMALL_WORLD_HASH 0xa8642d6d431afc18ull

static struct mf_world_opts opts_of(uint64_t seed, int64_t pretrain, int64_t calib, int64_t train, int64_t test,
                                    int64_t novel, int size)
{
    struct mf_world_opts o = mf_world_opts_default();
    o.seed = seed;
    o.n_pretrain = pretrain;
    o.n_calib = calib;
    o.n_train = train;
    o.n_test = test;
    o.n_novel = novel;
    o.size = size;
    o.n_threads = 1;
    return o;
}

static struct mf_world_opts small_opts(void) { return opts_of(11, 300, 20, 40, 60, 30, 32); }

static char world_dir[4096];
static struct mf_world_summary world_sum;

/* Temporary directories of this test, removed at the end (the worlds hold hundreds of files). */
static char tmp_dirs[8][4096];
static int n_tmp;
static const char *tmpdir(void)
{
    const char *d = mf_test_tmpdir();
    assert_non_null(d);
    if (n_tmp < 8)
        snprintf(tmp_dirs[n_tmp++], sizeof tmp_dirs[0], "%s", d);
    return d;
}

static int teardown(void **state)
{
    (void)state;
    struct mf_err err = {0};
    for (int i = 0; i < n_tmp; i++)
        mf_fs_remove_tree(tmp_dirs[i], &err);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_world_opts o = small_opts();
    snprintf(world_dir, sizeof world_dir, "%s/w1", tmpdir());
    if (mf_world_generate(world_dir, &o, &world_sum, &err) != MF_OK) {
        fprintf(stderr, "generate: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static const char *at(const char *name)
{
    static char buf[4][4096];
    static int k;
    k = (k + 1) % 4;
    mf_fs_join(buf[k], sizeof buf[k], world_dir, name);
    return buf[k];
}

/* ---- determinism ---- */

static void compare_trees(const char *a, const char *b, int *n_files)
{
    char **na = NULL, **nb = NULL;
    size_t ca = 0, cb = 0;
    struct mf_err err = {0};
    assert_int_equal(mf_fs_list_dir(a, &na, &ca, &err), MF_OK);
    assert_int_equal(mf_fs_list_dir(b, &nb, &cb, &err), MF_OK);
    assert_int_equal(ca, cb);
    for (size_t i = 0; i < ca; i++) {
        assert_string_equal(na[i], nb[i]);
        char pa[4096], pb[4096];
        mf_fs_join(pa, sizeof pa, a, na[i]);
        mf_fs_join(pb, sizeof pb, b, nb[i]);
        if (mf_fs_is_dir(pa)) {
            compare_trees(pa, pb, n_files);
            continue;
        }
        size_t la, lb;
        char *da = mf_test_read_file(pa, &la), *db = mf_test_read_file(pb, &lb);
        assert_non_null(da);
        assert_non_null(db);
        if (la != lb || memcmp(da, db, la) != 0)
            fail_msg("%s differs from %s", pa, pb);
        free(da);
        free(db);
        (*n_files)++;
    }
    mf_fs_list_free(na, ca);
    mf_fs_list_free(nb, cb);
}

static void test_determinism(void **state)
{
    (void)state;
    printf("content hash %016llx\n", (unsigned long long)world_sum.content_hash);
    assert_int_equal(world_sum.content_hash, SMALL_WORLD_HASH);
    struct mf_world_opts o = small_opts();
    o.n_threads = 3;
    char dir2[4096];
    snprintf(dir2, sizeof dir2, "%s/w3", tmpdir());
    struct mf_world_summary s2;
    struct mf_err err = {0};
    assert_int_equal(mf_world_generate(dir2, &o, &s2, &err), MF_OK);
    assert_int_equal(s2.content_hash, world_sum.content_hash);
    int n = 0;
    compare_trees(world_dir, dir2, &n);
    assert_int_equal(n, 300 + 20 + 40 + 60 + 30 + 13); /* images + 13 text files */
    /* another seed, another world */
    o.seed = 12;
    assert_int_equal(mf_world_generate(dir2, &o, &s2, &err), MF_ERR_EXISTS); /* no --force */
    o.force = true;
    assert_int_equal(mf_world_generate(dir2, &o, &s2, &err), MF_OK);
    assert_true(s2.content_hash != world_sum.content_hash);
    /* bad options write nothing */
    o.size = 8;
    char dir3[4096];
    snprintf(dir3, sizeof dir3, "%s/bad", tmpdir());
    assert_int_equal(mf_world_generate(dir3, &o, &s2, &err), MF_ERR_ARG);
    assert_false(mf_fs_exists(dir3));
}

/* Every allocation failure (the library's and libpng's) gives MF_ERR_NOMEM and no output. */
static void test_alloc_failures(void **state)
{
    (void)state;
    struct mf_world_opts o = opts_of(0, 3, 1, 2, 2, 1, 16);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/oom", tmpdir());
    struct mf_err err = {0};
    int k = 0;
    for (;; k++) {
        mf_alloc_fail_after(k);
        enum mf_status st = mf_world_generate(dir, &o, NULL, &err);
        mf_alloc_fail_after(-1);
        if (st == MF_OK)
            break;
        if (st != MF_ERR_NOMEM)
            fail_msg("allocation %d failing gives status %d: %s", k, st, err.msg);
        assert_false(mf_fs_exists(dir));
        assert_true(k < 100000);
    }
    printf("allocation failures: %d points, each NOMEM with nothing written\n", k);
    assert_true(k > 10);
}

/* ---- vocabulary ---- */

static struct mf_vocab *load_vocab(void)
{
    struct mf_err err = {0};
    struct mf_vocab *v = NULL;
    assert_int_equal(mf_vocab_load(at("vocab.txt"), &v, &err), MF_OK);
    return v;
}

/* text tokenises into exactly its words (one whole-word token each), none [UNK]. */
static void assert_whole_words(const struct mf_vocab *v, const char *text)
{
    struct mf_err err = {0};
    int32_t ids[128];
    int64_t n = 0;
    assert_int_equal(mf_wordpiece_tokenize(v, text, ids, 128, &n, &err), MF_OK);
    int64_t words = 0;
    for (const char *p = text; *p; p++)
        if (*p == ',' || *p == '?' || (*p != ' ' && (p == text || p[-1] == ' ')))
            words++;
    if (n != words)
        fail_msg("'%s': %lld pieces for %lld words", text, (long long)n, (long long)words);
    for (int64_t i = 0; i < n; i++) {
        const char *t = mf_vocab_token(v, ids[i]);
        if (ids[i] == mf_vocab_special(v, MF_TOK_UNK) || strncmp(t, "##", 2) == 0)
            fail_msg("'%s': piece %lld is '%s'", text, (long long)i, t);
    }
}

static void test_vocab(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_vocab *v = load_vocab();
    const int V = mf_vocab_size(v);
    assert_int_equal(V, mf_world_vocab_size());
    static const char *const first[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(mf_vocab_token(v, i), first[i]);
    /* BLIP's tokens are appended by the loader, as for the original layout's BERT vocab.txt */
    assert_int_equal(mf_vocab_special(v, MF_TOK_DEC), -1);
    assert_int_equal(mf_vocab_add_blip_tokens(v, &err), MF_OK);
    assert_int_equal(mf_vocab_special(v, MF_TOK_DEC), V);
    assert_int_equal(mf_vocab_special(v, MF_TOK_ENC), V + 1);
    /* any ASCII text tokenises without [UNK] */
    int32_t ids[64];
    int64_t n = 0;
    assert_int_equal(mf_wordpiece_tokenize(v, "Zebra-crossing #42 qux!", ids, 64, &n, &err), MF_OK);
    for (int64_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], mf_vocab_special(v, MF_TOK_UNK));
    /* every caption of every split */
    static const char *const files[] = {"pretrain.jsonl", "calib.jsonl", "retrieval_train.json", "retrieval_test.json",
                                        "caption_train.json", "caption_test.json", "novel_test.json"};
    int64_t n_caps = 0;
    for (size_t f = 0; f < MF_ARRAY_LEN(files); f++) {
        struct mf_annotations *a = NULL;
        assert_int_equal(mf_annotations_load(at(files[f]), world_dir, &a, &err), MF_OK);
        for (int64_t i = 0; i < a->n_pairs; i++) {
            assert_whole_words(v, a->caption[i]);
            int32_t full[40];
            int n_real = 0;
            assert_int_equal(mf_wordpiece_encode(v, a->caption[i], 40, full, NULL, &n_real, &err), MF_OK);
            assert_true(n_real <= MF_WORLD_MAX_CAPTION_PIECES + 2);
        }
        n_caps += a->n_pairs;
        mf_annotations_free(a);
    }
    assert_int_equal(n_caps, world_sum.n_captions + 40 * 5 + 60 * 5); /* retrieval_* and caption_* hold the same pairs */
    /* every question and answer */
    static const char *const vqa[] = {"vqa_train.json", "vqa_test.json"};
    for (size_t f = 0; f < 2; f++) {
        json_error_t je;
        json_t *j = json_load_file(at(vqa[f]), 0, &je);
        assert_non_null(j);
        for (size_t i = 0; i < json_array_size(j); i++) {
            json_t *q = json_array_get(j, i);
            assert_whole_words(v, json_string_value(json_object_get(q, "question")));
            json_t *ans = json_object_get(q, "answer");
            assert_int_equal(json_array_size(ans), 10);
            assert_whole_words(v, json_string_value(json_array_get(ans, 0)));
        }
        json_decref(j);
    }
    for (int i = 0; i < mf_world_n_answers(); i++)
        assert_whole_words(v, mf_world_answer(i));
    mf_vocab_free(v);
}

/* ---- captions are true ---- */

static const struct {
    const char *file;
    enum mf_world_split split;
    int64_t n;
    bool full;
} caption_files[] = {
    {"pretrain.jsonl", MF_WORLD_PRETRAIN, 300, false}, {"calib.jsonl", MF_WORLD_CALIB, 20, false},
    {"retrieval_train.json", MF_WORLD_TRAIN, 40, true}, {"caption_train.json", MF_WORLD_TRAIN, 40, true},
    {"retrieval_test.json", MF_WORLD_TEST, 60, true},   {"caption_test.json", MF_WORLD_TEST, 60, true},
    {"novel_test.json", MF_WORLD_NOVEL, 30, true},
};

static void test_captions_true(void **state)
{
    (void)state;
    struct mf_err err = {0};
    int64_t partial_missing = 0, grouped = 0;
    for (size_t f = 0; f < MF_ARRAY_LEN(caption_files); f++) {
        int64_t n = caption_files[f].n;
        struct mf_world_scene *sc = malloc((size_t)n * sizeof *sc);
        assert_int_equal(mf_world_split_scenes(11, caption_files[f].split, n, sc, &err), MF_OK);
        struct mf_annotations *a = NULL;
        assert_int_equal(mf_annotations_load(at(caption_files[f].file), world_dir, &a, &err), MF_OK);
        assert_int_equal(a->n_images, n);
        for (int64_t i = 0; i < a->n_pairs; i++) {
            int64_t k = a->image_index[i];
            char want[64];
            snprintf(want, sizeof want, "%s/%s/%06lld.png", world_dir, mf_world_split_name(caption_files[f].split),
                     (long long)k);
            assert_string_equal(a->image_path[i], want);
            struct mf_world_claims c;
            if (mf_world_check_caption(&sc[k], a->caption[i], &c, &err) != MF_OK)
                fail_msg("%s: '%s' of image %lld: %s", caption_files[f].file, a->caption[i], (long long)k, err.msg);
            if (caption_files[f].full)
                assert_true(c.all_sizes && c.all_positions && c.background);
            else
                partial_missing += !c.all_sizes || !c.all_positions || !c.background;
            grouped += strstr(a->caption[i], "two ") || strstr(a->caption[i], "three ");
        }
        mf_annotations_free(a);
        free(sc);
    }
    assert_true(partial_missing > 0); /* partial captions do leave things out ... */
    assert_true(grouped > 0);         /* ... and count */
}

/* The parser is no rubber stamp: one changed word makes a caption false or ungrammatical. */
static void test_checker_catches_lies(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_world_scene s = {0};
    s.n_obj = 2;
    s.obj[0] = (struct mf_world_object){.shape = MF_SHAPE_CIRCLE, .color = MF_COLOR_RED, .large = 0, .pos = 0};
    s.obj[1] = (struct mf_world_object){.shape = MF_SHAPE_STAR, .color = MF_COLOR_BLUE, .large = 1, .pos = 5};
    s.bg = MF_BG_STRIPES;
    s.bg_c1 = MF_COLOR_GRAY;
    s.bg_c2 = MF_COLOR_YELLOW;
    static const char *const good[] = {
        "a small red circle at the top left and a large blue star on the right on gray and yellow stripes",
        "at the top left there is a little red circle and a big blue star on the right side",
        "a yellow and gray striped background with a blue star and a red circle in the top left corner",
        "two shapes against a gray and yellow striped background, a large blue star and a red circle",
        "there is a blue star on the right and a small red circle",
    };
    for (size_t i = 0; i < MF_ARRAY_LEN(good); i++)
        if (mf_world_check_caption(&s, good[i], NULL, &err) != MF_OK)
            fail_msg("'%s': %s", good[i], err.msg);
    static const char *const false_[] = {
        "a small green circle at the top left and a large blue star on the right",   /* colour */
        "a small red square at the top left and a large blue star on the right",     /* shape */
        "a large red circle at the top left and a large blue star on the right",     /* size */
        "a small red circle at the top right and a large blue star on the right",    /* position */
        "a small red circle at the top left",                                        /* an object left out */
        "a red circle, a blue star and a red circle",                                /* one too many */
        "three shapes, a red circle and a blue star",                                /* total count */
        "two red circles and a blue star",                                           /* group count */
        "a red circle and a blue star on gray and red stripes",                      /* background colour */
        "a red circle and a blue star on a plain gray background",                   /* background kind */
        "a red circle and a blue star on a gray to yellow gradient",                 /* background kind */
    };
    for (size_t i = 0; i < MF_ARRAY_LEN(false_); i++)
        if (mf_world_check_caption(&s, false_[i], NULL, &err) != MF_ERR_RANGE)
            fail_msg("'%s' accepted or misread (%s)", false_[i], err.msg);
    static const char *const bad[] = {
        "a red circle and a blue star on a purple background yes", "a red circles and a blue star",
        "an red circle and a blue star", "a red circle at the left top and a blue star", "a red and a blue star",
        "a red circle in the top left side and a blue star", "",
    };
    for (size_t i = 0; i < MF_ARRAY_LEN(bad); i++)
        if (mf_world_check_caption(&s, bad[i], NULL, &err) != MF_ERR_FORMAT)
            fail_msg("'%s' accepted as grammatical", bad[i]);
}

/* Robustness: mutated captions (words dropped, repeated, swapped, replaced by other grammar words
 * or junk, truncated) never crash the parser and always get OK, FORMAT or RANGE. */
static void test_checker_mutations(void **state)
{
    (void)state;
    static const char *const extra[] = {"background", "stripes", "gradient", "and", ",", "the", "on", "at", "in",
                                        "corner", "side", "a", "an", "two", "three", "shapes", "to", "?", "zz", ""};
    struct mf_err err = {0};
    uint64_t x = 12345;
    int ok = 0, format = 0, range = 0;
    for (int it = 0; it < 20000; it++) {
        struct mf_world_scene s;
        mf_world_sample_scene(77, (enum mf_world_split)(it % MF_WORLD_N_SPLITS), it, 0, &s);
        char cap[MF_WORLD_TEXT_MAX], out[2 * MF_WORLD_TEXT_MAX];
        assert_true(mf_world_caption(&s, (uint64_t)it, (enum mf_world_caption_kind)(it % 2), cap, sizeof cap) > 0);
        const char *w[64];
        int n = 0;
        for (char *t = strtok(cap, " "); t && n < 64; t = strtok(NULL, " "))
            w[n++] = t;
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int i = (int)((x >> 33) % (uint64_t)n), j = (int)((x >> 45) % (uint64_t)n), op = (int)((x >> 20) % 5);
        if (op == 0)
            w[i] = extra[(x >> 8) % MF_ARRAY_LEN(extra)];
        else if (op == 1) {
            const char *t = w[i];
            w[i] = w[j];
            w[j] = t;
        } else if (op == 2)
            w[i] = w[j];
        else if (op == 3)
            n = i;
        size_t len = 0;
        out[0] = '\0';
        for (int k = 0; k < n; k++)
            len += (size_t)snprintf(out + len, sizeof out - len, "%s%s", k ? " " : "", w[k]);
        enum mf_status st = mf_world_check_caption(&s, out, NULL, &err);
        assert_true(st == MF_OK || st == MF_ERR_FORMAT || st == MF_ERR_RANGE);
        ok += st == MF_OK;
        format += st == MF_ERR_FORMAT;
        range += st == MF_ERR_RANGE;
    }
    printf("mutated captions: %d true, %d ungrammatical, %d false\n", ok, format, range);
    assert_true(ok > 0 && format > 0 && range > 0);
    /* junk */
    static const char *const junk[] = {"", " ", ",,,,", "?", "a", "the the the", "background background",
                                       "on a background", "a red", "two", "in the", "at the top"};
    struct mf_world_scene s;
    mf_world_sample_scene(1, MF_WORLD_PRETRAIN, 0, 0, &s);
    for (size_t k = 0; k < MF_ARRAY_LEN(junk); k++)
        assert_int_equal(mf_world_check_caption(&s, junk[k], NULL, &err), MF_ERR_FORMAT);
    char big[4096];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(mf_world_check_caption(&s, big, NULL, &err), MF_ERR_FORMAT);
}

/* ---- held-out compositions, background colours, distinguishability ---- */

static void test_scene_rules(void **state)
{
    (void)state;
    struct mf_err err = {0};
    const int64_t n = 20000;
    struct mf_world_scene *sc = malloc((size_t)n * sizeof *sc);
    int64_t seen_bg[MF_WORLD_N_BGS] = {0}, n_obj[4] = {0};
    for (int split = 0; split < MF_WORLD_N_SPLITS; split++) {
        assert_int_equal(mf_world_split_scenes(5, (enum mf_world_split)split, n, sc, &err), MF_OK);
        for (int64_t i = 0; i < n; i++) {
            const struct mf_world_scene *s = &sc[i];
            bool held = false;
            assert_true(s->n_obj >= 1 && s->n_obj <= 3);
            n_obj[s->n_obj]++;
            seen_bg[s->bg]++;
            assert_true((s->bg == MF_BG_GRADIENT || s->bg == MF_BG_STRIPES) == (s->bg_c1 != s->bg_c2));
            for (int k = 0; k < s->n_obj; k++) {
                const struct mf_world_object *o = &s->obj[k];
                assert_true(o->color != s->bg_c1 && o->color != s->bg_c2);
                assert_true(o->color < MF_WORLD_N_OBJECT_COLORS);
                for (int m = 0; m < k; m++)
                    assert_int_not_equal(o->pos, s->obj[m].pos);
                held = held || mf_world_is_held_out(o->color, o->shape);
            }
            if (held != (split == MF_WORLD_NOVEL))
                fail_msg("%s scene %lld: held-out composition %s", mf_world_split_name((enum mf_world_split)split),
                         (long long)i, held ? "present" : "missing");
        }
    }
    for (int b = 0; b < MF_WORLD_N_BGS; b++)
        assert_true(seen_bg[b] > n); /* each kind about a quarter of the 5 n scenes */
    for (int k = 1; k <= 3; k++)
        assert_true(n_obj[k] > 5 * n / 4); /* about a third each */
    free(sc);
}

static void test_test_split_distinguishable(void **state)
{
    (void)state;
    struct mf_err err = {0};
    /* 1,000 test scenes: no two share a description */
    const int64_t n = 1000;
    struct mf_world_scene *sc = malloc((size_t)n * sizeof *sc);
    assert_int_equal(mf_world_split_scenes(3, MF_WORLD_TEST, n, sc, &err), MF_OK);
    char (*keys)[64] = malloc((size_t)n * 64);
    for (int64_t i = 0; i < n; i++)
        mf_world_scene_key(&sc[i], keys[i], 64);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++)
            if (strcmp(keys[i], keys[j]) == 0)
                fail_msg("test scenes %lld and %lld share '%s'", (long long)j, (long long)i, keys[i]);
    /* every test caption of the written world is true of its own image only */
    struct mf_annotations *a = NULL;
    struct mf_world_scene *ts = malloc(60 * sizeof *ts);
    assert_int_equal(mf_world_split_scenes(11, MF_WORLD_TEST, 60, ts, &err), MF_OK);
    assert_int_equal(mf_annotations_load(at("retrieval_test.json"), world_dir, &a, &err), MF_OK);
    for (int64_t i = 0; i < a->n_pairs; i++)
        for (int64_t k = 0; k < 60; k++) {
            bool true_of_k = mf_world_check_caption(&ts[k], a->caption[i], NULL, &err) == MF_OK;
            if (true_of_k != (k == a->image_index[i]))
                fail_msg("'%s' (image %lld) is %s of test image %lld", a->caption[i], (long long)a->image_index[i],
                         true_of_k ? "true" : "false", (long long)k);
        }
    mf_annotations_free(a);
    free(ts);
    free(keys);
    free(sc);
}

/* ---- pixels ---- */

static void test_render(void **state)
{
    (void)state;
    struct mf_world_scene s = {0};
    s.n_obj = 1;
    s.obj[0] = (struct mf_world_object){.shape = MF_SHAPE_SQUARE, .color = MF_COLOR_BLUE, .large = 1, .pos = 4};
    s.bg = MF_BG_PLAIN;
    s.bg_c1 = s.bg_c2 = MF_COLOR_GRAY;
    uint8_t img[64 * 64 * 3], blue[3], gray[3];
    mf_world_render(&s, 64, img);
    mf_world_color_rgb(MF_COLOR_BLUE, blue);
    mf_world_color_rgb(MF_COLOR_GRAY, gray);
    assert_memory_equal(img + (32 * 64 + 32) * 3, blue, 3); /* centre */
    assert_memory_equal(img, gray, 3);                      /* corner */
    /* large square: half side 0.8 * 128/1024 * 64 = 6.4 px: inside at 5, outside at 8 */
    assert_memory_equal(img + (32 * 64 + 32 + 5) * 3, blue, 3);
    assert_memory_equal(img + (32 * 64 + 32 + 8) * 3, gray, 3);
    /* anti-aliased edge: a blend of the two */
    int edge = img[(32 * 64 + 38) * 3 + 2];
    assert_true(edge > gray[2] && edge < blue[2]);
    /* a top-left object stays in its cell */
    s.obj[0].pos = 0;
    mf_world_render(&s, 64, img);
    assert_memory_equal(img + (11 * 64 + 11) * 3, blue, 3);
    assert_memory_equal(img + (32 * 64 + 32) * 3, gray, 3);
    /* colour names of the table */
    assert_int_equal(blue[0], 32);
    assert_int_equal(blue[1], 100);
    assert_int_equal(blue[2], 235);
}

/* ---- questions: the answer recomputed from the question's words ---- */

static int count_where(const struct mf_world_scene *s, int color, int shape)
{
    int k = 0;
    for (int i = 0; i < s->n_obj; i++)
        k += (color < 0 || s->obj[i].color == color) && (shape < 0 || s->obj[i].shape == shape);
    return k;
}

static const char *expected_answer(const struct mf_world_scene *s, const char *q)
{
    int color = -1, shape = -1, plural = 0;
    char buf[MF_WORLD_TEXT_MAX];
    snprintf(buf, sizeof buf, "%s", q);
    for (char *w = strtok(buf, " ?"); w; w = strtok(NULL, " ?")) {
        for (int c = 0; c < MF_WORLD_N_COLORS; c++)
            if (strcmp(w, mf_world_color_name(c)) == 0)
                color = c;
        for (int h = 0; h < MF_WORLD_N_SHAPES; h++) {
            if (strcmp(w, mf_world_shape_name(h)) == 0)
                shape = h;
            if (strcmp(w, mf_world_shape_plural(h)) == 0)
                shape = h, plural = 1;
        }
    }
    (void)plural;
    static char num[4];
    if (strncmp(q, "how many", 8) == 0) {
        snprintf(num, sizeof num, "%d", count_where(s, color, shape));
        return num;
    }
    if (strncmp(q, "is there", 8) == 0)
        return count_where(s, color, shape) ? "yes" : "no";
    for (int i = 0; i < s->n_obj; i++) {
        const struct mf_world_object *o = &s->obj[i];
        if ((color >= 0 && o->color != color) || (shape >= 0 && o->shape != shape))
            continue;
        assert_int_equal(count_where(s, color, shape), 1); /* asked only when unique */
        if (strstr(q, "where") || strstr(q, "part of"))
            return mf_world_position_name(o->pos);
        if (strstr(q, "what color") || strstr(q, "which color") || strstr(q, "the color of"))
            return mf_world_color_name(o->color);
        return mf_world_shape_name(o->shape);
    }
    fail_msg("'%s': no object fits", q);
    return NULL;
}

static void test_questions(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_world_scene *sc = malloc(60 * sizeof *sc);
    assert_int_equal(mf_world_split_scenes(11, MF_WORLD_TEST, 60, sc, &err), MF_OK);
    json_error_t je;
    json_t *j = json_load_file(at("vqa_test.json"), 0, &je), *answers = json_load_file(at("answers.json"), 0, &je);
    assert_non_null(j);
    assert_non_null(answers);
    assert_int_equal(json_array_size(answers), mf_world_n_answers());
    int types[MF_WORLD_N_QTYPES] = {0}, yes = 0, no = 0;
    int64_t last_id = -1;
    for (size_t i = 0; i < json_array_size(j); i++) {
        json_t *q = json_array_get(j, i);
        const char *img = json_string_value(json_object_get(q, "image"));
        int k = atoi(img + strlen("test/"));
        const char *question = json_string_value(json_object_get(q, "question"));
        const char *ans = json_string_value(json_array_get(json_object_get(q, "answer"), 0));
        const char *want = expected_answer(&sc[k], question);
        if (strcmp(ans, want) != 0)
            fail_msg("%s: '%s' answered '%s', the scene says '%s'", img, question, ans, want);
        bool listed = false;
        for (size_t a = 0; a < json_array_size(answers); a++)
            listed = listed || strcmp(json_string_value(json_array_get(answers, a)), ans) == 0;
        assert_true(listed);
        int64_t id = json_integer_value(json_object_get(q, "question_id"));
        assert_true(id > last_id);
        last_id = id;
        const char *t = json_string_value(json_object_get(q, "question_type"));
        for (int tt = 0; tt < MF_WORLD_N_QTYPES; tt++)
            types[tt] += strcmp(t, mf_world_qtype_name((enum mf_world_qtype)tt)) == 0;
        yes += strcmp(ans, "yes") == 0;
        no += strcmp(ans, "no") == 0;
    }
    for (int tt = 0; tt < MF_WORLD_N_QTYPES; tt++)
        assert_true(types[tt] > 0);
    assert_true(yes > 0 && no > 0);
    json_decref(j);
    json_decref(answers);
    free(sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_vocab),
        cmocka_unit_test(test_captions_true),
        cmocka_unit_test(test_checker_catches_lies),
        cmocka_unit_test(test_checker_mutations),
        cmocka_unit_test(test_scene_rules),
        cmocka_unit_test(test_test_split_distinguishable),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_questions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
