/*
 * models/grad.h: the model-level backward pass (llm.c style): training-mode forwards that keep
 * their activations in the session arena, backwards for the ViT tower, the BERT stack and the BLIP
 * heads, and a gradient block laid out like the model's tensors.
 *
 *     struct mf_grads *g;  mf_grads_create(m, &g, &err);  mf_grads_zero(g);
 *     mf_arena_reset(&s->arena);                        // one reset per training step
 *     struct mf_vit_acts va;  struct mf_bert_acts ta;
 *     mf_vit_forward_train(s, &m->vision, images, B, emb, &va, &err);           // emb (B, N, dv)
 *     mf_bert_forward_train(s, &m->text, ids0, mask, B, L, emb, N, false, h, &ta, &err);
 *     ... loss -> d_h (B, L, d), d_emb (B, N, dv) zeroed ...
 *     mf_bert_backward(s, &m->text, &ta, d_h, d_emb, g, &err);                 // d_emb += ...
 *     mf_vit_backward(s, &m->vision, &va, d_emb, g, &err);
 *     const float *gw = mf_grads_tensor(g, i);           // gradient of model tensor i, or NULL
 *
 * Conventions. Parameter gradients ACCUMULATE (+=) into g (zero it yourself between steps).
 * Input gradients: mf_bert_backward's d_enc and every head backward's d_h ACCUMULATE; d_out is
 * read only. A tied tensor's gradient goes to its owner (the index in the struct's wi/bi/..._i
 * fields, filled by layout.c): the original layout's decoder copies into the text encoder's
 * tensors, the LM decoder weight into the word embeddings. Acts live in the session arena and keep
 * pointers to the caller's inputs (images are not kept; ids, mask, enc are): both must outlive the
 * backward, and the arena must not be reset in between. All buffers f32.
 *
 * Does not: losses (ITC/ITM/LM live on top of this), optimisers, input-image gradients, the CLIP
 * post-LN-on-CLS-only variant (backward returns MF_ERR_UNSUPPORTED). Threads: the session's pool;
 * a given thread count gives the same bits (the nn kernels' contract).
 *
 * Reference: spec/models.md §1 (blocks), §4.4 (BLIP forward), §4.5/§4.7 (tying); derivatives of
 * nn/nn.h's _backward kernels; llm.c train_gpt2.c (explicit activation and gradient buffers).
 */
#ifndef MF_MODELS_GRAD_H
#define MF_MODELS_GRAD_H

#include "models/model_impl.h"

/* One f32 buffer per model tensor that owns a gradient (every tensor some forward weight pointer
 * accumulates into), same numel as the tensor; NULL for unbound tensors and tied copies. */
struct mf_grads {
    const struct mf_model *m;
    size_t n;      /* model tensors */
    float **t;     /* (n) */
    float *block;  /* all buffers, one allocation */
    size_t numel;  /* floats in block */
};

enum mf_status mf_grads_create(const struct mf_model *m, struct mf_grads **out, struct mf_err *err);
void mf_grads_zero(struct mf_grads *g);
void mf_grads_free(struct mf_grads *g);
/* Gradient of model tensor i (numel of the tensor), NULL when it has none or i is out of range. */
float *mf_grads_tensor(const struct mf_grads *g, size_t i);

/* ---- ViT ---------------------------------------------------------------------------------- */

struct mf_vit_layer_acts {
    float *x;            /* (B, N, d) block input (LN1 input) */
    float *h1;           /* (B, N, d) LN1 output (qkv / q,k,v input) */
    float *mean1, *rstd1; /* (B*N) */
    float *qkv;          /* (B, N, 3d) q | k | v */
    float *att;          /* (B, H, N, N) attention probabilities */
    float *ctx;          /* (B, N, d) attention context (proj input) */
    float *xm;           /* (B, N, d) x + proj(ctx) (LN2 input) */
    float *h2;           /* (B, N, d) LN2 output (fc1 input) */
    float *mean2, *rstd2; /* (B*N) */
    float *ff_pre;       /* (B, N, d_ff) fc1 output */
    float *ff;           /* (B, N, d_ff) act(ff_pre) (fc2 input) */
};

struct mf_vit_acts {
    int64_t B;
    float *patches;       /* (B, G*G, 3*P*P) im2col of the images (patch weight gradient) */
    float *x0;            /* (B, N, d) embeddings (the ln_pre input when the tower has one) */
    float *mean0, *rstd0; /* (B*N) ln_pre, or NULL */
    struct mf_vit_layer_acts *layers; /* (n_layer) */
    float *xf;            /* (B, N, d) last residual (post-LN input) */
    float *meanf, *rstdf; /* (B*N) */
};

/* The inference forward with acts kept (same ops, same bits as mf_vit_forward); out (B, N, d). */
enum mf_status mf_vit_forward_train(struct mf_session *s, const struct mf_vit *vit, const float *images, int64_t B,
                                    float *out, struct mf_vit_acts *acts, struct mf_err *err);
/* d_out (B, N, d): gradient of out. Accumulates every vision parameter gradient into g. */
enum mf_status mf_vit_backward(struct mf_session *s, const struct mf_vit *vit, const struct mf_vit_acts *acts,
                               const float *d_out, struct mf_grads *g, struct mf_err *err);

/* ---- BERT --------------------------------------------------------------------------------- */

struct mf_bert_layer_acts {
    float *x;              /* (B, L, d) layer input (q, k, v input; residual) */
    float *q, *k, *v;      /* (B, L, d) */
    float *att;            /* (B, H, L, L) */
    float *ctx;            /* (B, L, d) */
    float *ys;             /* (B, L, d) x + o(ctx) (LN input) */
    float *mean_s, *rstd_s; /* (B*L) */
    float *xs;             /* (B, L, d) after the self-attention LN */
    /* cross-attention (NULL when the layer has none or enc was NULL) */
    float *cq;             /* (B, L, d) */
    float *ck, *cv;        /* (B, Ne, d) */
    float *catt;           /* (B, H, L, Ne) */
    float *cctx;           /* (B, L, d) */
    float *yc;             /* (B, L, d) xs + co(cctx) */
    float *mean_c, *rstd_c; /* (B*L) */
    float *xc;             /* (B, L, d) after the cross LN (= xs without cross) */
    float *ff_pre, *ff;    /* (B, L, d_ff) inter output, GELU of it */
    float *yf;             /* (B, L, d) xc + out(ff) */
    float *mean_f, *rstd_f; /* (B*L); the layer output LN(yf) is the next layer's x */
};

struct mf_bert_acts {
    int64_t B, L, Ne;
    bool causal;
    const int32_t *ids, *mask; /* (B, L) the caller's */
    const float *enc;          /* (B, Ne, enc_width) the caller's, or NULL */
    float *emb;                /* (B, L, d) word + pos (+ type) (embedding LN input) */
    float *mean_e, *rstd_e;    /* (B*L) */
    struct mf_bert_layer_acts *layers; /* (n_layer) */
};

/* The inference forward with acts kept (same ops, same bits as mf_bert_forward); out (B, L, d). */
enum mf_status mf_bert_forward_train(struct mf_session *s, const struct mf_bert *bert, const int32_t *ids,
                                     const int32_t *mask, int64_t B, int64_t L, const float *enc, int64_t Ne,
                                     bool causal, float *out, struct mf_bert_acts *acts, struct mf_err *err);
/* d_out (B, L, d) read only; d_enc (B, Ne, enc_width) ACCUMULATES the gradient of enc (may be NULL,
 * ignored when the forward had no enc). Accumulates every parameter gradient into g. */
enum mf_status mf_bert_backward(struct mf_session *s, const struct mf_bert *bert, const struct mf_bert_acts *acts,
                                const float *d_out, float *d_enc, struct mf_grads *g, struct mf_err *err);

/* ---- BLIP heads (blip.c) ------------------------------------------------------------------ */

/* ITC feature of row 0 of each of B sequences h (B, T, proj->in): z = proj(h[:, 0]) (B, P) kept
 * for the backward, feat = z / max(||z||, 1e-12) (B, P). */
void mf_head_proj_forward(struct mf_session *s, const struct mf_linear *proj, const float *h, int64_t B, int64_t T,
                          float *z, float *feat);
/* d_feat (B, P) -> d_h row 0 of each sequence (B, T, in) ACCUMULATES; proj gradients into g. */
enum mf_status mf_head_proj_backward(struct mf_session *s, const struct mf_linear *proj, const float *h, int64_t B,
                                     int64_t T, const float *z, const float *d_feat, float *d_h, struct mf_grads *g,
                                     struct mf_err *err);
/* ITM logits (B, 2) = itm_head(h[:, 0]) of the image-grounded hidden h (B, T, d). */
void mf_head_itm_forward(struct mf_session *s, const float *h, int64_t B, int64_t T, float *logits);
/* d_logits (B, 2) -> d_h row 0 ACCUMULATES; itm_head gradients into g. */
enum mf_status mf_head_itm_backward(struct mf_session *s, const float *h, int64_t B, int64_t T,
                                    const float *d_logits, float *d_h, struct mf_grads *g, struct mf_err *err);

struct mf_lm_acts {
    float *pre;          /* (T, d) dense(h) */
    float *act;          /* (T, d) GELU(pre) (LN input) */
    float *mean, *rstd;  /* (T) */
    float *z;            /* (T, d) LN output (decoder input) */
};
/* LM head on T rows of decoder hidden h (T, d): logits (T, V) = LN(GELU(dense(h))) W_dec^T + b.
 * acts NULL = inference (what mf_decoder_pairs runs). */
enum mf_status mf_lm_forward(struct mf_session *s, const float *h, int64_t T, float *logits, struct mf_lm_acts *acts,
                             struct mf_err *err);
/* d_logits (T, V) -> d_h (T, d) ACCUMULATES; dense, LN, decoder weight (into the word embeddings'
 * owner when tied) and bias gradients into g. */
enum mf_status mf_lm_backward(struct mf_session *s, const float *h, int64_t T, const struct mf_lm_acts *acts,
                              const float *d_logits, float *d_h, struct mf_grads *g, struct mf_err *err);

#endif
