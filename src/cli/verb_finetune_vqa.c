/*
 * cli/verb_finetune_vqa.c: `multiflow finetune --task vqa`: BLIP_VQA's fine-tuning (salesforce/BLIP
 * train_vqa.py, configs/vqa.yaml; models/vqa.h) of a (pruned) BLIP checkpoint with its masks held
 * fixed: vision tower, question encoder and answer decoder (+ LM head) train with BLIP's VQA loss
 * (each question's distinct answers weighted by their share of the human answers, summed
 * label-smoothed LM loss, divided by the questions of the batch), AdamW with a cosine schedule
 * (lr 2e-5, weight decay 0.05, 10 epochs by default). Writes a checkpoint directory in the input's
 * layout and dtypes (masked weights exactly 0) that `eval vqa` reads, atomically.
 *
 * Batches: each epoch is a permutation of the questions from (seed, epoch), cut into --batch
 * questions, the last incomplete batch dropped. Deviations (docs in models/vqa.h): the answer
 * decoder keeps the checkpoint's tying to the text encoder; no image augmentation; no VG data.
 */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/common.h"
#include "eval/vqa_eval.h"
#include "io/fs.h"
#include "io/image.h"
#include "models/grad.h"
#include "models/train.h"
#include "models/vqa.h"
#include "multiflow/eval.h"
#include "multiflow/prune.h"
#include "prune/output.h"
#include "prune/write_values.h"

enum { OPT_QCLEAN = OPT_FT_END }; /* the shared ones: CLI_FINETUNE_OPTIONS (cli.h) */

static const char help[] =
    "usage: multiflow finetune --task vqa --model PATH --data ANN --images ROOT --out DIR [options]\n"
    "\n"
    "Fine-tunes BLIP's VQA model (vision tower, text encoder over the question with cross-attention to\n"
    "the image, answer decoder with cross-attention to the question states, LM head) with BLIP's VQA\n"
    "loss and AdamW on a cosine schedule, keeping the masks fixed (masked weights and their optimiser\n"
    "state stay exactly 0). The answer decoder starts from the checkpoint's decoder. Writes DIR: the\n"
    "checkpoint, the masks, the input's other files and finetune.json. 'multiflow eval vqa --model DIR'\n"
    "measures it.\n"
    "\n"
    "  --data ANN            JSON array of {\"image\", \"question\", \"answer\": [...], \"question_id\"}\n"
    "                        (the world's vqa_train.json)\n"
    "  --images ROOT         folder the image paths are relative to\n"
    CLI_DATA_HELP
    "  --task vqa            this task\n"
    "  --out DIR             output directory (must not exist unless --force)\n"
    "  --force               replace DIR if it exists\n"
    "  --masks FILE          masks.safetensors of a pruning run (default: every weight trains)\n"
    "  --steps N             optimiser steps (default: --epochs passes over the questions)\n"
    "  --epochs E            passes when --steps is not given (default 10, BLIP's)\n"
    "  --lr X                peak learning rate (default 2e-5)\n"
    "  --weight-decay X      decoupled AdamW weight decay (default 0.05)\n"
    "  --warmup N            linear warm-up steps before the cosine decay (default 0)\n"
    "  --clip X              clip the global gradient norm to X (default 0 = off)\n"
    "  --seed S              seed of the shuffling (default 0)\n"
    "  --question-clean multiflow|blip   question cleaning (default multiflow)\n"
    "  --log FILE            also write one JSON line per step to FILE\n" CLI_COMMON_HELP;

/* One training question: tokenised question, distinct answers (first appearance) and weights. */
struct tq {
    int32_t q[MF_VQA_QUESTION_TOKENS];
    int64_t Lq;
    struct mf_vqa_answers ans;
    double *w;
};

static enum mf_status prepare(const struct mf_model *m, const struct mf_vqa_set *v, int64_t i,
                              enum mf_question_style style, struct tq *t, struct mf_err *err)
{
    enum mf_status st;
    const int na = v->n_answers[i];
    const char **uniq = malloc((size_t)na * sizeof *uniq);
    t->w = malloc((size_t)na * sizeof *t->w);
    if (!uniq || !t->w) {
        free(uniq);
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    }
    int64_t nu = 0;
    for (int k = 0; k < na; k++) { /* BLIP vqa_dataset: weight += 1 / len(answers) per occurrence */
        int64_t j = 0;
        while (j < nu && strcmp(uniq[j], v->answers[i][k]) != 0)
            j++;
        if (j == nu) {
            uniq[nu] = v->answers[i][k];
            t->w[nu++] = 0;
        }
        t->w[j] += 1.0 / (double)na;
    }
    if (!(st = mf_vqa_tokenize_question(m, v->ann->caption[i], style, t->q, &t->Lq, err)))
        st = mf_vqa_answers_tokenize(m, uniq, nu, &t->ans, err);
    free(uniq);
    if (st)
        mf_pairs_err_prefix(v->ann, i, err);
    return st;
}

static double mean_range(const double *x, int64_t b, int64_t e)
{
    double s = 0;
    for (int64_t i = b; i < e; i++)
        s += x[i];
    return e > b ? s / (double)(e - b) : NAN;
}

int verb_finetune_vqa(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS, CLI_DATA_OPTIONS, CLI_OUT_OPTIONS, CLI_SEED_OPTION,
                                         CLI_FINETUNE_OPTIONS,
                                         {"question-clean", required_argument, 0, OPT_QCLEAN},
                                         {0, 0, 0, 0}};
    struct cli_common c;
    enum mf_question_style style = MF_QUESTION_MULTIFLOW;
    struct cli_finetune ft = {.to = mf_train_opts_default()};
    ft.to.lr = 2e-5; /* configs/vqa.yaml */
    ft.to.weight_decay = 0.05;
    struct mf_err err = {0};
    cli_common_init(&c);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_HELP: fputs(help, stdout); return 0;
        case OPT_QCLEAN:
            if (mf_question_style_parse(optarg, &style, &err))
                return cli_usage_error("finetune", "--question-clean: %s", err.msg);
            break;
        default: {
            int h = cli_finetune_option(&ft, opt, optarg);
            if (h < 0)
                return 2;
            if (h)
                break;
            int rc = cli_common_or_usage(&c, opt, optarg, "finetune");
            if (rc)
                return rc;
        }
        }
    }
    const char *masks_path = ft.masks, *task = ft.task, *log_path = ft.log;
    const int64_t steps = ft.steps, epochs = ft.epochs ? ft.epochs : 10, warmup = ft.warmup;
    struct mf_train_opts to = ft.to;
    to.schedule = MF_LR_COSINE;
    to.towers = MF_TRAIN_VISION | MF_TRAIN_TEXT | MF_TRAIN_DECODER;
    const char *data = c.data, *out = c.out;
    if (cli_no_operands("finetune", argc, argv))
        return 2;
    if (!c.model || !data || !out || !task)
        return cli_usage_error("finetune", "--model, --data, --task and --out are required");
    if (strcmp(task, "vqa") != 0)
        return cli_usage_error("finetune", "--task: expected vqa, got '%s'", task);
    if (cli_check_out(out, c.force, true) || (log_path && cli_check_writable(log_path)))
        return 1;
    cli_common_finish(&c);

    int rc = 1;
    struct mf_vqa_set *v = NULL;
    struct mf_model *m = NULL;
    struct mf_session *s = NULL;
    struct mf_trainer *tr = NULL;
    struct cli_masks cm = {0};
    struct tq *tqs = NULL;
    int64_t n_tq = 0, *perm = NULL;
    double *losses = NULL;
    float *images = NULL;
    struct mf_vqa_item *items = NULL;
    struct mf_atomic_dir ad = {0};
    bool ad_open = false;
    struct mf_atomic_file lf = {0};
    bool lf_open = false;
    json_t *steps_json = NULL;

    if (mf_vqa_set_load(data, c.images, true, &v, &err) ||
        (c.pairs > 0 && mf_annotations_truncate(v->ann, MF_MIN(c.pairs, v->n), &err)) ||
        mf_pairs_check_images(v->ann, c.images, c.allow_outside_root, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    const int64_t nq = c.pairs > 0 ? MF_MIN(c.pairs, v->n) : v->n, B = c.batch;
    int64_t per_epoch, total;
    if (cli_finetune_schedule(data, "questions", nq, B, steps, epochs, warmup, &to, &per_epoch, &total))
        goto done;
    if (!(m = cli_load_model(&c)))
        goto done;
    if (!(tqs = calloc((size_t)nq, sizeof *tqs))) {
        cli_error("out of memory");
        goto done;
    }
    for (; n_tq < nq; n_tq++)
        if (prepare(m, v, n_tq, style, &tqs[n_tq], &err)) {
            n_tq++;
            cli_error("%s", err.msg);
            goto done;
        }
    if (cli_masks_load(m, masks_path, &cm))
        goto done;
    const uint8_t *const *masks = cm.by_index;
    const int64_t R = mf_model_get_info(m)->vision.image_size;
    images = malloc((size_t)(B * 3 * R * R) * sizeof *images);
    items = malloc((size_t)B * sizeof *items);
    perm = malloc((size_t)nq * sizeof *perm);
    losses = calloc((size_t)total, sizeof *losses);
    if (!images || !items || !perm || !losses) {
        cli_error("out of memory for a batch of %lld questions and %lld steps", (long long)B, (long long)total);
        goto done;
    }
    if (mf_session_create(m, c.threads, &s, &err) || mf_trainer_create(m, masks, &to, &tr, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (cli_finetune_open(out, c.force, log_path, &ad, &ad_open, &lf, &lf_open))
        goto done;
    int64_t n_tr, n_w;
    mf_trainer_counts(tr, &n_tr, &n_w);
    if (!c.quiet)
        fprintf(stderr, "multiflow: finetune vqa %lld steps (%lld questions, %lld batches of %lld per epoch), %lld "
                        "tensors (%lld weights) trained, lr %g, weight decay %g, cosine\n",
                (long long)total, (long long)nq, (long long)per_epoch, (long long)B, (long long)n_tr, (long long)n_w,
                to.lr, to.weight_decay);
    steps_json = json_array();
    const double t0 = mf_time_now();
    for (int64_t st = 0; st < total; st++) {
        const int64_t epoch = st / per_epoch, bi = st % per_epoch;
        if (bi == 0)
            cli_permute(perm, nq, c.seed, epoch);
        for (int64_t b = 0; b < B; b++) {
            const int64_t i = perm[bi * B + b];
            if (mf_image_preprocess(v->ann->image_path[i], (int)R, images + b * 3 * R * R, &err)) {
                mf_pairs_err_prefix(v->ann, i, &err);
                cli_error("step %lld: %s", (long long)(st + 1), err.msg);
                goto done;
            }
            items[b] = (struct mf_vqa_item){images + b * 3 * R * R, tqs[i].q, tqs[i].Lq, &tqs[i].ans, tqs[i].w};
        }
        struct mf_train_step_info si;
        if (mf_vqa_loss(s, items, B, mf_trainer_grads(tr), &losses[st], &err) ||
            mf_trainer_step(tr, s, 0, &si, &err)) {
            cli_error("step %lld: %s", (long long)(st + 1), err.msg);
            goto done;
        }
        json_t *j = json_pack("{s:I,s:I,s:f,s:f,s:f}", "step", (json_int_t)(st + 1), "epoch", (json_int_t)epoch, "lr",
                              si.lr, "loss", losses[st], "grad_norm", si.grad_norm);
        json_array_append(steps_json, j);
        if (lf_open) {
            json_dumpf(j, lf.f, JSON_COMPACT | JSON_REAL_PRECISION(9));
            fputc('\n', lf.f);
        }
        json_decref(j);
        if (!c.quiet)
            fprintf(stderr, "step %lld/%lld  lr %.3e  loss %.6f  (vqa)  |g| %.4g%s\n", (long long)(st + 1),
                    (long long)total, si.lr, losses[st], si.grad_norm, si.clip_scale < 1 ? " clipped" : "");
    }
    const double elapsed = mf_time_now() - t0;

    char buf_steps[32];
    snprintf(buf_steps, sizeof buf_steps, "%lld", (long long)total);
    const char *meta[] = {"multiflow_finetune", "vqa (BLIP VQA loss), AdamW, cosine", "multiflow_finetune_steps",
                          buf_steps};
    const int64_t k = MF_MIN(5, total);
    const double first = mean_range(losses, 0, k), last = mean_range(losses, total - k, total);
    const double qps = elapsed > 0 ? (double)(total * B) / elapsed : 0;
    json_t *rep = json_pack("{s:s,s:s,s:o,s:I,s:I,s:I,s:f,s:f,s:I,s:f,s:I,s:s,s:s,s:I,s:I,s:f,s:f,s:f,s:f,s:s}",
                            "task", "vqa", "model", c.model, "masks", masks_path ? json_string(masks_path) : json_null(),
                            "questions", (json_int_t)nq, "batch", (json_int_t)B, "steps", (json_int_t)total, "lr",
                            to.lr, "weight_decay", to.weight_decay, "warmup", (json_int_t)warmup, "clip", to.clip_norm,
                            "seed", (json_int_t)c.seed, "schedule", "cosine", "question_clean",
                            style == MF_QUESTION_BLIP ? "blip" : "multiflow", "trained_tensors", (json_int_t)n_tr,
                            "trained_weights", (json_int_t)n_w, "seconds", elapsed, "questions_per_second", qps,
                            "loss_first5", first, "loss_last5", last, "deviations",
                            mf_model_get_info(m)->layout == MF_LAYOUT_BLIP_ORIG
                                ? "answer decoder tied to the text encoder as the checkpoint stores it; no augmentation"
                                : "no augmentation");
    json_object_set(rep, "log", steps_json);
    if (cli_finetune_finish(m, mf_trainer_values(tr), masks, masks_path, meta, 2, rep, &ad, &ad_open, &lf, &lf_open,
                            out))
        goto done;
    if (c.json) {
        json_t *o = json_pack("{s:s,s:I,s:f,s:f,s:f}", "out", out, "steps", (json_int_t)total, "questions_per_second",
                              qps, "loss_first5", first, "loss_last5", last);
        json_dumpf(o, stdout, JSON_COMPACT | JSON_REAL_PRECISION(8));
        fputc('\n', stdout);
        json_decref(o);
    } else {
        printf("%s: fine-tuned vqa %lld steps of %lld questions (%.2f questions/s), mean loss of the first %lld steps "
               "%.6f, of the last %lld %.6f\n",
               out, (long long)total, (long long)B, qps, (long long)k, first, (long long)k, last);
    }
    if (fflush(stdout) != 0) {
        cli_error("cannot write to stdout");
        goto done;
    }
    rc = 0;
done:
    if (lf_open)
        mf_atomic_abort(&lf);
    if (ad_open)
        mf_atomic_dir_abort(&ad);
    json_decref(steps_json);
    free(images);
    free(items);
    free(perm);
    free(losses);
    for (int64_t i = 0; i < n_tq; i++) {
        mf_vqa_answers_free(&tqs[i].ans);
        free(tqs[i].w);
    }
    free(tqs);
    mf_trainer_free(tr);
    mf_session_free(s);
    cli_masks_free(&cm);
    mf_model_free(m);
    mf_vqa_set_free(v);
    return rc;
}
