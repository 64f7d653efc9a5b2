/*
 * tests/models/test_model_errors.c: mf_model_load on bad input, at the library level: each broken
 * checkpoint gives the documented status code, a message naming the file (or model directory) and
 * the tensor or field, and leaves *out NULL. Then an allocation-failure sweep: for n = 0, 1, ...
 * until the load succeeds, mf_alloc_fail_after(n) makes the (n+1)th allocation fail; every failing
 * load must return MF_ERR_NOMEM and release everything it took (checked with glibc's mallinfo2
 * where available; ASan/LSan and valgrind check the same in the sanitizer runs). glibc's per-thread
 * cache keeps freed chunks counted as in use, so main() re-executes the test once with
 * GLIBC_TUNABLES=glibc.malloc.tcache_count=0; without that (exec failed, ASan, valgrind) the
 * in-process leak check is skipped and only the status checks remain.
 *
 * Does not: test the forward passes (test_blip_golden.c), or CLI messages (tests/cli/errors.sh).
 * Broken checkpoints are made like tests/cli/errors.sh does: equal-length edits of the JSON header
 * of a copy of data/models/blip-tiny-hf/model.safetensors, so only one thing is wrong per case.
 * Reference: curl's torture tests (docs/tests/TEST-SUITE.md), sqlite's test_malloc.c.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#include <malloc.h>
#define HAVE_MALLINFO2 1
#endif

#include "core/common.h"
#include "multiflow/model.h"
#include "multiflow/safetensors.h"

#define HF_DIR "data/models/blip-tiny-hf"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static bool leak_check; /* set by main() when heap_in_use() is exact */

/* Bytes of the heap in use (0 where unknown, which disables the leak check). */
static size_t heap_in_use(void)
{
#ifdef HAVE_MALLINFO2
    if (leak_check) {
        struct mallinfo2 mi = mallinfo2();
        return mi.uordblks + mi.hblkhd;
    }
#endif
    return 0;
}

/* Temporary directories made by broken_hf, removed by the group teardown. */
static char tmp_dirs[64][1024];
static int n_tmp;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int remove_tmp_dirs(void **state)
{
    (void)state;
    for (int i = 0; i < n_tmp; i++)
        nftw(tmp_dirs[i], rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    n_tmp = 0;
    return 0;
}

static void copy_file(const char *from, const char *to)
{
    size_t len = 0;
    char *buf = mf_test_read_file(from, &len);
    if (!buf)
        fail_msg("cannot read %s", from);
    assert_int_equal(mf_test_write_file(to, buf, len), 0);
    free(buf);
}

/* Makes <tmp>/<name>/ with config.json, vocab.txt and a model.safetensors whose header has `from`
 * replaced by `to` (same length; `from` must occur in the header). Returns the directory. */
static const char *broken_hf(const char *name, const char *from, const char *to)
{
    static char dir[8][1024];
    static int k;
    char *d = dir[k++ % 8];
    char path[1200];
    const char *tmp = mf_test_tmpdir();
    assert_non_null(tmp);
    if (n_tmp < 64)
        snprintf(tmp_dirs[n_tmp++], sizeof tmp_dirs[0], "%s", tmp);
    snprintf(d, 1024, "%s/%s", tmp, name);
    assert_int_equal(mkdir(d, 0755), 0);
    snprintf(path, sizeof path, "%s/config.json", d);
    copy_file(mf_test_path(HF_DIR "/config.json"), path);
    snprintf(path, sizeof path, "%s/vocab.txt", d);
    copy_file(mf_test_path(HF_DIR "/vocab.txt"), path);

    size_t len = 0;
    char *buf = mf_test_read_file(mf_test_path(HF_DIR "/model.safetensors"), &len);
    assert_non_null(buf);
    assert_true(len > 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | (unsigned char)buf[i];
    assert_true(n <= len - 8);
    if (from) {
        assert_int_equal(strlen(from), strlen(to));
        char *hit = NULL;
        size_t fl = strlen(from);
        for (size_t i = 8; i + fl <= 8 + n; i++)
            if (memcmp(buf + i, from, fl) == 0) {
                hit = buf + i;
                break;
            }
        if (!hit)
            fail_msg("'%s' not found in the header of %s", from, HF_DIR "/model.safetensors");
        memcpy(hit, to, fl);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    assert_int_equal(mf_test_write_file(path, buf, len), 0);
    free(buf);
    return d;
}

/* Loads dir and expects status `want` with every needle in the message, and *out left NULL. */
static void expect_load_error(const char *dir, const struct mf_model_opts *opts, enum mf_status want,
                              const char *needle1, const char *needle2)
{
    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_model_opts o = opts ? *opts : mf_model_opts_default();
    enum mf_status st = mf_model_load(dir, &o, &m, &err);
    printf("  %s -> %d: %s\n", dir, (int)st, err.msg);
    if (st == MF_OK) {
        mf_model_free(m);
        fail_msg("%s: loaded, expected status %d", dir, (int)want);
    }
    assert_null(m);
    assert_int_equal(st, want);
    assert_int_equal(err.code, want);
    if (needle1 && !strstr(err.msg, needle1))
        fail_msg("message '%s' does not mention '%s'", err.msg, needle1);
    if (needle2 && !strstr(err.msg, needle2))
        fail_msg("message '%s' does not mention '%s'", err.msg, needle2);
}

static void test_sanity_fixture_loads(void **state)
{
    (void)state;
    /* The unmodified copy must load, or every error below would prove nothing. */
    const char *d = broken_hf("intact", NULL, NULL);
    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_model_opts o = mf_model_opts_default();
    if (mf_model_load(d, &o, &m, &err) != MF_OK)
        fail_msg("intact copy: %s", err.msg);
    assert_true(mf_model_get_info(m)->has_itm);
    mf_model_free(m);
}

static void test_container_errors(void **state)
{
    (void)state;
    const char *d;
    d = broken_hf("dtype", "\"itm_head.weight\":{\"dtype\":\"F32\"", "\"itm_head.weight\":{\"dtype\":\"F99\"");
    expect_load_error(d, NULL, MF_ERR_DTYPE, "model.safetensors", "itm_head.weight");
    d = broken_hf("offsets", "[933120,933128]", "[933120,999128]");
    expect_load_error(d, NULL, MF_ERR_RANGE, "model.safetensors", "itm_head.bias");
    d = broken_hf("json", "\"__metadata__\":", "\"__metadata__\" ");
    expect_load_error(d, NULL, MF_ERR_FORMAT, "model.safetensors", "JSON");

    /* Truncated to half: the data section ends before the last tensors. */
    char path[1200];
    d = broken_hf("trunc", NULL, NULL);
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    size_t len = 0;
    char *buf = mf_test_read_file(path, &len);
    assert_non_null(buf);
    assert_int_equal(mf_test_write_file(path, buf, len / 2), 0);
    free(buf);
    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_model_opts o = mf_model_opts_default();
    assert_int_not_equal(mf_model_load(d, &o, &m, &err), MF_OK);
    assert_null(m);
    assert_non_null(strstr(err.msg, "model.safetensors"));
}

static void test_architecture_errors(void **state)
{
    (void)state;
    const char *d;
    d = broken_hf("missing", "\"vision_model.encoder.layers.1.mlp.fc2.weight\"",
                  "\"vision_model.encoder.layers.1.mlp.fc2.weighs\"");
    expect_load_error(d, NULL, MF_ERR_MISSING, "vision_model.encoder.layers.1.mlp.fc2.weight", "missing");
    d = broken_hf("shape", "\"vision_model.encoder.layers.0.mlp.fc1.weight\":{\"dtype\":\"F32\",\"shape\":[128,64]",
                  "\"vision_model.encoder.layers.0.mlp.fc1.weight\":{\"dtype\":\"F32\",\"shape\":[64,128]");
    expect_load_error(d, NULL, MF_ERR_SHAPE, "vision_model.encoder.layers.0.mlp.fc1.weight", "[128,64]");
    d = broken_hf("int", "\"vision_model.encoder.layers.0.mlp.fc1.weight\":{\"dtype\":\"F32\"",
                  "\"vision_model.encoder.layers.0.mlp.fc1.weight\":{\"dtype\":\"I32\"");
    expect_load_error(d, NULL, MF_ERR_DTYPE, "vision_model.encoder.layers.0.mlp.fc1.weight", "I32");
    /* No vision patch embedding at all: not a BLIP checkpoint. */
    d = broken_hf("notblip", "\"vision_model.embeddings.patch_embedding.weight\"",
                  "\"vision_model.embeddings.patch_embedding.weighs\"");
    expect_load_error(d, NULL, MF_ERR_UNSUPPORTED, "not a BLIP checkpoint", NULL);

    struct mf_model_opts o = mf_model_opts_default();
    o.n_head_vision = 3; /* 64 is not divisible by 3 */
    expect_load_error(mf_test_path(HF_DIR), &o, MF_ERR_ARG, "64", "3 heads");
}

static void test_directory_errors(void **state)
{
    (void)state;
    char path[1200];
    const char *d = broken_hf("nocfg", NULL, NULL);
    snprintf(path, sizeof path, "%s/config.json", d);
    assert_int_equal(remove(path), 0);
    expect_load_error(d, NULL, MF_ERR_MISSING, path, NULL);

    d = broken_hf("badcfg", NULL, NULL);
    snprintf(path, sizeof path, "%s/config.json", d);
    assert_int_equal(mf_test_write_file(path, "{\"vision_config\": [", 19), 0);
    expect_load_error(d, NULL, MF_ERR_FORMAT, path, NULL);

    d = broken_hf("novocab", NULL, NULL);
    snprintf(path, sizeof path, "%s/vocab.txt", d);
    assert_int_equal(remove(path), 0);
    expect_load_error(d, NULL, MF_ERR_MISSING, path, NULL);

    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_model_opts o = mf_model_opts_default();
    snprintf(path, sizeof path, "%s/does-not-exist", d);
    assert_int_not_equal(mf_model_load(path, &o, &m, &err), MF_OK);
    assert_null(m);
    assert_non_null(strstr(err.msg, path));
}

/* For n = 0, 1, ...: the (n+1)th allocation fails; the load must fail with MF_ERR_NOMEM, leave *out
 * NULL and free everything, until n is large enough that it succeeds. */
static void sweep(const char *rel)
{
    const char *dir = mf_test_path(rel);
    struct mf_model_opts o = mf_model_opts_default();
    struct mf_err err = {0};
    struct mf_model *m = NULL;
    /* Warm-up: one-time allocations of libc (stdio, locale) must not count as leaks below. */
    if (mf_model_load(dir, &o, &m, &err) != MF_OK)
        fail_msg("%s: %s", dir, err.msg);
    mf_model_free(m);
    m = NULL;

    long n;
    int leaks = 0;
    for (n = 0; n < 100000; n++) {
        size_t before = heap_in_use();
        memset(&err, 0, sizeof err);
        mf_alloc_fail_after(n);
        enum mf_status st = mf_model_load(dir, &o, &m, &err);
        mf_alloc_fail_after(-1);
        if (st == MF_OK)
            break;
        if (st != MF_ERR_NOMEM)
            fail_msg("%s: allocation %ld failed: status %d (%s), expected MF_ERR_NOMEM", rel, n + 1, (int)st,
                     err.msg);
        if (m)
            fail_msg("%s: allocation %ld failed: *out set on error", rel, n + 1);
        size_t after = heap_in_use();
        if (after > before && leaks++ < 5)
            printf("  %s: allocation %ld failed: %zu bytes still in use\n", rel, n + 1, after - before);
    }
    assert_non_null(m);
    mf_model_free(m);
    printf("  %s: %ld failure points, all MF_ERR_NOMEM, %d leaking%s\n", rel, n, leaks,
           leak_check ? "" : " (heap leak check off: see the file comment)");
    assert_true(n > 0);
    assert_int_equal(leaks, 0);
}

static void test_alloc_sweep_hf(void **state)
{
    (void)state;
    sweep(HF_DIR);
}

static void test_alloc_sweep_orig(void **state)
{
    (void)state;
    sweep("data/models/blip-tiny");
}

static void test_alloc_sweep_sharded(void **state)
{
    (void)state;
    sweep("tests/golden/blip/hf-cap-f32");
}

static void test_alloc_sweep_bf16(void **state)
{
    (void)state;
    sweep("tests/golden/blip/orig-bf16"); /* bf16 -> f32 conversion block */
}

/* Session creation (pool, arenas) under the same sweep. */
static void test_alloc_sweep_session(void **state)
{
    (void)state;
    struct mf_model_opts o = mf_model_opts_default();
    struct mf_err err = {0};
    struct mf_model *m = NULL;
    if (mf_model_load(mf_test_path(HF_DIR), &o, &m, &err) != MF_OK)
        fail_msg("%s", err.msg);
    long n;
    struct mf_session *s = NULL;
    for (n = 0; n < 100000; n++) {
        mf_alloc_fail_after(n);
        enum mf_status st = mf_session_create(m, 2, &s, &err);
        mf_alloc_fail_after(-1);
        if (st == MF_OK)
            break;
        if (st != MF_ERR_NOMEM)
            fail_msg("session: allocation %ld failed: status %d (%s)", n + 1, (int)st, err.msg);
        assert_null(s);
    }
    assert_non_null(s);
    printf("  session: %ld failure points\n", n);
    mf_session_free(s);
    mf_model_free(m);
}

/* Turns the leak check on, re-executing once without glibc's tcache if needed (file comment). */
static void setup_leak_check(char **argv)
{
#if defined(HAVE_MALLINFO2) && !defined(UNDER_ASAN)
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "vgpreload")) /* valgrind replaces malloc and checks leaks itself */
        return;
    const char *tun = getenv("GLIBC_TUNABLES");
    if (tun && strstr(tun, "glibc.malloc.tcache_count=0")) {
        leak_check = true;
        return;
    }
    if (getenv("MF_TEST_REEXECED"))
        return;
    char buf[2048];
    snprintf(buf, sizeof buf, "%s%sglibc.malloc.tcache_count=0", tun ? tun : "", tun ? ":" : "");
    setenv("GLIBC_TUNABLES", buf, 1);
    setenv("MF_TEST_REEXECED", "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on without the heap leak check */
#else
    (void)argv;
#endif
}

int main(int argc, char **argv)
{
    (void)argc;
    setup_leak_check(argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sanity_fixture_loads),   cmocka_unit_test(test_container_errors),
        cmocka_unit_test(test_architecture_errors),    cmocka_unit_test(test_directory_errors),
        cmocka_unit_test(test_alloc_sweep_hf),         cmocka_unit_test(test_alloc_sweep_orig),
        cmocka_unit_test(test_alloc_sweep_sharded),    cmocka_unit_test(test_alloc_sweep_bf16),
        cmocka_unit_test(test_alloc_sweep_session),
    };
    return cmocka_run_group_tests(tests, NULL, remove_tmp_dirs);
}
