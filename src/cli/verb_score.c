/*
 * cli/verb_score.c: `multiflow score`: the model's own image-text scores for one pair (--image,
 * --text) or every pair of an annotation file (--data, --images), one JSON object per pair on
 * stdout: image, caption, itc (cosine of the normalised projections), itm (match probability),
 * lm (decoder mean NLL per caption token) — each only when the checkpoint has the needed towers.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/common.h"
#include "core/progress.h"
#include "io/annotations.h"
#include "io/image.h"
#include "multiflow/eval.h"

enum { OPT_IMAGE = OPT_VERB_BASE, OPT_TEXT };

static const char help[] =
    "usage: multiflow score --model PATH (--image FILE --text CAPTION | --data ANN --images ROOT) [options]\n"
    "\n"
    "Prints one JSON object per image-caption pair on stdout:\n"
    "  {\"image\": ..., \"caption\": ..., \"itc\": cosine, \"itm\": match probability, \"lm\": decoder NLL}\n"
    "itc/itm need a text encoder with ITC/ITM heads, lm a text decoder; absent fields mean the\n"
    "checkpoint lacks that tower.\n"
    "\n"
    "  --image FILE          one image (JPEG or PNG)\n"
    "  --text CAPTION        its caption\n"
    "  --data ANN            annotation file: JSON array or JSON Lines of {\"image\", \"caption\"}\n"
    "  --images ROOT         folder the annotation image paths are relative to\n"
    CLI_DATA_HELP CLI_COMMON_HELP;

/* Appends one JSON line to out; results are printed only when every pair succeeded, so a bad
 * image or caption halfway leaves no partial output. */
static bool print_pair(json_t *out, const char *image, const char *caption, const struct mf_model_info *info, float itc,
                       float itm, float lm)
{
    json_t *o = json_object();
    json_object_set_new(o, "image", json_string(image));
    json_object_set_new(o, "caption", json_string(caption));
    if (info->has_itc)
        json_object_set_new(o, "itc", json_real(itc));
    if (info->has_itm)
        json_object_set_new(o, "itm", json_real(itm));
    if (info->has_decoder)
        json_object_set_new(o, "lm", json_real(lm));
    return json_array_append_new(out, o) == 0;
}

static void flush_lines(json_t *out)
{
    size_t i;
    json_t *o;
    json_array_foreach(out, i, o) {
        json_dumpf(o, stdout, JSON_COMPACT | JSON_REAL_PRECISION(8));
        fputc('\n', stdout);
    }
}

int verb_score(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS, CLI_DATA_OPTIONS,
                                         {"image", required_argument, 0, OPT_IMAGE},
                                         {"text", required_argument, 0, OPT_TEXT},
                                         {0, 0, 0, 0}};
    struct cli_common c;
    const char *image = NULL, *text = NULL;
    cli_common_init(&c);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_HELP: fputs(help, stdout); return 0;
        case OPT_IMAGE: image = optarg; break;
        case OPT_TEXT: text = optarg; break;
        default: {
            int rc = cli_common_or_usage(&c, opt, optarg, "score");
            if (rc)
                return rc;
        }
        }
    }
    const char *data = c.data, *root = c.images;
    if (cli_no_operands("score", argc, argv))
        return 2;
    if (!c.model)
        return cli_usage_error("score", "--model is required");
    if (!!image != !!text)
        return cli_usage_error("score", "--image and --text go together");
    if (!image && !data)
        return cli_usage_error("score", "give --image and --text, or --data (with --images)");
    if (image && data)
        return cli_usage_error("score", "--image/--text and --data are exclusive");
    if (text && (!text[0] || strlen(text) > MF_ANN_MAX_CAPTION_BYTES)) /* the annotation captions' limits */
        return cli_usage_error("score", "--text is %s (captions are 1 to %d bytes, as in annotation files)",
                               text[0] ? "too long" : "empty", MF_ANN_MAX_CAPTION_BYTES);
    cli_common_finish(&c);
    if (image) { /* a bad image is reported before the model is loaded, as with --data */
        struct mf_err perr = {0};
        if (mf_image_probe(image, NULL, NULL, &perr) != MF_OK)
            return cli_error("%s", perr.msg);
    }

    int rc = 1;
    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_session *s = NULL;
    struct mf_annotations *ann = NULL;
    float *images = NULL, *itc = NULL, *itm = NULL, *lm = NULL;
    int32_t *ids = NULL, *mask = NULL;
    json_t *lines = json_array();

    /* Read the annotations first: a bad data file is reported before the model is loaded. */
    if (data && !(ann = cli_load_annotations(&c, data, root)))
        goto done;
    if (!(m = cli_load_model(&c)))
        goto done;
    const struct mf_model_info *info = mf_model_get_info(m);
    if (mf_session_create(m, c.threads, &s, &err) != MF_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    const int64_t R = info->vision.image_size, L = c.max_tokens, Bmax = c.batch;
    images = malloc((size_t)(Bmax * 3 * R * R) * sizeof(float));
    ids = malloc((size_t)(Bmax * L) * sizeof(int32_t));
    mask = malloc((size_t)(Bmax * L) * sizeof(int32_t));
    itc = malloc((size_t)Bmax * sizeof(float));
    itm = malloc((size_t)Bmax * sizeof(float));
    lm = malloc((size_t)Bmax * sizeof(float));
    if (!images || !ids || !mask || !itc || !itm || !lm) {
        cli_error("out of memory for a batch of %lld pairs", (long long)Bmax);
        goto done;
    }
    if (image) {
        if (mf_image_preprocess(image, (int)R, images, &err) != MF_OK ||
            mf_model_tokenize(m, text, (int)L, ids, mask, &err) != MF_OK ||
            mf_score_pairs(s, images, ids, mask, 1, L, itc, itm, lm, &err) != MF_OK) {
            if (err.code == MF_ERR_NUMERIC)
                mf_err_prefix(&err, image);
            cli_error("%s", err.msg);
            goto done;
        }
        print_pair(lines, image, text, info, itc[0], itm[0], lm[0]);
    } else {
        struct mf_progress pg;
        mf_progress_begin(&pg, "score", "pairs", ann->n_pairs);
        for (int64_t p0 = 0; p0 < ann->n_pairs; p0 += Bmax) {
            int64_t B = MF_MIN(Bmax, ann->n_pairs - p0);
            if (mf_pairs_batch(m, ann, p0, B, L, images, ids, mask, &err) != MF_OK ||
                mf_score_pairs(s, images, ids, mask, B, L, itc, itm, lm, &err) != MF_OK) {
                mf_progress_end(&pg);
                if (err.code == MF_ERR_NUMERIC && err.row >= 0 && err.row < B)
                    mf_pairs_err_prefix(ann, p0 + err.row, &err); /* name the pair, not the batch row */
                cli_error("%s", err.msg);
                goto done;
            }
            for (int64_t b = 0; b < B; b++)
                if (!print_pair(lines, ann->image_path[p0 + b], ann->caption[p0 + b], info, itc[b], itm[b], lm[b])) {
                    cli_error("out of memory");
                    goto done;
                }
            mf_progress_add(&pg, B);
        }
        mf_progress_end(&pg);
    }
    flush_lines(lines);
    if (fflush(stdout) != 0) {
        cli_error("cannot write the scores to stdout");
        goto done;
    }
    rc = 0;
done:
    json_decref(lines);
    free(images);
    free(ids);
    free(mask);
    free(itc);
    free(itm);
    free(lm);
    mf_session_free(s);
    mf_model_free(m);
    mf_annotations_free(ann);
    return rc;
}
