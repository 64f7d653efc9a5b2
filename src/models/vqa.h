/*
 * models/vqa.h: BLIP's VQA model (salesforce/BLIP models/blip_vqa.py BLIP_VQA) on a loaded BLIP
 * checkpoint: visual_encoder, text_encoder over the question with cross-attention to the image,
 * text_decoder generating the answer with cross-attention to the question states. Original layout
 * (a pretrained BLIP_Pretrain checkpoint is a VQA model as BLIP initialises one: the answer decoder
 * is the pretrained decoder) and HF BlipForQuestionAnswering (vision_model, text_encoder,
 * text_decoder); what fine-tuning writes is read back the same way.
 *
 *     struct mf_vqa_answers A;
 *     mf_vqa_answers_tokenize(m, list, n, &A, &err);                   // [DEC] answer [SEP], padded
 *     int32_t q[MF_VQA_QUESTION_TOKENS]; int64_t Lq;
 *     mf_vqa_tokenize_question(m, "What colour is the cube?", MF_QUESTION_MULTIFLOW, q, &Lq, &err);
 *     mf_encode_images(s, image, 1, emb, NULL, &err);                  // (1, N, dv)
 *     int64_t best;  mf_vqa_rank(s, emb, q, Lq, &A, 128, &best, NULL, &err);  // list[best]
 *
 * Questions (spec/models.md Q15): cleaned (MULTIFLOW's pre_question by default, BLIP's on request),
 * [CLS] replaced by the image-grounded first token ([ENC] in the original layout), at most 35
 * tokens, never padded: one question is encoded at a time, so the decoder's cross-attention over
 * the question states has no padded keys (the reference batches padded questions and masks the
 * padding: the same numbers).
 *
 * Deviation (original layout only): in BLIP_VQA the answer decoder is a separate copy of the
 * pretrained decoder; here the decoder keeps the checkpoint's tying (cross-attention, FFN and
 * embeddings are the text encoder's tensors, stored once), so fine-tuning updates the shared
 * tensors with both gradients. The forward numbers of a pretrained checkpoint are the reference's
 * exactly (the copies start equal). HF checkpoints store an untied decoder: no deviation there.
 *
 * Thread safety: calls use the caller's session (one thread of control per session); the model is
 * read only.
 */
#ifndef MF_MODELS_VQA_H
#define MF_MODELS_VQA_H

#include <stddef.h>
#include <stdint.h>

#include "models/model_impl.h"

struct mf_grads;

#define MF_VQA_QUESTION_TOKENS 35 /* BLIP: tokenizer(question, truncation=True, max_length=35) */
#define MF_VQA_QUESTION_WORDS 50  /* pre_question's max_ques_words default */
#define MF_VQA_LABEL_SMOOTHING 0.1

enum mf_question_style {
    MF_QUESTION_MULTIFLOW = 0, /* lower; delete , . ' ! ? " ( ) * # : ; ~; '-' and '/' -> ' ' (Q15) */
    MF_QUESTION_BLIP = 1       /* salesforce/BLIP pre_question: lower; delete . ! " ( ) * # : ; ~ */
};

/* Cleans a question (then trailing spaces stripped, the first max_words space-separated words
 * kept). MF_ERR_FORMAT when nothing but spaces is left, MF_ERR_RANGE when out is too small
 * (strlen(in) + 1 always suffices). */
enum mf_status mf_pre_question(const char *in, enum mf_question_style style, int max_words, char *out, size_t out_len,
                               struct mf_err *err);
/* "multiflow" | "blip" -> style (MF_ERR_ARG otherwise). */
enum mf_status mf_question_style_parse(const char *name, enum mf_question_style *style, struct mf_err *err);

/* Cleaned, tokenised question: first token (m->info.first_token_itm: [ENC] original, [CLS] HF, as
 * HF BlipForQuestionAnswering feeds the processor's ids), pieces, [SEP]; at most
 * MF_VQA_QUESTION_TOKENS (ids has room for that many); *L = its length (no padding). */
enum mf_status mf_vqa_tokenize_question(const struct mf_model *m, const char *question, enum mf_question_style style,
                                        int32_t *ids, int64_t *L, struct mf_err *err);

/* Answers tokenised as the reference's tokenizer(answers, padding='longest') with position 0 set
 * to [DEC]: [DEC] pieces [SEP] [PAD]... (no cleaning; the tokenizer lower-cases). */
struct mf_vqa_answers {
    int64_t n, L;    /* answers, padded length */
    int32_t *ids;    /* (n, L) */
    int32_t *mask;   /* (n, L) */
};
enum mf_status mf_vqa_answers_tokenize(const struct mf_model *m, const char *const *answers, int64_t n,
                                       struct mf_vqa_answers *out, struct mf_err *err);
void mf_vqa_answers_free(struct mf_vqa_answers *a);

/* BLIP rank_answer for one question: question states from image_embeds (1, N, dv); softmax of the
 * decoder's first-step logits ([DEC] alone) over the vocabulary; the k = min(k_test, A->n)
 * answers whose first token is most probable (ties: lower answer index first); then each
 * candidate's summed LM loss with label smoothing 0.1 over its tokens after [DEC] ([SEP]
 * included, padding excluded); the lowest loss wins (ties: the earlier candidate). *best = the
 * answer's index in A. loss (A->n, may be NULL) receives each candidate's loss and +INFINITY for
 * answers outside the top k. Resets the session arena. */
enum mf_status mf_vqa_rank(struct mf_session *s, const float *image_embeds, const int32_t *q_ids, int64_t Lq,
                           const struct mf_vqa_answers *A, int64_t k_test, int64_t *best, double *loss,
                           struct mf_err *err);

/* The same for nq questions of one length Lq at once: image_embeds (nq, N, dv), q_ids (nq, Lq),
 * best (nq), loss (nq, A->n) or NULL. The results are each question's alone (no padding anywhere);
 * memory grows with nq x k x A->L x vocabulary (the candidates' logits). */
enum mf_status mf_vqa_rank_batch(struct mf_session *s, const float *image_embeds, const int32_t *q_ids, int64_t nq,
                                 int64_t Lq, const struct mf_vqa_answers *A, int64_t k_test, int64_t *best,
                                 double *loss, struct mf_err *err);

/* One question of a training batch: its image (3, R, R), tokenised question, and its distinct
 * answers (rows of ans, each [DEC] pieces [SEP], padded to ans->L) with their weights (the share
 * of annotators that gave each, as BLIP's vqa_dataset computes them). */
struct mf_vqa_item {
    const float *image;
    const int32_t *q_ids;
    int64_t Lq;
    const struct mf_vqa_answers *ans;
    const double *weight; /* (ans->n) */
};

/* BLIP_VQA.forward(train=True) over B items: loss = sum over items and answers of weight x the
 * answer's summed label-smoothed LM loss, divided by B. With g non-NULL, ACCUMULATES d loss / dθ
 * into g (vision, text encoder, decoder, LM head). The vision tower and the question encoder run
 * on the whole batch (questions padded, padding masked as the reference does); the answer decoder
 * runs once per group of questions of equal length, every answer row over its own question's
 * unpadded states. Resets the session arena once; the activations of the whole batch live in it
 * until the backward. */
enum mf_status mf_vqa_loss(struct mf_session *s, const struct mf_vqa_item *items, int64_t B, struct mf_grads *g,
                           double *loss, struct mf_err *err);

#endif
