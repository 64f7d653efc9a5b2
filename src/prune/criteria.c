/*
 * prune/criteria.c: per-weight scores of the data-free pruners and of MULTIFLOW (spec:
 * shared/spec/pruning.md, "Data-free pruners" table and MULTIFLOW step 3), plus method names.
 *
 *   omp, lmp  |w|
 *   l2        |w| / ||W||_F                   (Frobenius norm accumulated in double)
 *   lamp      w^2 / sum_{v in W, v^2 >= w^2} v^2   (equal magnitudes share one score; a tensor of
 *             zeros scores 0; per-tensor radix sort of |w| plus a suffix sum in double)
 *   rand      standard normal draws. The stream is ours, not torch's: xoshiro256** seeded per block
 *             of MF_SCORE_BLOCK consecutive weights of a tensor from (seed, tensor index in selection order,
 *             block index), two 24-bit uniforms per 64-bit draw, each mapped to a normal by the
 *             inverse normal CDF (Acklam's rational approximation in double, relative error
 *             ~1e-9; 95 % of draws need no transcendental function; tails end near 5.4 sigma:
 *             enough for a random ranking). Same seed, same scores, for any thread count.
 *   multiflow a_j = sqrt(S_j / N), o_i = (1/in) sum_j |W_ij| a_j, p_j = (1/out) sum_i |W_ij| a_j,
 *             score_ij = o_i * p_j * |W_ij|, everything in double, rounded to float once.
 *
 * The elementwise criteria are score generators (score.h): small per-tensor state (norms, o and p)
 * plus a function that recomputes the scores of any block, used here to fill whole score arrays and
 * by select.c to compute masks without them. LAMP has a full-array path (radix sort of (|w|, index)
 * items, for --save-scores) and a walk over the distinct magnitudes (mf_lamp_walk, for masks) that
 * performs the same double additions in the same order, so both give the same bits.
 *
 * Threads: elementwise work is split in fixed blocks, reductions are per block (l2) or per row and
 * per column in index order (multiflow: one row-major pass per tensor, one tensor per thread), lamp
 * runs one tensor per thread; so every score has the
 * same bits for any thread count. It does not select or mask (select.c) nor collect statistics
 * (stats.c). Deviation (pruning.md): the reference's LAMP gives tied magnitudes different scores in
 * the order its unstable sort picks; here they share one. The reference computes in float32.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "core/common.h"
#include "core/pool.h"
#include "core/rng.h"
#include "multiflow/prune.h"
#include "prune/score.h"


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

/* ---- score generators (shared with select.c through score.h) ------------------------------- */

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

/* Standard normal quantile of p in (0, 1): P. J. Acklam's rational approximation (central region
 * |p - 0.5| <= 0.47575 without transcendental functions; tails through sqrt(-2 log p)). */
static inline float norm_quantile(double p)
{
    static const double a[6] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                                1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[5] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                6.680131188771972e+01,  -1.328068155288572e+01};
    static const double c[6] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
    static const double d[4] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                3.754408661907416e+00};
    const double lo = 0.02425;
    if (p >= lo && p <= 1 - lo) {
        double q = p - 0.5, r = q * q;
        return (float)((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
                       (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1));
    }
    double q = sqrt(-2 * log(p < lo ? p : 1 - p));
    double x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    return (float)(p < lo ? x : -x);
}

void mf_score_rand_seed(const struct mf_score_gen *g, size_t t, int64_t bl, struct mf_rng *r)
{
    mf_rng_seed(r, g->seed ^ mix64(((uint64_t)t << 32) | (uint64_t)bl));
}

/* One 64-bit draw -> two 24-bit uniforms (k + 0.5) / 2^24, in (0, 1) and symmetric about 1/2. */
float mf_score_rand_value(uint32_t k24) { return norm_quantile(((double)k24 + 0.5) * 0x1.0p-24); }

/* rand over [j0, j0 + n) inside block bl of tensor t: the block's generator is replayed from the
 * block start (one 64-bit draw per pair of elements: the top 24 bits, then bits 8..31), the
 * quantile only runs for pairs holding a wanted element. */
static void fill_rand(const struct mf_score_gen *g, size_t t, int64_t j0, int64_t n, float *out, const uint8_t *want,
                      uint8_t c)
{
    int64_t nt = g->set->t[t].n, bl = j0 / MF_SCORE_BLOCK, jb = bl * MF_SCORE_BLOCK;
    int64_t jend = MF_MIN(nt, jb + MF_SCORE_BLOCK), e = j0 + n;
    MF_ASSERT(e <= jend);
    struct mf_rng r;
    mf_score_rand_seed(g, t, bl, &r);
    int64_t j = jb;
    for (; j + 1 < j0; j += 2)
        (void)mf_rng_u64(&r);
    for (; j < e; j += 2) {
        uint64_t u = mf_rng_u64(&r);
        if (want) {
            bool need = (j >= j0 && want[j - j0] == c) || (j + 1 < e && want[j + 1 - j0] == c);
            if (!need)
                continue;
        }
        if (j >= j0)
            out[j - j0] = mf_score_rand_value(MF_RAND_HI(u));
        if (j + 1 < e)
            out[j + 1 - j0] = mf_score_rand_value(MF_RAND_LO(u));
    }
}

/* MULTIFLOW scores of one row segment: out[j] = (float)(c * p[j] * |w[j]|), c = o_i, products in
 * double in that order (AVX2 gives the same bits: the same IEEE operations, no contraction). */
static void fill_mflow_row(double c, const double *p, const float *w, int64_t n, float *out)
{
    int64_t j = 0;
#ifdef __AVX2__
    const __m256d cv = _mm256_set1_pd(c), sign = _mm256_set1_pd(-0.0);
    for (; j + 4 <= n; j += 4) {
        __m256d wd = _mm256_andnot_pd(sign, _mm256_cvtps_pd(_mm_loadu_ps(w + j)));
        __m256d s = _mm256_mul_pd(_mm256_mul_pd(cv, _mm256_loadu_pd(p + j)), wd);
        _mm_storeu_ps(out + j, _mm256_cvtpd_ps(s));
    }
#endif
    for (; j < n; j++)
        out[j] = (float)(c * p[j] * fabs((double)w[j]));
}

void mf_score_gen_fill(const struct mf_score_gen *g, size_t t, int64_t j0, int64_t n, float *out,
                       const uint8_t *want, uint8_t c)
{
    const struct mf_prune_tensor *pt = &g->set->t[t];
    const float *w = pt->w + j0;
    switch (g->kind) {
    case MF_SCORE_ABS:
        for (int64_t j = 0; j < n; j++)
            out[j] = fabsf(w[j]);
        break;
    case MF_SCORE_L2: {
        double nrm = g->norm[t];
        if (nrm == 0) {
            for (int64_t j = 0; j < n; j++)
                out[j] = 0.0f;
        } else {
            for (int64_t j = 0; j < n; j++)
                out[j] = (float)(fabs((double)w[j]) / nrm); /* NaN norm propagates */
        }
        break;
    }
    case MF_SCORE_RAND:
        fill_rand(g, t, j0, n, out, want, c);
        break;
    case MF_SCORE_MFLOW: {
        const double *o = g->o[t], *p = g->p[t];
        int64_t in = pt->in, i = j0 / in, jj = j0 - i * in;
        for (int64_t j = 0; j < n; i++, jj = 0) {
            int64_t seg = MF_MIN(n - j, in - jj);
            fill_mflow_row(o[i], p + jj, w + j, seg, out + j);
            j += seg;
        }
        break;
    }
    }
}

/* ---- l2 norms: per-block sums of squares reduced per tensor in block order ------------------- */

struct l2sum {
    const struct mf_prune_set *set;
    const int64_t *blk_off; /* (n + 1) prefix counts of blocks per tensor */
    int64_t n_blocks;
    double *part;           /* (n_blocks) */
};

static void l2sum_kernel(void *arg, int ith, int nth)
{
    struct l2sum *c = arg;
    int64_t b, e;
    mf_split_range(c->n_blocks, ith, nth, &b, &e);
    size_t t = 0;
    for (int64_t blk = b; blk < e; blk++) {
        while (c->blk_off[t + 1] <= blk)
            t++; /* linear walk: a few hundred tensors at most */
        const struct mf_prune_tensor *pt = &c->set->t[t];
        int64_t j0 = (blk - c->blk_off[t]) * MF_SCORE_BLOCK, j1 = MF_MIN(pt->n, j0 + MF_SCORE_BLOCK);
        double acc = 0;
        for (int64_t j = j0; j < j1; j++)
            acc += (double)pt->w[j] * (double)pt->w[j];
        c->part[blk] = acc;
    }
}

static enum mf_status l2_norms(struct mf_pool *pool, const struct mf_prune_set *set, double *norm, struct mf_err *err)
{
    enum mf_status rc = MF_OK;
    int64_t *blk_off = mf_malloc((set->n + 1) * sizeof *blk_off);
    double *part = NULL;
    if (!blk_off) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "l2: out of memory");
        goto fail;
    }
    blk_off[0] = 0;
    for (size_t t = 0; t < set->n; t++)
        blk_off[t + 1] = blk_off[t] + (set->t[t].n + MF_SCORE_BLOCK - 1) / MF_SCORE_BLOCK;
    part = mf_malloc((size_t)MF_MAX(blk_off[set->n], 1) * sizeof *part);
    if (!part) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "l2: out of memory for %lld block sums", (long long)blk_off[set->n]);
        goto fail;
    }
    struct l2sum c = {.set = set, .blk_off = blk_off, .n_blocks = blk_off[set->n], .part = part};
    mf_pool_run(pool, l2sum_kernel, &c);
    for (size_t t = 0; t < set->n; t++) {
        double acc = 0;
        for (int64_t blk = blk_off[t]; blk < blk_off[t + 1]; blk++)
            acc += part[blk];
        norm[t] = sqrt(acc);
    }
fail:
    mf_free(part);
    mf_free(blk_off);
    return rc;
}

/* ---- MULTIFLOW o and p: one pass per tensor, tensors spread over threads ------------------- */

struct mflow {
    const struct mf_prune_set *set;
    const double *act;      /* (sum of in) a_j of every tensor, set order */
    const int64_t *act_off; /* (n) offset of tensor t's a_j in act */
    struct mf_score_gen *g;
    atomic_size_t next;
};

/* o_i = sum_j |W_ij| a_j / in and p_j = sum_i |W_ij| a_j / out of one tensor in one row-major pass:
 * each o_i adds in j order and each p_j in i order, so the bits do not depend on who computes them.
 * Four rows at a time give four independent o chains (the sums themselves stay sequential). */
static void mflow_tensor(const float *w, int64_t out, int64_t in, const double *a, double *o, double *p)
{
    for (int64_t j = 0; j < in; j++)
        p[j] = 0;
    int64_t i = 0;
    for (; i + 4 <= out; i += 4) {
        const float *r0 = w + i * in, *r1 = r0 + in, *r2 = r1 + in, *r3 = r2 + in;
        double c0 = 0, c1 = 0, c2 = 0, c3 = 0;
        for (int64_t j = 0; j < in; j++) {
            double v0 = fabs((double)r0[j]) * a[j], v1 = fabs((double)r1[j]) * a[j];
            double v2 = fabs((double)r2[j]) * a[j], v3 = fabs((double)r3[j]) * a[j];
            c0 += v0;
            c1 += v1;
            c2 += v2;
            c3 += v3;
            double q = p[j];
            q += v0;
            q += v1;
            q += v2;
            q += v3;
            p[j] = q;
        }
        o[i] = c0 / (double)in;
        o[i + 1] = c1 / (double)in;
        o[i + 2] = c2 / (double)in;
        o[i + 3] = c3 / (double)in;
    }
    for (; i < out; i++) {
        const float *row = w + i * in;
        double acc = 0;
        for (int64_t j = 0; j < in; j++) {
            double v = fabs((double)row[j]) * a[j];
            acc += v;
            p[j] += v;
        }
        o[i] = acc / (double)in;
    }
    for (int64_t j = 0; j < in; j++)
        p[j] /= (double)out;
}

static void mflow_kernel(void *arg, int ith, int nth)
{
    (void)ith;
    (void)nth;
    struct mflow *m = arg;
    for (;;) {
        size_t t = atomic_fetch_add(&m->next, 1);
        if (t >= m->set->n)
            break;
        const struct mf_prune_tensor *pt = &m->set->t[t];
        mflow_tensor(pt->w, pt->out, pt->in, m->act + m->act_off[t], m->g->o[t], m->g->p[t]);
    }
}

static enum mf_status mflow_state(struct mf_pool *pool, const struct mf_prune_set *set, struct mf_score_gen *g,
                                  struct mf_err *err)
{
    enum mf_status rc = MF_OK;
    int64_t sum_in = 0, sum_op = 0;
    double *act = NULL;
    int64_t *act_off = NULL;
    for (size_t t = 0; t < set->n; t++) {
        const struct mf_prune_tensor *pt = &set->t[t];
        if (!pt->sumsq || !(pt->count > 0))
            return mf_err_set(err, MF_ERR_MISSING,
                              "multiflow: tensor '%s' has no calibration statistics (count %g); run the "
                              "calibration pass first", pt->name, pt->count);
        if (!isfinite(pt->count))
            return mf_err_set(err, MF_ERR_NUMERIC, "multiflow: tensor '%s' has a non-finite sequence count",
                              pt->name);
        sum_in += pt->in;
        sum_op += pt->out + pt->in; /* each <= 2^32 elements: no overflow for any real set */
    }
    act = mf_malloc((size_t)MF_MAX(sum_in, 1) * sizeof *act);
    act_off = mf_malloc((set->n ? set->n : 1) * sizeof *act_off);
    g->o = mf_calloc(set->n ? set->n : 1, sizeof *g->o);
    g->p = mf_calloc(set->n ? set->n : 1, sizeof *g->p);
    g->op = mf_malloc((size_t)MF_MAX(sum_op, 1) * sizeof *g->op);
    if (!act || !act_off || !g->o || !g->p || !g->op) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "multiflow: out of memory for %lld-element o/p vectors", (long long)sum_op);
        goto fail;
    }
    double *q = g->op, *ap = act;
    for (size_t t = 0; t < set->n; t++) {
        const struct mf_prune_tensor *pt = &set->t[t];
        act_off[t] = ap - act;
        for (int64_t j = 0; j < pt->in; j++) {
            double sj = pt->sumsq[j];
            if (!(sj >= 0) || !isfinite(sj)) {
                rc = mf_err_set(err, MF_ERR_NUMERIC,
                                "multiflow: tensor '%s' has an invalid sum of squares %g at input feature %lld",
                                pt->name, sj, (long long)j);
                goto fail;
            }
            ap[j] = sqrt(sj / pt->count);
        }
        ap += pt->in;
        g->o[t] = q;
        g->p[t] = q + pt->out;
        q += pt->out + pt->in;
    }
    struct mflow m = {.set = set, .act = act, .act_off = act_off, .g = g};
    atomic_init(&m.next, 0);
    mf_pool_run(pool, mflow_kernel, &m);
fail:
    mf_free(act_off);
    mf_free(act);
    return rc;
}

enum mf_status mf_score_check_set(const struct mf_prune_set *set, struct mf_err *err)
{
    if (!set || (set->n > 0 && !set->t))
        return mf_err_set(err, MF_ERR_ARG, "prune: NULL prunable set");
    for (size_t t = 0; t < set->n; t++) {
        const struct mf_prune_tensor *pt = &set->t[t];
        int64_t n;
        if (pt->out < 0 || pt->in < 0 || __builtin_mul_overflow(pt->out, pt->in, &n) || n != pt->n ||
            (n > 0 && !pt->w))
            return mf_err_set(err, MF_ERR_SHAPE, "prune: tensor '%s' has shape [%lld,%lld] but %lld elements",
                              pt->name, (long long)pt->out, (long long)pt->in, (long long)pt->n);
        if (n > (int64_t)UINT32_MAX)
            return mf_err_set(err, MF_ERR_UNSUPPORTED, "prune: tensor '%s' has %lld elements (limit 2^32-1)",
                              pt->name, (long long)n);
    }
    return MF_OK;
}

enum mf_status mf_score_gen_init(struct mf_pool *pool, enum mf_method method, const struct mf_prune_set *set,
                                 uint64_t seed, struct mf_score_gen *g, struct mf_err *err)
{
    memset(g, 0, sizeof *g);
    g->set = set;
    g->seed = seed;
    enum mf_status rc = mf_score_check_set(set, err);
    if (rc != MF_OK)
        return rc;
    switch (method) {
    case MF_METHOD_OMP:
    case MF_METHOD_LMP:
        g->kind = MF_SCORE_ABS;
        return MF_OK;
    case MF_METHOD_RAND:
        g->kind = MF_SCORE_RAND;
        return MF_OK;
    case MF_METHOD_L2:
        g->kind = MF_SCORE_L2;
        g->norm = mf_malloc((set->n ? set->n : 1) * sizeof *g->norm);
        if (!g->norm)
            return mf_err_set(err, MF_ERR_NOMEM, "l2: out of memory");
        rc = l2_norms(pool, set, g->norm, err);
        break;
    case MF_METHOD_MULTIFLOW:
        g->kind = MF_SCORE_MFLOW;
        rc = mflow_state(pool, set, g, err);
        break;
    default:
        return mf_err_set(err, MF_ERR_ARG, "prune: method %s has no score generator", mf_method_name(method));
    }
    if (rc != MF_OK)
        mf_score_gen_free(g);
    return rc;
}

void mf_score_gen_free(struct mf_score_gen *g)
{
    mf_free(g->norm);
    mf_free(g->o);
    mf_free(g->p);
    mf_free(g->op);
    g->norm = NULL;
    g->o = g->p = NULL;
    g->op = NULL;
}

/* ---- LAMP walk: distinct magnitudes from the largest, without a sort of (key, index) items ---- */

/* ascending sort of m uint16 values: insertion for short runs, two 8-bit LSD passes otherwise */
static void sort_u16(uint16_t *a, uint16_t *tmp, int64_t m)
{
    if (m <= 24) {
        for (int64_t i = 1; i < m; i++) {
            uint16_t v = a[i];
            int64_t j = i;
            while (j > 0 && a[j - 1] > v) {
                a[j] = a[j - 1];
                j--;
            }
            a[j] = v;
        }
        return;
    }
    int64_t h[256];
    for (int shift = 0; shift < 16; shift += 8) {
        memset(h, 0, sizeof h);
        for (int64_t i = 0; i < m; i++)
            h[(a[i] >> shift) & 0xff]++;
        int64_t sum = 0;
        for (int b = 0; b < 256; b++) {
            int64_t c = h[b];
            h[b] = sum;
            sum += c;
        }
        for (int64_t i = 0; i < m; i++)
            tmp[h[(a[i] >> shift) & 0xff]++] = a[i];
        uint16_t *sw = a;
        a = tmp;
        tmp = sw;
    }
    /* two passes: the sorted values are back in the first buffer */
}

int mf_lamp_walk(const float *w, int64_t n, struct mf_lamp_scratch *s,
                 void (*visit)(void *ctx, uint32_t wkey, float score, int64_t count), void *ctx)
{
    enum { NB = 32768 };
    if (!s->cnt) {
        s->cnt = mf_malloc(NB * sizeof *s->cnt);
        s->pos = mf_malloc(NB * sizeof *s->pos);
        if (!s->cnt || !s->pos)
            return -1;
    }
    if (n > s->cap) {
        uint16_t *lo = mf_realloc(s->lo, (size_t)n * sizeof *lo);
        if (!lo)
            return -1;
        s->lo = lo;
        s->cap = n;
    }
    memset(s->cnt, 0, NB * sizeof *s->cnt);
    for (int64_t j = 0; j < n; j++) {
        uint32_t u;
        memcpy(&u, &w[j], sizeof u);
        u &= 0x7fffffffu; /* |w|: bit order is value order for non-negative floats */
        if (u >= 0x7f800000u)
            return 0;
        s->cnt[u >> 16]++;
    }
    uint32_t sum = 0, max_m = 0;
    for (int b = 0; b < NB; b++) {
        s->pos[b] = sum;
        sum += s->cnt[b];
        max_m = MF_MAX(max_m, s->cnt[b]);
    }
    if ((int64_t)max_m > s->tcap && max_m > 24) {
        uint16_t *tmp = mf_realloc(s->tmp, (size_t)max_m * sizeof *tmp);
        if (!tmp)
            return -1;
        s->tmp = tmp;
        s->tcap = max_m;
    }
    for (int64_t j = 0; j < n; j++) {
        uint32_t u;
        memcpy(&u, &w[j], sizeof u);
        u &= 0x7fffffffu;
        s->lo[s->pos[u >> 16]++] = (uint16_t)(u & 0xffffu);
    }
    /* from the largest: denominator = sum of v^2 over v^2 >= w^2, added one weight at a time in
     * descending order (the bits of mf_prune_scores' LAMP) */
    double acc = 0;
    for (int b = NB - 1; b >= 0; b--) {
        int64_t m = s->cnt[b];
        if (m == 0)
            continue;
        uint16_t *a = s->lo + (s->pos[b] - (uint32_t)m);
        sort_u16(a, s->tmp, m);
        for (int64_t j = m - 1; j >= 0;) {
            uint16_t lo = a[j];
            int64_t g = j;
            while (g > 0 && a[g - 1] == lo)
                g--;
            uint32_t key = ((uint32_t)b << 16) | lo;
            float f;
            memcpy(&f, &key, sizeof f);
            double v = (double)f;
            v *= v;
            for (int64_t q = g; q <= j; q++)
                acc += v;
            visit(ctx, key, acc > 0 ? (float)(v / acc) : 0.0f, j - g + 1);
            j = g - 1;
        }
    }
    return 1;
}

void mf_lamp_scratch_free(struct mf_lamp_scratch *s)
{
    mf_free(s->cnt);
    mf_free(s->pos);
    mf_free(s->lo);
    mf_free(s->tmp);
    memset(s, 0, sizeof *s);
}

/* ---- full score arrays (mf_prune_scores) ----------------------------------------------------- */

struct fill {
    const struct mf_score_gen *g;
    float *const *scores;
    const int64_t *blk_off;  /* (n + 1) */
    int64_t n_blocks;
    int64_t *bad;            /* (nth) lowest tensor index with a non-finite score, or INT64_MAX */
};

static void fill_kernel(void *arg, int ith, int nth)
{
    struct fill *c = arg;
    int64_t b, e;
    mf_split_range(c->n_blocks, ith, nth, &b, &e);
    int64_t bad = INT64_MAX;
    size_t t = 0;
    for (int64_t blk = b; blk < e; blk++) {
        while (c->blk_off[t + 1] <= blk)
            t++;
        int64_t j0 = (blk - c->blk_off[t]) * MF_SCORE_BLOCK, j1 = MF_MIN(c->g->set->t[t].n, j0 + MF_SCORE_BLOCK);
        float *s = c->scores[t] + j0;
        mf_score_gen_fill(c->g, t, j0, j1 - j0, s, NULL, 0);
        bool nf = false;
        for (int64_t j = 0; j < j1 - j0; j++)
            nf |= nonfinite(s[j]);
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
    uint64_t *scratch = NULL;
    struct mf_score_gen g = {0};

    if ((int)method < 0 || method >= MF_METHOD_COUNT)
        return mf_err_set(err, MF_ERR_ARG, "prune: unknown method %d", (int)method);
    if (!set || (set->n > 0 && (!set->t || !scores)))
        return mf_err_set(err, MF_ERR_ARG, "prune: NULL prunable set or score arrays");
    rc = mf_score_check_set(set, err);
    if (rc != MF_OK)
        return rc;
    for (size_t t = 0; t < set->n; t++) {
        if (set->t[t].n > 0 && !scores[t])
            return mf_err_set(err, MF_ERR_ARG, "prune: NULL score array for tensor '%s'", set->t[t].name);
        max_n = MF_MAX(max_n, set->t[t].n);
    }
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
    rc = mf_score_gen_init(pool, method, set, seed, &g, err);
    if (rc != MF_OK)
        goto fail;
    blk_off = mf_malloc((set->n + 1) * sizeof *blk_off);
    if (!blk_off) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "prune: out of memory");
        goto fail;
    }
    blk_off[0] = 0;
    for (size_t t = 0; t < set->n; t++)
        blk_off[t + 1] = blk_off[t] + (set->t[t].n + MF_SCORE_BLOCK - 1) / MF_SCORE_BLOCK;
    if (set->n == 0)
        goto fail;
    struct fill c = {.g = &g, .scores = scores, .blk_off = blk_off, .n_blocks = blk_off[set->n], .bad = bad};
    mf_pool_run(pool, fill_kernel, &c);
    rc = report_bad(set, bad, nth, method, err);
fail:
    mf_score_gen_free(&g);
    mf_free(scratch);
    mf_free(blk_off);
    mf_free(bad);
    return rc;
}
