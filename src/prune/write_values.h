/*
 * prune/write_values.h: writing a checkpoint whose tensors carry NEW f32 values (fine-tuned, or
 * updated by a pruner), in the input's layout: same shards, names, order, dtypes and metadata,
 * each new value converted to the tensor's stored dtype, masks applied (prune/write_values.c).
 *
 *     const float *const *vals = mf_trainer_values(tr);      // (n_tensors), NULL = keep the input's
 *     mf_prune_write_values(model, vals, masks_by_index, "out.tmp/", meta, 1, &err);
 *     mf_prune_copy_side_files(model, "out.tmp/", &err);    // prune/output.h
 *
 * Thread safety: reads the model only; one call per output directory.
 */
#ifndef MF_PRUNE_WRITE_VALUES_H
#define MF_PRUNE_WRITE_VALUES_H

#include <stddef.h>
#include <stdint.h>

#include "multiflow/model.h"

/* values: (n_tensors) f32 arrays of each tensor's numel, NULL = the input's bytes. A bound tied
 * copy (e.g. the original layout's decoder copy of an encoder tensor) with no value of its own
 * takes its owner's value; momentum copies and other unbound tensors keep the input's bytes.
 * masks: NULL or (n_tensors) 0/1 arrays, NULL = dense; a tensor without a mask takes that of the
 * tensor it is tied to (as mf_prune_write_checkpoint). Masked elements are written as exact 0.
 * A non-finite new value is MF_ERR_NUMERIC naming the tensor and element. Shards go into dir
 * (a single-file input becomes model.safetensors), each written atomically; meta: n_meta
 * (key, value) pairs added to every shard's __metadata__ (replacing equal keys). */
enum mf_status mf_prune_write_values(const struct mf_model *m, const float *const *values,
                                     const uint8_t *const *masks, const char *dir, const char *const *meta,
                                     size_t n_meta, struct mf_err *err);

#endif
