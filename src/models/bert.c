/*
 * models/bert.c: the post-LN BERT stack with optional cross-attention and causal masking
 * (models.md §1.2, §1.4, §4.4): BLIP's text encoder (unimodal and image-grounded) and text decoder;
 * later X-VLM's text and fusion layers.
 *
 * Per layer: x = LN(x + o(selfattn(x))); if cross: x = LN(x + co(crossattn(x, enc))); x = LN(x +
 * out(gelu(inter(x)))). Padding keys are skipped (bit-identical to the -10000 additive mask,
 * §1.2). Padding rows are computed like every other row (as the reference does) but are reported
 * as invalid to the calibration observer. Does not compute pooling or heads (family files do).
 */
#include "models/model_impl.h"
#include "nn/nn.h"

#include <string.h>

enum mf_status mf_bert_forward(struct mf_session *s, const struct mf_bert *bert, const int32_t *ids,
                               const int32_t *mask, int64_t B, int64_t L, const float *enc, int64_t Ne,
                               bool causal, float *out, struct mf_err *err)
{
    const struct mf_bert_cfg *c = &bert->cfg;
    const int64_t d = c->d, BL = B * L, H = c->n_head, dh = d / H, ew = c->enc_width;
    struct mf_arena *a = &s->arena;
    struct mf_pool *pool = s->pool;

    if (L > c->max_pos)
        return mf_err_set(err, MF_ERR_RANGE, "text length %lld exceeds the model's %lld positions", (long long)L,
                          (long long)c->max_pos);
    for (int64_t i = 0; i < BL; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return mf_err_set(err, MF_ERR_RANGE, "token id %d outside the vocabulary of %lld", ids[i],
                              (long long)c->vocab);

    float *x = out;                                 /* (B, L, d) residual stream, in place in out */
    float *q = mf_arena_f32(a, BL * d);             /* (B, L, d) */
    float *k = mf_arena_f32(a, MF_MAX(BL, B * Ne) * d); /* (B, max(L, Ne), d) */
    float *v = mf_arena_f32(a, MF_MAX(BL, B * Ne) * d);
    float *ctx = mf_arena_f32(a, BL * d);
    float *y = mf_arena_f32(a, BL * d);
    float *ff = mf_arena_f32(a, BL * c->d_ff);
    int64_t Tk = MF_MAX(L, Ne);
    void *scratch = mf_arena_alloc(a, mf_attention_scratch_size(s->n_threads, L, Tk, dh));
    if (!q || !k || !v || !ctx || !y || !ff || !scratch)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the text activations (batch %lld)", (long long)B);

    /* Embeddings: word + position (+ token type 0), then LayerNorm. */
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < L; t++) {
            float *xr = x + (b * L + t) * d;
            const float *w = bert->word + (int64_t)ids[b * L + t] * d, *p = bert->pos + t * d;
            if (bert->tok_type)
                for (int64_t i = 0; i < d; i++)
                    xr[i] = (w[i] + bert->tok_type[i]) + p[i];
            else
                for (int64_t i = 0; i < d; i++)
                    xr[i] = w[i] + p[i];
        }
    mf_layernorm_forward(pool, x, NULL, NULL, x, bert->ln_emb.w, bert->ln_emb.b, BL, d, c->eps);

    for (int64_t l = 0; l < c->n_layer; l++) {
        const struct mf_bert_layer *Ly = &bert->layers[l];
        /* self-attention */
        mf_model_linear(s, q, x, d, &Ly->q, BL, mask);
        mf_model_linear(s, k, x, d, &Ly->k, BL, mask);
        mf_model_linear(s, v, x, d, &Ly->v, BL, mask);
        mf_attention_forward(pool, ctx, NULL, q, d, k, d, v, d, mask, causal, B, L, L, H, dh, scratch);
        mf_model_linear(s, y, ctx, d, &Ly->o, BL, mask);
        mf_add_forward(pool, y, y, x, BL * d);
        mf_layernorm_forward(pool, x, NULL, NULL, y, Ly->ln_attn.w, Ly->ln_attn.b, BL, d, c->eps);

        /* cross-attention to the image tokens (all keys valid) */
        if (Ly->has_cross && enc) {
            mf_model_linear(s, q, x, d, &Ly->cq, BL, mask);
            mf_model_linear(s, k, enc, ew, &Ly->ck, B * Ne, NULL);
            mf_model_linear(s, v, enc, ew, &Ly->cv, B * Ne, NULL);
            mf_attention_forward(pool, ctx, NULL, q, d, k, d, v, d, NULL, false, B, L, Ne, H, dh, scratch);
            mf_model_linear(s, y, ctx, d, &Ly->co, BL, mask);
            mf_add_forward(pool, y, y, x, BL * d);
            mf_layernorm_forward(pool, x, NULL, NULL, y, Ly->ln_cross.w, Ly->ln_cross.b, BL, d, c->eps);
        }

        /* feed-forward */
        mf_model_linear(s, ff, x, d, &Ly->inter, BL, mask);
        mf_gelu_forward(pool, ff, ff, BL * c->d_ff);
        mf_model_linear(s, y, ff, c->d_ff, &Ly->out, BL, mask);
        mf_add_forward(pool, y, y, x, BL * d);
        mf_layernorm_forward(pool, x, NULL, NULL, y, Ly->ln_out.w, Ly->ln_out.b, BL, d, c->eps);
    }
    return MF_OK;
}
