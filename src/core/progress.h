/*
 * core/progress.h: a one-line progress bar with rate and ETA on stderr. Enabled only when stderr is
 * a terminal or when forced (--progress); never when quiet. Redraws at most 10 times a second.
 */
#ifndef MF_CORE_PROGRESS_H
#define MF_CORE_PROGRESS_H

#include "core/common.h"

enum mf_progress_mode { MF_PROGRESS_AUTO = 0, MF_PROGRESS_ON = 1, MF_PROGRESS_OFF = 2 };

struct mf_progress {
    const char *label;
    const char *unit;
    int64_t total, done;
    double t_start, t_last;
    bool enabled;
};

/* Process-wide default used by mf_progress_begin (set once by the CLI). */
void mf_progress_set_mode(enum mf_progress_mode mode);
void mf_progress_begin(struct mf_progress *p, const char *label, const char *unit, int64_t total);
void mf_progress_add(struct mf_progress *p, int64_t n);
void mf_progress_end(struct mf_progress *p);

#endif
