/* cli/common.c: shared option handling, model loading and error printing for the verbs. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/progress.h"
#include "io/annotations.h"
#include "io/fs.h"
#include "io/image.h"
#include "multiflow/eval.h"

void cli_common_init(struct cli_common *c)
{
    memset(c, 0, sizeof *c);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    c->threads = n > 0 ? (int)(n < 64 ? n : 64) : 1;
    c->max_tokens = 0; /* the model's default, min(35, text positions), set by cli_load_model */
    c->batch = 8;
    c->lo.negatives = MF_ITM_NEG_SAMPLE;
}

int cli_error(const char *fmt, ...)
{
    char msg[2 * MF_PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mf_fs_temp_to_final(msg, sizeof msg); /* name the output asked for, not its temporary */
    fprintf(stderr, "multiflow: error: %s\n", msg);
    return 1;
}

int cli_usage_error(const char *verb, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "multiflow %s: ", verb);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see 'multiflow %s --help')\n", verb);
    return 2;
}

bool cli_parse_int(const char *name, const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "multiflow: --%s: '%s' is not an integer in [%lld, %lld]\n", name, s, (long long)lo,
                (long long)hi);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_double(const char *name, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "multiflow: --%s: '%s' is not a number in [%g, %g]\n", name, s, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

int cli_common_option(struct cli_common *c, int opt, const char *arg)
{
    int64_t v;
    switch (opt) {
    case OPT_MODEL: c->model = arg; return 1;
    case OPT_VOCAB: c->vocab = arg; return 1;
    case OPT_THREADS:
        if (!cli_parse_int("threads", arg, 1, 256, &v))
            return -1;
        c->threads = (int)v;
        return 1;
    case OPT_HEADS:
    case OPT_VISION_HEADS:
    case OPT_TEXT_HEADS:
        if (!cli_parse_int("heads", arg, 1, 1024, &v))
            return -1;
        if (opt != OPT_TEXT_HEADS)
            c->heads_vision = (int)v;
        if (opt != OPT_VISION_HEADS)
            c->heads_text = (int)v;
        return 1;
    case OPT_ITM_TOKEN:
        if (strcmp(arg, "enc") == 0)
            c->itm_token = MF_ITM_TOKEN_ENC;
        else if (strcmp(arg, "cls") == 0)
            c->itm_token = MF_ITM_TOKEN_CLS;
        else {
            fprintf(stderr, "multiflow: --itm-token: '%s' is not 'enc' or 'cls'\n", arg);
            return -1;
        }
        return 1;
    case OPT_CLEAN:
        if (strcmp(arg, "none") == 0)
            c->clean = MF_CLEAN_NONE;
        else if (strcmp(arg, "blip") == 0)
            c->clean = MF_CLEAN_BLIP;
        else if (strcmp(arg, "multiflow") == 0)
            c->clean = MF_CLEAN_MULTIFLOW;
        else {
            fprintf(stderr, "multiflow: --caption-clean: '%s' is not none, blip or multiflow\n", arg);
            return -1;
        }
        return 1;
    case OPT_MAX_TOKENS:
        if (!cli_parse_int("max-tokens", arg, 2, 4096, &v))
            return -1;
        c->max_tokens = (int)v;
        return 1;
    case OPT_BATCH:
        if (!cli_parse_int("batch", arg, 1, 4096, &v))
            return -1;
        c->batch = (int)v;
        return 1;
    case OPT_PAIRS:
        if (!cli_parse_int("pairs", arg, 1, INT64_MAX / 2, &v))
            return -1;
        c->pairs = v;
        return 1;
    case OPT_DATA: c->data = arg; return 1;
    case OPT_ALLOW_OUTSIDE: c->allow_outside_root = true; return 1;
    case OPT_MAX_PIXELS:
        if (!cli_parse_int("max-pixels", arg, 1, MF_IMAGE_MAX_PIXELS, &v))
            return -1;
        mf_image_set_max_pixels(v);
        return 1;
    case OPT_IMAGES: c->images = arg; return 1;
    case OPT_OUT: c->out = arg; return 1;
    case OPT_FORCE: c->force = true; return 1;
    case OPT_SEED:
        if (!cli_parse_int("seed", arg, 0, INT64_MAX, &v))
            return -1;
        c->seed = c->lo.seed = (uint64_t)v;
        return 1;
    case OPT_LOSS: {
        struct mf_err err = {0};
        if (mf_losses_parse(arg, &c->lo.losses, &err) != MF_OK) {
            fprintf(stderr, "multiflow: --loss: %s\n", err.msg);
            return -1;
        }
        return 1;
    }
    case OPT_ITM_NEG:
        if (strcmp(arg, "sample") == 0)
            c->lo.negatives = MF_ITM_NEG_SAMPLE;
        else if (strcmp(arg, "hardest") == 0)
            c->lo.negatives = MF_ITM_NEG_HARDEST;
        else {
            fprintf(stderr, "multiflow: --itm-negatives: expected sample or hardest, got '%s'\n", arg);
            return -1;
        }
        return 1;
    case OPT_MOMENTUM:
        if (strcmp(arg, "on") == 0)
            c->lo.momentum = MF_MOMENTUM_ON;
        else if (strcmp(arg, "off") == 0)
            c->lo.momentum = MF_MOMENTUM_OFF;
        else {
            fprintf(stderr, "multiflow: --momentum: expected on or off, got '%s'\n", arg);
            return -1;
        }
        return 1;
    case OPT_JSON: c->json = true; return 1;
    case OPT_QUIET: c->quiet = true; return 1;
    case OPT_PROGRESS: c->progress = true; return 1;
    case OPT_NO_PROGRESS: c->no_progress = true; return 1;
    default: return 0;
    }
}

void cli_common_finish(struct cli_common *c)
{
    if (c->quiet || c->no_progress)
        mf_progress_set_mode(MF_PROGRESS_OFF);
    else if (c->progress)
        mf_progress_set_mode(MF_PROGRESS_ON);
    else
        mf_progress_set_mode(MF_PROGRESS_AUTO);
}

struct mf_model *cli_load_model(struct cli_common *c)
{
    struct mf_err err = {0};
    struct mf_model_opts o = mf_model_opts_default();
    struct mf_model *m = NULL;
    o.vocab_path = c->vocab;
    o.n_head_vision = c->heads_vision;
    o.n_head_text = c->heads_text;
    o.itm_token = c->itm_token;
    o.clean = c->clean;
    o.max_tokens = c->max_tokens;
    o.vocab_optional = c->vocab_optional;
    if (mf_model_load(c->model, &o, &m, &err) != MF_OK) {
        cli_error("%s", err.msg);
        return NULL;
    }
    c->max_tokens = mf_model_get_info(m)->max_tokens; /* --max-tokens, or the model's default */
    return m;
}

int cli_common_or_usage(struct cli_common *c, int opt, const char *arg, const char *verb)
{
    int r = cli_common_option(c, opt, arg);
    if (r < 0)
        return 2;
    if (r == 0)
        return cli_usage_error(verb, "unknown option");
    return 0;
}

struct mf_annotations *cli_load_annotations(const struct cli_common *c, const char *data, const char *root)
{
    struct mf_err err = {0};
    struct mf_annotations *ann = NULL;
    /* every image is checked here, before any model work: inside the root, a readable header,
     * within the pixel limit */
    if (mf_annotations_load(data, root, &ann, &err) != MF_OK ||
        (c->pairs > 0 && mf_annotations_truncate(ann, c->pairs, &err) != MF_OK) ||
        mf_pairs_check_images(ann, root, c->allow_outside_root, &err) != MF_OK) {
        cli_error("%s", err.msg);
        mf_annotations_free(ann);
        return NULL;
    }
    return ann;
}

int cli_no_operands(const char *verb, int argc, char **argv)
{
    return optind < argc ? cli_usage_error(verb, "unexpected argument '%s'", argv[optind]) : 0;
}

int cli_check_out(const char *out, bool force, bool dir)
{
    if (!mf_fs_exists(out) || force)
        return 0;
    return cli_error("%s: %sexists (use --force to replace it)", out, dir ? "output directory " : "");
}

int cli_check_writable(const char *out)
{
    struct mf_err err = {0};
    return mf_fs_check_writable(out, &err) ? cli_error("%s", err.msg) : 0;
}

/* --- interruption: SIGINT, SIGTERM, SIGHUP, SIGXFSZ --------------------------------------------- */

static const struct {
    int sig;
    const char *msg; /* written as is: no formatting is async-signal-safe */
} cli_signals[] = {
    {SIGINT, "multiflow: interrupted (SIGINT); temporary output removed, nothing written\n"},
    {SIGTERM, "multiflow: terminated (SIGTERM); temporary output removed, nothing written\n"},
    {SIGHUP, "multiflow: hangup (SIGHUP); temporary output removed, nothing written\n"},
    {SIGXFSZ, "multiflow: error: file size limit exceeded (SIGXFSZ, see 'ulimit -f'); temporary output "
              "removed, nothing written\n"},
};

/* Removes the temporary outputs (io/fs.h registry), says why, and ends the process with the
 * signal's conventional status: INT, TERM and HUP are re-raised with the default action (the parent
 * sees a death by that signal, shells report 128+signo); XFSZ exits with 128+SIGXFSZ instead of
 * dumping core. Runs on whichever thread received the signal; a second signal waits for the first
 * handler to finish. */
static void cli_on_signal(int sig)
{
    static atomic_flag busy = ATOMIC_FLAG_INIT;
    if (atomic_flag_test_and_set(&busy))
        for (;;)
            pause();
    mf_fs_remove_temps();
    for (size_t i = 0; i < sizeof cli_signals / sizeof cli_signals[0]; i++)
        if (cli_signals[i].sig == sig) {
            ssize_t w = write(STDERR_FILENO, cli_signals[i].msg, strlen(cli_signals[i].msg));
            (void)w;
        }
    if (sig != SIGXFSZ) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        sigemptyset(&sa.sa_mask);
        sigaction(sig, &sa, NULL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        pthread_sigmask(SIG_UNBLOCK, &one, NULL);
        raise(sig);
    }
    _exit(128 + sig);
}

void cli_signals_install(void)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cli_on_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof cli_signals / sizeof cli_signals[0]; i++)
        sigaddset(&sa.sa_mask, cli_signals[i].sig);
    for (size_t i = 0; i < sizeof cli_signals / sizeof cli_signals[0]; i++) {
        /* a signal ignored by whoever started us (nohup, trap '' SIG) stays ignored: an ignored
         * SIGXFSZ turns an over-large write into an EFBIG error of the write itself */
        if (sigaction(cli_signals[i].sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
            continue;
        sigaction(cli_signals[i].sig, &sa, NULL);
    }
}
