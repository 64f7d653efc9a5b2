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

/* ---- gradient-based pruners (src/prune/snip.c, src/prune/tamt.c; pruning.md) ------------- */

/* Methods that need gradients of the pretraining loss (their own enum: they have no closed-form
 * score and are not accepted by the criteria functions above). */
enum mf_gmethod {
    MF_GMETHOD_SNIP = 0,
    MF_GMETHOD_ITERSNIP = 1,
    MF_GMETHOD_TAMT = 2,
    MF_GMETHOD_CHITA = 3,   /* mf_chita_run, not mf_gprune_run */
    MF_GMETHOD_CHITAPP = 4, /* chita++ */
    MF_GMETHOD_COUNT
};
const char *mf_gmethod_name(enum mf_gmethod m);
bool mf_gmethod_parse(const char *name, enum mf_gmethod *m);

/* IterSNIP sparsity schedules: round t of T (1-based) prunes to
 * exp 1 - (1 - s)^(t/T), linear s t / T (Deviation: the reference's s + (1 - s) t / T ends at
 * 100 %), const s. The last round is exactly s. */
enum mf_schedule { MF_SCHEDULE_EXP = 0, MF_SCHEDULE_LINEAR = 1, MF_SCHEDULE_CONST = 2 };
const char *mf_schedule_name(enum mf_schedule sc);
bool mf_schedule_parse(const char *name, enum mf_schedule *sc);
double mf_schedule_sparsity(enum mf_schedule sc, double s, int64_t t, int64_t T);

/* Where gradients come from: mean_grad fills g[i] (set order) with a pointer to the gradient of
 * tensor i (n_i floats, valid until the next call), averaged over the NEXT n_batches batches of
 * the source's stream (0 = one pass), evaluated at the effective weights w_eff (set order, n_i
 * floats each; NULL = the model's own weights). The BLIP losses: prune/gradient.h; tests use
 * synthetic losses. */
struct mf_grad_source {
    enum mf_status (*mean_grad)(void *ud, const float *const *w_eff, int64_t n_batches, const float **g,
                                struct mf_err *err);
    void *ud;
    int64_t pass_batches; /* batches in one pass over the source's data (>= 1) */
};

struct mf_gprune_opts {
    /* IterSNIP */
    int64_t rounds;            /* T */
    enum mf_schedule schedule;
    int64_t round_batches;     /* batches per IterSNIP round; 0 = one pass (SNIP always uses one pass) */
    /* TAMT: AdamW on the mask scores, one step per batch, lr linearly decayed to 0 over steps */
    int64_t steps;             /* 0 = one pass of the source, one batch per step */
    double lr, weight_decay, beta1, beta2, eps;
    double alpha;              /* initial score = alpha * tau where layer-wise magnitude keeps */
};
/* The reference's settings: rounds 60 (its README's IterSNIP setting), exp, round_batches 0,
 * steps 0, AdamW lr 5e-5, weight decay 0.01 (torch default), betas 0.9/0.999, eps 1e-8, alpha 2. */
void mf_gprune_opts_default(struct mf_gprune_opts *o);

/* SNIP scores |g * w| / sum of all |g * w| with g the mean gradient over every batch of one pass
 * of src (src->pass_batches batches from its current position; o->round_batches is IterSNIP's and
 * is not used) at the model's weights. scores[i]: n_i floats (set order). */
enum mf_status mf_snip_scores(const struct mf_prune_set *set, const struct mf_gprune_opts *o,
                              const struct mf_grad_source *src, float *const *scores, struct mf_err *err);

/* The whole pruner for one sparsity: masks[i] (n_i bytes, 1 = keep), global exact-k, exactly
 * floor(s * total) pruned. scores[i] (n_i floats) receive the final scores (snip: normalised
 * |g w|; itersnip: the last round's, 0 where an earlier round pruned; tamt: |mask score|).
 * itersnip and tamt draw o->rounds * round_batches resp. o->steps batches from src. */
enum mf_status mf_gprune_run(struct mf_pool *pool, enum mf_gmethod method, const struct mf_prune_set *set,
                             double sparsity, const struct mf_gprune_opts *o, const struct mf_grad_source *src,
                             float *const *scores, uint8_t *const *masks, struct mf_err *err);

/* One AdamW step as torch 1.13's single-tensor AdamW computes it in float32 (decoupled weight
 * decay first, then the bias-corrected Adam update), step t >= 1, learning rate lr. */
void mf_adamw_step(float *p, float *m, float *v, const float *g, int64_t n, int64_t t, double lr,
                   const struct mf_gprune_opts *o);

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

/* ---- CHITA (src/prune/chita.c; pruning.md `chita`, docs in the file header) ---------------- */

/* The per-batch gradient rows A (n_rows, n_cols) f32 of a CHITA round, kept in an unlinked
 * temporary file (never all in RAM), plus their column sums in double. */
struct mf_chita_rows;

/* Creates the row file in tmp_dir (NULL: $TMPDIR, else /tmp), reserving n_rows * n_cols * 4
 * bytes; the file is unlinked at once, so it disappears with the handle or the process. */
enum mf_status mf_chita_rows_create(const char *tmp_dir, int64_t n_rows, int64_t n_cols, struct mf_chita_rows **out,
                                    struct mf_err *err);
void mf_chita_rows_free(struct mf_chita_rows *r);
/* Writes row `row`: the gradients g[i] (set order, n_i floats each) concatenated, times keep[i]
 * when keep is not NULL (the reference's masked forward gives pruned weights no gradient).
 * Non-finite values are MF_ERR_NUMERIC naming the tensor. Every row must be put once. */
enum mf_status mf_chita_rows_put(struct mf_chita_rows *r, int64_t row, const struct mf_prune_set *set,
                                 const float *const *g, const uint8_t *const *keep, struct mf_err *err);

struct mf_chita_opts {
    double lambda;        /* ridge penalty (reference default 1e-5; lam2 = n_rows * lambda / 2), > 0 */
    double batch_size;    /* pairs per gradient row: alpha = (sum of the rows) / batch_size */
    int64_t block;        /* weights per block (reference 10^4; get_blocklist_custom rules) */
    size_t window_bytes;  /* bytes of gradient rows mapped at once (0 = 256 MiB); at least one block */
};
void mf_chita_opts_default(struct mf_chita_opts *o);

struct mf_chita_info {
    int branch;           /* global step: 0 none (||alpha|| <= 1e-8), 1 optimal step, 2 line search
                             improved, 3 line search kept the magnitude-pruned start */
    double step;          /* the global step length used */
    int64_t kept;         /* survivors (n - floor(s n)) */
    int64_t blocks, windows, passes; /* blocks, windows mapped, passes over the row file */
    size_t max_mapped;    /* most row-file bytes mapped at once */
};

/* One CHITA solve at sparsity s over the weights w[i] (set order, n_i f32 each; NULL = the set's
 * own), with prev[i] (NULL = none) marking weights pruned by an earlier round (0 = pruned: they
 * stay pruned). Outputs masks[i] (1 = keep, exactly floor(s * total) zeros) and w_new[i] (the
 * updated weights, 0 where pruned); w_new may alias w (each block is read before it is written).
 * Runs on pool's threads; a given thread count gives the same bits. */
enum mf_status mf_chita_solve(struct mf_pool *pool, const struct mf_prune_set *set, const float *const *w,
                              const struct mf_chita_rows *rows, const uint8_t *const *prev, double sparsity,
                              const struct mf_chita_opts *o, uint8_t *const *masks, float *const *w_new,
                              struct mf_chita_info *info, struct mf_err *err);

/* The whole pruner: `rounds` rounds (1 = chita; T > 1 = chita++, round t pruning to
 * mf_schedule_sparsity(MF_SCHEDULE_EXP, s, t, T)); each round draws round_batches gradient rows
 * (one batch each: src->mean_grad over 1 batch, at the current masked, updated weights from round
 * 2 on, masked by the current mask) into a row file in tmp_dir and solves. masks/w_new as in
 * mf_chita_solve; info is the last round's. */
enum mf_status mf_chita_run(struct mf_pool *pool, const struct mf_prune_set *set, double sparsity, int64_t rounds,
                            int64_t round_batches, const char *tmp_dir, const struct mf_chita_opts *o,
                            const struct mf_grad_source *src, uint8_t *const *masks, float *const *w_new,
                            struct mf_chita_info *info, struct mf_err *err);

#ifdef __cplusplus
}
#endif
#endif
