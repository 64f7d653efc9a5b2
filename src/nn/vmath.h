/*
 * nn/vmath.h: vector math shared by the nn kernels: exp, erf, sigmoid on 8 floats (AVX2+FMA),
 * with scalar twins that follow the same formulas, plus horizontal sums in a fixed lane order.
 *
 * Deliberately not: a general libm. Denormal results of exp are flushed to 0 (softmax and GELU
 * never need them); NaN inputs give unspecified finite or NaN outputs.
 *
 * References: Cody-Waite range reduction with a degree-6 polynomial for exp (the Cephes expf
 * scheme); erf is our own fit (least squares on Chebyshev nodes, tests/golden is not needed): for
 * |x| <= 0.921875 erf(x) = x P(x^2); above, erf(x) = 1 - exp(-x^2) Q(1 / (1 + x/2)); 1 past 4.
 * Max abs error vs double erf on [-10, 10] is ~1e-7 (checked by tests/nn/test_nn.c).
 */
#ifndef MF_NN_VMATH_H
#define MF_NN_VMATH_H

#include <math.h>
#include <stdint.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MF_NN_AVX2 1
#endif

#define MF_ERF_SPLIT 0.921875f

/* ---- scalar twins ---- */

static inline float mf_expf_fast(float x)
{
    if (x < -87.33654f)
        return 0.0f;
    if (x > 88.72283f)
        x = 88.72283f;
    float n = nearbyintf(x * 1.44269504088896341f);
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r);
    p += 1.0f;
    return ldexpf(p, (int)n);
}

static inline float mf_erff_fast(float x)
{
    float ax = fabsf(x), r;
    if (ax <= MF_ERF_SPLIT) {
        float z = x * x;
        float p = 8.438768373e-05f;
        p = fmaf(p, z, -8.160783809e-04f);
        p = fmaf(p, z, 5.202835681e-03f);
        p = fmaf(p, z, -2.686024116e-02f);
        p = fmaf(p, z, 1.128371385e-01f);
        p = fmaf(p, z, -3.761263530e-01f);
        p = fmaf(p, z, 1.128379167e+00f);
        return x * p;
    }
    if (ax >= 4.0f) {
        r = 1.0f;
    } else {
        float t = 1.0f / fmaf(0.5f, ax, 1.0f);
        float q = -4.789874150e-02f;
        q = fmaf(q, t, -7.372132770e-02f);
        q = fmaf(q, t, 4.234356512e-01f);
        q = fmaf(q, t, 8.890867093e-02f);
        q = fmaf(q, t, 3.351747624e-01f);
        q = fmaf(q, t, 2.728169140e-01f);
        q = fmaf(q, t, 6.674241810e-04f);
        r = 1.0f - mf_expf_fast(-ax * ax) * q;
    }
    return x < 0 ? -r : r;
}

#ifdef MF_NN_AVX2
/* ---- AVX2 versions: same formulas, lane by lane ---- */

static inline __m256 mf_exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.33654f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(x, _mm256_set1_ps(88.72283f));
    x = _mm256_max_ps(x, lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693359375f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    /* 2^n in two halves so that n = -127 (x just above the clamp) stays representable */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i h1 = _mm256_srai_epi32(ni, 1);
    __m256i h2 = _mm256_sub_epi32(ni, h1);
    __m256i b = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h1, b), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h2, b), 23));
    p = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    return _mm256_andnot_ps(under, p);
}

static inline __m256 mf_erf8(__m256 x)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 ax = _mm256_andnot_ps(sign, x);
    __m256 sx = _mm256_and_ps(sign, x);
    __m256 small = _mm256_cmp_ps(ax, _mm256_set1_ps(MF_ERF_SPLIT), _CMP_LE_OQ);
    int m_small = _mm256_movemask_ps(small);
    __m256 ra = _mm256_setzero_ps(), rb = _mm256_setzero_ps();
    if (m_small) {
        __m256 z = _mm256_mul_ps(x, x);
        __m256 p = _mm256_set1_ps(8.438768373e-05f);
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-8.160783809e-04f));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(5.202835681e-03f));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-2.686024116e-02f));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.128371385e-01f));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.761263530e-01f));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.128379167e+00f));
        ra = _mm256_mul_ps(x, p);
        if (m_small == 0xff)
            return ra;
    }
    {
        __m256 axc = _mm256_min_ps(ax, _mm256_set1_ps(4.0f));
        __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
                                 _mm256_fmadd_ps(_mm256_set1_ps(0.5f), axc, _mm256_set1_ps(1.0f)));
        __m256 q = _mm256_set1_ps(-4.789874150e-02f);
        q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-7.372132770e-02f));
        q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(4.234356512e-01f));
        q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(8.890867093e-02f));
        q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(3.351747624e-01f));
        q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(2.728169140e-01f));
        q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(6.674241810e-04f));
        __m256 e = mf_exp8(_mm256_mul_ps(_mm256_xor_ps(axc, sign), axc));
        rb = _mm256_fnmadd_ps(e, q, _mm256_set1_ps(1.0f));
        __m256 big = _mm256_cmp_ps(ax, _mm256_set1_ps(4.0f), _CMP_GE_OQ);
        rb = _mm256_blendv_ps(rb, _mm256_set1_ps(1.0f), big);
        rb = _mm256_or_ps(rb, sx);
    }
    return _mm256_blendv_ps(rb, ra, small);
}

/* Sum of 8 lanes in a fixed order: ((0+4)+(2+6)) + ((1+5)+(3+7)). */
static inline float mf_hsum8(__m256 v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

static inline float mf_hmax8(__m256 v)
{
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/* Lane mask for the first n (0..8) lanes, for masked loads and stores of row tails. */
static inline __m256i mf_tail_mask8(int64_t n)
{
    static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(m + 8 - n));
}
#endif

#endif
