/*
 * tests/prune/test_gradient_stream.c: the calibration gradient stream (prune/gradient.c) and the
 * weight override it uses (mf_model_rebind, models/train.h) on the bundled tiny BLIP:
 * an override equal to the model's weights gives the same bits; zeroing one prunable tensor
 * through the override changes the loss and the gradients (forward and backward read it) and
 * leaves the model untouched; the stream continues, cycles and rewinds.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/annotations.h"
#include "models/model_impl.h"
#include "prune/gradient.h"
#include "testutil.h"

static void test_override(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_session *s = NULL;
    struct mf_annotations *ann = NULL;
    struct mf_grad_stream *gs = NULL;
    if (mf_model_load(mf_test_path("data/models/blip-tiny"), NULL, &m, &err) ||
        mf_annotations_load(mf_test_path("data/shapes/annotations.json"), mf_test_path("data/shapes"), &ann, &err) ||
        mf_annotations_truncate(ann, 8, &err) || mf_session_create(m, 2, &s, &err))
        fail_msg("%s", err.msg);
    struct mf_grad_stream_opts o = {{0, MF_ITM_NEG_HARDEST, 0, MF_MOMENTUM_ON}, 4, 24, NULL};
    if (mf_grad_stream_create(s, ann, &o, &gs, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(mf_grad_stream_batches(gs), 2);

    const size_t nt = mf_model_n_tensors(m);
    size_t n_pr = 0, total = 0;
    for (size_t i = 0; i < nt; i++)
        if (mf_model_tensor_at(m, i)->prunable) {
            const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
            total += (size_t)(t->shape[0] * t->shape[1]);
            n_pr++;
        }
    assert_true(n_pr > 0);
    float *g0 = mf_malloc(total * sizeof(float)), *copy = mf_malloc(total * sizeof(float));
    const float **ovr = mf_calloc(nt, sizeof *ovr);
    assert_true(g0 && copy && ovr);

    struct mf_loss_values v0, v1, v2;
    if (mf_grad_stream_mean(gs, NULL, 0, &v0, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(mf_grad_stream_position(gs), 2);
    size_t off = 0;
    for (size_t i = 0; i < nt; i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        if (!t->prunable)
            continue;
        size_t n = (size_t)(t->shape[0] * t->shape[1]);
        memcpy(g0 + off, mf_grads_tensor(mf_grad_stream_grads(gs), i), n * sizeof(float));
        memcpy(copy + off, mf_model_weight_f32(m, i), n * sizeof(float));
        ovr[i] = copy + off;
        off += n;
    }
    /* identical values through the override: identical bits (the rewind also restores blip-tiny's
     * momentum encoders and queues, which the first pass advanced) */
    mf_grad_stream_rewind(gs);
    if (mf_grad_stream_mean(gs, ovr, 0, &v1, &err))
        fail_msg("%s", err.msg);
    assert_true(v1.total == v0.total);
    off = 0;
    for (size_t i = 0; i < nt; i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        if (!t->prunable)
            continue;
        size_t n = (size_t)(t->shape[0] * t->shape[1]);
        assert_memory_equal(g0 + off, mf_grads_tensor(mf_grad_stream_grads(gs), i), n * sizeof(float));
        off += n;
    }
    /* zero the first prunable tensor through the override: loss and gradients change, model does not */
    size_t first = 0;
    while (!mf_model_tensor_at(m, first)->prunable)
        first++;
    const struct mf_model_tensor *t0 = mf_model_tensor_at(m, first);
    const float *w_before = mf_model_weight_f32(m, first);
    const size_t n0 = (size_t)(t0->shape[0] * t0->shape[1]);
    memset((float *)ovr[first], 0, n0 * sizeof(float));
    mf_grad_stream_rewind(gs);
    if (mf_grad_stream_mean(gs, ovr, 0, &v2, &err))
        fail_msg("%s", err.msg);
    printf("loss %.6f, with '%s' zeroed %.6f\n", v0.total, t0->name, v2.total);
    assert_true(v2.total != v0.total);
    size_t changed = 0;
    off = 0;
    for (size_t i = 0; i < nt; i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        if (!t->prunable)
            continue;
        size_t n = (size_t)(t->shape[0] * t->shape[1]);
        changed += memcmp(g0 + off, mf_grads_tensor(mf_grad_stream_grads(gs), i), n * sizeof(float)) != 0;
        off += n;
    }
    assert_true(changed > 1);
    bool model_intact = false;
    for (size_t j = 0; j < n0; j++)
        model_intact |= mf_model_weight_f32(m, first)[j] != 0;
    assert_true(model_intact);
    assert_ptr_equal(mf_model_weight_f32(m, first), w_before); /* the model's own pointers restored */

    /* the stream cycles: 3 batches from position 0 run batches 0, 1, 0 */
    mf_grad_stream_rewind(gs);
    if (mf_grad_stream_mean(gs, NULL, 3, NULL, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(mf_grad_stream_position(gs), 3);

    /* ITM with a trailing single-pair batch is refused with a clear message */
    struct mf_grad_stream *bad = NULL;
    struct mf_grad_stream_opts o3 = {{0, MF_ITM_NEG_HARDEST, 0, MF_MOMENTUM_ON}, 7, 24, NULL};
    assert_int_equal(mf_grad_stream_create(s, ann, &o3, &bad, &err), MF_ERR_ARG);
    assert_non_null(strstr(err.msg, "last batch has 1 pair"));

    mf_free(g0);
    mf_free(copy);
    mf_free(ovr);
    mf_grad_stream_free(gs);
    mf_session_free(s);
    mf_annotations_free(ann);
    mf_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_override)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
