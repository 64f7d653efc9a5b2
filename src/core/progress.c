/* Progress bar (core/progress.h). */
#include "core/progress.h"

#include <stdio.h>
#include <unistd.h>

static enum mf_progress_mode g_mode = MF_PROGRESS_AUTO;

void mf_progress_set_mode(enum mf_progress_mode mode) { g_mode = mode; }

static void draw(struct mf_progress *p, bool final)
{
    double el = mf_time_now() - p->t_start;
    double rate = el > 0 ? (double)p->done / el : 0;
    double eta = rate > 0 && p->total > p->done ? (double)(p->total - p->done) / rate : 0;
    int width = 30, fill = p->total > 0 ? (int)(width * p->done / p->total) : 0;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r%s [%s] %lld/%lld %s  %.2f %s/s  %s %.0fs   ", p->label, bar,
            (long long)p->done, (long long)p->total, p->unit, rate, p->unit,
            final ? "elapsed" : "ETA", final ? el : eta);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

void mf_progress_begin(struct mf_progress *p, const char *label, const char *unit, int64_t total)
{
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->done = 0;
    p->t_start = p->t_last = mf_time_now();
    p->enabled = g_mode == MF_PROGRESS_ON || (g_mode == MF_PROGRESS_AUTO && isatty(2));
}

void mf_progress_add(struct mf_progress *p, int64_t n)
{
    p->done += n;
    if (!p->enabled)
        return;
    double now = mf_time_now();
    if (now - p->t_last >= 0.1 || p->done >= p->total) {
        p->t_last = now;
        draw(p, false);
    }
}

void mf_progress_end(struct mf_progress *p)
{
    if (p->enabled)
        draw(p, true);
}
