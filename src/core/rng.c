/* xoshiro256** seeded by SplitMix64 (Blackman and Vigna); Box-Muller normals (core/rng.h). */
#include "core/rng.h"

#include <math.h>

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void mf_rng_seed(struct mf_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}


double mf_rng_uniform(struct mf_rng *r) { return (double)(mf_rng_u64(r) >> 11) * 0x1.0p-53; }

double mf_rng_normal(struct mf_rng *r)
{
    double u1 = mf_rng_uniform(r), u2 = mf_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
