/*
 * io/image.h: decode PNG/JPEG to 8-bit RGB, Pillow-exact bicubic resize, float normalisation.
 *
 *     struct mf_err err = {0};
 *     float *px = mf_malloc(3 * 384 * 384 * sizeof(float));      // (3, 384, 384) CHW
 *     if (mf_image_preprocess("img/0001.png", 384, px, &err) != MF_OK)
 *         fprintf(stderr, "error: %s\n", err.msg);               // "img/0001.png: ..."
 *
 * Decoding follows Pillow 9.4's Image.open(p).convert('RGB') (spec/models.md §2.1): alpha is
 * dropped, not composited; palettes are looked up (indices past the PLTE entries map to grey
 * i,i,i as in Pillow's default palette); 16-bit RGB/RGBA/LA keep the high byte; 16-bit grey
 * opens in Pillow as mode I and converts by clamping to 0..255. EXIF orientation is not applied.
 * Resize is spec/models.md §2.2, normalisation §2.4.
 *
 * Thread safety: every function is reentrant; distinct images may be processed concurrently.
 */
#ifndef MF_IO_IMAGE_H
#define MF_IO_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "multiflow/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest accepted side and the most pixels any setting accepts (hostile-size guard; 16384^2 = 2^28). */
#define MF_IMAGE_MAX_SIDE (1 << 14)
#define MF_IMAGE_MAX_PIXELS ((int64_t)1 << 28)
/* Default pixel limit: Pillow's decompression-bomb error threshold, 2 * Image.MAX_IMAGE_PIXELS
 * (2 * 89478485). Images with more pixels are refused from their header, before decoding. */
#define MF_IMAGE_DEFAULT_MAX_PIXELS ((int64_t)178956970)

/* BLIP / X-VLM / CLIP normalisation constants (float32), channel order R, G, B. */
#define MF_IMAGE_MEAN {0.48145466f, 0.4578275f, 0.40821073f}
#define MF_IMAGE_STD {0.26862954f, 0.26130258f, 0.27577711f}

struct mf_image {
    int w, h;
    uint8_t *rgb; /* (h, w, 3) HWC, owned; NULL after mf_image_free */
};

/* Process-wide pixel limit (default MF_IMAGE_DEFAULT_MAX_PIXELS), like Pillow's
 * Image.MAX_IMAGE_PIXELS; set once by the CLI (--max-pixels) before images are read. Values are
 * clamped to [1, MF_IMAGE_MAX_PIXELS]. */
void mf_image_set_max_pixels(int64_t n);
int64_t mf_image_max_pixels(void);

/* Reads only as much of the file as its header needs (the whole file if the header is not in the
 * first 64 KiB) and checks it as mf_image_load would: format, dimensions against the limits,
 * colour type. Fills *w, *h (either may be NULL). Errors as mf_image_load's; never decodes pixels. */
enum mf_status mf_image_probe(const char *path, int *w, int *h, struct mf_err *err);

/* Decodes the file at path (format from the magic bytes, not the extension) into out.
 * Errors name the file: MISSING (no such file), IO, FORMAT (not PNG/JPEG, corrupt, truncated),
 * UNSUPPORTED (CMYK JPEG, ...), RANGE (too large), NOMEM. On error out is left empty. Messages
 * never quote the file's bytes (a path pointing at a secret must not leak it). */
enum mf_status mf_image_load(const char *path, struct mf_image *out, struct mf_err *err);

/* Same, from memory; label names the source in messages (e.g. a path or "<memory>"). */
enum mf_status mf_image_load_mem(const void *buf, size_t len, const char *label,
                                 struct mf_image *out, struct mf_err *err);

/* Releases out->rgb and zeroes the record; safe on a zeroed or freed image. */
void mf_image_free(struct mf_image *im);

/* Pillow Image.resize((out_w, out_h), BICUBIC) on an RGB image: separable, horizontal pass into
 * u8 then vertical pass; a pass is skipped when that side is unchanged. out is allocated. */
enum mf_status mf_image_resize_bicubic(const struct mf_image *in, int out_w, int out_h,
                                       struct mf_image *out, struct mf_err *err);

/* out[c][y][x] = ((float)u / 255.0f - mean[c]) / std[c], float32 ops (spec §2.4).
 * out has shape (3, h, w) CHW. */
void mf_image_normalize(const struct mf_image *im, const float mean[3], const float std[3],
                        float *out);

/* BLIP geometry: load, convert to RGB, squash-resize to size x size, normalise with
 * MF_IMAGE_MEAN/MF_IMAGE_STD into out, shape (3, size, size). */
enum mf_status mf_image_preprocess(const char *path, int size, float *out, struct mf_err *err);

#ifdef __cplusplus
}
#endif
#endif
