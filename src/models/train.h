/*
 * models/train.h: masked fine-tuning of the towers ITC+ITM use: a mutable f32 copy of every trained
 * tensor that the model's forward is re-pointed to, AdamW (decoupled weight decay, bias
 * correction), linear warm-up then linear decay, global-norm gradient clipping, and fixed masks
 * (masked weights, their gradients and both moments stay exactly 0).
 *
 *     struct mf_train_opts o = mf_train_opts_default();
 *     o.total_steps = 30;
 *     struct mf_trainer *tr;
 *     mf_trainer_create(model, masks_by_index, &o, &tr, &err);   // model now runs the trained copy
 *     for (step = 0; step < 30; step++) {
 *         struct mf_loss_values v;  struct mf_train_step_info si;
 *         mf_losses_batch(L, s, step, images, ids, mask, B, T, mf_trainer_grads(tr), &v, NULL, NULL, &err);
 *         mf_trainer_step(tr, s, v.d_temp, &si, &err);          // update, zeroes the gradients
 *         mf_losses_set_temp(L, mf_trainer_temp(tr));
 *     }
 *     const float *w = mf_trainer_values(tr)[i];                 // trained tensor i, or NULL
 *     mf_trainer_free(tr);                                       // model re-pointed at its own weights
 *
 * Which tensors train: every tensor that owns a gradient in the vision tower, the unimodal/image-
 * grounded text encoder, the ITC projections and the ITM head (embeddings, LayerNorms, biases and
 * heads included, as BLIP's fine-tuning trains model.parameters()), plus the scalar 'temp' when the
 * checkpoint has one. Not trained: the text decoder's own tensors and LM head (no ITC/ITM gradient
 * reaches them), momentum copies, queues.
 *
 * Thread safety: a trainer mutates its model (the weight pointers), so no other session may run on
 * that model between mf_trainer_create and mf_trainer_free except the ones the caller steps with.
 *
 * With o.all_towers (pretraining) the text decoder's own tensors and the LM head train too.
 *
 * Does not: momentum distillation, queue updates (models/losses.h does both sides of that), write
 * the optimiser state (the caller does, from mf_trainer_moments; mf_trainer_resume reads it
 * back), mixed precision. Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization"
 * (Alg. 2), in PyTorch's torch.optim.AdamW form; torch.nn.utils.clip_grad_norm_ (scale
 * max_norm / (norm + 1e-6) when above); salesforce/BLIP configs/retrieval_coco.yaml (init_lr 1e-5,
 * weight_decay 0.05) and train_retrieval.py (AdamW over all parameters, temp clamped to
 * [0.001, 0.5]).
 */
#ifndef MF_MODELS_TRAIN_H
#define MF_MODELS_TRAIN_H

#include <stdint.h>

#include "models/model_impl.h"

/* ---- weight override (shared by fine-tuning and any pruner that runs the forward on other
 * weights, e.g. masked or updated copies) ------------------------------------------------------ */

/* Re-points the forward: every weight pointer of the bound model structure whose gradient owner
 * (grad.h: wi/bi/..._i) is tensor i with w[i] != NULL now reads w[i] (numel of tensor i, f32), and
 * so does m->w32[i] (mf_model_weight_f32) and m->w32 of the tensors tied to i that were bound.
 * w has mf_model_n_tensors(m) entries; NULL entries leave their pointers alone. To undo, keep a copy
 * of m->w32 from before and pass it back (tied copies then read their owner's original values,
 * which equal their own in a tied checkpoint). No session may run on m during the call, and w's
 * buffers must outlive their use. */
void mf_model_rebind(struct mf_model *m, const float *const *w);

/* ---- fine-tuning ----------------------------------------------------------------------------- */

enum mf_lr_schedule { MF_LR_LINEAR = 0, MF_LR_COSINE = 1 };

struct mf_train_opts {
    double lr;            /* peak learning rate (BLIP retrieval_coco: init_lr 1e-5) */
    double weight_decay;  /* decoupled, on every trained tensor (BLIP: 0.05) */
    double beta1, beta2;  /* 0.9, 0.999 (PyTorch AdamW defaults, BLIP's) */
    double eps;           /* 1e-8 */
    double clip_norm;     /* global gradient-norm bound; 0 = no clipping (BLIP does not clip) */
    int64_t warmup_steps; /* lr rises linearly over the first warmup_steps steps ... */
    int64_t total_steps;  /* ... then falls to min_lr at total_steps (>= 1): linearly or cosine */
    enum mf_lr_schedule schedule;
    double min_lr;        /* floor of the decay (cosine; linear decays to 0 and ignores it) */
    bool all_towers;      /* also train the text decoder's own tensors and the LM head (pretraining:
                             every tensor a loss reaches); false = the ITC+ITM towers only */
    unsigned towers;      /* MF_TRAIN_* bits naming the towers that train (a downstream task's model,
                             e.g. captioning = VISION | DECODER); 0 = as all_towers says */
};

/* Towers for mf_train_opts.towers. A tied tensor trains when any tower that reads it trains (the
 * original layout's decoder shares its embeddings, cross-attention and FFN with the text encoder's
 * tensors, which then train through the decoder). 'temp' trains only with MF_TRAIN_ITC. */
enum {
    MF_TRAIN_VISION = 1u,  /* ViT */
    MF_TRAIN_TEXT = 2u,    /* text encoder */
    MF_TRAIN_ITC = 4u,     /* vision_proj, text_proj, temp */
    MF_TRAIN_ITM = 8u,     /* itm_head */
    MF_TRAIN_DECODER = 16u /* text decoder and LM head */
};

struct mf_train_opts mf_train_opts_default(void);

/* Learning rate of step t (0-based) under o: lr * (t+1)/W for t < W, then linear: lr * (T-t)/(T-W),
 * or cosine: min_lr + (lr - min_lr) (1 + cos(pi (t-W)/(T-W))) / 2 (salesforce/BLIP utils.py
 * cosine_lr_schedule, per step instead of per epoch). */
double mf_train_lr_at(const struct mf_train_opts *o, int64_t t);

struct mf_train_step_info {
    int64_t step;     /* 1-based count of steps taken, this one included */
    double lr;        /* learning rate used */
    double grad_norm; /* global L2 norm of the masked gradient (temp included), before clipping */
    double clip_scale; /* factor the gradient was multiplied by (1 = not clipped) */
};

struct mf_trainer;

/* masks: NULL, or mf_model_n_tensors(m) pointers (NULL = dense), 0/1 bytes of the tensor's numel;
 * the trained tensors' masks are copied, the others ignored (a checkpoint writer applies them to
 * the untrained tensors, e.g. the decoder's own). Copies the current f32 weights (masked) into the
 * trainer and re-points m at them (mf_model_rebind). Allocates 3 f32 values per trained weight
 * (value, first and second moment) plus the gradient block. */
enum mf_status mf_trainer_create(struct mf_model *m, const uint8_t *const *masks, const struct mf_train_opts *o,
                                 struct mf_trainer **out, struct mf_err *err);
/* Restores the model's own weight pointers and frees everything. NULL is fine. */
void mf_trainer_free(struct mf_trainer *tr);
/* The gradient block the losses accumulate into (zeroed by create and by every step). */
struct mf_grads *mf_trainer_grads(struct mf_trainer *tr);
/* One optimiser step from the accumulated gradients (d_temp: gradient of the loss w.r.t. temp,
 * from struct mf_loss_values): masks the gradients, clips, updates with AdamW, re-applies the
 * masks, clamps temp, zeroes the gradients. A non-finite gradient is MF_ERR_NUMERIC and leaves the
 * weights untouched. Threads: s's pool; a given thread count gives the same bits. */
enum mf_status mf_trainer_step(struct mf_trainer *tr, struct mf_session *s, double d_temp,
                               struct mf_train_step_info *info, struct mf_err *err);
/* Trained values per model tensor (n_tensors entries; NULL for tensors not trained), including the
 * 1-element 'temp'. Valid until mf_trainer_free. */
const float *const *mf_trainer_values(const struct mf_trainer *tr);
/* AdamW moments of model tensor i (numel floats each), NULL when it is not trained (for tests). */
void mf_trainer_moments(const struct mf_trainer *tr, size_t i, const float **m1, const float **m2);
/* Current temperature (the checkpoint's, updated and clamped; 0.07 when it has none). */
float mf_trainer_temp(const struct mf_trainer *tr);
/* Number of trained tensors and weights (temp included), for messages. */
void mf_trainer_counts(const struct mf_trainer *tr, int64_t *n_tensors, int64_t *n_weights);
/* Optimiser steps taken (by mf_trainer_step, or set by mf_trainer_resume). */
int64_t mf_trainer_steps(const struct mf_trainer *tr);
/* Resuming a run: sets the step count and the AdamW moments of every trained tensor from m1/m2
 * ((n_tensors) arrays of numel floats; every trained tensor's entry must be non-NULL). The weights
 * themselves are the model's (the checkpoint the run wrote). */
enum mf_status mf_trainer_resume(struct mf_trainer *tr, int64_t steps, const float *const *m1, const float *const *m2,
                                 struct mf_err *err);

#endif
