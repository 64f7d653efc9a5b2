/*
 * prune/score.h: score generators shared by criteria.c (full score arrays, --save-scores) and
 * select.c (masks computed without materialising one float per weight). Internal to src/prune.
 *
 * A generator holds small per-tensor state (l2 norms, MULTIFLOW o and p vectors, the rand seed) and
 * recomputes the score of any block of elements on demand, with exactly the arithmetic of
 * mf_prune_scores, so masks from either path are bit-identical. LAMP is not a generator (its score
 * needs the tensor's sorted squares): mf_lamp_walk visits its distinct magnitudes instead.
 */
#ifndef MF_PRUNE_SCORE_H
#define MF_PRUNE_SCORE_H

#include <math.h>

#include "core/rng.h"
#include "multiflow/prune.h"

/* Elements per rand block (one generator seed per block) and per generator call. */
#define MF_SCORE_BLOCK 16384

enum mf_score_kind { MF_SCORE_ABS, MF_SCORE_L2, MF_SCORE_RAND, MF_SCORE_MFLOW };

struct mf_score_gen {
    enum mf_score_kind kind;
    const struct mf_prune_set *set;
    uint64_t seed;
    double *norm;   /* (set->n) l2: Frobenius norm per tensor */
    double **o;     /* (set->n) -> (out) MULTIFLOW output importance */
    double **p;     /* (set->n) -> (in) MULTIFLOW input importance */
    double *op;     /* one block holding every o and p */
};

/* Validates the set (shapes, element limit) for any method. */
enum mf_status mf_score_check_set(const struct mf_prune_set *set, struct mf_err *err);
/* Prepares a generator for method (not LAMP): norms (l2), o and p (multiflow; errors as
 * mf_prune_scores). */
enum mf_status mf_score_gen_init(struct mf_pool *pool, enum mf_method method, const struct mf_prune_set *set,
                                 uint64_t seed, struct mf_score_gen *g, struct mf_err *err);
void mf_score_gen_free(struct mf_score_gen *g);
/* out[0..n) = scores of elements [j0, j0 + n) of tensor t; the range must lie inside one
 * MF_SCORE_BLOCK-aligned block. want (may be NULL): only elements with want[j - j0] == c are
 * needed (rand skips the others' transcendental math; their out values are unspecified). */
void mf_score_gen_fill(const struct mf_score_gen *g, size_t t, int64_t j0, int64_t n, float *out,
                       const uint8_t *want, uint8_t c);

/* rand: block bl (MF_SCORE_BLOCK elements) of tensor t draws from the generator seeded here, one
 * 64-bit draw per pair of elements; element 2i takes MF_RAND_HI of draw i, element 2i + 1
 * MF_RAND_LO, and its score is mf_score_rand_value of that 24-bit number, non-decreasing in it. */
#define MF_RAND_HI(u) ((uint32_t)((u) >> 40))
#define MF_RAND_LO(u) ((uint32_t)((u) >> 8) & 0xffffffu)
void mf_score_rand_seed(const struct mf_score_gen *g, size_t t, int64_t bl, struct mf_rng *r);
float mf_score_rand_value(uint32_t k24);

/* Score of element j of tensor t for the elementwise kinds (abs, l2, multiflow; not rand): the
 * arithmetic of mf_score_gen_fill for one element, so both give the same bits. Used where only a
 * few scattered elements are needed (selection passes 2 and 3). */
static inline float mf_score_gen_one(const struct mf_score_gen *g, size_t t, int64_t j)
{
    const struct mf_prune_tensor *pt = &g->set->t[t];
    float w = pt->w[j];
    switch (g->kind) {
    case MF_SCORE_L2: {
        double nrm = g->norm[t];
        return nrm == 0 ? 0.0f : (float)(fabs((double)w) / nrm);
    }
    case MF_SCORE_MFLOW: {
        int64_t i = j / pt->in;
        return (float)(g->o[t][i] * g->p[t][j - i * pt->in] * fabs((double)w));
    }
    default:
        return fabsf(w);
    }
}

/* LAMP: visits the distinct |w| of w (n elements) from the largest down, with its bit pattern
 * wkey, its LAMP score and its multiplicity. Scores are non-increasing along the walk. Scratch is
 * per thread, grown on demand (at most 2 bytes per element of the largest tensor plus 256 KiB).
 * Returns 1, 0 for a non-finite weight, -1 when out of memory. */
struct mf_lamp_scratch {
    uint32_t *cnt; /* (32768) per top-15-bit bucket */
    uint32_t *pos; /* (32768) */
    uint16_t *lo;  /* (cap) low 16 bits of the keys, grouped by bucket */
    uint16_t *tmp; /* (tcap) bucket sort scratch */
    int64_t cap, tcap;
};
int mf_lamp_walk(const float *w, int64_t n, struct mf_lamp_scratch *s,
                 void (*visit)(void *ctx, uint32_t wkey, float score, int64_t count), void *ctx);
void mf_lamp_scratch_free(struct mf_lamp_scratch *s);

#endif
