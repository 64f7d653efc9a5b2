/* BLIP pretraining losses (src/models/losses.c) against PyTorch autograd goldens
 * (tests/golden/gen_grads.py, blip_losses.py): the loss values, the hardest ITM negatives and the
 * gradient of EVERY trainable tensor, per loss and for the sum, on the tiny fixtures orig-f32
 * (queues, temp, tied decoder; --momentum off), hf-itm-f32 and hf-cap-f32 (decoder only), with the 3 golden pairs as one batch. Plus the
 * sampled-negative mode's properties, option parsing and the error paths. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/grad.h"
#include "models/losses.h"
#include "multiflow/safetensors.h"

#define TOL_GRAD 1e-3
#define TOL_LOSS 1e-4
#define TOL_ZERO 1e-6

struct fixture {
    struct mf_model *m;
    struct mf_safetensors *in;     /* golden inputs */
    struct mf_safetensors *gr[3];  /* itc, itm, lm goldens (lm NULL without decoder) */
    const float *images;
    const int32_t *ids, *mask;
    int64_t B, T;
};

static const char *loss_names[3] = {"itc", "itm", "lm"};

static void fixture_open(struct fixture *f, const char *name)
{
    char dir[600], path[700];
    struct mf_err err = {0};
    memset(f, 0, sizeof *f);
    snprintf(dir, sizeof dir, "%s%s", mf_test_path("tests/golden/blip/"), name);
    if (mf_model_load(dir, NULL, &f->m, &err) != MF_OK)
        fail_msg("load %s: %s", dir, err.msg);
    snprintf(path, sizeof path, "%s.golden.safetensors", dir);
    if (mf_safetensors_open(path, &f->in, &err) != MF_OK)
        fail_msg("%s", err.msg);
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s%s.%s.safetensors", mf_test_path("tests/golden/grads/"), name, loss_names[k]);
        FILE *fp = fopen(path, "rb");
        if (!fp)
            continue;
        fclose(fp);
        if (mf_safetensors_open(path, &f->gr[k], &err) != MF_OK)
            fail_msg("%s", err.msg);
    }
    const struct mf_st_entry *ie = mf_safetensors_find(f->in, "ids");
    assert_non_null(ie);
    f->B = ie->shape[0];
    f->T = ie->shape[1];
    f->ids = mf_safetensors_find(f->in, "ids")->data;
    f->mask = mf_safetensors_find(f->in, "mask")->data;
    f->images = mf_safetensors_find(f->in, "images")->data;
}

static void fixture_close(struct fixture *f)
{
    for (int k = 0; k < 3; k++)
        mf_safetensors_close(f->gr[k]);
    mf_safetensors_close(f->in);
    mf_model_free(f->m);
}

static int tensor_index(const struct mf_model *m, const char *name)
{
    for (size_t i = 0; i < mf_model_n_tensors(m); i++)
        if (strcmp(mf_model_tensor_at(m, i)->name, name) == 0)
            return (int)i;
    return -1;
}

static bool is_gradient_entry(const char *name)
{
    return strcmp(name, "loss") != 0 && strcmp(name, "neg_img") != 0 && strcmp(name, "neg_txt") != 0;
}

static float scalar(const struct mf_safetensors *st, const char *name)
{
    const struct mf_st_entry *e = mf_safetensors_find(st, name);
    assert_non_null(e);
    assert_int_equal(e->dtype, MF_DTYPE_F32);
    return *(const float *)e->data;
}

/* Runs the selected losses (bits) with hardest negatives and compares every gradient with the sum
 * of the goldens of those losses. */
static void check_losses(struct fixture *f, const char *fx, unsigned bits, int n_threads, int64_t prompt_len)
{
    struct mf_err err = {0};
    struct mf_session *s = NULL;
    struct mf_grads *g = NULL;
    struct mf_losses *L = NULL;
    /* these one-batch goldens are the --momentum off path (online columns, stored queues); the
     * momentum path over several batches is tests/models/test_momentum.c */
    struct mf_losses_opts o = {bits, MF_ITM_NEG_HARDEST, 0, MF_MOMENTUM_OFF, prompt_len};
    struct mf_loss_values v;
    int32_t neg_img[8], neg_txt[8];
    assert_true(f->B <= 8);
    assert_int_equal(mf_session_create(f->m, n_threads, &s, &err), MF_OK);
    assert_int_equal(mf_grads_create(f->m, &g, &err), MF_OK);
    if (mf_losses_create(f->m, &o, &L, &err) != MF_OK)
        fail_msg("%s: %s", fx, err.msg);
    mf_grads_zero(g);
    if (mf_losses_batch(L, s, 0, f->images, f->ids, f->mask, f->B, f->T, g, &v, neg_img, neg_txt, &err) != MF_OK)
        fail_msg("%s: %s", fx, err.msg);

    /* reference set: the goldens of the selected losses */
    const struct mf_safetensors *ref[3] = {0};
    double want_total = 0;
    const double got_loss[3] = {v.itc, v.itm, v.lm};
    for (int k = 0; k < 3; k++) {
        if (!(bits & (1u << k)))
            continue;
        ref[k] = f->gr[k];
        assert_non_null(ref[k]);
        double want = scalar(ref[k], "loss");
        want_total += want;
        printf("  %s [%s] loss %s: got %.7f want %.7f\n", fx, n_threads == 1 ? "1 thread" : "2 threads",
               loss_names[k], got_loss[k], want);
        assert_true(fabs(got_loss[k] - want) <= TOL_LOSS * fmax(1.0, fabs(want)));
    }
    assert_true(fabs(v.total - want_total) <= TOL_LOSS * fmax(1.0, fabs(want_total)));
    if (bits & MF_LOSS_ITM) {
        const int32_t *wi = mf_safetensors_find(ref[1], "neg_img")->data;
        const int32_t *wt = mf_safetensors_find(ref[1], "neg_txt")->data;
        for (int64_t b = 0; b < f->B; b++) {
            assert_int_equal(neg_img[b], wi[b]);
            assert_int_equal(neg_txt[b], wt[b]);
        }
    }

    /* the largest reference gradient entry, for the all-zero tensors' tolerance */
    const struct mf_safetensors *any = NULL;
    for (int k = 0; k < 3; k++)
        if (ref[k])
            any = ref[k];
    size_t n_entries = mf_safetensors_count(any);
    double gmax = 0;
    float *want = NULL;
    size_t want_cap = 0;
    for (size_t e = 0; e < n_entries; e++) {
        const char *name = mf_safetensors_at(any, e)->name;
        if (!is_gradient_entry(name) || strcmp(name, "temp") == 0)
            continue;
        for (int k = 0; k < 3; k++) {
            if (!ref[k])
                continue;
            const struct mf_st_entry *r = mf_safetensors_find(ref[k], name);
            for (size_t i = 0; i < r->nbytes / 4; i++)
                gmax = fmax(gmax, fabs(((const float *)r->data)[i]));
        }
    }
    double worst = 0;
    int n_checked = 0;
    for (size_t e = 0; e < n_entries; e++) {
        const char *name = mf_safetensors_at(any, e)->name;
        if (!is_gradient_entry(name))
            continue;
        const size_t n = mf_safetensors_at(any, e)->nbytes / 4;
        if (n > want_cap) {
            want = realloc(want, n * sizeof *want);
            want_cap = n;
        }
        memset(want, 0, n * sizeof *want);
        double wmax = 0;
        for (int k = 0; k < 3; k++) {
            if (!ref[k])
                continue;
            const struct mf_st_entry *r = mf_safetensors_find(ref[k], name);
            assert_non_null(r);
            assert_int_equal(r->nbytes / 4, n);
            for (size_t i = 0; i < n; i++)
                want[i] += ((const float *)r->data)[i];
        }
        for (size_t i = 0; i < n; i++)
            wmax = fmax(wmax, fabs(want[i]));
        if (strcmp(name, "temp") == 0) {
            double d = fabs(v.d_temp - want[0]);
            printf("    %-70s d_temp got %.6g want %.6g\n", name, v.d_temp, want[0]);
            assert_true(d <= TOL_GRAD * fmax(fabs(want[0]), TOL_ZERO * gmax / TOL_GRAD));
            continue;
        }
        int idx = tensor_index(f->m, name);
        if (idx < 0)
            fail_msg("%s: golden tensor '%s' is not a model tensor", fx, name);
        const float *got = mf_grads_tensor(g, (size_t)idx);
        double dmax = 0;
        for (size_t i = 0; i < n; i++) {
            double gv = got ? got[i] : 0.0;
            if (!isfinite(gv))
                fail_msg("%s: gradient of '%s' has a non-finite value at %zu", fx, name, i);
            dmax = fmax(dmax, fabs(gv - want[i]));
        }
        /* Relative per tensor, with an absolute floor of 1e-6 * the loss's largest gradient entry for
         * tensors whose gradient is (mathematically) zero: untouched by the loss, or key biases
         * (softmax is shift-invariant; float32 leaves ~1e-8 noise there). */
        double rel = dmax / fmax(wmax, 1e-30);
        bool ok = dmax <= TOL_GRAD * wmax || dmax <= TOL_ZERO * gmax;
        if (wmax > 1e-3 * gmax) /* report the relative error where it means something */
            worst = fmax(worst, rel);
        n_checked++;
        if (!ok) {
            fail_msg("%s: gradient of '%s': max |diff| %.3g, max |want| %.3g (rel %.3g)", fx, name, dmax, wmax,
                     rel);
        }
    }
    /* no gradient the goldens do not know about (momentum copies, queues, aliases stay empty) */
    for (size_t i = 0; i < mf_model_n_tensors(f->m); i++) {
        if (!mf_grads_tensor(g, i))
            continue;
        const char *name = mf_model_tensor_at(f->m, i)->name;
        if (!mf_safetensors_find(any, name))
            fail_msg("%s: the engine has a gradient for '%s', which the reference does not train", fx, name);
    }
    printf("    %d tensors, worst relative difference %.3g (tolerance %.0e)\n", n_checked, worst, TOL_GRAD);
    free(want);
    mf_losses_free(L);
    mf_grads_free(g);
    mf_session_free(s);
}

static void run_goldens(const char *fx)
{
    struct fixture f;
    fixture_open(&f, fx);
    printf("%s\n", fx);
    unsigned all = 0;
    for (int k = 0; k < 3; k++)
        if (f.gr[k]) {
            check_losses(&f, fx, 1u << k, 1, 0);
            all |= 1u << k;
        }
    check_losses(&f, fx, all, 1, 0);
    check_losses(&f, fx, all, 2, 0);
    fixture_close(&f);
}

/* BLIP_Decoder's captioning loss: the LM loss with the first 3 positions (standing for [DEC] + the
 * prompt's pieces) not targets, against tests/golden/grads/<fx>.caplm.safetensors (gen_grads.py
 * gen_caption), at 1 and 2 threads. */
static void run_caption_golden(const char *fx)
{
    struct fixture f;
    char path[700];
    struct mf_err err = {0};
    fixture_open(&f, fx);
    mf_safetensors_close(f.gr[2]);
    snprintf(path, sizeof path, "%s%s.caplm.safetensors", mf_test_path("tests/golden/grads/"), fx);
    if (mf_safetensors_open(path, &f.gr[2], &err) != MF_OK)
        fail_msg("%s", err.msg);
    printf("%s (captioning, prompt of 3)\n", fx);
    check_losses(&f, fx, MF_LOSS_LM, 1, 3);
    check_losses(&f, fx, MF_LOSS_LM, 2, 3);
    fixture_close(&f);
}

static void test_caption_goldens(void **state)
{
    (void)state;
    run_caption_golden("orig-f32");
    run_caption_golden("hf-cap-f32");
}

static void test_orig_goldens(void **state)
{
    (void)state;
    run_goldens("orig-f32");
}

static void test_hf_itm_goldens(void **state)
{
    (void)state;
    run_goldens("hf-itm-f32");
}

static void test_hf_cap_goldens(void **state)
{
    (void)state;
    run_goldens("hf-cap-f32"); /* decoder only (sharded): lm, LM matrix tied to the word embeddings */
}

/* Sampled negatives: never the pair itself, reproducible for a (seed, batch index), and the draws
 * do change with the seed. */
static void test_sample_mode(void **state)
{
    (void)state;
    struct fixture f;
    struct mf_err err = {0};
    struct mf_session *s = NULL;
    struct mf_grads *g = NULL;
    fixture_open(&f, "hf-itm-f32");
    assert_int_equal(mf_session_create(f.m, 1, &s, &err), MF_OK);
    assert_int_equal(mf_grads_create(f.m, &g, &err), MF_OK);
    int distinct = 0;
    int32_t first_img[8] = {0}, first_txt[8] = {0};
    for (uint64_t seed = 0; seed < 12; seed++) {
        struct mf_losses *L = NULL;
        struct mf_losses_opts o = {MF_LOSS_ITM, MF_ITM_NEG_SAMPLE, seed, MF_MOMENTUM_ON, 0};
        assert_int_equal(mf_losses_create(f.m, &o, &L, &err), MF_OK);
        int32_t ni[2][8], nt[2][8];
        struct mf_loss_values v[2];
        for (int rep = 0; rep < 2; rep++) {
            mf_grads_zero(g);
            assert_int_equal(mf_losses_batch(L, s, 5, f.images, f.ids, f.mask, f.B, f.T, g, &v[rep], ni[rep],
                                             nt[rep], &err),
                             MF_OK);
        }
        assert_memory_equal(ni[0], ni[1], (size_t)f.B * sizeof(int32_t));
        assert_memory_equal(nt[0], nt[1], (size_t)f.B * sizeof(int32_t));
        assert_true(v[0].itm == v[1].itm);
        for (int64_t b = 0; b < f.B; b++) {
            assert_true(ni[0][b] >= 0 && ni[0][b] < f.B && ni[0][b] != b);
            assert_true(nt[0][b] >= 0 && nt[0][b] < f.B && nt[0][b] != b);
        }
        if (seed == 0) {
            memcpy(first_img, ni[0], sizeof first_img);
            memcpy(first_txt, nt[0], sizeof first_txt);
        } else if (memcmp(first_img, ni[0], (size_t)f.B * sizeof(int32_t)) ||
                   memcmp(first_txt, nt[0], (size_t)f.B * sizeof(int32_t))) {
            distinct++;
        }
        mf_losses_free(L);
    }
    printf("  sample mode: %d of 11 seeds drew negatives different from seed 0's\n", distinct);
    assert_true(distinct > 0);
    mf_grads_free(g);
    mf_session_free(s);
    fixture_close(&f);
}

static void test_parse(void **state)
{
    (void)state;
    struct mf_err err = {0};
    unsigned bits = 0;
    assert_int_equal(mf_losses_parse("itc,itm,lm", &bits, &err), MF_OK);
    assert_int_equal(bits, MF_LOSS_ALL);
    assert_int_equal(mf_losses_parse("lm,itc", &bits, &err), MF_OK);
    assert_int_equal(bits, MF_LOSS_LM | MF_LOSS_ITC);
    assert_int_equal(mf_losses_parse("itm", &bits, &err), MF_OK);
    assert_int_equal(bits, MF_LOSS_ITM);
    assert_int_equal(mf_losses_parse("", &bits, &err), MF_ERR_ARG);
    assert_int_equal(mf_losses_parse("itc,", &bits, &err), MF_ERR_ARG);
    assert_int_equal(mf_losses_parse("itc,itc", &bits, &err), MF_ERR_ARG);
    assert_int_equal(mf_losses_parse("mlm", &bits, &err), MF_ERR_ARG);
    assert_non_null(strstr(err.msg, "mlm"));
    assert_int_equal(mf_losses_parse("itc,,lm", &bits, &err), MF_ERR_ARG);
}

static void test_errors(void **state)
{
    (void)state;
    struct fixture f;
    struct mf_err err = {0};
    struct mf_losses *L = NULL;
    fixture_open(&f, "hf-itm-f32");
    struct mf_losses_opts o = {MF_LOSS_LM, MF_ITM_NEG_HARDEST, 0, MF_MOMENTUM_ON, 0};
    assert_int_equal(mf_losses_create(f.m, &o, &L, &err), MF_ERR_UNSUPPORTED);
    assert_null(L);
    assert_non_null(strstr(err.msg, "decoder"));
    o.losses = 0; /* default: what the checkpoint supports */
    assert_int_equal(mf_losses_create(f.m, &o, &L, &err), MF_OK);
    assert_int_equal(mf_losses_selected(L), MF_LOSS_ITC | MF_LOSS_ITM);
    struct mf_session *s = NULL;
    struct mf_grads *g = NULL;
    assert_int_equal(mf_session_create(f.m, 1, &s, &err), MF_OK);
    assert_int_equal(mf_grads_create(f.m, &g, &err), MF_OK);
    /* one pair: no in-batch negative for ITM */
    assert_int_equal(mf_losses_batch(L, s, 0, f.images, f.ids, f.mask, 1, f.T, g, NULL, NULL, NULL, &err),
                     MF_ERR_ARG);
    assert_non_null(strstr(err.msg, "2 pairs"));
    mf_grads_free(g);
    mf_session_free(s);
    mf_losses_free(L);
    fixture_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_orig_goldens),
        cmocka_unit_test(test_hf_itm_goldens),
        cmocka_unit_test(test_hf_cap_goldens),
        cmocka_unit_test(test_caption_goldens),
        cmocka_unit_test(test_sample_mode),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
