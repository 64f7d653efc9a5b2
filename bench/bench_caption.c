/*
 * bench/bench_caption.c: caption generation throughput (captions per second) of mf_generate, the
 * call behind `multiflow caption`, for greedy and beam search.
 *
 * What it does: loads --model, draws --n-images random normalised images (seeded), and for every
 * thread count of --threads runs one warm-up generation over all images (in calls of --batch
 * images) whose ids must equal the first thread count's, then --reps timed runs (best and
 * median). --dump FILE writes the images and the generated ids (safetensors: images (n, 3, R, R)
 * f32, ids (n, max_len) i32 padded with -1) so that bench_caption_torch.py can check that its
 * PyTorch generation produces the same captions before timing it (bench/run_caption.sh runs both).
 * Prints one machine-readable RESULT line per thread count.
 *
 * What it deliberately does not do: no image decoding (random inputs), no assertion on time, no
 * PyTorch (see bench_caption_torch.py).
 *
 * Reference: llm.c dev/cpu/matmul_forward.c (check first, then time); multiflow/generate.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/common.h"
#include "core/rng.h"
#include "multiflow/generate.h"
#include "multiflow/safetensors.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int usage(void)
{
    fputs("usage: bench_caption --model DIR [--n-images 16] [--batch 8] [--beams 3] [--max-len 20] [--min-len 5]\n"
          "                     [--prompt TEXT] [--threads 1,2] [--reps 3] [--seed 1] [--dump FILE]\n",
          stderr);
    return 2;
}

/* All images in calls of batch images; ids (n, max_len). */
static enum mf_status run_all(struct mf_session *s, const float *img, int64_t n, int64_t batch, int64_t R,
                              const struct mf_generate_opts *go, int32_t *ids, int32_t *n_ids, struct mf_err *err)
{
    for (int64_t i = 0; i < n; i += batch) {
        int64_t B = MF_MIN(batch, n - i);
        enum mf_status st = mf_generate(s, img + i * 3 * R * R, B, go, ids + i * go->max_length, n_ids + i, NULL, err);
        if (st)
            return st;
    }
    return MF_OK;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *dump = NULL, *threads = "1,2";
    int64_t n = 16, batch = 8, reps = 3;
    uint64_t seed = 1;
    struct mf_generate_opts go = mf_generate_opts_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--n-images"))
            n = atoll(v);
        else if (!strcmp(a, "--batch"))
            batch = atoll(v);
        else if (!strcmp(a, "--beams"))
            go.num_beams = atoi(v);
        else if (!strcmp(a, "--max-len"))
            go.max_length = atoi(v);
        else if (!strcmp(a, "--min-len"))
            go.min_length = atoi(v);
        else if (!strcmp(a, "--prompt"))
            go.prompt = v;
        else if (!strcmp(a, "--threads"))
            threads = v;
        else if (!strcmp(a, "--reps"))
            reps = atoll(v);
        else if (!strcmp(a, "--seed"))
            seed = (uint64_t)atoll(v);
        else if (!strcmp(a, "--dump"))
            dump = v;
        else
            return usage();
        i++;
    }
    if (!model || n < 1 || batch < 1 || reps < 1)
        return usage();

    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_model_opts mo = mf_model_opts_default();
    if (mf_model_load(model, &mo, &m, &err) != MF_OK) {
        fprintf(stderr, "bench_caption: %s\n", err.msg);
        return 1;
    }
    const struct mf_model_info *info = mf_model_get_info(m);
    const int64_t R = info->vision.image_size, L = go.max_length;
    float *img = malloc((size_t)(n * 3 * R * R) * sizeof(float));
    int32_t *ids0 = malloc((size_t)(n * L) * sizeof(int32_t)), *ids = malloc((size_t)(n * L) * sizeof(int32_t));
    int32_t *n0 = malloc((size_t)n * sizeof(int32_t)), *nn = malloc((size_t)n * sizeof(int32_t));
    double *t = malloc((size_t)reps * sizeof(double));
    if (!img || !ids0 || !ids || !n0 || !nn || !t)
        return 1;
    struct mf_rng rng;
    mf_rng_seed(&rng, seed);
    for (int64_t i = 0; i < n * 3 * R * R; i++)
        img[i] = (float)mf_rng_normal(&rng);

    printf("# bench_caption: %s (%s), image %lld px, text d %lld x %lld layers, vocab %lld; %lld images, batch %lld, "
           "beams %d, max %d, min %d, prompt \"%s\"\n",
           model, info->layout_name, (long long)R, (long long)info->text.d, (long long)info->text.n_layer,
           (long long)info->text.vocab, (long long)n, (long long)batch, go.num_beams, go.max_length, go.min_length,
           mf_generate_prompt_text(m, go.prompt));
    bool first = true;
    int64_t tokens = 0;
    for (const char *p = threads; *p;) {
        int nt = atoi(p);
        struct mf_session *s = NULL;
        if (nt < 1 || mf_session_create(m, nt, &s, &err) != MF_OK) {
            fprintf(stderr, "bench_caption: bad thread count or %s\n", err.msg);
            return 1;
        }
        if (run_all(s, img, n, batch, R, &go, first ? ids0 : ids, first ? n0 : nn, &err) != MF_OK) {
            fprintf(stderr, "bench_caption: %s\n", err.msg);
            return 1;
        }
        int64_t diff = 0;
        if (first) {
            for (int64_t i = 0; i < n; i++)
                tokens += n0[i];
        } else {
            for (int64_t i = 0; i < n; i++)
                diff += nn[i] != n0[i] || memcmp(ids + i * L, ids0 + i * L, (size_t)nn[i] * sizeof(int32_t)) != 0;
        }
        printf("CHECK threads=%d %s (%lld of %lld captions differ from the first thread count's)\n", nt,
               diff ? "FAIL" : "ok", (long long)diff, (long long)n);
        for (int64_t r = 0; r < reps; r++) {
            double t0 = now();
            if (run_all(s, img, n, batch, R, &go, ids, nn, &err) != MF_OK) {
                fprintf(stderr, "bench_caption: %s\n", err.msg);
                return 1;
            }
            t[r] = now() - t0;
        }
        qsort(t, (size_t)reps, sizeof *t, cmp_double);
        printf("RESULT threads=%d beams=%d batch=%lld images=%lld captions_per_s=%.2f tokens_per_s=%.1f best_s=%.3f "
               "median_s=%.3f\n",
               nt, go.num_beams, (long long)batch, (long long)n, (double)n / t[0], (double)tokens / t[0], t[0],
               t[reps / 2]);
        fflush(stdout);
        mf_session_free(s);
        first = false;
        while (*p && *p != ',')
            p++;
        if (*p == ',')
            p++;
    }
    if (dump) {
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = n0[i]; j < L; j++)
                ids0[i * L + j] = -1;
        struct mf_st_writer *w = NULL;
        int64_t ishape[4] = {n, 3, R, R}, dshape[2] = {n, L};
        if (mf_st_writer_create(dump, &w, &err) != MF_OK ||
            mf_st_writer_add(w, "images", MF_DTYPE_F32, 4, ishape, img, &err) ||
            mf_st_writer_add(w, "ids", MF_DTYPE_I32, 2, dshape, ids0, &err) ||
            mf_st_writer_commit(w, &err) != MF_OK) {
            fprintf(stderr, "bench_caption: %s\n", err.msg);
            return 1;
        }
        printf("# dump: %s\n", dump);
    }
    free(img);
    free(ids0);
    free(ids);
    free(n0);
    free(nn);
    free(t);
    mf_model_free(m);
    return 0;
}
