/*
 * models/train.c: masked fine-tuning (models/train.h): the weight override that re-points the bound
 * model structure at another set of f32 buffers, and the AdamW trainer that owns such a set.
 *
 * The model structure is walked once per use through one visitor (every weight pointer with the
 * index of the tensor that owns its gradient), so the override, the trained set and the gradient
 * block (grad.c) agree on ownership, ties included. Masked weights stay exactly 0 because their
 * gradient is zeroed before anything reads it: the moments then stay 0, the decay of a 0 weight is
 * 0, the step is 0 / (0 + eps) = 0, and the masks are re-applied after every update anyway.
 *
 * Does not: decide what a batch is or which losses run (the caller, through models/losses.h), write
 * checkpoints (prune/write_values.c), keep optimiser state across processes.
 * Reference: PyTorch torch.optim.AdamW (single-tensor path: decay, lerp of the first moment,
 * addcmul of the second, step lr/bc1, denom sqrt(v)/sqrt(bc2) + eps), clip_grad_norm_;
 * salesforce/BLIP train_retrieval.py and configs/retrieval_coco.yaml for the defaults.
 */
#include "models/train.h"

#include <math.h>
#include <string.h>

#include "models/grad.h"

#define TEMP_DEFAULT 0.07f
#define TEMP_MIN 0.001f
#define TEMP_MAX 0.5f

/* ---- visitor over the bound structure ------------------------------------------------------ */

typedef void (*visit_fn)(void *ud, const float **field, int owner);

static void visit_lin(struct mf_linear *l, visit_fn f, void *ud)
{
    if (l->w)
        f(ud, &l->w, l->wi);
    if (l->b)
        f(ud, &l->b, l->bi);
}

static void visit_ln(struct mf_ln *l, visit_fn f, void *ud)
{
    if (l->w)
        f(ud, &l->w, l->wi);
    if (l->b)
        f(ud, &l->b, l->bi);
}

static void visit_raw(const float **p, int owner, visit_fn f, void *ud)
{
    if (*p)
        f(ud, p, owner);
}

static void visit_vit(struct mf_vit *v, visit_fn f, void *ud)
{
    visit_raw(&v->patch_w, v->patch_wi, f, ud);
    visit_raw(&v->patch_b, v->patch_bi, f, ud);
    visit_raw(&v->cls, v->cls_i, f, ud);
    visit_raw(&v->pos, v->pos_i, f, ud);
    visit_ln(&v->ln_pre, f, ud);
    visit_ln(&v->ln_post, f, ud);
    for (int64_t l = 0; v->layers && l < v->cfg.n_layer; l++) {
        struct mf_vit_layer *L = &v->layers[l];
        struct mf_linear *lins[] = {&L->qkv, &L->q, &L->k, &L->v, &L->proj, &L->fc1, &L->fc2};
        for (size_t j = 0; j < MF_ARRAY_LEN(lins); j++)
            visit_lin(lins[j], f, ud);
        visit_ln(&L->ln1, f, ud);
        visit_ln(&L->ln2, f, ud);
    }
}

static void visit_bert(struct mf_bert *t, visit_fn f, void *ud)
{
    visit_raw(&t->word, t->word_i, f, ud);
    visit_raw(&t->pos, t->pos_i, f, ud);
    visit_raw(&t->tok_type, t->tok_type_i, f, ud);
    visit_ln(&t->ln_emb, f, ud);
    for (int64_t l = 0; t->layers && l < t->cfg.n_layer; l++) {
        struct mf_bert_layer *L = &t->layers[l];
        struct mf_linear *lins[] = {&L->q, &L->k, &L->v, &L->o, &L->cq, &L->ck, &L->cv, &L->co, &L->inter, &L->out};
        for (size_t j = 0; j < MF_ARRAY_LEN(lins); j++)
            visit_lin(lins[j], f, ud);
        visit_ln(&L->ln_attn, f, ud);
        visit_ln(&L->ln_cross, f, ud);
        visit_ln(&L->ln_out, f, ud);
    }
}

/* The towers ITC+ITM run: vision, text encoder, projections, ITM head. */
static void visit_itc_itm(struct mf_model *m, visit_fn f, void *ud)
{
    if (m->info.has_vision)
        visit_vit(&m->vision, f, ud);
    if (m->info.has_text_encoder)
        visit_bert(&m->text, f, ud);
    if (m->info.has_itc) {
        visit_lin(&m->vision_proj, f, ud);
        visit_lin(&m->text_proj, f, ud);
    }
    if (m->info.has_itm)
        visit_lin(&m->itm_head, f, ud);
}

/* The text decoder and its LM head. */
static void visit_decoder(struct mf_model *m, visit_fn f, void *ud)
{
    visit_bert(&m->dec, f, ud);
    visit_lin(&m->lm.dense, f, ud);
    visit_ln(&m->lm.ln, f, ud);
    visit_raw(&m->lm.dec_w, m->lm.dec_wi, f, ud);
    /* dec_b_alt is the same bias under its alias name: it follows dec_b when they were one */
    bool same = m->lm.dec_b_alt && m->lm.dec_b_alt == m->lm.dec_b;
    visit_raw(&m->lm.dec_b, m->lm.dec_bi, f, ud);
    if (same)
        m->lm.dec_b_alt = m->lm.dec_b;
}

static void visit_all(struct mf_model *m, visit_fn f, void *ud)
{
    visit_itc_itm(m, f, ud);
    if (m->info.has_decoder)
        visit_decoder(m, f, ud);
}

/* The towers of MF_TRAIN_* bits. */
static void visit_towers(struct mf_model *m, unsigned towers, visit_fn f, void *ud)
{
    if ((towers & MF_TRAIN_VISION) && m->info.has_vision)
        visit_vit(&m->vision, f, ud);
    if ((towers & MF_TRAIN_TEXT) && m->info.has_text_encoder)
        visit_bert(&m->text, f, ud);
    if ((towers & MF_TRAIN_ITC) && m->info.has_itc) {
        visit_lin(&m->vision_proj, f, ud);
        visit_lin(&m->text_proj, f, ud);
    }
    if ((towers & MF_TRAIN_ITM) && m->info.has_itm)
        visit_lin(&m->itm_head, f, ud);
    if ((towers & MF_TRAIN_DECODER) && m->info.has_decoder)
        visit_decoder(m, f, ud);
}

/* ---- weight override ----------------------------------------------------------------------- */

struct rebind_ctx {
    const struct mf_model *m;
    const float *const *w;
};

static void rebind_one(void *ud, const float **field, int owner)
{
    const struct rebind_ctx *c = ud;
    if (owner >= 0 && (size_t)owner < c->m->n_tensors && c->w[owner])
        *field = c->w[owner];
}

void mf_model_rebind(struct mf_model *m, const float *const *w)
{
    struct rebind_ctx c = {m, w};
    visit_all(m, rebind_one, &c);
    for (size_t i = 0; i < m->n_tensors; i++) {
        if (w[i] && m->w32[i])
            m->w32[i] = w[i];
        int o = m->tensors[i].tied_to;
        if (o >= 0 && (size_t)o < m->n_tensors && w[o] && m->w32[i])
            m->w32[i] = w[o];
    }
}

/* ---- trainer ------------------------------------------------------------------------------- */

/* elements per block of the gradient norm's fixed-order sum (mf_trainer_step) */
#define NORM_BLOCK 16384

struct mf_trainer {
    struct mf_model *m;
    struct mf_train_opts o;
    size_t n;                /* model tensors */
    size_t *numel;           /* (n) elements of each trained tensor, 0 if not trained */
    float **val;             /* (n) trained values, NULL if not trained */
    float **mom1, **mom2;    /* (n) first and second moments */
    uint8_t **mask;          /* (n) copies of the masks of trained tensors, NULL = dense */
    float *block;            /* (3 * n_weights) values | m | v */
    uint8_t *mask_block;
    const float **saved_w32; /* (n) the model's own pointers, restored by free */
    bool rebound;            /* the model reads val[] */
    struct mf_grads *g;
    int temp_i;              /* index of 'temp' or -1; its value lives in val[temp_i] (1 float) */
    float temp_default;
    int64_t step;
    int64_t n_trained, n_weights;
    double *norm_part;       /* (blocks of the largest trained tensor) the gradient norm's block sums */
};

struct mf_train_opts mf_train_opts_default(void)
{
    struct mf_train_opts o = {1e-5, 0.05, 0.9, 0.999, 1e-8, 0.0, 0, 1, MF_LR_LINEAR, 0.0, false, 0u};
    return o;
}

double mf_train_lr_at(const struct mf_train_opts *o, int64_t t)
{
    const int64_t W = o->warmup_steps, T = o->total_steps;
    if (t < 0)
        return 0;
    if (t < W)
        return o->lr * (double)(t + 1) / (double)W;
    if (o->schedule == MF_LR_COSINE) {
        if (t >= T || T <= W)
            return t >= T ? o->min_lr : o->lr;
        const double pi = 3.14159265358979323846;
        return o->min_lr + (o->lr - o->min_lr) * 0.5 * (1.0 + cos(pi * (double)(t - W) / (double)(T - W)));
    }
    if (t >= T || T <= W)
        return t >= T ? 0 : o->lr;
    return o->lr * (double)(T - t) / (double)(T - W);
}

static void mark_one(void *ud, const float **field, int owner)
{
    (void)field;
    bool *own = ud;
    if (owner >= 0)
        own[owner] = true;
}

static enum mf_status check_opts(const struct mf_train_opts *o, struct mf_err *err)
{
    if (!(isfinite(o->lr) && o->lr >= 0))
        return mf_err_set(err, MF_ERR_ARG, "learning rate %g: expected a finite value >= 0", o->lr);
    if (!(isfinite(o->weight_decay) && o->weight_decay >= 0 && o->lr * o->weight_decay < 1))
        return mf_err_set(err, MF_ERR_ARG, "weight decay %g: expected >= 0 with lr * decay < 1", o->weight_decay);
    if (!(o->beta1 >= 0 && o->beta1 < 1 && o->beta2 >= 0 && o->beta2 < 1))
        return mf_err_set(err, MF_ERR_ARG, "AdamW betas (%g, %g): expected each in [0, 1)", o->beta1, o->beta2);
    if (!(isfinite(o->eps) && o->eps > 0))
        return mf_err_set(err, MF_ERR_ARG, "AdamW eps %g: expected > 0", o->eps);
    if (!(isfinite(o->clip_norm) && o->clip_norm >= 0))
        return mf_err_set(err, MF_ERR_ARG, "gradient clipping norm %g: expected >= 0 (0 = off)", o->clip_norm);
    if (!(isfinite(o->min_lr) && o->min_lr >= 0 && o->min_lr <= o->lr) ||
        (o->schedule != MF_LR_LINEAR && o->schedule != MF_LR_COSINE))
        return mf_err_set(err, MF_ERR_ARG, "schedule: minimum learning rate %g: expected in [0, lr = %g]", o->min_lr,
                          o->lr);
    if (o->total_steps < 1 || o->warmup_steps < 0 || o->warmup_steps > o->total_steps)
        return mf_err_set(err, MF_ERR_ARG, "schedule: %lld warm-up steps of %lld total (expected 0 <= warm-up <= total, total >= 1)",
                          (long long)o->warmup_steps, (long long)o->total_steps);
    return MF_OK;
}

static int64_t tensor_numel(const struct mf_model_tensor *t) { return (int64_t)(t->nbytes / mf_dtype_size(t->dtype)); }

enum mf_status mf_trainer_create(struct mf_model *m, const uint8_t *const *masks, const struct mf_train_opts *o,
                                 struct mf_trainer **out, struct mf_err *err)
{
    enum mf_status st;
    bool *own = NULL;
    struct mf_trainer *tr = NULL;
    const size_t n = m->n_tensors;
    *out = NULL;
    if ((st = check_opts(o, err)))
        return st;
    if (!(tr = mf_calloc(1, sizeof *tr)) || !(own = mf_calloc(n ? n : 1, sizeof *own)) ||
        !(tr->numel = mf_calloc(n ? n : 1, sizeof *tr->numel)) || !(tr->val = mf_calloc(n ? n : 1, sizeof *tr->val)) ||
        !(tr->mom1 = mf_calloc(n ? n : 1, sizeof *tr->mom1)) || !(tr->mom2 = mf_calloc(n ? n : 1, sizeof *tr->mom2)) ||
        !(tr->mask = mf_calloc(n ? n : 1, sizeof *tr->mask)) ||
        !(tr->saved_w32 = mf_calloc(n ? n : 1, sizeof *tr->saved_w32))) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory for the trainer tables (%zu tensors)", n);
        goto fail;
    }
    tr->m = m;
    tr->o = *o;
    tr->n = n;
    tr->temp_i = -1;
    tr->temp_default = TEMP_DEFAULT;
    if (o->towers)
        visit_towers(m, o->towers, mark_one, own);
    else if (o->all_towers)
        visit_all(m, mark_one, own);
    else
        visit_itc_itm(m, mark_one, own);
    const bool temp_trains = o->towers ? (o->towers & MF_TRAIN_ITC) && m->info.has_itc
                                       : m->info.has_itc || m->info.has_itm;
    for (size_t i = 0; i < n; i++) {
        const struct mf_model_tensor *t = &m->tensors[i];
        if (strcmp(t->name, "temp") == 0 && mf_dtype_is_float(t->dtype) && tensor_numel(t) == 1 && temp_trains) {
            tr->temp_i = (int)i;
            own[i] = true;
        }
    }
    /* sizes: every trained tensor passed the binder's shape check (or is the 1-element temp) */
    size_t total = 0, mask_total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!own[i])
            continue;
        if ((int)i != tr->temp_i && !m->w32[i]) {
            st = mf_err_set(err, MF_ERR_ARG, "%s: tensor '%s' owns a gradient but has no f32 weights", m->path,
                            m->tensors[i].name);
            goto fail;
        }
        tr->numel[i] = (size_t)tensor_numel(&m->tensors[i]);
        if (total + tr->numel[i] < total) {
            st = mf_err_set(err, MF_ERR_RANGE, "%s: trained weight count overflows", m->path);
            goto fail;
        }
        total += tr->numel[i];
        if (masks && masks[i])
            mask_total += tr->numel[i];
        tr->n_trained++;
    }
    tr->n_weights = (int64_t)total;
    size_t bytes, tmp, max_numel = 1;
    for (size_t i = 0; i < n; i++)
        max_numel = tr->numel[i] > max_numel ? tr->numel[i] : max_numel;
    if (!mf_mul_size(total, 3, &tmp) || !mf_mul_size(tmp, sizeof(float), &bytes) ||
        !(tr->block = mf_malloc_aligned(bytes ? bytes : sizeof(float))) ||
        !(tr->norm_part = mf_malloc((max_numel + NORM_BLOCK - 1) / NORM_BLOCK * sizeof *tr->norm_part)) ||
        (mask_total && !(tr->mask_block = mf_malloc(mask_total)))) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory for %zu trained weights (values and two AdamW moments)", total);
        goto fail;
    }
    memset(tr->block + total, 0, 2 * total * sizeof(float));
    size_t off = 0, moff = 0;
    for (size_t i = 0; i < n; i++) {
        if (!own[i])
            continue;
        const size_t k = tr->numel[i];
        tr->val[i] = tr->block + off;
        tr->mom1[i] = tr->block + total + off;
        tr->mom2[i] = tr->block + 2 * total + off;
        off += k;
        if ((int)i == tr->temp_i) {
            float v;
            mf_convert_to_f32(&v, m->tensors[i].data, m->tensors[i].dtype, 1);
            if (!isfinite(v)) {
                st = mf_err_set(err, MF_ERR_NUMERIC, "%s: tensor 'temp' is not finite", m->path);
                goto fail;
            }
            tr->val[i][0] = v < TEMP_MIN ? TEMP_MIN : v > TEMP_MAX ? TEMP_MAX : v;
        } else {
            memcpy(tr->val[i], m->w32[i], k * sizeof(float));
        }
        if (masks && masks[i]) {
            tr->mask[i] = tr->mask_block + moff;
            moff += k;
            for (size_t j = 0; j < k; j++) {
                if (masks[i][j] > 1) {
                    st = mf_err_set(err, MF_ERR_ARG, "mask of '%s' holds %u at element %zu (masks are 0 or 1)",
                                    m->tensors[i].name, masks[i][j], j);
                    goto fail;
                }
                tr->mask[i][j] = masks[i][j];
                if (!masks[i][j])
                    tr->val[i][j] = 0.0f;
            }
        }
    }
    if ((st = mf_grads_create(m, &tr->g, err)))
        goto fail;
    memcpy(tr->saved_w32, m->w32, n * sizeof *m->w32);
    /* temp is bound to no structure field and has no w32 entry: the rebind leaves it alone (the
     * caller hands its value to the losses with mf_losses_set_temp) */
    mf_model_rebind(m, (const float *const *)tr->val);
    tr->rebound = true;
    mf_free(own);
    *out = tr;
    return MF_OK;
fail:
    mf_free(own);
    mf_trainer_free(tr); /* nothing was re-pointed yet: free restores nothing */
    return st;
}

void mf_trainer_free(struct mf_trainer *tr)
{
    if (!tr)
        return;
    if (tr->rebound) {
        /* restore: every structure pointer and w32 entry back to the model's own weights */
        const float **w = tr->saved_w32;
        struct rebind_ctx c = {tr->m, w};
        visit_all(tr->m, rebind_one, &c);
        memcpy(tr->m->w32, w, tr->n * sizeof *w);
    }
    mf_free(tr->saved_w32);
    mf_grads_free(tr->g);
    mf_free_aligned(tr->block);
    mf_free(tr->norm_part);
    mf_free(tr->mask_block);
    mf_free(tr->mask);
    mf_free(tr->mom2);
    mf_free(tr->mom1);
    mf_free(tr->val);
    mf_free(tr->numel);
    mf_free(tr);
}

struct mf_grads *mf_trainer_grads(struct mf_trainer *tr) { return tr->g; }

const float *const *mf_trainer_values(const struct mf_trainer *tr) { return (const float *const *)tr->val; }

void mf_trainer_moments(const struct mf_trainer *tr, size_t i, const float **m1, const float **m2)
{
    const bool ok = i < tr->n && tr->val[i];
    *m1 = ok ? tr->mom1[i] : NULL;
    *m2 = ok ? tr->mom2[i] : NULL;
}

float mf_trainer_temp(const struct mf_trainer *tr)
{
    return tr->temp_i >= 0 ? tr->val[tr->temp_i][0] : tr->temp_default;
}

void mf_trainer_counts(const struct mf_trainer *tr, int64_t *n_tensors, int64_t *n_weights)
{
    if (n_tensors)
        *n_tensors = tr->n_trained;
    if (n_weights)
        *n_weights = tr->n_weights;
}

int64_t mf_trainer_steps(const struct mf_trainer *tr) { return tr->step; }

enum mf_status mf_trainer_resume(struct mf_trainer *tr, int64_t steps, const float *const *m1, const float *const *m2,
                                 struct mf_err *err)
{
    if (steps < 0)
        return mf_err_set(err, MF_ERR_ARG, "resume: step count %lld is negative", (long long)steps);
    for (size_t i = 0; i < tr->n; i++)
        if (tr->val[i] && (!m1[i] || !m2[i]))
            return mf_err_set(err, MF_ERR_MISSING, "resume: no optimiser moments for the trained tensor '%s'",
                              tr->m->tensors[i].name);
    for (size_t i = 0; i < tr->n; i++) {
        if (!tr->val[i])
            continue;
        memcpy(tr->mom1[i], m1[i], tr->numel[i] * sizeof(float));
        memcpy(tr->mom2[i], m2[i], tr->numel[i] * sizeof(float));
    }
    tr->step = steps;
    return MF_OK;
}

/* ---- the step kernels: each splits one tensor's elements over the pool ----------------------- */

/* The squared norm is summed in double over fixed blocks of NORM_BLOCK elements (see the top of
 * the file), and the block sums are added in block order: the grouping depends only on the
 * tensor's size, never on how many threads share the blocks, so the norm (and the clipping it
 * decides) is the same bits for any --threads. */

struct norm_args {
    float *g;            /* (n) gradient, masked in place */
    const uint8_t *mask; /* (n) or NULL */
    int64_t n;
    double *part;        /* (ceil(n / NORM_BLOCK)) block sums */
};

static void norm_kernel(void *arg, int ith, int nth)
{
    struct norm_args *a = arg;
    const int64_t nb = (a->n + NORM_BLOCK - 1) / NORM_BLOCK;
    int64_t b0, b1;
    mf_split_range(nb, ith, nth, &b0, &b1);
    for (int64_t b = b0; b < b1; b++) {
        const int64_t e = MF_MIN(a->n, (b + 1) * NORM_BLOCK);
        double s = 0;
        for (int64_t j = b * NORM_BLOCK; j < e; j++) {
            if (a->mask && !a->mask[j])
                a->g[j] = 0.0f;
            s += (double)a->g[j] * (double)a->g[j];
        }
        a->part[b] = s;
    }
}

struct adamw_args {
    float *w, *m1, *m2;
    const float *g;
    const uint8_t *mask;
    int64_t n;
    float decay;     /* 1 - lr * weight_decay */
    float gscale;    /* clipping factor */
    float b2;
    float omb1, omb2; /* 1 - beta1, 1 - beta2 rounded from double (PyTorch passes them as scalars) */
    float step_size; /* lr / (1 - b1^t) */
    float bc2_sqrt;  /* sqrt(1 - b2^t) */
    float eps;
};

static void adamw_kernel(void *arg, int ith, int nth)
{
    const struct adamw_args *a = arg;
    int64_t b, e;
    mf_split_range(a->n, ith, nth, &b, &e);
    for (int64_t j = b; j < e; j++) {
        if (a->mask && !a->mask[j]) {
            a->w[j] = 0.0f;
            a->m1[j] = 0.0f;
            a->m2[j] = 0.0f;
            continue;
        }
        const float g = a->g[j] * a->gscale;
        float w = a->w[j] * a->decay;
        const float m1 = a->m1[j] + a->omb1 * (g - a->m1[j]);
        const float m2 = a->m2[j] * a->b2 + a->omb2 * g * g;
        const float denom = sqrtf(m2) / a->bc2_sqrt + a->eps;
        w -= a->step_size * (m1 / denom);
        a->w[j] = w;
        a->m1[j] = m1;
        a->m2[j] = m2;
    }
}

enum mf_status mf_trainer_step(struct mf_trainer *tr, struct mf_session *s, double d_temp,
                               struct mf_train_step_info *info, struct mf_err *err)
{
    struct mf_pool *pool = s ? s->pool : NULL;
    const struct mf_train_opts *o = &tr->o;
    /* 1. mask the gradients and take the global norm (tensor order, block order) */
    double sq = 0;
    struct norm_args na;
    for (size_t i = 0; i < tr->n; i++) {
        if (!tr->val[i] || (int)i == tr->temp_i)
            continue;
        float *g = mf_grads_tensor(tr->g, i);
        MF_ASSERT(g);
        na.g = g;
        na.mask = tr->mask[i];
        na.n = (int64_t)tr->numel[i];
        na.part = tr->norm_part;
        mf_pool_run(pool, norm_kernel, &na);
        for (int64_t b = 0; b < (na.n + NORM_BLOCK - 1) / NORM_BLOCK; b++)
            sq += na.part[b];
    }
    const float gt = tr->temp_i >= 0 ? (float)d_temp : 0.0f;
    sq += (double)gt * (double)gt;
    const double norm = sqrt(sq);
    if (!isfinite(norm)) {
        mf_grads_zero(tr->g);
        return mf_err_set(err, MF_ERR_NUMERIC, "step %lld: the gradient is not finite (norm %g); weights unchanged",
                          (long long)(tr->step + 1), norm);
    }
    const double scale = o->clip_norm > 0 && norm > o->clip_norm ? o->clip_norm / (norm + 1e-6) : 1.0;
    /* 2. AdamW */
    const int64_t t = tr->step + 1;
    const double lr = mf_train_lr_at(o, tr->step);
    struct adamw_args aa = {
        .decay = (float)(1.0 - lr * o->weight_decay),
        .gscale = (float)scale,
        .b2 = (float)o->beta2,
        .omb1 = (float)(1.0 - o->beta1),
        .omb2 = (float)(1.0 - o->beta2),
        .step_size = (float)(lr / (1.0 - pow(o->beta1, (double)t))),
        .bc2_sqrt = (float)sqrt(1.0 - pow(o->beta2, (double)t)),
        .eps = (float)o->eps,
    };
    for (size_t i = 0; i < tr->n; i++) {
        if (!tr->val[i])
            continue;
        aa.w = tr->val[i];
        aa.m1 = tr->mom1[i];
        aa.m2 = tr->mom2[i];
        aa.g = (int)i == tr->temp_i ? &gt : mf_grads_tensor(tr->g, i);
        aa.mask = tr->mask[i];
        aa.n = (int64_t)tr->numel[i];
        if ((int)i == tr->temp_i)
            adamw_kernel(&aa, 0, 1);
        else
            mf_pool_run(pool, adamw_kernel, &aa);
    }
    if (tr->temp_i >= 0) {
        float *v = tr->val[tr->temp_i];
        v[0] = v[0] < TEMP_MIN ? TEMP_MIN : v[0] > TEMP_MAX ? TEMP_MAX : v[0];
    }
    mf_grads_zero(tr->g);
    tr->step = t;
    if (info) {
        info->step = t;
        info->lr = lr;
        info->grad_norm = norm;
        info->clip_scale = scale;
    }
    return MF_OK;
}
