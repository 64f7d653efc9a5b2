/*
 * models/grad.c: the gradient block (models/grad.h): one f32 buffer per model tensor that owns a
 * gradient, in one allocation, laid out in tensor order like the parameters (llm.c's
 * malloc_and_point_parameters for the gradients).
 *
 * Owners are found by walking every gradient index of the bound model structure (the fields
 * layout.c filled), so a tensor gets a buffer exactly when some forward weight accumulates into it:
 * unbound tensors (momentum copies, queues), tied copies and unused aliases get NULL.
 * Does not: optimiser state, gradient clipping, reductions across sessions.
 */
#include "models/grad.h"

#include <string.h>

static void mark(bool *own, size_t n, int i)
{
    if (i >= 0 && (size_t)i < n)
        own[i] = true;
}

static void mark_lin(bool *own, size_t n, const struct mf_linear *l)
{
    mark(own, n, l->wi);
    mark(own, n, l->bi);
}

static void mark_ln(bool *own, size_t n, const struct mf_ln *l)
{
    mark(own, n, l->wi);
    mark(own, n, l->bi);
}

static void mark_bert(bool *own, size_t n, const struct mf_bert *t)
{
    if (!t->layers)
        return;
    mark(own, n, t->word_i);
    mark(own, n, t->pos_i);
    mark(own, n, t->tok_type_i);
    mark_ln(own, n, &t->ln_emb);
    for (int64_t l = 0; l < t->cfg.n_layer; l++) {
        const struct mf_bert_layer *L = &t->layers[l];
        const struct mf_linear *lins[] = {&L->q, &L->k, &L->v, &L->o, &L->cq, &L->ck, &L->cv, &L->co, &L->inter, &L->out};
        for (size_t j = 0; j < MF_ARRAY_LEN(lins); j++)
            mark_lin(own, n, lins[j]);
        mark_ln(own, n, &L->ln_attn);
        mark_ln(own, n, &L->ln_cross);
        mark_ln(own, n, &L->ln_out);
    }
}

static void mark_all(bool *own, size_t n, const struct mf_model *m)
{
    const struct mf_vit *v = &m->vision;
    mark(own, n, v->patch_wi);
    mark(own, n, v->patch_bi);
    mark(own, n, v->cls_i);
    mark(own, n, v->pos_i);
    mark_ln(own, n, &v->ln_pre);
    mark_ln(own, n, &v->ln_post);
    for (int64_t l = 0; v->layers && l < v->cfg.n_layer; l++) {
        const struct mf_vit_layer *L = &v->layers[l];
        const struct mf_linear *lins[] = {&L->qkv, &L->q, &L->k, &L->v, &L->proj, &L->fc1, &L->fc2};
        for (size_t j = 0; j < MF_ARRAY_LEN(lins); j++)
            mark_lin(own, n, lins[j]);
        mark_ln(own, n, &L->ln1);
        mark_ln(own, n, &L->ln2);
    }
    if (m->info.has_text_encoder)
        mark_bert(own, n, &m->text);
    if (m->info.has_decoder) {
        mark_bert(own, n, &m->dec);
        mark_lin(own, n, &m->lm.dense);
        mark_ln(own, n, &m->lm.ln);
        mark(own, n, m->lm.dec_wi);
        mark(own, n, m->lm.dec_bi);
    }
    if (m->info.has_itc) {
        mark_lin(own, n, &m->vision_proj);
        mark_lin(own, n, &m->text_proj);
    }
    if (m->info.has_itm)
        mark_lin(own, n, &m->itm_head);
}

enum mf_status mf_grads_create(const struct mf_model *m, struct mf_grads **out, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    size_t n = m->n_tensors;
    bool *own = NULL;
    struct mf_grads *g = NULL;
    *out = NULL;
    if (!(own = mf_calloc(n ? n : 1, sizeof *own)) || !(g = mf_calloc(1, sizeof *g)) ||
        !(g->t = mf_calloc(n ? n : 1, sizeof *g->t))) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory for the gradient table (%zu tensors)", n);
        goto fail;
    }
    g->m = m;
    g->n = n;
    mark_all(own, n, m);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!own[i])
            continue;
        /* the tensor passed the binder's shape check, so its element count is its bytes / size */
        size_t numel = m->tensors[i].nbytes / mf_dtype_size(m->tensors[i].dtype);
        if (total + numel < total) {
            st = mf_err_set(err, MF_ERR_RANGE, "%s: gradient block size overflows", m->path);
            goto fail;
        }
        total += numel;
    }
    size_t bytes;
    if (total && (!mf_mul_size(total, sizeof(float), &bytes) || !(g->block = mf_malloc_aligned(bytes)))) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory for %zu gradient values", total);
        goto fail;
    }
    g->numel = total;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (!own[i])
            continue;
        g->t[i] = g->block + off;
        off += m->tensors[i].nbytes / mf_dtype_size(m->tensors[i].dtype);
    }
    mf_grads_zero(g);
    mf_free(own);
    *out = g;
    return MF_OK;
fail:
    mf_free(own);
    mf_grads_free(g);
    return st;
}

void mf_grads_zero(struct mf_grads *g)
{
    if (g && g->block)
        memset(g->block, 0, g->numel * sizeof(float));
}

void mf_grads_free(struct mf_grads *g)
{
    if (!g)
        return;
    mf_free_aligned(g->block);
    mf_free(g->t);
    mf_free(g);
}

float *mf_grads_tensor(const struct mf_grads *g, size_t i) { return g && i < g->n ? g->t[i] : NULL; }
