/*
 * models/kvcache.h: incremental decoding of a BERT stack (caption generation): the key/value cache
 * that models/generate.c owns and bert.c's mf_bert_step fills. Internal to src/models.
 */
#ifndef MF_MODELS_KVCACHE_H
#define MF_MODELS_KVCACHE_H

#include "models/model_impl.h"

/* Incremental decoding state of a BERT stack (models/generate.c owns it; bert.c fills it): per layer
 * the self-attention keys/values of every row's past positions, and the cross-attention keys/values
 * of each group's encoder states, shared by the group's rows (the beams of one image; a group's
 * rows are contiguous). Buffers are sized for rows_max rows and groups_max groups (layer strides). */
struct mf_bert_cache {
    int64_t rows, group;          /* rows in use; rows per group (rows % group == 0) */
    int64_t rows_max, groups_max; /* capacity */
    int64_t cap, len, ne;         /* positions per row, positions filled, encoder tokens per group */
    float *k, *v;                 /* (n_layer, rows_max, cap, d) */
    float *ck, *cv;               /* (n_layer, groups_max, ne, d) */
    int32_t *key_mask;            /* (rows_max, cap): 1 for positions < len */
    bool cross_ready;             /* ck/cv computed (by the first step) */
};
/* bert.c: one incremental pass: ids (rows, T) at positions len..len+T-1 (T > 1 only while len == 0:
 * the prompt, causal among itself), attending to the cached positions; appends its keys/values
 * to the cache. enc (groups, ne, enc_width) is read only by the first pass (cross K/V cached);
 * out (rows, T, d). Same ops as mf_bert_forward on the whole sequence. */
enum mf_status mf_bert_step(struct mf_session *s, const struct mf_bert *bert, const int32_t *ids, int64_t T,
                            const float *enc, struct mf_bert_cache *kv, float *out, struct mf_err *err);
#endif
