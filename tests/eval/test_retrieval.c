/*
 * tests/eval/test_retrieval.c: the retrieval ranking maths (src/eval/retrieval.c, eval/retrieval.h)
 * on hand-made score matrices, and the whole evaluation against BLIP's `evaluation` + `itm_eval`
 * run by the PyTorch reference (tests/golden/gen_retrieval.py, blip_ref.retrieval_scores/itm_eval).
 *
 * Hand-made: recall counting at the 1/5/10 thresholds, several positives per image (the best one
 * counts), ties (a negative equal to the best positive ranks above it; positives tied among
 * themselves do not), the re-ranking step with a fake ITM head (only each query's top k by ITC go
 * to the head, in batches; top-k ties by lower index; everything else exactly -100; k below 10
 * leaves a positive outside the top k behind every -100 negative, k above 10 re-ranks it),
 * argument errors.
 * Golden: the bundled tiny models on 64 pairs of data/shapes (tests/golden/retrieval/
 * shapes_pairs.json: 33 images, one or two captions each) with k = 0, 4, 16, 64: score matrices
 * within 1e-4 of the reference (the -100 fill at the same places, so the same top-k sets), the
 * recalls of itm_eval both from the engine's matrices and from the reference's, 1 and 2 threads.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "core/common.h"
#include "eval/retrieval.h"
#include "io/annotations.h"
#include "multiflow/model.h"
#include "multiflow/safetensors.h"

static void expect_recalls(const struct mf_retrieval_result *r, const double i2t[3], const double t2i[3])
{
    double sum = 0;
    for (int k = 0; k < 3; k++) {
        if (fabs(r->i2t[k] - i2t[k]) > 1e-9 || fabs(r->t2i[k] - t2i[k]) > 1e-9)
            fail_msg("recall@%d: i2t %g (want %g), t2i %g (want %g)", k == 0 ? 1 : k == 1 ? 5 : 10, r->i2t[k],
                     i2t[k], r->t2i[k], t2i[k]);
        sum += i2t[k] + t2i[k];
    }
    assert_true(fabs(r->mean - sum / 6) < 1e-9);
}

/* 12 images, 12 texts (text j is the caption of image j); query q's positive ranks q-th, so
 * R@1 = 1/12, R@5 = 5/12, R@10 = 10/12 both ways. */
static void test_thresholds(void **state)
{
    (void)state;
    enum { N = 12 };
    float s[N * N], t[N * N];
    int64_t txt_img[N];
    for (int64_t q = 0; q < N; q++) {
        txt_img[q] = q;
        /* candidates other than q score 100 - c (distinct, descending with c); q sits after q of them */
        for (int64_t c = 0; c < N; c++) {
            int64_t ahead = c < q ? c : c - 1; /* order among the negatives */
            float neg = 100.0f - (float)ahead;
            s[q * N + c] = c == q ? 100.0f - (float)q + 0.5f : neg;
            t[q * N + c] = c == q ? 100.0f - (float)q + 0.5f : neg;
        }
    }
    struct mf_retrieval_result r;
    struct mf_err err = {0};
    assert_int_equal(mf_retrieval_metrics(s, t, N, N, txt_img, &r, &err), MF_OK);
    const double want[3] = {100.0 / 12, 500.0 / 12, 1000.0 / 12};
    expect_recalls(&r, want, want);
    assert_int_equal(r.n_images, N);
    assert_int_equal(r.n_texts, N);
}

/* 2 images with 3 captions each: texts 0-2 -> image 0, 3-5 -> image 1. */
static void test_several_positives_and_ties(void **state)
{
    (void)state;
    const int64_t txt_img[6] = {0, 0, 0, 1, 1, 1};
    /* image 0: its captions score 0.1, 0.9, 0.2; negatives 0.5, 0.95, 0.3 -> best positive (0.9)
     * has one negative above: rank 1. image 1: its best caption 0.7 ties a negative (0.7) -> the
     * negative ranks first: rank 1, not 0. */
    const float s_i2t[2 * 6] = {0.1f, 0.9f, 0.2f, 0.5f, 0.95f, 0.3f, /* image 0 */
                                0.7f, 0.1f, 0.2f, 0.7f, 0.6f, 0.0f}; /* image 1 */
    /* texts: 0 ranks its image first; 1 ties (negative first: rank 1); 2 rank 1; 3 rank 0;
     * 4 ties: rank 1; 5 rank 1 */
    const float s_t2i[6 * 2] = {0.9f, 0.1f, 0.5f, 0.5f, 0.2f, 0.3f, 0.1f, 0.8f, 0.4f, 0.4f, 0.0f, -1.0f};
    struct mf_retrieval_result r;
    struct mf_err err = {0};
    assert_int_equal(mf_retrieval_metrics(s_i2t, s_t2i, 2, 6, txt_img, &r, &err), MF_OK);
    expect_recalls(&r, (const double[3]){0, 100, 100}, (const double[3]){100.0 / 3, 100, 100});

    /* positives tied with each other do not push each other down */
    const float s2[2 * 6] = {0.8f, 0.8f, 0.8f, 0.1f, 0.2f, 0.3f, 0.0f, 0.0f, 0.0f, 0.5f, 0.5f, 0.5f};
    const float t2[6 * 2] = {1, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 1};
    assert_int_equal(mf_retrieval_metrics(s2, t2, 2, 6, txt_img, &r, &err), MF_OK);
    expect_recalls(&r, (const double[3]){100, 100, 100}, (const double[3]){100, 100, 100});

    /* all scores equal: every negative ranks first; 6 texts of 2 images: image rank 3, text rank 1 */
    float same[12];
    for (int i = 0; i < 12; i++)
        same[i] = -100.0f;
    assert_int_equal(mf_retrieval_metrics(same, same, 2, 6, txt_img, &r, &err), MF_OK);
    expect_recalls(&r, (const double[3]){0, 100, 100}, (const double[3]){0, 100, 100});

    /* errors */
    const int64_t bad[6] = {0, 0, 0, 1, 1, 2};
    assert_int_equal(mf_retrieval_metrics(s_i2t, s_t2i, 2, 6, bad, &r, &err), MF_ERR_RANGE);
    assert_non_null(strstr(err.msg, "text 5"));
    assert_int_equal(mf_retrieval_metrics(s_i2t, s_t2i, 0, 6, txt_img, &r, &err), MF_ERR_ARG);
}

/* A fake ITM head: logit1 = 10 for a matching pair, else -(img + txt) / 100; records the calls. */
struct fake_itm {
    const int64_t *txt_img;
    int64_t calls, pairs, max_batch;
    int64_t seen[64][64]; /* times (img, txt) was scored */
    bool fail;
};

static enum mf_status fake_logits(void *ud, const int64_t *img, const int64_t *txt, int64_t n, float *logit1,
                                  struct mf_err *err)
{
    struct fake_itm *f = ud;
    if (f->fail)
        return mf_err_set(err, MF_ERR_NUMERIC, "fake ITM failure");
    f->calls++;
    f->pairs += n;
    f->max_batch = MF_MAX(f->max_batch, n);
    for (int64_t b = 0; b < n; b++) {
        f->seen[img[b]][txt[b]]++;
        logit1[b] = f->txt_img[txt[b]] == img[b] ? 10.0f : -(float)(img[b] + txt[b]) / 100.0f;
    }
    return MF_OK;
}

/* 12 images, 24 texts (2 captions each, text j of image j / 2). ITC cosines: with c = (image of
 * the text - image) mod 12, the 10 texts with c in 1..5 score above an image's two captions (ranks
 * 10 and 11 of its row), and the 5 images with c in 1..5 above a text's image (rank 5 of its
 * column); all values distinct within a row and within a column. */
enum { NI = 12, NT = 24 };

static void make_sims(float *sims, int64_t *txt_img)
{
    for (int64_t j = 0; j < NT; j++)
        txt_img[j] = j / 2;
    for (int64_t i = 0; i < NI; i++)
        for (int64_t j = 0; j < NT; j++) {
            const int64_t c = ((j / 2 - i) % NI + NI) % NI;
            const float odd = 0.0001f * (float)(j % 2);
            sims[i * NT + j] = c == 0 ? 0.5f - odd : c <= 5 ? 0.9f - 0.01f * (float)c - odd : 0.3f - 0.01f * (float)c - odd;
        }
}

static void test_rerank_fake_itm(void **state)
{
    (void)state;
    float sims[NI * NT], s_i2t[NI * NT], s_t2i[NT * NI];
    int64_t txt_img[NT];
    make_sims(sims, txt_img);
    struct mf_err err = {0};
    struct mf_retrieval_result r;

    /* k = 0: no re-ranking, ITC only; the fake head is never called */
    static struct fake_itm f;
    memset(&f, 0, sizeof f);
    f.txt_img = txt_img;
    assert_int_equal(mf_retrieval_rerank(sims, NI, NT, 0, 4, fake_logits, &f, s_i2t, s_t2i, &err), MF_OK);
    assert_int_equal(f.calls, 0);
    for (int64_t i = 0; i < NI; i++)
        for (int64_t j = 0; j < NT; j++) {
            assert_true(s_i2t[i * NT + j] == sims[i * NT + j]);
            assert_true(s_t2i[j * NI + i] == sims[i * NT + j]);
        }
    /* ITC ranks 10 (images) and 5 (texts) */
    assert_int_equal(mf_retrieval_metrics(s_i2t, s_t2i, NI, NT, txt_img, &r, &err), MF_OK);
    expect_recalls(&r, (const double[3]){0, 0, 0}, (const double[3]){0, 0, 100});

    /* k = 4 (below 10) and k = 12 (above 10): each query's top k by ITC go to the head, at most
     * batch pairs per call; others are exactly -100; top-k entries are logit + cosine */
    const int64_t ks[2] = {4, 12};
    for (int c = 0; c < 2; c++) {
        const int64_t k = ks[c];
        memset(&f, 0, sizeof f);
        f.txt_img = txt_img;
        assert_int_equal(mf_retrieval_rerank(sims, NI, NT, k, 3, fake_logits, &f, s_i2t, s_t2i, &err), MF_OK);
        assert_true(f.max_batch <= 3);
        assert_int_equal(f.pairs, NI * MF_MIN(k, NT) + NT * MF_MIN(k, NI));
        for (int64_t i = 0; i < NI; i++) {
            /* the row's top k by ITC (values distinct here except the two positives) */
            int64_t kept = 0;
            for (int64_t j = 0; j < NT; j++) {
                int64_t higher = 0;
                for (int64_t jj = 0; jj < NT; jj++)
                    higher += sims[i * NT + jj] > sims[i * NT + j] || (sims[i * NT + jj] == sims[i * NT + j] && jj < j);
                const float logit = txt_img[j] == i ? 10.0f : -(float)(i + j) / 100.0f;
                if (higher < k) {
                    kept++;
                    assert_true(s_i2t[i * NT + j] == logit + sims[i * NT + j]);
                } else {
                    assert_true(s_i2t[i * NT + j] == -100.0f);
                }
            }
            assert_int_equal(kept, k);
        }
        for (int64_t j = 0; j < NT; j++) {
            int64_t kept = 0;
            for (int64_t i = 0; i < NI; i++)
                kept += s_t2i[j * NI + i] != -100.0f;
            assert_int_equal(kept, MF_MIN(k, NI));
        }
        assert_int_equal(mf_retrieval_metrics(s_i2t, s_t2i, NI, NT, txt_img, &r, &err), MF_OK);
        if (k < 10) {
            /* positives sit at ITC rank >= 5 >= k: left at -100 with the other negatives, they rank
             * after them all (never a hit, though BLIP's np.argsort could put one at rank 4..9) */
            expect_recalls(&r, (const double[3]){0, 0, 0}, (const double[3]){0, 0, 0});
        } else {
            /* re-ranked: the head's logit 10 lifts every positive to the top */
            expect_recalls(&r, (const double[3]){100, 100, 100}, (const double[3]){100, 100, 100});
        }
    }

    /* top-k ties by lower index: a row of equal cosines keeps the first k candidates */
    float flat[NI * NT];
    for (int64_t i = 0; i < NI * NT; i++)
        flat[i] = 0.25f;
    memset(&f, 0, sizeof f);
    f.txt_img = txt_img;
    assert_int_equal(mf_retrieval_rerank(flat, NI, NT, 5, 8, fake_logits, &f, s_i2t, s_t2i, &err), MF_OK);
    for (int64_t i = 0; i < NI; i++)
        for (int64_t j = 0; j < NT; j++)
            assert_int_equal(f.seen[i][j], (j < 5) + (i < 5));

    /* the head's error comes back; bad arguments */
    f.fail = true;
    assert_int_equal(mf_retrieval_rerank(sims, NI, NT, 4, 3, fake_logits, &f, s_i2t, s_t2i, &err), MF_ERR_NUMERIC);
    assert_non_null(strstr(err.msg, "fake ITM"));
    assert_int_equal(mf_retrieval_rerank(sims, NI, NT, -1, 3, fake_logits, &f, s_i2t, s_t2i, &err), MF_ERR_ARG);
}

/* ---- golden: BLIP's evaluation + itm_eval from the PyTorch reference ---------------------------- */

static const float *gtensor(struct mf_safetensors *st, const char *name, enum mf_dtype dt, int64_t n)
{
    return mf_test_st_tensor(st, name, dt, n);
}

/* max |got - want| / max(1, max |want| over the non-fill entries); the -100 fill must match exactly */
static double compare_scores(const char *label, const float *got, const float *want, int64_t n)
{
    double scale = 1, d = 0;
    for (int64_t i = 0; i < n; i++) {
        if ((want[i] == -100.0f) != (got[i] == -100.0f))
            fail_msg("%s: element %lld is %g, golden %g (a different top-k set)", label, (long long)i, got[i], want[i]);
        if (want[i] != -100.0f)
            scale = fmax(scale, fabs(want[i]));
    }
    for (int64_t i = 0; i < n; i++)
        d = fmax(d, fabs((double)got[i] - want[i]));
    return d / scale;
}

static void test_golden(void **state)
{
    (void)state;
    static const char *const models[] = {"blip-tiny", "blip-tiny-hf"};
    static const int64_t ks[] = {0, 4, 16, 64};
    char path[512], name[64];
    struct mf_err err = {0};
    struct mf_annotations *ann = NULL;
    if (mf_annotations_load(mf_test_path("tests/golden/retrieval/shapes_pairs.json"), mf_test_path("data/shapes"),
                            &ann, &err))
        fail_msg("%s", err.msg);
    const int64_t ni = ann->n_images, nt = ann->n_pairs;
    assert_int_equal(ni, 33);
    assert_int_equal(nt, 64);
    int64_t *txt_img = malloc((size_t)nt * sizeof *txt_img);
    float *s_i2t = malloc((size_t)(ni * nt) * sizeof(float)), *s_t2i = malloc((size_t)(ni * nt) * sizeof(float));
    assert_true(txt_img && s_i2t && s_t2i);
    for (int64_t j = 0; j < nt; j++)
        txt_img[j] = ann->image_index[j];
    for (size_t mi = 0; mi < MF_ARRAY_LEN(models); mi++) {
        snprintf(path, sizeof path, "tests/golden/retrieval/shapes_%s.safetensors", models[mi]);
        struct mf_safetensors *g = NULL;
        if (mf_safetensors_open(mf_test_path(path), &g, &err))
            fail_msg("%s", err.msg);
        snprintf(path, sizeof path, "data/models/%s", models[mi]);
        struct mf_model_opts mo = mf_model_opts_default();
        mo.clean = MF_CLEAN_NONE; /* the reference tokenizes whole words without cleaning */
        struct mf_model *m = NULL;
        if (mf_model_load(mf_test_path(path), &mo, &m, &err))
            fail_msg("%s", err.msg);
        for (int threads = 1; threads <= 2; threads++) {
            struct mf_session *s = NULL;
            if (mf_session_create(m, threads, &s, &err))
                fail_msg("%s", err.msg);
            for (size_t c = 0; c < MF_ARRAY_LEN(ks); c++) {
                struct mf_retrieval_opts o = mf_retrieval_opts_default();
                o.k = ks[c];
                o.batch = 5; /* batches that do not divide the counts */
                int64_t k_used = -1;
                if (mf_retrieval_scores(s, ann, &o, s_i2t, s_t2i, &k_used, &err))
                    fail_msg("%s k=%lld: %s", models[mi], (long long)ks[c], err.msg);
                assert_int_equal(k_used, ks[c]);
                snprintf(name, sizeof name, "k%lld/i2t", (long long)ks[c]);
                double d1 = compare_scores(name, s_i2t, gtensor(g, name, MF_DTYPE_F32, ni * nt), ni * nt);
                snprintf(name, sizeof name, "k%lld/t2i", (long long)ks[c]);
                double d2 = compare_scores(name, s_t2i, gtensor(g, name, MF_DTYPE_F32, ni * nt), ni * nt);
                if (ks[c] == 0) /* ITC only: the cosines themselves */
                    assert_true(compare_scores("sims", s_i2t, gtensor(g, "sims", MF_DTYPE_F32, ni * nt), ni * nt) <= 1e-5);
                struct mf_retrieval_result r, rg;
                snprintf(name, sizeof name, "k%lld/recall", (long long)ks[c]);
                const double *want = (const double *)(const void *)gtensor(g, name, MF_DTYPE_F64, 7);
                assert_int_equal(mf_retrieval_metrics(s_i2t, s_t2i, ni, nt, txt_img, &r, &err), MF_OK);
                /* the metrics on the reference's own matrices: itm_eval exactly */
                snprintf(name, sizeof name, "k%lld/i2t", (long long)ks[c]);
                const float *gi = gtensor(g, name, MF_DTYPE_F32, ni * nt);
                snprintf(name, sizeof name, "k%lld/t2i", (long long)ks[c]);
                const float *gt = gtensor(g, name, MF_DTYPE_F32, ni * nt);
                assert_int_equal(mf_retrieval_metrics(gi, gt, ni, nt, txt_img, &rg, &err), MF_OK);
                printf("%s threads %d k=%lld: scores within %.2g / %.2g of the reference; i2t %.4g %.4g %.4g, "
                       "t2i %.4g %.4g %.4g\n", models[mi], threads, (long long)ks[c], d1, d2, r.i2t[0], r.i2t[1],
                       r.i2t[2], r.t2i[0], r.t2i[1], r.t2i[2]);
                if (d1 > 1e-4 || d2 > 1e-4)
                    fail_msg("%s k=%lld: score matrices differ from the reference by %g / %g", models[mi],
                             (long long)ks[c], d1, d2);
                expect_recalls(&rg, want, want + 3);
                expect_recalls(&r, want, want + 3);
            }
            mf_session_free(s);
        }
        mf_model_free(m);
        mf_safetensors_close(g);
    }
    free(txt_img);
    free(s_i2t);
    free(s_t2i);
    mf_annotations_free(ann);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thresholds),
        cmocka_unit_test(test_several_positives_and_ties),
        cmocka_unit_test(test_rerank_fake_itm),
        cmocka_unit_test(test_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
