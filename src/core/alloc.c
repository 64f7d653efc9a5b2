/* Allocation hooks with failure injection (core/common.h), plus the assertion handler. */
#include "core/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long fail_after = -1;
static long n_allocs;

void mf_alloc_fail_after(long n) { fail_after = n; }
long mf_alloc_count(void) { return n_allocs; }

static bool should_fail(void)
{
    n_allocs++;
    if (fail_after < 0)
        return false;
    if (fail_after == 0)
        return true;
    fail_after--;
    return false;
}

void *mf_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *mf_calloc(size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *mf_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

void mf_free(void *p) { free(p); }

char *mf_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = mf_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void *mf_malloc_aligned(size_t n)
{
    void *p = NULL;
    if (should_fail())
        return NULL;
    n = (n + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, n ? n : 64) != 0)
        return NULL;
    return p;
}

void mf_free_aligned(void *p) { free(p); }

void mf_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "multiflow: internal assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

double mf_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
