/*
 * multiflow/model.h: load a vision-language checkpoint and run its forward passes on the CPU.
 *
 *     struct mf_err err = {0};
 *     struct mf_model *m;
 *     struct mf_model_opts opts = mf_model_opts_default();
 *     if (mf_model_load("blip-itm-base-coco/", &opts, &m, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
 *     struct mf_session *s;
 *     mf_session_create(m, 2, &s, &err);                      // 2 threads
 *     const struct mf_model_info *info = mf_model_get_info(m);
 *     float *img = ...;                                       // (B, 3, R, R), R = info->image_size
 *     int32_t ids[35], mask[35];
 *     mf_model_tokenize(m, "a dog on a beach", 35, ids, mask, &err);
 *     float itc, itm;
 *     mf_score_pairs(s, img, ids, mask, 1, 35, &itc, &itm, NULL, &err);
 *     mf_session_free(s);
 *     mf_model_free(m);
 *
 * A model is immutable after loading and may be shared by several sessions (threads); a session
 * (thread pool, activation arena, scratch) belongs to one thread at a time.
 *
 * Families and layouts: BLIP in the Hugging Face layout (BlipForImageTextRetrieval,
 * BlipForConditionalGeneration) and the original Salesforce layout. Each layout is one name table
 * (src/models/blip_layout.c); the forward passes are shared ViT / BERT code (src/models/vit.c, bert.c).
 */
#ifndef MF_MODEL_H
#define MF_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiflow/status.h"
#include "multiflow/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

enum mf_family { MF_FAMILY_BLIP = 0 };
enum mf_layout { MF_LAYOUT_BLIP_HF = 0, MF_LAYOUT_BLIP_ORIG = 1 };
enum mf_modality { MF_MOD_NONE = 0, MF_MOD_VISION = 1, MF_MOD_TEXT = 2, MF_MOD_FUSION = 3 };
/* First token of the image-grounded text encoder (models.md §11 Q2). AUTO = the layout's own. */
enum mf_itm_token { MF_ITM_TOKEN_AUTO = 0, MF_ITM_TOKEN_ENC = 1, MF_ITM_TOKEN_CLS = 2 };
/* Caption cleaning before tokenization (models.md §3.1). AUTO = BLIP's for the original layout,
 * none for HF (HF processors tokenize the raw string). */
enum mf_clean { MF_CLEAN_AUTO = 0, MF_CLEAN_NONE = 1, MF_CLEAN_BLIP = 2, MF_CLEAN_MULTIFLOW = 3 };

struct mf_model_opts {
    const char *vocab_path;  /* vocab.txt; default: <model dir>/vocab.txt */
    int n_head_vision;       /* 0 = from config.json, else hidden/64 */
    int n_head_text;         /* likewise */
    enum mf_itm_token itm_token;
    enum mf_clean clean;
    int max_tokens;          /* default text length; 0 (default) = min(35, text positions); above
                              * the positions: mf_model_load fails (MF_ERR_ARG) */
    bool load_decoder;       /* default true: load the text decoder when present */
    bool vocab_optional;     /* a vocab.txt absent from the model directory is no error (verbs that
                                never tokenise); one that exists, or vocab_path, must match */
};

struct mf_model_opts mf_model_opts_default(void);

struct mf_vit_info {
    int64_t d, n_layer, n_head, d_ff, patch, image_size, n_tok;
    float eps;
};
struct mf_bert_info {
    int64_t d, n_layer, n_head, d_ff, vocab, max_pos, enc_width;
    float eps;
};

struct mf_model_info {
    enum mf_family family;
    enum mf_layout layout;
    const char *layout_name;   /* "blip-hf", "blip-orig" */
    const char *config_source; /* "config.json" or "inferred from tensor shapes" */
    bool has_vision, has_text_encoder, has_decoder, has_itc, has_itm, has_momentum;
    struct mf_vit_info vision;
    struct mf_bert_info text;    /* text encoder (or decoder stack when only a decoder exists) */
    int64_t proj_dim;            /* ITC projection width */
    int32_t first_token_itm;     /* id put at position 0 of the image-grounded encoder */
    int32_t first_token_dec;     /* [DEC] */
    int32_t pad_id, cls_id, sep_id;
    int max_tokens;
    enum mf_clean clean;
};

/* One tensor of the checkpoint, mapped or not. */
struct mf_model_tensor {
    const char *name;
    enum mf_dtype dtype;
    int ndim;
    int64_t shape[MF_MAX_DIMS];
    const char *role;         /* "vision.layer3.qkv.weight" style, or "unused" (momentum copies, queues) */
    bool prunable;
    enum mf_modality modality;
    int tied_to;              /* index of the tensor whose mask this one receives, or -1 */
    int layer;                /* layer index inside its tower, or -1 */
    const void *data;         /* raw bytes in the checkpoint mapping (dtype as stored) */
    size_t nbytes;
};

struct mf_model;
struct mf_session;

enum mf_status mf_model_load(const char *path, const struct mf_model_opts *opts, struct mf_model **out,
                             struct mf_err *err);
void mf_model_free(struct mf_model *m);
const struct mf_model_info *mf_model_get_info(const struct mf_model *m);
size_t mf_model_n_tensors(const struct mf_model *m);
const struct mf_model_tensor *mf_model_tensor_at(const struct mf_model *m, size_t i);
const char *mf_modality_name(enum mf_modality mod);

/* Cleans (per info->clean) and tokenizes one caption: [CLS] pieces [SEP], padded to max_len. */
enum mf_status mf_model_tokenize(const struct mf_model *m, const char *text, int max_len, int32_t *ids,
                                 int32_t *mask, struct mf_err *err);

/* The model a session runs. */
const struct mf_model *mf_session_model(const struct mf_session *s);

enum mf_status mf_session_create(const struct mf_model *m, int n_threads, struct mf_session **out,
                                 struct mf_err *err);
void mf_session_free(struct mf_session *s);

/* Vision tower: images (B, 3, R, R) normalised -> image_embeds (B, N, D) and/or the normalised ITC
 * image feature (B, proj_dim). Either output may be NULL. */
enum mf_status mf_encode_images(struct mf_session *s, const float *images, int64_t B, float *image_embeds,
                                float *img_feat, struct mf_err *err);
/* Unimodal text encoder: ids/mask (B, L) -> last hidden (B, L, D) and/or normalised ITC text
 * feature (B, proj_dim). Either output may be NULL. */
enum mf_status mf_encode_texts(struct mf_session *s, const int32_t *ids, const int32_t *mask, int64_t B,
                               int64_t L, float *text_hidden, float *txt_feat, struct mf_err *err);
/* Image-grounded encoder + ITM head for B pairs (text b with image_embeds b; position 0 replaced by
 * info->first_token_itm). prob (B) = softmax(logits)[1]; logits (B, 2), hidden (B, L, D) optional. */
enum mf_status mf_itm_pairs(struct mf_session *s, const float *image_embeds, const int32_t *ids,
                            const int32_t *mask, int64_t B, int64_t L, float *prob, float *logits, float *hidden,
                            struct mf_err *err);
/* Text decoder (causal, cross-attending) with [DEC] at position 0: mean NLL per caption token
 * (targets: tokens 1..n_real-1) in nll (B); logits (B, L, V) optional. Needs a decoder. */
enum mf_status mf_decoder_pairs(struct mf_session *s, const float *image_embeds, const int32_t *ids,
                                const int32_t *mask, int64_t B, int64_t L, float *nll, float *logits,
                                struct mf_err *err);
/* Everything `multiflow score` prints for B pairs: itc (B), itm (B), lm (B; NULL or ignored when
 * the model has no decoder). */
enum mf_status mf_score_pairs(struct mf_session *s, const float *images, const int32_t *ids, const int32_t *mask,
                              int64_t B, int64_t L, float *itc, float *itm, float *lm, struct mf_err *err);

/* Gradient block for training-mode passes (src/models/grad.h has the backward API): one f32 buffer
 * per model tensor that owns a gradient (tied copies accumulate into their owner and have none),
 * zeroed at creation. mf_grads_tensor returns NULL for tensors without a gradient. */
struct mf_grads;
enum mf_status mf_grads_create(const struct mf_model *m, struct mf_grads **out, struct mf_err *err);
void mf_grads_zero(struct mf_grads *g);
void mf_grads_free(struct mf_grads *g);
float *mf_grads_tensor(const struct mf_grads *g, size_t i);

/* Random initialisation (src/models/init.c): a BLIP_Pretrain in the original layout with BLIP's
 * own init rules, momentum copies equal to the online tensors, normalised random queues.
 *     struct mf_blip_arch a;
 *     mf_blip_arch_load("blip-mini.json", &a, &err);       // {"vision": {...}, "text": {...}, ...}
 *     mf_blip_arch_set_vocab(&a, "vocab.txt", &err);        // word-embedding rows = vocab + [DEC], [ENC]
 *     mf_blip_init_write(&a, 0, MF_DTYPE_F32, "out/model.safetensors", &err);
 * Heads must be max(1, width/64): the original layout stores none and loaders infer that. */
struct mf_blip_arch {
    int64_t vision_width, vision_layers, vision_heads, vision_mlp, patch, image_size;
    int64_t text_width, text_layers, text_heads, text_ffn, text_positions;
    int64_t embed_dim, queue_size;
    int64_t vocab; /* word-embedding rows (set from the vocabulary) */
};
/* Reads the architecture JSON: "vision" {width, layers, heads?, mlp, patch, image_size}, "text"
 * {width, layers, heads?, ffn, positions}, "embed_dim", "queue_size"; a "train" object and keys
 * starting with '_' are ignored (left to the caller), anything else is an error. */
enum mf_status mf_blip_arch_load(const char *path, struct mf_blip_arch *a, struct mf_err *err);
enum mf_status mf_blip_arch_set_vocab(struct mf_blip_arch *a, const char *vocab_path, struct mf_err *err);
/* Writes the safetensors file atomically (F32, F16 or BF16; queue_ptr I64). Same (arch, seed,
 * dtype): same bytes. Memory O(1 MiB): tensors are generated while written. */
enum mf_status mf_blip_init_write(const struct mf_blip_arch *a, uint64_t seed, enum mf_dtype dtype, const char *path,
                                  struct mf_err *err);
/* Number of stored values (momentum copies and queues included; tied tensors once); -1 on OOM. */
int64_t mf_blip_arch_params(const struct mf_blip_arch *a);

#ifdef __cplusplus
}
#endif
#endif
