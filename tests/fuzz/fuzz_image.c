/*
 * fuzz_image: libFuzzer target for io/image decoding (mf_image_load_mem), with a small resize and
 * normalisation of whatever decodes, so hostile sizes reach the resampler too.
 *
 * Not covered here: file opening (mf_image_load), which only adds fopen/fstat/fread.
 * Seeds: tests/fuzz/corpus/image/ (tiny PNGs in several modes, baseline/progressive/grey JPEG).
 * Reference: stb tests/stbi_read_fuzzer.c (one call per input, no state between runs).
 */
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "io/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const float mean[3] = MF_IMAGE_MEAN, std[3] = MF_IMAGE_STD;
    struct mf_err err = {0};
    struct mf_image im = {0}, rs = {0};
    float px[3 * 7 * 5]; /* (3, 5, 7) */
    if (mf_image_load_mem(data, size, "fuzz", &im, &err) != MF_OK)
        return 0;
    MF_ASSERT(im.rgb && im.w > 0 && im.h > 0);
    if (mf_image_resize_bicubic(&im, 7, 5, &rs, &err) == MF_OK) {
        mf_image_normalize(&rs, mean, std, px);
        mf_image_free(&rs);
    }
    mf_image_free(&im);
    return 0;
}
