/*
 * prune/set.c: the prunable tensors of a loaded model, in the selection order of pruning.md
 * (tensor names byte-wise ascending), with their f32 weights and calibration statistics.
 */
#include <stdlib.h>
#include <string.h>

#include "models/model_impl.h"
#include "multiflow/prune.h"

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct mf_prune_tensor *)a)->name, ((const struct mf_prune_tensor *)b)->name);
}

enum mf_status mf_prune_set_init(const struct mf_model *m, const struct mf_stats *stats, struct mf_prune_set *set,
                                 struct mf_err *err)
{
    memset(set, 0, sizeof *set);
    size_t n = 0, nt = mf_model_n_tensors(m);
    for (size_t i = 0; i < nt; i++)
        n += mf_model_tensor_at(m, i)->prunable;
    if (n == 0)
        return mf_err_set(err, MF_ERR_MISSING, "%s: the checkpoint has no prunable tensors", m->path);
    set->t = mf_calloc(n, sizeof *set->t);
    if (!set->t)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    size_t j = 0;
    for (size_t i = 0; i < nt; i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        if (!t->prunable)
            continue;
        struct mf_prune_tensor *p = &set->t[j++];
        p->name = t->name;
        p->model_index = (int)i;
        p->modality = t->modality;
        p->out = t->shape[0];
        p->in = t->shape[1];
        p->n = p->out * p->in;
        p->w = mf_model_weight_f32(m, i);
        MF_ASSERT(t->ndim == 2 && p->w);
        if (stats) {
            p->sumsq = mf_stats_sumsq(stats, (int)i);
            p->count = mf_stats_count(stats, (int)i);
        }
        set->total += p->n;
    }
    set->n = n;
    qsort(set->t, n, sizeof *set->t, by_name);
    return MF_OK;
}

void mf_prune_set_free(struct mf_prune_set *set)
{
    mf_free(set->t);
    memset(set, 0, sizeof *set);
}
