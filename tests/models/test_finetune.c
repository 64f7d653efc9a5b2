/* Masked fine-tuning (src/models/train.c) and the trained-checkpoint writer (src/prune/write_values.c)
 * on the bundled tiny BLIP (original layout: decoder, queues, temp) and data/shapes:
 * - every masked weight and both its AdamW moments are exactly 0 after each of N steps, in the
 *   trainer and in what the model's forward reads (the override), and unmasked weights did move;
 * - the loss decreases over 30 fixed-seed steps (mean of the first 5 vs the last 5);
 * - the first AdamW step equals the closed form w(1 - lr wd) - lr g / (|g| + eps) (m_hat = g,
 *   v_hat = g^2), clipping scales by clip / (norm + 1e-6), the schedule's values;
 * - the written checkpoint reloads with the trained values (F32 exact, BF16 rounded), masked zeros,
 *   untrained tensors unchanged; freeing the trainer gives the model its own weights back;
 * - bad options are MF_ERR_ARG. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/annotations.h"
#include "models/grad.h"
#include "models/losses.h"
#include "models/train.h"
#include "multiflow/eval.h"
#include "prune/output.h"
#include "prune/write_values.h"

#define B 8
#define T 35

struct run {
    struct mf_model *m;
    struct mf_annotations *ann;
    struct mf_session *s;
    struct mf_losses *L;
    uint8_t **masks; /* (n_tensors) by model index, NULL = dense */
    float *images;
    int32_t ids[B * T], mask[B * T];
};

static void run_open_losses(struct run *r, const char *model, bool with_masks, const struct mf_losses_opts *lo)
{
    struct mf_err err = {0};
    memset(r, 0, sizeof *r);
    if (mf_model_load(model, NULL, &r->m, &err) != MF_OK)
        fail_msg("load %s: %s", model, err.msg);
    if (mf_annotations_load(mf_test_path("data/shapes/annotations.json"), mf_test_path("data/shapes"), &r->ann, &err))
        fail_msg("%s", err.msg);
    if (mf_session_create(r->m, 2, &r->s, &err))
        fail_msg("%s", err.msg);
    if (mf_losses_create(r->m, lo, &r->L, &err))
        fail_msg("%s", err.msg);
    const int64_t R = mf_model_get_info(r->m)->vision.image_size;
    r->images = malloc((size_t)(B * 3 * R * R) * sizeof(float));
    assert_non_null(r->images);
    size_t n = mf_model_n_tensors(r->m);
    r->masks = calloc(n, sizeof *r->masks);
    assert_non_null(r->masks);
    if (!with_masks)
        return;
    /* a fixed pseudo-random half of every prunable tensor */
    uint64_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(r->m, i);
        if (!t->prunable)
            continue;
        size_t k = t->nbytes / mf_dtype_size(t->dtype);
        r->masks[i] = malloc(k);
        assert_non_null(r->masks[i]);
        for (size_t j = 0; j < k; j++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            r->masks[i][j] = (uint8_t)((x >> 33) & 1);
        }
    }
}

static void run_open(struct run *r, const char *model, bool with_masks)
{
    struct mf_losses_opts lo = {MF_LOSS_ITC | MF_LOSS_ITM, MF_ITM_NEG_HARDEST, 7, MF_MOMENTUM_ON, 0};
    run_open_losses(r, model, with_masks, &lo);
}

static void run_close(struct run *r)
{
    for (size_t i = 0; r->masks && i < mf_model_n_tensors(r->m); i++)
        free(r->masks[i]);
    free(r->masks);
    free(r->images);
    mf_losses_free(r->L);
    mf_session_free(r->s);
    mf_annotations_free(r->ann);
    mf_model_free(r->m);
}

/* Loss of batch `bi` (consecutive pairs, wrapping) accumulated into the trainer's gradients. */
static double batch_loss(struct run *r, struct mf_trainer *tr, int64_t bi, double *d_temp)
{
    struct mf_err err = {0};
    const int64_t n_batches = r->ann->n_pairs / B;
    if (mf_pairs_batch(r->m, r->ann, (bi % n_batches) * B, B, T, r->images, r->ids, r->mask, &err))
        fail_msg("%s", err.msg);
    struct mf_loss_values v;
    if (mf_losses_batch(r->L, r->s, (uint64_t)bi, r->images, r->ids, r->mask, B, T, mf_trainer_grads(tr), &v, NULL,
                        NULL, &err))
        fail_msg("%s", err.msg);
    assert_true(isfinite(v.total));
    *d_temp = v.d_temp;
    return v.total;
}

static size_t numel(const struct mf_model_tensor *t) { return t->nbytes / mf_dtype_size(t->dtype); }

static void test_schedule(void **state)
{
    (void)state;
    struct mf_train_opts o = mf_train_opts_default();
    assert_true(fabs(o.lr - 1e-5) < 1e-12 && fabs(o.weight_decay - 0.05) < 1e-12);
    o.lr = 1.0;
    o.warmup_steps = 4;
    o.total_steps = 12;
    const double want[] = {0.25, 0.5, 0.75, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0};
    for (int t = 0; t < 13; t++)
        assert_true(fabs(mf_train_lr_at(&o, t) - want[t]) < 1e-12);
    o.warmup_steps = 0;
    assert_true(fabs(mf_train_lr_at(&o, 0) - 1.0) < 1e-12);
    assert_true(fabs(mf_train_lr_at(&o, 11) - 1.0 / 12) < 1e-12);
}

static void test_masked_zero_and_loss_decreases(void **state)
{
    (void)state;
    struct run r;
    struct mf_err err = {0};
    run_open(&r, mf_test_path("data/models/blip-tiny"), true);
    const size_t n = mf_model_n_tensors(r.m);
    float **before = calloc(n, sizeof *before);
    assert_non_null(before);
    for (size_t i = 0; i < n; i++) {
        const float *w = mf_model_weight_f32(r.m, i);
        if (w) {
            before[i] = malloc(numel(mf_model_tensor_at(r.m, i)) * sizeof(float));
            memcpy(before[i], w, numel(mf_model_tensor_at(r.m, i)) * sizeof(float));
        }
    }
    const float **own_w32 = malloc(n * sizeof *own_w32);
    for (size_t i = 0; i < n; i++)
        own_w32[i] = mf_model_weight_f32(r.m, i);

    struct mf_train_opts o = mf_train_opts_default();
    o.lr = 1e-3;
    o.total_steps = 30;
    o.warmup_steps = 3;
    o.clip_norm = 50.0;
    struct mf_trainer *tr = NULL;
    assert_int_equal(mf_trainer_create(r.m, (const uint8_t *const *)r.masks, &o, &tr, &err), MF_OK);
    mf_losses_set_temp(r.L, mf_trainer_temp(tr));
    const float *const *val = mf_trainer_values(tr);
    int64_t n_tr, n_w;
    mf_trainer_counts(tr, &n_tr, &n_w);
    printf("trained: %lld tensors, %lld weights\n", (long long)n_tr, (long long)n_w);
    assert_true(n_tr > 10);

    double loss[30];
    int clipped = 0;
    for (int st = 0; st < 30; st++) {
        double d_temp;
        loss[st] = batch_loss(&r, tr, st, &d_temp);
        struct mf_train_step_info si;
        assert_int_equal(mf_trainer_step(tr, r.s, d_temp, &si, &err), MF_OK);
        mf_losses_set_temp(r.L, mf_trainer_temp(tr));
        assert_int_equal(si.step, st + 1);
        if (si.grad_norm > o.clip_norm) {
            clipped++;
            assert_true(fabs(si.clip_scale - o.clip_norm / (si.grad_norm + 1e-6)) < 1e-12);
        } else {
            assert_true(si.clip_scale == 1.0);
        }
        /* every masked weight exactly 0 in the trained values and in what the forward reads */
        for (size_t i = 0; i < n; i++) {
            if (!r.masks[i])
                continue;
            const size_t k = numel(mf_model_tensor_at(r.m, i));
            const float *fw = mf_model_weight_f32(r.m, i);
            if (!val[i]) /* the decoder's own tensors: no ITC/ITM gradient, not trained */
                continue;
            assert_ptr_equal(fw, val[i]); /* the forward reads the trained copy */
            const float *m1, *m2;
            mf_trainer_moments(tr, i, &m1, &m2);
            assert_non_null(m1);
            for (size_t j = 0; j < k; j++)
                if (!r.masks[i][j] && (val[i][j] != 0.0f || signbit(val[i][j]) || m1[j] != 0.0f || m2[j] != 0.0f))
                    fail_msg("step %d: '%s'[%zu] = %g (moments %g, %g), masked", st + 1,
                             mf_model_tensor_at(r.m, i)->name, j, (double)val[i][j], (double)m1[j], (double)m2[j]);
        }
    }
    printf("clipped steps: %d\n", clipped);
    assert_true(clipped > 0);
    double first = 0, last = 0;
    for (int k = 0; k < 5; k++) {
        first += loss[k] / 5;
        last += loss[25 + k] / 5;
    }
    printf("mean loss: first 5 steps %.6f, last 5 %.6f\n", first, last);
    assert_true(last < 0.9 * first);

    /* unmasked weights moved; tensors the ITC/ITM towers never touch (decoder's own) did not train */
    size_t moved = 0, not_trained_prunable = 0;
    for (size_t i = 0; i < n; i++) {
        if (!val[i] || !before[i])
            continue;
        const size_t k = numel(mf_model_tensor_at(r.m, i));
        for (size_t j = 0; j < k; j++)
            moved += val[i][j] != before[i][j] && !(r.masks[i] && !r.masks[i][j]);
    }
    for (size_t i = 0; i < n; i++)
        not_trained_prunable += mf_model_tensor_at(r.m, i)->prunable && !val[i];
    printf("moved %zu of %lld weights; %zu prunable tensors not trained (decoder)\n", moved, (long long)n_w,
           not_trained_prunable);
    assert_true(moved > (size_t)n_w / 4);
    assert_true(not_trained_prunable > 0);

    /* the checkpoint: trained values, masked zeros, the rest as the input */
    const char *dir = mf_test_tmpdir();
    assert_int_equal(mf_prune_write_values(r.m, val, (const uint8_t *const *)r.masks, dir, NULL, 0, &err), MF_OK);
    assert_int_equal(mf_prune_copy_side_files(r.m, dir, &err), MF_OK);
    struct mf_model *m2 = NULL;
    if (mf_model_load(dir, NULL, &m2, &err))
        fail_msg("reload: %s", err.msg);
    assert_int_equal(mf_model_n_tensors(m2), n);
    for (size_t i = 0; i < n; i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(r.m, i), *t2 = mf_model_tensor_at(m2, i);
        assert_string_equal(t->name, t2->name);
        const uint8_t *mk = r.masks[i] ? r.masks[i] : t->tied_to >= 0 ? r.masks[t->tied_to] : NULL;
        const float *want = val[i] ? val[i]
                            : t->tied_to >= 0 && strcmp(t->role, "unused") != 0 ? val[t->tied_to] : NULL;
        float *got = malloc(numel(t2) * sizeof(float));
        mf_convert_to_f32(got, t2->data, t2->dtype, (int64_t)numel(t2));
        float *orig = malloc(numel(t) * sizeof(float));
        mf_convert_to_f32(orig, t->data, t->dtype, (int64_t)numel(t));
        for (size_t j = 0; j < numel(t); j++) {
            float w = want ? want[j] : orig[j];
            if (mk && !mk[j])
                w = 0.0f;
            if (memcmp(&got[j], &w, sizeof w) != 0)
                fail_msg("'%s'[%zu]: written %g, expected %g", t->name, j, (double)got[j], (double)w);
        }
        free(got);
        free(orig);
    }
    mf_model_free(m2);

    /* the model reads its own weights again */
    mf_trainer_free(tr);
    for (size_t i = 0; i < n; i++)
        assert_ptr_equal(mf_model_weight_f32(r.m, i), own_w32[i]);
    for (size_t i = 0; i < n; i++)
        free(before[i]);
    free(before);
    free(own_w32);
    run_close(&r);
}

/* Captioning towers (MF_TRAIN_VISION | MF_TRAIN_DECODER, the LM loss after a prompt of 3 positions):
 * every masked weight and its moments stay 0 in every trained tensor, the decoder's own prunable
 * tensors train, the text encoder's own self-attention, the ITC/ITM heads and temp do not, and the
 * loss decreases. Original layout (tied decoder) and HF captioning layout. */
static void caption_masked(const char *model)
{
    struct run r;
    struct mf_err err = {0};
    struct mf_losses_opts lo = {MF_LOSS_LM, MF_ITM_NEG_HARDEST, 0, MF_MOMENTUM_ON, 3};
    run_open_losses(&r, model, true, &lo);
    const size_t n = mf_model_n_tensors(r.m);
    struct mf_train_opts o = mf_train_opts_default();
    o.lr = 1e-3;
    o.total_steps = 20;
    o.towers = MF_TRAIN_VISION | MF_TRAIN_DECODER;
    o.schedule = MF_LR_COSINE;
    struct mf_trainer *tr = NULL;
    assert_int_equal(mf_trainer_create(r.m, (const uint8_t *const *)r.masks, &o, &tr, &err), MF_OK);
    const float *const *val = mf_trainer_values(tr);
    size_t dec_own = 0, masked_trained = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = mf_model_tensor_at(r.m, i)->name;
        if (strcmp(name, "temp") == 0 || strstr(name, "itm_head") || strstr(name, "vision_proj") ||
            strstr(name, "text_proj") || (strncmp(name, "text_encoder.", 13) == 0 && strstr(name, ".attention.")))
            assert_null(val[i]);
        dec_own += val[i] && strstr(name, "text_decoder.") && strstr(name, ".attention.self.query.weight");
        masked_trained += val[i] && r.masks[i];
    }
    printf("%s: decoder self-attention queries trained: %zu, masked tensors trained: %zu\n", model, dec_own,
           masked_trained);
    assert_true(dec_own > 0 && masked_trained > dec_own);
    double loss[20];
    for (int st = 0; st < 20; st++) {
        double d_temp;
        loss[st] = batch_loss(&r, tr, st, &d_temp);
        assert_true(d_temp == 0.0);
        struct mf_train_step_info si;
        assert_int_equal(mf_trainer_step(tr, r.s, d_temp, &si, &err), MF_OK);
        for (size_t i = 0; i < n; i++) {
            if (!r.masks[i] || !val[i])
                continue;
            const float *m1, *m2;
            mf_trainer_moments(tr, i, &m1, &m2);
            assert_ptr_equal(mf_model_weight_f32(r.m, i), val[i]);
            for (size_t j = 0; j < numel(mf_model_tensor_at(r.m, i)); j++)
                if (!r.masks[i][j] && (val[i][j] != 0.0f || signbit(val[i][j]) || m1[j] != 0.0f || m2[j] != 0.0f))
                    fail_msg("step %d: '%s'[%zu] = %g (moments %g, %g), masked", st + 1,
                             mf_model_tensor_at(r.m, i)->name, j, (double)val[i][j], (double)m1[j], (double)m2[j]);
        }
    }
    const double first = (loss[0] + loss[1] + loss[2] + loss[3] + loss[4]) / 5,
                 last = (loss[15] + loss[16] + loss[17] + loss[18] + loss[19]) / 5;
    printf("%s: captioning loss, first 5 steps %.6f, last 5 %.6f\n", model, first, last);
    assert_true(last < 0.95 * first);
    mf_trainer_free(tr);
    run_close(&r);
}

static void test_caption_masked(void **state)
{
    (void)state;
    caption_masked(mf_test_path("data/models/blip-tiny"));
    caption_masked(mf_test_path("tests/golden/blip/hf-cap-f32"));
}

/* Step 1 of AdamW: m_hat = g, v_hat = g^2, so w1 = w0 (1 - lr wd) - lr g / (|g| + eps). */
static void test_first_step_closed_form(void **state)
{
    (void)state;
    struct run r;
    struct mf_err err = {0};
    run_open(&r, mf_test_path("data/models/blip-tiny-hf"), false);
    struct mf_train_opts o = mf_train_opts_default();
    o.lr = 1e-2;
    o.weight_decay = 0.1;
    o.eps = 1e-3; /* large, so g / (|g| + eps) is not just the sign */
    o.total_steps = 1;
    struct mf_trainer *tr = NULL;
    assert_int_equal(mf_trainer_create(r.m, NULL, &o, &tr, &err), MF_OK);
    double d_temp;
    batch_loss(&r, tr, 0, &d_temp);
    const size_t n = mf_model_n_tensors(r.m);
    const float *const *val = mf_trainer_values(tr);
    float **w0 = calloc(n, sizeof *w0), **g0 = calloc(n, sizeof *g0);
    for (size_t i = 0; i < n; i++) {
        if (!val[i] || strcmp(mf_model_tensor_at(r.m, i)->name, "temp") == 0)
            continue;
        size_t k = numel(mf_model_tensor_at(r.m, i));
        w0[i] = malloc(k * sizeof(float));
        g0[i] = malloc(k * sizeof(float));
        memcpy(w0[i], val[i], k * sizeof(float));
        memcpy(g0[i], mf_grads_tensor(mf_trainer_grads(tr), i), k * sizeof(float));
    }
    struct mf_train_step_info si;
    assert_int_equal(mf_trainer_step(tr, r.s, d_temp, &si, &err), MF_OK);
    double worst = 0;
    size_t checked = 0;
    for (size_t i = 0; i < n; i++) {
        if (!w0[i])
            continue;
        size_t k = numel(mf_model_tensor_at(r.m, i));
        for (size_t j = 0; j < k; j++) {
            double g = g0[i][j], want = w0[i][j] * (1 - 1e-2 * 0.1) - 1e-2 * g / (fabs(g) + 1e-3);
            /* relative to the step's scale: w0 and the update (<= lr) cancel to small values */
            double d = fabs(val[i][j] - want) / fmax(fabs(w0[i][j]), 1e-2);
            worst = fmax(worst, d);
            checked++;
        }
        /* the gradient block is zeroed for the next step */
        for (size_t j = 0; j < k; j++)
            assert_true(mf_grads_tensor(mf_trainer_grads(tr), i)[j] == 0.0f);
        free(w0[i]);
        free(g0[i]);
    }
    printf("first AdamW step: %zu weights, max rel diff %.3g\n", checked, worst);
    assert_true(checked > 1000);
    assert_true(worst < 1e-5);
    free(w0);
    free(g0);
    mf_trainer_free(tr);
    run_close(&r);
}

/* A BF16 checkpoint: the trained values come back rounded to BF16, masked zeros exact. */
static void test_bf16_write(void **state)
{
    (void)state;
    struct run r;
    struct mf_err err = {0};
    run_open(&r, mf_test_path("tests/golden/blip/orig-bf16"), true);
    struct mf_train_opts o = mf_train_opts_default();
    o.lr = 1e-3;
    o.total_steps = 2;
    struct mf_trainer *tr = NULL;
    assert_int_equal(mf_trainer_create(r.m, (const uint8_t *const *)r.masks, &o, &tr, &err), MF_OK);
    const int64_t n_pairs = r.ann->n_pairs;
    r.ann->n_pairs = B; /* the fixture's batch */
    for (int st = 0; st < 2; st++) {
        double d_temp;
        batch_loss(&r, tr, 0, &d_temp);
        assert_int_equal(mf_trainer_step(tr, r.s, d_temp, NULL, &err), MF_OK);
    }
    r.ann->n_pairs = n_pairs;
    const char *dir = mf_test_tmpdir();
    const float *const *val = mf_trainer_values(tr);
    assert_int_equal(mf_prune_write_values(r.m, val, (const uint8_t *const *)r.masks, dir, NULL, 0, &err), MF_OK);
    assert_int_equal(mf_prune_copy_side_files(r.m, dir, &err), MF_OK);
    struct mf_model *m2 = NULL;
    if (mf_model_load(dir, NULL, &m2, &err))
        fail_msg("reload: %s", err.msg);
    size_t checked = 0;
    for (size_t i = 0; i < mf_model_n_tensors(r.m); i++) {
        const struct mf_model_tensor *t2 = mf_model_tensor_at(m2, i);
        if (!val[i])
            continue;
        assert_int_equal(t2->dtype, mf_model_tensor_at(r.m, i)->dtype);
        for (size_t j = 0; j < numel(t2); j++) {
            uint16_t h;
            memcpy(&h, (const uint8_t *)t2->data + 2 * j, 2);
            uint16_t want = (r.masks[i] && !r.masks[i][j]) ? 0 : mf_f32_to_bf16(val[i][j]);
            if (h != want)
                fail_msg("'%s'[%zu]: bf16 %04x, expected %04x", t2->name, j, h, want);
            checked++;
        }
    }
    assert_true(checked > 1000);
    mf_model_free(m2);
    mf_trainer_free(tr);
    run_close(&r);
}

static void test_errors(void **state)
{
    (void)state;
    struct run r;
    struct mf_err err = {0};
    run_open(&r, mf_test_path("data/models/blip-tiny-hf"), false);
    struct mf_trainer *tr = NULL;
    struct mf_train_opts o = mf_train_opts_default();
    o.total_steps = 0;
    assert_int_equal(mf_trainer_create(r.m, NULL, &o, &tr, &err), MF_ERR_ARG);
    printf("%s\n", err.msg);
    assert_null(tr);
    o = mf_train_opts_default();
    o.warmup_steps = 5;
    o.total_steps = 4;
    assert_int_equal(mf_trainer_create(r.m, NULL, &o, &tr, &err), MF_ERR_ARG);
    o = mf_train_opts_default();
    o.beta2 = 1.0;
    assert_int_equal(mf_trainer_create(r.m, NULL, &o, &tr, &err), MF_ERR_ARG);
    o = mf_train_opts_default();
    o.lr = NAN;
    assert_int_equal(mf_trainer_create(r.m, NULL, &o, &tr, &err), MF_ERR_ARG);
    /* a non-finite gradient is refused and leaves the weights alone */
    o = mf_train_opts_default();
    assert_int_equal(mf_trainer_create(r.m, NULL, &o, &tr, &err), MF_OK);
    const float *const *val = mf_trainer_values(tr);
    size_t i0 = 0;
    while (!val[i0] || !mf_grads_tensor(mf_trainer_grads(tr), i0))
        i0++;
    const float before = val[i0][0];
    mf_grads_tensor(mf_trainer_grads(tr), i0)[0] = NAN;
    assert_int_equal(mf_trainer_step(tr, r.s, 0.0, NULL, &err), MF_ERR_NUMERIC);
    printf("%s\n", err.msg);
    assert_true(val[i0][0] == before);
    mf_trainer_free(tr);
    run_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_masked_zero_and_loss_decreases),
        cmocka_unit_test(test_caption_masked),
        cmocka_unit_test(test_first_step_closed_form),
        cmocka_unit_test(test_bf16_write),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
