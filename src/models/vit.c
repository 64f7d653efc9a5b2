/*
 * models/vit.c: the Vision Transformer tower, shared by every family (models.md §1.3, §1.4, §4.4).
 *
 * Pre-LN blocks: x += proj(attn(LN1(x))); x += fc2(act(fc1(LN2(x)))). Patch embedding is an im2col
 * plus one GEMM (§1.3). Options in mf_vit_cfg cover the family differences: fused or separate q/k/v,
 * GELU(erf) or QuickGELU, an optional LayerNorm before the blocks, post-LN on all tokens or the CLS
 * row only, patch bias. Does not interpolate position embeddings (§2.6): the checkpoint's resolution
 * is the run resolution.
 *
 * Activations: one arena allocation per buffer per call, reset by the caller. The training forward
 * is the same code with per-layer buffers kept in struct mf_vit_acts (models/grad.h) instead of
 * reused ones, so both give the same bits; mf_vit_backward walks the blocks in reverse with the
 * nn layer's _backward kernels.
 */
#include "models/grad.h"
#include "nn/nn.h"

#include <string.h>

static void act_backward(struct mf_pool *pool, enum mf_act act, float *dx, const float *dy, const float *x,
                         int64_t n)
{
    if (act == MF_ACT_GELU)
        mf_gelu_backward(pool, dx, dy, x, n);
    else
        mf_quickgelu_backward(pool, dx, dy, x, n);
}

/* One forward for both modes: A == NULL reuses one buffer per role (inference); otherwise every
 * role gets its own buffer per layer, kept in A for the backward. */
static enum mf_status vit_run(struct mf_session *s, const struct mf_vit *vit, const float *images, int64_t B,
                              float *out, struct mf_vit_acts *A, struct mf_err *err)
{
    const struct mf_vit_cfg *c = &vit->cfg;
    const int64_t d = c->d, N = c->n_tok, G2 = c->grid * c->grid, PP3 = 3 * c->patch * c->patch;
    const int64_t BN = B * N, H = c->n_head, dh = d / H, nl = c->n_layer;
    struct mf_arena *a = &s->arena;
    struct mf_pool *pool = s->pool;
    const bool tr = A != NULL;

    float *patches = mf_arena_f32(a, B * G2 * PP3); /* (B, G*G, 3*P*P) */
    float *pe = mf_arena_f32(a, B * G2 * d);        /* (B, G*G, d) */
    float *x = mf_arena_f32(a, BN * d);             /* (B, N, d) residual stream (inference) / embeddings */
    float *h = tr ? NULL : mf_arena_f32(a, BN * d); /* (B, N, d) LayerNorm output */
    float *qkv = tr ? NULL : mf_arena_f32(a, BN * 3 * d); /* (B, N, 3d) */
    float *ctx = tr ? NULL : mf_arena_f32(a, BN * d);     /* (B, N, d) attention context */
    float *ff = tr ? NULL : mf_arena_f32(a, BN * c->d_ff); /* (B, N, d_ff) */
    float *y = mf_arena_f32(a, BN * d);             /* (B, N, d) sub-layer output */
    void *scratch = mf_arena_alloc(a, mf_attention_scratch_size(s->n_threads, N, N, dh));
    if (!patches || !pe || !x || (!tr && (!h || !qkv || !ctx || !ff)) || !y || !scratch)
        goto nomem;
    if (tr) {
        memset(A, 0, sizeof *A);
        A->B = B;
        A->patches = patches;
        A->x0 = x;
        if (!(A->layers = mf_arena_alloc(a, (size_t)MF_MAX(nl, 1) * sizeof *A->layers)))
            goto nomem;
        for (int64_t l = 0; l <= nl; l++) {
            float *xl = mf_arena_f32(a, BN * d);
            if (!xl)
                goto nomem;
            if (l == nl)
                A->xf = xl;
            else
                A->layers[l].x = xl;
        }
        if (!(A->meanf = mf_arena_f32(a, BN)) || !(A->rstdf = mf_arena_f32(a, BN)))
            goto nomem;
        if (c->ln_pre && (!(A->mean0 = mf_arena_f32(a, BN)) || !(A->rstd0 = mf_arena_f32(a, BN))))
            goto nomem;
        for (int64_t l = 0; l < nl; l++) {
            struct mf_vit_layer_acts *La = &A->layers[l];
            if (!(La->h1 = mf_arena_f32(a, BN * d)) || !(La->mean1 = mf_arena_f32(a, BN)) ||
                !(La->rstd1 = mf_arena_f32(a, BN)) || !(La->qkv = mf_arena_f32(a, BN * 3 * d)) ||
                !(La->att = mf_arena_f32(a, B * H * N * N)) || !(La->ctx = mf_arena_f32(a, BN * d)) ||
                !(La->xm = mf_arena_f32(a, BN * d)) || !(La->h2 = mf_arena_f32(a, BN * d)) ||
                !(La->mean2 = mf_arena_f32(a, BN)) || !(La->rstd2 = mf_arena_f32(a, BN)) ||
                !(La->ff_pre = mf_arena_f32(a, BN * c->d_ff)) || !(La->ff = mf_arena_f32(a, BN * c->d_ff)))
                goto nomem;
        }
    }

    /* Embeddings: class token + patch tokens, plus position embeddings. */
    mf_patchify(pool, patches, images, B, c->image_size, c->patch);
    mf_linear_forward(pool, pe, patches, PP3, vit->patch_w, vit->patch_b, B * G2, PP3, d);
    for (int64_t b = 0; b < B; b++) {
        float *xb = x + b * N * d;
        for (int64_t i = 0; i < d; i++)
            xb[i] = vit->cls[i] + vit->pos[i];
        mf_add_forward(NULL, xb + d, pe + b * G2 * d, vit->pos + d, G2 * d);
    }
    float *xcur = tr ? (nl ? A->layers[0].x : A->xf) : x;
    if (c->ln_pre)
        mf_layernorm_forward(pool, xcur, tr ? A->mean0 : NULL, tr ? A->rstd0 : NULL, x, vit->ln_pre.w,
                             vit->ln_pre.b, BN, d, c->eps);
    else if (xcur != x)
        memcpy(xcur, x, (size_t)(BN * d) * sizeof(float));

    for (int64_t l = 0; l < nl; l++) {
        const struct mf_vit_layer *L = &vit->layers[l];
        struct mf_vit_layer_acts *La = tr ? &A->layers[l] : NULL;
        float *xin = xcur;
        float *h1 = tr ? La->h1 : h, *h2 = tr ? La->h2 : h, *qkv_l = tr ? La->qkv : qkv, *ctx_l = tr ? La->ctx : ctx;
        float *xm = tr ? La->xm : x, *ffp = tr ? La->ff_pre : ff, *ffa = tr ? La->ff : ff;
        float *xout = tr ? (l + 1 < nl ? A->layers[l + 1].x : A->xf) : x;

        mf_layernorm_forward(pool, h1, tr ? La->mean1 : NULL, tr ? La->rstd1 : NULL, xin, L->ln1.w, L->ln1.b, BN, d,
                             c->eps);
        if (c->fused_qkv) {
            mf_model_linear(s, qkv_l, h1, d, &L->qkv, BN, NULL);
        } else {
            /* q, k, v side by side in one (B, N, 3d) buffer so attention sees the fused layout. */
            float *tmp = y;
            const struct mf_linear *lins[3] = {&L->q, &L->k, &L->v};
            for (int j = 0; j < 3; j++) {
                mf_model_linear(s, tmp, h1, d, lins[j], BN, NULL);
                for (int64_t t = 0; t < BN; t++)
                    memcpy(qkv_l + t * 3 * d + j * d, tmp + t * d, (size_t)d * sizeof(float));
            }
        }
        mf_attention_forward(pool, ctx_l, tr ? La->att : NULL, qkv_l, 3 * d, qkv_l + d, 3 * d, qkv_l + 2 * d, 3 * d,
                             NULL, false, B, N, N, H, dh, scratch);
        mf_model_linear_res(s, xm, xin, ctx_l, d, &L->proj, BN, NULL);

        mf_layernorm_forward(pool, h2, tr ? La->mean2 : NULL, tr ? La->rstd2 : NULL, xm, L->ln2.w, L->ln2.b, BN, d,
                             c->eps);
        mf_model_ffn_in(s, ffp, ffa, h2, d, &L->fc1, BN, NULL, c->act == MF_ACT_QUICKGELU);
        mf_model_linear_res(s, xout, xm, ffa, c->d_ff, &L->fc2, BN, NULL);
        xcur = xout;
    }

    if (c->post_ln_cls_only) {
        memcpy(out, xcur, (size_t)(BN * d) * sizeof(float));
        for (int64_t b = 0; b < B; b++)
            mf_layernorm_forward(NULL, out + b * N * d, NULL, NULL, xcur + b * N * d, vit->ln_post.w, vit->ln_post.b,
                                 1, d, c->eps);
    } else {
        mf_layernorm_forward(pool, out, tr ? A->meanf : NULL, tr ? A->rstdf : NULL, xcur, vit->ln_post.w,
                             vit->ln_post.b, BN, d, c->eps);
    }
    return MF_OK;
nomem:
    return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the vision activations (batch %lld)", (long long)B);
}

enum mf_status mf_vit_forward(struct mf_session *s, const struct mf_vit *vit, const float *images, int64_t B,
                              float *out, struct mf_err *err)
{
    return vit_run(s, vit, images, B, out, NULL, err);
}

enum mf_status mf_vit_forward_train(struct mf_session *s, const struct mf_vit *vit, const float *images, int64_t B,
                                    float *out, struct mf_vit_acts *acts, struct mf_err *err)
{
    return vit_run(s, vit, images, B, out, acts, err);
}

static float *grad_of(const struct mf_grads *g, int i) { return i >= 0 ? mf_grads_tensor(g, (size_t)i) : NULL; }

enum mf_status mf_vit_backward(struct mf_session *s, const struct mf_vit *vit, const struct mf_vit_acts *A,
                               const float *d_out, struct mf_grads *g, struct mf_err *err)
{
    const struct mf_vit_cfg *c = &vit->cfg;
    const int64_t B = A->B, d = c->d, N = c->n_tok, G2 = c->grid * c->grid, PP3 = 3 * c->patch * c->patch;
    const int64_t BN = B * N, H = c->n_head, dh = d / H, F = c->d_ff;
    struct mf_arena *a = &s->arena;
    struct mf_pool *pool = s->pool;

    if (c->post_ln_cls_only)
        return mf_err_set(err, MF_ERR_UNSUPPORTED, "vision backward: post-LayerNorm on the CLS row only (CLIP) is "
                                                   "not implemented");
    float *dx = mf_arena_f32(a, BN * d);       /* (B, N, d) gradient of the residual stream */
    float *dt = mf_arena_f32(a, BN * d);       /* (B, N, d) scratch gradient */
    float *dh_ = mf_arena_f32(a, BN * d);      /* (B, N, d) gradient of a LayerNorm output */
    float *dqkv = mf_arena_f32(a, BN * 3 * d); /* (B, N, 3d) */
    float *dff = mf_arena_f32(a, BN * F);      /* (B, N, d_ff) */
    float *dpe = mf_arena_f32(a, B * G2 * d);  /* (B, G*G, d) */
    float *dsep = c->fused_qkv ? NULL : mf_arena_f32(a, BN * d); /* (B, N, d) separate q/k/v */
    void *scratch = mf_arena_alloc(a, mf_attention_scratch_size(s->n_threads, N, N, dh));
    if (!dx || !dt || !dh_ || !dqkv || !dff || !dpe || (!c->fused_qkv && !dsep) || !scratch)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the vision gradients (batch %lld)", (long long)B);

    mf_layernorm_backward(pool, dx, grad_of(g, vit->ln_post.wi), grad_of(g, vit->ln_post.bi), d_out, A->xf,
                          vit->ln_post.w, A->meanf, A->rstdf, BN, d);
    for (int64_t l = c->n_layer - 1; l >= 0; l--) {
        const struct mf_vit_layer *L = &vit->layers[l];
        const struct mf_vit_layer_acts *La = &A->layers[l];
        /* x_out = xm + fc2(act(fc1(LN2(xm)))) */
        mf_linear_backward(pool, dff, grad_of(g, L->fc2.wi), grad_of(g, L->fc2.bi), dx, La->ff, F, L->fc2.w, BN, F, d);
        act_backward(pool, c->act, dff, dff, La->ff_pre, BN * F);
        mf_linear_backward(pool, dh_, grad_of(g, L->fc1.wi), grad_of(g, L->fc1.bi), dff, La->h2, d, L->fc1.w, BN, d, F);
        mf_layernorm_backward(pool, dt, grad_of(g, L->ln2.wi), grad_of(g, L->ln2.bi), dh_, La->xm, L->ln2.w, La->mean2,
                              La->rstd2, BN, d);
        mf_add_forward(pool, dx, dx, dt, BN * d);
        /* xm = x + proj(attn(LN1(x))) */
        mf_linear_backward(pool, dt, grad_of(g, L->proj.wi), grad_of(g, L->proj.bi), dx, La->ctx, d, L->proj.w, BN, d,
                           d);
        memset(dqkv, 0, (size_t)(BN * 3 * d) * sizeof(float));
        mf_attention_backward(pool, dqkv, dqkv + d, dqkv + 2 * d, dt, La->att, La->qkv, 3 * d, La->qkv + d, 3 * d,
                              La->qkv + 2 * d, 3 * d, NULL, false, B, N, N, H, dh, scratch);
        if (c->fused_qkv) {
            mf_linear_backward(pool, dh_, grad_of(g, L->qkv.wi), grad_of(g, L->qkv.bi), dqkv, La->h1, d, L->qkv.w, BN,
                               d, 3 * d);
        } else {
            const struct mf_linear *lins[3] = {&L->q, &L->k, &L->v};
            for (int j = 0; j < 3; j++) {
                for (int64_t t = 0; t < BN; t++)
                    memcpy(dt + t * d, dqkv + t * 3 * d + j * d, (size_t)d * sizeof(float));
                mf_linear_backward(pool, j == 0 ? dh_ : dsep, grad_of(g, lins[j]->wi), grad_of(g, lins[j]->bi), dt,
                                   La->h1, d, lins[j]->w, BN, d, d);
                if (j > 0)
                    mf_add_forward(pool, dh_, dh_, dsep, BN * d);
            }
        }
        mf_layernorm_backward(pool, dt, grad_of(g, L->ln1.wi), grad_of(g, L->ln1.bi), dh_, La->x, L->ln1.w, La->mean1,
                              La->rstd1, BN, d);
        mf_add_forward(pool, dx, dx, dt, BN * d);
    }
    if (c->ln_pre) {
        mf_layernorm_backward(pool, dt, grad_of(g, vit->ln_pre.wi), grad_of(g, vit->ln_pre.bi), dx, A->x0,
                              vit->ln_pre.w, A->mean0, A->rstd0, BN, d);
        float *tmp = dx;
        dx = dt;
        dt = tmp;
    }

    /* Embeddings: x0[b,0] = cls + pos[0]; x0[b,1+p] = patch_w patches[b,p] + patch_b + pos[1+p]. */
    float *gcls = grad_of(g, vit->cls_i), *gpos = grad_of(g, vit->pos_i);
    for (int64_t b = 0; b < B; b++) {
        const float *db = dx + b * N * d;
        if (gcls)
            for (int64_t i = 0; i < d; i++)
                gcls[i] += db[i];
        if (gpos)
            mf_add_backward(NULL, gpos, NULL, db, N * d);
        memcpy(dpe + b * G2 * d, db + d, (size_t)(G2 * d) * sizeof(float));
    }
    mf_linear_backward(pool, NULL, grad_of(g, vit->patch_wi), grad_of(g, vit->patch_bi), dpe, A->patches, PP3,
                       vit->patch_w, B * G2, PP3, d);
    return MF_OK;
}
