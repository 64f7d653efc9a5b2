/*
 * prune/gradient.c: the calibration gradient stream (prune/gradient.h): batches of consecutive
 * pairs in file order, cycling, BLIP's pretraining losses on each, the gradient block summed over
 * n batches and divided by n; and its adapter to struct mf_grad_source (set order).
 *
 * Does not: keep per-batch gradients (CHITA needs rows; it can run n = 1 per call), touch tensors
 * other than the prunable ones when averaging (the rest of the block holds sums), or own the
 * session, the annotations or the prunable set.
 * Reference: FarinaMatteo/multiflow pruners/snip.py (backward per batch, p.grad / num_batches),
 * docs/internals/losses.md for the losses.
 */
#include <math.h>
#include <string.h>

#include "core/progress.h"
#include "io/annotations.h"
#include "multiflow/eval.h"
#include "prune/gradient.h"
#include "models/train.h"

struct mf_grad_stream {
    struct mf_session *s;
    const struct mf_annotations *ann;
    const struct mf_model *m;
    struct mf_losses *L;
    struct mf_grads *g;
    int64_t batch, max_tokens, n_batches, pos;
    const char *label;
    float *images;  /* (batch, 3, R, R) */
    int32_t *ids;   /* (batch, max_tokens) */
    int32_t *mask;  /* (batch, max_tokens) */
    /* source adapter */
    const struct mf_prune_set *set;
    const float **ovr; /* (n_tensors) model-indexed override table built from set-order w_eff */
};

enum mf_status mf_grad_stream_create(struct mf_session *s, const struct mf_annotations *ann,
                                     const struct mf_grad_stream_opts *o, struct mf_grad_stream **out,
                                     struct mf_err *err)
{
    enum mf_status st = MF_OK;
    struct mf_grad_stream *gs = mf_calloc(1, sizeof *gs);
    if (!gs)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    gs->s = s;
    gs->ann = ann;
    gs->m = s->m;
    gs->batch = o->batch;
    gs->max_tokens = o->max_tokens;
    gs->label = o->progress_label;
    if (o->batch < 1 || o->max_tokens < 2) {
        st = mf_err_set(err, MF_ERR_ARG, "gradient stream: batch %lld and max_tokens %lld must be >= 1 and >= 2",
                        (long long)o->batch, (long long)o->max_tokens);
        goto fail;
    }
    if (ann->n_pairs < 1) {
        st = mf_err_set(err, MF_ERR_ARG, "%s: no image-caption pairs", ann->label);
        goto fail;
    }
    if ((st = mf_losses_create(gs->m, &o->losses, &gs->L, err)))
        goto fail;
    const int64_t B = o->batch, n = ann->n_pairs;
    if ((mf_losses_selected(gs->L) & MF_LOSS_ITM) && (B < 2 || n % B == 1)) {
        st = mf_err_set(err, MF_ERR_ARG, "the ITM loss needs at least 2 pairs per batch (in-batch negatives), but %s",
                        B < 2 ? "--batch is 1" : "the last batch has 1 pair: change --pairs or --batch");
        goto fail;
    }
    gs->n_batches = (n + B - 1) / B;
    const int64_t R = mf_model_get_info(gs->m)->vision.image_size;
    if (R < 1 || R > 8192 || B > ((int64_t)1 << 40) / (3 * R * R) || B > ((int64_t)1 << 40) / o->max_tokens) {
        st = mf_err_set(err, MF_ERR_ARG, "gradient stream: batch %lld of %lldx%lld images is too large",
                        (long long)B, (long long)R, (long long)R);
        goto fail;
    }
    gs->images = mf_malloc((size_t)(B * 3 * R * R) * sizeof(float));
    gs->ids = mf_malloc((size_t)(B * o->max_tokens) * sizeof(int32_t));
    gs->mask = mf_malloc((size_t)(B * o->max_tokens) * sizeof(int32_t));
    gs->ovr = mf_calloc(mf_model_n_tensors(gs->m) + 1, sizeof *gs->ovr);
    if (!gs->images || !gs->ids || !gs->mask || !gs->ovr) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory for a batch of %lld pairs", (long long)B);
        goto fail;
    }
    if ((st = mf_grads_create(gs->m, &gs->g, err)))
        goto fail;
    *out = gs;
    return MF_OK;
fail:
    mf_grad_stream_free(gs);
    return st;
}

void mf_grad_stream_free(struct mf_grad_stream *gs)
{
    if (!gs)
        return;
    mf_grads_free(gs->g);
    mf_losses_free(gs->L);
    mf_free(gs->images);
    mf_free(gs->ids);
    mf_free(gs->mask);
    mf_free(gs->ovr);
    mf_free(gs);
}

int64_t mf_grad_stream_batches(const struct mf_grad_stream *gs) { return gs->n_batches; }
int64_t mf_grad_stream_position(const struct mf_grad_stream *gs) { return gs->pos; }
void mf_grad_stream_rewind(struct mf_grad_stream *gs)
{
    gs->pos = 0;
    mf_losses_reset(gs->L); /* a fresh run: the checkpoint's momentum encoders and queues again */
}
unsigned mf_grad_stream_losses(const struct mf_grad_stream *gs) { return mf_losses_selected(gs->L); }
const struct mf_losses *mf_grad_stream_loss_state(const struct mf_grad_stream *gs) { return gs->L; }
const struct mf_grads *mf_grad_stream_grads(const struct mf_grad_stream *gs) { return gs->g; }

static int64_t tensor_numel(const struct mf_model_tensor *t)
{
    int64_t n = 1;
    for (int k = 0; k < t->ndim; k++)
        n *= t->shape[k];
    return n;
}

enum mf_status mf_grad_stream_mean(struct mf_grad_stream *gs, const float *const *w_override, int64_t n,
                                   struct mf_loss_values *mean, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    struct mf_session *s = gs->s;
    const struct mf_annotations *ann = gs->ann;
    const unsigned sel = mf_losses_selected(gs->L);
    if (n <= 0)
        n = gs->n_batches;
    /* Masked (or otherwise replaced) weights: re-point the model for the duration of the call and
     * restore its own pointers after (models/train.h mf_model_rebind, shared with fine-tuning). */
    struct mf_model *mm = (struct mf_model *)gs->m;
    const float **saved = NULL;
    if (w_override) {
        if (!(saved = mf_malloc(mm->n_tensors * sizeof *saved)))
            return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        memcpy(saved, mm->w32, mm->n_tensors * sizeof *saved);
        mf_model_rebind(mm, w_override);
    }
    mf_grads_zero(gs->g);
    double sum[3] = {0, 0, 0};
    struct mf_progress pg;
    int64_t n_pairs_total = 0;
    for (int64_t i = 0; i < n; i++)
        n_pairs_total += MF_MIN(gs->batch, ann->n_pairs - ((gs->pos + i) % gs->n_batches) * gs->batch);
    if (gs->label)
        mf_progress_begin(&pg, gs->label, "pairs", n_pairs_total);
    for (int64_t i = 0; i < n; i++, gs->pos++) {
        const int64_t bi = gs->pos % gs->n_batches, p0 = bi * gs->batch, B = MF_MIN(gs->batch, ann->n_pairs - p0);
        struct mf_loss_values v;
        if ((st = mf_pairs_batch(gs->m, ann, p0, B, gs->max_tokens, gs->images, gs->ids, gs->mask, err)) ||
            (st = mf_losses_batch(gs->L, s, (uint64_t)gs->pos, gs->images, gs->ids, gs->mask, B, gs->max_tokens,
                                  gs->g, &v, NULL, NULL, err))) {
            struct mf_err e = *err;
            mf_err_set(err, st, "batch %lld (pairs %lld-%lld): %s", (long long)bi, (long long)p0,
                       (long long)(p0 + B - 1), e.msg);
            goto fail;
        }
        sum[0] += (sel & MF_LOSS_ITC) ? v.itc : 0;
        sum[1] += (sel & MF_LOSS_ITM) ? v.itm : 0;
        sum[2] += (sel & MF_LOSS_LM) ? v.lm : 0;
        if (gs->label)
            mf_progress_add(&pg, B);
    }
    /* mean over batches: divide the sums, as the reference divides p.grad by the batch count */
    const float nf = (float)n;
    for (size_t i = 0; i < mf_model_n_tensors(gs->m); i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(gs->m, i);
        if (!t->prunable)
            continue;
        float *gt = mf_grads_tensor(gs->g, i);
        if (!gt) {
            st = mf_err_set(err, MF_ERR_INTERNAL, "prunable tensor '%s' has no gradient buffer", t->name);
            goto fail;
        }
        const int64_t nt = tensor_numel(t);
        for (int64_t j = 0; j < nt; j++) {
            gt[j] /= nf;
            if (!isfinite(gt[j])) {
                st = mf_err_set(err, MF_ERR_NUMERIC, "the gradient of '%s' is not finite at element %lld", t->name,
                                (long long)j);
                goto fail;
            }
        }
    }
    if (mean) {
        mean->itc = (sel & MF_LOSS_ITC) ? sum[0] / (double)n : NAN;
        mean->itm = (sel & MF_LOSS_ITM) ? sum[1] / (double)n : NAN;
        mean->lm = (sel & MF_LOSS_LM) ? sum[2] / (double)n : NAN;
        mean->total = (sum[0] + sum[1] + sum[2]) / (double)n;
        mean->temp = mean->d_temp = NAN;
    }
fail:
    if (gs->label)
        mf_progress_end(&pg);
    if (saved) {
        mf_model_rebind(mm, saved);
        mf_free(saved);
    }
    return st;
}

static enum mf_status source_fn(void *ud, const float *const *w_eff, int64_t n_batches, const float **g,
                                struct mf_err *err)
{
    struct mf_grad_stream *gs = ud;
    const struct mf_prune_set *set = gs->set;
    for (size_t i = 0; i < set->n; i++)
        gs->ovr[set->t[i].model_index] = w_eff ? w_eff[i] : NULL;
    enum mf_status st = mf_grad_stream_mean(gs, w_eff ? gs->ovr : NULL, n_batches, NULL, err);
    if (st)
        return st;
    for (size_t i = 0; i < set->n; i++)
        g[i] = mf_grads_tensor(gs->g, (size_t)set->t[i].model_index);
    return MF_OK;
}

enum mf_status mf_grad_stream_source(struct mf_grad_stream *gs, const struct mf_prune_set *set,
                                     struct mf_grad_source *src, struct mf_err *err)
{
    for (size_t i = 0; i < set->n; i++) {
        int mi = set->t[i].model_index;
        if (mi < 0 || (size_t)mi >= mf_model_n_tensors(gs->m) || !mf_grads_tensor(gs->g, (size_t)mi))
            return mf_err_set(err, MF_ERR_INTERNAL, "prunable tensor '%s' has no gradient buffer", set->t[i].name);
    }
    gs->set = set;
    src->mean_grad = source_fn;
    src->ud = gs;
    src->pass_batches = gs->n_batches;
    return MF_OK;
}
