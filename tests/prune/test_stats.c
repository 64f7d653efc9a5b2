/* MULTIFLOW calibration statistics (src/prune/stats.c): sums of squares and sequence counts against
 * PyTorch forward hooks (tests/golden/gen_stats.py) on the tiny BLIP fixtures, thread-count
 * invariance, save/load round trip, files of another model, merge == collection over the union. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/annotations.h"
#include "models/model_impl.h"
#include "multiflow/safetensors.h"
#include "prune/stats.h"

#define TOL_GOLDEN 1e-4
#define TOL_MERGE 1e-12

static struct mf_model *load_model(const char *rel)
{
    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_model_opts o = mf_model_opts_default();
    if (mf_model_load(mf_test_path(rel), &o, &m, &err) != MF_OK)
        fail_msg("load %s: %s", rel, err.msg);
    return m;
}

/* Statistics of the golden inputs (3 pairs) in two batches: pairs 0-1, then pair 2. */
static struct mf_stats *golden_run(const struct mf_model *m, const char *fixture, int n_threads)
{
    char gold[512];
    snprintf(gold, sizeof gold, "tests/golden/blip/%s.golden.safetensors", fixture);
    struct mf_err err = {0};
    struct mf_safetensors *g = NULL;
    if (mf_safetensors_open(mf_test_path(gold), &g, &err) != MF_OK)
        fail_msg("%s", err.msg);
    const struct mf_st_entry *im = mf_safetensors_find(g, "images"), *ie = mf_safetensors_find(g, "ids"),
                             *me = mf_safetensors_find(g, "mask");
    assert_non_null(im);
    assert_non_null(ie);
    assert_non_null(me);
    assert_int_equal(ie->shape[0], 3);
    const int64_t L = ie->shape[1], img_n = im->shape[1] * im->shape[2] * im->shape[3];
    const float *images = im->data;
    const int32_t *ids = ie->data, *mask = me->data;

    struct mf_session *s = NULL;
    struct mf_stats *st = NULL;
    assert_int_equal(mf_session_create(m, n_threads, &s, &err), MF_OK);
    assert_int_equal(mf_stats_create(m, &st, &err), MF_OK);
    if (mf_stats_add_batch(s, images, ids, mask, 2, L, st, &err) != MF_OK ||
        mf_stats_add_batch(s, images + 2 * img_n, ids + 2 * L, mask + 2 * L, 1, L, st, &err) != MF_OK)
        fail_msg("%s: %s", fixture, err.msg);
    assert_null(s->observe); /* the hook is reset after each batch */
    mf_session_free(s);
    mf_safetensors_close(g);
    return st;
}

/* max |a-b| / max(|b|, 1e-9 * max|b|) over a tensor's features */
static double rel_diff(const double *a, const double *b, int64_t n)
{
    double mx = 0, worst = 0;
    for (int64_t j = 0; j < n; j++)
        mx = fmax(mx, fabs(b[j]));
    for (int64_t j = 0; j < n; j++)
        worst = fmax(worst, fabs(a[j] - b[j]) / fmax(fabs(b[j]), 1e-9 * mx + 1e-300));
    return worst;
}

static void run_golden(const char *fixture, size_t n_expected)
{
    char dir[256], stats[256];
    snprintf(dir, sizeof dir, "tests/golden/blip/%s", fixture);
    snprintf(stats, sizeof stats, "tests/golden/stats/%s.stats.safetensors", fixture);
    struct mf_model *m = load_model(dir);
    struct mf_err err = {0};
    struct mf_stats *want = NULL;
    /* the Python-written golden is itself a stats file: loading it checks the format end to end
     * and that it covers exactly the model's prunable tensors */
    if (mf_stats_load(m, mf_test_path(stats), &want, &err) != MF_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(mf_stats_pairs(want), 3);
    struct mf_stats *got = golden_run(m, fixture, 2);
    struct mf_stats *got1 = golden_run(m, fixture, 1);
    struct mf_stats *got3 = golden_run(m, fixture, 3);
    assert_int_equal(mf_stats_pairs(got), 3);

    size_t n_prunable = 0;
    double worst = 0, worst_threads = 0;
    for (size_t i = 0; i < mf_model_n_tensors(m); i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        const double *a = mf_stats_sumsq(got, (int)i), *b = mf_stats_sumsq(want, (int)i);
        if (!t->prunable) {
            assert_null(a);
            continue;
        }
        n_prunable++;
        assert_non_null(a);
        assert_non_null(b);
        const int64_t in = t->shape[1];
        double r = rel_diff(a, b, in);
        worst = fmax(worst, r);
        if (r > TOL_GOLDEN)
            fail_msg("%s: %s: sum of squares relative difference %.3g > %g", fixture, t->name, r, TOL_GOLDEN);
        /* every feature saw at least one nonzero input */
        for (int64_t j = 0; j < in; j++)
            assert_true(a[j] > 0);
        /* count: sequences, not tokens; the same for every tensor (one call per pass) */
        assert_true(mf_stats_count(got, (int)i) == 3.0);
        assert_true(mf_stats_count(want, (int)i) == 3.0);
        /* neither the accumulation (columns split, rows summed in order) nor the forward pass
         * (nn/linear.c's shape-only GEMM grid) depends on the thread count: the same bits */
        double r13 = fmax(rel_diff(mf_stats_sumsq(got1, (int)i), a, in), rel_diff(mf_stats_sumsq(got3, (int)i), a, in));
        worst_threads = fmax(worst_threads, r13);
        if (memcmp(mf_stats_sumsq(got1, (int)i), a, (size_t)in * sizeof *a) != 0 ||
            memcmp(mf_stats_sumsq(got3, (int)i), a, (size_t)in * sizeof *a) != 0)
            fail_msg("%s: %s: 1/2/3 threads differ by %.3g (must be bit-identical)", fixture, t->name, r13);
    }
    printf("%s: %zu prunable tensors, max relative difference vs PyTorch %.3g, between 1/2/3 threads %.3g\n",
           fixture, n_prunable, worst, worst_threads);
    assert_int_equal(n_prunable, n_expected);
    mf_stats_free(got3);
    mf_stats_free(got1);
    mf_stats_free(got);
    mf_stats_free(want);
    mf_model_free(m);
}

static void test_golden_orig(void **state)
{
    (void)state;
    run_golden("orig-f32", 36); /* vision 8, encoder 20, decoder self-attention 8 */
}

static void test_golden_hf_itm(void **state)
{
    (void)state;
    run_golden("hf-itm-f32", 28); /* vision 8, encoder 20 */
}

static void test_golden_hf_cap(void **state)
{
    (void)state;
    run_golden("hf-cap-f32", 28); /* vision 8, untied decoder 20 */
}

/* Only the decoder's own self-attention sees the decoder pass in the original layout: a tied copy
 * must have no accumulator at all. */
static void test_tied_copies_have_no_stats(void **state)
{
    (void)state;
    struct mf_model *m = load_model("tests/golden/blip/orig-f32");
    struct mf_err err = {0};
    struct mf_stats *st = NULL;
    assert_int_equal(mf_stats_create(m, &st, &err), MF_OK);
    int tied = 0;
    for (size_t i = 0; i < mf_model_n_tensors(m); i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        if (strncmp(t->name, "text_decoder.bert.encoder.layer.", 32) == 0 && strstr(t->name, "crossattention") &&
            strstr(t->name, ".weight")) {
            assert_false(t->prunable);
            assert_null(mf_stats_sumsq(st, (int)i));
            tied++;
        }
    }
    assert_true(tied > 0);
    mf_stats_free(st);
    mf_model_free(m);
}

static void test_save_load_roundtrip(void **state)
{
    (void)state;
    struct mf_model *m = load_model("tests/golden/blip/orig-f32");
    struct mf_stats *a = golden_run(m, "orig-f32", 2), *b = NULL;
    struct mf_err err = {0};
    char path[4200];
    const char *tmp = mf_test_tmpdir();
    assert_non_null(tmp);
    snprintf(path, sizeof path, "%s/stats.safetensors", tmp);
    assert_int_equal(mf_stats_save(a, path, &err), MF_OK);
    assert_int_equal(mf_test_dir_count(tmp), 1); /* no temp file left behind */
    if (mf_stats_load(m, path, &b, &err) != MF_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(mf_stats_pairs(b), mf_stats_pairs(a));
    for (size_t i = 0; i < mf_model_n_tensors(m); i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        if (!t->prunable)
            continue;
        assert_memory_equal(mf_stats_sumsq(a, (int)i), mf_stats_sumsq(b, (int)i), (size_t)t->shape[1] * sizeof(double));
        double ca = mf_stats_count(a, (int)i), cb = mf_stats_count(b, (int)i);
        assert_memory_equal(&ca, &cb, sizeof ca);
    }
    /* the file layout: NAME (in) F64 and NAME:count (1) F64 per prunable tensor, metadata */
    struct mf_safetensors *f = NULL;
    assert_int_equal(mf_safetensors_open(path, &f, &err), MF_OK);
    assert_int_equal(mf_safetensors_count(f), 2 * 36);
    const struct mf_st_entry *e = mf_safetensors_find(f, "visual_encoder.blocks.1.mlp.fc2.weight");
    assert_non_null(e);
    assert_int_equal(e->dtype, MF_DTYPE_F64);
    assert_int_equal(e->ndim, 1);
    assert_int_equal(e->shape[0], 128);
    e = mf_safetensors_find(f, "visual_encoder.blocks.1.mlp.fc2.weight:count");
    assert_non_null(e);
    assert_int_equal(e->shape[0], 1);
    assert_string_equal(mf_safetensors_meta(f, "format"), "multiflow-stats");
    assert_string_equal(mf_safetensors_meta(f, "pairs"), "3");
    mf_safetensors_close(f);
    mf_stats_free(b);
    mf_stats_free(a);
    mf_model_free(m);
}

/* Rewrites the golden stats file of a fixture into path with one change. */
enum edit { EDIT_NONE, EDIT_SHAPE, EDIT_EXTRA, EDIT_NAN, EDIT_NO_META, EDIT_DROP_COUNT };

static void write_edited(const char *fixture, const char *path, enum edit ed, const char *target)
{
    char rel[256];
    snprintf(rel, sizeof rel, "tests/golden/stats/%s.stats.safetensors", fixture);
    struct mf_err err = {0};
    struct mf_safetensors *g = NULL;
    assert_int_equal(mf_safetensors_open(mf_test_path(rel), &g, &err), MF_OK);
    struct mf_st_writer *w = NULL;
    assert_int_equal(mf_st_writer_create(path, &w, &err), MF_OK);
    /* the writer reads tensor data at commit: one buffer per tensor, (n_tensors + 1, 4096) */
    double *bufs = calloc((mf_safetensors_count(g) + 1) * 4096, sizeof *bufs);
    assert_non_null(bufs);
    double *buf = bufs;
    for (size_t i = 0; i < mf_safetensors_count(g); i++) {
        const struct mf_st_entry *e = mf_safetensors_at(g, i);
        int64_t shape = e->shape[0];
        buf = bufs + i * 4096;
        assert_true(shape + 1 <= 4096);
        memcpy(buf, e->data, e->nbytes);
        bool hit = strcmp(e->name, target) == 0;
        if (hit && ed == EDIT_SHAPE)
            shape++;
        if (hit && ed == EDIT_NAN)
            buf[3] = NAN;
        if (hit && ed == EDIT_DROP_COUNT)
            continue;
        assert_int_equal(mf_st_writer_add(w, e->name, MF_DTYPE_F64, 1, &shape, buf, &err), MF_OK);
    }
    if (ed == EDIT_EXTRA) {
        int64_t s64 = 64, s1 = 1;
        static const double one = 1;
        buf = bufs + mf_safetensors_count(g) * 4096;
        assert_int_equal(mf_st_writer_add(w, target, MF_DTYPE_F64, 1, &s64, buf, &err), MF_OK);
        char cn[300];
        snprintf(cn, sizeof cn, "%s:count", target);
        assert_int_equal(mf_st_writer_add(w, cn, MF_DTYPE_F64, 1, &s1, &one, &err), MF_OK);
    }
    if (ed != EDIT_NO_META) {
        assert_int_equal(mf_st_writer_meta(w, "format", "multiflow-stats", &err), MF_OK);
        assert_int_equal(mf_st_writer_meta(w, "version", "1", &err), MF_OK);
        assert_int_equal(mf_st_writer_meta(w, "pairs", "3", &err), MF_OK);
    }
    assert_int_equal(mf_st_writer_commit(w, &err), MF_OK);
    free(bufs);
    mf_safetensors_close(g);
}

static void expect_load_error(const struct mf_model *m, const char *path, enum mf_status code, const char *needle)
{
    struct mf_err err = {0};
    struct mf_stats *st = (struct mf_stats *)1;
    enum mf_status rc = mf_stats_load(m, path, &st, &err);
    printf("  -> %s\n", err.msg);
    assert_int_equal(rc, code);
    assert_null(st);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, needle));
}

static void test_load_other_model(void **state)
{
    (void)state;
    struct mf_model *cap = load_model("tests/golden/blip/hf-cap-f32");
    struct mf_model *itm = load_model("tests/golden/blip/hf-itm-f32");
    struct mf_model *orig = load_model("tests/golden/blip/orig-f32");
    /* HF ITM statistics for the captioning model: the decoder tensors are missing (the first in
     * name order is named) */
    expect_load_error(cap, mf_test_path("tests/golden/stats/hf-itm-f32.stats.safetensors"), MF_ERR_MISSING,
                      "'text_decoder.bert.encoder.layer.0.attention.output.dense.weight'");
    /* original-layout statistics for an HF model: vision names differ */
    expect_load_error(itm, mf_test_path("tests/golden/stats/orig-f32.stats.safetensors"), MF_ERR_MISSING,
                      "'vision_model.encoder.layers.0.mlp.fc1.weight'");
    /* HF ITM statistics for the original model: its decoder self-attention has none */
    expect_load_error(orig, mf_test_path("tests/golden/stats/hf-itm-f32.stats.safetensors"), MF_ERR_MISSING,
                      "'text_decoder.bert.encoder.layer.0.attention.output.dense.weight'");

    char path[4200];
    const char *tmp = mf_test_tmpdir();
    assert_non_null(tmp);
    snprintf(path, sizeof path, "%s/edited.safetensors", tmp);
    const char *name = "text_encoder.encoder.layer.1.output.dense.weight";
    write_edited("hf-itm-f32", path, EDIT_SHAPE, name);
    expect_load_error(itm, path, MF_ERR_SHAPE, "'text_encoder.encoder.layer.1.output.dense.weight' has shape [129]");
    write_edited("hf-itm-f32", path, EDIT_EXTRA, "text_encoder.encoder.layer.9.output.dense.weight");
    expect_load_error(itm, path, MF_ERR_FORMAT, "'text_encoder.encoder.layer.9.output.dense.weight");
    write_edited("hf-itm-f32", path, EDIT_NAN, name);
    expect_load_error(itm, path, MF_ERR_NUMERIC, "element 3");
    write_edited("hf-itm-f32", path, EDIT_NO_META, "");
    expect_load_error(itm, path, MF_ERR_FORMAT, "not a calibration statistics file");
    write_edited("hf-itm-f32", path, EDIT_DROP_COUNT, "text_encoder.encoder.layer.0.intermediate.dense.weight:count");
    expect_load_error(itm, path, MF_ERR_MISSING, "'text_encoder.encoder.layer.0.intermediate.dense.weight'");
    /* unedited copy loads */
    write_edited("hf-itm-f32", path, EDIT_NONE, "");
    struct mf_err err = {0};
    struct mf_stats *st = NULL;
    assert_int_equal(mf_stats_load(itm, path, &st, &err), MF_OK);
    mf_stats_free(st);
    /* not a safetensors file at all */
    expect_load_error(itm, mf_test_path("tests/golden/blip/hf-itm-f32/config.json"), MF_ERR_FORMAT, "");
    mf_model_free(orig);
    mf_model_free(itm);
    mf_model_free(cap);
}

/* ---- collection over annotation files, merge ------------------------------------------------ */

/* Writes pairs [a, b) of the shapes set as a JSON Lines file with absolute image paths. */
static void write_subset(const struct mf_annotations *all, int64_t a, int64_t b, const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int64_t p = a; p < b; p++) {
        fprintf(f, "{\"image\": \"%s\", \"caption\": \"", all->image_path[p]);
        for (const char *c = all->caption[p]; *c; c++) {
            if (*c == '"' || *c == '\\')
                fputc('\\', f);
            fputc(*c, f);
        }
        fprintf(f, "\"}\n");
    }
    fclose(f);
}

static struct mf_stats *collect(const struct mf_model *m, const char *ann_path, int64_t batch, int n_threads)
{
    struct mf_err err = {0};
    struct mf_annotations *ann = NULL;
    struct mf_session *s = NULL;
    struct mf_stats *st = NULL;
    if (mf_annotations_load(ann_path, NULL, &ann, &err) != MF_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(mf_session_create(m, n_threads, &s, &err), MF_OK);
    assert_int_equal(mf_stats_create(m, &st, &err), MF_OK);
    if (mf_stats_collect(s, ann, batch, 0, st, &err) != MF_OK)
        fail_msg("%s", err.msg);
    assert_null(s->observe);
    assert_int_equal(mf_stats_pairs(st), ann->n_pairs);
    mf_session_free(s);
    mf_annotations_free(ann);
    return st;
}

static double max_rel(const struct mf_model *m, const struct mf_stats *a, const struct mf_stats *b)
{
    double worst = 0;
    for (size_t i = 0; i < mf_model_n_tensors(m); i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        if (t->prunable)
            worst = fmax(worst, rel_diff(mf_stats_sumsq(a, (int)i), mf_stats_sumsq(b, (int)i), t->shape[1]));
    }
    return worst;
}

static void check_counts(const struct mf_model *m, const struct mf_stats *st, double pairs)
{
    for (size_t i = 0; i < mf_model_n_tensors(m); i++)
        if (mf_model_tensor_at(m, i)->prunable)
            assert_true(mf_stats_count(st, (int)i) == pairs);
}

static void test_merge_equals_union(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_annotations *all = NULL;
    if (mf_annotations_load(mf_test_path("data/shapes/annotations.json"), mf_test_path("data/shapes"), &all, &err))
        fail_msg("%s", err.msg);
    assert_true(all->n_pairs >= 10);
    const char *tmp = mf_test_tmpdir();
    assert_non_null(tmp);
    char pa[4200], pb[4200], pu[4200], sa[4200], sb[4200], sc[4200];
    snprintf(pa, sizeof pa, "%s/a.jsonl", tmp);
    snprintf(pb, sizeof pb, "%s/b.jsonl", tmp);
    snprintf(pu, sizeof pu, "%s/u.jsonl", tmp);
    snprintf(sa, sizeof sa, "%s/a.safetensors", tmp);
    snprintf(sb, sizeof sb, "%s/b.safetensors", tmp);
    snprintf(sc, sizeof sc, "%s/c.safetensors", tmp);
    write_subset(all, 0, 4, pa);
    write_subset(all, 4, 10, pb);
    write_subset(all, 0, 10, pu);

    /* A and B batch the pairs as the union does, so every pair's activations are computed in the
     * same batch and only the order of the final additions differs */
    struct mf_model *m = load_model("data/models/blip-tiny");
    struct mf_stats *a = collect(m, pa, 4, 2);   /* pairs 0-3 */
    struct mf_stats *b = collect(m, pb, 4, 2);   /* pairs 4-7, 8-9 */
    struct mf_stats *u = collect(m, pu, 4, 2);   /* pairs 0-3, 4-7, 8-9 */
    struct mf_stats *u1 = collect(m, pu, 3, 1);  /* other batches, one thread */
    check_counts(m, a, 4);
    check_counts(m, b, 6);
    check_counts(m, u, 10);
    /* the batch split changes the forward pass's rounding at most (other GEMM shapes); the
     * thread count alone changes nothing */
    double r_batch = max_rel(m, u1, u);
    printf("union: batch 4 / 2 threads vs batch 3 / 1 thread: max relative difference %.3g\n", r_batch);
    assert_true(r_batch <= 1e-5);
    struct mf_stats *u3 = collect(m, pu, 4, 3);
    assert_true(max_rel(m, u3, u) == 0.0);
    mf_stats_free(u3);

    assert_int_equal(mf_stats_save(a, sa, &err), MF_OK);
    assert_int_equal(mf_stats_save(b, sb, &err), MF_OK);
    if (mf_stats_merge_files(sa, sb, sc, &err) != MF_OK)
        fail_msg("%s", err.msg);
    struct mf_stats *c = NULL;
    if (mf_stats_load(m, sc, &c, &err) != MF_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(mf_stats_pairs(c), 10);
    check_counts(m, c, 10);
    double r_merge = max_rel(m, c, u);
    printf("merge(A, B) vs collect(A u B): max relative difference %.3g\n", r_merge);
    assert_true(r_merge <= TOL_MERGE);

    /* merging with a statistics file of another model names the file and the tensor */
    err = (struct mf_err){0};
    assert_int_not_equal(mf_stats_merge_files(sa, mf_test_path("tests/golden/stats/hf-itm-f32.stats.safetensors"),
                                              sc, &err), MF_OK);
    printf("  -> %s\n", err.msg);
    assert_non_null(strstr(err.msg, "hf-itm-f32.stats.safetensors"));
    assert_non_null(strstr(err.msg, "'"));
    /* the failed merge left the earlier output untouched */
    struct mf_stats *c2 = NULL;
    assert_int_equal(mf_stats_load(m, sc, &c2, &err), MF_OK);
    assert_int_equal(mf_stats_pairs(c2), 10);
    mf_stats_free(c2);
    mf_stats_free(c);
    mf_stats_free(u1);
    mf_stats_free(u);
    mf_stats_free(b);
    mf_stats_free(a);
    mf_model_free(m);
    mf_annotations_free(all);
}

static void test_merge_shape_mismatch(void **state)
{
    (void)state;
    const char *tmp = mf_test_tmpdir();
    assert_non_null(tmp);
    char p[4200], out[4200];
    snprintf(p, sizeof p, "%s/wide.safetensors", tmp);
    snprintf(out, sizeof out, "%s/out.safetensors", tmp);
    write_edited("hf-itm-f32", p, EDIT_SHAPE, "vision_model.encoder.layers.1.mlp.fc2.weight");
    struct mf_err err = {0};
    assert_int_equal(mf_stats_merge_files(mf_test_path("tests/golden/stats/hf-itm-f32.stats.safetensors"), p, out,
                                          &err), MF_ERR_SHAPE);
    printf("  -> %s\n", err.msg);
    assert_non_null(strstr(err.msg, "'vision_model.encoder.layers.1.mlp.fc2.weight' has shape [129]"));
    assert_non_null(strstr(err.msg, p));
    assert_int_equal(mf_test_dir_count(tmp), 1); /* no output, no temp file */
}

static void test_collect_args(void **state)
{
    (void)state;
    struct mf_model *m = load_model("data/models/blip-tiny");
    struct mf_model *other = load_model("tests/golden/blip/orig-f32");
    struct mf_err err = {0};
    struct mf_annotations *ann = NULL;
    struct mf_session *s = NULL;
    struct mf_stats *st = NULL, *st_other = NULL;
    assert_int_equal(mf_annotations_load(mf_test_path("data/shapes/annotations.json"), mf_test_path("data/shapes"),
                                         &ann, &err), MF_OK);
    assert_int_equal(mf_annotations_truncate(ann, 3, &err), MF_OK);
    assert_int_equal(mf_session_create(m, 1, &s, &err), MF_OK);
    assert_int_equal(mf_stats_create(m, &st, &err), MF_OK);
    assert_int_equal(mf_stats_create(other, &st_other, &err), MF_OK);
    assert_int_equal(mf_stats_collect(s, ann, 0, 0, st, &err), MF_ERR_ARG);
    assert_int_equal(mf_stats_collect(s, ann, 2, 100000, st, &err), MF_ERR_ARG);
    assert_int_equal(mf_stats_collect(s, ann, 2, 0, st_other, &err), MF_ERR_ARG);
    /* batch larger than the set: one batch */
    assert_int_equal(mf_stats_collect(s, ann, 64, 0, st, &err), MF_OK);
    assert_int_equal(mf_stats_pairs(st), 3);
    check_counts(m, st, 3);
    /* accumulation continues across calls */
    assert_int_equal(mf_stats_collect(s, ann, 2, 0, st, &err), MF_OK);
    assert_int_equal(mf_stats_pairs(st), 6);
    check_counts(m, st, 6);
    assert_null(mf_stats_sumsq(st, -1));
    assert_null(mf_stats_sumsq(st, 1 << 30));
    mf_stats_free(st_other);
    mf_stats_free(st);
    mf_session_free(s);
    mf_annotations_free(ann);
    mf_model_free(other);
    mf_model_free(m);
}

/* Allocation failures while loading a stats file: NOMEM, nothing leaked (run under ASan). */
static void test_load_alloc_failures(void **state)
{
    (void)state;
    struct mf_model *m = load_model("tests/golden/blip/orig-f32");
    const char *path = mf_test_path("tests/golden/stats/orig-f32.stats.safetensors");
    int failures = 0;
    for (long k = 0; k < 200; k++) {
        struct mf_err err = {0};
        struct mf_stats *st = NULL;
        mf_alloc_fail_after(k);
        enum mf_status rc = mf_stats_load(m, path, &st, &err);
        mf_alloc_fail_after(-1);
        if (rc == MF_OK) {
            mf_stats_free(st);
            break;
        }
        assert_int_equal(rc, MF_ERR_NOMEM);
        assert_null(st);
        failures++;
    }
    assert_true(failures > 0);
    mf_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_orig),
        cmocka_unit_test(test_golden_hf_itm),
        cmocka_unit_test(test_golden_hf_cap),
        cmocka_unit_test(test_tied_copies_have_no_stats),
        cmocka_unit_test(test_save_load_roundtrip),
        cmocka_unit_test(test_load_other_model),
        cmocka_unit_test(test_merge_equals_union),
        cmocka_unit_test(test_merge_shape_mismatch),
        cmocka_unit_test(test_collect_args),
        cmocka_unit_test(test_load_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
