/*
 * nn/layernorm.c: LayerNorm over the last dimension and its backward.
 *
 * Forward: two passes over each row while it sits in L1 (mean, then the centred variance, which
 * is more accurate than E[x^2] - mean^2), then one fused normalise-scale-shift pass. Rows are
 * split over the pool; each row's arithmetic is fixed (8-lane partial sums, fixed horizontal
 * order), so the bits do not depend on the thread count.
 * Backward: dx row by row; dw/db are column sums over T, split by columns so that every column
 * is summed over t = 0..T-1 in order on one thread: no per-thread partials, same bits for any
 * thread count.
 *
 * Deliberately not: RMSNorm, normalisation over other axes, double accumulation (C <= a few
 * thousand; float with 8 partial sums is within the spec §1.6 tolerance).
 *
 * Reference: spec models.md §1.1 (torch.nn.LayerNorm: biased variance, eps inside the sqrt);
 * llm.c train_gpt2.c layernorm_forward/layernorm_backward for the gradient formula.
 */
#include "nn/nn.h"

#include <math.h>

#include "core/common.h"
#include "nn/vmath.h"

static float row_sum(const float *x, int64_t n)
{
    int64_t i = 0;
    float s = 0.0f;
#ifdef MF_NN_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
    s = mf_hsum8(_mm256_add_ps(a0, a1));
#endif
    for (; i < n; i++)
        s += x[i];
    return s;
}

/* sum (x - m)^2 */
static float row_sqdev(const float *x, float m, int64_t n)
{
    int64_t i = 0;
    float s = 0.0f;
#ifdef MF_NN_AVX2
    __m256 vm = _mm256_set1_ps(m);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm);
        a0 = _mm256_fmadd_ps(d0, d0, a0);
        a1 = _mm256_fmadd_ps(d1, d1, a1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        a0 = _mm256_fmadd_ps(d0, d0, a0);
    }
    s = mf_hsum8(_mm256_add_ps(a0, a1));
#endif
    for (; i < n; i++) {
        float d = x[i] - m;
        s = fmaf(d, d, s);
    }
    return s;
}

struct ln_fwd_arg {
    float *y, *mean, *rstd;   /* (T, C), (T), (T) */
    const float *x, *w, *b;   /* (T, C), (C), (C) */
    int64_t T, C;
    float eps;
};

static void ln_fwd_kernel(void *p, int ith, int nth)
{
    struct ln_fwd_arg *a = p;
    int64_t t0, t1, C = a->C;
    mf_split_range(a->T, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        const float *x = a->x + t * C;
        float *y = a->y + t * C;
        float m = row_sum(x, C) / (float)C;
        float var = row_sqdev(x, m, C) / (float)C;
        float rs = 1.0f / sqrtf(var + a->eps);
        if (a->mean)
            a->mean[t] = m;
        if (a->rstd)
            a->rstd[t] = rs;
        int64_t i = 0;
#ifdef MF_NN_AVX2
        __m256 vm = _mm256_set1_ps(m), vr = _mm256_set1_ps(rs);
        for (; i + 8 <= C; i += 8) {
            __m256 n = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
            _mm256_storeu_ps(y + i, _mm256_fmadd_ps(n, _mm256_loadu_ps(a->w + i),
                                                    _mm256_loadu_ps(a->b + i)));
        }
#endif
        for (; i < C; i++)
            y[i] = fmaf((x[i] - m) * rs, a->w[i], a->b[i]);
    }
}

void mf_layernorm_forward(struct mf_pool *pool, float *y, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int64_t T, int64_t C, float eps)
{
    if (T <= 0 || C <= 0)
        return;
    struct ln_fwd_arg a = {y, mean, rstd, x, w, b, T, C, eps};
    mf_pool_run(pool, ln_fwd_kernel, &a);
}

struct ln_bwd_arg {
    float *dx, *dw, *db;                        /* (T, C), (C), (C) */
    const float *dy, *x, *w, *mean, *rstd;      /* (T, C), (T, C), (C), (T), (T) */
    int64_t T, C;
};

static void ln_bwd_kernel(void *p, int ith, int nth)
{
    struct ln_bwd_arg *a = p;
    const int64_t C = a->C;
    if (a->dx) {
        int64_t t0, t1;
        mf_split_range(a->T, ith, nth, &t0, &t1);
        for (int64_t t = t0; t < t1; t++) {
            const float *x = a->x + t * C, *dy = a->dy + t * C;
            float *dx = a->dx + t * C;
            const float m = a->mean[t], rs = a->rstd[t];
            /* g = dy * w; xhat = (x - m) rs; dx = rs (g - mean(g) - xhat mean(g xhat)) */
            float sg = 0.0f, sgx = 0.0f;
            int64_t i = 0;
#ifdef MF_NN_AVX2
            __m256 vm = _mm256_set1_ps(m), vr = _mm256_set1_ps(rs);
            __m256 ag = _mm256_setzero_ps(), agx = _mm256_setzero_ps();
            for (; i + 8 <= C; i += 8) {
                __m256 g = _mm256_mul_ps(_mm256_loadu_ps(dy + i), _mm256_loadu_ps(a->w + i));
                __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
                ag = _mm256_add_ps(ag, g);
                agx = _mm256_fmadd_ps(g, xh, agx);
            }
            sg = mf_hsum8(ag);
            sgx = mf_hsum8(agx);
#endif
            for (; i < C; i++) {
                float g = dy[i] * a->w[i];
                sg += g;
                sgx = fmaf(g, (x[i] - m) * rs, sgx);
            }
            const float mg = sg / (float)C, mgx = sgx / (float)C;
            i = 0;
#ifdef MF_NN_AVX2
            __m256 vmg = _mm256_set1_ps(mg), vmgx = _mm256_set1_ps(mgx);
            for (; i + 8 <= C; i += 8) {
                __m256 g = _mm256_mul_ps(_mm256_loadu_ps(dy + i), _mm256_loadu_ps(a->w + i));
                __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
                __m256 d = _mm256_fnmadd_ps(xh, vmgx, _mm256_sub_ps(g, vmg));
                _mm256_storeu_ps(dx + i, _mm256_mul_ps(d, vr));
            }
#endif
            for (; i < C; i++) {
                float g = dy[i] * a->w[i];
                float xh = (x[i] - m) * rs;
                dx[i] = (fmaf(-xh, mgx, g - mg)) * rs;
            }
        }
    }
    if (a->dw || a->db) {
        int64_t c0, c1;
        mf_split_range(C, ith, nth, &c0, &c1);
        float *dw = a->dw, *db = a->db;
        for (int64_t t = 0; t < a->T; t++) {
            const float *x = a->x + t * C, *dy = a->dy + t * C;
            const float m = a->mean[t], rs = a->rstd[t];
            int64_t c = c0;
            /* vector and scalar paths round identically (one FMA, one add per element), so
             * where a thread's slice boundary falls does not change any bit */
#ifdef MF_NN_AVX2
            __m256 vm = _mm256_set1_ps(m), vr = _mm256_set1_ps(rs);
            for (; c + 8 <= c1; c += 8) {
                __m256 g = _mm256_loadu_ps(dy + c);
                if (dw) {
                    __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + c), vm), vr);
                    _mm256_storeu_ps(dw + c, _mm256_fmadd_ps(g, xh, _mm256_loadu_ps(dw + c)));
                }
                if (db)
                    _mm256_storeu_ps(db + c, _mm256_add_ps(_mm256_loadu_ps(db + c), g));
            }
#endif
            for (; c < c1; c++) {
                if (dw)
                    dw[c] = fmaf(dy[c], (x[c] - m) * rs, dw[c]);
                if (db)
                    db[c] += dy[c];
            }
        }
    }
}

void mf_layernorm_backward(struct mf_pool *pool, float *dx, float *dw, float *db, const float *dy,
                           const float *x, const float *w, const float *mean, const float *rstd,
                           int64_t T, int64_t C)
{
    if (T <= 0 || C <= 0)
        return;
    struct ln_bwd_arg a = {dx, dw, db, dy, x, w, mean, rstd, T, C};
    mf_pool_run(pool, ln_bwd_kernel, &a);
}
