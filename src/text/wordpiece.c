/*
 * text/wordpiece.c: vocabulary (vocab.txt, hash map both ways) and the BERT basic + WordPiece
 * tokenizer of spec/models.md §3.2.
 *
 * Does not: recognise special-token literals inside the text, do the "fast" tokenizer's
 * strip-accents-before-lower order, cased (do_lower_case=False) BERT, or the NFC pre-pass newer
 * transformers versions add (it cannot change the result after lower-case + NFD + strip Mn for
 * anything but exotic singletons). Special ids are never hard-coded.
 * Reference: HF transformers models/bert/tokenization_bert.py (BasicTokenizer,
 * WordpieceTokenizer, load_vocab), described in spec/models.md §3.2; Python unicodedata
 * semantics reproduced with utf8proc (text/unicase.h says which Unicode version).
 */
#include "text/wordpiece.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "core/common.h"
#include "text/unicase.h"

struct mf_vocab {
    char *label;       /* file name for messages */
    char *blob;        /* (blob_len) copy of the file, tokens NUL-terminated in place */
    int32_t n_loaded;  /* tokens living in blob; ids >= n_loaded own their string */
    int32_t n, cap;
    char **tok;        /* (cap) id -> token */
    uint32_t *tok_len; /* (cap) byte length of each token */
    int32_t *slot;     /* (n_slot) open-addressing table of ids, -1 = empty */
    size_t n_slot;     /* power of two, at least 2 * cap */
};

static const char *const special_str[MF_TOK_COUNT] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]",
};

/* ---------------------------------------------------------------- hash map */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Slot holding token s[0..n), or the empty slot where it would go. */
static size_t find_slot(const struct mf_vocab *v, const char *s, size_t n)
{
    size_t mask = v->n_slot - 1;
    size_t i = (size_t)hash_bytes(s, n) & mask;
    for (;;) {
        int32_t id = v->slot[i];
        if (id < 0 || (v->tok_len[id] == n && memcmp(v->tok[id], s, n) == 0))
            return i;
        i = (i + 1) & mask;
    }
}

static int32_t lookup(const struct mf_vocab *v, const char *s, size_t n)
{
    return v->slot[find_slot(v, s, n)];
}

/* Rebuilds the table with room for cap ids; later ids overwrite earlier equal tokens. */
static enum mf_status rehash(struct mf_vocab *v, size_t n_slot)
{
    int32_t *slot = mf_malloc(n_slot * sizeof *slot);
    if (!slot)
        return MF_ERR_NOMEM;
    memset(slot, 0xff, n_slot * sizeof *slot);
    mf_free(v->slot);
    v->slot = slot;
    v->n_slot = n_slot;
    for (int32_t id = 0; id < v->n; id++)
        v->slot[find_slot(v, v->tok[id], v->tok_len[id])] = id;
    return MF_OK;
}

static size_t slots_for(size_t cap)
{
    size_t s = 64;
    while (s < 2 * cap)
        s *= 2;
    return s;
}

/* ---------------------------------------------------------------- vocabulary */

static bool valid_utf8(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        utf8proc_int32_t c;
        size_t left = n - i;
        utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(left > 8 ? 8 : left), &c);
        if (r <= 0 || c < 0)
            return false;
        i += (size_t)r;
    }
    return true;
}

void mf_vocab_free(struct mf_vocab *v)
{
    if (!v)
        return;
    for (int32_t id = v->n_loaded; id < v->n; id++)
        mf_free(v->tok[id]);
    mf_free(v->slot);
    mf_free(v->tok_len);
    mf_free(v->tok);
    mf_free(v->blob);
    mf_free(v->label);
    mf_free(v);
}

enum mf_status mf_vocab_parse(const char *buf, size_t len, const char *label,
                              struct mf_vocab **out, struct mf_err *err)
{
    enum mf_status st;
    struct mf_vocab *v = NULL;
    *out = NULL;
    if (!label)
        label = "vocab";
    if (len > MF_VOCAB_MAX_FILE_BYTES) {
        st = mf_err_set(err, MF_ERR_RANGE, "%s: vocabulary is %zu bytes, more than the %zu-byte limit",
                        label, len, MF_VOCAB_MAX_FILE_BYTES);
        goto fail;
    }
    /* count lines: a final line terminator does not start a new (empty) line */
    size_t n_lines = 0;
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\n')
            n_lines++;
    if (len > 0 && buf[len - 1] != '\n')
        n_lines++;
    if (n_lines == 0) {
        st = mf_err_set(err, MF_ERR_FORMAT, "%s: vocabulary is empty", label);
        goto fail;
    }
    if (n_lines > MF_VOCAB_MAX_TOKENS) {
        st = mf_err_set(err, MF_ERR_RANGE, "%s: %zu tokens, more than the %d-token limit", label,
                        n_lines, MF_VOCAB_MAX_TOKENS);
        goto fail;
    }
    st = MF_ERR_NOMEM;
    v = mf_calloc(1, sizeof *v);
    if (!v)
        goto nomem;
    v->label = mf_strdup(label);
    v->cap = (int32_t)n_lines + 8; /* room for BLIP's added tokens without a realloc */
    v->blob = mf_malloc(len + 1);
    v->tok = mf_calloc((size_t)v->cap, sizeof *v->tok);
    v->tok_len = mf_calloc((size_t)v->cap, sizeof *v->tok_len);
    if (!v->label || !v->blob || !v->tok || !v->tok_len)
        goto nomem;
    memcpy(v->blob, buf, len);
    v->blob[len] = '\0';

    size_t pos = 0;
    for (size_t line = 1; line <= n_lines; line++) {
        char *s = v->blob + pos;
        char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + 1;
        if (n > 0 && s[n - 1] == '\r')
            n--;
        s[n] = '\0';
        if (n == 0) {
            st = mf_err_set(err, MF_ERR_FORMAT, "%s: line %zu is empty (only the last line may "
                            "end with a newline)", label, line);
            goto fail;
        }
        if (n > MF_VOCAB_MAX_TOKEN_BYTES) {
            st = mf_err_set(err, MF_ERR_RANGE, "%s: line %zu: token of %zu bytes, more than the "
                            "%d-byte limit", label, line, n, MF_VOCAB_MAX_TOKEN_BYTES);
            goto fail;
        }
        if (memchr(s, '\0', n) || memchr(s, '\r', n)) {
            st = mf_err_set(err, MF_ERR_FORMAT, "%s: line %zu contains a NUL or CR byte", label,
                            line);
            goto fail;
        }
        if (!valid_utf8(s, n)) {
            st = mf_err_set(err, MF_ERR_FORMAT, "%s: line %zu is not valid UTF-8", label, line);
            goto fail;
        }
        v->tok[v->n] = s;
        v->tok_len[v->n] = (uint32_t)n;
        v->n++;
    }
    v->n_loaded = v->n;
    if (rehash(v, slots_for((size_t)v->cap)) != MF_OK)
        goto nomem;
    *out = v;
    return MF_OK;
nomem:
    st = mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory loading the vocabulary", label);
fail:
    if (v)
        v->n_loaded = v->n; /* every token so far lives in the blob */
    mf_vocab_free(v);
    return st;
}

enum mf_status mf_vocab_load(const char *path, struct mf_vocab **out, struct mf_err *err)
{
    enum mf_status st;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    *out = NULL;
    if (!f) {
        st = mf_err_set(err, MF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = mf_err_set(err, MF_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    if ((uint64_t)sb.st_size > MF_VOCAB_MAX_FILE_BYTES) {
        st = mf_err_set(err, MF_ERR_RANGE, "%s: vocabulary is %lld bytes, more than the %zu-byte "
                        "limit", path, (long long)sb.st_size, MF_VOCAB_MAX_FILE_BYTES);
        goto fail;
    }
    size_t len = (size_t)sb.st_size;
    buf = mf_malloc(len + 1);
    if (!buf) {
        st = mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, len);
        goto fail;
    }
    if (fread(buf, 1, len, f) != len) {
        st = mf_err_set(err, MF_ERR_IO, "%s: short read", path);
        goto fail;
    }
    st = mf_vocab_parse(buf, len, path, out, err);
fail:
    mf_free(buf);
    if (f)
        fclose(f);
    return st;
}

enum mf_status mf_vocab_add_token(struct mf_vocab *v, const char *token, int32_t *id,
                                  struct mf_err *err)
{
    size_t n = token ? strlen(token) : 0;
    if (n == 0 || n > MF_VOCAB_MAX_TOKEN_BYTES || !valid_utf8(token, n))
        return mf_err_set(err, MF_ERR_ARG, "%s: cannot add token: empty, over %d bytes or not "
                          "UTF-8", v->label, MF_VOCAB_MAX_TOKEN_BYTES);
    int32_t have = lookup(v, token, n);
    if (have >= 0) {
        if (id)
            *id = have;
        return MF_OK;
    }
    if (v->n >= MF_VOCAB_MAX_TOKENS)
        return mf_err_set(err, MF_ERR_RANGE, "%s: vocabulary full (%d tokens)", v->label, v->n);
    if (v->n == v->cap) {
        int32_t cap = v->cap * 2;
        char **tok = mf_realloc(v->tok, (size_t)cap * sizeof *tok);
        if (!tok)
            goto nomem;
        v->tok = tok;
        uint32_t *tl = mf_realloc(v->tok_len, (size_t)cap * sizeof *tl);
        if (!tl)
            goto nomem;
        v->tok_len = tl;
        if (rehash(v, slots_for((size_t)cap)) != MF_OK)
            goto nomem;
        v->cap = cap;
    }
    char *copy = mf_strdup(token);
    if (!copy)
        goto nomem;
    v->tok[v->n] = copy;
    v->tok_len[v->n] = (uint32_t)n;
    v->slot[find_slot(v, token, n)] = v->n;
    if (id)
        *id = v->n;
    v->n++;
    return MF_OK;
nomem:
    return mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory adding token '%s'", v->label, token);
}

enum mf_status mf_vocab_add_blip_tokens(struct mf_vocab *v, struct mf_err *err)
{
    enum mf_status st = mf_vocab_add_token(v, "[DEC]", NULL, err);
    if (st != MF_OK)
        return st;
    return mf_vocab_add_token(v, "[ENC]", NULL, err);
}

int32_t mf_vocab_size(const struct mf_vocab *v)
{
    return v->n;
}

int32_t mf_vocab_id(const struct mf_vocab *v, const char *token)
{
    return lookup(v, token, strlen(token));
}

const char *mf_vocab_token(const struct mf_vocab *v, int32_t id)
{
    return (id >= 0 && id < v->n) ? v->tok[id] : NULL;
}

const char *mf_special_token_str(enum mf_special_token which)
{
    return ((unsigned)which < MF_TOK_COUNT) ? special_str[which] : "";
}

int32_t mf_vocab_special(const struct mf_vocab *v, enum mf_special_token which)
{
    if ((unsigned)which >= MF_TOK_COUNT)
        return -1;
    return mf_vocab_id(v, special_str[which]);
}

/* ---------------------------------------------------------------- basic tokenizer */

static bool is_cjk(int32_t c)
{
    return (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) ||
           (c >= 0x20000 && c <= 0x2a6df) || (c >= 0x2a700 && c <= 0x2b73f) ||
           (c >= 0x2b740 && c <= 0x2b81f) || (c >= 0x2b820 && c <= 0x2ceaf) ||
           (c >= 0xf900 && c <= 0xfaff) || (c >= 0x2f800 && c <= 0x2fa1f);
}

/* HF _is_control: category C* except TAB, LF, CR */
static bool is_control(int32_t c)
{
    if (c == '\t' || c == '\n' || c == '\r')
        return false;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CN:
        return true;
    default:
        return false;
    }
}

/* HF _is_whitespace: space, TAB, LF, CR or category Zs */
static bool is_bert_space(int32_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
           utf8proc_category(c) == UTF8PROC_CATEGORY_ZS;
}

/* HF _is_punctuation: the ASCII non-alphanumeric ranges, or category P* */
static bool is_punct(int32_t c)
{
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
        (c >= 123 && c <= 126))
        return true;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE: case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        return true;
    default:
        return false;
    }
}

/* Called once per basic token (word) with its code points; returns true to stop early. */
typedef bool (*word_fn)(void *ctx, const int32_t *w, size_t m);

/* Runs the basic tokenizer over text and calls on_word for each resulting word, in order. */
static enum mf_status basic_run(const char *text, word_fn on_word, void *ctx, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    int32_t *raw = NULL, *a = NULL, *low = NULL, *dec = NULL;
    char *utf = NULL;
    size_t len = strlen(text);
    if (len > SIZE_MAX / 64) {
        st = mf_err_set(err, MF_ERR_RANGE, "text of %zu bytes is too long to tokenize", len);
        goto fail;
    }
    /* shapes: raw (len) code points; a (3*len) after spacing CJK; low (2*len) one lower-cased
     * token; utf (8*len) its UTF-8; dec (dcap) its NFD, grown on demand */
    size_t dcap = 4 * len + 16;
    raw = mf_malloc((len + 1) * sizeof *raw);
    a = mf_malloc((3 * len + 1) * sizeof *a);
    low = mf_malloc((6 * len + 1) * sizeof *low);
    utf = mf_malloc(24 * len + 1);
    dec = mf_malloc(dcap * sizeof *dec);
    if (!raw || !a || !low || !utf || !dec) {
        st = mf_err_set(err, MF_ERR_NOMEM, "out of memory tokenizing %zu bytes of text", len);
        goto fail;
    }
    size_t n0, bad = 0;
    if (mf_uni_decode(text, len, raw, &n0, &bad) != MF_OK) {
        st = mf_err_set(err, MF_ERR_FORMAT, "text is not valid UTF-8 (byte %zu)", bad);
        goto fail;
    }
    /* 1. clean, 2. space around CJK */
    size_t na = 0;
    for (size_t i = 0; i < n0; i++) {
        int32_t c = raw[i];
        if (c == 0 || c == 0xfffd || is_control(c))
            continue;
        if (is_bert_space(c)) {
            a[na++] = ' ';
        } else if (is_cjk(c)) {
            a[na++] = ' ';
            a[na++] = c;
            a[na++] = ' ';
        } else {
            a[na++] = c;
        }
    }
    /* 3. whitespace split (Python str.split), lower, NFD, drop Mn; 4. punctuation split */
    size_t i = 0;
    while (i < na) {
        if (mf_uni_is_pyspace(a[i])) {
            i++;
            continue;
        }
        size_t s = i;
        while (i < na && !mf_uni_is_pyspace(a[i]))
            i++;
        size_t nl = mf_uni_lower(a + s, i - s, low);
        size_t ub = mf_uni_encode(low, nl, utf);
        utf8proc_ssize_t nd;
        for (;;) {
            nd = utf8proc_decompose((const utf8proc_uint8_t *)utf, (utf8proc_ssize_t)ub, dec,
                                    (utf8proc_ssize_t)dcap, UTF8PROC_DECOMPOSE);
            if (nd < 0) {
                st = mf_err_set(err, MF_ERR_INTERNAL, "NFD failed: %s", utf8proc_errmsg(nd));
                goto fail;
            }
            if ((size_t)nd <= dcap)
                break;
            int32_t *bigger = mf_realloc(dec, (size_t)nd * sizeof *dec);
            if (!bigger) {
                st = mf_err_set(err, MF_ERR_NOMEM, "out of memory tokenizing %zu bytes of text", len);
                goto fail;
            }
            dec = bigger;
            dcap = (size_t)nd;
        }
        size_t m = 0;
        for (size_t k = 0; k < (size_t)nd; k++)
            if (utf8proc_category(dec[k]) != UTF8PROC_CATEGORY_MN)
                dec[m++] = dec[k];
        size_t w = 0; /* start of the current run of non-punctuation */
        for (size_t k = 0; k <= m; k++) {
            bool end = k == m;
            bool sp = !end && mf_uni_is_pyspace(dec[k]);
            bool pu = !end && !sp && is_punct(dec[k]);
            if (end || sp || pu) {
                if (k > w && on_word(ctx, dec + w, k - w))
                    goto fail;
                if (pu && on_word(ctx, dec + k, 1))
                    goto fail;
                w = k + 1;
            }
        }
    }
fail:
    mf_free(dec);
    mf_free(utf);
    mf_free(low);
    mf_free(a);
    mf_free(raw);
    return st;
}

struct join_ctx {
    char *out;
    size_t out_len, used; /* used excludes the NUL */
    bool overflow;
};

static bool join_word(void *p, const int32_t *w, size_t m)
{
    struct join_ctx *j = p;
    char tmp[4 * 64];
    /* encode in chunks so no stack buffer is sized from m */
    if (j->used > 0) {
        if (j->used + 1 >= j->out_len)
            goto overflow;
        j->out[j->used++] = ' ';
    }
    for (size_t k = 0; k < m; k += 64) {
        size_t c = MF_MIN((size_t)64, m - k);
        size_t b = mf_uni_encode(w + k, c, tmp);
        if (j->used + b >= j->out_len)
            goto overflow;
        memcpy(j->out + j->used, tmp, b);
        j->used += b;
    }
    j->out[j->used] = '\0';
    return false;
overflow:
    j->overflow = true;
    return true;
}

enum mf_status mf_bert_basic_tokenize(const char *text, char *out, size_t out_len,
                                      struct mf_err *err)
{
    if (!out || out_len == 0)
        return mf_err_set(err, MF_ERR_ARG, "basic tokenize: no output buffer");
    struct join_ctx j = {out, out_len, 0, false};
    out[0] = '\0';
    enum mf_status st = basic_run(text, join_word, &j, err);
    if (st == MF_OK && j.overflow)
        st = mf_err_set(err, MF_ERR_RANGE, "basic tokenize: output longer than %zu bytes", out_len);
    return st;
}

/* ---------------------------------------------------------------- WordPiece */

struct wp_ctx {
    const struct mf_vocab *v;
    int32_t unk;
    int32_t *ids; /* (cap) */
    int64_t cap;
    int64_t n;    /* pieces produced so far (may exceed cap) */
    bool stop_at_cap;
};

static bool emit(struct wp_ctx *c, int32_t id)
{
    if (c->n < c->cap)
        c->ids[c->n] = id;
    c->n++;
    return c->stop_at_cap && c->n >= c->cap;
}

static bool wordpiece_word(void *p, const int32_t *w, size_t m)
{
    struct wp_ctx *c = p;
    if (m > MF_WORDPIECE_MAX_WORD_CHARS)
        return emit(c, c->unk);
    char bytes[4 * MF_WORDPIECE_MAX_WORD_CHARS + 1];
    char key[2 + 4 * MF_WORDPIECE_MAX_WORD_CHARS + 1];
    size_t off[MF_WORDPIECE_MAX_WORD_CHARS + 1];
    int32_t piece[MF_WORDPIECE_MAX_WORD_CHARS];
    size_t n_piece = 0;
    off[0] = 0;
    for (size_t k = 0; k < m; k++)
        off[k + 1] = off[k] + mf_uni_encode(w + k, 1, bytes + off[k]);
    key[0] = '#';
    key[1] = '#';
    size_t start = 0;
    while (start < m) {
        size_t end = m;
        int32_t id = -1;
        while (end > start) {
            size_t nb = off[end] - off[start];
            if (start == 0) {
                id = lookup(c->v, bytes, nb);
            } else {
                memcpy(key + 2, bytes + off[start], nb);
                id = lookup(c->v, key, nb + 2);
            }
            if (id >= 0)
                break;
            end--;
        }
        if (id < 0)
            return emit(c, c->unk); /* whole word becomes [UNK] */
        piece[n_piece++] = id;
        start = end;
    }
    for (size_t k = 0; k < n_piece; k++)
        if (emit(c, piece[k]))
            return true;
    return false;
}

static enum mf_status need_special(const struct mf_vocab *v, enum mf_special_token t, int32_t *id,
                                   struct mf_err *err)
{
    *id = mf_vocab_special(v, t);
    if (*id < 0)
        return mf_err_set(err, MF_ERR_MISSING, "%s: vocabulary has no %s token", v->label,
                          special_str[t]);
    return MF_OK;
}

enum mf_status mf_wordpiece_tokenize(const struct mf_vocab *v, const char *text, int32_t *ids,
                                     int64_t cap, int64_t *n_pieces, struct mf_err *err)
{
    struct wp_ctx c = {v, -1, ids, cap < 0 ? 0 : cap, 0, false};
    enum mf_status st = need_special(v, MF_TOK_UNK, &c.unk, err);
    if (st == MF_OK)
        st = basic_run(text, wordpiece_word, &c, err);
    *n_pieces = c.n;
    return st;
}

static enum mf_status encode(const struct mf_vocab *v, const char *text, int max_len, bool sep,
                             int32_t *ids, int32_t *mask, int *n_real, struct mf_err *err)
{
    enum mf_status st;
    int32_t pad, cls, sep_id = -1;
    int reserved = sep ? 2 : 1;
    if (max_len < reserved)
        return mf_err_set(err, MF_ERR_ARG, "max tokens %d is below the minimum %d", max_len,
                          reserved);
    if ((st = need_special(v, MF_TOK_PAD, &pad, err)) != MF_OK ||
        (st = need_special(v, MF_TOK_CLS, &cls, err)) != MF_OK ||
        (sep && (st = need_special(v, MF_TOK_SEP, &sep_id, err)) != MF_OK))
        return st;
    struct wp_ctx c = {v, -1, ids + 1, max_len - reserved, 0, true};
    if ((st = need_special(v, MF_TOK_UNK, &c.unk, err)) != MF_OK)
        return st;
    if ((st = basic_run(text, wordpiece_word, &c, err)) != MF_OK)
        return st;
    int n = 1 + (int)MF_MIN(c.n, c.cap);
    ids[0] = cls;
    if (sep)
        ids[n++] = sep_id;
    for (int k = 0; k < max_len; k++) {
        if (k >= n)
            ids[k] = pad;
        if (mask)
            mask[k] = k < n;
    }
    if (n_real)
        *n_real = n;
    return MF_OK;
}

enum mf_status mf_wordpiece_encode(const struct mf_vocab *v, const char *text, int max_len,
                                   int32_t *ids, int32_t *mask, int *n_real, struct mf_err *err)
{
    return encode(v, text, max_len, true, ids, mask, n_real, err);
}

enum mf_status mf_wordpiece_encode_nosep(const struct mf_vocab *v, const char *text, int max_len,
                                         int32_t *ids, int32_t *mask, int *n_real,
                                         struct mf_err *err)
{
    return encode(v, text, max_len, false, ids, mask, n_real, err);
}
