/*
 * fuzz_blip_config: libFuzzer target for the original BLIP layout's architecture inference from a
 * list of tensor names and shapes (models/blip_config.c) and the completeness check against the
 * layout table (models/layout.c mf_layout_check_names), the path a hostile checkpoint header takes
 * before any weight is read.
 *
 * Input: one tensor per line, "NAME D0 D1 ..." (0 to 4 decimal dimensions; other lines are skipped).
 * Like a safetensors header that passed validation, every dimension is at most 2^31 and a tensor
 * at most 2^40 elements. When everything is accepted, the configuration must be usable: positive
 * widths, layer counts in [1, MF_MAX_LAYERS], and no layer name at or beyond the layer count.
 *
 * Seeds: tests/fuzz/corpus/blip_config/ (the bundled blip-tiny header as such lines).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "models/layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TENSORS 4096

/* Parses one line into t (name copied); false if it is not "NAME [dims]". */
static bool parse_line(const char *s, size_t n, struct mf_model_tensor *t)
{
    size_t k = 0;
    while (k < n && s[k] != ' ')
        k++;
    if (k == 0 || k > 256)
        return false;
    char *name = malloc(k + 1);
    if (!name)
        return false;
    memcpy(name, s, k);
    name[k] = 0;
    int64_t total = 1;
    t->ndim = 0;
    while (k < n) {
        k++; /* the space */
        int64_t v = 0;
        size_t d0 = k;
        while (k < n && s[k] >= '0' && s[k] <= '9' && v <= ((int64_t)1 << 31))
            v = 10 * v + (s[k++] - '0');
        if (k == d0 || (k < n && s[k] != ' ') || v > ((int64_t)1 << 31) || t->ndim == 4 ||
            (v && total > ((int64_t)1 << 40) / v)) {
            free(name);
            return false;
        }
        total *= v;
        t->shape[t->ndim++] = v;
    }
    t->name = name;
    t->dtype = MF_DTYPE_F32;
    t->tied_to = -1;
    t->layer = -1;
    return true;
}

/* Every name "<prefix>N." has N below n_layer. */
static void assert_layers(const struct mf_model *m, const char *prefix, int64_t n_layer)
{
    for (size_t i = 0; i < m->n_tensors; i++) {
        int64_t l = mf_layout_layer_index(m->tensors[i].name, prefix);
        MF_ASSERT(l < n_layer);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mf_err err = {0};
    struct mf_model m;
    memset(&m, 0, sizeof m);
    m.path = (char *)"fuzz";
    m.tensors = calloc(MAX_TENSORS, sizeof *m.tensors);
    if (!m.tensors)
        return 0;
    const char *s = (const char *)data;
    for (size_t i = 0; i < size && m.n_tensors < MAX_TENSORS;) {
        const char *nl = memchr(s + i, '\n', size - i);
        size_t n = nl ? (size_t)(nl - (s + i)) : size - i;
        if (memchr(s + i, 0, n) == NULL && parse_line(s + i, n, &m.tensors[m.n_tensors]))
            m.n_tensors++;
        i += n + 1;
    }
    struct mf_model_opts o = {0}; /* mf_model_opts_default lives in blip.c, outside the fuzz build */
    o.load_decoder = true;
    const struct mf_layout_def *def = NULL;
    if (mf_model_index_names(&m, &err) || mf_blip_detect(&m, &o, &def, &err) || m.info.layout != MF_LAYOUT_BLIP_ORIG ||
        mf_blip_orig_config(&m, &o, &err) || mf_blip_config_finish(&m, &err) || mf_layout_check_names(&m, def, &err))
        goto done;
    const struct mf_vit_cfg *v = &m.vision.cfg;
    const struct mf_bert_cfg *t = &m.text.cfg;
    MF_ASSERT(v->d > 0 && v->d_ff > 0 && v->patch > 0 && v->n_tok > 1 && v->n_head > 0 && v->d % v->n_head == 0);
    MF_ASSERT(v->n_layer >= 1 && v->n_layer <= MF_MAX_LAYERS);
    MF_ASSERT(t->n_layer >= 1 && t->n_layer <= MF_MAX_LAYERS && t->vocab > 0 && t->d > 0 && t->enc_width == v->d);
    assert_layers(&m, "visual_encoder.blocks.", v->n_layer);
    assert_layers(&m, "visual_encoder_m.blocks.", v->n_layer);
    assert_layers(&m, "text_encoder.encoder.layer.", t->n_layer);
    assert_layers(&m, "text_decoder.bert.encoder.layer.", t->n_layer);
done:
    for (size_t i = 0; i < m.n_tensors; i++)
        free((void *)m.tensors[i].name);
    free(m.tensors);
    mf_free(m.by_name);
    return 0;
}
