/*
 * bench/bench_stats_rss.c: peak resident memory of MULTIFLOW calibration-statistics collection
 * (mf_stats_collect) at two calibration-set sizes; the target is that peak memory does not
 * grow with --pairs (the two peaks within 5 % of each other).
 *
 * What it does: writes, into --dir (reused when it already holds them) or a temporary directory,
 * a base-shaped original-layout BLIP checkpoint with random weights (width 768, FFN 3072, 12 heads,
 * patch 16, --res px, --layers layers in the vision tower, the text encoder and the decoder; the
 * tiny test vocabulary, so the LM head is 107 wide) and an annotation file per size whose pair p
 * is data/shapes image p mod 64 with its first caption. Each size is then collected in a fresh
 * process (the program re-executes itself with --child), so getrusage/wait4 ru_maxrss is that
 * run's own peak. Check first: every tensor's count must equal the pair count, and, because the
 * pairs repeat with period 64 and batches divide 64, the sums of the larger run must be exactly
 * (N2/N1) times the smaller run's within 1e-9 relative. Then it prints both peaks, their ratio and
 * the time per pair.
 *
 * What it deliberately does not do: no full 12-layer base model by default (2 cores would need
 * most of an hour for 1024 pairs; --layers 12 runs it), no time assertions, no real checkpoint
 * (memory does not depend on the weights' values), no PyTorch peer (the reference keeps whole
 * batches of inputs, which is the growth this bench shows absent).
 *
 * Reference: spec/pruning.md MULTIFLOW step 2 ("memory must stay constant in the number of
 * calibration pairs"), models.md §4.5 (original names), §4.7 (calibration passes).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/common.h"
#include "core/rng.h"
#include "io/annotations.h"
#include "multiflow/model.h"
#include "multiflow/prune.h"
#include "multiflow/safetensors.h"

enum { D = 768, FF = 3072, PATCH = 16, MAX_POS = 512, PROJ = 256, MAX_T = 1024, PERIOD = 64 };

static void die(const char *what, const struct mf_err *err)
{
    fprintf(stderr, "bench_stats_rss: %s: %s\n", what, err ? err->msg : strerror(errno));
    exit(1);
}

/* ---- checkpoint ---------------------------------------------------------------------------- */

struct tlist {
    int n;
    char name[MAX_T][128];
    int nd[MAX_T];
    int64_t shape[MAX_T][4];
    float *data[MAX_T];
};

/* kind: 'w' normal(0, 1/sqrt(fan_in = last dim)), 'b' normal(0, 0.02), 'g' 1, 'z' 0 */
static void add(struct tlist *t, struct mf_rng *r, char kind, int nd, const int64_t *sh, const char *fmt, ...)
{
    if (t->n >= MAX_T)
        die("too many tensors", NULL);
    int i = t->n++;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name[i], sizeof t->name[i], fmt, ap);
    va_end(ap);
    int64_t n = 1;
    for (int k = 0; k < nd; k++)
        n *= (t->shape[i][k] = sh[k]);
    t->nd[i] = nd;
    float *p = mf_malloc((size_t)n * sizeof *p);
    if (!p)
        die("out of memory", NULL);
    const double sd = kind == 'w' ? 1.0 / sqrt((double)sh[nd - 1]) : 0.02;
    for (int64_t j = 0; j < n; j++)
        p[j] = kind == 'g' ? 1.0f : kind == 'z' ? 0.0f : (float)(sd * mf_rng_normal(r));
    t->data[i] = p;
}

static void lin(struct tlist *t, struct mf_rng *r, int64_t out, int64_t in, const char *name)
{
    int64_t w[2] = {out, in}, b[1] = {out};
    add(t, r, 'w', 2, w, "%s.weight", name);
    add(t, r, 'b', 1, b, "%s.bias", name);
}

static void ln(struct tlist *t, struct mf_rng *r, const char *name)
{
    int64_t s[1] = {D};
    add(t, r, 'g', 1, s, "%s.weight", name);
    add(t, r, 'z', 1, s, "%s.bias", name);
}

static void bert_layer(struct tlist *t, struct mf_rng *r, const char *p, bool self_only)
{
    char n[160];
    static const char *sub[] = {"attention", "crossattention"};
    static const char *qkv[] = {"query", "key", "value"};
    for (int c = 0; c < (self_only ? 1 : 2); c++) {
        for (int j = 0; j < 3; j++) {
            snprintf(n, sizeof n, "%s.%s.self.%s", p, sub[c], qkv[j]);
            lin(t, r, D, D, n);
        }
        snprintf(n, sizeof n, "%s.%s.output.dense", p, sub[c]);
        lin(t, r, D, D, n);
        snprintf(n, sizeof n, "%s.%s.output.LayerNorm", p, sub[c]);
        ln(t, r, n);
    }
    if (self_only)
        return;
    snprintf(n, sizeof n, "%s.intermediate.dense", p);
    lin(t, r, FF, D, n);
    snprintf(n, sizeof n, "%s.output.dense", p);
    lin(t, r, D, FF, n);
    snprintf(n, sizeof n, "%s.output.LayerNorm", p);
    ln(t, r, n);
}

static int64_t count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die(path, NULL);
    int64_t n = 0;
    for (int c; (c = fgetc(f)) != EOF;)
        n += c == '\n';
    fclose(f);
    return n;
}

static void copy_file(const char *src, const char *dst)
{
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    if (!a || !b)
        die(a ? dst : src, NULL);
    char buf[4096];
    for (size_t k; (k = fread(buf, 1, sizeof buf, a)) > 0;)
        if (fwrite(buf, 1, k, b) != k)
            die(dst, NULL);
    fclose(a);
    if (fclose(b) != 0)
        die(dst, NULL);
}

static void make_checkpoint(const char *dir, const char *src_root, int layers, int res)
{
    char path[4096], vsrc[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct stat sb;
    if (stat(path, &sb) == 0) {
        fprintf(stderr, "reusing %s\n", path);
        return;
    }
    snprintf(vsrc, sizeof vsrc, "%s/tests/golden/vocab.txt", src_root);
    const int64_t V = count_lines(vsrc) + 2, G = res / PATCH, N = G * G + 1;
    struct tlist *t = mf_calloc(1, sizeof *t);
    struct mf_rng r;
    char n[160];
    if (!t)
        die("out of memory", NULL);
    mf_rng_seed(&r, 1234);
    add(t, &r, 'b', 3, (int64_t[]){1, 1, D}, "visual_encoder.cls_token");
    add(t, &r, 'w', 4, (int64_t[]){D, 3, PATCH, PATCH}, "visual_encoder.patch_embed.proj.weight");
    add(t, &r, 'b', 1, (int64_t[]){D}, "visual_encoder.patch_embed.proj.bias");
    add(t, &r, 'b', 3, (int64_t[]){1, N, D}, "visual_encoder.pos_embed");
    for (int i = 0; i < layers; i++) {
        snprintf(n, sizeof n, "visual_encoder.blocks.%d.norm1", i);
        ln(t, &r, n);
        snprintf(n, sizeof n, "visual_encoder.blocks.%d.attn.qkv", i);
        lin(t, &r, 3 * D, D, n);
        snprintf(n, sizeof n, "visual_encoder.blocks.%d.attn.proj", i);
        lin(t, &r, D, D, n);
        snprintf(n, sizeof n, "visual_encoder.blocks.%d.norm2", i);
        ln(t, &r, n);
        snprintf(n, sizeof n, "visual_encoder.blocks.%d.mlp.fc1", i);
        lin(t, &r, FF, D, n);
        snprintf(n, sizeof n, "visual_encoder.blocks.%d.mlp.fc2", i);
        lin(t, &r, D, FF, n);
    }
    ln(t, &r, "visual_encoder.norm");
    add(t, &r, 'b', 2, (int64_t[]){V, D}, "text_encoder.embeddings.word_embeddings.weight");
    add(t, &r, 'b', 2, (int64_t[]){MAX_POS, D}, "text_encoder.embeddings.position_embeddings.weight");
    ln(t, &r, "text_encoder.embeddings.LayerNorm");
    for (int i = 0; i < layers; i++) {
        snprintf(n, sizeof n, "text_encoder.encoder.layer.%d", i);
        bert_layer(t, &r, n, false);
    }
    lin(t, &r, PROJ, D, "vision_proj");
    lin(t, &r, PROJ, D, "text_proj");
    lin(t, &r, 2, D, "itm_head");
    for (int i = 0; i < layers; i++) {
        snprintf(n, sizeof n, "text_decoder.bert.encoder.layer.%d", i);
        bert_layer(t, &r, n, true);
    }
    lin(t, &r, D, D, "text_decoder.cls.predictions.transform.dense");
    ln(t, &r, "text_decoder.cls.predictions.transform.LayerNorm");
    add(t, &r, 'b', 1, (int64_t[]){V}, "text_decoder.cls.predictions.bias");

    struct mf_err err = {0};
    struct mf_st_writer *w = NULL;
    if (mf_st_writer_create(path, &w, &err))
        die(path, &err);
    for (int i = 0; i < t->n; i++)
        if (mf_st_writer_add(w, t->name[i], MF_DTYPE_F32, t->nd[i], t->shape[i], t->data[i], &err)) {
            mf_st_writer_abort(w);
            die(path, &err);
        }
    if (mf_st_writer_commit(w, &err))
        die(path, &err);
    for (int i = 0; i < t->n; i++)
        mf_free(t->data[i]);
    mf_free(t);
    snprintf(n, sizeof n, "%s/vocab.txt", dir);
    copy_file(vsrc, n);
    fprintf(stderr, "wrote %s (blip-orig, width %d, %d layers per tower, %d px, vocab %" PRId64 ")\n", path, D,
            layers, res, V);
}

/* pair p = shapes image (p mod 64) + its first caption, JSON Lines with absolute image paths */
static void make_annotations(const char *path, const char *src_root, int64_t n_pairs)
{
    char ann[4096], root[4096];
    snprintf(ann, sizeof ann, "%s/data/shapes/annotations.json", src_root);
    snprintf(root, sizeof root, "%s/data/shapes", src_root);
    struct mf_err err = {0};
    struct mf_annotations *a = NULL;
    if (mf_annotations_load(ann, root, &a, &err))
        die(ann, &err);
    FILE *f = fopen(path, "w");
    if (!f)
        die(path, NULL);
    for (int64_t p = 0; p < n_pairs; p++) {
        int64_t q = 2 * (p % PERIOD); /* two captions per image in the shapes set: take the first */
        if (q >= a->n_pairs)
            die("data/shapes has fewer than 64 images", NULL);
        fprintf(f, "{\"image\": \"%s\", \"caption\": \"%s\"}\n", a->image_path[q], a->caption[q]);
    }
    if (fclose(f) != 0)
        die(path, NULL);
    mf_annotations_free(a);
}

/* ---- one measurement (child process) ------------------------------------------------------- */

static int child(const char *dir, int64_t n_pairs, int threads, int64_t batch)
{
    char ann_path[4096], out[4096];
    snprintf(ann_path, sizeof ann_path, "%s/pairs-%" PRId64 ".jsonl", dir, n_pairs);
    snprintf(out, sizeof out, "%s/stats-%" PRId64 ".safetensors", dir, n_pairs);
    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_session *s = NULL;
    struct mf_stats *st = NULL;
    struct mf_annotations *ann = NULL;
    struct mf_model_opts o = mf_model_opts_default();
    if (mf_model_load(dir, &o, &m, &err) || mf_session_create(m, threads, &s, &err) ||
        mf_stats_create(m, &st, &err) || mf_annotations_load(ann_path, NULL, &ann, &err))
        die(dir, &err);
    double t0 = mf_time_now();
    if (mf_stats_collect(s, ann, batch, 0, st, &err))
        die("collect", &err);
    double sec = mf_time_now() - t0;
    if (mf_stats_save(st, out, &err))
        die(out, &err);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%ld %.3f\n", ru.ru_maxrss, sec);
    mf_annotations_free(ann);
    mf_stats_free(st);
    mf_session_free(s);
    mf_model_free(m);
    return 0;
}

struct run {
    int64_t pairs;
    long rss_kb, rss_self_kb;
    double sec;
};

static void measure(const char *self, const char *dir, int threads, int64_t batch, struct run *r)
{
    int fd[2];
    if (pipe(fd))
        die("pipe", NULL);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", NULL);
    if (pid == 0) {
        char np[32], th[16], bt[32];
        snprintf(np, sizeof np, "%" PRId64, r->pairs);
        snprintf(th, sizeof th, "%d", threads);
        snprintf(bt, sizeof bt, "%" PRId64, batch);
        dup2(fd[1], 1);
        close(fd[0]);
        execl(self, self, "--child", dir, np, th, bt, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char buf[128] = {0};
    ssize_t k = read(fd[0], buf, sizeof buf - 1);
    close(fd[0]);
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || k <= 0 ||
        sscanf(buf, "%ld %lf", &r->rss_self_kb, &r->sec) != 2)
        die("measurement child failed", NULL);
    r->rss_kb = ru.ru_maxrss;
}

/* Every count = pairs; sums of the larger run = ratio x the smaller run's. Returns max rel error. */
static double check(const char *dir, const struct run *a, const struct run *b, int64_t batch)
{
    char pa[4096], pb[4096];
    snprintf(pa, sizeof pa, "%s/stats-%" PRId64 ".safetensors", dir, a->pairs);
    snprintf(pb, sizeof pb, "%s/stats-%" PRId64 ".safetensors", dir, b->pairs);
    struct mf_err err = {0};
    struct mf_safetensors *fa = NULL, *fb = NULL;
    if (mf_safetensors_open(pa, &fa, &err) || mf_safetensors_open(pb, &fb, &err))
        die("stats", &err);
    const double ratio = (double)b->pairs / (double)a->pairs;
    /* same batches in every period: bit-identical activations, so only the additions round */
    const bool periodic = a->pairs % PERIOD == 0 && b->pairs % PERIOD == 0 && PERIOD % batch == 0;
    double worst = 0;
    for (size_t i = 0; i < mf_safetensors_count(fa); i++) {
        const struct mf_st_entry *ea = mf_safetensors_at(fa, i), *eb = mf_safetensors_find(fb, ea->name);
        if (!eb || eb->nbytes != ea->nbytes)
            die(ea->name, NULL);
        const size_t n = ea->nbytes / sizeof(double);
        bool is_count = strstr(ea->name, ":count") != NULL;
        for (size_t j = 0; j < n; j++) {
            double x, y;
            memcpy(&x, (const char *)ea->data + j * 8, 8);
            memcpy(&y, (const char *)eb->data + j * 8, 8);
            if (is_count && (x != (double)a->pairs || y != (double)b->pairs)) {
                fprintf(stderr, "FAIL: %s = %g / %g, expected %" PRId64 " / %" PRId64 "\n", ea->name, x, y, a->pairs,
                        b->pairs);
                exit(1);
            }
            if (periodic && !is_count)
                worst = fmax(worst, fabs(y - ratio * x) / fmax(fabs(ratio * x), 1e-300));
        }
    }
    mf_safetensors_close(fb);
    mf_safetensors_close(fa);
    return periodic ? worst : NAN;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_stats_rss [--pairs N1,N2] [--layers L] [--res PX] [--batch B] [--threads T] "
                    "[--dir DIR] [--src REPO]\n"
                    "  defaults: --pairs 64,1024 --layers 2 --res 224 --batch 8 --threads 2, --src = MF_SOURCE_DIR "
                    "or .\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "--child") == 0)
        return child(argv[2], atoll(argv[3]), atoi(argv[4]), atoll(argv[5]));
    int64_t n1 = 64, n2 = 1024, batch = 8;
    int layers = 2, res = 224, threads = 2;
    const char *dir = NULL, *src = getenv("MF_SOURCE_DIR");
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (!strcmp(argv[i], "--pairs")) {
            if (sscanf(v, "%" SCNd64 ",%" SCNd64, &n1, &n2) != 2)
                usage();
        } else if (!strcmp(argv[i], "--layers"))
            layers = atoi(v);
        else if (!strcmp(argv[i], "--res"))
            res = atoi(v);
        else if (!strcmp(argv[i], "--batch"))
            batch = atoll(v);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(v);
        else if (!strcmp(argv[i], "--dir"))
            dir = v;
        else if (!strcmp(argv[i], "--src"))
            src = v;
        else
            usage();
        i++;
    }
    if (n1 < 1 || n2 < 1 || layers < 1 || layers > 12 || res < PATCH || res % PATCH || batch < 1 || threads < 1)
        usage();
    if (!src)
        src = ".";
    char tmp[] = "/tmp/bench_stats_rss.XXXXXX", self[4096];
    if (!dir && !(dir = mkdtemp(tmp)))
        die("mkdtemp", NULL);
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0)
        die("/proc/self/exe", NULL);
    self[k] = 0;

    make_checkpoint(dir, src, layers, res);
    struct run runs[2] = {{.pairs = n1}, {.pairs = n2}};
    for (int i = 0; i < 2; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/pairs-%" PRId64 ".jsonl", dir, runs[i].pairs);
        make_annotations(p, src, runs[i].pairs);
    }
    printf("bench_stats_rss: blip-orig base-shaped (width %d, FFN %d, %d layers per tower, %d px), batch %" PRId64
           ", %d threads, model in %s\n", D, FF, layers, res, batch, threads, dir);
    for (int i = 0; i < 2; i++) {
        measure(self, dir, threads, batch, &runs[i]);
        printf("  %6" PRId64 " pairs: peak RSS %8.1f MiB (child's own getrusage %8.1f MiB)  %7.1f s  %.3f s/pair\n",
               runs[i].pairs, runs[i].rss_kb / 1024.0, runs[i].rss_self_kb / 1024.0, runs[i].sec,
               runs[i].sec / (double)runs[i].pairs);
    }
    double err = check(dir, &runs[0], &runs[1], batch);
    if (!isnan(err)) {
        printf("  check: counts = pairs; sums(%" PRId64 ") / sums(%" PRId64 ") = %.0f within %.2g relative\n",
               runs[1].pairs, runs[0].pairs, (double)runs[1].pairs / (double)runs[0].pairs, err);
        if (err > 1e-9) {
            fprintf(stderr, "FAIL: statistics do not scale with the repeated pairs (%.3g)\n", err);
            return 1;
        }
    } else {
        printf("  check: counts = pairs (sums not compared: pair counts or batch do not align with the period %d)\n", PERIOD);
    }
    double ratio = (double)runs[1].rss_kb / (double)runs[0].rss_kb;
    printf("  peak RSS ratio %" PRId64 "/%" PRId64 " pairs: %.4f (target within 5 %%: %s)\n", runs[1].pairs,
           runs[0].pairs, ratio, fabs(ratio - 1) <= 0.05 ? "met" : "NOT met");
    return 0;
}
