/*
 * eval/retrieval.c: zero-shot image-text retrieval as BLIP evaluates it (BLIP train_retrieval.py
 * `evaluation` and `itm_eval`): ITC cosine similarities for all pairs, ITM re-ranking of each
 * query's top k by itm_logit[1] + cosine (-100 elsewhere), recall@1/5/10 both ways and their
 * mean. The steps are separate calls (eval/retrieval.h): mf_retrieval_scores (encoders, ITC,
 * mf_retrieval_rerank with the model's ITM head) and mf_retrieval_metrics.
 *
 * Deviation: itm_eval ranks with np.argsort, whose order among equal scores is unspecified; here a
 * negative with a score equal to the best positive ranks above it. The two agree when no negative
 * ties the best positive, which for k >= 10 holds unless real scores tie exactly; for k < 10 a
 * positive left at -100 can land anywhere in the -100 block under np.argsort, here it ranks last.
 *
 * Memory: all image_embeds (n_images, N, D) f32 are kept for the re-ranking, like the reference
 * (about 1.8 MB per image for BLIP-base at 384 px). Does not shard across processes.
 * Tests: tests/eval/test_retrieval.c (hand-made matrices; golden of tests/golden/gen_retrieval.py),
 * tests/cli/eval.sh (the CLI against the same golden).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/progress.h"
#include "io/annotations.h"
#include "io/image.h"
#include "eval/retrieval.h"

struct mf_retrieval_opts mf_retrieval_opts_default(void)
{
    struct mf_retrieval_opts o = {.k = 128, .batch = 8, .max_tokens = 0};
    return o;
}

/* Rank of the best positive in one row: number of candidates ranked above it, where a negative with
 * an equal score ranks above (pessimistic ties). pos(j) tells whether candidate j is positive. */
static int64_t best_rank(const float *row, int64_t n, const int64_t *txt_img, int64_t query, bool row_is_image)
{
    float best = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        bool pos = row_is_image ? txt_img[j] == query : j == txt_img[query];
        if (pos && row[j] > best)
            best = row[j];
    }
    int64_t rank = 0;
    for (int64_t j = 0; j < n; j++) {
        bool pos = row_is_image ? txt_img[j] == query : j == txt_img[query];
        if (row[j] > best || (!pos && row[j] == best))
            rank++;
    }
    return rank;
}

enum mf_status mf_retrieval_metrics(const float *s_i2t, const float *s_t2i, int64_t n_img, int64_t n_txt,
                                    const int64_t *txt_img, struct mf_retrieval_result *out, struct mf_err *err)
{
    static const int64_t ks[3] = {1, 5, 10};
    int64_t hit_i[3] = {0}, hit_t[3] = {0};
    if (n_img <= 0 || n_txt <= 0)
        return mf_err_set(err, MF_ERR_ARG, "retrieval needs at least one image and one text");
    for (int64_t j = 0; j < n_txt; j++)
        if (txt_img[j] < 0 || txt_img[j] >= n_img)
            return mf_err_set(err, MF_ERR_RANGE, "text %lld refers to image %lld of %lld", (long long)j,
                              (long long)txt_img[j], (long long)n_img);
    /* a NaN compares false and would rank as a perfect match: recalls need finite scores */
    for (int64_t i = 0; i < n_img; i++) {
        int64_t j = mf_find_nonfinite(s_i2t + i * n_txt, MF_DTYPE_F32, n_txt), jt = -1;
        for (int64_t t = 0; t < n_txt && j < 0 && jt < 0; t++)
            if (!isfinite(s_t2i[t * n_img + i]))
                jt = t;
        if (j >= 0 || jt >= 0)
            return mf_err_set(err, MF_ERR_NUMERIC, "retrieval score of image %lld and text %lld is not finite (%g)",
                              (long long)i, (long long)(j >= 0 ? j : jt),
                              (double)(j >= 0 ? s_i2t[i * n_txt + j] : s_t2i[jt * n_img + i]));
    }
    for (int64_t i = 0; i < n_img; i++) {
        int64_t r = best_rank(s_i2t + i * n_txt, n_txt, txt_img, i, true);
        for (int k = 0; k < 3; k++)
            hit_i[k] += r < ks[k];
    }
    for (int64_t j = 0; j < n_txt; j++) {
        int64_t r = best_rank(s_t2i + j * n_img, n_img, txt_img, j, false);
        for (int k = 0; k < 3; k++)
            hit_t[k] += r < ks[k];
    }
    double sum = 0;
    for (int k = 0; k < 3; k++) {
        out->i2t[k] = 100.0 * (double)hit_i[k] / (double)n_img;
        out->t2i[k] = 100.0 * (double)hit_t[k] / (double)n_txt;
        sum += out->i2t[k] + out->t2i[k];
    }
    out->mean = sum / 6.0;
    out->n_images = n_img;
    out->n_texts = n_txt;
    return MF_OK;
}

/* Indices of the k largest values of row (n), largest first; ties by lower index. */
static void top_k(const float *row, int64_t n, int64_t k, int64_t *idx)
{
    /* k is small relative to typical n; a partial insertion keeps it simple and deterministic. */
    int64_t m = 0;
    for (int64_t j = 0; j < n; j++) {
        if (m == k && row[j] <= row[idx[m - 1]])
            continue;
        int64_t p = m < k ? m++ : k - 1;
        while (p > 0 && row[idx[p - 1]] < row[j]) {
            idx[p] = idx[p - 1];
            p--;
        }
        idx[p] = j;
    }
}

/* Re-ranks one query's row (n_cand candidates, ITC scores in sims) into row: the top k get ITM
 * logit[1] + ITC, every other candidate -100. The query is image q (candidates = texts) or text q
 * (candidates = images). qi, ci, logit: (batch) scratch; top: (k) scratch. */
static enum mf_status rerank_row(const float *sims, float *row, int64_t n_cand, int64_t k, int64_t batch, int64_t q,
                                 bool query_is_image, mf_itm_logit_fn itm, void *ud, int64_t *top, int64_t *qi,
                                 int64_t *ci, float *logit, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    top_k(sims, n_cand, k, top);
    for (int64_t j = 0; j < n_cand; j++)
        row[j] = -100.0f;
    for (int64_t c0 = 0; c0 < k && !st; c0 += batch) {
        const int64_t B = MF_MIN(batch, k - c0);
        for (int64_t b = 0; b < B; b++) {
            qi[b] = query_is_image ? q : top[c0 + b];
            ci[b] = query_is_image ? top[c0 + b] : q;
        }
        st = itm(ud, qi, ci, B, logit, err);
        for (int64_t b = 0; b < B && !st; b++)
            row[top[c0 + b]] = logit[b] + sims[top[c0 + b]];
    }
    return st;
}

enum mf_status mf_retrieval_rerank(const float *sims, int64_t n_img, int64_t n_txt, int64_t k, int64_t batch,
                                   mf_itm_logit_fn itm, void *ud, float *s_i2t, float *s_t2i, struct mf_err *err)
{
    if (n_img <= 0 || n_txt <= 0 || k < 0)
        return mf_err_set(err, MF_ERR_ARG, "retrieval: %lld images, %lld texts, k %lld", (long long)n_img,
                          (long long)n_txt, (long long)k);
    memcpy(s_i2t, sims, (size_t)(n_img * n_txt) * sizeof(float));
    float *col = mf_malloc((size_t)n_img * sizeof(float)); /* a text's ITC scores */
    if (!col)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    for (int64_t j = 0; j < n_txt; j++) {
        for (int64_t i = 0; i < n_img; i++)
            col[i] = sims[i * n_txt + j];
        memcpy(s_t2i + j * n_img, col, (size_t)n_img * sizeof(float));
    }
    enum mf_status st = MF_OK;
    if (k == 0 || !itm)
        goto done;
    const int64_t k_i2t = MF_MIN(k, n_txt), k_t2i = MF_MIN(k, n_img), Bt = MF_MAX(1, batch);
    int64_t *top = mf_malloc((size_t)MF_MAX(k_i2t, k_t2i) * sizeof *top);
    int64_t *qi = mf_malloc((size_t)Bt * sizeof *qi), *ci = mf_malloc((size_t)Bt * sizeof *ci);
    float *logit = mf_malloc((size_t)Bt * sizeof *logit);
    if (!top || !qi || !ci || !logit) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    } else {
        struct mf_progress pg;
        mf_progress_begin(&pg, "itm i2t", "img", n_img);
        for (int64_t i = 0; i < n_img && !st; i++) {
            st = rerank_row(sims + i * n_txt, s_i2t + i * n_txt, n_txt, k_i2t, Bt, i, true, itm, ud, top, qi, ci,
                            logit, err);
            mf_progress_add(&pg, 1);
        }
        mf_progress_end(&pg);
        mf_progress_begin(&pg, "itm t2i", "txt", n_txt);
        for (int64_t j = 0; j < n_txt && !st; j++) {
            for (int64_t i = 0; i < n_img; i++)
                col[i] = sims[i * n_txt + j];
            st = rerank_row(col, s_t2i + j * n_img, n_img, k_t2i, Bt, j, false, itm, ud, top, qi, ci, logit, err);
            mf_progress_add(&pg, 1);
        }
        mf_progress_end(&pg);
    }
    mf_free(top);
    mf_free(qi);
    mf_free(ci);
    mf_free(logit);
done:
    mf_free(col);
    return st;
}

/* The model's ITM head as an mf_itm_logit_fn: pairs gathered from the kept image_embeds and tokens. */
struct itm_ctx {
    struct mf_session *s;
    const float *emb;          /* (n_img, N*D) image_embeds */
    const int32_t *ids, *mask; /* (n_txt, L) */
    float *bemb;               /* (Bt, N*D) batch of image_embeds */
    int32_t *bids, *bmask;     /* (Bt, L) batch of texts */
    float *logit;              /* (Bt, 2) */
    int64_t ND, L;
    const struct mf_annotations *ann; /* names the pair of a non-finite score */
};

/* Prefixes a non-finite error with image img and (txt >= 0) the caption of pair txt. */
static enum mf_status name_pair(const struct mf_annotations *ann, int64_t img, int64_t txt, enum mf_status st,
                                struct mf_err *err)
{
    char where[700];
    if (st != MF_ERR_NUMERIC)
        return st;
    if (txt >= 0)
        snprintf(where, sizeof where, "%s: image %s with the caption of %s %lld", ann->label, ann->images[img],
                 ann->jsonl ? "line" : "record", (long long)ann->record[txt]);
    else
        snprintf(where, sizeof where, "%s: image %s", ann->label, ann->images[img]);
    mf_err_prefix(err, where);
    return st;
}

static enum mf_status itm_logits(void *ud, const int64_t *img, const int64_t *txt, int64_t n, float *logit1,
                                 struct mf_err *err)
{
    const struct itm_ctx *r = ud;
    for (int64_t b = 0; b < n; b++) {
        memcpy(r->bemb + b * r->ND, r->emb + img[b] * r->ND, (size_t)r->ND * sizeof(float));
        memcpy(r->bids + b * r->L, r->ids + txt[b] * r->L, (size_t)r->L * sizeof(int32_t));
        memcpy(r->bmask + b * r->L, r->mask + txt[b] * r->L, (size_t)r->L * sizeof(int32_t));
    }
    enum mf_status st = mf_itm_pairs(r->s, r->bemb, r->bids, r->bmask, n, r->L, NULL, r->logit, NULL, err);
    if (st == MF_ERR_NUMERIC && err->row >= 0 && err->row < n)
        return name_pair(r->ann, img[err->row], txt[err->row], st, err);
    for (int64_t b = 0; b < n && !st; b++)
        logit1[b] = r->logit[2 * b + 1];
    return st;
}

enum mf_status mf_retrieval_scores(struct mf_session *s, const struct mf_annotations *ann,
                                   const struct mf_retrieval_opts *opts, float *s_i2t, float *s_t2i, int64_t *k_used,
                                   struct mf_err *err)
{
    enum mf_status st = MF_OK;
    struct mf_retrieval_opts o = opts ? *opts : mf_retrieval_opts_default();
    const struct mf_model *m = mf_session_model(s);
    const struct mf_model_info *info = mf_model_get_info(m);
    *k_used = 0;
    if (!info->has_itc)
        return mf_err_set(err, MF_ERR_UNSUPPORTED,
                          "retrieval needs a text encoder and ITC projections; this checkpoint (%s) has none",
                          info->layout_name);
    if (o.k < 0)
        return mf_err_set(err, MF_ERR_ARG, "retrieval: k %lld is negative", (long long)o.k);
    const int64_t n_img = ann->n_images, n_txt = ann->n_pairs, Bt = MF_MAX(1, o.batch);
    const int64_t L = o.max_tokens > 0 ? o.max_tokens : info->max_tokens;
    const int64_t R = info->vision.image_size, N = info->vision.n_tok, D = info->vision.d, P = info->proj_dim;
    const bool rerank = info->has_itm && o.k > 0;
    if (n_img <= 0 || n_txt <= 0)
        return mf_err_set(err, MF_ERR_ARG, "retrieval needs at least one image and one text");

    float *img = mf_malloc((size_t)(Bt * 3 * R * R) * sizeof(float));
    float *emb = mf_malloc((size_t)(n_img * N * D) * sizeof(float)); /* all image_embeds */
    float *fi = mf_malloc((size_t)(n_img * P) * sizeof(float));
    float *ft = mf_malloc((size_t)(n_txt * P) * sizeof(float));
    int32_t *ids = mf_malloc((size_t)(n_txt * L) * sizeof(int32_t));
    int32_t *mask = mf_malloc((size_t)(n_txt * L) * sizeof(int32_t));
    float *sims = mf_malloc((size_t)(n_img * n_txt) * sizeof(float));
    float *bemb = mf_malloc((size_t)(Bt * N * D) * sizeof(float));
    int32_t *bids = mf_malloc((size_t)(Bt * L) * sizeof(int32_t)), *bmask = mf_malloc((size_t)(Bt * L) * sizeof(int32_t));
    float *logit = mf_malloc((size_t)Bt * 2 * sizeof(float));
    if (!img || !emb || !fi || !ft || !ids || !mask || !sims || !bemb || !bids || !bmask || !logit) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory for retrieval over %lld images and %lld texts",
                        (long long)n_img, (long long)n_txt);
        goto done;
    }

    /* 1. images: embeddings and ITC features */
    struct mf_progress pg;
    mf_progress_begin(&pg, "images", "img", n_img);
    for (int64_t i0 = 0; i0 < n_img && !st; i0 += Bt) {
        int64_t B = MF_MIN(Bt, n_img - i0);
        for (int64_t b = 0; b < B && !st; b++)
            st = mf_image_preprocess(ann->images[i0 + b], (int)R, img + b * 3 * R * R, err);
        if (!st && (st = mf_encode_images(s, img, B, emb + i0 * N * D, fi + i0 * P, err)) && err->row >= 0)
            st = name_pair(ann, i0 + err->row, -1, st, err);
        mf_progress_add(&pg, B);
    }
    mf_progress_end(&pg);
    if (st)
        goto done;

    /* 2. texts: tokens and ITC features */
    mf_progress_begin(&pg, "texts", "txt", n_txt);
    for (int64_t j0 = 0; j0 < n_txt && !st; j0 += Bt) {
        int64_t B = MF_MIN(Bt, n_txt - j0);
        if (!(st = mf_pairs_batch(m, ann, j0, B, L, NULL, ids + j0 * L, mask + j0 * L, err)) &&
            (st = mf_encode_texts(s, ids + j0 * L, mask + j0 * L, B, L, NULL, ft + j0 * P, err)) &&
            st == MF_ERR_NUMERIC && err->row >= 0)
            mf_pairs_err_prefix(ann, j0 + err->row, err);
        mf_progress_add(&pg, B);
    }
    mf_progress_end(&pg);
    if (st)
        goto done;

    /* 3. ITC similarity (n_img, n_txt) */
    for (int64_t i = 0; i < n_img; i++)
        for (int64_t j = 0; j < n_txt; j++) {
            double d = 0;
            for (int64_t p = 0; p < P; p++)
                d += (double)fi[i * P + p] * ft[j * P + p];
            sims[i * n_txt + j] = (float)d;
            if (!isfinite(sims[i * n_txt + j])) {
                st = name_pair(ann, i, j, mf_err_set(err, MF_ERR_NUMERIC, "the ITC similarity is not finite (%g)", d),
                               err);
                goto done;
            }
        }

    /* 4. ITM re-ranking of each query's top k */
    struct itm_ctx ctx = {s, emb, ids, mask, bemb, bids, bmask, logit, N * D, L, ann};
    if ((st = mf_retrieval_rerank(sims, n_img, n_txt, rerank ? o.k : 0, Bt, itm_logits, &ctx, s_i2t, s_t2i, err)))
        goto done;
    *k_used = rerank ? o.k : 0;
done:
    mf_free(img);
    mf_free(emb);
    mf_free(fi);
    mf_free(ft);
    mf_free(ids);
    mf_free(mask);
    mf_free(sims);
    mf_free(bemb);
    mf_free(bids);
    mf_free(bmask);
    mf_free(logit);
    return st;
}

enum mf_status mf_eval_retrieval(struct mf_session *s, const struct mf_annotations *ann,
                                 const struct mf_retrieval_opts *opts, struct mf_retrieval_result *out,
                                 struct mf_err *err)
{
    enum mf_status st = MF_OK;
    double t0 = mf_time_now();
    memset(out, 0, sizeof *out);
    const int64_t n_img = ann->n_images, n_txt = ann->n_pairs;
    if (n_img <= 0 || n_txt <= 0)
        return mf_err_set(err, MF_ERR_ARG, "retrieval needs at least one image and one text");
    float *s_i2t = mf_malloc((size_t)(n_img * n_txt) * sizeof(float));
    float *s_t2i = mf_malloc((size_t)(n_img * n_txt) * sizeof(float));
    int64_t *txt_img = mf_malloc((size_t)n_txt * sizeof(int64_t));
    int64_t k = 0;
    if (!s_i2t || !s_t2i || !txt_img) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory for retrieval over %lld images and %lld texts",
                        (long long)n_img, (long long)n_txt);
        goto done;
    }
    for (int64_t j = 0; j < n_txt; j++)
        txt_img[j] = ann->image_index[j];
    if ((st = mf_retrieval_scores(s, ann, opts, s_i2t, s_t2i, &k, err)) ||
        (st = mf_retrieval_metrics(s_i2t, s_t2i, n_img, n_txt, txt_img, out, err)))
        goto done;
    out->k = k;
    out->itm_reranked = k > 0;
    out->seconds = mf_time_now() - t0;
done:
    mf_free(s_i2t);
    mf_free(s_t2i);
    mf_free(txt_img);
    return st;
}
