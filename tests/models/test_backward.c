/* The model-level backward pass (models/grad.h) against torch autograd (tests/golden/gen_backward.py):
 * on the tiny orig-f32, hf-itm-f32 and hf-cap-f32 fixtures, J = sum(R_img * image_embeds) +
 * sum(R_txt * text_hidden) + sum(R_mm * mm_hidden) + sum(R_dec * dec_logits) + sum(R_fi * img_feat) +
 * sum(R_ft * txt_feat) + sum(R_itm * itm_logits); the C gradient of EVERY parameter tensor must match
 * within 1e-3 of max |ref| per tensor (printed). Also: the training forwards give the inference
 * forwards' bits, tied copies have no gradient of their own (their owner receives the sum), and the
 * result does not depend on the thread count at all (bit for bit). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/grad.h"
#include "multiflow/safetensors.h"

#define TOL 1e-3   /* per tensor max |diff| / max |ref|, storage rounding included (the brief's) */
#define TOL_C 1e-4 /* the same beyond the F16 storage rounding (measured with F32 goldens: <= 2e-6) */

static const float *gf(const struct mf_safetensors *g, const char *name)
{
    const struct mf_st_entry *e = mf_safetensors_find(g, name);
    if (!e)
        fail_msg("golden tensor '%s' missing", name);
    assert_int_equal(e->dtype, MF_DTYPE_F32);
    return e->data;
}

/* One F32 value; scales follow F16 data in the file, so they may be only 2-byte aligned. */
static float scalar(const struct mf_safetensors *g, const char *name)
{
    const struct mf_st_entry *e = mf_safetensors_find(g, name);
    if (!e)
        fail_msg("golden tensor '%s' missing", name);
    assert_int_equal(e->dtype, MF_DTYPE_F32);
    float v;
    memcpy(&v, e->data, sizeof v);
    return v;
}

static float *dup(const float *x, int64_t n)
{
    float *y = malloc((size_t)n * sizeof(float));
    assert_non_null(y);
    memcpy(y, x, (size_t)n * sizeof(float));
    return y;
}

static float *zeros(int64_t n)
{
    float *y = calloc((size_t)n, sizeof(float));
    assert_non_null(y);
    return y;
}

static int32_t *first(const int32_t *ids, int64_t B, int64_t L, int32_t tok)
{
    int32_t *c = malloc((size_t)(B * L) * sizeof *c);
    assert_non_null(c);
    memcpy(c, ids, (size_t)(B * L) * sizeof *c);
    for (int64_t b = 0; b < B; b++)
        c[b * L] = tok;
    return c;
}

static void same_bits(const char *what, const float *a, const float *b, int64_t n)
{
    if (memcmp(a, b, (size_t)n * sizeof(float)) != 0)
        fail_msg("%s: training forward differs from the inference forward", what);
}

/* Runs the objective's forward and backward once; fills g. */
static void step(struct mf_session *s, const struct mf_model *m, const struct mf_safetensors *gd,
                 const struct mf_safetensors *gb, struct mf_grads *g)
{
    struct mf_err err = {0};
    const struct mf_model_info *info = mf_model_get_info(m);
    const struct mf_st_entry *ie = mf_safetensors_find(gd, "ids");
    const int64_t B = ie->shape[0], L = ie->shape[1], N = info->vision.n_tok, DV = info->vision.d;
    const int64_t TD = info->text.d, V = info->text.vocab, P = info->proj_dim;
    const float *images = gf(gd, "images");
    const int32_t *ids = mf_safetensors_find(gd, "ids")->data, *mask = mf_safetensors_find(gd, "mask")->data;
    int32_t *ids_itm = first(ids, B, L, info->first_token_itm), *ids_dec = first(ids, B, L, info->first_token_dec);

    /* Inference references first (each public entry point resets the arena). */
    float *emb_ref = zeros(B * N * DV), *th_ref = zeros(B * L * TD), *mm_ref = zeros(B * L * TD);
    float *lg_ref = zeros(B * L * V);
    assert_int_equal(mf_encode_images(s, images, B, emb_ref, NULL, &err), MF_OK);
    if (info->has_text_encoder) {
        assert_int_equal(mf_encode_texts(s, ids, mask, B, L, th_ref, NULL, &err), MF_OK);
        if (info->has_itm)
            assert_int_equal(mf_itm_pairs(s, emb_ref, ids, mask, B, L, NULL, NULL, mm_ref, &err), MF_OK);
    }
    if (info->has_decoder)
        assert_int_equal(mf_decoder_pairs(s, emb_ref, ids, mask, B, L, NULL, lg_ref, &err), MF_OK);

    /* One training step: forward with acts, then backward, within one arena reset. */
    mf_arena_reset(&s->arena);
    float *emb = zeros(B * N * DV), *d_emb = dup(gf(gb, "R_img"), B * N * DV);
    struct mf_vit_acts va;
    assert_int_equal(mf_vit_forward_train(s, &m->vision, images, B, emb, &va, &err), MF_OK);
    same_bits("image_embeds", emb, emb_ref, B * N * DV);

    float *th = zeros(B * L * TD), *mm = zeros(B * L * TD), *d_th = NULL, *d_mm = NULL;
    struct mf_bert_acts ta, ma;
    if (info->has_text_encoder) {
        d_th = dup(gf(gb, "R_txt"), B * L * TD);
        d_mm = dup(gf(gb, "R_mm"), B * L * TD);
        assert_int_equal(mf_bert_forward_train(s, &m->text, ids, mask, B, L, NULL, 0, false, th, &ta, &err), MF_OK);
        same_bits("text_hidden", th, th_ref, B * L * TD);
        assert_int_equal(mf_bert_forward_train(s, &m->text, ids_itm, mask, B, L, emb, N, false, mm, &ma, &err), MF_OK);
        if (info->has_itm)
            same_bits("mm_hidden", mm, mm_ref, B * L * TD);
        if (info->has_itc) {
            float *zi = zeros(B * P), *fi = zeros(B * P), *zt = zeros(B * P), *ft = zeros(B * P);
            mf_head_proj_forward(s, &m->vision_proj, emb, B, N, zi, fi);
            mf_head_proj_forward(s, &m->text_proj, th, B, L, zt, ft);
            assert_int_equal(mf_head_proj_backward(s, &m->vision_proj, emb, B, N, zi, gf(gb, "R_fi"), d_emb, g, &err),
                             MF_OK);
            assert_int_equal(mf_head_proj_backward(s, &m->text_proj, th, B, L, zt, gf(gb, "R_ft"), d_th, g, &err),
                             MF_OK);
            free(zi);
            free(fi);
            free(zt);
            free(ft);
        }
        if (info->has_itm) {
            float lg[64];
            mf_head_itm_forward(s, mm, B, L, lg);
            assert_int_equal(mf_head_itm_backward(s, mm, B, L, gf(gb, "R_itm"), d_mm, g, &err), MF_OK);
        }
        assert_int_equal(mf_bert_backward(s, &m->text, &ma, d_mm, d_emb, g, &err), MF_OK);
        assert_int_equal(mf_bert_backward(s, &m->text, &ta, d_th, NULL, g, &err), MF_OK);
    }
    if (info->has_decoder) {
        float *hd = zeros(B * L * TD), *d_hd = zeros(B * L * TD), *lg = zeros(B * L * V);
        struct mf_bert_acts da;
        struct mf_lm_acts la;
        assert_int_equal(mf_bert_forward_train(s, &m->dec, ids_dec, mask, B, L, emb, N, true, hd, &da, &err), MF_OK);
        assert_int_equal(mf_lm_forward(s, hd, B * L, lg, &la, &err), MF_OK);
        same_bits("dec_logits", lg, lg_ref, B * L * V);
        assert_int_equal(mf_lm_backward(s, hd, B * L, &la, gf(gb, "R_dec"), d_hd, g, &err), MF_OK);
        assert_int_equal(mf_bert_backward(s, &m->dec, &da, d_hd, d_emb, g, &err), MF_OK);
        free(hd);
        free(d_hd);
        free(lg);
    }
    assert_int_equal(mf_vit_backward(s, &m->vision, &va, d_emb, g, &err), MF_OK);

    free(emb_ref);
    free(th_ref);
    free(mm_ref);
    free(lg_ref);
    free(emb);
    free(d_emb);
    free(th);
    free(mm);
    free(d_th);
    free(d_mm);
    free(ids_itm);
    free(ids_dec);
}

/* Every gradient buffer has a golden and vice versa; per-tensor max |diff| / max |ref| <= TOL. */
static double compare_all(const struct mf_model *m, const struct mf_safetensors *gb, const struct mf_grads *g)
{
    double worst = 0, gmax = 0;
    size_t n_cmp = 0;
    char key[320];
    for (size_t i = 0; i < mf_model_n_tensors(m); i++) {
        snprintf(key, sizeof key, "s:%s", mf_model_tensor_at(m, i)->name);
        if (mf_safetensors_find(gb, key))
            gmax = fmax(gmax, scalar(gb, key));
    }
    for (size_t i = 0; i < mf_model_n_tensors(m); i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        const float *got = mf_grads_tensor(g, i);
        snprintf(key, sizeof key, "g:%s", t->name);
        const struct mf_st_entry *e = mf_safetensors_find(gb, key);
        if (!got && !e)
            continue;
        if (!got || !e)
            fail_msg("%s: %s", t->name, got ? "C gradient without a golden" : "golden gradient the C side lacks");
        int64_t n = (int64_t)(t->nbytes / mf_dtype_size(t->dtype));
        assert_true(e->dtype == MF_DTYPE_F16 || e->dtype == MF_DTYPE_F32);
        assert_int_equal((int64_t)(e->nbytes / mf_dtype_size(e->dtype)), n);
        snprintf(key, sizeof key, "s:%s", t->name);
        float scale = scalar(gb, key);
        float *want = malloc((size_t)n * sizeof(float));
        assert_non_null(want);
        mf_convert_to_f32(want, e->data, e->dtype, n);
        double mx = 0, md = 0, mq = 0;
        for (int64_t j = 0; j < n; j++) {
            /* F16 storage error: half an ulp of the normalised value (subnormal spacing 2^-24) */
            double half = 0;
            if (e->dtype == MF_DTYPE_F16) {
                int ex;
                frexp(fabs(want[j]), &ex);
                half = fabs(want[j]) < 0x1p-14 ? 0x1p-25 : ldexp(1.0, ex - 12);
            }
            want[j] *= scale;
            double dif = fabs((double)got[j] - want[j]);
            mx = fmax(mx, fabs(want[j]));
            md = fmax(md, dif);
            mq = fmax(mq, dif - 1.01 * half * scale);
        }
        /* floor: 1e-4 of the largest gradient of the fixture, for analytically zero gradients
         * (attention key biases: softmax is shift-invariant, the reference gets ~1e-15) */
        double rel = md / fmax(mx, 1e-4 * gmax);
        /* the part of the difference beyond the storage rounding: the C error proper */
        double relq = fmax(mq, 0) / fmax(mx, 1e-4 * gmax);
        printf("  %-64s max|ref| %.3e max|diff| %.3e rel %.2e beyond-F16 %.2e\n", t->name, mx, md, rel, relq);
        if (!(rel <= TOL) || !(relq <= TOL_C))
            fail_msg("%s: gradient rel diff %.3e (beyond storage %.3e) > %.0e (%.0e)", t->name, rel, relq, TOL, TOL_C);
        worst = fmax(worst, rel);
        free(want);
        n_cmp++;
    }
    printf("  %zu gradient tensors, worst rel %.2e\n", n_cmp, worst);
    (void)worst;
    assert_true(n_cmp > 50);
    return worst;
}

static size_t find_tensor(const struct mf_model *m, const char *name)
{
    for (size_t i = 0; i < mf_model_n_tensors(m); i++)
        if (strcmp(mf_model_tensor_at(m, i)->name, name) == 0)
            return i;
    fail_msg("tensor %s not in the model", name);
    return 0;
}

static void run_fixture(const char *name)
{
    char dir[512], gold[600], bwd[600];
    snprintf(dir, sizeof dir, "%s%s", mf_test_path("tests/golden/blip/"), name);
    snprintf(gold, sizeof gold, "%s.golden.safetensors", dir);
    /* MF_BWD_GOLDEN=<dir>: full-precision goldens from MF_BWD_F32=<dir> gen_backward.py (by hand) */
    const char *alt = getenv("MF_BWD_GOLDEN");
    if (alt)
        snprintf(bwd, sizeof bwd, "%s/%s.safetensors", alt, name);
    else
        snprintf(bwd, sizeof bwd, "%s%s.safetensors", mf_test_path("tests/golden/backward/"), name);
    printf("%s\n", name);

    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_model_opts o = mf_model_opts_default();
    if (mf_model_load(dir, &o, &m, &err) != MF_OK)
        fail_msg("load %s: %s", dir, err.msg);
    struct mf_safetensors *gd = NULL, *gb = NULL;
    if (mf_safetensors_open(gold, &gd, &err) != MF_OK || mf_safetensors_open(bwd, &gb, &err) != MF_OK)
        fail_msg("%s", err.msg);

    struct mf_grads *g[2] = {NULL, NULL};
    for (int nt = 1; nt <= 2; nt++) {
        struct mf_session *s = NULL;
        assert_int_equal(mf_session_create(m, nt, &s, &err), MF_OK);
        assert_int_equal(mf_grads_create(m, &g[nt - 1], &err), MF_OK);
        printf(" %d thread(s)\n", nt);
        step(s, m, gd, gb, g[nt - 1]);
        compare_all(m, gb, g[nt - 1]);
        mf_session_free(s);
    }
    /* the thread count changes no bit (nn/linear.c's shape-only GEMM grid, fixed-order reductions) */
    size_t n_diff = 0;
    for (size_t j = 0; j < g[0]->numel; j++)
        n_diff += memcmp(&g[0]->block[j], &g[1]->block[j], sizeof(float)) != 0;
    printf(" 1 vs 2 threads: %zu of %zu gradient values differ\n", n_diff, g[0]->numel);
    assert_int_equal(n_diff, 0);

    /* zeroing really zeroes; a second step on a zeroed block reproduces the first */
    mf_grads_zero(g[1]);
    for (size_t j = 0; j < g[1]->numel; j++)
        assert_true(g[1]->block[j] == 0.0f);

    if (strcmp(name, "orig-f32") == 0) {
        /* tied copies own no gradient; the owner (text encoder / word embeddings) has the sum */
        const char *copies[] = {"text_decoder.bert.encoder.layer.0.output.dense.weight",
                                "text_decoder.bert.encoder.layer.1.crossattention.self.key.weight",
                                "text_decoder.bert.embeddings.word_embeddings.weight",
                                "text_decoder.cls.predictions.decoder.weight", "visual_encoder_m.pos_embed"};
        for (size_t j = 0; j < MF_ARRAY_LEN(copies); j++)
            assert_null(mf_grads_tensor(g[0], find_tensor(m, copies[j])));
        assert_non_null(mf_grads_tensor(g[0], find_tensor(m, "text_decoder.bert.encoder.layer.0.attention.self.query.weight")));
        assert_non_null(mf_grads_tensor(g[0], find_tensor(m, "text_encoder.embeddings.word_embeddings.weight")));
    }
    assert_null(mf_grads_tensor(g[0], mf_model_n_tensors(m)));
    mf_grads_free(g[0]);
    mf_grads_free(g[1]);
    mf_safetensors_close(gd);
    mf_safetensors_close(gb);
    mf_model_free(m);
}

static void test_orig_f32(void **st) { (void)st; run_fixture("orig-f32"); }
static void test_hf_itm_f32(void **st) { (void)st; run_fixture("hf-itm-f32"); }
static void test_hf_cap_f32(void **st) { (void)st; run_fixture("hf-cap-f32"); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_orig_f32),
        cmocka_unit_test(test_hf_itm_f32),
        cmocka_unit_test(test_hf_cap_f32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
