/*
 * io/annotations.h: calibration image-caption pairs in the MULTIFLOW annotation format.
 *
 *     struct mf_err err = {0};
 *     struct mf_annotations *a = NULL;
 *     if (mf_annotations_load("calib.jsonl", "img/", &a, &err) != MF_OK)
 *         fprintf(stderr, "error: %s\n", err.msg);   // "calib.jsonl: line 7: field 'caption' ..."
 *     mf_annotations_truncate(a, 1000, &err);         // --pairs 1000
 *     for (int64_t i = 0; i < a->n_pairs; i++)
 *         use(a->image_path[i], a->caption[i], a->image_index[i]);
 *     mf_annotations_free(a);
 *
 * Input: a JSON array of objects, or JSON Lines (one object per line, blank lines allowed),
 * told apart by the first non-space character ('[' or '{'; a UTF-8 BOM is skipped). Each object
 * has "image" (a path relative to image_root; absolute paths are used as they are) and
 * "caption" (a string, or a non-empty list of strings: one pair per string, in order); other keys
 * are ignored, duplicate keys are an error. Captions are kept verbatim (cleaning is
 * text/caption.h's job) but must be non-empty and at most MF_ANN_MAX_CAPTION_BYTES.
 * Images are not opened here (the image loader does that, lazily).
 *
 * Thread safety: load/parse are reentrant; a loaded set is read-only and shareable until
 * truncated or freed.
 */
#ifndef MF_IO_ANNOTATIONS_H
#define MF_IO_ANNOTATIONS_H

#include <stddef.h>
#include <stdint.h>

#include "multiflow/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MF_ANN_MAX_FILE_BYTES ((size_t)1 << 30)
#define MF_ANN_MAX_CAPTION_BYTES 10000

struct mf_annotations {
    char *label;          /* file name used in messages */
    int64_t n_pairs;
    int64_t n_images;     /* distinct image paths among the pairs */
    char **image_path;    /* (n_pairs) joined image path of each pair; aliases images[] */
    char **caption;       /* (n_pairs) caption as in the file, UTF-8 */
    int64_t *image_index; /* (n_pairs) index into images; images numbered by first appearance */
    int64_t *record;      /* (n_pairs) 1-based record (array) or line (JSON Lines) of each pair */
    int jsonl;            /* 1 if the file was JSON Lines: record[] holds line numbers */
    char **images;        /* (n_images) distinct joined image paths */
};

/* Reads and parses path; image_root (may be NULL or "") is joined in front of relative paths. */
enum mf_status mf_annotations_load(const char *path, const char *image_root,
                                   struct mf_annotations **out, struct mf_err *err);
/* Same from memory; label names the data in messages. */
enum mf_status mf_annotations_parse(const char *buf, size_t len, const char *label,
                                    const char *image_root, struct mf_annotations **out,
                                    struct mf_err *err);
void mf_annotations_free(struct mf_annotations *a);

/* Keeps the first n_pairs pairs (--pairs N); images used only by dropped pairs go too.
 * n_pairs >= the current count changes nothing; n_pairs < 1 is MF_ERR_ARG. */
enum mf_status mf_annotations_truncate(struct mf_annotations *a, int64_t n_pairs,
                                       struct mf_err *err);

/* Number of batches of batch_size pairs (the last may be short); 0 if batch_size < 1. */
int64_t mf_annotations_n_batches(const struct mf_annotations *a, int64_t batch_size);
/* Pair range [*first, *first + *count) of batch b; MF_ERR_RANGE if b is out of range. */
enum mf_status mf_annotations_batch(const struct mf_annotations *a, int64_t batch_size, int64_t b,
                                    int64_t *first, int64_t *count, struct mf_err *err);

#ifdef __cplusplus
}
#endif
#endif
