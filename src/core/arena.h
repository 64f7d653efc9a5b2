/*
 * core/arena.h: a bump allocator for one forward pass. Allocations are 64-byte aligned, live until
 * mf_arena_reset, and are never freed one by one. The arena grows by chaining blocks when a
 * request does not fit, so a planning pass is an optimisation, not a correctness requirement;
 * mf_arena_high_water tells the caller how big the first block should be next time.
 */
#ifndef MF_CORE_ARENA_H
#define MF_CORE_ARENA_H

#include "core/common.h"

struct mf_arena_block;

struct mf_arena {
    struct mf_arena_block *head; /* current block; older blocks chained behind it */
    size_t used_total;           /* bytes handed out since the last reset */
    size_t high_water;           /* max used_total ever */
    size_t block_size;           /* minimum size of a new block */
};

void mf_arena_init(struct mf_arena *a, size_t block_size);
void mf_arena_free(struct mf_arena *a);
/* Returns NULL when out of memory. Memory is uninitialised. */
void *mf_arena_alloc(struct mf_arena *a, size_t n);
/* Typed helper: n floats. */
static inline float *mf_arena_f32(struct mf_arena *a, int64_t n)
{
    return (float *)mf_arena_alloc(a, (size_t)n * sizeof(float));
}
/* Forgets every allocation; keeps (and merges into one) the memory for reuse. */
void mf_arena_reset(struct mf_arena *a);
size_t mf_arena_high_water(const struct mf_arena *a);

#endif
