/*
 * models/blip.c: BLIP (models.md §4): layout detection, configuration (config.json with the HF
 * defaults of §4.2, or inferred from tensor shapes for the original layout), tokenizer set-up,
 * and the public forward entry points of multiflow/model.h: ITC features, ITM probability,
 * decoder NLL.
 *
 * Decisions (models.md §11): the image-grounded encoder starts with [ENC] in the original layout
 * and [CLS] in the HF layout (override: opts.itm_token); the decoder always starts with [DEC];
 * vision LayerNorm eps from config.json, else 1e-5 (HF) / 1e-6 (original). Does not implement
 * the HF BlipModel (double post-LN pooler) or resolution changes (§2.6); caption generation lives
 * in models/generate.c.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/fs.h"
#include "models/grad.h"
#include "models/layout.h"
#include "nn/nn.h"
#include "text/caption.h"

struct mf_model_opts mf_model_opts_default(void)
{
    struct mf_model_opts o = {0};
    o.max_tokens = 0; /* min(35, the model's text positions) */
    o.load_decoder = true;
    return o;
}

const char *mf_modality_name(enum mf_modality mod)
{
    switch (mod) {
    case MF_MOD_VISION: return "vision";
    case MF_MOD_TEXT: return "text";
    case MF_MOD_FUSION: return "fusion";
    default: return "none";
    }
}

static const char unused_role[] = "unused";

/* ---- configuration ---------------------------------------------------------------------- */

/* Reads an integer / number field with a default; a present field of the wrong type is an error. */
static enum mf_status json_int(json_t *obj, const char *key, int64_t def, int64_t *out, const char *file,
                               struct mf_err *err)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v || json_is_null(v)) {
        *out = def;
        return MF_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 24))
        return mf_err_set(err, MF_ERR_FORMAT, "%s: field '%s' must be a positive integer", file, key);
    *out = json_integer_value(v);
    return MF_OK;
}

static enum mf_status json_num(json_t *obj, const char *key, double def, float *out, const char *file,
                               struct mf_err *err)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v || json_is_null(v)) {
        *out = (float)def;
        return MF_OK;
    }
    if (!json_is_number(v) || json_number_value(v) <= 0 || json_number_value(v) > 1)
        return mf_err_set(err, MF_ERR_FORMAT, "%s: field '%s' must be a number in (0, 1]", file, key);
    *out = (float)json_number_value(v);
    return MF_OK;
}

static enum mf_status json_act(json_t *obj, const char *key, const char *file, struct mf_err *err)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v)
        return MF_OK;
    if (!json_is_string(v) || strcmp(json_string_value(v), "gelu") != 0)
        return mf_err_set(err, MF_ERR_UNSUPPORTED, "%s: %s '%s' is not supported (BLIP uses 'gelu')", file, key,
                          json_is_string(v) ? json_string_value(v) : "?");
    return MF_OK;
}

/* HF layout: config.json (models.md §4.2; missing keys take the class defaults). */
static enum mf_status config_hf(struct mf_model *m, const char *dir, const struct mf_model_opts *o, struct mf_err *err)
{
    char path[4096];
    json_error_t je;
    enum mf_status st = MF_OK;
    mf_fs_join(path, sizeof path, dir, "config.json");
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (!mf_fs_exists(path))
            return mf_err_set(err, MF_ERR_MISSING, "%s: missing (a Hugging Face BLIP checkpoint needs its config.json)",
                              path);
        return mf_err_set(err, MF_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text);
    }
    if (!json_is_object(root)) {
        st = mf_err_set(err, MF_ERR_FORMAT, "%s: top level must be a JSON object", path);
        goto done;
    }
    json_t *vc = json_object_get(root, "vision_config"), *tc = json_object_get(root, "text_config");
    if ((vc && !json_is_object(vc)) || (tc && !json_is_object(tc))) {
        st = mf_err_set(err, MF_ERR_FORMAT, "%s: vision_config and text_config must be objects", path);
        goto done;
    }
    struct mf_vit_cfg *v = &m->vision.cfg;
    struct mf_bert_cfg *t = &m->text.cfg;
    int64_t vh, th;
    if ((st = json_int(vc, "hidden_size", 768, &v->d, path, err)) ||
        (st = json_int(vc, "intermediate_size", 3072, &v->d_ff, path, err)) ||
        (st = json_int(vc, "num_hidden_layers", 12, &v->n_layer, path, err)) ||
        (st = json_int(vc, "num_attention_heads", 12, &vh, path, err)) ||
        (st = json_int(vc, "image_size", 384, &v->image_size, path, err)) ||
        (st = json_int(vc, "patch_size", 16, &v->patch, path, err)) ||
        (st = json_num(vc, "layer_norm_eps", 1e-5, &v->eps, path, err)) ||
        (st = json_act(vc, "hidden_act", path, err)) ||
        (st = json_int(tc, "vocab_size", 30524, &t->vocab, path, err)) ||
        (st = json_int(tc, "hidden_size", 768, &t->d, path, err)) ||
        (st = json_int(tc, "encoder_hidden_size", 768, &t->enc_width, path, err)) ||
        (st = json_int(tc, "intermediate_size", 3072, &t->d_ff, path, err)) ||
        (st = json_int(tc, "num_hidden_layers", 12, &t->n_layer, path, err)) ||
        (st = json_int(tc, "num_attention_heads", 8, &th, path, err)) ||
        (st = json_int(tc, "max_position_embeddings", 512, &t->max_pos, path, err)) ||
        (st = json_num(tc, "layer_norm_eps", 1e-12, &t->eps, path, err)) ||
        (st = json_act(tc, "hidden_act", path, err)) ||
        (st = json_int(root, "image_text_hidden_size", 256, &m->info.proj_dim, path, err)))
        goto done;
    v->n_head = o->n_head_vision > 0 ? o->n_head_vision : vh;
    t->n_head = o->n_head_text > 0 ? o->n_head_text : th;
    if (v->image_size % v->patch != 0) {
        st = mf_err_set(err, MF_ERR_FORMAT, "%s: image_size %lld is not a multiple of patch_size %lld", path,
                        (long long)v->image_size, (long long)v->patch);
        goto done;
    }
    /* The declared architecture implies towers; a checkpoint missing one is broken, not smaller. */
    json_t *arch = json_object_get(root, "architectures");
    if (arch && json_is_array(arch)) {
        size_t ai;
        json_t *a;
        json_array_foreach(arch, ai, a) {
            const char *an = json_is_string(a) ? json_string_value(a) : "";
            if (strcmp(an, "BlipForImageTextRetrieval") == 0 && (!m->info.has_text_encoder || !m->info.has_itm)) {
                st = mf_err_set(err, MF_ERR_MISSING,
                                "%s: declares BlipForImageTextRetrieval but the checkpoint lacks its %s", path,
                                !m->info.has_text_encoder ? "text encoder (text_encoder.*)" : "ITM head (itm_head.*)");
                goto done;
            }
            if (strcmp(an, "BlipForConditionalGeneration") == 0 && !mf_model_has_prefix(m, "text_decoder.")) {
                st = mf_err_set(err, MF_ERR_MISSING,
                                "%s: declares BlipForConditionalGeneration but the checkpoint lacks its text decoder "
                                "(text_decoder.*)",
                                path);
                goto done;
            }
        }
    }
    /* The configured vocabulary is the embedding table's height (the vocabulary file is checked
     * against the same rows in load_vocab) */
    const char *wn = m->info.has_text_encoder ? "text_encoder.embeddings.word_embeddings.weight"
                                                     : "text_decoder.bert.embeddings.word_embeddings.weight";
    int wi = mf_model_find(m, wn);
    if (wi >= 0 && m->tensors[wi].ndim == 2 && m->tensors[wi].shape[0] != t->vocab) {
        st = mf_err_set(err, MF_ERR_SHAPE, "%s: text_config.vocab_size is %lld but '%s' has %lld rows", path,
                        (long long)t->vocab, wn, (long long)m->tensors[wi].shape[0]);
        goto done;
    }
    m->info.config_source = "config.json";
done:
    json_decref(root);
    return st;
}

/* ---- loading ------------------------------------------------------------------------------ */

/* vocab.txt plus BLIP's added tokens ([DEC], [ENC], unless the file has them) must give exactly one
 * token per row of the word embeddings: a shorter file would put [DEC]/[ENC] on ordinary word rows,
 * a longer one ids past the table, a repeated token two ids for one string (models.md §3.2). */
static enum mf_status load_vocab(struct mf_model *m, const struct mf_model_opts *o, struct mf_err *err)
{
    char path[4096];
    enum mf_status st;
    m->info.pad_id = m->info.cls_id = m->info.sep_id = -1;
    m->info.first_token_dec = m->info.first_token_itm = -1;
    if (o->vocab_path)
        snprintf(path, sizeof path, "%s", o->vocab_path);
    else
        mf_fs_join(path, sizeof path, mf_checkpoint_dir(m->ck), "vocab.txt");
    if (!mf_fs_exists(path)) {
        if (o->vocab_optional && !o->vocab_path)
            return MF_OK;
        return mf_err_set(err, MF_ERR_MISSING, "%s: vocabulary not found (pass --vocab FILE)", path);
    }
    snprintf(m->vocab_path, sizeof m->vocab_path, "%s", path);
    if ((st = mf_vocab_load(path, &m->vocab, err)))
        return st;
    const int32_t n_file = mf_vocab_size(m->vocab);
    for (int32_t id = 0; id < n_file; id++) {
        int32_t last = mf_vocab_id(m->vocab, mf_vocab_token(m->vocab, id));
        if (last != id)
            return mf_err_set(err, MF_ERR_FORMAT,
                              "%s: line %d repeats the token '%s' of line %d (each token needs its own embedding row)",
                              path, last + 1, mf_vocab_token(m->vocab, id), id + 1);
    }
    if ((st = mf_vocab_add_blip_tokens(m->vocab, err)))
        return st;
    const int32_t n_all = mf_vocab_size(m->vocab);
    const bool enc = m->info.has_text_encoder;
    const int64_t rows = enc ? m->text.cfg.vocab : m->dec.cfg.vocab;
    if (n_all != rows)
        return mf_err_set(err, MF_ERR_SHAPE,
                          "%s: %d tokens + %d added by BLIP ([DEC], [ENC]) = %d, but '%s' has %lld rows: the vocabulary "
                          "is %s than the model's",
                          path, n_file, n_all - n_file, n_all,
                          enc ? "text_encoder.embeddings.word_embeddings.weight"
                              : "text_decoder.bert.embeddings.word_embeddings.weight",
                          (long long)rows, n_all < rows ? "shorter" : "longer");
    int32_t pad = mf_vocab_special(m->vocab, MF_TOK_PAD), cls = mf_vocab_special(m->vocab, MF_TOK_CLS),
            sep = mf_vocab_special(m->vocab, MF_TOK_SEP), unk = mf_vocab_special(m->vocab, MF_TOK_UNK);
    if (pad < 0 || cls < 0 || sep < 0 || unk < 0)
        return mf_err_set(err, MF_ERR_MISSING, "%s: the vocabulary lacks one of [PAD] [UNK] [CLS] [SEP]", path);
    m->info.pad_id = pad;
    m->info.cls_id = cls;
    m->info.sep_id = sep;
    m->info.first_token_dec = mf_vocab_special(m->vocab, MF_TOK_DEC);
    int32_t enc_id = mf_vocab_special(m->vocab, MF_TOK_ENC);
    enum mf_itm_token it = o->itm_token;
    if (it == MF_ITM_TOKEN_AUTO)
        it = m->info.layout == MF_LAYOUT_BLIP_ORIG ? MF_ITM_TOKEN_ENC : MF_ITM_TOKEN_CLS;
    m->info.first_token_itm = it == MF_ITM_TOKEN_ENC ? enc_id : cls;
    return MF_OK;
}

static enum mf_status alloc_layers(struct mf_model *m, struct mf_err *err)
{
    if (m->info.has_vision && !(m->vision.layers = mf_calloc((size_t)m->vision.cfg.n_layer, sizeof(struct mf_vit_layer))))
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    if (m->info.has_text_encoder &&
        !(m->text.layers = mf_calloc((size_t)m->text.cfg.n_layer, sizeof(struct mf_bert_layer))))
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    if (m->info.has_decoder && !(m->dec.layers = mf_calloc((size_t)m->dec.cfg.n_layer, sizeof(struct mf_bert_layer))))
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    for (int64_t l = 0; m->text.layers && l < m->text.cfg.n_layer; l++)
        m->text.layers[l].has_cross = true;
    for (int64_t l = 0; m->dec.layers && l < m->dec.cfg.n_layer; l++)
        m->dec.layers[l].has_cross = true;
    return MF_OK;
}

static void fill_info(struct mf_model *m, const struct mf_model_opts *o)
{
    struct mf_model_info *i = &m->info;
    const struct mf_vit_cfg *v = &m->vision.cfg;
    const struct mf_bert_cfg *t = i->has_text_encoder ? &m->text.cfg : &m->dec.cfg;
    i->vision = (struct mf_vit_info){v->d, v->n_layer, v->n_head, v->d_ff, v->patch, v->image_size, v->n_tok, v->eps};
    i->text = (struct mf_bert_info){t->d, t->n_layer, t->n_head, t->d_ff, t->vocab, t->max_pos, t->enc_width, t->eps};
    i->max_tokens = o->max_tokens > 0 ? o->max_tokens : (int)MF_MIN(35, t->max_pos);
    i->clean = o->clean != MF_CLEAN_AUTO ? o->clean
                                         : (i->layout == MF_LAYOUT_BLIP_ORIG ? MF_CLEAN_BLIP : MF_CLEAN_NONE);
}

enum mf_status mf_model_load(const char *path, const struct mf_model_opts *opts, struct mf_model **out,
                             struct mf_err *err)
{
    struct mf_model_opts o = opts ? *opts : mf_model_opts_default();
    enum mf_status st;
    *out = NULL;
    struct mf_model *m = mf_calloc(1, sizeof *m);
    if (!m)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    if (!(m->path = mf_strdup(path))) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((st = mf_checkpoint_open(path, &m->ck, err)))
        goto fail;
    m->n_tensors = mf_checkpoint_count(m->ck);
    if (!(m->tensors = mf_calloc(m->n_tensors ? m->n_tensors : 1, sizeof *m->tensors)) ||
        !(m->w32 = mf_calloc(m->n_tensors ? m->n_tensors : 1, sizeof *m->w32))) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < m->n_tensors; i++) {
        const struct mf_st_entry *e = mf_checkpoint_at(m->ck, i, NULL);
        struct mf_model_tensor *t = &m->tensors[i];
        t->name = e->name;
        t->dtype = e->dtype;
        t->ndim = e->ndim;
        memcpy(t->shape, e->shape, sizeof t->shape);
        t->role = unused_role;
        t->data = e->data;
        t->nbytes = e->nbytes;
        t->tied_to = -1;
        t->layer = -1;
    }

    struct mf_model_info *info = &m->info;
    const struct mf_layout_def *def = NULL;
    if ((st = mf_model_index_names(m, err)) || (st = mf_blip_detect(m, &o, &def, err)))
        goto fail;
    if (info->layout == MF_LAYOUT_BLIP_HF)
        st = config_hf(m, mf_checkpoint_dir(m->ck), &o, err);
    else
        st = mf_blip_orig_config(m, &o, err);
    if (st || (st = mf_blip_config_finish(m, err)))
        goto fail;
    if ((st = alloc_layers(m, err)) || (st = mf_layout_bind(m, def, err)))
        goto fail;
    if (info->has_decoder) {
        struct mf_lm_head *lm = &m->lm;
        lm->V = m->dec.cfg.vocab;
        if (!lm->dec_w)
            lm->dec_w = m->dec.word; /* tied to the word embeddings (§4.3) */
        if (!lm->dec_b)
            lm->dec_b = lm->dec_b_alt;
        if (!lm->dec_b) {
            st = mf_err_set(err, MF_ERR_MISSING,
                            "%s: tensor 'text_decoder.cls.predictions.bias' (or '.decoder.bias') is missing", path);
            goto fail;
        }
        /* Gradient owners (models.md §4.3, §4.5): decoder.weight is tied to the word embeddings, so
         * it accumulates into their owner when it is absent or a stored copy of the same values. */
        size_t wn = (size_t)(lm->V * m->dec.cfg.d) * sizeof(float);
        bool tied = lm->dec_w == m->dec.word || memcmp(lm->dec_w, m->dec.word, wn) == 0;
        lm->dec_wi = tied ? m->dec.word_i : mf_layout_grad_owner(m, lm->dec_w);
        lm->dec_bi = mf_layout_grad_owner(m, lm->dec_b);
    }
    fill_info(m, &o);
    if (o.max_tokens > info->text.max_pos) {
        st = mf_err_set(err, MF_ERR_ARG, "%s: max tokens %d is more than the model's %lld text positions", path,
                        o.max_tokens, (long long)info->text.max_pos);
        goto fail;
    }
    if ((st = load_vocab(m, &o, err)))
        goto fail;
    *out = m;
    return MF_OK;
fail:
    mf_model_free(m);
    return st;
}

void mf_model_free(struct mf_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->tensors && i < m->n_tensors; i++)
        if (m->tensors[i].role != unused_role)
            mf_free((void *)m->tensors[i].role);
    mf_free(m->tensors);
    mf_free(m->w32);
    mf_free(m->by_name);
    mf_free(m->vision.layers);
    mf_free(m->text.layers);
    mf_free(m->dec.layers);
    mf_free_aligned(m->f32_block);
    mf_vocab_free(m->vocab);
    mf_checkpoint_close(m->ck);
    mf_free(m->path);
    mf_free(m);
}

const struct mf_model_info *mf_model_get_info(const struct mf_model *m) { return &m->info; }
size_t mf_model_n_tensors(const struct mf_model *m) { return m->n_tensors; }
const struct mf_model_tensor *mf_model_tensor_at(const struct mf_model *m, size_t i)
{
    return i < m->n_tensors ? &m->tensors[i] : NULL;
}

enum mf_status mf_model_tokenize(const struct mf_model *m, const char *text, int max_len, int32_t *ids,
                                 int32_t *mask, struct mf_err *err)
{
    enum mf_status st;
    if (!m->vocab)
        return mf_err_set(err, MF_ERR_MISSING, "%s: loaded without a vocabulary (no vocab.txt; pass --vocab FILE)",
                          m->path);
    if (max_len < 2 || max_len > m->info.text.max_pos)
        return mf_err_set(err, MF_ERR_ARG, "%s: max tokens %d outside [2, %lld] (the model has %lld text positions)",
                          m->path, max_len, (long long)m->info.text.max_pos, (long long)m->info.text.max_pos);
    size_t cap = strlen(text) + 16;
    char *clean = mf_malloc(cap);
    if (!clean)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    enum mf_caption_style style = m->info.clean == MF_CLEAN_BLIP        ? MF_CAPTION_BLIP
                                  : m->info.clean == MF_CLEAN_MULTIFLOW ? MF_CAPTION_MULTIFLOW
                                                                        : MF_CAPTION_NONE;
    int max_words = m->info.clean == MF_CLEAN_MULTIFLOW ? 40 : 50;
    st = mf_pre_caption(text, max_words, style, clean, cap, err);
    if (!st)
        st = mf_wordpiece_encode(m->vocab, clean, max_len, ids, mask, NULL, err);
    mf_free(clean);
    return st;
}

/* ---- sessions and forward entry points ---------------------------------------------------- */

enum mf_status mf_session_create(const struct mf_model *m, int n_threads, struct mf_session **out,
                                 struct mf_err *err)
{
    struct mf_session *s = mf_calloc(1, sizeof *s);
    if (!s)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    if (n_threads < 1)
        n_threads = 1;
    s->m = m;
    s->n_threads = n_threads;
    s->pool = mf_pool_create(n_threads);
    if (!s->pool) {
        mf_free(s);
        return mf_err_set(err, MF_ERR_NOMEM, "cannot start %d threads", n_threads);
    }
    mf_nn_init(n_threads);
    mf_arena_init(&s->arena, (size_t)16 << 20);
    *out = s;
    return MF_OK;
}

void mf_session_free(struct mf_session *s)
{
    if (!s)
        return;
    mf_pool_free(s->pool);
    mf_arena_free(&s->arena);
    mf_free(s);
}

/* Hands a prunable linear's input rows to the calibration observer, if any. */
static void observe_input(struct mf_session *s, const struct mf_linear *lin, const float *x, int64_t ldx, int64_t T,
                          const int32_t *row_valid)
{
    if (s->observe && lin->tid >= 0)
        s->observe(s->observe_ud, lin->tid, x, ldx, T, lin->in, row_valid, s->n_seq);
}

void mf_model_linear_res(struct mf_session *s, float *y, const float *res, const float *x, int64_t ldx,
                         const struct mf_linear *lin, int64_t T, const int32_t *row_valid)
{
    observe_input(s, lin, x, ldx, T, row_valid);
    mf_linear_forward_res(s->pool, y, res, x, ldx, lin->w, lin->b, T, lin->in, lin->out);
}

void mf_model_linear_nobias(struct mf_session *s, float *y, const float *x, int64_t ldx, const struct mf_linear *lin,
                            int64_t T, const int32_t *row_valid)
{
    observe_input(s, lin, x, ldx, T, row_valid);
    mf_linear_forward(s->pool, y, x, ldx, lin->w, NULL, T, lin->in, lin->out);
}

void mf_model_linear(struct mf_session *s, float *y, const float *x, int64_t ldx, const struct mf_linear *lin,
                     int64_t T, const int32_t *row_valid)
{
    mf_model_linear_res(s, y, NULL, x, ldx, lin, T, row_valid);
}

/* FFN first half: ffa = act(x W^T + b), keeping the pre-activation in ffp when ffp != ffa
 * (training). The GEMM runs without bias and the bias joins the activation pass (inference: one
 * fused pass; training: bias add then activation, the same arithmetic, so both give the same bits). */
void mf_model_ffn_in(struct mf_session *s, float *ffp, float *ffa, const float *x, int64_t ldx,
                     const struct mf_linear *lin, int64_t T, const int32_t *row_valid, bool quick)
{
    mf_model_linear_nobias(s, ffp, x, ldx, lin, T, row_valid);
    if (!lin->b) {
        if (quick)
            mf_quickgelu_forward(s->pool, ffa, ffp, T * lin->out);
        else
            mf_gelu_forward(s->pool, ffa, ffp, T * lin->out);
    } else if (ffp == ffa) {
        if (quick)
            mf_bias_quickgelu_forward(s->pool, ffa, lin->b, T, lin->out);
        else
            mf_bias_gelu_forward(s->pool, ffa, lin->b, T, lin->out);
    } else {
        mf_bias_add_forward(s->pool, ffp, lin->b, T, lin->out);
        if (quick)
            mf_quickgelu_forward(s->pool, ffa, ffp, T * lin->out);
        else
            mf_gelu_forward(s->pool, ffa, ffp, T * lin->out);
    }
}

/* ---- heads: forward (shared by inference and training) and backward ---------------------- */

static float *grad_of(const struct mf_grads *g, int i) { return i >= 0 ? mf_grads_tensor(g, (size_t)i) : NULL; }

void mf_head_proj_forward(struct mf_session *s, const struct mf_linear *proj, const float *h, int64_t B, int64_t T,
                          float *z, float *feat)
{
    (void)s;
    mf_linear_forward(NULL, z, h, T * proj->in, proj->w, proj->b, B, proj->in, proj->out);
    mf_l2_normalize_rows(feat, z, B, proj->out, 1e-12f);
}

/* Row 0 of each of B sequences of d_h (B, T, C) += rows of r (B, C). */
static void add_rows0(float *d_h, const float *r, int64_t B, int64_t T, int64_t C)
{
    for (int64_t b = 0; b < B; b++)
        mf_add_backward(NULL, d_h + b * T * C, NULL, r + b * C, C);
}

enum mf_status mf_head_proj_backward(struct mf_session *s, const struct mf_linear *proj, const float *h, int64_t B,
                                     int64_t T, const float *z, const float *d_feat, float *d_h, struct mf_grads *g,
                                     struct mf_err *err)
{
    const int64_t P = proj->out, C = proj->in;
    float *dz = mf_arena_f32(&s->arena, B * P);  /* (B, P) */
    float *dr = mf_arena_f32(&s->arena, B * C);  /* (B, C) */
    if (!dz || !dr)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the projection gradients (batch %lld)", (long long)B);
    /* feat = z / max(||z||, eps): dz = (dfeat - feat (feat . dfeat)) / ||z||, or dfeat / eps when clamped */
    for (int64_t b = 0; b < B; b++) {
        const float *zb = z + b * P, *gb = d_feat + b * P;
        double ss = 0, dot = 0;
        for (int64_t i = 0; i < P; i++)
            ss += (double)zb[i] * zb[i];
        double n = sqrt(ss);
        if (n < 1e-12) {
            for (int64_t i = 0; i < P; i++)
                dz[b * P + i] = (float)(gb[i] / 1e-12);
            continue;
        }
        for (int64_t i = 0; i < P; i++)
            dot += (double)zb[i] * gb[i];
        for (int64_t i = 0; i < P; i++)
            dz[b * P + i] = (float)((gb[i] - zb[i] * dot / ss) / n);
    }
    mf_linear_backward(NULL, d_h ? dr : NULL, grad_of(g, proj->wi), grad_of(g, proj->bi), dz, h, T * C, proj->w, B, C,
                       P);
    if (d_h)
        add_rows0(d_h, dr, B, T, C);
    return MF_OK;
}

void mf_head_itm_forward(struct mf_session *s, const float *h, int64_t B, int64_t T, float *logits)
{
    const struct mf_linear *hd = &s->m->itm_head;
    mf_linear_forward(NULL, logits, h, T * hd->in, hd->w, hd->b, B, hd->in, 2);
}

enum mf_status mf_head_itm_backward(struct mf_session *s, const float *h, int64_t B, int64_t T,
                                    const float *d_logits, float *d_h, struct mf_grads *g, struct mf_err *err)
{
    const struct mf_linear *hd = &s->m->itm_head;
    float *dr = mf_arena_f32(&s->arena, B * hd->in); /* (B, d) */
    if (!dr)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the ITM head gradients (batch %lld)", (long long)B);
    mf_linear_backward(NULL, d_h ? dr : NULL, grad_of(g, hd->wi), grad_of(g, hd->bi), d_logits, h, T * hd->in, hd->w,
                       B, hd->in, 2);
    if (d_h)
        add_rows0(d_h, dr, B, T, hd->in);
    return MF_OK;
}

enum mf_status mf_lm_forward(struct mf_session *s, const float *h, int64_t T, float *logits, struct mf_lm_acts *acts,
                             struct mf_err *err)
{
    const struct mf_model *m = s->m;
    const struct mf_lm_head *lm = &m->lm;
    const int64_t d = m->dec.cfg.d, V = lm->V;
    struct mf_arena *a = &s->arena;
    float *pre = mf_arena_f32(a, T * d); /* (T, d); inference: dense -> GELU -> LN in place */
    float *act = pre, *z = pre, *mean = NULL, *rstd = NULL;
    if (pre && acts && (!(act = mf_arena_f32(a, T * d)) || !(z = mf_arena_f32(a, T * d)) ||
                        !(mean = mf_arena_f32(a, T)) || !(rstd = mf_arena_f32(a, T))))
        pre = NULL;
    if (!pre)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the LM head (%lld rows)", (long long)T);
    /* LM head: LN(GELU(dense(h))) W_dec^T + b (the observer does not see heads) */
    mf_linear_forward(s->pool, pre, h, d, lm->dense.w, lm->dense.b, T, d, d);
    mf_gelu_forward(s->pool, act, pre, T * d);
    mf_layernorm_forward(s->pool, z, mean, rstd, act, lm->ln.w, lm->ln.b, T, d, m->dec.cfg.eps);
    mf_linear_forward(s->pool, logits, z, d, lm->dec_w, lm->dec_b, T, d, V);
    if (acts)
        *acts = (struct mf_lm_acts){pre, act, mean, rstd, z};
    return MF_OK;
}

enum mf_status mf_lm_backward(struct mf_session *s, const float *h, int64_t T, const struct mf_lm_acts *A,
                              const float *d_logits, float *d_h, struct mf_grads *g, struct mf_err *err)
{
    const struct mf_model *m = s->m;
    const struct mf_lm_head *lm = &m->lm;
    const int64_t d = m->dec.cfg.d, V = lm->V;
    struct mf_pool *pool = s->pool;
    float *dz = mf_arena_f32(&s->arena, T * d), *da = mf_arena_f32(&s->arena, T * d); /* (T, d) */
    if (!dz || !da)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the LM head gradients (%lld rows)", (long long)T);
    mf_linear_backward(pool, dz, grad_of(g, lm->dec_wi), grad_of(g, lm->dec_bi), d_logits, A->z, d, lm->dec_w, T, d, V);
    mf_layernorm_backward(pool, da, grad_of(g, lm->ln.wi), grad_of(g, lm->ln.bi), dz, A->act, lm->ln.w, A->mean,
                          A->rstd, T, d);
    mf_gelu_backward(pool, da, da, A->pre, T * d);
    mf_linear_backward(pool, d_h ? dz : NULL, grad_of(g, lm->dense.wi), grad_of(g, lm->dense.bi), da, h, d,
                       lm->dense.w, T, d, d);
    if (d_h)
        mf_add_forward(pool, d_h, d_h, dz, T * d);
    return MF_OK;
}

/* Outputs are checked where they arise: the first of B rows of x (n values each) holding a NaN or
 * an infinity is MF_ERR_NUMERIC naming what and the row (err->row, for the caller to name the pair). */
static enum mf_status check_rows(const float *x, int64_t B, int64_t n, const char *what, struct mf_err *err)
{
    for (int64_t b = 0; b < B; b++) {
        int64_t j = mf_find_nonfinite(x + b * n, MF_DTYPE_F32, n);
        if (j >= 0) {
            enum mf_status st = mf_err_set(err, MF_ERR_NUMERIC, "%s of batch row %lld %s not finite (%g at %lld)",
                                           what, (long long)b, what[strlen(what) - 1] == 's' ? "are" : "is",
                                           (double)x[b * n + j], (long long)j);
            err->row = b;
            return st;
        }
    }
    return MF_OK;
}

/* Projects row 0 of each of B sequences (B, T, d) and L2-normalises: feat (B, proj). */
static enum mf_status project_cls(struct mf_session *s, const struct mf_linear *proj, const float *h, int64_t B,
                                  int64_t T, float *feat, const char *what, struct mf_err *err)
{
    float *tmp = mf_arena_f32(&s->arena, B * proj->out);
    if (!tmp)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    mf_head_proj_forward(s, proj, h, B, T, tmp, feat);
    return check_rows(feat, B, proj->out, what, err);
}

enum mf_status mf_encode_images(struct mf_session *s, const float *images, int64_t B, float *image_embeds,
                                float *img_feat, struct mf_err *err)
{
    const struct mf_model *m = s->m;
    const struct mf_vit_cfg *c = &m->vision.cfg;
    enum mf_status st;
    if (img_feat && !m->info.has_itc)
        return mf_err_set(err, MF_ERR_UNSUPPORTED, "this checkpoint has no ITC projections (vision_proj/text_proj)");
    mf_arena_reset(&s->arena);
    float *emb = image_embeds ? image_embeds : mf_arena_f32(&s->arena, B * c->n_tok * c->d);
    if (!emb)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    if ((st = mf_vit_forward(s, &m->vision, images, B, emb, err)) ||
        (st = check_rows(emb, B, c->n_tok * c->d, "image embeddings", err)))
        return st;
    if (img_feat)
        return project_cls(s, &m->vision_proj, emb, B, c->n_tok, img_feat, "image ITC features", err);
    return MF_OK;
}

enum mf_status mf_encode_texts(struct mf_session *s, const int32_t *ids, const int32_t *mask, int64_t B,
                               int64_t L, float *text_hidden, float *txt_feat, struct mf_err *err)
{
    const struct mf_model *m = s->m;
    enum mf_status st;
    if (!m->info.has_text_encoder)
        return mf_err_set(err, MF_ERR_UNSUPPORTED, "this checkpoint has no text encoder");
    if (txt_feat && !m->info.has_itc)
        return mf_err_set(err, MF_ERR_UNSUPPORTED, "this checkpoint has no ITC projections (vision_proj/text_proj)");
    mf_arena_reset(&s->arena);
    float *h = text_hidden ? text_hidden : mf_arena_f32(&s->arena, B * L * m->text.cfg.d);
    if (!h)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    if ((st = mf_bert_forward(s, &m->text, ids, mask, B, L, NULL, 0, false, h, err)))
        return st;
    if (txt_feat)
        return project_cls(s, &m->text_proj, h, B, L, txt_feat, "text ITC features", err);
    return check_rows(h, B, L * m->text.cfg.d, "text hidden states", err);
}

/* ids with position 0 of every row replaced by tok (arena copy). */
static int32_t *with_first(struct mf_session *s, const int32_t *ids, int64_t B, int64_t L, int32_t tok)
{
    int32_t *c = mf_arena_alloc(&s->arena, (size_t)(B * L) * sizeof *c);
    if (!c)
        return NULL;
    memcpy(c, ids, (size_t)(B * L) * sizeof *c);
    for (int64_t b = 0; b < B; b++)
        c[b * L] = tok;
    return c;
}

static enum mf_status itm_run(struct mf_session *s, const float *image_embeds, const int32_t *ids,
                              const int32_t *mask, int64_t B, int64_t L, float *prob, float *logits, float *hidden,
                              struct mf_err *err)
{
    const struct mf_model *m = s->m;
    enum mf_status st;
    if (!m->info.has_itm)
        return mf_err_set(err, MF_ERR_UNSUPPORTED, "this checkpoint has no ITM head (itm_head) and text encoder");
    int32_t *ids0 = with_first(s, ids, B, L, m->info.first_token_itm);
    float *h = hidden ? hidden : mf_arena_f32(&s->arena, B * L * m->text.cfg.d);
    float *lg = mf_arena_f32(&s->arena, B * 2);
    if (!ids0 || !h || !lg)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    if ((st = mf_bert_forward(s, &m->text, ids0, mask, B, L, image_embeds, m->vision.cfg.n_tok, false, h, err)))
        return st;
    mf_head_itm_forward(s, h, B, L, lg);
    if ((st = check_rows(lg, B, 2, "ITM logits", err)))
        return st;
    if (logits)
        memcpy(logits, lg, (size_t)B * 2 * sizeof *lg);
    if (prob) {
        float p[2];
        for (int64_t b = 0; b < B; b++) {
            mf_softmax_rows(p, lg + 2 * b, 1, 2);
            prob[b] = p[1];
        }
    }
    return MF_OK;
}

enum mf_status mf_itm_pairs(struct mf_session *s, const float *image_embeds, const int32_t *ids,
                            const int32_t *mask, int64_t B, int64_t L, float *prob, float *logits, float *hidden,
                            struct mf_err *err)
{
    mf_arena_reset(&s->arena);
    return itm_run(s, image_embeds, ids, mask, B, L, prob, logits, hidden, err);
}

struct nll_arg {
    const float *lg;      /* (B, L, V) logits */
    const int32_t *ids, *mask;
    double *tok;          /* (B, L) NLL of token t given positions < t (t >= 1, real tokens) */
    int64_t B, L, V;
};

static void nll_kernel(void *p, int ith, int nth)
{
    const struct nll_arg *a = p;
    int64_t r0, r1;
    mf_split_range(a->B * a->L, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t t = r % a->L;
        if (t == 0 || !a->mask[r])
            continue;
        const float *row = a->lg + (r - 1) * a->V;
        float mx = row[0];
        for (int64_t j = 1; j < a->V; j++)
            mx = row[j] > mx ? row[j] : mx;
        double se = 0;
        for (int64_t j = 0; j < a->V; j++)
            se += exp((double)row[j] - mx);
        a->tok[r] = (log(se) + mx) - row[a->ids[r]];
    }
}

static enum mf_status decoder_run(struct mf_session *s, const float *image_embeds, const int32_t *ids,
                                  const int32_t *mask, int64_t B, int64_t L, float *nll, float *logits,
                                  struct mf_err *err)
{
    const struct mf_model *m = s->m;
    const struct mf_lm_head *lm = &m->lm;
    const int64_t d = m->dec.cfg.d, V = lm->V;
    enum mf_status st;
    if (!m->info.has_decoder)
        return mf_err_set(err, MF_ERR_UNSUPPORTED, "this checkpoint has no text decoder");
    if (m->info.first_token_dec < 0 || m->info.first_token_dec >= V)
        return mf_err_set(err, MF_ERR_RANGE, "[DEC] id %d outside the decoder vocabulary", m->info.first_token_dec);
    int32_t *ids0 = with_first(s, ids, B, L, m->info.first_token_dec);
    float *h = mf_arena_f32(&s->arena, B * L * d);
    float *lg = logits ? logits : mf_arena_f32(&s->arena, B * L * V);
    if (!ids0 || !h || !lg)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    if ((st = mf_bert_forward(s, &m->dec, ids0, mask, B, L, image_embeds, m->vision.cfg.n_tok, true, h, err)) ||
        (st = mf_lm_forward(s, h, B * L, lg, NULL, err)))
        return st;
    if (!nll)
        return MF_OK;
    /* Per-token negative log-likelihoods in double, rows split over the pool; the per-caption means
     * are then summed in token order on this thread, so the result does not depend on the split. */
    double *tok = mf_arena_alloc(&s->arena, (size_t)(B * L) * sizeof(double));
    if (!tok)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    struct nll_arg na = {lg, ids, mask, tok, B, L, V};
    mf_pool_run(s->pool, nll_kernel, &na);
    for (int64_t b = 0; b < B; b++) {
        double sum = 0;
        int64_t n = 0;
        for (int64_t t = 1; t < L; t++)
            if (mask[b * L + t]) {
                sum += tok[b * L + t];
                n++;
            }
        nll[b] = n ? (float)(sum / (double)n) : NAN;
    }
    return check_rows(nll, B, 1, "LM NLL", err);
}

enum mf_status mf_decoder_pairs(struct mf_session *s, const float *image_embeds, const int32_t *ids,
                                const int32_t *mask, int64_t B, int64_t L, float *nll, float *logits,
                                struct mf_err *err)
{
    mf_arena_reset(&s->arena);
    return decoder_run(s, image_embeds, ids, mask, B, L, nll, logits, err);
}

enum mf_status mf_calibration_forward(struct mf_session *s, const float *images, const int32_t *ids,
                                      const int32_t *mask, int64_t B, int64_t L, struct mf_err *err)
{
    const struct mf_model *m = s->m;
    const struct mf_vit_cfg *c = &m->vision.cfg;
    enum mf_status st;
    mf_arena_reset(&s->arena);
    s->n_seq = B;
    float *emb = mf_arena_f32(&s->arena, B * c->n_tok * c->d);
    if (!emb)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    if ((st = mf_vit_forward(s, &m->vision, images, B, emb, err)))
        return st;
    if (m->info.has_text_encoder) {
        int32_t *ids0 = with_first(s, ids, B, L, m->info.first_token_itm);
        float *h = mf_arena_f32(&s->arena, B * L * m->text.cfg.d);
        if (!ids0 || !h)
            return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        if ((st = mf_bert_forward(s, &m->text, ids0, mask, B, L, emb, c->n_tok, false, h, err)))
            return st;
    }
    if (m->info.has_decoder && (st = decoder_run(s, emb, ids, mask, B, L, NULL, NULL, err)))
        return st;
    return MF_OK;
}

enum mf_status mf_score_pairs(struct mf_session *s, const float *images, const int32_t *ids, const int32_t *mask,
                              int64_t B, int64_t L, float *itc, float *itm, float *lm, struct mf_err *err)
{
    const struct mf_model *m = s->m;
    const struct mf_vit_cfg *c = &m->vision.cfg;
    enum mf_status st;
    mf_arena_reset(&s->arena);
    float *emb = mf_arena_f32(&s->arena, B * c->n_tok * c->d);
    if (!emb)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    if ((st = mf_vit_forward(s, &m->vision, images, B, emb, err)))
        return st;
    if (itc) {
        if (m->info.has_itc) {
            int64_t P = m->info.proj_dim;
            float *fi = mf_arena_f32(&s->arena, B * P), *ft = mf_arena_f32(&s->arena, B * P);
            float *h = mf_arena_f32(&s->arena, B * L * m->text.cfg.d);
            if (!fi || !ft || !h)
                return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
            if ((st = project_cls(s, &m->vision_proj, emb, B, c->n_tok, fi, "image ITC features", err)) ||
                (st = mf_bert_forward(s, &m->text, ids, mask, B, L, NULL, 0, false, h, err)) ||
                (st = project_cls(s, &m->text_proj, h, B, L, ft, "text ITC features", err)))
                return st;
            for (int64_t b = 0; b < B; b++) {
                double dot = 0;
                for (int64_t j = 0; j < P; j++)
                    dot += (double)fi[b * P + j] * ft[b * P + j];
                itc[b] = (float)dot;
            }
        } else {
            for (int64_t b = 0; b < B; b++)
                itc[b] = NAN;
        }
    }
    if (itm) {
        if (m->info.has_itm) {
            if ((st = itm_run(s, emb, ids, mask, B, L, itm, NULL, NULL, err)))
                return st;
        } else {
            for (int64_t b = 0; b < B; b++)
                itm[b] = NAN;
        }
    }
    if (lm) {
        if (m->info.has_decoder) {
            if ((st = decoder_run(s, emb, ids, mask, B, L, lm, NULL, err)))
                return st;
        } else {
            for (int64_t b = 0; b < B; b++)
                lm[b] = NAN;
        }
    }
    return MF_OK;
}

const struct mf_model *mf_session_model(const struct mf_session *s) { return s->m; }
