/*
 * models/momentum.h: BLIP's contrastive state, the part of BLIP_Pretrain that evolves from batch
 * to batch without gradients: the momentum encoders (visual_encoder_m, text_encoder_m,
 * vision_proj_m, text_proj_m) as a writable f32 working copy, and the feature queues
 * (image_queue, text_queue [P, Q], queue_ptr). Used by models/losses.c for ITC/ITM; made so that
 * a pretraining loop can also write the evolved state back (mf_momentum_tensor, _queue, _ptr).
 *
 *     struct mf_momentum *mo;
 *     mf_momentum_create(model, true, &mo, &err);          // copies *_m and the queues to f32
 *     mf_momentum_update(mo, pool);                        // m = 0.995 m + 0.005 θ (model's weights now)
 *     mf_momentum_features(mo, s, images, ids, mask, B, T, img_m, txt_m, &err);  // (B, P) each
 *     ... similarities against [img_m | queue] ...
 *     mf_momentum_enqueue(mo, img_m, txt_m, B);            // queue[:, ptr..ptr+B) = feats, ptr += B mod Q
 *     mf_momentum_reset(mo);                               // back to the checkpoint's values
 *     mf_momentum_free(mo);
 *
 * θ is what the model's forward reads at the time of the update (mf_model_weight_f32): the
 * checkpoint's weights, a masked override (mf_model_rebind) or a trainer's copy. The momentum
 * towers are a shallow copy of the model structure re-pointed at the working copy, so they run
 * through the same vit.c/bert.c forwards. Every element update is the same float expression
 * whatever the thread split (no reduction), so the state evolves identically for any thread count.
 *
 * Does not: distil (alpha = 0 is the caller's choice), gather across processes, initialise
 * momentum copies from the online weights (a checkpoint without them has no momentum state), use
 * or update idx_queue (BLIP_Retrieval's; the pretraining targets are the diagonal).
 * Reference: salesforce/BLIP models/blip_pretrain.py (_momentum_update, _dequeue_and_enqueue).
 * Thread safety: one state per caller; not shared. The model must outlive it and must not be
 * re-bound while mf_momentum_features runs.
 */
#ifndef MF_MODELS_MOMENTUM_H
#define MF_MODELS_MOMENTUM_H

#include "models/model_impl.h"

#define MF_MOMENTUM_COEF 0.995f

struct mf_momentum;

/* momentum = false, or a checkpoint without *_m copies: only the queues (when present), read-only
 * in use (mf_momentum_active() is false). A checkpoint with some momentum copies but not all the
 * towers need is an error naming the first missing tensor, as are queues of the wrong shape, a
 * queue_ptr outside [0, Q) or non-finite values. */
enum mf_status mf_momentum_create(const struct mf_model *m, bool momentum, struct mf_momentum **out,
                                  struct mf_err *err);
void mf_momentum_free(struct mf_momentum *mo);
/* Momentum towers in use (checkpoint has them and momentum was asked for). */
bool mf_momentum_active(const struct mf_momentum *mo);
/* Bytes of the working copies (momentum tensors + queues). */
size_t mf_momentum_bytes(const struct mf_momentum *mo);
/* Number of momentum tensors in the working copy. */
size_t mf_momentum_count(const struct mf_momentum *mo);
/* Restores the checkpoint's momentum copies, queues and pointer (a fresh run). */
void mf_momentum_reset(struct mf_momentum *mo);

/* One momentum update of every pair (no-op when inactive); splits each tensor over the pool. */
void mf_momentum_update(struct mf_momentum *mo, struct mf_pool *pool);
/* Momentum features of one batch (normalised, (B, P) each) in the session's arena context (the
 * caller resets the arena; the forwards allocate from it). MF_ERR_UNSUPPORTED when inactive. */
enum mf_status mf_momentum_features(const struct mf_momentum *mo, struct mf_session *s, const float *images,
                                    const int32_t *ids, const int32_t *mask, int64_t B, int64_t T, float *img_m,
                                    float *txt_m, struct mf_err *err);
/* queue[:, (ptr + b) mod Q] = feat[b] for b = 0..B-1 (later rows win when B > Q), then
 * ptr = (ptr + B) mod Q; BLIP's slice assignment where Q % B == 0, which it asserts. No-op
 * without queues. */
void mf_momentum_enqueue(struct mf_momentum *mo, const float *img_m, const float *txt_m, int64_t B);

/* Queues as (Q, P) rows (transposed: a queue is then a linear layer's weight); Q = 0 without. */
int64_t mf_momentum_queue_len(const struct mf_momentum *mo);
const float *mf_momentum_queue(const struct mf_momentum *mo, int text);
int64_t mf_momentum_queue_ptr(const struct mf_momentum *mo);
/* Current value of model tensor i when it is a momentum copy in the working copy (numel of the
 * tensor, f32), else NULL. For writing the evolved state back. */
const float *mf_momentum_tensor(const struct mf_momentum *mo, size_t i);

#endif
