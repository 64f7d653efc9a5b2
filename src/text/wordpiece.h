/*
 * text/wordpiece.h: BERT WordPiece tokenizer (bert-base-uncased rules, as used by BLIP and X-VLM).
 *
 *     struct mf_err err = {0};
 *     struct mf_vocab *v = NULL;
 *     int32_t ids[35], mask[35];
 *     int n_real;
 *     if (mf_vocab_load("ckpt/vocab.txt", &v, &err) != MF_OK ||
 *         mf_vocab_add_blip_tokens(v, &err) != MF_OK ||                  // [DEC], [ENC]
 *         mf_wordpiece_encode(v, "a dog on a beach", 35, ids, mask, &n_real, &err) != MF_OK)
 *         fprintf(stderr, "error: %s\n", err.msg);
 *     mf_vocab_free(v);
 *
 * Algorithm: spec/models.md §3.2 (HF BertTokenizer, slow version, do_lower_case=True):
 * clean (drop NUL, U+FFFD, category C* except TAB/LF/CR; whitespace -> space), space around CJK
 * ideographs, split on whitespace, lower-case (Python str.lower), NFD and drop Mn, split off
 * punctuation (Unicode P* plus the ASCII symbol ranges), then greedy longest-match-first
 * WordPiece with "##" continuations, whole-word [UNK] and [UNK] for words over 100 code points.
 * Special-token literals in the text ("[SEP]") are NOT recognised (project rule, §3.2).
 * Unicode tables: utf8proc's (see text/unicase.h, mf_uni_version()).
 *
 * Vocabulary file: one token per line, id = 0-based line number, UTF-8, LF or CRLF line ends; no
 * empty lines except the final line terminator. A duplicated token keeps every line's id for
 * id -> token, and, like HF's load_vocab, the LAST line wins for token -> id.
 * Special ids ([PAD] [UNK] [CLS] [SEP] [MASK] [DEC] [ENC]) are looked up by string, never assumed.
 *
 * Thread safety: a vocabulary is immutable once loading and mf_vocab_add_token calls are done;
 * after that any number of threads may encode with it concurrently.
 */
#ifndef MF_TEXT_WORDPIECE_H
#define MF_TEXT_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

#include "multiflow/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits applied to vocabulary files (hostile input). */
#define MF_VOCAB_MAX_FILE_BYTES ((size_t)64 << 20)
#define MF_VOCAB_MAX_TOKENS (1 << 22)
#define MF_VOCAB_MAX_TOKEN_BYTES 1024
/* Words longer than this many code points become one [UNK] (HF max_input_chars_per_word). */
#define MF_WORDPIECE_MAX_WORD_CHARS 100

struct mf_vocab;

enum mf_special_token {
    MF_TOK_PAD,
    MF_TOK_UNK,
    MF_TOK_CLS,
    MF_TOK_SEP,
    MF_TOK_MASK,
    MF_TOK_DEC, /* BLIP's BOS, added after the BERT vocabulary */
    MF_TOK_ENC, /* BLIP's image-grounded encoder token */
    MF_TOK_COUNT
};

/* Loads vocab.txt. Errors name the file and the 1-based line. */
enum mf_status mf_vocab_load(const char *path, struct mf_vocab **out, struct mf_err *err);
/* Same from memory; label is used in error messages. */
enum mf_status mf_vocab_parse(const char *buf, size_t len, const char *label,
                              struct mf_vocab **out, struct mf_err *err);
void mf_vocab_free(struct mf_vocab *v);

/* Appends token with id = current size unless it is already present (then nothing changes, as
 * HF add_tokens does). *id (may be NULL) receives the token's id either way. */
enum mf_status mf_vocab_add_token(struct mf_vocab *v, const char *token, int32_t *id,
                                  struct mf_err *err);
/* BLIP's init_tokenizer: add [DEC] then [ENC] (ids V and V+1 on a plain BERT vocabulary). */
enum mf_status mf_vocab_add_blip_tokens(struct mf_vocab *v, struct mf_err *err);

int32_t mf_vocab_size(const struct mf_vocab *v);
/* id of a token, or -1 if absent. */
int32_t mf_vocab_id(const struct mf_vocab *v, const char *token);
/* token text of an id, or NULL if out of range. */
const char *mf_vocab_token(const struct mf_vocab *v, int32_t id);
/* id of a special token ("[PAD]" ... "[ENC]"), or -1 if the vocabulary lacks it. */
int32_t mf_vocab_special(const struct mf_vocab *v, enum mf_special_token which);
/* Literal text of a special token: "[PAD]", ... */
const char *mf_special_token_str(enum mf_special_token which);

/* Encodes one text as [CLS] pieces [SEP], keeping the first max_len-2 pieces, padded with [PAD]
 * to max_len. ids and mask are (max_len); mask (may be NULL) is 1 for [CLS], pieces and [SEP],
 * 0 for padding; *n_real (may be NULL) is the number of unpadded tokens. max_len >= 2.
 * Needs [PAD] [UNK] [CLS] [SEP] in the vocabulary (MF_ERR_MISSING otherwise); text must be
 * valid UTF-8 (MF_ERR_FORMAT otherwise). */
enum mf_status mf_wordpiece_encode(const struct mf_vocab *v, const char *text, int max_len,
                                   int32_t *ids, int32_t *mask, int *n_real, struct mf_err *err);
/* X-VLM variant (§3.2 table): [CLS] + first max_len-1 pieces, no [SEP], padded. max_len >= 1. */
enum mf_status mf_wordpiece_encode_nosep(const struct mf_vocab *v, const char *text, int max_len,
                                         int32_t *ids, int32_t *mask, int *n_real,
                                         struct mf_err *err);

/* Raw pieces, no [CLS]/[SEP]/padding: writes the first cap ids to ids (may be NULL if cap == 0)
 * and sets *n_pieces to the total number of pieces (which may exceed cap). Needs [UNK]. */
enum mf_status mf_wordpiece_tokenize(const struct mf_vocab *v, const char *text, int32_t *ids,
                                     int64_t cap, int64_t *n_pieces, struct mf_err *err);

/* Token ids back to text as transformers' decode(ids, skip_special_tokens=True) writes it
 * (text/wordpiece_decode.c): special tokens dropped, pieces joined with spaces, " ##" merged,
 * clean_up_tokenization (" ." -> "." ...). out (cap bytes incl. NUL); MF_ERR_RANGE for an id
 * outside the vocabulary or text longer than cap. */
enum mf_status mf_wordpiece_decode(const struct mf_vocab *v, const int32_t *ids, int64_t n, char *out, size_t cap,
                                   struct mf_err *err);

/* The basic tokenizer alone (clean, CJK, lower, strip accents, punctuation split): writes the
 * resulting words joined by single spaces into out (out_len bytes incl. NUL). MF_ERR_RANGE if
 * out is too small. Needs no vocabulary; for tests and inspection. */
enum mf_status mf_bert_basic_tokenize(const char *text, char *out, size_t out_len,
                                      struct mf_err *err);

#ifdef __cplusplus
}
#endif
#endif
