/*
 * eval/captok.c: the caption tokenisation of the COCO caption evaluation, reimplemented in C.
 *
 * pycocoevalcap (tokenizer/ptbtokenizer.py) runs Stanford CoreNLP 3.4.1's PTBTokenizer with
 * -preserveLines -lowerCase (default options = the historical ptb3Escaping set), then drops the
 * tokens '' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ; and joins the rest with spaces.
 * Because -lowerCase lowercases each token *after* the lexer normalised it, brackets come out as
 * "-lrb-", "-rrb-", ... which are not in the (upper-case) drop list: they stay, as in the
 * reference. What this file reproduces, per whitespace-separated chunk:
 *   - words: letters/digits (any code point >= 0x80 that is not punctuation below counts as a
 *     letter), joined across '-', '&', '/', '.' when a word character follows, across ',' and ':'
 *     between digits, and across an apostrophe between letters; an acronym (x.y.) or a title
 *     abbreviation (mr. dr. st. ...) keeps its final period;
 *   - clitics split as PTB does: n't 's 'm 'd 're 've 'll; cannot gonna gotta wanna gimme lemme
 *     split into two tokens; a word-final or leading apostrophe is a quote (dropped);
 *   - quotes " “ ” ‘ ` become `` / '' / ` / ' (dropped); ’ inside a word is an apostrophe;
 *   - ( ) [ ] { } become -lrb- -rrb- -lsb- -rsb- -lcb- -rcb- (kept, see above);
 *   - runs of dots and … are "..." , runs of '-' and – — are "--" (dropped);
 *   - '/' and '*' are escaped as \/ and \* (PTB3 escaping);
 *   - CoreNLP's Americanize on the original-case word (grey -> gray, colour -> color, the
 *     -our/-ours rule with its exceptions, haem(at)o, -aemia, leukaem, programme(s)), then the
 *     lower case (Python's str.lower, text/unicase.h, for Java's toLowerCase(Locale.ENGLISH)).
 * Deviations (documented in docs/internals/capmetrics.md): no URL/e-mail/emoticon/SGML rules, no
 * currency or fraction normalisation, no sentence-final acronym period duplication (the extra
 * "." is dropped anyway), other symbols are single-character tokens, runs like "?!" are split
 * into single characters (dropped either way), control characters count as spaces.
 */
#include <string.h>

#include "core/common.h"
#include "multiflow/eval.h"
#include "text/unicase.h"

struct tokbuf {
    char *out;
    size_t size, len;
    bool overflow;
    int32_t *scratch; /* (2 * max token code points) lower-case output */
};

/* ---- character classes ---- */

static bool is_space_cp(int32_t c)
{
    return c < 0x20 || c == 0x7f || mf_uni_is_pyspace(c);
}

static bool is_digit(int32_t c)
{
    return c >= '0' && c <= '9';
}

static bool is_quote_cp(int32_t c)
{
    return c == '"' || c == '\'' || c == '`' || c == 0x2018 || c == 0x2019 || c == 0x201c || c == 0x201d ||
           c == 0xab || c == 0xbb;
}

static bool is_dash_cp(int32_t c)
{
    return c == 0x2013 || c == 0x2014 || c == 0x2015;
}

/* Characters that make up words. ASCII letters, digits and '_'; every other non-space code point
 * from 0x80 up except the quotes, dashes and ellipsis the lexer treats as punctuation. */
static bool is_word_cp(int32_t c)
{
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_';
    return !is_quote_cp(c) && !is_dash_cp(c) && c != 0x2026 && !is_space_cp(c);
}

static bool is_letter(int32_t c)
{
    return is_word_cp(c) && !is_digit(c) && c != '_';
}

static bool is_apos(int32_t c)
{
    return c == '\'' || c == 0x2019;
}

static int32_t lower_ascii(int32_t c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Case-insensitive ASCII comparison of cp[0..n) with s (strlen(s) == n). */
static bool eq_ci(const int32_t *cp, size_t n, const char *s)
{
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        int32_t c = is_apos(cp[i]) ? '\'' : lower_ascii(cp[i]);
        if (c != (unsigned char)s[i])
            return false;
    }
    return true;
}

/* ---- output ---- */

static void put_bytes(struct tokbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->size) {
        b->overflow = true;
        return;
    }
    memcpy(b->out + b->len, s, n);
    b->len += n;
}

/* Tokens that pycocoevalcap's PUNCTUATIONS list drops (compared after lower-casing). */
static bool dropped(const char *s, size_t n)
{
    static const char *const drop[] = {"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"};
    for (size_t i = 0; i < MF_ARRAY_LEN(drop); i++)
        if (strlen(drop[i]) == n && memcmp(drop[i], s, n) == 0)
            return true;
    return false;
}

static void emit_ascii(struct tokbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (dropped(s, n))
        return;
    if (b->len)
        put_bytes(b, " ", 1);
    put_bytes(b, s, n);
}

/* ---- Americanize (CoreNLP edu.stanford.nlp.process.Americanize), case-sensitive ---- */

static const char *const american[][2] = {
    {"anaesthetic", "anesthetic"}, {"analogue", "analog"}, {"analogues", "analogs"}, {"analyse", "analyze"},
    {"analysed", "analyzed"}, {"analysing", "analyzing"}, {"armoured", "armored"}, {"cancelled", "canceled"},
    {"cancelling", "canceling"}, {"candour", "candor"}, {"capitalise", "capitalize"},
    {"capitalised", "capitalized"}, {"capitalisation", "capitalization"}, {"centre", "center"},
    {"chimaeric", "chimeric"}, {"clamour", "clamor"}, {"coloured", "colored"}, {"colouring", "coloring"},
    {"colourful", "colorful"}, {"defence", "defense"}, {"Defence", "Defense"}, {"discolour", "discolor"},
    {"discolours", "discolors"}, {"discoloured", "discolored"}, {"discolouring", "discoloring"},
    {"encyclopaedia", "encyclopedia"}, {"endeavour", "endeavor"}, {"endeavours", "endeavors"},
    {"endeavoured", "endeavored"}, {"endeavouring", "endeavoring"}, {"fervour", "fervor"}, {"favour", "favor"},
    {"favours", "favors"}, {"favoured", "favored"}, {"favouring", "favoring"}, {"favourite", "favorite"},
    {"favourites", "favorites"}, {"fibre", "fiber"}, {"fibres", "fibers"}, {"finalise", "finalize"},
    {"finalised", "finalized"}, {"finalising", "finalizing"}, {"flavour", "flavor"}, {"flavours", "flavors"},
    {"flavoured", "flavored"}, {"flavouring", "flavoring"}, {"glamour", "glamour"}, {"grey", "gray"},
    {"harbour", "harbor"}, {"harbours", "harbors"}, {"homologue", "homolog"}, {"homologues", "homologs"},
    {"honour", "honor"}, {"honours", "honors"}, {"honoured", "honored"}, {"honouring", "honoring"},
    {"honourable", "honorable"}, {"humour", "humor"}, {"humours", "humors"}, {"humoured", "humored"},
    {"humouring", "humoring"}, {"kerb", "curb"}, {"labelled", "labeled"}, {"labelling", "labeling"},
    {"labour", "labor"}, {"Labour", "Labor"}, {"labours", "labors"}, {"laboured", "labored"},
    {"labouring", "laboring"}, {"leant", "leaned"}, {"learnt", "learned"}, {"localise", "localize"},
    {"localised", "localized"}, {"manoeuvre", "maneuver"}, {"manoeuvres", "maneuvers"}, {"maximise", "maximize"},
    {"maximised", "maximized"}, {"maximising", "maximizing"}, {"meagre", "meager"}, {"minimise", "minimize"},
    {"minimised", "minimized"}, {"minimising", "minimizing"}, {"modernise", "modernize"},
    {"modernised", "modernized"}, {"modernising", "modernizing"}, {"misdemeanour", "misdemeanor"},
    {"misdemeanours", "misdemeanors"}, {"neighbour", "neighbor"}, {"neighbours", "neighbors"},
    {"neighbourhood", "neighborhood"}, {"neighbourhoods", "neighborhoods"}, {"oestrogen", "estrogen"},
    {"oestrogens", "estrogens"}, {"organisation", "organization"}, {"organisations", "organizations"},
    {"penalise", "penalize"}, {"penalised", "penalized"}, {"popularise", "popularize"},
    {"popularised", "popularized"}, {"popularises", "popularizes"}, {"popularising", "popularizing"},
    {"practise", "practice"}, {"practised", "practiced"}, {"pressurise", "pressurize"},
    {"pressurised", "pressurized"}, {"pressurises", "pressurizes"}, {"pressurising", "pressurizing"},
    {"realise", "realize"}, {"realised", "realized"}, {"realising", "realizing"}, {"realises", "realizes"},
    {"recognise", "recognize"}, {"recognised", "recognized"}, {"recognising", "recognizing"},
    {"recognises", "recognizes"}, {"rumoured", "rumored"}, {"rumouring", "rumoring"}, {"savour", "savor"},
    {"savours", "savors"}, {"savoured", "savored"}, {"savouring", "savoring"}, {"splendour", "splendor"},
    {"splendours", "splendors"}, {"theatre", "theater"}, {"theatres", "theaters"}, {"titre", "titer"},
    {"titres", "titers"}, {"travelled", "traveled"}, {"travelling", "traveling"},
};

/* Words the -our(s) rule leaves alone (a match anywhere in the word excepts it). */
static const char *const our_exceptions[] = {
    "abatjour", "beflour", "bonjour", "calambour", "carrefour", "cornflour", "contour", "detour", "devour",
    "dortour", "dyvour", "downpour", "giaour", "glamour", "holour", "inpour", "outpour", "pandour",
    "paramour", "pompadour", "recontour", "repour", "ryeflour", "sompnour", "tambour", "troubadour",
    "tregetour", "velour",
};

/* Replaces every occurrence of from by to in w (NUL-terminated, capacity cap); false if none. */
static bool replace_all(char *w, size_t cap, const char *from, const char *to)
{
    size_t nf = strlen(from), nt = strlen(to);
    char tmp[256];
    size_t o = 0;
    bool any = false;
    for (const char *p = w; *p;) {
        if (strncmp(p, from, nf) == 0) {
            if (o + nt >= sizeof tmp)
                return false;
            memcpy(tmp + o, to, nt);
            o += nt;
            p += nf;
            any = true;
        } else {
            if (o + 1 >= sizeof tmp)
                return false;
            tmp[o++] = *p++;
        }
    }
    if (!any || o + 1 > cap)
        return false;
    memcpy(w, tmp, o);
    w[o] = '\0';
    return true;
}

static bool ends_with(const char *w, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(w + n - k, suffix, k) == 0;
}

/* w: an ASCII word (cap >= 256). Americanize.americanize(w) minus its month/day capitalisation,
 * which the lower case undoes anyway. Its Java lengths are UTF-16 units; w is ASCII here. */
static void americanize(char *w, size_t cap)
{
    size_t n = strlen(w);
    if (n < 4)
        return;
    for (size_t i = 0; i < MF_ARRAY_LEN(american); i++)
        if (strcmp(w, american[i][0]) == 0) {
            strcpy(w, american[i][1]); /* every replacement is at most one byte longer; cap >= 256 */
            return;
        }
    if (n < 6)
        return;
    /* the patterns in order; the first that matches (and is not excepted) is applied */
    if (strstr(w, "haemo") || strstr(w, "haemato")) { /* haem(at)?o -> hem$1o, every occurrence */
        replace_all(w, cap, "haemato", "hemato");
        replace_all(w, cap, "haemo", "hemo");
        return;
    }
    if (ends_with(w, n, "aemia")) {
        w[n - 5] = '\0';
        strcat(w, "emia");
        return;
    }
    if (strstr(w, "leukaem") || strstr(w, "Leukaem")) {
        replace_all(w, cap, "leukaem", "leukem");
        replace_all(w, cap, "Leukaem", "Leukem");
        return;
    }
    if (ends_with(w, n, "programmes") || ends_with(w, n, "programme")) { /* programme(s?)$ */
        char *p = w + n - (ends_with(w, n, "programmes") ? 10 : 9);
        memmove(p + 7, p + 9, strlen(p + 9) + 1); /* drop the "me" */
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (w[i] < 'a' || w[i] > 'z')
            return;
    size_t stem = ends_with(w, n, "ours") ? n - 4 : ends_with(w, n, "our") ? n - 3 : 0;
    if (stem < 3)
        return;
    for (size_t i = 0; i < MF_ARRAY_LEN(our_exceptions); i++)
        if (strstr(w, our_exceptions[i]))
            return;
    memmove(w + stem + 1, w + stem + 2, n - stem - 1); /* "our" -> "or", keeps a final 's' */
}

/* Emits a word token cp[0..n): Americanize (ASCII words), lower case, escape / and *. */
static void emit_word(struct tokbuf *b, const int32_t *cp, size_t n)
{
    int32_t *low = b->scratch;
    size_t m;
    bool ascii = n < 200;
    for (size_t i = 0; i < n && ascii; i++)
        ascii = cp[i] < 0x80;
    if (ascii) {
        char w[256];
        for (size_t i = 0; i < n; i++)
            w[i] = (char)cp[i];
        w[n] = '\0';
        americanize(w, sizeof w);
        m = strlen(w);
        for (size_t i = 0; i < m; i++)
            low[i] = lower_ascii((unsigned char)w[i]);
    } else {
        int32_t *apos = low + 2 * n; /* the scratch holds 3 * n: ’ inside a word is written ' */
        for (size_t i = 0; i < n; i++)
            apos[i] = cp[i] == 0x2019 ? '\'' : cp[i];
        m = mf_uni_lower(apos, n, low);
    }
    if (b->len)
        put_bytes(b, " ", 1);
    for (size_t i = 0; i < m; i++) {
        if (low[i] == '/' || low[i] == '*')
            put_bytes(b, "\\", 1);
        char u[4];
        size_t k = mf_uni_encode(&low[i], 1, u);
        put_bytes(b, u, k);
    }
}

/* ---- the lexer ---- */

/* Abbreviations whose period PTB keeps on the word (a subset of its lists; see the header). */
static const char *const titles[] = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "mt", "ft", "vs", "etc",
                                     "inc", "corp", "ltd"};

/* x.y.z pattern (letters separated by single periods), as in "u.s" before its final period. */
static bool acronym(const int32_t *cp, size_t n)
{
    if (n < 3)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((i % 2 == 0) != is_letter(cp[i]) || (i % 2 == 1 && cp[i] != '.'))
            return false;
    return n % 2 == 1;
}

/* Whole words PTB splits in two (assimilations and "cannot"): the length of the first part. */
static size_t split_word(const int32_t *cp, size_t n)
{
    static const char *const words[] = {"cannot", "gonna", "gotta", "wanna", "gimme", "lemme"};
    static const size_t first[] = {3, 3, 3, 3, 3, 3};
    for (size_t i = 0; i < MF_ARRAY_LEN(words); i++)
        if (eq_ci(cp, n, words[i]))
            return first[i];
    return 0;
}

/* Length of the clitic at the end of cp[0..n) (n't 's 'm 'd 're 've 'll), 0 if none. */
static size_t clitic_len(const int32_t *cp, size_t n)
{
    static const char *const cl[] = {"n't", "'re", "'ve", "'ll", "'s", "'m", "'d"};
    for (size_t i = 0; i < MF_ARRAY_LEN(cl); i++) {
        size_t k = strlen(cl[i]);
        if (n > k && eq_ci(cp + n - k, k, cl[i]))
            return k;
    }
    return 0;
}

/* A word run cp[0..n): split off an assimilation or a clitic, then emit. */
static void emit_run(struct tokbuf *b, const int32_t *cp, size_t n)
{
    size_t k = split_word(cp, n);
    if (k) {
        emit_word(b, cp, k);
        emit_word(b, cp + k, n - k);
        return;
    }
    k = clitic_len(cp, n);
    if (k) {
        emit_word(b, cp, n - k);
        emit_word(b, cp + n - k, k);
        return;
    }
    emit_word(b, cp, n);
}

/* Does a joiner at cp[i] continue the word cp[s..i)? */
static bool joins(const int32_t *cp, size_t n, size_t s, size_t i)
{
    if (i + 1 >= n || i == s || !is_word_cp(cp[i + 1]))
        return false;
    int32_t c = cp[i];
    if (c == '-' || c == '&' || c == '/' || c == '.')
        return true;
    if (c == ',' || c == ':')
        return is_digit(cp[i - 1]) && is_digit(cp[i + 1]);
    if (is_apos(c))
        return is_letter(cp[i - 1]) && is_letter(cp[i + 1]);
    return false;
}

/* Lexes one whitespace-free chunk cp[0..n). */
static void lex_chunk(struct tokbuf *b, const int32_t *cp, size_t n)
{
    size_t i = 0;
    while (i < n) {
        int32_t c = cp[i];
        if (is_word_cp(c) || (c == '.' && i + 1 < n && is_digit(cp[i + 1]))) {
            size_t s = i++;
            while (i < n && (is_word_cp(cp[i]) || joins(cp, n, s, i)))
                i++;
            /* a final period stays on an acronym or a title abbreviation */
            if (i < n && cp[i] == '.' && !(i + 1 < n && cp[i + 1] == '.')) {
                bool keep = acronym(cp + s, i - s);
                for (size_t t = 0; t < MF_ARRAY_LEN(titles) && !keep; t++)
                    keep = eq_ci(cp + s, i - s, titles[t]);
                if (keep)
                    i++;
            }
            emit_run(b, cp + s, i - s);
            continue;
        }
        if (is_apos(c)) {
            /* a clitic after a space ("dog 's"; "do n't" is a word run), else a quote (dropped) */
            static const char *const cl[] = {"'s", "'m", "'d", "'re", "'ve", "'ll"};
            size_t e = i + 1;
            while (e < n && is_letter(cp[e]))
                e++;
            bool is_cl = false;
            if (e == n || !is_word_cp(cp[e]))
                for (size_t t = 0; t < MF_ARRAY_LEN(cl) && !is_cl; t++)
                    is_cl = eq_ci(cp + i, e - i, cl[t]);
            if (is_cl) {
                emit_word(b, cp + i, e - i);
                i = e;
            } else {
                i++;
            }
            continue;
        }
        if (is_quote_cp(c)) { /* " “ ” « » ‘ ` : `` '' ` in PTB, all dropped */
            i++;
            continue;
        }
        if (c == '.' || c == 0x2026) {
            size_t e = i;
            while (e < n && (cp[e] == '.' || cp[e] == 0x2026))
                e++;
            emit_ascii(b, e - i > 1 || c == 0x2026 ? "..." : ".");
            i = e;
            continue;
        }
        if (c == '-' || is_dash_cp(c)) {
            size_t e = i;
            while (e < n && (cp[e] == '-' || is_dash_cp(cp[e])))
                e++;
            emit_ascii(b, e - i > 1 || is_dash_cp(c) ? "--" : "-");
            i = e;
            continue;
        }
        const char *sym = NULL;
        switch (c) {
        case '(': sym = "-lrb-"; break;
        case ')': sym = "-rrb-"; break;
        case '[': sym = "-lsb-"; break;
        case ']': sym = "-rsb-"; break;
        case '{': sym = "-lcb-"; break;
        case '}': sym = "-rcb-"; break;
        default: break;
        }
        if (sym)
            emit_ascii(b, sym);
        else if (!strchr(",;:?!", (int)c)) /* , ; : ? ! are dropped; other symbols stand alone */
            emit_word(b, &cp[i], 1);
        i++;
    }
}

enum mf_status mf_caption_tokenize(const char *text, char *out, size_t out_size, size_t *out_len,
                                   struct mf_err *err)
{
    size_t len = strlen(text);
    if (out_size < 1)
        return mf_err_set(err, MF_ERR_RANGE, "caption tokens: output buffer of 0 bytes");
    int32_t *cp = mf_malloc((len + 1) * sizeof *cp);
    int32_t *scratch = mf_malloc((3 * len + 3) * sizeof *scratch);
    enum mf_status st = MF_OK;
    if (!cp || !scratch) {
        st = mf_err_set(err, MF_ERR_NOMEM, "caption tokens: out of memory (%zu bytes of text)", len);
        goto done;
    }
    size_t n, bad;
    if (mf_uni_decode(text, len, cp, &n, &bad) != MF_OK) {
        st = mf_err_set(err, MF_ERR_FORMAT, "caption is not valid UTF-8 (byte %zu)", bad);
        goto done;
    }
    struct tokbuf b = {.out = out, .size = out_size, .scratch = scratch};
    for (size_t i = 0; i < n;) {
        while (i < n && is_space_cp(cp[i]))
            i++;
        size_t s = i;
        while (i < n && !is_space_cp(cp[i]))
            i++;
        if (i > s)
            lex_chunk(&b, cp + s, i - s);
    }
    out[b.overflow ? 0 : b.len] = '\0';
    if (b.overflow) {
        st = mf_err_set(err, MF_ERR_RANGE, "caption tokens: output buffer of %zu bytes is too small", out_size);
        goto done;
    }
    if (out_len)
        *out_len = b.len;
done:
    mf_free(scratch);
    mf_free(cp);
    return st;
}
