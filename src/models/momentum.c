/*
 * models/momentum.c: BLIP's momentum encoders and feature queues as run state (models/momentum.h).
 *
 * Pairs: every bound floating-point tensor of the online towers the momentum copies mirror
 * (visual_encoder.*, text_encoder.*, vision_proj.*, text_proj.*) is paired by name with its
 * '_m' copy (visual_encoder_m.* ...), shapes checked; the copies live in one f32 block. The
 * momentum towers are a shallow copy of the model structure (its own w32 table and layer arrays)
 * re-pointed at that block with mf_model_rebind, so they run through the ordinary vit.c/bert.c
 * inference forwards and nothing of the model itself is modified.
 *
 * Does not: own the model, run gradients, touch idx_queue, write checkpoints (callers read the
 * state through mf_momentum_tensor/_queue/_ptr).
 * Reference: salesforce/BLIP models/blip_pretrain.py: _momentum_update
 * (param_m = param_m * momentum + param * (1 - momentum), float32 with the scalars rounded to
 * float32 as PyTorch does for a Python scalar), _dequeue_and_enqueue, the queues' [P, Q] layout.
 */
#include "models/momentum.h"

#include <stdio.h>
#include <string.h>

#include "models/grad.h"
#include "models/train.h"

/* online prefix -> momentum prefix (BLIP_Pretrain.model_pairs) */
static const struct { const char *online, *mom; } prefixes[] = {
    {"visual_encoder.", "visual_encoder_m."},
    {"text_encoder.", "text_encoder_m."},
    {"vision_proj.", "vision_proj_m."},
    {"text_proj.", "text_proj_m."},
};

struct mf_momentum {
    const struct mf_model *m;
    bool active;
    /* momentum pairs */
    size_t n_pairs;
    int *online, *mom;        /* (n_pairs) model tensor indices */
    int64_t *numel;           /* (n_pairs) */
    float **buf;              /* (n_pairs) into block */
    float *block;             /* all momentum working copies */
    size_t block_floats;
    const float **by_tensor;  /* (n_tensors) working copy of momentum tensor i, or NULL */
    struct mf_model tower;    /* shallow copy of the model, re-pointed at block */
    const float **tower_w32;  /* (n_tensors) the copy's own w32 table */
    struct mf_vit_layer *vl;  /* the copy's own layer arrays (rebind writes into them) */
    struct mf_bert_layer *tl, *dl;
    /* queues */
    const struct mf_model_tensor *qi, *qt, *qp;
    int64_t Q, P, ptr;
    float *img_qT, *txt_qT;   /* (Q, P) */
};

static const struct mf_model_tensor *find(const struct mf_model *m, const char *name)
{
    int i = mf_model_find(m, name);
    return i >= 0 ? &m->tensors[i] : NULL;
}

static int64_t numel_of(const struct mf_model_tensor *t) { return (int64_t)(t->nbytes / mf_dtype_size(t->dtype)); }

static bool same_shape(const struct mf_model_tensor *a, const struct mf_model_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int k = 0; k < a->ndim; k++)
        if (a->shape[k] != b->shape[k])
            return false;
    return true;
}

static bool has_mom_prefix(const char *name)
{
    for (size_t p = 0; p < MF_ARRAY_LEN(prefixes); p++)
        if (strncmp(name, prefixes[p].mom, strlen(prefixes[p].mom)) == 0)
            return true;
    return false;
}

/* ---- queues ------------------------------------------------------------------------------- */

static enum mf_status check_queues(struct mf_momentum *mo, struct mf_err *err)
{
    const struct mf_model *m = mo->m;
    const char *path = m->path;
    const struct mf_model_tensor *qi = find(m, "image_queue"), *qt = find(m, "text_queue");
    if (!qi && !qt)
        return MF_OK;
    if (!qi || !qt)
        return mf_err_set(err, MF_ERR_MISSING, "%s: tensor '%s' is present but '%s' is missing", path,
                          qi ? "image_queue" : "text_queue", qi ? "text_queue" : "image_queue");
    const int64_t P = m->info.proj_dim;
    const struct mf_model_tensor *q2[2] = {qi, qt};
    for (int k = 0; k < 2; k++) {
        const struct mf_model_tensor *t = q2[k];
        if (!mf_dtype_is_float(t->dtype))
            return mf_err_set(err, MF_ERR_DTYPE, "%s: tensor '%s' is not floating point", path, t->name);
        if (t->ndim != 2 || t->shape[0] != P || t->shape[1] < 1 || t->shape[1] != qi->shape[1])
            return mf_err_set(err, MF_ERR_SHAPE,
                              "%s: tensor '%s' has %d dims [%lld, %lld], expected [%lld, Q] with the same Q as "
                              "image_queue",
                              path, t->name, t->ndim, (long long)(t->ndim > 0 ? t->shape[0] : 0),
                              (long long)(t->ndim > 1 ? t->shape[1] : 0), (long long)P);
        int64_t bad = mf_find_nonfinite(t->data, t->dtype, numel_of(t));
        if (bad >= 0)
            return mf_err_set(err, MF_ERR_NUMERIC, "%s: tensor '%s' has a non-finite value at [%lld, %lld]", path,
                              t->name, (long long)(bad / qi->shape[1]), (long long)(bad % qi->shape[1]));
    }
    const int64_t Q = qi->shape[1];
    if (Q > INT64_MAX / P || (uint64_t)(Q * P) > SIZE_MAX / sizeof(float))
        return mf_err_set(err, MF_ERR_RANGE, "%s: queue [%lld, %lld] too large", path, (long long)P, (long long)Q);
    /* the pointer: BLIP_Pretrain's queue_ptr (BLIP_Retrieval names it ptr_queue); absent = 0 */
    const struct mf_model_tensor *qp = find(m, "queue_ptr");
    if (!qp)
        qp = find(m, "ptr_queue");
    if (qp) {
        if ((qp->dtype != MF_DTYPE_I64 && qp->dtype != MF_DTYPE_I32) || numel_of(qp) != 1)
            return mf_err_set(err, MF_ERR_SHAPE, "%s: tensor '%s' must be one integer (I64 or I32)", path, qp->name);
        int64_t v;
        if (qp->dtype == MF_DTYPE_I64) {
            memcpy(&v, qp->data, sizeof v);
        } else {
            int32_t v32;
            memcpy(&v32, qp->data, sizeof v32);
            v = v32;
        }
        if (v < 0 || v >= Q)
            return mf_err_set(err, MF_ERR_RANGE, "%s: tensor '%s' is %lld, outside the queue [0, %lld)", path,
                              qp->name, (long long)v, (long long)Q);
    }
    mo->qi = qi;
    mo->qt = qt;
    mo->qp = qp;
    mo->Q = Q;
    mo->P = P;
    return MF_OK;
}

static int64_t stored_ptr(const struct mf_model_tensor *qp)
{
    int64_t v = 0;
    if (qp && qp->dtype == MF_DTYPE_I64) {
        memcpy(&v, qp->data, sizeof v);
    } else if (qp) {
        int32_t v32;
        memcpy(&v32, qp->data, sizeof v32);
        v = v32;
    }
    return v;
}

/* ---- pairs -------------------------------------------------------------------------------- */

/* Finds every pair; returns MF_OK with n_pairs = 0 when the checkpoint has no momentum copy. */
static enum mf_status find_pairs(struct mf_momentum *mo, struct mf_err *err)
{
    const struct mf_model *m = mo->m;
    const size_t n = m->n_tensors;
    bool any = false;
    for (size_t i = 0; i < n && !any; i++)
        any = has_mom_prefix(m->tensors[i].name);
    if (!any)
        return MF_OK;
    if (!(mo->online = mf_calloc(n, sizeof *mo->online)) || !(mo->mom = mf_calloc(n, sizeof *mo->mom)) ||
        !(mo->numel = mf_calloc(n, sizeof *mo->numel)))
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the momentum pairs (%zu tensors)", n);
    char name[512];
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const struct mf_model_tensor *t = &m->tensors[i];
        if (!m->w32[i] || !mf_dtype_is_float(t->dtype))
            continue; /* not read by any forward */
        size_t p = 0;
        while (p < MF_ARRAY_LEN(prefixes) && strncmp(t->name, prefixes[p].online, strlen(prefixes[p].online)) != 0)
            p++;
        if (p == MF_ARRAY_LEN(prefixes))
            continue;
        const char *rest = t->name + strlen(prefixes[p].online);
        if ((size_t)snprintf(name, sizeof name, "%s%s", prefixes[p].mom, rest) >= sizeof name)
            return mf_err_set(err, MF_ERR_RANGE, "%s: tensor name '%s' too long", m->path, t->name);
        const struct mf_model_tensor *mt = find(m, name);
        if (!mt)
            return mf_err_set(err, MF_ERR_MISSING,
                              "%s: the checkpoint has momentum copies but not '%s' (the momentum copy of '%s'); "
                              "use --momentum off to ignore them",
                              m->path, name, t->name);
        if (!mf_dtype_is_float(mt->dtype) || !same_shape(mt, t))
            return mf_err_set(err, MF_ERR_SHAPE,
                              "%s: momentum copy '%s' must be floating point with the shape of '%s' (%d dims)",
                              m->path, name, t->name, t->ndim);
        int64_t bad = mf_find_nonfinite(mt->data, mt->dtype, numel_of(mt));
        if (bad >= 0)
            return mf_err_set(err, MF_ERR_NUMERIC, "%s: tensor '%s' has a non-finite value at element %lld", m->path,
                              name, (long long)bad);
        const size_t k = mo->n_pairs++;
        mo->online[k] = (int)i;
        mo->mom[k] = (int)(mt - m->tensors);
        mo->numel[k] = numel_of(t);
        if (!mf_add_size(total, (size_t)mo->numel[k], &total))
            return mf_err_set(err, MF_ERR_RANGE, "%s: momentum copies too large", m->path);
    }
    if (mo->n_pairs == 0)
        return mf_err_set(err, MF_ERR_MISSING, "%s: momentum copies without the online towers they mirror", m->path);
    size_t bytes;
    if (!mf_mul_size(total, sizeof(float), &bytes) || !(mo->block = mf_malloc_aligned(bytes)) ||
        !(mo->buf = mf_calloc(mo->n_pairs, sizeof *mo->buf)) || !(mo->by_tensor = mf_calloc(n, sizeof *mo->by_tensor)))
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the momentum encoders' working copy (%zu MiB)",
                          total * sizeof(float) >> 20);
    mo->block_floats = total;
    size_t off = 0;
    for (size_t k = 0; k < mo->n_pairs; k++) {
        mo->buf[k] = mo->block + off;
        mo->by_tensor[mo->mom[k]] = mo->buf[k];
        off += (size_t)mo->numel[k];
    }
    return MF_OK;
}

/* The momentum towers: the model structure copied, its layer arrays and w32 table its own, every
 * weight pointer whose owner is a paired online tensor re-pointed at the working copy. */
static enum mf_status build_towers(struct mf_momentum *mo, struct mf_err *err)
{
    const struct mf_model *m = mo->m;
    const size_t n = m->n_tensors;
    const float **w = mf_calloc(n, sizeof *w);
    mo->tower = *m;
    mo->tower_w32 = mf_malloc(n * sizeof *mo->tower_w32);
    const int64_t nv = m->vision.layers ? m->vision.cfg.n_layer : 0, nt = m->text.layers ? m->text.cfg.n_layer : 0,
                  nd = m->dec.layers ? m->dec.cfg.n_layer : 0;
    mo->vl = nv ? mf_malloc((size_t)nv * sizeof *mo->vl) : NULL;
    mo->tl = nt ? mf_malloc((size_t)nt * sizeof *mo->tl) : NULL;
    mo->dl = nd ? mf_malloc((size_t)nd * sizeof *mo->dl) : NULL;
    if (!w || !mo->tower_w32 || (nv && !mo->vl) || (nt && !mo->tl) || (nd && !mo->dl)) {
        mf_free(w);
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the momentum towers");
    }
    memcpy(mo->tower_w32, m->w32, n * sizeof *mo->tower_w32);
    mo->tower.w32 = mo->tower_w32;
    if (nv)
        mo->tower.vision.layers = memcpy(mo->vl, m->vision.layers, (size_t)nv * sizeof *mo->vl);
    if (nt)
        mo->tower.text.layers = memcpy(mo->tl, m->text.layers, (size_t)nt * sizeof *mo->tl);
    if (nd) /* the decoder's tied fields are owned by text-encoder tensors: rebind visits them too */
        mo->tower.dec.layers = memcpy(mo->dl, m->dec.layers, (size_t)nd * sizeof *mo->dl);
    for (size_t k = 0; k < mo->n_pairs; k++)
        w[mo->online[k]] = mo->buf[k];
    mf_model_rebind(&mo->tower, w);
    mf_free(w);
    return MF_OK;
}

/* Working copies <- the checkpoint's values (the checks ran in create). */
static void load_values(struct mf_momentum *mo)
{
    const struct mf_model *m = mo->m;
    for (size_t k = 0; k < mo->n_pairs; k++) {
        const struct mf_model_tensor *t = &m->tensors[mo->mom[k]];
        mf_convert_to_f32(mo->buf[k], t->data, t->dtype, mo->numel[k]);
    }
    if (mo->Q) {
        const int64_t P = mo->P, Q = mo->Q;
        float *tmp = mo->img_qT + 2 * Q * P; /* scratch after the two queues (allocated 3 Q P) */
        const struct mf_model_tensor *q2[2] = {mo->qi, mo->qt};
        for (int k = 0; k < 2; k++) {
            float *dst = k == 0 ? mo->img_qT : mo->txt_qT;
            mf_convert_to_f32(tmp, q2[k]->data, q2[k]->dtype, Q * P);
            for (int64_t p = 0; p < P; p++)
                for (int64_t q = 0; q < Q; q++)
                    dst[q * P + p] = tmp[p * Q + q];
        }
    }
    mo->ptr = stored_ptr(mo->qp);
}

enum mf_status mf_momentum_create(const struct mf_model *m, bool momentum, struct mf_momentum **out,
                                  struct mf_err *err)
{
    enum mf_status st;
    struct mf_momentum *mo = mf_calloc(1, sizeof *mo);
    *out = NULL;
    if (!mo)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    mo->m = m;
    if ((st = check_queues(mo, err)))
        goto fail;
    if (mo->Q) {
        /* (Q, P) image queue | (Q, P) text queue | (P, Q) conversion scratch */
        float *q = mf_malloc_aligned((size_t)(3 * mo->Q * mo->P) * sizeof(float));
        if (!q) {
            st = mf_err_set(err, MF_ERR_NOMEM, "out of memory for the ITC queues ([%lld, %lld] twice)",
                            (long long)mo->P, (long long)mo->Q);
            goto fail;
        }
        mo->img_qT = q;
        mo->txt_qT = q + mo->Q * mo->P;
    }
    if (momentum) {
        if ((st = find_pairs(mo, err)))
            goto fail;
        if (mo->n_pairs && (st = build_towers(mo, err)))
            goto fail;
        mo->active = mo->n_pairs > 0;
    }
    load_values(mo);
    *out = mo;
    return MF_OK;
fail:
    mf_momentum_free(mo);
    return st;
}

void mf_momentum_free(struct mf_momentum *mo)
{
    if (!mo)
        return;
    mf_free_aligned(mo->img_qT);
    mf_free(mo->vl);
    mf_free(mo->tl);
    mf_free(mo->dl);
    mf_free(mo->tower_w32);
    mf_free(mo->by_tensor);
    mf_free(mo->buf);
    mf_free_aligned(mo->block);
    mf_free(mo->numel);
    mf_free(mo->mom);
    mf_free(mo->online);
    mf_free(mo);
}

bool mf_momentum_active(const struct mf_momentum *mo) { return mo && mo->active; }

size_t mf_momentum_bytes(const struct mf_momentum *mo)
{
    return mo ? (mo->block_floats + (size_t)(2 * mo->Q * mo->P)) * sizeof(float) : 0;
}

size_t mf_momentum_count(const struct mf_momentum *mo) { return mo ? mo->n_pairs : 0; }

void mf_momentum_reset(struct mf_momentum *mo)
{
    if (mo)
        load_values(mo);
}

/* ---- update, features, enqueue ------------------------------------------------------------ */

struct update_args {
    struct mf_momentum *mo;
    float a, b; /* momentum, 1 - momentum (float32, as PyTorch rounds the Python scalars) */
};

/* Each tensor's elements split over the threads; an element's value does not depend on the split. */
static void update_kernel(void *arg, int ith, int nth)
{
    const struct update_args *u = arg;
    const struct mf_momentum *mo = u->mo;
    for (size_t k = 0; k < mo->n_pairs; k++) {
        const float *th = mo->m->w32[mo->online[k]];
        float *w = mo->buf[k];
        int64_t j0, j1;
        mf_split_range(mo->numel[k], ith, nth, &j0, &j1);
        for (int64_t j = j0; j < j1; j++)
            w[j] = w[j] * u->a + th[j] * u->b;
    }
}

void mf_momentum_update(struct mf_momentum *mo, struct mf_pool *pool)
{
    if (!mf_momentum_active(mo))
        return;
    const double coef = MF_MOMENTUM_COEF;
    struct update_args u = {mo, (float)coef, (float)(1.0 - coef)};
    mf_pool_run(pool, update_kernel, &u);
}

enum mf_status mf_momentum_features(const struct mf_momentum *mo, struct mf_session *s, const float *images,
                                    const int32_t *ids, const int32_t *mask, int64_t B, int64_t T, float *img_m,
                                    float *txt_m, struct mf_err *err)
{
    if (!mf_momentum_active(mo))
        return mf_err_set(err, MF_ERR_UNSUPPORTED, "no momentum encoders in use");
    const struct mf_model *tw = &mo->tower;
    const int64_t N = tw->vision.cfg.n_tok, dv = tw->vision.cfg.d, dt = tw->text.cfg.d, P = tw->info.proj_dim;
    struct mf_arena *a = &s->arena;
    float *emb = mf_arena_f32(a, B * N * dv); /* (B, N, dv) momentum image_embeds */
    float *ht = mf_arena_f32(a, B * T * dt);  /* (B, T, dt) momentum unimodal text hidden */
    float *z = mf_arena_f32(a, B * P);        /* (B, P) projection before normalisation */
    if (!emb || !ht || !z)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the momentum features of %lld pairs", (long long)B);
    /* the momentum towers share the online towers' prunable-tensor ids: keep any observer out */
    mf_observe_fn obs = s->observe;
    s->observe = NULL;
    enum mf_status st = mf_vit_forward(s, &tw->vision, images, B, emb, err);
    if (!st)
        st = mf_bert_forward(s, &tw->text, ids, mask, B, T, NULL, 0, false, ht, err);
    s->observe = obs;
    if (st)
        return st;
    mf_head_proj_forward(s, &tw->vision_proj, emb, B, N, z, img_m);
    mf_head_proj_forward(s, &tw->text_proj, ht, B, T, z, txt_m);
    return MF_OK;
}

void mf_momentum_enqueue(struct mf_momentum *mo, const float *img_m, const float *txt_m, int64_t B)
{
    if (!mo || !mo->Q)
        return;
    const int64_t P = mo->P, Q = mo->Q;
    for (int64_t b = 0; b < B; b++) {
        const int64_t q = (mo->ptr + b) % Q;
        memcpy(mo->img_qT + q * P, img_m + b * P, (size_t)P * sizeof(float));
        memcpy(mo->txt_qT + q * P, txt_m + b * P, (size_t)P * sizeof(float));
    }
    mo->ptr = (mo->ptr + B) % Q;
}

int64_t mf_momentum_queue_len(const struct mf_momentum *mo) { return mo ? mo->Q : 0; }

const float *mf_momentum_queue(const struct mf_momentum *mo, int text)
{
    return mo && mo->Q ? (text ? mo->txt_qT : mo->img_qT) : NULL;
}

int64_t mf_momentum_queue_ptr(const struct mf_momentum *mo) { return mo ? mo->ptr : 0; }

const float *mf_momentum_tensor(const struct mf_momentum *mo, size_t i)
{
    return mo && mo->by_tensor && i < mo->m->n_tensors ? mo->by_tensor[i] : NULL;
}
