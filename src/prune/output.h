/*
 * prune/output.h: writing pruned checkpoints, masks and scores; reading masks (prune/output.c).
 * masks_by_index: one pointer per model tensor (mf_model_tensor_at order), NULL where the tensor
 * is not prunable; set-order masks: one per mf_prune_set entry. 1 = keep, 0 = pruned.
 */
#ifndef MF_PRUNE_OUTPUT_H
#define MF_PRUNE_OUTPUT_H

#include "multiflow/prune.h"

/* Pruned checkpoint into dir (shards as the input; a single-file input becomes
 * model.safetensors) plus the input directory's other files. meta: n_meta (key, value) pairs
 * added to every shard's __metadata__. */
enum mf_status mf_prune_write_checkpoint(const struct mf_model *m, const uint8_t *const *masks_by_index,
                                         const char *dir, const char *const *meta, size_t n_meta,
                                         struct mf_err *err);
/* Copies config.json, vocab.txt, the shard index, ... (not the shards) into dir. */
enum mf_status mf_prune_copy_side_files(const struct mf_model *m, const char *dir, struct mf_err *err);
enum mf_status mf_prune_write_masks(const struct mf_prune_set *set, const uint8_t *const *masks, const char *path,
                                    const char *const *meta, size_t n_meta, struct mf_err *err);
enum mf_status mf_prune_write_scores(const struct mf_prune_set *set, const float *const *scores, const char *path,
                                     struct mf_err *err);
/* Reads a masks file made elsewhere into masks (set order, n bytes each): every prunable tensor
 * needs a U8/BOOL mask of its shape holding 0/1; a mask naming no prunable tensor is an error. */
enum mf_status mf_prune_read_masks(const struct mf_model *m, const struct mf_prune_set *set, const char *path,
                                   uint8_t **masks, struct mf_err *err);

#endif
