/*
 * core/pool.h: a fixed set of worker threads that run one kernel at a time, ggml style.
 *
 *     static void kernel(void *arg, int ith, int nth) { ... rows [ith*n/nth, (ith+1)*n/nth) ... }
 *     mf_pool_run(pool, kernel, &args);   // returns when every thread has finished
 *
 * The calling thread is thread 0. Kernels split work by (ith, nth) only and reduce partial results
 * in thread-index order, so a given thread count always gives the same bits. The pool is not
 * reentrant: a kernel must not call mf_pool_run. One pool may be used by one caller at a time.
 */
#ifndef MF_CORE_POOL_H
#define MF_CORE_POOL_H

#include "core/common.h"

struct mf_pool;

typedef void (*mf_pool_fn)(void *arg, int ith, int nth);

/* n_threads >= 1; n_threads == 1 creates no threads. Returns NULL when out of resources. */
struct mf_pool *mf_pool_create(int n_threads);
void mf_pool_free(struct mf_pool *pool);
int mf_pool_size(const struct mf_pool *pool);
/* Runs fn(arg, ith, nth) on every thread, ith = 0..nth-1; pool may be NULL (runs fn(arg, 0, 1)). */
void mf_pool_run(struct mf_pool *pool, mf_pool_fn fn, void *arg);

/* Splits [0, n) into nth nearly equal ranges and returns the ith one. */
static inline void mf_split_range(int64_t n, int ith, int nth, int64_t *begin, int64_t *end)
{
    *begin = n * ith / nth;
    *end = n * (ith + 1) / nth;
}

#endif
