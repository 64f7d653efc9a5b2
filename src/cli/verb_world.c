/*
 * cli/verb_world.c: `multiflow world`: writes the procedural image-caption-question world
 * (include/multiflow/world.h, docs/world.md) into an output directory, atomically.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "multiflow/world.h"

enum { OPT_PRETRAIN = OPT_VERB_BASE, OPT_CALIB, OPT_TRAIN, OPT_TEST, OPT_NOVEL, OPT_SIZE };

static const char help[] =
    "usage: multiflow world --out DIR [--seed S] [--pretrain N] [--test N] [--size PX] [--force] [options]\n"
    "\n"
    "Draws a deterministic world of PNG scenes (1-3 coloured shapes on plain, gradient, noise or striped\n"
    "backgrounds) with captions from a grammar and questions with answers, and writes DIR:\n"
    "pretrain.jsonl, calib.jsonl, retrieval_{train,test}.json, caption_{train,test}.json,\n"
    "vqa_{train,test}.json, answers.json, novel_test.json (held-out compositions), scenes.jsonl (every\n"
    "scene's record), vocab.txt (WordPiece vocabulary; BLIP's loader appends [DEC] and [ENC]), world.json\n"
    "(seed, counts, format version, content hash) and the images under pretrain/ calib/ train/ test/\n"
    "novel/. Use DIR as --images for the annotation files. Same seed, same bytes, for any --threads.\n"
    "The drawing rules, grammar and question templates: docs/world.md.\n"
    "\n"
    "  --out DIR             output directory (must not exist unless --force)\n"
    "  --force               replace DIR if it exists\n"
    "  --seed S              world seed (default 0)\n"
    "  --pretrain N          pretraining images, two captions each (default 50000)\n"
    "  --calib N             calibration images, two captions each (default 1000)\n"
    "  --train N             downstream training images: five captions, five questions (default 5000)\n"
    "  --test N              downstream test images, likewise, no two alike in their captions (default 1000)\n"
    "  --novel N             novel-composition test images, five captions each (default: --test)\n"
    "  --size PX             image side in pixels, 16..1024 (default 64)\n"
    "  --threads N           rendering threads (default: all cores); the output does not depend on it\n"
    "  --json                print the summary as JSON\n"
    "  --progress / --no-progress   force the progress bar on stderr on or off (default: on a terminal)\n"
    "  --quiet               no progress on stderr\n"
    "  --help                this text\n";

int verb_world(int argc, char **argv)
{
    static const struct option opts[] = {CLI_OUT_OPTIONS,
                                         CLI_SEED_OPTION,
                                         {"pretrain", required_argument, 0, OPT_PRETRAIN},
                                         {"calib", required_argument, 0, OPT_CALIB},
                                         {"train", required_argument, 0, OPT_TRAIN},
                                         {"test", required_argument, 0, OPT_TEST},
                                         {"novel", required_argument, 0, OPT_NOVEL},
                                         {"size", required_argument, 0, OPT_SIZE},
                                         {"threads", required_argument, 0, OPT_THREADS},
                                         {"json", no_argument, 0, OPT_JSON},
                                         {"quiet", no_argument, 0, OPT_QUIET},
                                         {"progress", no_argument, 0, OPT_PROGRESS},
                                         {"no-progress", no_argument, 0, OPT_NO_PROGRESS},
                                         {"help", no_argument, 0, OPT_HELP},
                                         {0, 0, 0, 0}};
    struct cli_common c;
    struct mf_world_opts o = mf_world_opts_default();
    int64_t v, novel = -1;
    cli_common_init(&c);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        const int64_t lim = INT64_C(10000000);
        switch (opt) {
        case OPT_HELP: fputs(help, stdout); return 0;
        case OPT_PRETRAIN:
        case OPT_CALIB:
        case OPT_TRAIN:
        case OPT_TEST:
        case OPT_NOVEL: {
            static const char *const names[] = {"pretrain", "calib", "train", "test", "novel"};
            int64_t *dst[] = {&o.n_pretrain, &o.n_calib, &o.n_train, &o.n_test, &novel};
            int k = opt - OPT_PRETRAIN;
            if (!cli_parse_int(names[k], optarg, opt == OPT_TEST ? 1 : 0, lim, dst[k]))
                return 2;
            break;
        }
        case OPT_SIZE:
            if (!cli_parse_int("size", optarg, 16, 1024, &v))
                return 2;
            o.size = (int)v;
            break;
        default: {
            int rc = cli_common_or_usage(&c, opt, optarg, "world");
            if (rc)
                return rc;
        }
        }
    }
    if (cli_no_operands("world", argc, argv))
        return 2;
    if (!c.out)
        return cli_usage_error("world", "--out is required");
    if (cli_check_out(c.out, c.force, true))
        return 1;
    cli_common_finish(&c);
    o.seed = c.seed;
    o.force = c.force;
    o.n_threads = c.threads;
    o.n_novel = novel >= 0 ? novel : o.n_test;

    struct mf_err err = {0};
    struct mf_world_summary s;
    if (mf_world_generate(c.out, &o, &s, &err) != MF_OK)
        return cli_error("%s", err.msg);
    if (c.json) {
        char hash[17];
        snprintf(hash, sizeof hash, "%016" PRIx64, s.content_hash);
        json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:f, s:i}", "out", c.out, "seed", (json_int_t)o.seed,
                              "images", (json_int_t)s.n_images, "captions", (json_int_t)s.n_captions, "questions",
                              (json_int_t)s.n_questions, "content_hash", hash, "seconds", s.seconds, "threads", c.threads);
        char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (txt)
            puts(txt);
        free(txt);
        json_decref(j);
    } else
        printf("world: %" PRId64 " images, %" PRId64 " captions, %" PRId64 " questions in %.1f s (%.0f images/s, %d "
               "threads) -> %s\ncontent hash %016" PRIx64 "\n",
               s.n_images, s.n_captions, s.n_questions, s.seconds, s.n_images / (s.seconds > 0 ? s.seconds : 1e-9),
               c.threads, c.out, s.content_hash);
    return 0;
}
