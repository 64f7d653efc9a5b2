/*
 * nn/misc.c: small head-side kernels (row softmax, L2 normalisation) and the patch-embedding
 * im2col.
 *
 * Deliberately not: threaded softmax/normalise (they run on [B, 2] ITM logits and [B, 256] ITC
 * features; the attention softmax lives in attention.c), a conv kernel (the patch conv is a GEMM
 * after mf_patchify, spec §1.3).
 *
 * Reference: spec models.md §1.1 (softmax with max subtraction, F.normalize with eps 1e-12),
 * §1.3 (patch vector order c, ky, kx; tokens row-major over the grid).
 */
#include "nn/nn.h"

#include <math.h>
#include <string.h>

#include "core/common.h"
#include "nn/vmath.h"

void mf_softmax_rows(float *y, const float *x, int64_t rows, int64_t n)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        if (n <= 0)
            continue;
        float m = xr[0];
        for (int64_t i = 1; i < n; i++)
            m = xr[i] > m ? xr[i] : m;
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) {
            float e = mf_expf_fast(xr[i] - m);
            yr[i] = e;
            s += e;
        }
        float inv = (float)(1.0 / s);
        for (int64_t i = 0; i < n; i++)
            yr[i] *= inv;
    }
}

void mf_l2_normalize_rows(float *y, const float *x, int64_t rows, int64_t n, float eps)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double s = 0.0;
        for (int64_t i = 0; i < n; i++)
            s += (double)xr[i] * xr[i];
        double nrm = sqrt(s);
        if (nrm < eps)
            nrm = eps;
        /* divide (not multiply by a reciprocal), like F.normalize's x / norm.clamp_min(eps) */
        float d = (float)nrm;
        for (int64_t i = 0; i < n; i++)
            yr[i] = d > 0.0f ? xr[i] / d : 0.0f;
    }
}

struct patch_arg {
    float *patches;     /* (B, G*G, 3*P*P) */
    const float *img;   /* (B, 3, R, R) */
    int64_t B, R, P, G;
};

static void patch_kernel(void *p, int ith, int nth)
{
    struct patch_arg *a = p;
    const int64_t P = a->P, R = a->R, G = a->G, K = 3 * P * P;
    int64_t r0, r1;
    /* one task = one grid row of one image: G patches */
    mf_split_range(a->B * G, ith, nth, &r0, &r1);
    for (int64_t task = r0; task < r1; task++) {
        const int64_t b = task / G, gy = task % G;
        for (int64_t gx = 0; gx < G; gx++) {
            float *dst = a->patches + ((b * G + gy) * G + gx) * K;
            for (int64_t c = 0; c < 3; c++)
                for (int64_t ky = 0; ky < P; ky++) {
                    const float *src = a->img + ((b * 3 + c) * R + gy * P + ky) * R + gx * P;
                    memcpy(dst + (c * P + ky) * P, src, (size_t)P * sizeof(float));
                }
        }
    }
}

void mf_patchify(struct mf_pool *pool, float *patches, const float *img, int64_t B, int64_t R,
                 int64_t P)
{
    MF_ASSERT(P > 0 && R % P == 0);
    if (B <= 0 || R <= 0)
        return;
    struct patch_arg a = {patches, img, B, R, P, R / P};
    mf_pool_run(pool, patch_kernel, &a);
}
