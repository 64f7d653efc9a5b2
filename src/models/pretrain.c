/*
 * models/pretrain.c: a pretraining run's checkpoint and optimiser state (models/pretrain.h).
 *
 * The checkpoint is the input's tensor list with the run's current values, so it stays an ordinary
 * original-layout checkpoint: BLIP_Pretrain's state dict after the step, momentum copies and
 * queues included (blip_pretrain.py keeps them as parameters and buffers, so its checkpoints carry
 * them too). The optimiser state is a separate file so the model file is what users load.
 *
 * Does not: decide when to save, keep old checkpoints, or check that a state file belongs to the
 * run's options (the caller compares its metadata keys).
 */
#include "models/pretrain.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiflow/safetensors.h"

static int64_t numel_of(const struct mf_model_tensor *t) { return (int64_t)(t->nbytes / mf_dtype_size(t->dtype)); }

static enum mf_status add_meta(struct mf_st_writer *w, const struct mf_trainer *tr, const char *const *meta,
                               size_t n_meta, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    char step[32];
    snprintf(step, sizeof step, "%lld", (long long)mf_trainer_steps(tr));
    for (size_t k = 0; k < n_meta && !st; k++)
        st = mf_st_writer_meta(w, meta[2 * k], meta[2 * k + 1], err);
    if (!st)
        st = mf_st_writer_meta(w, MF_PRETRAIN_STEP_KEY, step, err);
    return st;
}

enum mf_status mf_pretrain_write_model(const struct mf_model *m, const struct mf_trainer *tr,
                                       const struct mf_momentum *mo, const char *path, const char *const *meta,
                                       size_t n_meta, struct mf_err *err)
{
    enum mf_status st;
    struct mf_st_writer *w = NULL;
    float *qbuf = NULL;
    int64_t ptr = mo ? mf_momentum_queue_ptr(mo) : 0;
    const int64_t Q = mo ? mf_momentum_queue_len(mo) : 0, P = m->info.proj_dim;
    const float *const *vals = mf_trainer_values(tr);
    if (Q > 0 && !(qbuf = mf_malloc((size_t)(2 * P * Q) * sizeof *qbuf)))
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the queues [%lld, %lld]", (long long)P, (long long)Q);
    for (int k = 0; k < 2 && Q > 0; k++) { /* (Q, P) rows back to BLIP's (P, Q) */
        const float *q = mf_momentum_queue(mo, k);
        for (int64_t j = 0; j < Q; j++)
            for (int64_t p = 0; p < P; p++)
                qbuf[k * P * Q + p * Q + j] = q[j * P + p];
    }
    if ((st = mf_st_writer_create(path, &w, err)) || (st = add_meta(w, tr, meta, n_meta, err)))
        goto done;
    for (size_t i = 0; i < m->n_tensors && !st; i++) {
        const struct mf_model_tensor *t = &m->tensors[i];
        const float *v = vals[i];
        if (!v && mo)
            v = mf_momentum_tensor(mo, i);
        if (!v && Q > 0 && (strcmp(t->name, "image_queue") == 0 || strcmp(t->name, "text_queue") == 0))
            v = qbuf + (t->name[0] == 't' ? P * Q : 0);
        if (!v && m->info.has_decoder && strcmp(t->name, "text_decoder.cls.predictions.decoder.weight") == 0)
            v = m->lm.dec_w; /* tied to the word embeddings: the head reads their trained values */
        if (!v && m->info.has_decoder && strcmp(t->name, "text_decoder.cls.predictions.decoder.bias") == 0)
            v = m->lm.dec_b; /* the alias of cls.predictions.bias */
        if (!v && mf_dtype_is_float(t->dtype))
            v = m->w32[i]; /* bound tensors: tied copies read their owner's (mf_model_rebind) */
        if (mo && Q > 0 && strcmp(t->name, "queue_ptr") == 0 && t->dtype == MF_DTYPE_I64 && numel_of(t) == 1)
            st = mf_st_writer_add(w, t->name, MF_DTYPE_I64, t->ndim, t->shape, &ptr, err);
        else if (v)
            st = mf_st_writer_add(w, t->name, MF_DTYPE_F32, t->ndim, t->shape, v, err);
        else
            st = mf_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, err);
    }
    if (!st) {
        st = mf_st_writer_commit(w, err);
        w = NULL;
    }
done:
    mf_st_writer_abort(w);
    mf_free(qbuf);
    return st;
}

enum mf_status mf_pretrain_write_state(const struct mf_model *m, const struct mf_trainer *tr, const char *path,
                                       const char *const *meta, size_t n_meta, struct mf_err *err)
{
    enum mf_status st;
    struct mf_st_writer *w = NULL;
    char (*names)[2][160] = mf_calloc(m->n_tensors ? m->n_tensors : 1, sizeof *names);
    if (!names)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    if ((st = mf_st_writer_create(path, &w, err)) || (st = add_meta(w, tr, meta, n_meta, err)))
        goto done;
    for (size_t i = 0; i < m->n_tensors && !st; i++) {
        const float *m1, *m2;
        mf_trainer_moments(tr, i, &m1, &m2);
        if (!m1)
            continue;
        const struct mf_model_tensor *t = &m->tensors[i];
        snprintf(names[i][0], sizeof names[i][0], "m1.%s", t->name);
        snprintf(names[i][1], sizeof names[i][1], "m2.%s", t->name);
        if (!(st = mf_st_writer_add(w, names[i][0], MF_DTYPE_F32, t->ndim, t->shape, m1, err)))
            st = mf_st_writer_add(w, names[i][1], MF_DTYPE_F32, t->ndim, t->shape, m2, err);
    }
    if (!st) {
        st = mf_st_writer_commit(w, err);
        w = NULL;
    }
done:
    mf_st_writer_abort(w);
    mf_free(names);
    return st;
}

enum mf_status mf_pretrain_read_state(const struct mf_model *m, struct mf_trainer *tr, const char *path,
                                      struct mf_err *err)
{
    enum mf_status st;
    struct mf_safetensors *sf = NULL;
    const float **m1 = mf_calloc(m->n_tensors ? m->n_tensors : 1, sizeof *m1);
    const float **m2 = mf_calloc(m->n_tensors ? m->n_tensors : 1, sizeof *m2);
    float *block = NULL;
    if (!m1 || !m2) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = mf_safetensors_open(path, &sf, err)))
        goto done;
    const char *sv = mf_safetensors_meta(sf, MF_PRETRAIN_STEP_KEY);
    char *end = NULL;
    errno = 0;
    long long step = sv ? strtoll(sv, &end, 10) : -1;
    if (!sv || errno || *end || step < 0) {
        st = mf_err_set(err, MF_ERR_FORMAT, "%s: metadata '%s' missing or not a step count", path,
                        MF_PRETRAIN_STEP_KEY);
        goto done;
    }
    /* moments are copied into the trainer; aligned f32 views of the mapping are not guaranteed */
    size_t total = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const float *a, *b;
        mf_trainer_moments(tr, i, &a, &b);
        if (a)
            total += 2 * (size_t)numel_of(&m->tensors[i]);
    }
    if (!(block = mf_malloc((total ? total : 1) * sizeof *block))) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory for %zu optimiser moments", total);
        goto done;
    }
    size_t off = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const float *a, *b;
        mf_trainer_moments(tr, i, &a, &b);
        if (!a)
            continue;
        const struct mf_model_tensor *t = &m->tensors[i];
        const int64_t n = numel_of(t);
        for (int k = 0; k < 2; k++) {
            char name[200];
            snprintf(name, sizeof name, "m%d.%s", k + 1, t->name);
            const struct mf_st_entry *e = mf_safetensors_find(sf, name);
            if (!e) {
                st = mf_err_set(err, MF_ERR_MISSING, "%s: tensor '%s' is missing (the optimiser state of '%s')", path,
                                name, t->name);
                goto done;
            }
            if (e->dtype != MF_DTYPE_F32 || (int64_t)(e->nbytes / sizeof(float)) != n) {
                st = mf_err_set(err, MF_ERR_SHAPE, "%s: tensor '%s' is %s with %zu bytes, expected F32 with %lld values",
                                path, name, mf_dtype_name(e->dtype), e->nbytes, (long long)n);
                goto done;
            }
            float *dst = block + off;
            off += (size_t)n;
            mf_convert_to_f32(dst, e->data, MF_DTYPE_F32, n);
            if (mf_find_nonfinite(dst, MF_DTYPE_F32, n) >= 0) {
                st = mf_err_set(err, MF_ERR_NUMERIC, "%s: tensor '%s' holds a non-finite value", path, name);
                goto done;
            }
            (k == 0 ? m1 : m2)[i] = dst;
        }
    }
    st = mf_trainer_resume(tr, (int64_t)step, m1, m2, err);
done:
    mf_free(block);
    mf_free(m1);
    mf_free(m2);
    mf_safetensors_close(sf);
    return st;
}
