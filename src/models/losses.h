/*
 * models/losses.h: BLIP's pretraining losses (ITC, ITM with hard negatives, LM with label
 * smoothing) on one batch of image-caption pairs: training forward, loss values, and backward into
 * a gradient block (struct mf_grads, models/grad.h). What exactly is computed, and where it deviates
 * from salesforce/BLIP BLIP_Pretrain.forward, is in docs/internals/losses.md.
 *
 *     struct mf_losses_opts o = {.losses = MF_LOSS_ITC | MF_LOSS_ITM | MF_LOSS_LM,
 *                                .negatives = MF_ITM_NEG_HARDEST, .seed = 0};
 *     struct mf_losses *L = NULL;
 *     if (mf_losses_create(model, &o, &L, &err) == MF_OK) {
 *         mf_grads_zero(g);
 *         struct mf_loss_values v;
 *         mf_losses_batch(L, session, 0, images, ids, mask, B, T, g, &v, &err);  // g += d(sum)/dθ
 *         mf_losses_free(L);
 *     }
 *
 * With momentum on (the default) and a checkpoint that has BLIP's momentum copies (*_m) and
 * queues, every batch first updates the momentum encoders (m = 0.995 m + 0.005 θ, θ = the weights
 * the model reads now), uses their features as the first B contrastive columns and enqueues them
 * after the batch: the result of a batch depends on the batches before it (models/momentum.h).
 *
 * Thread safety: an mf_losses carries that evolving state: one caller at a time, and the model
 * must not be used by another session during mf_losses_batch. Each call uses its session (pool,
 * arena) and the caller's gradient block; the state evolves identically for any thread count.
 */
#ifndef MF_MODELS_LOSSES_H
#define MF_MODELS_LOSSES_H

#include <stdint.h>

#include "multiflow/model.h"
#include "multiflow/status.h"

struct mf_grads;
struct mf_momentum;

enum { MF_LOSS_ITC = 1u, MF_LOSS_ITM = 2u, MF_LOSS_LM = 4u, MF_LOSS_ALL = 7u };

enum mf_itm_negatives {
    MF_ITM_NEG_SAMPLE = 0,  /* one categorical draw per row, seeded by (seed, batch index) */
    MF_ITM_NEG_HARDEST = 1  /* argmax of the same weights, lowest index on ties */
};

enum mf_momentum_mode {
    MF_MOMENTUM_ON = 0, /* the checkpoint's momentum encoders and queues, updated per batch, when it has them */
    MF_MOMENTUM_OFF = 1 /* online features with the gradient stopped, queues as stored (deviation) */
};

struct mf_losses_opts {
    unsigned losses;                 /* MF_LOSS_* bits; 0 = every loss the checkpoint supports */
    enum mf_itm_negatives negatives;
    uint64_t seed;
    enum mf_momentum_mode momentum;  /* 0 = on */
    int64_t lm_prompt_len;           /* LM: positions below this are not targets (BLIP_Decoder's
                                        prompt_length: [DEC] + the prompt's pieces; 0 = every real
                                        token after the first) */
};

struct mf_loss_values {
    double itc, itm, lm; /* NaN when not selected */
    double total;        /* sum of the selected losses (what was differentiated) */
    double temp;         /* temperature used (clamped) */
    double d_temp;       /* d total / d temp (0 when the checkpoint has no 'temp' or ITC is off) */
};

struct mf_losses;

/* Parses "itc,itm,lm" (any non-empty subset, any order, no repeats) into MF_LOSS_* bits. */
enum mf_status mf_losses_parse(const char *list, unsigned *bits, struct mf_err *err);
/* Checks the selected losses against the checkpoint (ITC: text encoder + projections; ITM: text
 * encoder + itm_head, and projections for the negatives; LM: decoder), reads 'temp' and, for ITC
 * or ITM, the contrastive state (models/momentum.h): the queues 'image_queue'/'text_queue'
 * [proj, Q] and 'queue_ptr' when present, and with momentum on the momentum copies as a writable
 * f32 working copy (about 0.9 GB for BLIP-base). */
enum mf_status mf_losses_create(const struct mf_model *m, const struct mf_losses_opts *o, struct mf_losses **out,
                                struct mf_err *err);
void mf_losses_free(struct mf_losses *L);
/* The selected bits after defaulting (for messages). */
unsigned mf_losses_selected(const struct mf_losses *L);
/* The contrastive state (momentum copies, queues), NULL when neither ITC nor ITM is selected. For
 * reports (mf_momentum_active, _bytes) and for writing the evolved state back. */
const struct mf_momentum *mf_losses_momentum(const struct mf_losses *L);
/* "on" (momentum encoders in use), "off" (asked off) or "none" (no momentum copies in the
 * checkpoint, or neither ITC nor ITM selected): for reports. */
const char *mf_losses_momentum_name(const struct mf_losses *L);
/* Back to the checkpoint's momentum copies, queues and queue pointer (a fresh run). */
void mf_losses_reset(struct mf_losses *L);

/* Sets the temperature the next batches use (a fine-tuning step updated it), clamped to
 * [0.001, 0.5] as the reference clamps in place. Ignored when the checkpoint has no 'temp'. Not
 * thread-safe against concurrent mf_losses_batch calls on the same L. Returns the value in use. */
float mf_losses_set_temp(struct mf_losses *L, float temp);

/* One batch: images (B, 3, R, R), ids/mask (B, T) as tokenized. Resets the session arena, runs the
 * training forwards, and ACCUMULATES d(sum of the selected losses)/dθ into g (caller zeroes it).
 * batch_index seeds the ITM sampling together with the seed. neg_img/neg_txt (B) receive the ITM
 * negatives when not NULL and ITM is selected. ITM needs B >= 2. With momentum in use, advances
 * the contrastive state by this batch (update before its momentum forward, enqueue after the
 * batch succeeded; a failed batch may leave the update done and nothing enqueued). */
enum mf_status mf_losses_batch(struct mf_losses *L, struct mf_session *s, uint64_t batch_index,
                               const float *images, const int32_t *ids, const int32_t *mask, int64_t B, int64_t T,
                               struct mf_grads *g, struct mf_loss_values *out, int32_t *neg_img, int32_t *neg_txt,
                               struct mf_err *err);

#endif
