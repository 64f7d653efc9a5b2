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
 *
 * Gradient-based methods (snip, itersnip, tamt; prune/snip.c, prune/tamt.c) draw gradients of
 * BLIP's pretraining losses from one calibration stream (prune/gradient.h) and are dispatched
 * through grad_methods[]: one function per method, all taking struct grad_ctx. To add one, add
 * its enum mf_gmethod value, a run_<name> function and a row.
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
#include "prune/gprune.h"
#include "prune/gradient.h"
#include "prune/output.h"

enum { OPT_METHOD = OPT_VERB_BASE, OPT_SPARSITY, OPT_SAVE_SCORES, OPT_SAVE_STATS, OPT_STATS, OPT_ROUNDS,
       OPT_SCHEDULE, OPT_ROUND_BATCHES, OPT_STEPS, OPT_EPOCHS, OPT_LAMBDA, OPT_TMP };

static const char help[] =
    "usage: multiflow prune --model PATH --method M[,M...] --sparsity S[,S...] --out DIR [options]\n"
    "\n"
    "Prunes the model once per method and sparsity and writes DIR/<method>-<pct>/ (pruned checkpoint\n"
    "in the input layout and dtype, masks.safetensors, report.json, the input's other files),\n"
    "DIR/summary.json and DIR/sparsity.svg.\n"
    "\n"
    "  --method M[,M...]     multiflow, omp, lmp, l2, lamp, rand; gradient-based: snip, itersnip, tamt,\n"
    "                        chita, chita++\n"
    "  --sparsity S[,S...]   share of the prunable weights to remove: a fraction below 1 (0.63 = 63 %),\n"
    "                        or a percentage from 1 to below 100 (63 or 63% = 63 %; so 1 = 1 %, not\n"
    "                        100 %; 0.5% = 0.5 %); 1.0 is refused as ambiguous; each run name once\n"
    "  --out DIR             output directory (must not exist unless --force)\n"
    "  --data ANN --images ROOT   calibration image-caption pairs (needed by multiflow)\n"
    CLI_DATA_HELP
    "  --stats FILE          reuse calibration statistics (stats.safetensors) instead of --data\n"
    "  --save-stats          also write DIR/stats.safetensors\n"
    "  --save-scores         also write scores.safetensors (F32) in every run directory\n"
    "  --seed S              seed of rand and of the sampled ITM negatives (default 0)\n"
    "gradient-based methods (need --data; gradients of BLIP's pretraining losses, as `grad`):\n"
    "  --loss LIST           subset of itc,itm,lm (default: every loss the checkpoint has)\n"
    "  --itm-negatives sample|hardest   ITM negatives (default sample)\n"
    CLI_MOMENTUM_HELP
    "  snip: |g * w| with g the mean gradient over every batch of the data (what `grad` writes)\n"
    "  --rounds T            itersnip rounds (default 60, the reference's paper setting)\n"
    "  --schedule exp|linear|const   itersnip sparsity schedule (default exp)\n"
    "  --round-batches K     batches per itersnip round (default: one pass of the data split over the\n"
    "                        rounds, at least 1); the stream continues and cycles across rounds\n"
    "  --steps N | --epochs E   tamt AdamW steps, one batch each (default: one pass, --epochs 1)\n"
    "  chita, chita++: one gradient row per batch (--round-batches rows per round; chita default: one\n"
    "                  pass; chita++ default: one pass split over --rounds, default 5, exp schedule),\n"
    "                  updated surviving weights written into the checkpoint\n"
    "  --lambda X            chita ridge penalty (default 1e-5, the reference's)\n"
    "  --tmp DIR             where chita's gradient-row file goes (default $TMPDIR or /tmp)\n"
    "  --force               replace DIR if it exists\n" CLI_COMMON_HELP;

/* "0.63" -> 0.63 (a fraction: below 1), "63" or "63%" -> 0.63 (a percentage: from 1, or with '%');
 * "1" is 1 %. A number equal to 1 written with a fraction part ("1.0") could mean either and is
 * refused, as is anything at or above 100 %. */
static bool parse_sparsity(const char *s, double *out)
{
    char num[64];
    size_t n = strlen(s);
    bool pct = n > 0 && s[n - 1] == '%';
    if (pct)
        n--;
    if (n == 0 || n >= sizeof num) {
        fprintf(stderr, "multiflow: --sparsity: '%s' is not a number\n", s);
        return false;
    }
    memcpy(num, s, n);
    num[n] = 0;
    double v;
    if (!cli_parse_double("sparsity", num, 0, 100, &v))
        return false;
    if (!pct && v == 1 && strpbrk(num, ".eE")) {
        fprintf(stderr, "multiflow: --sparsity: '%s' is ambiguous: write 1 or 1%% for one percent (a fraction "
                        "must be below 1, and 100 %% is not a sparsity)\n", s);
        return false;
    }
    if (pct || v >= 1)
        v /= 100.0;
    if (v >= 1) {
        fprintf(stderr, "multiflow: --sparsity: %s is not below 100 %%\n", s);
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

/* The end of a run on stdout: one line per (method, sparsity) with the achieved sparsity and the
 * run's time (scoring, selection, writing; the shared load and calibration once), or, with --json,
 * summary.json itself. Returns the exit status. */
static int print_summary(json_t *summary, bool as_json)
{
    if (as_json) {
        json_dumpf(summary, stdout, JSON_COMPACT | JSON_REAL_PRECISION(8));
        fputc('\n', stdout);
    } else {
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(summary, "runs"), i, r) {
            json_t *t = json_object_get(r, "timings_s"), *o = json_object_get(r, "overall");
            double secs = json_number_value(json_object_get(t, "scoring")) +
                          json_number_value(json_object_get(t, "selection")) +
                          json_number_value(json_object_get(t, "writing"));
            printf("%-20s %7.3f %% of %lld prunable weights pruned (", json_string_value(json_object_get(r, "name")),
                   100.0 * json_number_value(json_object_get(o, "sparsity")),
                   (long long)json_integer_value(json_object_get(o, "params")));
            const char *k;
            json_t *mv;
            int first = 1;
            json_object_foreach(json_object_get(r, "modalities"), k, mv) {
                printf("%s%s %.3f %%", first ? "" : ", ", k, 100.0 * json_number_value(json_object_get(mv, "sparsity")));
                first = 0;
            }
            printf("), %.2f s", secs);
            if (i == 0)
                printf(" (+ load %.2f s, calibration %.2f s)", json_number_value(json_object_get(t, "load")),
                       json_number_value(json_object_get(t, "calibration")));
            putchar('\n');
        }
    }
    return fflush(stdout) != 0 ? cli_error("cannot write to stdout") : 0;
}

/* A method of the command line: a criterion (mf_method) or a gradient-based pruner (mf_gmethod). */
struct method {
    bool grad;
    enum mf_method m;
    enum mf_gmethod gm;
};

/* What every gradient-based method gets. scores: one (n_i) array per tensor (set order). */
struct grad_ctx {
    struct mf_pool *pool;
    const struct mf_prune_set *set;
    struct mf_grad_stream *gs;
    struct mf_grad_source src;
    struct mf_gprune_opts o;
    float **scores;
    bool snip_scored; /* snip: scores do not depend on the sparsity; computed once */
    int64_t drawn;    /* batches the last scoring drew from the stream */
    /* chita / chita++ */
    float **w_new;            /* (set order) updated weights of the last chita run, or NULL */
    struct mf_chita_opts co;
    int64_t chita_rounds, chita_rows; /* chita++ rounds; rows per round (0 = default) */
    const char *tmp;
    struct mf_chita_info ci;
};

static enum mf_status run_snip(struct grad_ctx *x, double s, uint8_t *const *masks, struct mf_err *err)
{
    enum mf_status st;
    if (!x->snip_scored) {
        mf_grad_stream_rewind(x->gs);
        if ((st = mf_snip_scores(x->set, &x->o, &x->src, x->scores, err)))
            return st;
        x->snip_scored = true;
        x->drawn = mf_grad_stream_position(x->gs);
    }
    return mf_gprune_select_global(x->pool, x->set, (const float *const *)x->scores,
                                   mf_sel_count_at(s, x->set->total), masks, err);
}

/* itersnip and tamt depend on the sparsity: each run starts from the first batch, as the
 * reference re-creates its data loader iterator per sparsity. */
static enum mf_status run_itersnip(struct grad_ctx *x, double s, uint8_t *const *masks, struct mf_err *err)
{
    mf_grad_stream_rewind(x->gs);
    enum mf_status st = mf_gprune_run(x->pool, MF_GMETHOD_ITERSNIP, x->set, s, &x->o, &x->src, x->scores, masks, err);
    x->drawn = mf_grad_stream_position(x->gs);
    return st;
}

static enum mf_status run_tamt(struct grad_ctx *x, double s, uint8_t *const *masks, struct mf_err *err)
{
    mf_grad_stream_rewind(x->gs);
    enum mf_status st = mf_gprune_run(x->pool, MF_GMETHOD_TAMT, x->set, s, &x->o, &x->src, x->scores, masks, err);
    x->drawn = mf_grad_stream_position(x->gs);
    return st;
}

/* chita, chita++: gradient rows through a temporary file, weights updated (x->w_new). */
static enum mf_status run_chita_rounds(struct grad_ctx *x, int64_t rounds, double s, uint8_t *const *masks,
                                       struct mf_err *err)
{
    if (!x->w_new) {
        x->w_new = mf_calloc(x->set->n, sizeof *x->w_new);
        for (size_t i = 0; x->w_new && i < x->set->n; i++)
            if (!(x->w_new[i] = mf_malloc((size_t)x->set->t[i].n * sizeof(float))))
                return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the updated weights");
        if (!x->w_new)
            return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    }
    int64_t rows = x->chita_rows ? x->chita_rows : MF_MAX(1, x->src.pass_batches / rounds);
    mf_grad_stream_rewind(x->gs);
    enum mf_status st = mf_chita_run(x->pool, x->set, s, rounds, rows, x->tmp, &x->co, &x->src, masks, x->w_new,
                                     &x->ci, err);
    x->drawn = mf_grad_stream_position(x->gs);
    for (size_t i = 0; !st && i < x->set->n; i++) /* scores.safetensors: |updated weight| */
        for (int64_t j = 0; j < x->set->t[i].n; j++)
            x->scores[i][j] = fabsf(x->w_new[i][j]);
    return st;
}

static enum mf_status run_chita(struct grad_ctx *x, double s, uint8_t *const *masks, struct mf_err *err)
{
    return run_chita_rounds(x, 1, s, masks, err);
}

static enum mf_status run_chitapp(struct grad_ctx *x, double s, uint8_t *const *masks, struct mf_err *err)
{
    return run_chita_rounds(x, x->chita_rounds, s, masks, err);
}

static enum mf_status (*const grad_methods[MF_GMETHOD_COUNT])(struct grad_ctx *, double, uint8_t *const *,
                                                              struct mf_err *) = {
    [MF_GMETHOD_SNIP] = run_snip, [MF_GMETHOD_ITERSNIP] = run_itersnip, [MF_GMETHOD_TAMT] = run_tamt,
    [MF_GMETHOD_CHITA] = run_chita, [MF_GMETHOD_CHITAPP] = run_chitapp};

static const char *loss_list(unsigned bits, char *buf, size_t n)
{
    snprintf(buf, n, "%s%s%s%s%s", (bits & MF_LOSS_ITC) ? "itc" : "",
             (bits & MF_LOSS_ITC) && (bits & (MF_LOSS_ITM | MF_LOSS_LM)) ? "," : "", (bits & MF_LOSS_ITM) ? "itm" : "",
             (bits & MF_LOSS_ITM) && (bits & MF_LOSS_LM) ? "," : "", (bits & MF_LOSS_LM) ? "lm" : "");
    return buf;
}

/* report.json's "gradient" object: the settings of a gradient-based run and what to know about it. */
static json_t *grad_report(const struct grad_ctx *x, enum mf_gmethod gm, const struct mf_losses_opts *lo,
                           int64_t batch, int64_t drawn)
{
    char buf[32];
    const struct mf_gprune_opts *o = &x->o;
    json_t *r = json_object(), *notes = json_array();
    json_object_set_new(r, "losses", json_string(loss_list(mf_grad_stream_losses(x->gs), buf, sizeof buf)));
    json_object_set_new(r, "itm_negatives", json_string(lo->negatives == MF_ITM_NEG_HARDEST ? "hardest" : "sample"));
    json_object_set_new(r, "seed", json_integer((json_int_t)lo->seed));
    json_object_set_new(r, "momentum", json_string(mf_losses_momentum_name(mf_grad_stream_loss_state(x->gs))));
    json_object_set_new(r, "batch", json_integer((json_int_t)batch));
    json_object_set_new(r, "batches_per_pass", json_integer((json_int_t)x->src.pass_batches));
    json_object_set_new(r, "batches_drawn", json_integer((json_int_t)drawn));
    json_array_append_new(notes, json_string("gradient of the sum of the selected losses per batch, averaged over "
                                             "batches of consecutive pairs in file order (as `multiflow grad`)"));
    if (strcmp(mf_losses_momentum_name(mf_grad_stream_loss_state(x->gs)), "on") == 0)
        json_array_append_new(notes, json_string("momentum encoders and queues evolve batch by batch from the "
                                                 "checkpoint's (restored at the start of every sparsity); the "
                                                 "written checkpoint keeps the input's momentum copies and queues"));
    else if (lo->momentum == MF_MOMENTUM_OFF)
        json_array_append_new(notes, json_string("--momentum off: the batch's online features with the gradient "
                                                 "stopped replace the momentum features, queues as stored (a "
                                                 "deviation from BLIP_Pretrain)"));
    if (gm == MF_GMETHOD_SNIP) {
        json_array_append_new(notes, json_string("g averaged over every batch of one pass of the data (the gradient "
                                                 "`multiflow grad` writes for the same flags); score |g * w| / sum "
                                                 "of all scores, global exact-k"));
    } else if (gm == MF_GMETHOD_ITERSNIP) {
        json_object_set_new(r, "rounds", json_integer((json_int_t)o->rounds));
        json_object_set_new(r, "schedule", json_string(mf_schedule_name(o->schedule)));
        json_object_set_new(r, "round_batches", json_integer((json_int_t)o->round_batches));
        json_array_append_new(notes, json_string("each round recomputes |g * w| at the masked weights from the next "
                                                 "batches of the stream (cycling); pruned weights stay pruned"));
        if (o->schedule == MF_SCHEDULE_LINEAR)
            json_array_append_new(notes, json_string("linear schedule s*t/T (the reference's s+(1-s)*t/T ends at 100 %)"));
    } else if (gm == MF_GMETHOD_TAMT) {
        json_object_set_new(r, "steps", json_integer((json_int_t)o->steps));
        json_object_set_new(r, "optimizer", json_pack("{s:s,s:f,s:s,s:f,s:[f,f],s:f}", "name", "AdamW", "lr", o->lr,
                                                      "lr_schedule", "linear decay to 0, no warm-up", "weight_decay",
                                                      o->weight_decay, "betas", o->beta1, o->beta2, "eps", o->eps));
        json_object_set_new(r, "init_alpha", json_real(o->alpha));
        json_array_append_new(notes, json_string("mask scores start at 2*tau where layer-wise magnitude pruning keeps "
                                                 "the weight and at 0 elsewhere; scores at 0 stay 0 (no gradient "
                                                 "through |score| at 0), so TAMT only re-ranks the weights layer-wise "
                                                 "magnitude keeps"));
        json_array_append_new(notes, json_string("straight-through binarisation at the current global threshold with "
                                                 "exactly k masked per step (the reference's <= threshold masks every "
                                                 "prunable weight at step 1, when all kept scores tie at 2*tau)"));
    }
    if (gm == MF_GMETHOD_CHITA || gm == MF_GMETHOD_CHITAPP) {
        const struct mf_chita_info *ci = &x->ci;
        json_object_set_new(r, "lambda", json_real(x->co.lambda));
        json_object_set_new(r, "block", json_integer((json_int_t)x->co.block));
        json_object_set_new(r, "rounds", json_integer(gm == MF_GMETHOD_CHITA ? 1 : (json_int_t)x->chita_rounds));
        json_object_set_new(r, "schedule", json_string("exp"));
        json_object_set_new(r, "global_step", json_pack("{s:i,s:f}", "branch", ci->branch, "step", ci->step));
        json_object_set_new(r, "row_file", json_pack("{s:I,s:I,s:I}", "windows", (json_int_t)ci->windows, "passes",
                                                     (json_int_t)ci->passes, "max_mapped_bytes",
                                                     (json_int_t)ci->max_mapped));
        json_array_append_new(notes, json_string("CHITA as the reference runs it (Heuristic_LSBlock, split_type 1): one "
                                                 "gradient row per batch, alpha = row sum / batch size, lam2 = rows * "
                                                 "lambda / 2; a global IHT step fixes each block's survivor count, "
                                                 "then per block prune_ls and the ridge solve update the survivors"));
        json_array_append_new(notes, json_string("float64 solve (the reference runs float32); exact-k with the "
                                                 "position tie rule; the checkpoint holds the updated weights "
                                                 "(tied decoder copies take them, momentum copies keep their values, "
                                                 "masked)"));
        json_array_append_new(notes, json_string("scores.safetensors (with --save-scores) holds |updated weight|"));
    }
    json_object_set_new(r, "notes", notes);
    return r;
}

int verb_prune(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS, CLI_DATA_OPTIONS, CLI_OUT_OPTIONS, CLI_SEED_OPTION, CLI_LOSS_OPTIONS,
                                         {"method", required_argument, 0, OPT_METHOD},
                                         {"sparsity", required_argument, 0, OPT_SPARSITY},
                                         {"save-scores", no_argument, 0, OPT_SAVE_SCORES},
                                         {"save-stats", no_argument, 0, OPT_SAVE_STATS},
                                         {"stats", required_argument, 0, OPT_STATS},
                                         {"rounds", required_argument, 0, OPT_ROUNDS},
                                         {"schedule", required_argument, 0, OPT_SCHEDULE},
                                         {"round-batches", required_argument, 0, OPT_ROUND_BATCHES},
                                         {"steps", required_argument, 0, OPT_STEPS},
                                         {"epochs", required_argument, 0, OPT_EPOCHS},
                                         {"lambda", required_argument, 0, OPT_LAMBDA},
                                         {"tmp", required_argument, 0, OPT_TMP},
                                         {0, 0, 0, 0}};
    struct cli_common c;
    const char *stats_file = NULL;
    char *method_arg = NULL, *sparsity_arg = NULL;
    bool save_scores = false, save_stats = false;
    struct method methods[MF_METHOD_COUNT + MF_GMETHOD_COUNT];
    double sparsities[32];
    size_t n_methods = 0, n_sp = 0;
    struct mf_gprune_opts go;
    mf_gprune_opts_default(&go);
    int64_t epochs = 0;
    struct mf_chita_opts co;
    mf_chita_opts_default(&co);
    const char *tmp_dir = NULL;
    bool lambda_set = false;
    bool rounds_set = false, schedule_set = false, rb_set = false, steps_set = false;
    cli_common_init(&c);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_HELP: fputs(help, stdout); return 0;
        case OPT_METHOD:
            if (method_arg)
                return cli_usage_error("prune", "--method given twice (give one comma-separated list)");
            method_arg = optarg;
            break;
        case OPT_SPARSITY:
            if (sparsity_arg)
                return cli_usage_error("prune", "--sparsity given twice (give one comma-separated list)");
            sparsity_arg = optarg;
            break;
        case OPT_SAVE_SCORES: save_scores = true; break;
        case OPT_SAVE_STATS: save_stats = true; break;
        case OPT_STATS: stats_file = optarg; break;
        case OPT_ROUNDS:
            if (!cli_parse_int("rounds", optarg, 1, 100000, &go.rounds))
                return 2;
            rounds_set = true;
            break;
        case OPT_SCHEDULE:
            if (!mf_schedule_parse(optarg, &go.schedule))
                return cli_usage_error("prune", "--schedule: expected exp, linear or const, got '%s'", optarg);
            schedule_set = true;
            break;
        case OPT_ROUND_BATCHES:
            if (!cli_parse_int("round-batches", optarg, 1, 100000000, &go.round_batches))
                return 2;
            rb_set = true;
            break;
        case OPT_STEPS:
            if (!cli_parse_int("steps", optarg, 1, 100000000, &go.steps))
                return 2;
            steps_set = true;
            break;
        case OPT_LAMBDA:
            if (!cli_parse_double("lambda", optarg, 1e-300, 1e300, &co.lambda))
                return 2;
            lambda_set = true;
            break;
        case OPT_TMP: tmp_dir = optarg; break;
        case OPT_EPOCHS:
            if (!cli_parse_int("epochs", optarg, 1, 100000, &epochs))
                return 2;
            break;
        default: {
            int rc = cli_common_or_usage(&c, opt, optarg, "prune");
            if (rc)
                return rc;
        }
        }
    }
    const char *out = c.out, *data = c.data, *root = c.images;
    const bool force = c.force;
    const uint64_t seed = c.seed;
    const struct mf_losses_opts lo = c.lo;
    if (cli_no_operands("prune", argc, argv))
        return 2;
    if (!c.model || !method_arg || !sparsity_arg || !out)
        return cli_usage_error("prune", "--model, --method, --sparsity and --out are required");

    /* Validate every argument before any work. */
    char buf[512];
    snprintf(buf, sizeof buf, "%s", method_arg);
    bool needs_data = false, needs_stats = false, any_grad = false, has_iter = false, has_tamt = false;
    bool has_chita = false, has_chitapp = false;
    const char *grad_name = NULL;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        struct method mm = {false, MF_METHOD_OMP, MF_GMETHOD_SNIP};
        if (mf_gmethod_parse(tok, &mm.gm))
            mm.grad = true;
        else if (!mf_method_parse(tok, &mm.m)) {
            char all[256] = "";
            for (int i = 0; i < MF_METHOD_COUNT + MF_GMETHOD_COUNT; i++)
                snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", i ? ", " : "",
                         i < MF_METHOD_COUNT ? mf_method_name((enum mf_method)i)
                                             : mf_gmethod_name((enum mf_gmethod)(i - MF_METHOD_COUNT)));
            return cli_usage_error("prune", "unknown method '%s' (methods: %s)", tok, all);
        }
        for (size_t i = 0; i < n_methods; i++)
            if (methods[i].grad == mm.grad && (mm.grad ? methods[i].gm == mm.gm : methods[i].m == mm.m))
                return cli_usage_error("prune", "method '%s' given twice", tok);
        if (n_methods == MF_ARRAY_LEN(methods))
            return cli_usage_error("prune", "too many methods");
        methods[n_methods++] = mm;
        needs_data |= mm.grad || mf_method_needs_data(mm.m);
        needs_stats |= !mm.grad && mf_method_needs_data(mm.m);
        if (mm.grad && !grad_name)
            grad_name = mf_gmethod_name(mm.gm);
        any_grad |= mm.grad;
        has_iter |= mm.grad && mm.gm == MF_GMETHOD_ITERSNIP;
        has_tamt |= mm.grad && mm.gm == MF_GMETHOD_TAMT;
        has_chita |= mm.grad && (mm.gm == MF_GMETHOD_CHITA || mm.gm == MF_GMETHOD_CHITAPP);
        has_chitapp |= mm.grad && mm.gm == MF_GMETHOD_CHITAPP;
    }
    snprintf(buf, sizeof buf, "%s", sparsity_arg);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (n_sp == MF_ARRAY_LEN(sparsities))
            return cli_usage_error("prune", "too many sparsities (at most %zu)", MF_ARRAY_LEN(sparsities));
        if (!parse_sparsity(tok, &sparsities[n_sp]))
            return 2;
        char a[32], b[32]; /* two values naming one run directory (63 and 0.63 both name omp-63) */
        run_name(a, sizeof a, "", sparsities[n_sp]);
        for (size_t k = 0; k < n_sp; k++)
            if (run_name(b, sizeof b, "", sparsities[k]), strcmp(a, b) == 0)
                return cli_usage_error("prune", "--sparsity: %s and an earlier value both mean %s %% (given twice)",
                                       tok, a + 1);
        n_sp++;
    }
    if (n_methods == 0 || n_sp == 0)
        return cli_usage_error("prune", "--method and --sparsity need at least one value");
    if (any_grad && !data)
        return cli_usage_error("prune",
                               "method %s needs calibration data: give --data ANN --images ROOT (it differentiates the "
                               "pretraining losses on image-caption pairs; --stats is not enough)",
                               grad_name);
    if (needs_data && !data && !stats_file)
        return cli_usage_error("prune",
                               "method multiflow needs calibration data: give --data ANN --images ROOT (or --stats FILE)");
    if (schedule_set && !has_iter)
        return cli_usage_error("prune", "--schedule applies to itersnip only (chita++ uses exp, as the reference)");
    if ((rounds_set || rb_set) && !has_iter && !has_chita)
        return cli_usage_error("prune", "--rounds and --round-batches apply to itersnip, chita and chita++ only");
    if (rounds_set && has_chita && !has_chitapp && !has_iter)
        return cli_usage_error("prune", "--rounds applies to chita++ (chita is one round)");
    if ((lambda_set || tmp_dir) && !has_chita)
        return cli_usage_error("prune", "--lambda and --tmp apply to chita and chita++ only");
    if ((steps_set || epochs) && !has_tamt)
        return cli_usage_error("prune", "--steps and --epochs apply to tamt only");
    if (steps_set && epochs)
        return cli_usage_error("prune", "--steps and --epochs are exclusive");
    if (data && stats_file)
        return cli_usage_error("prune", "--data and --stats are exclusive");
    if (save_stats && !data && !stats_file)
        return cli_usage_error("prune", "--save-stats needs --data (or --stats)");
    if (cli_check_out(out, force, true))
        return 1;
    cli_common_finish(&c);

    int rc = 1;
    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_session *s = NULL;
    struct mf_annotations *ann = NULL;
    struct mf_stats *stats = NULL;
    struct mf_pool *pool = NULL;
    struct mf_grad_stream *gs = NULL;
    struct grad_ctx gx;
    memset(&gx, 0, sizeof gx);
    struct mf_prune_set set = {0};
    struct mf_atomic_dir ad = {0};
    bool ad_open = false;
    float **scores = NULL;
    uint8_t **masks = NULL;
    struct cli_run runs[(MF_METHOD_COUNT + MF_GMETHOD_COUNT) * 32];
    size_t n_runs = 0;
    json_t *summary = json_object(), *summary_runs = json_array();
    json_object_set_new(summary, "model", json_string(c.model));
    json_object_set_new(summary, "runs", summary_runs);
    memset(runs, 0, sizeof runs);

    double t0 = mf_time_now();
    if (data && !(ann = cli_load_annotations(&c, data, root)))
        goto done;
    c.vocab_optional = !data; /* data-free pruning never tokenises */
    if (!(m = cli_load_model(&c)))
        goto done;
    /* the output (and chita's row directory) must be writable before any forward pass */
    if (mf_atomic_dir_open(out, force, &ad, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    ad_open = true;
    if (has_chita) {
        char probe[MF_PATH_MAX];
        const char *td = tmp_dir && tmp_dir[0] ? tmp_dir : getenv("TMPDIR");
        if (!mf_fs_join(probe, sizeof probe, td && td[0] ? td : "/tmp", "multiflow-probe") ||
            mf_fs_check_writable(probe, &err)) {
            cli_error("--tmp: %s", err.msg[0] ? err.msg : "path too long");
            goto done;
        }
    }
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
    } else if (data && (needs_stats || save_stats)) {
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
    if (mf_prune_set_init(m, stats, &set, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (any_grad) {
        struct mf_grad_stream_opts so = {lo, c.batch, c.max_tokens, c.quiet ? NULL : "gradients"};
        if ((!s && mf_session_create(m, c.threads, &s, &err)) || mf_grad_stream_create(s, ann, &so, &gs, &err) ||
            mf_grad_stream_source(gs, &set, &gx.src, &err)) {
            cli_error("%s", err.msg);
            goto done;
        }
        gx.pool = pool;
        gx.set = &set;
        gx.gs = gs;
        gx.o = go;
        if (!rb_set) /* one pass of the data split over the rounds, as 60 x 50 = SNIP's 3000 batches */
            gx.o.round_batches = MF_MAX(1, gx.src.pass_batches / gx.o.rounds);
        gx.o.steps = steps_set ? go.steps : (epochs ? epochs : 1) * gx.src.pass_batches;
        gx.co = co;
        gx.co.batch_size = (double)c.batch; /* the reference's fisher_mini_bsz: pairs in a batch */
        gx.chita_rounds = rounds_set ? go.rounds : 5;
        gx.chita_rows = rb_set ? go.round_batches : 0;
        gx.tmp = tmp_dir;
    }
    const bool keep_scores = save_scores || any_grad;
    scores = mf_calloc(set.n, sizeof *scores);
    masks = mf_calloc(set.n, sizeof *masks);
    if (!scores || !masks) {
        cli_error("out of memory");
        goto done;
    }
    for (size_t i = 0; i < set.n; i++) {
        /* one float per weight only to write scores.safetensors: masks are computed without them */
        scores[i] = keep_scores ? mf_malloc((size_t)set.t[i].n * sizeof(float)) : NULL;
        masks[i] = mf_malloc((size_t)set.t[i].n);
        if ((keep_scores && !scores[i]) || !masks[i]) {
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
    gx.scores = scores;
    for (size_t mi = 0; mi < n_methods; mi++) {
        const struct method *me = &methods[mi];
        const char *mname = me->grad ? mf_gmethod_name(me->gm) : mf_method_name(me->m);
        t0 = mf_time_now();
        if (!me->grad && save_scores && mf_prune_scores(pool, me->m, &set, (uint64_t)seed, scores, &err)) {
            cli_error("%s", err.msg);
            goto done;
        }
        double t_score = mf_time_now() - t0; /* 0 without --save-scores: scoring is part of the selection */
        for (size_t si = 0; si < n_sp; si++) {
            struct cli_run *run = &runs[n_runs];
            run_name(run->name, sizeof run->name, mname, sparsities[si]);
            run->style_color = (int)mi;
            run->style_dash = (int)si;
            run->sparsity = sparsities[si];
            if (!c.quiet)
                fprintf(stderr, "multiflow: %s\n", run->name);
            t0 = mf_time_now();
            bool rescored = me->grad && !(me->gm == MF_GMETHOD_SNIP && gx.snip_scored);
            if (me->grad ? grad_methods[me->gm](&gx, sparsities[si], masks, &err)
                         : mf_prune_compute_masks(pool, me->m, &set, sparsities[si], (uint64_t)seed, masks, &err)) {
                cli_error("%s: %s", run->name, err.msg);
                goto done;
            }
            double t_select = mf_time_now() - t0;
            if (me->grad && rescored) { /* gradients and scoring: the score phase of this run */
                t_score = t_select;
                t_select = 0;
            }

            char dir[MF_PATH_MAX];
            mf_fs_join(dir, sizeof dir, ad.tmp, run->name);
            if (mkdir(dir, 0777) != 0) {
                cli_error("%s: cannot create: %s", dir, strerror(errno));
                goto done;
            }
            const bool uses_stats = !me->grad && mf_method_needs_data(me->m);
            struct cli_report_info ri = {mname, sparsities[si], (uint64_t)seed,
                                         me->grad ? "gradients of the pretraining losses"
                                                  : (uses_stats ? stats_source : NULL),
                                         me->grad ? ann->n_pairs : (stats ? mf_stats_pairs(stats) : 0), &c, t_load,
                                         uses_stats ? t_calib : 0, t_score, t_select, NULL};
            if (me->grad && (me->gm == MF_GMETHOD_CHITA || me->gm == MF_GMETHOD_CHITAPP))
                ri.values = (const float *const *)gx.w_new;
            void *report = NULL;
            if (cli_write_run(m, &set, masks, dir, &ri, run, &report, &err)) {
                mf_free(run->tensor_sparsity);
                cli_error("%s", err.msg);
                goto done;
            }
            n_runs++;
            if (me->grad) {
                /* the gradient settings and notes, then report.json again with them */
                json_object_set_new((json_t *)report, "gradient",
                                    grad_report(&gx, me->gm, &lo, c.batch, gx.drawn));
                char rpath[MF_PATH_MAX];
                mf_fs_join(rpath, sizeof rpath, dir, "report.json");
                if (cli_write_json(rpath, report, &err)) {
                    json_decref(report);
                    cli_error("%s", err.msg);
                    goto done;
                }
            }
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
    if (cli_plot_sparsity(path, m, c.model, runs, n_runs, &err) || mf_atomic_dir_commit(&ad, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    ad_open = false;
    if (!c.quiet)
        fprintf(stderr, "multiflow: wrote %zu pruned checkpoints to %s\n", n_runs, out);
    rc = print_summary(summary, c.json);
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
    mf_grad_stream_free(gs);
    for (size_t i = 0; gx.w_new && i < set.n; i++)
        mf_free(gx.w_new[i]);
    mf_free(gx.w_new);
    mf_prune_set_free(&set);
    mf_pool_free(pool);
    mf_stats_free(stats);
    mf_session_free(s);
    mf_model_free(m);
    mf_annotations_free(ann);
    return rc;
}
