/*
 * prune/gradient.h: a calibration stream of BLIP pretraining-loss gradients: the mean over the
 * next n batches of consecutive pairs (file order, cycling when the data is exhausted) of
 * d(sum of the selected losses)/dθ, optionally at overridden (masked) prunable weights. Shared by
 * `multiflow grad` (one pass, model weights) and the gradient-based pruners (struct
 * mf_grad_source, multiflow/prune.h).
 *
 *     struct mf_grad_stream *gs;
 *     struct mf_grad_stream_opts o = {{0, MF_ITM_NEG_SAMPLE, 0}, 8, 35, "grad"};
 *     mf_grad_stream_create(session, ann, &o, &gs, &err);
 *     mf_grad_stream_mean(gs, NULL, 0, &mean_loss, &err);        // one pass, model weights
 *     const float *g = mf_grads_tensor(mf_grad_stream_grads(gs), i);
 *
 * Does not: shuffle, augment, or own the session/annotations (both must outlive the stream).
 * The mean is the sum over batches divided by n, as the reference divides p.grad by the number
 * of batches (FarinaMatteo/multiflow pruners/snip.py, score(reduce_by)). Stream position p runs
 * batch (p mod n_batches) with ITM sampling seeded by (seed, p), so a second pass over the data
 * draws new negatives, like the reference's data loader that keeps drawing.
 * Thread safety: one stream per session; not shared.
 */
#ifndef MF_PRUNE_GRADIENT_H
#define MF_PRUNE_GRADIENT_H

#include "models/grad.h"
#include "models/losses.h"
#include "multiflow/prune.h"

struct mf_annotations;
struct mf_grad_stream;

struct mf_grad_stream_opts {
    struct mf_losses_opts losses;
    int64_t batch;              /* pairs per batch (the last batch of a pass may be shorter) */
    int64_t max_tokens;         /* caption length L */
    const char *progress_label; /* stderr progress label, NULL = none */
};

/* Checks the options against the data (ITM needs >= 2 pairs in every batch). */
enum mf_status mf_grad_stream_create(struct mf_session *s, const struct mf_annotations *ann,
                                     const struct mf_grad_stream_opts *o, struct mf_grad_stream **out,
                                     struct mf_err *err);
void mf_grad_stream_free(struct mf_grad_stream *gs);
/* Batches in one pass over the data. */
int64_t mf_grad_stream_batches(const struct mf_grad_stream *gs);
/* Stream position (batches drawn so far) and rewinding to the first batch; rewinding also restores
 * the checkpoint's momentum encoders and queues (models/momentum.h), so a rewound pass equals a
 * fresh one. Without a rewind, the contrastive state keeps evolving across calls, as in the
 * reference's one model that serves every batch it draws. */
int64_t mf_grad_stream_position(const struct mf_grad_stream *gs);
void mf_grad_stream_rewind(struct mf_grad_stream *gs);
/* The selected MF_LOSS_* bits. */
unsigned mf_grad_stream_losses(const struct mf_grad_stream *gs);
/* The loss state (mf_losses_momentum_name, mf_losses_momentum for reports). */
const struct mf_losses *mf_grad_stream_loss_state(const struct mf_grad_stream *gs);

/* Zeroes the gradient block, runs the next n batches (n = 0: one pass) with the model-indexed
 * weight override table w_override ((n_tensors) indexed by gradient owner, as mf_model_rebind in
 * models/train.h takes it; NULL = model weights; the model's own pointers are restored after),
 * and divides the prunable tensors' gradients by n. mean (may be NULL) receives the mean loss
 * values. A non-finite prunable gradient is MF_ERR_NUMERIC naming the tensor. */
enum mf_status mf_grad_stream_mean(struct mf_grad_stream *gs, const float *const *w_override, int64_t n,
                                   struct mf_loss_values *mean, struct mf_err *err);
const struct mf_grads *mf_grad_stream_grads(const struct mf_grad_stream *gs);

/* A struct mf_grad_source over the stream for the prunable set (set order <-> model indices);
 * set must outlive the source. */
enum mf_status mf_grad_stream_source(struct mf_grad_stream *gs, const struct mf_prune_set *set,
                                     struct mf_grad_source *src, struct mf_err *err);

#endif
