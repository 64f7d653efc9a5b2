/* BLIP forward passes against the PyTorch reference (tests/golden/gen_blip.py, blip_ref.py) on the
 * tiny random-weight fixtures: both layouts, F32/F16/BF16, sharded HF captioning checkpoint. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model_impl.h"
#include "multiflow/safetensors.h"

#define TOL 1e-4

static const float *gf(const struct mf_safetensors *g, const char *name, int64_t *n)
{
    const struct mf_st_entry *e = mf_safetensors_find(g, name);
    if (!e)
        return NULL;
    assert_int_equal(e->dtype, MF_DTYPE_F32);
    if (n)
        *n = (int64_t)(e->nbytes / 4);
    return e->data;
}

static const int32_t *gi(const struct mf_safetensors *g, const char *name)
{
    const struct mf_st_entry *e = mf_safetensors_find(g, name);
    assert_non_null(e);
    assert_int_equal(e->dtype, MF_DTYPE_I32);
    return e->data;
}

/* Relative comparison with a floor of 1e-2 * max |want| so near-zero entries do not dominate. */
static void check(const char *label, const float *got, const float *want, int64_t n)
{
    double mx = 0;
    for (int64_t i = 0; i < n; i++)
        mx = fmax(mx, fabs(want[i]));
    double rel = mf_test_compare(label, got, want, n, fmax(1e-2 * mx, 1e-6));
    assert_true(rel <= TOL);
}

static void run_fixture(const char *name, enum mf_itm_token tok)
{
    char dir[512], gold[512];
    snprintf(dir, sizeof dir, "%s", mf_test_path("tests/golden/blip/"));
    strncat(dir, name, sizeof dir - strlen(dir) - 1);
    snprintf(gold, sizeof gold, "%s.golden.safetensors", dir);
    printf("%s\n", name);

    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_model_opts o = mf_model_opts_default();
    o.itm_token = tok;
    if (mf_model_load(dir, &o, &m, &err) != MF_OK)
        fail_msg("load %s: %s", dir, err.msg);
    struct mf_safetensors *g = NULL;
    if (mf_safetensors_open(gold, &g, &err) != MF_OK)
        fail_msg("%s", err.msg);
    const struct mf_model_info *info = mf_model_get_info(m);

    const struct mf_st_entry *ie = mf_safetensors_find(g, "ids");
    assert_non_null(ie);
    int64_t B = ie->shape[0], L = ie->shape[1];
    const float *images = gf(g, "images", NULL);
    const int32_t *ids = gi(g, "ids"), *mask = gi(g, "mask");
    int64_t N = info->vision.n_tok, D = info->vision.d;

    for (int nt = 1; nt <= 2; nt++) {
        struct mf_session *s = NULL;
        assert_int_equal(mf_session_create(m, nt, &s, &err), MF_OK);
        float *emb = malloc((size_t)(B * N * D) * sizeof(float));
        assert_int_equal(mf_encode_images(s, images, B, emb, NULL, &err), MF_OK);
        check("image_embeds", emb, gf(g, "image_embeds", NULL), B * N * D);

        if (info->has_text_encoder) {
            int64_t TD = info->text.d;
            float *th = malloc((size_t)(B * L * TD) * sizeof(float));
            assert_int_equal(mf_encode_texts(s, ids, mask, B, L, th, NULL, &err), MF_OK);
            check("text_embeds", th, gf(g, "text_embeds", NULL), B * L * TD);
            if (info->has_itc) {
                int64_t P = info->proj_dim;
                float *fi = malloc((size_t)(B * P) * sizeof(float)), *ft = malloc((size_t)(B * P) * sizeof(float));
                float *itc = malloc((size_t)(B * B) * sizeof(float));
                assert_int_equal(mf_encode_images(s, images, B, NULL, fi, &err), MF_OK);
                assert_int_equal(mf_encode_texts(s, ids, mask, B, L, NULL, ft, &err), MF_OK);
                for (int64_t i = 0; i < B; i++)
                    for (int64_t j = 0; j < B; j++) {
                        double d = 0;
                        for (int64_t k = 0; k < P; k++)
                            d += (double)fi[i * P + k] * ft[j * P + k];
                        itc[i * B + j] = (float)d;
                    }
                check("itc", itc, gf(g, "itc", NULL), B * B);
                free(fi);
                free(ft);
                free(itc);
            }
            if (info->has_itm) {
                bool other = tok != MF_ITM_TOKEN_AUTO;
                float *mm = malloc((size_t)(B * L * TD) * sizeof(float));
                float prob[16], logits[32];
                assert_int_equal(mf_itm_pairs(s, emb, ids, mask, B, L, prob, logits, mm, &err), MF_OK);
                check("mm_embeds", mm, gf(g, other ? "mm_embeds_enc" : "mm_embeds", NULL), B * L * TD);
                if (!other)
                    check("itm_logits", logits, gf(g, "itm_logits", NULL), B * 2);
                check("itm_prob", prob, gf(g, other ? "itm_prob_enc" : "itm_prob", NULL), B);
                free(mm);
            }
            free(th);
        }
        if (info->has_decoder) {
            int64_t V = info->text.vocab;
            float *lg = malloc((size_t)(B * L * V) * sizeof(float));
            float nll[16];
            assert_int_equal(mf_decoder_pairs(s, emb, ids, mask, B, L, nll, lg, &err), MF_OK);
            check("dec_logits", lg, gf(g, "dec_logits", NULL), B * L * V);
            check("lm_nll", nll, gf(g, "lm_nll", NULL), B);
            free(lg);
        }
        free(emb);
        mf_session_free(s);
    }
    mf_safetensors_close(g);
    mf_model_free(m);
}

static void test_hf_itm_f32(void **st) { (void)st; run_fixture("hf-itm-f32", MF_ITM_TOKEN_AUTO); }
static void test_hf_itm_f32_enc(void **st) { (void)st; run_fixture("hf-itm-f32", MF_ITM_TOKEN_ENC); }
static void test_hf_itm_f16(void **st) { (void)st; run_fixture("hf-itm-f16", MF_ITM_TOKEN_AUTO); }
static void test_hf_itm_bf16(void **st) { (void)st; run_fixture("hf-itm-bf16", MF_ITM_TOKEN_AUTO); }
static void test_hf_cap_f32(void **st) { (void)st; run_fixture("hf-cap-f32", MF_ITM_TOKEN_AUTO); }
static void test_orig_f32(void **st) { (void)st; run_fixture("orig-f32", MF_ITM_TOKEN_AUTO); }
static void test_orig_bf16(void **st) { (void)st; run_fixture("orig-bf16", MF_ITM_TOKEN_AUTO); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hf_itm_f32),  cmocka_unit_test(test_hf_itm_f32_enc), cmocka_unit_test(test_hf_itm_f16),
        cmocka_unit_test(test_hf_itm_bf16), cmocka_unit_test(test_hf_cap_f32),     cmocka_unit_test(test_orig_f32),
        cmocka_unit_test(test_orig_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
