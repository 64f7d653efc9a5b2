/*
 * bench/bench_prune.c: scoring + exact-k selection time of every criterion at BLIP-base size
 * (226,492,416 prunable weights: models.md §4.7 / §8.3) and the peak RSS of this process.
 *
 * What it does: allocates one f32 block for the weights (906 MB) and one byte per weight for the
 * masks (no score buffer: the mask path recomputes scores), fills the weights with standard normals
 * scaled per tensor and random calibration statistics, then for each thread count and each method
 * times mf_prune_compute_masks (scoring + exact-k selection) at --sparsity, checks that the achieved
 * count is exactly floor(s * n) per scope (global; per tensor for lmp; per modality for multiflow),
 * and prints "RESULT method threads total_s exact rss_mb masks bracket" lines (masks: an FNV-1a hash of
 * every mask byte, to compare two builds; bracket: scopes the one-pass bracket finished / scopes
 * selected, the rest went through the radix passes) plus ru_maxrss. --structured also scales every
 * row and column of each tensor by exp(0.5 z), the per-neuron structure trained weights have and
 * that the bracket's sample (contiguous runs) must survive; --bf16 rounds the weights to bfloat16
 * values, as a BF16 checkpoint converted to f32 has (about 2^8 distinct magnitudes per binade, so
 * heavy ties at the k-th key). Run one method per
 * process (run_prune.sh does) so that the peak RSS is that method's alone. Tensor list:
 *   vision  12 x {qkv 2304x768, proj 768x768, fc1 3072x768, fc2 768x3072}
 *   text    12 x {4 self 768x768, 4 cross 768x768, fc1 3072x768, fc2 768x3072}
 *   decoder 12 x 4 self-attention 768x768 (text modality)
 *
 * What it deliberately does not do: no PyTorch (bench_prune_torch.py, run by run_prune.sh, times
 * the reference computation separately so both never hold memory at once), no assertion on time,
 * no mask comparison with the reference at this size (tests/prune/test_criteria.c does that on the
 * goldens of tests/golden/gen_prune.py).
 *
 * Reference: shared/spec/pruning.md; llm.c dev/cpu/matmul_forward.c (check, then time).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/common.h"
#include "core/pool.h"
#include "core/rng.h"
#include "multiflow/prune.h"
#include "prune/bracket.h"

enum { D = 768, FF = 3072, L = 12, MAX_T = 256, MAX_THREADS = 16 };

struct shape {
    char name[96];
    int64_t out, in;
    enum mf_modality mod;
};

static int n_shapes;
static struct shape shapes[MAX_T];

static void add(enum mf_modality mod, int64_t out, int64_t in, const char *fmt, int layer)
{
    struct shape *s = &shapes[n_shapes++];
    snprintf(s->name, sizeof s->name, fmt, layer);
    s->out = out;
    s->in = in;
    s->mod = mod;
}

static void build_shapes(int layers)
{
    static const char *const self[4] = {"query", "key", "value", "output"};
    char fmt[96];
    for (int l = 0; l < layers; l++) {
        add(MF_MOD_VISION, 3 * D, D, "visual_encoder.blocks.%d.attn.qkv.weight", l);
        add(MF_MOD_VISION, D, D, "visual_encoder.blocks.%d.attn.proj.weight", l);
        add(MF_MOD_VISION, FF, D, "visual_encoder.blocks.%d.mlp.fc1.weight", l);
        add(MF_MOD_VISION, D, FF, "visual_encoder.blocks.%d.mlp.fc2.weight", l);
        for (int q = 0; q < 4; q++) {
            snprintf(fmt, sizeof fmt, "text_encoder.encoder.layer.%%d.attention.%s.weight", self[q]);
            add(MF_MOD_TEXT, D, D, fmt, l);
            snprintf(fmt, sizeof fmt, "text_encoder.encoder.layer.%%d.crossattention.%s.weight", self[q]);
            add(MF_MOD_TEXT, D, D, fmt, l);
            snprintf(fmt, sizeof fmt, "text_decoder.bert.encoder.layer.%%d.attention.%s.weight", self[q]);
            add(MF_MOD_TEXT, D, D, fmt, l);
        }
        add(MF_MOD_TEXT, FF, D, "text_encoder.encoder.layer.%d.intermediate.dense.weight", l);
        add(MF_MOD_TEXT, D, FF, "text_encoder.encoder.layer.%d.output.dense.weight", l);
    }
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct mf_prune_tensor *)a)->name, ((const struct mf_prune_tensor *)b)->name);
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* FNV-1a over every mask byte in selection order: compares runs (e.g. before/after a change). */
static uint64_t mask_hash(const struct mf_prune_set *set, uint8_t *const *masks)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < set->n; i++)
        for (int64_t j = 0; j < set->t[i].n; j++)
            h = (h ^ masks[i][j]) * 1099511628211ull;
    return h;
}

static int64_t floor_k(double s, int64_t n) { return (int64_t)floorl((long double)s * (long double)n); }

/* Exactness of the achieved counts per scope; returns 0 when exact. */
static int check_counts(enum mf_method m, const struct mf_prune_set *set, uint8_t *const *masks, double s)
{
    int64_t all = 0, z_mod[4] = {0}, n_mod[4] = {0};
    for (size_t i = 0; i < set->n; i++) {
        int64_t z = 0;
        for (int64_t j = 0; j < set->t[i].n; j++)
            z += masks[i][j] == 0;
        if (m == MF_METHOD_LMP && z != floor_k(s, set->t[i].n))
            return 1;
        all += z;
        z_mod[set->t[i].modality] += z;
        n_mod[set->t[i].modality] += set->t[i].n;
    }
    if (m == MF_METHOD_MULTIFLOW) {
        for (int k = 0; k < 4; k++)
            if (z_mod[k] != floor_k(s, n_mod[k]))
                return 1;
    } else if (m != MF_METHOD_LMP && all != floor_k(s, set->total)) {
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int threads[MAX_THREADS] = {2}, n_threads = 1, layers = L;
    double s = 0.63;
    const char *methods = "omp,lmp,l2,lamp,rand,multiflow";
    bool structured = false; /* per-row and per-column log-normal scales, as trained weights have */
    bool bf16 = false;       /* weights rounded to bfloat16 values (a BF16 checkpoint: many ties) */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            n_threads = 0;
            for (char *p = argv[++i]; *p && n_threads < MAX_THREADS;) {
                threads[n_threads++] = (int)strtol(p, &p, 10);
                if (*p == ',')
                    p++;
            }
        } else if (strcmp(argv[i], "--sparsity") == 0 && i + 1 < argc) {
            s = atof(argv[++i]);
        } else if (strcmp(argv[i], "--layers") == 0 && i + 1 < argc) {
            layers = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--methods") == 0 && i + 1 < argc) {
            methods = argv[++i];
        } else if (strcmp(argv[i], "--structured") == 0) {
            structured = true;
        } else if (strcmp(argv[i], "--bf16") == 0) {
            bf16 = true;
        } else {
            fprintf(stderr, "usage: bench_prune [--threads 1,2] [--sparsity 0.63] [--layers 12] [--methods a,b] "
                            "[--structured]\n");
            return 2;
        }
    }
    if (layers < 1 || layers > L) {
        fprintf(stderr, "bench_prune: --layers must be in [1, %d]\n", L);
        return 2;
    }
    build_shapes(layers);

    struct mf_prune_set set = {0};
    set.n = (size_t)n_shapes;
    set.t = calloc(set.n, sizeof *set.t);
    for (int i = 0; i < n_shapes; i++)
        set.total += shapes[i].out * shapes[i].in;
    float *w = malloc((size_t)set.total * sizeof *w);
    uint8_t *mk = malloc((size_t)set.total);
    float **scores = calloc(set.n, sizeof *scores);
    uint8_t **masks = calloc(set.n, sizeof *masks);
    double **sumsq = calloc(set.n, sizeof *sumsq);
    if (!set.t || !w || !mk || !scores || !masks || !sumsq) {
        fprintf(stderr, "bench_prune: out of memory for %lld weights\n", (long long)set.total);
        return 1;
    }
    int64_t off = 0;
    for (int i = 0; i < n_shapes; i++) {
        struct mf_prune_tensor *t = &set.t[i];
        t->name = shapes[i].name;
        t->modality = shapes[i].mod;
        t->out = shapes[i].out;
        t->in = shapes[i].in;
        t->n = t->out * t->in;
        t->w = w + off;
        scores[i] = w + off; /* first used to draw the weights */
        masks[i] = mk + off;
        sumsq[i] = malloc((size_t)t->in * sizeof **sumsq);
        for (int64_t j = 0; j < t->in; j++)
            sumsq[i][j] = 1000.0 * (0.5 + (double)((j * 2654435761u + (uint64_t)i) % 1000) / 500.0);
        t->sumsq = sumsq[i];
        t->count = 1000;
        off += t->n;
    }
    /* the caller owns the masks across methods: touch them once so that page faults are not
     * charged to the first method timed */
    memset(mk, 0, (size_t)set.total);
    struct mf_err err = {0};
    struct mf_pool *pool = mf_pool_create(threads[0]);
    double t0 = mf_time_now();
    /* weights: standard normals (the rand criterion writes into the weight block), scaled per tensor
     * so that layers differ in magnitude as pretrained ones do */
    if (mf_prune_scores(pool, MF_METHOD_RAND, &set, 2024, scores, &err) != MF_OK) {
        fprintf(stderr, "bench_prune: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < n_shapes; i++) {
        float scale = 0.02f * (0.6f + 0.1f * (float)(i % 9));
        float *p = w + (set.t[i].w - w);
        for (int64_t j = 0; j < set.t[i].n; j++)
            p[j] *= scale;
        if (structured) {
            /* rows and columns scaled by exp(0.5 z): neighbouring weights share a row's scale, the
             * correlation a sample of contiguous runs sees in trained checkpoints */
            struct mf_rng r;
            mf_rng_seed(&r, 77 + (uint64_t)i);
            int64_t out = set.t[i].out, in = set.t[i].in;
            float *col = malloc((size_t)in * sizeof *col);
            for (int64_t c = 0; c < in; c++)
                col[c] = (float)exp(0.5 * mf_rng_normal(&r));
            for (int64_t o = 0; o < out; o++) {
                float rs = (float)exp(0.5 * mf_rng_normal(&r));
                for (int64_t c = 0; c < in; c++)
                    p[o * in + c] *= rs * col[c];
            }
            free(col);
        }
        if (bf16) {
            for (int64_t j = 0; j < set.t[i].n; j++) { /* round to nearest even on the top 16 bits */
                uint32_t u;
                memcpy(&u, &p[j], sizeof u);
                u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
                memcpy(&p[j], &u, sizeof u);
            }
        }
    }
    mf_pool_free(pool);
    /* selection order: names byte-wise ascending (pruning.md) */
    struct mf_prune_tensor *sorted = malloc(set.n * sizeof *sorted);
    memcpy(sorted, set.t, set.n * sizeof *sorted);
    qsort(sorted, set.n, sizeof *sorted, by_name);
    off = 0;
    for (size_t i = 0; i < set.n; i++) {
        /* masks in selection order: each tensor keeps a slice of the block */
        masks[i] = mk + off;
        off += sorted[i].n;
    }
    free(set.t);
    set.t = sorted;

    printf("# bench_prune: %zu tensors, %lld prunable weights (%.1f MB f32), sparsity %.2f, init %.1f s\n", set.n,
           (long long)set.total, (double)set.total * 4 / 1e6, s, mf_time_now() - t0);
    int failures = 0;
    for (int ti = 0; ti < n_threads; ti++) {
        pool = mf_pool_create(threads[ti]);
        char list[256];
        snprintf(list, sizeof list, "%s", methods);
        for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
            enum mf_method m;
            if (!mf_method_parse(tok, &m)) {
                fprintf(stderr, "bench_prune: unknown method '%s'\n", tok);
                return 2;
            }
            int64_t d0, m0, d1, m1;
            mf_brk_counts(&d0, &m0);
            double a = mf_time_now();
            if (mf_prune_compute_masks(pool, m, &set, s, 7, masks, &err) != MF_OK) {
                fprintf(stderr, "bench_prune: %s\n", err.msg);
                return 1;
            }
            double c = mf_time_now();
            int bad = check_counts(m, &set, masks, s);
            failures += bad;
            mf_brk_counts(&d1, &m1);
            printf("RESULT %-9s threads=%d total_s=%.3f exact=%s rss_mb=%.0f masks=%016llx bracket=%lld/%lld\n", tok,
                   threads[ti], c - a, bad ? "NO" : "yes", peak_rss_mb(), (unsigned long long)mask_hash(&set, masks),
                   (long long)(d1 - d0), (long long)(d1 - d0 + m1 - m0));
            fflush(stdout);
        }
        mf_pool_free(pool);
    }
    double rss = peak_rss_mb(), wmb = (double)set.total * 4 / (1024.0 * 1024.0);
    printf("PEAK_RSS_MB %.0f methods=%s weights_mb=%.0f ratio_to_weights=%.3f buffers_mb=%.0f (weights+masks) "
           "overhead_mb=%.0f\n", rss, methods, wmb, rss / wmb, wmb * 1.25, rss - wmb * 1.25);
    for (int i = 0; i < n_shapes; i++)
        free(sumsq[i]);
    free(sumsq);
    free(masks);
    free(scores);
    free(mk);
    free(w);
    free(set.t);
    return failures ? 1 : 0;
}
