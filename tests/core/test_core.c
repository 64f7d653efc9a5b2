/* Core: half conversions, arena, pool determinism, rng, allocation-failure hook. */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "core/arena.h"
#include "core/pool.h"
#include "core/rng.h"

static void test_half_roundtrip(void **state)
{
    (void)state;
    /* every f16 and bf16 bit pattern converts to f32 and back unchanged (NaNs stay NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = mf_f16_to_f32((uint16_t)h);
        if (isnan(f))
            assert_true(isnan(mf_f16_to_f32(mf_f32_to_f16(f))));
        else
            assert_int_equal(mf_f32_to_f16(f), h);
        float b = mf_bf16_to_f32((uint16_t)h);
        if (!isnan(b))
            assert_int_equal(mf_f32_to_bf16(b), h);
    }
    /* rounding: 1 + 2^-11 is a tie between 1 and 1+2^-10 -> even (1.0) */
    assert_int_equal(mf_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(mf_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    assert_int_equal(mf_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(mf_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(mf_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
}

static void test_arena(void **state)
{
    (void)state;
    struct mf_arena a;
    mf_arena_init(&a, 1024);
    for (int pass = 0; pass < 3; pass++) {
        char *p = mf_arena_alloc(&a, 100);
        char *q = mf_arena_alloc(&a, 5000); /* forces a second block on the first pass */
        assert_non_null(p);
        assert_non_null(q);
        assert_int_equal((uintptr_t)p % 64, 0);
        assert_int_equal((uintptr_t)q % 64, 0);
        memset(p, 1, 100);
        memset(q, 2, 5000);
        mf_arena_reset(&a);
    }
    assert_true(mf_arena_high_water(&a) >= 5100);
    mf_arena_free(&a);
}

/* The pattern the engine's reductions follow (models/train.c gradient norm): fixed blocks whose
 * grouping depends on n only, block sums added in block order afterwards. */
enum { SUM_BLOCK = 1000 };

struct sum_arg {
    const double *x;
    int64_t n;
    double *block; /* (ceil(n / SUM_BLOCK)) */
    int *seen;     /* (nth) how many times each worker ran */
};

static void sum_kernel(void *p, int ith, int nth)
{
    struct sum_arg *a = p;
    const int64_t nb = (a->n + SUM_BLOCK - 1) / SUM_BLOCK;
    int64_t b0, b1;
    mf_split_range(nb, ith, nth, &b0, &b1);
    for (int64_t b = b0; b < b1; b++) {
        double s = 0;
        for (int64_t i = b * SUM_BLOCK; i < MF_MIN(a->n, (b + 1) * SUM_BLOCK); i++)
            s += a->x[i];
        a->block[b] = s;
    }
    a->seen[ith]++;
}

static double pool_sum(struct mf_pool *pool, const double *x, int64_t n, int *seen)
{
    double block[(100000 + SUM_BLOCK - 1) / SUM_BLOCK];
    struct sum_arg a = {x, n, block, seen};
    mf_pool_run(pool, sum_kernel, &a);
    double s = 0;
    for (int64_t b = 0; b < (n + SUM_BLOCK - 1) / SUM_BLOCK; b++)
        s += block[b];
    return s;
}

/* Every worker runs each kernel exactly once, mf_split_range covers [0, n) exactly, and a
 * block-ordered reduction on 1..8 threads equals the serial result (no pool) bit for bit. */
static void test_pool(void **state)
{
    (void)state;
    enum { N = 100000 };
    static double x[N];
    struct mf_rng r;
    mf_rng_seed(&r, 7);
    for (int i = 0; i < N; i++)
        x[i] = mf_rng_normal(&r) * exp(4.0 * mf_rng_normal(&r)); /* wide range: order matters */
    int serial_seen[1] = {0};
    const double serial = pool_sum(NULL, x, N, serial_seen);
    assert_int_equal(serial_seen[0], 1);
    for (int nth = 1; nth <= 8; nth++) {
        struct mf_pool *pool = mf_pool_create(nth);
        assert_non_null(pool);
        assert_int_equal(mf_pool_size(pool), nth);
        int seen[8] = {0};
        for (int rep = 0; rep < 20; rep++) {
            double s = pool_sum(pool, x, N, seen);
            assert_memory_equal(&s, &serial, sizeof s);
        }
        for (int t = 0; t < nth; t++)
            assert_int_equal(seen[t], 20);
        int64_t covered = 0, prev_end = 0;
        for (int t = 0; t < nth; t++) {
            int64_t b, e;
            mf_split_range(N, t, nth, &b, &e);
            assert_int_equal(b, prev_end);
            covered += e - b;
            prev_end = e;
        }
        assert_int_equal(covered, N);
        mf_pool_free(pool);
    }
}

static void test_rng(void **state)
{
    (void)state;
    struct mf_rng a, b;
    mf_rng_seed(&a, 42);
    mf_rng_seed(&b, 42);
    double m = 0, v = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double x = mf_rng_normal(&a);
        assert_true(x == mf_rng_normal(&b));
        m += x;
        v += x * x;
    }
    m /= n;
    v = v / n - m * m;
    assert_true(fabs(m) < 0.01);
    assert_true(fabs(v - 1) < 0.02);
}

static void test_alloc_fail(void **state)
{
    (void)state;
    mf_alloc_fail_after(1);
    void *p = mf_malloc(10);
    void *q = mf_malloc(10);
    mf_alloc_fail_after(-1);
    assert_non_null(p);
    assert_null(q);
    mf_free(p);
}

static void test_status(void **state)
{
    (void)state;
    struct mf_err e = {0};
    assert_int_equal(mf_err_set(&e, MF_ERR_SHAPE, "tensor '%s' bad", "x"), MF_ERR_SHAPE);
    mf_err_prefix(&e, "model.safetensors");
    assert_string_equal(e.msg, "model.safetensors: tensor 'x' bad");
    assert_string_equal(mf_status_str(MF_ERR_NOMEM), "out of memory");
}

/* mf_find_nonfinite: every dtype, NaN / +inf / -inf at the first, last and block-boundary positions
 * and in the tail; finite extremes (max, denormals, -0) never flagged; F64 beyond the f32 range is. */
static void test_find_nonfinite(void **state)
{
    (void)state;
    enum { N = 2500 }; /* two full 1024-blocks and a tail */
    static const int64_t pos[] = {0, 1, 1023, 1024, 2047, 2048, 2499};
    static float f[N];
    static uint16_t h[N], bf[N];
    static double d[N];
    for (int i = 0; i < N; i++) {
        float v = i % 4 == 0 ? 3.4028235e38f : i % 4 == 1 ? -1e-45f : i % 4 == 2 ? -0.0f : 1.5f;
        f[i] = v;
        h[i] = mf_f32_to_f16(i % 2 ? 65504.0f : -6e-8f);
        bf[i] = i % 4 == 0 ? 0x7f7f : mf_f32_to_bf16(v); /* FLT_MAX rounds to inf in bf16 */
        d[i] = i % 2 ? 3.4e38 : -1e-300;
    }
    assert_int_equal(mf_find_nonfinite(f, MF_DTYPE_F32, N), -1);
    assert_int_equal(mf_find_nonfinite(h, MF_DTYPE_F16, N), -1);
    assert_int_equal(mf_find_nonfinite(bf, MF_DTYPE_BF16, N), -1);
    assert_int_equal(mf_find_nonfinite(d, MF_DTYPE_F64, N), -1);
    assert_int_equal(mf_find_nonfinite(f, MF_DTYPE_I32, N), -1);
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t k = 0; k < MF_ARRAY_LEN(pos); k++)
        for (size_t b = 0; b < 3; b++) {
            int64_t p = pos[k];
            float f0 = f[p];
            uint16_t h0 = h[p], bf0 = bf[p];
            double d0 = d[p];
            f[p] = bad[b];
            h[p] = mf_f32_to_f16(bad[b]);
            bf[p] = mf_f32_to_bf16(bad[b]);
            d[p] = (double)bad[b];
            assert_int_equal(mf_find_nonfinite(f, MF_DTYPE_F32, N), p);
            assert_int_equal(mf_find_nonfinite(h, MF_DTYPE_F16, N), p);
            assert_int_equal(mf_find_nonfinite(bf, MF_DTYPE_BF16, N), p);
            assert_int_equal(mf_find_nonfinite(d, MF_DTYPE_F64, N), p);
            assert_int_equal(mf_find_nonfinite(f, MF_DTYPE_F32, p), -1); /* before it */
            /* unaligned: one byte into a buffer */
            static unsigned char u[4 * N + 1];
            memcpy(u + 1, f, sizeof f);
            assert_int_equal(mf_find_nonfinite(u + 1, MF_DTYPE_F32, N), p);
            f[p] = f0;
            h[p] = h0;
            bf[p] = bf0;
            d[p] = d0;
        }
    d[7] = 1e300; /* finite in F64, inf once converted to f32 */
    assert_int_equal(mf_find_nonfinite(d, MF_DTYPE_F64, N), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_roundtrip), cmocka_unit_test(test_arena),
        cmocka_unit_test(test_pool),           cmocka_unit_test(test_rng),
        cmocka_unit_test(test_alloc_fail),     cmocka_unit_test(test_status),
        cmocka_unit_test(test_find_nonfinite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
