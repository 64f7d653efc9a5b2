/*
 * text/wordpiece_decode.c: token ids back to text, as transformers' BertTokenizer.decode(ids,
 * skip_special_tokens=True) writes it (the call BLIP's generate makes on every caption).
 *
 * Steps (transformers 4.15 PreTrainedTokenizer._decode): drop the special tokens ([PAD] [UNK]
 * [CLS] [SEP] [MASK] and BLIP's added [DEC] [ENC], by id as the vocabulary maps their strings),
 * join the rest with single spaces, remove every " ##" (WordPiece continuations), strip, then
 * clean_up_tokenization: " ." -> ".", " ?" -> "?", " !" -> "!", " ," -> ",", " ' " -> "'",
 * " n't" -> "n't", " 'm" -> "'m", " 's" -> "'s", " 've" -> "'ve", " 're" -> "'re", in that order.
 * One deviation: a leading "##" (a caption whose first generated piece continues the prompt's
 * last word) loses its "##" here; transformers keeps it, and BLIP's prompt cut then drops a
 * character instead.
 */
#include <string.h>

#include "core/common.h"
#include "text/wordpiece.h"

/* Replaces every occurrence of from by the shorter-or-equal to in s, left to right, in place. */
static void replace_all(char *s, const char *from, const char *to)
{
    size_t nf = strlen(from), nt = strlen(to);
    char *w = s;
    const char *r = s;
    while (*r) {
        if (strncmp(r, from, nf) == 0) {
            memcpy(w, to, nt);
            w += nt;
            r += nf;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
}

enum mf_status mf_wordpiece_decode(const struct mf_vocab *v, const int32_t *ids, int64_t n, char *out, size_t cap,
                                   struct mf_err *err)
{
    static const char *const clean[][2] = {{" .", "."},   {" ?", "?"},     {" !", "!"},     {" ,", ","},
                                           {" ' ", "'"},  {" n't", "n't"}, {" 'm", "'m"},   {" 's", "'s"},
                                           {" 've", "'ve"}, {" 're", "'re"}};
    if (cap == 0)
        return mf_err_set(err, MF_ERR_RANGE, "decode: empty output buffer");
    size_t len = 0;
    out[0] = '\0';
    for (int64_t i = 0; i < n; i++) {
        const char *t = mf_vocab_token(v, ids[i]);
        if (!t)
            return mf_err_set(err, MF_ERR_RANGE, "decode: token id %d outside the vocabulary of %d", ids[i],
                              mf_vocab_size(v));
        bool special = false;
        for (int k = 0; k < MF_TOK_COUNT && !special; k++)
            special = ids[i] == mf_vocab_special(v, (enum mf_special_token)k);
        if (special)
            continue;
        size_t tl = strlen(t);
        if (len + 1 + tl + 1 > cap)
            return mf_err_set(err, MF_ERR_RANGE, "decode: text of %lld tokens exceeds %zu bytes", (long long)n, cap);
        if (len)
            out[len++] = ' ';
        memcpy(out + len, t, tl + 1);
        len += tl;
    }
    replace_all(out, " ##", "");
    if (strncmp(out, "##", 2) == 0)
        memmove(out, out + 2, strlen(out + 2) + 1);
    /* strip: tokens never hold spaces, so only an empty first token could leave one */
    size_t a = strspn(out, " ");
    memmove(out, out + a, strlen(out + a) + 1);
    for (size_t e = strlen(out); e > 0 && out[e - 1] == ' '; e--)
        out[e - 1] = '\0';
    for (size_t k = 0; k < sizeof clean / sizeof clean[0]; k++)
        replace_all(out, clean[k][0], clean[k][1]);
    return MF_OK;
}
