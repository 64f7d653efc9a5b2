/*
 * text/unicase.h: the few Unicode helpers the text layer shares: UTF-8 decode/encode to code
 * points, Python's str.isspace set, and Python's full str.lower (including the final-sigma rule
 * and U+0130 -> "i" U+0307).
 *
 * Does not: normalise, case-fold, or do locale-dependent casing (Turkish dotless i etc.).
 * Reference: CPython Objects/unicodeobject.c (lower_ucs4, handle_capital_sigma) and
 * Objects/unicodectype.c (_PyUnicode_IsWhitespace); tables come from utf8proc, whose Unicode
 * version is mf_uni_version() (utf8proc 2.8 on Debian 12 carries Unicode 15.0; CPython 3.11 on
 * the same system carries 14.0, the MULTIFLOW reference environment 13.0: only code points
 * assigned after 13.0 can tokenize differently).
 *
 * Thread safety: all functions are reentrant.
 */
#ifndef MF_TEXT_UNICASE_H
#define MF_TEXT_UNICASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiflow/status.h"

/* Unicode version of the tables in use, e.g. "15.0.0". */
const char *mf_uni_version(void);

/* Decodes len bytes of UTF-8 into out (capacity at least len code points); sets *n. Invalid
 * sequences, surrogates and overlongs give MF_ERR_FORMAT with *bad_at set to the byte offset. */
enum mf_status mf_uni_decode(const char *s, size_t len, int32_t *out, size_t *n, size_t *bad_at);

/* Encodes n code points as UTF-8 into out (capacity at least 4*n bytes); returns bytes written. */
size_t mf_uni_encode(const int32_t *cps, size_t n, char *out);

/* Python str.isspace(): bidi class WS, B, S or category Zs (a fixed list of 25 code points). */
bool mf_uni_is_pyspace(int32_t c);

/* Python str.lower() of cps[0..n) (the whole array is the casing context for final sigma) into
 * out, capacity at least 2*n; returns the number of code points written. */
size_t mf_uni_lower(const int32_t *cps, size_t n, int32_t *out);

#endif
