/*
 * cli/verb_inspect.c: `multiflow inspect --model M [--json]`: the layout detected, towers, the
 * configuration values in use (eps included), every tensor (dtype, shape, role, prunable,
 * modality, tying), parameter counts and exact-zero sparsity per modality.
 */
#include <jansson.h>
#include <string.h>

#include "cli/cli.h"
#include "core/common.h"

enum { OPT_TENSORS = OPT_VERB_BASE };

static const char help[] =
    "usage: multiflow inspect --model PATH [--tensors] [--json] [--vocab FILE] [--heads N]\n"
    "\n"
    "Prints the checkpoint layout, towers, configuration in use, parameter counts and sparsity\n"
    "(exact zeros) per modality; with --tensors (always in --json) every tensor with dtype, shape,\n"
    "role, prunable flag and modality.\n"
    "\n"
    "  --tensors             list every tensor\n" CLI_COMMON_HELP;

/* Number of exactly-zero elements (+0 or -0) in raw data. */
static int64_t count_zeros(const void *data, enum mf_dtype dt, int64_t n)
{
    const unsigned char *p = data;
    int64_t z = 0;
    size_t es = mf_dtype_size(dt);
    for (int64_t i = 0; i < n; i++) {
        const unsigned char *e = p + (size_t)i * es;
        switch (dt) {
        case MF_DTYPE_F32: { uint32_t u; memcpy(&u, e, 4); z += (u & 0x7fffffffu) == 0; break; }
        case MF_DTYPE_F16:
        case MF_DTYPE_BF16: { uint16_t u; memcpy(&u, e, 2); z += (u & 0x7fffu) == 0; break; }
        case MF_DTYPE_F64: { uint64_t u; memcpy(&u, e, 8); z += (u & 0x7fffffffffffffffull) == 0; break; }
        default: break;
        }
    }
    return z;
}

struct mod_count {
    int64_t params, prunable, zeros;
};

int verb_inspect(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS, {"tensors", no_argument, 0, OPT_TENSORS}, {0, 0, 0, 0}};
    struct cli_common c;
    bool list_tensors = false;
    cli_common_init(&c);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (opt == OPT_HELP) {
            fputs(help, stdout);
            return 0;
        }
        if (opt == OPT_TENSORS) {
            list_tensors = true;
            continue;
        }
        int rc = cli_common_or_usage(&c, opt, optarg, "inspect");
        if (rc)
            return rc;
    }
    if (cli_no_operands("inspect", argc, argv))
        return 2;
    if (!c.model)
        return cli_usage_error("inspect", "--model is required");
    cli_common_finish(&c);
    c.vocab_optional = true; /* inspect never tokenises */
    struct mf_model *m = cli_load_model(&c);
    if (!m)
        return 1;
    const struct mf_model_info *info = mf_model_get_info(m);

    struct mod_count mc[4] = {{0}};
    int64_t total = 0, tied_params = 0, unused_params = 0;
    size_t nt = mf_model_n_tensors(m);
    int64_t *zeros = calloc(nt ? nt : 1, sizeof *zeros);
    for (size_t i = 0; i < nt; i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        int64_t n = 1;
        for (int d = 0; d < t->ndim; d++)
            n *= t->shape[d];
        total += n;
        if (t->tied_to >= 0) {
            tied_params += n;
            continue;
        }
        if (strcmp(t->role, "unused") == 0) {
            unused_params += n;
            continue;
        }
        mc[t->modality].params += n;
        if (t->prunable) {
            zeros[i] = count_zeros(t->data, t->dtype, n);
            mc[t->modality].prunable += n;
            mc[t->modality].zeros += zeros[i];
        }
    }
    int64_t pr_all = 0, z_all = 0;
    for (int k = 0; k < 4; k++) {
        pr_all += mc[k].prunable;
        z_all += mc[k].zeros;
    }

    const char *towers[6];
    int n_towers = 0;
    if (info->has_vision)
        towers[n_towers++] = "vision";
    if (info->has_text_encoder)
        towers[n_towers++] = "text_encoder";
    if (info->has_decoder)
        towers[n_towers++] = "text_decoder";
    if (info->has_itc)
        towers[n_towers++] = "itc_heads";
    if (info->has_itm)
        towers[n_towers++] = "itm_head";
    if (info->has_momentum)
        towers[n_towers++] = "momentum_copies";
    const char *clean = info->clean == MF_CLEAN_BLIP ? "blip" : info->clean == MF_CLEAN_MULTIFLOW ? "multiflow" : "none";

    if (c.json) {
        json_t *root = json_object(), *jt = json_array(), *tensors = json_array(), *mods = json_object();
        json_object_set_new(root, "model", json_string(c.model));
        json_object_set_new(root, "family", json_string("blip"));
        json_object_set_new(root, "layout", json_string(info->layout_name));
        json_object_set_new(root, "config_source", json_string(info->config_source));
        for (int i = 0; i < n_towers; i++)
            json_array_append_new(jt, json_string(towers[i]));
        json_object_set_new(root, "towers", jt);
        json_object_set_new(
            root, "vision",
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "hidden", (json_int_t)info->vision.d, "layers",
                      (json_int_t)info->vision.n_layer, "heads", (json_int_t)info->vision.n_head, "mlp",
                      (json_int_t)info->vision.d_ff, "patch", (json_int_t)info->vision.patch, "image_size",
                      (json_int_t)info->vision.image_size, "tokens", (json_int_t)info->vision.n_tok,
                      "layer_norm_eps", (double)info->vision.eps));
        json_object_set_new(
            root, "text",
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "hidden", (json_int_t)info->text.d, "layers",
                      (json_int_t)info->text.n_layer, "heads", (json_int_t)info->text.n_head, "ffn",
                      (json_int_t)info->text.d_ff, "vocab", (json_int_t)info->text.vocab, "max_positions",
                      (json_int_t)info->text.max_pos, "cross_width", (json_int_t)info->text.enc_width,
                      "layer_norm_eps", (double)info->text.eps));
        json_object_set_new(root, "tokens",
                            json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:s}", "itm_first", info->first_token_itm,
                                      "decoder_first", info->first_token_dec, "pad", info->pad_id, "cls",
                                      info->cls_id, "sep", info->sep_id, "max_tokens", info->max_tokens,
                                      "caption_clean", clean));
        json_object_set_new(root, "proj_dim", json_integer(info->proj_dim));
        for (int k = 1; k < 4; k++) {
            if (!mc[k].params)
                continue;
            json_object_set_new(mods, mf_modality_name((enum mf_modality)k),
                                json_pack("{s:I,s:I,s:I,s:f}", "params", (json_int_t)mc[k].params, "prunable",
                                          (json_int_t)mc[k].prunable, "zeros", (json_int_t)mc[k].zeros,
                                          "sparsity", mc[k].prunable ? (double)mc[k].zeros / (double)mc[k].prunable : 0.0));
        }
        json_object_set_new(root, "modalities", mods);
        json_object_set_new(root, "params",
                            json_pack("{s:I,s:I,s:I,s:I,s:I,s:f}", "total", (json_int_t)total, "other",
                                      (json_int_t)mc[0].params, "tied_copies", (json_int_t)tied_params, "unused",
                                      (json_int_t)unused_params, "prunable", (json_int_t)pr_all, "sparsity",
                                      pr_all ? (double)z_all / (double)pr_all : 0.0));
        for (size_t i = 0; i < nt; i++) {
            const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
            json_t *shape = json_array();
            for (int d = 0; d < t->ndim; d++)
                json_array_append_new(shape, json_integer(t->shape[d]));
            json_t *o = json_pack("{s:s,s:s,s:o,s:s,s:b,s:s}", "name", t->name, "dtype", mf_dtype_name(t->dtype),
                                  "shape", shape, "role", t->role, "prunable", t->prunable, "modality",
                                  mf_modality_name(t->modality));
            if (t->tied_to >= 0)
                json_object_set_new(o, "tied_to", json_string(mf_model_tensor_at(m, (size_t)t->tied_to)->name));
            if (t->prunable) {
                int64_t n = 1;
                for (int d = 0; d < t->ndim; d++)
                    n *= t->shape[d];
                json_object_set_new(o, "sparsity", json_real((double)zeros[i] / (double)n));
            }
            json_array_append_new(tensors, o);
        }
        json_object_set_new(root, "tensors", tensors);
        json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(8));
        fputc('\n', stdout);
        json_decref(root);
    } else {
        printf("model:   %s\n", c.model);
        printf("layout:  %s (configuration: %s)\n", info->layout_name, info->config_source);
        printf("towers: ");
        for (int i = 0; i < n_towers; i++)
            printf(" %s", towers[i]);
        printf("\nvision:  hidden %lld, layers %lld, heads %lld, mlp %lld, patch %lld, image %lld px (%lld tokens), "
               "LayerNorm eps %g\n",
               (long long)info->vision.d, (long long)info->vision.n_layer, (long long)info->vision.n_head,
               (long long)info->vision.d_ff, (long long)info->vision.patch, (long long)info->vision.image_size,
               (long long)info->vision.n_tok, (double)info->vision.eps);
        printf("text:    hidden %lld, layers %lld, heads %lld, ffn %lld, vocab %lld, positions %lld, cross width "
               "%lld, LayerNorm eps %g\n",
               (long long)info->text.d, (long long)info->text.n_layer, (long long)info->text.n_head,
               (long long)info->text.d_ff, (long long)info->text.vocab, (long long)info->text.max_pos,
               (long long)info->text.enc_width, (double)info->text.eps);
        printf("tokens:  ITM first token %d, decoder first token %d, [PAD] %d [CLS] %d [SEP] %d, max tokens %d, "
               "caption cleaning %s\n",
               info->first_token_itm, info->first_token_dec, info->pad_id, info->cls_id, info->sep_id,
               info->max_tokens, clean);
        printf("\n%-10s %14s %14s %12s\n", "modality", "parameters", "prunable", "sparsity");
        for (int k = 1; k < 4; k++)
            if (mc[k].params)
                printf("%-10s %14lld %14lld %11.2f%%\n", mf_modality_name((enum mf_modality)k), (long long)mc[k].params,
                       (long long)mc[k].prunable, mc[k].prunable ? 100.0 * (double)mc[k].zeros / (double)mc[k].prunable : 0.0);
        printf("%-10s %14lld\n", "other", (long long)mc[0].params);
        printf("%-10s %14lld %14lld %11.2f%%\n", "all", (long long)(total - tied_params - unused_params),
               (long long)pr_all, pr_all ? 100.0 * (double)z_all / (double)pr_all : 0.0);
        printf("tied copies (mask inherited): %lld parameters; unused by the forward pass: %lld; file total %lld\n",
               (long long)tied_params, (long long)unused_params, (long long)total);
        if (list_tensors)
            printf("\n%-72s %-5s %-16s %-8s %-8s %s\n", "tensor", "dtype", "shape", "prunable", "modality", "role");
        for (size_t i = 0; list_tensors && i < nt; i++) {
            const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
            char shape[96];
            mf_shape_str(shape, sizeof shape, t->ndim, t->shape);
            printf("%-72s %-5s %-16s %-8s %-8s %s", t->name, mf_dtype_name(t->dtype), shape,
                   t->prunable ? "yes" : "no", mf_modality_name(t->modality), t->role);
            if (t->tied_to >= 0)
                printf(" (mask of %s)", mf_model_tensor_at(m, (size_t)t->tied_to)->name);
            putchar('\n');
        }
    }
    free(zeros);
    mf_model_free(m);
    return 0;
}
