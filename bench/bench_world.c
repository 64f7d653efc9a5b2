/*
 * bench/bench_world.c: images per second of the world generator (`multiflow world`, src/world/).
 *
 *     bench_world [--images N] [--size PX] [--threads 1,2] [--reps R] [--dir DIR]
 *
 * Checks first, then times: the world written at every thread count must have the same content
 * hash (and the renderer must give the same pixels twice). Reports per thread count the whole
 * generator (scenes, captions, questions, rendering, PNG encoding, files: mf_world_generate with N
 * pretraining images, one test image and nothing else) and, on one thread, the parts: scene
 * sampling, captions, rendering alone, in images per second. Wall time and process CPU time are
 * both printed (best of R runs, default 2; a run after the first also removes the previous world,
 * as --force does): on a shared machine the CPU time is the steadier figure. The last world stays in
 * DIR (default /tmp/mf-bench-world) for bench/world_peer.py, which draws the same scenes with
 * Pillow and numpy (bench/run_world.sh runs both).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "multiflow/world.h"

static double wall(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    int64_t n = 5000;
    int size = 64, reps = 2;
    const char *threads = "1,2", *dir = "/tmp/mf-bench-world";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--images") == 0 && i + 1 < argc)
            n = atoll(argv[++i]);
        else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            size = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else {
            fprintf(stderr, "usage: bench_world [--images N] [--size PX] [--threads 1,2] [--reps R] [--dir DIR]\n");
            return 2;
        }
    }
    if (n < 1 || size < 16 || size > 1024 || reps < 1) {
        fprintf(stderr, "bench_world: --images >= 1, --size in [16, 1024], --reps >= 1\n");
        return 2;
    }
    struct mf_err err = {0};
    printf("bench_world: %" PRId64 " images of %d px\n", n, size);

    /* the parts, one thread */
    struct mf_world_scene *sc = malloc((size_t)n * sizeof *sc);
    uint8_t *img = malloc((size_t)size * size * 3), *img2 = malloc((size_t)size * size * 3);
    if (!sc || !img || !img2)
        return 1;
    double c0 = cpu();
    if (mf_world_split_scenes(1, MF_WORLD_PRETRAIN, n, sc, &err) != MF_OK) {
        fprintf(stderr, "bench_world: %s\n", err.msg);
        return 1;
    }
    double c1 = cpu();
    char cap[MF_WORLD_TEXT_MAX];
    size_t chars = 0;
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < 2; k++)
            chars += (size_t)mf_world_caption(&sc[i], (uint64_t)(2 * i + k), MF_WORLD_CAPTION_PARTIAL, cap, sizeof cap);
    double c2 = cpu();
    for (int64_t i = 0; i < n; i++) {
        mf_world_render(&sc[i], size, img);
        if (i < 64) { /* a pure function of the record */
            mf_world_render(&sc[i], size, img2);
            if (memcmp(img, img2, (size_t)size * size * 3) != 0) {
                fprintf(stderr, "bench_world: FAIL: scene %" PRId64 " rendered twice differs\n", i);
                return 1;
            }
        }
    }
    double c3 = cpu();
    printf("parts (1 thread, CPU time): scenes %.0f/s, captions %.0f/s (2 per image, %.0f chars each), "
           "render %.0f images/s\n",
           (double)n / (c1 - c0), (double)n / (c2 - c1), (double)chars / (2.0 * (double)n), (double)n / (c3 - c2));

    /* the whole generator per thread count */
    uint64_t hash0 = 0;
    bool first = true;
    for (const char *p = threads; *p;) {
        int t = atoi(p);
        struct mf_world_opts o = mf_world_opts_default();
        o.seed = 1;
        o.n_pretrain = n;
        o.n_calib = o.n_train = o.n_novel = 0;
        o.n_test = 1;
        o.size = size;
        o.n_threads = t < 1 ? 1 : t;
        o.force = true;
        struct mf_world_summary s;
        double w = 1e30, k = 1e30;
        for (int r = 0; r < reps; r++) { /* best of reps */
            double w0 = wall(), k0 = cpu();
            if (mf_world_generate(dir, &o, &s, &err) != MF_OK) {
                fprintf(stderr, "bench_world: %s\n", err.msg);
                return 1;
            }
            w = fmin(w, wall() - w0);
            k = fmin(k, cpu() - k0);
        }
        if (first)
            hash0 = s.content_hash;
        else if (s.content_hash != hash0) {
            fprintf(stderr, "bench_world: FAIL: %d threads give content hash %016" PRIx64 ", not %016" PRIx64 "\n",
                    o.n_threads, s.content_hash, hash0);
            return 1;
        }
        first = false;
        printf("generate, %d thread%s: %.0f images/s wall (%.2f s), %.0f images/s per CPU-second (%.2f CPU-s); "
               "content hash %016" PRIx64 "\n",
               o.n_threads, o.n_threads > 1 ? "s" : "", (double)s.n_images / w, w, (double)s.n_images / k, k,
               s.content_hash);
        p = strchr(p, ',');
        if (!p)
            break;
        p++;
    }
    printf("world left in %s\n", dir);
    free(sc);
    free(img);
    free(img2);
    return 0;
}
