/*
 * text/caption.c: the pre_caption variants of spec/models.md §3.1, on code points.
 *
 * Does not: tokenize, or check a length in tokens (the tokenizer truncates); it keeps the
 * references' quirks (a single TAB or LF between words survives, split is on ' ' only).
 * Reference: MULTIFLOW/X-VLM dataset/utils.py pre_caption and BLIP data/utils.py pre_caption
 * (Python re with \s = str.isspace, str.lower = full Unicode lower-case), as described in §3.1.
 */
#include "text/caption.h"

#include <string.h>

#include "core/common.h"
#include "text/unicase.h"

static bool in_set(int32_t c, const char *set)
{
    return c > 0 && c < 0x80 && strchr(set, (int)c) != NULL;
}

enum mf_status mf_pre_caption(const char *in, int max_words, enum mf_caption_style style,
                              char *out, size_t out_len, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    int32_t *raw = NULL, *a = NULL;
    if (!in || !out || out_len == 0)
        return mf_err_set(err, MF_ERR_ARG, "pre_caption: missing input or output buffer");
    if (max_words < 0)
        return mf_err_set(err, MF_ERR_ARG, "pre_caption: max words %d is negative", max_words);
    if (style != MF_CAPTION_NONE && style != MF_CAPTION_MULTIFLOW && style != MF_CAPTION_BLIP)
        return mf_err_set(err, MF_ERR_ARG, "pre_caption: unknown style %d", (int)style);
    size_t len = strlen(in);
    if (len > SIZE_MAX / 16)
        return mf_err_set(err, MF_ERR_RANGE, "caption of %zu bytes is too long", len);
    raw = mf_malloc((len + 1) * sizeof *raw); /* (len) code points of in */
    a = mf_malloc((2 * len + 1) * sizeof *a); /* (2*len) lower-cased, edited in place */
    if (!raw || !a) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory cleaning a caption of %zu bytes", len);
        goto fail;
    }
    size_t n, bad = 0;
    if (mf_uni_decode(in, len, raw, &n, &bad) != MF_OK) {
        st = mf_err_set(err, MF_ERR_FORMAT, "caption is not valid UTF-8 (byte %zu)", bad);
        goto fail;
    }
    if (style == MF_CAPTION_NONE) {
        memcpy(a, raw, n * sizeof *a);
    } else {
        n = mf_uni_lower(raw, n, a);
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            int32_t c = a[i];
            if (style == MF_CAPTION_MULTIFLOW) {
                if (in_set(c, ",.'!?\"()*#:;~"))
                    continue;
                if (c == '-' || c == '/')
                    c = ' ';
            } else if (in_set(c, ".!\"()*#:;~")) {
                c = ' ';
            }
            a[m++] = c;
        }
        n = m;
        if (style == MF_CAPTION_MULTIFLOW) { /* "<person>" -> "person", left to right */
            static const int32_t pat[8] = {'<', 'p', 'e', 'r', 's', 'o', 'n', '>'};
            m = 0;
            for (size_t i = 0; i < n;) {
                if (i + 8 <= n && memcmp(a + i, pat, sizeof pat) == 0) {
                    for (int k = 1; k < 7; k++)
                        a[m++] = pat[k];
                    i += 8;
                } else {
                    a[m++] = a[i++];
                }
            }
            n = m;
        }
        /* re.sub(r"\s{2,}", " "): runs of two or more whitespace chars become one space */
        m = 0;
        for (size_t i = 0; i < n;) {
            size_t j = i;
            while (j < n && mf_uni_is_pyspace(a[j]))
                j++;
            if (j - i >= 2) {
                a[m++] = ' ';
                i = j;
            } else {
                a[m++] = a[i++];
            }
        }
        n = m;
        while (n > 0 && a[n - 1] == '\n') /* rstrip('\n') */
            n--;
        while (n > 0 && a[n - 1] == ' ') /* strip(' ') */
            n--;
        size_t s = 0;
        while (s < n && a[s] == ' ')
            s++;
        memmove(a, a + s, (n - s) * sizeof *a);
        n -= s;
        if (max_words > 0) { /* split(' ')[:max_words]: cut at the max_words-th space */
            int spaces = 0;
            for (size_t i = 0; i < n; i++)
                if (a[i] == ' ' && ++spaces == max_words) {
                    n = i;
                    break;
                }
        }
    }
    bool blank = true;
    for (size_t i = 0; i < n && blank; i++)
        blank = mf_uni_is_pyspace(a[i]);
    if (blank) {
        st = mf_err_set(err, MF_ERR_FORMAT, "caption is empty after cleaning (input %zu bytes)",
                        len);
        goto fail;
    }
    size_t need = 0;
    for (size_t i = 0; i < n; i++)
        need += a[i] < 0x80 ? 1 : a[i] < 0x800 ? 2 : a[i] < 0x10000 ? 3 : 4;
    if (need + 1 > out_len) {
        st = mf_err_set(err, MF_ERR_RANGE, "cleaned caption needs %zu bytes, buffer has %zu",
                        need + 1, out_len);
        goto fail;
    }
    out[mf_uni_encode(a, n, out)] = '\0';
fail:
    mf_free(a);
    mf_free(raw);
    return st;
}

enum mf_status mf_caption_style_parse(const char *name, enum mf_caption_style *style,
                                      struct mf_err *err)
{
    if (name && strcmp(name, "none") == 0)
        *style = MF_CAPTION_NONE;
    else if (name && (strcmp(name, "multiflow") == 0 || strcmp(name, "xvlm") == 0))
        *style = MF_CAPTION_MULTIFLOW;
    else if (name && strcmp(name, "blip") == 0)
        *style = MF_CAPTION_BLIP;
    else
        return mf_err_set(err, MF_ERR_ARG, "unknown caption style '%s' (expected none, "
                          "multiflow, xvlm or blip)", name ? name : "(null)");
    return MF_OK;
}

const char *mf_caption_style_name(enum mf_caption_style style)
{
    switch (style) {
    case MF_CAPTION_NONE: return "none";
    case MF_CAPTION_MULTIFLOW: return "multiflow";
    case MF_CAPTION_BLIP: return "blip";
    }
    return "unknown";
}
