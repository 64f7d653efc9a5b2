/*
 * models/vqa.c: BLIP's VQA model on a loaded BLIP checkpoint (models/vqa.h): question cleaning and
 * tokenisation, answer-list tokenisation, rank_answer, and the training loss with its backward.
 * Reference: salesforce/BLIP models/blip_vqa.py (forward, rank_answer), models/med.py
 * (BertLMHeadModel: shifted targets, CrossEntropyLoss(reduction='none', label_smoothing=0.1) summed
 * per sequence), data/vqa_dataset.py (answer weights), data/utils.py (pre_question);
 * spec/models.md §4.8 and Q15.
 */
#include "models/vqa.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "models/grad.h"
#include "models/kvcache.h"
#include "nn/nn.h"
#include "text/unicase.h"
#include "text/wordpiece.h"

/* ---- questions ------------------------------------------------------------------------------ */

static bool in_set(int32_t c, const char *set)
{
    for (; *set; set++)
        if (c == (unsigned char)*set)
            return true;
    return false;
}

enum mf_status mf_question_style_parse(const char *name, enum mf_question_style *style, struct mf_err *err)
{
    if (strcmp(name, "multiflow") == 0)
        *style = MF_QUESTION_MULTIFLOW;
    else if (strcmp(name, "blip") == 0)
        *style = MF_QUESTION_BLIP;
    else
        return mf_err_set(err, MF_ERR_ARG, "unknown question cleaning '%s' (expected multiflow or blip)", name);
    return MF_OK;
}

enum mf_status mf_pre_question(const char *in, enum mf_question_style style, int max_words, char *out, size_t out_len,
                               struct mf_err *err)
{
    if (max_words < 0 || (style != MF_QUESTION_MULTIFLOW && style != MF_QUESTION_BLIP))
        return mf_err_set(err, MF_ERR_ARG, "pre_question: bad arguments");
    const size_t len = strlen(in);
    int32_t *raw = mf_malloc((len + 1) * sizeof *raw), *a = mf_malloc((2 * len + 2) * sizeof *a);
    char *enc = mf_malloc(8 * len + 8);
    enum mf_status st = MF_OK;
    if (!raw || !a || !enc) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t n, bad = 0;
    if (mf_uni_decode(in, len, raw, &n, &bad) != MF_OK) {
        st = mf_err_set(err, MF_ERR_FORMAT, "question is not valid UTF-8 (byte %zu)", bad);
        goto done;
    }
    n = mf_uni_lower(raw, n, a);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = a[i];
        if (style == MF_QUESTION_MULTIFLOW) {
            if (in_set(c, ",.'!?\"()*#:;~"))
                continue;
            if (c == '-' || c == '/')
                c = ' ';
        } else if (in_set(c, ".!\"()*#:;~")) {
            continue;
        }
        a[k++] = c;
    }
    while (k > 0 && a[k - 1] == ' ') /* question.rstrip(' ') */
        k--;
    /* ' '.join(question.split(' ')[:max_words]): words are separated by single spaces (empty
     * words between repeated spaces count, as in Python) */
    if (max_words > 0) {
        int words = 1;
        for (size_t i = 0; i < k; i++)
            if (a[i] == ' ' && ++words > max_words) {
                k = i;
                break;
            }
    }
    size_t nb = mf_uni_encode(a, k, enc);
    enc[nb] = 0;
    bool blank = true;
    for (size_t i = 0; i < k && blank; i++)
        blank = mf_uni_is_pyspace(a[i]);
    if (blank) {
        st = mf_err_set(err, MF_ERR_FORMAT, "question is empty after cleaning");
        goto done;
    }
    if (nb + 1 > out_len) {
        st = mf_err_set(err, MF_ERR_RANGE, "cleaned question of %zu bytes does not fit in %zu", nb, out_len);
        goto done;
    }
    memcpy(out, enc, nb + 1);
done:
    mf_free(raw);
    mf_free(a);
    mf_free(enc);
    return st;
}

static enum mf_status need_vqa_model(const struct mf_model *m, struct mf_err *err)
{
    if (!m->vocab)
        return mf_err_set(err, MF_ERR_MISSING, "%s: loaded without a vocabulary (no vocab.txt; pass --vocab FILE)",
                          m->path);
    if (!m->info.has_decoder || !m->text.layers || !m->vision.layers)
        return mf_err_set(err, MF_ERR_UNSUPPORTED,
                          "%s: VQA needs the vision tower, the text encoder and the text decoder", m->path);
    if (m->dec.cfg.enc_width != m->text.cfg.d)
        return mf_err_set(err, MF_ERR_UNSUPPORTED,
                          "%s: the decoder's cross-attention takes width %lld, the question states are %lld wide",
                          m->path, (long long)m->dec.cfg.enc_width, (long long)m->text.cfg.d);
    if (m->text.cfg.cross_from != 0 || m->text.cfg.enc_width != m->vision.cfg.d)
        return mf_err_set(err, MF_ERR_UNSUPPORTED, "%s: the text encoder has no cross-attention to the image", m->path);
    return MF_OK;
}

enum mf_status mf_vqa_tokenize_question(const struct mf_model *m, const char *question, enum mf_question_style style,
                                        int32_t *ids, int64_t *L, struct mf_err *err)
{
    enum mf_status st;
    if ((st = need_vqa_model(m, err)))
        return st;
    size_t cap = 8 * strlen(question) + 8;
    char *clean = mf_malloc(cap);
    if (!clean)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    int32_t mask[MF_VQA_QUESTION_TOKENS];
    int n = 0;
    int max_len = (int)MF_MIN((int64_t)MF_VQA_QUESTION_TOKENS, m->text.cfg.max_pos);
    if (!(st = mf_pre_question(question, style, MF_VQA_QUESTION_WORDS, clean, cap, err)) &&
        !(st = mf_wordpiece_encode(m->vocab, clean, max_len, ids, mask, &n, err))) {
        ids[0] = m->info.first_token_itm;
        *L = n;
    }
    mf_free(clean);
    return st;
}

void mf_vqa_answers_free(struct mf_vqa_answers *a)
{
    if (!a)
        return;
    mf_free(a->ids);
    mf_free(a->mask);
    *a = (struct mf_vqa_answers){0};
}

enum mf_status mf_vqa_answers_tokenize(const struct mf_model *m, const char *const *answers, int64_t n,
                                       struct mf_vqa_answers *out, struct mf_err *err)
{
    enum mf_status st;
    *out = (struct mf_vqa_answers){0};
    if ((st = need_vqa_model(m, err)))
        return st;
    if (n < 1)
        return mf_err_set(err, MF_ERR_ARG, "the answer list is empty");
    const int64_t P = m->dec.cfg.max_pos;
    int32_t *ids = mf_malloc((size_t)(n * P) * sizeof *ids), *mask = mf_malloc((size_t)(n * P) * sizeof *mask);
    int64_t L = 2;
    if (!ids || !mask) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory for %lld answers", (long long)n);
        goto fail;
    }
    for (int64_t i = 0; i < n; i++) {
        int nr = 0;
        if ((st = mf_wordpiece_encode(m->vocab, answers[i], (int)P, ids + i * P, mask + i * P, &nr, err))) {
            char pre[48];
            snprintf(pre, sizeof pre, "answer %lld", (long long)i + 1);
            mf_err_prefix(err, pre);
            goto fail;
        }
        if (nr < 3) {
            st = mf_err_set(err, MF_ERR_FORMAT, "answer %lld ('%s') has no tokens", (long long)i + 1, answers[i]);
            goto fail;
        }
        ids[i * P] = m->info.first_token_dec;
        L = MF_MAX(L, (int64_t)nr);
    }
    /* compact to the longest answer (padding='longest') */
    for (int64_t i = 0; i < n; i++) {
        memmove(ids + i * L, ids + i * P, (size_t)L * sizeof *ids);
        memmove(mask + i * L, mask + i * P, (size_t)L * sizeof *mask);
    }
    *out = (struct mf_vqa_answers){n, L, ids, mask};
    return MF_OK;
fail:
    mf_free(ids);
    mf_free(mask);
    return st;
}

/* ---- shared pieces of the forward ------------------------------------------------------------ */

static double lse(const float *x, int64_t n)
{
    float mx = x[0];
    for (int64_t j = 1; j < n; j++)
        mx = x[j] > mx ? x[j] : mx;
    double s = 0;
    for (int64_t j = 0; j < n; j++)
        s += exp((double)x[j] - mx);
    return log(s) + mx;
}

/* Summed label-smoothed LM loss of answer row r (ids/mask (La)) from its logits (La, V): targets
 * are positions t = 1..La-1 with mask 1, predicted from row t-1. With d_scale != 0 the logits are
 * replaced in place by d_scale x d loss / d logits (rows without a target zeroed). */
static double answer_loss(float *lg, const int32_t *ids, const int32_t *mask, int64_t La, int64_t V, double d_scale)
{
    const double eps = MF_VQA_LABEL_SMOOTHING;
    double loss = 0;
    for (int64_t t = 0; t < La; t++) {
        float *row = lg + t * V;
        if (t + 1 >= La || !mask[t + 1]) {
            if (d_scale != 0)
                memset(row, 0, (size_t)V * sizeof *row);
            continue;
        }
        const int32_t y = ids[t + 1];
        double l = lse(row, V), mean = 0;
        for (int64_t j = 0; j < V; j++)
            mean += row[j];
        mean /= (double)V;
        loss += (1 - eps) * (l - row[y]) + eps * (l - mean);
        if (d_scale != 0)
            for (int64_t j = 0; j < V; j++)
                row[j] = (float)(d_scale * (exp((double)row[j] - l) - eps / (double)V - (j == y ? 1 - eps : 0.0)));
    }
    return loss;
}

static float *zeros(struct mf_arena *a, int64_t n)
{
    float *p = mf_arena_f32(a, n);
    if (p)
        memset(p, 0, (size_t)n * sizeof *p);
    return p;
}

static int32_t *ones(struct mf_arena *a, int64_t n)
{
    int32_t *p = mf_arena_alloc(a, (size_t)n * sizeof *p);
    for (int64_t i = 0; p && i < n; i++)
        p[i] = 1;
    return p;
}

static enum mf_status check_ids(const struct mf_model *m, const struct mf_vqa_answers *A, struct mf_err *err)
{
    for (int64_t i = 0; i < A->n * A->L; i++)
        if (A->ids[i] < 0 || A->ids[i] >= m->lm.V)
            return mf_err_set(err, MF_ERR_RANGE, "answer token id %d outside the decoder vocabulary of %lld",
                              A->ids[i], (long long)m->lm.V);
    return MF_OK;
}

/* ---- rank_answer ------------------------------------------------------------------------------ */

struct cand {
    double key;
    int64_t idx;
};

static int cand_cmp(const void *pa, const void *pb)
{
    const struct cand *a = pa, *b = pb;
    if (a->key != b->key)
        return a->key > b->key ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

enum mf_status mf_vqa_rank_batch(struct mf_session *s, const float *image_embeds, const int32_t *q_ids, int64_t nq,
                                 int64_t Lq, const struct mf_vqa_answers *A, int64_t k_test, int64_t *best,
                                 double *loss, struct mf_err *err)
{
    const struct mf_model *m = s->m;
    enum mf_status st;
    if ((st = need_vqa_model(m, err)) || (st = check_ids(m, A, err)))
        return st;
    if (k_test < 1 || nq < 1 || Lq < 2 || Lq > m->text.cfg.max_pos || A->L > m->dec.cfg.max_pos)
        return mf_err_set(err, MF_ERR_ARG, "VQA ranking: k %lld, %lld questions of %lld tokens, answers of %lld",
                          (long long)k_test, (long long)nq, (long long)Lq, (long long)A->L);
    const int64_t d = m->text.cfg.d, V = m->lm.V, N = m->vision.cfg.n_tok, La = A->L, n = A->n;
    const int64_t k = MF_MIN(k_test, n), rows = nq * k, nl = m->dec.cfg.n_layer;
    struct mf_arena *a = &s->arena;
    mf_arena_reset(a);
    int32_t *qmask = ones(a, nq * Lq), *one = ones(a, nq), *dec = mf_arena_alloc(a, (size_t)nq * sizeof *dec);
    float *qs = mf_arena_f32(a, nq * Lq * d), *h1 = mf_arena_f32(a, nq * d), *lg1 = mf_arena_f32(a, nq * V);
    struct cand *c = mf_malloc((size_t)(nq * n) * sizeof *c);
    int32_t *ids = mf_arena_alloc(a, (size_t)(rows * La) * sizeof *ids);
    int32_t *msk = mf_arena_alloc(a, (size_t)(rows * La) * sizeof *msk);
    float *hk = mf_arena_f32(a, rows * La * d), *lgk = mf_arena_f32(a, rows * La * V);
    /* the k candidates of each question as one group of a decoding cache: the cross-attention
     * keys/values of a question's states are computed once for its candidates (not once per
     * repeated copy), and the whole padded answer is one causal pass (padding only follows real
     * tokens, so it is never a key of a real position: the reference's padding mask changes nothing) */
    struct mf_bert_cache kv = {.rows = rows, .group = k, .rows_max = rows, .groups_max = nq, .cap = La, .ne = Lq};
    kv.k = mf_arena_f32(a, nl * rows * La * d);
    kv.v = mf_arena_f32(a, nl * rows * La * d);
    kv.ck = mf_arena_f32(a, nl * nq * Lq * d);
    kv.cv = mf_arena_f32(a, nl * nq * Lq * d);
    kv.key_mask = mf_arena_alloc(a, (size_t)(rows * La) * sizeof *kv.key_mask);
    if (!qmask || !one || !dec || !qs || !h1 || !lg1 || !c || !ids || !msk || !hk || !lgk || !kv.k || !kv.v ||
        !kv.ck || !kv.cv || !kv.key_mask) {
        mf_free(c);
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for ranking %lld answers of %lld questions",
                          (long long)k, (long long)nq);
    }
    for (int64_t q = 0; q < nq; q++)
        dec[q] = m->info.first_token_dec;
    if ((st = mf_bert_forward(s, &m->text, q_ids, qmask, nq, Lq, image_embeds, N, false, qs, err)) ||
        (st = mf_bert_forward(s, &m->dec, dec, one, nq, 1, qs, Lq, true, h1, err)) ||
        (st = mf_lm_forward(s, h1, nq, lg1, NULL, err)))
        goto done;
    /* top k by the probability of the first answer token: softmax is monotone, so the order of the
     * first-token logits is the order of the probabilities */
    for (int64_t q = 0; q < nq; q++) {
        struct cand *cq = c + q * n;
        const double l1 = lse(lg1 + q * V, V);
        for (int64_t i = 0; i < n; i++)
            cq[i] = (struct cand){exp((double)lg1[q * V + A->ids[i * La + 1]] - l1), i};
        qsort(cq, (size_t)n, sizeof *cq, cand_cmp);
        for (int64_t j = 0; j < k; j++) {
            memcpy(ids + (q * k + j) * La, A->ids + cq[j].idx * La, (size_t)La * sizeof *ids);
            memcpy(msk + (q * k + j) * La, A->mask + cq[j].idx * La, (size_t)La * sizeof *msk);
        }
    }
    if ((st = mf_bert_step(s, &m->dec, ids, La, qs, &kv, hk, err)) ||
        (st = mf_lm_forward(s, hk, rows * La, lgk, NULL, err)))
        goto done;
    for (int64_t q = 0; q < nq; q++) {
        const struct cand *cq = c + q * n;
        double *lq = loss ? loss + q * n : NULL;
        for (int64_t i = 0; lq && i < n; i++)
            lq[i] = INFINITY;
        int64_t arg = -1;
        double lo = INFINITY;
        for (int64_t j = 0; j < k; j++) {
            const int64_t r = q * k + j;
            double l = answer_loss(lgk + r * La * V, ids + r * La, msk + r * La, La, V, 0);
            if (!isfinite(l)) {
                st = mf_err_set(err, MF_ERR_NUMERIC, "question %lld: the loss of answer %lld is not finite",
                                (long long)q + 1, (long long)cq[j].idx + 1);
                goto done;
            }
            if (lq)
                lq[cq[j].idx] = l;
            if (arg < 0 || l < lo) { /* argmax of -loss: the first maximum */
                lo = l;
                arg = j;
            }
        }
        best[q] = cq[arg].idx;
    }
done:
    mf_free(c);
    return st;
}

enum mf_status mf_vqa_rank(struct mf_session *s, const float *image_embeds, const int32_t *q_ids, int64_t Lq,
                           const struct mf_vqa_answers *A, int64_t k_test, int64_t *best, double *loss,
                           struct mf_err *err)
{
    return mf_vqa_rank_batch(s, image_embeds, q_ids, 1, Lq, A, k_test, best, loss, err);
}

/* ---- training loss ------------------------------------------------------------------------------ */

/* The answer decoder for the questions idx[0..m) of the batch, which share one question length Lq:
 * one pass over all their answers (each row cross-attends to its own question's states, so no key
 * is padding), answers padded to the group's longest. qs (B, Lmax, d) are the batch's question
 * states; the summed weighted loss goes to *out; with g, the decoder/LM gradients and d_qs (B,
 * Lmax, d) += d loss / d qs. */
static enum mf_status group_loss(struct mf_session *s, const struct mf_vqa_item *items, const int64_t *idx, int64_t m,
                                 const float *qs, int64_t Lmax, double scale, struct mf_grads *g, float *d_qs,
                                 double *out, struct mf_err *err)
{
    const struct mf_model *md = s->m;
    const int64_t d = md->text.cfg.d, V = md->lm.V, Lq = items[idx[0]].Lq;
    struct mf_arena *a = &s->arena;
    enum mf_status st;
    int64_t n = 0, La = 2;
    for (int64_t i = 0; i < m; i++) {
        n += items[idx[i]].ans->n;
        La = MF_MAX(La, items[idx[i]].ans->L);
    }
    struct mf_bert_acts da;
    struct mf_lm_acts la;
    int32_t *ids = mf_arena_alloc(a, (size_t)(n * La) * sizeof *ids), *mask = mf_arena_alloc(a, (size_t)(n * La) * sizeof *mask);
    double *w = mf_arena_alloc(a, (size_t)n * sizeof *w);
    float *hd = mf_arena_f32(a, n * La * d), *lg = mf_arena_f32(a, n * La * V), *qrep = mf_arena_f32(a, n * Lq * d);
    if (!ids || !mask || !w || !hd || !lg || !qrep)
        goto nomem;
    for (int64_t i = 0, r = 0; i < m; i++) { /* rows: the group's questions in batch order, answers in order */
        const struct mf_vqa_item *it = &items[idx[i]];
        for (int64_t k = 0; k < it->ans->n; k++, r++) {
            for (int64_t t = 0; t < La; t++) {
                const bool in = t < it->ans->L;
                ids[r * La + t] = in ? it->ans->ids[k * it->ans->L + t] : md->info.pad_id;
                mask[r * La + t] = in ? it->ans->mask[k * it->ans->L + t] : 0;
            }
            w[r] = it->weight[k];
            memcpy(qrep + r * Lq * d, qs + idx[i] * Lmax * d, (size_t)(Lq * d) * sizeof *qrep);
        }
    }
    if ((st = mf_bert_forward_train(s, &md->dec, ids, mask, n, La, qrep, Lq, true, hd, &da, err)) ||
        (st = mf_lm_forward(s, hd, n * La, lg, g ? &la : NULL, err)))
        return st;
    double loss = 0;
    for (int64_t r = 0; r < n; r++)
        loss += w[r] * answer_loss(lg + r * La * V, ids + r * La, mask + r * La, La, V, g ? w[r] * scale : 0);
    *out = loss;
    if (!g)
        return MF_OK;
    float *d_hd = zeros(a, n * La * d), *d_qrep = zeros(a, n * Lq * d);
    if (!d_hd || !d_qrep)
        goto nomem;
    if ((st = mf_lm_backward(s, hd, n * La, &la, lg, d_hd, g, err)) ||
        (st = mf_bert_backward(s, &md->dec, &da, d_hd, d_qrep, g, err)))
        return st;
    /* each question's states were repeated once per answer: their gradient is the sum, in answer order */
    for (int64_t i = 0, r = 0; i < m; i++)
        for (int64_t k = 0; k < items[idx[i]].ans->n; k++, r++)
            mf_add_forward(s->pool, d_qs + idx[i] * Lmax * d, d_qs + idx[i] * Lmax * d, d_qrep + r * Lq * d, Lq * d);
    return MF_OK;
nomem:
    return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the answers of %lld VQA questions", (long long)m);
}

enum mf_status mf_vqa_loss(struct mf_session *s, const struct mf_vqa_item *items, int64_t B, struct mf_grads *g,
                           double *loss, struct mf_err *err)
{
    const struct mf_model *m = s->m;
    enum mf_status st;
    if ((st = need_vqa_model(m, err)))
        return st;
    if (B < 1)
        return mf_err_set(err, MF_ERR_ARG, "VQA loss: empty batch");
    int64_t Lmax = 0;
    for (int64_t b = 0; b < B; b++) {
        const struct mf_vqa_item *it = &items[b];
        if (it->Lq < 2 || it->Lq > m->text.cfg.max_pos || it->ans->n < 1 || it->ans->L < 2 ||
            it->ans->L > m->dec.cfg.max_pos)
            return mf_err_set(err, MF_ERR_ARG, "VQA loss: question %lld: bad lengths", (long long)b + 1);
        if ((st = check_ids(m, it->ans, err)))
            return st;
        Lmax = MF_MAX(Lmax, it->Lq);
    }
    /* vision and question encoder batched (questions padded, padding masked in self-attention);
     * the answer decoder one question at a time over its unpadded question states */
    const int64_t d = m->text.cfg.d, dv = m->vision.cfg.d, N = m->vision.cfg.n_tok, R = m->vision.cfg.image_size;
    const int64_t px = 3 * R * R;
    struct mf_arena *a = &s->arena;
    mf_arena_reset(a);
    struct mf_vit_acts va;
    struct mf_bert_acts ta;
    float *img = mf_arena_f32(a, B * px), *emb = mf_arena_f32(a, B * N * dv), *qs = mf_arena_f32(a, B * Lmax * d);
    float *d_qs = g ? zeros(a, B * Lmax * d) : NULL, *d_emb = g ? zeros(a, B * N * dv) : NULL;
    int32_t *qids = mf_arena_alloc(a, (size_t)(B * Lmax) * sizeof *qids);
    int32_t *qmask = mf_arena_alloc(a, (size_t)(B * Lmax) * sizeof *qmask);
    if (!img || !emb || !qs || !qids || !qmask || (g && (!d_qs || !d_emb)))
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for a VQA batch of %lld questions", (long long)B);
    for (int64_t b = 0; b < B; b++) {
        memcpy(img + b * px, items[b].image, (size_t)px * sizeof *img);
        for (int64_t t = 0; t < Lmax; t++) {
            qids[b * Lmax + t] = t < items[b].Lq ? items[b].q_ids[t] : m->info.pad_id;
            qmask[b * Lmax + t] = t < items[b].Lq;
        }
    }
    if ((st = mf_vit_forward_train(s, &m->vision, img, B, emb, &va, err)) ||
        (st = mf_bert_forward_train(s, &m->text, qids, qmask, B, Lmax, emb, N, false, qs, &ta, err)))
        return st;
    /* questions of one length share a decoder pass (groups by increasing length, batch order inside) */
    int64_t *idx = mf_arena_alloc(a, (size_t)B * sizeof *idx);
    if (!idx)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for a VQA batch of %lld questions", (long long)B);
    int64_t ng = 0;
    for (int64_t L = 2; L <= Lmax; L++)
        for (int64_t b = 0; b < B; b++)
            if (items[b].Lq == L)
                idx[ng++] = b;
    double total = 0;
    for (int64_t i0 = 0, i1; i0 < B; i0 = i1) {
        for (i1 = i0 + 1; i1 < B && items[idx[i1]].Lq == items[idx[i0]].Lq; i1++)
            ;
        double l = 0;
        if ((st = group_loss(s, items, idx + i0, i1 - i0, qs, Lmax, 1.0 / (double)B, g, d_qs, &l, err))) {
            char pre[64];
            snprintf(pre, sizeof pre, "the questions of %lld tokens", (long long)items[idx[i0]].Lq);
            mf_err_prefix(err, pre);
            return st;
        }
        total += l;
    }
    *loss = total / (double)B;
    if (!isfinite(*loss))
        return mf_err_set(err, MF_ERR_NUMERIC, "the VQA loss is not finite");
    if (g && ((st = mf_bert_backward(s, &m->text, &ta, d_qs, d_emb, g, err)) ||
              (st = mf_vit_backward(s, &m->vision, &va, d_emb, g, err))))
        return st;
    return MF_OK;
}
