/*
 * models/generate.c: BLIP caption generation (multiflow/generate.h): greedy and beam search over
 * the text decoder with incremental decoding.
 *
 * What it does: encodes the images once, runs the prompt ([DEC] + pieces) through the decoder
 * for each image (mf_bert_step fills the key/value cache, cross-attention keys/values of the image
 * tokens included), expands each image's cache to its beams, then feeds one token per row and
 * step. The search rules are transformers 4.15's greedy_search and beam_search with
 * BeamSearchScorer / BeamHypotheses (spec/models.md §11 Q14; multiflow/generate.h states them);
 * MinLengthLogitsProcessor is the only logits processor BLIP's call enables. Rows are grouped by
 * image; after each step the rows are gathered (beam reordering, finished images and sequences
 * dropped) into a second set of buffers, so a caption never depends on its batch-mates.
 *
 * What it does not: sampling (nucleus, temperature), repetition penalty, several returned
 * sequences per image, the transformers >= 4.36 length rule (Q14 allows it only as an option),
 * or early stopping.
 *
 * Numerics: logits in f32 as every forward; log-softmax in double rounded to f32, beam scores
 * summed in f32 as torch does; hypothesis scores in double (Python floats). Ties: the first
 * arg-max (torch.argmax); top-k candidates of equal score in index order.
 */
#include "multiflow/generate.h"

#include <math.h>
#include <string.h>

#include "models/grad.h"
#include "models/kvcache.h"

struct mf_generate_opts mf_generate_opts_default(void)
{
    struct mf_generate_opts o = {3, 20, 5, NULL};
    return o;
}

const char *mf_generate_prompt_text(const struct mf_model *m, const char *prompt)
{
    if (prompt)
        return prompt;
    return m->info.layout == MF_LAYOUT_BLIP_ORIG ? "a picture of " : "";
}

enum mf_status mf_generate_prompt(const struct mf_model *m, const char *prompt, int32_t *ids, int cap, int *n,
                                  struct mf_err *err)
{
    enum mf_status st;
    int64_t np = 0;
    if (!m->info.has_decoder)
        return mf_err_set(err, MF_ERR_UNSUPPORTED, "%s: this checkpoint has no text decoder", m->path);
    if (cap < 1)
        return mf_err_set(err, MF_ERR_RANGE, "no room for the prompt tokens");
    ids[0] = m->info.first_token_dec;
    if ((st = mf_wordpiece_tokenize(m->vocab, mf_generate_prompt_text(m, prompt), ids + 1, cap - 1, &np, err)))
        return st;
    if (np > cap - 1)
        return mf_err_set(err, MF_ERR_RANGE, "the prompt has %lld tokens with [DEC]; at most %d fit", (long long)np + 1,
                          cap);
    *n = (int)np + 1;
    return MF_OK;
}

enum mf_status mf_model_decode(const struct mf_model *m, const int32_t *ids, int64_t n, char *out, size_t cap,
                               struct mf_err *err)
{
    return mf_wordpiece_decode(m->vocab, ids, n, out, cap, err);
}

/* ---- search state ------------------------------------------------------------------------- */

struct hyp {
    double score;
    int64_t len; /* tokens of tok, prompt included, [SEP] not */
    int32_t *tok;
};

/* transformers' BeamHypotheses of one image: at most nb kept, in insertion order. */
struct hyps {
    struct hyp *h; /* (nb + 1) slots, each with a token buffer of cap */
    int n;
    double worst;
    bool done;
};

struct gen {
    struct mf_session *s;
    const struct mf_model *m;
    int64_t B, nb, cap, V, d, n_layer;
    int32_t sep;
    struct mf_bert_cache kv;
    float *k2, *v2;     /* gather targets of kv.k, kv.v */
    int32_t *tok, *tok2; /* (rows_max, cap) every row's sequence, prompt included */
    float *bs, *bs2;    /* (rows_max) beam scores (greedy: summed log-probabilities) */
    int64_t *img, *img2; /* (groups_max) image of each active group */
    int64_t *src;       /* (rows_max) gather source of each new row */
    struct hyps *hy;    /* (B) beam search only */
    int32_t *hyp_tok;   /* (B, nb + 1, cap) */
    float *emb;         /* (B, N, dv) image embeddings */
};

static void gen_free(struct gen *g)
{
    mf_free(g->kv.k);
    mf_free(g->kv.v);
    mf_free(g->kv.ck);
    mf_free(g->kv.cv);
    mf_free(g->kv.key_mask);
    mf_free(g->k2);
    mf_free(g->v2);
    mf_free(g->tok);
    mf_free(g->tok2);
    mf_free(g->bs);
    mf_free(g->bs2);
    mf_free(g->img);
    mf_free(g->img2);
    mf_free(g->src);
    if (g->hy)
        for (int64_t b = 0; b < g->B; b++)
            mf_free(g->hy[b].h);
    mf_free(g->hy);
    mf_free(g->hyp_tok);
    mf_free(g->emb);
}

/* Zeroed (calloc: large blocks come zeroed from the OS without a pass over them). */
static void *alloc_n(size_t n, size_t size, bool *ok)
{
    void *p = n && size <= SIZE_MAX / n ? mf_calloc(n, size) : NULL;
    if (!p)
        *ok = false;
    return p;
}

static enum mf_status gen_alloc(struct gen *g, struct mf_err *err)
{
    const int64_t rows = g->B * g->nb, N = g->m->vision.cfg.n_tok;
    const size_t kvn = (size_t)(g->n_layer * rows * g->cap * g->d), ckn = (size_t)(g->n_layer * g->B * N * g->d);
    bool ok = true;
    struct mf_bert_cache *kv = &g->kv;
    kv->rows_max = rows;
    kv->groups_max = g->B;
    kv->cap = g->cap;
    kv->ne = N;
    kv->k = alloc_n(kvn, sizeof(float), &ok);
    kv->v = alloc_n(kvn, sizeof(float), &ok);
    g->k2 = alloc_n(kvn, sizeof(float), &ok);
    g->v2 = alloc_n(kvn, sizeof(float), &ok);
    kv->ck = alloc_n(ckn, sizeof(float), &ok);
    kv->cv = alloc_n(ckn, sizeof(float), &ok);
    kv->key_mask = alloc_n((size_t)(rows * g->cap), sizeof(int32_t), &ok);
    g->tok = alloc_n((size_t)(rows * g->cap), sizeof(int32_t), &ok);
    g->tok2 = alloc_n((size_t)(rows * g->cap), sizeof(int32_t), &ok);
    g->bs = alloc_n((size_t)rows, sizeof(float), &ok);
    g->bs2 = alloc_n((size_t)rows, sizeof(float), &ok);
    g->img = alloc_n((size_t)g->B, sizeof(int64_t), &ok);
    g->img2 = alloc_n((size_t)g->B, sizeof(int64_t), &ok);
    g->src = alloc_n((size_t)rows, sizeof(int64_t), &ok);
    g->emb = alloc_n((size_t)(g->B * N * g->m->vision.cfg.d), sizeof(float), &ok);
    if (ok && g->nb > 1) {
        g->hy = mf_calloc((size_t)g->B, sizeof *g->hy);
        g->hyp_tok = alloc_n((size_t)(g->B * (g->nb + 1) * g->cap), sizeof(int32_t), &ok);
        for (int64_t b = 0; ok && g->hy && b < g->B; b++) {
            g->hy[b].worst = 1e9;
            if (!(g->hy[b].h = mf_calloc((size_t)g->nb + 1, sizeof(struct hyp))))
                ok = false;
            for (int64_t j = 0; ok && j <= g->nb; j++)
                g->hy[b].h[j].tok = g->hyp_tok + (b * (g->nb + 1) + j) * g->cap;
        }
        ok = ok && g->hy;
    }
    if (!ok)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the generation state (%lld images, %lld beams)",
                          (long long)g->B, (long long)g->nb);
    /* positions past len are masked, but their scores are still formed: the zeroed cache keeps
     * them finite (gather copies only filled positions, so the zeros stay) */
    return MF_OK;
}

/* New row r := old row src[r] for r < n_rows (rows grouped by image, group rows per image);
 * groups_keep lists the surviving groups in order (old group indices, increasing). */
static void gather(struct gen *g, int64_t n_rows, int64_t group, const int64_t *groups_keep, int64_t n_groups)
{
    struct mf_bert_cache *kv = &g->kv;
    const int64_t d = g->d, cap = g->cap, len = kv->len, N = kv->ne;
    for (int64_t l = 0; l < g->n_layer; l++) {
        const int64_t off = l * kv->rows_max * cap * d;
        for (int64_t r = 0; r < n_rows; r++) {
            memcpy(g->k2 + off + r * cap * d, kv->k + off + g->src[r] * cap * d, (size_t)(len * d) * sizeof(float));
            memcpy(g->v2 + off + r * cap * d, kv->v + off + g->src[r] * cap * d, (size_t)(len * d) * sizeof(float));
        }
        /* surviving groups move down in order: a forward in-place copy never overwrites a source */
        const int64_t coff = l * kv->groups_max * N * d;
        for (int64_t i = 0; i < n_groups; i++)
            if (groups_keep[i] != i) {
                memmove(kv->ck + coff + i * N * d, kv->ck + coff + groups_keep[i] * N * d,
                        (size_t)(N * d) * sizeof(float));
                memmove(kv->cv + coff + i * N * d, kv->cv + coff + groups_keep[i] * N * d,
                        (size_t)(N * d) * sizeof(float));
            }
    }
    for (int64_t r = 0; r < n_rows; r++) {
        memcpy(g->tok2 + r * cap, g->tok + g->src[r] * cap, (size_t)cap * sizeof(int32_t));
        g->bs2[r] = g->bs[g->src[r]];
    }
    for (int64_t i = 0; i < n_groups; i++)
        g->img2[i] = g->img[groups_keep[i]];
    float *t;
    t = kv->k, kv->k = g->k2, g->k2 = t;
    t = kv->v, kv->v = g->v2, g->v2 = t;
    int32_t *ti = g->tok;
    g->tok = g->tok2, g->tok2 = ti;
    t = g->bs, g->bs = g->bs2, g->bs2 = t;
    int64_t *tg = g->img;
    g->img = g->img2, g->img2 = tg;
    kv->rows = n_rows;
    kv->group = group;
}

/* One decoder pass over ids (rows, T); logits (rows, V) of each row's last position, in the arena. */
static enum mf_status step(struct gen *g, const int32_t *ids, int64_t T, float **logits, struct mf_err *err)
{
    struct mf_session *s = g->s;
    const int64_t rows = g->kv.rows, d = g->d;
    enum mf_status st;
    mf_arena_reset(&s->arena);
    float *h = mf_arena_f32(&s->arena, rows * T * d);      /* (rows, T, d) */
    float *last = T > 1 ? mf_arena_f32(&s->arena, rows * d) : h; /* (rows, d) */
    float *lg = mf_arena_f32(&s->arena, rows * g->V);      /* (rows, V) */
    if (!h || !last || !lg)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for a decoder step (%lld rows)", (long long)rows);
    if ((st = mf_bert_step(s, &g->m->dec, ids, T, g->emb, &g->kv, h, err)))
        return st;
    for (int64_t r = 0; T > 1 && r < rows; r++)
        memcpy(last + r * d, h + (r * T + T - 1) * d, (size_t)d * sizeof(float));
    if ((st = mf_lm_forward(s, last, rows, lg, NULL, err)))
        return st;
    *logits = lg;
    return MF_OK;
}

/* log_softmax of a row (V) into lp, as f32 values of the double computation. */
static void log_softmax(float *lp, const float *x, int64_t V)
{
    float mx = x[0];
    for (int64_t j = 1; j < V; j++)
        mx = x[j] > mx ? x[j] : mx;
    double se = 0;
    for (int64_t j = 0; j < V; j++)
        se += exp((double)x[j] - mx);
    const double lse = (double)mx + log(se);
    for (int64_t j = 0; j < V; j++)
        lp[j] = (float)((double)x[j] - lse);
}

/* BeamHypotheses.add: score = sum / len (length penalty 1). */
static void hyps_add(struct hyps *H, int64_t nb, const int32_t *tok, int64_t len, double sum)
{
    const double score = sum / (double)len;
    if (H->n < nb || score > H->worst) {
        struct hyp *e = &H->h[H->n++];
        e->score = score;
        e->len = len;
        memcpy(e->tok, tok, (size_t)len * sizeof(int32_t));
        if (H->n > nb) {
            /* drop the smallest (score, index); the new worst is the second smallest */
            int lo = 0, lo2 = -1;
            for (int i = 1; i < H->n; i++)
                if (H->h[i].score < H->h[lo].score)
                    lo = i;
            for (int i = 0; i < H->n; i++)
                if (i != lo && (lo2 < 0 || H->h[i].score < H->h[lo2].score))
                    lo2 = i;
            H->worst = H->h[lo2].score;
            int32_t *keep = H->h[lo].tok; /* the dropped slot's buffer moves to the spare slot */
            memmove(&H->h[lo], &H->h[lo + 1], (size_t)(H->n - lo - 1) * sizeof(struct hyp));
            H->n--;
            H->h[H->n].tok = keep;
        } else {
            H->worst = fmin(score, H->worst);
        }
    }
}

/* BeamHypotheses.is_done without early stopping. */
static bool hyps_is_done(const struct hyps *H, int64_t nb, double best_sum, int64_t cur_len)
{
    if (H->n < nb)
        return false;
    return H->worst >= best_sum / (double)cur_len;
}

/* Best kept hypothesis: the last of the maxima in insertion order (a stable sort, then pop()). */
static const struct hyp *hyps_best(const struct hyps *H)
{
    const struct hyp *b = &H->h[0];
    for (int i = 1; i < H->n; i++)
        if (H->h[i].score >= b->score)
            b = &H->h[i];
    return b;
}

struct cand {
    float score;
    int64_t flat; /* beam * V + token */
};

/* The k best of x (n) in descending order; equal scores in index order. top (k). */
static void top_k(const float *x, int64_t n, int64_t k, struct cand *top)
{
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (m == k && !(x[i] > top[k - 1].score))
            continue;
        int64_t j = m < k ? m++ : k - 1;
        while (j > 0 && x[i] > top[j - 1].score) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = (struct cand){x[i], i};
    }
}

/* Writes row r's generated tokens (after the prompt) to the output of its image. */
static void emit(const struct gen *g, int64_t image, const int32_t *tok, int64_t len, bool sep, double score,
                 int64_t P, int32_t *ids, int32_t *n_ids, float *scores)
{
    int32_t *o = ids + image * g->cap;
    int64_t n = len - P;
    memcpy(o, tok + P, (size_t)n * sizeof(int32_t));
    if (sep)
        o[n++] = g->sep;
    n_ids[image] = (int32_t)n;
    if (scores)
        scores[image] = (float)score;
}

static enum mf_status search(struct gen *g, int64_t P, int64_t min_len, int32_t *ids, int32_t *n_ids, float *scores,
                             struct mf_err *err)
{
    struct mf_bert_cache *kv = &g->kv;
    const int64_t nb = g->nb, V = g->V, cap = g->cap, rows_max = g->B * nb;
    enum mf_status st;
    float *lg = NULL;
    int32_t *in = mf_malloc((size_t)(rows_max * MF_MAX(P, 1)) * sizeof(int32_t)); /* the next pass's ids */
    float *nsc = mf_malloc((size_t)rows_max * sizeof(float));      /* new beam scores by new row */
    float *lp = mf_malloc((size_t)(nb * V) * sizeof(float));        /* (nb, V) candidate scores */
    struct cand *top = mf_malloc((size_t)(2 * nb) * sizeof(struct cand));
    int64_t *keep = mf_malloc((size_t)g->B * sizeof(int64_t));
    if (!in || !nsc || !lp || !top || !keep) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory for the search");
        goto done;
    }
    /* the prompt, one row per image */
    for (int64_t b = 0; b < g->B; b++) {
        memcpy(in + b * P, g->tok + b * cap, (size_t)P * sizeof(int32_t));
        g->img[b] = b;
        g->bs[b] = 0.0f;
        keep[b] = b;
    }
    kv->rows = g->B;
    kv->group = 1;
    kv->len = 0;
    kv->cross_ready = false;
    if ((st = step(g, in, P, &lg, err)))
        goto done;
    int64_t lg_group = 1; /* logit rows per group: one right after the prompt (beams share it) */
    if (nb > 1) {
        /* each image's cache to its beams; beam_scores = [0, -1e9, ...] so that the first step
         * draws every candidate from beam 0 */
        for (int64_t r = 0; r < rows_max; r++)
            g->src[r] = r / nb;
        gather(g, rows_max, nb, keep, g->B);
        for (int64_t r = 0; r < rows_max; r++)
            g->bs[r] = r % nb ? -1e9f : 0.0f;
    }
    for (int64_t cur = P;; cur++) {
        const int64_t n_groups = kv->rows / kv->group;
        int64_t n_rows = 0, n_keep = 0;
        for (int64_t gi = 0; gi < n_groups; gi++) {
            const int64_t image = g->img[gi];
            if (nb == 1) { /* greedy_search: one row per group */
                float *x = lg + gi * V;
                int32_t *t = g->tok + gi * cap;
                if (cur < min_len)
                    x[g->sep] = -INFINITY;
                int64_t best = 0;
                for (int64_t j = 1; j < V; j++)
                    if (x[j] > x[best])
                        best = j;
                log_softmax(lp, x, V);
                t[cur] = (int32_t)best;
                g->bs[gi] += lp[best];
                if (best == g->sep || cur + 1 >= cap) {
                    emit(g, image, t, best == g->sep ? cur : cur + 1, best == g->sep, g->bs[gi], P, ids, n_ids,
                         scores);
                    continue;
                }
                g->src[n_rows++] = gi;
                keep[n_keep++] = gi;
                continue;
            }
            /* beam_search + BeamSearchScorer.process for this image */
            struct hyps *H = &g->hy[image];
            for (int64_t b = 0; b < nb; b++) {
                float *y = lp + b * V;
                log_softmax(y, lg + (gi * lg_group + (lg_group == 1 ? 0 : b)) * V, V);
                if (cur < min_len)
                    y[g->sep] = -INFINITY;
                const float bsc = g->bs[gi * nb + b];
                for (int64_t j = 0; j < V; j++)
                    y[j] += bsc;
            }
            top_k(lp, nb * V, 2 * nb, top);
            int64_t nbeam = 0;
            for (int64_t rank = 0; rank < 2 * nb && nbeam < nb; rank++) {
                const int64_t r = gi * nb + top[rank].flat / V;
                const int32_t tk = (int32_t)(top[rank].flat % V);
                if (tk == g->sep) {
                    if (rank < nb)
                        hyps_add(H, nb, g->tok + r * cap, cur, top[rank].score);
                    continue;
                }
                g->src[n_rows + nbeam] = r;
                in[n_rows + nbeam] = tk;
                nsc[n_rows + nbeam] = top[rank].score;
                nbeam++;
            }
            MF_ASSERT(nbeam == nb); /* at most nb of the 2 nb candidates are [SEP] (one per beam) */
            H->done = hyps_is_done(H, nb, top[0].score, cur);
            if (H->done) {
                const struct hyp *w = hyps_best(H);
                emit(g, image, w->tok, w->len, w->len < cap, w->score, P, ids, n_ids, scores);
                continue;
            }
            n_rows += nb;
            keep[n_keep++] = gi;
        }
        if (n_rows == 0)
            break;
        if (nb > 1 && cur + 1 >= cap) {
            /* max_length: every open beam joins its image's hypotheses (BeamSearchScorer.finalize) */
            for (int64_t i = 0, r = 0; i < n_keep; i++) {
                const int64_t image = g->img[keep[i]];
                struct hyps *H = &g->hy[image];
                for (int64_t b = 0; b < nb; b++, r++) {
                    int32_t *t = g->tok2; /* scratch row */
                    memcpy(t, g->tok + g->src[r] * cap, (size_t)cur * sizeof(int32_t));
                    t[cur] = in[r];
                    hyps_add(H, nb, t, cur + 1, nsc[r]);
                }
                const struct hyp *w = hyps_best(H);
                emit(g, image, w->tok, w->len, w->len < cap, w->score, P, ids, n_ids, scores);
            }
            break;
        }
        /* reorder and compact the rows, append each row's new token, run the next pass */
        gather(g, n_rows, nb, keep, n_keep);
        for (int64_t r = 0; r < n_rows; r++) {
            if (nb > 1) {
                g->tok[r * cap + cur] = in[r];
                g->bs[r] = nsc[r];
            } else {
                in[r] = g->tok[r * cap + cur];
            }
        }
        if ((st = step(g, in, 1, &lg, err)))
            goto done;
        lg_group = nb;
    }
    st = MF_OK;
done:
    mf_free(in);
    mf_free(nsc);
    mf_free(lp);
    mf_free(top);
    mf_free(keep);
    return st;
}

enum mf_status mf_generate(struct mf_session *s, const float *images, int64_t B, const struct mf_generate_opts *o,
                           int32_t *ids, int32_t *n_ids, float *score, struct mf_err *err)
{
    const struct mf_model *m = s->m;
    struct mf_generate_opts go = o ? *o : mf_generate_opts_default();
    enum mf_status st;
    struct gen g = {0};
    int P = 0;
    if (!m->info.has_decoder)
        return mf_err_set(err, MF_ERR_UNSUPPORTED, "%s: this checkpoint has no text decoder (captioning needs one)",
                          m->path);
    if (go.num_beams < 1 || go.num_beams > MF_GENERATE_MAX_BEAMS)
        return mf_err_set(err, MF_ERR_ARG, "number of beams %d outside [1, %d]", go.num_beams, MF_GENERATE_MAX_BEAMS);
    if (go.min_length < 0)
        return mf_err_set(err, MF_ERR_ARG, "minimum length %d is negative", go.min_length);
    if (go.max_length < 2 || go.max_length > m->dec.cfg.max_pos)
        return mf_err_set(err, MF_ERR_ARG, "maximum length %d outside [2, %lld] (the decoder's positions)",
                          go.max_length, (long long)m->dec.cfg.max_pos);
    if (B < 1)
        return MF_OK;
    if (m->info.first_token_dec < 0 || m->info.first_token_dec >= m->lm.V || m->info.sep_id >= m->lm.V)
        return mf_err_set(err, MF_ERR_RANGE, "[DEC] or [SEP] outside the decoder's vocabulary of %lld", (long long)m->lm.V);
    g.s = s;
    g.m = m;
    g.B = B;
    g.nb = go.num_beams;
    g.cap = go.max_length;
    g.V = m->lm.V;
    g.d = m->dec.cfg.d;
    g.n_layer = m->dec.cfg.n_layer;
    g.sep = m->info.sep_id;
    if ((st = gen_alloc(&g, err)))
        goto done;
    if ((st = mf_generate_prompt(m, go.prompt, g.tok, go.max_length, &P, err)) != MF_OK) {
        if (st == MF_ERR_RANGE)
            st = mf_err_set(err, MF_ERR_ARG, "the prompt \"%s\" takes %d or more of the %d tokens of the maximum "
                            "length (with [DEC]); nothing would be generated",
                            mf_generate_prompt_text(m, go.prompt), go.max_length, go.max_length);
        goto done;
    }
    if (P >= go.max_length) {
        st = mf_err_set(err, MF_ERR_ARG, "the prompt \"%s\" takes %d tokens with [DEC], the maximum length is %d: "
                        "nothing would be generated", mf_generate_prompt_text(m, go.prompt), P, go.max_length);
        goto done;
    }
    for (int64_t b = 1; b < B; b++)
        memcpy(g.tok + b * g.cap, g.tok, (size_t)P * sizeof(int32_t));
    if ((st = mf_encode_images(s, images, B, g.emb, NULL, err)))
        goto done;
    st = search(&g, P, go.min_length, ids, n_ids, score, err);
done:
    gen_free(&g);
    return st;
}
