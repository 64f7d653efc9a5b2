/*
 * models/bert.c: the post-LN BERT stack with optional cross-attention and causal masking
 * (models.md §1.2, §1.4, §4.4): BLIP's text encoder (unimodal and image-grounded) and text decoder;
 * later X-VLM's text and fusion layers.
 *
 * Per layer: x = LN(x + o(selfattn(x))); if cross: x = LN(x + co(crossattn(x, enc))); x = LN(x +
 * out(gelu(inter(x)))). Padding keys are skipped (bit-identical to the -10000 additive mask,
 * §1.2). Padding rows are computed like every other row (as the reference does) but are reported
 * as invalid to the calibration observer. Does not compute pooling or heads (family files do).
 * The training forward is the same code with every activation kept per layer (struct
 * mf_bert_acts, models/grad.h); mf_bert_backward runs the layers in reverse, sends the
 * cross-attention key/value gradients to the encoder states and scatter-adds the embedding rows.
 * Incremental decoding (mf_bert_step, models/kvcache.h) is the same inference code with a cache:
 * new keys/values are appended to it, self-attention spans the cached positions (masked past the
 * filled length), cross-attention keys/values are computed once per image and shared by its beams.
 */
#include "models/grad.h"
#include "models/kvcache.h"
#include "nn/nn.h"

#include <string.h>

/* Copies the new keys (or values) x (rows, L, d) into layer l of a cache buffer at positions
 * len..len+L-1; returns the layer's (rows, cap, d) block. */
static const float *cache_put(const struct mf_bert_cache *kv, int64_t l, float *buf, const float *x, int64_t d,
                              int64_t L)
{
    float *layer = buf + l * kv->rows_max * kv->cap * d;
    for (int64_t r = 0; r < kv->rows; r++)
        memcpy(layer + (r * kv->cap + kv->len) * d, x + r * L * d, (size_t)(L * d) * sizeof(float));
    return layer;
}

static enum mf_status bert_run(struct mf_session *s, const struct mf_bert *bert, const int32_t *ids,
                               const int32_t *mask, int64_t B, int64_t L, const float *enc, int64_t Ne, bool causal,
                               struct mf_bert_cache *kv, float *out, struct mf_bert_acts *A, struct mf_err *err)
{
    const struct mf_bert_cfg *c = &bert->cfg;
    const int64_t d = c->d, BL = B * L, H = c->n_head, dh = d / H, ew = c->enc_width, nl = c->n_layer;
    struct mf_arena *a = &s->arena;
    struct mf_pool *pool = s->pool;
    const bool tr = A != NULL;
    const int64_t p0 = kv ? kv->len : 0; /* position of the first token (incremental decoding) */
    MF_ASSERT(!kv || !tr);

    if (p0 + L > c->max_pos)
        return mf_err_set(err, MF_ERR_RANGE, "text length %lld exceeds the model's %lld positions", (long long)(p0 + L),
                          (long long)c->max_pos);
    for (int64_t i = 0; i < BL; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return mf_err_set(err, MF_ERR_RANGE, "token id %d outside the vocabulary of %lld", ids[i],
                              (long long)c->vocab);

    /* Inference: one buffer per role, the residual stream in place in out. Training: the same
     * roles point into per-layer buffers kept in A. */
    float *x = out;                                 /* (B, L, d) residual stream, in place in out */
    float *q = NULL, *k = NULL, *v = NULL, *ctx = NULL, *ff = NULL;
    float *y = mf_arena_f32(a, BL * d);             /* (B, L, d) sub-layer output */
    /* with a cache: self-attention keys span the cache, cross-attention queries a group's rows */
    int64_t Tk = MF_MAX(kv ? kv->cap : L, Ne), Tq = kv ? L * kv->group : L;
    void *scratch = mf_arena_alloc(a, mf_attention_scratch_size(s->n_threads, Tq, Tk, dh));
    if (!y || !scratch)
        goto nomem;
    if (!tr) {
        q = mf_arena_f32(a, BL * d);                    /* (B, L, d) */
        k = mf_arena_f32(a, MF_MAX(BL, B * Ne) * d);    /* (B, max(L, Ne), d) */
        v = mf_arena_f32(a, MF_MAX(BL, B * Ne) * d);
        ctx = mf_arena_f32(a, BL * d);
        ff = mf_arena_f32(a, BL * c->d_ff);
        if (!q || !k || !v || !ctx || !ff)
            goto nomem;
    } else {
        memset(A, 0, sizeof *A);
        A->B = B;
        A->L = L;
        A->Ne = enc ? Ne : 0;
        A->causal = causal;
        A->ids = ids;
        A->mask = mask;
        A->enc = enc;
        if (!(A->emb = mf_arena_f32(a, BL * d)) || !(A->mean_e = mf_arena_f32(a, BL)) ||
            !(A->rstd_e = mf_arena_f32(a, BL)) ||
            !(A->layers = mf_arena_alloc(a, (size_t)MF_MAX(nl, 1) * sizeof *A->layers)))
            goto nomem;
        for (int64_t l = 0; l < nl; l++) {
            struct mf_bert_layer_acts *La = &A->layers[l];
            memset(La, 0, sizeof *La);
            if (!(La->x = mf_arena_f32(a, BL * d)) || !(La->q = mf_arena_f32(a, BL * d)) ||
                !(La->k = mf_arena_f32(a, BL * d)) || !(La->v = mf_arena_f32(a, BL * d)) ||
                !(La->att = mf_arena_f32(a, B * H * L * L)) || !(La->ctx = mf_arena_f32(a, BL * d)) ||
                !(La->ys = mf_arena_f32(a, BL * d)) || !(La->mean_s = mf_arena_f32(a, BL)) ||
                !(La->rstd_s = mf_arena_f32(a, BL)) || !(La->xs = mf_arena_f32(a, BL * d)) ||
                !(La->ff_pre = mf_arena_f32(a, BL * c->d_ff)) || !(La->ff = mf_arena_f32(a, BL * c->d_ff)) ||
                !(La->yf = mf_arena_f32(a, BL * d)) || !(La->mean_f = mf_arena_f32(a, BL)) ||
                !(La->rstd_f = mf_arena_f32(a, BL)))
                goto nomem;
            if (bert->layers[l].has_cross && enc) {
                if (!(La->cq = mf_arena_f32(a, BL * d)) || !(La->ck = mf_arena_f32(a, B * Ne * d)) ||
                    !(La->cv = mf_arena_f32(a, B * Ne * d)) || !(La->catt = mf_arena_f32(a, B * H * L * Ne)) ||
                    !(La->cctx = mf_arena_f32(a, BL * d)) || !(La->yc = mf_arena_f32(a, BL * d)) ||
                    !(La->mean_c = mf_arena_f32(a, BL)) || !(La->rstd_c = mf_arena_f32(a, BL)) ||
                    !(La->xc = mf_arena_f32(a, BL * d)))
                    goto nomem;
            } else {
                La->xc = La->xs;
            }
        }
    }

    /* Embeddings: word + position (+ token type 0), then LayerNorm. */
    float *e = tr ? A->emb : x;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < L; t++) {
            float *xr = e + (b * L + t) * d;
            const float *w = bert->word + (int64_t)ids[b * L + t] * d, *p = bert->pos + (p0 + t) * d;
            if (bert->tok_type)
                for (int64_t i = 0; i < d; i++)
                    xr[i] = (w[i] + bert->tok_type[i]) + p[i];
            else
                for (int64_t i = 0; i < d; i++)
                    xr[i] = w[i] + p[i];
        }
    float *x0 = tr ? (nl ? A->layers[0].x : out) : x;
    mf_layernorm_forward(pool, x0, tr ? A->mean_e : NULL, tr ? A->rstd_e : NULL, e, bert->ln_emb.w, bert->ln_emb.b,
                         BL, d, c->eps);

    for (int64_t l = 0; l < nl; l++) {
        const struct mf_bert_layer *Ly = &bert->layers[l];
        struct mf_bert_layer_acts *La = tr ? &A->layers[l] : NULL;
        float *xin = tr ? La->x : x, *xout = tr ? (l + 1 < nl ? A->layers[l + 1].x : out) : x;
        /* self-attention */
        float *q_ = tr ? La->q : q, *k_ = tr ? La->k : k, *v_ = tr ? La->v : v, *ctx_ = tr ? La->ctx : ctx;
        float *ys = tr ? La->ys : y, *xs = tr ? La->xs : x;
        mf_model_linear(s, q_, xin, d, &Ly->q, BL, mask);
        mf_model_linear(s, k_, xin, d, &Ly->k, BL, mask);
        mf_model_linear(s, v_, xin, d, &Ly->v, BL, mask);
        if (kv) /* keys: the cached positions plus these (the mask covers both); causal only within a prompt */
            mf_attention_forward(pool, ctx_, NULL, q_, d, cache_put(kv, l, kv->k, k_, d, L), d,
                                 cache_put(kv, l, kv->v, v_, d, L), d, kv->key_mask, causal && p0 == 0, B, L, kv->cap,
                                 H, dh, scratch);
        else
            mf_attention_forward(pool, ctx_, tr ? La->att : NULL, q_, d, k_, d, v_, d, mask, causal, B, L, L, H, dh,
                                 scratch);
        mf_model_linear_res(s, ys, xin, ctx_, d, &Ly->o, BL, mask);
        mf_layernorm_forward(pool, xs, tr ? La->mean_s : NULL, tr ? La->rstd_s : NULL, ys, Ly->ln_attn.w,
                             Ly->ln_attn.b, BL, d, c->eps);
        float *xc = xs;

        /* cross-attention to the image tokens (all keys valid) */
        if (Ly->has_cross && (enc || (kv && kv->cross_ready))) {
            float *cq = tr ? La->cq : q, *ck = tr ? La->ck : k, *cv = tr ? La->cv : v, *cctx = tr ? La->cctx : ctx;
            float *yc = tr ? La->yc : y;
            xc = tr ? La->xc : x;
            mf_model_linear(s, cq, xs, d, &Ly->cq, BL, mask);
            int64_t Bc = B, Lc = L; /* with a cache: one attention batch per group, its rows as queries */
            if (kv) {
                Bc = B / kv->group;
                Lc = L * kv->group;
                ck = kv->ck + l * kv->groups_max * Ne * d;
                cv = kv->cv + l * kv->groups_max * Ne * d;
            }
            if (!kv || !kv->cross_ready) {
                mf_model_linear(s, ck, enc, ew, &Ly->ck, Bc * Ne, NULL);
                mf_model_linear(s, cv, enc, ew, &Ly->cv, Bc * Ne, NULL);
            }
            mf_attention_forward(pool, cctx, tr ? La->catt : NULL, cq, d, ck, d, cv, d, NULL, false, Bc, Lc, Ne, H, dh,
                                 scratch);
            mf_model_linear_res(s, yc, xs, cctx, d, &Ly->co, BL, mask);
            mf_layernorm_forward(pool, xc, tr ? La->mean_c : NULL, tr ? La->rstd_c : NULL, yc, Ly->ln_cross.w,
                                 Ly->ln_cross.b, BL, d, c->eps);
        }

        /* feed-forward */
        float *ffp = tr ? La->ff_pre : ff, *ffa = tr ? La->ff : ff, *yf = tr ? La->yf : y;
        mf_model_ffn_in(s, ffp, ffa, xc, d, &Ly->inter, BL, mask, false);
        mf_model_linear_res(s, yf, xc, ffa, c->d_ff, &Ly->out, BL, mask);
        mf_layernorm_forward(pool, xout, tr ? La->mean_f : NULL, tr ? La->rstd_f : NULL, yf, Ly->ln_out.w,
                             Ly->ln_out.b, BL, d, c->eps);
    }
    return MF_OK;
nomem:
    return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the text activations (batch %lld)", (long long)B);
}

enum mf_status mf_bert_forward(struct mf_session *s, const struct mf_bert *bert, const int32_t *ids,
                               const int32_t *mask, int64_t B, int64_t L, const float *enc, int64_t Ne,
                               bool causal, float *out, struct mf_err *err)
{
    return bert_run(s, bert, ids, mask, B, L, enc, Ne, causal, NULL, out, NULL, err);
}

enum mf_status mf_bert_step(struct mf_session *s, const struct mf_bert *bert, const int32_t *ids, int64_t T,
                            const float *enc, struct mf_bert_cache *kv, float *out, struct mf_err *err)
{
    enum mf_status st;
    if (T < 1 || (kv->len > 0 && T != 1) || kv->len + T > kv->cap)
        return mf_err_set(err, MF_ERR_ARG, "decoder step of %lld tokens at position %lld (cache of %lld)",
                          (long long)T, (long long)kv->len, (long long)kv->cap);
    for (int64_t r = 0; r < kv->rows; r++)
        for (int64_t t = 0; t < kv->cap; t++)
            kv->key_mask[r * kv->cap + t] = t < kv->len + T;
    if ((st = bert_run(s, bert, ids, NULL, kv->rows, T, enc, kv->ne, true, kv, out, NULL, err)))
        return st;
    kv->len += T;
    kv->cross_ready = true;
    return MF_OK;
}

enum mf_status mf_bert_forward_train(struct mf_session *s, const struct mf_bert *bert, const int32_t *ids,
                                     const int32_t *mask, int64_t B, int64_t L, const float *enc, int64_t Ne,
                                     bool causal, float *out, struct mf_bert_acts *acts, struct mf_err *err)
{
    return bert_run(s, bert, ids, mask, B, L, enc, Ne, causal, NULL, out, acts, err);
}

static float *grad_of(const struct mf_grads *g, int i) { return i >= 0 ? mf_grads_tensor(g, (size_t)i) : NULL; }

/* Linear backward whose input gradient is ADDED to dx_acc (tmp receives it first). */
static void linear_back_add(const struct mf_session *s, float *dx_acc, float *tmp, const struct mf_linear *lin,
                            const struct mf_grads *g, const float *dy, const float *x, int64_t T)
{
    mf_linear_backward(s->pool, dx_acc ? tmp : NULL, grad_of(g, lin->wi), grad_of(g, lin->bi), dy, x, lin->in,
                       lin->w, T, lin->in, lin->out);
    if (dx_acc)
        mf_add_forward(s->pool, dx_acc, dx_acc, tmp, T * lin->in);
}

enum mf_status mf_bert_backward(struct mf_session *s, const struct mf_bert *bert, const struct mf_bert_acts *A,
                                const float *d_out, float *d_enc, struct mf_grads *g, struct mf_err *err)
{
    const struct mf_bert_cfg *c = &bert->cfg;
    const int64_t B = A->B, L = A->L, Ne = A->Ne, d = c->d, BL = B * L, H = c->n_head, dh = d / H;
    const int64_t ew = c->enc_width, F = c->d_ff, BNe = B * Ne;
    struct mf_arena *a = &s->arena;
    struct mf_pool *pool = s->pool;

    float *dx = mf_arena_f32(a, BL * d);  /* (B, L, d) gradient of the current layer output */
    float *dy = mf_arena_f32(a, BL * d);  /* (B, L, d) gradient of a LayerNorm input (residual sum) */
    float *dc = mf_arena_f32(a, BL * d);  /* (B, L, d) gradient of an attention context */
    float *dq = mf_arena_f32(a, BL * d);  /* (B, L, d) */
    float *dk = mf_arena_f32(a, MF_MAX(BL, BNe) * d); /* (B, max(L, Ne), d) */
    float *dv = mf_arena_f32(a, MF_MAX(BL, BNe) * d);
    float *tmp = mf_arena_f32(a, MF_MAX(BL * d, BNe * ew)); /* input-gradient scratch */
    float *dff = mf_arena_f32(a, BL * F); /* (B, L, d_ff) */
    void *scratch = mf_arena_alloc(a, mf_attention_scratch_size(s->n_threads, L, MF_MAX(L, Ne), dh));
    if (!dx || !dy || !dc || !dq || !dk || !dv || !tmp || !dff || !scratch)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the text gradients (batch %lld)", (long long)B);

    memcpy(dx, d_out, (size_t)(BL * d) * sizeof(float));
    for (int64_t l = c->n_layer - 1; l >= 0; l--) {
        const struct mf_bert_layer *Ly = &bert->layers[l];
        const struct mf_bert_layer_acts *La = &A->layers[l];
        /* out = LN_f(xc + out(gelu(inter(xc)))) */
        mf_layernorm_backward(pool, dy, grad_of(g, Ly->ln_out.wi), grad_of(g, Ly->ln_out.bi), dx, La->yf,
                              Ly->ln_out.w, La->mean_f, La->rstd_f, BL, d);
        mf_linear_backward(pool, dff, grad_of(g, Ly->out.wi), grad_of(g, Ly->out.bi), dy, La->ff, F, Ly->out.w, BL, F,
                           d);
        mf_gelu_backward(pool, dff, dff, La->ff_pre, BL * F);
        memcpy(dx, dy, (size_t)(BL * d) * sizeof(float)); /* residual */
        linear_back_add(s, dx, tmp, &Ly->inter, g, dff, La->xc, BL);

        /* xc = LN_c(xs + co(crossattn(cq(xs), ck(enc), cv(enc)))) */
        if (La->cq) {
            mf_layernorm_backward(pool, dy, grad_of(g, Ly->ln_cross.wi), grad_of(g, Ly->ln_cross.bi), dx, La->yc,
                                  Ly->ln_cross.w, La->mean_c, La->rstd_c, BL, d);
            mf_linear_backward(pool, dc, grad_of(g, Ly->co.wi), grad_of(g, Ly->co.bi), dy, La->cctx, d, Ly->co.w, BL, d,
                               d);
            memset(dq, 0, (size_t)(BL * d) * sizeof(float));
            memset(dk, 0, (size_t)(BNe * d) * sizeof(float));
            memset(dv, 0, (size_t)(BNe * d) * sizeof(float));
            mf_attention_backward(pool, dq, dk, dv, dc, La->catt, La->cq, d, La->ck, d, La->cv, d, NULL, false, B, L,
                                  Ne, H, dh, scratch);
            memcpy(dx, dy, (size_t)(BL * d) * sizeof(float));
            linear_back_add(s, dx, tmp, &Ly->cq, g, dq, La->xs, BL);
            linear_back_add(s, d_enc, tmp, &Ly->ck, g, dk, A->enc, BNe);
            linear_back_add(s, d_enc, tmp, &Ly->cv, g, dv, A->enc, BNe);
        }

        /* xs = LN_s(x + o(selfattn(q(x), k(x), v(x)))) with the padding / causal mask */
        mf_layernorm_backward(pool, dy, grad_of(g, Ly->ln_attn.wi), grad_of(g, Ly->ln_attn.bi), dx, La->ys,
                              Ly->ln_attn.w, La->mean_s, La->rstd_s, BL, d);
        mf_linear_backward(pool, dc, grad_of(g, Ly->o.wi), grad_of(g, Ly->o.bi), dy, La->ctx, d, Ly->o.w, BL, d, d);
        memset(dq, 0, (size_t)(BL * d) * sizeof(float));
        memset(dk, 0, (size_t)(BL * d) * sizeof(float));
        memset(dv, 0, (size_t)(BL * d) * sizeof(float));
        mf_attention_backward(pool, dq, dk, dv, dc, La->att, La->q, d, La->k, d, La->v, d, A->mask, A->causal, B, L, L,
                              H, dh, scratch);
        memcpy(dx, dy, (size_t)(BL * d) * sizeof(float));
        linear_back_add(s, dx, tmp, &Ly->q, g, dq, La->x, BL);
        linear_back_add(s, dx, tmp, &Ly->k, g, dk, La->x, BL);
        linear_back_add(s, dx, tmp, &Ly->v, g, dv, La->x, BL);
    }

    /* Embeddings: x0 = LN_e(word[ids] + pos[t] (+ type[0])); rows scatter-add (repeated ids sum). */
    mf_layernorm_backward(pool, dy, grad_of(g, bert->ln_emb.wi), grad_of(g, bert->ln_emb.bi), dx, A->emb,
                          bert->ln_emb.w, A->mean_e, A->rstd_e, BL, d);
    float *gw = grad_of(g, bert->word_i), *gp = grad_of(g, bert->pos_i), *gt = grad_of(g, bert->tok_type_i);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < L; t++) {
            const float *r = dy + (b * L + t) * d;
            if (gw)
                mf_add_backward(NULL, gw + (int64_t)A->ids[b * L + t] * d, NULL, r, d);
            if (gp)
                mf_add_backward(NULL, gp + t * d, NULL, r, d);
            if (gt && bert->tok_type)
                mf_add_backward(NULL, gt, NULL, r, d);
        }
    return MF_OK;
}
