/*
 * cli/verb_stats.c: `multiflow stats`: calibration statistics only (for reuse with prune --stats),
 * or the merge of two statistics files of the same model, so calibration can be split.
 */
#include <jansson.h>
#include <string.h>

#include "cli/prune_cli.h"
#include "io/annotations.h"

enum { OPT_MERGE = OPT_VERB_BASE };

static const char help[] =
    "usage: multiflow stats --model PATH --data ANN --images ROOT --out FILE [options]\n"
    "       multiflow stats --merge A B --out FILE\n"
    "\n"
    "Runs the MULTIFLOW calibration forward passes and writes the per-input-feature sums of squares\n"
    "of every prunable layer (F64) and the sequence counts as safetensors; or adds two such files.\n"
    "\n"
    "  --data ANN --images ROOT   calibration image-caption pairs\n"
    CLI_DATA_HELP
    "  --out FILE            output file (must not exist unless --force)\n"
    "  --merge A B           add the statistics of A and B (same model)\n"
    "  --force               replace FILE if it exists\n"
    "Prints what it wrote (the file, tensors, pairs; --json: one JSON object) on stdout.\n" CLI_COMMON_HELP;

/* What was written, on stdout: one line, or one JSON object with --json. tensors < 0: a merge. */
static int report(const struct cli_common *c, const char *out, int64_t tensors, int64_t pairs, const char *a,
                  const char *b)
{
    if (c->json) {
        json_t *o = tensors < 0 ? json_pack("{s:s,s:[s,s]}", "out", out, "merged", a, b)
                                : json_pack("{s:s,s:I,s:I}", "out", out, "tensors", (json_int_t)tensors, "pairs",
                                            (json_int_t)pairs);
        json_dumpf(o, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(o);
    } else if (tensors < 0) {
        printf("%s: statistics of %s and %s added\n", out, a, b);
    } else {
        printf("%s: calibration statistics (sum of squares per input feature, F64) of %lld prunable tensors "
               "from %lld pairs\n", out, (long long)tensors, (long long)pairs);
    }
    return fflush(stdout) != 0 ? cli_error("cannot write to stdout") : 0;
}

int verb_stats(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS, CLI_DATA_OPTIONS, CLI_OUT_OPTIONS,
                                         {"merge", required_argument, 0, OPT_MERGE},
                                         {0, 0, 0, 0}};
    struct cli_common c;
    const char *merge_a = NULL, *merge_b = NULL;
    cli_common_init(&c);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_HELP: fputs(help, stdout); return 0;
        case OPT_MERGE:
            merge_a = optarg;
            if (optind >= argc || argv[optind][0] == '-')
                return cli_usage_error("stats", "--merge takes two files");
            merge_b = argv[optind++];
            break;
        default: {
            int rc = cli_common_or_usage(&c, opt, optarg, "stats");
            if (rc)
                return rc;
        }
        }
    }
    const char *data = c.data, *root = c.images, *out = c.out;
    const bool force = c.force;
    if (cli_no_operands("stats", argc, argv))
        return 2;
    if (!out)
        return cli_usage_error("stats", "--out is required");
    if (!merge_a && (!c.model || !data))
        return cli_usage_error("stats", "give --model and --data, or --merge A B");
    if (cli_check_out(out, force, false) || cli_check_writable(out))
        return 1;
    cli_common_finish(&c);

    struct mf_err err = {0};
    if (merge_a) {
        if (mf_stats_merge_files(merge_a, merge_b, out, &err))
            return cli_error("%s", err.msg);
        return report(&c, out, -1, 0, merge_a, merge_b);
    }
    int rc = 1;
    struct mf_annotations *ann = NULL;
    struct mf_model *m = NULL;
    struct mf_session *s = NULL;
    struct mf_stats *stats = NULL;
    if (!(ann = cli_load_annotations(&c, data, root)))
        goto done;
    if (!(m = cli_load_model(&c)))
        goto done;
    if (mf_session_create(m, c.threads, &s, &err) || mf_stats_create(m, &stats, &err) ||
        mf_stats_collect(s, ann, c.batch, c.max_tokens, stats, &err) || mf_stats_save(stats, out, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    int64_t n_t = 0;
    for (size_t i = 0; i < mf_model_n_tensors(m); i++)
        n_t += mf_stats_sumsq(stats, (int)i) != NULL;
    rc = report(&c, out, n_t, mf_stats_pairs(stats), NULL, NULL);
done:
    mf_stats_free(stats);
    mf_session_free(s);
    mf_model_free(m);
    mf_annotations_free(ann);
    return rc;
}
