/*
 * eval/retrieval.c: zero-shot image-text retrieval as BLIP evaluates it (BLIP train_retrieval.py
 * `evaluation` and `itm_eval`): ITC cosine similarities for all pairs, ITM re-ranking of each
 * query's top k by itm_logit[1] + cosine, recall@1/5/10 both ways and their mean.
 *
 * Memory: all image_embeds (n_images, N, D) f32 are kept for the re-ranking, like the reference
 * (about 1.8 MB per image for BLIP-base at 384 px). Does not shard across processes.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/progress.h"
#include "io/annotations.h"
#include "io/image.h"
#include "multiflow/eval.h"

struct mf_retrieval_opts mf_retrieval_opts_default(void)
{
    struct mf_retrieval_opts o = {.k = 128, .batch = 8, .max_tokens = 35};
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

/* Buffers and inputs shared by the re-ranking of every query. */
struct rerank {
    struct mf_session *s;
    const float *emb;          /* (n_img, N*D) image_embeds */
    const int32_t *ids, *mask; /* (n_txt, L) */
    float *bemb;               /* (Bt, N*D) batch of image_embeds */
    int32_t *bids, *bmask;     /* (Bt, L) batch of texts */
    float *logit;              /* (Bt, 2) */
    int64_t *top;              /* (k) candidate indices */
    float *sims;               /* (n_cand) the row's ITC scores */
    int64_t ND, L, Bt;
};

/* Re-ranks one query's row of scores (n_cand candidates) in place, as BLIP does: the top k by ITC
 * get ITM logit[1] + ITC, every other candidate -100. The query is image q (candidates = texts) or
 * text q (candidates = images). */
static enum mf_status rerank_row(const struct rerank *r, float *row, int64_t n_cand, int64_t k, int64_t q,
                                 bool query_is_image, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    memcpy(r->sims, row, (size_t)n_cand * sizeof(float));
    top_k(r->sims, n_cand, k, r->top);
    for (int64_t j = 0; j < n_cand; j++)
        row[j] = -100.0f;
    for (int64_t c0 = 0; c0 < k && !st; c0 += r->Bt) {
        int64_t B = MF_MIN(r->Bt, k - c0);
        for (int64_t b = 0; b < B; b++) {
            int64_t img = query_is_image ? q : r->top[c0 + b], txt = query_is_image ? r->top[c0 + b] : q;
            memcpy(r->bemb + b * r->ND, r->emb + img * r->ND, (size_t)r->ND * sizeof(float));
            memcpy(r->bids + b * r->L, r->ids + txt * r->L, (size_t)r->L * sizeof(int32_t));
            memcpy(r->bmask + b * r->L, r->mask + txt * r->L, (size_t)r->L * sizeof(int32_t));
        }
        st = mf_itm_pairs(r->s, r->bemb, r->bids, r->bmask, B, r->L, NULL, r->logit, NULL, err);
        for (int64_t b = 0; b < B && !st; b++)
            row[r->top[c0 + b]] = r->logit[2 * b + 1] + r->sims[r->top[c0 + b]];
    }
    return st;
}

enum mf_status mf_eval_retrieval(struct mf_session *s, const struct mf_annotations *ann,
                                 const struct mf_retrieval_opts *opts, struct mf_retrieval_result *out,
                                 struct mf_err *err)
{
    const struct mf_model *m = NULL;
    enum mf_status st = MF_OK;
    double t0 = mf_time_now();
    struct mf_retrieval_opts o = opts ? *opts : mf_retrieval_opts_default();
    memset(out, 0, sizeof *out);

    m = mf_session_model(s);
    const struct mf_model_info *info = mf_model_get_info(m);
    if (!info->has_itc)
        return mf_err_set(err, MF_ERR_UNSUPPORTED,
                          "retrieval needs a text encoder and ITC projections; this checkpoint (%s) has none",
                          info->layout_name);
    const int64_t n_img = ann->n_images, n_txt = ann->n_pairs, Bt = MF_MAX(1, o.batch), L = o.max_tokens;
    const int64_t R = info->vision.image_size, N = info->vision.n_tok, D = info->vision.d, P = info->proj_dim;
    const int64_t k_i2t = MF_MIN(o.k, n_txt), k_t2i = MF_MIN(o.k, n_img);
    const bool rerank = info->has_itm && o.k > 0;

    float *img = mf_malloc((size_t)(Bt * 3 * R * R) * sizeof(float));
    float *emb = mf_malloc((size_t)(n_img * N * D) * sizeof(float)); /* all image_embeds */
    float *fi = mf_malloc((size_t)(n_img * P) * sizeof(float));
    float *ft = mf_malloc((size_t)(n_txt * P) * sizeof(float));
    int32_t *ids = mf_malloc((size_t)(n_txt * L) * sizeof(int32_t));
    int32_t *mask = mf_malloc((size_t)(n_txt * L) * sizeof(int32_t));
    float *s_i2t = mf_malloc((size_t)(n_img * n_txt) * sizeof(float));
    float *s_t2i = mf_malloc((size_t)(n_img * n_txt) * sizeof(float));
    float *bemb = mf_malloc((size_t)(Bt * N * D) * sizeof(float));
    int32_t *bids = mf_malloc((size_t)(Bt * L) * sizeof(int32_t)), *bmask = mf_malloc((size_t)(Bt * L) * sizeof(int32_t));
    float *logit = mf_malloc((size_t)Bt * 2 * sizeof(float));
    int64_t *top = mf_malloc((size_t)MF_MAX(MF_MAX(k_i2t, k_t2i), 1) * sizeof(int64_t));
    int64_t *txt_img = mf_malloc((size_t)n_txt * sizeof(int64_t));
    if (!img || !emb || !fi || !ft || !ids || !mask || !s_i2t || !s_t2i || !bemb || !bids || !bmask || !logit ||
        !top || !txt_img) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory for retrieval over %lld images and %lld texts",
                        (long long)n_img, (long long)n_txt);
        goto done;
    }
    for (int64_t j = 0; j < n_txt; j++)
        txt_img[j] = ann->image_index[j];

    /* 1. images: embeddings and ITC features */
    struct mf_progress pg;
    mf_progress_begin(&pg, "images", "img", n_img);
    for (int64_t i0 = 0; i0 < n_img; i0 += Bt) {
        int64_t B = MF_MIN(Bt, n_img - i0);
        for (int64_t b = 0; b < B; b++)
            if ((st = mf_image_preprocess(ann->images[i0 + b], (int)R, img + b * 3 * R * R, err)))
                goto done;
        if ((st = mf_encode_images(s, img, B, emb + i0 * N * D, fi + i0 * P, err)))
            goto done;
        mf_progress_add(&pg, B);
    }
    mf_progress_end(&pg);

    /* 2. texts: tokens and ITC features */
    mf_progress_begin(&pg, "texts", "txt", n_txt);
    for (int64_t j0 = 0; j0 < n_txt; j0 += Bt) {
        int64_t B = MF_MIN(Bt, n_txt - j0);
        if ((st = mf_pairs_batch(m, ann, j0, B, L, NULL, ids + j0 * L, mask + j0 * L, err)) ||
            (st = mf_encode_texts(s, ids + j0 * L, mask + j0 * L, B, L, NULL, ft + j0 * P, err)))
            goto done;
        mf_progress_add(&pg, B);
    }
    mf_progress_end(&pg);

    /* 3. ITC similarity (n_img, n_txt) */
    for (int64_t i = 0; i < n_img; i++)
        for (int64_t j = 0; j < n_txt; j++) {
            double d = 0;
            for (int64_t p = 0; p < P; p++)
                d += (double)fi[i * P + p] * ft[j * P + p];
            s_i2t[i * n_txt + j] = (float)d;
            s_t2i[j * n_img + i] = (float)d;
        }

    /* 4. ITM re-ranking of each query's top k */
    if (rerank) {
        float *sims = mf_malloc((size_t)MF_MAX(n_txt, n_img) * sizeof(float));
        if (!sims) {
            st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
            goto done;
        }
        struct rerank rr = {s, emb, ids, mask, bemb, bids, bmask, logit, top, sims, N * D, L, Bt};
        mf_progress_begin(&pg, "itm i2t", "img", n_img);
        for (int64_t i = 0; i < n_img && !st; i++) {
            st = rerank_row(&rr, s_i2t + i * n_txt, n_txt, k_i2t, i, true, err);
            mf_progress_add(&pg, 1);
        }
        mf_progress_end(&pg);
        mf_progress_begin(&pg, "itm t2i", "txt", n_txt);
        for (int64_t j = 0; j < n_txt && !st; j++) {
            st = rerank_row(&rr, s_t2i + j * n_img, n_img, k_t2i, j, false, err);
            mf_progress_add(&pg, 1);
        }
        mf_progress_end(&pg);
        mf_free(sims);
        if (st)
            goto done;
    }

    if ((st = mf_retrieval_metrics(s_i2t, s_t2i, n_img, n_txt, txt_img, out, err)))
        goto done;
    out->k = rerank ? o.k : 0;
    out->itm_reranked = rerank;
    out->seconds = mf_time_now() - t0;
done:
    mf_free(img);
    mf_free(emb);
    mf_free(fi);
    mf_free(ft);
    mf_free(ids);
    mf_free(mask);
    mf_free(s_i2t);
    mf_free(s_t2i);
    mf_free(bemb);
    mf_free(bids);
    mf_free(bmask);
    mf_free(logit);
    mf_free(top);
    mf_free(txt_img);
    return st;
}
