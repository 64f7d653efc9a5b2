/*
 * prune/stats.c: MULTIFLOW calibration statistics (pruning.md, MULTIFLOW step 2): for every
 * prunable linear layer, the per-input-feature sum of squares S_j of its input rows, accumulated
 * in double over the calibration set, plus the number of sequences N that passed through it; and
 * their file format, stats.safetensors (NAME -> F64 (in), NAME:count -> F64 (1), metadata
 * format = "multiflow-stats", version = "1", pairs = decimal pair count).
 *
 * How: the session's observer hook (models/model_impl.h) hands every prunable linear's input rows
 * to observe(); each row that is valid (text padding excluded; image rows, including the
 * cross-attention key/value inputs, always valid) adds x_j^2 into the tensor's accumulator.
 * Threads split the `in` columns (blocks of 8 doubles, one cache line), so each column is summed
 * in row order by one thread: the result does not depend on the thread count. Memory is the
 * accumulators (sum of `in` doubles) plus one batch of inputs, whatever the number of pairs.
 * Count: + n_seq (the batch size) per linear call, so a tensor's count is the number of sequences
 * that passed through it (models.md §4.7: sequences, not tokens).
 *
 * What it deliberately does not do: no normalisation (a_j = sqrt(S_j / N) is the criterion's
 * job), no statistics for non-prunable layers or tied decoder copies (the model never reports
 * them), no data augmentation (models.md §2.5), no resuming of a half-finished collection.
 *
 * Reference: spec/pruning.md MULTIFLOW step 2 (the reference keeps whole batches of inputs; here
 * each batch is reduced at once), spec/models.md §4.7 (passes and inputs), §11 Q6 (double).
 */
#include "prune/stats.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/progress.h"
#include "io/annotations.h"
#include "models/model_impl.h"
#include "multiflow/eval.h"
#include "multiflow/safetensors.h"

#define STATS_FORMAT "multiflow-stats"
#define STATS_VERSION "1"
#define COUNT_SUFFIX ":count"

struct mf_stats {
    const struct mf_model *m; /* borrowed: the stats must not outlive the model */
    size_t n_model;           /* tensors of the model */
    int64_t *off;             /* (n_model) offset of tensor i's accumulator in sumsq, -1 = not prunable */
    int64_t *in;              /* (n_model) input features of tensor i, 0 if not prunable */
    double *count;            /* (n_model) sequence count of tensor i */
    double *sumsq;            /* (total_in) all accumulators, one after another */
    int64_t total_in;
    size_t n_prunable;
    int64_t pairs;
};

/* ---- creation ------------------------------------------------------------------------------ */

enum mf_status mf_stats_create(const struct mf_model *m, struct mf_stats **out, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    struct mf_stats *s = NULL;
    *out = NULL;
    size_t nt = mf_model_n_tensors(m);
    s = mf_calloc(1, sizeof *s);
    if (!s) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    s->m = m;
    s->n_model = nt;
    s->off = mf_calloc(nt ? nt : 1, sizeof *s->off);
    s->in = mf_calloc(nt ? nt : 1, sizeof *s->in);
    s->count = mf_calloc(nt ? nt : 1, sizeof *s->count);
    if (!s->off || !s->in || !s->count) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < nt; i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        s->off[i] = -1;
        if (!t->prunable)
            continue;
        if (t->ndim != 2 || t->shape[1] < 1 || t->shape[1] > INT64_MAX - s->total_in) {
            st = mf_err_set(err, MF_ERR_INTERNAL, "prunable tensor '%s' is not a 2-D weight", t->name);
            goto fail;
        }
        s->off[i] = s->total_in;
        s->in[i] = t->shape[1];
        s->total_in += t->shape[1];
        s->n_prunable++;
    }
    if (s->n_prunable == 0) {
        st = mf_err_set(err, MF_ERR_MISSING, "%s: the checkpoint has no prunable tensors", m->path);
        goto fail;
    }
    size_t bytes;
    if (!mf_mul_size((size_t)s->total_in, sizeof(double), &bytes) || !(s->sumsq = mf_calloc(1, bytes))) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory (statistics of %" PRId64 " input features)",
                        s->total_in);
        goto fail;
    }
    *out = s;
    return MF_OK;
fail:
    mf_stats_free(s);
    return st;
}

void mf_stats_free(struct mf_stats *st)
{
    if (!st)
        return;
    mf_free(st->sumsq);
    mf_free(st->count);
    mf_free(st->in);
    mf_free(st->off);
    mf_free(st);
}

const double *mf_stats_sumsq(const struct mf_stats *st, int model_index)
{
    if (!st || model_index < 0 || (size_t)model_index >= st->n_model || st->off[model_index] < 0)
        return NULL;
    return st->sumsq + st->off[model_index];
}

double mf_stats_count(const struct mf_stats *st, int model_index)
{
    if (!st || model_index < 0 || (size_t)model_index >= st->n_model || st->off[model_index] < 0)
        return 0;
    return st->count[model_index];
}

int64_t mf_stats_pairs(const struct mf_stats *st) { return st ? st->pairs : 0; }

/* ---- accumulation -------------------------------------------------------------------------- */

struct observe_ctx {
    struct mf_stats *st;
    struct mf_pool *pool;
};

struct sumsq_arg {
    double *acc;              /* (in) */
    const float *x;           /* (T, in), row stride ldx */
    int64_t ldx, T, in;
    const int32_t *row_valid; /* (T) or NULL */
};

/* Columns [j0, j1) of acc += x^2 over the valid rows, rows in order. */
static void sumsq_kernel(void *p, int ith, int nth)
{
    const struct sumsq_arg *a = p;
    int64_t b0, b1;
    mf_split_range((a->in + 7) / 8, ith, nth, &b0, &b1);
    const int64_t j0 = b0 * 8, j1 = MF_MIN(b1 * 8, a->in);
    if (j0 >= j1)
        return;
    double *restrict acc = a->acc;
    for (int64_t t = 0; t < a->T; t++) {
        if (a->row_valid && !a->row_valid[t])
            continue;
        const float *restrict xr = a->x + t * a->ldx;
        for (int64_t j = j0; j < j1; j++) {
            double v = (double)xr[j];
            acc[j] += v * v;
        }
    }
}

static void observe(void *ud, int tid, const float *x, int64_t ldx, int64_t T, int64_t in, const int32_t *row_valid,
                    int64_t n_seq)
{
    struct observe_ctx *c = ud;
    struct mf_stats *st = c->st;
    /* the model reports only prunable tensors; anything else has no accumulator and is skipped */
    if (tid < 0 || (size_t)tid >= st->n_model || st->off[tid] < 0)
        return;
    MF_ASSERT(in == st->in[tid] && ldx >= in && T >= 0 && n_seq >= 0);
    struct sumsq_arg a = {st->sumsq + st->off[tid], x, ldx, T, in, row_valid};
    /* small inputs are not worth waking the workers */
    mf_pool_run(T * in >= 16384 ? c->pool : NULL, sumsq_kernel, &a);
    st->count[tid] += (double)n_seq;
}

enum mf_status mf_stats_add_batch(struct mf_session *s, const float *images, const int32_t *ids, const int32_t *mask,
                                  int64_t B, int64_t L, struct mf_stats *st, struct mf_err *err)
{
    if (st->m != s->m)
        return mf_err_set(err, MF_ERR_ARG, "calibration statistics belong to another model than the session");
    if (B < 1 || L < 1)
        return mf_err_set(err, MF_ERR_ARG, "calibration batch of %" PRId64 " pairs x %" PRId64 " tokens", B, L);
    struct observe_ctx ctx = {st, s->pool};
    mf_observe_fn prev = s->observe;
    void *prev_ud = s->observe_ud;
    s->observe = observe;
    s->observe_ud = &ctx;
    enum mf_status rc = mf_calibration_forward(s, images, ids, mask, B, L, err);
    s->observe = prev;
    s->observe_ud = prev_ud;
    if (rc)
        return rc;
    /* A NaN or infinity in a layer's input stays in its sums: checked after every batch (one pass
     * over the accumulators, a few floats per input feature), so the error names the batch. */
    for (size_t i = 0; i < st->n_model; i++) {
        if (st->off[i] < 0)
            continue;
        const double *a = st->sumsq + st->off[i];
        for (int64_t j = 0; j < st->in[i]; j++)
            if (!isfinite(a[j]))
                return mf_err_set(err, MF_ERR_NUMERIC,
                                  "the input of '%s' is not finite (sum of squares of feature %" PRId64 ": %g)",
                                  mf_model_tensor_at(st->m, i)->name, j, a[j]);
    }
    st->pairs += B;
    return MF_OK;
}

enum mf_status mf_stats_collect(struct mf_session *s, const struct mf_annotations *ann, int64_t batch,
                                int64_t max_tokens, struct mf_stats *st, struct mf_err *err)
{
    const struct mf_model *m = s->m;
    const struct mf_model_info *info = mf_model_get_info(m);
    enum mf_status rc = MF_OK;
    float *images = NULL;
    int32_t *ids = NULL, *mask = NULL;
    struct mf_progress prog;
    bool started = false;
    const int64_t L = max_tokens > 0 ? max_tokens : info->max_tokens;
    const int64_t R = info->vision.image_size;
    if (batch < 1 || L < 2 || L > info->text.max_pos) {
        rc = mf_err_set(err, MF_ERR_ARG, "calibration batch %" PRId64 " / max tokens %" PRId64
                        " out of range (batch >= 1, 2 <= tokens <= %" PRId64 ")", batch, L, info->text.max_pos);
        goto fail;
    }
    if (ann->n_pairs < 1) {
        rc = mf_err_set(err, MF_ERR_ARG, "%s: no calibration pairs", ann->label);
        goto fail;
    }
    batch = MF_MIN(batch, ann->n_pairs);
    size_t n_img, n_tok;
    if (!mf_mul_size((size_t)batch, (size_t)(3 * R * R) * sizeof *images, &n_img) ||
        !mf_mul_size((size_t)batch, (size_t)L * sizeof *ids, &n_tok)) {
        rc = mf_err_set(err, MF_ERR_ARG, "calibration batch of %" PRId64 " pairs is too large", batch);
        goto fail;
    }
    images = mf_malloc(n_img); /* (batch, 3, R, R) */
    ids = mf_malloc(n_tok);    /* (batch, L) */
    mask = mf_malloc(n_tok);   /* (batch, L) */
    if (!images || !ids || !mask) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "out of memory (calibration batch of %" PRId64 " pairs)", batch);
        goto fail;
    }
    const int64_t n_batches = mf_annotations_n_batches(ann, batch);
    mf_progress_begin(&prog, "calibration", "pairs", ann->n_pairs);
    started = true;
    for (int64_t b = 0; b < n_batches; b++) {
        int64_t first, count;
        if ((rc = mf_annotations_batch(ann, batch, b, &first, &count, err)) ||
            (rc = mf_pairs_batch(m, ann, first, count, L, images, ids, mask, err)) ||
            (rc = mf_stats_add_batch(s, images, ids, mask, count, L, st, err))) {
            if (rc == MF_ERR_NUMERIC) {
                char where[700];
                snprintf(where, sizeof where, "%s: calibration pairs %" PRId64 "-%" PRId64 " (%s %" PRId64 " to %" PRId64 ")",
                         ann->label, first + 1, first + count, ann->jsonl ? "lines" : "records", ann->record[first],
                         ann->record[first + count - 1]);
                mf_err_prefix(err, where);
            }
            goto fail;
        }
        mf_progress_add(&prog, count);
    }
fail:
    if (started)
        mf_progress_end(&prog);
    mf_free(mask);
    mf_free(ids);
    mf_free(images);
    return rc;
}

/* ---- file format --------------------------------------------------------------------------- */

static bool ends_with_count(const char *name, size_t *base_len)
{
    size_t n = strlen(name), k = sizeof COUNT_SUFFIX - 1;
    if (n <= k || memcmp(name + n - k, COUNT_SUFFIX, k) != 0)
        return false;
    *base_len = n - k;
    return true;
}

static double read_f64(const void *p, size_t i)
{
    double v;
    memcpy(&v, (const char *)p + i * sizeof v, sizeof v);
    return v;
}

/* Checks that an open safetensors file is a stats file: metadata, every tensor F64 1-D, every NAME
 * paired with NAME:count of shape (1), values finite and >= 0. Sets *pairs. */
static enum mf_status validate_file(const struct mf_safetensors *f, int64_t *pairs, struct mf_err *err)
{
    const char *path = mf_safetensors_path(f);
    const char *fmt = mf_safetensors_meta(f, "format"), *ver = mf_safetensors_meta(f, "version");
    const char *pr = mf_safetensors_meta(f, "pairs");
    if (!fmt || strcmp(fmt, STATS_FORMAT) != 0)
        return mf_err_set(err, MF_ERR_FORMAT, "%s: not a calibration statistics file (metadata format is '%s', "
                          "expected '" STATS_FORMAT "')", path, fmt ? fmt : "(absent)");
    if (!ver || strcmp(ver, STATS_VERSION) != 0)
        return mf_err_set(err, MF_ERR_UNSUPPORTED, "%s: statistics format version '%s', this build reads '"
                          STATS_VERSION "'", path, ver ? ver : "(absent)");
    char *end = NULL;
    errno = 0;
    long long np = pr ? strtoll(pr, &end, 10) : -1;
    if (!pr || end == pr || *end || errno || np < 0)
        return mf_err_set(err, MF_ERR_FORMAT, "%s: metadata 'pairs' is '%s', expected a count >= 0", path,
                          pr ? pr : "(absent)");
    *pairs = np;
    size_t n = mf_safetensors_count(f);
    if (n == 0)
        return mf_err_set(err, MF_ERR_FORMAT, "%s: no statistics tensors", path);
    char other[600];
    for (size_t i = 0; i < n; i++) {
        const struct mf_st_entry *e = mf_safetensors_at(f, i);
        char shape[64];
        mf_shape_str(shape, sizeof shape, e->ndim, e->shape);
        if (e->dtype != MF_DTYPE_F64)
            return mf_err_set(err, MF_ERR_DTYPE, "%s: tensor '%s' has dtype %s, expected F64", path, e->name,
                              mf_dtype_name(e->dtype));
        size_t bl;
        bool is_count = ends_with_count(e->name, &bl);
        if (e->ndim != 1 || (is_count && e->shape[0] != 1) || e->shape[0] < 1)
            return mf_err_set(err, MF_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", path, e->name, shape,
                              is_count ? "[1]" : "[in] with in >= 1");
        /* the partner: NAME:count for NAME, NAME for NAME:count */
        if (is_count) {
            if (bl >= sizeof other)
                return mf_err_set(err, MF_ERR_FORMAT, "%s: tensor name of %zu bytes is too long", path, bl);
            memcpy(other, e->name, bl);
            other[bl] = 0;
        } else if ((size_t)snprintf(other, sizeof other, "%s" COUNT_SUFFIX, e->name) >= sizeof other) {
            return mf_err_set(err, MF_ERR_FORMAT, "%s: tensor name '%.60s...' is too long", path, e->name);
        }
        if (!mf_safetensors_find(f, other))
            return mf_err_set(err, MF_ERR_MISSING, "%s: tensor '%s' has no partner '%s'", path, e->name, other);
        for (int64_t j = 0; j < e->shape[0]; j++) {
            double v = read_f64(e->data, (size_t)j);
            if (!isfinite(v) || v < 0)
                return mf_err_set(err, MF_ERR_NUMERIC, "%s: tensor '%s' element %" PRId64 " is %g, expected a "
                                  "finite value >= 0", path, e->name, j, v);
        }
    }
    return MF_OK;
}

/* Indices of the prunable tensors of st's model in byte-wise name order (deterministic files and
 * error messages). Returns NULL when out of memory. */
static size_t *prunable_order(const struct mf_stats *st)
{
    size_t *idx = mf_malloc(st->n_prunable * sizeof *idx);
    if (!idx)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < st->n_model; i++)
        if (st->off[i] >= 0)
            idx[k++] = i;
    /* insertion sort: a few hundred names, no qsort_r portability question */
    for (size_t i = 1; i < k; i++) {
        size_t v = idx[i], j = i;
        const char *nv = mf_model_tensor_at(st->m, v)->name;
        while (j > 0 && strcmp(mf_model_tensor_at(st->m, idx[j - 1])->name, nv) > 0) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
    return idx;
}

enum mf_status mf_stats_save(const struct mf_stats *st, const char *path, struct mf_err *err)
{
    enum mf_status rc = MF_OK;
    struct mf_st_writer *w = NULL;
    size_t *order = NULL;
    char *names = NULL; /* n_prunable NAME:count strings, each in a 600-byte slot */
    const size_t slot = 600;
    if (!(order = prunable_order(st)) || !(names = mf_malloc(st->n_prunable * slot))) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = mf_st_writer_create(path, &w, err)))
        goto fail;
    for (size_t k = 0; k < st->n_prunable; k++) {
        size_t i = order[k];
        const char *name = mf_model_tensor_at(st->m, i)->name;
        char *cn = names + k * slot;
        if ((size_t)snprintf(cn, slot, "%s" COUNT_SUFFIX, name) >= slot) {
            rc = mf_err_set(err, MF_ERR_ARG, "%s: tensor name '%.60s...' is too long", path, name);
            goto fail;
        }
        int64_t shape_in = st->in[i], shape_one = 1;
        if ((rc = mf_st_writer_add(w, name, MF_DTYPE_F64, 1, &shape_in, st->sumsq + st->off[i], err)) ||
            (rc = mf_st_writer_add(w, cn, MF_DTYPE_F64, 1, &shape_one, &st->count[i], err)))
            goto fail;
    }
    char pairs[32];
    snprintf(pairs, sizeof pairs, "%" PRId64, st->pairs);
    if ((rc = mf_st_writer_meta(w, "format", STATS_FORMAT, err)) ||
        (rc = mf_st_writer_meta(w, "version", STATS_VERSION, err)) ||
        (rc = mf_st_writer_meta(w, "pairs", pairs, err)) ||
        (rc = mf_st_writer_meta(w, "layout", mf_model_get_info(st->m)->layout_name, err)))
        goto fail;
    rc = mf_st_writer_commit(w, err); /* frees w in every case */
    w = NULL;
fail:
    mf_st_writer_abort(w);
    mf_free(names);
    mf_free(order);
    return rc;
}

enum mf_status mf_stats_load(const struct mf_model *m, const char *path, struct mf_stats **out, struct mf_err *err)
{
    enum mf_status rc;
    struct mf_safetensors *f = NULL;
    struct mf_stats *st = NULL;
    size_t *order = NULL;
    *out = NULL;
    if ((rc = mf_safetensors_open(path, &f, err)) || (rc = mf_stats_create(m, &st, err)))
        goto fail;
    int64_t pairs;
    if ((rc = validate_file(f, &pairs, err)))
        goto fail;
    if (!(order = prunable_order(st))) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t k = 0; k < st->n_prunable; k++) {
        size_t i = order[k];
        const char *name = mf_model_tensor_at(m, i)->name;
        const struct mf_st_entry *e = mf_safetensors_find(f, name);
        if (!e) {
            rc = mf_err_set(err, MF_ERR_MISSING, "%s: no statistics for tensor '%s' (prunable in %s): statistics "
                            "of another model?", path, name, m->path);
            goto fail;
        }
        if (e->shape[0] != st->in[i]) {
            rc = mf_err_set(err, MF_ERR_SHAPE, "%s: tensor '%s' has shape [%" PRId64 "], expected [%" PRId64
                            "] (the input width of the weight in %s): statistics of another model?", path, name,
                            e->shape[0], st->in[i], m->path);
            goto fail;
        }
        char cn[600];
        snprintf(cn, sizeof cn, "%s" COUNT_SUFFIX, name);
        const struct mf_st_entry *c = mf_safetensors_find(f, cn);
        MF_ASSERT(c); /* validate_file checked the pairing */
        memcpy(st->sumsq + st->off[i], e->data, (size_t)st->in[i] * sizeof(double));
        st->count[i] = read_f64(c->data, 0);
    }
    if (mf_safetensors_count(f) != 2 * st->n_prunable) {
        /* every prunable tensor was found, so some file tensor is not one of the model's */
        for (size_t j = 0; j < mf_safetensors_count(f); j++) {
            const struct mf_st_entry *e = mf_safetensors_at(f, j);
            size_t bl;
            char base[600];
            snprintf(base, sizeof base, "%s", e->name);
            if (ends_with_count(base, &bl))
                base[bl] = 0;
            bool known = false;
            for (size_t i = 0; i < st->n_model && !known; i++)
                known = st->off[i] >= 0 && strcmp(mf_model_tensor_at(m, i)->name, base) == 0;
            if (!known) {
                rc = mf_err_set(err, MF_ERR_FORMAT, "%s: tensor '%s' is not a prunable tensor of %s: statistics "
                                "of another model?", path, e->name, m->path);
                goto fail;
            }
        }
        rc = mf_err_set(err, MF_ERR_INTERNAL, "%s: tensor count mismatch", path);
        goto fail;
    }
    st->pairs = pairs;
    *out = st;
    st = NULL;
fail:
    mf_free(order);
    mf_stats_free(st);
    mf_safetensors_close(f);
    return rc;
}

enum mf_status mf_stats_merge_files(const char *a, const char *b, const char *out, struct mf_err *err)
{
    enum mf_status rc;
    struct mf_safetensors *fa = NULL, *fb = NULL;
    struct mf_st_writer *w = NULL;
    double *sum = NULL;
    int64_t pa, pb;
    if ((rc = mf_safetensors_open(a, &fa, err)) || (rc = validate_file(fa, &pa, err)) ||
        (rc = mf_safetensors_open(b, &fb, err)) || (rc = validate_file(fb, &pb, err)))
        goto fail;
    /* same names and widths both ways, before anything is written; the first difference is named */
    const size_t n = mf_safetensors_count(fa);
    for (size_t i = 0; i < n; i++) {
        const struct mf_st_entry *ea = mf_safetensors_at(fa, i);
        const struct mf_st_entry *eb = mf_safetensors_find(fb, ea->name);
        if (!eb) {
            rc = mf_err_set(err, MF_ERR_MISSING, "%s: no tensor '%s' (present in %s): not the same model", b,
                            ea->name, a);
            goto fail;
        }
        if (eb->shape[0] != ea->shape[0]) {
            rc = mf_err_set(err, MF_ERR_SHAPE, "%s: tensor '%s' has shape [%" PRId64 "], %s has [%" PRId64
                            "]: not the same model", b, ea->name, eb->shape[0], a, ea->shape[0]);
            goto fail;
        }
    }
    for (size_t i = 0; i < mf_safetensors_count(fb); i++) {
        const struct mf_st_entry *eb = mf_safetensors_at(fb, i);
        if (!mf_safetensors_find(fa, eb->name)) {
            rc = mf_err_set(err, MF_ERR_MISSING, "%s: no tensor '%s' (present in %s): not the same model", a,
                            eb->name, b);
            goto fail;
        }
    }
    if (pa > INT64_MAX - pb) {
        rc = mf_err_set(err, MF_ERR_RANGE, "%s + %s: pair count overflows", a, b);
        goto fail;
    }
    /* the data sections bound the total (validated by the reader): no overflow below */
    size_t total = mf_safetensors_data_size(fa) / sizeof(double) + 1;
    if (!(sum = mf_malloc(total * sizeof *sum))) {
        rc = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = mf_st_writer_create(out, &w, err)))
        goto fail;
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        const struct mf_st_entry *ea = mf_safetensors_at(fa, i);
        const struct mf_st_entry *eb = mf_safetensors_find(fb, ea->name);
        const int64_t k = ea->shape[0];
        MF_ASSERT(pos + (size_t)k <= total);
        for (int64_t j = 0; j < k; j++)
            sum[pos + (size_t)j] = read_f64(ea->data, (size_t)j) + read_f64(eb->data, (size_t)j);
        if ((rc = mf_st_writer_add(w, ea->name, MF_DTYPE_F64, 1, &ea->shape[0], sum + pos, err)))
            goto fail;
        pos += (size_t)k;
    }
    char pairs[32];
    snprintf(pairs, sizeof pairs, "%" PRId64, pa + pb);
    const char *la = mf_safetensors_meta(fa, "layout"), *lb = mf_safetensors_meta(fb, "layout");
    if ((rc = mf_st_writer_meta(w, "format", STATS_FORMAT, err)) ||
        (rc = mf_st_writer_meta(w, "version", STATS_VERSION, err)) ||
        (rc = mf_st_writer_meta(w, "pairs", pairs, err)) ||
        (la && lb && strcmp(la, lb) == 0 && (rc = mf_st_writer_meta(w, "layout", la, err))))
        goto fail;
    rc = mf_st_writer_commit(w, err);
    w = NULL;
fail:
    mf_st_writer_abort(w);
    mf_free(sum);
    mf_safetensors_close(fb);
    mf_safetensors_close(fa);
    return rc;
}
