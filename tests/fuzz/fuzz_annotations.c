/*
 * fuzz_annotations: libFuzzer target for io/annotations (mf_annotations_parse), followed by
 * --pairs truncation, batching, and caption cleaning + WordPiece of the first few captions, so
 * hostile captions reach the text layer too.
 *
 * Not covered here: file reading (mf_annotations_load adds only mf_fs_read_all).
 * Seeds: tests/fuzz/corpus/annotations/; dictionary: tests/fuzz/annotations.dict.
 * Reference: stb tests/stbi_read_fuzzer.c (one call per input, no state between runs).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/common.h"
#include "io/annotations.h"
#include "text/caption.h"
#include "text/wordpiece.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char vocab_txt[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\na\n##a\nb\n##b\n.\n-\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct mf_vocab *v;
    struct mf_err err = {0};
    struct mf_annotations *a = NULL;
    if (!v && mf_vocab_parse(vocab_txt, sizeof vocab_txt - 1, "fuzz", &v, &err) != MF_OK)
        mf_assert_fail("vocab", __FILE__, __LINE__);
    if (mf_annotations_parse((const char *)data, size, "fuzz", "root", &a, &err) != MF_OK) {
        MF_ASSERT(a == NULL && err.msg[0] != '\0');
        return 0;
    }
    MF_ASSERT(a->n_pairs > 0 && a->n_images > 0 && a->n_images <= a->n_pairs);
    for (int64_t i = 0; i < a->n_pairs; i++) {
        MF_ASSERT(a->image_index[i] >= 0 && a->image_index[i] < a->n_images);
        MF_ASSERT(a->image_path[i] == a->images[a->image_index[i]]);
        MF_ASSERT(a->caption[i][0] != '\0' && strlen(a->caption[i]) <= MF_ANN_MAX_CAPTION_BYTES);
    }
    for (int64_t i = 0; i < a->n_pairs && i < 4; i++) {
        char clean[4 * MF_ANN_MAX_CAPTION_BYTES];
        int32_t ids[16];
        enum mf_caption_style style = (enum mf_caption_style)(i % 3);
        if (mf_pre_caption(a->caption[i], 5, style, clean, sizeof clean, &err) == MF_OK)
            MF_ASSERT(mf_wordpiece_encode(v, clean, 16, ids, NULL, NULL, &err) == MF_OK);
    }
    int64_t first, count, nb = mf_annotations_n_batches(a, 3);
    MF_ASSERT(mf_annotations_batch(a, 3, nb - 1, &first, &count, &err) == MF_OK);
    MF_ASSERT(first + count == a->n_pairs && count >= 1 && count <= 3);
    MF_ASSERT(mf_annotations_truncate(a, (a->n_pairs + 1) / 2, &err) == MF_OK);
    for (int64_t i = 0; i < a->n_pairs; i++)
        MF_ASSERT(a->image_index[i] < a->n_images);
    mf_annotations_free(a);
    return 0;
}
