/* Bump allocator (core/arena.h). On reset, a chain of blocks is replaced by one block of the
 * high-water size, so steady-state passes allocate nothing. */
#include "core/arena.h"

struct mf_arena_block {
    struct mf_arena_block *prev;
    size_t size, used;
    unsigned char *mem;
};

void mf_arena_init(struct mf_arena *a, size_t block_size)
{
    a->head = NULL;
    a->used_total = 0;
    a->high_water = 0;
    a->block_size = block_size ? block_size : (1u << 20);
}

static void free_chain(struct mf_arena_block *b)
{
    while (b) {
        struct mf_arena_block *p = b->prev;
        mf_free_aligned(b->mem);
        mf_free(b);
        b = p;
    }
}

void mf_arena_free(struct mf_arena *a)
{
    free_chain(a->head);
    a->head = NULL;
    a->used_total = 0;
}

static struct mf_arena_block *new_block(size_t size)
{
    struct mf_arena_block *b = mf_malloc(sizeof *b);
    if (!b)
        return NULL;
    b->mem = mf_malloc_aligned(size);
    if (!b->mem) {
        mf_free(b);
        return NULL;
    }
    b->size = size;
    b->used = 0;
    b->prev = NULL;
    return b;
}

void *mf_arena_alloc(struct mf_arena *a, size_t n)
{
    n = (n + 63) & ~(size_t)63;
    if (!a->head || a->head->size - a->head->used < n) {
        size_t sz = MF_MAX(n, a->block_size);
        struct mf_arena_block *b = new_block(sz);
        if (!b)
            return NULL;
        b->prev = a->head;
        a->head = b;
    }
    void *p = a->head->mem + a->head->used;
    a->head->used += n;
    a->used_total += n;
    if (a->used_total > a->high_water)
        a->high_water = a->used_total;
    return p;
}

void mf_arena_reset(struct mf_arena *a)
{
    if (a->head && a->head->prev) {
        /* More than one block: replace them by one block big enough for the whole pass. */
        size_t want = a->high_water;
        free_chain(a->head);
        a->head = new_block(MF_MAX(want, a->block_size)); /* NULL is fine: next alloc retries */
    }
    if (a->head)
        a->head->used = 0;
    a->used_total = 0;
}

size_t mf_arena_high_water(const struct mf_arena *a) { return a->high_water; }
