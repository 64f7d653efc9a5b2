/*
 * nn/attention.c: the multi-head attention core, softmax(scale Q K^T + mask) V, and its backward.
 *
 * Work split: forward tasks are (batch, head, block of QB query rows), backward tasks are
 * (batch, head); each thread takes a contiguous range of tasks. A task writes a disjoint part of
 * every output and its arithmetic does not depend on which thread runs it, so results are the
 * same bits for any thread count. The two matrix products of a task run on a register-blocked
 * AVX2 micro-kernel (6 x 16 outputs in 12 ymm accumulators, the BLIS Haswell shape) on the
 * calling worker, so OpenBLAS is never called from pool threads. K^T (and V^T in backward) is
 * packed once per (batch, head) into per-thread scratch so that the B operand has unit stride.
 *
 * Masks: masked keys get probability exactly 0 (identical to adding -10000, spec §1.2). With
 * causal masking query i sees keys 0..i; the P V product for a block stops at the last key any
 * row of the block can see.
 *
 * Deliberately not: flash-style online softmax (T <= 577 fits in cache; probabilities are kept
 * for backward anyway), dropout, relative position bias.
 *
 * Reference: spec models.md §1.2; the backward is the standard softmax Jacobian
 * dS = P * (dP - rowsum(P * dP)) (llm.c train_gpt2.c attention_backward).
 */
#include "nn/nn.h"

#include <math.h>
#include <string.h>

#include "core/common.h"
#include "nn/vmath.h"

#define QB 48 /* query rows per forward task (multiple of the micro-kernel's 6 rows) */

/* ---------------------------------------------------------------------------------------------
 * Small GEMM: C[M,N] (ldc) = alpha * A[M,K] B[K,N]  (+ C when acc). A(i,k) = a[i*rsa + k*csa]
 * (any strides, so A^T is free); B row k at b + k*ldb with unit column stride.
 * Every C element sums k = 0..K-1 in order with FMA: the result does not depend on blocking.
 */
#ifdef MF_NN_AVX2
#define MR 6
#define NR 16

/* 6 x 16 block of C. Rows >= mr read row 0 of A again (wasted work only on the last row block)
 * and are not stored; written out by hand so that the 12 accumulators live in registers whatever
 * the compiler's unrolling heuristics. */
static inline __attribute__((always_inline)) void ukernel(const bool full, int mr, int64_t nr,
                                                          int64_t K, float alpha, const float *a,
                                                          int64_t rsa, int64_t csa,
                                                          const float *b, int64_t ldb, float *c,
                                                          int64_t ldc, bool acc)
{
    __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
    if (!full) {
        m0 = mf_tail_mask8(MF_MIN(nr, 8));
        m1 = mf_tail_mask8(MF_MAX(nr - 8, 0));
    }
    const float *a0 = a, *a1 = mr > 1 ? a + rsa : a, *a2 = mr > 2 ? a + 2 * rsa : a;
    const float *a3 = mr > 3 ? a + 3 * rsa : a, *a4 = mr > 4 ? a + 4 * rsa : a;
    const float *a5 = mr > 5 ? a + 5 * rsa : a;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t k = 0; k < K; k++) {
        const float *bk = b + k * ldb;
        __m256 b0, b1, av;
        if (full) {
            b0 = _mm256_loadu_ps(bk);
            b1 = _mm256_loadu_ps(bk + 8);
        } else {
            b0 = _mm256_maskload_ps(bk, m0);
            b1 = _mm256_maskload_ps(bk + 8, m1);
        }
        const int64_t o = k * csa;
#define ROW(R)                                                                                  \
    av = _mm256_broadcast_ss(a##R + o);                                                         \
    c##R##0 = _mm256_fmadd_ps(av, b0, c##R##0);                                                 \
    c##R##1 = _mm256_fmadd_ps(av, b1, c##R##1);
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
#undef ROW
    }
    const __m256 va = _mm256_set1_ps(alpha);
    __m256 acc0[MR] = {c00, c10, c20, c30, c40, c50}, acc1[MR] = {c01, c11, c21, c31, c41, c51};
    for (int r = 0; r < mr; r++) {
        float *cr = c + r * ldc;
        __m256 r0 = _mm256_mul_ps(acc0[r], va), r1 = _mm256_mul_ps(acc1[r], va);
        if (full) {
            if (acc) {
                r0 = _mm256_add_ps(_mm256_loadu_ps(cr), r0);
                r1 = _mm256_add_ps(_mm256_loadu_ps(cr + 8), r1);
            }
            _mm256_storeu_ps(cr, r0);
            _mm256_storeu_ps(cr + 8, r1);
        } else {
            if (acc) {
                r0 = _mm256_add_ps(_mm256_maskload_ps(cr, m0), r0);
                r1 = _mm256_add_ps(_mm256_maskload_ps(cr + 8, m1), r1);
            }
            _mm256_maskstore_ps(cr, m0, r0);
            _mm256_maskstore_ps(cr + 8, m1, r1);
        }
    }
}

static inline void block(int64_t i, int64_t j, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *a, int64_t rsa, int64_t csa, const float *b, int64_t ldb,
                         float *c, int64_t ldc, bool acc)
{
    const int mr = (int)MF_MIN(MR, M - i);
    const int64_t nr = MF_MIN(NR, N - j);
    const float *ai = a + i * rsa, *bj = b + j;
    float *cij = c + i * ldc + j;
    if (nr == NR)
        ukernel(true, mr, nr, K, alpha, ai, rsa, csa, bj, ldb, cij, ldc, acc);
    else
        ukernel(false, mr, nr, K, alpha, ai, rsa, csa, bj, ldb, cij, ldc, acc);
}

static void gemm_small(int64_t M, int64_t N, int64_t K, float alpha, const float *a, int64_t rsa,
                       int64_t csa, const float *b, int64_t ldb, float *c, int64_t ldc, bool acc)
{
    if (K * NR * (int64_t)sizeof(float) <= 16384) {
        /* short K: a B panel (K x 16) stays in L1 while all row blocks of A stream past it */
        for (int64_t j = 0; j < N; j += NR)
            for (int64_t i = 0; i < M; i += MR)
                block(i, j, M, N, K, alpha, a, rsa, csa, b, ldb, c, ldc, acc);
    } else {
        /* long K: an A panel (6 x K) stays in L1 while B streams from L2 */
        for (int64_t i = 0; i < M; i += MR)
            for (int64_t j = 0; j < N; j += NR)
                block(i, j, M, N, K, alpha, a, rsa, csa, b, ldb, c, ldc, acc);
    }
}
#else
static void gemm_small(int64_t M, int64_t N, int64_t K, float alpha, const float *a, int64_t rsa,
                       int64_t csa, const float *b, int64_t ldb, float *c, int64_t ldc, bool acc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++)
                s = fmaf(a[i * rsa + k * csa], b[k * ldb + j], s);
            c[i * ldc + j] = acc ? c[i * ldc + j] + alpha * s : alpha * s;
        }
}
#endif

/* ---------------------------------------------------------------------------------------------
 * Scratch layout per thread (floats, each part 16-aligned): T[dh, Tk] (packed K^T or V^T),
 * S[max(Tq, QB), Tk] (scores / dS), kmask[Tk] (1.0 real key, 0.0 padding).
 */
static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

static size_t per_thread_floats(int64_t Tq, int64_t Tk, int64_t dh)
{
    size_t tk = (size_t)Tk, rows = (size_t)MF_MAX(Tq, (int64_t)QB);
    return round16((size_t)dh * tk) + round16(rows * tk) + round16(tk);
}

size_t mf_attention_scratch_size(int n_threads, int64_t Tq, int64_t Tk, int64_t dh)
{
    if (n_threads < 1)
        n_threads = 1;
    return (size_t)n_threads * per_thread_floats(Tq, Tk, dh) * sizeof(float) + 64;
}

static float *thread_scratch(void *scratch, int ith, int64_t Tq, int64_t Tk, int64_t dh)
{
    uintptr_t p = ((uintptr_t)scratch + 63) & ~(uintptr_t)63;
    return (float *)p + (size_t)ith * per_thread_floats(Tq, Tk, dh);
}

/* dst[d, j] = src[j*ld + d] for j < T, d < dh (dst row stride T) */
static void pack_transpose(float *dst, const float *src, int64_t ld, int64_t T, int64_t dh)
{
    for (int64_t j = 0; j < T; j++) {
        const float *s = src + j * ld;
        for (int64_t d = 0; d < dh; d++)
            dst[d * T + j] = s[d];
    }
}

/* Softmax of one score row s[0..n) in place over the keys that are allowed: j < jmax and, when
 * km != NULL, km[j] != 0. Entries not allowed become 0; the tail [n, ...) is not touched. When no
 * key is allowed every key of the row is used (what an additive -10000 on all of them gives).
 * The row is left UNNORMALISED (exp(s - max)); the return value is 1 / sum, which the forward
 * applies to the 64-wide context row after the P V product instead of to the Tk-wide row. */
static float softmax_row(float *s, int64_t n, int64_t jmax, const float *km)
{
    int64_t any = 0;
    if (km) {
        for (int64_t j = 0; j < jmax && !any; j++)
            any = km[j] != 0.0f;
    } else {
        any = jmax > 0;
    }
    if (!any) {
        jmax = n;
        km = NULL;
    }
#ifdef MF_NN_AVX2
    /* the last partial vector goes through masked loads/stores, so every key of every row takes
     * the same vector path */
    const __m256 ninf = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps();
    const int64_t jv = jmax & ~(int64_t)7, rem = jmax - jv;
    const __m256i tm = mf_tail_mask8(rem);
    const __m256 tmf = _mm256_castsi256_ps(tm);
    __m256 vmax = ninf;
    for (int64_t j = 0; j < jmax; j += 8) {
        const bool tail = j == jv;
        __m256 v = tail ? _mm256_maskload_ps(s + j, tm) : _mm256_loadu_ps(s + j);
        __m256 ok = tail ? tmf : _mm256_castsi256_ps(_mm256_set1_epi32(-1));
        if (km) {
            __m256 kv = tail ? _mm256_maskload_ps(km + j, tm) : _mm256_loadu_ps(km + j);
            ok = _mm256_and_ps(ok, _mm256_cmp_ps(kv, zero, _CMP_NEQ_OQ));
        }
        vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(ninf, v, ok));
    }
    const __m256 vm = _mm256_set1_ps(mf_hmax8(vmax));
    __m256 vs = zero;
    for (int64_t j = 0; j < jmax; j += 8) {
        const bool tail = j == jv;
        __m256 v = tail ? _mm256_maskload_ps(s + j, tm) : _mm256_loadu_ps(s + j);
        __m256 e = mf_exp8(_mm256_sub_ps(v, vm));
        if (km)
            e = _mm256_mul_ps(e, tail ? _mm256_maskload_ps(km + j, tm) : _mm256_loadu_ps(km + j));
        if (tail) {
            e = _mm256_and_ps(e, tmf);
            _mm256_maskstore_ps(s + j, tm, e);
        } else {
            _mm256_storeu_ps(s + j, e);
        }
        vs = _mm256_add_ps(vs, e);
    }
    const float inv = 1.0f / mf_hsum8(vs);
#else
    float m = -INFINITY, sum = 0.0f;
    for (int64_t j = 0; j < jmax; j++)
        if ((!km || km[j] != 0.0f) && s[j] > m)
            m = s[j];
    for (int64_t j = 0; j < jmax; j++) {
        float e = (!km || km[j] != 0.0f) ? mf_expf_fast(s[j] - m) : 0.0f;
        s[j] = e;
        sum += e;
    }
    const float inv = 1.0f / sum;
#endif
    for (int64_t j = jmax; j < n; j++)
        s[j] = 0.0f;
    return inv;
}

/* y[0..n) *= c */
static void scale_row(float *y, int64_t n, float c)
{
    int64_t j = 0;
#ifdef MF_NN_AVX2
    const __m256 vc = _mm256_set1_ps(c);
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(y + j, _mm256_mul_ps(_mm256_loadu_ps(y + j), vc));
#endif
    for (; j < n; j++)
        y[j] *= c;
}

struct attn_arg {
    float *out, *att;                 /* (B, Tq, H*dh), (B, H, Tq, Tk) or NULL */
    float *dq, *dk, *dv;              /* backward, strides of q, k, v */
    const float *dout;                /* (B, Tq, H*dh) */
    const float *q, *k, *v;
    int64_t ldq, ldk, ldv;
    const int32_t *key_mask;          /* (B, Tk) or NULL */
    bool causal;
    int64_t B, Tq, Tk, H, dh;
    void *scratch;
};

static void fill_kmask(float *km, const int32_t *mask, int64_t Tk)
{
    for (int64_t j = 0; j < Tk; j++)
        km[j] = mask[j] ? 1.0f : 0.0f;
}

static void attn_fwd_kernel(void *p, int ith, int nth)
{
    struct attn_arg *a = p;
    const int64_t Tq = a->Tq, Tk = a->Tk, H = a->H, dh = a->dh, HD = H * dh;
    const int64_t nqb = (Tq + QB - 1) / QB;
    const float scale = 1.0f / sqrtf((float)dh);
    float *kt = thread_scratch(a->scratch, ith, Tq, Tk, dh);
    float *sbuf = kt + round16((size_t)dh * Tk);
    float *km = sbuf + round16((size_t)MF_MAX(Tq, (int64_t)QB) * Tk);
    int64_t task0, task1, packed = -1, kmask_b = -1;
    mf_split_range(a->B * H * nqb, ith, nth, &task0, &task1);
    for (int64_t task = task0; task < task1; task++) {
        const int64_t bh = task / nqb, b = bh / H, h = bh % H;
        const int64_t i0 = (task % nqb) * QB, mq = MF_MIN(QB, Tq - i0);
        if (packed != bh) {
            pack_transpose(kt, a->k + b * Tk * a->ldk + h * dh, a->ldk, Tk, dh);
            packed = bh;
        }
        if (a->key_mask && kmask_b != b) {
            fill_kmask(km, a->key_mask + b * Tk, Tk);
            kmask_b = b;
        }
        /* causal: no row of this block sees keys past i0 + mq - 1 (unless padding hides all of a
         * row's keys: then the fallback softmax needs every score, so keep the full width) */
        const int64_t kend = a->causal && !a->key_mask ? MF_MIN(Tk, i0 + mq) : Tk;
        float *s = a->att ? a->att + (bh * Tq + i0) * Tk : sbuf; /* (mq, Tk) */
        gemm_small(mq, kend, dh, scale, a->q + (b * Tq + i0) * a->ldq + h * dh, a->ldq, 1, kt, Tk,
                   s, Tk, false);
        float inv[QB];
        for (int64_t i = 0; i < mq; i++) {
            const int64_t jmax = a->causal ? MF_MIN(Tk, i0 + i + 1) : Tk;
            inv[i] = softmax_row(s + i * Tk, Tk, jmax, a->key_mask ? km : NULL);
        }
        /* context = (exp-scores V) / sum: the normalisation touches dh values per row, not Tk */
        float *o = a->out + (b * Tq + i0) * HD + h * dh;
        gemm_small(mq, dh, kend, 1.0f, s, Tk, 1, a->v + b * Tk * a->ldv + h * dh, a->ldv, o, HD, false);
        for (int64_t i = 0; i < mq; i++) {
            scale_row(o + i * HD, dh, inv[i]);
            if (a->att) /* backward needs the probabilities themselves */
                scale_row(s + i * Tk, Tk, inv[i]);
        }
    }
}

void mf_attention_forward(struct mf_pool *pool, float *out, float *att, const float *q, int64_t ldq,
                          const float *k, int64_t ldk, const float *v, int64_t ldv,
                          const int32_t *key_mask, bool causal, int64_t B, int64_t Tq, int64_t Tk,
                          int64_t H, int64_t dh, void *scratch)
{
    MF_ASSERT(!causal || Tq <= Tk);
    if (B <= 0 || Tq <= 0 || H <= 0 || dh <= 0)
        return;
    MF_ASSERT(Tk > 0 && scratch);
    struct attn_arg a = {out, att, NULL, NULL, NULL, NULL, q, k, v, ldq, ldk, ldv, key_mask,
                         causal, B, Tq, Tk, H, dh, scratch};
    mf_pool_run(pool, attn_fwd_kernel, &a);
}

static void attn_bwd_kernel(void *p, int ith, int nth)
{
    struct attn_arg *a = p;
    const int64_t Tq = a->Tq, Tk = a->Tk, H = a->H, dh = a->dh, HD = H * dh;
    const float scale = 1.0f / sqrtf((float)dh);
    float *vt = thread_scratch(a->scratch, ith, Tq, Tk, dh);
    float *ds = vt + round16((size_t)dh * Tk); /* (Tq, Tk) */
    int64_t task0, task1;
    mf_split_range(a->B * H, ith, nth, &task0, &task1);
    for (int64_t bh = task0; bh < task1; bh++) {
        const int64_t b = bh / H, h = bh % H;
        const float *P = a->att + bh * Tq * Tk;                   /* (Tq, Tk) */
        const float *dO = a->dout + b * Tq * HD + h * dh;        /* rows stride HD */
        const float *qh = a->q + b * Tq * a->ldq + h * dh;
        const float *kh = a->k + b * Tk * a->ldk + h * dh;
        if (a->dq || a->dk) {
            /* dP = dO V^T, then dS = P (dP - rowsum(P dP)) */
            pack_transpose(vt, a->v + b * Tk * a->ldv + h * dh, a->ldv, Tk, dh);
            gemm_small(Tq, Tk, dh, 1.0f, dO, HD, 1, vt, Tk, ds, Tk, false);
            for (int64_t i = 0; i < Tq; i++) {
                const float *pr = P + i * Tk;
                float *dr = ds + i * Tk;
                float dot = 0.0f;
                for (int64_t j = 0; j < Tk; j++)
                    dot = fmaf(pr[j], dr[j], dot);
                for (int64_t j = 0; j < Tk; j++)
                    dr[j] = pr[j] * (dr[j] - dot);
            }
            if (a->dq)
                gemm_small(Tq, dh, Tk, scale, ds, Tk, 1, kh, a->ldk,
                           a->dq + b * Tq * a->ldq + h * dh, a->ldq, true);
            if (a->dk)
                gemm_small(Tk, dh, Tq, scale, ds, 1, Tk, qh, a->ldq,
                           a->dk + b * Tk * a->ldk + h * dh, a->ldk, true);
        }
        if (a->dv)
            gemm_small(Tk, dh, Tq, 1.0f, P, 1, Tk, dO, HD, a->dv + b * Tk * a->ldv + h * dh,
                       a->ldv, true);
    }
}

void mf_attention_backward(struct mf_pool *pool, float *dq, float *dk, float *dv, const float *dout,
                           const float *att, const float *q, int64_t ldq, const float *k,
                           int64_t ldk, const float *v, int64_t ldv, const int32_t *key_mask,
                           bool causal, int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t dh,
                           void *scratch)
{
    (void)key_mask; /* masked keys have P = 0, so their dS and dV terms vanish on their own */
    (void)causal;
    if (B <= 0 || Tq <= 0 || Tk <= 0 || H <= 0 || dh <= 0 || !(dq || dk || dv))
        return;
    MF_ASSERT(att && scratch);
    struct attn_arg a = {NULL, (float *)att, dq, dk, dv, dout, q, k, v, ldq, ldk, ldv, key_mask,
                         causal, B, Tq, Tk, H, dh, scratch};
    mf_pool_run(pool, attn_bwd_kernel, &a);
}
