/* cli/caption_cli.h: what verb_caption.c, verb_eval_caption.c and verb_metrics.c share: the
 * generation options (--beams, --max-len, --min-len, --prompt), the captioning loop over images
 * (batches of images through mf_generate, with a progress bar), and the caption-metrics report. */
#ifndef MF_CLI_CAPTION_CLI_H
#define MF_CLI_CAPTION_CLI_H

#include "cli/cli.h"
#include "multiflow/eval.h"
#include "multiflow/generate.h"

enum { OPT_GEN_BEAMS = OPT_VERB_BASE + 50, OPT_GEN_MAX_LEN, OPT_GEN_MIN_LEN, OPT_GEN_PROMPT };

#define CLI_GENERATE_OPTIONS                                                                                   \
    {"beams", required_argument, 0, OPT_GEN_BEAMS}, {"max-len", required_argument, 0, OPT_GEN_MAX_LEN},       \
        {"min-len", required_argument, 0, OPT_GEN_MIN_LEN}, {"prompt", required_argument, 0, OPT_GEN_PROMPT}

#define CLI_GENERATE_HELP                                                                                      \
    "  --beams N             1 = greedy, else beam search (default 3)\n"                                      \
    "  --max-len N           maximum total length (default 20)\n"                                             \
    "  --min-len N           [SEP] forbidden below this total length (default 5)\n"                           \
    "  --prompt TEXT         decoder prompt (default \"a picture of \" for the original layout, none for\n"    \
    "                        Hugging Face checkpoints; --prompt '' for none)\n"

/* Handles one of CLI_GENERATE_OPTIONS into go: 1 when handled, 0 when opt is not one of them,
 * -1 after a usage message (bad value). */
int cli_generate_option(int opt, const char *arg, struct mf_generate_opts *go);

/* Captions of the n images at paths[] (decoded and resized to the model's resolution), `batch`
 * images per mf_generate call, with a progress bar labelled `what`. captions[i] receives a
 * malloc'd string (the caller frees each); ids (n, go->max_length) and n_ids (n), when not NULL,
 * the generated token ids. Returns 0, or 1 after an error message (captions already made are
 * freed and set to NULL). */
int cli_caption_images(struct mf_session *s, const char *const *paths, int64_t n, int64_t batch,
                       const struct mf_generate_opts *go, const char *what, char **captions, int32_t *ids,
                       int32_t *n_ids);

/* The image field as the annotation file gives it: the joined path less the --images root. */
const char *cli_image_name(const char *path, const char *root);

/* Prints caption metrics: {"images": N, "bleu": [..4], "rouge_l": x, "cider": y} with json, else
 * a few lines naming `what` (the predictions or the data scored). */
void cli_print_caption_metrics(const struct mf_caption_metrics *m, const char *what, bool json);

#endif
