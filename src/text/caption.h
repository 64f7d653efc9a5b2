/*
 * text/caption.h: caption cleaning applied before tokenization (spec/models.md §3.1).
 *
 *     char clean[1024];
 *     struct mf_err err = {0};
 *     if (mf_pre_caption("A man -- riding a horse!", MF_CAPTION_WORDS_MULTIFLOW,
 *                        MF_CAPTION_MULTIFLOW, clean, sizeof clean, &err) != MF_OK)
 *         fprintf(stderr, "error: %s\n", err.msg);   // clean = "a man riding a horse"
 *
 * Thread safety: reentrant.
 */
#ifndef MF_TEXT_CAPTION_H
#define MF_TEXT_CAPTION_H

#include <stddef.h>

#include "multiflow/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum mf_caption_style {
    MF_CAPTION_NONE = 0,      /* raw string (HF processors, CLIP) */
    MF_CAPTION_MULTIFLOW = 1, /* MULTIFLOW / X-VLM pre_caption: delete punctuation, '-' '/' -> ' ' */
    MF_CAPTION_BLIP = 2,      /* original BLIP pre_caption: punctuation -> ' ' */
};

/* max_words used by the references */
#define MF_CAPTION_WORDS_MULTIFLOW 40
#define MF_CAPTION_WORDS_BLIP 50

/* Cleans in (UTF-8) into out (out_len bytes including the NUL) following style, keeping the first
 * max_words space-separated words (0 = no limit; ignored for NONE).
 * Errors: MF_ERR_FORMAT for invalid UTF-8 or a result that is empty or only whitespace
 * ("caption is empty after cleaning"; the references accept whitespace-only results, we do not:
 * such a caption would tokenize to nothing), MF_ERR_RANGE if out is too small, MF_ERR_ARG for
 * max_words < 0 or an unknown style. */
enum mf_status mf_pre_caption(const char *in, int max_words, enum mf_caption_style style,
                              char *out, size_t out_len, struct mf_err *err);

/* "none", "multiflow" (alias "xvlm"), "blip" -> style; MF_ERR_ARG if unknown. */
enum mf_status mf_caption_style_parse(const char *name, enum mf_caption_style *style,
                                      struct mf_err *err);
const char *mf_caption_style_name(enum mf_caption_style style);

#ifdef __cplusplus
}
#endif
#endif
