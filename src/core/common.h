/*
 * core/common.h: what every library file includes: allocation hooks, assertions, small helpers.
 *
 * All heap memory goes through mf_malloc/mf_calloc/mf_realloc/mf_free so tests can make the
 * Nth allocation fail (mf_alloc_fail_after) and check that loaders clean up and report NOMEM.
 * MF_ASSERT is for broken internal invariants only; user input never reaches it.
 */
#ifndef MF_CORE_COMMON_H
#define MF_CORE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "multiflow/status.h"
#include "multiflow/tensor.h"

void *mf_malloc(size_t n);
void *mf_calloc(size_t count, size_t size);
void *mf_realloc(void *p, size_t n);
void mf_free(void *p);
char *mf_strdup(const char *s);
/* 64-byte aligned allocation for kernels; free with mf_free_aligned. */
void *mf_malloc_aligned(size_t n);
void mf_free_aligned(void *p);

/* Test hook: the (n+1)th allocation from now on fails (n < 0 disables). Not thread-safe. */
void mf_alloc_fail_after(long n);
/* Number of allocations made through the hooks so far (for the failure sweep). */
long mf_alloc_count(void);

void mf_assert_fail(const char *expr, const char *file, int line);
#define MF_ASSERT(x) do { if (!(x)) mf_assert_fail(#x, __FILE__, __LINE__); } while (0)

#define MF_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MF_MAX(a, b) ((a) > (b) ? (a) : (b))
#define MF_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool mf_mul_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool mf_add_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* Monotonic clock in seconds. */
double mf_time_now(void);

#endif
