/* prune/gprune.h: what snip.c and tamt.c share (internal). */
#ifndef MF_PRUNE_GPRUNE_H
#define MF_PRUNE_GPRUNE_H

#include "multiflow/prune.h"
#include "prune/bracket.h" /* mf_sel_count_at */
/* Global exact-k: masks[i] = 0 for the k lowest scores over the whole set (tie rule of select.c). */
enum mf_status mf_gprune_select_global(struct mf_pool *pool, const struct mf_prune_set *set,
                                       const float *const *scores, int64_t k, uint8_t *const *masks,
                                       struct mf_err *err);
/* TAMT for one sparsity (tamt.c); arguments checked by mf_gprune_run. */
enum mf_status mf_tamt_run(struct mf_pool *pool, const struct mf_prune_set *set, double s,
                           const struct mf_gprune_opts *o, const struct mf_grad_source *src, float *const *scores,
                           uint8_t *const *masks, struct mf_err *err);

#endif
