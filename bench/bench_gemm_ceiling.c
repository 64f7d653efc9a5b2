/*
 * bench/bench_gemm_ceiling.c: how close the engine's GEMMs are to what this CPU can do, for the
 * 384 px forward target (bench/README.md, "what 1.5x at 384 px would take").
 *
 * What it measures, in one process:
 *   1. the FMA peak of one core: 12 independent 8-wide FMA chains in registers (no memory), in
 *      GFLOP/s (2 flops per lane per FMA);
 *   2. OpenBLAS SGEMM y = x W^T + y (the engine's call, nn/linear.c) on BLIP-base shapes at 224 and
 *      384 px, M = 8 images x tokens and the text side's M = 8 x 35, with 1 thread, and with 2
 *      threads three ways: OpenBLAS's own threads, our pool splitting the output rows (what the
 *      engine does), and our pool splitting the output columns (each thread packs half of W).
 * Best of 7 timed calls after a warm-up each. Run it with OPENBLAS_CORETYPE=Zen (or Haswell,
 * SkylakeX) to compare OpenBLAS's kernels; the variable is read when the library loads.
 *
 * What it deliberately does not do: no assertion on time, no attention or elementwise work (the
 * forward bench's profile covers those).
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "core/common.h"
#include "core/pool.h"
#include "nn/nn.h"

static double fma_peak_one_core(void)
{
#ifdef __AVX2__
    __m256 a[12];
    const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++)
        a[i] = _mm256_set1_ps((float)i);
    const long n = 100000000;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = mf_time_now();
        for (long k = 0; k < n; k++) {
#pragma GCC unroll 12
            for (int i = 0; i < 12; i++)
                a[i] = _mm256_fmadd_ps(a[i], b, c);
        }
        double g = (double)n * 12 * 16 / (mf_time_now() - t0) * 1e-9;
        best = g > best ? g : best;
    }
    float sink = 0, v[8];
    for (int i = 0; i < 12; i++) {
        _mm256_storeu_ps(v, a[i]);
        sink += v[0];
    }
    if (sink == 12345.0f) /* keeps the chains alive */
        printf("#\n");
    return best;
#else
    return 0;
#endif
}

struct gemm {
    int64_t M, N, K;
    const float *x, *w;
    float *y;
    bool cols;
};

static void split16(int64_t n, int ith, int nth, int64_t *b, int64_t *e)
{
    int64_t blocks = (n + 15) / 16, b0, b1;
    mf_split_range(blocks, ith, nth, &b0, &b1);
    *b = MF_MIN(n, b0 * 16);
    *e = MF_MIN(n, b1 * 16);
}

static void gemm_kernel(void *arg, int ith, int nth)
{
    const struct gemm *g = arg;
    int64_t b, e;
    if (!g->cols) {
        split16(g->M, ith, nth, &b, &e);
        if (e > b)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(e - b), (int)g->N, (int)g->K, 1.0f,
                        g->x + b * g->K, (int)g->K, g->w, (int)g->K, 1.0f, g->y + b * g->N, (int)g->N);
    } else {
        split16(g->N, ith, nth, &b, &e);
        if (e > b)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->M, (int)(e - b), (int)g->K, 1.0f, g->x,
                        (int)g->K, g->w + b * g->K, (int)g->K, 1.0f, g->y + b, (int)g->N);
    }
}

/* way 0: 1 thread; 1: OpenBLAS 2 threads; 2: pool rows; 3: pool columns */
static double time_gemm(struct mf_pool *pool, struct gemm *g, int way)
{
    mf_nn_set_blas_threads(way == 1 ? 2 : 1);
    g->cols = way == 3;
    double best = 1e30;
    for (int r = 0; r < 8; r++) {
        double t0 = mf_time_now();
        if (way <= 1)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->M, (int)g->N, (int)g->K, 1.0f, g->x, (int)g->K,
                        g->w, (int)g->K, 1.0f, g->y, (int)g->N);
        else
            mf_pool_run(pool, gemm_kernel, g);
        double t = mf_time_now() - t0;
        if (r > 0 && t < best)
            best = t;
    }
    mf_nn_set_blas_threads(1);
    return 2.0 * (double)g->M * (double)g->N * (double)g->K / best * 1e-9;
}

int main(void)
{
    static const int64_t shapes[][3] = {
        /* M, N, K: vision qkv, fc1, fc2 at 224 px (197 tokens) and 384 px (577); text fc1, proj */
        {8 * 197, 2304, 768}, {8 * 197, 3072, 768}, {8 * 197, 768, 3072},
        {8 * 577, 2304, 768}, {8 * 577, 3072, 768}, {8 * 577, 768, 3072},
        {8 * 35, 3072, 768},  {8 * 35, 768, 768},
    };
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf("# bench_gemm_ceiling: OPENBLAS_CORETYPE=%s\n", ct && *ct ? ct : "(auto)");
    double fma = fma_peak_one_core();
    printf("FMA_PEAK one_core_gflops=%.1f two_cores_gflops=%.1f\n", fma, 2 * fma);
    size_t mx = 8 * 577 * 3072, wx = 3072 * 3072;
    float *x = mf_malloc_aligned(mx * sizeof *x), *w = mf_malloc_aligned(wx * sizeof *w);
    float *y = mf_malloc_aligned(mx * sizeof *y);
    struct mf_pool *pool = mf_pool_create(2);
    if (!x || !w || !y || !pool) {
        fprintf(stderr, "bench_gemm_ceiling: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < mx; i++)
        x[i] = (float)((int)(i % 97) - 48) * 0.01f;
    for (size_t i = 0; i < wx; i++)
        w[i] = (float)((int)(i % 89) - 44) * 0.001f;
    memset(y, 0, mx * sizeof *y);
    for (size_t s = 0; s < MF_ARRAY_LEN(shapes); s++) {
        struct gemm g = {shapes[s][0], shapes[s][1], shapes[s][2], x, w, y, false};
        double one = time_gemm(pool, &g, 0), ob = time_gemm(pool, &g, 1);
        double rows = time_gemm(pool, &g, 2), cols = time_gemm(pool, &g, 3);
        printf("SGEMM M=%lld N=%lld K=%lld one_thread=%.1f (%.0f%% of one core's FMA peak) two_threads: "
               "openblas=%.1f pool_rows=%.1f pool_cols=%.1f GFLOP/s\n",
               (long long)g.M, (long long)g.N, (long long)g.K, one, fma > 0 ? 100 * one / fma : 0, ob, rows, cols);
    }
    mf_pool_free(pool);
    mf_free_aligned(x);
    mf_free_aligned(w);
    mf_free_aligned(y);
    return 0;
}
