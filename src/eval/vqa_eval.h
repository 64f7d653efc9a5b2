/*
 * eval/vqa_eval.h: VQA annotation sets, answer lists, and BLIP's rank-based VQA evaluation over a set
 * (models/vqa.h does the model side; mf_vqa_accuracy in multiflow/eval.h scores the answers).
 *
 *     struct mf_vqa_set *v;  char **list;  int64_t n_list;
 *     mf_vqa_set_load("vqa_test.json", "world/", &v, &err);       // images checked by the caller
 *     mf_vqa_answer_list_load("answers.json", &list, &n_list, &err);
 *     int64_t *pred = malloc(v->n * sizeof *pred);
 *     mf_eval_vqa(session, v, list, n_list, &o, pred, &err);     // pred[i]: index into list
 *
 * Annotation format (BLIP's vqa_*.json, the world's vqa_{train,test}.json): a JSON array of
 * objects with "image" (path relative to the image root), "question" (string), "question_id"
 * (number or string), "answer" (a string or a non-empty array of strings: the human answers, 10
 * in VQA v2; required unless the caller allows sets without answers), optional "question_type"
 * and "answer_type" strings; other keys ignored.
 *
 * Thread safety: loading is reentrant; mf_eval_vqa uses the caller's session.
 */
#ifndef MF_EVAL_VQA_EVAL_H
#define MF_EVAL_VQA_EVAL_H

#include <stdbool.h>
#include <stdint.h>

#include "io/annotations.h"
#include "models/vqa.h"

struct mf_vqa_set {
    int64_t n;                  /* questions */
    struct mf_annotations *ann; /* pair i = (image of question i, question i): joined image paths,
                                   distinct-image numbering, record numbers for messages and for
                                   mf_pairs_check_images */
    char **question_id;         /* (n) the question_id as compact JSON (a number or a quoted string) */
    char ***answers;            /* (n) human answers, NULL when the record has none */
    int *n_answers;             /* (n) */
    char **question_type;       /* (n) NULL when absent */
    char **answer_type;         /* (n) NULL when absent */
};

/* need_answers: every record must have a non-empty "answer". Errors name the file and record. */
enum mf_status mf_vqa_set_load(const char *path, const char *image_root, bool need_answers, struct mf_vqa_set **out,
                               struct mf_err *err);
void mf_vqa_set_free(struct mf_vqa_set *v);

/* A JSON array of distinct non-empty strings. */
enum mf_status mf_vqa_answer_list_load(const char *path, char ***list, int64_t *n, struct mf_err *err);
void mf_vqa_answer_list_free(char **list, int64_t n);

struct mf_vqa_eval_opts {
    int64_t k_test;                /* rank_answer depth (BLIP 128); k = min(k_test, n answers) */
    enum mf_question_style style;  /* question cleaning (Q15: MULTIFLOW's) */
    int64_t batch;                 /* questions per window (images encoded together, questions of one
                                      length ranked together); 0 = 16. Results do not depend on it. */
};

/* For each question: the image encoded once per run of questions on the same image, the question
 * tokenised (models/vqa.h), rank_answer over the list (mf_vqa_rank_batch over the questions of
 * one length in a window of o->batch); pred[i] = index into list. */
enum mf_status mf_eval_vqa(struct mf_session *s, const struct mf_vqa_set *v, const char *const *list, int64_t n_list,
                           const struct mf_vqa_eval_opts *o, int64_t *pred, struct mf_err *err);

#endif
