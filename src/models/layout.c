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

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ---- name index and the completeness check ----------------------------------------------- */

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const struct mf_model_tensor *const *)a)->name, (*(const struct mf_model_tensor *const *)b)->name);
}

enum mf_status mf_model_index_names(struct mf_model *m, struct mf_err *err)
{
    size_t n = m->n_tensors;
    const struct mf_model_tensor **p = mf_malloc((n ? n : 1) * sizeof *p);
    mf_free(m->by_name);
    m->by_name = mf_malloc((n ? n : 1) * sizeof *m->by_name);
    if (!p || !m->by_name) {
        mf_free(p);
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory indexing %zu tensor names", n);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = &m->tensors[i];
    qsort(p, n, sizeof *p, cmp_tensor_name);
    for (size_t i = 0; i < n; i++)
        m->by_name[i] = (size_t)(p[i] - m->tensors);
    mf_free(p);
    return MF_OK;
}

int mf_model_find(const struct mf_model *m, const char *name)
{
    size_t lo = 0, hi = m->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->tensors[m->by_name[mid]].name, name);
        if (c == 0)
            return (int)m->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

int64_t mf_layout_layer_index(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) != 0)
        return -1;
    const char *p = name + n;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '.'))
        return -1;
    int64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        if ((v = 10 * v + (*p - '0')) >= MF_MAX_LAYERS)
            return -1;
    return *p == '.' ? v : -1;
}

/* The problems found so far, listed by name while they fit in one error message. */
struct report {
    char items[MF_ERR_MSG_LEN];
    size_t len, room;
    int64_t n_missing, n_unexpected, n_shape, n_left_out;
};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void report_add(struct report *r, int64_t *count, const char *fmt, ...)
{
    char item[MF_ERR_MSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(item, sizeof item, fmt, ap);
    va_end(ap);
    (*count)++;
    size_t n = strlen(item);
    if (r->len + n + 2 >= r->room) {
        r->n_left_out++;
        return;
    }
    r->len += (size_t)snprintf(r->items + r->len, sizeof r->items - r->len, "%s%s", r->len ? "; " : "", item);
}

/* One tensor a rule binds at one layer: its name, the tied fallback (or ""), the expected shape. */
struct wanted {
    char name[272], alt[272];
    int ndim;
    int64_t shape[4];
};

static void want_set(struct wanted *w, const struct mf_model *m, const char *base, const char *alt, const char *suffix,
                     int ndim, const enum mf_dim *dims)
{
    snprintf(w->name, sizeof w->name, "%s%s", base, suffix);
    w->alt[0] = 0;
    if (alt[0])
        snprintf(w->alt, sizeof w->alt, "%s%s", alt, suffix);
    w->ndim = ndim;
    for (int i = 0; i < ndim && i < 4; i++)
        w->shape[i] = dim_value(m, dims[i]);
}

/* The tensors rule r binds at layer l (weight first, then the bias of LINEAR/LN); *n_req of them
 * are required once the first is present (a BIAS_OPT bias is not). Returns how many. */
static int rule_wants(const struct mf_model *m, const struct mf_name_rule *r, int64_t l, struct wanted w[2], int *n_req)
{
    char base[256], fb[256];
    snprintf(base, sizeof base, r->fmt, (int)l);
    fb[0] = 0;
    if (r->fallback && (r->flags & MF_RULE_TIED))
        snprintf(fb, sizeof fb, r->fallback, (int)l);
    switch (r->kind) {
    case MF_BIND_RAW:
        want_set(&w[0], m, base, fb, "", r->ndim, r->shape);
        return *n_req = 1;
    case MF_BIND_LN:
        want_set(&w[0], m, base, fb, ".weight", 1, r->shape);
        want_set(&w[1], m, base, fb, ".bias", 1, r->shape);
        return *n_req = 2;
    case MF_BIND_LINEAR_NOBIAS:
        want_set(&w[0], m, base, fb, ".weight", 2, r->shape);
        return *n_req = 1;
    case MF_BIND_LINEAR:
        want_set(&w[0], m, base, fb, ".weight", 2, r->shape);
        want_set(&w[1], m, base, fb, ".bias", 1, r->shape);
        *n_req = (r->flags & MF_RULE_BIAS_OPT) ? 1 : 2;
        return 2;
    }
    return *n_req = 0;
}

/* The tensor w names (or its tied fallback), marked as expected; -1 if neither exists. A wrong
 * shape of the tensor itself is reported (a fallback's own rule checks the fallback). */
static int want_find(const struct mf_model *m, const struct wanted *w, bool *expected, struct report *rep)
{
    int i = mf_model_find(m, w->name);
    if (i < 0 && w->alt[0]) {
        int j = mf_model_find(m, w->alt);
        if (j >= 0)
            expected[j] = true;
        return j;
    }
    if (i < 0)
        return -1;
    expected[i] = true;
    const struct mf_model_tensor *t = &m->tensors[i];
    bool ok = w->ndim < 0 || t->ndim == w->ndim;
    for (int d = 0; ok && d < w->ndim; d++)
        ok = t->shape[d] == w->shape[d];
    if (!ok) {
        char got[96], want[96];
        mf_shape_str(got, sizeof got, t->ndim, t->shape);
        mf_shape_str(want, sizeof want, w->ndim, w->shape);
        report_add(rep, &rep->n_shape, "'%s' has shape %s, expected %s", t->name, got, want);
    }
    return i;
}

/* Checks rule r at layer l: counts required tensors and those found into *req / *found, lists the
 * missing ones in miss (unless NULL: a wholly absent layer is reported once by the caller) and
 * wrong shapes in shape. */
static void check_rule(const struct mf_model *m, const struct mf_name_rule *r, int64_t l, bool *expected,
                       struct report *miss, struct report *shape, int64_t *req, int64_t *found)
{
    struct wanted w[2];
    int n_req, n = rule_wants(m, r, l, w, &n_req);
    for (int k = 0; k < n; k++) {
        int i = want_find(m, &w[k], expected, shape);
        if (k == 0 && i < 0 && (r->flags & MF_RULE_OPTIONAL))
            return;
        if (k >= n_req)
            continue;
        (*req)++;
        if (i >= 0)
            (*found)++;
        else if (miss)
            report_add(miss, &miss->n_missing, "missing '%s'", w[k].name);
    }
}

/* The part of a layer rule's name before the layer index ("visual_encoder.blocks."). */
static void layer_prefix(const struct mf_name_rule *r, char *buf, size_t n)
{
    const char *p = strstr(r->fmt, "%d");
    size_t k = p ? (size_t)(p - r->fmt) : strlen(r->fmt);
    if (k >= n)
        k = n - 1;
    memcpy(buf, r->fmt, k);
    buf[k] = 0;
}

static bool starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* Whether def binds a tensor called name (in m's towers and layer counts): an orphaned copy of such
 * a tensor is not reported, the absence of the original is. */
static bool is_wanted(const struct mf_model *m, const struct mf_layout_def *def, const char *name)
{
    char prefix[256];
    for (size_t i = 0; i < def->n_rules; i++) {
        const struct mf_name_rule *r = &def->rules[i];
        if (!tower_present(m, r->tower))
            continue;
        int64_t l = 0;
        if (r->scope != MF_SCOPE_MODEL) {
            layer_prefix(r, prefix, sizeof prefix);
            if ((l = mf_layout_layer_index(name, prefix)) < 0 || l >= scope_layers(m, r->scope))
                continue;
        }
        struct wanted w[2];
        int n_req, n = rule_wants(m, r, l, w, &n_req);
        for (int k = 0; k < n; k++)
            if (strcmp(w[k].name, name) == 0)
                return true;
    }
    return false;
}

/* Alias (momentum) prefixes present in part: every expected tensor under the target prefix needs
 * its copy, and every copy its original with the same shape. */
static void check_aliases(const struct mf_model *m, const struct mf_layout_def *def, const bool *expected,
                          struct report *rep)
{
    char twin[600];
    for (size_t a = 0; a < def->n_aliases; a++) {
        const char *from = def->aliases[a].from, *to = def->aliases[a].to;
        bool present = false;
        for (size_t i = 0; i < m->n_tensors && !present; i++)
            present = starts_with(m->tensors[i].name, from);
        if (!present)
            continue;
        for (size_t i = 0; i < m->n_tensors; i++) {
            const struct mf_model_tensor *t = &m->tensors[i];
            if (starts_with(t->name, from)) {
                snprintf(twin, sizeof twin, "%s%s", to, t->name + strlen(from));
                int j = mf_model_find(m, twin);
                if (j < 0 && !is_wanted(m, def, twin)) {
                    report_add(rep, &rep->n_unexpected, "unexpected '%s' (a copy of '%s', which is absent)", t->name,
                               twin);
                } else if (j >= 0 &&
                           (m->tensors[j].ndim != t->ndim ||
                            memcmp(m->tensors[j].shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) != 0)) {
                    char got[96], want[96];
                    mf_shape_str(got, sizeof got, t->ndim, t->shape);
                    mf_shape_str(want, sizeof want, m->tensors[j].ndim, m->tensors[j].shape);
                    report_add(rep, &rep->n_shape, "'%s' has shape %s, its original '%s' %s", t->name, got, twin,
                               want);
                }
            } else if (expected[i] && starts_with(t->name, to)) {
                snprintf(twin, sizeof twin, "%s%s", from, t->name + strlen(to));
                if (mf_model_find(m, twin) < 0)
                    report_add(rep, &rep->n_missing, "missing '%s' (the momentum copies '%s*' are incomplete)", twin,
                               from);
            }
        }
    }
}

enum mf_status mf_layout_check_names(const struct mf_model *m, const struct mf_layout_def *def, struct mf_err *err)
{
    static const enum mf_scope scopes[] = {MF_SCOPE_VIT_LAYER, MF_SCOPE_TEXT_LAYER, MF_SCOPE_DEC_LAYER};
    char head[MF_ERR_MSG_LEN], prefix[256];
    bool *expected = mf_calloc(m->n_tensors ? m->n_tensors : 1, sizeof *expected);
    if (!expected)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory checking %zu tensor names", m->n_tensors);
    snprintf(head, sizeof head, "%s: the checkpoint does not match the %s layout (%lld vision, %lld text layers): ",
             m->path ? m->path : "checkpoint", def->name, (long long)m->vision.cfg.n_layer,
             (long long)m->text.cfg.n_layer);
    struct report rep = {.room = sizeof rep.items};
    if (strlen(head) + 96 < rep.room)
        rep.room -= strlen(head) + 96; /* the head and the counts must fit beside the items */
    else
        rep.room = 0;
    int64_t req = 0, found = 0; /* counts of the model-scope rules (reported one by one) */

    /* tensors outside the layers */
    for (size_t i = 0; i < def->n_rules; i++)
        if (def->rules[i].scope == MF_SCOPE_MODEL && tower_present(m, def->rules[i].tower))
            check_rule(m, &def->rules[i], 0, expected, &rep, &rep, &req, &found);

    /* every layer below the layer count; a layer with none of its tensors is one entry */
    for (size_t s = 0; s < MF_ARRAY_LEN(scopes); s++) {
        const struct mf_name_rule *first = NULL;
        for (size_t i = 0; i < def->n_rules && !first; i++)
            if (def->rules[i].scope == scopes[s] && tower_present(m, def->rules[i].tower))
                first = &def->rules[i];
        if (!first)
            continue;
        layer_prefix(first, prefix, sizeof prefix);
        for (int64_t l = 0; l < scope_layers(m, scopes[s]); l++) {
            int64_t lreq = 0, lfound = 0;
            for (int pass = 0; pass < 2; pass++) {
                for (size_t i = 0; i < def->n_rules; i++) {
                    const struct mf_name_rule *r = &def->rules[i];
                    if (r->scope != scopes[s] || !tower_present(m, r->tower) ||
                        ((r->flags & MF_RULE_CROSS) && !layer_has_cross(m, r->scope, l)))
                        continue;
                    if (pass == 0)
                        check_rule(m, r, l, expected, NULL, &rep, &lreq, &lfound);
                    else /* shapes were reported by pass 0 */
                        check_rule(m, r, l, expected, &rep, &(struct report){.room = 0}, &lreq, &lfound);
                }
                if (pass == 0 && lfound == lreq)
                    break; /* complete */
                if (pass == 0 && lfound == 0) {
                    report_add(&rep, &rep.n_missing, "missing every tensor of layer '%s%lld.*' (%lld)", prefix,
                               (long long)l, (long long)lreq);
                    break;
                }
                if (pass == 1)
                    break;
            }
        }
    }

    /* names inside a layer that the table does not know, or beyond the layer count */
    for (size_t i = 0; i < def->n_rules; i++) {
        const struct mf_name_rule *r = &def->rules[i];
        if (r->scope == MF_SCOPE_MODEL || !tower_present(m, r->tower))
            continue;
        bool seen = false; /* one pass per distinct prefix */
        for (size_t j = 0; j < i && !seen; j++)
            seen = def->rules[j].scope != MF_SCOPE_MODEL && tower_present(m, def->rules[j].tower) &&
                   strncmp(def->rules[j].fmt, r->fmt, strcspn(r->fmt, "%")) == 0 &&
                   strcspn(def->rules[j].fmt, "%") == strcspn(r->fmt, "%");
        if (seen)
            continue;
        layer_prefix(r, prefix, sizeof prefix);
        const int64_t nl = scope_layers(m, r->scope);
        for (size_t t = 0; t < m->n_tensors; t++) {
            const char *name = m->tensors[t].name;
            if (expected[t] || !starts_with(name, prefix))
                continue;
            int64_t l = mf_layout_layer_index(name, prefix);
            if (l >= 0 && l < nl)
                report_add(&rep, &rep.n_unexpected, "unexpected '%s'", name);
            else
                report_add(&rep, &rep.n_unexpected, "unexpected '%s' (the model has %lld layers there)", name,
                           (long long)nl);
        }
    }
    check_aliases(m, def, expected, &rep);
    mf_free(expected);

    const int64_t total = rep.n_missing + rep.n_unexpected + rep.n_shape;
    if (total == 0)
        return MF_OK;
    enum mf_status code = rep.n_missing ? MF_ERR_MISSING : rep.n_shape ? MF_ERR_SHAPE : MF_ERR_FORMAT;
    char more[64] = "";
    if (rep.n_left_out)
        snprintf(more, sizeof more, "; and %lld more", (long long)rep.n_left_out);
    return mf_err_set(err, code, "%s%s%s (%lld missing, %lld unexpected, %lld of the wrong shape)", head, rep.items,
                      more, (long long)rep.n_missing, (long long)rep.n_unexpected, (long long)rep.n_shape);
}

enum mf_status mf_layout_check_finite(const struct mf_model *m, struct mf_err *err)
{
    for (size_t i = 0; i < m->n_tensors; i++) {
        const struct mf_model_tensor *t = &m->tensors[i];
        int64_t n = 1;
        for (int d = 0; d < t->ndim; d++)
            n *= t->shape[d];
        const void *data = m->w32[i] ? (const void *)m->w32[i] : t->data;
        const enum mf_dtype dt = m->w32[i] ? MF_DTYPE_F32 : t->dtype;
        int64_t j = mf_find_nonfinite(data, dt, n);
        if (j < 0)
            continue;
        float v;
        if (dt == MF_DTYPE_F32)
            memcpy(&v, (const char *)data + 4 * (size_t)j, 4);
        else
            mf_convert_to_f32(&v, (const char *)data + mf_dtype_size(dt) * (size_t)j, dt, 1);
        size_t shard = 0;
        const char *file = m->path;
        if (m->ck && mf_checkpoint_find(m->ck, t->name, &shard))
            file = mf_safetensors_path(mf_checkpoint_shard(m->ck, shard));
        return mf_err_set(err, MF_ERR_NUMERIC, "%s: tensor '%s' holds a non-finite value (%g) at element %lld of %lld",
                          file, t->name, (double)v, (long long)j, (long long)n);
    }
    return MF_OK;
}

enum mf_status mf_layout_bind(struct mf_model *m, const struct mf_layout_def *def, struct mf_err *err)
{
    struct binder bd = {.m = m, .def = def};
    enum mf_status st = mf_layout_check_names(m, def, err);
    if (st)
        return st;
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
    if ((st = convert_all(&bd, err)) == MF_OK && (st = mf_layout_check_finite(m, err)) == MF_OK)
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
