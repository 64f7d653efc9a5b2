/*
 * bench/bench_chita.c: memory, disk and time of one CHITA solve (src/prune/chita.c) at BLIP-base
 * size (the 216 prunable tensors, 226,492,416 weights, bench/blip_base_shapes.h), in one process.
 *
 * What it does: fills the weights with seeded pseudo-normal values scaled per tensor, writes R
 * (default 16) seeded pseudo-random gradient rows (a shared mean plus per-row noise, so that the
 * column sums are not pure noise; --spike adds rare shared large values on small weights, which
 * sends the global step into its line search) through mf_chita_rows_create/mf_chita_rows_put into a row file
 * in --tmp, then runs one mf_chita_solve at --sparsity (0.63) -- or, with --mode chitapp, the
 * whole mf_chita_run with --rounds rounds of R rows each from a synthetic gradient source -- and
 * prints one "RESULT" line: wall time per phase, row-file bytes (reserved and the free-space drop
 * of its file system), peak RSS (getrusage ru_maxrss of this fresh process) and its ratio to the
 * f32 weights, the solver's info (branch, step, passes, windows, most bytes mapped), whether
 * exactly floor(s p) weights are pruned, and FNV-1a hashes of the masks and the updated weights
 * (to check that a speed change to chita.c keeps every bit).
 *
 * What it deliberately does not do: no model, no real gradients (the solver's cost does not depend
 * on where the rows come from, only its branch does), no comparison with the reference at this
 * size (tests/prune/test_chita.c checks the solver against tests/golden/gen_chita.py), no
 * assertion on time. Run it in a fresh process per configuration so that ru_maxrss is that
 * configuration's alone.
 *
 * Reference: shared/spec/pruning.md `chita`; llm.c dev/cpu/matmul_forward.c (check, then time).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>

#include "blip_base_shapes.h"
#include "core/common.h"
#include "core/pool.h"
#include "multiflow/prune.h"

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static double free_bytes(const char *dir)
{
    struct statvfs v;
    if (statvfs(dir, &v) != 0)
        return -1;
    return (double)v.f_bavail * (double)v.f_frsize;
}

static inline uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Roughly standard normal (sum of four uniforms, centred, variance 1) from one hash. */
static inline float pseudo_normal(uint64_t key)
{
    uint64_t h = mix64(key);
    float s = (float)(h & 0xffff) + (float)((h >> 16) & 0xffff) + (float)((h >> 32) & 0xffff) + (float)(h >> 48);
    return (s / 65536.0f - 2.0f) * 1.7320508f;
}

struct fill {
    const struct mf_prune_set *set;
    float *dst;        /* (total) in selection order */
    uint64_t seed;
    int what;          /* 0 weights, 1 gradient row */
    float gscale;      /* gradient rows: noise scale */
    int64_t spike_every; /* gradient rows: every this many columns (hashed) a shared spike; 0 none */
    float spike;       /* its value */
    const float *w;    /* (total) gradient rows: spikes only where |w| < 0.25 x the tensor's scale */
};

static void fill_kernel(void *arg, int ith, int nth)
{
    struct fill *F = arg;
    int64_t off = 0;
    for (size_t i = 0; i < F->set->n; i++) {
        const int64_t n = F->set->t[i].n;
        int64_t j0, j1;
        mf_split_range(n, ith, nth, &j0, &j1);
        float *d = F->dst + off;
        const float scale = F->what == 0 ? 0.02f * (0.6f + 0.1f * (float)(i % 9)) : F->gscale;
        for (int64_t j = j0; j < j1; j++) {
            uint64_t col = (uint64_t)(off + j);
            float v = pseudo_normal(F->seed * 0x100000000ull + col);
            if (F->what == 1)
                v = 0.5f * pseudo_normal(0xc0ffee0000000000ull + col) + v; /* shared mean + row noise */
            d[j] = scale * v;
            const float wscale = 0.02f * (0.6f + 0.1f * (float)(i % 9));
            if (F->what == 1 && F->spike_every > 0 && mix64(0x5b1e000000000000ull + col) % (uint64_t)F->spike_every == 0 &&
                fabsf(F->w[off + j]) < 0.25f * wscale)
                d[j] += (mix64(col) & 1 ? F->spike : -F->spike) * (1.0f + 0.1f * v);
        }
        off += n;
    }
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

/* The synthetic gradient source of --mode chitapp: one fresh row per call (n_batches is 1). */
struct synth {
    const struct mf_prune_set *set;
    struct mf_pool *pool;
    float *g;          /* (total) */
    const float **gv;  /* (set order) views into g */
    uint64_t calls;
    double gen_s;
    float gscale, spike;
    int64_t spike_every;
    const float *w;
};

static enum mf_status synth_grad(void *ud, const float *const *w_eff, int64_t n_batches, const float **g,
                                 struct mf_err *err)
{
    (void)w_eff;
    (void)n_batches;
    (void)err;
    struct synth *sy = ud;
    double t0 = mf_time_now();
    struct fill F = {sy->set, sy->g, 1000 + sy->calls++, 1, sy->gscale, sy->spike_every, sy->spike, sy->w};
    mf_pool_run(sy->pool, fill_kernel, &F);
    for (size_t i = 0; i < sy->set->n; i++)
        g[i] = sy->gv[i];
    sy->gen_s += mf_time_now() - t0;
    return MF_OK;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_chita [--rows 16] [--tmp DIR] [--sparsity 0.63] [--threads 2] [--layers 12]\n"
                    "                   [--mode chita|chitapp] [--rounds 2] [--window-mb 256] [--inplace]\n"
                    "                   [--grad-scale 1e-3] [--spike VALUE EVERY]\n");
}

int main(int argc, char **argv)
{
    int64_t n_rows = 16, rounds = 2;
    int threads = 2, layers = BENCH_LAYERS, inplace = 0, plus = 0;
    double s = 0.63, window_mb = 0;
    float gscale = 1e-3f, spike = 0;
    int64_t spike_every = 0;
    const char *tmp = "/tmp";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rows") == 0 && i + 1 < argc)
            n_rows = atoll(argv[++i]);
        else if (strcmp(argv[i], "--tmp") == 0 && i + 1 < argc)
            tmp = argv[++i];
        else if (strcmp(argv[i], "--sparsity") == 0 && i + 1 < argc)
            s = atof(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--layers") == 0 && i + 1 < argc)
            layers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoll(argv[++i]);
        else if (strcmp(argv[i], "--grad-scale") == 0 && i + 1 < argc)
            gscale = (float)atof(argv[++i]);
        else if (strcmp(argv[i], "--spike") == 0 && i + 2 < argc) {
            spike = (float)atof(argv[++i]);
            spike_every = atoll(argv[++i]);
        } else if (strcmp(argv[i], "--window-mb") == 0 && i + 1 < argc)
            window_mb = atof(argv[++i]);
        else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
            const char *m = argv[++i];
            if (strcmp(m, "chita") != 0 && strcmp(m, "chitapp") != 0) {
                usage();
                return 2;
            }
            plus = strcmp(m, "chitapp") == 0;
        } else if (strcmp(argv[i], "--inplace") == 0)
            inplace = 1;
        else {
            usage();
            return 2;
        }
    }
    if (layers < 1 || layers > BENCH_LAYERS || n_rows < 1 || threads < 1 || rounds < 1) {
        usage();
        return 2;
    }
    static struct bench_shapes shapes;
    bench_shapes_build(&shapes, layers);
    bench_shapes_sort(&shapes);

    struct mf_prune_set set = {0};
    set.n = (size_t)shapes.n;
    set.total = bench_shapes_total(&shapes);
    set.t = calloc(set.n, sizeof *set.t);
    float *w = malloc((size_t)set.total * sizeof *w);                    /* (total) f32 weights */
    float *g = malloc((size_t)set.total * sizeof *g);                    /* (total) one gradient row */
    float *wn_block = inplace ? w : malloc((size_t)set.total * sizeof *wn_block); /* (total) */
    uint8_t *mk = malloc((size_t)set.total);                             /* (total) masks */
    uint8_t **masks = calloc(set.n, sizeof *masks);
    float **w_new = calloc(set.n, sizeof *w_new);
    const float **gv = calloc(set.n, sizeof *gv);
    if (!set.t || !w || !g || !wn_block || !mk || !masks || !w_new || !gv) {
        fprintf(stderr, "bench_chita: out of memory for %lld weights\n", (long long)set.total);
        return 1;
    }
    int64_t off = 0;
    for (size_t i = 0; i < set.n; i++) {
        struct mf_prune_tensor *t = &set.t[i];
        t->name = shapes.s[i].name;
        t->model_index = (int)i;
        t->modality = shapes.s[i].mod;
        t->out = shapes.s[i].out;
        t->in = shapes.s[i].in;
        t->n = t->out * t->in;
        t->w = w + off;
        masks[i] = mk + off;
        w_new[i] = wn_block + off;
        gv[i] = g + off;
        off += t->n;
    }
    const double wmb = (double)set.total * 4 / (1024.0 * 1024.0);
    const double row_bytes = (double)n_rows * (double)set.total * 4;
    double disk_free0 = free_bytes(tmp);
    printf("# bench_chita: %zu tensors, %lld weights (%.0f MiB f32), %lld rows (%.2f GiB row file in %s, %.1f GiB "
           "free), s = %.2f, %d threads, mode %s%s\n",
           set.n, (long long)set.total, wmb, (long long)n_rows, row_bytes / 1073741824.0, tmp,
           disk_free0 / 1073741824.0, s, threads, plus ? "chitapp" : "chita", inplace ? ", in place" : "");
    if (disk_free0 >= 0 && row_bytes * (plus ? 1 : 1) > disk_free0 * 0.95) {
        fprintf(stderr, "bench_chita: %s has %.1f GiB free, the row file needs %.1f GiB: use --tmp or fewer --rows\n",
                tmp, disk_free0 / 1073741824.0, row_bytes / 1073741824.0);
        return 1;
    }
    fflush(stdout);

    struct mf_err err = {0};
    struct mf_pool *pool = mf_pool_create(threads);
    struct mf_chita_opts o;
    mf_chita_opts_default(&o);
    o.batch_size = 32;
    if (window_mb > 0)
        o.window_bytes = (size_t)(window_mb * 1048576.0);
    struct mf_chita_info info = {0};
    struct mf_chita_rows *rows = NULL;

    double t0 = mf_time_now();
    struct fill F = {&set, w, 1, 0, 0, 0, 0, NULL};
    mf_pool_run(pool, fill_kernel, &F);
    memset(mk, 0, (size_t)set.total);
    if (!inplace)
        memset(wn_block, 0, (size_t)set.total * sizeof *wn_block);
    double t_init = mf_time_now() - t0, rss_init = peak_rss_mb();

    double t_gen = 0, t_put = 0, t_solve = 0, disk_used = 0;
    if (!plus) {
        t0 = mf_time_now();
        if (mf_chita_rows_create(tmp, n_rows, set.total, &rows, &err) != MF_OK)
            goto fail;
        double t_create = mf_time_now() - t0;
        t_put = t_create;
        for (int64_t r = 0; r < n_rows; r++) {
            double a = mf_time_now();
            struct fill FG = {&set, g, 1000 + (uint64_t)r, 1, gscale, spike_every, spike, w};
            mf_pool_run(pool, fill_kernel, &FG);
            double b = mf_time_now();
            if (mf_chita_rows_put(rows, r, &set, gv, NULL, &err) != MF_OK)
                goto fail;
            double c = mf_time_now();
            t_gen += b - a;
            t_put += c - b;
            fprintf(stderr, "\rbench_chita: row %lld/%lld put (%.1f s)", (long long)r + 1, (long long)n_rows, t_put);
        }
        fprintf(stderr, "\n");
        disk_used = disk_free0 - free_bytes(tmp);
        printf("# rows: create %.1f s (fallocate), generate %.1f s, put %.1f s, row file %.2f GiB (free space "
               "drop %.2f GiB), peak RSS so far %.0f MiB\n", t_create, t_gen, t_put, row_bytes / 1073741824.0,
               disk_used / 1073741824.0, peak_rss_mb());
        fflush(stdout);
        t0 = mf_time_now();
        if (mf_chita_solve(pool, &set, NULL, rows, NULL, s, &o, masks, w_new, &info, &err) != MF_OK)
            goto fail;
        t_solve = mf_time_now() - t0;
        mf_chita_rows_free(rows);
        rows = NULL;
    } else {
        struct synth sy = {&set, pool, g, gv, 0, 0, gscale, spike, spike_every, w};
        struct mf_grad_source src = {synth_grad, &sy, n_rows};
        t0 = mf_time_now();
        if (mf_chita_run(pool, &set, s, rounds, n_rows, tmp, &o, &src, masks, w_new, &info, &err) != MF_OK)
            goto fail;
        t_solve = mf_time_now() - t0 - sy.gen_s;
        t_gen = sy.gen_s;
        disk_used = row_bytes; /* one round's file at a time; measured in chita mode */
    }

    int64_t zeros = 0;
    for (int64_t j = 0; j < set.total; j++)
        zeros += mk[j] == 0;
    const int64_t k = (int64_t)floorl((long double)s * (long double)set.total);
    uint64_t hm = hash_bytes(1469598103934665603ull, mk, (size_t)set.total);
    uint64_t hw = hash_bytes(1469598103934665603ull, wn_block, (size_t)set.total * sizeof(float));
    double rss = peak_rss_mb();
    printf("RESULT mode=%s rows=%lld rounds=%lld threads=%d init_s=%.1f gen_s=%.1f put_s=%.1f solve_s=%.1f "
           "row_file_gib=%.2f disk_drop_gib=%.2f rss_init_mb=%.0f peak_rss_mb=%.0f weights_mb=%.0f ratio=%.2f "
           "branch=%d step=%.6g passes=%lld windows=%lld blocks=%lld max_mapped_mb=%.0f exact=%s masks=%016llx "
           "w_new=%016llx\n",
           plus ? "chitapp" : "chita", (long long)n_rows, (long long)(plus ? rounds : 1), threads, t_init, t_gen,
           t_put, t_solve, row_bytes / 1073741824.0, disk_used / 1073741824.0, rss_init, rss, wmb, rss / wmb,
           info.branch, info.step, (long long)info.passes, (long long)info.windows, (long long)info.blocks,
           (double)info.max_mapped / 1048576.0, zeros == k ? "yes" : "NO", (unsigned long long)hm,
           (unsigned long long)hw);
    mf_pool_free(pool);
    return zeros == k ? 0 : 1;
fail:
    fprintf(stderr, "bench_chita: %s\n", err.msg);
    mf_chita_rows_free(rows);
    mf_pool_free(pool);
    return 1;
}
