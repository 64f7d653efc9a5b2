/*
 * cli/verb_metrics.c: `multiflow metrics caption`: BLEU-1..4, ROUGE-L and CIDEr-D of captions made
 * elsewhere against reference captions, with the COCO caption evaluation's definitions
 * (multiflow/eval.h mf_caption_metrics; docs/internals/capmetrics.md).
 *
 * Both files are read by io/annotations (JSON array or JSON Lines of {"image", "caption"}): the
 * predictions need one caption string per image and no image twice; the references may give a
 * list per record or one record per caption (the COCO layout) and may hold images that have no
 * prediction (a note says how many; only the predicted images are scored, and CIDEr-D's document
 * frequencies come from their references, as pycocoevalcap run on the results' image ids).
 * Images are matched by the "image" string exactly. Nothing is printed on stdout unless every
 * check passed.
 */
#include <stdlib.h>
#include <string.h>

#include "cli/caption_cli.h"
#include "core/common.h"
#include "io/annotations.h"
#include "multiflow/eval.h"

enum { OPT_PRED = OPT_VERB_BASE, OPT_REFS };

static const char help[] =
    "usage: multiflow metrics caption --pred P.json --refs R.json [--json] [--quiet]\n"
    "\n"
    "Scores generated captions against reference captions with the definitions of the COCO caption\n"
    "evaluation (pycocoevalcap): corpus BLEU-1..4 ('closest' reference length), ROUGE-L (beta 1.2),\n"
    "CIDEr-D (document frequencies from the references, sigma 6, clipped, x10; not x100), after the\n"
    "COCO tokenisation (PTB-style, lower case, punctuation removed).\n"
    "\n"
    "  --pred FILE           predictions: [{\"image\": ..., \"caption\": \"...\"}], one per image (JSON array\n"
    "                        or JSON Lines; the JSON Lines of 'multiflow caption --json' work as they are)\n"
    "  --refs FILE           references: [{\"image\": ..., \"caption\": [\"...\", ...]}] or one record per\n"
    "                        caption; images without a prediction are left out (noted on stderr)\n"
    "  --json                print {\"images\": N, \"bleu\": [b1, b2, b3, b4], \"rouge_l\": x, \"cider\": y}\n"
    "  --quiet               no notes on stderr\n"
    "  --help                this text\n";

struct name_index {
    const char *name;
    int64_t index;
};

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct name_index *)a)->name, ((const struct name_index *)b)->name);
}

static const char *where(const struct mf_annotations *a)
{
    return a->jsonl ? "line" : "record";
}

/* Each prediction record holds one caption string and names an image no other record names. */
static int check_predictions(const struct mf_annotations *p)
{
    for (int64_t i = 1; i < p->n_pairs; i++)
        if (p->record[i] == p->record[i - 1])
            return cli_error("%s: %s %lld: a prediction needs one caption string, not a list", p->label,
                             where(p), (long long)p->record[i]);
    if (p->n_images == p->n_pairs)
        return 0;
    int64_t *first = malloc((size_t)p->n_images * sizeof *first);
    if (!first)
        return cli_error("%s: out of memory", p->label);
    for (int64_t k = 0; k < p->n_images; k++)
        first[k] = -1;
    int rc = 0;
    for (int64_t i = 0; i < p->n_pairs && !rc; i++) {
        int64_t k = p->image_index[i];
        if (first[k] >= 0)
            rc = cli_error("%s: %s %lld: image '%s' already has a prediction (%s %lld)", p->label, where(p),
                           (long long)p->record[i], p->images[k], where(p), (long long)p->record[first[k]]);
        first[k] = i;
    }
    free(first);
    return rc;
}

static int metrics_caption(const char *pred, const char *refs, bool json, bool quiet)
{
    int rc = 1;
    struct mf_err err = {0};
    struct mf_annotations *p = NULL, *r = NULL;
    struct name_index *sorted = NULL;
    int64_t *ref_pred = NULL, *ref_image = NULL;
    const char **ref_text = NULL;
    if (mf_annotations_load(pred, NULL, &p, &err) != MF_OK || mf_annotations_load(refs, NULL, &r, &err) != MF_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (check_predictions(p))
        goto done;
    /* every predicted image among the references */
    sorted = malloc((size_t)r->n_images * sizeof *sorted);
    ref_pred = malloc((size_t)r->n_images * sizeof *ref_pred);
    ref_image = malloc((size_t)r->n_pairs * sizeof *ref_image);
    ref_text = malloc((size_t)r->n_pairs * sizeof *ref_text);
    if (!sorted || !ref_pred || !ref_image || !ref_text) {
        cli_error("out of memory");
        goto done;
    }
    for (int64_t k = 0; k < r->n_images; k++) {
        sorted[k] = (struct name_index){r->images[k], k};
        ref_pred[k] = -1;
    }
    qsort(sorted, (size_t)r->n_images, sizeof *sorted, cmp_name);
    int64_t missing = 0, first_missing = -1;
    for (int64_t i = 0; i < p->n_pairs; i++) {
        struct name_index key = {p->image_path[i], 0};
        const struct name_index *hit = bsearch(&key, sorted, (size_t)r->n_images, sizeof *sorted, cmp_name);
        if (!hit) {
            if (!missing++)
                first_missing = i;
            continue;
        }
        ref_pred[hit->index] = i;
    }
    if (missing) {
        cli_error("%s: %s %lld: image '%s' has no reference caption in %s (%lld of the %lld predicted images "
                  "have none)", p->label, where(p), (long long)p->record[first_missing],
                  p->image_path[first_missing], r->label, (long long)missing, (long long)p->n_pairs);
        goto done;
    }
    int64_t n_refs = 0, unscored = 0;
    for (int64_t j = 0; j < r->n_pairs; j++) {
        int64_t i = ref_pred[r->image_index[j]];
        if (i < 0)
            continue;
        ref_text[n_refs] = r->caption[j];
        ref_image[n_refs++] = i;
    }
    for (int64_t k = 0; k < r->n_images; k++)
        unscored += ref_pred[k] < 0;
    struct mf_caption_set set = {.n_images = p->n_pairs, .candidate = (const char *const *)p->caption,
                                 .image = (const char *const *)p->image_path, .n_refs = n_refs,
                                 .ref = ref_text, .ref_image = ref_image};
    struct mf_caption_metrics m;
    if (mf_caption_metrics(&set, &m, NULL, &err) != MF_OK) {
        cli_error("%s: %s", pred, err.msg);
        goto done;
    }
    if (unscored && !quiet)
        fprintf(stderr, "multiflow: note: %s: %lld of its %lld images have no prediction in %s and are not "
                "scored\n", r->label, (long long)unscored, (long long)r->n_images, p->label);
    cli_print_caption_metrics(&m, pred, json);
    rc = 0;
done:
    free(ref_text);
    free(ref_image);
    free(ref_pred);
    free(sorted);
    mf_annotations_free(r);
    mf_annotations_free(p);
    return rc;
}

int verb_metrics(int argc, char **argv)
{
    static const struct option opts[] = {{"pred", required_argument, 0, OPT_PRED},
                                         {"refs", required_argument, 0, OPT_REFS},
                                         {"json", no_argument, 0, OPT_JSON},
                                         {"quiet", no_argument, 0, OPT_QUIET},
                                         {"help", no_argument, 0, OPT_HELP},
                                         {0, 0, 0, 0}};
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
            fputs(help, stdout);
            return 0;
        }
        return cli_usage_error("metrics", "give a task: 'metrics caption'");
    }
    if (strcmp(argv[1], "caption") != 0)
        return cli_usage_error("metrics", "unknown task '%s' (known: caption)", argv[1]);
    const char *pred = NULL, *refs = NULL;
    bool json = false, quiet = false;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_HELP: fputs(help, stdout); return 0;
        case OPT_PRED: pred = optarg; break;
        case OPT_REFS: refs = optarg; break;
        case OPT_JSON: json = true; break;
        case OPT_QUIET: quiet = true; break;
        default: return cli_usage_error("metrics caption", "unknown option");
        }
    }
    if (cli_no_operands("metrics caption", argc - 1, argv + 1))
        return 2;
    if (!pred || !refs)
        return cli_usage_error("metrics caption", "--pred and --refs are required");
    return metrics_caption(pred, refs, json, quiet);
}
