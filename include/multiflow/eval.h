/*
 * multiflow/eval.h: calibration/evaluation data batches and zero-shot image-text retrieval.
 *
 *     struct mf_annotations *ann;                          // io/annotations.h
 *     mf_annotations_load("val.json", "images/", &ann, &err);
 *     struct mf_retrieval_opts ro = mf_retrieval_opts_default();   // k = 128, batch 8
 *     struct mf_retrieval_result r;
 *     if (mf_eval_retrieval(session, ann, &ro, &r, &err) == MF_OK)
 *         printf("i2t R@1 %.2f  t2i R@1 %.2f  mean %.2f\n", r.i2t[0], r.t2i[0], r.mean);
 *
 * Retrieval follows BLIP's evaluation: rank by ITC cosine, then re-rank the top k candidates of
 * every query by ITM logit[1] + ITC cosine; candidates outside the top k keep score -100.
 * A text's positive is its image; an image's positives are all its captions (the best-ranked one
 * counts). Ties are broken against the query (a negative with an equal score ranks first).
 * Thread safety: one call per session at a time.
 */
#ifndef MF_EVAL_H
#define MF_EVAL_H

#include <stdint.h>

#include "multiflow/model.h"
#include "multiflow/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct mf_annotations;

/* Loads, preprocesses and tokenizes pairs [start, start+B) of ann: images (B, 3, R, R), ids and
 * mask (B, L). Errors name the annotation file, the pair and the image or caption at fault. */
enum mf_status mf_pairs_batch(const struct mf_model *m, const struct mf_annotations *ann, int64_t start, int64_t B,
                              int64_t L, float *images, int32_t *ids, int32_t *mask, struct mf_err *err);
/* Prefixes err's message with pair p of ann: "<file>: record|line N (image PATH)". */
void mf_pairs_err_prefix(const struct mf_annotations *ann, int64_t p, struct mf_err *err);
/* Prefixes err's message with pair p of ann: "<file>: record|line N (image PATH)". */
void mf_pairs_err_prefix(const struct mf_annotations *ann, int64_t p, struct mf_err *err);

/* Checks every image of ann before any forward pass, in order of first use: its path resolves
 * (symlinks followed, realpath) inside root unless allow_outside (root NULL or "" = the current
 * directory), and the file is a PNG or JPEG whose header decodes and whose size is within the
 * pixel limit (io/image.h mf_image_probe; no pixels are decoded). The error names the annotation
 * file, the record or line and the image, never the file's contents. */
enum mf_status mf_pairs_check_images(const struct mf_annotations *ann, const char *root, bool allow_outside,
                                     struct mf_err *err);

struct mf_retrieval_opts {
    int64_t k;     /* ITM re-ranking depth (0 = ITC only) */
    int64_t batch; /* pairs per forward call */
    int64_t max_tokens; /* 0 = the model's (mf_model_info.max_tokens) */
};

struct mf_retrieval_result {
    int64_t n_images, n_texts, k;
    bool itm_reranked;
    double i2t[3], t2i[3]; /* recall@1, @5, @10 in percent */
    double mean;           /* mean of the six */
    double seconds;
};

struct mf_retrieval_opts mf_retrieval_opts_default(void);

/* Recall@1/5/10 from full score matrices: s_i2t (n_img, n_txt), s_t2i (n_txt, n_img); txt_img[j]
 * is the image of text j. Fills the recall fields of out. */
enum mf_status mf_retrieval_metrics(const float *s_i2t, const float *s_t2i, int64_t n_img, int64_t n_txt,
                                    const int64_t *txt_img, struct mf_retrieval_result *out, struct mf_err *err);

/* The whole zero-shot evaluation on an annotation set. */
enum mf_status mf_eval_retrieval(struct mf_session *s, const struct mf_annotations *ann,
                                 const struct mf_retrieval_opts *opts, struct mf_retrieval_result *out,
                                 struct mf_err *err);

#ifdef __cplusplus
}
#endif
#endif
