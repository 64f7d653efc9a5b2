/*
 * models/pretrain.h: what a pretraining run saves and reads back so that a killed run resumes to
 * the same bits: the model in the original layout with the trained values, the evolved momentum
 * encoders and queues (an ordinary checkpoint every verb loads), and the optimiser state (AdamW
 * moments of every trained tensor) in a second safetensors file.
 *
 *     mf_pretrain_write_model(m, tr, mf_losses_momentum(L), "run/model.safetensors", meta, 2, &err);
 *     mf_pretrain_write_state(m, tr, "run/state-000100.safetensors", meta, 2, &err);
 *     ...  // a new process: load run/, create the trainer and the losses from it, then
 *     mf_pretrain_read_state(m, tr, "run/state-000100.safetensors", &err);   // moments and step
 *
 * Both writers are atomic (temp file, fsync, rename). The step count is the metadata key
 * MF_PRETRAIN_STEP_KEY of both files; the caller adds its own keys (options, data) for checks.
 * Thread safety: read-only on the model, trainer and momentum state; one call at a time per run.
 */
#ifndef MF_MODELS_PRETRAIN_H
#define MF_MODELS_PRETRAIN_H

#include "models/losses.h"
#include "models/momentum.h"
#include "models/train.h"

#define MF_PRETRAIN_STEP_KEY "multiflow_pretrain_step"

/* Every tensor of m in checkpoint order, same names and shapes: the values the forward reads now
 * (the trainer's, tied copies their owner's, the LM decoder weight/bias alias what the head
 * uses), 'temp' from the trainer, the momentum copies and queues (as [P, Q]) and queue_ptr from mo
 * (may be NULL: the model's own), anything else as stored. Floating-point tensors the run changes
 * are written F32. meta: n_meta (key, value) pairs; the step is added. */
enum mf_status mf_pretrain_write_model(const struct mf_model *m, const struct mf_trainer *tr,
                                       const struct mf_momentum *mo, const char *path, const char *const *meta,
                                       size_t n_meta, struct mf_err *err);
/* "m1.<name>" and "m2.<name>" (F32) for every trained tensor; metadata: meta pairs and the step. */
enum mf_status mf_pretrain_write_state(const struct mf_model *m, const struct mf_trainer *tr, const char *path,
                                       const char *const *meta, size_t n_meta, struct mf_err *err);
/* Reads a state file written for the same model and trained set and resumes tr (moments, step).
 * Missing or misshapen moments, or a step key that is absent or malformed, are errors naming the
 * file and the tensor. */
enum mf_status mf_pretrain_read_state(const struct mf_model *m, struct mf_trainer *tr, const char *path,
                                      struct mf_err *err);

#endif
