/*
 * text/unicase.c: UTF-8 <-> code points, Python's whitespace set and full lower-casing.
 *
 * Does not: case-fold, normalise, or use SpecialCasing's conditional (language-specific) rules;
 * Python does not use those either. "Cased" and "case-ignorable" (needed by the final-sigma rule)
 * are approximated from general categories plus utf8proc's case-mapping flags and the fixed
 * Word_Break MidLetter/MidNumLet/Single_Quote list; exotic Other_Lowercase letters of category Lo
 * (ª, º) are the known gap.
 * Reference: CPython Objects/unicodeobject.c lower_ucs4/handle_capital_sigma; Unicode
 * DerivedCoreProperties (Cased, Case_Ignorable); SpecialCasing.txt (U+0130 is the only
 * unconditional multi-code-point lower-case mapping).
 */
#include "text/unicase.h"

#include <utf8proc.h>

const char *mf_uni_version(void)
{
    return utf8proc_unicode_version();
}

enum mf_status mf_uni_decode(const char *s, size_t len, int32_t *out, size_t *n, size_t *bad_at)
{
    size_t i = 0, k = 0;
    while (i < len) {
        utf8proc_int32_t c;
        size_t left = len - i;
        utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(left > 8 ? 8 : left), &c);
        if (r <= 0 || c < 0) {
            if (bad_at)
                *bad_at = i;
            *n = k;
            return MF_ERR_FORMAT;
        }
        out[k++] = c;
        i += (size_t)r;
    }
    *n = k;
    return MF_OK;
}

size_t mf_uni_encode(const int32_t *cps, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += (size_t)utf8proc_encode_char(cps[i], (utf8proc_uint8_t *)out + k);
    return k;
}

bool mf_uni_is_pyspace(int32_t c)
{
    if (c < 0x80)
        return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20);
    switch (c) {
    case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029: case 0x202f: case 0x205f:
    case 0x3000:
        return true;
    default:
        return c >= 0x2000 && c <= 0x200a;
    }
}

static bool is_cased(int32_t c)
{
    utf8proc_category_t cat = utf8proc_category(c);
    return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL ||
           cat == UTF8PROC_CATEGORY_LT || utf8proc_islower(c) || utf8proc_isupper(c);
}

static bool is_case_ignorable(int32_t c)
{
    switch (c) {
    /* Word_Break = MidLetter, MidNumLet, Single_Quote */
    case 0x27: case 0x2e: case 0x3a: case 0xb7: case 0x387: case 0x55f: case 0x5f4:
    case 0x2018: case 0x2019: case 0x2024: case 0x2027: case 0xfe13: case 0xfe52: case 0xfe55:
    case 0xff07: case 0xff0e: case 0xff1a:
        return true;
    default:
        break;
    }
    utf8proc_category_t cat = utf8proc_category(c);
    return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME ||
           cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_LM ||
           cat == UTF8PROC_CATEGORY_SK;
}

/* CPython handle_capital_sigma: \p{cased}\p{case-ignorable}* U+03A3 !(\p{case-ignorable}*\p{cased}) */
static bool final_sigma(const int32_t *cps, size_t n, size_t i)
{
    size_t j = i;
    while (j > 0 && is_case_ignorable(cps[j - 1]))
        j--;
    if (j == 0 || !is_cased(cps[j - 1]))
        return false;
    for (j = i + 1; j < n; j++)
        if (!is_case_ignorable(cps[j]))
            return !is_cased(cps[j]);
    return true;
}

size_t mf_uni_lower(const int32_t *cps, size_t n, int32_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = cps[i];
        if (c < 0x80) {
            out[k++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        } else if (c == 0x130) {
            out[k++] = 'i';
            out[k++] = 0x307;
        } else if (c == 0x3a3) {
            out[k++] = final_sigma(cps, n, i) ? 0x3c2 : 0x3c3;
        } else {
            out[k++] = utf8proc_tolower(c);
        }
    }
    return k;
}
