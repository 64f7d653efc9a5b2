/*
 * fuzz_wordpiece: libFuzzer target for text/wordpiece and text/caption: the first part of the
 * input (up to the first 0xff 0xfe pair) is a vocab.txt, the rest a text to clean and encode.
 * Invalid UTF-8 in the text must be an error, never a crash.
 *
 * Seeds: tests/fuzz/corpus/wordpiece/.
 * Reference: stb tests/stbi_read_fuzzer.c.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "text/caption.h"
#include "text/wordpiece.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mf_err err = {0};
    struct mf_vocab *v = NULL;
    size_t cut = size;
    for (size_t i = 0; i + 1 < size; i++)
        if (data[i] == 0xff && data[i + 1] == 0xfe) {
            cut = i;
            break;
        }
    if (mf_vocab_parse((const char *)data, cut, "fuzz", &v, &err) != MF_OK) {
        MF_ASSERT(v == NULL);
        return 0;
    }
    size_t tlen = cut + 2 <= size ? size - cut - 2 : 0;
    char *text = malloc(tlen + 1);
    char *clean = malloc(4 * tlen + 16);
    if (!text || !clean)
        goto done;
    memcpy(text, data + (size - tlen), tlen);
    text[tlen] = '\0'; /* an embedded NUL just ends the text early */
    int32_t ids[24], mask[24];
    int n_real = 0;
    int64_t n = 0;
    int32_t unk = mf_vocab_special(v, MF_TOK_UNK);
    if (mf_wordpiece_tokenize(v, text, ids, 24, &n, &err) == MF_OK) {
        MF_ASSERT(unk >= 0 && n >= 0);
        for (int64_t k = 0; k < n && k < 24; k++)
            MF_ASSERT(ids[k] >= 0 && ids[k] < mf_vocab_size(v));
    }
    if (mf_wordpiece_encode(v, text, 24, ids, mask, &n_real, &err) == MF_OK)
        MF_ASSERT(n_real >= 2 && n_real <= 24 && mask[n_real - 1] == 1);
    for (int s = 0; s < 3; s++)
        if (mf_pre_caption(text, 7, (enum mf_caption_style)s, clean, 4 * tlen + 16, &err) == MF_OK)
            MF_ASSERT(clean[0] != '\0');
    mf_vocab_add_blip_tokens(v, &err);
done:
    free(clean);
    free(text);
    mf_vocab_free(v);
    return 0;
}
