/*
 * cli/verb_grad.c: `multiflow grad`: the gradient of BLIP's pretraining losses (summed per batch)
 * with respect to every prunable tensor, averaged over batches of consecutive pairs in file order,
 * written as F32 safetensors under the weight names (atomically).
 *
 * Does not: write gradients of non-prunable tensors (embeddings, LayerNorms, biases, heads, temp),
 * shuffle or augment the data. The averaging is the library's gradient stream (prune/gradient.h,
 * shared with the gradient-based pruners): gradients accumulate over batches in one gradient block
 * and are divided by the number of batches at the end, as the reference's SNIP does with .grad
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
#include "models/momentum.h"
#include "prune/gradient.h"
#include "multiflow/eval.h"
#include "multiflow/safetensors.h"



static const char help[] =
    "usage: multiflow grad --model PATH --data ANN --images ROOT --out FILE [options]\n"
    "\n"
    "Computes BLIP's pretraining losses on consecutive batches of image-caption pairs (file order),\n"
    "back-propagates their sum per batch, and writes the mean over batches of the gradient of every\n"
    "prunable tensor as F32 safetensors (names = the checkpoint's weight names).\n"
    "\n"
    "  --data ANN --images ROOT   image-caption pairs\n"
    CLI_DATA_HELP
    "  --out FILE            output .safetensors (must not exist unless --force)\n"
    "  --force               replace FILE if it exists\n"
    "  --loss LIST           comma-separated subset of itc,itm,lm (default: every loss the checkpoint has)\n"
    "  --itm-negatives sample|hardest   ITM negatives drawn from the contrastive similarities\n"
    "                        (default sample, seeded) or the most similar non-matching pair\n"
    CLI_MOMENTUM_HELP
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
    static const struct option opts[] = {CLI_COMMON_OPTIONS, CLI_DATA_OPTIONS, CLI_OUT_OPTIONS, CLI_SEED_OPTION, CLI_LOSS_OPTIONS,
                                         {0, 0, 0, 0}};
    struct cli_common c;
    struct mf_err err = {0};
    cli_common_init(&c);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_HELP: fputs(help, stdout); return 0;
        default: {
            int rc = cli_common_or_usage(&c, opt, optarg, "grad");
            if (rc)
                return rc;
        }
        }
    }
    const char *data = c.data, *root = c.images, *out = c.out;
    const bool force = c.force;
    const struct mf_losses_opts lo = c.lo;
    if (cli_no_operands("grad", argc, argv))
        return 2;
    if (!c.model || !data || !out)
        return cli_usage_error("grad", "--model, --data and --out are required");
    if (cli_check_out(out, force, false) || cli_check_writable(out))
        return 1;
    cli_common_finish(&c);

    int rc = 1;
    struct mf_annotations *ann = NULL;
    struct mf_model *m = NULL;
    struct mf_session *s = NULL;
    struct mf_grad_stream *gs = NULL;
    struct mf_st_writer *w = NULL;
    char buf[64], num[64];

    if (!(ann = cli_load_annotations(&c, data, root)))
        goto done;
    if (!(m = cli_load_model(&c)))
        goto done;
    struct mf_grad_stream_opts so = {lo, c.batch, c.max_tokens, "grad"};
    if (mf_session_create(m, c.threads, &s, &err) || mf_grad_stream_create(s, ann, &so, &gs, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    const unsigned sel = mf_grad_stream_losses(gs);
    const int64_t Bmax = c.batch, n_pairs = ann->n_pairs, n_batches = mf_grad_stream_batches(gs);
    struct mf_loss_values mean;
    if (mf_grad_stream_mean(gs, NULL, 0, &mean, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    const struct mf_grads *g = mf_grad_stream_grads(gs);
    const double sum[3] = {mean.itc, mean.itm, mean.lm}; /* means: printed as they are */

    /* mean over batches, prunable tensors only, model order */
    if (mf_st_writer_create(out, &w, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    int64_t n_written = 0;
    for (size_t i = 0; i < mf_model_n_tensors(m); i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        if (!t->prunable)
            continue;
        float *gt = mf_grads_tensor(g, i);
        if (!gt) {
            cli_error("internal: prunable tensor '%s' has no gradient buffer", t->name);
            goto done;
        }
        if (mf_st_writer_add(w, t->name, MF_DTYPE_F32, t->ndim, t->shape, gt, &err)) {
            cli_error("%s", err.msg);
            goto done;
        }
        n_written++;
    }
    const char *neg = lo.negatives == MF_ITM_NEG_HARDEST ? "hardest" : "sample";
    const char *mom = mf_losses_momentum_name(mf_grad_stream_loss_state(gs));
    snprintf(num, sizeof num, "%" PRIu64, lo.seed);
    struct { const char *k, *v; } meta[] = {{"format", "pt"}, {"content", "mean over batches of d(sum of losses)/dW"},
                                             {"losses", loss_list(sel, buf, sizeof buf)}, {"itm_negatives", neg},
                                             {"seed", num}, {"momentum", mom}};
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
        json_object_set_new(o, "momentum", json_string(mom));
        json_object_set_new(o, "momentum_bytes",
                            json_integer((json_int_t)mf_momentum_bytes(mf_losses_momentum(mf_grad_stream_loss_state(gs)))));
        json_object_set_new(o, "seed", json_integer((json_int_t)lo.seed));
        json_t *lv = json_object();
        for (int k = 0; k < 3; k++)
            if (sel & (1u << k))
                json_object_set_new(lv, names[k], json_real(sum[k]));
        json_object_set_new(o, "mean_loss", lv);
        json_dumpf(o, stdout, JSON_COMPACT | JSON_REAL_PRECISION(8));
        fputc('\n', stdout);
        json_decref(o);
    } else {
        printf("%s: gradients of %lld prunable tensors, %lld pairs in %lld batches of %lld, mean loss", out,
               (long long)n_written, (long long)n_pairs, (long long)n_batches, (long long)Bmax);
        for (int k = 0; k < 3; k++)
            if (sel & (1u << k))
                printf(" %s %.6f", names[k], sum[k]);
        if (sel & MF_LOSS_ITM)
            printf(" (ITM negatives: %s)", neg);
        if (sel & (MF_LOSS_ITC | MF_LOSS_ITM))
            printf(" (momentum encoders: %s)", mom);
        putchar('\n');
    }
    if (fflush(stdout) != 0) {
        cli_error("cannot write to stdout");
        goto done;
    }
    rc = 0;
done:
    mf_st_writer_abort(w);
    mf_grad_stream_free(gs);
    mf_session_free(s);
    mf_model_free(m);
    mf_annotations_free(ann);
    return rc;
}
