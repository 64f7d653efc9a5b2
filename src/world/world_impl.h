/*
 * world/world_impl.h: what the world's files share: the per-(seed, split, index) random streams,
 * integer draws, the colour table and the FNV-1a hash. Internal to src/world/.
 */
#ifndef MF_WORLD_IMPL_H
#define MF_WORLD_IMPL_H

#include "core/common.h"
#include "core/rng.h"
#include "multiflow/world.h"

/* Stream tags: a scene, its captions and its questions draw from independent streams. */
enum { WORLD_STREAM_SCENE = 1, WORLD_STREAM_CAPTION = 2, WORLD_STREAM_QUESTION = 3 };

/* SplitMix64's finaliser: the mixing step of every seed derivation and of the noise texture. */
static inline uint64_t world_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The seed of stream `tag` of item (split, index, attempt) of a world with this seed. */
static inline uint64_t world_seed(uint64_t seed, int split, int64_t index, int attempt, int tag)
{
    uint64_t h = world_mix64(seed);
    h = world_mix64(h ^ (uint64_t)split);
    h = world_mix64(h ^ (uint64_t)index);
    return world_mix64(h ^ ((uint64_t)attempt << 8 | (uint64_t)tag));
}
static inline void world_rng(struct mf_rng *r, uint64_t seed, int split, int64_t index, int attempt, int tag)
{
    mf_rng_seed(r, world_seed(seed, split, index, attempt, tag));
}

/* Uniform integer in [0, n) (n small: the modulo bias is below 2^-58 and fixed by the seed anyway). */
static inline int world_u(struct mf_rng *r, int n) { return (int)(mf_rng_u64(r) % (uint64_t)n); }
/* Uniform integer in [lo, hi]. */
static inline int world_range(struct mf_rng *r, int lo, int hi) { return lo + world_u(r, hi - lo + 1); }

static inline uint64_t world_fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
#define WORLD_FNV_INIT 0xcbf29ce484222325ull

/* Base HSV of each colour: hue in degrees, saturation and value in 0..255. */
struct world_hsv {
    int h, s, v;
};
extern const struct world_hsv world_color_hsv[MF_WORLD_N_COLORS];
/* Integer HSV -> RGB (docs/world.md gives the formula); h wraps into [0, 360), s and v clamp to 0..255. */
void world_hsv_rgb(int h, int s, int v, uint8_t rgb[3]);

/* Position words of a cell: vertical "top"/"bottom"/NULL, horizontal "left"/"right"/NULL; the
 * centre cell has both NULL. */
void world_pos_words(int pos, const char **vert, const char **horiz);

#endif
