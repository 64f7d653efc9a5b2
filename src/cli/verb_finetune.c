/*
 * cli/verb_finetune.c: `multiflow finetune --task retrieval`: masked fine-tuning of a (pruned)
 * checkpoint on image-caption pairs with BLIP's ITC+ITM losses and AdamW (models/train.h); logs the
 * loss of every step and writes a checkpoint directory in the input's layout and dtypes (masked
 * weights exactly 0), loadable by every other verb, atomically.
 *
 * Batches: each epoch is a permutation of the pairs drawn from (seed, epoch), cut into batches of
 * --batch pairs; the last incomplete batch is dropped (BLIP's train loader: drop_last). --steps
 * bounds the total; without it, --epochs passes (default 6, BLIP's retrieval_coco).
 *
 * Momentum encoders and queues (--momentum on, the default, on checkpoints that have them) evolve
 * step by step from the trained weights as in BLIP's training; the written checkpoint keeps the
 * input's momentum copies and queues.
 *
 * `--task captioning` (BLIP_Decoder's fine-tuning, salesforce/BLIP train_caption.py,
 * configs/caption_coco.yaml): the vision tower and the text decoder with its LM head train on
 * "<prompt>" + caption (prompt "a picture of " by default, in both layouts), [DEC] first, the LM
 * loss with label smoothing 0.1 over the caption's tokens only (the prompt's positions are not
 * targets: BLIP's prompt_length), cosine decay to 0 over 5 epochs by default. In the original
 * layout the decoder shares its embeddings, cross-attention and FFN with the text encoder's
 * tensors, so those train (and are written under both names); the encoder's own self-attention,
 * the ITC/ITM heads and the momentum copies are written unchanged. Deviations: BLIP cleans the
 * caption (pre_caption, 30 words) before prepending the prompt; here the prompt + caption is
 * cleaned as one text (the model's caption rule and word limit), the same tokens for a clean
 * prompt unless the caption exceeds the word limit.
 *
 * Does not: momentum distillation, image augmentation, positives shared by captions
 * of the same image (BLIP's idx-based ITC targets), a cosine schedule for retrieval, resuming. The
 * losses and where they deviate from BLIP: docs/internals/losses.md. Reference: salesforce/BLIP
 * train_retrieval.py, configs/retrieval_coco.yaml.
 */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/common.h"
#include "core/rng.h"
#include "io/annotations.h"
#include "io/fs.h"
#include "models/grad.h"
#include "models/losses.h"
#include "models/train.h"
#include "multiflow/eval.h"
#include "multiflow/generate.h"
#include "multiflow/prune.h"
#include "multiflow/safetensors.h"
#include "prune/output.h"
#include "prune/write_values.h"

enum { OPT_PROMPT = OPT_FT_END }; /* the shared ones: CLI_FINETUNE_OPTIONS (cli.h) */

enum task { TASK_RETRIEVAL, TASK_CAPTIONING };

#define CAPTION_PROMPT "a picture of "

static const char help[] =
    "usage: multiflow finetune --model PATH --data ANN --images ROOT --task retrieval|captioning --out DIR\n"
    "                          [options]\n"
    "\n"
    "Fine-tunes with AdamW, keeping the masks fixed (masked weights and their optimiser state stay\n"
    "exactly 0). retrieval: the vision tower, text encoder, ITC projections, ITM head and temperature\n"
    "with BLIP's image-text contrastive + matching losses. captioning: the vision tower and the text\n"
    "decoder with its LM head on \"<prompt>\" + caption, BLIP's LM loss (label smoothing 0.1) over the\n"
    "caption's tokens (the prompt's are not targets), cosine decay. Logs the loss of every step on\n"
    "stderr (and --log), and writes DIR: the checkpoint in the input's layout and dtypes, the masks,\n"
    "the input's other files, and finetune.json (options and per-step losses). 'multiflow eval\n"
    "retrieval|caption --model DIR' measures it.\n"
    "\n"
    "  --data ANN --images ROOT   image-caption pairs\n"
    CLI_DATA_HELP
    "  --task T              retrieval (ITC + ITM) or captioning (LM on the caption after the prompt)\n"
    "                        (vqa: BLIP's VQA model and loss, see 'finetune --task vqa --help')\n"
    "  --prompt TEXT         captioning prompt, not a target (default \"a picture of \", both layouts;\n"
    "                        give the same --prompt to 'eval caption' on a Hugging Face checkpoint)\n"
    "  --out DIR             output directory (must not exist unless --force)\n"
    "  --force               replace DIR if it exists\n"
    "  --masks FILE          masks.safetensors of a pruning run (default: the zeros of the checkpoint are\n"
    "                        not enforced; every weight trains)\n"
    "  --steps N             optimiser steps (default: --epochs passes over the data)\n"
    "  --epochs E            passes over the data when --steps is not given (default 6 retrieval,\n"
    "                        5 captioning)\n"
    "  --lr X                peak learning rate (default 1e-5)\n"
    "  --weight-decay X      decoupled AdamW weight decay (default 0.05)\n"
    "  --warmup N            linear warm-up steps before the decay to 0 (linear retrieval, cosine\n"
    "                        captioning; default 0)\n"
    "  --clip X              clip the global gradient norm to X (default 0 = off, as BLIP)\n"
    "  --seed S              seed of the shuffling and the sampled ITM negatives (default 0)\n"
    "  --itm-negatives sample|hardest   ITM hard negatives (default sample)\n"
    CLI_MOMENTUM_HELP
    "  --log FILE            also write one JSON line per step to FILE\n" CLI_COMMON_HELP;

struct step_log {
    double loss, itc, itm, lm, lr, grad_norm, temp;
};

static json_t *step_json(int64_t step, int64_t epoch, const struct step_log *l)
{
    json_t *o = json_object();
    json_object_set_new(o, "step", json_integer(step));
    json_object_set_new(o, "epoch", json_integer(epoch));
    json_object_set_new(o, "lr", json_real(l->lr));
    json_object_set_new(o, "loss", json_real(l->loss));
    json_object_set_new(o, "itc", json_real(l->itc));
    json_object_set_new(o, "itm", json_real(l->itm));
    if (!isnan(l->lm))
        json_object_set_new(o, "lm", json_real(l->lm));
    json_object_set_new(o, "grad_norm", json_real(l->grad_norm));
    json_object_set_new(o, "temp", json_real(l->temp));
    return o;
}

static double mean_of(const struct step_log *l, int64_t b, int64_t e)
{
    double s = 0;
    for (int64_t i = b; i < e; i++)
        s += l[i].loss;
    return e > b ? s / (double)(e - b) : NAN;
}

/* Number of decoder positions the captioning prompt takes ([DEC] + its pieces): BLIP_Decoder's
 * prompt_length, the positions that are not targets. -1 after an error message. */
static int64_t caption_prompt_len(const struct cli_common *c, const struct mf_model *m, const char *prompt)
{
    struct mf_err err = {0};
    int32_t ids[64];
    int n = 0;
    if (!mf_model_get_info(m)->has_decoder) {
        cli_error("%s: captioning fine-tuning needs a text decoder (text_decoder.*)", c->model);
        return -1;
    }
    if (mf_generate_prompt(m, prompt, ids, (int)MF_ARRAY_LEN(ids), &n, &err)) {
        cli_error("--prompt: %s", err.msg);
        return -1;
    }
    if (n + 1 >= c->max_tokens) {
        cli_error("--prompt '%s' takes %d of the %d tokens (--max-tokens): no room for a caption", prompt, n,
                  c->max_tokens);
        return -1;
    }
    return n;
}

/* Pair p as BLIP's caption training set gives it: its image, and prompt + caption tokenized to
 * at most T tokens (the LM loss puts [DEC] first). */
static enum mf_status caption_pair(const struct mf_model *m, const struct mf_annotations *ann, int64_t p,
                                   const char *prompt, int64_t T, float *image, int32_t *ids, int32_t *mask,
                                   struct mf_err *err)
{
    enum mf_status st;
    if ((st = mf_pairs_batch(m, ann, p, 1, T, image, NULL, NULL, err)))
        return st;
    const size_t np = strlen(prompt), nc = strlen(ann->caption[p]);
    char *text = malloc(np + nc + 1);
    if (!text)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    memcpy(text, prompt, np);
    memcpy(text + np, ann->caption[p], nc + 1);
    st = mf_model_tokenize(m, text, (int)T, ids, mask, err);
    free(text);
    if (st)
        mf_pairs_err_prefix(ann, p, err);
    return st;
}

int verb_finetune(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS, CLI_DATA_OPTIONS, CLI_OUT_OPTIONS, CLI_SEED_OPTION,
                                         {"itm-negatives", required_argument, 0, OPT_ITM_NEG},
                                         {"momentum", required_argument, 0, OPT_MOMENTUM},
                                         CLI_FINETUNE_OPTIONS,
                                         {"prompt", required_argument, 0, OPT_PROMPT},
                                         {0, 0, 0, 0}};
    for (int i = 1; i < argc; i++) /* --task vqa has its own options and loop (verb_finetune_vqa.c) */
        if ((strcmp(argv[i], "--task") == 0 && i + 1 < argc && strcmp(argv[i + 1], "vqa") == 0) ||
            strcmp(argv[i], "--task=vqa") == 0)
            return verb_finetune_vqa(argc, argv);
    struct cli_common c;
    const char *prompt = CAPTION_PROMPT;
    struct cli_finetune ft = {.to = mf_train_opts_default()};
    struct mf_err err = {0};
    cli_common_init(&c);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_HELP: fputs(help, stdout); return 0;
        case OPT_PROMPT: prompt = optarg; break;
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
    int64_t steps = ft.steps, epochs = ft.epochs, warmup = ft.warmup;
    struct mf_train_opts to = ft.to;
    const char *data = c.data, *root = c.images, *out = c.out;
    const bool force = c.force;
    const uint64_t seed = c.seed;
    struct mf_losses_opts lo = c.lo;
    if (cli_no_operands("finetune", argc, argv))
        return 2;
    if (!c.model || !data || !out || !task)
        return cli_usage_error("finetune", "--model, --data, --task and --out are required");
    enum task tk;
    if (strcmp(task, "retrieval") == 0)
        tk = TASK_RETRIEVAL;
    else if (strcmp(task, "captioning") == 0)
        tk = TASK_CAPTIONING;
    else
        return cli_usage_error("finetune", "--task: expected retrieval, captioning or vqa, got '%s'", task);
    if (tk == TASK_CAPTIONING) { /* BLIP_Decoder: vision + decoder, LM loss after the prompt, cosine */
        lo.losses = MF_LOSS_LM;
        to.towers = MF_TRAIN_VISION | MF_TRAIN_DECODER;
        to.schedule = MF_LR_COSINE;
        epochs = epochs ? epochs : 5;
    } else {
        lo.losses = MF_LOSS_ITC | MF_LOSS_ITM;
        epochs = epochs ? epochs : 6;
    }
    if (tk == TASK_RETRIEVAL && c.batch < 2)
        return cli_usage_error("finetune", "--batch %d: the ITM loss needs at least 2 pairs per batch", c.batch);
    if (cli_check_out(out, force, true))
        return 1;
    cli_common_finish(&c);

    int rc = 1;
    struct mf_annotations *ann = NULL;
    struct mf_model *m = NULL;
    struct mf_session *s = NULL;
    struct mf_losses *L = NULL;
    struct mf_trainer *tr = NULL;
    struct cli_masks cm = {0};
    struct step_log *logs = NULL;
    int64_t *perm = NULL;
    float *images = NULL;
    int32_t *ids = NULL, *mask = NULL;
    struct mf_atomic_dir ad = {0};
    bool ad_open = false;
    struct mf_atomic_file lf = {0};
    bool lf_open = false;
    json_t *steps_json = NULL;

    if (!(ann = cli_load_annotations(&c, data, root)))
        goto done;
    const int64_t B = c.batch, n_pairs = ann->n_pairs;
    int64_t per_epoch, total;
    if (cli_finetune_schedule(data, "pairs", n_pairs, B, steps, epochs, warmup, &to, &per_epoch, &total))
        goto done;
    if (!(m = cli_load_model(&c)))
        goto done;
    const int64_t T = c.max_tokens; /* known once the model is loaded */
    if (tk == TASK_CAPTIONING && (lo.lm_prompt_len = caption_prompt_len(&c, m, prompt)) < 0)
        goto done;
    if (tk == TASK_RETRIEVAL && (!mf_model_get_info(m)->has_itm || !mf_model_get_info(m)->has_itc)) {
        cli_error("%s: retrieval fine-tuning needs the ITC projections and the ITM head (an image-text "
                  "retrieval checkpoint)", c.model);
        goto done;
    }
    if (mf_losses_create(m, &lo, &L, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (cli_masks_load(m, masks_path, &cm))
        goto done;
    const uint8_t *const *masks = cm.by_index; /* (n_tensors) by model index */
    const int64_t R = mf_model_get_info(m)->vision.image_size;
    images = malloc((size_t)(B * 3 * R * R) * sizeof(float));
    ids = malloc((size_t)(B * T) * sizeof(int32_t));
    mask = malloc((size_t)(B * T) * sizeof(int32_t));
    perm = malloc((size_t)n_pairs * sizeof *perm);
    logs = calloc((size_t)total, sizeof *logs);
    if (!images || !ids || !mask || !perm || !logs) {
        cli_error("out of memory for a batch of %lld pairs and %lld steps", (long long)B, (long long)total);
        goto done;
    }
    if (mf_session_create(m, c.threads, &s, &err) || mf_trainer_create(m, masks, &to, &tr, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    mf_losses_set_temp(L, mf_trainer_temp(tr));
    if (cli_finetune_open(out, force, log_path, &ad, &ad_open, &lf, &lf_open))
        goto done;
    int64_t n_tr, n_w;
    mf_trainer_counts(tr, &n_tr, &n_w);
    if (!c.quiet)
        fprintf(stderr, "multiflow: finetune %lld steps (%lld pairs, %lld batches of %lld per epoch), %lld tensors "
                        "(%lld weights) trained, lr %g, weight decay %g\n",
                (long long)total, (long long)n_pairs, (long long)per_epoch, (long long)B, (long long)n_tr,
                (long long)n_w, to.lr, to.weight_decay);
    steps_json = json_array();
    const double t0 = mf_time_now();
    for (int64_t st = 0; st < total; st++) {
        const int64_t epoch = st / per_epoch, bi = st % per_epoch;
        if (bi == 0)
            cli_permute(perm, n_pairs, seed, epoch);
        for (int64_t b = 0; b < B; b++)
            if ((tk == TASK_CAPTIONING
                     ? caption_pair(m, ann, perm[bi * B + b], prompt, T, images + b * 3 * R * R, ids + b * T,
                                    mask + b * T, &err)
                     : mf_pairs_batch(m, ann, perm[bi * B + b], 1, T, images + b * 3 * R * R, ids + b * T,
                                      mask + b * T, &err))) {
                cli_error("step %lld: %s", (long long)(st + 1), err.msg);
                goto done;
            }
        struct mf_loss_values v;
        struct mf_train_step_info si;
        if (mf_losses_batch(L, s, (uint64_t)st, images, ids, mask, B, T, mf_trainer_grads(tr), &v, NULL, NULL, &err) ||
            mf_trainer_step(tr, s, v.d_temp, &si, &err)) {
            cli_error("step %lld: %s", (long long)(st + 1), err.msg);
            goto done;
        }
        mf_losses_set_temp(L, mf_trainer_temp(tr));
        struct step_log *l = &logs[st];
        *l = (struct step_log){v.total, v.itc, v.itm, v.lm, si.lr, si.grad_norm, v.temp};
        json_t *j = step_json(st + 1, epoch, l);
        json_array_append(steps_json, j);
        if (lf_open) {
            json_dumpf(j, lf.f, JSON_COMPACT | JSON_REAL_PRECISION(9));
            fputc('\n', lf.f);
        }
        json_decref(j);
        if (!c.quiet && tk == TASK_CAPTIONING)
            fprintf(stderr, "step %lld/%lld  lr %.3e  loss %.6f  (lm)  |g| %.4g%s\n", (long long)(st + 1),
                    (long long)total, si.lr, v.total, si.grad_norm, si.clip_scale < 1 ? " clipped" : "");
        else if (!c.quiet)
            fprintf(stderr, "step %lld/%lld  lr %.3e  loss %.6f  (itc %.6f itm %.6f)  |g| %.4g%s  temp %.5f\n",
                    (long long)(st + 1), (long long)total, si.lr, v.total, v.itc, v.itm, si.grad_norm,
                    si.clip_scale < 1 ? " clipped" : "", v.temp);
    }
    const double elapsed = mf_time_now() - t0;

    /* output: checkpoint with the trained values, masks, side files, finetune.json */
    char buf_steps[32];
    snprintf(buf_steps, sizeof buf_steps, "%lld", (long long)total);
    const char *meta[] = {"multiflow_finetune",
                          tk == TASK_CAPTIONING ? "captioning (lm after the prompt), AdamW" : "retrieval (itc+itm), AdamW",
                          "multiflow_finetune_steps", buf_steps};
    const int64_t k = MF_MIN(5, total);
    const double first = mean_of(logs, 0, k), last = mean_of(logs, total - k, total);
    json_t *rep = json_object();
    json_object_set_new(rep, "task", json_string(task));
    if (tk == TASK_CAPTIONING) {
        json_object_set_new(rep, "prompt", json_string(prompt));
        json_object_set_new(rep, "prompt_tokens", json_integer(lo.lm_prompt_len));
        json_object_set_new(rep, "schedule", json_string("cosine"));
        json_object_set_new(rep, "label_smoothing", json_real(0.1));
    }
    json_object_set_new(rep, "model", json_string(c.model));
    json_object_set_new(rep, "masks", masks_path ? json_string(masks_path) : json_null());
    json_object_set_new(rep, "pairs", json_integer(n_pairs));
    json_object_set_new(rep, "batch", json_integer(B));
    json_object_set_new(rep, "steps", json_integer(total));
    json_object_set_new(rep, "lr", json_real(to.lr));
    json_object_set_new(rep, "weight_decay", json_real(to.weight_decay));
    json_object_set_new(rep, "warmup", json_integer(warmup));
    json_object_set_new(rep, "clip", json_real(to.clip_norm));
    json_object_set_new(rep, "seed", json_integer((json_int_t)seed));
    json_object_set_new(rep, "itm_negatives", json_string(lo.negatives == MF_ITM_NEG_HARDEST ? "hardest" : "sample"));
    json_object_set_new(rep, "momentum", json_string(mf_losses_momentum_name(L)));
    json_object_set_new(rep, "trained_tensors", json_integer(n_tr));
    json_object_set_new(rep, "trained_weights", json_integer(n_w));
    json_object_set_new(rep, "seconds", json_real(elapsed));
    json_object_set_new(rep, "pairs_per_second", json_real(elapsed > 0 ? (double)(total * B) / elapsed : 0));
    json_object_set_new(rep, "loss_first5", json_real(first));
    json_object_set_new(rep, "loss_last5", json_real(last));
    json_object_set(rep, "log", steps_json);
    if (cli_finetune_finish(m, mf_trainer_values(tr), masks, masks_path, meta, 2, rep, &ad, &ad_open, &lf, &lf_open,
                            out))
        goto done;
    if (c.json) {
        json_t *o = json_object();
        json_object_set_new(o, "out", json_string(out));
        json_object_set_new(o, "steps", json_integer(total));
        json_object_set_new(o, "pairs_per_second", json_real(elapsed > 0 ? (double)(total * B) / elapsed : 0));
        json_object_set_new(o, "loss_first5", json_real(first));
        json_object_set_new(o, "loss_last5", json_real(last));
        json_dumpf(o, stdout, JSON_COMPACT | JSON_REAL_PRECISION(8));
        fputc('\n', stdout);
        json_decref(o);
    } else {
        printf("%s: fine-tuned %lld steps of %lld pairs (%.2f pairs/s), mean loss of the first %lld steps %.6f, "
               "of the last %lld %.6f\n",
               out, (long long)total, (long long)B, elapsed > 0 ? (double)(total * B) / elapsed : 0, (long long)k,
               first, (long long)k, last);
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
    free(ids);
    free(mask);
    free(perm);
    free(logs);
    mf_trainer_free(tr);
    mf_session_free(s);
    cli_masks_free(&cm);
    mf_losses_free(L);
    mf_model_free(m);
    mf_annotations_free(ann);
    return rc;
}
