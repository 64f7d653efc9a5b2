/*
 * prune/stats.h: internal entry point of the calibration statistics (stats.c) for callers that
 * already hold model inputs (tests, benchmarks, a future streaming front end): one batch of the
 * calibration passes accumulated into st. mf_stats_collect (multiflow/prune.h) is this plus data
 * loading, batching and a progress bar.
 */
#ifndef MF_PRUNE_STATS_H
#define MF_PRUNE_STATS_H

#include "multiflow/prune.h"

/* Runs mf_calibration_forward on B pairs (images (B, 3, R, R), ids/mask (B, L)) with st observing
 * every prunable linear, then adds B to the pair count. st must belong to s's model. On error st
 * may hold part of the batch. */
enum mf_status mf_stats_add_batch(struct mf_session *s, const float *images, const int32_t *ids, const int32_t *mask,
                                  int64_t B, int64_t L, struct mf_stats *st, struct mf_err *err);

#endif
