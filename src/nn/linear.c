/*
 * nn/linear.c: fully connected layer y = x W^T + b and its backward, plus the OpenBLAS thread
 * setting. GEMMs run on the calling thread with OpenBLAS's own threads; the bias fill and the
 * bias-gradient column sums run on our pool (while BLAS is idle), so the two never overlap.
 *
 * Deliberately not: our own GEMM (OpenBLAS SGEMM is the peak we measure against), sparse or N:M
 * kernels (later), accumulation into dx (dx is overwritten; see nn.h).
 *
 * Reference: llm.c train_gpt2.c matmul_forward/matmul_backward (same layout: W is [OC, IC]).
 */
#include "nn/nn.h"

#include <cblas.h>
#include <limits.h>

#include "core/common.h"

static int g_blas_threads = 0;

void mf_nn_set_blas_threads(int n)
{
    if (n < 1)
        n = 1;
    if (n == g_blas_threads)
        return;
    openblas_set_num_threads(n);
    g_blas_threads = n;
}

int mf_nn_blas_threads(void) { return g_blas_threads; }

void mf_nn_init(int n_threads) { mf_nn_set_blas_threads(n_threads); }

struct bias_fill_arg {
    float *y;          /* (T, OC) */
    const float *b;    /* (OC) */
    int64_t T, OC;
};

static void bias_fill_kernel(void *p, int ith, int nth)
{
    struct bias_fill_arg *a = p;
    int64_t t0, t1;
    mf_split_range(a->T, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        float *row = a->y + t * a->OC;
        for (int64_t o = 0; o < a->OC; o++)
            row[o] = a->b[o];
    }
}

void mf_linear_forward(struct mf_pool *pool, float *y, const float *x, int64_t ldx, const float *w,
                       const float *b, int64_t T, int64_t IC, int64_t OC)
{
    MF_ASSERT(ldx >= IC && T <= INT_MAX && IC <= INT_MAX && OC <= INT_MAX && ldx <= INT_MAX);
    if (T <= 0 || OC <= 0)
        return;
    if (b) {
        /* the bias goes in first and the GEMM accumulates onto it (beta = 1): one pass less */
        struct bias_fill_arg a = {y, b, T, OC};
        mf_pool_run(pool, bias_fill_kernel, &a);
    }
    if (IC <= 0) {
        if (!b)
            for (int64_t i = 0; i < T * OC; i++)
                y[i] = 0.0f;
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)OC, (int)IC, 1.0f, x,
                (int)ldx, w, (int)IC, b ? 1.0f : 0.0f, y, (int)OC);
}

struct colsum_arg {
    float *db;         /* (OC) += */
    const float *dy;   /* (T, OC) */
    int64_t T, OC;
};

/* db[o] += sum_t dy[t, o], columns split over threads, rows summed in order 0..T-1, so the
 * result does not depend on the thread count. */
static void colsum_kernel(void *p, int ith, int nth)
{
    struct colsum_arg *a = p;
    int64_t o0, o1;
    mf_split_range(a->OC, ith, nth, &o0, &o1);
    /* rows outer for contiguous access; each db[o] still sees t = 0, 1, ... in order */
    for (int64_t t = 0; t < a->T; t++) {
        const float *row = a->dy + t * a->OC;
        for (int64_t o = o0; o < o1; o++)
            a->db[o] += row[o];
    }
}

void mf_linear_backward(struct mf_pool *pool, float *dx, float *dw, float *db, const float *dy,
                        const float *x, int64_t ldx, const float *w, int64_t T, int64_t IC,
                        int64_t OC)
{
    MF_ASSERT(ldx >= IC && T <= INT_MAX && IC <= INT_MAX && OC <= INT_MAX && ldx <= INT_MAX);
    if (T <= 0)
        return;
    if (dx && IC > 0) {
        if (OC > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)IC, (int)OC, 1.0f,
                        dy, (int)OC, w, (int)IC, 0.0f, dx, (int)IC);
        else
            for (int64_t i = 0; i < T * IC; i++)
                dx[i] = 0.0f;
    }
    if (dw && IC > 0 && OC > 0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)OC, (int)IC, (int)T, 1.0f, dy,
                    (int)OC, x, (int)ldx, 1.0f, dw, (int)IC);
    if (db && OC > 0) {
        struct colsum_arg a = {db, dy, T, OC};
        mf_pool_run(pool, colsum_kernel, &a);
    }
}
