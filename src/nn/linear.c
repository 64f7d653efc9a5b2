/*
 * nn/linear.c: fully connected layer y = x W^T + b and its backward.
 *
 * Threading (STYLE.md "never stack BLAS threads on ours"): OpenBLAS always runs single-threaded
 * and our pool splits each GEMM into independent blocks, one cblas_sgemm per thread: forward and
 * dx by rows of the output, dW by its rows (output features). Pool workers sleep on a condition
 * variable between kernels, whereas OpenBLAS's own threads spin-yield, which costs whole cores of
 * system time on small GEMMs (measured: `eval retrieval` on the tiny model, 2 threads, 8 s of sys
 * time with OpenBLAS threads, none with this split). GEMMs under MIN_SPLIT_FLOPS run on the
 * calling thread. The split depends only on the thread count, so a given thread count always gives
 * the same bits.
 *
 * Deliberately not: our own GEMM (OpenBLAS SGEMM is the peak we measure against), sparse or N:M
 * kernels (later), accumulation into dx (dx is overwritten; see nn.h).
 *
 * Reference: llm.c train_gpt2.c matmul_forward/matmul_backward (same layout: W is [OC, IC]).
 */
#include "nn/nn.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "core/common.h"

/* Below this many multiply-adds a GEMM is not worth waking the pool for. */
#define MIN_SPLIT_MACS ((int64_t)1 << 20)

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

void mf_nn_init(int n_threads)
{
    (void)n_threads; /* our pool provides the parallelism; see the file comment */
    mf_nn_set_blas_threads(1);
}

/* Row blocks are multiples of 16 rows so every thread's GEMM keeps whole register tiles. */
static void split_rows(int64_t n, int ith, int nth, int64_t *b, int64_t *e)
{
    int64_t blocks = (n + 15) / 16, b0, b1;
    mf_split_range(blocks, ith, nth, &b0, &b1);
    *b = MF_MIN(n, b0 * 16);
    *e = MF_MIN(n, b1 * 16);
}

struct fwd_arg {
    float *y;
    const float *x, *w, *b;
    const float *res; /* (T, OC) residual added to the output, or NULL (may equal y) */
    int64_t ldx, T, IC, OC;
};

static void fwd_rows(const struct fwd_arg *a, int64_t t0, int64_t t1)
{
    if (t1 <= t0)
        return;
    float *y = a->y + t0 * a->OC;
    const float *r = a->res ? a->res + t0 * a->OC : NULL;
    if (r && a->b)
        for (int64_t t = t0; t < t1; t++, y += a->OC, r += a->OC)
            for (int64_t o = 0; o < a->OC; o++)
                y[o] = r[o] + a->b[o];
    else if (r && r != y)
        memcpy(y, r, (size_t)((t1 - t0) * a->OC) * sizeof(float));
    else if (a->b)
        for (int64_t t = t0; t < t1; t++, y += a->OC)
            for (int64_t o = 0; o < a->OC; o++)
                y[o] = a->b[o];
    /* residual and bias are in place and the GEMM accumulates onto them (beta = 1): the bias fill
     * and the residual add cost one pass together instead of two */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(t1 - t0), (int)a->OC, (int)a->IC, 1.0f,
                a->x + t0 * a->ldx, (int)a->ldx, a->w, (int)a->IC, (a->b || a->res) ? 1.0f : 0.0f,
                a->y + t0 * a->OC, (int)a->OC);
}

static void fwd_kernel(void *p, int ith, int nth)
{
    const struct fwd_arg *a = p;
    int64_t t0, t1;
    split_rows(a->T, ith, nth, &t0, &t1);
    fwd_rows(a, t0, t1);
}

void mf_linear_forward_res(struct mf_pool *pool, float *y, const float *res, const float *x, int64_t ldx,
                           const float *w, const float *b, int64_t T, int64_t IC, int64_t OC)
{
    MF_ASSERT(ldx >= IC && T <= INT_MAX && IC <= INT_MAX && OC <= INT_MAX && ldx <= INT_MAX);
    if (T <= 0 || OC <= 0)
        return;
    if (IC <= 0) {
        for (int64_t t = 0; t < T; t++)
            for (int64_t o = 0; o < OC; o++)
                y[t * OC + o] = (res ? res[t * OC + o] : 0.0f) + (b ? b[o] : 0.0f);
        return;
    }
    struct fwd_arg a = {y, x, w, b, res, ldx, T, IC, OC};
    if (mf_pool_size(pool) == 1 || T * IC * OC < MIN_SPLIT_MACS || T < 32)
        fwd_rows(&a, 0, T);
    else
        mf_pool_run(pool, fwd_kernel, &a);
}

void mf_linear_forward(struct mf_pool *pool, float *y, const float *x, int64_t ldx, const float *w,
                       const float *b, int64_t T, int64_t IC, int64_t OC)
{
    mf_linear_forward_res(pool, y, NULL, x, ldx, w, b, T, IC, OC);
}

struct bwd_arg {
    float *dx, *dw;
    const float *dy, *x, *w;
    int64_t ldx, T, IC, OC;
};

/* dx rows [t0,t1) = dy W; dW rows [o0,o1) += dy[:, o0:o1]^T x */
static void bwd_kernel(void *p, int ith, int nth)
{
    const struct bwd_arg *a = p;
    int64_t t0, t1, o0, o1;
    split_rows(a->T, ith, nth, &t0, &t1);
    split_rows(a->OC, ith, nth, &o0, &o1);
    if (a->dx && t1 > t0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(t1 - t0), (int)a->IC, (int)a->OC, 1.0f,
                    a->dy + t0 * a->OC, (int)a->OC, a->w, (int)a->IC, 0.0f, a->dx + t0 * a->IC, (int)a->IC);
    if (a->dw && o1 > o0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(o1 - o0), (int)a->IC, (int)a->T, 1.0f, a->dy + o0,
                    (int)a->OC, a->x, (int)a->ldx, 1.0f, a->dw + o0 * a->IC, (int)a->IC);
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
    if (IC > 0 && OC > 0 && (dx || dw)) {
        struct bwd_arg a = {dx, dw, dy, x, w, ldx, T, IC, OC};
        if (mf_pool_size(pool) == 1 || T * IC * OC < MIN_SPLIT_MACS)
            bwd_kernel(&a, 0, 1);
        else
            mf_pool_run(pool, bwd_kernel, &a);
    } else if (dx && IC > 0) {
        for (int64_t i = 0; i < T * IC; i++)
            dx[i] = 0.0f;
    }
    if (db && OC > 0) {
        struct colsum_arg a = {db, dy, T, OC};
        mf_pool_run(pool, colsum_kernel, &a);
    }
}
