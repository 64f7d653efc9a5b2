/*
 * models/model_impl.h: the loaded model's internal structure, shared by the family files.
 *
 * Layers: vit.c (ViT tower: BLIP, and later CLIP/X-VLM vision), bert.c (BERT stack with optional
 * cross-attention and causal masking: BLIP text encoder/decoder, later X-VLM text/fusion),
 * layout.c (generic name-table binder: checkpoint tensor -> struct field, shape check, f32
 * conversion), blip.c (BLIP: layout detection, config, heads, public forward entry points).
 *
 * Memory: the model owns the checkpoint mapping and one f32 block holding every weight that was
 * not already f32 and aligned in the mapping; all float pointers below point into one of the two.
 * A session owns its pool and arena; activations live in the arena for one call.
 */
#ifndef MF_MODELS_MODEL_IMPL_H
#define MF_MODELS_MODEL_IMPL_H

#include "core/arena.h"
#include "core/common.h"
#include "core/pool.h"
#include "multiflow/checkpoint.h"
#include "multiflow/model.h"
#include "text/wordpiece.h"

enum mf_act { MF_ACT_GELU = 0, MF_ACT_QUICKGELU = 1 };

struct mf_linear {
    const float *w; /* (out, in) */
    const float *b; /* (out) or NULL */
    int64_t out, in;
    int tid;        /* index of the weight in the model's tensor list, -1 if none */
    int wi, bi;     /* model tensor index that receives the gradient of w / b (the owner of a tied
                       copy), -1 if none; filled by the binder (layout.c) */
};

struct mf_ln {
    const float *w, *b; /* (d) */
    int64_t d;
    int wi, bi;         /* gradient owner indices (see struct mf_linear), -1 if none */
};

struct mf_vit_cfg {
    int64_t d, n_layer, n_head, d_ff, patch, image_size, grid, n_tok;
    float eps;
    enum mf_act act;
    bool fused_qkv;        /* BLIP: one qkv linear (3d, d); CLIP/X-VLM: q, k, v */
    bool ln_pre;           /* LayerNorm before the blocks (CLIP, X-VLM) */
    bool post_ln_cls_only; /* HF CLIP normalises only the CLS row */
    bool patch_bias;
};

struct mf_vit_layer {
    struct mf_ln ln1, ln2;
    struct mf_linear qkv, q, k, v, proj, fc1, fc2;
};

struct mf_vit {
    struct mf_vit_cfg cfg;
    const float *patch_w; /* (d, 3*P*P) flattened conv weight in (c, ky, kx) order */
    const float *patch_b; /* (d) or NULL */
    const float *cls;     /* (d) */
    const float *pos;     /* (n_tok, d) */
    struct mf_ln ln_pre, ln_post;
    struct mf_vit_layer *layers; /* (n_layer) */
    int patch_wi, patch_bi, cls_i, pos_i; /* gradient owner indices of the raw tensors, -1 if none */
};

struct mf_bert_cfg {
    int64_t d, n_layer, n_head, d_ff, vocab, max_pos, enc_width;
    int64_t cross_from; /* first layer with cross-attention (0 for BLIP; n_layer = none) */
    float eps;
    bool token_type;    /* X-VLM adds token_type_embeddings[0] */
};

struct mf_bert_layer {
    struct mf_linear q, k, v, o;
    struct mf_ln ln_attn;
    bool has_cross;
    struct mf_linear cq, ck, cv, co;
    struct mf_ln ln_cross;
    struct mf_linear inter, out;
    struct mf_ln ln_out;
};

struct mf_bert {
    struct mf_bert_cfg cfg;
    const float *word;      /* (vocab, d) */
    const float *pos;       /* (max_pos, d) */
    const float *tok_type;  /* (2, d) or NULL */
    struct mf_ln ln_emb;
    struct mf_bert_layer *layers; /* (n_layer) */
    int word_i, pos_i, tok_type_i; /* gradient owner indices of the raw tensors, -1 if none */
};

struct mf_lm_head {
    struct mf_linear dense; /* (d, d) */
    struct mf_ln ln;
    const float *dec_w;     /* (V, d): tied to the word embeddings when absent */
    const float *dec_b;     /* (V) */
    const float *dec_b_alt; /* (V) the same bias under its alias name, when present */
    int64_t V;
    int dec_wi, dec_bi;     /* gradient owners: dec_wi is the word embeddings' owner when tied */
};

/* Calibration hook. Called by every linear layer that has a tid (the prunable weight's model tensor
 * index), with its input rows x (T, in) (row stride ldx), the per-row validity (NULL = all rows
 * valid: image tokens; else the text attention mask, padding = 0) and the number of sequences the
 * T rows belong to (the batch size). */
typedef void (*mf_observe_fn)(void *ud, int tid, const float *x, int64_t ldx, int64_t T, int64_t in,
                              const int32_t *row_valid, int64_t n_seq);

struct mf_model {
    struct mf_model_info info;
    char *path;                      /* as given to mf_model_load */
    char vocab_path[4096];           /* the vocabulary file in use */
    struct mf_checkpoint *ck;
    struct mf_vocab *vocab;
    struct mf_model_tensor *tensors; /* (n_tensors), one per checkpoint tensor, checkpoint order */
    size_t n_tensors;
    float *f32_block;                /* converted weights */
    const float **w32;               /* (n_tensors) f32 data of every bound tensor, NULL if unbound */
    size_t *by_name;                 /* (n_tensors) tensor indices sorted by name (mf_model_find) */

    struct mf_vit vision;
    struct mf_bert text;     /* text encoder (HF ITM, orig) */
    struct mf_bert dec;      /* text decoder stack (HF cap, orig) */
    struct mf_lm_head lm;
    struct mf_linear vision_proj, text_proj, itm_head;
};

struct mf_session {
    const struct mf_model *m;
    struct mf_pool *pool;
    int n_threads;
    struct mf_arena arena;
    mf_observe_fn observe; /* NULL unless calibrating */
    int64_t n_seq;         /* sequences in the current call, passed to the observer */
    void *observe_ud;
};

/* vit.c: image_embeds (B, n_tok, d) from images (B, 3, R, R). */
enum mf_status mf_vit_forward(struct mf_session *s, const struct mf_vit *vit, const float *images, int64_t B,
                              float *out, struct mf_err *err);
/* bert.c: hidden (B, L, d). enc (B, Ne, enc_width) or NULL to skip cross-attention. */
enum mf_status mf_bert_forward(struct mf_session *s, const struct mf_bert *bert, const int32_t *ids,
                               const int32_t *mask, int64_t B, int64_t L, const float *enc, int64_t Ne,
                               bool causal, float *out, struct mf_err *err);
/* blip.c: the MULTIFLOW calibration passes for B pairs (models.md §4.7): vision; image-grounded
 * text encoder (first token per layout); text decoder with [DEC], causal, and its LM head. Outputs
 * are discarded; the session's observer sees every prunable linear's input. */
enum mf_status mf_calibration_forward(struct mf_session *s, const float *images, const int32_t *ids,
                                      const int32_t *mask, int64_t B, int64_t L, struct mf_err *err);
/* layout.c: the model tensor index of a checkpoint entry, or -1. */
int mf_model_tensor_index(const struct mf_model *m, const struct mf_st_entry *e);
/* layout.c: sorts the tensor names into m->by_name (m->tensors filled); mf_model_find is then the
 * index of the tensor called name, or -1 (binary search, no checkpoint needed). */
enum mf_status mf_model_index_names(struct mf_model *m, struct mf_err *err);
int mf_model_find(const struct mf_model *m, const char *name);
/* The f32 weights of model tensor i (NULL if the forward pass does not use it). */
static inline const float *mf_model_weight_f32(const struct mf_model *m, size_t i) { return m->w32[i]; }

/* Runs a linear layer with a residual, y = res + lin(x) (res may be NULL or equal y), and reports
 * its input to the session's observer. Forwards on other weights (fine-tuning, masked pruning
 * rounds) re-point the model with mf_model_rebind (models/train.h). */
void mf_model_linear_res(struct mf_session *s, float *y, const float *res, const float *x, int64_t ldx,
                         const struct mf_linear *lin, int64_t T, const int32_t *row_valid);
/* The same without the bias (the caller adds it, e.g. fused into the activation). */
void mf_model_linear_nobias(struct mf_session *s, float *y, const float *x, int64_t ldx, const struct mf_linear *lin,
                            int64_t T, const int32_t *row_valid);
/* FFN input layer and activation: ffa = act(x W^T + b); ffp keeps the pre-activation when it is a
 * different buffer (training), else the bias is fused into the activation pass (inference). */
void mf_model_ffn_in(struct mf_session *s, float *ffp, float *ffa, const float *x, int64_t ldx,
                     const struct mf_linear *lin, int64_t T, const int32_t *row_valid, bool quick);
void mf_model_linear(struct mf_session *s, float *y, const float *x, int64_t ldx, const struct mf_linear *lin,
                     int64_t T, const int32_t *row_valid);

#endif
