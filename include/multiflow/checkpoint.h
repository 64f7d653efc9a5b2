/*
 * multiflow/checkpoint.h: a checkpoint is one or more safetensors shards seen as one set of tensors.
 *
 *     struct mf_err err = {0};
 *     struct mf_checkpoint *ck = NULL;
 *     if (mf_checkpoint_open("ckpt/", &ck, &err) != MF_OK) {
 *         fprintf(stderr, "error: %s\n", err.msg);
 *         return 1;
 *     }
 *     for (size_t i = 0; i < mf_checkpoint_count(ck); i++) {
 *         size_t shard;
 *         const struct mf_st_entry *e = mf_checkpoint_at(ck, i, &shard);
 *         printf("%s %s\n", e->name, mf_safetensors_path(mf_checkpoint_shard(ck, shard)));
 *     }
 *     // config.json and vocab.txt live in mf_checkpoint_dir(ck)
 *     mf_checkpoint_close(ck);
 *
 * path may be:
 *  - a directory with model.safetensors.index.json: its "weight_map" {tensor: shard file} is
 *    validated (an object of strings, shard names plain file names), every shard must exist, every
 *    tensor must be in the shard the map names, and every tensor of a shard must be in the map;
 *    shards are in sorted name order;
 *  - a directory with model.safetensors (and no index): that file alone, so that other
 *    *.safetensors files next to it (masks.safetensors of a pruned output) are not merged in;
 *  - any other directory: all *.safetensors files (not hidden), sorted by name; at least one;
 *  - a .safetensors file: that file; the directory is the one containing it.
 * The same tensor name in two shards is an error naming both files (MF_ERR_FORMAT).
 * Thread safety: an open checkpoint is immutable and may be read from any number of threads.
 */
#ifndef MF_CHECKPOINT_H
#define MF_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "multiflow/safetensors.h"
#include "multiflow/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest model.safetensors.index.json accepted (bytes). */
#define MF_CK_MAX_INDEX ((size_t)64 * 1024 * 1024)

struct mf_checkpoint; /* opaque */

enum mf_status mf_checkpoint_open(const char *path, struct mf_checkpoint **out, struct mf_err *err);
void mf_checkpoint_close(struct mf_checkpoint *ck);

/* Number of tensors over all shards. */
size_t mf_checkpoint_count(const struct mf_checkpoint *ck);
/* i-th tensor in shard order, then offset order; sets *shard (if not NULL). NULL when i >= count. */
const struct mf_st_entry *mf_checkpoint_at(const struct mf_checkpoint *ck, size_t i, size_t *shard);
/* Tensor by name; sets *shard (if not NULL). NULL if absent. */
const struct mf_st_entry *mf_checkpoint_find(const struct mf_checkpoint *ck, const char *name,
                                             size_t *shard);
size_t mf_checkpoint_shard_count(const struct mf_checkpoint *ck);
const struct mf_safetensors *mf_checkpoint_shard(const struct mf_checkpoint *ck, size_t i);
/* Directory holding the checkpoint (config.json, vocab.txt), without a trailing '/'. */
const char *mf_checkpoint_dir(const struct mf_checkpoint *ck);
/* True when the shards came from model.safetensors.index.json. */
bool mf_checkpoint_is_indexed(const struct mf_checkpoint *ck);

#ifdef __cplusplus
}
#endif
#endif
