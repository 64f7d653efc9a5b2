/*
 * eval/vqa_eval.c: VQA annotation sets and answer lists (JSON), and the rank-based evaluation loop
 * (eval/vqa_eval.h). Reference: salesforce/BLIP train_vqa.py evaluation (answer list tokenised once,
 * rank_answer per question batch), data/vqa_dataset.py (fields).
 */
#include "eval/vqa_eval.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/progress.h"
#include "io/fs.h"
#include "io/image.h"
#include "multiflow/eval.h"

void mf_vqa_set_free(struct mf_vqa_set *v)
{
    if (!v)
        return;
    for (int64_t i = 0; i < v->n; i++) {
        if (v->question_id)
            mf_free(v->question_id[i]);
        if (v->answers && v->answers[i]) {
            for (int k = 0; k < v->n_answers[i]; k++)
                mf_free(v->answers[i][k]);
            mf_free(v->answers[i]);
        }
        if (v->question_type)
            mf_free(v->question_type[i]);
        if (v->answer_type)
            mf_free(v->answer_type[i]);
    }
    mf_free(v->question_id);
    mf_free(v->answers);
    mf_free(v->n_answers);
    mf_free(v->question_type);
    mf_free(v->answer_type);
    mf_annotations_free(v->ann);
    mf_free(v);
}

static enum mf_status load_json(const char *path, json_t **out, struct mf_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    enum mf_status st = mf_fs_read_all(path, &buf, &len, MF_ANN_MAX_FILE_BYTES, err);
    if (st)
        return st;
    json_error_t je;
    *out = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    mf_free(buf);
    if (!*out)
        return mf_err_set(err, MF_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text);
    return MF_OK;
}

static enum mf_status opt_string(json_t *o, const char *key, const char *path, size_t rec, char **out,
                                 struct mf_err *err)
{
    json_t *s = json_object_get(o, key);
    *out = NULL;
    if (!s)
        return MF_OK;
    if (!json_is_string(s))
        return mf_err_set(err, MF_ERR_FORMAT, "%s: record %zu: '%s' is not a string", path, rec, key);
    if (!(*out = mf_strdup(json_string_value(s))))
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    return MF_OK;
}

enum mf_status mf_vqa_set_load(const char *path, const char *image_root, bool need_answers, struct mf_vqa_set **out,
                               struct mf_err *err)
{
    *out = NULL;
    json_t *root = NULL, *pairs = NULL;
    enum mf_status st = load_json(path, &root, err);
    if (st)
        return st;
    struct mf_vqa_set *v = mf_calloc(1, sizeof *v);
    const size_t n = json_is_array(root) ? json_array_size(root) : 0;
    if (!v) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!json_is_array(root) || n == 0) {
        st = mf_err_set(err, MF_ERR_FORMAT, "%s: expected a non-empty JSON array of questions", path);
        goto done;
    }
    v->n = (int64_t)n;
    pairs = json_array();
    if (!pairs || !(v->question_id = mf_calloc(n, sizeof(char *))) || !(v->answers = mf_calloc(n, sizeof(char **))) ||
        !(v->n_answers = mf_calloc(n, sizeof(int))) || !(v->question_type = mf_calloc(n, sizeof(char *))) ||
        !(v->answer_type = mf_calloc(n, sizeof(char *)))) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory for %zu questions", n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(root, i);
        const size_t rec = i + 1;
        if (!json_is_object(o)) {
            st = mf_err_set(err, MF_ERR_FORMAT, "%s: record %zu is not an object", path, rec);
            goto done;
        }
        json_t *im = json_object_get(o, "image"), *q = json_object_get(o, "question");
        json_t *qid = json_object_get(o, "question_id"), *ans = json_object_get(o, "answer");
        if (!json_is_string(im) || !json_is_string(q)) {
            st = mf_err_set(err, MF_ERR_FORMAT, "%s: record %zu: 'image' and 'question' must be strings", path, rec);
            goto done;
        }
        if (!json_is_integer(qid) && !json_is_string(qid)) {
            st = mf_err_set(err, MF_ERR_FORMAT, "%s: record %zu: 'question_id' must be a number or a string", path,
                            rec);
            goto done;
        }
        char *qs = json_dumps(qid, JSON_COMPACT | JSON_ENCODE_ANY);
        v->question_id[i] = qs ? mf_strdup(qs) : NULL;
        free(qs);
        if (!v->question_id[i]) {
            st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
            goto done;
        }
        if (ans) {
            const size_t na = json_is_string(ans) ? 1 : json_is_array(ans) ? json_array_size(ans) : 0;
            if (na == 0) {
                st = mf_err_set(err, MF_ERR_FORMAT, "%s: record %zu: 'answer' must be a string or a non-empty array "
                                "of strings", path, rec);
                goto done;
            }
            if (!(v->answers[i] = mf_calloc(na, sizeof(char *)))) {
                st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
                goto done;
            }
            v->n_answers[i] = (int)na;
            for (size_t k = 0; k < na; k++) {
                json_t *s = json_is_string(ans) ? ans : json_array_get(ans, k);
                if (!json_is_string(s)) {
                    st = mf_err_set(err, MF_ERR_FORMAT, "%s: record %zu: answer %zu is not a string", path, rec, k + 1);
                    goto done;
                }
                if (!(v->answers[i][k] = mf_strdup(json_string_value(s)))) {
                    st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
                    goto done;
                }
            }
        } else if (need_answers) {
            st = mf_err_set(err, MF_ERR_FORMAT, "%s: record %zu: no 'answer'", path, rec);
            goto done;
        }
        if ((st = opt_string(o, "question_type", path, rec, &v->question_type[i], err)) ||
            (st = opt_string(o, "answer_type", path, rec, &v->answer_type[i], err)))
            goto done;
        json_array_append_new(pairs, json_pack("{s:O,s:O}", "image", im, "caption", q));
    }
    /* the image/question pairs through the annotation parser: joined paths, distinct images, the
     * same record numbers, and the form mf_pairs_check_images takes */
    char *text = json_dumps(pairs, JSON_COMPACT);
    if (!text) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        goto done;
    }
    st = mf_annotations_parse(text, strlen(text), path, image_root, &v->ann, err);
    free(text);
    if (!st && v->ann->n_pairs != v->n)
        st = mf_err_set(err, MF_ERR_FORMAT, "%s: %lld questions read as %lld", path, (long long)v->n,
                        (long long)v->ann->n_pairs);
done:
    json_decref(pairs);
    json_decref(root);
    if (st) {
        mf_vqa_set_free(v);
        return st;
    }
    *out = v;
    return MF_OK;
}

void mf_vqa_answer_list_free(char **list, int64_t n)
{
    for (int64_t i = 0; list && i < n; i++)
        mf_free(list[i]);
    mf_free(list);
}

enum mf_status mf_vqa_answer_list_load(const char *path, char ***list, int64_t *n, struct mf_err *err)
{
    json_t *root = NULL;
    *list = NULL;
    *n = 0;
    enum mf_status st = load_json(path, &root, err);
    if (st)
        return st;
    const size_t m = json_is_array(root) ? json_array_size(root) : 0;
    char **l = m ? mf_calloc(m, sizeof *l) : NULL;
    if (m == 0) {
        st = mf_err_set(err, MF_ERR_FORMAT, "%s: expected a non-empty JSON array of answer strings", path);
        goto done;
    }
    if (!l) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < m; i++) {
        json_t *s = json_array_get(root, i);
        if (!json_is_string(s) || json_string_length(s) == 0) {
            st = mf_err_set(err, MF_ERR_FORMAT, "%s: answer %zu is not a non-empty string", path, i + 1);
            goto done;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(l[j], json_string_value(s)) == 0) {
                st = mf_err_set(err, MF_ERR_FORMAT, "%s: answer %zu ('%s') repeats answer %zu", path, i + 1, l[j],
                                j + 1);
                goto done;
            }
        if (!(l[i] = mf_strdup(json_string_value(s)))) {
            st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
done:
    json_decref(root);
    if (st) {
        mf_vqa_answer_list_free(l, (int64_t)m);
        return st;
    }
    *list = l;
    *n = (int64_t)m;
    return MF_OK;
}

enum mf_status mf_eval_vqa(struct mf_session *s, const struct mf_vqa_set *v, const char *const *list, int64_t n_list,
                           const struct mf_vqa_eval_opts *o, int64_t *pred, struct mf_err *err)
{
    const struct mf_model *m = mf_session_model(s);
    const struct mf_model_info *info = mf_model_get_info(m);
    const int64_t R = info->vision.image_size, N = info->vision.n_tok, dv = info->vision.d, px = 3 * R * R;
    const int64_t W = o->batch > 0 ? o->batch : 16; /* questions per window */
    struct mf_vqa_answers A = {0};
    enum mf_status st = mf_vqa_answers_tokenize(m, list, n_list, &A, err);
    if (st)
        return st;
    /* questions ranked together: one length, at most gmax (the candidates' logits stay under 2^25 floats) */
    const int64_t k = MF_MIN(o->k_test, n_list), V = info->text.vocab;
    const int64_t gmax = MF_MAX(1, MF_MIN(W, ((int64_t)1 << 25) / MF_MAX(1, k * A.L * V)));
    float *img = mf_malloc((size_t)(W * px) * sizeof *img), *emb = mf_malloc((size_t)(W * N * dv) * sizeof *emb);
    float *gemb = mf_malloc((size_t)(W * N * dv) * sizeof *gemb);
    int32_t *q = mf_malloc((size_t)(W * MF_VQA_QUESTION_TOKENS) * sizeof *q);
    int32_t *gq = mf_malloc((size_t)(W * MF_VQA_QUESTION_TOKENS) * sizeof *gq);
    int64_t *Lq = mf_malloc((size_t)W * sizeof *Lq), *slot = mf_malloc((size_t)W * sizeof *slot);
    int64_t *idx = mf_malloc((size_t)W * sizeof *idx), *gbest = mf_malloc((size_t)W * sizeof *gbest);
    struct mf_progress pg;
    bool pg_on = false;
    if (!img || !emb || !gemb || !q || !gq || !Lq || !slot || !idx || !gbest) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory for windows of %lld questions", (long long)W);
        goto done;
    }
    mf_progress_begin(&pg, "vqa", "questions", v->n);
    pg_on = true;
    for (int64_t w0 = 0; w0 < v->n; w0 += W) {
        const int64_t nw = MF_MIN(W, v->n - w0);
        /* the window's images, each run of questions on one image encoded once, all in one pass */
        int64_t u = 0;
        for (int64_t j = 0; j < nw; j++) {
            const int64_t i = w0 + j;
            if (j == 0 || v->ann->image_index[i] != v->ann->image_index[i - 1]) {
                if ((st = mf_image_preprocess(v->ann->image_path[i], (int)R, img + u * px, err))) {
                    mf_pairs_err_prefix(v->ann, i, err);
                    goto done;
                }
                u++;
            }
            slot[j] = u - 1;
            if ((st = mf_vqa_tokenize_question(m, v->ann->caption[i], o->style, q + j * MF_VQA_QUESTION_TOKENS, &Lq[j],
                                               err))) {
                mf_pairs_err_prefix(v->ann, i, err);
                goto done;
            }
        }
        if ((st = mf_encode_images(s, img, u, emb, NULL, err))) {
            mf_pairs_err_prefix(v->ann, w0, err);
            goto done;
        }
        /* groups of one question length, in increasing length, window order inside */
        int64_t ng = 0;
        for (int64_t L = 2; L <= MF_VQA_QUESTION_TOKENS; L++)
            for (int64_t j = 0; j < nw; j++)
                if (Lq[j] == L)
                    idx[ng++] = j;
        for (int64_t g0 = 0, g1; g0 < nw; g0 = g1) {
            for (g1 = g0 + 1; g1 < nw && g1 - g0 < gmax && Lq[idx[g1]] == Lq[idx[g0]]; g1++)
                ;
            const int64_t L = Lq[idx[g0]];
            for (int64_t t = g0; t < g1; t++) {
                memcpy(gemb + (t - g0) * N * dv, emb + slot[idx[t]] * N * dv, (size_t)(N * dv) * sizeof *gemb);
                memcpy(gq + (t - g0) * L, q + idx[t] * MF_VQA_QUESTION_TOKENS, (size_t)L * sizeof *gq);
            }
            if ((st = mf_vqa_rank_batch(s, gemb, gq, g1 - g0, L, &A, o->k_test, gbest, NULL, err))) {
                mf_pairs_err_prefix(v->ann, w0 + idx[g0], err);
                goto done;
            }
            for (int64_t t = g0; t < g1; t++)
                pred[w0 + idx[t]] = gbest[t - g0];
        }
        mf_progress_add(&pg, nw);
    }
done:
    if (pg_on)
        mf_progress_end(&pg);
    mf_free(img);
    mf_free(emb);
    mf_free(gemb);
    mf_free(q);
    mf_free(gq);
    mf_free(Lq);
    mf_free(slot);
    mf_free(idx);
    mf_free(gbest);
    mf_vqa_answers_free(&A);
    return st;
}
