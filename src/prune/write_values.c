/*
 * prune/write_values.c: writes a checkpoint with new f32 values for some tensors (a fine-tuned
 * model, or weights a pruner updated) in the input's layout: the same shards, tensor names, order,
 * dtypes and metadata, new values rounded to the stored dtype (round to nearest even for F16/BF16),
 * masked elements exactly 0, every other tensor byte-identical except for its mask. Each shard is
 * written atomically (temp file, fsync, rename); callers put the shards in an atomic directory.
 *
 * Does not re-shard, change dtypes, drop tensors or copy side files (mf_prune_copy_side_files).
 * Reference: prune/output.c (mf_prune_write_checkpoint), which this generalises from masks to
 * values; safetensors format (huggingface/safetensors README).
 */
#include <math.h>
#include <string.h>

#include "io/fs.h"
#include "models/model_impl.h"
#include "multiflow/safetensors.h"
#include "prune/write_values.h"

static const uint8_t *mask_of(const struct mf_model *m, const uint8_t *const *masks, size_t i)
{
    if (!masks)
        return NULL;
    if (masks[i])
        return masks[i];
    int o = m->tensors[i].tied_to;
    return o >= 0 && (size_t)o < m->n_tensors ? masks[o] : NULL;
}

/* New f32 values of tensor i: its own, or its owner's when it is a bound tied copy. */
static const float *value_of(const struct mf_model *m, const float *const *values, size_t i)
{
    if (!values)
        return NULL;
    if (values[i])
        return values[i];
    const struct mf_model_tensor *t = &m->tensors[i];
    int o = t->tied_to;
    if (o >= 0 && (size_t)o < m->n_tensors && strcmp(t->role, "unused") != 0)
        return values[o];
    return NULL;
}

/* A tensor written with new values and/or a mask, produced chunk by chunk at commit (so the writer
 * never holds a copy of the checkpoint): the input bytes, or v converted to the stored dtype, with
 * masked elements zeroed. */
struct fill {
    const struct mf_st_entry *e;
    const float *v;      /* new values, or NULL */
    const uint8_t *mask; /* or NULL */
};

static enum mf_status fill_tensor(void *ctx, void *dst, size_t offset, size_t n, struct mf_err *err)
{
    const struct fill *f = ctx;
    const struct mf_st_entry *e = f->e;
    const size_t es = mf_dtype_size(e->dtype), j0 = offset / es, m = n / es;
    unsigned char *out = dst;
    if (f->v) {
        for (size_t j = j0; j < j0 + m; j++)
            if (!isfinite(f->v[j]) && !(f->mask && !f->mask[j]))
                return mf_err_set(err, MF_ERR_NUMERIC, "tensor '%s': new value at element %zu is not finite",
                                  e->name, j);
        mf_convert_from_f32(out, f->v + j0, e->dtype, (int64_t)m);
    } else {
        memcpy(out, (const unsigned char *)e->data + offset, n);
    }
    if (f->mask)
        for (size_t j = 0; j < m; j++)
            if (!f->mask[j0 + j])
                memset(out + j * es, 0, es);
    return MF_OK;
}

/* How entry e (model tensor idx) is written: *f->e stays NULL when its input bytes are copied. */
static enum mf_status tensor_fill(const struct mf_model *m, const struct mf_st_entry *e, int idx,
                                  const float *const *values, const uint8_t *const *masks, struct fill *f,
                                  struct mf_err *err)
{
    *f = (struct fill){0};
    if (idx < 0)
        return MF_OK;
    const float *v = value_of(m, values, (size_t)idx);
    const uint8_t *mask = mask_of(m, masks, (size_t)idx);
    if (!v && !mask)
        return MF_OK;
    if (v && !mf_dtype_is_float(e->dtype))
        return mf_err_set(err, MF_ERR_DTYPE, "tensor '%s': new values for a %s tensor", e->name,
                          mf_dtype_name(e->dtype));
    *f = (struct fill){.e = e, .v = v, .mask = mask};
    return MF_OK;
}

enum mf_status mf_prune_write_values(const struct mf_model *m, const float *const *values,
                                     const uint8_t *const *masks, const char *dir, const char *const *meta,
                                     size_t n_meta, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    const size_t n_shards = mf_checkpoint_shard_count(m->ck);
    const bool single_file = !mf_fs_is_dir(m->path);
    for (size_t sh = 0; sh < n_shards && !st; sh++) {
        const struct mf_safetensors *in = mf_checkpoint_shard(m->ck, sh);
        char out[MF_PATH_MAX];
        const char *base = single_file ? "model.safetensors" : mf_fs_basename(mf_safetensors_path(in));
        if (!mf_fs_join(out, sizeof out, dir, base))
            return mf_err_set(err, MF_ERR_ARG, "%s: output path too long", dir);
        struct mf_st_writer *w = NULL;
        struct fill *fills = NULL;
        const size_t nt = mf_safetensors_count(in);
        if (!(fills = mf_calloc(nt ? nt : 1, sizeof *fills)))
            return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        if ((st = mf_st_writer_create(out, &w, err)))
            goto shard_done;
        for (size_t k = 0; k < mf_safetensors_meta_count(in) && !st; k++) {
            const char *val, *key = mf_safetensors_meta_at(in, k, &val);
            bool overridden = false;
            for (size_t q = 0; q < n_meta; q++)
                overridden |= strcmp(meta[2 * q], key) == 0;
            if (!overridden)
                st = mf_st_writer_meta(w, key, val, err);
        }
        for (size_t q = 0; q < n_meta && !st; q++)
            st = mf_st_writer_meta(w, meta[2 * q], meta[2 * q + 1], err);
        /* the writer keeps pointers until commit: fills[k] lives until then */
        for (size_t k = 0; k < nt && !st; k++) {
            const struct mf_st_entry *e = mf_safetensors_at(in, k);
            if ((st = tensor_fill(m, e, mf_model_tensor_index(m, e), values, masks, &fills[k], err)))
                break;
            if (fills[k].e)
                st = mf_st_writer_add_fill(w, e->name, e->dtype, e->ndim, e->shape, fill_tensor, &fills[k], err);
            else
                st = mf_st_writer_add(w, e->name, e->dtype, e->ndim, e->shape, e->data, err);
        }
        if (st)
            mf_st_writer_abort(w);
        else
            st = mf_st_writer_commit(w, err);
    shard_done:
        mf_free(fills);
    }
    return st;
}
