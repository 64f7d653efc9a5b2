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
uint64_t mf_rng_u64(struct mf_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double mf_rng_uniform(struct mf_rng *r);
/* Standard normal (Box-Muller, both values used in turn is not attempted: one draw per call). */
double mf_rng_normal(struct mf_rng *r);

#endif
