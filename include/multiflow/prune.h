/*
 * multiflow/prune.h: pruning criteria, exact-k selection and calibration statistics
 * (spec: shared/spec/pruning.md).
 *
 *     struct mf_prune_set set;                         // prunable tensors, name order
 *     mf_prune_set_init(model, stats, &set, &err);    // stats may be NULL for data-free methods
 *     uint8_t **masks = ...;                           // one (out*in) byte array per tensor
 *     mf_prune_compute_masks(pool, MF_METHOD_OMP, &set, 0.63, seed, masks, &err);  // no score arrays
 *     // only to save scores (--save-scores): one float per weight
 *     float **scores = ...;                            // one (out*in) array per tensor
 *     mf_prune_scores(pool, MF_METHOD_OMP, &set, seed, scores, &err);
 *     mf_select_lowest(pool, set.n, scores, lens, names, k, masks, &err);   // exact-k, tie rule
 *
 * Thread safety: functions are reentrant; a pool is used by one call at a time.
 */
#ifndef MF_PRUNE_H
#define MF_PRUNE_H

#include <stdbool.h>
#include <stdint.h>

#include "multiflow/model.h"
#include "multiflow/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum mf_method {
    MF_METHOD_MULTIFLOW = 0,
    MF_METHOD_OMP = 1,
    MF_METHOD_LMP = 2,
    MF_METHOD_L2 = 3,
    MF_METHOD_LAMP = 4,
    MF_METHOD_RAND = 5,
    MF_METHOD_COUNT
};

const char *mf_method_name(enum mf_method m);
bool mf_method_parse(const char *name, enum mf_method *m);
bool mf_method_needs_data(enum mf_method m);

/* One prunable tensor, as the criteria see it. */
struct mf_prune_tensor {
    const char *name;
    int model_index;        /* index for mf_model_tensor_at */
    enum mf_modality modality;
    int64_t out, in, n;     /* n = out * in */
    const float *w;         /* (out, in) f32 weights */
    const double *sumsq;    /* (in) calibration sums of squares of the inputs, or NULL */
    double count;           /* calibration sequence count (N in pruning.md) */
};

/* The prunable tensors of a model in selection order: names byte-wise ascending (pruning.md,
 * exact-k tie rule). Owns only its array. */
struct mf_prune_set {
    struct mf_prune_tensor *t;
    size_t n;
    int64_t total; /* sum of n */
};

struct mf_pool;
struct mf_stats;

/* ---- criteria (src/prune/criteria.c) ----------------------------------------------------- */

/* Scores of every weight of every tensor for a method (pruning.md tables): scores[i] has
 * set->t[i].n floats. rand draws standard normals from seed in selection order. multiflow needs
 * sumsq/count on every tensor (MF_ERR_MISSING otherwise). NaN/inf scores are an MF_ERR_NUMERIC
 * error naming the tensor. lmp's scores equal omp's (the scope differs). */
enum mf_status mf_prune_scores(struct mf_pool *pool, enum mf_method method, const struct mf_prune_set *set,
                               uint64_t seed, float *const *scores, struct mf_err *err);

/* ---- selection (src/prune/select.c) ------------------------------------------------------ */

/* Exact-k over one scope made of n_arrays arrays (lengths len[i]), positions ordered by (array,
 * element): mask[i][j] = 0 for the k lowest scores, 1 otherwise; among equal scores the lower
 * position is pruned first. O(total) (radix select), no sort. names (may be NULL) are used in the
 * NaN/inf error message. k in [0, total]. */
enum mf_status mf_select_lowest(struct mf_pool *pool, size_t n_arrays, const float *const *scores,
                                const int64_t *len, const char *const *names, int64_t k, uint8_t *const *mask,
                                struct mf_err *err);
/* Same selection, but only counts how many of each array's elements are among the k lowest. */
enum mf_status mf_select_count(struct mf_pool *pool, size_t n_arrays, const float *const *scores,
                               const int64_t *len, const char *const *names, int64_t k, int64_t *pruned,
                               struct mf_err *err);

/* Per-tensor prune counts k_l for a method at sparsity s (pruning.md): global methods (omp, l2,
 * lamp, rand) return NULL-equivalent (k_global = floor(s * total)); lmp: floor(s * n_l);
 * multiflow: the per-modality |w| threshold counts (step 1 of MULTIFLOW). */
enum mf_status mf_prune_layer_counts(struct mf_pool *pool, enum mf_method method, const struct mf_prune_set *set,
                                     double sparsity, int64_t *k_per_tensor, struct mf_err *err);

/* The whole mask computation for one method and sparsity from materialised scores (from
 * mf_prune_scores) -> masks[i] (n_i bytes, 1 = keep). mf_prune_compute_masks gives the same masks
 * without the score arrays. */
enum mf_status mf_prune_masks(struct mf_pool *pool, enum mf_method method, const struct mf_prune_set *set,
                              double sparsity, const float *const *scores, uint8_t *const *masks, struct mf_err *err);

/* The mask computation without score arrays (the path for large models): scores are recomputed
 * from the weights and small per-tensor state in each selection pass, so memory is the masks plus
 * O(threads * 65536) scratch (LAMP: plus about 2 bytes per weight of the largest tensor per thread).
 * masks[i] (n_i bytes, 1 = keep) are bit-identical to mf_prune_scores + mf_prune_masks with the same
 * seed, for any thread count. masks are also used as scratch: on error their content is unspecified. */
enum mf_status mf_prune_compute_masks(struct mf_pool *pool, enum mf_method method, const struct mf_prune_set *set,
                                      double sparsity, uint64_t seed, uint8_t *const *masks, struct mf_err *err);

/* ---- calibration statistics (src/prune/stats.c) ----------------------------------------- */

struct mf_session;
struct mf_annotations;

/* Zeroed accumulators, one per prunable tensor of m: sums of squares (in) in double + count. */
enum mf_status mf_stats_create(const struct mf_model *m, struct mf_stats **out, struct mf_err *err);
void mf_stats_free(struct mf_stats *st);
/* Runs the calibration forward passes (vision; image-grounded encoder; decoder) over every pair of
 * ann in batches, adding into st. Memory is constant in the number of pairs. Progress on stderr. */
enum mf_status mf_stats_collect(struct mf_session *s, const struct mf_annotations *ann, int64_t batch,
                                int64_t max_tokens, struct mf_stats *st, struct mf_err *err);
/* sumsq of model tensor i (NULL if not prunable), and its sequence count. */
const double *mf_stats_sumsq(const struct mf_stats *st, int model_index);
double mf_stats_count(const struct mf_stats *st, int model_index);
/* Number of calibration pairs accumulated. */
int64_t mf_stats_pairs(const struct mf_stats *st);
/* stats.safetensors: per prunable tensor NAME (in) F64 sums of squares and NAME:count (1) F64;
 * metadata records the format and the pair count. Atomic write. */
enum mf_status mf_stats_save(const struct mf_stats *st, const char *path, struct mf_err *err);
/* Loads a stats file for model m: every prunable tensor must be present with shape (in); a file of
 * another model is an error naming the first tensor that does not match. */
enum mf_status mf_stats_load(const struct mf_model *m, const char *path, struct mf_stats **out, struct mf_err *err);
/* Adds two stats files of the same model (identical names and shapes) into out (atomic). */
enum mf_status mf_stats_merge_files(const char *a, const char *b, const char *out, struct mf_err *err);

/* ---- the prunable set (src/prune/set.c) ---------------------------------------------------- */

/* Fills set with m's prunable tensors in name order; stats (may be NULL) supplies sumsq/count. */
enum mf_status mf_prune_set_init(const struct mf_model *m, const struct mf_stats *stats, struct mf_prune_set *set,
                                 struct mf_err *err);
void mf_prune_set_free(struct mf_prune_set *set);

#ifdef __cplusplus
}
#endif
#endif
