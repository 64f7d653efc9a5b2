/*
 * prune/bracket.c: exact-k selection in one streaming pass (prune/bracket.h), the fast path that
 * select.c tries before its radix passes.
 *
 * 1. Sample. Runs of RUN consecutive elements, one per `rb` positions at a hashed offset (rand: the
 *    first elements of every generator block, which cost no replay), give S exact keys; the keys of
 *    sample ranks k S / n -+ (5 sigma + 16), sigma = sqrt(S p (1 - p)), bound the bracket
 *    [key_lo, key_hi]. Scopes of at most SMALL_SCOPE positions take everything as candidates.
 * 2. One pass (pool threads on contiguous position ranges). Each element's proxy is compared with
 *    the bracket mapped into proxy space: below -> pruned (mask 0, counted), above -> kept (mask 1),
 *    inside -> a candidate (mask 0 for now; position and exact key kept in the thread's list). The
 *    proxy is the score's own key (array scores, |w|, MULTIFLOW scores, computed 8 at a time with
 *    AVX2), or, where the score is a non-decreasing function of something cheaper, that thing: |w|
 *    for l2 (score |w| / ||W|| per tensor: the bracket becomes a |w| interval per tensor) and the
 *    24-bit uniform for rand (the inverse normal CDF only runs for candidates). The bracket's proxy
 *    bounds come from binary searches over that function, so the classification is exact.
 * 3. With `below` pruned by the pass, the k-th key T is the (k - below)-th smallest candidate key
 *    (radix select over the lists); ties at T are pruned in position order (lists are in position
 *    order, threads in range order), and a last parallel step writes the candidates' mask bytes.
 * A miss (k - below outside [0, candidates]), a full list or a non-finite value returns
 * MF_BRK_MISS: the radix passes then redo everything (and report non-finite scores).
 *
 * Memory: per thread, the samples (4 bytes per rb positions x RUN) and the candidate list (8 bytes
 * each; about 0.5 % of the positions for a BLIP-base global scope, capacity 1/64), so a global scope
 * touches about 3 % of its weights' bytes beyond the masks.
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
#include "prune/bracket.h"

#define CH MF_SCORE_BLOCK
#define RUN 8             /* elements per sample run */
#define SMALL_SCOPE 8192  /* at most this many positions: no sample, all are candidates */
#define MID_SCOPE (1 << 24)

static int brk_mode;
static atomic_llong n_done, n_missed;

void mf_brk_counts(int64_t *done, int64_t *missed)
{
    *done = atomic_load(&n_done);
    *missed = atomic_load(&n_missed);
}

void mf_brk_set_mode(int mode) { brk_mode = mode; }

int mf_brk_mode(void) { return brk_mode; }

enum kind { K_FLOAT, K_L2, K_MFLOW, K_RAND };

struct brk {
    const struct mf_brk_scope *sc;
    int64_t total, k;
    uint8_t *const *mask;
    struct mf_brk_scratch *scr;
    enum kind kind;
    bool ab;             /* K_FLOAT, K_L2: proxies of |x| */
    int64_t rb;          /* sample: one run per rb positions (K_RAND: run_rand per generator block) */
    int64_t run_rand;
    uint32_t key_lo, key_hi;
    int32_t *plo, *phi;  /* (n_arrays) the bracket in proxy space: below plo pruned, above phi kept */
    uint32_t T;
    bool none;           /* no candidate is pruned */
};

static inline uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline bool nonfinite_bits(uint32_t u) { return mf_sel_nonfinite(u2f(u)); }

/* Signed proxy of a float's bits: its key (mf_sel_key) xor the sign bit, as int32, so that signed
 * comparisons order it; for non-negative floats simply their bits. */
static inline int32_t fproxy(uint32_t bits, bool ab) { return (int32_t)(mf_sel_key(u2f(bits), ab) ^ 0x80000000u); }

static inline uint32_t fkey(float f) { return mf_sel_key(f, false); }

/* l2 score key from the |w| bits p (mf_score_gen_fill's arithmetic). */
static inline uint32_t l2_key(double nrm, int32_t p)
{
    float s = nrm == 0 ? 0.0f : (float)(fabs((double)u2f((uint32_t)p)) / nrm);
    return f2u(s) ^ 0x80000000u; /* s >= +0 */
}

/* Exact key of proxy p in array a. */
static inline uint32_t proxy_key(const struct brk *B, size_t a, int32_t p)
{
    switch (B->kind) {
    case K_L2:
        return l2_key(B->sc->g->norm[B->sc->tix[a]], p);
    case K_RAND:
        return fkey(mf_score_rand_value((uint32_t)p));
    default:
        return (uint32_t)p ^ 0x80000000u;
    }
}

static const float *array_src(const struct brk *B, size_t a)
{
    return B->sc->x ? B->sc->x[a] : B->sc->g->set->t[B->sc->tix[a]].w;
}

/* Exact key of element j of array a (not K_RAND); false when the score is not finite. */
static bool elem_key(const struct brk *B, size_t a, int64_t j, uint32_t *key)
{
    const struct mf_brk_scope *sc = B->sc;
    switch (B->kind) {
    case K_MFLOW: {
        float s = mf_score_gen_one(sc->g, sc->tix[a], j);
        if (nonfinite_bits(f2u(s)))
            return false;
        *key = fkey(s);
        return true;
    }
    case K_L2: {
        uint32_t u = f2u(array_src(B, a)[j]);
        if (nonfinite_bits(u))
            return false;
        *key = l2_key(sc->g->norm[sc->tix[a]], (int32_t)(u & 0x7fffffffu));
        return true;
    }
    default: {
        uint32_t u = f2u(array_src(B, a)[j]);
        if (nonfinite_bits(u))
            return false;
        *key = (uint32_t)fproxy(u, B->ab) ^ 0x80000000u;
        return true;
    }
    }
}

/* ---- 1. sample ------------------------------------------------------------------------------ */

static inline int64_t run_offset(size_t a, int64_t r, int64_t span)
{
    uint64_t h = (uint64_t)r * 0x9e3779b97f4a7c15ull + (uint64_t)a * 0xd1b54a32d192ed03ull;
    h ^= h >> 29;
    return (int64_t)((h * 0xbf58476d1ce4e5b9ull) >> 33) % span;
}

static void sample_kernel(void *arg, int ith, int nth)
{
    struct brk *B = arg;
    const struct mf_brk_scope *sc = B->sc;
    struct mf_brk_scratch *s = &B->scr[ith];
    int64_t b, e;
    mf_split_range(B->total, ith, nth, &b, &e);
    s->n_samp = 0;
    if (b >= e)
        return;
    for (size_t a = mf_scope_array_of(sc->off, sc->n_arrays, b); a < sc->n_arrays && sc->off[a] < e; a++) {
        int64_t len = sc->off[a + 1] - sc->off[a];
        int64_t j0 = MF_MAX(b, sc->off[a]) - sc->off[a], j1 = MF_MIN(e, sc->off[a + 1]) - sc->off[a];
        if (j0 >= j1)
            continue;
        if (B->kind == K_RAND) {
            for (int64_t jb = (j0 + CH - 1) / CH * CH; jb < j1; jb += CH) {
                int64_t n = MF_MIN(B->run_rand, len - jb);
                struct mf_rng r;
                mf_score_rand_seed(sc->g, sc->tix[a], jb / CH, &r);
                for (int64_t i = 0; i < n; i += 2) {
                    uint64_t u = mf_rng_u64(&r);
                    s->samp[s->n_samp++] = fkey(mf_score_rand_value(MF_RAND_HI(u)));
                    if (i + 1 < n)
                        s->samp[s->n_samp++] = fkey(mf_score_rand_value(MF_RAND_LO(u)));
                }
            }
            continue;
        }
        const int64_t rb = B->rb;
        for (int64_t r = j0 / rb; r <= (j1 - 1) / rb; r++) {
            int64_t st = r * rb + run_offset(a, r, rb - RUN + 1);
            if (st < j0 || st >= j1)
                continue; /* another thread's run */
            int64_t n = MF_MIN(RUN, len - st);
            for (int64_t i = 0; i < n; i++) {
                uint32_t key;
                if (elem_key(B, a, st + i, &key))
                    s->samp[s->n_samp++] = key;
            }
        }
    }
}

/* The r[q]-th smallest (1-based), q < nr <= 2, of the keys v[g][i * stride], i < len[g], over nseg
 * segments: radix select, 8 bits per scan, both ranks in the same four scans; key[q] gets the key
 * and below[q] how many keys are smaller. */
static void kth_keys(const uint32_t *const *v, const int64_t *len, int nseg, int stride, int nr, const int64_t *r,
                     uint32_t *key, int64_t *below)
{
    uint32_t prefix[2] = {0, 0}, pmask = 0;
    int64_t need[2], under[2] = {0, 0};
    for (int q = 0; q < nr; q++)
        need[q] = r[q];
    for (int shift = 24; shift >= 0; shift -= 8) {
        int64_t h[2][256] = {{0}};
        for (int g = 0; g < nseg; g++) {
            const uint32_t *x = v[g];
            for (int64_t i = 0; i < len[g]; i++) {
                uint32_t y = x[i * stride], d = (y >> shift) & 0xffu, pre = y & pmask;
                h[0][d] += pre == prefix[0];
                if (nr > 1)
                    h[1][d] += pre == prefix[1];
            }
        }
        for (int q = 0; q < nr; q++) {
            int d = 0;
            int64_t cum = 0;
            for (; d < 255 && cum + h[q][d] < need[q]; d++)
                cum += h[q][d];
            under[q] += cum;
            need[q] -= cum;
            prefix[q] |= (uint32_t)d << shift;
        }
        pmask |= 0xffu << shift;
    }
    for (int q = 0; q < nr; q++) {
        key[q] = prefix[q];
        below[q] = under[q];
    }
}

/* ---- 2. the pass ---------------------------------------------------------------------------- */

static inline bool cand_push(struct mf_brk_scratch *s, uint32_t pos, int32_t p)
{
    if (s->n_cand == s->cand_cap)
        return false;
    s->cand[s->n_cand++] = (struct mf_brk_cand){.pos = pos, .key = (uint32_t)p};
    return true;
}

/* Float source x[0..n) (hi >= lo - 1): proxies (of |x| when ab) below lo are counted, m (may be NULL) gets
 * proxy > hi, candidates (lo <= proxy <= hi) go to s with their proxy as key. Returns the count
 * below, -1 for a non-finite value, -2 for a full list. */
static int64_t classify_f(const float *x, int64_t n, bool ab, int32_t lo, int32_t hi, uint8_t *m,
                          struct mf_brk_scratch *s, uint32_t pos0)
{
    int64_t below = 0, i = 0;
    uint32_t bad = 0;
#ifdef __AVX2__
    const __m256i vlo = _mm256_set1_epi32(lo), vhi = _mm256_set1_epi32(hi);
    const __m256i absm = _mm256_set1_epi32(0x7fffffff), fin = _mm256_set1_epi32(0x7f7fffff);
    const __m256i negz = _mm256_set1_epi32((int)0x80000000u), ones = _mm256_set1_epi32(-1);
    const __m256i one8 = _mm256_set1_epi8(1), perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i vbad = _mm256_setzero_si256(), cnt = _mm256_setzero_si256();
    for (; i + 32 <= n; i += 32) {
        __m256i gt[4];
        uint32_t inbits = 0;
        for (int q = 0; q < 4; q++) {
            __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(x + i + 8 * q));
            __m256i a = _mm256_and_si256(b, absm), p = a;
            vbad = _mm256_or_si256(vbad, _mm256_cmpgt_epi32(a, fin));
            if (!ab) {
                p = _mm256_xor_si256(b, _mm256_and_si256(_mm256_srai_epi32(b, 31), absm));
                p = _mm256_andnot_si256(_mm256_cmpeq_epi32(b, negz), p);
            }
            __m256i lt = _mm256_cmpgt_epi32(vlo, p);
            gt[q] = _mm256_cmpgt_epi32(p, vhi);
            cnt = _mm256_sub_epi32(cnt, lt);
            __m256i in = _mm256_xor_si256(_mm256_or_si256(lt, gt[q]), ones);
            inbits |= (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(in)) << (8 * q);
        }
        if (m) {
            __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(gt[0], gt[1]), _mm256_packs_epi32(gt[2], gt[3]));
            w = _mm256_and_si256(_mm256_permutevar8x32_epi32(w, perm), one8);
            _mm256_storeu_si256((__m256i *)(void *)(m + i), w);
        }
        while (inbits) {
            int q = __builtin_ctz(inbits);
            inbits &= inbits - 1;
            if (!cand_push(s, pos0 + (uint32_t)(i + q), fproxy(f2u(x[i + q]), ab)))
                return -2;
        }
    }
    if (!_mm256_testz_si256(vbad, vbad))
        bad = 1;
    int32_t lanes[8];
    _mm256_storeu_si256((__m256i *)(void *)lanes, cnt);
    for (int q = 0; q < 8; q++)
        below += lanes[q];
#endif
    for (; i < n; i++) {
        uint32_t u = f2u(x[i]);
        int32_t p = fproxy(u, ab);
        bad |= nonfinite_bits(u);
        below += p < lo;
        if (m)
            m[i] = p > hi;
        if ((uint64_t)((int64_t)p - lo) < (uint64_t)((int64_t)hi - lo + 1) && !cand_push(s, pos0 + (uint32_t)i, p))
            return -2;
    }
    return bad ? -1 : below;
}

/* rand on elements [j0, j0 + n) of array a (inside one generator block): proxies are the 24-bit
 * uniforms; as classify_f, candidates' keys are their proxies for now. */
static int64_t classify_rand(const struct brk *B, size_t a, int64_t j0, int64_t n, uint8_t *m,
                             struct mf_brk_scratch *s, uint32_t pos0)
{
    const int32_t lo = B->plo[0], hi = B->phi[0]; /* hi >= lo - 1 */
    const uint32_t span = (uint32_t)(hi - lo + 1);  /* p in [lo, hi] <=> (uint32)(p - lo) < span */
    int64_t jb = j0 / CH * CH, e = j0 + n, below = 0, j = jb;
    struct mf_rng r;
    mf_score_rand_seed(B->sc->g, B->sc->tix[a], j0 / CH, &r);
    for (; j + 1 < j0; j += 2)
        (void)mf_rng_u64(&r);
    if (j < j0) { /* j0 odd: its element is the low half of this draw */
        int32_t p = (int32_t)MF_RAND_LO(mf_rng_u64(&r));
        below += p < lo;
        if (m)
            m[0] = p > hi;
        if ((uint32_t)(p - lo) < span && !cand_push(s, pos0, p))
            return -2;
        j += 2;
    }
    /* from here j - j0 is even: branch-free except for the rare candidates */
    for (; j < e; j += 2) {
        uint64_t u = mf_rng_u64(&r);
        int32_t p0 = (int32_t)MF_RAND_HI(u), p1 = (int32_t)MF_RAND_LO(u);
        uint32_t o = (uint32_t)(j - j0);
        bool two = j + 1 < e;
        below += (p0 < lo) + (two & (p1 < lo));
        if (m) {
            m[o] = p0 > hi;
            if (two)
                m[o + 1] = p1 > hi;
        }
        if ((uint32_t)(p0 - lo) < span && !cand_push(s, pos0 + o, p0))
            return -2;
        if (two && (uint32_t)(p1 - lo) < span && !cand_push(s, pos0 + o + 1, p1))
            return -2;
    }
    return below;
}

static void pass_kernel(void *arg, int ith, int nth)
{
    struct brk *B = arg;
    const struct mf_brk_scope *sc = B->sc;
    struct mf_brk_scratch *s = &B->scr[ith];
    int64_t b, e;
    mf_split_range(B->total, ith, nth, &b, &e);
    s->first = b;
    s->n_cand = 0;
    s->below = 0;
    s->fail = 0;
    if (!B->mask)
        memset(s->cnt, 0, sc->n_arrays * sizeof *s->cnt);
    if (b >= e)
        return;
    for (size_t a = mf_scope_array_of(sc->off, sc->n_arrays, b); a < sc->n_arrays && sc->off[a] < e; a++) {
        int64_t j0 = MF_MAX(b, sc->off[a]) - sc->off[a], j1 = MF_MIN(e, sc->off[a + 1]) - sc->off[a];
        for (int64_t j = j0; j < j1;) {
            int64_t je = MF_MIN(j1, (j / CH + 1) * CH), n = je - j, c0 = s->n_cand, r;
            uint32_t pos0 = (uint32_t)(sc->off[a] + j - b);
            uint8_t *m = B->mask ? B->mask[a] + j : NULL;
            switch (B->kind) {
            case K_RAND:
                r = classify_rand(B, a, j, n, m, s, pos0);
                break;
            case K_MFLOW:
                mf_score_gen_fill(sc->g, sc->tix[a], j, n, s->buf, NULL, 0);
                r = classify_f(s->buf, n, false, B->plo[a], B->phi[a], m, s, pos0);
                break;
            default:
                r = classify_f(array_src(B, a) + j, n, B->ab, B->plo[a], B->phi[a], m, s, pos0);
                break;
            }
            if (r < 0) {
                s->fail = 1;
                return;
            }
            s->below += r;
            if (!B->mask)
                s->cnt[a] += r;
            for (int64_t c = c0; c < s->n_cand; c++)
                s->cand[c].key = proxy_key(B, a, (int32_t)s->cand[c].key);
            j = je;
        }
    }
}

/* ---- 3. candidates -------------------------------------------------------------------------- */

static void fix_kernel(void *arg, int ith, int nth)
{
    (void)nth;
    struct brk *B = arg;
    const struct mf_brk_scope *sc = B->sc;
    struct mf_brk_scratch *s = &B->scr[ith];
    if (s->n_cand == 0)
        return;
    int64_t q = s->quota;
    const uint32_t T = B->T;
    size_t a = mf_scope_array_of(sc->off, sc->n_arrays, s->first + s->cand[0].pos);
    for (int64_t i = 0; i < s->n_cand; i++) {
        int64_t gp = s->first + s->cand[i].pos;
        while (sc->off[a + 1] <= gp)
            a++;
        bool pr = !B->none && !mf_sel_keep(s->cand[i].key, T, &q);
        if (B->mask)
            B->mask[a][gp - sc->off[a]] = !pr;
        else
            s->cnt[a] += pr;
    }
}

/* smallest proxy p in [lo, hi] with proxy_key(p) >= key (hi + 1 when none) */
static int64_t lower_bound(const struct brk *B, size_t a, int64_t lo, int64_t hi, uint32_t key)
{
    int64_t L = lo, R = hi + 1;
    while (L < R) {
        int64_t mid = L + (R - L) / 2;
        if (proxy_key(B, a, (int32_t)mid) >= key)
            R = mid;
        else
            L = mid + 1;
    }
    return L;
}

/* The bracket in proxy space for array a (one entry for K_RAND). */
static void proxy_bracket(struct brk *B, size_t a)
{
    if (B->kind == K_FLOAT || B->kind == K_MFLOW) {
        B->plo[a] = (int32_t)(B->key_lo ^ 0x80000000u);
        B->phi[a] = (int32_t)(B->key_hi ^ 0x80000000u);
        return;
    }
    int64_t top = B->kind == K_RAND ? 0xffffff : 0x7f7fffff; /* proxies: 24-bit uniforms, finite |w| bits */
    B->plo[a] = (int32_t)lower_bound(B, a, 0, top, B->key_lo);
    B->phi[a] = B->key_hi == 0xffffffffu ? (int32_t)top : (int32_t)(lower_bound(B, a, 0, top, B->key_hi + 1) - 1);
}

static bool grow(void **p, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    void *q = mf_realloc(*p, (size_t)need * elem);
    if (!q)
        return false;
    *p = q;
    *cap = need;
    return true;
}

/* Per-thread buffers for a selection over [b, e) of total positions. */
static bool reserve(struct brk *B, struct mf_brk_scratch *s, int64_t b, int64_t e)
{
    const struct mf_brk_scope *sc = B->sc;
    int64_t range = e - b, nsamp = 0, ncand;
    if (B->total <= SMALL_SCOPE)
        ncand = range;
    else if (B->total <= MID_SCOPE)
        ncand = range / 8 + 4096;
    else
        ncand = range / 64 + 4096;
    ncand = MF_MIN(ncand, range);
    if (B->total > SMALL_SCOPE) {
        int64_t per = B->kind == K_RAND ? B->run_rand : RUN, step = B->kind == K_RAND ? CH : B->rb;
        nsamp = (range / step + 2 * (int64_t)sc->n_arrays + 2) * per;
    }
    void *c = s->cand, *sp = s->samp, *cn = s->cnt;
    bool ok = grow(&c, &s->cand_cap, MF_MAX(ncand, 1), sizeof *s->cand);
    s->cand = c;
    ok = ok && grow(&sp, &s->samp_cap, MF_MAX(nsamp, 1), sizeof *s->samp);
    s->samp = sp;
    ok = ok && grow(&cn, &s->cnt_cap, (int64_t)MF_MAX(sc->n_arrays, 1), sizeof *s->cnt);
    s->cnt = cn;
    if (ok && B->kind == K_MFLOW && !s->buf) {
        s->buf = mf_malloc(CH * sizeof *s->buf);
        ok = s->buf != NULL;
    }
    return ok;
}

static void choose_bracket(struct brk *B, int nth)
{
    B->key_lo = 0;
    B->key_hi = 0xffffffffu;
    if (B->total <= SMALL_SCOPE)
        return;
    const uint32_t *seg[64];
    int64_t len[64], S = 0;
    MF_ASSERT(nth <= 64);
    for (int t = 0; t < nth; t++) {
        seg[t] = B->scr[t].samp;
        len[t] = B->scr[t].n_samp;
        S += len[t];
    }
    if (S == 0)
        return;
    double p = (double)B->k / (double)B->total, r0 = p * (double)S;
    /* a miss costs a whole scope's radix passes: wider for the big global scopes */
    double sd = sqrt((double)S * p * (1 - p));
    double margin = brk_mode == 2 ? 0.0 : B->total > MID_SCOPE ? 5.0 * sd + 16 : 4.0 * sd + 8;
    int64_t want_lo = (int64_t)floor(r0 - margin), want_hi = (int64_t)ceil(r0 + margin), below[2];
    if (want_lo < 1 && want_hi > S)
        return; /* the sample cannot narrow anything */
    /* ranks outside the sample leave that side open */
    int64_t r[2] = {MF_MIN(MF_MAX(want_lo, 1), S), MF_MAX(MF_MIN(want_hi, S), 1)};
    uint32_t key[2];
    kth_keys(seg, len, nth, 1, 2, r, key, below);
    if (want_lo >= 1)
        B->key_lo = key[0];
    if (want_hi <= S)
        B->key_hi = key[1];
}

enum mf_brk_result mf_brk_select(struct mf_pool *pool, const struct mf_brk_scope *sc, int64_t k,
                                 uint8_t *const *mask, int64_t *pruned, struct mf_brk_scratch *scr)
{
    int nth = mf_pool_size(pool);
    struct brk B = {.sc = sc, .total = sc->off[sc->n_arrays], .k = k, .mask = mask, .scr = scr, .ab = sc->use_abs};
    if (brk_mode == 1 || k <= 0 || B.total == 0 || nth > 64) /* > 64 threads: per-thread arrays below */
        return MF_BRK_MISS;
    if (!sc->x) {
        switch (sc->g->kind) {
        case MF_SCORE_L2:
            B.kind = K_L2;
            B.ab = true; /* the proxy is |w| */
            for (size_t a = 0; a < sc->n_arrays; a++)
                if (!isfinite(sc->g->norm[sc->tix[a]]))
                    return MF_BRK_MISS; /* non-finite scores: the radix passes name them */
            break;
        case MF_SCORE_RAND:
            B.kind = K_RAND;
            break;
        case MF_SCORE_MFLOW:
            B.kind = K_MFLOW;
            break;
        default:
            B.kind = K_FLOAT;
            B.ab = true; /* |w| */
            break;
        }
    }
    B.rb = B.total <= MID_SCOPE ? 256 : 2048;
    B.run_rand = RUN * CH / B.rb;
    for (int t = 0; t < nth; t++) {
        int64_t b, e;
        mf_split_range(B.total, t, nth, &b, &e);
        if (e - b > (int64_t)UINT32_MAX)
            return MF_BRK_MISS; /* positions are 32-bit offsets in a thread's range */
        if (!reserve(&B, &scr[t], b, e))
            return MF_BRK_NOMEM;
    }
    size_t nb = B.kind == K_RAND ? 1 : MF_MAX(sc->n_arrays, 1);
    B.plo = mf_malloc(nb * sizeof *B.plo);
    B.phi = mf_malloc(nb * sizeof *B.phi);
    enum mf_brk_result res = MF_BRK_MISS;
    if (!B.plo || !B.phi) {
        res = MF_BRK_NOMEM;
        goto done;
    }
    if (B.total > SMALL_SCOPE)
        mf_pool_run(pool, sample_kernel, &B);
    choose_bracket(&B, nth);
    for (size_t a = 0; a < (B.kind == K_RAND ? 1 : sc->n_arrays); a++)
        proxy_bracket(&B, a);
    mf_pool_run(pool, pass_kernel, &B);
    int64_t below = 0, ncand = 0;
    for (int t = 0; t < nth; t++) {
        if (scr[t].fail)
            goto done;
        below += scr[t].below;
        ncand += scr[t].n_cand;
    }
    int64_t kk = k - below;
    if (kk < 0 || kk > ncand)
        goto done;
    B.none = kk == 0;
    if (!B.none) {
        const uint32_t *seg[64];
        int64_t len[64], lt;
        for (int t = 0; t < nth; t++) {
            seg[t] = &scr[t].cand[0].key;
            len[t] = scr[t].n_cand;
        }
        kth_keys(seg, len, nth, 2, 1, &kk, &B.T, &lt);
        int64_t left = kk - lt;
        for (int t = 0; t < nth; t++) {
            int64_t eq = 0;
            for (int64_t i = 0; i < scr[t].n_cand; i++)
                eq += scr[t].cand[i].key == B.T;
            scr[t].quota = MF_MIN(left, eq);
            left -= scr[t].quota;
        }
        MF_ASSERT(left == 0);
    }
    mf_pool_run(pool, fix_kernel, &B);
    if (!mask) {
        for (size_t a = 0; a < sc->n_arrays; a++) {
            int64_t c = 0;
            for (int t = 0; t < nth; t++)
                c += scr[t].cnt[a];
            pruned[a] = c;
        }
    }
    res = MF_BRK_DONE;
done:
    atomic_fetch_add(res == MF_BRK_DONE ? &n_done : &n_missed, 1);
    mf_free(B.phi);
    mf_free(B.plo);
    return res;
}

void mf_brk_scratch_free(struct mf_brk_scratch *s)
{
    mf_free(s->cand);
    mf_free(s->samp);
    mf_free(s->cnt);
    mf_free(s->buf);
    memset(s, 0, sizeof *s);
}
