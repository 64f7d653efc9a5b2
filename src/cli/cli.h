/*
 * cli/cli.h: what the verbs share: option parsing helpers, model loading from the common options,
 * and error reporting. src/cli/ is the only place that prints results or exits.
 */
#ifndef MF_CLI_H
#define MF_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "models/losses.h"
#include "models/train.h"
#include "multiflow/model.h"
#include "multiflow/prune.h"

/* Options every model-running verb accepts. */
struct cli_common {
    const char *model;
    const char *vocab;
    int threads;
    int heads_vision, heads_text;
    enum mf_itm_token itm_token;
    enum mf_clean clean;
    int max_tokens; /* --max-tokens; 0 until cli_load_model sets the model's default */
    int batch;
    int64_t pairs; /* 0 = all */
    bool json, quiet, progress, no_progress;
    /* Options several verbs share; a verb accepts them only when its option table includes the
     * macro (CLI_DATA_OPTIONS, CLI_OUT_OPTIONS, CLI_SEED_OPTION, CLI_LOSS_OPTIONS). */
    const char *data, *images; /* --data ANN --images ROOT */
    bool allow_outside_root;   /* --allow-outside-root: image paths may leave --images */
    const char *out;           /* --out PATH */
    bool force;                /* --force */
    uint64_t seed;             /* --seed S (also lo.seed) */
    bool vocab_optional;       /* set by verbs that never tokenise: no vocab.txt is fine */
    struct mf_losses_opts lo;  /* --loss, --itm-negatives, --momentum (losses 0 = every loss the model has) */
};

/* Long-option ids for the common options (values above 256 so they never clash with short ones). */
enum {
    OPT_MODEL = 300, OPT_VOCAB, OPT_THREADS, OPT_HEADS, OPT_VISION_HEADS, OPT_TEXT_HEADS, OPT_ITM_TOKEN,
    OPT_CLEAN, OPT_MAX_TOKENS, OPT_BATCH, OPT_PAIRS, OPT_JSON, OPT_QUIET, OPT_PROGRESS, OPT_NO_PROGRESS, OPT_HELP,
    OPT_DATA, OPT_IMAGES, OPT_OUT, OPT_FORCE, OPT_SEED, OPT_LOSS, OPT_ITM_NEG, OPT_MOMENTUM,
    OPT_ALLOW_OUTSIDE, OPT_MAX_PIXELS,
    OPT_VERB_BASE = 400 /* verbs number their own options from here */
};

#define CLI_COMMON_OPTIONS                                                                                     \
    {"model", required_argument, 0, OPT_MODEL}, {"vocab", required_argument, 0, OPT_VOCAB},                     \
    {"threads", required_argument, 0, OPT_THREADS}, {"heads", required_argument, 0, OPT_HEADS},                 \
    {"vision-heads", required_argument, 0, OPT_VISION_HEADS},                                                  \
    {"text-heads", required_argument, 0, OPT_TEXT_HEADS}, {"itm-token", required_argument, 0, OPT_ITM_TOKEN},   \
    {"caption-clean", required_argument, 0, OPT_CLEAN}, {"max-tokens", required_argument, 0, OPT_MAX_TOKENS},   \
    {"batch", required_argument, 0, OPT_BATCH}, {"pairs", required_argument, 0, OPT_PAIRS},                     \
    {"json", no_argument, 0, OPT_JSON}, {"quiet", no_argument, 0, OPT_QUIET},                                   \
    {"progress", no_argument, 0, OPT_PROGRESS}, {"no-progress", no_argument, 0, OPT_NO_PROGRESS},               \
    {"help", no_argument, 0, OPT_HELP}

#define CLI_DATA_OPTIONS {"data", required_argument, 0, OPT_DATA}, {"images", required_argument, 0, OPT_IMAGES}, \
    {"allow-outside-root", no_argument, 0, OPT_ALLOW_OUTSIDE}, {"max-pixels", required_argument, 0, OPT_MAX_PIXELS}
/* Help of the options CLI_DATA_OPTIONS adds to --data/--images. */
#define CLI_DATA_HELP                                                                                          \
    "  --allow-outside-root  accept image paths that resolve (symlinks followed) outside --images\n"          \
    "                        (default: refused; without --images the root is the current directory)\n"        \
    "  --max-pixels N        refuse images with more pixels, from their header (default 178956970,\n"      \
    "                        Pillow's decompression-bomb limit; at most 268435456)\n"
#define CLI_OUT_OPTIONS {"out", required_argument, 0, OPT_OUT}, {"force", no_argument, 0, OPT_FORCE}
#define CLI_SEED_OPTION {"seed", required_argument, 0, OPT_SEED}
#define CLI_LOSS_OPTIONS {"loss", required_argument, 0, OPT_LOSS}, {"itm-negatives", required_argument, 0, OPT_ITM_NEG}, \
    {"momentum", required_argument, 0, OPT_MOMENTUM}
/* --momentum's help line, shared by the verbs that compute the pretraining losses. */
#define CLI_MOMENTUM_HELP                                                                                       \
    "  --momentum on|off     on (default): BLIP's momentum encoders and queues of the checkpoint, updated\n"   \
    "                        per batch as in pretraining (an f32 working copy of the *_m towers, one\n"        \
    "                        more forward per batch); off: online features with the gradient stopped,\n"     \
    "                        queues as stored (cheaper, a deviation). No effect without *_m copies.\n"

#define CLI_COMMON_HELP                                                                                        \
    "  --model PATH          checkpoint directory or .safetensors file\n"                                      \
    "  --vocab FILE          vocab.txt (default: the one in the model directory)\n"                           \
    "  --threads N           worker threads (default: all cores)\n"                                           \
    "  --heads N             attention heads of both towers, overriding config.json (default: the config's,\n" \
    "                        or hidden/64 for a checkpoint without one)\n"                                   \
    "  --vision-heads N, --text-heads N   the same per tower\n"                                                \
    "  --itm-token enc|cls   first token of the image-grounded encoder (default: enc for the original\n"      \
    "                        layout, cls for Hugging Face)\n"                                                   \
    "  --caption-clean none|blip|multiflow   caption cleaning (default: blip for the original layout,\n"       \
    "                        none for Hugging Face)\n"                                                          \
    "  --max-tokens N        text length incl. [CLS]/[SEP], padded (default 35, or the model's text\n"      \
    "                        positions if fewer; more than the positions is an error)\n"                       \
    "  --batch N             pairs per forward pass (default 8)\n"                                             \
    "  --pairs N             use only the first N pairs of --data\n"                                          \
    "  --json                machine-readable output\n"                                                       \
    "  --progress / --no-progress   force the progress bar on stderr on or off (default: on a terminal)\n"   \
    "  --quiet               no progress or notes on stderr\n"                                                \
    "  --help                this text\n"

void cli_common_init(struct cli_common *c);
/* Handles a common option; returns 1 if handled, 0 if not a common option, -1 on a bad value
 * (message printed). */
int cli_common_option(struct cli_common *c, int opt, const char *arg);
/* Applies progress settings. */
void cli_common_finish(struct cli_common *c);
/* Loads the model named by --model with the common options and sets c->max_tokens to the model's
 * text length (--max-tokens, else min(35, text positions)); prints the error and returns NULL. */
struct mf_model *cli_load_model(struct cli_common *c);

/* The default branch of a verb's option switch: a common option, or an "unknown option" usage
 * error. Returns 0 when handled, else the exit status (2). */
int cli_common_or_usage(struct cli_common *c, int opt, const char *arg, const char *verb);
/* Loads an annotation file (and applies --pairs); prints the error and returns NULL on failure. */
struct mf_annotations *cli_load_annotations(const struct cli_common *c, const char *data, const char *root);

/* Usage error for an operand left after the options, argv[optind]: prints it and returns 2; 0
 * when none is. */
int cli_no_operands(const char *verb, int argc, char **argv);
/* The output path exists and --force was not given: prints the error and returns 1; else 0. dir:
 * the output is a directory (the message says so). */
int cli_check_out(const char *out, bool force, bool dir);
/* The output file could not be created (missing or read-only directory, ...): prints the error and
 * returns 1; else 0. Nothing is left behind. */
int cli_check_writable(const char *out);

/* Strict number parsing: the whole string, in [lo, hi]. Prints "--name: ..." on failure. */
bool cli_parse_int(const char *name, const char *s, int64_t lo, int64_t hi, int64_t *out);
bool cli_parse_double(const char *name, const char *s, double lo, double hi, double *out);

/* Installs the handlers of SIGINT, SIGTERM, SIGHUP and SIGXFSZ (unless ignored at start): remove
 * the temporary outputs (mf_fs_remove_temps), print why, exit with 128+signo. Called once by main. */
void cli_signals_install(void);

/* "multiflow: error: ..." on stderr; returns 1 (the exit status for errors). */
int cli_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Bad usage: prints the message and a hint to --help; returns 2. */
int cli_usage_error(const char *verb, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Fine-tuning (finetune_common.c). cli_masks_load: the masks of a pruning run (path NULL: every
 * weight dense) by model tensor index in by_index (NULL entries dense); returns 0, or 1 after
 * printing the error (free with cli_masks_free either way). cli_permute: the epoch's shuffle of
 * 0..n-1 from (seed, epoch), Fisher-Yates. */
struct cli_masks {
    struct mf_prune_set set;
    uint8_t **set_masks;        /* (set.n) */
    const uint8_t **by_index;   /* (n_tensors) */
};
/* The options every fine-tuning task takes: masks, task, schedule, log (ids above the verbs' own). */
enum {
    OPT_FT_MASKS = OPT_VERB_BASE + 200, OPT_FT_TASK, OPT_FT_STEPS, OPT_FT_EPOCHS, OPT_FT_LR, OPT_FT_WD,
    OPT_FT_WARMUP, OPT_FT_CLIP, OPT_FT_LOG, OPT_FT_END
};
#define CLI_FINETUNE_OPTIONS                                                                                   \
    {"masks", required_argument, 0, OPT_FT_MASKS}, {"task", required_argument, 0, OPT_FT_TASK},                 \
    {"steps", required_argument, 0, OPT_FT_STEPS}, {"epochs", required_argument, 0, OPT_FT_EPOCHS},             \
    {"lr", required_argument, 0, OPT_FT_LR}, {"weight-decay", required_argument, 0, OPT_FT_WD},                 \
    {"warmup", required_argument, 0, OPT_FT_WARMUP}, {"clip", required_argument, 0, OPT_FT_CLIP},               \
    {"log", required_argument, 0, OPT_FT_LOG}
struct cli_finetune {
    const char *masks, *task, *log;
    int64_t steps, epochs, warmup; /* 0 = not given */
    struct mf_train_opts to;       /* lr, weight_decay, clip_norm set by the options */
};
/* Handles one of CLI_FINETUNE_OPTIONS: 1 handled, 0 not one of them, -1 bad value (printed). */
int cli_finetune_option(struct cli_finetune *f, int opt, const char *arg);
/* The schedule of n items (pairs, questions; unit names them) in batches of B, the last incomplete
 * batch dropped: *per_epoch batches, *total = steps, else epochs x per_epoch; sets to->total_steps
 * and warmup_steps. Returns 0, or 1 after printing (no full batch, warm-up longer than the run). */
int cli_finetune_schedule(const char *data, const char *unit, int64_t n, int64_t B, int64_t steps, int64_t epochs,
                          int64_t warmup, struct mf_train_opts *to, int64_t *per_epoch, int64_t *total);
struct mf_atomic_dir;
struct mf_atomic_file;
/* Opens a fine-tuning run's outputs: the atomic directory out (replacing it only with force) and
 * the log file log_path (NULL: none), setting *ad_open / *lf_open. Returns 0, or 1 after printing. */
int cli_finetune_open(const char *out, bool force, const char *log_path, struct mf_atomic_dir *ad, bool *ad_open,
                      struct mf_atomic_file *lf, bool *lf_open);
/* The end of a fine-tuning run: into the open atomic output directory ad, the checkpoint with the
 * trained values (masks applied; meta: n_meta key/value pairs of safetensors metadata), the input's
 * side files, the masks file as given (masks_path, may be NULL) and finetune.json (rep, consumed);
 * then commits the log file (when *lf_open) and the directory (clearing *lf_open and *ad_open).
 * Returns 0, or 1 after printing the error. */
struct json_t;
int cli_finetune_finish(const struct mf_model *m, const float *const *values, const uint8_t *const *masks,
                        const char *masks_path, const char *const *meta, size_t n_meta, struct json_t *rep,
                        struct mf_atomic_dir *ad, bool *ad_open, struct mf_atomic_file *lf, bool *lf_open,
                        const char *out);
int cli_masks_load(const struct mf_model *m, const char *path, struct cli_masks *cm);
void cli_masks_free(struct cli_masks *cm);
void cli_permute(int64_t *p, int64_t n, uint64_t seed, int64_t epoch);

int verb_inspect(int argc, char **argv);
int verb_score(int argc, char **argv);
int verb_eval(int argc, char **argv);
int verb_eval_caption(int argc, char **argv); /* `eval caption` (verb_eval_caption.c) */
int verb_eval_vqa(int argc, char **argv);     /* `eval vqa` (verb_eval_vqa.c) */
int verb_grad(int argc, char **argv);
int verb_finetune(int argc, char **argv);
int verb_finetune_vqa(int argc, char **argv); /* `finetune --task vqa` (verb_finetune_vqa.c) */
int verb_caption(int argc, char **argv);
int verb_world(int argc, char **argv);
int verb_init(int argc, char **argv);
int verb_pretrain(int argc, char **argv);
int verb_metrics(int argc, char **argv);

#endif
