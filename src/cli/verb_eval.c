/*
 * cli/verb_eval.c: `multiflow eval retrieval`: zero-shot image<->text retrieval recall@1/5/10 on an
 * annotation set, ranking by ITC and re-ranking the top k by ITM as BLIP does (multiflow/eval.h).
 * `eval caption` is cli/verb_eval_caption.c.
 */
#include <jansson.h>
#include <string.h>

#include "cli/cli.h"
#include "io/annotations.h"
#include "multiflow/eval.h"

enum { OPT_K = OPT_VERB_BASE };

static const char help[] =
    "usage: multiflow eval retrieval --model PATH --data ANN --images ROOT [--k 128] [--json] [options]\n"
    "\n"
    "Zero-shot image-to-text and text-to-image retrieval: recall@1/5/10 and their mean. Candidates\n"
    "are ranked by ITC cosine; the top k of every query are re-ranked by ITM logit + cosine (BLIP's\n"
    "evaluation). Every caption of an image is one text; an image's captions are its positives.\n"
    "Captioning: 'multiflow eval caption --help'.\n"
    "\n"
    "  --data ANN            annotation file: JSON array or JSON Lines of {\"image\", \"caption\"}\n"
    "  --images ROOT         folder the annotation image paths are relative to\n"
    CLI_DATA_HELP
    "  --k N                 ITM re-ranking depth (default 128; 0 = ITC only)\n" CLI_COMMON_HELP;

int verb_eval(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS, CLI_DATA_OPTIONS,
                                         {"k", required_argument, 0, OPT_K},
                                         {0, 0, 0, 0}};
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(help, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "caption") == 0)
        return verb_eval_caption(argc - 1, argv + 1);
    if (strcmp(argv[1], "vqa") == 0)
        return verb_eval_vqa(argc - 1, argv + 1);
    if (strcmp(argv[1], "retrieval") != 0)
        return cli_usage_error("eval", "unknown task '%s' (tasks: retrieval, caption, vqa)", argv[1]);
    argc--;
    argv++;

    struct cli_common c;
    int64_t k = 128;
    cli_common_init(&c);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_HELP: fputs(help, stdout); return 0;
        case OPT_K:
            if (!cli_parse_int("k", optarg, 0, 1 << 20, &k))
                return 2;
            break;
        default: {
            int rc = cli_common_or_usage(&c, opt, optarg, "eval retrieval");
            if (rc)
                return rc;
        }
        }
    }
    const char *data = c.data, *root = c.images;
    if (cli_no_operands("eval retrieval", argc, argv))
        return 2;
    if (!c.model || !data)
        return cli_usage_error("eval retrieval", "--model and --data are required");
    cli_common_finish(&c);

    int rc = 1;
    struct mf_err err = {0};
    struct mf_annotations *ann = NULL;
    struct mf_model *m = NULL;
    struct mf_session *s = NULL;
    if (!(ann = cli_load_annotations(&c, data, root)))
        goto done;
    if (!(m = cli_load_model(&c)))
        goto done;
    if (mf_session_create(m, c.threads, &s, &err) != MF_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    struct mf_retrieval_opts ro = mf_retrieval_opts_default();
    ro.k = k;
    ro.batch = c.batch;
    ro.max_tokens = c.max_tokens;
    struct mf_retrieval_result r;
    if (mf_eval_retrieval(s, ann, &ro, &r, &err) != MF_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (c.json) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:b,s:{s:f,s:f,s:f},s:{s:f,s:f,s:f},s:f,s:f}", "task",
                              "retrieval", "model", c.model, "data", data, "images", (json_int_t)r.n_images, "texts",
                              (json_int_t)r.n_texts, "k", (json_int_t)r.k, "itm_rerank", r.itm_reranked, "i2t", "r1",
                              r.i2t[0], "r5", r.i2t[1], "r10", r.i2t[2], "t2i", "r1", r.t2i[0], "r5", r.t2i[1], "r10",
                              r.t2i[2], "mean", r.mean, "seconds", r.seconds);
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
        json_decref(o);
    } else {
        printf("retrieval on %s: %lld images, %lld texts, %s\n", data, (long long)r.n_images, (long long)r.n_texts,
               r.itm_reranked ? "ITC ranking + ITM re-ranking" : "ITC ranking only");
        if (r.itm_reranked)
            printf("  re-ranked top k = %lld\n", (long long)r.k);
        printf("  image->text  R@1 %6.2f  R@5 %6.2f  R@10 %6.2f\n", r.i2t[0], r.i2t[1], r.i2t[2]);
        printf("  text->image  R@1 %6.2f  R@5 %6.2f  R@10 %6.2f\n", r.t2i[0], r.t2i[1], r.t2i[2]);
        printf("  mean recall  %6.2f   (%.1f s)\n", r.mean, r.seconds);
    }
    rc = 0;
done:
    mf_session_free(s);
    mf_model_free(m);
    mf_annotations_free(ann);
    return rc;
}
