/*
 * models/losses.c: BLIP's pretraining losses on one batch — ITC (columns: the momentum encoders'
 * features of the batch, then the queues; learned temperature), ITM (3B pairs with hard negatives
 * drawn from those similarities, sampled or hardest), LM (label smoothing 0.1, token mean) — as a
 * training forward, loss values and a backward into a gradient block, on top of the model
 * backward of models/grad.h. The momentum update, momentum forward and enqueue are
 * models/momentum.c's; without momentum copies (or with momentum off) the online features with
 * the gradient stopped are the columns and the queues stay as stored.
 *
 * Does not: distil (alpha = 0), or draw negatives bit-compatibly with torch.multinomial; see
 * docs/internals/losses.md for each decision.
 *
 * Reference: salesforce/BLIP models/blip_pretrain.py (BLIP_Pretrain.forward), models/med.py
 * (BertLMHeadModel loss); FarinaMatteo/multiflow pruners/accumulators.py (alpha = 0, summed losses);
 * tests/golden/blip_losses.py is the float64 PyTorch version these are tested against.
 */
#include "models/losses.h"

#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "models/grad.h"
#include "models/momentum.h"
#include "nn/nn.h"

#define TEMP_DEFAULT 0.07f
#define TEMP_MIN 0.001f
#define TEMP_MAX 0.5f
#define LABEL_SMOOTHING 0.1
#define ITM_WEIGHT_EPS 1e-4

struct mf_losses {
    const struct mf_model *m;
    unsigned losses;
    enum mf_itm_negatives neg;
    uint64_t seed;
    float temp;     /* clamped */
    bool has_temp;
    struct mf_momentum *mo; /* queues and momentum encoders; NULL when neither ITC nor ITM runs */
    enum mf_momentum_mode momentum;
    int64_t lm_prompt_len; /* LM targets start at this position (captioning prompt), >= 0 */
};

enum mf_status mf_losses_parse(const char *list, unsigned *bits, struct mf_err *err)
{
    static const struct { const char *name; unsigned bit; } names[] = {
        {"itc", MF_LOSS_ITC}, {"itm", MF_LOSS_ITM}, {"lm", MF_LOSS_LM}};
    unsigned out = 0;
    const char *p = list;
    if (!list || !*list)
        return mf_err_set(err, MF_ERR_ARG, "--loss: empty list (expected a subset of itc,itm,lm)");
    while (*p) {
        size_t n = strcspn(p, ",");
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strlen(names[i].name) == n && strncmp(p, names[i].name, n) == 0)
                bit = names[i].bit;
        if (!bit)
            return mf_err_set(err, MF_ERR_ARG, "--loss: unknown loss '%.*s' (expected itc, itm, lm)", (int)n, p);
        if (out & bit)
            return mf_err_set(err, MF_ERR_ARG, "--loss: '%.*s' given twice", (int)n, p);
        out |= bit;
        p += n;
        if (*p == ',') {
            p++;
            if (!*p)
                return mf_err_set(err, MF_ERR_ARG, "--loss: trailing comma in '%s'", list);
        }
    }
    *bits = out;
    return MF_OK;
}

static enum mf_status load_temp(struct mf_losses *L, struct mf_err *err)
{
    const int ti = mf_model_find(L->m, "temp");
    const struct mf_model_tensor *t = ti >= 0 ? &L->m->tensors[ti] : NULL;
    L->temp = TEMP_DEFAULT;
    L->has_temp = false;
    if (!t)
        return MF_OK;
    if (!mf_dtype_is_float(t->dtype) || t->nbytes != mf_dtype_size(t->dtype))
        return mf_err_set(err, MF_ERR_SHAPE, "%s: tensor 'temp' must be one floating-point value (%d dims)",
                          L->m->path, t->ndim);
    float v;
    mf_convert_to_f32(&v, t->data, t->dtype, 1);
    if (!isfinite(v))
        return mf_err_set(err, MF_ERR_NUMERIC, "%s: tensor 'temp' is not finite", L->m->path);
    L->temp = v < TEMP_MIN ? TEMP_MIN : v > TEMP_MAX ? TEMP_MAX : v; /* the reference clamps in place */
    L->has_temp = true;
    return MF_OK;
}

float mf_losses_set_temp(struct mf_losses *L, float temp)
{
    if (L->has_temp && isfinite(temp))
        L->temp = temp < TEMP_MIN ? TEMP_MIN : temp > TEMP_MAX ? TEMP_MAX : temp;
    return L->temp;
}

enum mf_status mf_losses_create(const struct mf_model *m, const struct mf_losses_opts *o, struct mf_losses **out,
                                struct mf_err *err)
{
    enum mf_status st;
    const struct mf_model_info *info = &m->info;
    const bool itc_ok = info->has_itc, itm_ok = info->has_itm && info->has_itc, lm_ok = info->has_decoder;
    unsigned sel = o->losses;
    *out = NULL;
    if (sel & ~(unsigned)MF_LOSS_ALL)
        return mf_err_set(err, MF_ERR_ARG, "unknown loss bits 0x%x", sel);
    if (!sel)
        sel = (itc_ok ? MF_LOSS_ITC : 0u) | (itm_ok ? MF_LOSS_ITM : 0u) | (lm_ok ? MF_LOSS_LM : 0u);
    if (!sel)
        return mf_err_set(err, MF_ERR_UNSUPPORTED, "%s: the checkpoint supports none of the losses itc, itm, lm",
                          m->path);
    if ((sel & MF_LOSS_ITC) && !itc_ok)
        return mf_err_set(err, MF_ERR_UNSUPPORTED,
                          "%s: loss itc needs a text encoder and the vision_proj/text_proj heads", m->path);
    if ((sel & MF_LOSS_ITM) && !itm_ok)
        return mf_err_set(err, MF_ERR_UNSUPPORTED,
                          "%s: loss itm needs a text encoder, itm_head and the vision_proj/text_proj heads (its "
                          "negatives come from the contrastive similarities)",
                          m->path);
    if ((sel & MF_LOSS_LM) && !lm_ok)
        return mf_err_set(err, MF_ERR_UNSUPPORTED, "%s: loss lm needs a text decoder (text_decoder.*)", m->path);
    if (o->negatives != MF_ITM_NEG_SAMPLE && o->negatives != MF_ITM_NEG_HARDEST)
        return mf_err_set(err, MF_ERR_ARG, "unknown ITM negative mode %d", (int)o->negatives);
    if (o->momentum != MF_MOMENTUM_ON && o->momentum != MF_MOMENTUM_OFF)
        return mf_err_set(err, MF_ERR_ARG, "unknown momentum mode %d", (int)o->momentum);
    struct mf_losses *L = mf_calloc(1, sizeof *L);
    if (!L)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    L->m = m;
    L->losses = sel;
    L->neg = o->negatives;
    L->seed = o->seed;
    L->momentum = o->momentum;
    L->lm_prompt_len = o->lm_prompt_len > 0 ? o->lm_prompt_len : 0;
    if ((st = load_temp(L, err)))
        goto fail;
    if ((sel & (MF_LOSS_ITC | MF_LOSS_ITM)) &&
        (st = mf_momentum_create(m, o->momentum == MF_MOMENTUM_ON, &L->mo, err)))
        goto fail;
    *out = L;
    return MF_OK;
fail:
    mf_losses_free(L);
    return st;
}

void mf_losses_free(struct mf_losses *L)
{
    if (!L)
        return;
    mf_momentum_free(L->mo);
    mf_free(L);
}

unsigned mf_losses_selected(const struct mf_losses *L) { return L->losses; }

const struct mf_momentum *mf_losses_momentum(const struct mf_losses *L) { return L->mo; }

void mf_losses_reset(struct mf_losses *L) { mf_momentum_reset(L->mo); }

const char *mf_losses_momentum_name(const struct mf_losses *L)
{
    return mf_momentum_active(L->mo) ? "on" : L->momentum == MF_MOMENTUM_OFF ? "off" : "none";
}

/* ---- helpers ------------------------------------------------------------------------------- */

static float *zeros(struct mf_arena *a, int64_t n)
{
    float *p = mf_arena_f32(a, n);
    if (p)
        memset(p, 0, (size_t)n * sizeof *p);
    return p;
}

/* log-sum-exp of x[n] in double. */
static double lse(const float *x, int64_t n)
{
    double mx = -INFINITY, s = 0;
    for (int64_t j = 0; j < n; j++)
        mx = x[j] > mx ? x[j] : mx;
    for (int64_t j = 0; j < n; j++)
        s += exp((double)x[j] - mx);
    return mx + log(s);
}

/* Similarities of B rows feat (B, P) against [cols (B, P) | queue (Q, P)] (no gradient to either),
 * divided by temp: sim (B, B+Q). */
static void similarities(struct mf_session *s, float *sim, float *tmpq, const float *feat, const float *cols,
                         const float *qT, int64_t B, int64_t P, int64_t Q, float temp)
{
    const int64_t K = B + Q;
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < B; j++) {
            double dot = 0;
            for (int64_t p = 0; p < P; p++)
                dot += (double)feat[b * P + p] * cols[j * P + p];
            sim[b * K + j] = (float)(dot / temp);
        }
    if (Q > 0) {
        mf_linear_forward(s->pool, tmpq, feat, P, qT, NULL, B, P, Q); /* (B, Q) */
        for (int64_t b = 0; b < B; b++)
            for (int64_t q = 0; q < Q; q++)
                sim[b * K + B + q] = tmpq[b * Q + q] / temp;
    }
}

/* One ITC direction: loss sum over rows (not yet averaged) and, into d_feat (B, P) (overwritten),
 * the gradient of mean_b(-log softmax(sim[b])[b]) / 2 w.r.t. feat; *d_temp accumulates. */
static double itc_direction(struct mf_session *s, const float *sim, const float *cols, const float *qT, int64_t B,
                            int64_t P, int64_t Q, float temp, float *d_feat, float *dsq, double *d_temp)
{
    const int64_t K = B + Q;
    const double scale = 1.0 / (2.0 * (double)B);
    double loss = 0;
    for (int64_t b = 0; b < B; b++) {
        const float *row = sim + b * K;
        double l = lse(row, K);
        loss += l - row[b];
        float *d = d_feat + b * P;
        memset(d, 0, (size_t)P * sizeof *d);
        for (int64_t j = 0; j < K; j++) {
            double g = (exp((double)row[j] - l) - (j == b ? 1.0 : 0.0)) * scale; /* d loss / d sim[b][j] */
            *d_temp -= g * row[j] / temp;
            if (j < B) {
                for (int64_t p = 0; p < P; p++)
                    d[p] += (float)(g / temp * cols[j * P + p]);
            } else {
                dsq[b * Q + (j - B)] = (float)(g / temp);
            }
        }
    }
    if (Q > 0) {
        float *dq = d_feat + B * P; /* scratch row block after d_feat (caller sized it 2B*P) */
        mf_linear_backward(s->pool, dq, NULL, NULL, dsq, NULL, P, qT, B, P, Q); /* dq = dsq qT (B, P) */
        for (int64_t i = 0; i < B * P; i++)
            d_feat[i] += dq[i];
    }
    return loss;
}

/* ITM weights of one row: softmax over the in-batch columns + 1e-4, own column 0 (double). */
static void itm_weights(const float *row, int64_t B, int64_t self, double *w)
{
    double l = lse(row, B);
    for (int64_t j = 0; j < B; j++)
        w[j] = j == self ? 0.0 : exp((double)row[j] - l) + ITM_WEIGHT_EPS;
}

static int32_t pick_negative(const double *w, int64_t B, bool hardest, struct mf_rng *r)
{
    int64_t best = -1;
    if (hardest) {
        for (int64_t j = 0; j < B; j++)
            if (w[j] > 0 && (best < 0 || w[j] > w[best]))
                best = j;
        return (int32_t)best;
    }
    double tot = 0;
    for (int64_t j = 0; j < B; j++)
        tot += w[j];
    double u = mf_rng_uniform(r) * tot, c = 0;
    for (int64_t j = 0; j < B; j++) {
        if (w[j] <= 0)
            continue;
        c += w[j];
        best = j;
        if (u < c)
            break;
    }
    return (int32_t)best;
}

static void set_first(int32_t *dst, const int32_t *ids, int64_t B, int64_t T, int32_t tok)
{
    memcpy(dst, ids, (size_t)(B * T) * sizeof *dst);
    for (int64_t b = 0; b < B; b++)
        dst[b * T] = tok;
}

/* ---- one batch ----------------------------------------------------------------------------- */

enum mf_status mf_losses_batch(struct mf_losses *L, struct mf_session *s, uint64_t batch_index,
                               const float *images, const int32_t *ids, const int32_t *mask, int64_t B, int64_t T,
                               struct mf_grads *g, struct mf_loss_values *out, int32_t *neg_img_out,
                               int32_t *neg_txt_out, struct mf_err *err)
{
    const struct mf_model *m = L->m;
    struct mf_arena *a = &s->arena;
    const unsigned sel = L->losses;
    const int64_t N = m->vision.cfg.n_tok, dv = m->vision.cfg.d;
    const int64_t dt = (sel & (MF_LOSS_ITC | MF_LOSS_ITM)) ? m->text.cfg.d : m->dec.cfg.d;
    const int64_t P = m->info.proj_dim, Q = mf_momentum_queue_len(L->mo);
    const float *img_qT = mf_momentum_queue(L->mo, 0), *txt_qT = mf_momentum_queue(L->mo, 1); /* (Q, P) */
    const bool momentum = mf_momentum_active(L->mo);
    float *fim = NULL, *ftm = NULL; /* (B, P) momentum features (enqueued after the batch) */
    const float temp = L->temp;
    enum mf_status st;
    struct mf_loss_values v = {NAN, NAN, NAN, 0, temp, 0};

    if (s->m != m)
        return mf_err_set(err, MF_ERR_ARG, "the session belongs to another model");
    if (B < 1 || T < 2)
        return mf_err_set(err, MF_ERR_ARG, "a loss batch needs at least 1 pair and 2 tokens (got %lld, %lld)",
                          (long long)B, (long long)T);
    if ((sel & MF_LOSS_ITM) && B < 2)
        return mf_err_set(err, MF_ERR_ARG,
                          "the ITM loss needs at least 2 pairs per batch (in-batch negatives); got a batch of %lld",
                          (long long)B);
    if (B > INT64_MAX / (3 * N * (dv > dt ? dv : dt)) / T)
        return mf_err_set(err, MF_ERR_RANGE, "batch of %lld pairs too large", (long long)B);

    mf_arena_reset(a);
    float *emb = mf_arena_f32(a, B * N * dv);   /* (B, N, dv) image_embeds */
    float *d_emb = zeros(a, B * N * dv);        /* (B, N, dv) */
    struct mf_vit_acts va;
    if (!emb || !d_emb)
        goto nomem;
    if ((st = mf_vit_forward_train(s, &m->vision, images, B, emb, &va, err)))
        return st;

    float *sim_i2t = NULL, *sim_t2i = NULL; /* (B, B+Q) */
    if (sel & (MF_LOSS_ITC | MF_LOSS_ITM)) {
        const int64_t K = B + Q;
        float *ht = mf_arena_f32(a, B * T * dt); /* (B, T, dt) unimodal text hidden */
        float *zi = mf_arena_f32(a, B * P), *fi = mf_arena_f32(a, B * P); /* (B, P) */
        float *zt = mf_arena_f32(a, B * P), *ft = mf_arena_f32(a, B * P);
        float *tmpq = Q ? mf_arena_f32(a, B * Q) : NULL; /* (B, Q) */
        sim_i2t = mf_arena_f32(a, B * K);
        sim_t2i = mf_arena_f32(a, B * K);
        struct mf_bert_acts ta;
        if (!ht || !zi || !fi || !zt || !ft || (Q && !tmpq) || !sim_i2t || !sim_t2i)
            goto nomem;
        if (sel & MF_LOSS_ITC)
            st = mf_bert_forward_train(s, &m->text, ids, mask, B, T, NULL, 0, false, ht, &ta, err);
        else
            st = mf_bert_forward(s, &m->text, ids, mask, B, T, NULL, 0, false, ht, err);
        if (st)
            return st;
        mf_head_proj_forward(s, &m->vision_proj, emb, B, N, zi, fi);
        mf_head_proj_forward(s, &m->text_proj, ht, B, T, zt, ft);
        /* the first B columns: the momentum encoders' features after one update, or the online
         * features themselves (gradient stopped: they enter only as constants below) */
        const float *ci = fi, *ct = ft;
        if (momentum) {
            if (!(fim = mf_arena_f32(a, B * P)) || !(ftm = mf_arena_f32(a, B * P)))
                goto nomem;
            mf_momentum_update(L->mo, s->pool);
            if ((st = mf_momentum_features(L->mo, s, images, ids, mask, B, T, fim, ftm, err)))
                return st;
            ci = fim;
            ct = ftm;
        }
        similarities(s, sim_i2t, tmpq, fi, ct, txt_qT, B, P, Q, temp);
        similarities(s, sim_t2i, tmpq, ft, ci, img_qT, B, P, Q, temp);

        if (sel & MF_LOSS_ITC) {
            float *d_fi = mf_arena_f32(a, 2 * B * P), *d_ft = mf_arena_f32(a, 2 * B * P); /* (B, P) + scratch */
            float *d_ht = zeros(a, B * T * dt);
            double d_temp = 0;
            if (!d_fi || !d_ft || !d_ht)
                goto nomem;
            double li = itc_direction(s, sim_i2t, ct, txt_qT, B, P, Q, temp, d_fi, tmpq, &d_temp);
            double lt = itc_direction(s, sim_t2i, ci, img_qT, B, P, Q, temp, d_ft, tmpq, &d_temp);
            v.itc = (li + lt) / (2.0 * (double)B);
            v.d_temp = L->has_temp ? d_temp : 0;
            if ((st = mf_head_proj_backward(s, &m->vision_proj, emb, B, N, zi, d_fi, d_emb, g, err)) ||
                (st = mf_head_proj_backward(s, &m->text_proj, ht, B, T, zt, d_ft, d_ht, g, err)) ||
                (st = mf_bert_backward(s, &m->text, &ta, d_ht, NULL, g, err)))
                return st;
        }
    }

    if (sel & MF_LOSS_ITM) {
        const int64_t K = B + Q, B3 = 3 * B;
        int32_t *neg_img = mf_arena_alloc(a, (size_t)B * sizeof(int32_t));
        int32_t *neg_txt = mf_arena_alloc(a, (size_t)B * sizeof(int32_t));
        double *w = mf_arena_alloc(a, (size_t)B * sizeof(double));
        int32_t *ids3 = mf_arena_alloc(a, (size_t)(B3 * T) * sizeof(int32_t)); /* (3B, T) */
        int32_t *mask3 = mf_arena_alloc(a, (size_t)(B3 * T) * sizeof(int32_t));
        float *enc3 = mf_arena_f32(a, B3 * N * dv);  /* (3B, N, dv) */
        float *h3 = mf_arena_f32(a, B3 * T * dt);    /* (3B, T, dt) */
        float *d_h3 = zeros(a, B3 * T * dt);
        float *d_enc3 = zeros(a, B3 * N * dv);
        float *lg = mf_arena_f32(a, B3 * 2), *d_lg = mf_arena_f32(a, B3 * 2); /* (3B, 2) */
        struct mf_bert_acts ma;
        struct mf_rng r;
        if (!neg_img || !neg_txt || !w || !ids3 || !mask3 || !enc3 || !h3 || !d_h3 || !d_enc3 || !lg || !d_lg)
            goto nomem;
        mf_rng_seed(&r, L->seed ^ (0x9E3779B97F4A7C15ull * (batch_index + 1)));
        const bool hard = L->neg == MF_ITM_NEG_HARDEST;
        for (int64_t b = 0; b < B; b++) { /* a negative image for each text */
            itm_weights(sim_t2i + b * K, B, b, w);
            neg_img[b] = pick_negative(w, B, hard, &r);
        }
        for (int64_t b = 0; b < B; b++) { /* a negative text for each image */
            itm_weights(sim_i2t + b * K, B, b, w);
            neg_txt[b] = pick_negative(w, B, hard, &r);
        }
        /* rows: (text b, image b) | (text b, image neg_img[b]) | (text neg_txt[b], image b) */
        const size_t tb = (size_t)T * sizeof(int32_t), eb = (size_t)(N * dv) * sizeof(float);
        for (int64_t b = 0; b < B; b++) {
            const int64_t src_t[3] = {b, b, neg_txt[b]}, src_i[3] = {b, neg_img[b], b};
            for (int k = 0; k < 3; k++) {
                const int64_t row = k * B + b;
                memcpy(ids3 + row * T, ids + src_t[k] * T, tb);
                ids3[row * T] = m->info.first_token_itm;
                memcpy(mask3 + row * T, mask + src_t[k] * T, tb);
                memcpy(enc3 + row * N * dv, emb + src_i[k] * N * dv, eb);
            }
        }
        if ((st = mf_bert_forward_train(s, &m->text, ids3, mask3, B3, T, enc3, N, false, h3, &ma, err)))
            return st;
        mf_head_itm_forward(s, h3, B3, T, lg);
        double loss = 0;
        for (int64_t i = 0; i < B3; i++) {
            const int label = i < B ? 1 : 0;
            double l = lse(lg + 2 * i, 2);
            loss += l - lg[2 * i + label];
            for (int c = 0; c < 2; c++)
                d_lg[2 * i + c] = (float)((exp((double)lg[2 * i + c] - l) - (c == label ? 1.0 : 0.0)) / (double)B3);
        }
        v.itm = loss / (double)B3;
        if ((st = mf_head_itm_backward(s, h3, B3, T, d_lg, d_h3, g, err)) ||
            (st = mf_bert_backward(s, &m->text, &ma, d_h3, d_enc3, g, err)))
            return st;
        for (int64_t b = 0; b < B; b++) {
            const int64_t dst[3] = {b, neg_img[b], b};
            for (int k = 0; k < 3; k++)
                mf_add_forward(s->pool, d_emb + dst[k] * N * dv, d_emb + dst[k] * N * dv,
                               d_enc3 + (k * B + b) * N * dv, N * dv);
        }
        if (neg_img_out)
            memcpy(neg_img_out, neg_img, (size_t)B * sizeof(int32_t));
        if (neg_txt_out)
            memcpy(neg_txt_out, neg_txt, (size_t)B * sizeof(int32_t));
    }

    if (sel & MF_LOSS_LM) {
        const int64_t d = m->dec.cfg.d, V = m->lm.V, BT = B * T;
        if (m->info.first_token_dec < 0 || m->info.first_token_dec >= V)
            return mf_err_set(err, MF_ERR_RANGE, "[DEC] id %d outside the decoder vocabulary of %lld",
                              m->info.first_token_dec, (long long)V);
        if (BT > INT64_MAX / V)
            return mf_err_set(err, MF_ERR_RANGE, "LM logits of %lld x %lld too large", (long long)BT, (long long)V);
        int32_t *idsd = mf_arena_alloc(a, (size_t)BT * sizeof(int32_t)); /* (B, T) [DEC] first */
        float *hd = mf_arena_f32(a, BT * d);      /* (B, T, d) */
        float *lg = mf_arena_f32(a, BT * V);      /* (B*T, V) logits, then their gradient in place */
        float *d_hd = zeros(a, BT * d);
        struct mf_bert_acts da;
        struct mf_lm_acts la;
        if (!idsd || !hd || !lg || !d_hd)
            goto nomem;
        set_first(idsd, ids, B, T, m->info.first_token_dec);
        if ((st = mf_bert_forward_train(s, &m->dec, idsd, mask, B, T, emb, N, true, hd, &da, err)) ||
            (st = mf_lm_forward(s, hd, BT, lg, &la, err)))
            return st;
        int64_t n_tgt = 0;
        const int64_t t0 = L->lm_prompt_len > 1 ? L->lm_prompt_len - 1 : 0; /* first logit row with a target */
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = t0; t + 1 < T; t++)
                n_tgt += mask[b * T + t + 1] != 0;
        if (n_tgt == 0)
            return mf_err_set(err, MF_ERR_ARG, "the LM loss has no target tokens (every caption is %s)",
                              t0 ? "the prompt alone" : "one token long");
        double loss = 0;
        const double eps = LABEL_SMOOTHING;
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++) {
                float *row = lg + (b * T + t) * V;
                if (t < t0 || t + 1 >= T || !mask[b * T + t + 1]) {
                    memset(row, 0, (size_t)V * sizeof *row);
                    continue;
                }
                const int32_t y = ids[b * T + t + 1];
                if (y < 0 || y >= V)
                    return mf_err_set(err, MF_ERR_RANGE, "token id %d at [%lld, %lld] outside the vocabulary of %lld",
                                      y, (long long)b, (long long)(t + 1), (long long)V);
                double l = lse(row, V), mean = 0;
                for (int64_t j = 0; j < V; j++)
                    mean += row[j];
                mean /= (double)V;
                loss += (1 - eps) * (l - row[y]) + eps * (l - mean);
                for (int64_t j = 0; j < V; j++)
                    row[j] = (float)((exp((double)row[j] - l) - eps / (double)V - (j == y ? 1 - eps : 0.0)) /
                                     (double)n_tgt);
            }
        v.lm = loss / (double)n_tgt;
        if ((st = mf_lm_backward(s, hd, BT, &la, lg, d_hd, g, err)) ||
            (st = mf_bert_backward(s, &m->dec, &da, d_hd, d_emb, g, err)))
            return st;
    }

    if ((st = mf_vit_backward(s, &m->vision, &va, d_emb, g, err)))
        return st;
    v.total = ((sel & MF_LOSS_ITC) ? v.itc : 0) + ((sel & MF_LOSS_ITM) ? v.itm : 0) + ((sel & MF_LOSS_LM) ? v.lm : 0);
    if (!isfinite(v.total))
        return mf_err_set(err, MF_ERR_NUMERIC, "the loss is not finite (itc %g, itm %g, lm %g)", v.itc, v.itm, v.lm);
    if (momentum) /* after the batch, as the reference's _dequeue_and_enqueue: the next batch sees them */
        mf_momentum_enqueue(L->mo, fim, ftm, B);
    if (out)
        *out = v;
    return MF_OK;
nomem:
    return mf_err_set(err, MF_ERR_NOMEM, "out of memory for the activations of a loss batch of %lld pairs",
                      (long long)B);
}
