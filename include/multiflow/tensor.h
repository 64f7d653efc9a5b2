/*
 * multiflow/tensor.h: element types, contiguous tensor views, and exact f16/bf16 <-> f32 conversion.
 *
 *     struct mf_tensor t = { .dtype = MF_DTYPE_BF16, .ndim = 2, .shape = {768, 3072}, .data = p };
 *     float *f = malloc(mf_tensor_numel(&t) * sizeof *f);
 *     mf_convert_to_f32(f, t.data, t.dtype, mf_tensor_numel(&t));
 *
 * A tensor here is a view: it never owns its data. Thread safety: all functions are pure.
 */
#ifndef MF_TENSOR_H
#define MF_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

enum mf_dtype {
    MF_DTYPE_F32 = 0,
    MF_DTYPE_F16 = 1,
    MF_DTYPE_BF16 = 2,
    MF_DTYPE_F64 = 3,
    MF_DTYPE_I64 = 4,
    MF_DTYPE_I32 = 5,
    MF_DTYPE_I16 = 6,
    MF_DTYPE_I8 = 7,
    MF_DTYPE_U8 = 8,
    MF_DTYPE_BOOL = 9,
    MF_DTYPE_COUNT
};

#define MF_MAX_DIMS 8

struct mf_tensor {
    enum mf_dtype dtype;
    int ndim;
    int64_t shape[MF_MAX_DIMS];
    void *data; /* contiguous, row-major */
};

size_t mf_dtype_size(enum mf_dtype dt);
/* safetensors spelling: "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL". */
const char *mf_dtype_name(enum mf_dtype dt);
/* Returns true and sets *dt when name is a known dtype. */
bool mf_dtype_parse(const char *name, enum mf_dtype *dt);
bool mf_dtype_is_float(enum mf_dtype dt);

int64_t mf_tensor_numel(const struct mf_tensor *t);
/* Writes "[768,3072]" into buf (always NUL-terminated). */
void mf_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

float mf_f16_to_f32(uint16_t h);
uint16_t mf_f32_to_f16(float f);   /* round to nearest even */
float mf_bf16_to_f32(uint16_t b);
uint16_t mf_f32_to_bf16(float f);  /* round to nearest even, NaN kept quiet */

/* Converts n floating-point elements (F32, F16, BF16 or F64) to f32. src may be unaligned. */
void mf_convert_to_f32(float *dst, const void *src, enum mf_dtype dt, int64_t n);
/* Converts n f32 values to dt (F32, F16, BF16, F64). dst may be unaligned. */
void mf_convert_from_f32(void *dst, const float *src, enum mf_dtype dt, int64_t n);
/* Index of the first of n elements of a floating-point array (F32, F16, BF16, F64; src may be
 * unaligned) that is NaN or infinite, or that an F64 -> f32 conversion would make infinite; -1 when
 * every element is finite or dt is not a floating-point type. One vectorised pass over the bytes. */
int64_t mf_find_nonfinite(const void *src, enum mf_dtype dt, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
