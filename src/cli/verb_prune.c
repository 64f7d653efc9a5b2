/*
 * cli/verb_prune.c: `multiflow prune`: prune once, write sparse checkpoints for every (method,
 * sparsity), a report per run, a summary, and a plot of the layer-wise sparsity.
 *
 *   DIR/<method>-<pct>/{model.safetensors, masks.safetensors, report.json, config.json, vocab.txt...}
 *   DIR/<method>-<pct>/scores.safetensors     with --save-scores
 *   DIR/stats.safetensors                     with --save-stats
 *   DIR/summary.json, DIR/sparsity.svg
 *
 * Everything is written into a temporary sibling directory renamed over DIR at the end: a failed
 * run leaves DIR as it was.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/prune_cli.h"
#include "core/pool.h"
#include "io/annotations.h"
#include "io/fs.h"
#include "prune/output.h"

enum { OPT_METHOD = OPT_VERB_BASE, OPT_SPARSITY, OPT_OUT, OPT_DATA, OPT_IMAGES, OPT_SAVE_SCORES, OPT_SAVE_STATS,
       OPT_STATS, OPT_SEED, OPT_FORCE };

static const char help[] =
    "usage: multiflow prune --model PATH --method M[,M...] --sparsity S[,S...] --out DIR [options]\n"
    "\n"
    "Prunes the model once per method and sparsity and writes DIR/<method>-<pct>/ (pruned checkpoint\n"
    "in the input layout and dtype, masks.safetensors, report.json, the input's other files),\n"
    "DIR/summary.json and DIR/sparsity.svg.\n"
    "\n"
    "  --method M[,M...]     multiflow, omp, lmp, l2, lamp, rand\n"
    "  --sparsity S[,S...]   fractions of the prunable weights to remove, as percent (63) or fraction\n"
    "                        (0.63); each in [0, 1)\n"
    "  --out DIR             output directory (must not exist unless --force)\n"
    "  --data ANN --images ROOT   calibration image-caption pairs (needed by multiflow)\n"
    "  --stats FILE          reuse calibration statistics (stats.safetensors) instead of --data\n"
    "  --save-stats          also write DIR/stats.safetensors\n"
    "  --save-scores         also write scores.safetensors (F32) in every run directory\n"
    "  --seed S              seed of rand (default 0)\n"
    "  --force               replace DIR if it exists\n" CLI_COMMON_HELP;

/* "63" -> 0.63, "0.63" -> 0.63; values >= 1 are percent. */
static bool parse_sparsity(const char *s, double *out)
{
    double v;
    if (!cli_parse_double("sparsity", s, 0, 100, &v))
        return false;
    if (v >= 1)
        v /= 100.0;
    if (v >= 1) {
        fprintf(stderr, "multiflow: --sparsity: %s is not below 100 %% (sparsity must be in [0, 1))\n", s);
        return false;
    }
    *out = v;
    return true;
}

static void run_name(char *buf, size_t n, const char *method, double s)
{
    double pct = s * 100.0;
    if (fabs(pct - nearbyint(pct)) < 1e-9)
        snprintf(buf, n, "%s-%d", method, (int)nearbyint(pct));
    else
        snprintf(buf, n, "%s-%g", method, pct);
}

int verb_prune(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"method", required_argument, 0, OPT_METHOD},
                                         {"sparsity", required_argument, 0, OPT_SPARSITY},
                                         {"out", required_argument, 0, OPT_OUT},
                                         {"data", required_argument, 0, OPT_DATA},
                                         {"images", required_argument, 0, OPT_IMAGES},
                                         {"save-scores", no_argument, 0, OPT_SAVE_SCORES},
                                         {"save-stats", no_argument, 0, OPT_SAVE_STATS},
                                         {"stats", required_argument, 0, OPT_STATS},
                                         {"seed", required_argument, 0, OPT_SEED},
                                         {"force", no_argument, 0, OPT_FORCE},
                                         {0, 0, 0, 0}};
    struct cli_common c;
    const char *out = NULL, *data = NULL, *root = NULL, *stats_file = NULL;
    char *method_arg = NULL, *sparsity_arg = NULL;
    bool save_scores = false, save_stats = false, force = false;
    int64_t seed = 0;
    enum mf_method methods[MF_METHOD_COUNT];
    double sparsities[32];
    size_t n_methods = 0, n_sp = 0;
    cli_common_init(&c);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_HELP: fputs(help, stdout); return 0;
        case OPT_METHOD: method_arg = optarg; break;
        case OPT_SPARSITY: sparsity_arg = optarg; break;
        case OPT_OUT: out = optarg; break;
        case OPT_DATA: data = optarg; break;
        case OPT_IMAGES: root = optarg; break;
        case OPT_SAVE_SCORES: save_scores = true; break;
        case OPT_SAVE_STATS: save_stats = true; break;
        case OPT_STATS: stats_file = optarg; break;
        case OPT_FORCE: force = true; break;
        case OPT_SEED:
            if (!cli_parse_int("seed", optarg, 0, INT64_MAX, &seed))
                return 2;
            break;
        default: {
            int r = cli_common_option(&c, opt, optarg);
            if (r < 0)
                return 2;
            if (r == 0)
                return cli_usage_error("prune", "unknown option");
        }
        }
    }
    if (optind < argc)
        return cli_usage_error("prune", "unexpected argument '%s'", argv[optind]);
    if (!c.model || !method_arg || !sparsity_arg || !out)
        return cli_usage_error("prune", "--model, --method, --sparsity and --out are required");

    /* Validate every argument before any work. */
    char buf[512];
    snprintf(buf, sizeof buf, "%s", method_arg);
    bool needs_data = false;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        enum mf_method mm;
        if (!mf_method_parse(tok, &mm))
            return cli_usage_error("prune", "unknown method '%s' (methods: multiflow, omp, lmp, l2, lamp, rand)", tok);
        for (size_t i = 0; i < n_methods; i++)
            if (methods[i] == mm)
                return cli_usage_error("prune", "method '%s' given twice", tok);
        methods[n_methods++] = mm;
        needs_data |= mf_method_needs_data(mm);
    }
    snprintf(buf, sizeof buf, "%s", sparsity_arg);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (n_sp == MF_ARRAY_LEN(sparsities))
            return cli_usage_error("prune", "too many sparsities (at most %zu)", MF_ARRAY_LEN(sparsities));
        if (!parse_sparsity(tok, &sparsities[n_sp]))
            return 2;
        n_sp++;
    }
    if (n_methods == 0 || n_sp == 0)
        return cli_usage_error("prune", "--method and --sparsity need at least one value");
    if (needs_data && !data && !stats_file)
        return cli_usage_error("prune",
                               "method multiflow needs calibration data: give --data ANN --images ROOT (or --stats FILE)");
    if (data && stats_file)
        return cli_usage_error("prune", "--data and --stats are exclusive");
    if (save_stats && !data && !stats_file)
        return cli_usage_error("prune", "--save-stats needs --data (or --stats)");
    if (mf_fs_exists(out) && !force)
        return cli_error("%s: output directory exists (use --force to replace it)", out);
    cli_common_finish(&c);

    int rc = 1;
    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_session *s = NULL;
    struct mf_annotations *ann = NULL;
    struct mf_stats *stats = NULL;
    struct mf_pool *pool = NULL;
    struct mf_prune_set set = {0};
    struct mf_atomic_dir ad = {0};
    bool ad_open = false;
    float **scores = NULL;
    uint8_t **masks = NULL;
    struct cli_run runs[MF_METHOD_COUNT * 32];
    size_t n_runs = 0;
    json_t *summary = json_object(), *summary_runs = json_array();
    json_object_set_new(summary, "model", json_string(c.model));
    json_object_set_new(summary, "runs", summary_runs);
    memset(runs, 0, sizeof runs);

    double t0 = mf_time_now();
    if (data && (mf_annotations_load(data, root, &ann, &err) ||
                 (c.pairs > 0 && mf_annotations_truncate(ann, c.pairs, &err)))) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (!(m = cli_load_model(&c)))
        goto done;
    double t_load = mf_time_now() - t0, t_calib = 0;
    const char *stats_source = NULL;
    char stats_desc[600];
    if (stats_file) {
        t0 = mf_time_now();
        if (mf_stats_load(m, stats_file, &stats, &err)) {
            cli_error("%s", err.msg);
            goto done;
        }
        snprintf(stats_desc, sizeof stats_desc, "stats file %s", stats_file);
        stats_source = stats_desc;
        t_calib = mf_time_now() - t0;
    } else if (data) {
        t0 = mf_time_now();
        if (mf_session_create(m, c.threads, &s, &err) || mf_stats_create(m, &stats, &err) ||
            mf_stats_collect(s, ann, c.batch, c.max_tokens, stats, &err)) {
            cli_error("%s", err.msg);
            goto done;
        }
        stats_source = "forward passes";
        t_calib = mf_time_now() - t0;
    }
    if (!(pool = mf_pool_create(c.threads))) {
        cli_error("cannot start %d threads", c.threads);
        goto done;
    }
    if (mf_prune_set_init(m, stats, &set, &err) || mf_atomic_dir_open(out, force, &ad, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    ad_open = true;
    scores = mf_calloc(set.n, sizeof *scores);
    masks = mf_calloc(set.n, sizeof *masks);
    if (!scores || !masks) {
        cli_error("out of memory");
        goto done;
    }
    for (size_t i = 0; i < set.n; i++) {
        /* one float per weight only to write scores.safetensors: masks are computed without them */
        scores[i] = save_scores ? mf_malloc((size_t)set.t[i].n * sizeof(float)) : NULL;
        masks[i] = mf_malloc((size_t)set.t[i].n);
        if ((save_scores && !scores[i]) || !masks[i]) {
            cli_error("out of memory for the scores of %lld weights", (long long)set.total);
            goto done;
        }
    }
    if (stats && save_stats) {
        char path[MF_PATH_MAX];
        mf_fs_join(path, sizeof path, ad.tmp, "stats.safetensors");
        if (mf_stats_save(stats, path, &err)) {
            cli_error("%s", err.msg);
            goto done;
        }
    }
    for (size_t mi = 0; mi < n_methods; mi++) {
        const char *mname = mf_method_name(methods[mi]);
        t0 = mf_time_now();
        if (save_scores && mf_prune_scores(pool, methods[mi], &set, (uint64_t)seed, scores, &err)) {
            cli_error("%s", err.msg);
            goto done;
        }
        double t_score = mf_time_now() - t0; /* 0 without --save-scores: scoring is part of the selection */
        for (size_t si = 0; si < n_sp; si++) {
            struct cli_run *run = &runs[n_runs];
            run_name(run->name, sizeof run->name, mname, sparsities[si]);
            run->style_color = (int)mi;
            run->style_dash = (int)si;
            if (!c.quiet)
                fprintf(stderr, "multiflow: %s\n", run->name);
            t0 = mf_time_now();
            if (mf_prune_compute_masks(pool, methods[mi], &set, sparsities[si], (uint64_t)seed, masks, &err)) {
                cli_error("%s", err.msg);
                goto done;
            }
            double t_select = mf_time_now() - t0;
            char dir[MF_PATH_MAX];
            mf_fs_join(dir, sizeof dir, ad.tmp, run->name);
            if (mkdir(dir, 0777) != 0) {
                cli_error("%s: cannot create: %s", dir, strerror(errno));
                goto done;
            }
            struct cli_report_info ri = {mname, sparsities[si], (uint64_t)seed,
                                         mf_method_needs_data(methods[mi]) ? stats_source : NULL,
                                         stats ? mf_stats_pairs(stats) : 0, &c, t_load,
                                         mf_method_needs_data(methods[mi]) ? t_calib : 0, t_score, t_select};
            void *report = NULL;
            if (cli_write_run(m, &set, masks, dir, &ri, run, &report, &err)) {
                mf_free(run->tensor_sparsity);
                cli_error("%s", err.msg);
                goto done;
            }
            n_runs++;
            if (save_scores) {
                char path[MF_PATH_MAX];
                mf_fs_join(path, sizeof path, dir, "scores.safetensors");
                if (mf_prune_write_scores(&set, (const float *const *)scores, path, &err)) {
                    json_decref(report);
                    cli_error("%s", err.msg);
                    goto done;
                }
            }
            json_t *rep = report;
            json_array_append_new(summary_runs,
                                  json_pack("{s:s,s:s,s:f,s:O,s:O,s:O}", "name", run->name, "method", mname,
                                            "sparsity", sparsities[si], "overall", json_object_get(rep, "overall"),
                                            "modalities", json_object_get(rep, "modalities"), "timings_s",
                                            json_object_get(rep, "timings_s")));
            json_decref(rep);
        }
    }
    char path[MF_PATH_MAX];
    mf_fs_join(path, sizeof path, ad.tmp, "summary.json");
    if (cli_write_json(path, summary, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    mf_fs_join(path, sizeof path, ad.tmp, "sparsity.svg");
    if (cli_plot_sparsity(path, m, runs, n_runs, &err) || mf_atomic_dir_commit(&ad, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    ad_open = false;
    if (!c.quiet)
        fprintf(stderr, "multiflow: wrote %zu pruned checkpoints to %s\n", n_runs, out);
    rc = 0;
done:
    if (ad_open)
        mf_atomic_dir_abort(&ad);
    for (size_t i = 0; i < n_runs; i++)
        mf_free(runs[i].tensor_sparsity);
    for (size_t i = 0; scores && i < set.n; i++)
        mf_free(scores[i]);
    for (size_t i = 0; masks && i < set.n; i++)
        mf_free(masks[i]);
    mf_free(scores);
    mf_free(masks);
    json_decref(summary);
    mf_prune_set_free(&set);
    mf_pool_free(pool);
    mf_stats_free(stats);
    mf_session_free(s);
    mf_model_free(m);
    mf_annotations_free(ann);
    return rc;
}
