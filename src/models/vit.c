/*
 * models/vit.c: the Vision Transformer tower, shared by every family (models.md §1.3, §1.4, §4.4).
 *
 * Pre-LN blocks: x += proj(attn(LN1(x))); x += fc2(act(fc1(LN2(x)))). Patch embedding is an im2col
 * plus one GEMM (§1.3). Options in mf_vit_cfg cover the family differences: fused or separate q/k/v,
 * GELU(erf) or QuickGELU, an optional LayerNorm before the blocks, post-LN on all tokens or the CLS
 * row only, patch bias. Does not interpolate position embeddings (§2.6): the checkpoint's resolution
 * is the run resolution.
 *
 * Activations: one arena allocation per buffer per call, reset by the caller.
 */
#include "models/model_impl.h"
#include "nn/nn.h"

#include <string.h>

static void act_forward(struct mf_pool *pool, enum mf_act act, float *y, int64_t n)
{
    if (act == MF_ACT_GELU)
        mf_gelu_forward(pool, y, y, n);
    else
        mf_quickgelu_forward(pool, y, y, n);
}

enum mf_status mf_vit_forward(struct mf_session *s, const struct mf_vit *vit, const float *images, int64_t B,
                              float *out, struct mf_err *err)
{
    const struct mf_vit_cfg *c = &vit->cfg;
    const int64_t d = c->d, N = c->n_tok, G2 = c->grid * c->grid, PP3 = 3 * c->patch * c->patch;
    const int64_t BN = B * N, H = c->n_head, dh = d / H;
    struct mf_arena *a = &s->arena;
    struct mf_pool *pool = s->pool;

    float *patches = mf_arena_f32(a, B * G2 * PP3); /* (B, G*G, 3*P*P) */
    float *pe = mf_arena_f32(a, B * G2 * d);        /* (B, G*G, d) */
    float *x = mf_arena_f32(a, BN * d);             /* (B, N, d) residual stream */
    float *h = mf_arena_f32(a, BN * d);             /* (B, N, d) LayerNorm output */
    float *qkv = mf_arena_f32(a, BN * 3 * d);       /* (B, N, 3d) */
    float *ctx = mf_arena_f32(a, BN * d);           /* (B, N, d) attention context */
    float *ff = mf_arena_f32(a, BN * c->d_ff);      /* (B, N, d_ff) */
    float *y = mf_arena_f32(a, BN * d);             /* (B, N, d) sub-layer output */
    void *scratch = mf_arena_alloc(a, mf_attention_scratch_size(s->n_threads, N, N, dh));
    if (!patches || !pe || !x || !h || !qkv || !ctx || !ff || !y || !scratch)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the vision activations (batch %lld)", (long long)B);

    /* Embeddings: class token + patch tokens, plus position embeddings. */
    mf_patchify(pool, patches, images, B, c->image_size, c->patch);
    mf_linear_forward(pool, pe, patches, PP3, vit->patch_w, vit->patch_b, B * G2, PP3, d);
    for (int64_t b = 0; b < B; b++) {
        float *xb = x + b * N * d;
        for (int64_t i = 0; i < d; i++)
            xb[i] = vit->cls[i] + vit->pos[i];
        mf_add_forward(NULL, xb + d, pe + b * G2 * d, vit->pos + d, G2 * d);
    }
    if (c->ln_pre)
        mf_layernorm_forward(pool, x, NULL, NULL, x, vit->ln_pre.w, vit->ln_pre.b, BN, d, c->eps);

    for (int64_t l = 0; l < c->n_layer; l++) {
        const struct mf_vit_layer *L = &vit->layers[l];
        mf_layernorm_forward(pool, h, NULL, NULL, x, L->ln1.w, L->ln1.b, BN, d, c->eps);
        if (c->fused_qkv) {
            mf_model_linear(s, qkv, h, d, &L->qkv, BN, NULL);
        } else {
            /* q, k, v side by side in one (B, N, 3d) buffer so attention sees the fused layout. */
            float *tmp = y;
            const struct mf_linear *lins[3] = {&L->q, &L->k, &L->v};
            for (int j = 0; j < 3; j++) {
                mf_model_linear(s, tmp, h, d, lins[j], BN, NULL);
                for (int64_t t = 0; t < BN; t++)
                    memcpy(qkv + t * 3 * d + j * d, tmp + t * d, (size_t)d * sizeof(float));
            }
        }
        mf_attention_forward(pool, ctx, NULL, qkv, 3 * d, qkv + d, 3 * d, qkv + 2 * d, 3 * d, NULL, false, B, N, N,
                             H, dh, scratch);
        mf_model_linear(s, y, ctx, d, &L->proj, BN, NULL);
        mf_add_forward(pool, x, x, y, BN * d);

        mf_layernorm_forward(pool, h, NULL, NULL, x, L->ln2.w, L->ln2.b, BN, d, c->eps);
        mf_model_linear(s, ff, h, d, &L->fc1, BN, NULL);
        act_forward(pool, c->act, ff, BN * c->d_ff);
        mf_model_linear(s, y, ff, c->d_ff, &L->fc2, BN, NULL);
        mf_add_forward(pool, x, x, y, BN * d);
    }

    if (c->post_ln_cls_only) {
        memcpy(out, x, (size_t)(BN * d) * sizeof(float));
        for (int64_t b = 0; b < B; b++)
            mf_layernorm_forward(NULL, out + b * N * d, NULL, NULL, x + b * N * d, vit->ln_post.w, vit->ln_post.b, 1,
                                 d, c->eps);
    } else {
        mf_layernorm_forward(pool, out, NULL, NULL, x, vit->ln_post.w, vit->ln_post.b, BN, d, c->eps);
    }
    return MF_OK;
}
