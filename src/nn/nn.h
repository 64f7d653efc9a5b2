/*
 * nn/nn.h: the compute kernels of every model forward (and backward) pass, as _forward/_backward
 * pairs over explicit caller-owned buffers (llm.c style). Shapes are written on every argument.
 *
 *     mf_nn_init(n);                                   // once: pins OpenBLAS to 1 thread
 *     struct mf_pool *pool = mf_pool_create(n);
 *     mf_layernorm_forward(pool, ln, mean, rstd, x, w1, b1, T, C, 1e-6f);   // mean/rstd may be NULL
 *     mf_linear_forward(pool, qkv, ln, C, wqkv, bqkv, T, C, 3 * C);
 *     void *scr = mf_malloc_aligned(mf_attention_scratch_size(n, N, N, 64));
 *     mf_attention_forward(pool, ctx, NULL, qkv, 3 * C, qkv + C, 3 * C, qkv + 2 * C, 3 * C,
 *                          NULL, false, B, N, N, 12, 64, scr);
 *
 * Conventions. f32 everywhere. Forward outputs are overwritten. In _backward, the gradient of
 * the input activation (dx) is OVERWRITTEN and parameter gradients (dw, db) are ACCUMULATED (+=),
 * except mf_attention_backward whose dq/dk/dv accumulate (they usually share one fused buffer).
 * Any gradient pointer may be NULL to skip it. Outputs must not alias inputs unless stated.
 *
 * Threads. OpenBLAS runs single-threaded (mf_nn_init); GEMMs (mf_linear_*) are cut into a grid
 * of row blocks that depends only on the shape, one single-threaded sgemm per block, and the pool
 * shares the blocks among its workers (linear.c explains why the grid may not follow the thread
 * count). Every other kernel runs on the pool too; the attention core uses its own AVX2
 * micro-kernel inside the pool workers, so BLAS threads never stack on ours. No kernel here has
 * arithmetic that depends on how work is split: every result is the same bits for ANY thread
 * count (on one machine; other OpenBLAS core types may round differently).
 *
 * Thread safety: the functions keep no state except the process-wide OpenBLAS thread count; two
 * threads may run kernels concurrently on different pools and buffers.
 */
#ifndef MF_NN_NN_H
#define MF_NN_NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"

/* Sets the OpenBLAS thread count used by every GEMM issued from the calling thread (n >= 1).
 * Idempotent; call once at start-up with the same n as the pool. */
void mf_nn_init(int n_threads);
/* Changes the OpenBLAS thread count (process-wide). Only code that calls sgemm from inside pool
 * workers needs this (set 1 before, restore after); the kernels here never do. */
void mf_nn_set_blas_threads(int n);
int mf_nn_blas_threads(void);

/* y[T,OC] = x[T,IC] W[OC,IC]^T + b[OC] (b may be NULL). x rows may be strided: ldx >= IC. */
void mf_linear_forward(struct mf_pool *pool, float *y, const float *x, int64_t ldx, const float *w,
                       const float *b, int64_t T, int64_t IC, int64_t OC);
/* dx[T,IC] = dy W (overwritten), dw[OC,IC] += dy^T x, db[OC] += sum_t dy; any may be NULL. */
/* y[T,OC] = res[T,OC] + x W^T + b (res may equal y: the residual add fused into the GEMM's
 * accumulation; b and res may be NULL). */
void mf_linear_forward_res(struct mf_pool *pool, float *y, const float *res, const float *x, int64_t ldx,
                           const float *w, const float *b, int64_t T, int64_t IC, int64_t OC);
void mf_linear_backward(struct mf_pool *pool, float *dx, float *dw, float *db, const float *dy,
                        const float *x, int64_t ldx, const float *w, int64_t T, int64_t IC,
                        int64_t OC);
/* Blocks (independent sgemm calls) a GEMM of `macs` multiply-adds is cut into along a dimension of
 * n rows: rows of y and dx (n = T), output features of dW (n = OC). Depends on the shape only. */
int64_t mf_linear_grid_blocks(int64_t n, int64_t macs);

/* LayerNorm over C (biased variance, eps added to var), y[T,C]; mean[T], rstd[T] saved when not
 * NULL. y may equal x. */
void mf_layernorm_forward(struct mf_pool *pool, float *y, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int64_t T, int64_t C, float eps);
/* dx[T,C] overwritten, dw[C] += , db[C] += ; mean/rstd from the forward. dx must not alias dy. */
void mf_layernorm_backward(struct mf_pool *pool, float *dx, float *dw, float *db, const float *dy,
                           const float *x, const float *w, const float *mean, const float *rstd,
                           int64_t T, int64_t C);

/* Exact GELU 0.5 x (1 + erf(x / sqrt 2)); y may equal x. Backward: dx = dy g'(x), dx may equal dy. */
void mf_gelu_forward(struct mf_pool *pool, float *y, const float *x, int64_t n);
void mf_gelu_backward(struct mf_pool *pool, float *dx, const float *dy, const float *x, int64_t n);
/* QuickGELU x sigmoid(1.702 x); same aliasing rules as GELU. */
void mf_quickgelu_forward(struct mf_pool *pool, float *y, const float *x, int64_t n);
void mf_quickgelu_backward(struct mf_pool *pool, float *dx, const float *dy, const float *x,
                           int64_t n);
/* Fused epilogue of a bias-free GEMM, in place: y[T,C] = act(y + b[C]). For training keep the
 * pre-activation instead (linear with bias, then mf_gelu_forward into another buffer). */
/* y[T,C] += b[C] (the bias add of a GEMM run without bias; same rounding as the fused forms). */
void mf_bias_add_forward(struct mf_pool *pool, float *y, const float *b, int64_t T, int64_t C);
void mf_bias_gelu_forward(struct mf_pool *pool, float *y, const float *b, int64_t T, int64_t C);
void mf_bias_quickgelu_forward(struct mf_pool *pool, float *y, const float *b, int64_t T,
                               int64_t C);

/* Residual add y[n] = a[n] + b[n] (y may equal a or b). Backward: da += dy, db += dy (NULL skips). */
void mf_add_forward(struct mf_pool *pool, float *y, const float *a, const float *b, int64_t n);
void mf_add_backward(struct mf_pool *pool, float *da, float *db, const float *dy, int64_t n);

/*
 * Multi-head attention core (scores, softmax, context). Heads are contiguous column blocks of dh:
 *   q row (b, t): q + (b*Tq + t)*ldq + h*dh;  k row: k + (b*Tk + t)*ldk + h*dh;  v likewise (ldv)
 * so a fused qkv buffer [B,T,3C] is passed as q=qkv, k=qkv+C, v=qkv+2C, ldq=ldk=ldv=3C.
 * out[B,Tq,H*dh] contiguous. Scores are scaled by 1/sqrt(dh).
 * key_mask[B,Tk] (1 = real, 0 = padding) or NULL; causal: key j > query i is masked (needs the
 * query and key positions to line up: Tq <= Tk, query i is position i). Masked keys are skipped,
 * which is bit-identical to adding -10000 (spec models.md §1.2); a query with every key masked
 * gets what the additive mask gives, a softmax over all Tk keys.
 * att[B,H,Tq,Tk] receives the probabilities when not NULL (masked entries 0); backward needs it.
 * scratch: at least mf_attention_scratch_size(mf_pool_size(pool), Tq, Tk, dh) bytes, 64-aligned
 * (mf_malloc_aligned or an arena); one size serves both directions.
 */
size_t mf_attention_scratch_size(int n_threads, int64_t Tq, int64_t Tk, int64_t dh);
void mf_attention_forward(struct mf_pool *pool, float *out, float *att, const float *q, int64_t ldq,
                          const float *k, int64_t ldk, const float *v, int64_t ldv,
                          const int32_t *key_mask, bool causal, int64_t B, int64_t Tq, int64_t Tk,
                          int64_t H, int64_t dh, void *scratch);
/* dq, dk, dv (same strides as q, k, v) ACCUMULATE; any may be NULL. dout[B,Tq,H*dh],
 * att[B,H,Tq,Tk] from the forward (required). */
void mf_attention_backward(struct mf_pool *pool, float *dq, float *dk, float *dv, const float *dout,
                           const float *att, const float *q, int64_t ldq, const float *k,
                           int64_t ldk, const float *v, int64_t ldv, const int32_t *key_mask,
                           bool causal, int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t dh,
                           void *scratch);

/* Row softmax y[rows,n] (max subtracted; y may equal x) and L2 normalisation
 * y = x / max(||x||, eps) (F.normalize; eps = 0 gives CLIP's plain x / ||x||). Single-threaded:
 * meant for heads (ITM, ITC features), not for hot loops. */
void mf_softmax_rows(float *y, const float *x, int64_t rows, int64_t n);
void mf_l2_normalize_rows(float *y, const float *x, int64_t rows, int64_t n, float eps);

/* Patch embedding im2col: img[B,3,R,R] (CHW) -> patches[B, G*G, 3*P*P] in (c, ky, kx) order,
 * G = R / P (R % P == 0), rows in grid row-major order (spec §1.3); then the caller runs
 * mf_linear_forward with the conv weight flattened to [d, 3*P*P]. */
void mf_patchify(struct mf_pool *pool, float *patches, const float *img, int64_t B, int64_t R,
                 int64_t P);

#endif
