/*
 * prune/criteria.c: per-weight scores of the data-free pruners and of MULTIFLOW (spec:
 * shared/spec/pruning.md, "Data-free pruners" table and MULTIFLOW step 3), plus method names.
 *
 *   omp, lmp  |w|
 *   l2        |w| / ||W||_F                   (Frobenius norm accumulated in double)
 *   lamp      w^2 / sum_{v in W, v^2 >= w^2} v^2   (equal magnitudes share one score; a tensor of
 *             zeros scores 0; per-tensor radix sort of |w| plus a suffix sum in double)
 *   rand      standard normal draws. The stream is ours, not torch's: xoshiro256** seeded per block
 *             of BLOCK consecutive weights of a tensor from (seed, tensor index in selection order,
 *             block index), float Box-Muller pairs from 24-bit uniforms (tails end near 5.8 sigma:
 *             enough for a random ranking). Same seed, same scores, for any thread count.
 *   multiflow a_j = sqrt(S_j / N), o_i = (1/in) sum_j |W_ij| a_j, p_j = (1/out) sum_i |W_ij| a_j,
 *             score_ij = o_i * p_j * |W_ij|, everything in double, rounded to float once.
 *
 * Threads: elementwise work is split in fixed blocks, reductions are per block (l2) or per row and
 * per column in index order (multiflow), lamp runs one tensor per thread; so every score has the
 * same bits for any thread count. It does not select or mask (select.c) nor collect statistics
 * (stats.c). Deviation (pruning.md): the reference's LAMP gives tied magnitudes different scores in
 * the order its unstable sort picks; here they share one. The reference computes in float32.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "core/common.h"
#include "core/pool.h"
#include "core/rng.h"
#include "multiflow/prune.h"

#define BLOCK 16384

static const char *const method_names[MF_METHOD_COUNT] = {
    [MF_METHOD_MULTIFLOW] = "multiflow", [MF_METHOD_OMP] = "omp", [MF_METHOD_LMP] = "lmp",
    [MF_METHOD_L2] = "l2",               [MF_METHOD_LAMP] = "lamp", [MF_METHOD_RAND] = "rand",
};

const char *mf_method_name(enum mf_method m)
{
    if ((int)m < 0 || m >= MF_METHOD_COUNT)
        return "unknown";
    return method_names[m];
}

bool mf_method_parse(const char *name, enum mf_method *m)
{
    if (!name)
        return false;
    for (int i = 0; i < MF_METHOD_COUNT; i++) {
        if (strcmp(name, method_names[i]) == 0) {
            *m = (enum mf_method)i;
            return true;
        }
    }
    return false;
}

bool mf_method_needs_data(enum mf_method m) { return m == MF_METHOD_MULTIFLOW; }

/* ---- elementwise kernels over fixed blocks ------------------------------------------------- */

enum phase { PH_ABS, PH_L2_SUM, PH_L2_DIV, PH_RAND };

struct crit {
    const struct mf_prune_set *set;
    float *const *scores;
    const int64_t *blk_off;   /* (n + 1) prefix counts of blocks per tensor */
    int64_t n_blocks;
    enum phase phase;
    double *part;             /* (n_blocks) PH_L2_SUM: sum of w^2 per block */
    const double *norm;       /* (n) PH_L2_DIV: Frobenius norm per tensor */
    uint64_t seed;
    int64_t *bad;             /* (nth) lowest tensor index with a non-finite score, or INT64_MAX */
};

static inline bool nonfinite(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0x7f800000u) == 0x7f800000u;
}

/* SplitMix64 finaliser: a bijection, so distinct (tensor, block) keys give distinct seeds. */
static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void block_kernel(void *arg, int ith, int nth)
{
    struct crit *c = arg;
    int64_t b, e;
    mf_split_range(c->n_blocks, ith, nth, &b, &e);
    int64_t bad = INT64_MAX;
    size_t t = 0;
    while (t + 1 < c->set->n && c->blk_off[t + 1] <= b)
        t++; /* linear walk: a few hundred tensors at most */
    for (int64_t blk = b; blk < e; blk++) {
        while (c->blk_off[t + 1] <= blk)
            t++;
        const struct mf_prune_tensor *pt = &c->set->t[t];
        int64_t bl = blk - c->blk_off[t];
        int64_t j0 = bl * BLOCK, j1 = MF_MIN(pt->n, j0 + BLOCK);
        const float *w = pt->w;
        float *s = c->scores[t];
        bool nf = false;
        switch (c->phase) {
        case PH_ABS:
            for (int64_t j = j0; j < j1; j++) {
                s[j] = fabsf(w[j]);
                nf |= nonfinite(s[j]);
            }
            break;
        case PH_L2_SUM: {
            double acc = 0;
            for (int64_t j = j0; j < j1; j++)
                acc += (double)w[j] * (double)w[j];
            c->part[blk] = acc;
            break;
        }
        case PH_L2_DIV: {
            double nrm = c->norm[t];
            for (int64_t j = j0; j < j1; j++) {
                s[j] = nrm == 0 ? 0.0f : (float)(fabs((double)w[j]) / nrm); /* NaN norm propagates */
                nf |= nonfinite(s[j]);
            }
            break;
        }
        case PH_RAND: {
            struct mf_rng r;
            mf_rng_seed(&r, c->seed ^ mix64(((uint64_t)t << 32) | (uint64_t)bl));
            /* one 64-bit draw -> two 24-bit uniforms -> a Box-Muller pair in float (scores are
             * float; the pair halves the transcendental calls) */
            for (int64_t j = j0; j < j1; j += 2) {
                uint64_t u = mf_rng_u64(&r);
                float u1 = (float)((u >> 40) + 1) * 0x1.0p-24f; /* (0, 1] */
                float u2 = (float)((u >> 8) & 0xffffffu) * 0x1.0p-24f;
                float rad = sqrtf(-2.0f * logf(u1)), ang = 6.2831853f * u2;
                s[j] = rad * cosf(ang);
                if (j + 1 < j1)
                    s[j + 1] = rad * sinf(ang);
            }
            break;
        }
        }
        if (nf && (int64_t)t < bad)
            bad = (int64_t)t;
    }
    c->bad[ith] = bad;
}

/* ---- LAMP: one tensor per thread ------------------------------------------------------------ */

struct lamp {
    const struct mf_prune_set *set;
    float *const *scores;
    uint64_t *scratch;   /* (nth, 2, max_n) */
    int64_t max_n;
    atomic_size_t next;
    int64_t *bad;        /* (nth) */
};

/* Stable LSD radix sort of (key << 32 | index) items by their 31-bit key. */
static void sort_items(uint64_t *a, uint64_t *tmp, int64_t n)
{
    int64_t hist[2048];
    for (int shift = 32; shift < 63; shift += 11) {
        memset(hist, 0, sizeof hist);
        for (int64_t j = 0; j < n; j++)
            hist[(a[j] >> shift) & 0x7ff]++;
        int64_t sum = 0;
        for (int bin = 0; bin < 2048; bin++) {
            int64_t h = hist[bin];
            hist[bin] = sum;
            sum += h;
        }
        for (int64_t j = 0; j < n; j++)
            tmp[hist[(a[j] >> shift) & 0x7ff]++] = a[j];
        uint64_t *sw = a;
        a = tmp;
        tmp = sw;
    }
    /* three passes: the sorted items are in the second buffer; copy back */
    memcpy(tmp, a, (size_t)n * sizeof *a);
}

static bool lamp_tensor(const struct mf_prune_tensor *pt, float *s, uint64_t *a, uint64_t *tmp)
{
    const float *w = pt->w;
    int64_t n = pt->n;
    for (int64_t j = 0; j < n; j++) {
        uint32_t u;
        memcpy(&u, &w[j], sizeof u);
        u &= 0x7fffffffu; /* |w|: bit order is value order for non-negative floats */
        if (u >= 0x7f800000u)
            return false;
        a[j] = ((uint64_t)u << 32) | (uint64_t)j;
    }
    sort_items(a, tmp, n);
    /* walk groups of equal |w| from the largest: denominator = sum of v^2 over v^2 >= w^2 */
    double acc = 0;
    for (int64_t j = n - 1; j >= 0;) {
        uint32_t key = (uint32_t)(a[j] >> 32);
        int64_t g = j;
        while (g > 0 && (uint32_t)(a[g - 1] >> 32) == key)
            g--;
        double v = (double)w[(uint32_t)a[j]];
        v *= v;
        for (int64_t q = g; q <= j; q++)
            acc += v;
        float sc = acc > 0 ? (float)(v / acc) : 0.0f;
        for (int64_t q = g; q <= j; q++)
            s[(uint32_t)a[q]] = sc;
        j = g - 1;
    }
    return true;
}

static void lamp_kernel(void *arg, int ith, int nth)
{
    (void)nth;
    struct lamp *l = arg;
    uint64_t *a = l->scratch + (size_t)ith * 2 * (size_t)l->max_n, *tmp = a + l->max_n;
    int64_t bad = INT64_MAX;
    for (;;) {
        size_t t = atomic_fetch_add(&l->next, 1);
        if (t >= l->set->n)
            break;
        if (!lamp_tensor(&l->set->t[t], l->scores[t], a, tmp) && (int64_t)t < bad)
            bad = (int64_t)t;
    }
    l->bad[ith] = bad;
}

/* ---- MULTIFLOW: one tensor at a time, rows / columns split over threads ------------------- */

enum mf_phase { MFP_ROWS, MFP_COLS, MFP_SCORE };

struct mflow {
    const float *w;      /* (out, in) */
    int64_t out, in;
    const double *act;   /* (in) a_j */
    double *o;           /* (out) */
    double *p;           /* (in) */
    float *s;            /* (out, in) */
    enum mf_phase phase;
    bool *bad;           /* (nth) */
};

static void mflow_kernel(void *arg, int ith, int nth)
{
    struct mflow *m = arg;
    int64_t b, e;
    bool nf = false;
    if (m->phase == MFP_COLS) {
        mf_split_range(m->in, ith, nth, &b, &e);
        for (int64_t j = b; j < e; j++)
            m->p[j] = 0;
        for (int64_t i = 0; i < m->out; i++) {
            const float *row = m->w + i * m->in;
            for (int64_t j = b; j < e; j++)
                m->p[j] += fabs((double)row[j]) * m->act[j];
        }
        for (int64_t j = b; j < e; j++)
            m->p[j] /= (double)m->out;
        return;
    }
    mf_split_range(m->out, ith, nth, &b, &e);
    for (int64_t i = b; i < e; i++) {
        const float *row = m->w + i * m->in;
        if (m->phase == MFP_ROWS) {
            double acc = 0;
            for (int64_t j = 0; j < m->in; j++)
                acc += fabs((double)row[j]) * m->act[j];
            m->o[i] = acc / (double)m->in;
        } else {
            float *srow = m->s + i * m->in;
            double oi = m->o[i];
            for (int64_t j = 0; j < m->in; j++) {
                srow[j] = (float)(oi * m->p[j] * fabs((double)row[j]));
                nf |= nonfinite(srow[j]);
            }
        }
    }
    m->bad[ith] = nf;
}

static enum mf_status score_multiflow(struct mf_pool *pool, const struct mf_prune_set *set, float *const *scores,
                                      struct mf_err *err)
{
    enum mf_status rc = MF_OK;
    int nth = mf_pool_size(pool);
    int64_t max_in = 1, max_out = 1;
    double *act = NULL, *o = NULL, *p = NULL;
    bool *bad = NULL;
    for (size_t t = 0; t < set->n; t++) {
        const struct mf_prune_tensor *pt = &set->t[t];
        if (!pt->sumsq || !(pt->count > 0))
            return mf_err_set(err, MF_ERR_MISSING,
                              "multiflow: tensor '%s' has no calibration statistics (count %g); run the "
                              "calibration pass first", pt->name, pt->count);
        if (!isfinite(pt->count))
            return mf_err_set(err, MF_ERR_NUMERIC, "multiflow: tensor '%s' has a non-finite sequence count",
                              pt->name);
        max_in = MF_MAX(max_in, pt->in);
        max_out = MF_MAX(max_out, pt->out);
    }
    act = mf_malloc((size_t)max_in * sizeof *act);
    p = mf_malloc((size_t)max_in * sizeof *p);
    o = mf_malloc((size_t)max_out * sizeof *o);
    bad = mf_calloc((size_t)nth, sizeof *bad);
    if (!act || !p || !o || !bad) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "multiflow: out of memory for %lld-element scratch",
                        (long long)(max_in + max_out));
        goto fail;
    }
    for (size_t t = 0; t < set->n; t++) {
        const struct mf_prune_tensor *pt = &set->t[t];
        for (int64_t j = 0; j < pt->in; j++) {
            double sj = pt->sumsq[j];
            if (!(sj >= 0) || !isfinite(sj)) {
                rc = mf_err_set(err, MF_ERR_NUMERIC,
                                "multiflow: tensor '%s' has an invalid sum of squares %g at input feature %lld",
                                pt->name, sj, (long long)j);
                goto fail;
            }
            act[j] = sqrt(sj / pt->count);
        }
        struct mflow m = {.w = pt->w, .out = pt->out, .in = pt->in, .act = act, .o = o, .p = p, .s = scores[t],
                          .bad = bad};
        m.phase = MFP_ROWS;
        mf_pool_run(pool, mflow_kernel, &m);
        m.phase = MFP_COLS;
        mf_pool_run(pool, mflow_kernel, &m);
        m.phase = MFP_SCORE;
        mf_pool_run(pool, mflow_kernel, &m);
        for (int i = 0; i < nth; i++) {
            if (bad[i]) {
                rc = mf_err_set(err, MF_ERR_NUMERIC,
                                "multiflow: tensor '%s' [%lld,%lld] has non-finite scores (NaN/inf weights or "
                                "overflow)", pt->name, (long long)pt->out, (long long)pt->in);
                goto fail;
            }
        }
    }
fail:
    mf_free(bad);
    mf_free(o);
    mf_free(p);
    mf_free(act);
    return rc;
}

static enum mf_status report_bad(const struct mf_prune_set *set, const int64_t *bad, int nth, enum mf_method method,
                                 struct mf_err *err)
{
    int64_t first = INT64_MAX;
    for (int i = 0; i < nth; i++)
        first = MF_MIN(first, bad[i]);
    if (first == INT64_MAX)
        return MF_OK;
    const struct mf_prune_tensor *pt = &set->t[first];
    return mf_err_set(err, MF_ERR_NUMERIC, "%s: tensor '%s' [%lld,%lld] has non-finite scores (NaN/inf weights)",
                      mf_method_name(method), pt->name, (long long)pt->out, (long long)pt->in);
}

enum mf_status mf_prune_scores(struct mf_pool *pool, enum mf_method method, const struct mf_prune_set *set,
                               uint64_t seed, float *const *scores, struct mf_err *err)
{
    enum mf_status rc = MF_OK;
    int nth = mf_pool_size(pool);
    int64_t *blk_off = NULL, *bad = NULL, max_n = 0;
    double *part = NULL, *norm = NULL;
    uint64_t *scratch = NULL;

    if ((int)method < 0 || method >= MF_METHOD_COUNT)
        return mf_err_set(err, MF_ERR_ARG, "prune: unknown method %d", (int)method);
    if (!set || (set->n > 0 && (!set->t || !scores)))
        return mf_err_set(err, MF_ERR_ARG, "prune: NULL prunable set or score arrays");
    for (size_t t = 0; t < set->n; t++) {
        const struct mf_prune_tensor *pt = &set->t[t];
        int64_t n;
        if (pt->out < 0 || pt->in < 0 || __builtin_mul_overflow(pt->out, pt->in, &n) || n != pt->n ||
            (n > 0 && (!pt->w || !scores[t])))
            return mf_err_set(err, MF_ERR_SHAPE, "prune: tensor '%s' has shape [%lld,%lld] but %lld elements",
                              pt->name, (long long)pt->out, (long long)pt->in, (long long)pt->n);
        if (n > (int64_t)UINT32_MAX)
            return mf_err_set(err, MF_ERR_UNSUPPORTED, "prune: tensor '%s' has %lld elements (limit 2^32-1)",
                              pt->name, (long long)n);
        max_n = MF_MAX(max_n, n);
    }
    if (method == MF_METHOD_MULTIFLOW)
        return score_multiflow(pool, set, scores, err);

    bad = mf_malloc((size_t)nth * sizeof *bad);
    if (!bad) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "prune: out of memory");
        goto fail;
    }
    if (method == MF_METHOD_LAMP) {
        size_t bytes;
        if (!mf_mul_size((size_t)nth * 2, (size_t)MF_MAX(max_n, 1) * sizeof *scratch, &bytes) ||
            !(scratch = mf_malloc(bytes))) {
            rc = mf_err_set(err, MF_ERR_NOMEM, "lamp: out of memory for %d x %lld sort items", nth, (long long)max_n);
            goto fail;
        }
        struct lamp l = {.set = set, .scores = scores, .scratch = scratch, .max_n = MF_MAX(max_n, 1), .bad = bad};
        atomic_init(&l.next, 0);
        mf_pool_run(pool, lamp_kernel, &l);
        rc = report_bad(set, bad, nth, method, err);
        goto fail;
    }

    blk_off = mf_malloc((set->n + 1) * sizeof *blk_off);
    if (!blk_off) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "prune: out of memory");
        goto fail;
    }
    blk_off[0] = 0;
    for (size_t t = 0; t < set->n; t++)
        blk_off[t + 1] = blk_off[t] + (set->t[t].n + BLOCK - 1) / BLOCK;
    struct crit c = {.set = set, .scores = scores, .blk_off = blk_off, .n_blocks = blk_off[set->n], .seed = seed,
                     .bad = bad};
    if (set->n == 0)
        goto fail;
    switch (method) {
    case MF_METHOD_OMP:
    case MF_METHOD_LMP:
        c.phase = PH_ABS;
        break;
    case MF_METHOD_RAND:
        c.phase = PH_RAND;
        break;
    default: /* L2: per-block sums of squares, reduced per tensor in block order */
        part = mf_malloc((size_t)MF_MAX(c.n_blocks, 1) * sizeof *part);
        norm = mf_malloc(set->n * sizeof *norm);
        if (!part || !norm) {
            rc = mf_err_set(err, MF_ERR_NOMEM, "l2: out of memory");
            goto fail;
        }
        c.part = part;
        c.phase = PH_L2_SUM;
        mf_pool_run(pool, block_kernel, &c);
        for (size_t t = 0; t < set->n; t++) {
            double acc = 0;
            for (int64_t blk = blk_off[t]; blk < blk_off[t + 1]; blk++)
                acc += part[blk];
            norm[t] = sqrt(acc);
        }
        c.norm = norm;
        c.phase = PH_L2_DIV;
        break;
    }
    mf_pool_run(pool, block_kernel, &c);
    rc = report_bad(set, bad, nth, method, err);
fail:
    mf_free(scratch);
    mf_free(norm);
    mf_free(part);
    mf_free(blk_off);
    mf_free(bad);
    return rc;
}
