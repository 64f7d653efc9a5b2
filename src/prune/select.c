/*
 * prune/select.c: exact-k selection of the lowest scores over a scope of several arrays, and the
 * per-method mask computation built on it (spec: shared/spec/pruning.md, "Exact-k selection",
 * "Data-free pruners" scopes, MULTIFLOW steps 1 and 4).
 *
 * Algorithm: radix select on the order-preserving uint32 key of each float (sign flipped for
 * positives, all bits flipped for negatives, -0 canonicalised to +0 so that -0 == +0 tie). Three
 * histogram passes (11, 11 and 10 key bits) narrow the k-th key T; a fourth pass writes the mask:
 * keys below T are pruned, and among keys equal to T the first (k - count_below) in position order
 * (array, then element) are pruned. Every pass splits the positions of the scope into nth contiguous
 * ranges; per-thread histograms are reduced in thread order, and the per-thread counts of keys equal
 * to T (the last histogram) give each thread its share of the tie quota, so the result does not
 * depend on the thread count. O(total) per scope, no sort, O(nth * 2048) scratch.
 *
 * It does not compute scores (criteria.c) nor know about models; the scope is whatever the caller
 * passes. Deviation from the reference (pruning.md): the reference prunes every score <= the k-th
 * value (torch.kthvalue), so ties make it prune more than k; here exactly k are pruned.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/pool.h"
#include "multiflow/prune.h"

#define BINS 2048

enum sel_pass { PASS_HI = 0, PASS_MID = 1, PASS_LO = 2, PASS_FINAL = 3 };

struct sel {
    size_t n_arrays;
    const float *const *x;      /* n_arrays arrays, x[a] has len[a] floats */
    const int64_t *off;         /* (n_arrays + 1) prefix offsets of the positions */
    int64_t total;
    bool use_abs;               /* select on |x| (MULTIFLOW step 1 on the weights) */
    int nth;
    /* pass state */
    enum sel_pass pass;
    uint32_t prefix;            /* PASS_MID: key >> 21; PASS_LO: key >> 10 */
    uint32_t T;                 /* PASS_FINAL: the k-th key */
    int64_t *hist;              /* (nth, BINS) */
    int64_t *bad;               /* (nth) first non-finite position in the thread's range, or -1 */
    int64_t *quota;             /* (nth) PASS_FINAL: keys == T this thread prunes */
    uint8_t *const *mask;       /* PASS_FINAL output, or NULL */
    int64_t *counts;            /* (nth, n_arrays) PASS_FINAL output when mask is NULL */
};

static inline uint32_t float_key(float f, bool use_abs)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if (use_abs)
        u &= 0x7fffffffu;
    u = u == 0x80000000u ? 0 : u; /* -0 -> +0 */
    /* branchless (random signs would mispredict): negatives flip every bit, positives the sign */
    uint32_t neg = (uint32_t)((int32_t)u >> 31);
    return u ^ (neg | 0x80000000u);
}

static inline bool bits_nonfinite(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0x7f800000u) == 0x7f800000u;
}

/* Index of the array holding global position p (the last a with off[a] <= p, skipping empties). */
static size_t array_of(const struct sel *s, int64_t p)
{
    size_t lo = 0, hi = s->n_arrays; /* off[lo] <= p < off[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->off[mid] <= p)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static void sel_kernel(void *arg, int ith, int nth)
{
    struct sel *s = arg;
    int64_t b, e;
    mf_split_range(s->total, ith, nth, &b, &e);
    int64_t *hist = s->hist + (size_t)ith * BINS;
    const bool ab = s->use_abs;
    if (s->pass != PASS_FINAL)
        memset(hist, 0, BINS * sizeof *hist);
    if (s->pass == PASS_HI)
        s->bad[ith] = -1;
    int64_t quota = s->pass == PASS_FINAL ? s->quota[ith] : 0;
    int64_t *counts = s->counts ? s->counts + (size_t)ith * s->n_arrays : NULL;
    if (counts)
        memset(counts, 0, s->n_arrays * sizeof *counts);
    if (b >= e)
        return;
    size_t a = array_of(s, b);
    for (int64_t p = b; p < e; a++) {
        int64_t j0 = p - s->off[a], j1 = MF_MIN(e, s->off[a + 1]) - s->off[a];
        const float *x = s->x[a];
        p = s->off[a + 1];
        switch (s->pass) {
        case PASS_HI:
            for (int64_t j = j0; j < j1; j++) {
                if (bits_nonfinite(x[j])) {
                    s->bad[ith] = s->off[a] + j;
                    return;
                }
                hist[float_key(x[j], ab) >> 21]++;
            }
            break;
        case PASS_MID: {
            const uint32_t pre = s->prefix;
            for (int64_t j = j0; j < j1; j++) {
                uint32_t k = float_key(x[j], ab);
                hist[(k >> 10) & 0x7ffu] += (k >> 21) == pre; /* branchless: the bin is a coin flip */
            }
            break;
        }
        case PASS_LO: {
            const uint32_t pre = s->prefix;
            for (int64_t j = j0; j < j1; j++) {
                uint32_t k = float_key(x[j], ab);
                hist[k & 0x3ffu] += (k >> 10) == pre;
            }
            break;
        }
        case PASS_FINAL: {
            const uint32_t T = s->T;
            if (s->mask) {
                uint8_t *m = s->mask[a];
                for (int64_t j = j0; j < j1; j++) {
                    uint32_t k = float_key(x[j], ab);
                    uint8_t keep = k > T;
                    if (k == T) {
                        if (quota > 0)
                            quota--;
                        else
                            keep = 1;
                    }
                    m[j] = keep;
                }
            } else {
                int64_t c = 0;
                for (int64_t j = j0; j < j1; j++) {
                    uint32_t k = float_key(x[j], ab);
                    if (k < T) {
                        c++;
                    } else if (k == T && quota > 0) {
                        quota--;
                        c++;
                    }
                }
                counts[a] = c;
            }
            break;
        }
        }
    }
}

/* Sums the per-thread histograms and finds the bin holding the need-th smallest key (need >= 1);
 * *below gets the count of keys in lower bins. */
static uint32_t find_bin(const struct sel *s, int nbins, int64_t need, int64_t *below)
{
    int64_t cum = 0;
    for (int bin = 0; bin < nbins; bin++) {
        int64_t h = 0;
        for (int t = 0; t < s->nth; t++)
            h += s->hist[(size_t)t * BINS + bin];
        if (cum + h >= need) {
            *below = cum;
            return (uint32_t)bin;
        }
        cum += h;
    }
    MF_ASSERT(0 && "radix select: fewer keys than k");
    return 0;
}

static enum mf_status select_impl(struct mf_pool *pool, size_t n_arrays, const float *const *x, const int64_t *len,
                                  const char *const *names, int64_t k, bool use_abs, uint8_t *const *mask,
                                  int64_t *pruned, struct mf_err *err)
{
    enum mf_status rc = MF_OK;
    struct sel s = {0};
    int64_t *off = NULL;
    int nth = mf_pool_size(pool);

    if (n_arrays > 0 && (!x || !len))
        return mf_err_set(err, MF_ERR_ARG, "select: NULL score arrays or lengths for %zu arrays", n_arrays);
    off = mf_malloc((n_arrays + 1) * sizeof *off);
    s.hist = mf_malloc((size_t)nth * BINS * sizeof *s.hist);
    s.bad = mf_malloc((size_t)nth * sizeof *s.bad);
    s.quota = mf_calloc((size_t)nth, sizeof *s.quota);
    if (!off || !s.hist || !s.bad || !s.quota) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "select: out of memory for %d thread histograms", nth);
        goto fail;
    }
    off[0] = 0;
    for (size_t a = 0; a < n_arrays; a++) {
        if (len[a] < 0 || (len[a] > 0 && (!x[a] || (mask && !mask[a])))) {
            rc = mf_err_set(err, MF_ERR_ARG, "select: array %zu ('%s') has length %lld and a NULL buffer", a,
                            names && names[a] ? names[a] : "?", (long long)len[a]);
            goto fail;
        }
        if (__builtin_add_overflow(off[a], len[a], &off[a + 1])) {
            rc = mf_err_set(err, MF_ERR_RANGE, "select: total length overflows at array %zu", a);
            goto fail;
        }
    }
    if (k < 0 || k > off[n_arrays]) {
        rc = mf_err_set(err, MF_ERR_ARG, "select: k = %lld is outside [0, %lld]", (long long)k,
                        (long long)off[n_arrays]);
        goto fail;
    }
    s.n_arrays = n_arrays;
    s.x = x;
    s.off = off;
    s.total = off[n_arrays];
    s.use_abs = use_abs;
    s.nth = nth;

    /* pass 1 also rejects NaN/inf, reporting the lowest bad position */
    s.pass = PASS_HI;
    mf_pool_run(pool, sel_kernel, &s);
    for (int t = 0; t < nth; t++) {
        if (s.bad[t] >= 0) {
            size_t a = array_of(&s, s.bad[t]);
            int64_t j = s.bad[t] - off[a];
            char label[32];
            snprintf(label, sizeof label, "array %zu", a);
            rc = mf_err_set(err, MF_ERR_NUMERIC, "%s of tensor '%s' contain a non-finite value (%g) at element %lld",
                            use_abs ? "weights" : "scores", names && names[a] ? names[a] : label, (double)x[a][j], (long long)j);
            goto fail;
        }
    }

    if (k == 0) {
        s.T = 0; /* below every finite key; quotas stay 0: nothing pruned */
    } else {
        int64_t below = 0, b = 0;
        uint32_t b1 = find_bin(&s, 2048, k, &b);
        below += b;
        s.pass = PASS_MID;
        s.prefix = b1;
        mf_pool_run(pool, sel_kernel, &s);
        uint32_t b2 = find_bin(&s, 2048, k - below, &b);
        below += b;
        s.pass = PASS_LO;
        s.prefix = (b1 << 11) | b2;
        mf_pool_run(pool, sel_kernel, &s);
        uint32_t b3 = find_bin(&s, 1024, k - below, &b);
        below += b;
        s.T = (s.prefix << 10) | b3;
        /* ties: the first (k - below) keys == T in position order; thread t holds hist[t][b3] of them */
        int64_t left = k - below;
        for (int t = 0; t < nth; t++) {
            int64_t eq = s.hist[(size_t)t * BINS + b3];
            s.quota[t] = MF_MIN(left, eq);
            left -= s.quota[t];
        }
        MF_ASSERT(left == 0);
    }
    s.pass = PASS_FINAL;
    s.mask = mask;
    if (!mask) {
        s.counts = mf_malloc((size_t)nth * (n_arrays ? n_arrays : 1) * sizeof *s.counts);
        if (!s.counts) {
            rc = mf_err_set(err, MF_ERR_NOMEM, "select: out of memory for per-thread counts");
            goto fail;
        }
    }
    mf_pool_run(pool, sel_kernel, &s);
    if (!mask) {
        for (size_t a = 0; a < n_arrays; a++) {
            int64_t c = 0;
            for (int t = 0; t < nth; t++)
                c += s.counts[(size_t)t * n_arrays + a];
            pruned[a] = c;
        }
    }
fail:
    mf_free(s.counts);
    mf_free(s.quota);
    mf_free(s.bad);
    mf_free(s.hist);
    mf_free(off);
    return rc;
}

enum mf_status mf_select_lowest(struct mf_pool *pool, size_t n_arrays, const float *const *scores,
                                const int64_t *len, const char *const *names, int64_t k, uint8_t *const *mask,
                                struct mf_err *err)
{
    if (n_arrays > 0 && !mask)
        return mf_err_set(err, MF_ERR_ARG, "select: NULL mask array");
    return select_impl(pool, n_arrays, scores, len, names, k, false, mask, NULL, err);
}

enum mf_status mf_select_count(struct mf_pool *pool, size_t n_arrays, const float *const *scores,
                               const int64_t *len, const char *const *names, int64_t k, int64_t *pruned,
                               struct mf_err *err)
{
    if (n_arrays > 0 && !pruned)
        return mf_err_set(err, MF_ERR_ARG, "select: NULL count array");
    return select_impl(pool, n_arrays, scores, len, names, k, false, NULL, pruned, err);
}

/* ---- per-method scopes ----------------------------------------------------------------------- */

/* k = floor(s * n) of the exact product (long double keeps 64 mantissa bits: no fudge term). */
static int64_t count_at(double s, int64_t n)
{
    long double v = floorl((long double)s * (long double)n);
    if (v < 0)
        return 0;
    if (v > (long double)n)
        return n;
    return (int64_t)v;
}

static enum mf_status check_args(enum mf_method method, const struct mf_prune_set *set, double sparsity,
                                 struct mf_err *err)
{
    if ((int)method < 0 || method >= MF_METHOD_COUNT)
        return mf_err_set(err, MF_ERR_ARG, "prune: unknown method %d", (int)method);
    if (!set || (set->n > 0 && !set->t))
        return mf_err_set(err, MF_ERR_ARG, "prune: empty prunable set");
    if (!(sparsity >= 0.0 && sparsity < 1.0))
        return mf_err_set(err, MF_ERR_ARG, "prune: sparsity %g is outside [0, 1)", sparsity);
    return MF_OK;
}

enum mf_status mf_prune_layer_counts(struct mf_pool *pool, enum mf_method method, const struct mf_prune_set *set,
                                     double sparsity, int64_t *k_per_tensor, struct mf_err *err)
{
    enum mf_status rc = check_args(method, set, sparsity, err);
    const float **x = NULL;
    int64_t *len = NULL, *cnt = NULL;
    const char **names = NULL;
    if (rc != MF_OK)
        return rc;
    switch (method) {
    case MF_METHOD_OMP:
    case MF_METHOD_L2:
    case MF_METHOD_LAMP:
    case MF_METHOD_RAND:
        /* global scope: no per-tensor count exists before the scores are selected */
        for (size_t i = 0; i < set->n; i++)
            k_per_tensor[i] = -1;
        return MF_OK;
    case MF_METHOD_LMP:
        for (size_t i = 0; i < set->n; i++)
            k_per_tensor[i] = count_at(sparsity, set->t[i].n);
        return MF_OK;
    default:
        break;
    }
    /* MULTIFLOW step 1: per modality, exact-k lowest |w| in selection order restricted to it */
    size_t n = set->n ? set->n : 1;
    x = mf_malloc(n * sizeof *x);
    len = mf_malloc(n * sizeof *len);
    cnt = mf_malloc(n * sizeof *cnt);
    names = mf_malloc(n * sizeof *names);
    if (!x || !len || !cnt || !names) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "prune: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < set->n; i++)
        k_per_tensor[i] = 0;
    for (int mod = 0; mod <= MF_MOD_FUSION; mod++) {
        size_t m = 0;
        int64_t n_mod = 0;
        for (size_t i = 0; i < set->n; i++) {
            if ((int)set->t[i].modality != mod)
                continue;
            x[m] = set->t[i].w;
            len[m] = set->t[i].n;
            names[m] = set->t[i].name;
            n_mod += set->t[i].n;
            m++;
        }
        if (m == 0)
            continue;
        rc = select_impl(pool, m, x, len, names, count_at(sparsity, n_mod), true, NULL, cnt, err);
        if (rc != MF_OK)
            goto fail;
        m = 0;
        for (size_t i = 0; i < set->n; i++)
            if ((int)set->t[i].modality == mod)
                k_per_tensor[i] = cnt[m++];
    }
fail:
    mf_free(names);
    mf_free(cnt);
    mf_free(len);
    mf_free(x);
    return rc;
}

enum mf_status mf_prune_masks(struct mf_pool *pool, enum mf_method method, const struct mf_prune_set *set,
                              double sparsity, const float *const *scores, uint8_t *const *masks, struct mf_err *err)
{
    enum mf_status rc = check_args(method, set, sparsity, err);
    int64_t *len = NULL, *kl = NULL;
    const char **names = NULL;
    if (rc != MF_OK)
        return rc;
    size_t n = set->n ? set->n : 1;
    len = mf_malloc(n * sizeof *len);
    kl = mf_malloc(n * sizeof *kl);
    names = mf_malloc(n * sizeof *names);
    if (!len || !kl || !names) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "prune: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < set->n; i++) {
        len[i] = set->t[i].n;
        names[i] = set->t[i].name;
    }
    if (method == MF_METHOD_OMP || method == MF_METHOD_L2 || method == MF_METHOD_LAMP || method == MF_METHOD_RAND) {
        rc = mf_select_lowest(pool, set->n, scores, len, names, count_at(sparsity, set->total), masks, err);
        goto fail;
    }
    rc = mf_prune_layer_counts(pool, method, set, sparsity, kl, err);
    if (rc != MF_OK)
        goto fail;
    /* layer scope: each tensor its own exact-k (MULTIFLOW step 4 with the integer k_l: no float ratio) */
    for (size_t i = 0; i < set->n; i++) {
        rc = mf_select_lowest(pool, 1, &scores[i], &len[i], &names[i], kl[i], &masks[i], err);
        if (rc != MF_OK)
            goto fail;
    }
fail:
    mf_free(names);
    mf_free(kl);
    mf_free(len);
    return rc;
}
