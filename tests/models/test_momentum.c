/*
 * tests/models/test_momentum.c: BLIP's momentum encoders and queues in the pretraining losses
 * (models/momentum.c through models/losses.c) against the PyTorch golden
 * tests/golden/grads/orig-f32.momentum.safetensors (gen_grads.py gen_momentum): the orig-f32
 * fixture, whose momentum copies differ from the online weights, 4 batches of 3 pairs with one
 * evolving state (update, momentum columns, queues, enqueue with a wrapping pointer), all losses,
 * hardest negatives. Checks every batch's losses and negatives, the mean gradient of every
 * trainable tensor within 1e-4 of the tensor's largest entry, the state after the 4 batches
 * (queues, pointer, some momentum tensors), bit-identical results for 1, 2 and 3 threads, that a
 * reset replays the first batch exactly, that --momentum off differs on this fixture, and that a
 * checkpoint without momentum copies gives the same bits with momentum on and off.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/grad.h"
#include "models/losses.h"
#include "models/momentum.h"
#include "multiflow/safetensors.h"
#include "testutil.h"

#define TOL_GRAD 1e-4  /* per tensor, relative to the tensor's largest golden entry */
#define TOL_ZERO 1e-6  /* floor relative to the largest entry of all tensors (zero gradients) */
#define TOL_LOSS 1e-4
#define N_BATCH 4

struct run {
    struct mf_grads *g;
    double losses[N_BATCH][3];
    int32_t neg_img[N_BATCH][8], neg_txt[N_BATCH][8];
    double d_temp;
    float *queues;   /* (2, Q, P) image, text after the run */
    int64_t ptr;
    float *state;    /* copies of the golden's state.* momentum tensors after the run, concatenated */
    size_t n_state;
};

static struct mf_model *model;
static struct mf_safetensors *gold;
static const float *images;
static const int32_t *ids, *mask;
static int64_t B, T, R;

static int setup(void **state)
{
    (void)state;
    struct mf_err err = {0};
    if (mf_model_load(mf_test_path("tests/golden/blip/orig-f32"), NULL, &model, &err) ||
        mf_safetensors_open(mf_test_path("tests/golden/grads/orig-f32.momentum.safetensors"), &gold, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    const struct mf_st_entry *e = mf_safetensors_find(gold, "ids");
    B = e->shape[0] / N_BATCH;
    T = e->shape[1];
    R = mf_model_get_info(model)->vision.image_size;
    ids = e->data;
    mask = mf_safetensors_find(gold, "mask")->data;
    images = mf_safetensors_find(gold, "images")->data;
    return B >= 2 && B <= 8 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    mf_safetensors_close(gold);
    mf_model_free(model);
    return 0;
}

static int tensor_index(const struct mf_model *m, const char *name)
{
    for (size_t i = 0; i < mf_model_n_tensors(m); i++)
        if (strcmp(mf_model_tensor_at(m, i)->name, name) == 0)
            return (int)i;
    return -1;
}

static bool is_state_or_input(const char *name)
{
    static const char *const skip[] = {"images", "ids", "mask", "losses", "neg_img", "neg_txt"};
    for (size_t k = 0; k < sizeof skip / sizeof skip[0]; k++)
        if (strcmp(name, skip[k]) == 0)
            return true;
    return strncmp(name, "state.", 6) == 0;
}

static void run_free(struct run *r)
{
    mf_grads_free(r->g);
    free(r->queues);
    free(r->state);
    memset(r, 0, sizeof *r);
}

/* The 4 golden batches in order with one state; r->g = the mean gradient. */
static void run_batches(struct mf_model *m, enum mf_momentum_mode mode, int n_threads, struct run *r)
{
    struct mf_err err = {0};
    struct mf_session *s = NULL;
    struct mf_losses *L = NULL;
    struct mf_losses_opts o = {MF_LOSS_ALL, MF_ITM_NEG_HARDEST, 0, mode, 0};
    memset(r, 0, sizeof *r);
    if (mf_session_create(m, n_threads, &s, &err) || mf_grads_create(m, &r->g, &err) ||
        mf_losses_create(m, &o, &L, &err))
        fail_msg("%s", err.msg);
    mf_grads_zero(r->g);
    for (int k = 0; k < N_BATCH; k++) {
        struct mf_loss_values v;
        const int64_t p0 = k * B;
        if (mf_losses_batch(L, s, (uint64_t)k, images + p0 * 3 * R * R, ids + p0 * T, mask + p0 * T, B, T, r->g, &v,
                            r->neg_img[k], r->neg_txt[k], &err))
            fail_msg("batch %d: %s", k, err.msg);
        r->losses[k][0] = v.itc;
        r->losses[k][1] = v.itm;
        r->losses[k][2] = v.lm;
        r->d_temp += v.d_temp / N_BATCH;
    }
    for (size_t i = 0; i < mf_model_n_tensors(m); i++) {
        float *gt = mf_grads_tensor(r->g, i);
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        for (size_t j = 0; gt && j < t->nbytes / mf_dtype_size(t->dtype); j++)
            gt[j] /= N_BATCH;
    }
    const struct mf_momentum *mo = mf_losses_momentum(L);
    const int64_t Q = mf_momentum_queue_len(mo), P = mf_model_get_info(m)->proj_dim;
    r->ptr = mf_momentum_queue_ptr(mo);
    if (Q) {
        r->queues = malloc((size_t)(2 * Q * P) * sizeof(float));
        memcpy(r->queues, mf_momentum_queue(mo, 0), (size_t)(Q * P) * sizeof(float));
        memcpy(r->queues + Q * P, mf_momentum_queue(mo, 1), (size_t)(Q * P) * sizeof(float));
    }
    if (mf_momentum_active(mo)) {
        for (size_t e = 0; e < mf_safetensors_count(gold); e++) {
            const struct mf_st_entry *ge = mf_safetensors_at(gold, e);
            if (strncmp(ge->name, "state.", 6) != 0 || strncmp(ge->name, "state.queue", 11) == 0 ||
                strstr(ge->name, "_queue"))
                continue;
            int idx = tensor_index(m, ge->name + 6);
            assert_true(idx >= 0);
            const float *cur = mf_momentum_tensor(mo, (size_t)idx);
            assert_non_null(cur);
            const size_t n = ge->nbytes / 4;
            r->state = realloc(r->state, (r->n_state + n) * sizeof(float));
            memcpy(r->state + r->n_state, cur, n * sizeof(float));
            r->n_state += n;
        }
    }
    /* a reset replays the first batch exactly */
    struct mf_loss_values v0;
    mf_losses_reset(L);
    struct mf_grads *g2 = NULL;
    assert_int_equal(mf_grads_create(m, &g2, &err), MF_OK);
    if (mf_losses_batch(L, s, 0, images, ids, mask, B, T, g2, &v0, NULL, NULL, &err))
        fail_msg("%s", err.msg);
    assert_true(v0.itc == r->losses[0][0] && v0.itm == r->losses[0][1] && v0.lm == r->losses[0][2]);
    mf_grads_free(g2);
    mf_losses_free(L);
    mf_session_free(s);
}

/* max |got - want| per golden gradient tensor against TOL_GRAD * max |want| (floor TOL_ZERO * G). */
static double compare_grads(const struct run *r, bool must_pass, double *worst_rel_out)
{
    double gmax = 0;
    for (size_t e = 0; e < mf_safetensors_count(gold); e++) {
        const struct mf_st_entry *ge = mf_safetensors_at(gold, e);
        if (is_state_or_input(ge->name) || strcmp(ge->name, "temp") == 0)
            continue;
        for (size_t j = 0; j < ge->nbytes / 4; j++)
            gmax = fmax(gmax, fabs(((const float *)ge->data)[j]));
    }
    double worst = 0, worst_any = 0;
    int n = 0;
    for (size_t e = 0; e < mf_safetensors_count(gold); e++) {
        const struct mf_st_entry *ge = mf_safetensors_at(gold, e);
        if (is_state_or_input(ge->name))
            continue;
        const float *want = ge->data;
        if (strcmp(ge->name, "temp") == 0) {
            double d = fabs(r->d_temp - want[0]);
            if (must_pass) {
                printf("    d temp: got %.7g want %.7g\n", r->d_temp, (double)want[0]);
                assert_true(d <= TOL_GRAD * fabs(want[0]) + TOL_ZERO * gmax);
            }
            continue;
        }
        int idx = tensor_index(model, ge->name);
        if (idx < 0)
            fail_msg("golden tensor '%s' is not a model tensor", ge->name);
        const float *got = mf_grads_tensor(r->g, (size_t)idx);
        const size_t cnt = ge->nbytes / 4;
        double dmax = 0, wmax = 0;
        for (size_t j = 0; j < cnt; j++) {
            const double gv = got ? got[j] : 0.0;
            if (!isfinite(gv))
                fail_msg("gradient of '%s' not finite at %zu", ge->name, j);
            dmax = fmax(dmax, fabs(gv - want[j]));
            wmax = fmax(wmax, fabs(want[j]));
        }
        const double rel = dmax / fmax(wmax, 1e-30);
        if (wmax > 1e-3 * gmax)
            worst = fmax(worst, rel);
        worst_any = fmax(worst_any, rel);
        n++;
        if (must_pass && !(dmax <= TOL_GRAD * wmax || dmax <= TOL_ZERO * gmax))
            fail_msg("gradient of '%s': max |diff| %.3g, max |want| %.3g (rel %.3g)", ge->name, dmax, wmax, rel);
    }
    if (worst_rel_out)
        *worst_rel_out = worst;
    if (must_pass)
        printf("    %d gradient tensors, worst relative difference %.3g (tolerance %.0e)\n", n, worst, TOL_GRAD);
    return worst_any;
}

static void test_golden(void **state)
{
    (void)state;
    struct run r[3];
    const float *gl = mf_safetensors_find(gold, "losses")->data;
    const int32_t *gi = mf_safetensors_find(gold, "neg_img")->data, *gt = mf_safetensors_find(gold, "neg_txt")->data;
    for (int t = 0; t < 3; t++) {
        run_batches(model, MF_MOMENTUM_ON, t + 1, &r[t]);
        printf("  %d thread(s)\n", t + 1);
        for (int k = 0; k < N_BATCH; k++) {
            printf("    batch %d: itc %.6f itm %.6f lm %.6f (want %.6f %.6f %.6f)\n", k, r[t].losses[k][0],
                   r[t].losses[k][1], r[t].losses[k][2], (double)gl[3 * k], (double)gl[3 * k + 1],
                   (double)gl[3 * k + 2]);
            for (int j = 0; j < 3; j++)
                assert_true(fabs(r[t].losses[k][j] - gl[3 * k + j]) <= TOL_LOSS * fmax(1.0, fabs(gl[3 * k + j])));
            for (int64_t b = 0; b < B; b++) {
                assert_int_equal(r[t].neg_img[k][b], gi[k * B + b]);
                assert_int_equal(r[t].neg_txt[k][b], gt[k * B + b]);
            }
        }
        compare_grads(&r[t], true, NULL);
        /* the state after the 4 batches */
        const int64_t want_ptr = *(const int64_t *)mf_safetensors_find(gold, "state.queue_ptr")->data;
        assert_int_equal(r[t].ptr, want_ptr);
        const struct mf_st_entry *qi = mf_safetensors_find(gold, "state.image_queue");
        const int64_t P = qi->shape[0], Q = qi->shape[1];
        for (int k = 0; k < 2; k++) {
            const float *want = mf_safetensors_find(gold, k ? "state.text_queue" : "state.image_queue")->data;
            for (int64_t p = 0; p < P; p++)
                for (int64_t q = 0; q < Q; q++)
                    assert_true(fabs(r[t].queues[k * Q * P + q * P + p] - want[p * Q + q]) <= 1e-5);
        }
        size_t off = 0;
        for (size_t e = 0; e < mf_safetensors_count(gold); e++) {
            const struct mf_st_entry *ge = mf_safetensors_at(gold, e);
            if (strncmp(ge->name, "state.", 6) != 0 || strstr(ge->name, "_queue") || strstr(ge->name, "queue_ptr"))
                continue;
            char label[300];
            snprintf(label, sizeof label, "    %s", ge->name);
            double rel = mf_test_compare(label, r[t].state + off, ge->data, (int64_t)(ge->nbytes / 4), 1e-3);
            assert_true(rel <= 1e-5);
            off += ge->nbytes / 4;
        }
        assert_int_equal(off, r[t].n_state);
    }
    /* the same bits for any thread count: gradients, state */
    for (int t = 1; t < 3; t++) {
        assert_memory_equal(r[t].g->block, r[0].g->block, r[0].g->numel * sizeof(float));
        assert_memory_equal(r[t].state, r[0].state, r[0].n_state * sizeof(float));
        assert_memory_equal(r[t].losses, r[0].losses, sizeof r[0].losses);
    }
    for (int t = 0; t < 3; t++)
        run_free(&r[t]);
}

/* --momentum off (today's approximation) on the same batches: the gradients move well beyond the
 * golden tolerance on this fixture, so the test above would catch a silent fallback. */
static void test_off_differs(void **state)
{
    (void)state;
    struct run r;
    double worst = 0;
    run_batches(model, MF_MOMENTUM_OFF, 1, &r);
    compare_grads(&r, false, &worst);
    printf("  --momentum off vs the momentum golden: worst relative difference per tensor %.3g\n", worst);
    assert_true(worst > 1e-2);
    run_free(&r);
}

/* A checkpoint without momentum copies (HF layout): on and off are the same computation. */
static void test_without_copies(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_model *hf = NULL;
    if (mf_model_load(mf_test_path("tests/golden/blip/hf-itm-f32"), NULL, &hf, &err))
        fail_msg("%s", err.msg);
    struct mf_grads *g[2] = {0};
    struct mf_session *s = NULL;
    assert_int_equal(mf_session_create(hf, 2, &s, &err), MF_OK);
    for (int k = 0; k < 2; k++) {
        struct mf_losses *L = NULL;
        struct mf_losses_opts o = {0, MF_ITM_NEG_HARDEST, 0, k ? MF_MOMENTUM_OFF : MF_MOMENTUM_ON, 0};
        assert_int_equal(mf_grads_create(hf, &g[k], &err), MF_OK);
        assert_int_equal(mf_losses_create(hf, &o, &L, &err), MF_OK);
        assert_false(mf_momentum_active(mf_losses_momentum(L)));
        assert_int_equal(mf_momentum_bytes(mf_losses_momentum(L)), 0);
        for (int b = 0; b < 2; b++) /* two batches of 2 of the momentum golden's inputs (same size) */
            if (mf_losses_batch(L, s, (uint64_t)b, images + b * 2 * 3 * R * R, ids + b * 2 * T, mask + b * 2 * T, 2, T,
                                g[k], NULL, NULL, NULL, &err))
                fail_msg("%s", err.msg);
        mf_losses_free(L);
    }
    assert_memory_equal(g[0]->block, g[1]->block, g[0]->numel * sizeof(float));
    mf_grads_free(g[0]);
    mf_grads_free(g[1]);
    mf_session_free(s);
    mf_model_free(hf);
}

/* The working copy's size and the error for a checkpoint with only some momentum copies. */
static void test_state(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_momentum *mo = NULL;
    assert_int_equal(mf_momentum_create(model, true, &mo, &err), MF_OK);
    assert_true(mf_momentum_active(mo));
    size_t online = 0;
    for (size_t i = 0; i < mf_model_n_tensors(model); i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(model, i);
        if (strncmp(t->name, "visual_encoder_m.", 17) == 0 || strncmp(t->name, "text_encoder_m.", 15) == 0 ||
            strncmp(t->name, "vision_proj_m.", 14) == 0 || strncmp(t->name, "text_proj_m.", 12) == 0) {
            assert_non_null(mf_momentum_tensor(mo, i)); /* every momentum copy is in the working copy */
            online += t->nbytes / mf_dtype_size(t->dtype);
        }
    }
    assert_int_equal(mf_momentum_bytes(mo), (online + 2 * 8 * 32) * sizeof(float));
    printf("  orig-f32: %zu momentum tensors, working copy %zu bytes\n", mf_momentum_count(mo), mf_momentum_bytes(mo));
    mf_momentum_free(mo);
    /* off: queues only */
    assert_int_equal(mf_momentum_create(model, false, &mo, &err), MF_OK);
    assert_false(mf_momentum_active(mo));
    assert_int_equal(mf_momentum_queue_len(mo), 8);
    assert_int_equal(mf_momentum_queue_ptr(mo), 5);
    mf_momentum_free(mo);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_off_differs),
        cmocka_unit_test(test_without_copies),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
