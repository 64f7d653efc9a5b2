/*
 * models/layout.c: binds a checkpoint to the model structure through a name-layout table
 * (models/layout.h): finds each tensor, checks dtype and shape, records roles, prunability,
 * modality and tying for every checkpoint tensor, and converts weights to f32.
 *
 * F32 tensors whose data is 4-byte aligned in the mapping are used in place; everything else
 * (F16, BF16, F64, unaligned F32) is converted once into one model-owned block. Tensors the
 * layout does not name (momentum copies, queues, temp) are listed with role "unused" and carried
 * through untouched by writers.
 */
#include "models/layout.h"
#include "multiflow/safetensors.h"

#include <stdio.h>
#include <string.h>

struct binding {
    const struct mf_st_entry *e;
    const float **dst;
};

struct binder {
    struct mf_model *m;
    const struct mf_layout_def *def;
    struct binding *b;
    size_t n, cap;
    char *roles;      /* role strings, NUL-separated, owned by the model via m->tensors[i].role */
};

static int64_t dim_value(const struct mf_model *m, enum mf_dim d)
{
    const struct mf_vit_cfg *v = &m->vision.cfg;
    const struct mf_bert_cfg *t = &m->text.cfg, *dc = &m->dec.cfg;
    switch (d) {
    case D_NONE: return -1;
    case D_ONE: return 1;
    case D_TWO: return 2;
    case D_THREE: return 3;
    case D_VD: return v->d;
    case D_VD3: return 3 * v->d;
    case D_VFF: return v->d_ff;
    case D_VPATCH: return v->patch;
    case D_VPATCHIN: return 3 * v->patch * v->patch;
    case D_VNTOK: return v->n_tok;
    case D_TD: return t->d;
    case D_TFF: return t->d_ff;
    case D_TVOCAB: return t->vocab;
    case D_TPOS: return t->max_pos;
    case D_TENC: return t->enc_width;
    case D_PROJ: return m->info.proj_dim;
    case D_DD: return dc->d;
    case D_DFF: return dc->d_ff;
    case D_DVOCAB: return dc->vocab;
    case D_DPOS: return dc->max_pos;
    case D_DENC: return dc->enc_width;
    }
    return -1;
}

static bool tower_present(const struct mf_model *m, enum mf_tower t)
{
    const struct mf_model_info *i = &m->info;
    switch (t) {
    case MF_TOWER_VISION: return i->has_vision;
    case MF_TOWER_TEXT: return i->has_text_encoder;
    case MF_TOWER_DEC: return i->has_decoder;
    case MF_TOWER_LM: return i->has_decoder;
    case MF_TOWER_ITC: return i->has_itc;
    case MF_TOWER_ITM: return i->has_itm;
    }
    return false;
}

int mf_model_tensor_index(const struct mf_model *m, const struct mf_st_entry *e)
{
    for (size_t i = 0; i < m->n_tensors; i++)
        if (mf_checkpoint_at(m->ck, i, NULL) == e)
            return (int)i;
    return -1;
}

static enum mf_status push_binding(struct binder *bd, const struct mf_st_entry *e, const float **dst, struct mf_err *err)
{
    if (bd->n == bd->cap) {
        size_t cap = bd->cap ? 2 * bd->cap : 256;
        struct binding *nb = mf_realloc(bd->b, cap * sizeof *nb);
        if (!nb)
            return mf_err_set(err, MF_ERR_NOMEM, "out of memory binding tensors");
        bd->b = nb;
        bd->cap = cap;
    }
    bd->b[bd->n].e = e;
    bd->b[bd->n].dst = dst;
    bd->n++;
    return MF_OK;
}

/* Checks and binds one named tensor; expected shape given symbolically (ndim < 0: skip check). */
static enum mf_status bind_one(struct binder *bd, const struct mf_name_rule *r, const char *name,
                               const char *fallback, int ndim, const enum mf_dim *shape, const float **dst,
                               int64_t layer, const char *suffix, bool optional, int *out_idx, struct mf_err *err)
{
    struct mf_model *m = bd->m;
    size_t shard = 0;
    const struct mf_st_entry *e = mf_checkpoint_find(m->ck, name, &shard);
    const struct mf_st_entry *tied = NULL;
    if (fallback)
        tied = mf_checkpoint_find(m->ck, fallback, NULL);
    if (!e && tied) {
        e = mf_checkpoint_find(m->ck, fallback, &shard);
        tied = NULL; /* bound straight to the encoder's tensor: nothing extra to record */
    }
    *out_idx = -1;
    if (!e) {
        if (optional)
            return MF_OK;
        return mf_err_set(err, MF_ERR_MISSING, "%s: tensor '%s' is missing (required by the %s layout)",
                          m->path, name, bd->def->name);
    }
    if (e->dtype != MF_DTYPE_F32 && e->dtype != MF_DTYPE_F16 && e->dtype != MF_DTYPE_BF16 &&
        e->dtype != MF_DTYPE_F64)
        return mf_err_set(err, MF_ERR_DTYPE, "%s: tensor '%s' has dtype %s, expected a floating-point type",
                          mf_safetensors_path(mf_checkpoint_shard(m->ck, shard)), e->name, mf_dtype_name(e->dtype));
    if (ndim >= 0) {
        int64_t want[4];
        bool ok = e->ndim == ndim;
        for (int i = 0; i < ndim; i++) {
            want[i] = dim_value(m, shape[i]);
            if (ok && e->shape[i] != want[i])
                ok = false;
        }
        if (!ok) {
            char got_s[96], want_s[96];
            mf_shape_str(got_s, sizeof got_s, e->ndim, e->shape);
            mf_shape_str(want_s, sizeof want_s, ndim, want);
            return mf_err_set(err, MF_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s",
                              mf_safetensors_path(mf_checkpoint_shard(m->ck, shard)), e->name, got_s, want_s);
        }
    }
    enum mf_status st = push_binding(bd, e, dst, err);
    if (st)
        return st;

    int idx = mf_model_tensor_index(m, e);
    MF_ASSERT(idx >= 0);
    struct mf_model_tensor *t = &m->tensors[idx];
    if (strcmp(t->role, "unused") == 0) {
        char role[160];
        char rbuf[128];
        snprintf(rbuf, sizeof rbuf, r->role, (int)layer);
        snprintf(role, sizeof role, "%s%s", rbuf, suffix);
        char *copy = mf_strdup(role);
        if (!copy)
            return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        t->role = copy;
        t->layer = r->scope == MF_SCOPE_MODEL ? -1 : (int)layer;
        t->modality = bd->def->modality(r->scope, layer, m);
        if (r->scope == MF_SCOPE_MODEL) /* embeddings and final norms belong to their tower */
            t->modality = r->tower == MF_TOWER_VISION ? bd->def->modality(MF_SCOPE_VIT_LAYER, -1, m)
                          : r->tower == MF_TOWER_TEXT  ? bd->def->modality(MF_SCOPE_TEXT_LAYER, -1, m)
                          : r->tower == MF_TOWER_ITC || r->tower == MF_TOWER_ITM
                              ? MF_MOD_NONE
                              : bd->def->modality(MF_SCOPE_DEC_LAYER, -1, m);
    }
    if (tied) {
        int ti = mf_model_tensor_index(m, tied);
        MF_ASSERT(ti >= 0);
        t->tied_to = ti;
    }
    *out_idx = idx;
    return MF_OK;
}

static void *scope_base(struct mf_model *m, enum mf_scope sc, int64_t l)
{
    switch (sc) {
    case MF_SCOPE_MODEL: return m;
    case MF_SCOPE_VIT_LAYER: return &m->vision.layers[l];
    case MF_SCOPE_TEXT_LAYER: return &m->text.layers[l];
    case MF_SCOPE_DEC_LAYER: return &m->dec.layers[l];
    }
    return NULL;
}

static int64_t scope_layers(const struct mf_model *m, enum mf_scope sc)
{
    switch (sc) {
    case MF_SCOPE_MODEL: return 1;
    case MF_SCOPE_VIT_LAYER: return m->vision.cfg.n_layer;
    case MF_SCOPE_TEXT_LAYER: return m->text.cfg.n_layer;
    case MF_SCOPE_DEC_LAYER: return m->dec.cfg.n_layer;
    }
    return 0;
}

static bool layer_has_cross(const struct mf_model *m, enum mf_scope sc, int64_t l)
{
    if (sc == MF_SCOPE_TEXT_LAYER)
        return l >= m->text.cfg.cross_from;
    if (sc == MF_SCOPE_DEC_LAYER)
        return l >= m->dec.cfg.cross_from;
    return false;
}

static enum mf_status bind_rule(struct binder *bd, const struct mf_name_rule *r, int64_t l, struct mf_err *err)
{
    struct mf_model *m = bd->m;
    char name[256], fb[256], wname[272], wfb[272];
    bool tied = r->fallback && (r->flags & MF_RULE_TIED);
    snprintf(name, sizeof name, r->fmt, (int)l);
    fb[0] = 0;
    if (tied)
        snprintf(fb, sizeof fb, r->fallback, (int)l);
    char *base = scope_base(m, r->scope, l);
    bool optional = (r->flags & MF_RULE_OPTIONAL) != 0;
    int idx;
    enum mf_status st;

    if (r->kind == MF_BIND_RAW) {
        return bind_one(bd, r, name, tied ? fb : NULL, r->ndim, r->shape, (const float **)(base + r->off), l,
                        "", optional, &idx, err);
    }
    if (r->kind == MF_BIND_LN) {
        struct mf_ln *ln = (struct mf_ln *)(base + r->off);
        ln->d = dim_value(m, r->shape[0]);
        snprintf(wname, sizeof wname, "%s.weight", name);
        snprintf(wfb, sizeof wfb, "%s.weight", fb);
        if ((st = bind_one(bd, r, wname, tied ? wfb : NULL, 1, r->shape, &ln->w, l, ".weight", optional, &idx, err)))
            return st;
        if (optional && idx < 0)
            return MF_OK;
        snprintf(wname, sizeof wname, "%s.bias", name);
        snprintf(wfb, sizeof wfb, "%s.bias", fb);
        return bind_one(bd, r, wname, tied ? wfb : NULL, 1, r->shape, &ln->b, l, ".bias", false, &idx, err);
    }
    /* LINEAR */
    struct mf_linear *lin = (struct mf_linear *)(base + r->off);
    lin->out = dim_value(m, r->shape[0]);
    lin->in = dim_value(m, r->shape[1]);
    lin->tid = -1;
    snprintf(wname, sizeof wname, "%s.weight", name);
    snprintf(wfb, sizeof wfb, "%s.weight", fb);
    if ((st = bind_one(bd, r, wname, tied ? wfb : NULL, 2, r->shape, &lin->w, l, ".weight", optional, &idx, err)))
        return st;
    if (idx < 0)
        return MF_OK;
    struct mf_model_tensor *t = &m->tensors[idx];
    if ((r->flags & MF_RULE_PRUNABLE) && t->tied_to < 0)
        t->prunable = true;
    /* Calibration statistics are recorded only by the module that owns the weight: a tied copy
     * (decoder layer bound to the encoder's tensor, or its own copy of it) records nothing, as in
     * the reference, where only the text-encoder module is hooked (models.md §4.7). */
    bool own = t->tied_to < 0 && strcmp(t->name, wname) == 0;
    lin->tid = (r->flags & MF_RULE_PRUNABLE) && own ? idx : -1;
    if (r->kind == MF_BIND_LINEAR_NOBIAS)
        return MF_OK;
    snprintf(wname, sizeof wname, "%s.bias", name);
    snprintf(wfb, sizeof wfb, "%s.bias", fb);
    return bind_one(bd, r, wname, tied ? wfb : NULL, 1, r->shape, &lin->b, l, ".bias",
                    (r->flags & MF_RULE_BIAS_OPT) != 0, &idx, err);
}

/* Momentum copies and other aliases receive the mask of the tensor they copy. */
static void apply_aliases(struct mf_model *m, const struct mf_layout_def *def)
{
    char buf[512];
    for (size_t i = 0; i < m->n_tensors; i++) {
        struct mf_model_tensor *t = &m->tensors[i];
        if (t->tied_to >= 0 || strcmp(t->role, "unused") != 0)
            continue;
        for (size_t a = 0; a < def->n_aliases; a++) {
            size_t n = strlen(def->aliases[a].from);
            if (strncmp(t->name, def->aliases[a].from, n) != 0)
                continue;
            snprintf(buf, sizeof buf, "%s%s", def->aliases[a].to, t->name + n);
            const struct mf_st_entry *e = mf_checkpoint_find(m->ck, buf, NULL);
            if (!e)
                continue;
            int j = mf_model_tensor_index(m, e);
            if (j >= 0 && m->tensors[j].prunable && e->ndim == t->ndim &&
                memcmp(e->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) == 0) {
                t->tied_to = j;
                t->modality = m->tensors[j].modality;
                t->layer = m->tensors[j].layer;
            }
        }
    }
}

static enum mf_status convert_all(struct binder *bd, struct mf_err *err)
{
    struct mf_model *m = bd->m;
    size_t total = 0;
    /* First pass: decide which entries need a converted copy (unique entries only). */
    for (size_t i = 0; i < bd->n; i++) {
        const struct mf_st_entry *e = bd->b[i].e;
        bool inplace = e->dtype == MF_DTYPE_F32 && ((uintptr_t)e->data % 4) == 0;
        if (inplace)
            continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = bd->b[j].e == e;
        if (!seen)
            total += e->nbytes / mf_dtype_size(e->dtype);
    }
    if (total) {
        size_t bytes;
        if (!mf_mul_size(total, sizeof(float), &bytes) || !(m->f32_block = mf_malloc_aligned(bytes)))
            return mf_err_set(err, MF_ERR_NOMEM, "out of memory converting %zu weights to f32", total);
    }
    size_t used = 0;
    for (size_t i = 0; i < bd->n; i++) {
        const struct mf_st_entry *e = bd->b[i].e;
        int ti = mf_model_tensor_index(m, e);
        if (e->dtype == MF_DTYPE_F32 && ((uintptr_t)e->data % 4) == 0) {
            *bd->b[i].dst = (const float *)e->data;
            m->w32[ti] = *bd->b[i].dst;
            continue;
        }
        const float *prev = NULL;
        for (size_t j = 0; j < i && !prev; j++)
            if (bd->b[j].e == e)
                prev = *bd->b[j].dst;
        if (prev) {
            *bd->b[i].dst = prev;
            m->w32[ti] = prev;
            continue;
        }
        int64_t n = (int64_t)(e->nbytes / mf_dtype_size(e->dtype));
        float *dst = m->f32_block + used;
        mf_convert_to_f32(dst, e->data, e->dtype, n);
        used += (size_t)n;
        *bd->b[i].dst = dst;
        m->w32[ti] = dst;
    }
    return MF_OK;
}

enum mf_status mf_layout_bind(struct mf_model *m, const struct mf_layout_def *def, struct mf_err *err)
{
    struct binder bd = {.m = m, .def = def};
    enum mf_status st = MF_OK;
    for (size_t i = 0; i < def->n_rules; i++) {
        const struct mf_name_rule *r = &def->rules[i];
        if (!tower_present(m, r->tower))
            continue;
        int64_t nl = scope_layers(m, r->scope);
        for (int64_t l = 0; l < nl; l++) {
            if ((r->flags & MF_RULE_CROSS) && !layer_has_cross(m, r->scope, l))
                continue;
            if ((st = bind_rule(&bd, r, l, err)))
                goto done;
        }
    }
    apply_aliases(m, def);
    if ((st = convert_all(&bd, err)) == MF_OK)
        mf_layout_grad_indices(m);
done:
    mf_free(bd.b);
    return st;
}

int mf_layout_grad_owner(const struct mf_model *m, const float *p)
{
    if (!p)
        return -1;
    for (size_t i = 0; i < m->n_tensors; i++) {
        if (m->w32[i] != p)
            continue;
        int o = (int)i;
        /* tied_to chains are one link long today; the bound keeps a malformed table finite */
        for (size_t step = 0; step < m->n_tensors && m->tensors[o].tied_to >= 0; step++)
            o = m->tensors[o].tied_to;
        return o;
    }
    return -1;
}

static void lin_idx(const struct mf_model *m, struct mf_linear *l)
{
    l->wi = mf_layout_grad_owner(m, l->w);
    l->bi = mf_layout_grad_owner(m, l->b);
}

static void ln_idx(const struct mf_model *m, struct mf_ln *l)
{
    l->wi = mf_layout_grad_owner(m, l->w);
    l->bi = mf_layout_grad_owner(m, l->b);
}

static void bert_idx(const struct mf_model *m, struct mf_bert *t, bool present)
{
    t->word_i = mf_layout_grad_owner(m, t->word);
    t->pos_i = mf_layout_grad_owner(m, t->pos);
    t->tok_type_i = mf_layout_grad_owner(m, t->tok_type);
    ln_idx(m, &t->ln_emb);
    for (int64_t l = 0; present && t->layers && l < t->cfg.n_layer; l++) {
        struct mf_bert_layer *L = &t->layers[l];
        struct mf_linear *lins[] = {&L->q, &L->k, &L->v, &L->o, &L->cq, &L->ck, &L->cv, &L->co, &L->inter, &L->out};
        for (size_t j = 0; j < MF_ARRAY_LEN(lins); j++)
            lin_idx(m, lins[j]);
        ln_idx(m, &L->ln_attn);
        ln_idx(m, &L->ln_cross);
        ln_idx(m, &L->ln_out);
    }
}

void mf_layout_grad_indices(struct mf_model *m)
{
    struct mf_vit *v = &m->vision;
    v->patch_wi = mf_layout_grad_owner(m, v->patch_w);
    v->patch_bi = mf_layout_grad_owner(m, v->patch_b);
    v->cls_i = mf_layout_grad_owner(m, v->cls);
    v->pos_i = mf_layout_grad_owner(m, v->pos);
    ln_idx(m, &v->ln_pre);
    ln_idx(m, &v->ln_post);
    for (int64_t l = 0; v->layers && l < v->cfg.n_layer; l++) {
        struct mf_vit_layer *L = &v->layers[l];
        struct mf_linear *lins[] = {&L->qkv, &L->q, &L->k, &L->v, &L->proj, &L->fc1, &L->fc2};
        for (size_t j = 0; j < MF_ARRAY_LEN(lins); j++)
            lin_idx(m, lins[j]);
        ln_idx(m, &L->ln1);
        ln_idx(m, &L->ln2);
    }
    bert_idx(m, &m->text, m->info.has_text_encoder);
    bert_idx(m, &m->dec, m->info.has_decoder);
    lin_idx(m, &m->lm.dense);
    ln_idx(m, &m->lm.ln);
    m->lm.dec_wi = mf_layout_grad_owner(m, m->lm.dec_w);
    m->lm.dec_bi = mf_layout_grad_owner(m, m->lm.dec_b);
    lin_idx(m, &m->vision_proj);
    lin_idx(m, &m->text_proj);
    lin_idx(m, &m->itm_head);
}
