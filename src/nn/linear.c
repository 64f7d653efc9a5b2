/*
 * nn/linear.c: fully connected layer y = x W^T + b and its backward.
 *
 * Threading (STYLE.md "never stack BLAS threads on ours"): OpenBLAS always runs single-threaded
 * and our pool runs the GEMM as independent single-threaded cblas_sgemm calls. Pool workers sleep
 * on a condition variable between kernels, whereas OpenBLAS's own threads spin-yield, which costs
 * whole cores of system time on small GEMMs (measured: `eval retrieval` on the tiny model, 2
 * threads, 8 s of sys time with OpenBLAS threads, none with this split).
 *
 * Determinism by construction: the calls do not depend on the thread count. OpenBLAS does not
 * promise that rows computed alone get the bits they get inside a larger call: its edge tiles
 * accumulate differently from full ones (the Haswell/Zen kernels, whose N tile is 12 rows: row
 * blocks of 16 computed alone differ from the same rows in one call, blocks of 48 do not), and
 * Debian's 0.3.21 carries "small matrix" and "direct" sgemm kernels that it picks by size. A
 * split that follows the thread count therefore changes results with --threads.
 * So every GEMM is cut by mf_linear_grid_blocks()/grid_bounds() into blocks whose boundaries depend only on
 * the shape: up to GRID_MAX blocks along the split dimension (rows of y and dx, output features
 * of dW), each a whole number of GRID_UNIT rows except the last. Each block is one sgemm call;
 * the pool only decides which worker makes which calls, and a single thread makes the same calls
 * in turn. GRID_UNIT (48 = lcm of the 12- and 16-row tiles) keeps every block but the last free
 * of edge tiles; GRID_MAX (12 = divisible by 1, 2, 3, 4, 6 threads) keeps the workers balanced
 * to within one unit. The cost is one repacking of the other operand per block (a few %, see
 * bench/README.md). tests/nn/test_nn.c (linear_threads_*) compares 1, 2, 3 and 8 threads byte
 * for byte on shapes that take the grid, and scripts/test.sh runs it under several
 * OPENBLAS_CORETYPE values.
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

/* The block grid along a dimension of n rows (see the file comment): a function of the shape only. */
#define GRID_UNIT 48
#define GRID_MAX 12

int64_t mf_linear_grid_blocks(int64_t n, int64_t macs)
{
    if (macs < MIN_SPLIT_MACS || n < 2 * GRID_UNIT)
        return 1;
    const int64_t units = (n + GRID_UNIT - 1) / GRID_UNIT;
    return MF_MIN(units, (int64_t)GRID_MAX);
}

/* rows [b, e) of block i of nb */
static void grid_bounds(int64_t n, int64_t nb, int64_t i, int64_t *b, int64_t *e)
{
    const int64_t units = (n + GRID_UNIT - 1) / GRID_UNIT;
    *b = MF_MIN(n, units * i / nb * GRID_UNIT);
    *e = MF_MIN(n, units * (i + 1) / nb * GRID_UNIT);
}

struct fwd_arg {
    float *y;
    const float *x, *w, *b;
    const float *res; /* (T, OC) residual added to the output, or NULL (may equal y) */
    int64_t ldx, T, IC, OC;
    int64_t nb; /* row blocks (mf_linear_grid_blocks) */
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
    int64_t i0, i1, t0, t1;
    mf_split_range(a->nb, ith, nth, &i0, &i1);
    for (int64_t i = i0; i < i1; i++) {
        grid_bounds(a->T, a->nb, i, &t0, &t1);
        fwd_rows(a, t0, t1);
    }
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
    struct fwd_arg a = {y, x, w, b, res, ldx, T, IC, OC, mf_linear_grid_blocks(T, T * IC * OC)};
    if (a.nb == 1)
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
    int64_t nbt, nbo; /* blocks of dx rows and of dW rows (mf_linear_grid_blocks) */
};

/* dx rows [t0,t1) = dy W, one call per block of the row grid */
static void bwd_dx_blocks(const struct bwd_arg *a, int64_t i0, int64_t i1)
{
    for (int64_t i = i0; i < i1; i++) {
        int64_t t0, t1;
        grid_bounds(a->T, a->nbt, i, &t0, &t1);
        if (t1 > t0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(t1 - t0), (int)a->IC, (int)a->OC, 1.0f,
                        a->dy + t0 * a->OC, (int)a->OC, a->w, (int)a->IC, 0.0f, a->dx + t0 * a->IC, (int)a->IC);
    }
}

/* dW rows [o0,o1) += dy[:, o0:o1]^T x, one call per block of the output-feature grid */
static void bwd_dw_blocks(const struct bwd_arg *a, int64_t i0, int64_t i1)
{
    for (int64_t i = i0; i < i1; i++) {
        int64_t o0, o1;
        grid_bounds(a->OC, a->nbo, i, &o0, &o1);
        if (o1 > o0)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(o1 - o0), (int)a->IC, (int)a->T, 1.0f,
                        a->dy + o0, (int)a->OC, a->x, (int)a->ldx, 1.0f, a->dw + o0 * a->IC, (int)a->IC);
    }
}

static void bwd_kernel(void *p, int ith, int nth)
{
    const struct bwd_arg *a = p;
    int64_t i0, i1;
    if (a->dx) {
        mf_split_range(a->nbt, ith, nth, &i0, &i1);
        bwd_dx_blocks(a, i0, i1);
    }
    if (a->dw) {
        mf_split_range(a->nbo, ith, nth, &i0, &i1);
        bwd_dw_blocks(a, i0, i1);
    }
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
        const int64_t macs = T * IC * OC;
        struct bwd_arg a = {dx, dw, dy, x, w, ldx, T, IC, OC, mf_linear_grid_blocks(T, macs), mf_linear_grid_blocks(OC, macs)};
        if (a.nbt == 1 && a.nbo == 1)
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
