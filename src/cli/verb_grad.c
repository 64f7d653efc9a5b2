/*
 * cli/verb_grad.c: `multiflow grad`: the gradient of BLIP's pretraining losses (summed per batch)
 * with respect to every prunable tensor, averaged over batches of consecutive pairs in file order,
 * written as F32 safetensors under the weight names (atomically).
 *
 * Does not: write gradients of non-prunable tensors (embeddings, LayerNorms, biases, heads, temp),
 * shuffle or augment the data. Gradients accumulate over batches in one gradient block and are
 * divided by the number of batches at the end, as the reference's SNIP does with .grad
 * (FarinaMatteo/multiflow pruners/snip.py). The losses: docs/internals/losses.md.
 */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/common.h"
#include "core/progress.h"
#include "io/annotations.h"
#include "io/fs.h"
#include "models/grad.h"
#include "models/losses.h"
#include "multiflow/eval.h"
#include "multiflow/safetensors.h"

enum { OPT_DATA = OPT_VERB_BASE, OPT_IMAGES, OPT_OUT, OPT_FORCE, OPT_LOSS, OPT_NEG, OPT_SEED };

static const char help[] =
    "usage: multiflow grad --model PATH --data ANN --images ROOT --out FILE [options]\n"
    "\n"
    "Computes BLIP's pretraining losses on consecutive batches of image-caption pairs (file order),\n"
    "back-propagates their sum per batch, and writes the mean over batches of the gradient of every\n"
    "prunable tensor as F32 safetensors (names = the checkpoint's weight names).\n"
    "\n"
    "  --data ANN --images ROOT   image-caption pairs\n"
    "  --out FILE            output .safetensors (must not exist unless --force)\n"
    "  --force               replace FILE if it exists\n"
    "  --loss LIST           comma-separated subset of itc,itm,lm (default: every loss the checkpoint has)\n"
    "  --itm-negatives sample|hardest   ITM negatives drawn from the contrastive similarities\n"
    "                        (default sample, seeded) or the most similar non-matching pair\n"
    "  --seed S              seed of the sampled negatives (default 0)\n" CLI_COMMON_HELP;

static const char *loss_list(unsigned bits, char *buf, size_t n)
{
    snprintf(buf, n, "%s%s%s%s%s", (bits & MF_LOSS_ITC) ? "itc" : "",
             (bits & MF_LOSS_ITC) && (bits & (MF_LOSS_ITM | MF_LOSS_LM)) ? "," : "", (bits & MF_LOSS_ITM) ? "itm" : "",
             (bits & MF_LOSS_ITM) && (bits & MF_LOSS_LM) ? "," : "", (bits & MF_LOSS_LM) ? "lm" : "");
    return buf;
}

int verb_grad(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"data", required_argument, 0, OPT_DATA},
                                         {"images", required_argument, 0, OPT_IMAGES},
                                         {"out", required_argument, 0, OPT_OUT},
                                         {"force", no_argument, 0, OPT_FORCE},
                                         {"loss", required_argument, 0, OPT_LOSS},
                                         {"itm-negatives", required_argument, 0, OPT_NEG},
                                         {"seed", required_argument, 0, OPT_SEED},
                                         {0, 0, 0, 0}};
    struct cli_common c;
    const char *data = NULL, *root = NULL, *out = NULL;
    bool force = false;
    struct mf_losses_opts lo = {0, MF_ITM_NEG_SAMPLE, 0};
    struct mf_err err = {0};
    cli_common_init(&c);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_HELP: fputs(help, stdout); return 0;
        case OPT_DATA: data = optarg; break;
        case OPT_IMAGES: root = optarg; break;
        case OPT_OUT: out = optarg; break;
        case OPT_FORCE: force = true; break;
        case OPT_LOSS:
            if (mf_losses_parse(optarg, &lo.losses, &err) != MF_OK)
                return cli_usage_error("grad", "%s", err.msg);
            break;
        case OPT_NEG:
            if (strcmp(optarg, "sample") == 0)
                lo.negatives = MF_ITM_NEG_SAMPLE;
            else if (strcmp(optarg, "hardest") == 0)
                lo.negatives = MF_ITM_NEG_HARDEST;
            else
                return cli_usage_error("grad", "--itm-negatives: expected sample or hardest, got '%s'", optarg);
            break;
        case OPT_SEED: {
            int64_t v;
            if (!cli_parse_int("--seed", optarg, 0, INT64_MAX, &v))
                return 2;
            lo.seed = (uint64_t)v;
            break;
        }
        default: {
            int r = cli_common_option(&c, opt, optarg);
            if (r < 0)
                return 2;
            if (r == 0)
                return cli_usage_error("grad", "unknown option");
        }
        }
    }
    if (optind < argc)
        return cli_usage_error("grad", "unexpected argument '%s'", argv[optind]);
    if (!c.model || !data || !out)
        return cli_usage_error("grad", "--model, --data and --out are required");
    if (mf_fs_exists(out) && !force)
        return cli_error("%s: exists (use --force to replace it)", out);
    cli_common_finish(&c);

    int rc = 1;
    struct mf_annotations *ann = NULL;
    struct mf_model *m = NULL;
    struct mf_session *s = NULL;
    struct mf_losses *L = NULL;
    struct mf_grads *g = NULL;
    struct mf_st_writer *w = NULL;
    float *images = NULL;
    int32_t *ids = NULL, *mask = NULL;
    char buf[64], num[64];

    if (mf_annotations_load(data, root, &ann, &err) || (c.pairs > 0 && mf_annotations_truncate(ann, c.pairs, &err))) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (!(m = cli_load_model(&c)))
        goto done;
    if (mf_losses_create(m, &lo, &L, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    const unsigned sel = mf_losses_selected(L);
    const int64_t Bmax = c.batch, n_pairs = ann->n_pairs, T = c.max_tokens;
    const int64_t n_batches = (n_pairs + Bmax - 1) / Bmax;
    if (n_pairs < 1) {
        cli_error("%s: no image-caption pairs", data);
        goto done;
    }
    if ((sel & MF_LOSS_ITM) && (Bmax < 2 || n_pairs % Bmax == 1)) {
        cli_error("the ITM loss needs at least 2 pairs per batch (in-batch negatives), but %s", Bmax < 2
                      ? "--batch is 1"
                      : "the last batch has 1 pair: change --pairs or --batch");
        goto done;
    }
    const int64_t R = mf_model_get_info(m)->vision.image_size;
    images = malloc((size_t)(Bmax * 3 * R * R) * sizeof(float));
    ids = malloc((size_t)(Bmax * T) * sizeof(int32_t));
    mask = malloc((size_t)(Bmax * T) * sizeof(int32_t));
    if (!images || !ids || !mask) {
        cli_error("out of memory for a batch of %lld pairs", (long long)Bmax);
        goto done;
    }
    if (mf_session_create(m, c.threads, &s, &err) || mf_grads_create(m, &g, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    mf_grads_zero(g);

    double sum[3] = {0, 0, 0};
    struct mf_progress pg;
    mf_progress_begin(&pg, "grad", "pairs", n_pairs);
    for (int64_t bi = 0; bi < n_batches; bi++) {
        const int64_t p0 = bi * Bmax, B = MF_MIN(Bmax, n_pairs - p0);
        struct mf_loss_values v;
        if (mf_pairs_batch(m, ann, p0, B, T, images, ids, mask, &err) ||
            mf_losses_batch(L, s, (uint64_t)bi, images, ids, mask, B, T, g, &v, NULL, NULL, &err)) {
            mf_progress_end(&pg);
            cli_error("batch %lld (pairs %lld-%lld): %s", (long long)bi, (long long)p0, (long long)(p0 + B - 1),
                      err.msg);
            goto done;
        }
        sum[0] += (sel & MF_LOSS_ITC) ? v.itc : 0;
        sum[1] += (sel & MF_LOSS_ITM) ? v.itm : 0;
        sum[2] += (sel & MF_LOSS_LM) ? v.lm : 0;
        mf_progress_add(&pg, B);
    }
    mf_progress_end(&pg);

    /* mean over batches, prunable tensors only, model order */
    if (mf_st_writer_create(out, &w, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    int64_t n_written = 0;
    const float inv = (float)(1.0 / (double)n_batches);
    for (size_t i = 0; i < mf_model_n_tensors(m); i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        if (!t->prunable)
            continue;
        float *gt = mf_grads_tensor(g, i);
        if (!gt) {
            cli_error("internal: prunable tensor '%s' has no gradient buffer", t->name);
            goto done;
        }
        int64_t n = 1;
        for (int k = 0; k < t->ndim; k++)
            n *= t->shape[k];
        for (int64_t j = 0; j < n; j++) {
            gt[j] *= inv;
            if (!isfinite(gt[j])) {
                cli_error("the gradient of '%s' is not finite at element %lld", t->name, (long long)j);
                goto done;
            }
        }
        if (mf_st_writer_add(w, t->name, MF_DTYPE_F32, t->ndim, t->shape, gt, &err)) {
            cli_error("%s", err.msg);
            goto done;
        }
        n_written++;
    }
    const char *neg = lo.negatives == MF_ITM_NEG_HARDEST ? "hardest" : "sample";
    snprintf(num, sizeof num, "%" PRIu64, lo.seed);
    struct { const char *k, *v; } meta[] = {{"format", "pt"}, {"content", "mean over batches of d(sum of losses)/dW"},
                                             {"losses", loss_list(sel, buf, sizeof buf)}, {"itm_negatives", neg},
                                             {"seed", num}};
    for (size_t k = 0; k < sizeof meta / sizeof meta[0]; k++)
        if (mf_st_writer_meta(w, meta[k].k, meta[k].v, &err)) {
            cli_error("%s", err.msg);
            goto done;
        }
    char pairs_s[32], batch_s[32];
    snprintf(pairs_s, sizeof pairs_s, "%lld", (long long)n_pairs);
    snprintf(batch_s, sizeof batch_s, "%lld", (long long)Bmax);
    if (mf_st_writer_meta(w, "pairs", pairs_s, &err) || mf_st_writer_meta(w, "batch", batch_s, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    enum mf_status st = mf_st_writer_commit(w, &err);
    w = NULL;
    if (st) {
        cli_error("%s", err.msg);
        goto done;
    }

    const char *names[3] = {"itc", "itm", "lm"};
    if (c.json) {
        json_t *o = json_object();
        json_object_set_new(o, "out", json_string(out));
        json_object_set_new(o, "pairs", json_integer(n_pairs));
        json_object_set_new(o, "batches", json_integer(n_batches));
        json_object_set_new(o, "tensors", json_integer(n_written));
        json_object_set_new(o, "itm_negatives", json_string(neg));
        json_object_set_new(o, "seed", json_integer((json_int_t)lo.seed));
        json_t *lv = json_object();
        for (int k = 0; k < 3; k++)
            if (sel & (1u << k))
                json_object_set_new(lv, names[k], json_real(sum[k] / (double)n_batches));
        json_object_set_new(o, "mean_loss", lv);
        json_dumpf(o, stdout, JSON_COMPACT | JSON_REAL_PRECISION(8));
        fputc('\n', stdout);
        json_decref(o);
    } else {
        printf("%s: gradients of %lld prunable tensors, %lld pairs in %lld batches of %lld, mean loss", out,
               (long long)n_written, (long long)n_pairs, (long long)n_batches, (long long)Bmax);
        for (int k = 0; k < 3; k++)
            if (sel & (1u << k))
                printf(" %s %.6f", names[k], sum[k] / (double)n_batches);
        if (sel & MF_LOSS_ITM)
            printf(" (ITM negatives: %s)", neg);
        putchar('\n');
    }
    if (fflush(stdout) != 0) {
        cli_error("cannot write to stdout");
        goto done;
    }
    rc = 0;
done:
    mf_st_writer_abort(w);
    free(images);
    free(ids);
    free(mask);
    mf_grads_free(g);
    mf_losses_free(L);
    mf_session_free(s);
    mf_model_free(m);
    mf_annotations_free(ann);
    return rc;
}
