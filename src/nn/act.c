/*
 * nn/act.c: elementwise kernels: exact GELU (erf), QuickGELU, their backward, fused bias+GELU
 * epilogues for bias-free GEMM outputs, residual add. Work is split over the pool in contiguous
 * chunks of whole 8-float vectors; element results do not depend on the split.
 *
 * Deliberately not: the tanh GELU approximation (no model here uses it, spec §1.1), libm erff
 * (scalar, too slow for 3072-wide MLPs; our erf is within ~1e-7 absolute of it).
 *
 * Reference: spec models.md §1.1; GELU'(x) = Phi(x) + x phi(x) (Hendrycks & Gimpel 2016).
 */
#include "nn/nn.h"

#include <math.h>

#include "core/common.h"
#include "nn/vmath.h"

#define SQRT1_2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f
#define QG_A 1.702f

static inline float gelu1(float x) { return 0.5f * x * (1.0f + mf_erff_fast(x * SQRT1_2)); }
static inline float dgelu1(float x)
{
    float cdf = 0.5f * (1.0f + mf_erff_fast(x * SQRT1_2));
    return fmaf(x * INV_SQRT_2PI, mf_expf_fast(-0.5f * x * x), cdf);
}
static inline float qgelu1(float x) { return x / (1.0f + mf_expf_fast(-QG_A * x)); }
static inline float dqgelu1(float x)
{
    float s = 1.0f / (1.0f + mf_expf_fast(-QG_A * x));
    return fmaf(x * QG_A * s, 1.0f - s, s);
}

#ifdef MF_NN_AVX2
static inline __m256 gelu8(__m256 x)
{
    __m256 e = mf_erf8(_mm256_mul_ps(x, _mm256_set1_ps(SQRT1_2)));
    __m256 hx = _mm256_mul_ps(x, _mm256_set1_ps(0.5f));
    return _mm256_fmadd_ps(hx, e, hx);
}
static inline __m256 dgelu8(__m256 x)
{
    __m256 e = mf_erf8(_mm256_mul_ps(x, _mm256_set1_ps(SQRT1_2)));
    __m256 cdf = _mm256_mul_ps(_mm256_set1_ps(0.5f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    __m256 g = mf_exp8(_mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(-0.5f), x), x));
    return _mm256_fmadd_ps(_mm256_mul_ps(x, _mm256_set1_ps(INV_SQRT_2PI)), g, cdf);
}
static inline __m256 sigm8(__m256 x)
{
    __m256 e = mf_exp8(_mm256_mul_ps(x, _mm256_set1_ps(-QG_A)));
    return _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}
static inline __m256 qgelu8(__m256 x)
{
    __m256 e = mf_exp8(_mm256_mul_ps(x, _mm256_set1_ps(-QG_A)));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}
static inline __m256 dqgelu8(__m256 x)
{
    __m256 s = sigm8(x);
    __m256 xs = _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(QG_A)), s);
    return _mm256_fmadd_ps(xs, _mm256_sub_ps(_mm256_set1_ps(1.0f), s), s);
}
#endif

enum act_op { OP_GELU, OP_DGELU, OP_QGELU, OP_DQGELU, OP_ADD, OP_ACC2 };

struct ew_arg {
    enum act_op op;
    float *y;         /* (n) output (OP_ACC2: da) */
    float *y2;        /* (n) OP_ACC2: db */
    const float *x;   /* (n) input (OP_D*: the forward input) */
    const float *dy;  /* (n) OP_D*: upstream gradient; OP_ADD: second operand */
    int64_t n;
};

/* [begin, end) of thread ith, in whole vectors of 8 so that no element's path (vector or tail)
 * depends on the thread count. */
static void split8(int64_t n, int ith, int nth, int64_t *b, int64_t *e)
{
    int64_t nv = (n + 7) / 8;
    mf_split_range(nv, ith, nth, b, e);
    *b *= 8;
    *e = MF_MIN(*e * 8, n);
}

static void ew_kernel(void *p, int ith, int nth)
{
    struct ew_arg *a = p;
    int64_t i, i1;
    split8(a->n, ith, nth, &i, &i1);
    float *y = a->y;
    const float *x = a->x, *dy = a->dy;
#ifdef MF_NN_AVX2
    for (; i + 8 <= i1; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), r;
        switch (a->op) {
        case OP_GELU: r = gelu8(v); break;
        case OP_DGELU: r = _mm256_mul_ps(_mm256_loadu_ps(dy + i), dgelu8(v)); break;
        case OP_QGELU: r = qgelu8(v); break;
        case OP_DQGELU: r = _mm256_mul_ps(_mm256_loadu_ps(dy + i), dqgelu8(v)); break;
        case OP_ADD: r = _mm256_add_ps(v, _mm256_loadu_ps(dy + i)); break;
        default: /* OP_ACC2: x is dy */
            if (y)
                _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), v));
            if (a->y2)
                _mm256_storeu_ps(a->y2 + i, _mm256_add_ps(_mm256_loadu_ps(a->y2 + i), v));
            continue;
        }
        _mm256_storeu_ps(y + i, r);
    }
#endif
    for (; i < i1; i++) {
        float v = x[i];
        switch (a->op) {
        case OP_GELU: y[i] = gelu1(v); break;
        case OP_DGELU: y[i] = dy[i] * dgelu1(v); break;
        case OP_QGELU: y[i] = qgelu1(v); break;
        case OP_DQGELU: y[i] = dy[i] * dqgelu1(v); break;
        case OP_ADD: y[i] = v + dy[i]; break;
        default:
            if (y)
                y[i] += v;
            if (a->y2)
                a->y2[i] += v;
        }
    }
}

static void run_ew(struct mf_pool *pool, enum act_op op, float *y, float *y2, const float *x,
                   const float *dy, int64_t n)
{
    if (n <= 0)
        return;
    struct ew_arg a = {op, y, y2, x, dy, n};
    mf_pool_run(pool, ew_kernel, &a);
}

void mf_gelu_forward(struct mf_pool *pool, float *y, const float *x, int64_t n)
{
    run_ew(pool, OP_GELU, y, NULL, x, NULL, n);
}
void mf_gelu_backward(struct mf_pool *pool, float *dx, const float *dy, const float *x, int64_t n)
{
    if (dx)
        run_ew(pool, OP_DGELU, dx, NULL, x, dy, n);
}
void mf_quickgelu_forward(struct mf_pool *pool, float *y, const float *x, int64_t n)
{
    run_ew(pool, OP_QGELU, y, NULL, x, NULL, n);
}
void mf_quickgelu_backward(struct mf_pool *pool, float *dx, const float *dy, const float *x,
                           int64_t n)
{
    if (dx)
        run_ew(pool, OP_DQGELU, dx, NULL, x, dy, n);
}
void mf_add_forward(struct mf_pool *pool, float *y, const float *a, const float *b, int64_t n)
{
    run_ew(pool, OP_ADD, y, NULL, a, b, n);
}
void mf_add_backward(struct mf_pool *pool, float *da, float *db, const float *dy, int64_t n)
{
    if (da || db)
        run_ew(pool, OP_ACC2, da, db, dy, NULL, n);
}

struct bias_act_arg {
    float *y;         /* (T, C) in place */
    const float *b;   /* (C) */
    int64_t T, C;
    int act;          /* 0 = none (bias add only), 1 = GELU, 2 = QuickGELU */
};

static void bias_act_kernel(void *p, int ith, int nth)
{
    struct bias_act_arg *a = p;
    int64_t t0, t1;
    mf_split_range(a->T, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        float *y = a->y + t * a->C;
        int64_t i = 0;
#ifdef MF_NN_AVX2
        for (; i + 8 <= a->C; i += 8) {
            __m256 v = _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(a->b + i));
            _mm256_storeu_ps(y + i, a->act == 2 ? qgelu8(v) : a->act == 1 ? gelu8(v) : v);
        }
#endif
        for (; i < a->C; i++) {
            float v = y[i] + a->b[i];
            y[i] = a->act == 2 ? qgelu1(v) : a->act == 1 ? gelu1(v) : v;
        }
    }
}

void mf_bias_add_forward(struct mf_pool *pool, float *y, const float *b, int64_t T, int64_t C)
{
    if (T <= 0 || C <= 0)
        return;
    struct bias_act_arg a = {y, b, T, C, 0};
    mf_pool_run(pool, bias_act_kernel, &a);
}

void mf_bias_gelu_forward(struct mf_pool *pool, float *y, const float *b, int64_t T, int64_t C)
{
    if (T <= 0 || C <= 0)
        return;
    struct bias_act_arg a = {y, b, T, C, 1};
    mf_pool_run(pool, bias_act_kernel, &a);
}

void mf_bias_quickgelu_forward(struct mf_pool *pool, float *y, const float *b, int64_t T,
                               int64_t C)
{
    if (T <= 0 || C <= 0)
        return;
    struct bias_act_arg a = {y, b, T, C, 2};
    mf_pool_run(pool, bias_act_kernel, &a);
}
