/*
 * core/rng.h: a small, fast, seedable generator (SplitMix64 seeding xoshiro256**) with uniform
 * and standard-normal draws. Same seed, same sequence, on every platform. One state per thread.
 */
#ifndef MF_CORE_RNG_H
#define MF_CORE_RNG_H

#include "core/common.h"

struct mf_rng {
    uint64_t s[4];
};

void mf_rng_seed(struct mf_rng *r, uint64_t seed);

static inline uint64_t mf_rng_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* Next 64 random bits (inline: the rand criterion draws one per pair of weights). */
static inline uint64_t mf_rng_u64(struct mf_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = mf_rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = mf_rng_rotl(s[3], 45);
    return result;
}
/* Uniform in [0, 1) with 53 random bits. */
double mf_rng_uniform(struct mf_rng *r);
/* Standard normal (Box-Muller, both values used in turn is not attempted: one draw per call). */
double mf_rng_normal(struct mf_rng *r);

#endif
