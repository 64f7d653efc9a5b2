/*
 * prune/snip.c: gradient-based pruners SNIP and IterSNIP (pruning.md "Gradient-based pruners"),
 * the IterSNIP sparsity schedules, the method names, and mf_gprune_run, the one entry point for
 * every gradient-based method (TAMT lives in tamt.c).
 *
 * SNIP: score |g * w| / sum of all scores, g the mean gradient over every batch of one pass of
 * the source (src->pass_batches, the reference's num_batches) at the model's weights, the gradient
 * `multiflow grad` writes; global exact-k. IterSNIP's per-round count (o->round_batches) does not
 * apply. IterSNIP: T rounds; round t recomputes g at the masked weights
 * (w * mask, so pruned weights read as zero in the forward and backward) over the NEXT batches of
 * the source, scores |g * (w * mask)| (0 where pruned), and prunes globally to s_t. Pruned weights
 * stay pruned: their selection key is -1, below every score, so exact-k removes them first (the
 * reference gets the same by pruning every score <= the k-th, zeros included).
 *
 * Does not: hold gradients (the source owns them), update weights, or prune biases.
 * Reference: FarinaMatteo/multiflow pruners/snip.py, pruners/itersnip.py, utils/prune_utils.py
 * generate_schedule (Lee et al., ICLR 2019; de Jorge et al., ICLR 2021).
 */
#include <math.h>
#include <string.h>

#include "core/common.h"
#include "prune/gprune.h"

static const char *const gmethod_names[MF_GMETHOD_COUNT] = {
    [MF_GMETHOD_SNIP] = "snip", [MF_GMETHOD_ITERSNIP] = "itersnip", [MF_GMETHOD_TAMT] = "tamt",
    [MF_GMETHOD_CHITA] = "chita", [MF_GMETHOD_CHITAPP] = "chita++"};

const char *mf_gmethod_name(enum mf_gmethod m)
{
    if ((int)m < 0 || m >= MF_GMETHOD_COUNT)
        return "?";
    return gmethod_names[m];
}

bool mf_gmethod_parse(const char *name, enum mf_gmethod *m)
{
    for (int i = 0; i < MF_GMETHOD_COUNT; i++)
        if (strcmp(name, gmethod_names[i]) == 0) {
            *m = (enum mf_gmethod)i;
            return true;
        }
    return false;
}

static const char *const schedule_names[] = {[MF_SCHEDULE_EXP] = "exp", [MF_SCHEDULE_LINEAR] = "linear",
                                             [MF_SCHEDULE_CONST] = "const"};

const char *mf_schedule_name(enum mf_schedule sc)
{
    if ((int)sc < 0 || (size_t)sc >= MF_ARRAY_LEN(schedule_names))
        return "?";
    return schedule_names[sc];
}

bool mf_schedule_parse(const char *name, enum mf_schedule *sc)
{
    for (size_t i = 0; i < MF_ARRAY_LEN(schedule_names); i++)
        if (strcmp(name, schedule_names[i]) == 0) {
            *sc = (enum mf_schedule)i;
            return true;
        }
    return false;
}

double mf_schedule_sparsity(enum mf_schedule sc, double s, int64_t t, int64_t T)
{
    if (T < 1 || t >= T)
        return s; /* the last round is exactly s (1 - (1 - s) need not round back to s) */
    if (t < 1)
        return 0;
    switch (sc) {
    case MF_SCHEDULE_EXP: return 1.0 - pow(1.0 - s, (double)t / (double)T);
    case MF_SCHEDULE_LINEAR: return s * (double)t / (double)T;
    case MF_SCHEDULE_CONST: return s;
    }
    return s;
}

void mf_gprune_opts_default(struct mf_gprune_opts *o)
{
    memset(o, 0, sizeof *o);
    o->rounds = 60;
    o->schedule = MF_SCHEDULE_EXP;
    o->round_batches = 0;
    o->steps = 0;
    o->lr = 5e-5;
    o->weight_decay = 0.01;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->alpha = 2.0;
}

/* Global exact-k of the k lowest scores over the whole set. */
enum mf_status mf_gprune_select_global(struct mf_pool *pool, const struct mf_prune_set *set,
                                       const float *const *scores, int64_t k, uint8_t *const *masks,
                                       struct mf_err *err)
{
    enum mf_status st;
    int64_t *len = mf_malloc(set->n * sizeof *len);
    const char **names = mf_malloc(set->n * sizeof *names);
    if (!len || !names) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < set->n; i++) {
        len[i] = set->t[i].n;
        names[i] = set->t[i].name;
    }
    st = mf_select_lowest(pool, set->n, scores, len, names, k, masks, err);
fail:
    mf_free(len);
    mf_free(names);
    return st;
}

/* scores[i][j] = |g[i][j] * w[i][j]| / (sum of them all). w: set order; NULL = the model's. */
static enum mf_status snip_score(const struct mf_prune_set *set, const float *const *g, const float *const *w,
                                 float *const *scores, struct mf_err *err)
{
    double sum = 0;
    for (size_t i = 0; i < set->n; i++) {
        const float *wi = w ? w[i] : set->t[i].w;
        float *sc = scores[i];
        for (int64_t j = 0; j < set->t[i].n; j++) {
            sc[j] = fabsf(g[i][j] * wi[j]);
            sum += sc[j];
        }
    }
    if (!isfinite(sum))
        return mf_err_set(err, MF_ERR_NUMERIC, "snip: the sum of |g * w| over %lld weights is not finite",
                          (long long)set->total);
    if (sum > 0) {
        const float norm = (float)sum;
        for (size_t i = 0; i < set->n; i++)
            for (int64_t j = 0; j < set->t[i].n; j++)
                scores[i][j] /= norm;
    }
    return MF_OK;
}

enum mf_status mf_snip_scores(const struct mf_prune_set *set, const struct mf_gprune_opts *o,
                              const struct mf_grad_source *src, float *const *scores, struct mf_err *err)
{
    enum mf_status st;
    const float **g = mf_calloc(set->n, sizeof *g);
    if (!g)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    (void)o; /* SNIP has no per-round count: o->round_batches is IterSNIP's */
    /* every batch of one pass, from the source's current position (the CLI rewinds first) */
    if ((st = src->mean_grad(src->ud, NULL, src->pass_batches, g, err)))
        goto fail;
    st = snip_score(set, g, NULL, scores, err);
fail:
    mf_free(g);
    return st;
}

static enum mf_status itersnip(struct mf_pool *pool, const struct mf_prune_set *set, double s,
                               const struct mf_gprune_opts *o, const struct mf_grad_source *src, float *const *scores,
                               uint8_t *const *masks, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    const float **g = mf_calloc(set->n, sizeof *g);
    float **weff = mf_calloc(set->n, sizeof *weff); /* (n_i) w * mask of each tensor */
    if (!g || !weff) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < set->n; i++) {
        weff[i] = mf_malloc((size_t)set->t[i].n * sizeof(float));
        if (!weff[i]) {
            st = mf_err_set(err, MF_ERR_NOMEM, "itersnip: out of memory for the masked weights of '%s' (%lld floats)",
                            set->t[i].name, (long long)set->t[i].n);
            goto fail;
        }
        memcpy(weff[i], set->t[i].w, (size_t)set->t[i].n * sizeof(float));
        memset(masks[i], 1, (size_t)set->t[i].n);
    }
    for (int64_t t = 1; t <= o->rounds; t++) {
        /* round 1 runs the model's own weights (no mask yet) */
        if ((st = src->mean_grad(src->ud, t == 1 ? NULL : (const float *const *)weff, o->round_batches, g, err)))
            goto fail;
        if ((st = snip_score(set, g, (const float *const *)weff, scores, err)))
            goto fail;
        for (size_t i = 0; i < set->n; i++)
            for (int64_t j = 0; j < set->t[i].n; j++)
                if (!masks[i][j])
                    scores[i][j] = -1.0f; /* pruned earlier: pruned first again */
        const int64_t k = mf_sel_count_at(mf_schedule_sparsity(o->schedule, s, t, o->rounds), set->total);
        if ((st = mf_gprune_select_global(pool, set, (const float *const *)scores, k, masks, err)))
            goto fail;
        for (size_t i = 0; i < set->n; i++) {
            const float *w = set->t[i].w;
            for (int64_t j = 0; j < set->t[i].n; j++) {
                if (scores[i][j] < 0)
                    scores[i][j] = 0;
                weff[i][j] = masks[i][j] ? w[j] : 0.0f;
            }
        }
    }
fail:
    for (size_t i = 0; weff && i < set->n; i++)
        mf_free(weff[i]);
    mf_free(weff);
    mf_free(g);
    return st;
}

enum mf_status mf_gprune_run(struct mf_pool *pool, enum mf_gmethod method, const struct mf_prune_set *set,
                             double sparsity, const struct mf_gprune_opts *o, const struct mf_grad_source *src,
                             float *const *scores, uint8_t *const *masks, struct mf_err *err)
{
    if (!(sparsity >= 0 && sparsity < 1))
        return mf_err_set(err, MF_ERR_ARG, "%s: sparsity %g is not in [0, 1)", mf_gmethod_name(method), sparsity);
    if (set->n == 0 || !src || !src->mean_grad || src->pass_batches < 1)
        return mf_err_set(err, MF_ERR_ARG, "%s: no prunable tensors or no gradient source", mf_gmethod_name(method));
    if (o->round_batches < 0 || o->steps < 0)
        return mf_err_set(err, MF_ERR_ARG, "%s: negative batch count (%lld per round, %lld steps)",
                          mf_gmethod_name(method), (long long)o->round_batches, (long long)o->steps);
    switch (method) {
    case MF_GMETHOD_SNIP: {
        enum mf_status st = mf_snip_scores(set, o, src, scores, err);
        if (st)
            return st;
        return mf_gprune_select_global(pool, set, (const float *const *)scores, mf_sel_count_at(sparsity, set->total), masks, err);
    }
    case MF_GMETHOD_ITERSNIP:
        if (o->rounds < 1 || o->rounds > 100000)
            return mf_err_set(err, MF_ERR_ARG, "itersnip: %lld rounds (expected 1..100000)", (long long)o->rounds);
        return itersnip(pool, set, sparsity, o, src, scores, masks, err);
    case MF_GMETHOD_TAMT: return mf_tamt_run(pool, set, sparsity, o, src, scores, masks, err);
    default: break;
    }
    return mf_err_set(err, MF_ERR_ARG, "unknown gradient-based method %d", (int)method);
}
