/*
 * cli/verb_apply.c: `multiflow apply --model M --masks FILE --out DIR`: applies masks made
 * elsewhere (one U8/BOOL tensor per prunable tensor, same names and shapes) and writes the pruned
 * checkpoint, a copy of the masks and report.json into DIR, atomically.
 */
#include <jansson.h>
#include <string.h>

#include "cli/prune_cli.h"
#include "io/fs.h"
#include "prune/output.h"

enum { OPT_MASKS = OPT_VERB_BASE };

static const char help[] =
    "usage: multiflow apply --model PATH --masks FILE --out DIR [--force]\n"
    "\n"
    "Sets the weights a masks file marks 0 to exactly 0 (tied and momentum copies follow their\n"
    "tensor) and writes the checkpoint in the input layout and dtype to DIR, with masks.safetensors\n"
    "and report.json. Every prunable tensor needs a mask of its shape.\n"
    "\n"
    "  --masks FILE          safetensors of U8/BOOL masks (1 = keep), named like the weights\n"
    "  --out DIR             output directory (must not exist unless --force)\n"
    "  --force               replace DIR if it exists\n" CLI_COMMON_HELP;

int verb_apply(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS, CLI_OUT_OPTIONS,
                                         {"masks", required_argument, 0, OPT_MASKS},
                                         {0, 0, 0, 0}};
    struct cli_common c;
    const char *masks_path = NULL;
    cli_common_init(&c);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_HELP: fputs(help, stdout); return 0;
        case OPT_MASKS: masks_path = optarg; break;
        default: {
            int rc = cli_common_or_usage(&c, opt, optarg, "apply");
            if (rc)
                return rc;
        }
        }
    }
    const char *out = c.out;
    const bool force = c.force;
    if (cli_no_operands("apply", argc, argv))
        return 2;
    if (!c.model || !masks_path || !out)
        return cli_usage_error("apply", "--model, --masks and --out are required");
    if (cli_check_out(out, force, true))
        return 1;
    cli_common_finish(&c);

    int rc = 1;
    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_prune_set set = {0};
    struct mf_atomic_dir ad = {0};
    bool ad_open = false;
    uint8_t **masks = NULL;
    struct cli_run run = {0};
    double t0 = mf_time_now();
    c.vocab_optional = true; /* apply never tokenises */
    if (!(m = cli_load_model(&c)))
        goto done;
    double t_load = mf_time_now() - t0;
    if (mf_prune_set_init(m, NULL, &set, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (!(masks = mf_calloc(set.n, sizeof *masks))) {
        cli_error("out of memory");
        goto done;
    }
    for (size_t i = 0; i < set.n; i++)
        if (!(masks[i] = mf_malloc((size_t)set.t[i].n))) {
            cli_error("out of memory");
            goto done;
        }
    if (mf_prune_read_masks(m, &set, masks_path, masks, &err) || mf_atomic_dir_open(out, force, &ad, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    ad_open = true;
    int64_t pruned = 0;
    for (size_t i = 0; i < set.n; i++)
        for (int64_t j = 0; j < set.t[i].n; j++)
            pruned += masks[i][j] == 0;
    snprintf(run.name, sizeof run.name, "apply");
    struct cli_report_info ri = {"apply", (double)pruned / (double)set.total, 0, NULL, 0, &c, t_load, 0, 0, 0, NULL};
    void *report = NULL;
    if (cli_write_run(m, &set, masks, ad.tmp, &ri, &run, &report, &err) || mf_atomic_dir_commit(&ad, &err)) {
        json_decref(report);
        cli_error("%s", err.msg);
        goto done;
    }
    json_decref(report);
    ad_open = false;
    if (c.json) {
        json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:f}", "out", out, "masks", masks_path, "params",
                              (json_int_t)set.total, "pruned", (json_int_t)pruned, "sparsity",
                              (double)pruned / (double)set.total);
        json_dumpf(o, stdout, JSON_COMPACT | JSON_REAL_PRECISION(8));
        fputc('\n', stdout);
        json_decref(o);
    } else if (!c.quiet) {
        fprintf(stderr, "multiflow: applied %s (%.2f %% of %lld prunable weights zero) to %s\n", masks_path,
                100.0 * (double)pruned / (double)set.total, (long long)set.total, out);
    }
    rc = fflush(stdout) != 0 ? cli_error("cannot write to stdout") : 0;
done:
    if (ad_open)
        mf_atomic_dir_abort(&ad);
    mf_free(run.tensor_sparsity);
    for (size_t i = 0; masks && i < set.n; i++)
        mf_free(masks[i]);
    mf_free(masks);
    mf_prune_set_free(&set);
    mf_model_free(m);
    return rc;
}
