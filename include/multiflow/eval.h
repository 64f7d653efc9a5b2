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

/* ---- Caption metrics: BLEU-1..4, ROUGE-L and CIDEr-D of the COCO caption evaluation ----
 *
 *     const char *cand[2] = {"A dog runs.", "two cats"};
 *     const char *refs[3] = {"a dog is running", "the dog runs", "two cats sleep"};
 *     int64_t ref_image[3] = {0, 0, 1};
 *     struct mf_caption_set set = {.n_images = 2, .candidate = cand, .n_refs = 3, .ref = refs,
 *                                  .ref_image = ref_image};
 *     struct mf_caption_metrics m;
 *     if (mf_caption_metrics(&set, &m, NULL, &err) == MF_OK)
 *         printf("BLEU-4 %.4f  CIDEr-D %.4f\n", m.bleu[3], m.cider);
 *
 * Definitions are pycocoevalcap's (tylin/coco-caption) to the operation: corpus BLEU with the
 * 'closest' reference length and its 1e-15 / 1e-9 epsilons; ROUGE-L with beta 1.2, precision and
 * recall each maxed over the references, mean over images; CIDEr-D with document frequencies of
 * the references of the images scored, n = 1..4, sigma 6, candidate weights clipped by the
 * reference's, the Gaussian length penalty (on the bigram counts, as the reference code does),
 * x10, mean over images. Captions are first tokenised as mf_caption_tokenize does.
 * docs/internals/capmetrics.md lists every detail reproduced and every deviation.
 * Thread safety: reentrant (no global state). */

struct mf_caption_set {
    int64_t n_images;
    const char *const *candidate; /* (n_images) one generated caption per image, UTF-8 */
    const char *const *image;     /* (n_images) names used in error messages, or NULL */
    int64_t n_refs;
    const char *const *ref;       /* (n_refs) reference captions */
    const int64_t *ref_image;     /* (n_refs) the image of each reference, in [0, n_images) */
    bool pretokenized;            /* captions are already tokens separated by single spaces */
};

struct mf_caption_metrics {
    int64_t n_images, n_refs;
    double bleu[4]; /* corpus BLEU-1..4 in [0, 1] */
    double rouge_l; /* mean ROUGE-L in [0, 1] */
    double cider;   /* mean CIDEr-D, not x100 (about 1.2 for a good COCO model) */
};

/* Per-image scores written to per_image (n_images, MF_CAPTION_PER_IMAGE) when it is not NULL:
 * BLEU-1..4 of the image alone (pycocoevalcap's per-image list), ROUGE-L, CIDEr-D. */
#define MF_CAPTION_PER_IMAGE 6

/* Every image needs at least one reference. Errors name the image (or its index) at fault. */
enum mf_status mf_caption_metrics(const struct mf_caption_set *set, struct mf_caption_metrics *out,
                                  double *per_image, struct mf_err *err);

/* The tokenisation of the COCO evaluation (Stanford PTBTokenizer 3.4.1 with -lowerCase, then the
 * punctuation tokens '' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ; removed), reimplemented:
 * tokens joined by single spaces into out (NUL-terminated, *out_len bytes without the NUL; may be
 * ""). out_size >= MF_CAPTION_TOKENS_SIZE(strlen(text)) always suffices. Invalid UTF-8 is
 * MF_ERR_FORMAT; a short buffer MF_ERR_RANGE. */
#define MF_CAPTION_TOKENS_SIZE(len) (6 * (size_t)(len) + 8)
enum mf_status mf_caption_tokenize(const char *text, char *out, size_t out_size, size_t *out_len,
                                   struct mf_err *err);

/* ---- VQA accuracy of the official VQA evaluation (GT-Vision-Lab/VQA vqaEval.py) ----
 *
 *     const char *human[10] = {"two", "2", "2", "2", "two", "2", "3", "2", "2", "2"};
 *     struct mf_vqa_question q = {.answers = human, .n_answers = 10, .prediction = "2",
 *                                 .question_type = "how many"};
 *     struct mf_vqa_result r;
 *     if (mf_vqa_accuracy(&q, 1, NULL, &r, &err) == MF_OK) { printf("%.2f\n", r.accuracy); mf_vqa_result_free(&r); }
 *
 * Per question: '\n' and '\t' become spaces and both ends are stripped; when the human answers
 * are not all identical, every answer and the prediction are normalised (mf_vqa_normalize); the
 * accuracy is the mean over each human answer left out of min(1, #other answers equal to the
 * prediction / 3). Results are on a 0-100 scale and not rounded (the official code rounds to 2
 * decimals when it reports). Thread safety: reentrant. */

struct mf_vqa_question {
    const char *const *answers; /* (n_answers) human answers (10 in VQA v2) */
    int n_answers;
    const char *prediction;
    const char *question_type; /* e.g. "how many"; NULL: not in per_type */
    const char *answer_type;   /* e.g. "number"; NULL: not in per_answer_type */
};

struct mf_vqa_group {
    char *name;
    int64_t n;       /* questions of this type */
    double accuracy; /* 0-100 */
};

struct mf_vqa_result {
    int64_t n_questions;
    double accuracy; /* 0-100 */
    struct mf_vqa_group *per_type;        /* (n_types) in order of first appearance */
    int64_t n_types;
    struct mf_vqa_group *per_answer_type; /* (n_answer_types) in order of first appearance */
    int64_t n_answer_types;
};

/* per_question (n, may be NULL) receives each question's accuracy (0-100). Free out with
 * mf_vqa_result_free. */
enum mf_status mf_vqa_accuracy(const struct mf_vqa_question *q, int64_t n, double *per_question,
                               struct mf_vqa_result *out, struct mf_err *err);
void mf_vqa_result_free(struct mf_vqa_result *r);

/* The official answer normalisation (processPunctuation then processDigitArticle): punctuation
 * removed or turned into spaces, periods not before a digit dropped (at most 32, a quirk kept),
 * lower case, number words zero..ten (and 'none') to digits, articles a/an/the dropped,
 * contractions restored from the official table; words joined by single spaces.
 * out_size >= MF_VQA_NORM_SIZE(strlen(answer)) always suffices. */
#define MF_VQA_NORM_SIZE(len) (4 * (size_t)(len) + 8)
enum mf_status mf_vqa_normalize(const char *answer, char *out, size_t out_size, struct mf_err *err);

#ifdef __cplusplus
}
#endif
#endif
