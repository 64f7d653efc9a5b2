/* BLIP VQA (src/models/vqa.c) against the PyTorch goldens of tests/golden/gen_vqa.py on the tiny
 * original-layout fixture and the HF BlipForQuestionAnswering fixture: question cleaning (both styles), question and answer tokenisation,
 * rank_answer (chosen answer, top-k order and candidate losses for a small k and k = 10), the training
 * loss with answer weights and the gradient of every trainable tensor; plus error paths. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/grad.h"
#include "models/train.h"
#include "models/vqa.h"
#include "multiflow/safetensors.h"

#define TOL_LOSS 1e-4
#define TOL_GRAD 1e-3
#define TOL_ZERO 1e-6

struct fx {
    struct mf_model *m;
    struct mf_session *s; /* 2 threads */
    struct mf_safetensors *g;
    json_t *questions, *answers;
    struct mf_vqa_answers A;
};

static const void *tensor(const struct fx *f, const char *name, int dt, int64_t n)
{
    return mf_test_st_tensor(f->g, name, dt, n);
}

/* orig-f32: BLIP_Pretrain layout (decoder tied to the encoder as stored); hf-vqa-f32: HF
 * BlipForQuestionAnswering layout (untied answer decoder). */
static const char *const fixtures[] = {"orig-f32", "hf-vqa-f32"};
/* test_<t>: run_<t> on every fixture */
#define FIXTURE_TEST(t)                                                                                         \
    static void test_##t(void **state)                                                                          \
    {                                                                                                           \
        (void)state;                                                                                            \
        for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++)                                         \
            run_##t(fixtures[i]);                                                                               \
    }

static void fx_open(struct fx *f, const char *name)
{
    struct mf_err err = {0};
    char path[256];
    memset(f, 0, sizeof *f);
    snprintf(path, sizeof path, "tests/golden/blip/%s", name);
    if (mf_model_load(mf_test_path(path), NULL, &f->m, &err) || mf_session_create(f->m, 2, &f->s, &err))
        fail_msg("%s", err.msg);
    printf("  %s\n", name);
    snprintf(path, sizeof path, "tests/golden/vqa/%s.vqa.safetensors", name);
    if (mf_safetensors_open(mf_test_path(path), &f->g, &err))
        fail_msg("%s", err.msg);
    f->questions = json_loads(mf_safetensors_meta(f->g, "questions"), 0, NULL);
    f->answers = json_loads(mf_safetensors_meta(f->g, "answers"), 0, NULL);
    assert_non_null(f->questions);
    assert_non_null(f->answers);
    const size_t n = json_array_size(f->answers);
    const char **list = calloc(n, sizeof *list);
    for (size_t i = 0; i < n; i++)
        list[i] = json_string_value(json_array_get(f->answers, i));
    if (mf_vqa_answers_tokenize(f->m, list, (int64_t)n, &f->A, &err))
        fail_msg("%s", err.msg);
    free(list);
}

static void fx_close(struct fx *f)
{
    mf_vqa_answers_free(&f->A);
    json_decref(f->questions);
    json_decref(f->answers);
    mf_safetensors_close(f->g);
    mf_session_free(f->s);
    mf_model_free(f->m);
}

static void run_pre_question(const char *name)
{
    struct fx f;
    fx_open(&f, name);
    json_t *cases = json_loads(mf_safetensors_meta(f.g, "pre_question"), 0, NULL);
    assert_non_null(cases);
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *in = json_string_value(json_array_get(c, 0));
        char out[256];
        struct mf_err err = {0};
        for (int s = 0; s < 2; s++) {
            assert_int_equal(mf_pre_question(in, s ? MF_QUESTION_BLIP : MF_QUESTION_MULTIFLOW, 50, out, sizeof out,
                                             &err),
                             MF_OK);
            assert_string_equal(out, json_string_value(json_array_get(c, 1 + s)));
        }
    }
    json_decref(cases);
    /* truncation counts the empty words between repeated spaces, as Python's split(' ') */
    char out[64];
    struct mf_err err = {0};
    assert_int_equal(mf_pre_question("A  b c d", MF_QUESTION_MULTIFLOW, 3, out, sizeof out, &err), MF_OK);
    assert_string_equal(out, "a  b");
    assert_int_equal(mf_pre_question("?!'", MF_QUESTION_MULTIFLOW, 50, out, sizeof out, &err), MF_ERR_FORMAT);
    assert_int_equal(mf_pre_question("what is this", MF_QUESTION_MULTIFLOW, 50, out, 4, &err), MF_ERR_RANGE);
    enum mf_question_style st;
    assert_int_equal(mf_question_style_parse("blip", &st, &err), MF_OK);
    assert_int_equal(st, MF_QUESTION_BLIP);
    assert_int_equal(mf_question_style_parse("albef", &st, &err), MF_ERR_ARG);
    fx_close(&f);
}

FIXTURE_TEST(pre_question)

static void run_tokenize(const char *name)
{
    struct fx f;
    fx_open(&f, name);
    const struct mf_st_entry *qe = mf_safetensors_find(f.g, "q_ids");
    const int64_t Q = qe->shape[0], Lmax = qe->shape[1];
    const int32_t *q_ids = qe->data, *q_len = tensor(&f, "q_len", MF_DTYPE_I32, Q);
    for (int64_t q = 0; q < Q; q++) {
        int32_t ids[MF_VQA_QUESTION_TOKENS];
        int64_t L = 0;
        struct mf_err err = {0};
        const char *text = json_string_value(json_array_get(f.questions, (size_t)q));
        if (mf_vqa_tokenize_question(f.m, text, MF_QUESTION_MULTIFLOW, ids, &L, &err))
            fail_msg("%s", err.msg);
        assert_int_equal(L, q_len[q]);
        assert_memory_equal(ids, q_ids + q * Lmax, (size_t)L * sizeof *ids);
    }
    const struct mf_st_entry *ae = mf_safetensors_find(f.g, "ans_ids");
    assert_int_equal(f.A.n, ae->shape[0]);
    assert_int_equal(f.A.L, ae->shape[1]);
    assert_memory_equal(f.A.ids, ae->data, (size_t)(f.A.n * f.A.L) * sizeof(int32_t));
    assert_memory_equal(f.A.mask, tensor(&f, "ans_mask", MF_DTYPE_I32, f.A.n * f.A.L),
                        (size_t)(f.A.n * f.A.L) * sizeof(int32_t));
    fx_close(&f);
}

FIXTURE_TEST(tokenize)

static void run_rank(const char *name)
{
    struct fx f;
    fx_open(&f, name);
    struct mf_err err = {0};
    struct mf_session *s = f.s;
    const struct mf_st_entry *qe = mf_safetensors_find(f.g, "q_ids");
    const int64_t Q = qe->shape[0], Lmax = qe->shape[1];
    const int32_t *q_len = tensor(&f, "q_len", MF_DTYPE_I32, Q), *q_image = tensor(&f, "q_image", MF_DTYPE_I32, Q);
    const struct mf_model_info *info = mf_model_get_info(f.m);
    const int64_t R = info->vision.image_size, N = info->vision.n_tok, dv = info->vision.d;
    const float *images = tensor(&f, "images", MF_DTYPE_F32, -1);
    float *emb = malloc((size_t)(N * dv) * sizeof *emb);
    double *loss = malloc((size_t)f.A.n * sizeof *loss);
    const char *tags[2] = {"small", "all"};
    for (int ki = 0; ki < 2; ki++) {
        char name[64];
        snprintf(name, sizeof name, "rank.%s.k", tags[ki]);
        const int64_t k = *(const int32_t *)tensor(&f, name, MF_DTYPE_I32, 1);
        snprintf(name, sizeof name, "rank.%s.best", tags[ki]);
        const int32_t *best = tensor(&f, name, MF_DTYPE_I32, Q);
        snprintf(name, sizeof name, "rank.%s.order", tags[ki]);
        const int32_t *order = tensor(&f, name, MF_DTYPE_I32, Q * k);
        snprintf(name, sizeof name, "rank.%s.loss", tags[ki]);
        const float *want = tensor(&f, name, MF_DTYPE_F32, Q * k);
        for (int64_t q = 0; q < Q; q++) {
            if (mf_encode_images(s, images + q_image[q] * 3 * R * R, 1, emb, NULL, &err))
                fail_msg("%s", err.msg);
            int64_t got = -1;
            if (mf_vqa_rank(s, emb, (const int32_t *)qe->data + q * Lmax, q_len[q], &f.A, k, &got, loss, &err))
                fail_msg("%s", err.msg);
            assert_int_equal(got, best[q]);
            int64_t in_top = 0;
            for (int64_t i = 0; i < f.A.n; i++)
                in_top += isfinite(loss[i]);
            assert_int_equal(in_top, k);
            for (int64_t j = 0; j < k; j++) {
                double g = loss[order[q * k + j]], w = want[q * k + j];
                if (!(fabs(g - w) <= TOL_LOSS * fmax(1.0, fabs(w))))
                    fail_msg("k %lld question %lld candidate %lld: loss %.9g, want %.9g", (long long)k, (long long)q,
                             (long long)j, g, w);
            }
        }
    }
    /* the questions of one length ranked together (mf_vqa_rank_batch): each as alone */
    {
        const int64_t k = *(const int32_t *)tensor(&f, "rank.all.k", MF_DTYPE_I32, 1);
        const int32_t *best = tensor(&f, "rank.all.best", MF_DTYPE_I32, Q);
        const float *want = tensor(&f, "rank.all.loss", MF_DTYPE_F32, Q * k);
        const int32_t *order = tensor(&f, "rank.all.order", MF_DTYPE_I32, Q * k);
        int64_t sel[4], ns = 0;
        for (int64_t q = 0; q < Q && ns < 4; q++)
            for (int64_t p = 0; p < q; p++)
                if (q_len[p] == q_len[q] && ns == 0) {
                    sel[ns++] = p;
                    sel[ns++] = q;
                }
        assert_int_equal(ns, 2); /* the fixture has two questions of one length */
        float *embs = malloc((size_t)(2 * N * dv) * sizeof *embs);
        int32_t *ids = malloc((size_t)(2 * q_len[sel[0]]) * sizeof *ids);
        double *l2 = malloc((size_t)(2 * f.A.n) * sizeof *l2);
        int64_t got2[2];
        for (int t = 0; t < 2; t++) {
            assert_int_equal(mf_encode_images(s, images + q_image[sel[t]] * 3 * R * R, 1, embs + t * N * dv, NULL, &err),
                             MF_OK);
            memcpy(ids + t * q_len[sel[0]], (const int32_t *)qe->data + sel[t] * Lmax, (size_t)q_len[sel[0]] * sizeof *ids);
        }
        if (mf_vqa_rank_batch(s, embs, ids, 2, q_len[sel[0]], &f.A, k, got2, l2, &err))
            fail_msg("%s", err.msg);
        for (int t = 0; t < 2; t++) {
            assert_int_equal(got2[t], best[sel[t]]);
            for (int64_t j = 0; j < k; j++) {
                double g = l2[t * f.A.n + order[sel[t] * k + j]], w = want[sel[t] * k + j];
                if (!(fabs(g - w) <= TOL_LOSS * fmax(1.0, fabs(w))))
                    fail_msg("batch: question %lld candidate %lld: loss %.9g, want %.9g", (long long)sel[t],
                             (long long)j, g, w);
            }
        }
        free(embs);
        free(ids);
        free(l2);
    }
    /* k larger than the list: every answer is a candidate (k = min(k_test, #answers)) */
    int64_t got = -1;
    assert_int_equal(mf_encode_images(s, images, 1, emb, NULL, &err), MF_OK);
    assert_int_equal(mf_vqa_rank(s, emb, qe->data, q_len[0], &f.A, 128, &got, loss, &err), MF_OK);
    assert_int_equal(got, ((const int32_t *)tensor(&f, "rank.all.best", MF_DTYPE_I32, Q))[0]);
    assert_int_equal(mf_vqa_rank(s, emb, qe->data, q_len[0], &f.A, 0, &got, loss, &err), MF_ERR_ARG);
    free(emb);
    free(loss);
    fx_close(&f);
}

FIXTURE_TEST(rank)

/* The golden training batch: B questions with their distinct answers and weights. */
struct batch {
    int64_t B;
    struct mf_vqa_item items[8];
    struct mf_vqa_answers ans[8];
    double w[64];
};

static void batch_open(struct fx *fp, struct batch *bt)
{
    struct fx f = *fp;
    struct mf_vqa_item *items = bt->items;
    struct mf_vqa_answers *ans = bt->ans;
    double *w = bt->w;
    const struct mf_st_entry *qe = mf_safetensors_find(f.g, "q_ids");
    const int64_t Q = qe->shape[0], Lmax = qe->shape[1];
    const int32_t *q_len = tensor(&f, "q_len", MF_DTYPE_I32, Q), *q_image = tensor(&f, "q_image", MF_DTYPE_I32, Q);
    const struct mf_st_entry *te = mf_safetensors_find(f.g, "train.q");
    const int64_t B = te->shape[0];
    const int32_t *tq = te->data, *tn = tensor(&f, "train.n", MF_DTYPE_I32, B);
    const int32_t *ta = tensor(&f, "train.ans", MF_DTYPE_I32, -1);
    const float *tw = tensor(&f, "train.w", MF_DTYPE_F32, -1);
    const int64_t R = mf_model_get_info(f.m)->vision.image_size;
    const float *images = tensor(&f, "images", MF_DTYPE_F32, -1);
    int64_t off = 0;
    assert_true(B <= 8);
    for (int64_t b = 0; b < B; b++) {
        const int64_t n = tn[b], La = f.A.L;
        ans[b] = (struct mf_vqa_answers){n, La, malloc((size_t)(n * La) * sizeof(int32_t)),
                                         malloc((size_t)(n * La) * sizeof(int32_t))};
        for (int64_t r = 0; r < n; r++) {
            memcpy(ans[b].ids + r * La, f.A.ids + ta[off + r] * La, (size_t)La * sizeof(int32_t));
            memcpy(ans[b].mask + r * La, f.A.mask + ta[off + r] * La, (size_t)La * sizeof(int32_t));
            w[off + r] = tw[off + r];
        }
        items[b] = (struct mf_vqa_item){images + q_image[tq[b]] * 3 * R * R, (const int32_t *)qe->data + tq[b] * Lmax,
                                        q_len[tq[b]], &ans[b], w + off};
        off += n;
    }
    bt->B = B;
}

static void batch_close(struct batch *bt)
{
    for (int64_t b = 0; b < bt->B; b++)
        mf_vqa_answers_free(&bt->ans[b]);
}

static void run_loss_and_gradients(const char *name)
{
    struct fx f;
    fx_open(&f, name);
    struct mf_err err = {0};
    struct mf_session *s = f.s;
    struct mf_grads *g = NULL;
    assert_int_equal(mf_grads_create(f.m, &g, &err), MF_OK);
    mf_grads_zero(g);
    struct batch bt;
    batch_open(&f, &bt);
    const int64_t B = bt.B;
    struct mf_vqa_item *items = bt.items;
    double loss = 0, loss_nog = 0;
    if (mf_vqa_loss(s, items, B, g, &loss, &err) || mf_vqa_loss(s, items, B, NULL, &loss_nog, &err))
        fail_msg("%s", err.msg);
    const double want = *(const float *)tensor(&f, "train.loss", MF_DTYPE_F32, 1);
    printf("    VQA loss %.9g, want %.9g\n", loss, want);
    assert_true(fabs(loss - want) <= TOL_LOSS * fabs(want));
    assert_true(loss == loss_nog);
    /* every gradient against autograd: relative per tensor, absolute floor for zero gradients */
    double gmax = 0, worst = 0;
    for (size_t e = 0; e < mf_safetensors_count(f.g); e++) {
        const struct mf_st_entry *r = mf_safetensors_at(f.g, e);
        if (mf_model_find(f.m, r->name) < 0 || strcmp(r->name, "temp") == 0)
            continue;
        for (size_t i = 0; i < r->nbytes / 4; i++)
            gmax = fmax(gmax, fabs(((const float *)r->data)[i]));
    }
    int checked = 0;
    for (size_t e = 0; e < mf_safetensors_count(f.g); e++) {
        const struct mf_st_entry *r = mf_safetensors_at(f.g, e);
        int idx = mf_model_find(f.m, r->name);
        if (idx < 0 || strcmp(r->name, "temp") == 0)
            continue;
        const float *got = mf_grads_tensor(g, (size_t)idx), *wv = r->data;
        double dmax = 0, wmax = 0;
        for (size_t i = 0; i < r->nbytes / 4; i++) {
            dmax = fmax(dmax, fabs((got ? got[i] : 0.0) - wv[i]));
            wmax = fmax(wmax, fabs(wv[i]));
        }
        if (!(dmax <= TOL_GRAD * wmax || dmax <= TOL_ZERO * gmax))
            fail_msg("gradient of '%s': max |diff| %.3g, max |want| %.3g", r->name, dmax, wmax);
        if (wmax > 1e-3 * gmax)
            worst = fmax(worst, dmax / wmax);
        checked++;
    }
    printf("    %d tensors, worst relative difference %.3g\n", checked, worst);
    assert_true(checked > 50);
    batch_close(&bt);
    mf_grads_free(g);
    fx_close(&f);
}

FIXTURE_TEST(loss_and_gradients)

/* Masked fine-tuning with the VQA loss: every prunable tensor of the towers VQA trains (vision,
 * text encoder, decoder self-attention) gets a random half mask; after 3 AdamW steps every masked
 * weight and both its moments are exactly 0, the unmasked weights moved, the decoder's own tensors
 * and the LM head trained, the ITC/ITM heads did not, and the loss went down. */
static void run_masked_training(const char *name)
{
    struct fx f;
    fx_open(&f, name);
    struct mf_err err = {0};
    struct mf_session *s = f.s;
    const size_t nt = mf_model_n_tensors(f.m);
    uint8_t **mk = calloc(nt, sizeof *mk);
    float **w0s = calloc(nt, sizeof *w0s); /* weights before training (the trainer re-points the model) */
    uint64_t x = 88172645463325252ull;
    size_t n_masked_tensors = 0;
    for (size_t i = 0; i < nt; i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(f.m, i);
        if (!t->prunable)
            continue;
        size_t n = 1;
        for (int d = 0; d < t->ndim; d++)
            n *= (size_t)t->shape[d];
        mk[i] = malloc(n);
        w0s[i] = malloc(n * sizeof(float));
        memcpy(w0s[i], mf_model_weight_f32(f.m, i), n * sizeof(float));
        for (size_t j = 0; j < n; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            mk[i][j] = (uint8_t)(x >> 63);
        }
        n_masked_tensors++;
    }
    assert_true(n_masked_tensors > 10);
    struct mf_train_opts o = mf_train_opts_default();
    o.lr = 1e-3;
    o.total_steps = 3;
    o.schedule = MF_LR_COSINE;
    o.towers = MF_TRAIN_VISION | MF_TRAIN_TEXT | MF_TRAIN_DECODER;
    struct mf_trainer *tr = NULL;
    assert_int_equal(mf_trainer_create(f.m, (const uint8_t *const *)mk, &o, &tr, &err), MF_OK);
    struct batch bt;
    batch_open(&f, &bt);
    double l0 = 0, l = 0;
    for (int st = 0; st < 3; st++) {
        struct mf_train_step_info si;
        if (mf_vqa_loss(s, bt.items, bt.B, mf_trainer_grads(tr), st ? &l : &l0, &err) ||
            mf_trainer_step(tr, s, 0, &si, &err))
            fail_msg("%s", err.msg);
    }
    assert_int_equal(mf_vqa_loss(s, bt.items, bt.B, NULL, &l, &err), MF_OK);
    printf("    masked VQA training: loss %.6f -> %.6f\n", l0, l);
    assert_true(l < l0);
    const float *const *val = mf_trainer_values(tr);
    size_t checked = 0;
    for (size_t i = 0; i < nt; i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(f.m, i);
        if (strstr(t->name, "text_decoder.bert.encoder.layer.0.attention.self.query.weight") ||
            strstr(t->name, "text_decoder.cls.predictions.transform.dense.weight"))
            assert_non_null(val[i]); /* the decoder's own tensors and the LM head train */
        if (strncmp(t->name, "vision_proj", 11) == 0 || strncmp(t->name, "itm_head", 8) == 0)
            assert_null(val[i]); /* not part of BLIP_VQA */
        if (!mk[i] || !val[i])
            continue;
        const float *m1, *m2;
        mf_trainer_moments(tr, i, &m1, &m2);
        const float *w0 = w0s[i];
        size_t n = 1, moved = 0;
        for (int d = 0; d < t->ndim; d++)
            n *= (size_t)t->shape[d];
        for (size_t j = 0; j < n; j++) {
            if (!mk[i][j]) {
                if (val[i][j] != 0.0f || m1[j] != 0.0f || m2[j] != 0.0f)
                    fail_msg("%s[%zu]: masked but w %g m %g v %g", t->name, j, val[i][j], m1[j], m2[j]);
            } else {
                moved += val[i][j] != w0[j];
            }
        }
        assert_true(moved > 0);
        checked++;
    }
    printf("    %zu masked tensors checked\n", checked);
    assert_true(checked > 10);
    batch_close(&bt);
    mf_trainer_free(tr);
    for (size_t i = 0; i < nt; i++) {
        free(mk[i]);
        free(w0s[i]);
    }
    free(mk);
    free(w0s);
    fx_close(&f);
}

FIXTURE_TEST(masked_training)

static void test_errors(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, "orig-f32");
    struct mf_err err = {0};
    struct mf_vqa_answers A;
    const char *empty[] = {""};
    assert_int_equal(mf_vqa_answers_tokenize(f.m, empty, 1, &A, &err), MF_ERR_FORMAT);
    assert_int_equal(mf_vqa_answers_tokenize(f.m, empty, 0, &A, &err), MF_ERR_ARG);
    int32_t ids[MF_VQA_QUESTION_TOKENS];
    int64_t L;
    assert_int_equal(mf_vqa_tokenize_question(f.m, "???", MF_QUESTION_MULTIFLOW, ids, &L, &err), MF_ERR_FORMAT);
    /* a checkpoint without a decoder is no VQA model */
    struct mf_model *itm = NULL;
    assert_int_equal(mf_model_load(mf_test_path("tests/golden/blip/hf-itm-f32"), NULL, &itm, &err), MF_OK);
    assert_int_equal(mf_vqa_tokenize_question(itm, "what", MF_QUESTION_MULTIFLOW, ids, &L, &err), MF_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "decoder"));
    mf_model_free(itm);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pre_question),
        cmocka_unit_test(test_tokenize),
        cmocka_unit_test(test_rank),
        cmocka_unit_test(test_loss_and_gradients),
        cmocka_unit_test(test_masked_training),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
