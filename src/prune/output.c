/*
 * prune/output.c: writes what a pruning run produces on disk: the pruned checkpoint (same shards,
 * names, order, dtypes and metadata as the input, masked weights set to exactly 0 in their stored
 * dtype, every other tensor byte-identical, tied copies and momentum copies masked like the tensor
 * they copy), the masks file (U8, one per prunable tensor), and the copies of the input
 * directory's other files. Every file is written atomically (temp file, fsync, rename); callers
 * put them into an atomic output directory so a failed run leaves nothing behind.
 *
 * Does not re-shard, convert dtypes or drop tensors: the user's framework must load the result
 * unchanged.
 */
#include <stdio.h>
#include <string.h>

#include "io/fs.h"
#include "models/model_impl.h"
#include "multiflow/prune.h"
#include "multiflow/safetensors.h"
#include "prune/output.h"
#include "prune/write_values.h"

enum mf_status mf_prune_write_checkpoint(const struct mf_model *m, const uint8_t *const *masks, const char *dir,
                                         const char *const *meta, size_t n_meta, struct mf_err *err)
{
    /* masks only: the general writer (prune/write_values.c) with no new values */
    enum mf_status st = mf_prune_write_values(m, NULL, masks, dir, meta, n_meta, err);
    if (st)
        return st;
    return mf_prune_copy_side_files(m, dir, err);
}

enum mf_status mf_prune_copy_side_files(const struct mf_model *m, const char *dir, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    char src[MF_PATH_MAX], dst[MF_PATH_MAX];
    if (!mf_fs_is_dir(m->path)) {
        /* A single checkpoint file: carry the vocabulary along so the output is a loadable model dir. */
        if (m->vocab_path[0] && mf_fs_join(dst, sizeof dst, dir, "vocab.txt"))
            st = mf_fs_copy_file(m->vocab_path, dst, err);
        return st;
    }
    char **names = NULL;
    size_t n = 0;
    if ((st = mf_fs_list_dir(m->path, &names, &n, err)))
        return st;
    for (size_t i = 0; i < n && !st; i++) {
        bool shard = false;
        for (size_t sh = 0; sh < mf_checkpoint_shard_count(m->ck); sh++)
            shard |= strcmp(names[i], mf_fs_basename(mf_safetensors_path(mf_checkpoint_shard(m->ck, sh)))) == 0;
        if (shard || names[i][0] == '.')
            continue;
        if (!mf_fs_join(src, sizeof src, m->path, names[i]) || !mf_fs_join(dst, sizeof dst, dir, names[i])) {
            st = mf_err_set(err, MF_ERR_ARG, "%s: path too long", names[i]);
            break;
        }
        if (!mf_fs_is_file(src))
            continue;
        st = mf_fs_copy_file(src, dst, err);
    }
    mf_fs_list_free(names, n);
    return st;
}

enum mf_status mf_prune_write_masks(const struct mf_prune_set *set, const uint8_t *const *masks, const char *path,
                                    const char *const *meta, size_t n_meta, struct mf_err *err)
{
    struct mf_st_writer *w = NULL;
    enum mf_status st = mf_st_writer_create(path, &w, err);
    if (st)
        return st;
    for (size_t q = 0; q < n_meta && !st; q++)
        st = mf_st_writer_meta(w, meta[2 * q], meta[2 * q + 1], err);
    for (size_t i = 0; i < set->n && !st; i++) {
        int64_t shape[2] = {set->t[i].out, set->t[i].in};
        st = mf_st_writer_add(w, set->t[i].name, MF_DTYPE_U8, 2, shape, masks[i], err);
    }
    if (st) {
        mf_st_writer_abort(w);
        return st;
    }
    return mf_st_writer_commit(w, err);
}

enum mf_status mf_prune_write_scores(const struct mf_prune_set *set, const float *const *scores, const char *path,
                                     struct mf_err *err)
{
    struct mf_st_writer *w = NULL;
    enum mf_status st = mf_st_writer_create(path, &w, err);
    if (st)
        return st;
    for (size_t i = 0; i < set->n && !st; i++) {
        int64_t shape[2] = {set->t[i].out, set->t[i].in};
        st = mf_st_writer_add(w, set->t[i].name, MF_DTYPE_F32, 2, shape, scores[i], err);
    }
    if (st) {
        mf_st_writer_abort(w);
        return st;
    }
    return mf_st_writer_commit(w, err);
}

enum mf_status mf_prune_read_masks(const struct mf_model *m, const struct mf_prune_set *set, const char *path,
                                   uint8_t **masks, struct mf_err *err)
{
    struct mf_safetensors *st = NULL;
    enum mf_status rc = mf_safetensors_open(path, &st, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < set->n && !rc; i++) {
        const struct mf_prune_tensor *t = &set->t[i];
        const struct mf_st_entry *e = mf_safetensors_find(st, t->name);
        if (!e) {
            rc = mf_err_set(err, MF_ERR_MISSING, "%s: no mask for prunable tensor '%s'", path, t->name);
            break;
        }
        if (e->dtype != MF_DTYPE_U8 && e->dtype != MF_DTYPE_BOOL) {
            rc = mf_err_set(err, MF_ERR_DTYPE, "%s: mask '%s' has dtype %s, expected U8 or BOOL", path, t->name,
                            mf_dtype_name(e->dtype));
            break;
        }
        if (e->ndim != 2 || e->shape[0] != t->out || e->shape[1] != t->in) {
            char got[96];
            mf_shape_str(got, sizeof got, e->ndim, e->shape);
            rc = mf_err_set(err, MF_ERR_SHAPE, "%s: mask '%s' has shape %s, expected [%lld,%lld]", path, t->name, got,
                            (long long)t->out, (long long)t->in);
            break;
        }
        const uint8_t *src = e->data;
        for (int64_t j = 0; j < t->n; j++)
            if (src[j] > 1) {
                rc = mf_err_set(err, MF_ERR_FORMAT, "%s: mask '%s' holds %u at element %lld (masks are 0 or 1)", path,
                                t->name, src[j], (long long)j);
                break;
            }
        if (!rc)
            memcpy(masks[i], src, (size_t)t->n);
    }
    for (size_t k = 0; k < mf_safetensors_count(st) && !rc; k++) {
        const struct mf_st_entry *e = mf_safetensors_at(st, k);
        bool known = false;
        for (size_t i = 0; i < set->n && !known; i++)
            known = strcmp(set->t[i].name, e->name) == 0;
        if (!known)
            rc = mf_err_set(err, MF_ERR_FORMAT, "%s: mask '%s' names no prunable tensor of %s", path, e->name, m->path);
    }
    mf_safetensors_close(st);
    return rc;
}
