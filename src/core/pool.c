/* Thread pool (core/pool.h): workers sleep on a condition variable between kernels; a generation
 * counter tells them a new kernel has been posted, and a countdown tells the caller they are done. */
#include "core/pool.h"

#include <pthread.h>

struct mf_pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    mf_pool_fn fn;
    void *arg;
    unsigned long generation;
    int pending;
    bool stop;
};

struct worker_arg {
    struct mf_pool *pool;
    int ith;
};

static void *worker(void *p)
{
    struct worker_arg wa = *(struct worker_arg *)p;
    struct mf_pool *pool = wa.pool;
    mf_free(p);
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&pool->mu);
        while (!pool->stop && pool->generation == seen)
            pthread_cond_wait(&pool->cv_work, &pool->mu);
        if (pool->stop) {
            pthread_mutex_unlock(&pool->mu);
            return NULL;
        }
        seen = pool->generation;
        mf_pool_fn fn = pool->fn;
        void *arg = pool->arg;
        pthread_mutex_unlock(&pool->mu);

        fn(arg, wa.ith, pool->n_threads);

        pthread_mutex_lock(&pool->mu);
        if (--pool->pending == 0)
            pthread_cond_signal(&pool->cv_done);
        pthread_mutex_unlock(&pool->mu);
    }
}

struct mf_pool *mf_pool_create(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    struct mf_pool *pool = mf_calloc(1, sizeof *pool);
    if (!pool)
        return NULL;
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv_work, NULL);
    pthread_cond_init(&pool->cv_done, NULL);
    if (n_threads > 1) {
        pool->threads = mf_calloc((size_t)n_threads, sizeof *pool->threads);
        if (!pool->threads)
            goto fail;
        for (int i = 1; i < n_threads; i++) {
            struct worker_arg *wa = mf_malloc(sizeof *wa);
            if (!wa)
                goto fail_threads;
            wa->pool = pool;
            wa->ith = i;
            if (pthread_create(&pool->threads[i], NULL, worker, wa) != 0) {
                mf_free(wa);
                goto fail_threads;
            }
            continue;
        fail_threads:
            pool->n_threads = i; /* threads 1..i-1 exist; stop them */
            mf_pool_free(pool);
            return NULL;
        }
    }
    return pool;
fail:
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv_work);
    pthread_cond_destroy(&pool->cv_done);
    mf_free(pool);
    return NULL;
}

void mf_pool_free(struct mf_pool *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->mu);
    pool->stop = true;
    pthread_cond_broadcast(&pool->cv_work);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i < pool->n_threads; i++)
        pthread_join(pool->threads[i], NULL);
    mf_free(pool->threads);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv_work);
    pthread_cond_destroy(&pool->cv_done);
    mf_free(pool);
}

int mf_pool_size(const struct mf_pool *pool) { return pool ? pool->n_threads : 1; }

void mf_pool_run(struct mf_pool *pool, mf_pool_fn fn, void *arg)
{
    if (!pool || pool->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&pool->mu);
    pool->fn = fn;
    pool->arg = arg;
    pool->pending = pool->n_threads - 1;
    pool->generation++;
    pthread_cond_broadcast(&pool->cv_work);
    pthread_mutex_unlock(&pool->mu);

    fn(arg, 0, pool->n_threads);

    pthread_mutex_lock(&pool->mu);
    while (pool->pending > 0)
        pthread_cond_wait(&pool->cv_done, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
}
