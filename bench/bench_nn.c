/*
 * bench_nn: where the time of a BLIP-base forward goes on this machine.
 *  1. OpenBLAS SGEMM GFLOP/s on the ViT-B linear shapes (B*T x OC x IC) at 1..n threads: the
 *     peak every other number is compared with.
 *  2. Each non-GEMM kernel at BLIP-base sizes (B = 8, T = 197 and 577, C = 768, H = 12): ms,
 *     GB/s (elementwise) or GFLOP/s (attention), checked against a naive reference first.
 *  3. A ViT block estimate: GEMM time at peak + measured non-GEMM time, and the fraction of SGEMM
 *     peak the block would reach end to end.
 * Usage: bench_nn [threads (default 2)] [reps (default 5)]. Never run by ctest.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "core/common.h"
#include "core/pool.h"
#include "nn/nn.h"

static int g_reps = 5;

static float *frand(int64_t n, float scale)
{
    float *p = mf_malloc_aligned((size_t)n * sizeof *p);
    uint32_t s = 12345u + (uint32_t)n;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = ((float)(s >> 8) * 0x1p-24f * 2.0f - 1.0f) * scale;
    }
    return p;
}

#define TIME_MIN(best, stmt)                                                                   \
    do {                                                                                       \
        best = 1e30;                                                                           \
        for (int r_ = 0; r_ < g_reps; r_++) {                                                  \
            double t0_ = mf_time_now();                                                        \
            stmt;                                                                              \
            double dt_ = mf_time_now() - t0_;                                                  \
            if (dt_ < best)                                                                    \
                best = dt_;                                                                    \
        }                                                                                      \
    } while (0)

static double sgemm_gflops(int64_t M, int64_t N, int64_t K)
{
    float *a = frand(M * K, 1), *b = frand(N * K, 1), *c = frand(M * N, 1);
    double t;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1, a, (int)K, b,
                (int)K, 0, c, (int)N); /* warm-up */
    TIME_MIN(t, cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1, a,
                            (int)K, b, (int)K, 0, c, (int)N));
    mf_free_aligned(a);
    mf_free_aligned(b);
    mf_free_aligned(c);
    return 2.0 * M * N * K / t * 1e-9;
}

/* reference check of mf_linear_forward and the attention core on a few rows */
static int check_reference(struct mf_pool *pool, int nt)
{
    const int64_t T = 64, IC = 96, OC = 80;
    float *x = frand(T * IC, 1), *w = frand(OC * IC, 1), *b = frand(OC, 1), *y = frand(T * OC, 1);
    mf_linear_forward(pool, y, x, IC, w, b, T, IC, OC);
    double worst = 0;
    for (int64_t t = 0; t < T; t += 7)
        for (int64_t o = 0; o < OC; o++) {
            double s = b[o];
            for (int64_t i = 0; i < IC; i++)
                s += (double)x[t * IC + i] * w[o * IC + i];
            worst = fmax(worst, fabs(s - y[t * OC + o]));
        }
    const int64_t B = 1, N = 77, H = 2, dh = 64, C = H * dh;
    float *qkv = frand(B * N * 3 * C, 1), *out = frand(B * N * C, 1);
    void *scr = mf_malloc_aligned(mf_attention_scratch_size(nt, N, N, dh));
    mf_attention_forward(pool, out, NULL, qkv, 3 * C, qkv + C, 3 * C, qkv + 2 * C, 3 * C, NULL,
                         false, B, N, N, H, dh, scr);
    double s[77];
    for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < N; i += 11) {
            double m = -1e300, sum = 0;
            for (int64_t j = 0; j < N; j++) {
                double d = 0;
                for (int64_t e = 0; e < dh; e++)
                    d += (double)qkv[i * 3 * C + h * dh + e] * qkv[j * 3 * C + C + h * dh + e];
                s[j] = d / 8.0;
                m = fmax(m, s[j]);
            }
            for (int64_t j = 0; j < N; j++)
                sum += (s[j] = exp(s[j] - m));
            for (int64_t e = 0; e < dh; e++) {
                double o = 0;
                for (int64_t j = 0; j < N; j++)
                    o += s[j] / sum * qkv[j * 3 * C + 2 * C + h * dh + e];
                worst = fmax(worst, fabs(o - out[i * C + h * dh + e]));
            }
        }
    printf("reference check: max abs diff %.3g (linear + attention)\n", worst);
    mf_free_aligned(scr);
    mf_free_aligned(x); mf_free_aligned(w); mf_free_aligned(b); mf_free_aligned(y);
    mf_free_aligned(qkv); mf_free_aligned(out);
    return worst < 1e-4 ? 0 : 1;
}

static void report(const char *name, double t, double bytes, double flops)
{
    printf("  %-34s %8.3f ms", name, t * 1e3);
    if (bytes > 0)
        printf("  %7.1f GB/s", bytes / t * 1e-9);
    if (flops > 0)
        printf("  %7.1f GFLOP/s", flops / t * 1e-9);
    printf("\n");
}

static void bench_sizes(struct mf_pool *pool, int nt, int64_t B, int64_t T, double peak)
{
    const int64_t C = 768, H = 12, dh = 64, F = 3072, R = B * T;
    printf("\nB=%lld T=%lld C=%lld H=%lld, %d threads\n", (long long)B, (long long)T,
           (long long)C, (long long)H, nt);
    float *x = frand(R * C, 2), *y = frand(R * C, 1), *w = frand(C, 1), *b = frand(C, 1);
    float *mean = frand(R, 1), *rstd = frand(R, 1), *dy = frand(R * C, 1), *dx = frand(R * C, 1);
    float *h = frand(R * F, 3), *hb = frand(F, 1), *h2 = frand(R * F, 1);
    float *qkv = frand(R * 3 * C, 1), *ctx = frand(R * C, 1), *att = frand(B * H * T * T, 1);
    float *dqkv = frand(R * 3 * C, 1);
    void *scr = mf_malloc_aligned(mf_attention_scratch_size(nt, T, T, dh));
    double t, nongemm = 0;
    const double fb = sizeof(float);

    TIME_MIN(t, mf_layernorm_forward(pool, y, mean, rstd, x, w, b, R, C, 1e-6f));
    report("layernorm_forward [R,768]", t, 2.0 * R * C * fb, 0);
    nongemm += 2 * t;
    TIME_MIN(t, mf_bias_gelu_forward(pool, h, hb, R, F));
    report("bias_gelu_forward [R,3072] in place", t, 2.0 * R * F * fb, 0);
    nongemm += t;
    TIME_MIN(t, mf_gelu_forward(pool, h2, h, R * F));
    report("gelu_forward [R,3072]", t, 2.0 * R * F * fb, 0);
    TIME_MIN(t, mf_quickgelu_forward(pool, h2, h, R * F));
    report("quickgelu_forward [R,3072]", t, 2.0 * R * F * fb, 0);
    TIME_MIN(t, mf_add_forward(pool, y, x, y, R * C));
    report("add_forward [R,768]", t, 3.0 * R * C * fb, 0);
    nongemm += 2 * t;
    const double aflops = 4.0 * B * T * T * C;
    TIME_MIN(t, mf_attention_forward(pool, ctx, NULL, qkv, 3 * C, qkv + C, 3 * C, qkv + 2 * C,
                                     3 * C, NULL, false, B, T, T, H, dh, scr));
    report("attention_forward (no att)", t, 0, aflops);
    nongemm += t;
    const double t_att = t;
    TIME_MIN(t, mf_attention_forward(pool, ctx, att, qkv, 3 * C, qkv + C, 3 * C, qkv + 2 * C,
                                     3 * C, NULL, false, B, T, T, H, dh, scr));
    report("attention_forward (keeps att)", t, 0, aflops);
    TIME_MIN(t, mf_attention_backward(pool, dqkv, dqkv + C, dqkv + 2 * C, ctx, att, qkv, 3 * C,
                                      qkv + C, 3 * C, qkv + 2 * C, 3 * C, NULL, false, B, T, T, H,
                                      dh, scr));
    report("attention_backward", t, 0, 2 * aflops);
    TIME_MIN(t, mf_layernorm_backward(pool, dx, w, b, dy, x, w, mean, rstd, R, C));
    report("layernorm_backward (dx, dw, db)", t, 4.0 * R * C * fb, 0);
    TIME_MIN(t, mf_gelu_backward(pool, h2, h2, h, R * F));
    report("gelu_backward [R,3072]", t, 3.0 * R * F * fb, 0);

    /* one ViT block: 4 linears at peak + the measured non-GEMM kernels */
    const double gflop_lin = 24.0 * R * C * C;
    const double t_gemm = gflop_lin / (peak * 1e9), t_attn_at_peak = aflops / (peak * 1e9);
    const double t_block = t_gemm + nongemm;
    printf("  ViT block estimate: linears at peak %.2f ms + non-GEMM %.2f ms (attention %.2f ms, "
           "%.1f%% of peak) -> %.1f%% of SGEMM peak end to end\n",
           t_gemm * 1e3, nongemm * 1e3, t_att * 1e3, 100.0 * t_attn_at_peak / t_att,
           100.0 * (gflop_lin + aflops) / (peak * 1e9) / t_block);

    mf_free_aligned(scr);
    float *bufs[] = {x, y, w, b, mean, rstd, dy, dx, h, hb, h2, qkv, ctx, att, dqkv};
    for (size_t i = 0; i < MF_ARRAY_LEN(bufs); i++)
        mf_free_aligned(bufs[i]);
}

int main(int argc, char **argv)
{
    int nt = argc > 1 ? atoi(argv[1]) : 2;
    if (argc > 2)
        g_reps = atoi(argv[2]);
    if (nt < 1 || g_reps < 1) {
        fprintf(stderr, "usage: bench_nn [threads] [reps]\n");
        return 2;
    }
    printf("bench_nn: %d threads, %d reps (min time)\n", nt, g_reps);
    static const int64_t shapes[][3] = {
        {1576, 2304, 768}, {1576, 3072, 768}, {1576, 768, 3072}, {4616, 2304, 768}};
    double peak = 0;
    for (int th = 1; th <= nt; th = th < nt ? (th * 2 > nt ? nt : th * 2) : nt + 1) {
        mf_nn_set_blas_threads(th);
        for (size_t s = 0; s < MF_ARRAY_LEN(shapes); s++) {
            double g = sgemm_gflops(shapes[s][0], shapes[s][1], shapes[s][2]);
            printf("sgemm %5lld x %4lld x %4lld  %d thr: %7.1f GFLOP/s\n", (long long)shapes[s][0],
                   (long long)shapes[s][1], (long long)shapes[s][2], th, g);
            if (th == nt && g > peak)
                peak = g;
        }
    }
    printf("SGEMM peak at %d threads: %.1f GFLOP/s\n", nt, peak);
    mf_nn_init(nt);
    struct mf_pool *pool = mf_pool_create(nt);
    if (!pool || check_reference(pool, nt) != 0) {
        fprintf(stderr, "bench_nn: reference check failed\n");
        mf_pool_free(pool);
        return 1;
    }
    bench_sizes(pool, nt, 8, 197, peak);
    bench_sizes(pool, nt, 8, 577, peak);
    mf_pool_free(pool);
    return 0;
}
