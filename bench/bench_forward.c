/*
 * bench/bench_forward.c: forward throughput of the BLIP-base engine, in image-text pairs per second
 * and achieved GFLOP/s, against this CPU's OpenBLAS SGEMM peak measured in the same process.
 *
 * What it does: writes a BLIP-base-shaped checkpoint with random weights (model.safetensors,
 * vocab.txt of 30,522 lines and, for the Hugging Face layout, config.json) into --model-dir (reused
 * when it already holds one) or a temporary directory, loads it with mf_model_load and times
 * batches of pairs through mf_score_pairs, which is exactly what `multiflow score` runs:
 *   --mode itm    Hugging Face retrieval layout (no decoder), L = 35: vision + unimodal text (ITC)
 *                 + image-grounded text encoder (ITM);
 *   --mode calib  original Salesforce layout with decoder, L = 30: vision + [ENC] encoder (ITM) +
 *                 [DEC] decoder with the LM head (the MULTIFLOW calibration passes, models.md §4.7).
 * For every thread count: one warm-up batch whose outputs are compared with the first thread
 * count's (the engine is deterministic per thread count; across counts only the GEMM split
 * differs, so they must agree within 1e-4), then --reps timed batches (best and median). FLOPs
 * per pair follow models.md §8.1 for the passes actually run; the SGEMM peak is the best of
 * cblas_sgemm on the model's three biggest GEMM shapes (qkv, fc1, fc2 over B*N rows) at the same
 * OpenBLAS thread count. --dump FILE writes the first batch's inputs and outputs as safetensors so
 * bench_forward_torch.py can check that PyTorch computes the same thing before timing it.
 *
 * What it deliberately does not do: no PyTorch (see bench_forward_torch.py and run_forward.sh),
 * no assertion on time, no real checkpoint (random weights have the same cost), no image decoding
 * or tokenization (inputs are random, normalised images and random ids with realistic padding).
 *
 * Reference: models.md §4.3 / §4.5 (names and shapes), §8 (FLOPs); llm.c dev/cpu/matmul_forward.c
 * (check first, then time) and whisper.cpp examples/bench (threads and sizes printed).
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "core/pool.h"
#include "core/rng.h"
#include "multiflow/model.h"
#include "multiflow/safetensors.h"
#include "nn/nn.h"

/* BLIP-base dimensions (models.md §4.1). */
enum { D = 768, FF = 3072, N_LAYER = 12, PATCH = 16, VOCAB_LINES = 30522, VOCAB = 30524, MAX_POS = 512,
       PROJ = 256, MAX_THREADS = 16, MAX_TENSORS = 1024 };

enum mode { MODE_ITM, MODE_CALIB };
enum init { INIT_W, INIT_BIAS, INIT_LN_W, INIT_LN_B };

struct opts {
    enum mode mode;
    int res, batch, reps, n_threads;
    int threads[MAX_THREADS];
    const char *model_dir, *dump;
    uint64_t seed;
    bool no_peak;
};

/* ---- checkpoint writer -------------------------------------------------------------------- */

struct tensor_list {
    int n;
    char name[MAX_TENSORS][128];
    int ndim[MAX_TENSORS];
    int64_t shape[MAX_TENSORS][4];
    float *data[MAX_TENSORS];
};

static void die(const char *what, const struct mf_err *err)
{
    fprintf(stderr, "bench_forward: %s: %s\n", what, err ? err->msg : strerror(errno));
    exit(1);
}

/* Appends one f32 tensor with random values; uniform with std 0.02 for weights and embeddings
 * (BERT initialisation), small biases, LayerNorm gains near 1. */
static void add(struct tensor_list *tl, struct mf_rng *rng, enum init kind, int ndim, int64_t s0, int64_t s1,
                int64_t s2, int64_t s3, const char *fmt, ...)
{
    if (tl->n >= MAX_TENSORS) {
        fprintf(stderr, "bench_forward: more than %d tensors\n", MAX_TENSORS);
        exit(1);
    }
    int i = tl->n++;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl->name[i], sizeof tl->name[i], fmt, ap);
    va_end(ap);
    int64_t sh[4] = {s0, s1, s2, s3}, n = 1;
    tl->ndim[i] = ndim;
    for (int k = 0; k < ndim; k++) {
        tl->shape[i][k] = sh[k];
        n *= sh[k];
    }
    float *p = mf_malloc((size_t)n * sizeof *p);
    if (!p)
        die("out of memory for the random weights", NULL);
    const double a = kind == INIT_W ? 0.02 * sqrt(3.0) : kind == INIT_BIAS ? 0.01 : kind == INIT_LN_W ? 0.1 : 0.05;
    const double base = kind == INIT_LN_W ? 1.0 : 0.0;
    for (int64_t j = 0; j < n; j++)
        p[j] = (float)(base + a * (2.0 * mf_rng_uniform(rng) - 1.0));
    tl->data[i] = p;
}

static void add_linear(struct tensor_list *tl, struct mf_rng *rng, int64_t out, int64_t in, const char *name)
{
    add(tl, rng, INIT_W, 2, out, in, 0, 0, "%s.weight", name);
    add(tl, rng, INIT_BIAS, 1, out, 0, 0, 0, "%s.bias", name);
}

static void add_ln(struct tensor_list *tl, struct mf_rng *rng, const char *name)
{
    add(tl, rng, INIT_LN_W, 1, D, 0, 0, 0, "%s.weight", name);
    add(tl, rng, INIT_LN_B, 1, D, 0, 0, 0, "%s.bias", name);
}

/* One BERT layer under prefix (self-attention, cross-attention, FFN), or only the self-attention
 * part (the original layout's decoder: everything else is tied to the encoder, §4.5). */
static void add_bert_layer(struct tensor_list *tl, struct mf_rng *rng, const char *p, bool self_only)
{
    char n[160];
    static const char *qkv[3] = {"query", "key", "value"};
    for (int j = 0; j < 3; j++) {
        snprintf(n, sizeof n, "%s.attention.self.%s", p, qkv[j]);
        add_linear(tl, rng, D, D, n);
    }
    snprintf(n, sizeof n, "%s.attention.output.dense", p);
    add_linear(tl, rng, D, D, n);
    snprintf(n, sizeof n, "%s.attention.output.LayerNorm", p);
    add_ln(tl, rng, n);
    if (self_only)
        return;
    for (int j = 0; j < 3; j++) {
        snprintf(n, sizeof n, "%s.crossattention.self.%s", p, qkv[j]);
        add_linear(tl, rng, D, D, n);
    }
    snprintf(n, sizeof n, "%s.crossattention.output.dense", p);
    add_linear(tl, rng, D, D, n);
    snprintf(n, sizeof n, "%s.crossattention.output.LayerNorm", p);
    add_ln(tl, rng, n);
    snprintf(n, sizeof n, "%s.intermediate.dense", p);
    add_linear(tl, rng, FF, D, n);
    snprintf(n, sizeof n, "%s.output.dense", p);
    add_linear(tl, rng, D, FF, n);
    snprintf(n, sizeof n, "%s.output.LayerNorm", p);
    add_ln(tl, rng, n);
}

static void write_text(const char *dir, const char *file, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        die(path, NULL);
}

static void write_vocab(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        die(path, NULL);
    /* bert-base-uncased positions of the special tokens: [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102,
     * [MASK] 103; [DEC] 30522 and [ENC] 30523 are appended by the loader. */
    fprintf(f, "[PAD]\n");
    for (int i = 0; i < 99; i++)
        fprintf(f, "[unused%d]\n", i);
    fprintf(f, "[UNK]\n[CLS]\n[SEP]\n[MASK]\n");
    for (int i = 104; i < VOCAB_LINES; i++)
        fprintf(f, "tok%d\n", i);
    if (fclose(f) != 0)
        die(path, NULL);
}

/* Writes a BLIP-base checkpoint at resolution res into dir: HF retrieval layout (mode itm) or
 * original pretraining layout with decoder self-attention and LM head (mode calib). */
static void make_checkpoint(const char *dir, enum mode mode, int res, uint64_t seed)
{
    struct tensor_list *tl = mf_calloc(1, sizeof *tl);
    struct mf_rng rng;
    struct mf_err err = {0};
    char n[160];
    const int64_t G = res / PATCH, N = G * G + 1;
    const bool hf = mode == MODE_ITM;
    if (!tl)
        die("out of memory", NULL);
    mf_rng_seed(&rng, seed);
    double t0 = mf_time_now();

    /* vision tower (§4.3 / §4.5 names) */
    add(tl, &rng, INIT_W, 3, 1, 1, D, 0, hf ? "vision_model.embeddings.class_embedding" : "visual_encoder.cls_token");
    add(tl, &rng, INIT_W, 4, D, 3, PATCH, PATCH,
        hf ? "vision_model.embeddings.patch_embedding.weight" : "visual_encoder.patch_embed.proj.weight");
    add(tl, &rng, INIT_BIAS, 1, D, 0, 0, 0,
        hf ? "vision_model.embeddings.patch_embedding.bias" : "visual_encoder.patch_embed.proj.bias");
    add(tl, &rng, INIT_W, 3, 1, N, D, 0, hf ? "vision_model.embeddings.position_embedding" : "visual_encoder.pos_embed");
    for (int i = 0; i < N_LAYER; i++) {
        const char *p = hf ? "vision_model.encoder.layers" : "visual_encoder.blocks";
        snprintf(n, sizeof n, hf ? "%s.%d.layer_norm1" : "%s.%d.norm1", p, i);
        add_ln(tl, &rng, n);
        snprintf(n, sizeof n, hf ? "%s.%d.self_attn.qkv" : "%s.%d.attn.qkv", p, i);
        add_linear(tl, &rng, 3 * D, D, n);
        snprintf(n, sizeof n, hf ? "%s.%d.self_attn.projection" : "%s.%d.attn.proj", p, i);
        add_linear(tl, &rng, D, D, n);
        snprintf(n, sizeof n, hf ? "%s.%d.layer_norm2" : "%s.%d.norm2", p, i);
        add_ln(tl, &rng, n);
        snprintf(n, sizeof n, "%s.%d.mlp.fc1", p, i);
        add_linear(tl, &rng, FF, D, n);
        snprintf(n, sizeof n, "%s.%d.mlp.fc2", p, i);
        add_linear(tl, &rng, D, FF, n);
    }
    add_ln(tl, &rng, hf ? "vision_model.post_layernorm" : "visual_encoder.norm");

    /* text encoder and heads (same names in both layouts) */
    add(tl, &rng, INIT_W, 2, VOCAB, D, 0, 0, "text_encoder.embeddings.word_embeddings.weight");
    add(tl, &rng, INIT_W, 2, MAX_POS, D, 0, 0, "text_encoder.embeddings.position_embeddings.weight");
    add_ln(tl, &rng, "text_encoder.embeddings.LayerNorm");
    for (int i = 0; i < N_LAYER; i++) {
        snprintf(n, sizeof n, "text_encoder.encoder.layer.%d", i);
        add_bert_layer(tl, &rng, n, false);
    }
    add_linear(tl, &rng, PROJ, D, "vision_proj");
    add_linear(tl, &rng, PROJ, D, "text_proj");
    add_linear(tl, &rng, 2, D, "itm_head");

    /* decoder: own self-attention, the rest tied to the encoder; LM decoder.weight tied to the
     * word embeddings (stored once, as in the original pretraining checkpoint) */
    if (!hf) {
        for (int i = 0; i < N_LAYER; i++) {
            snprintf(n, sizeof n, "text_decoder.bert.encoder.layer.%d", i);
            add_bert_layer(tl, &rng, n, true);
        }
        add_linear(tl, &rng, D, D, "text_decoder.cls.predictions.transform.dense");
        add_ln(tl, &rng, "text_decoder.cls.predictions.transform.LayerNorm");
        add(tl, &rng, INIT_BIAS, 1, VOCAB, 0, 0, 0, "text_decoder.cls.predictions.bias");
    }

    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct mf_st_writer *w = NULL;
    if (mf_st_writer_create(path, &w, &err))
        die(path, &err);
    for (int i = 0; i < tl->n; i++)
        if (mf_st_writer_add(w, tl->name[i], MF_DTYPE_F32, tl->ndim[i], tl->shape[i], tl->data[i], &err)) {
            mf_st_writer_abort(w);
            die(path, &err);
        }
    if (mf_st_writer_meta(w, "format", "pt", &err) || mf_st_writer_commit(w, &err))
        die(path, &err);
    for (int i = 0; i < tl->n; i++)
        mf_free(tl->data[i]);
    write_vocab(dir);
    if (hf) {
        char cfg[1024];
        snprintf(cfg, sizeof cfg,
                 "{\n  \"architectures\": [\"BlipForImageTextRetrieval\"],\n  \"image_text_hidden_size\": %d,\n"
                 "  \"vision_config\": {\"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d,\n"
                 "    \"num_attention_heads\": 12, \"image_size\": %d, \"patch_size\": %d, \"layer_norm_eps\": 1e-05},\n"
                 "  \"text_config\": {\"vocab_size\": %d, \"hidden_size\": %d, \"encoder_hidden_size\": %d,\n"
                 "    \"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": 12,\n"
                 "    \"max_position_embeddings\": %d, \"layer_norm_eps\": 1e-12}\n}\n",
                 PROJ, D, FF, N_LAYER, res, PATCH, VOCAB, D, D, FF, N_LAYER, MAX_POS);
        write_text(dir, "config.json", cfg);
    }
    fprintf(stderr, "wrote %s (%d tensors, %s layout, %d px) in %.1f s\n", path, tl->n, hf ? "blip-hf" : "blip-orig",
            res, mf_time_now() - t0);
    mf_free(tl);
}

/* ---- FLOPs (models.md §8.1, generalised to d_ff != 4d) ------------------------------------ */

static double flops_vit(const struct mf_vit_info *v)
{
    double N = (double)v->n_tok, d = (double)v->d, f = (double)v->d_ff, P = (double)v->patch;
    double block = 2 * N * (4 * d * d + 2 * d * f) + 4 * N * N * d;
    return (double)v->n_layer * block + 2 * (N - 1) * (3 * P * P) * d;
}

/* Self-attention + FFN layer over L tokens, plus the cross-attention sub-layer when Ne > 0. */
static double flops_bert(const struct mf_bert_info *t, double L, double Ne)
{
    double d = (double)t->d, f = (double)t->d_ff;
    double layer = 2 * L * (4 * d * d + 2 * d * f) + 4 * L * L * d;
    if (Ne > 0)
        layer += 4 * L * d * d + 4 * Ne * d * d + 4 * L * Ne * d;
    return (double)t->n_layer * layer;
}

static double flops_pair(const struct mf_model_info *mi, enum mode mode, double L)
{
    double d = (double)mi->text.d, Ne = (double)mi->vision.n_tok;
    double fl = flops_vit(&mi->vision) + flops_bert(&mi->text, L, Ne) + 2 * d * 2; /* + ITM head */
    if (mode == MODE_ITM)
        fl += flops_bert(&mi->text, L, 0) + 2 * 2 * d * (double)mi->proj_dim; /* unimodal + ITC projections */
    else
        fl += flops_bert(&mi->text, L, Ne) + 2 * L * d * d + 2 * L * d * (double)mi->text.vocab; /* decoder + LM */
    return fl;
}

/* ---- SGEMM peak ----------------------------------------------------------------------------- */

/* Best GFLOP/s of y[M,Nc] = x[M,K] W[Nc,K]^T (the engine's GEMM) over the biggest model shapes. */
/* The SGEMM peak at n_threads, the best of two ways to use the cores on the model's biggest GEMM
 * shapes: (a) one cblas_sgemm with OpenBLAS's own n_threads threads, (b) n_threads single-threaded
 * cblas_sgemm calls on row blocks run by our pool (how the engine runs its GEMMs, nn/linear.c).
 * Best of 5 timed runs after a warm-up, per shape and way. */
static double sgemm_peak(int64_t M, int n_threads, char *shape_out, size_t shape_len)
{
    static const int64_t shapes[3][2] = {{3 * D, D}, {FF, D}, {D, FF}}; /* (Nc, K): qkv, fc1, fc2 */
    float *x = mf_malloc_aligned((size_t)M * FF * sizeof(float));
    float *w = mf_malloc_aligned((size_t)FF * FF * sizeof(float));
    float *y = mf_malloc_aligned((size_t)M * FF * sizeof(float));
    struct mf_pool *pool = mf_pool_create(n_threads);
    if (!x || !w || !y || !pool)
        die("out of memory for the SGEMM peak", NULL);
    for (int64_t i = 0; i < M * FF; i++)
        x[i] = (float)((i % 97) - 48) * 0.01f;
    for (int64_t i = 0; i < (int64_t)FF * FF; i++)
        w[i] = (float)((i % 89) - 44) * 0.001f;
    memset(y, 0, (size_t)M * FF * sizeof(float)); /* beta = 1 like the engine: no garbage or denormals */
    double best = 0;
    for (int way = 0; way < 2; way++) {
        mf_nn_set_blas_threads(way == 0 ? n_threads : 1);
        for (int s = 0; s < 3; s++) {
            int64_t Nc = shapes[s][0], K = shapes[s][1];
            for (int r = 0; r < 6; r++) { /* first run warms caches and threads; best of 5 */
                double t0 = mf_time_now();
                if (way == 0)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)Nc, (int)K, 1.0f, x, (int)K, w,
                                (int)K, 1.0f, y, (int)Nc);
                else
                    mf_linear_forward(pool, y, x, K, w, NULL, M, K, Nc);
                double g = 2.0 * (double)M * (double)Nc * (double)K / (mf_time_now() - t0) * 1e-9;
                if (r > 0 && g > best) {
                    best = g;
                    snprintf(shape_out, shape_len, "M=%lld,N=%lld,K=%lld,%s", (long long)M, (long long)Nc,
                             (long long)K, way == 0 ? "openblas-threads" : "pool-rows");
                }
            }
        }
    }
    mf_nn_set_blas_threads(1); /* the engine's setting */
    mf_pool_free(pool);
    mf_free_aligned(x);
    mf_free_aligned(w);
    mf_free_aligned(y);
    return best;
}

/* ---- inputs, dump, comparison --------------------------------------------------------------- */

struct batch {
    int64_t B, L, R;
    float *images;          /* (B, 3, R, R) normalised */
    int32_t *ids, *mask;    /* (B, L) */
    float *itc, *itm, *lm;  /* (B) outputs */
};

static void make_inputs(struct batch *b, const struct mf_model_info *mi, uint64_t seed)
{
    struct mf_rng rng;
    mf_rng_seed(&rng, seed ^ 0x9e3779b97f4a7c15ull);
    int64_t n_img = b->B * 3 * b->R * b->R;
    b->images = mf_malloc((size_t)n_img * sizeof(float));
    b->ids = mf_malloc((size_t)(b->B * b->L) * sizeof(int32_t));
    b->mask = mf_malloc((size_t)(b->B * b->L) * sizeof(int32_t));
    b->itc = mf_malloc((size_t)b->B * sizeof(float));
    b->itm = mf_malloc((size_t)b->B * sizeof(float));
    b->lm = mf_malloc((size_t)b->B * sizeof(float));
    if (!b->images || !b->ids || !b->mask || !b->itc || !b->itm || !b->lm)
        die("out of memory for the inputs", NULL);
    /* pixels after (x - mean) / std of values in [0, 1]: roughly [-1.8, 2.1] */
    for (int64_t i = 0; i < n_img; i++)
        b->images[i] = (float)(-1.8 + 3.9 * mf_rng_uniform(&rng));
    /* captions of 8..L tokens including [CLS] and [SEP] (COCO captions are 10-20 word pieces),
     * the rest [PAD]; the first caption is full length so no batch is all-padding at the end */
    for (int64_t s = 0; s < b->B; s++) {
        int64_t len = s == 0 ? b->L : 8 + (int64_t)(mf_rng_uniform(&rng) * (double)(b->L - 7));
        if (len > b->L)
            len = b->L;
        for (int64_t t = 0; t < b->L; t++) {
            int32_t id = mi->pad_id;
            if (t == 0)
                id = mi->cls_id;
            else if (t == len - 1)
                id = mi->sep_id;
            else if (t < len - 1)
                id = 1000 + (int32_t)(mf_rng_uniform(&rng) * (VOCAB_LINES - 1000));
            b->ids[s * b->L + t] = id;
            b->mask[s * b->L + t] = t < len;
        }
    }
}

static double max_diff(const float *a, const float *b, int64_t n, bool relative)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (relative)
            d /= fmax(1.0, fabs((double)a[i]));
        if (!(d <= m)) /* NaN wins */
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

static void dump_batch(const char *path, const struct batch *b, enum mode mode)
{
    struct mf_err err = {0};
    struct mf_st_writer *w = NULL;
    int64_t sh_img[4] = {b->B, 3, b->R, b->R}, sh_tok[2] = {b->B, b->L}, sh_b[1] = {b->B};
    if (mf_st_writer_create(path, &w, &err) || mf_st_writer_add(w, "images", MF_DTYPE_F32, 4, sh_img, b->images, &err) ||
        mf_st_writer_add(w, "ids", MF_DTYPE_I32, 2, sh_tok, b->ids, &err) ||
        mf_st_writer_add(w, "mask", MF_DTYPE_I32, 2, sh_tok, b->mask, &err) ||
        (mode == MODE_ITM && mf_st_writer_add(w, "itc", MF_DTYPE_F32, 1, sh_b, b->itc, &err)) ||
        mf_st_writer_add(w, "itm", MF_DTYPE_F32, 1, sh_b, b->itm, &err) ||
        (mode == MODE_CALIB && mf_st_writer_add(w, "lm", MF_DTYPE_F32, 1, sh_b, b->lm, &err)) ||
        mf_st_writer_meta(w, "mode", mode == MODE_ITM ? "itm" : "calib", &err) || mf_st_writer_commit(w, &err)) {
        if (err.code != MF_OK && w)
            mf_st_writer_abort(w);
        die(path, &err);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_forward [--mode itm|calib] [--res 224|384] [--threads 1,2] [--batch 8] [--reps 2]\n"
            "                     [--model-dir DIR] [--dump FILE] [--seed N] [--no-peak]\n"
            "  --mode itm    HF retrieval layout, ITC + ITM per pair, L = 35 (default)\n"
            "  --mode calib  original layout with decoder: vision + [ENC] encoder + decoder + LM head, L = 30\n"
            "  --model-dir   reuse the checkpoint there, or write it there when absent (default: temp dir)\n"
            "  --dump FILE   write the first batch's inputs and outputs (safetensors) for bench_forward_torch.py\n"
            "  --no-peak     skip the SGEMM peak measurement (for profiling the forward alone)\n");
    exit(2);
}

static void parse(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){MODE_ITM, 224, 8, 2, 2, {1, 2}, NULL, NULL, 1234, false};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            usage();
        if (!strcmp(a, "--no-peak")) {
            o->no_peak = true;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "itm"))
                o->mode = MODE_ITM;
            else if (!strcmp(v, "calib"))
                o->mode = MODE_CALIB;
            else
                usage();
        } else if (!strcmp(a, "--res")) {
            o->res = atoi(v);
        } else if (!strcmp(a, "--batch")) {
            o->batch = atoi(v);
        } else if (!strcmp(a, "--reps")) {
            o->reps = atoi(v);
        } else if (!strcmp(a, "--seed")) {
            o->seed = strtoull(v, NULL, 10);
        } else if (!strcmp(a, "--model-dir")) {
            o->model_dir = v;
        } else if (!strcmp(a, "--dump")) {
            o->dump = v;
        } else if (!strcmp(a, "--threads")) {
            o->n_threads = 0;
            for (const char *p = v; *p && o->n_threads < MAX_THREADS;) {
                o->threads[o->n_threads++] = atoi(p);
                p = strchr(p, ',');
                if (!p)
                    break;
                p++;
            }
        } else {
            usage();
        }
    }
    if (o->res <= 0 || o->res % PATCH || o->res > 1024 || o->batch < 1 || o->batch > 256 || o->reps < 1 ||
        o->n_threads < 1)
        usage();
    for (int i = 0; i < o->n_threads; i++)
        if (o->threads[i] < 1 || o->threads[i] > 256)
            usage();
}

int main(int argc, char **argv)
{
    struct opts o;
    struct mf_err err = {0};
    char tmpdir[] = "/tmp/mf-bench-XXXXXX", path[4096];
    const char *dir;
    parse(argc, argv, &o);

    if (o.model_dir) {
        dir = o.model_dir;
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            die(dir, NULL);
    } else {
        if (!mkdtemp(tmpdir))
            die("mkdtemp", NULL);
        dir = tmpdir;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (access(path, R_OK) != 0)
        make_checkpoint(dir, o.mode, o.res, o.seed);
    else
        fprintf(stderr, "reusing %s\n", path);

    struct mf_model *m = NULL;
    struct mf_model_opts mo = mf_model_opts_default();
    double t0 = mf_time_now();
    if (mf_model_load(dir, &mo, &m, &err))
        die(dir, &err);
    const struct mf_model_info *mi = mf_model_get_info(m);
    const bool want_lm = o.mode == MODE_CALIB;
    if (mi->vision.image_size != o.res || (want_lm && !mi->has_decoder) || !mi->has_itm ||
        (o.mode == MODE_ITM && !mi->has_itc)) {
        fprintf(stderr, "bench_forward: %s holds a %lld px %s model%s; --mode %s --res %d needs another directory\n",
                dir, (long long)mi->vision.image_size, mi->layout_name, mi->has_decoder ? " with decoder" : "",
                want_lm ? "calib" : "itm", o.res);
        return 1;
    }
    fprintf(stderr, "loaded in %.1f s\n", mf_time_now() - t0);

    struct batch b = {o.batch, want_lm ? 30 : 35, o.res, NULL, NULL, NULL, NULL, NULL, NULL};
    make_inputs(&b, mi, o.seed);
    const double gflop_pair = flops_pair(mi, o.mode, (double)b.L) * 1e-9;
    printf("# bench_forward mode=%s layout=%s res=%d N=%lld L=%lld batch=%lld reps=%d GFLOP/pair=%.3f "
           "(models.md §8 formulas)\n",
           want_lm ? "calib" : "itm", mi->layout_name, o.res, (long long)mi->vision.n_tok, (long long)b.L,
           (long long)b.B, o.reps, gflop_pair);
    fflush(stdout);

    float *ref_itc = mf_malloc((size_t)b.B * sizeof(float)), *ref_itm = mf_malloc((size_t)b.B * sizeof(float)),
          *ref_lm = mf_malloc((size_t)b.B * sizeof(float));
    double *times = mf_malloc((size_t)o.reps * sizeof(double));
    if (!ref_itc || !ref_itm || !ref_lm || !times)
        die("out of memory", NULL);
    int status = 0;
    for (int ti = 0; ti < o.n_threads; ti++) {
        const int T = o.threads[ti];
        struct mf_session *s = NULL;
        if (mf_session_create(m, T, &s, &err))
            die("session", &err);
        float *itc = o.mode == MODE_ITM ? b.itc : NULL, *lm = want_lm ? b.lm : NULL;
        /* warm-up batch = correctness check */
        double tw = mf_time_now();
        if (mf_score_pairs(s, b.images, b.ids, b.mask, b.B, b.L, itc, b.itm, lm, &err))
            die("mf_score_pairs", &err);
        tw = mf_time_now() - tw;
        if (ti == 0) {
            memcpy(ref_itc, b.itc, (size_t)b.B * sizeof(float));
            memcpy(ref_itm, b.itm, (size_t)b.B * sizeof(float));
            memcpy(ref_lm, b.lm, (size_t)b.B * sizeof(float));
            printf("# outputs threads=%d:", T);
            for (int64_t i = 0; i < b.B; i++) {
                if (itc)
                    printf(" itc=%.5f", b.itc[i]);
                printf(" itm=%.5f", b.itm[i]);
                if (want_lm)
                    printf(" lm=%.4f", b.lm[i]);
                printf(i + 1 < b.B ? ";" : "");
            }
            printf("\n");
            if (o.dump)
                dump_batch(o.dump, &b, o.mode);
        } else {
            double d_itc = itc ? max_diff(ref_itc, b.itc, b.B, false) : 0, d_itm = max_diff(ref_itm, b.itm, b.B, false),
                   d_lm = want_lm ? max_diff(ref_lm, b.lm, b.B, true) : 0;
            bool ok = d_itc <= 1e-4 && d_itm <= 1e-4 && d_lm <= 1e-4;
            printf("CHECK threads=%d vs threads=%d: max|d itc| %.2e  max|d itm| %.2e  max rel|d lm| %.2e  %s\n", T,
                   o.threads[0], d_itc, d_itm, d_lm, ok ? "ok" : "FAIL (tolerance 1e-4)");
            if (!ok) {
                status = 1;
                mf_session_free(s);
                continue;
            }
        }
        for (int r = 0; r < o.reps; r++) {
            double t1 = mf_time_now();
            if (mf_score_pairs(s, b.images, b.ids, b.mask, b.B, b.L, itc, b.itm, lm, &err))
                die("mf_score_pairs", &err);
            times[r] = mf_time_now() - t1;
        }
        mf_session_free(s);
        qsort(times, (size_t)o.reps, sizeof *times, cmp_double);
        double best = times[0], median = o.reps % 2 ? times[o.reps / 2] : 0.5 * (times[o.reps / 2 - 1] + times[o.reps / 2]);
        char shape[64] = "-";
        double peak = o.no_peak ? NAN : sgemm_peak(b.B * mi->vision.n_tok, T, shape, sizeof shape);
        double gflops = gflop_pair * (double)b.B / best;
        printf("RESULT mode=%s res=%d threads=%d batch=%lld warmup_s=%.3f best_s=%.3f median_s=%.3f pairs_per_s=%.3f "
               "gflop_per_pair=%.3f gflops=%.1f sgemm_peak_gflops=%.1f peak_shape=%s pct_peak=%.1f\n",
               want_lm ? "calib" : "itm", o.res, T, (long long)b.B, tw, best, median, (double)b.B / best, gflop_pair,
               gflops, peak, shape, 100.0 * gflops / peak);
        fflush(stdout);
    }

    mf_free(times);
    mf_free(ref_itc);
    mf_free(ref_itm);
    mf_free(ref_lm);
    mf_free(b.images);
    mf_free(b.ids);
    mf_free(b.mask);
    mf_free(b.itc);
    mf_free(b.itm);
    mf_free(b.lm);
    mf_model_free(m);
    if (!o.model_dir) { /* temporary checkpoint: remove it */
        static const char *files[] = {"model.safetensors", "vocab.txt", "config.json"};
        for (size_t i = 0; i < MF_ARRAY_LEN(files); i++) {
            snprintf(path, sizeof path, "%s/%s", dir, files[i]);
            unlink(path);
        }
        rmdir(dir);
    }
    return status;
}
