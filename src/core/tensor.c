/* dtypes, tensor views and exact half-precision conversion (include/multiflow/tensor.h).
 * f16/bf16 -> f32 is exact; f32 -> f16/bf16 rounds to nearest even, as PyTorch's .to() does. */
#include "multiflow/tensor.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtypes[MF_DTYPE_COUNT] = {
    [MF_DTYPE_F32] = {"F32", 4}, [MF_DTYPE_F16] = {"F16", 2}, [MF_DTYPE_BF16] = {"BF16", 2},
    [MF_DTYPE_F64] = {"F64", 8}, [MF_DTYPE_I64] = {"I64", 8}, [MF_DTYPE_I32] = {"I32", 4},
    [MF_DTYPE_I16] = {"I16", 2}, [MF_DTYPE_I8] = {"I8", 1},   [MF_DTYPE_U8] = {"U8", 1},
    [MF_DTYPE_BOOL] = {"BOOL", 1},
};

size_t mf_dtype_size(enum mf_dtype dt) { return (unsigned)dt < MF_DTYPE_COUNT ? dtypes[dt].size : 0; }

const char *mf_dtype_name(enum mf_dtype dt) { return (unsigned)dt < MF_DTYPE_COUNT ? dtypes[dt].name : "?"; }

bool mf_dtype_parse(const char *name, enum mf_dtype *dt)
{
    for (int i = 0; i < MF_DTYPE_COUNT; i++)
        if (strcmp(name, dtypes[i].name) == 0) {
            *dt = (enum mf_dtype)i;
            return true;
        }
    return false;
}

bool mf_dtype_is_float(enum mf_dtype dt)
{
    return dt == MF_DTYPE_F32 || dt == MF_DTYPE_F16 || dt == MF_DTYPE_BF16 || dt == MF_DTYPE_F64;
}

int64_t mf_tensor_numel(const struct mf_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

void mf_shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t used = 0;
    if (n == 0)
        return;
    buf[0] = 0;
    used += (size_t)snprintf(buf + used, n - used, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (used < n)
        snprintf(buf + used, n - used, "]");
}

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float mf_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * 5.9604644775390625e-08f;
        return u2f(f2u(v) | sign);
    }
    if (exp == 31)
        return u2f(sign | 0x7f800000u | (man << 13));
    return u2f(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t mf_f32_to_f16(float f)
{
    uint32_t u = f2u(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0));
    if (a >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        float v = u2f(a) * 16777216.0f; /* scale by 2^24; v in [0, 1024) */
        float r = nearbyintf(v);         /* default rounding mode: nearest even */
        return (uint16_t)(sign | (uint16_t)r);
    }
    uint32_t exp = (a >> 23) - 112, man = a & 0x7fffff;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

float mf_bf16_to_f32(uint16_t b) { return u2f((uint32_t)b << 16); }

uint16_t mf_f32_to_bf16(float f)
{
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

void mf_convert_to_f32(float *dst, const void *src, enum mf_dtype dt, int64_t n)
{
    const unsigned char *s = src;
    switch (dt) {
    case MF_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case MF_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, s + 2 * i, 2); dst[i] = mf_f16_to_f32(h); }
        break;
    case MF_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, s + 2 * i, 2); dst[i] = mf_bf16_to_f32(h); }
        break;
    case MF_DTYPE_F64:
        for (int64_t i = 0; i < n; i++) { double d; memcpy(&d, s + 8 * i, 8); dst[i] = (float)d; }
        break;
    default:
        memset(dst, 0, (size_t)n * 4);
        break;
    }
}

/* Non-finite = exponent bits all ones, so (u & EXP) + LOW carries into the sign bit exactly then
 * (LOW = the exponent's lowest bit). Full blocks of 1024 OR that sum together (add/and/or with a
 * constant trip count: the compiler vectorises it); only a flagged block or the tail is scanned
 * element by element for the position. */
#define NONFINITE_SCAN(T, EXP, LOW, p, n)                                                                         \
    do {                                                                                                          \
        const T top = (T)((EXP) + (LOW));                                                                         \
        for (int64_t i0 = 0; i0 < (n); i0 += 1024) {                                                              \
            const int64_t m = (n) - i0 < 1024 ? (n) - i0 : 1024;                                                  \
            if (m == 1024) {                                                                                      \
                T acc = 0;                                                                                        \
                for (int j = 0; j < 1024; j++) {                                                                  \
                    T u;                                                                                          \
                    memcpy(&u, (p) + (size_t)(i0 + j) * sizeof(T), sizeof(T));                                    \
                    acc |= (T)((u & (EXP)) + (LOW));                                                              \
                }                                                                                                 \
                if (!(acc & top & ~(T)(EXP)))                                                                     \
                    continue;                                                                                     \
            }                                                                                                     \
            for (int64_t j = 0; j < m; j++) {                                                                     \
                T u;                                                                                              \
                memcpy(&u, (p) + (size_t)(i0 + j) * sizeof(T), sizeof(T));                                        \
                if ((u & (EXP)) == (EXP))                                                                         \
                    return i0 + j;                                                                                \
            }                                                                                                     \
        }                                                                                                         \
    } while (0)

int64_t mf_find_nonfinite(const void *src, enum mf_dtype dt, int64_t n)
{
    const unsigned char *p = src;
    switch (dt) {
    case MF_DTYPE_F32: NONFINITE_SCAN(uint32_t, 0x7f800000u, 0x00800000u, p, n); break;
    case MF_DTYPE_F16: NONFINITE_SCAN(uint16_t, 0x7c00u, 0x0400u, p, n); break;
    case MF_DTYPE_BF16: NONFINITE_SCAN(uint16_t, 0x7f80u, 0x0080u, p, n); break;
    case MF_DTYPE_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * (size_t)i, 8);
            if (!(fabs(d) <= (double)FLT_MAX)) /* NaN, inf, or inf once converted */
                return i;
        }
        break;
    default: break;
    }
    return -1;
}

void mf_convert_from_f32(void *dst, const float *src, enum mf_dtype dt, int64_t n)
{
    unsigned char *d = dst;
    switch (dt) {
    case MF_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case MF_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) { uint16_t h = mf_f32_to_f16(src[i]); memcpy(d + 2 * i, &h, 2); }
        break;
    case MF_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) { uint16_t h = mf_f32_to_bf16(src[i]); memcpy(d + 2 * i, &h, 2); }
        break;
    case MF_DTYPE_F64:
        for (int64_t i = 0; i < n; i++) { double v = src[i]; memcpy(d + 8 * i, &v, 8); }
        break;
    default: break;
    }
}
