/* prune/chita.c: the solver against the numpy re-implementation of the reference's CHITA
 * (tests/golden/gen_chita.py: optimal-step and line-search global steps, a chita++-like round with
 * previously pruned weights, more rows than survivors), masks exact and updated weights within
 * 1e-4 relative; the streaming path (one block per window) bit-identical to one window and never
 * mapping more than a window; 1 vs 3 threads bit-identical; w_new aliasing w; the row file is
 * unlinked at once; errors (missing row, non-finite gradient, bad lambda, wrong width). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/pool.h"
#include "multiflow/prune.h"
#include "multiflow/safetensors.h"

struct gold {
    struct mf_safetensors *st;
    struct mf_prune_set set;
    int64_t n_rows;
    const float *A;        /* (n_rows, p) */
    uint8_t **prev;        /* or NULL */
    struct mf_chita_opts o;
    double sparsity;
    int branch;
};

static const struct mf_st_entry *need(const struct mf_safetensors *st, const char *name)
{
    const struct mf_st_entry *e = mf_safetensors_find(st, name);
    if (!e)
        fail_msg("golden: no tensor %s", name);
    return e;
}

static void gold_load(const char *name, struct gold *g)
{
    char rel[256], nm[64];
    struct mf_err err = {0};
    memset(g, 0, sizeof *g);
    snprintf(rel, sizeof rel, "tests/golden/chita/%s.safetensors", name);
    assert_int_equal(mf_safetensors_open(mf_test_path(rel), &g->st, &err), MF_OK);
    int nt = atoi(mf_safetensors_meta(g->st, "n_tensors"));
    g->set.n = (size_t)nt;
    g->set.t = calloc((size_t)nt, sizeof *g->set.t);
    bool has_prev = mf_safetensors_find(g->st, "prev.0") != NULL;
    g->prev = has_prev ? calloc((size_t)nt, sizeof *g->prev) : NULL;
    for (int i = 0; i < nt; i++) {
        snprintf(nm, sizeof nm, "w.%d", i);
        const struct mf_st_entry *e = need(g->st, nm);
        struct mf_prune_tensor *t = &g->set.t[i];
        t->name = mf_strdup(nm);
        t->model_index = i;
        t->out = e->shape[0];
        t->in = e->shape[1];
        t->n = t->out * t->in;
        t->w = e->data;
        g->set.total += t->n;
        if (has_prev) {
            snprintf(nm, sizeof nm, "prev.%d", i);
            g->prev[i] = (uint8_t *)need(g->st, nm)->data;
        }
    }
    const struct mf_st_entry *a = need(g->st, "A");
    assert_int_equal(a->shape[1], g->set.total);
    g->n_rows = a->shape[0];
    g->A = a->data;
    mf_chita_opts_default(&g->o);
    g->o.lambda = atof(mf_safetensors_meta(g->st, "lambda"));
    g->o.batch_size = atof(mf_safetensors_meta(g->st, "bsz"));
    g->o.block = atoll(mf_safetensors_meta(g->st, "block"));
    g->sparsity = atof(mf_safetensors_meta(g->st, "sparsity"));
    g->branch = atoi(mf_safetensors_meta(g->st, "branch"));
}

static void gold_free(struct gold *g)
{
    for (size_t i = 0; i < g->set.n; i++)
        mf_free((void *)g->set.t[i].name);
    free(g->set.t);
    free(g->prev);
    mf_safetensors_close(g->st);
}

static struct mf_chita_rows *put_rows(const struct gold *g, const char *dir)
{
    struct mf_err err = {0};
    struct mf_chita_rows *r = NULL;
    assert_int_equal(mf_chita_rows_create(dir, g->n_rows, g->set.total, &r, &err), MF_OK);
    const float **gr = calloc(g->set.n, sizeof *gr);
    for (int64_t row = 0; row < g->n_rows; row++) {
        int64_t off = 0;
        for (size_t i = 0; i < g->set.n; i++) {
            gr[i] = g->A + row * g->set.total + off;
            off += g->set.t[i].n;
        }
        assert_int_equal(mf_chita_rows_put(r, row, &g->set, gr, (const uint8_t *const *)g->prev, &err), MF_OK);
    }
    free(gr);
    return r;
}

struct out {
    uint8_t **masks;
    float **w;
    uint8_t *mblock;
    float *wblock;
};

static void out_alloc(const struct gold *g, struct out *o)
{
    o->masks = calloc(g->set.n, sizeof *o->masks);
    o->w = calloc(g->set.n, sizeof *o->w);
    o->mblock = malloc((size_t)g->set.total);
    o->wblock = malloc((size_t)g->set.total * sizeof(float));
    int64_t off = 0;
    for (size_t i = 0; i < g->set.n; i++) {
        o->masks[i] = o->mblock + off;
        o->w[i] = o->wblock + off;
        off += g->set.t[i].n;
    }
}

static void out_free(struct out *o)
{
    free(o->masks);
    free(o->w);
    free(o->mblock);
    free(o->wblock);
}

static void solve(const struct gold *g, struct mf_pool *pool, const struct mf_chita_rows *r,
                  const struct mf_chita_opts *opts, const float *const *w, struct out *o, struct mf_chita_info *info)
{
    struct mf_err err = {0};
    enum mf_status st = mf_chita_solve(pool, &g->set, w, r, (const uint8_t *const *)g->prev, g->sparsity, opts,
                                       o->masks, o->w, info, &err);
    if (st)
        fail_msg("chita: %s", err.msg);
}

static void check_golden(const char *name)
{
    struct gold g;
    struct out o;
    struct mf_chita_info info;
    gold_load(name, &g);
    out_alloc(&g, &o);
    const char *dir = mf_test_tmpdir();
    struct mf_chita_rows *r = put_rows(&g, dir);
    assert_int_equal(mf_test_dir_count(dir), 0); /* unlinked at creation */
    solve(&g, NULL, r, &g.o, NULL, &o, &info);
    int64_t kept = 0, mism = 0;
    char nm[64];
    double worst = 0;
    for (size_t i = 0; i < g.set.n; i++) {
        snprintf(nm, sizeof nm, "mask.%zu", i);
        const uint8_t *wm = need(g.st, nm)->data;
        snprintf(nm, sizeof nm, "wnew.%zu", i);
        const float *ww = need(g.st, nm)->data;
        for (int64_t j = 0; j < g.set.t[i].n; j++) {
            kept += o.masks[i][j];
            mism += o.masks[i][j] != wm[j];
            if (g.prev && !g.prev[i][j])
                assert_int_equal(o.masks[i][j], 0); /* pruned stays pruned */
            if (!o.masks[i][j])
                assert_true(o.w[i][j] == 0.0f);
        }
        char label[96];
        snprintf(label, sizeof label, "%s %s w_new", name, g.set.t[i].name);
        double d = mf_test_compare(label, o.w[i], ww, g.set.t[i].n, 1e-2);
        worst = d > worst ? d : worst;
    }
    printf("%s: branch %d (golden %d), step %.6g, kept %lld, mask mismatches %lld, %lld blocks, %lld passes\n", name,
           info.branch, g.branch, info.step, (long long)kept, (long long)mism, (long long)info.blocks,
           (long long)info.passes);
    assert_int_equal(mism, 0);
    assert_true(worst < 1e-4);
    assert_int_equal(kept, g.set.total - (int64_t)floor(g.sparsity * (double)g.set.total));
    assert_int_equal(info.kept, kept);
    assert_int_equal(info.branch, g.branch);
    mf_chita_rows_free(r);
    out_free(&o);
    gold_free(&g);
}

static void test_golden_opt_step(void **state) { (void)state; check_golden("opt_step"); }
static void test_golden_line_search(void **state) { (void)state; check_golden("line_search"); }
static void test_golden_prev_mask(void **state) { (void)state; check_golden("prev_mask"); }
static void test_golden_many_rows(void **state) { (void)state; check_golden("many_rows"); }

/* The streaming path: one block per window gives the same bits as one window, with at most one
 * window of rows mapped; 3 threads give the same bits as 1; w_new may alias w. */
static void test_streaming_threads_alias(void **state)
{
    (void)state;
    struct gold g;
    struct out o1, o2, o3, o4;
    struct mf_chita_info i1, i2, i3, i4;
    gold_load("line_search", &g);
    out_alloc(&g, &o1);
    out_alloc(&g, &o2);
    out_alloc(&g, &o3);
    out_alloc(&g, &o4);
    struct mf_chita_rows *r = put_rows(&g, mf_test_tmpdir());
    solve(&g, NULL, r, &g.o, NULL, &o1, &i1);
    assert_int_equal(i1.windows, i1.passes); /* everything in one window per pass */

    struct mf_chita_opts small = g.o;
    small.window_bytes = 1; /* rounds up to one block */
    solve(&g, NULL, r, &small, NULL, &o2, &i2);
    printf("streaming: %lld windows over %lld passes, at most %zu bytes mapped (all rows: %lld bytes)\n",
           (long long)i2.windows, (long long)i2.passes, i2.max_mapped,
           (long long)(g.n_rows * g.set.total * 4));
    assert_int_equal(i2.windows, i2.blocks * i2.passes);
    assert_true(i2.max_mapped <= (size_t)g.n_rows * (1000 * 4 + 2 * 4096)); /* blocks < 2 * 500 */
    assert_true(i2.max_mapped < (size_t)(g.n_rows * g.set.total * 4) / 4);
    assert_memory_equal(o1.mblock, o2.mblock, (size_t)g.set.total);
    assert_memory_equal(o1.wblock, o2.wblock, (size_t)g.set.total * sizeof(float));

    struct mf_pool *pool = mf_pool_create(3);
    assert_non_null(pool);
    solve(&g, pool, r, &small, NULL, &o3, &i3);
    assert_memory_equal(o1.mblock, o3.mblock, (size_t)g.set.total);
    assert_memory_equal(o1.wblock, o3.wblock, (size_t)g.set.total * sizeof(float));
    assert_true(i3.step == i1.step);

    /* in place: w = w_new */
    int64_t off = 0;
    for (size_t i = 0; i < g.set.n; i++) {
        memcpy(o4.w[i], g.set.t[i].w, (size_t)g.set.t[i].n * sizeof(float));
        off += g.set.t[i].n;
    }
    solve(&g, pool, r, &g.o, (const float *const *)o4.w, &o4, &i4);
    assert_memory_equal(o1.mblock, o4.mblock, (size_t)g.set.total);
    assert_memory_equal(o1.wblock, o4.wblock, (size_t)g.set.total * sizeof(float));
    mf_pool_free(pool);
    mf_chita_rows_free(r);
    out_free(&o1);
    out_free(&o2);
    out_free(&o3);
    out_free(&o4);
    gold_free(&g);
}

static void test_errors(void **state)
{
    (void)state;
    struct gold g;
    struct out o;
    struct mf_chita_info info;
    struct mf_err err = {0};
    gold_load("opt_step", &g);
    out_alloc(&g, &o);
    const char *dir = mf_test_tmpdir();
    struct mf_chita_rows *r = NULL;

    assert_int_equal(mf_chita_rows_create(dir, 0, 10, &r, &err), MF_ERR_ARG);
    assert_int_equal(mf_chita_rows_create(dir, INT64_MAX / 2, INT64_MAX / 2, &r, &err), MF_ERR_RANGE);
    assert_int_equal(mf_chita_rows_create("/nonexistent/dir", 2, 10, &r, &err), MF_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/dir"));

    /* row 1 never written */
    assert_int_equal(mf_chita_rows_create(dir, 2, g.set.total, &r, &err), MF_OK);
    const float **gr = calloc(g.set.n, sizeof *gr);
    int64_t off = 0;
    for (size_t i = 0; i < g.set.n; i++) {
        gr[i] = g.A + off;
        off += g.set.t[i].n;
    }
    assert_int_equal(mf_chita_rows_put(r, 0, &g.set, gr, NULL, &err), MF_OK);
    assert_int_equal(mf_chita_rows_put(r, 2, &g.set, gr, NULL, &err), MF_ERR_RANGE);
    assert_int_equal(mf_chita_solve(NULL, &g.set, NULL, r, NULL, 0.5, &g.o, o.masks, o.w, &info, &err), MF_ERR_ARG);
    assert_non_null(strstr(err.msg, "row 1"));

    /* non-finite gradient: named tensor and element */
    float *bad = malloc((size_t)g.set.t[1].n * sizeof(float));
    memcpy(bad, gr[1], (size_t)g.set.t[1].n * sizeof(float));
    bad[17] = NAN;
    const float *keep1 = gr[1];
    gr[1] = bad;
    assert_int_equal(mf_chita_rows_put(r, 1, &g.set, gr, NULL, &err), MF_ERR_NUMERIC);
    assert_non_null(strstr(err.msg, "w.1"));
    assert_non_null(strstr(err.msg, "17"));
    gr[1] = keep1;
    assert_int_equal(mf_chita_rows_put(r, 1, &g.set, gr, NULL, &err), MF_OK);

    struct mf_chita_opts bado = g.o;
    bado.lambda = 0;
    assert_int_equal(mf_chita_solve(NULL, &g.set, NULL, r, NULL, 0.5, &bado, o.masks, o.w, &info, &err), MF_ERR_ARG);
    assert_int_equal(mf_chita_solve(NULL, &g.set, NULL, r, NULL, 1.0, &g.o, o.masks, o.w, &info, &err), MF_ERR_ARG);
    /* sparsity 0 keeps everything (the reference would fail on an empty maximum) */
    assert_int_equal(mf_chita_solve(NULL, &g.set, NULL, r, NULL, 0.0, &g.o, o.masks, o.w, &info, &err), MF_OK);
    assert_int_equal(info.kept, g.set.total);
    for (int64_t j = 0; j < g.set.total; j++)
        assert_int_equal(o.mblock[j], 1);
    mf_chita_rows_free(r);

    /* rows of another width */
    assert_int_equal(mf_chita_rows_create(dir, 1, g.set.total + 1, &r, &err), MF_OK);
    assert_int_equal(mf_chita_rows_put(r, 0, &g.set, gr, NULL, &err), MF_ERR_SHAPE);
    mf_chita_rows_free(r);
    free(bad);
    free(gr);
    out_free(&o);
    gold_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_opt_step),
        cmocka_unit_test(test_golden_line_search),
        cmocka_unit_test(test_golden_prev_mask),
        cmocka_unit_test(test_golden_many_rows),
        cmocka_unit_test(test_streaming_threads_alias),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
