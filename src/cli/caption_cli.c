/*
 * cli/caption_cli.c: the captioning pieces verbs share (cli/caption_cli.h): generation options,
 * the loop that captions a list of images in batches, and the caption-metrics report.
 */
#include "cli/caption_cli.h"

#include <stdlib.h>
#include <string.h>

#include "core/progress.h"
#include "io/image.h"
#include "text/wordpiece.h"

int cli_generate_option(int opt, const char *arg, struct mf_generate_opts *go)
{
    int64_t v;
    switch (opt) {
    case OPT_GEN_BEAMS:
        if (!cli_parse_int("beams", arg, 1, MF_GENERATE_MAX_BEAMS, &v))
            return -1;
        go->num_beams = (int)v;
        return 1;
    case OPT_GEN_MAX_LEN:
        if (!cli_parse_int("max-len", arg, 2, 4096, &v))
            return -1;
        go->max_length = (int)v;
        return 1;
    case OPT_GEN_MIN_LEN:
        if (!cli_parse_int("min-len", arg, 0, 4096, &v))
            return -1;
        go->min_length = (int)v;
        return 1;
    case OPT_GEN_PROMPT: go->prompt = arg; return 1;
    default: return 0;
    }
}

const char *cli_image_name(const char *path, const char *root)
{
    size_t n = root ? strlen(root) : 0;
    if (n && strncmp(path, root, n) == 0 && path[0] != '\0') {
        path += n;
        while (*path == '/')
            path++;
    }
    return path;
}

int cli_caption_images(struct mf_session *s, const char *const *paths, int64_t n, int64_t batch,
                       const struct mf_generate_opts *go, const char *what, char **captions, int32_t *ids,
                       int32_t *n_ids)
{
    struct mf_err err = {0};
    const struct mf_model *m = mf_session_model(s);
    const int64_t R = mf_model_get_info(m)->vision.image_size, L = go->max_length;
    const size_t text_cap = (size_t)L * (MF_VOCAB_MAX_TOKEN_BYTES + 1) + 1;
    float *px = malloc((size_t)(batch * 3 * R * R) * sizeof(float));
    int32_t *bids = malloc((size_t)(batch * L) * sizeof(int32_t)), *bn = malloc((size_t)batch * sizeof(int32_t));
    char *text = malloc(text_cap);
    int rc = 1;
    for (int64_t i = 0; i < n; i++)
        captions[i] = NULL;
    if (!px || !bids || !bn || !text) {
        cli_error("out of memory for a batch of %lld images", (long long)batch);
        goto done;
    }
    struct mf_progress pg;
    mf_progress_begin(&pg, what, "images", n);
    for (int64_t i0 = 0; i0 < n; i0 += batch) {
        const int64_t B = MF_MIN(batch, n - i0);
        for (int64_t b = 0; b < B; b++)
            if (mf_image_preprocess(paths[i0 + b], (int)R, px + b * 3 * R * R, &err) != MF_OK)
                goto fail;
        if (mf_generate(s, px, B, go, bids, bn, NULL, &err) != MF_OK)
            goto fail;
        for (int64_t b = 0; b < B; b++) {
            const int32_t *row = bids + b * L;
            if (mf_model_decode(m, row, bn[b], text, text_cap, &err) != MF_OK)
                goto fail;
            if (!(captions[i0 + b] = strdup(text))) {
                mf_err_set(&err, MF_ERR_NOMEM, "out of memory");
                goto fail;
            }
            if (ids)
                memcpy(ids + (i0 + b) * L, row, (size_t)L * sizeof(int32_t));
            if (n_ids)
                n_ids[i0 + b] = bn[b];
        }
        mf_progress_add(&pg, B);
    }
    mf_progress_end(&pg);
    rc = 0;
    goto done;
fail:
    mf_progress_end(&pg);
    cli_error("%s", err.msg);
    for (int64_t i = 0; i < n; i++) {
        free(captions[i]);
        captions[i] = NULL;
    }
done:
    free(px);
    free(bids);
    free(bn);
    free(text);
    return rc;
}

void cli_print_caption_metrics(const struct mf_caption_metrics *m, const char *what, bool json)
{
    if (json) {
        printf("{\"images\": %lld, \"bleu\": [%.12g, %.12g, %.12g, %.12g], \"rouge_l\": %.12g, \"cider\": %.12g}\n",
               (long long)m->n_images, m->bleu[0], m->bleu[1], m->bleu[2], m->bleu[3], m->rouge_l, m->cider);
    } else {
        printf("caption metrics of %s on %lld images (%lld references; COCO caption evaluation definitions)\n",
               what, (long long)m->n_images, (long long)m->n_refs);
        printf("  BLEU-1 %.4f  BLEU-2 %.4f  BLEU-3 %.4f  BLEU-4 %.4f\n", m->bleu[0], m->bleu[1], m->bleu[2],
               m->bleu[3]);
        printf("  ROUGE-L %.4f\n  CIDEr-D %.4f\n", m->rouge_l, m->cider);
    }
}
