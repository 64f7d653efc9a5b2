/*
 * multiflow/generate.h: caption generation with BLIP's text decoder (greedy and beam search).
 *
 *     struct mf_generate_opts go = mf_generate_opts_default();   // 3 beams, max 20, min 5
 *     go.num_beams = 1;                                          // greedy
 *     int32_t ids[2 * 20], n[2];
 *     char text[512];
 *     if (mf_generate(s, images, 2, &go, ids, n, NULL, &err) != MF_OK ||      // images (2, 3, R, R)
 *         mf_model_decode(mf_session_model(s), ids + 20, n[1], text, sizeof text, &err) != MF_OK)
 *         fprintf(stderr, "%s\n", err.msg);
 *     // ids row b: the tokens generated after the prompt, [SEP] last when the caption ended on it
 *
 * What it computes (spec/models.md §4.4 and §11 Q14), as BLIP_Decoder.generate and Hugging Face's
 * BlipForConditionalGeneration.generate do: the decoder input starts with [DEC] followed by the
 * prompt's WordPiece pieces (BLIP tokenizes the prompt as [CLS] pieces [SEP], puts [DEC] at 0 and
 * drops the [SEP]); the prompt defaults to "a picture of " for the original layout and to none for
 * the HF layout. max_length and min_length count every token of the sequence, prompt included
 * (they are passed to transformers' generate with the prompt as input_ids). Greedy search
 * (num_beams 1) takes the first arg-max of each step's logits; beam search follows transformers
 * 4.15 (the version BLIP pins): per image the top 2 x num_beams candidates of (log-softmax + beam
 * score), a [SEP] candidate among the first num_beams closes a hypothesis scored sum / length
 * (length = prompt + generated tokens without the [SEP], length penalty 1), no early stopping (an
 * image is done when its best running score over the current length cannot beat the worst kept
 * hypothesis), open beams join the hypotheses at max_length, the best hypothesis wins. [SEP] ends a
 * caption; while the total length is below min_length its log-probability is -inf.
 *
 * Decoding runs incrementally: the self-attention keys/values of past positions and the
 * cross-attention keys/values of the image tokens are cached (models/generate.c); the beams of all
 * images of a call run as one batch, and an image drops out of the batch when its search is done,
 * so a caption does not depend on the other images of the call. Memory per call, in floats:
 * B x N x dv image embeddings, 2 x n_layer x B x N x d cached cross-attention keys/values and
 * 4 x n_layer x B x beams x max_length x d self-attention keys/values (double-buffered for the
 * beam reordering); about 0.4 GB for BLIP-base at 384 px with 8 images and 3 beams.
 *
 * Thread safety: one call per session at a time (the session's contract).
 */
#ifndef MF_GENERATE_H
#define MF_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "multiflow/model.h"
#include "multiflow/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MF_GENERATE_MAX_BEAMS 64

struct mf_generate_opts {
    int num_beams;      /* 1: greedy search; 2..MF_GENERATE_MAX_BEAMS: beam search */
    int max_length;     /* total tokens incl. [DEC] and the prompt; > prompt length, <= text positions */
    int min_length;     /* [SEP] is forbidden while the total length is below it (>= 0) */
    const char *prompt; /* NULL: the layout's default ("a picture of " original, none HF); "": none */
};

/* BLIP's caption evaluation settings (caption_coco.yaml): 3 beams, max 20, min 5, default prompt. */
struct mf_generate_opts mf_generate_opts_default(void);

/* The prompt text used for opts->prompt on this model (the layout default for NULL). */
const char *mf_generate_prompt_text(const struct mf_model *m, const char *prompt);

/* The decoder's prompt tokens: [DEC] then the prompt's pieces. ids (cap); *n receives the count
 * (MF_ERR_RANGE when it exceeds cap). Needs a decoder. */
enum mf_status mf_generate_prompt(const struct mf_model *m, const char *prompt, int32_t *ids, int cap, int *n,
                                  struct mf_err *err);

/* Captions of B images (B, 3, R, R), normalised as for mf_encode_images. ids (B, max_length): row b
 * receives image b's tokens generated after the prompt; n_ids (B) their counts; score (B) or NULL:
 * the search's score (greedy: summed log-probability of the chosen tokens; beam: the winning
 * hypothesis's sum / length). */
enum mf_status mf_generate(struct mf_session *s, const float *images, int64_t B, const struct mf_generate_opts *o,
                           int32_t *ids, int32_t *n_ids, float *score, struct mf_err *err);

/* Text of token ids as transformers' decode(skip_special_tokens=True) writes it (text/wordpiece.h
 * mf_wordpiece_decode): the caption BLIP prints once the prompt is cut off. */
enum mf_status mf_model_decode(const struct mf_model *m, const int32_t *ids, int64_t n, char *out, size_t cap,
                               struct mf_err *err);

#ifdef __cplusplus
}
#endif
#endif
