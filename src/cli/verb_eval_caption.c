/*
 * cli/verb_eval_caption.c: `multiflow eval caption`: BLIP's caption evaluation on an annotation
 * set: one caption per distinct image (multiflow/generate.h, 3 beams, max 20, min 5 by default, as
 * configs/caption_coco.yaml), scored against every reference caption of that image with BLEU-1..4,
 * ROUGE-L and CIDEr-D as the COCO caption evaluation defines them (mf_caption_metrics; CIDEr-D's
 * document frequencies from the references of the images scored). --predictions writes the
 * captions in the COCO result format [{"image", "caption"}], atomically, only when everything
 * succeeded; nothing is printed on stdout before that.
 * Reference: salesforce/BLIP train_caption.py evaluate + coco_caption_eval.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli/caption_cli.h"
#include "io/annotations.h"
#include "io/fs.h"

enum { OPT_PREDICTIONS = OPT_VERB_BASE };

static const char help[] =
    "usage: multiflow eval caption --model PATH --data ANN --images ROOT [--beams 3] [--max-len 20]\n"
    "                              [--min-len 5] [--prompt TEXT] [--predictions FILE] [--json] [options]\n"
    "\n"
    "Captions every distinct image of ANN with the checkpoint's text decoder (as 'multiflow caption')\n"
    "and scores the captions against the image's reference captions (every caption of the image in\n"
    "ANN) with the COCO caption evaluation's BLEU-1..4, ROUGE-L and CIDEr-D (as 'multiflow metrics\n"
    "caption'; CIDEr-D not x100). --json prints {\"images\": N, \"bleu\": [b1, b2, b3, b4],\n"
    "\"rouge_l\": x, \"cider\": y}.\n"
    "\n"
    "  --data ANN            annotation file: JSON array or JSON Lines of {\"image\", \"caption\"} (a\n"
    "                        string or a list); the references\n"
    "  --images ROOT         folder the annotation image paths are relative to\n"
    CLI_DATA_HELP
    CLI_GENERATE_HELP
    "  --predictions FILE    also write [{\"image\", \"caption\"}] (image as in ANN) to FILE\n"
    "  (--batch N: images per generation call; --pairs N: only the first N pairs and their images)\n"
    CLI_COMMON_HELP;

/* Writes and commits the predictions, or returns 1 after an error message with af aborted. */
static int write_predictions(const char *path, const struct mf_annotations *ann, const char *root,
                             char *const *captions, struct mf_atomic_file *af)
{
    struct mf_err err = {0};
    json_t *a = json_array();
    int rc = 1;
    for (int64_t k = 0; a && k < ann->n_images; k++) {
        json_t *o = json_pack("{s:s,s:s}", "image", cli_image_name(ann->images[k], root), "caption", captions[k]);
        if (!o || json_array_append_new(a, o)) {
            cli_error("out of memory");
            goto done;
        }
    }
    if (!a || json_dumpf(a, af->f, JSON_INDENT(1)) != 0 || fputc('\n', af->f) == EOF) {
        cli_error("%s: cannot write the predictions", path);
        goto done;
    }
    json_decref(a);
    a = NULL;
    if (mf_atomic_commit(af, &err) != MF_OK) { /* aborts on failure */
        cli_error("%s", err.msg);
        return 1;
    }
    return 0;
done:
    json_decref(a);
    mf_atomic_abort(af);
    return rc;
}

int verb_eval_caption(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS, CLI_DATA_OPTIONS, CLI_GENERATE_OPTIONS,
                                         {"predictions", required_argument, 0, OPT_PREDICTIONS},
                                         {0, 0, 0, 0}};
    struct cli_common c;
    struct mf_generate_opts go = mf_generate_opts_default();
    const char *pred_path = NULL;
    cli_common_init(&c);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_HELP: fputs(help, stdout); return 0;
        case OPT_PREDICTIONS: pred_path = optarg; break;
        default: {
            int g = cli_generate_option(opt, optarg, &go);
            if (g < 0)
                return 2;
            if (g > 0)
                break;
            int rc = cli_common_or_usage(&c, opt, optarg, "eval caption");
            if (rc)
                return rc;
        }
        }
    }
    const char *data = c.data, *root = c.images;
    if (cli_no_operands("eval caption", argc, argv))
        return 2;
    if (!c.model || !data)
        return cli_usage_error("eval caption", "--model and --data are required");
    cli_common_finish(&c);

    int rc = 1;
    struct mf_err err = {0};
    struct mf_annotations *ann = NULL;
    struct mf_model *m = NULL;
    struct mf_session *s = NULL;
    char **captions = NULL;
    struct mf_atomic_file af = {0};
    bool af_open = false;
    if (!(ann = cli_load_annotations(&c, data, root)))
        goto done;
    if (!(m = cli_load_model(&c)))
        goto done;
    if (!mf_model_get_info(m)->has_decoder) {
        cli_error("%s: this checkpoint has no text decoder (text_decoder.*), so it cannot caption", c.model);
        goto done;
    }
    if (mf_session_create(m, c.threads, &s, &err) != MF_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (pred_path) { /* before the first forward: a bad path fails now */
        if (mf_atomic_open(pred_path, &af, &err) != MF_OK) {
            cli_error("%s", err.msg);
            goto done;
        }
        af_open = true;
    }
    if (!(captions = calloc((size_t)ann->n_images, sizeof *captions))) {
        cli_error("out of memory for %lld captions", (long long)ann->n_images);
        goto done;
    }
    if (cli_caption_images(s, (const char *const *)ann->images, ann->n_images, c.batch, &go, "eval caption",
                           captions, NULL, NULL))
        goto done;
    /* every caption of the annotation file is a reference of its image */
    struct mf_caption_set set = {.n_images = ann->n_images, .candidate = (const char *const *)captions,
                                 .image = (const char *const *)ann->images, .n_refs = ann->n_pairs,
                                 .ref = (const char *const *)ann->caption, .ref_image = ann->image_index};
    struct mf_caption_metrics cm;
    if (mf_caption_metrics(&set, &cm, NULL, &err) != MF_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (pred_path) {
        af_open = false;
        if (write_predictions(pred_path, ann, root, captions, &af))
            goto done;
    }
    cli_print_caption_metrics(&cm, data, c.json);
    if (fflush(stdout) != 0) {
        cli_error("cannot write to stdout");
        goto done;
    }
    rc = 0;
done:
    if (af_open)
        mf_atomic_abort(&af);
    for (int64_t k = 0; captions && k < ann->n_images; k++)
        free(captions[k]);
    free(captions);
    mf_session_free(s);
    mf_model_free(m);
    mf_annotations_free(ann);
    return rc;
}
