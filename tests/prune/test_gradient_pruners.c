/*
 * tests/prune/test_gradient_pruners.c: SNIP, IterSNIP, TAMT (src/prune/snip.c, tamt.c) and the
 * schedules: hand-checkable cases, properties (pruned weights stay pruned and read as zero;
 * TAMT scores that start at 0 stay 0), and bit-exact masks against the PyTorch/numpy
 * re-implementation of the reference algorithms (tests/golden/gen_gradient_pruners.py) fed the
 * same synthetic gradient source g_b(w_eff) = C[b] + D * w_eff.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/pool.h"
#include "multiflow/prune.h"
#include "multiflow/safetensors.h"
#include "testutil.h"

#define MAXT 4

/* The synthetic source: position p runs batch p mod n_pass; mean = f32 sum in order / f32(n). */
struct synth {
    size_t nt;
    int64_t n[MAXT];
    const float *C[8][MAXT]; /* [batch][tensor] */
    const float *D[MAXT];
    const float *w[MAXT];
    int64_t n_pass, pos;
    float *acc[MAXT];
    int calls;
    bool saw_nonzero_pruned; /* a call's w_eff had a nonzero where check_mask said pruned */
    uint8_t *const *check_mask;
};

static enum mf_status synth_grad(void *ud, const float *const *w_eff, int64_t nb, const float **g, struct mf_err *err)
{
    (void)err;
    struct synth *S = ud;
    if (nb <= 0)
        nb = S->n_pass;
    for (size_t i = 0; i < S->nt; i++) {
        const float *we = w_eff ? w_eff[i] : S->w[i];
        memset(S->acc[i], 0, (size_t)S->n[i] * sizeof(float));
        if (S->check_mask && w_eff)
            for (int64_t j = 0; j < S->n[i]; j++)
                if (!S->check_mask[i][j] && we[j] != 0)
                    S->saw_nonzero_pruned = true;
        for (int64_t b = 0; b < nb; b++) {
            const int64_t bi = (S->pos + b) % S->n_pass;
            for (int64_t j = 0; j < S->n[i]; j++)
                S->acc[i][j] = S->acc[i][j] + (S->C[bi][i][j] + S->D[i][j] * we[j]);
        }
        const float nf = (float)nb;
        for (int64_t j = 0; j < S->n[i]; j++)
            S->acc[i][j] = S->acc[i][j] / nf;
        g[i] = S->acc[i];
    }
    S->pos += nb;
    S->calls++;
    return MF_OK;
}

struct fixture {
    struct mf_safetensors *st;
    struct mf_prune_tensor t[MAXT];
    struct mf_prune_set set;
    struct synth S;
    float *scores[MAXT];
    uint8_t *masks[MAXT];
};

static const char *const NAMES[] = {"a.weight", "b.weight", "c.weight"};

static const void *tensor(struct mf_safetensors *st, const char *name, enum mf_dtype dt, int64_t n)
{
    return mf_test_st_tensor(st, name, dt, n);
}

static void fixture_open(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    struct mf_err err = {0};
    if (mf_safetensors_open(mf_test_path("tests/golden/gradient_pruners/gradient_pruners.safetensors"), &f->st, &err))
        fail_msg("%s", err.msg);
    f->S.nt = MF_ARRAY_LEN(NAMES);
    f->S.n_pass = atoi(mf_safetensors_meta(f->st, "batches_per_pass"));
    assert_true(f->S.n_pass >= 1 && f->S.n_pass <= 8);
    char nm[128];
    for (size_t i = 0; i < f->S.nt; i++) {
        const struct mf_st_entry *e = mf_safetensors_find(f->st, NAMES[i]);
        assert_non_null(e);
        struct mf_prune_tensor *t = &f->t[i];
        t->name = NAMES[i];
        t->model_index = -1;
        t->out = e->shape[0];
        t->in = e->shape[1];
        t->n = t->out * t->in;
        t->w = tensor(f->st, NAMES[i], MF_DTYPE_F32, t->n);
        f->set.total += t->n;
        f->S.n[i] = t->n;
        f->S.w[i] = t->w;
        snprintf(nm, sizeof nm, "%s:D", NAMES[i]);
        f->S.D[i] = tensor(f->st, nm, MF_DTYPE_F32, t->n);
        for (int64_t b = 0; b < f->S.n_pass; b++) {
            snprintf(nm, sizeof nm, "%s:C%lld", NAMES[i], (long long)b);
            f->S.C[b][i] = tensor(f->st, nm, MF_DTYPE_F32, t->n);
        }
        f->S.acc[i] = mf_malloc((size_t)t->n * sizeof(float));
        f->scores[i] = mf_malloc((size_t)t->n * sizeof(float));
        f->masks[i] = mf_malloc((size_t)t->n);
    }
    f->set.t = f->t;
    f->set.n = f->S.nt;
}

static void fixture_close(struct fixture *f)
{
    for (size_t i = 0; i < f->S.nt; i++) {
        mf_free(f->S.acc[i]);
        mf_free(f->scores[i]);
        mf_free(f->masks[i]);
    }
    mf_safetensors_close(f->st);
}

static struct mf_grad_source source_of(struct synth *S)
{
    struct mf_grad_source src = {synth_grad, S, S->n_pass};
    S->pos = 0;
    S->calls = 0;
    return src;
}

/* masks must equal the golden exactly; scores within 1e-6 relative */
static void compare_case(struct fixture *f, const char *c)
{
    char nm[160];
    int64_t pruned = 0;
    for (size_t i = 0; i < f->S.nt; i++) {
        snprintf(nm, sizeof nm, "%s/%s:score", c, NAMES[i]);
        const float *ws = tensor(f->st, nm, MF_DTYPE_F32, f->t[i].n);
        snprintf(nm, sizeof nm, "%s %s scores", c, NAMES[i]);
        double rel = mf_test_compare(nm, f->scores[i], ws, f->t[i].n, 1e-6);
        if (rel > 1e-5)
            fail_msg("%s: scores of %s differ by %g relative", c, NAMES[i], rel);
    }
    for (size_t i = 0; i < f->S.nt; i++) {
        snprintf(nm, sizeof nm, "%s/%s:mask", c, NAMES[i]);
        const uint8_t *wm = tensor(f->st, nm, MF_DTYPE_U8, f->t[i].n);
        for (int64_t j = 0; j < f->t[i].n; j++) {
            if (f->masks[i][j] != wm[j])
                fail_msg("%s: mask of %s differs at %lld: got %d, golden %d", c, NAMES[i], (long long)j,
                         f->masks[i][j], wm[j]);
            pruned += !f->masks[i][j];
        }
    }
    printf("%s: %lld of %lld pruned, masks equal\n", c, (long long)pruned, (long long)f->set.total);
}

static void test_golden(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f);
    struct mf_err err = {0};
    struct mf_gprune_opts o;
    for (int threads = 1; threads <= 2; threads++) {
        struct mf_pool *pool = mf_pool_create(threads);
        assert_non_null(pool);
        struct mf_grad_source src;

        mf_gprune_opts_default(&o);
        src = source_of(&f.S);
        if (mf_gprune_run(pool, MF_GMETHOD_SNIP, &f.set, 0.55, &o, &src, f.scores, f.masks, &err))
            fail_msg("%s", err.msg);
        compare_case(&f, "snip");
        assert_int_equal(f.S.pos, f.S.n_pass);
        /* SNIP averages every batch of a pass whatever IterSNIP's per-round count says (issue 8:
         * it once took round_batches, 1 batch of 4 with the CLI's 60 rounds) */
        o.round_batches = 1;
        src = source_of(&f.S);
        if (mf_gprune_run(pool, MF_GMETHOD_SNIP, &f.set, 0.55, &o, &src, f.scores, f.masks, &err))
            fail_msg("%s", err.msg);
        compare_case(&f, "snip");
        assert_int_equal(f.S.pos, f.S.n_pass);

        struct { const char *name; double s; int64_t T; enum mf_schedule sc; int64_t rb, drawn; } it[] = {
            {"itersnip_exp", 0.6, 3, MF_SCHEDULE_EXP, 2, 6},
            {"itersnip_linear", 0.5, 4, MF_SCHEDULE_LINEAR, 1, 4},
            {"itersnip_const", 0.45, 2, MF_SCHEDULE_CONST, 0, 6}};
        for (size_t c = 0; c < MF_ARRAY_LEN(it); c++) {
            mf_gprune_opts_default(&o);
            o.rounds = it[c].T;
            o.schedule = it[c].sc;
            o.round_batches = it[c].rb;
            src = source_of(&f.S);
            if (mf_gprune_run(pool, MF_GMETHOD_ITERSNIP, &f.set, it[c].s, &o, &src, f.scores, f.masks, &err))
                fail_msg("%s", err.msg);
            compare_case(&f, it[c].name);
            assert_int_equal(f.S.pos, it[c].drawn); /* the stream continues (and cycles) across rounds */
            assert_int_equal(f.S.calls, it[c].T);
        }

        struct { const char *name; double s; int64_t steps; double lr; } tm[] = {{"tamt_ref", 0.55, 4, 5e-5},
                                                                                 {"tamt_fast", 0.6, 7, 3e-2}};
        for (size_t c = 0; c < MF_ARRAY_LEN(tm); c++) {
            mf_gprune_opts_default(&o);
            o.steps = tm[c].steps;
            o.lr = tm[c].lr;
            src = source_of(&f.S);
            if (mf_gprune_run(pool, MF_GMETHOD_TAMT, &f.set, tm[c].s, &o, &src, f.scores, f.masks, &err))
                fail_msg("%s", err.msg);
            compare_case(&f, tm[c].name);
            assert_int_equal(f.S.calls, tm[c].steps);
        }
        mf_pool_free(pool);
    }
    fixture_close(&f);
}

static void test_schedules(void **state)
{
    (void)state;
    /* exp: 1 - (1 - 0.75)^(1/2) = 0.5; linear: s t / T; const: s; the last round is s exactly */
    assert_true(fabs(mf_schedule_sparsity(MF_SCHEDULE_EXP, 0.75, 1, 2) - 0.5) < 1e-15);
    assert_true(fabs(mf_schedule_sparsity(MF_SCHEDULE_EXP, 0.875, 1, 3) - 0.5) < 1e-15);
    assert_true(fabs(mf_schedule_sparsity(MF_SCHEDULE_EXP, 0.875, 2, 3) - 0.75) < 1e-15);
    assert_true(mf_schedule_sparsity(MF_SCHEDULE_EXP, 0.63, 5, 5) == 0.63);
    assert_true(fabs(mf_schedule_sparsity(MF_SCHEDULE_LINEAR, 0.6, 1, 4) - 0.15) < 1e-15);
    assert_true(mf_schedule_sparsity(MF_SCHEDULE_LINEAR, 0.6, 4, 4) == 0.6); /* not the reference's 100 % */
    assert_true(mf_schedule_sparsity(MF_SCHEDULE_CONST, 0.6, 1, 4) == 0.6);
    enum mf_schedule sc;
    assert_true(mf_schedule_parse("linear", &sc) && sc == MF_SCHEDULE_LINEAR);
    assert_false(mf_schedule_parse("cosine", &sc));
    assert_string_equal(mf_schedule_name(MF_SCHEDULE_EXP), "exp");
    enum mf_gmethod gm;
    assert_true(mf_gmethod_parse("itersnip", &gm) && gm == MF_GMETHOD_ITERSNIP);
    assert_true(mf_gmethod_parse("tamt", &gm) && gm == MF_GMETHOD_TAMT);
    assert_false(mf_gmethod_parse("omp", &gm));
    assert_string_equal(mf_gmethod_name(MF_GMETHOD_SNIP), "snip");
}

/* One 2x2 tensor, a constant gradient: hand-checkable SNIP and IterSNIP. */
struct constg {
    float g[4];
    float seen[3][4]; /* w_eff of the first calls */
    int calls;
};

static enum mf_status const_grad(void *ud, const float *const *w_eff, int64_t nb, const float **g, struct mf_err *err)
{
    (void)nb;
    (void)err;
    struct constg *c = ud;
    if (c->calls < 3)
        for (int j = 0; j < 4; j++)
            c->seen[c->calls][j] = w_eff ? w_eff[0][j] : NAN;
    c->calls++;
    g[0] = c->g;
    return MF_OK;
}

static void test_snip_by_hand(void **state)
{
    (void)state;
    const float w[4] = {1, -2, 3, 0.5f};
    struct mf_prune_tensor t = {"x.weight", -1, MF_MOD_VISION, 2, 2, 4, w, NULL, 0};
    struct mf_prune_set set = {&t, 1, 4};
    struct constg c = {{0.5f, 0.25f, -1, 4}, {{0}}, 0};
    struct mf_grad_source src = {const_grad, &c, 1};
    float sc[4];
    uint8_t mk[4];
    float *scores[1] = {sc};
    uint8_t *masks[1] = {mk};
    struct mf_gprune_opts o;
    mf_gprune_opts_default(&o);
    struct mf_err err = {0};
    /* |g w| = 0.5, 0.5, 3, 2; sum 6 */
    assert_int_equal(mf_gprune_run(NULL, MF_GMETHOD_SNIP, &set, 0.5, &o, &src, scores, masks, &err), MF_OK);
    const float want[4] = {0.5f / 6, 0.5f / 6, 3.0f / 6, 2.0f / 6};
    for (int j = 0; j < 4; j++)
        assert_true(fabsf(sc[j] - want[j]) < 1e-7f);
    assert_true(isnan(c.seen[0][0])); /* SNIP runs the model's own weights */
    /* k = 2: the tie at 0.5/6 is pruned at both positions */
    assert_int_equal(mk[0], 0);
    assert_int_equal(mk[1], 0);
    assert_int_equal(mk[2], 1);
    assert_int_equal(mk[3], 1);
    /* 0.74 -> k = 2 (floor); s = 0 prunes nothing */
    assert_int_equal(mf_gprune_run(NULL, MF_GMETHOD_SNIP, &set, 0.0, &o, &src, scores, masks, &err), MF_OK);
    assert_true(mk[0] && mk[1] && mk[2] && mk[3]);

    /* IterSNIP, const 0.25 then the gradient makes the pruned weight the most salient: it must stay
     * pruned, read as zero, and score 0. Round 1 prunes position 0 (tie with 1, lower first). */
    c.calls = 0;
    o.rounds = 3;
    o.schedule = MF_SCHEDULE_CONST;
    assert_int_equal(mf_gprune_run(NULL, MF_GMETHOD_ITERSNIP, &set, 0.25, &o, &src, scores, masks, &err), MF_OK);
    assert_int_equal(c.calls, 3);
    assert_true(isnan(c.seen[0][0]));
    assert_true(c.seen[1][0] == 0 && c.seen[1][1] == -2 && c.seen[2][0] == 0);
    assert_int_equal(mk[0], 0);
    assert_true(mk[1] && mk[2] && mk[3]);
    assert_true(sc[0] == 0);
    /* exp to 0.75 in 2 rounds: 0.5 (k = 2) then 0.75 (k = 3): positions 0, 1 then 3 (2 / 5.5 < 3 / 5.5) */
    c.calls = 0;
    o.rounds = 2;
    o.schedule = MF_SCHEDULE_EXP;
    assert_int_equal(mf_gprune_run(NULL, MF_GMETHOD_ITERSNIP, &set, 0.75, &o, &src, scores, masks, &err), MF_OK);
    assert_true(c.seen[1][0] == 0 && c.seen[1][1] == 0 && c.seen[1][2] == 3 && c.seen[1][3] == 0.5f);
    assert_true(!mk[0] && !mk[1] && mk[2] && !mk[3]);
    assert_true(fabsf(sc[2] - 3.0f / 5) < 1e-7f && fabsf(sc[3] - 2.0f / 5) < 1e-7f);

    /* errors */
    assert_int_equal(mf_gprune_run(NULL, MF_GMETHOD_SNIP, &set, 1.0, &o, &src, scores, masks, &err), MF_ERR_ARG);
    o.rounds = 0;
    assert_int_equal(mf_gprune_run(NULL, MF_GMETHOD_ITERSNIP, &set, 0.5, &o, &src, scores, masks, &err), MF_ERR_ARG);
    assert_non_null(strstr(err.msg, "rounds"));
}

static void test_adamw_by_hand(void **state)
{
    (void)state;
    struct mf_gprune_opts o;
    mf_gprune_opts_default(&o);
    float p = 1, m = 0, v = 0, g = 2;
    /* p = 1 (1 - 0.1 * 0.01) = 0.999; m = 0.2; v = 0.004; m^ = 2, sqrt(v^) = 2: p = 0.999 - 0.1 */
    mf_adamw_step(&p, &m, &v, &g, 1, 1, 0.1, &o);
    assert_true(fabsf(m - 0.2f) < 1e-7f && fabsf(v - 0.004f) < 1e-9f);
    assert_true(fabsf(p - 0.899f) < 1e-6f);
    /* a zero parameter with zero gradient stays exactly zero */
    float p0 = 0, m0 = 0, v0 = 0, g0 = 0;
    for (int t = 1; t <= 5; t++)
        mf_adamw_step(&p0, &m0, &v0, &g0, 1, t, 0.1, &o);
    assert_true(p0 == 0 && m0 == 0 && v0 == 0);
}

static void test_tamt_zero_scores_stay_zero(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f);
    struct mf_gprune_opts o;
    mf_gprune_opts_default(&o);
    o.steps = 9;
    o.lr = 0.1; /* large: the scores move a lot */
    struct mf_grad_source src = source_of(&f.S);
    struct mf_err err = {0};
    const double s = 0.6; /* k = 40 > sum of floor(s n_l) = 17 + 16 + 5: 2 kept-by-magnitude weights go */
    uint8_t *lmp[MAXT];
    for (size_t i = 0; i < f.S.nt; i++)
        lmp[i] = mf_malloc((size_t)f.t[i].n);
    assert_int_equal(mf_prune_compute_masks(NULL, MF_METHOD_LMP, &f.set, s, 0, lmp, &err), MF_OK);
    assert_int_equal(mf_gprune_run(NULL, MF_GMETHOD_TAMT, &f.set, s, &o, &src, f.scores, f.masks, &err), MF_OK);
    int64_t pruned = 0, reranked = 0;
    for (size_t i = 0; i < f.S.nt; i++)
        for (int64_t j = 0; j < f.t[i].n; j++) {
            if (!lmp[i][j]) {
                assert_true(f.scores[i][j] == 0); /* started at 0: stays 0 */
                assert_int_equal(f.masks[i][j], 0);
            }
            pruned += !f.masks[i][j];
            reranked += lmp[i][j] && !f.masks[i][j];
        }
    assert_int_equal(pruned, (int64_t)floor(s * (double)f.set.total));
    printf("tamt lr 0.1: %lld kept-by-magnitude weights pruned by the trained scores\n", (long long)reranked);
    assert_int_equal(reranked, 2);
    for (size_t i = 0; i < f.S.nt; i++)
        mf_free(lmp[i]);
    fixture_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_snip_by_hand),
        cmocka_unit_test(test_adamw_by_hand),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_tamt_zero_scores_stay_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
