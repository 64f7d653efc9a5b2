/*
 * prune/select.c: exact-k selection of the lowest scores over a scope of several arrays, and the
 * per-method mask computation built on it (spec: shared/spec/pruning.md, "Exact-k selection",
 * "Data-free pruners" scopes, MULTIFLOW steps 1 and 4).
 *
 * Fast path first: bracket.c selects in one streaming pass from a sampled bracket around the k-th
 * key, and reports a miss (bracket off, too many candidates, non-finite values) when the radix
 * passes below must run instead; they are also what tests compare it with.
 *
 * Radix passes: radix select on the order-preserving uint32 key of each float (sign flipped for
 * positives, all bits flipped for negatives, -0 canonicalised to +0 so that -0 == +0 tie). Pass 1
 * histograms the top 16 key bits (per-thread 65536-bin histograms, summed in thread order) and finds
 * the bin B of the k-th key; pass 2 histograms the low 16 bits of the keys in B, which gives the k-th
 * key T and, per thread, the count of keys equal to T; pass 3 writes the mask: keys below T are
 * pruned, and among keys equal to T the first (k - count_below) in position order (array, then
 * element) are pruned, each thread taking its share of that quota in thread order. Positions are
 * split into nth contiguous ranges, so the result does not depend on the thread count.
 *
 * Scores come either from caller arrays (mf_select_lowest, mf_prune_masks) or from a score
 * generator (score.h) that recomputes them, so the mask path of mf_prune_compute_masks holds no
 * float per weight: weights + masks + O(nth * 65536) scratch. On that path pass 1 also writes in
 * each mask byte a code: the key's top 16 bits minus a base, clamped to [0, 255], with the base
 * centred on the k-th key's bin as estimated from the first 32 scores of every 16384-element chunk.
 * Codes are non-decreasing in the key, so code < code(B) means pruned and code > code(B) kept
 * whatever the estimate; passes 2 and 3 read the bytes and rescore only the elements with code(B)
 * (one bin when the estimate holds: about 1/300 of the weights). Pass 2 keeps their keys in
 * per-thread lists (position order, at most 4 bytes per 128 elements; beyond that pass 3 rescores
 * them instead), so pass 3 is a byte pass. Layer scopes (lmp, MULTIFLOW step 4) run one tensor per
 * thread, its bracket or its three passes over its own mask bytes while they are in cache;
 * MULTIFLOW step 1 uses the masks as code scratch. LAMP's score depends on the whole tensor but is
 * monotonic in |w| within it: walk 1 over every tensor's distinct magnitudes (mf_lamp_walk, one
 * tensor per thread) histograms the top 16 key bits; walk 2 the low 16 bits inside bin B, keeping
 * each tensor's walk entries in B, from which T becomes a per-tensor |w| interval, so the mask is a
 * plain pass over the weights (a third walk only if those lists overflow); ties at T are marked 2
 * and resolved afterwards in position order.
 *
 * It does not compute scores (criteria.c) nor know about models; the scope is whatever the caller
 * passes. Deviation from the reference (pruning.md): the reference prunes every score <= the k-th
 * value (torch.kthvalue), so ties make it prune more than k; here exactly k are pruned.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/pool.h"
#include "multiflow/prune.h"
#include "prune/bracket.h"
#include "prune/score.h"

#define HBINS 65536
#define CH MF_SCORE_BLOCK
/* Window of the codes: 256 consecutive top-16-bit bins centred on a sampled estimate of the k-th
 * key's bin (bins below it code 0, above 255), and the elements sampled per chunk for the estimate. */
#define WIN_HALF 128
#define SAMPLE 32

enum sel_pass { PASS_HI = 0, PASS_LO = 1, PASS_FINAL = 2 };

struct sel {
    size_t n_arrays;
    const float *const *x;          /* array source: x[a] has len[a] floats */
    const struct mf_score_gen *g;   /* generator source (x unused) */
    const size_t *tix;              /* (n_arrays) generator source: tensor index of array a */
    const int64_t *off;             /* (n_arrays + 1) prefix offsets of the positions */
    int64_t total;
    bool use_abs;                   /* select on |x| (MULTIFLOW step 1 on the weights) */
    int nth;
    /* codes (generator source with code bytes): pass 1 writes code(top 16 key bits) into code[a][j],
     * passes 2 and 3 read the bytes and recompute only the elements whose code is C */
    uint8_t *const *code;           /* (n_arrays) -> (len[a]) code bytes (the masks, or scratch), or NULL */
    int32_t base;                   /* code = clamp(top16 - base, 0, 255) */
    bool grow_lists;                /* lists may be (re)allocated after pass 1 (else: fixed capacity) */
    int64_t list_max;               /* grow_lists: most list entries over all threads */
    /* pass state */
    enum sel_pass pass;
    uint32_t B;                     /* PASS_LO: top 16 bits of the k-th key */
    uint32_t T;                     /* PASS_FINAL: the k-th key */
    int C;                          /* coded: code of B (-1 when k == 0: every element kept) */
    bool use_list;                  /* coded: pass 2 stores the keys of code-C elements, pass 3 reads them */
    int64_t *hist;                  /* (nth, HBINS) */
    int64_t *bad;                   /* (nth) first non-finite position in the thread's range, or -1 */
    float *badval;                  /* (nth) its value */
    int64_t *quota;                 /* (nth) PASS_FINAL: keys == T this thread prunes */
    uint8_t *const *mask;           /* PASS_FINAL output, or NULL */
    int64_t *counts;                /* (nth, n_arrays) PASS_FINAL output when mask is NULL */
    float *buf;                     /* (nth, CH) generated scores */
    uint32_t **list;                /* (nth) -> (list_cap[t]) keys of code-C elements, position order */
    int64_t *list_cap;              /* (nth) */
};

static inline uint8_t code_of(int32_t base, uint32_t top)
{
    int32_t c = (int32_t)top - base;
    return (uint8_t)(c < 0 ? 0 : c > 255 ? 255 : c);
}

/* Index of the array holding global position p (the last a with off[a] <= p, skipping empties). */
static size_t array_of(const struct sel *s, int64_t p) { return mf_scope_array_of(s->off, s->n_arrays, p); }

static inline const float *chunk_scores(const struct sel *s, size_t a, int64_t j, int64_t n, float *buf,
                                        const uint8_t *want, uint8_t c)
{
    if (!s->g)
        return s->x[a] + j;
    mf_score_gen_fill(s->g, s->tix[a], j, n, buf, want, c);
    return buf;
}

/* Key of element j + i of array a, one of the wanted elements of a chunk whose rand scores (if
 * any) were generated into x. */
static inline uint32_t hit_key(const struct sel *s, size_t a, int64_t j, int64_t i, const float *x)
{
    float f = x ? x[i] : mf_score_gen_one(s->g, s->tix[a], j + i);
    return mf_sel_key(f, s->use_abs);
}

struct tstate {
    int64_t *hist;
    int64_t quota;
    int64_t *count;   /* counts of the current array (no mask) */
    uint32_t *list;
    int64_t lpos;
};

/* Coded passes 2 and 3 on chunk [j, j + n) of array a. */
static void sel_chunk_coded(struct sel *s, int ith, size_t a, int64_t j, int64_t n, struct tstate *ts)
{
    uint8_t *m = s->code[a] + j;
    const bool is_rand = s->g->kind == MF_SCORE_RAND;
    float *buf = s->buf + (size_t)ith * CH;
    if (s->pass == PASS_LO) {
        const uint8_t C = (uint8_t)s->C;
        const uint32_t B = s->B;
        const uint8_t *h = memchr(m, C, (size_t)n);
        if (!h)
            return;
        const float *x = is_rand ? chunk_scores(s, a, j, n, buf, m, C) : NULL;
        for (; h; h = memchr(h + 1, C, (size_t)(n - (h + 1 - m)))) {
            int64_t i = h - m;
            uint32_t k = hit_key(s, a, j, i, x);
            if (s->use_list)
                ts->list[ts->lpos++] = k;
            ts->hist[k & 0xffffu] += (k >> 16) == B;
            if (i + 1 >= n)
                break;
        }
        return;
    }
    /* PASS_FINAL: 0 below C, 1 above, 2 at C (resolved from the keys), then the mask */
    if (s->C < 0) {
        memset(m, 1, (size_t)n); /* k == 0 */
    } else {
        const uint8_t C = (uint8_t)s->C;
        for (int64_t i = 0; i < n; i++) {
            uint8_t v = m[i];
            m[i] = (uint8_t)((v > C) | ((v == C) << 1));
        }
    }
    const uint8_t *h = memchr(m, 2, (size_t)n);
    if (h) {
        const float *x = is_rand && !s->use_list ? chunk_scores(s, a, j, n, buf, m, 2) : NULL;
        const uint32_t T = s->T;
        for (; h; h = memchr(h + 1, 2, (size_t)(n - (h + 1 - m)))) {
            int64_t i = h - m;
            uint32_t k = s->use_list ? ts->list[ts->lpos++] : hit_key(s, a, j, i, x);
            m[i] = mf_sel_keep(k, T, &ts->quota);
            if (i + 1 >= n)
                break;
        }
    }
    if (ts->count) {
        int64_t c = 0;
        for (int64_t i = 0; i < n; i++)
            c += m[i] == 0;
        *ts->count += c;
    }
}

/* One chunk [j, j + n) of array a; returns false when a non-finite score stops pass 1. */
static bool sel_chunk(struct sel *s, int ith, size_t a, int64_t j, int64_t n, struct tstate *ts)
{
    const bool ab = s->use_abs, coded = s->code != NULL;
    float *buf = s->buf + (size_t)ith * CH;
    int64_t *hist = ts->hist;
    if (coded && s->pass != PASS_HI) {
        sel_chunk_coded(s, ith, a, j, n, ts);
        return true;
    }
    switch (s->pass) {
    case PASS_HI: {
        uint8_t *m = coded ? s->code[a] + j : NULL;
        const int32_t base = s->base;
        if (coded && s->g->kind == MF_SCORE_ABS) {
            /* |w| straight from the weights (no copy through buf): key = |w| bits with the sign set */
            const float *w = s->g->set->t[s->tix[a]].w + j;
            uint32_t nf = 0;
            for (int64_t i = 0; i < n; i++) {
                uint32_t u;
                memcpy(&u, &w[i], sizeof u);
                u &= 0x7fffffffu;
                nf |= (uint32_t)(u >= 0x7f800000u);
                uint32_t top = (u | 0x80000000u) >> 16;
                hist[top]++;
                m[i] = code_of(base, top);
            }
            if (!nf)
                return true;
            for (int64_t i = 0; i < n; i++) {
                if (mf_sel_nonfinite(w[i])) {
                    s->bad[ith] = s->off[a] + j + i;
                    s->badval[ith] = fabsf(w[i]);
                    return false;
                }
            }
        }
        const float *x = chunk_scores(s, a, j, n, buf, NULL, 0);
        for (int64_t i = 0; i < n; i++) {
            if (mf_sel_nonfinite(x[i])) {
                s->bad[ith] = s->off[a] + j + i;
                s->badval[ith] = x[i];
                return false;
            }
            uint32_t k = mf_sel_key(x[i], ab);
            hist[k >> 16]++;
            if (coded)
                m[i] = code_of(base, k >> 16);
        }
        return true;
    }
    case PASS_LO: {
        const uint32_t B = s->B;
        const float *x = chunk_scores(s, a, j, n, buf, NULL, 0);
        for (int64_t i = 0; i < n; i++) {
            uint32_t k = mf_sel_key(x[i], ab);
            if ((k >> 16) == B) /* rare (one top bin of 65536): predicted, and no store otherwise */
                hist[k & 0xffffu]++;
        }
        return true;
    }
    case PASS_FINAL: {
        const uint32_t T = s->T;
        const float *x = chunk_scores(s, a, j, n, buf, NULL, 0);
        if (s->mask) {
            uint8_t *m = s->mask[a] + j;
            for (int64_t i = 0; i < n; i++)
                m[i] = mf_sel_keep(mf_sel_key(x[i], ab), T, &ts->quota);
        } else {
            int64_t c = 0;
            for (int64_t i = 0; i < n; i++)
                c += !mf_sel_keep(mf_sel_key(x[i], ab), T, &ts->quota);
            *ts->count += c;
        }
        return true;
    }
    }
    return true;
}

static void sel_kernel(void *arg, int ith, int nth)
{
    struct sel *s = arg;
    int64_t b, e;
    mf_split_range(s->total, ith, nth, &b, &e);
    struct tstate ts = {.hist = s->hist + (size_t)ith * HBINS};
    if (s->pass != PASS_FINAL)
        memset(ts.hist, 0, HBINS * sizeof *ts.hist);
    if (s->pass == PASS_HI)
        s->bad[ith] = -1;
    ts.quota = s->pass == PASS_FINAL ? s->quota[ith] : 0;
    ts.list = s->use_list ? s->list[ith] : NULL;
    int64_t *counts = s->counts ? s->counts + (size_t)ith * s->n_arrays : NULL;
    if (counts)
        memset(counts, 0, s->n_arrays * sizeof *counts);
    if (b >= e)
        return;
    size_t a = array_of(s, b);
    for (int64_t p = b; p < e; a++) {
        int64_t j0 = p - s->off[a], j1 = MF_MIN(e, s->off[a + 1]) - s->off[a];
        p = s->off[a + 1];
        ts.count = counts ? &counts[a] : NULL;
        /* chunks aligned to CH inside the array (a generator block never straddles two) */
        for (int64_t j = j0; j < j1;) {
            int64_t je = MF_MIN(j1, (j / CH + 1) * CH);
            if (!sel_chunk(s, ith, a, j, je - j, &ts))
                return;
            j = je;
        }
    }
}

/* Sums the per-thread histograms and finds the bin holding the need-th smallest key (need >= 1);
 * *below gets the count of keys in lower bins. */
static uint32_t find_bin(const int64_t *hist, int nth, int64_t need, int64_t *below)
{
    int64_t cum = 0;
    for (int bin = 0; bin < HBINS; bin++) {
        int64_t h = 0;
        for (int t = 0; t < nth; t++)
            h += hist[(size_t)t * HBINS + bin];
        if (cum + h >= need) {
            *below = cum;
            return (uint32_t)bin;
        }
        cum += h;
    }
    MF_ASSERT(0 && "radix select: fewer keys than k");
    return 0;
}

/* Code window: the first SAMPLE scores of every chunk estimate the bin of the k-th key (k >= 1);
 * the window is centred there. Only speed depends on it: codes are non-decreasing in the key, so
 * any base gives the same masks. Uses thread 0's histogram and buffer. */
static void sel_window(struct sel *s, int64_t k)
{
    int64_t *hist = s->hist;
    memset(hist, 0, HBINS * sizeof *hist);
    int64_t S = 0;
    for (size_t a = 0; a < s->n_arrays; a++) {
        int64_t len = s->off[a + 1] - s->off[a];
        for (int64_t j = 0; j < len; j += CH) {
            int64_t n = MF_MIN(SAMPLE, len - j);
            const float *x = chunk_scores(s, a, j, n, s->buf, NULL, 0);
            for (int64_t i = 0; i < n; i++) {
                if (mf_sel_nonfinite(x[i]))
                    continue; /* pass 1 reports it */
                hist[mf_sel_key(x[i], s->use_abs) >> 16]++;
                S++;
            }
        }
    }
    int32_t est = 0x8000;
    if (S > 0) {
        int64_t below;
        int64_t r = (int64_t)((long double)(k - 1) * (long double)S / (long double)s->total);
        est = (int32_t)find_bin(hist, 1, MF_MIN(r + 1, S), &below);
    }
    s->base = est - WIN_HALF;
}

/* After pass 1: how many elements of each thread have code C, and whether their keys fit lists. */
static bool sel_lists(struct sel *s)
{
    int32_t lo = s->C == 0 ? 0 : s->base + s->C, hi = s->C == 255 ? HBINS - 1 : s->base + s->C;
    lo = MF_MAX(lo, 0);
    hi = MF_MIN(hi, HBINS - 1);
    int64_t all = 0;
    bool fits = true;
    for (int t = 0; t < s->nth; t++) {
        int64_t c = 0;
        for (int32_t b = lo; b <= hi; b++)
            c += s->hist[(size_t)t * HBINS + b];
        all += c;
        if (c > s->list_cap[t]) {
            if (!s->grow_lists || all > s->list_max) {
                fits = false;
                continue;
            }
            uint32_t *l = mf_realloc(s->list[t], (size_t)c * sizeof *l);
            if (!l) {
                fits = false; /* recomputing instead costs time, not correctness */
                continue;
            }
            s->list[t] = l;
            s->list_cap[t] = c;
        }
    }
    return fits && all <= s->list_max;
}

/* Per-thread buffers of a selection with nth threads (gen: generated scores). */
static enum mf_status sel_alloc(struct sel *s, int nth, bool gen, struct mf_err *err)
{
    s->nth = nth;
    s->hist = mf_malloc((size_t)nth * HBINS * sizeof *s->hist);
    s->bad = mf_malloc((size_t)nth * sizeof *s->bad);
    s->badval = mf_malloc((size_t)nth * sizeof *s->badval);
    s->quota = mf_calloc((size_t)nth, sizeof *s->quota);
    s->buf = gen ? mf_malloc((size_t)nth * CH * sizeof *s->buf) : NULL;
    s->list = mf_calloc((size_t)nth, sizeof *s->list);
    s->list_cap = mf_calloc((size_t)nth, sizeof *s->list_cap);
    if (!s->hist || !s->bad || !s->badval || !s->quota || (gen && !s->buf) || !s->list || !s->list_cap)
        return mf_err_set(err, MF_ERR_NOMEM, "select: out of memory for %d thread histograms", nth);
    return MF_OK;
}

static void sel_release(struct sel *s)
{
    for (int t = 0; s->list && t < s->nth; t++)
        mf_free(s->list[t]);
    mf_free(s->list);
    mf_free(s->list_cap);
    mf_free(s->counts);
    mf_free(s->buf);
    mf_free(s->quota);
    mf_free(s->badval);
    mf_free(s->bad);
    mf_free(s->hist);
    s->list = NULL;
    s->list_cap = s->counts = s->quota = s->bad = s->hist = NULL;
    s->buf = s->badval = NULL;
}

/* The three passes over a scope whose buffers are allocated (counts too when mask is NULL); pool
 * NULL runs them on the calling thread (s->nth == 1). A non-finite score returns MF_ERR_NUMERIC with
 * *bad_pos, *bad_val set to its position and value (the message is the caller's). */
static enum mf_status sel_passes(struct mf_pool *pool, struct sel *s, int64_t k, int64_t *bad_pos, float *bad_val)
{
    const int nth = s->nth;
    s->use_list = false;
    if (s->code && k > 0)
        sel_window(s, k);
    /* pass 1 also rejects NaN/inf, reporting the lowest bad position */
    s->pass = PASS_HI;
    mf_pool_run(pool, sel_kernel, s);
    for (int t = 0; t < nth; t++) {
        if (s->bad[t] >= 0) {
            *bad_pos = s->bad[t];
            *bad_val = s->badval[t];
            return MF_ERR_NUMERIC;
        }
    }
    if (k == 0) {
        s->T = 0; /* below every finite key; quotas stay 0: nothing pruned */
        s->C = -1;
    } else {
        int64_t below = 0, b = 0;
        s->B = find_bin(s->hist, nth, k, &b);
        below += b;
        if (s->code) {
            s->C = code_of(s->base, s->B);
            s->use_list = sel_lists(s);
        }
        s->pass = PASS_LO;
        mf_pool_run(pool, sel_kernel, s);
        uint32_t lo = find_bin(s->hist, nth, k - below, &b);
        below += b;
        s->T = (s->B << 16) | lo;
        /* ties: the first (k - below) keys == T in position order; thread t holds hist[t][lo] of them */
        int64_t left = k - below;
        for (int t = 0; t < nth; t++) {
            int64_t eq = s->hist[(size_t)t * HBINS + lo];
            s->quota[t] = MF_MIN(left, eq);
            left -= s->quota[t];
        }
        MF_ASSERT(left == 0);
    }
    s->pass = PASS_FINAL;
    mf_pool_run(pool, sel_kernel, s);
    return MF_OK;
}

static enum mf_status bad_error(const struct sel *s, const char *const *names, int64_t pos, float v,
                                struct mf_err *err)
{
    size_t a = array_of(s, pos);
    int64_t j = pos - s->off[a];
    char label[32];
    snprintf(label, sizeof label, "array %zu", a);
    return mf_err_set(err, MF_ERR_NUMERIC, "%s of tensor '%s' contain a non-finite value (%g) at element %lld",
                      s->use_abs ? "weights" : "scores", names && names[a] ? names[a] : label, (double)v,
                      (long long)j);
}

/* Exact-k over a scope described by s (source, offsets, total, code bytes set by the caller). */
static enum mf_status sel_run(struct mf_pool *pool, struct sel *s, const char *const *names, int64_t k,
                              uint8_t *const *mask, int64_t *pruned, struct mf_err *err)
{
    int nth = mf_pool_size(pool);
    /* the one-pass bracket first (bracket.c); its scratch is released before the radix passes'
     * buffers exist, so peak memory is the larger of the two */
    struct mf_brk_scratch *scr = mf_calloc((size_t)nth, sizeof *scr);
    if (!scr)
        return mf_err_set(err, MF_ERR_NOMEM, "select: out of memory for %d thread lists", nth);
    struct mf_brk_scope sc = {.n_arrays = s->n_arrays, .off = s->off, .x = s->x, .g = s->g, .tix = s->tix,
                              .use_abs = s->use_abs};
    enum mf_brk_result br = mf_brk_select(pool, &sc, k, mask, pruned, scr);
    for (int t = 0; t < nth; t++)
        mf_brk_scratch_free(&scr[t]);
    mf_free(scr);
    if (br == MF_BRK_DONE)
        return MF_OK;
    if (br == MF_BRK_NOMEM)
        return mf_err_set(err, MF_ERR_NOMEM, "select: out of memory for the candidate lists");
    s->mask = mask;
    s->grow_lists = true;
    /* keys of the selected code kept between passes 2 and 3: at most 4 bytes per 128 elements */
    s->list_max = (int64_t)1 << 16 | s->total / 128;
    enum mf_status rc = sel_alloc(s, nth, s->g != NULL, err);
    if (rc != MF_OK)
        goto fail;
    if (!mask) {
        s->counts = mf_malloc((size_t)nth * (s->n_arrays ? s->n_arrays : 1) * sizeof *s->counts);
        if (!s->counts) {
            rc = mf_err_set(err, MF_ERR_NOMEM, "select: out of memory for per-thread counts");
            goto fail;
        }
    }
    int64_t bad = -1;
    float bad_val = 0;
    if ((rc = sel_passes(pool, s, k, &bad, &bad_val)) != MF_OK) {
        rc = bad_error(s, names, bad, bad_val, err);
        goto fail;
    }
    if (!mask) {
        for (size_t a = 0; a < s->n_arrays; a++) {
            int64_t c = 0;
            for (int t = 0; t < nth; t++)
                c += s->counts[(size_t)t * s->n_arrays + a];
            pruned[a] = c;
        }
    }
fail:
    sel_release(s);
    return rc;
}

/* Offsets of a scope; checks lengths, buffers and k. */
static enum mf_status scope_offsets(size_t n_arrays, const float *const *x, const int64_t *len,
                                    const char *const *names, uint8_t *const *mask, int64_t k, int64_t **off_out,
                                    struct mf_err *err)
{
    int64_t *off = mf_malloc((n_arrays + 1) * sizeof *off);
    enum mf_status rc = MF_OK;
    if (!off)
        return mf_err_set(err, MF_ERR_NOMEM, "select: out of memory for %zu offsets", n_arrays);
    off[0] = 0;
    for (size_t a = 0; a < n_arrays; a++) {
        if (len[a] < 0 || (len[a] > 0 && ((x && !x[a]) || (mask && !mask[a])))) {
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
    *off_out = off;
    return MF_OK;
fail:
    mf_free(off);
    return rc;
}

static enum mf_status select_impl(struct mf_pool *pool, size_t n_arrays, const float *const *x, const int64_t *len,
                                  const char *const *names, int64_t k, bool use_abs, uint8_t *const *mask,
                                  int64_t *pruned, struct mf_err *err)
{
    int64_t *off = NULL;
    if (n_arrays > 0 && (!x || !len))
        return mf_err_set(err, MF_ERR_ARG, "select: NULL score arrays or lengths for %zu arrays", n_arrays);
    enum mf_status rc = scope_offsets(n_arrays, x, len, names, mask, k, &off, err);
    if (rc != MF_OK)
        return rc;
    struct sel s = {.n_arrays = n_arrays, .x = x, .off = off, .total = off[n_arrays], .use_abs = use_abs};
    rc = sel_run(pool, &s, names, k, mask, pruned, err);
    mf_free(off);
    return rc;
}

/* Exact-k over the tensors tix[0..m) of g's set, scores recomputed by the generator. */
static enum mf_status select_gen(struct mf_pool *pool, const struct mf_score_gen *g, const size_t *tix, size_t m,
                                 int64_t k, bool use_abs, uint8_t *const *code, uint8_t *const *mask,
                                 int64_t *pruned, const char **names, int64_t *len, struct mf_err *err)
{
    int64_t *off = NULL;
    for (size_t a = 0; a < m; a++) {
        names[a] = g->set->t[tix[a]].name;
        len[a] = g->set->t[tix[a]].n;
    }
    enum mf_status rc = scope_offsets(m, NULL, len, names, mask, k, &off, err);
    if (rc != MF_OK)
        return rc;
    struct sel s = {.n_arrays = m, .g = g, .tix = tix, .off = off, .total = off[m], .use_abs = use_abs,
                    .code = code};
    rc = sel_run(pool, &s, names, k, mask, pruned, err);
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

/* ---- LAMP: one tensor per thread per pass, walking its distinct magnitudes -------------------- */

struct lsel {
    const struct mf_prune_set *set;
    struct mf_lamp_scratch *scr;    /* (nth) */
    int64_t *hist;                  /* (nth, HBINS) */
    enum sel_pass pass;
    uint32_t B, T;
    atomic_size_t next;
    int64_t *bad;                   /* (nth) lowest tensor with a non-finite weight, or INT64_MAX */
    bool *nomem;                    /* (nth) */
    uint8_t *const *mask;
    int64_t *eq;                    /* (n) keys == T per tensor (PASS_FINAL), then the tensor's quota */
    uint8_t *tied;                  /* (n) the tensor has keys == T (elements marked 2) */
    /* PASS_LO also keeps, per tensor, the walk's entries whose score key is in bin B (in walk order)
     * and the smallest |w| key scored above the bin, so the mask pass needs no third walk */
    struct lentry **ent;            /* (nth) -> (ent_cap) each thread's entries */
    int64_t *n_ent, ent_cap;        /* (nth) */
    bool *full;                     /* (nth) a list ran out: the mask pass walks again */
    struct ltensor *lt;             /* (n) */
    uint32_t *u_lo, *u_gt;          /* (n) the tensor's |w| interval of keys >= T, > T */
};

struct lentry {
    uint32_t wkey, key, count;
};

struct ltensor {
    int thread;
    int64_t start, len;  /* entries [start, start + len) of ent[thread] */
    uint32_t min_above;  /* smallest |w| key whose score key is above bin B (0xffffffff: none) */
};

struct lvisit {
    enum sel_pass pass;
    uint32_t B, T;
    int64_t *hist;
    uint32_t u_lo, u_gt; /* smallest |w| key with score key >= T, > T (0xffffffff: none) */
    int64_t eq;
    /* PASS_LO: entries in bin B go to ent[n_ent++] while n_ent < cap */
    struct lentry *ent;
    int64_t n_ent, cap;
    bool full;
    uint32_t min_above;
};

static void lamp_visit(void *ctx, uint32_t wkey, float score, int64_t count)
{
    struct lvisit *v = ctx;
    uint32_t k = mf_sel_key(score, false);
    switch (v->pass) {
    case PASS_HI:
        v->hist[k >> 16] += count;
        break;
    case PASS_LO:
        if ((k >> 16) == v->B) {
            v->hist[k & 0xffffu] += count;
            if (v->n_ent < v->cap && count <= UINT32_MAX)
                v->ent[v->n_ent++] = (struct lentry){.wkey = wkey, .key = k, .count = (uint32_t)count};
            else
                v->full = true;
        } else if ((k >> 16) > v->B) {
            v->min_above = wkey; /* the walk goes down in |w|: the last one is the smallest */
        }
        break;
    case PASS_FINAL:
        /* the walk goes down in |w| and scores do not increase: the last assignment is the minimum */
        if (k >= v->T)
            v->u_lo = wkey;
        if (k > v->T)
            v->u_gt = wkey;
        if (k == v->T)
            v->eq += count;
        break;
    }
}

/* |w| below u_lo: score < T, pruned; [u_lo, u_gt): score == T, a tie (2) resolved later */
static void lamp_mask(const struct mf_prune_tensor *pt, uint8_t *m, uint32_t u_lo, uint32_t u_gt)
{
    const float *w = pt->w;
    for (int64_t j = 0; j < pt->n; j++) {
        uint32_t u;
        memcpy(&u, &w[j], sizeof u);
        u &= 0x7fffffffu;
        m[j] = u < u_lo ? 0 : u < u_gt ? 2 : 1;
    }
}

/* After PASS_LO: each tensor's interval and tie count at T from its kept entries, as PASS_FINAL's
 * walk would find them (entries above bin B all score > T; those below, < T). */
static void lamp_intervals(struct lsel *l)
{
    for (size_t t = 0; t < l->set->n; t++) {
        const struct ltensor *e = &l->lt[t];
        uint32_t u_lo = e->min_above, u_gt = e->min_above;
        int64_t eq = 0;
        for (int64_t i = 0; i < e->len; i++) {
            const struct lentry *x = &l->ent[e->thread][e->start + i];
            if (x->key >= l->T)
                u_lo = x->wkey;
            if (x->key > l->T)
                u_gt = x->wkey;
            if (x->key == l->T)
                eq += x->count;
        }
        l->u_lo[t] = u_lo;
        l->u_gt[t] = u_gt;
        l->eq[t] = eq;
    }
}

static void lamp_sel_kernel(void *arg, int ith, int nth)
{
    (void)nth;
    struct lsel *l = arg;
    int64_t *hist = l->hist + (size_t)ith * HBINS;
    if (l->pass != PASS_FINAL)
        memset(hist, 0, HBINS * sizeof *hist);
    l->bad[ith] = INT64_MAX;
    l->nomem[ith] = false;
    for (;;) {
        size_t t = atomic_fetch_add(&l->next, 1);
        if (t >= l->set->n)
            break;
        const struct mf_prune_tensor *pt = &l->set->t[t];
        struct lvisit v = {.pass = l->pass, .B = l->B, .T = l->T, .hist = hist, .u_lo = 0xffffffffu,
                           .u_gt = 0xffffffffu, .min_above = 0xffffffffu};
        if (l->pass == PASS_FINAL && l->u_lo) {
            /* the interval from PASS_LO's entries: no walk */
            v.u_lo = l->u_lo[t];
            v.u_gt = l->u_gt[t];
            v.eq = l->eq[t];
            lamp_mask(pt, l->mask[t], v.u_lo, v.u_gt);
            continue;
        }
        if (l->pass == PASS_LO) {
            v.ent = l->ent[ith] + l->n_ent[ith];
            v.cap = l->ent_cap - l->n_ent[ith];
        }
        int r = mf_lamp_walk(pt->w, pt->n, &l->scr[ith], lamp_visit, &v);
        if (r == 0) {
            l->bad[ith] = MF_MIN(l->bad[ith], (int64_t)t);
            continue;
        }
        if (r < 0) {
            l->nomem[ith] = true;
            break;
        }
        if (l->pass == PASS_LO) {
            l->lt[t] = (struct ltensor){.thread = ith, .start = l->n_ent[ith], .len = v.n_ent,
                                        .min_above = v.min_above};
            l->n_ent[ith] += v.n_ent;
            l->full[ith] |= v.full;
        }
        if (l->pass != PASS_FINAL)
            continue;
        lamp_mask(pt, l->mask[t], v.u_lo, v.u_gt);
        l->eq[t] = v.eq;
    }
}

/* ties at T: tensor t prunes the first eq[t] (its quota) elements marked 2, in element order */
static void lamp_tie_kernel(void *arg, int ith, int nth)
{
    struct lsel *l = arg;
    int64_t b, e;
    mf_split_range((int64_t)l->set->n, ith, nth, &b, &e);
    for (int64_t t = b; t < e; t++) {
        if (!l->tied[t])
            continue;
        int64_t q = l->eq[t];
        uint8_t *m = l->mask[t];
        for (int64_t j = 0; j < l->set->t[t].n; j++) {
            if (m[j] == 2) {
                m[j] = q > 0 ? 0 : 1;
                q -= q > 0;
            }
        }
    }
}

static enum mf_status lamp_run_pass(struct mf_pool *pool, struct lsel *l, enum sel_pass pass, struct mf_err *err)
{
    int nth = mf_pool_size(pool);
    l->pass = pass;
    atomic_store(&l->next, 0);
    mf_pool_run(pool, lamp_sel_kernel, l);
    int64_t bad = INT64_MAX;
    for (int t = 0; t < nth; t++) {
        if (l->nomem[t])
            return mf_err_set(err, MF_ERR_NOMEM, "lamp: out of memory for the magnitude walk");
        bad = MF_MIN(bad, l->bad[t]);
    }
    if (bad != INT64_MAX) {
        const struct mf_prune_tensor *pt = &l->set->t[bad];
        return mf_err_set(err, MF_ERR_NUMERIC, "lamp: tensor '%s' [%lld,%lld] has non-finite scores (NaN/inf weights)",
                          pt->name, (long long)pt->out, (long long)pt->in);
    }
    return MF_OK;
}

static enum mf_status lamp_select(struct mf_pool *pool, const struct mf_prune_set *set, int64_t k,
                                  uint8_t *const *masks, struct mf_err *err)
{
    enum mf_status rc = MF_OK;
    int nth = mf_pool_size(pool);
    struct lsel l = {.set = set};
    l.scr = mf_calloc((size_t)nth, sizeof *l.scr);
    l.hist = mf_malloc((size_t)nth * HBINS * sizeof *l.hist);
    l.bad = mf_malloc((size_t)nth * sizeof *l.bad);
    l.nomem = mf_malloc((size_t)nth * sizeof *l.nomem);
    l.eq = mf_calloc(set->n ? set->n : 1, sizeof *l.eq);
    l.tied = mf_calloc(set->n ? set->n : 1, sizeof *l.tied);
    l.ent = mf_calloc((size_t)nth, sizeof *l.ent);
    l.n_ent = mf_calloc((size_t)nth, sizeof *l.n_ent);
    l.full = mf_calloc((size_t)nth, sizeof *l.full);
    l.lt = mf_calloc(set->n ? set->n : 1, sizeof *l.lt);
    l.mask = masks;
    if (!l.scr || !l.hist || !l.bad || !l.nomem || !l.eq || !l.tied || !l.ent || !l.n_ent || !l.full || !l.lt) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "lamp: out of memory for %d thread histograms", nth);
        goto fail;
    }
    atomic_init(&l.next, 0);
    if ((rc = lamp_run_pass(pool, &l, PASS_HI, err)) != MF_OK)
        goto fail;
    int64_t below = 0, b = 0;
    if (k == 0) {
        l.T = 0;
    } else {
        l.B = find_bin(l.hist, nth, k, &b);
        below += b;
        /* entries of bin B: about the share of one bin of the distinct magnitudes; past this
         * capacity (virtual until used) the mask pass walks again */
        l.ent_cap = mf_brk_mode() == 2 ? 1 : (int64_t)1 << 16 | set->total / 128 / nth;
        for (int t = 0; t < nth; t++) {
            if (!(l.ent[t] = mf_malloc((size_t)l.ent_cap * sizeof *l.ent[t]))) {
                rc = mf_err_set(err, MF_ERR_NOMEM, "lamp: out of memory for the bin's entries");
                goto fail;
            }
        }
        if ((rc = lamp_run_pass(pool, &l, PASS_LO, err)) != MF_OK)
            goto fail;
        uint32_t lo = find_bin(l.hist, nth, k - below, &b);
        below += b;
        l.T = (l.B << 16) | lo;
        bool full = false;
        for (int t = 0; t < nth; t++)
            full |= l.full[t];
        if (!full) {
            l.u_lo = mf_malloc((set->n ? set->n : 1) * sizeof *l.u_lo);
            l.u_gt = mf_malloc((set->n ? set->n : 1) * sizeof *l.u_gt);
            if (!l.u_lo || !l.u_gt) {
                rc = mf_err_set(err, MF_ERR_NOMEM, "lamp: out of memory");
                goto fail;
            }
            lamp_intervals(&l);
        }
        for (int t = 0; t < nth; t++) {
            mf_free(l.ent[t]);
            l.ent[t] = NULL;
        }
    }
    if ((rc = lamp_run_pass(pool, &l, PASS_FINAL, err)) != MF_OK)
        goto fail;
    /* the first (k - below) ties in position order: whole quotas tensor by tensor */
    int64_t left = k - below;
    for (size_t t = 0; t < set->n; t++) {
        l.tied[t] = l.eq[t] > 0;
        int64_t q = MF_MIN(left, l.eq[t]);
        l.eq[t] = q;
        left -= q;
    }
    MF_ASSERT(left == 0);
    mf_pool_run(pool, lamp_tie_kernel, &l);
fail:
    for (int t = 0; l.scr && t < nth; t++)
        mf_lamp_scratch_free(&l.scr[t]);
    for (int t = 0; l.ent && t < nth; t++)
        mf_free(l.ent[t]);
    mf_free(l.ent);
    mf_free(l.n_ent);
    mf_free(l.full);
    mf_free(l.lt);
    mf_free(l.u_lo);
    mf_free(l.u_gt);
    mf_free(l.tied);
    mf_free(l.eq);
    mf_free(l.nomem);
    mf_free(l.bad);
    mf_free(l.hist);
    mf_free(l.scr);
    return rc;
}

/* ---- per-method scopes ----------------------------------------------------------------------- */

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

/* scratch (may be NULL): one byte per weight per tensor (the masks), used for the selection codes */
static enum mf_status layer_counts(struct mf_pool *pool, enum mf_method method, const struct mf_prune_set *set,
                                   double sparsity, int64_t *k_per_tensor, uint8_t *const *scratch, struct mf_err *err)
{
    enum mf_status rc = check_args(method, set, sparsity, err);
    size_t *tix = NULL;
    int64_t *len = NULL, *cnt = NULL;
    const char **names = NULL;
    uint8_t **cp = NULL;
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
            k_per_tensor[i] = mf_sel_count_at(sparsity, set->t[i].n);
        return MF_OK;
    default:
        break;
    }
    /* MULTIFLOW step 1: per modality, exact-k lowest |w| in selection order restricted to it */
    struct mf_score_gen g = {.kind = MF_SCORE_ABS, .set = set};
    size_t n = set->n ? set->n : 1;
    tix = mf_malloc(n * sizeof *tix);
    len = mf_malloc(n * sizeof *len);
    cnt = mf_malloc(n * sizeof *cnt);
    names = mf_malloc(n * sizeof *names);
    cp = mf_malloc(n * sizeof *cp);
    if (!tix || !len || !cnt || !names || !cp) {
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
            cp[m] = scratch ? scratch[i] : NULL;
            tix[m++] = i;
            n_mod += set->t[i].n;
        }
        if (m == 0)
            continue;
        rc = select_gen(pool, &g, tix, m, mf_sel_count_at(sparsity, n_mod), true, scratch ? cp : NULL, NULL, cnt, names, len,
                        err);
        if (rc != MF_OK)
            goto fail;
        for (size_t q = 0; q < m; q++)
            k_per_tensor[tix[q]] = cnt[q];
    }
fail:
    mf_free(cp);
    mf_free(names);
    mf_free(cnt);
    mf_free(len);
    mf_free(tix);
    return rc;
}

enum mf_status mf_prune_layer_counts(struct mf_pool *pool, enum mf_method method, const struct mf_prune_set *set,
                                     double sparsity, int64_t *k_per_tensor, struct mf_err *err)
{
    return layer_counts(pool, method, set, sparsity, k_per_tensor, NULL, err);
}

/* ---- layer scope: one tensor per thread, its three passes in cache -------------------------- */

struct layers {
    const struct mf_score_gen *g;
    const int64_t *k;        /* (n) prune count per tensor */
    uint8_t *const *masks;   /* (n) */
    const size_t *order;     /* (n) tensors, largest first (balance: the small ones fill the end) */
    atomic_size_t next;
    struct sel *w;           /* (nth) each worker's single-thread selection state */
    struct mf_brk_scratch *bs; /* (nth) each worker's bracket lists */
    bool *nomem;             /* (nth) */
    int64_t *bad_t, *bad_j;  /* (nth) lowest tensor with a non-finite score, its element */
    float *bad_v;            /* (nth) */
};

static void layers_kernel(void *arg, int ith, int nth)
{
    (void)nth;
    struct layers *L = arg;
    struct sel *s = &L->w[ith];
    L->bad_t[ith] = INT64_MAX;
    L->nomem[ith] = false;
    for (;;) {
        size_t q = atomic_fetch_add(&L->next, 1);
        if (q >= L->g->set->n)
            break;
        size_t t = L->order[q];
        int64_t n = L->g->set->t[t].n, off[2] = {0, n}, pos = -1;
        float v = 0;
        s->tix = &L->order[q];
        s->off = off;
        s->total = n;
        s->code = &L->masks[t];
        s->mask = &L->masks[t];
        s->list_max = (int64_t)1 << 16 | n / 128;
        struct mf_brk_scope sc = {.n_arrays = 1, .off = off, .g = L->g, .tix = &L->order[q]};
        enum mf_brk_result br = mf_brk_select(NULL, &sc, L->k[t], &L->masks[t], NULL, &L->bs[ith]);
        if (br == MF_BRK_NOMEM) {
            L->nomem[ith] = true;
            break;
        }
        if (br == MF_BRK_DONE) {
            s->off = NULL;
            continue;
        }
        if (sel_passes(NULL, s, L->k[t], &pos, &v) != MF_OK && (int64_t)t < L->bad_t[ith]) {
            L->bad_t[ith] = (int64_t)t;
            L->bad_j[ith] = pos;
            L->bad_v[ith] = v;
        }
        s->off = NULL;
    }
}

/* Each tensor its own exact-k (k[t] of n_t), tensors spread over the pool's threads: a tensor's
 * passes 2 and 3 read its mask bytes (<= a few MB) while they are still in cache. */
static enum mf_status select_layers(struct mf_pool *pool, const struct mf_score_gen *g, const int64_t *k,
                                    uint8_t *const *masks, struct mf_err *err)
{
    const struct mf_prune_set *set = g->set;
    int nth = mf_pool_size(pool);
    enum mf_status rc = MF_OK;
    struct layers L = {.g = g, .k = k, .masks = masks};
    size_t *order = mf_malloc((set->n ? set->n : 1) * sizeof *order);
    L.w = mf_calloc((size_t)nth, sizeof *L.w);
    L.bad_t = mf_malloc((size_t)nth * sizeof *L.bad_t);
    L.bad_j = mf_malloc((size_t)nth * sizeof *L.bad_j);
    L.bad_v = mf_malloc((size_t)nth * sizeof *L.bad_v);
    L.bs = mf_calloc((size_t)nth, sizeof *L.bs);
    L.nomem = mf_calloc((size_t)nth, sizeof *L.nomem);
    if (!order || !L.w || !L.bad_t || !L.bad_j || !L.bad_v || !L.bs || !L.nomem) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "prune: out of memory");
        goto fail;
    }
    for (size_t t = 0; t < set->n; t++) {
        if (set->t[t].n > 0 && !masks[t]) {
            rc = mf_err_set(err, MF_ERR_ARG, "prune: NULL mask for tensor '%s'", set->t[t].name);
            goto fail;
        }
        if (k[t] < 0 || k[t] > set->t[t].n) {
            rc = mf_err_set(err, MF_ERR_ARG, "select: k = %lld is outside [0, %lld] for tensor '%s'",
                            (long long)k[t], (long long)set->t[t].n, set->t[t].name);
            goto fail;
        }
        order[t] = t;
    }
    /* largest first, ties by index (insertion sort: a few hundred tensors) */
    for (size_t i = 1; i < set->n; i++) {
        size_t v = order[i], j = i;
        while (j > 0 && set->t[order[j - 1]].n < set->t[v].n) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
    L.order = order;
    for (int t = 0; t < nth; t++) {
        L.w[t] = (struct sel){.n_arrays = 1, .g = g, .grow_lists = true};
        if ((rc = sel_alloc(&L.w[t], 1, true, err)) != MF_OK)
            goto fail;
    }
    atomic_init(&L.next, 0);
    mf_pool_run(pool, layers_kernel, &L);
    int64_t bt = INT64_MAX;
    int bw = 0;
    for (int t = 0; t < nth; t++) {
        if (L.nomem[t]) {
            rc = mf_err_set(err, MF_ERR_NOMEM, "prune: out of memory for the candidate lists");
            goto fail;
        }
    }
    for (int t = 0; t < nth; t++) {
        if (L.bad_t[t] < bt) {
            bt = L.bad_t[t];
            bw = t;
        }
    }
    if (bt != INT64_MAX)
        rc = mf_err_set(err, MF_ERR_NUMERIC, "scores of tensor '%s' contain a non-finite value (%g) at element %lld",
                        set->t[bt].name, (double)L.bad_v[bw], (long long)L.bad_j[bw]);
fail:
    for (int t = 0; L.w && t < nth; t++)
        sel_release(&L.w[t]);
    for (int t = 0; L.bs && t < nth; t++)
        mf_brk_scratch_free(&L.bs[t]);
    mf_free(L.nomem);
    mf_free(L.bs);
    mf_free(L.bad_v);
    mf_free(L.bad_j);
    mf_free(L.bad_t);
    mf_free(L.w);
    mf_free(order);
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
        rc = mf_select_lowest(pool, set->n, scores, len, names, mf_sel_count_at(sparsity, set->total), masks, err);
        goto fail;
    }
    rc = layer_counts(pool, method, set, sparsity, kl, NULL, err);
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

enum mf_status mf_prune_compute_masks(struct mf_pool *pool, enum mf_method method, const struct mf_prune_set *set,
                                      double sparsity, uint64_t seed, uint8_t *const *masks, struct mf_err *err)
{
    enum mf_status rc = check_args(method, set, sparsity, err);
    struct mf_score_gen g = {0};
    size_t *tix = NULL;
    int64_t *len = NULL, *kl = NULL;
    const char **names = NULL;
    if (rc != MF_OK)
        return rc;
    if ((rc = mf_score_check_set(set, err)) != MF_OK)
        return rc;
    if (set->n > 0 && !masks)
        return mf_err_set(err, MF_ERR_ARG, "prune: NULL mask arrays");
    if (method == MF_METHOD_LAMP)
        return lamp_select(pool, set, mf_sel_count_at(sparsity, set->total), masks, err);
    size_t n = set->n ? set->n : 1;
    tix = mf_malloc(n * sizeof *tix);
    len = mf_malloc(n * sizeof *len);
    kl = mf_malloc(n * sizeof *kl);
    names = mf_malloc(n * sizeof *names);
    if (!tix || !len || !kl || !names) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "prune: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < set->n; i++) {
        tix[i] = i;
        if (set->t[i].n > 0 && !masks[i]) {
            rc = mf_err_set(err, MF_ERR_ARG, "prune: NULL mask for tensor '%s'", set->t[i].name);
            goto fail;
        }
    }
    /* MULTIFLOW step 1 uses the masks as code scratch before step 4 writes them */
    if (method == MF_METHOD_MULTIFLOW &&
        (rc = layer_counts(pool, method, set, sparsity, kl, masks, err)) != MF_OK)
        goto fail;
    if ((rc = mf_score_gen_init(pool, method, set, seed, &g, err)) != MF_OK)
        goto fail;
    if (method != MF_METHOD_LMP && method != MF_METHOD_MULTIFLOW) {
        rc = select_gen(pool, &g, tix, set->n, mf_sel_count_at(sparsity, set->total), false, masks, masks, NULL, names, len,
                        err);
        goto fail;
    }
    /* layer scope: each tensor its own exact-k (lmp: floor(s * n_l); MULTIFLOW step 4: integer k_l) */
    if (method == MF_METHOD_LMP)
        for (size_t i = 0; i < set->n; i++)
            kl[i] = mf_sel_count_at(sparsity, set->t[i].n);
    rc = select_layers(pool, &g, kl, masks, err);
fail:
    mf_free(names);
    mf_free(kl);
    mf_free(len);
    mf_free(tix);
    mf_score_gen_free(&g);
    return rc;
}
