/* prune/select.c: exact-k radix selection against hand-computed cases and a brute-force sort, tie rule,
 * -0 == +0, thread-count invariance, NaN/inf errors, argument checks. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"
#include "core/rng.h"
#include "multiflow/prune.h"
#include "prune/bracket.h"

static void test_hand(void **state)
{
    (void)state;
    /* lowest: 0 (pos 4) and -0 (pos 5) tie at the bottom, then 1 at pos 1 before 1 at pos 3 */
    const float x[7] = {3, 1, 2, 1, 0.0f, -0.0f, 5};
    const float *xs[1] = {x};
    int64_t len[1] = {7};
    uint8_t m[7];
    uint8_t *ms[1] = {m};
    struct mf_err err = {0};
    static const uint8_t want[8][7] = {
        {1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 0, 1, 1}, {1, 1, 1, 1, 0, 0, 1}, {1, 0, 1, 1, 0, 0, 1},
        {1, 0, 1, 0, 0, 0, 1}, {1, 0, 0, 0, 0, 0, 1}, {0, 0, 0, 0, 0, 0, 1}, {0, 0, 0, 0, 0, 0, 0},
    };
    for (int64_t k = 0; k <= 7; k++) {
        assert_int_equal(mf_select_lowest(NULL, 1, xs, len, NULL, k, ms, &err), MF_OK);
        assert_memory_equal(m, want[k], 7);
        int64_t c = -1;
        assert_int_equal(mf_select_count(NULL, 1, xs, len, NULL, k, &c, &err), MF_OK);
        assert_int_equal(c, k);
    }
    /* negatives, denormals, huge values; ties across arrays go to the lower array first */
    const float a[3] = {-1e30f, 1e-45f, 7};
    const float b[4] = {-3, 7, -1e30f, 0x1p-149f};
    const float *ab[2] = {a, b};
    int64_t lab[2] = {3, 4};
    uint8_t ma[3], mb[4];
    uint8_t *mab[2] = {ma, mb};
    assert_int_equal(mf_select_lowest(NULL, 2, ab, lab, NULL, 1, mab, &err), MF_OK);
    assert_memory_equal(ma, ((uint8_t[]){0, 1, 1}), 3);
    assert_memory_equal(mb, ((uint8_t[]){1, 1, 1, 1}), 4);
    assert_int_equal(mf_select_lowest(NULL, 2, ab, lab, NULL, 4, mab, &err), MF_OK);
    assert_memory_equal(ma, ((uint8_t[]){0, 0, 1}), 3); /* 1e-45f rounds to the denormal 2^-149 */
    assert_memory_equal(mb, ((uint8_t[]){0, 1, 0, 1}), 4);
    assert_int_equal(mf_select_lowest(NULL, 2, ab, lab, NULL, 6, mab, &err), MF_OK);
    assert_memory_equal(ma, ((uint8_t[]){0, 0, 0}), 3);
    assert_memory_equal(mb, ((uint8_t[]){0, 1, 0, 0}), 4);
    /* empty arrays in the scope */
    const float *e3[3] = {NULL, x, NULL};
    int64_t le3[3] = {0, 7, 0};
    uint8_t *me3[3] = {NULL, m, NULL};
    assert_int_equal(mf_select_lowest(NULL, 3, e3, le3, NULL, 3, me3, &err), MF_OK);
    assert_memory_equal(m, want[3], 7);
}

struct item {
    float v;
    int64_t pos;
};

static int cmp_item(const void *pa, const void *pb)
{
    const struct item *a = pa, *b = pb;
    if (a->v < b->v)
        return -1;
    if (a->v > b->v)
        return 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

/* brute force: sort (value, position); -0 == +0 by float comparison */
static void brute(size_t na, const float *const *x, const int64_t *len, int64_t k, uint8_t *const *mask)
{
    int64_t total = 0;
    for (size_t a = 0; a < na; a++)
        total += len[a];
    struct item *it = malloc((size_t)total * sizeof *it);
    int64_t p = 0;
    for (size_t a = 0; a < na; a++)
        for (int64_t j = 0; j < len[a]; j++, p++) {
            it[p].v = x[a][j];
            it[p].pos = p;
            mask[a][j] = 1;
        }
    qsort(it, (size_t)total, sizeof *it, cmp_item);
    for (int64_t q = 0; q < k; q++) {
        int64_t pos = it[q].pos;
        size_t a = 0;
        while (pos >= len[a]) {
            pos -= len[a];
            a++;
        }
        mask[a][pos] = 0;
    }
    free(it);
}

static void test_brute_force(void **state)
{
    (void)state;
    struct mf_rng r;
    mf_rng_seed(&r, 42);
    enum { NA = 5 };
    /* above bracket.c's small-scope size, so that its sampled brackets run */
    int64_t len[NA] = {1000, 0, 23333, 17, 12500};
    float *x[NA];
    uint8_t *m[NA], *w[NA];
    struct mf_err err = {0};
    struct mf_pool *pools[4];
    for (int t = 0; t < 4; t++)
        pools[t] = mf_pool_create(t + 1);
    for (int a = 0; a < NA; a++) {
        x[a] = malloc((size_t)(len[a] + 1) * sizeof(float));
        m[a] = malloc((size_t)(len[a] + 1));
        w[a] = malloc((size_t)(len[a] + 1));
    }
    int64_t total = 0;
    for (int a = 0; a < NA; a++)
        total += len[a];
    for (int trial = 0; trial < 3; trial++) {
        for (int a = 0; a < NA; a++)
            for (int64_t j = 0; j < len[a]; j++) {
                double g = mf_rng_normal(&r);
                /* trial 0: continuous; 1: heavily quantised (many ties, +-0); 2: all equal */
                x[a][j] = trial == 0 ? (float)g : trial == 1 ? (float)(round(g * 2) / 2) : 1.5f;
                if (trial == 1 && x[a][j] == 0 && (j & 1))
                    x[a][j] = -0.0f;
            }
        int64_t ks[6] = {0, 1, total / 3, total / 2, total - 1, total};
        for (int ki = 0; ki < 6; ki++) {
            brute(NA, (const float *const *)x, len, ks[ki], w);
            /* bracket path, radix passes only, zero-margin brackets (misses, full lists) */
            for (int t = 0; t < 12; t++) {
                mf_brk_set_mode(t / 4);
                assert_int_equal(
                    mf_select_lowest(pools[t % 4], NA, (const float *const *)x, len, NULL, ks[ki], m, &err), MF_OK);
                int64_t cnt[NA];
                assert_int_equal(
                    mf_select_count(pools[t % 4], NA, (const float *const *)x, len, NULL, ks[ki], cnt, &err), MF_OK);
                for (int a = 0; a < NA; a++) {
                    assert_memory_equal(m[a], w[a], (size_t)len[a]);
                    int64_t z = 0;
                    for (int64_t j = 0; j < len[a]; j++)
                        z += m[a][j] == 0;
                    assert_int_equal(cnt[a], z);
                }
            }
            mf_brk_set_mode(0);
        }
    }
    for (int a = 0; a < NA; a++) {
        free(x[a]);
        free(m[a]);
        free(w[a]);
    }
    for (int t = 0; t < 4; t++)
        mf_pool_free(pools[t]);
}

static void test_errors(void **state)
{
    (void)state;
    float x[4] = {1, 2, NAN, 3};
    float y[2] = {INFINITY, 0};
    const float *xs[2] = {y, x};
    int64_t len[2] = {2, 4};
    const char *names[2] = {"a.weight", "b.weight"};
    uint8_t m0[2], m1[4];
    uint8_t *ms[2] = {m0, m1};
    struct mf_err err = {0};
    struct mf_pool *pool = mf_pool_create(3);
    /* the lowest bad position is reported, with its tensor name */
    assert_int_equal(mf_select_lowest(pool, 2, xs, len, names, 1, ms, &err), MF_ERR_NUMERIC);
    assert_non_null(strstr(err.msg, "'a.weight'"));
    y[0] = 1;
    assert_int_equal(mf_select_lowest(pool, 2, xs, len, names, 0, ms, &err), MF_ERR_NUMERIC);
    assert_non_null(strstr(err.msg, "'b.weight'"));
    assert_non_null(strstr(err.msg, "element 2"));
    x[2] = 0;
    assert_int_equal(mf_select_lowest(pool, 2, xs, len, names, 7, ms, &err), MF_ERR_ARG);
    assert_non_null(strstr(err.msg, "k = 7"));
    assert_int_equal(mf_select_lowest(pool, 2, xs, len, names, -1, ms, &err), MF_ERR_ARG);
    int64_t bad_len[2] = {2, -4};
    assert_int_equal(mf_select_lowest(pool, 2, xs, bad_len, names, 1, ms, &err), MF_ERR_ARG);
    assert_int_equal(mf_select_lowest(pool, 2, xs, len, names, 6, ms, &err), MF_OK);
    mf_pool_free(pool);
}

static void test_alloc_failure(void **state)
{
    (void)state;
    float x[3] = {3, 2, 1};
    const float *xs[1] = {x};
    int64_t len[1] = {3};
    uint8_t m[3];
    uint8_t *ms[1] = {m};
    struct mf_err err = {0};
    for (long n = 0; n < 8; n++) {
        mf_alloc_fail_after(n);
        enum mf_status rc = mf_select_lowest(NULL, 1, xs, len, NULL, 1, ms, &err);
        mf_alloc_fail_after(-1);
        if (rc == MF_OK) {
            assert_memory_equal(m, ((uint8_t[]){1, 1, 0}), 3);
            return;
        }
        assert_int_equal(rc, MF_ERR_NOMEM);
    }
    fail_msg("select never succeeded");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand),
        cmocka_unit_test(test_brute_force),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
