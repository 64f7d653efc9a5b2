/*
 * cli/verb_init.c: `multiflow init --config FILE --out DIR`: a randomly initialised BLIP in the
 * original Salesforce layout (models/init.c) with its vocabulary, as a checkpoint directory every
 * other verb loads; what `multiflow pretrain` starts from. The directory is written atomically and
 * loaded once before it is committed.
 */
#include <jansson.h>
#include <string.h>

#include "cli/cli.h"
#include "io/fs.h"
#include "multiflow/model.h"

enum { OPT_CONFIG = OPT_VERB_BASE, OPT_DTYPE };

static const char help[] =
    "usage: multiflow init --config FILE --vocab FILE --out DIR [--seed S] [--dtype f32|f16|bf16] [--force]\n"
    "\n"
    "Writes DIR/model.safetensors: a BLIP_Pretrain (original Salesforce layout: visual_encoder,\n"
    "text_encoder, text_decoder with its LM head, vision_proj, text_proj, itm_head, temp, momentum\n"
    "copies *_m, image_queue/text_queue, queue_ptr) with random weights drawn by BLIP's own init rules,\n"
    "DIR/vocab.txt (a copy of --vocab; the word embeddings get its size + 2 rows for [DEC] and [ENC])\n"
    "and DIR/init.json (architecture, seed, dtype). Same config, vocabulary, seed and dtype: same bytes.\n"
    "\n"
    "  --config FILE         architecture JSON, e.g. data/configs/blip-mini.json:\n"
    "                        {\"vision\": {\"width\", \"layers\", \"heads\", \"mlp\", \"patch\", \"image_size\"},\n"
    "                         \"text\": {\"width\", \"layers\", \"heads\", \"ffn\", \"positions\"},\n"
    "                         \"embed_dim\", \"queue_size\"}   (heads optional: must be max(1, width/64))\n"
    "  --vocab FILE          BERT vocab.txt ([PAD] [UNK] [CLS] [SEP] required)\n"
    "  --out DIR             output directory (must not exist unless --force)\n"
    "  --force               replace DIR if it exists\n"
    "  --seed S              random seed (default 0)\n"
    "  --dtype T             f32 (default), f16 or bf16\n"
    "  --json                print a JSON summary\n"
    "  --help                this text\n";

static json_t *arch_json(const struct mf_blip_arch *a)
{
    return json_pack("{s:{s:I,s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I,s:I},s:I,s:I,s:I}", "vision", "width",
                     (json_int_t)a->vision_width, "layers", (json_int_t)a->vision_layers, "heads",
                     (json_int_t)a->vision_heads, "mlp", (json_int_t)a->vision_mlp, "patch", (json_int_t)a->patch,
                     "image_size", (json_int_t)a->image_size, "text", "width", (json_int_t)a->text_width, "layers",
                     (json_int_t)a->text_layers, "heads", (json_int_t)a->text_heads, "ffn", (json_int_t)a->text_ffn,
                     "positions", (json_int_t)a->text_positions, "embed_dim", (json_int_t)a->embed_dim,
                     "queue_size", (json_int_t)a->queue_size, "vocab_rows", (json_int_t)a->vocab);
}

int verb_init(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, 0, OPT_CONFIG},
                                         {"dtype", required_argument, 0, OPT_DTYPE},
                                         {"vocab", required_argument, 0, OPT_VOCAB},
                                         {"json", no_argument, 0, OPT_JSON},
                                         {"quiet", no_argument, 0, OPT_QUIET},
                                         {"help", no_argument, 0, OPT_HELP},
                                         CLI_OUT_OPTIONS,
                                         CLI_SEED_OPTION,
                                         {0, 0, 0, 0}};
    struct cli_common c;
    const char *config = NULL;
    enum mf_dtype dtype = MF_DTYPE_F32;
    cli_common_init(&c);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_HELP: fputs(help, stdout); return 0;
        case OPT_CONFIG: config = optarg; break;
        case OPT_DTYPE:
            if (strcmp(optarg, "f32") == 0)
                dtype = MF_DTYPE_F32;
            else if (strcmp(optarg, "f16") == 0)
                dtype = MF_DTYPE_F16;
            else if (strcmp(optarg, "bf16") == 0)
                dtype = MF_DTYPE_BF16;
            else
                return cli_usage_error("init", "--dtype: expected f32, f16 or bf16, got '%s'", optarg);
            break;
        default: {
            int rc = cli_common_or_usage(&c, opt, optarg, "init");
            if (rc)
                return rc;
        }
        }
    }
    if (cli_no_operands("init", argc, argv))
        return 2;
    if (!config || !c.out || !c.vocab)
        return cli_usage_error("init", "--config, --vocab and --out are required");
    if (cli_check_out(c.out, c.force, true))
        return 1;
    const char *vocab = c.vocab, *out = c.out;
    const uint64_t seed = c.seed;
    struct mf_err err = {0};
    struct mf_blip_arch a;
    struct mf_atomic_dir ad = {0};
    bool ad_open = false;
    int rc = 1;
    json_t *info = NULL;
    char path[MF_PATH_MAX];
    if (mf_blip_arch_load(config, &a, &err) || mf_blip_arch_set_vocab(&a, vocab, &err) ||
        mf_atomic_dir_open(out, c.force, &ad, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    ad_open = true;
    if (!mf_fs_join(path, sizeof path, ad.tmp, "model.safetensors") ||
        mf_blip_init_write(&a, seed, dtype, path, &err) ||
        !mf_fs_join(path, sizeof path, ad.tmp, "vocab.txt") || mf_fs_copy_file(vocab, path, &err)) {
        cli_error("%s", err.msg[0] ? err.msg : "output path too long");
        goto done;
    }
    /* it must load as every verb loads it */
    struct mf_model *m = NULL;
    struct mf_model_opts mo = mf_model_opts_default();
    if (mf_model_load(ad.tmp, &mo, &m, &err)) {
        mf_fs_temp_to_final(err.msg, sizeof err.msg);
        cli_error("the initialised model does not load: %s", err.msg);
        goto done;
    }
    mf_model_free(m);
    const int64_t params = mf_blip_arch_params(&a);
    info = json_object();
    json_object_set_new(info, "config", json_string(config));
    json_object_set_new(info, "arch", arch_json(&a));
    json_object_set_new(info, "seed", json_integer((json_int_t)seed));
    json_object_set_new(info, "dtype", json_string(mf_dtype_name(dtype)));
    json_object_set_new(info, "stored_values", json_integer(params));
    if (!mf_fs_join(path, sizeof path, ad.tmp, "init.json") ||
        json_dump_file(info, path, JSON_INDENT(1) | JSON_SORT_KEYS) != 0) {
        cli_error("%s/init.json: cannot write", out);
        goto done;
    }
    ad_open = false;
    if (mf_atomic_dir_commit(&ad, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (c.json) {
        json_object_set_new(info, "out", json_string(out));
        json_dumpf(info, stdout, JSON_COMPACT | JSON_SORT_KEYS);
        fputc('\n', stdout);
    } else {
        printf("%s: random BLIP (original layout), %lld stored values (%s), vision %lldx%lld, text %lldx%lld, "
               "vocabulary %lld rows, seed %llu\n",
               out, (long long)params, mf_dtype_name(dtype), (long long)a.vision_layers, (long long)a.vision_width,
               (long long)a.text_layers, (long long)a.text_width, (long long)a.vocab, (unsigned long long)seed);
    }
    rc = fflush(stdout) != 0 ? cli_error("cannot write to stdout") : 0;
done:
    json_decref(info);
    if (ad_open)
        mf_atomic_dir_abort(&ad);
    return rc;
}
