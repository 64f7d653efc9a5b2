/*
 * multiflow/safetensors.h: read (mmap, zero-copy) and write (atomic) safetensors files.
 *
 *     struct mf_err err = {0};
 *     struct mf_safetensors *st = NULL;
 *     if (mf_safetensors_open("model.safetensors", &st, &err) != MF_OK) {
 *         fprintf(stderr, "error: %s\n", err.msg);
 *         return 1;
 *     }
 *     const struct mf_st_entry *e = mf_safetensors_find(st, "vision_model.embeddings.patch_embedding.weight");
 *     if (e && mf_dtype_is_float(e->dtype)) {
 *         float *w = malloc(e->nbytes / mf_dtype_size(e->dtype) * sizeof *w);
 *         mf_convert_to_f32(w, e->data, e->dtype, (int64_t)(e->nbytes / mf_dtype_size(e->dtype)));
 *     }
 *     mf_safetensors_close(st);
 *
 *     struct mf_st_writer *w = NULL;
 *     int64_t shape[2] = {2, 3};
 *     float x[6] = {0};
 *     if (mf_st_writer_create("out/masks.safetensors", &w, &err) == MF_OK &&
 *         mf_st_writer_add(w, "x", MF_DTYPE_F32, 2, shape, x, &err) == MF_OK)
 *         mf_st_writer_commit(w, &err);   // frees w; on failure nothing is left on disk
 *     else
 *         mf_st_writer_abort(w);
 *
 * Format: 8-byte little-endian header length n, n bytes of UTF-8 JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
 * data section; offsets are relative to its start. Every header field is validated: n <= 100 MB
 * and <= file size - 8, well-formed JSON without duplicate keys, known dtype, <= 8 non-negative
 * integer dims, numel * dtype size without overflow and == end - begin, end <= data size, no two
 * tensors overlapping (gaps are allowed), no unknown keys, metadata values strings.
 * Error codes: MF_ERR_IO (open/mmap), MF_ERR_FORMAT (layout, JSON, keys, sizes, overlap),
 * MF_ERR_DTYPE (unknown dtype), MF_ERR_RANGE (offsets past the data, size overflow), MF_ERR_NOMEM.
 * Messages start with the file name (or the label given to parse) and name the tensor.
 *
 * Entry data points into the mapping and may be unaligned for its dtype (files not written by
 * multiflow); mf_convert_to_f32 accepts unaligned input. A file truncated by another process while
 * mapped raises SIGBUS; that is not guarded against.
 * Thread safety: an open mf_safetensors is immutable and may be read from any number of threads;
 * a writer belongs to one thread.
 */
#ifndef MF_SAFETENSORS_H
#define MF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "multiflow/status.h"
#include "multiflow/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest header accepted by the reader (bytes of JSON). */
#define MF_ST_MAX_HEADER ((uint64_t)100 * 1024 * 1024)

struct mf_st_entry {
    const char *name;
    enum mf_dtype dtype;
    int ndim;
    int64_t shape[MF_MAX_DIMS];
    size_t offset;    /* from the start of the data section */
    size_t nbytes;    /* numel * dtype size */
    const void *data; /* into the mapping (or the parsed buffer) */
};

struct mf_safetensors; /* opaque */

/* Maps path read-only and parses its header. */
enum mf_status mf_safetensors_open(const char *path, struct mf_safetensors **out, struct mf_err *err);
/* Parses a safetensors image in memory without copying it: buf must outlive the result. label
 * names the input in messages (NULL: "<memory>"). For fuzzing and tests. */
enum mf_status mf_safetensors_parse(const void *buf, size_t len, const char *label,
                                    struct mf_safetensors **out, struct mf_err *err);
void mf_safetensors_close(struct mf_safetensors *st);

size_t mf_safetensors_count(const struct mf_safetensors *st);
/* i-th tensor in file order (by data offset, then name); NULL when i >= count. */
const struct mf_st_entry *mf_safetensors_at(const struct mf_safetensors *st, size_t i);
/* Tensor by name (hash lookup); NULL if absent. */
const struct mf_st_entry *mf_safetensors_find(const struct mf_safetensors *st, const char *name);
/* Value of a "__metadata__" key; NULL if absent. */
const char *mf_safetensors_meta(const struct mf_safetensors *st, const char *key);
size_t mf_safetensors_meta_count(const struct mf_safetensors *st);
/* i-th metadata pair in sorted key order; returns the key and sets *value, NULL when out of range. */
const char *mf_safetensors_meta_at(const struct mf_safetensors *st, size_t i, const char **value);
/* The path given to open (or the label given to parse). */
const char *mf_safetensors_path(const struct mf_safetensors *st);
/* Size of the data section in bytes. */
size_t mf_safetensors_data_size(const struct mf_safetensors *st);

/* Writer. Tensors are written in the order added; data pointers reference caller memory that must
 * stay valid until commit. Names must be unique, non-empty, valid UTF-8 and not "__metadata__". */
struct mf_st_writer;

enum mf_status mf_st_writer_create(const char *path, struct mf_st_writer **out, struct mf_err *err);
/* data may be NULL only when the tensor has no elements. ndim in [0, 8]. */
enum mf_status mf_st_writer_add(struct mf_st_writer *w, const char *name, enum mf_dtype dt, int ndim,
                                const int64_t *shape, const void *data, struct mf_err *err);
/* A tensor whose bytes are produced at commit, in order, ST_FILL_CHUNK (1 MiB, a multiple of every
 * dtype size) at a time: fill(ctx, dst, offset, n, err) writes bytes [offset, offset + n) into dst
 * and returns MF_OK, or an error (err set) that fails the commit, leaving nothing on disk. ctx must
 * stay valid until commit. So a derived checkpoint needs one chunk of memory, not a copy. */
typedef enum mf_status (*mf_st_fill_fn)(void *ctx, void *dst, size_t offset, size_t n, struct mf_err *err);
enum mf_status mf_st_writer_add_fill(struct mf_st_writer *w, const char *name, enum mf_dtype dt, int ndim,
                                     const int64_t *shape, mf_st_fill_fn fill, void *ctx, struct mf_err *err);
enum mf_status mf_st_writer_meta(struct mf_st_writer *w, const char *key, const char *value,
                                 struct mf_err *err);
/* Writes <dir>/.<name>.XXXXXX (O_EXCL), fsyncs, renames over path, fsyncs the directory. Frees w
 * in every case; on failure the temp file is removed and an existing file at path is untouched. */
enum mf_status mf_st_writer_commit(struct mf_st_writer *w, struct mf_err *err);
/* Frees w without writing anything (NULL is fine). */
void mf_st_writer_abort(struct mf_st_writer *w);

#ifdef __cplusplus
}
#endif
#endif
