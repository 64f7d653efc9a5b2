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

struct sum_arg {
    const double *x;
    int64_t n;
    double partial[16];
};

static void sum_kernel(void *p, int ith, int nth)
{
    struct sum_arg *a = p;
    int64_t b, e;
    mf_split_range(a->n, ith, nth, &b, &e);
    double s = 0;
    for (int64_t i = b; i < e; i++)
        s += a->x[i];
    a->partial[ith] = s;
}

static void test_pool(void **state)
{
    (void)state;
    enum { N = 100000 };
    static double x[N];
    struct mf_rng r;
    mf_rng_seed(&r, 7);
    for (int i = 0; i < N; i++)
        x[i] = mf_rng_normal(&r);
    for (int nth = 1; nth <= 4; nth++) {
        struct mf_pool *pool = mf_pool_create(nth);
        assert_non_null(pool);
        double first = 0;
        for (int rep = 0; rep < 50; rep++) {
            struct sum_arg a = {.x = x, .n = N};
            mf_pool_run(pool, sum_kernel, &a);
            double s = 0;
            for (int t = 0; t < nth; t++)
                s += a.partial[t];
            if (rep == 0)
                first = s;
            assert_memory_equal(&s, &first, sizeof s); /* same bits every time */
        }
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_roundtrip), cmocka_unit_test(test_arena),
        cmocka_unit_test(test_pool),           cmocka_unit_test(test_rng),
        cmocka_unit_test(test_alloc_fail),     cmocka_unit_test(test_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
