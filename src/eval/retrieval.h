/*
 * eval/retrieval.h: the steps of mf_eval_retrieval (multiflow/eval.h) as separate calls, so the
 * ranking maths can be tested on hand-made matrices (tests/eval/test_retrieval.c) and the score
 * matrices compared with the PyTorch reference (tests/golden/gen_retrieval.py).
 *
 *     mf_retrieval_scores(session, ann, &opts, s_i2t, s_t2i, &k_used, &err);  // BLIP `evaluation`
 *     mf_retrieval_metrics(s_i2t, s_t2i, n_img, n_txt, txt_img, &result, &err); // BLIP `itm_eval`
 *
 * Internal (not installed). Reference: salesforce/BLIP train_retrieval.py evaluation, itm_eval.
 */
#ifndef MF_EVAL_RETRIEVAL_H
#define MF_EVAL_RETRIEVAL_H

#include "multiflow/eval.h"

/* logit1[b] = ITM logit[1] of the pair (image img[b], text txt[b]), b < n (n <= the batch given
 * to mf_retrieval_rerank). */
typedef enum mf_status (*mf_itm_logit_fn)(void *ud, const int64_t *img, const int64_t *txt, int64_t n,
                                         float *logit1, struct mf_err *err);

/* BLIP's re-ranking: sims (n_img, n_txt) ITC cosines. Each image's top k texts by ITC (ties by
 * lower index; k capped at n_txt) get ITM logit[1] + cosine in s_i2t (n_img, n_txt), every other
 * text -100; each text's top k images (k capped at n_img) likewise in s_t2i (n_txt, n_img).
 * k = 0 or itm = NULL: no re-ranking, s_i2t = sims and s_t2i = its transpose. ITM pairs go to itm
 * in calls of at most batch pairs (one query's candidates per call, in top-k order). */
enum mf_status mf_retrieval_rerank(const float *sims, int64_t n_img, int64_t n_txt, int64_t k, int64_t batch,
                                   mf_itm_logit_fn itm, void *ud, float *s_i2t, float *s_t2i, struct mf_err *err);

/* Steps 1-4 of mf_eval_retrieval: encodes ann's images (n_img = ann->n_images) and texts (n_txt =
 * ann->n_pairs), ITC cosines, ITM re-ranking of the top opts->k when the model has an ITM head.
 * s_i2t (n_img, n_txt), s_t2i (n_txt, n_img) caller-owned. *k_used: the k applied (0 = ITC only). */
enum mf_status mf_retrieval_scores(struct mf_session *s, const struct mf_annotations *ann,
                                   const struct mf_retrieval_opts *opts, float *s_i2t, float *s_t2i, int64_t *k_used,
                                   struct mf_err *err);

#endif
