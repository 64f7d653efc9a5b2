/*
 * models/blip_config.c: what a BLIP checkpoint is, from its tensor names and shapes alone: the layout
 * (Hugging Face or original, models.md §4.3 / §4.5), the towers present, the original layout's
 * configuration inferred from shapes (§4.6), and the derived configuration shared by both layouts.
 *
 * Layer counts of the original layout come from the whole set of names: 1 + the highest layer
 * index of any copy of the tower (online, momentum `_m`, and for the text stack the decoder, which
 * has the encoder's depth in BLIP), so a missing tensor, or a missing last layer that another copy
 * still has, is reported by the completeness check (layout.c mf_layout_check_names) instead of
 * loading as a shorter model. Widths come from the first layer that has the tensor.
 * Reads no file: mf_model_load and the fuzz target (tests/fuzz/fuzz_blip_config.c) share it.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/layout.h"

static bool has(const struct mf_model *m, const char *name) { return mf_model_find(m, name) >= 0; }

bool mf_model_has_prefix(const struct mf_model *m, const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; i < m->n_tensors; i++)
        if (strncmp(m->tensors[i].name, prefix, n) == 0)
            return true;
    return false;
}

static const struct mf_model_tensor *get(const struct mf_model *m, const char *name)
{
    int i = mf_model_find(m, name);
    return i >= 0 ? &m->tensors[i] : NULL;
}

/* 1 + the highest layer index under any of the prefixes (NULL-terminated), 0 if none. */
static int64_t count_layers(const struct mf_model *m, const char *const *prefixes)
{
    int64_t n = 0;
    for (size_t i = 0; i < m->n_tensors; i++)
        for (const char *const *p = prefixes; *p; p++) {
            int64_t l = mf_layout_layer_index(m->tensors[i].name, *p);
            if (l + 1 > n)
                n = l + 1;
        }
    return n;
}

/* The tensor fmt (with %d) of the lowest layer below n that has it, trying each fmt in turn. */
static const struct mf_model_tensor *first_layer(const struct mf_model *m, int64_t n, const char *const *fmts)
{
    char name[256];
    for (const char *const *f = fmts; *f; f++)
        for (int64_t l = 0; l < n; l++) {
            snprintf(name, sizeof name, *f, (int)l);
            const struct mf_model_tensor *t = get(m, name);
            if (t)
                return t;
        }
    return NULL;
}

enum mf_status mf_blip_detect(struct mf_model *m, const struct mf_model_opts *o, const struct mf_layout_def **def,
                              struct mf_err *err)
{
    struct mf_model_info *info = &m->info;
    info->family = MF_FAMILY_BLIP;
    if (has(m, "vision_model.embeddings.patch_embedding.weight")) {
        info->layout = MF_LAYOUT_BLIP_HF;
        *def = &mf_layout_blip_hf;
    } else if (has(m, "visual_encoder.patch_embed.proj.weight")) {
        info->layout = MF_LAYOUT_BLIP_ORIG;
        *def = &mf_layout_blip_orig;
    } else {
        return mf_err_set(err, MF_ERR_UNSUPPORTED,
                          "%s: not a BLIP checkpoint: no vision_model.* (Hugging Face) or visual_encoder.* (original) "
                          "patch embedding",
                          m->path);
    }
    info->layout_name = (*def)->name;
    info->has_vision = true;
    info->has_text_encoder = mf_model_has_prefix(m, "text_encoder.");
    info->has_decoder = o->load_decoder && mf_model_has_prefix(m, "text_decoder.");
    /* A head counts as present when any of its tensors is, so a half-present head is incomplete. */
    info->has_itc = info->has_text_encoder &&
                    (mf_model_has_prefix(m, "vision_proj.") || mf_model_has_prefix(m, "text_proj."));
    info->has_itm = info->has_text_encoder && mf_model_has_prefix(m, "itm_head.");
    info->has_momentum = mf_model_has_prefix(m, "visual_encoder_m.");
    return MF_OK;
}

enum mf_status mf_blip_orig_config(struct mf_model *m, const struct mf_model_opts *o, struct mf_err *err)
{
    static const char *const vit_prefixes[] = {"visual_encoder.blocks.", "visual_encoder_m.blocks.", NULL};
    static const char *const text_prefixes[] = {"text_encoder.encoder.layer.", "text_encoder_m.encoder.layer.",
                                                "text_decoder.bert.encoder.layer.", NULL};
    static const char *const fc1_fmts[] = {"visual_encoder.blocks.%d.mlp.fc1.weight",
                                           "visual_encoder_m.blocks.%d.mlp.fc1.weight", NULL};
    static const char *const inter_fmts[] = {"text_encoder.encoder.layer.%d.intermediate.dense.weight",
                                             "text_decoder.bert.encoder.layer.%d.intermediate.dense.weight", NULL};
    static const char *const cross_fmts[] = {"text_encoder.encoder.layer.%d.crossattention.self.key.weight",
                                             "text_decoder.bert.encoder.layer.%d.crossattention.self.key.weight",
                                             NULL};
    struct mf_vit_cfg *v = &m->vision.cfg;
    struct mf_bert_cfg *t = &m->text.cfg;
    const char *file = m->path;
    const struct mf_model_tensor *pe = get(m, "visual_encoder.pos_embed"),
                                 *pw = get(m, "visual_encoder.patch_embed.proj.weight");
    v->n_layer = count_layers(m, vit_prefixes);
    const struct mf_model_tensor *fc1 = first_layer(m, v->n_layer, fc1_fmts);
    if (!pe || !pw)
        return mf_err_set(err, MF_ERR_MISSING, "%s: cannot infer the vision configuration: missing '%s'", file,
                          !pe ? "visual_encoder.pos_embed" : "visual_encoder.patch_embed.proj.weight");
    if (v->n_layer == 0 || !fc1)
        return mf_err_set(err, MF_ERR_MISSING,
                          "%s: cannot infer the vision configuration: no 'visual_encoder.blocks.N.mlp.fc1.weight'", file);
    if (pe->ndim != 3 || pw->ndim != 4 || fc1->ndim != 2 || pw->shape[2] != pw->shape[3] || pw->shape[2] <= 0 ||
        pe->shape[2] <= 0 || fc1->shape[0] <= 0)
        return mf_err_set(err, MF_ERR_SHAPE, "%s: unexpected shapes of visual_encoder.pos_embed / patch_embed / mlp.fc1",
                          file);
    v->d = pe->shape[2];
    v->patch = pw->shape[2];
    v->d_ff = fc1->shape[0];
    int64_t g = (int64_t)llround(sqrt((double)(pe->shape[1] - 1)));
    if (pe->shape[1] < 2 || g * g != pe->shape[1] - 1)
        return mf_err_set(err, MF_ERR_SHAPE, "%s: visual_encoder.pos_embed has %lld positions, not 1 + a square grid",
                          file, (long long)pe->shape[1]);
    v->image_size = g * v->patch;
    v->eps = 1e-6f;
    v->n_head = o->n_head_vision > 0 ? o->n_head_vision : MF_MAX(1, v->d / 64);

    if (!m->info.has_text_encoder && !m->info.has_decoder)
        return MF_OK;
    const char *tp = m->info.has_text_encoder ? "text_encoder" : "text_decoder.bert";
    char name[256];
    snprintf(name, sizeof name, "%s.embeddings.word_embeddings.weight", tp);
    const struct mf_model_tensor *we = get(m, name);
    snprintf(name, sizeof name, "%s.embeddings.position_embeddings.weight", tp);
    const struct mf_model_tensor *pos = get(m, name);
    if (!we)
        we = get(m, "text_encoder.embeddings.word_embeddings.weight");
    if (!pos)
        pos = get(m, "text_encoder.embeddings.position_embeddings.weight");
    t->n_layer = count_layers(m, text_prefixes);
    const struct mf_model_tensor *inter = first_layer(m, t->n_layer, inter_fmts),
                                 *ck = first_layer(m, t->n_layer, cross_fmts);
    if (!we || !pos || !inter || !ck || we->ndim != 2 || pos->ndim != 2 || inter->ndim != 2 || ck->ndim != 2 ||
        we->shape[0] <= 0 || we->shape[1] <= 0 || pos->shape[0] <= 0 || inter->shape[0] <= 0 || ck->shape[1] <= 0)
        return mf_err_set(err, MF_ERR_MISSING,
                          "%s: cannot infer the text configuration: missing or malformed %s", file,
                          !we || we->ndim != 2 ? "word embeddings" : !pos || pos->ndim != 2 ? "position embeddings"
                          : !inter || inter->ndim != 2 ? "'encoder.layer.N.intermediate.dense.weight'"
                                                        : "'encoder.layer.N.crossattention.self.key.weight'");
    t->vocab = we->shape[0];
    t->d = we->shape[1];
    t->max_pos = pos->shape[0];
    t->d_ff = inter->shape[0];
    t->enc_width = ck->shape[1];
    t->eps = 1e-12f;
    t->n_head = o->n_head_text > 0 ? o->n_head_text : MF_MAX(1, t->d / 64);
    const struct mf_model_tensor *vp = get(m, "vision_proj.weight");
    if (!vp || vp->ndim != 2)
        vp = get(m, "text_proj.weight"); /* a missing vision_proj is reported by the completeness check */
    m->info.proj_dim = vp && vp->ndim == 2 ? vp->shape[0] : 0;
    m->info.config_source = "inferred from tensor shapes";
    return MF_OK;
}

static enum mf_status heads_check(int64_t d, int64_t h, const char *what, struct mf_err *err)
{
    if (h <= 0 || d % h != 0)
        return mf_err_set(err, MF_ERR_ARG, "%s: hidden size %lld is not divisible by %lld heads", what,
                          (long long)d, (long long)h);
    return MF_OK;
}

enum mf_status mf_blip_config_finish(struct mf_model *m, struct mf_err *err)
{
    struct mf_model_info *info = &m->info;
    struct mf_vit_cfg *v = &m->vision.cfg;
    enum mf_status st;
    v->grid = v->image_size / v->patch;
    v->n_tok = v->grid * v->grid + 1;
    v->act = MF_ACT_GELU;
    v->fused_qkv = true;
    v->patch_bias = true;
    m->text.cfg.cross_from = 0;
    m->dec.cfg = m->text.cfg; /* the decoder stack has the text encoder's shape in BLIP */
    if ((st = heads_check(v->d, v->n_head, "vision", err)) ||
        ((info->has_text_encoder || info->has_decoder) &&
         (st = heads_check(m->text.cfg.d, m->text.cfg.n_head, "text", err))))
        return st;
    if ((info->has_text_encoder || info->has_decoder) && m->text.cfg.enc_width != v->d)
        return mf_err_set(err, MF_ERR_SHAPE, "%s: text cross-attention width %lld differs from the vision width %lld",
                          m->path, (long long)m->text.cfg.enc_width, (long long)v->d);
    if (!info->has_text_encoder && !info->has_decoder)
        return mf_err_set(err, MF_ERR_MISSING, "%s: the checkpoint has a vision tower but no text encoder or decoder",
                          m->path);
    return MF_OK;
}
