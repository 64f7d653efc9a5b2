/*
 * models/init.c: a randomly initialised BLIP in the original Salesforce layout (BLIP_Pretrain's
 * state dict), written as one safetensors file: what `multiflow init` writes and `multiflow
 * pretrain` starts from.
 *
 * Init rules, as BLIP's own modules apply them when nothing is loaded:
 *   ViT (models/vit.py VisionTransformer._init_weights): Linear weight trunc_normal(std .02,
 *     a = -2, b = 2), bias 0; LayerNorm 1 / 0; pos_embed and cls_token trunc_normal(.02); the
 *     patch-embedding Conv2d keeps PyTorch's default (kaiming_uniform a = sqrt 5, i.e. weight and
 *     bias uniform in +-1/sqrt(fan_in), fan_in = 3 P^2), since _init_weights only visits Linear
 *     and LayerNorm.
 *   BERT (models/med.py BertPreTrainedModel._init_weights): Linear and Embedding weight
 *     normal(0, initializer_range = .02), Linear bias 0, LayerNorm 1 / 0; the LM head's output bias
 *     (cls.predictions.bias) 0.
 *   Heads vision_proj, text_proj, itm_head: nn.Linear's default in BLIP_Pretrain (no init hook
 *     reaches them): weight and bias uniform in +-1/sqrt(fan_in).
 *   temp = 0.07; momentum copies (*_m) = exact copies of the online tensors (copy_params);
 *   image_queue / text_queue = randn(P, Q) with every column normalised (dim 0); queue_ptr = 0 (I64).
 *   Tying (blip_pretrain.py tie_encoder_decoder_weights(text_encoder, text_decoder.bert, '',
 *   '/attention'), BertLMHeadModel): the decoder's embeddings, cross-attention, FFN and their
 *   LayerNorms are the text encoder's tensors and the LM decoder weight is the word embedding
 *   matrix; a tied tensor is stored once, under the encoder's name (the loader's fallback binds
 *   the decoder to it, models/blip_layout.c); the decoder's own tensors are its causal
 *   self-attention (attention.*) and the LM head's transform and bias.
 *
 * Values come from one generator per tensor, seeded from (seed, tensor name): a tensor's bytes do
 * not depend on the others, and the momentum copy of a tensor draws from its online name, so it is
 * the same bytes. Tensors are generated chunk by chunk while the file is written
 * (mf_st_writer_add_fill), so memory stays O(1 MiB) for any size.
 *
 * Does not: load pretrained ViT/BERT weights (BLIP starts from DeiT and bert-base; here everything
 * is random), write the HF layout, write position_ids or idx_queue.
 * Reference: salesforce/BLIP models/blip_pretrain.py, models/vit.py, models/med.py, models/blip.py;
 * timm trunc_normal_; PyTorch nn.Linear/nn.Conv2d reset_parameters; spec/models.md §4.5, §4.6.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/rng.h"
#include "multiflow/model.h"
#include "multiflow/safetensors.h"
#include "text/wordpiece.h"

#define ARCH_MAX_DIM (INT64_C(1) << 16)
#define ARCH_MAX_LAYERS 256
#define ARCH_MAX_QUEUE (INT64_C(1) << 24)

/* ---- architecture file ---------------------------------------------------------------------- */

struct field {
    const char *key;
    int64_t *dst;
    int64_t lo, hi;
    bool optional; /* 0 = derived default */
};

/* Reads the integer fields f of obj; strict: any other key (not starting with '_') is an error. */
static enum mf_status read_fields(json_t *obj, const char *where, const struct field *f, size_t n, bool strict,
                                  const char *path, struct mf_err *err)
{
    if (!json_is_object(obj))
        return mf_err_set(err, MF_ERR_FORMAT, "%s: '%s' must be a JSON object", path, where);
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (!strict)
            break;
        bool known = false;
        for (size_t i = 0; i < n; i++)
            known |= strcmp(key, f[i].key) == 0;
        if (!known && key[0] != '_')
            return mf_err_set(err, MF_ERR_FORMAT, "%s: unknown key '%s' in '%s'", path, key, where);
    }
    for (size_t i = 0; i < n; i++) {
        v = json_object_get(obj, f[i].key);
        if (!v) {
            if (f[i].optional) {
                *f[i].dst = 0;
                continue;
            }
            return mf_err_set(err, MF_ERR_MISSING, "%s: '%s' lacks the integer '%s'", path, where, f[i].key);
        }
        if (!json_is_integer(v) || json_integer_value(v) < f[i].lo || json_integer_value(v) > f[i].hi)
            return mf_err_set(err, MF_ERR_FORMAT, "%s: %s.%s must be an integer in [%lld, %lld]", path, where,
                              f[i].key, (long long)f[i].lo, (long long)f[i].hi);
        *f[i].dst = json_integer_value(v);
    }
    return MF_OK;
}

/* The original layout stores no head count: every loader infers hidden/64 (models.md §4.6). */
static enum mf_status check_heads(int64_t d, int64_t *h, const char *what, const char *path, struct mf_err *err)
{
    const int64_t inferred = d / 64 > 1 ? d / 64 : 1;
    if (*h == 0)
        *h = inferred;
    if (*h != inferred || d % *h != 0)
        return mf_err_set(err, MF_ERR_ARG,
                          "%s: %s.heads %lld: the original layout stores no head count and loaders infer "
                          "max(1, width/64) = %lld heads from width %lld; use that (or omit 'heads')",
                          path, what, (long long)*h, (long long)inferred, (long long)d);
    return MF_OK;
}

enum mf_status mf_blip_arch_load(const char *path, struct mf_blip_arch *a, struct mf_err *err)
{
    json_error_t je;
    enum mf_status st = MF_OK;
    memset(a, 0, sizeof *a);
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return mf_err_set(err, MF_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text);
    const struct field top[] = {
        {"embed_dim", &a->embed_dim, 1, ARCH_MAX_DIM, false},
        {"queue_size", &a->queue_size, 1, ARCH_MAX_QUEUE, false},
    };
    const struct field vis[] = {
        {"width", &a->vision_width, 1, ARCH_MAX_DIM, false},
        {"layers", &a->vision_layers, 1, ARCH_MAX_LAYERS, false},
        {"heads", &a->vision_heads, 1, ARCH_MAX_DIM, true},
        {"mlp", &a->vision_mlp, 1, ARCH_MAX_DIM * 4, false},
        {"patch", &a->patch, 1, 1024, false},
        {"image_size", &a->image_size, 1, 8192, false},
    };
    const struct field txt[] = {
        {"width", &a->text_width, 1, ARCH_MAX_DIM, false},
        {"layers", &a->text_layers, 1, ARCH_MAX_LAYERS, false},
        {"heads", &a->text_heads, 1, ARCH_MAX_DIM, true},
        {"ffn", &a->text_ffn, 1, ARCH_MAX_DIM * 4, false},
        {"positions", &a->text_positions, 2, 8192, false},
    };
    if (!json_is_object(root)) {
        st = mf_err_set(err, MF_ERR_FORMAT, "%s: top level must be a JSON object", path);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (key[0] != '_' && strcmp(key, "vision") != 0 && strcmp(key, "text") != 0 && strcmp(key, "train") != 0 &&
            strcmp(key, "embed_dim") != 0 && strcmp(key, "queue_size") != 0) {
            st = mf_err_set(err, MF_ERR_FORMAT,
                            "%s: unknown key '%s' (expected vision, text, embed_dim, queue_size, train)", path, key);
            goto done;
        }
    }
    json_t *jv = json_object_get(root, "vision"), *jt = json_object_get(root, "text");
    if (!jv || !jt) {
        st = mf_err_set(err, MF_ERR_MISSING, "%s: needs the objects 'vision' and 'text'", path);
        goto done;
    }
    if ((st = read_fields(root, "top level", top, MF_ARRAY_LEN(top), false, path, err)) ||
        (st = read_fields(jv, "vision", vis, MF_ARRAY_LEN(vis), true, path, err)) ||
        (st = read_fields(jt, "text", txt, MF_ARRAY_LEN(txt), true, path, err)))
        goto done;
    if (a->image_size % a->patch != 0) {
        st = mf_err_set(err, MF_ERR_ARG, "%s: vision.image_size %lld is not a multiple of vision.patch %lld", path,
                        (long long)a->image_size, (long long)a->patch);
        goto done;
    }
    if ((st = check_heads(a->vision_width, &a->vision_heads, "vision", path, err)) ||
        (st = check_heads(a->text_width, &a->text_heads, "text", path, err)))
        goto done;
done:
    json_decref(root);
    return st;
}

enum mf_status mf_blip_arch_set_vocab(struct mf_blip_arch *a, const char *vocab_path, struct mf_err *err)
{
    struct mf_vocab *v = NULL;
    enum mf_status st;
    if ((st = mf_vocab_load(vocab_path, &v, err)) || (st = mf_vocab_add_blip_tokens(v, err)))
        goto done;
    const enum mf_special_token need[] = {MF_TOK_PAD, MF_TOK_UNK, MF_TOK_CLS, MF_TOK_SEP};
    for (size_t i = 0; i < MF_ARRAY_LEN(need); i++)
        if (mf_vocab_special(v, need[i]) < 0) {
            st = mf_err_set(err, MF_ERR_MISSING, "%s: the vocabulary lacks %s", vocab_path,
                            mf_special_token_str(need[i]));
            goto done;
        }
    a->vocab = mf_vocab_size(v);
done:
    mf_vocab_free(v);
    return st;
}

/* ---- tensor list -------------------------------------------------------------------------- */

enum init_kind {
    K_TRUNC,   /* trunc_normal(std arg, [-2, 2]) */
    K_NORMAL,  /* normal(0, arg) */
    K_UNIFORM, /* uniform(-arg, arg) */
    K_ZERO,
    K_ONE,
    K_CONST,   /* arg */
    K_QUEUE,   /* randn (P, Q), columns normalised */
    K_PTR,     /* I64 zeros */
};

struct spec {
    char name[128];
    char src[128]; /* the name whose generator draws the values (the online tensor of a copy) */
    int ndim;
    int64_t shape[4];
    enum init_kind kind;
    double arg;
    enum mf_dtype dtype;
    /* fill state */
    struct mf_rng rng;
    int64_t next;   /* elements produced so far */
    double *colnorm; /* K_QUEUE: (Q) column norms */
};

struct list {
    struct spec *s;
    size_t n, cap;
    enum mf_dtype dtype;
    bool oom;
};

static struct spec *add(struct list *l, const char *name, int ndim, const int64_t *shape, enum init_kind k, double arg)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        struct spec *p = mf_realloc(l->s, cap * sizeof *p);
        if (!p) {
            l->oom = true;
            return NULL;
        }
        l->s = p;
        l->cap = cap;
    }
    struct spec *s = &l->s[l->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->src, sizeof s->src, "%s", name);
    s->ndim = ndim;
    if (ndim > 0)
        memcpy(s->shape, shape, (size_t)ndim * sizeof *shape);
    s->kind = k;
    s->arg = arg;
    s->dtype = k == K_PTR ? MF_DTYPE_I64 : l->dtype;
    return s;
}

static void add1(struct list *l, const char *prefix, const char *suffix, int64_t d0, enum init_kind k, double arg)
{
    char name[128];
    snprintf(name, sizeof name, "%s%s", prefix, suffix);
    add(l, name, 1, (int64_t[]){d0}, k, arg);
}

/* nn.Linear: weight (out, in) by kind wk; bias zero (BERT, ViT) or, for default-initialised heads,
 * uniform +-1/sqrt(in) like the weight. */
static void add_linear(struct list *l, const char *prefix, int64_t out, int64_t in, enum init_kind wk, double arg)
{
    char name[128];
    snprintf(name, sizeof name, "%s.weight", prefix);
    add(l, name, 2, (int64_t[]){out, in}, wk, arg);
    add1(l, prefix, ".bias", out, wk == K_UNIFORM ? K_UNIFORM : K_ZERO, wk == K_UNIFORM ? arg : 0);
}

static void add_ln(struct list *l, const char *prefix, int64_t d)
{
    add1(l, prefix, ".weight", d, K_ONE, 0);
    add1(l, prefix, ".bias", d, K_ZERO, 0);
}

static void add_vit(struct list *l, const char *p, const struct mf_blip_arch *a)
{
    char n[128];
    const int64_t d = a->vision_width, g = a->image_size / a->patch, fan = 3 * a->patch * a->patch;
    snprintf(n, sizeof n, "%s.cls_token", p);
    add(l, n, 3, (int64_t[]){1, 1, d}, K_TRUNC, 0.02);
    snprintf(n, sizeof n, "%s.pos_embed", p);
    add(l, n, 3, (int64_t[]){1, g * g + 1, d}, K_TRUNC, 0.02);
    snprintf(n, sizeof n, "%s.patch_embed.proj.weight", p);
    add(l, n, 4, (int64_t[]){d, 3, a->patch, a->patch}, K_UNIFORM, 1.0 / sqrt((double)fan));
    snprintf(n, sizeof n, "%s.patch_embed.proj", p);
    add1(l, n, ".bias", d, K_UNIFORM, 1.0 / sqrt((double)fan));
    for (int64_t i = 0; i < a->vision_layers; i++) {
        char b[96];
        snprintf(b, sizeof b, "%s.blocks.%lld", p, (long long)i);
        snprintf(n, sizeof n, "%s.norm1", b), add_ln(l, n, d);
        snprintf(n, sizeof n, "%s.attn.qkv", b), add_linear(l, n, 3 * d, d, K_TRUNC, 0.02);
        snprintf(n, sizeof n, "%s.attn.proj", b), add_linear(l, n, d, d, K_TRUNC, 0.02);
        snprintf(n, sizeof n, "%s.norm2", b), add_ln(l, n, d);
        snprintf(n, sizeof n, "%s.mlp.fc1", b), add_linear(l, n, a->vision_mlp, d, K_TRUNC, 0.02);
        snprintf(n, sizeof n, "%s.mlp.fc2", b), add_linear(l, n, d, a->vision_mlp, K_TRUNC, 0.02);
    }
    snprintf(n, sizeof n, "%s.norm", p);
    add_ln(l, n, d);
}

/* BertModel (encoder, or the decoder's own part: causal self-attention only, tied rest omitted). */
static void add_bert(struct list *l, const char *p, const struct mf_blip_arch *a, bool own_only)
{
    char n[160];
    const int64_t d = a->text_width, e = a->vision_width;
    const double r = 0.02;
    if (!own_only) {
        snprintf(n, sizeof n, "%s.embeddings.word_embeddings.weight", p);
        add(l, n, 2, (int64_t[]){a->vocab, d}, K_NORMAL, r);
        snprintf(n, sizeof n, "%s.embeddings.position_embeddings.weight", p);
        add(l, n, 2, (int64_t[]){a->text_positions, d}, K_NORMAL, r);
        snprintf(n, sizeof n, "%s.embeddings.LayerNorm", p);
        add_ln(l, n, d);
    }
    for (int64_t i = 0; i < a->text_layers; i++) {
        char b[128];
        snprintf(b, sizeof b, "%s.encoder.layer.%lld", p, (long long)i);
        const char *qkv[] = {"query", "key", "value"};
        for (int k = 0; k < 3; k++)
            snprintf(n, sizeof n, "%s.attention.self.%s", b, qkv[k]), add_linear(l, n, d, d, K_NORMAL, r);
        snprintf(n, sizeof n, "%s.attention.output.dense", b), add_linear(l, n, d, d, K_NORMAL, r);
        snprintf(n, sizeof n, "%s.attention.output.LayerNorm", b), add_ln(l, n, d);
        if (own_only)
            continue;
        for (int k = 0; k < 3; k++)
            snprintf(n, sizeof n, "%s.crossattention.self.%s", b, qkv[k]),
                add_linear(l, n, d, k == 0 ? d : e, K_NORMAL, r);
        snprintf(n, sizeof n, "%s.crossattention.output.dense", b), add_linear(l, n, d, d, K_NORMAL, r);
        snprintf(n, sizeof n, "%s.crossattention.output.LayerNorm", b), add_ln(l, n, d);
        snprintf(n, sizeof n, "%s.intermediate.dense", b), add_linear(l, n, a->text_ffn, d, K_NORMAL, r);
        snprintf(n, sizeof n, "%s.output.dense", b), add_linear(l, n, d, a->text_ffn, K_NORMAL, r);
        snprintf(n, sizeof n, "%s.output.LayerNorm", b), add_ln(l, n, d);
    }
}

/* Appends momentum copies of every tensor added since index `from` whose name starts with `online`
 * (prefix "visual_encoder" -> "visual_encoder_m"). */
static void add_copies(struct list *l, size_t from, size_t to, const char *online, const char *copy)
{
    const size_t k = strlen(online);
    for (size_t i = from; i < to && !l->oom; i++) {
        if (strncmp(l->s[i].name, online, k) != 0 || l->s[i].name[k] != '.')
            continue;
        char n[128];
        snprintf(n, sizeof n, "%s%s", copy, l->s[i].name + k);
        struct spec src = l->s[i]; /* add may move the array */
        struct spec *s = add(l, n, src.ndim, src.shape, src.kind, src.arg);
        if (s)
            snprintf(s->src, sizeof s->src, "%s", src.name);
    }
}

/* BLIP_Pretrain's state dict order: own parameter and buffers, then the modules as registered. */
static void build(struct list *l, const struct mf_blip_arch *a)
{
    const int64_t P = a->embed_dim;
    add(l, "temp", 0, NULL, K_CONST, 0.07);
    add(l, "image_queue", 2, (int64_t[]){P, a->queue_size}, K_QUEUE, 0);
    add(l, "text_queue", 2, (int64_t[]){P, a->queue_size}, K_QUEUE, 0);
    add(l, "queue_ptr", 1, (int64_t[]){1}, K_PTR, 0);
    const size_t online0 = l->n;
    add_vit(l, "visual_encoder", a);
    add_bert(l, "text_encoder", a, false);
    add_linear(l, "vision_proj", P, a->vision_width, K_UNIFORM, 1.0 / sqrt((double)a->vision_width));
    add_linear(l, "text_proj", P, a->text_width, K_UNIFORM, 1.0 / sqrt((double)a->text_width));
    add_linear(l, "itm_head", 2, a->text_width, K_UNIFORM, 1.0 / sqrt((double)a->text_width));
    const size_t online1 = l->n;
    add_copies(l, online0, online1, "visual_encoder", "visual_encoder_m");
    add_copies(l, online0, online1, "vision_proj", "vision_proj_m");
    add_copies(l, online0, online1, "text_encoder", "text_encoder_m");
    add_copies(l, online0, online1, "text_proj", "text_proj_m");
    add_bert(l, "text_decoder.bert", a, true);
    add1(l, "text_decoder.cls.predictions", ".bias", a->vocab, K_ZERO, 0);
    add_linear(l, "text_decoder.cls.predictions.transform.dense", a->text_width, a->text_width, K_NORMAL, 0.02);
    add_ln(l, "text_decoder.cls.predictions.transform.LayerNorm", a->text_width);
}

/* ---- values ------------------------------------------------------------------------------- */

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void seed_spec(struct spec *s, uint64_t seed)
{
    mf_rng_seed(&s->rng, seed * 0x9E3779B97F4A7C15ull ^ name_hash(s->src));
    s->next = 0;
}

static double draw(struct spec *s)
{
    switch (s->kind) {
    case K_TRUNC:
        for (;;) { /* timm trunc_normal_(std, a=-2, b=2): bounds in absolute units */
            double x = mf_rng_normal(&s->rng) * s->arg;
            if (x >= -2.0 && x <= 2.0)
                return x;
        }
    case K_NORMAL: return mf_rng_normal(&s->rng) * s->arg;
    case K_UNIFORM: return (2.0 * mf_rng_uniform(&s->rng) - 1.0) * s->arg;
    case K_ONE: return 1.0;
    case K_CONST: return s->arg;
    case K_QUEUE: return mf_rng_normal(&s->rng);
    default: return 0.0;
    }
}

static int64_t spec_numel(const struct spec *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++)
        n *= s->shape[i];
    return n;
}

struct fill_ctx {
    struct spec *s;
    uint64_t seed;
    float *scratch; /* (CHUNK) */
};

#define CHUNK ((size_t)1 << 18) /* floats converted per pass; fill chunks are split into these */

static enum mf_status fill(void *ctx, void *dst, size_t offset, size_t n, struct mf_err *err)
{
    struct fill_ctx *c = ctx;
    struct spec *s = c->s;
    const size_t es = mf_dtype_size(s->dtype);
    int64_t j = (int64_t)(offset / es);
    if (j == 0)
        seed_spec(s, c->seed);
    if (j != s->next)
        return mf_err_set(err, MF_ERR_ARG, "tensor '%s': chunks out of order", s->name);
    if (s->kind == K_PTR) {
        memset(dst, 0, n);
        s->next += (int64_t)(n / es);
        return MF_OK;
    }
    const int64_t Q = s->kind == K_QUEUE ? s->shape[1] : 1;
    unsigned char *out = dst;
    for (size_t done = 0; done < n / es;) {
        const size_t m = MF_MIN(CHUNK, n / es - done);
        for (size_t k = 0; k < m; k++, j++) {
            const double x = (double)(float)draw(s); /* the float value a tensor of randn holds */
            c->scratch[k] = s->kind == K_QUEUE ? (float)(x / s->colnorm[j % Q]) : (float)x;
        }
        mf_convert_from_f32(out + done * es, c->scratch, s->dtype, (int64_t)m);
        done += m;
    }
    s->next = j;
    return MF_OK;
}

/* Column norms of a queue: one pass of its generator (F.normalize: x / max(||x||, 1e-12)). */
static enum mf_status queue_norms(struct spec *s, uint64_t seed, struct mf_err *err)
{
    const int64_t P = s->shape[0], Q = s->shape[1];
    if (!(s->colnorm = mf_calloc((size_t)Q, sizeof *s->colnorm)))
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the queue norms (%lld)", (long long)Q);
    seed_spec(s, seed);
    for (int64_t p = 0; p < P; p++)
        for (int64_t q = 0; q < Q; q++) {
            double x = (double)(float)draw(s);
            s->colnorm[q] += x * x;
        }
    for (int64_t q = 0; q < Q; q++)
        s->colnorm[q] = MF_MAX(sqrt(s->colnorm[q]), 1e-12);
    return MF_OK;
}

enum mf_status mf_blip_init_write(const struct mf_blip_arch *a, uint64_t seed, enum mf_dtype dtype, const char *path,
                                  struct mf_err *err)
{
    enum mf_status st = MF_OK;
    struct list l = {0};
    struct fill_ctx *ctx = NULL;
    float *scratch = NULL;
    struct mf_st_writer *w = NULL;
    if (dtype != MF_DTYPE_F32 && dtype != MF_DTYPE_F16 && dtype != MF_DTYPE_BF16)
        return mf_err_set(err, MF_ERR_ARG, "init: dtype %s: expected F32, F16 or BF16", mf_dtype_name(dtype));
    if (a->vocab < 5)
        return mf_err_set(err, MF_ERR_ARG, "init: the vocabulary size is not set (mf_blip_arch_set_vocab)");
    l.dtype = dtype;
    build(&l, a);
    if (l.oom || !(ctx = mf_calloc(l.n, sizeof *ctx)) || !(scratch = mf_malloc(CHUNK * sizeof *scratch))) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory for the tensor list");
        goto done;
    }
    if ((st = mf_st_writer_create(path, &w, err)))
        goto done;
    char sbuf[32];
    snprintf(sbuf, sizeof sbuf, "%llu", (unsigned long long)seed);
    if ((st = mf_st_writer_meta(w, "format", "pt", err)) ||
        (st = mf_st_writer_meta(w, "multiflow_init", "blip-orig random init (BLIP's init rules)", err)) ||
        (st = mf_st_writer_meta(w, "multiflow_init_seed", sbuf, err)))
        goto done;
    for (size_t i = 0; i < l.n; i++) {
        struct spec *s = &l.s[i];
        if (s->kind == K_QUEUE && (st = queue_norms(s, seed, err)))
            goto done;
        ctx[i] = (struct fill_ctx){s, seed, scratch};
        if (spec_numel(s) > INT64_MAX / 8) {
            st = mf_err_set(err, MF_ERR_RANGE, "tensor '%s' too large", s->name);
            goto done;
        }
        if ((st = mf_st_writer_add_fill(w, s->name, s->dtype, s->ndim, s->shape, fill, &ctx[i], err)))
            goto done;
    }
    st = mf_st_writer_commit(w, err);
    w = NULL;
done:
    mf_st_writer_abort(w);
    for (size_t i = 0; i < l.n; i++)
        mf_free(l.s[i].colnorm);
    mf_free(l.s);
    mf_free(ctx);
    mf_free(scratch);
    return st;
}

int64_t mf_blip_arch_params(const struct mf_blip_arch *a)
{
    struct list l = {.dtype = MF_DTYPE_F32};
    build(&l, a);
    int64_t n = 0;
    for (size_t i = 0; i < l.n && !l.oom; i++)
        n += l.s[i].kind == K_PTR ? 0 : spec_numel(&l.s[i]);
    mf_free(l.s);
    return l.oom ? -1 : n;
}
