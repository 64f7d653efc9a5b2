/*
 * bench/bench_train.c: masked fine-tuning step throughput (pairs per second) on BLIP-base shapes:
 * one step = ITC+ITM training forward, backward into the gradient block, AdamW update
 * (models/losses.h + models/train.h, exactly what `multiflow finetune` runs per batch).
 *
 * What it does: loads a BLIP-base-shaped checkpoint that bench_forward wrote (--model-dir, Hugging
 * Face retrieval layout: `bench_forward --mode itm --model-dir DIR`), draws one seeded batch of
 * random normalised images and random captions with realistic padding, prunes half of every
 * prunable tensor with a fixed pseudo-random mask, and for every thread count runs --steps steps on
 * that batch (hardest ITM negatives: deterministic), printing the first step's losses and the best
 * and median step time. --dump FILE writes the batch, the masks and the first step's losses (safetensors) so
 * bench_train_torch.py checks that PyTorch computes the same loss before timing its
 * forward+backward+AdamW. After the timed steps it checks that every masked weight is still 0.
 *
 * --config FILE (an architecture JSON of `multiflow init`, e.g. data/configs/blip-mini.json) instead
 * times a PRETRAINING step of that model: bench_train writes a random original-layout BLIP with a
 * synthetic --vocab-size vocabulary into --model-dir (models/init.c) and runs BLIP's three losses
 * (ITC with the momentum encoders and queues, ITM, LM) with every tower trained and no masks,
 * exactly what `multiflow pretrain` runs per step (data loading aside).
 *
 * What it deliberately does not do: image decoding or tokenisation (not part of a step), PyTorch
 * (bench_train_torch.py), assertions on time, writing the checkpoint.
 * Reference: bench/bench_forward.c (same checkpoint and input conventions); llm.c train_gpt2.c
 * (timing a training step).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "models/grad.h"
#include "models/losses.h"
#include "models/train.h"
#include "io/fs.h"
#include "multiflow/model.h"
#include "multiflow/safetensors.h"

#define MAX_STEPS 64

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *dump = NULL, *config = NULL;
    int batch = 8, steps = 3, L = 35, vocab_size = 300;
    char threads_s[64] = "1,2";
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_train: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--model-dir"))
            dir = v;
        else if (!strcmp(a, "--dump"))
            dump = v;
        else if (!strcmp(a, "--batch"))
            batch = atoi(v);
        else if (!strcmp(a, "--steps"))
            steps = atoi(v);
        else if (!strcmp(a, "--threads"))
            snprintf(threads_s, sizeof threads_s, "%s", v);
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--config"))
            config = v;
        else if (!strcmp(a, "--vocab-size"))
            vocab_size = atoi(v);
        else if (!strcmp(a, "--max-tokens"))
            L = atoi(v);
        else {
            fprintf(stderr, "usage: bench_train --model-dir DIR [--config FILE [--vocab-size 300]] [--batch 8] [--steps 3]\n"
                            "                   [--threads 1,2] [--max-tokens 35] [--dump FILE] [--seed N]\n"
                            "  DIR: a checkpoint from bench_forward --mode itm --model-dir DIR, or with --config the\n"
                            "  directory bench_train writes a random model of that architecture into (pretraining step)\n");
            return 2;
        }
        i++;
    }
    if (!dir || batch < 2 || steps < 1 || steps > MAX_STEPS) {
        fprintf(stderr, "bench_train: --model-dir is required; --batch >= 2; 1 <= --steps <= %d\n", MAX_STEPS);
        return 2;
    }
    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_model_opts mo = mf_model_opts_default();
    double t0 = mf_time_now();
    const bool pretrain = config != NULL;
    if (pretrain) { /* a random model of the architecture, with a synthetic vocabulary */
        char path[4096];
        struct mf_blip_arch arch;
        FILE *vf;
        mf_fs_join(path, sizeof path, dir, "vocab.txt");
        if (vocab_size < 16 || !(vf = fopen(path, "w"))) {
            fprintf(stderr, "bench_train: cannot write %s (does --model-dir exist? --vocab-size >= 16)\n", path);
            return 1;
        }
        fputs("[PAD]\n[unused0]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", vf);
        for (int k = 6; k < vocab_size; k++)
            fprintf(vf, "w%d\n", k);
        fclose(vf);
        if (mf_blip_arch_load(config, &arch, &err) || mf_blip_arch_set_vocab(&arch, path, &err) ||
            !mf_fs_join(path, sizeof path, dir, "model.safetensors") ||
            mf_blip_init_write(&arch, seed, MF_DTYPE_F32, path, &err)) {
            fprintf(stderr, "bench_train: %s\n", err.msg);
            return 1;
        }
    }
    if (mf_model_load(dir, &mo, &m, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    const struct mf_model_info *info = mf_model_get_info(m);
    const int64_t R = info->vision.image_size, B = batch;
    printf("# bench_train: %s (%s), %lld px, batch %d, L %d, %d steps per thread count, loaded in %.1f s; %s\n", dir,
           info->layout_name, (long long)R, batch, L, steps, mf_time_now() - t0,
           pretrain ? "pretraining step (itc+itm+lm, momentum encoders and queues, every tower, dense)"
                    : "fine-tuning step (itc+itm, half of every prunable tensor masked)");

    /* inputs */
    float *images = malloc((size_t)(B * 3 * R * R) * sizeof(float));
    int32_t *ids = malloc((size_t)(B * L) * sizeof(int32_t)), *mask = malloc((size_t)(B * L) * sizeof(int32_t));
    struct mf_rng rng;
    mf_rng_seed(&rng, seed);
    for (int64_t j = 0; j < B * 3 * R * R; j++)
        images[j] = (float)mf_rng_normal(&rng);
    for (int64_t b = 0; b < B; b++) {
        int64_t n = 8 + (int64_t)(mf_rng_u64(&rng) % (uint64_t)(L - 8)); /* real tokens incl. CLS/SEP */
        for (int64_t t = 0; t < L; t++) {
            const int32_t lo = info->text.vocab > 30000 ? 1000 : 6, span = info->text.vocab > 30000 ? 29000 : (int32_t)info->text.vocab - 2 - lo;
            ids[b * L + t] = t == 0 ? info->cls_id : t == n - 1 ? info->sep_id : t < n ? lo + (int32_t)(mf_rng_u64(&rng) % (uint64_t)span) : info->pad_id;
            mask[b * L + t] = t < n;
        }
    }
    /* masks: half of every prunable tensor */
    const size_t nt = mf_model_n_tensors(m);
    uint8_t **masks = calloc(nt, sizeof *masks);
    uint64_t x = seed;
    for (size_t i = 0; i < nt; i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        if (!t->prunable || pretrain)
            continue;
        size_t k = t->nbytes / mf_dtype_size(t->dtype);
        masks[i] = malloc(k);
        for (size_t j = 0; j < k; j++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            masks[i][j] = (uint8_t)((x >> 33) & 1);
        }
    }

    struct mf_losses_opts lo = {pretrain ? MF_LOSS_ALL : MF_LOSS_ITC | MF_LOSS_ITM, MF_ITM_NEG_HARDEST, 0, MF_MOMENTUM_ON, 0};
    struct mf_losses *Ls = NULL;
    if (mf_losses_create(m, &lo, &Ls, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    int status = 0;
    double first_ref = NAN;
    char *tok = strtok(threads_s, ",");
    for (; tok; tok = strtok(NULL, ",")) {
        int nth = atoi(tok);
        struct mf_session *s = NULL;
        struct mf_trainer *tr = NULL;
        struct mf_train_opts to = mf_train_opts_default(); /* lr 1e-5, wd 0.05: BLIP retrieval */
        to.total_steps = steps;
        to.all_towers = pretrain;
        mf_losses_reset(Ls); /* every thread count starts from the checkpoint's momentum state */
        if (mf_session_create(m, nth, &s, &err) || mf_trainer_create(m, (const uint8_t *const *)masks, &to, &tr, &err)) {
            fprintf(stderr, "bench_train: %s\n", err.msg);
            return 1;
        }
        mf_losses_set_temp(Ls, mf_trainer_temp(tr));
        double times[MAX_STEPS];
        struct mf_loss_values v0 = {0};
        for (int st = 0; st < steps; st++) {
            struct mf_loss_values v;
            double ts = mf_time_now();
            if (mf_losses_batch(Ls, s, (uint64_t)st, images, ids, mask, B, L, mf_trainer_grads(tr), &v, NULL, NULL,
                                &err) ||
                mf_trainer_step(tr, s, v.d_temp, NULL, &err)) {
                fprintf(stderr, "bench_train: step %d: %s\n", st + 1, err.msg);
                return 1;
            }
            times[st] = mf_time_now() - ts;
            mf_losses_set_temp(Ls, mf_trainer_temp(tr));
            if (st == 0)
                v0 = v;
        }
        /* every masked weight still 0 */
        const float *const *val = mf_trainer_values(tr);
        int64_t bad = 0;
        for (size_t i = 0; i < nt; i++)
            if (masks[i] && val[i])
                for (size_t j = 0; j < mf_model_tensor_at(m, i)->nbytes / mf_dtype_size(mf_model_tensor_at(m, i)->dtype); j++)
                    bad += !masks[i][j] && val[i][j] != 0.0f;
        if (isnan(first_ref))
            first_ref = v0.total;
        const bool same = fabs(v0.total - first_ref) <= 1e-4 * fmax(1.0, fabs(first_ref));
        printf("CHECK threads=%d first step itc %.6f itm %.6f lm %.6f total %.6f (vs first thread count: %s), masked "
               "weights non-zero after %d steps: %lld%s\n",
               nth, v0.itc, v0.itm, pretrain ? v0.lm : NAN, v0.total, same ? "ok" : "DIFFERS", steps, (long long)bad,
               bad ? " FAIL" : "");
        if (!same || bad)
            status = 1;
        if (dump) { /* first thread count only: the inputs and its first-step losses */
            struct mf_st_writer *w = NULL;
            int64_t sh_img[4] = {B, 3, R, R}, sh_ids[2] = {B, L}, one[1] = {1};
            float li = (float)v0.itc, lm = (float)v0.itm, lt = (float)v0.total, ll = pretrain ? (float)v0.lm : NAN;
            if (mf_st_writer_create(dump, &w, &err) ||
                mf_st_writer_add(w, "images", MF_DTYPE_F32, 4, sh_img, images, &err) ||
                mf_st_writer_add(w, "ids", MF_DTYPE_I32, 2, sh_ids, ids, &err) ||
                mf_st_writer_add(w, "mask", MF_DTYPE_I32, 2, sh_ids, mask, &err) ||
                mf_st_writer_add(w, "itc", MF_DTYPE_F32, 1, one, &li, &err) ||
                mf_st_writer_add(w, "itm", MF_DTYPE_F32, 1, one, &lm, &err) ||
                mf_st_writer_add(w, "total", MF_DTYPE_F32, 1, one, &lt, &err) ||
                (pretrain && mf_st_writer_add(w, "lm", MF_DTYPE_F32, 1, one, &ll, &err))) {
                fprintf(stderr, "bench_train: %s\n", err.msg);
                return 1;
            }
            char name[512];
            for (size_t i = 0; i < nt; i++) {
                const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
                snprintf(name, sizeof name, "mask.%s", t->name);
                if (masks[i] && mf_st_writer_add(w, name, MF_DTYPE_U8, t->ndim, t->shape, masks[i], &err)) {
                    fprintf(stderr, "bench_train: %s\n", err.msg);
                    return 1;
                }
            }
            if (mf_st_writer_commit(w, &err)) {
                fprintf(stderr, "bench_train: %s\n", err.msg);
                return 1;
            }
            dump = NULL;
        }
        double sorted[MAX_STEPS];
        memcpy(sorted, times, sizeof(double) * (size_t)steps);
        qsort(sorted, (size_t)steps, sizeof(double), cmp_double);
        /* step 1 includes first-touch page faults of the moments and activations: report it apart */
        double best = steps > 1 ? sorted[0] : times[0], med = sorted[steps / 2];
        printf("C threads=%d batch=%d steps=%d first_s=%.3f best_s=%.3f median_s=%.3f pairs_per_s=%.3f\n", nth, batch,
               steps, times[0], best, med, (double)B / best);
        fflush(stdout);
        mf_trainer_free(tr);
        mf_session_free(s);
    }
    mf_losses_free(Ls);
    for (size_t i = 0; i < nt; i++)
        free(masks[i]);
    free(masks);
    free(images);
    free(ids);
    free(mask);
    mf_model_free(m);
    return status;
}
