/* Checkpoints: single file, directory with model.safetensors, directory of shards, sharded with an
 * index json; error cases (missing shard, tensor in the wrong shard, unlisted tensor, duplicate
 * across shards, bad index) and an allocation-failure sweep. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "io/fs.h"
#include "multiflow/checkpoint.h"

static float payload[64];

/* Writes dir/file with tensors names[0..n), each F32 [2,2]. */
static void write_shard(const char *dir, const char *file, const char *const *names, int n)
{
    char path[4096];
    struct mf_st_writer *w = NULL;
    struct mf_err err = {0};
    snprintf(path, sizeof path, "%s/%s", dir, file);
    assert_int_equal(mf_st_writer_create(path, &w, &err), MF_OK);
    for (int i = 0; i < n; i++)
        assert_int_equal(mf_st_writer_add(w, names[i], MF_DTYPE_F32, 2, (int64_t[]){2, 2}, payload + 4 * i, &err),
                         MF_OK);
    assert_int_equal(mf_st_writer_commit(w, &err), MF_OK);
}

static void write_text(const char *dir, const char *file, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    assert_int_equal(mf_test_write_file(path, text, strlen(text)), 0);
}

static const char *const shard1[] = {"b.weight", "a.weight"};
static const char *const shard2[] = {"c.weight"};

static void make_sharded(const char *dir)
{
    write_shard(dir, "model-00001-of-00002.safetensors", shard1, 2);
    write_shard(dir, "model-00002-of-00002.safetensors", shard2, 1);
    write_text(dir, "config.json", "{}");
}

static void test_indexed(void **state)
{
    (void)state;
    const char *dir = mf_test_tmpdir();
    make_sharded(dir);
    write_text(dir, "model.safetensors.index.json",
               "{\"metadata\": {\"total_size\": 48}, \"weight_map\": {"
               "\"a.weight\": \"model-00001-of-00002.safetensors\","
               "\"c.weight\": \"model-00002-of-00002.safetensors\","
               "\"b.weight\": \"model-00001-of-00002.safetensors\"}}");
    struct mf_checkpoint *ck = NULL;
    struct mf_err err = {0};
    char withslash[4096];
    snprintf(withslash, sizeof withslash, "%s/", dir);
    assert_int_equal(mf_checkpoint_open(withslash, &ck, &err), MF_OK);
    assert_true(mf_checkpoint_is_indexed(ck));
    assert_string_equal(mf_checkpoint_dir(ck), dir);
    assert_int_equal(mf_checkpoint_shard_count(ck), 2);
    assert_int_equal(mf_checkpoint_count(ck), 3);
    /* shard order, then offset order (writer order) */
    const char *want[] = {"b.weight", "a.weight", "c.weight"};
    size_t want_shard[] = {0, 0, 1};
    for (size_t i = 0; i < 3; i++) {
        size_t sh = 99;
        const struct mf_st_entry *e = mf_checkpoint_at(ck, i, &sh);
        assert_non_null(e);
        assert_string_equal(e->name, want[i]);
        assert_int_equal(sh, want_shard[i]);
        assert_ptr_equal(mf_checkpoint_find(ck, want[i], &sh), e);
        assert_int_equal(sh, want_shard[i]);
    }
    assert_null(mf_checkpoint_at(ck, 3, NULL));
    assert_null(mf_checkpoint_find(ck, "zzz", NULL));
    size_t sh;
    mf_checkpoint_find(ck, "c.weight", &sh);
    assert_non_null(strstr(mf_safetensors_path(mf_checkpoint_shard(ck, sh)), "model-00002-of-00002"));
    assert_memory_equal(mf_checkpoint_find(ck, "c.weight", NULL)->data, payload, 16);
    mf_checkpoint_close(ck);
    mf_fs_remove_tree(dir, NULL);
}

struct index_case {
    const char *what;
    const char *index;
    enum mf_status code;
    const char *needle1, *needle2;
};

static void test_index_errors(void **state)
{
    (void)state;
    static const struct index_case cases[] = {
        {"missing shard",
         "{\"weight_map\": {\"a.weight\": \"model-00001-of-00002.safetensors\","
         "\"b.weight\": \"model-00001-of-00002.safetensors\","
         "\"c.weight\": \"model-00003-of-00003.safetensors\"}}",
         MF_ERR_MISSING, "shard 'model-00003-of-00003.safetensors' does not exist", NULL},
        {"tensor in wrong shard",
         "{\"weight_map\": {\"a.weight\": \"model-00002-of-00002.safetensors\","
         "\"b.weight\": \"model-00001-of-00002.safetensors\","
         "\"c.weight\": \"model-00002-of-00002.safetensors\"}}",
         MF_ERR_FORMAT, "tensor 'a.weight' is listed in 'model-00002-of-00002.safetensors'",
         "is in 'model-00001-of-00002.safetensors'"},
        {"tensor absent",
         "{\"weight_map\": {\"a.weight\": \"model-00001-of-00002.safetensors\","
         "\"b.weight\": \"model-00001-of-00002.safetensors\","
         "\"x.weight\": \"model-00002-of-00002.safetensors\","
         "\"c.weight\": \"model-00002-of-00002.safetensors\"}}",
         MF_ERR_MISSING, "'x.weight' (in 'model-00002-of-00002.safetensors')", "no shard holds"},
        {"two tensors absent: both named",
         "{\"weight_map\": {\"a.weight\": \"model-00001-of-00002.safetensors\","
         "\"b.weight\": \"model-00001-of-00002.safetensors\","
         "\"x.weight\": \"model-00002-of-00002.safetensors\","
         "\"y.bias\": \"model-00001-of-00002.safetensors\","
         "\"c.weight\": \"model-00002-of-00002.safetensors\"}}",
         MF_ERR_MISSING, "'x.weight' (in 'model-00002-of-00002.safetensors')",
         "'y.bias' (in 'model-00001-of-00002.safetensors')"},
        {"unlisted tensor",
         "{\"weight_map\": {\"a.weight\": \"model-00001-of-00002.safetensors\","
         "\"c.weight\": \"model-00002-of-00002.safetensors\"}}",
         MF_ERR_FORMAT, "'b.weight'", "does not list"},
        {"path in shard name", "{\"weight_map\": {\"a.weight\": \"../x.safetensors\"}}", MF_ERR_FORMAT,
         "'a.weight'", "'../x.safetensors'"},
        {"shard name not a string", "{\"weight_map\": {\"a.weight\": 3}}", MF_ERR_FORMAT, "'a.weight'", NULL},
        {"no weight_map", "{\"metadata\": {}}", MF_ERR_FORMAT, "weight_map", NULL},
        {"empty weight_map", "{\"weight_map\": {}}", MF_ERR_FORMAT, "empty", NULL},
        {"not JSON", "{\"weight_map\": ", MF_ERR_FORMAT, "not valid JSON", NULL},
        {"duplicate key",
         "{\"weight_map\": {\"a.weight\": \"model-00001-of-00002.safetensors\","
         "\"a.weight\": \"model-00001-of-00002.safetensors\"}}",
         MF_ERR_FORMAT, "duplicate", NULL},
    };
    const char *dir = mf_test_tmpdir();
    make_sharded(dir);
    for (size_t i = 0; i < MF_ARRAY_LEN(cases); i++) {
        write_text(dir, "model.safetensors.index.json", cases[i].index);
        struct mf_checkpoint *ck = (struct mf_checkpoint *)1;
        struct mf_err err = {0};
        enum mf_status s = mf_checkpoint_open(dir, &ck, &err);
        printf("  %-24s -> %s\n", cases[i].what, err.msg);
        assert_int_equal(s, cases[i].code);
        assert_null(ck);
        assert_non_null(strstr(err.msg, "model.safetensors.index.json"));
        assert_non_null(strstr(err.msg, cases[i].needle1));
        if (cases[i].needle2)
            assert_non_null(strstr(err.msg, cases[i].needle2));
    }
    mf_fs_remove_tree(dir, NULL);
}

static void test_unindexed(void **state)
{
    (void)state;
    const char *dir = mf_test_tmpdir();
    struct mf_checkpoint *ck = NULL;
    struct mf_err err = {0};
    /* empty directory */
    assert_int_equal(mf_checkpoint_open(dir, &ck, &err), MF_ERR_MISSING);
    assert_non_null(strstr(err.msg, "no *.safetensors"));
    /* all shards, sorted; hidden and other files ignored */
    make_sharded(dir);
    write_text(dir, ".hidden.safetensors", "garbage");
    write_text(dir, "vocab.txt", "[PAD]\n");
    assert_int_equal(mf_checkpoint_open(dir, &ck, &err), MF_OK);
    assert_false(mf_checkpoint_is_indexed(ck));
    assert_int_equal(mf_checkpoint_shard_count(ck), 2);
    assert_int_equal(mf_checkpoint_count(ck), 3);
    assert_string_equal(mf_checkpoint_at(ck, 2, NULL)->name, "c.weight");
    mf_checkpoint_close(ck);
    /* a duplicate name across shards names both files */
    static const char *const dup[] = {"z", "a.weight"};
    write_shard(dir, "extra.safetensors", dup, 2);
    assert_int_equal(mf_checkpoint_open(dir, &ck, &err), MF_ERR_FORMAT);
    printf("  %s\n", err.msg);
    assert_non_null(strstr(err.msg, "'a.weight'"));
    assert_non_null(strstr(err.msg, "extra.safetensors"));
    assert_non_null(strstr(err.msg, "model-00001-of-00002.safetensors"));
    /* a broken shard's message names the shard */
    write_text(dir, "extra.safetensors", "\x01\0\0\0\0\0\0\0{");
    assert_int_equal(mf_checkpoint_open(dir, &ck, &err), MF_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "extra.safetensors"));
    /* model.safetensors present: used alone (a masks file beside it is not merged in) */
    static const char *const model[] = {"a.weight", "q"};
    write_shard(dir, "model.safetensors", model, 2);
    assert_int_equal(mf_checkpoint_open(dir, &ck, &err), MF_OK);
    assert_int_equal(mf_checkpoint_shard_count(ck), 1);
    assert_int_equal(mf_checkpoint_count(ck), 2);
    assert_non_null(mf_checkpoint_find(ck, "q", NULL));
    mf_checkpoint_close(ck);
    /* a single file */
    char path[4096];
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    assert_int_equal(mf_checkpoint_open(path, &ck, &err), MF_OK);
    assert_int_equal(mf_checkpoint_count(ck), 1);
    assert_string_equal(mf_checkpoint_dir(ck), dir);
    mf_checkpoint_close(ck);
    /* nothing there */
    snprintf(path, sizeof path, "%s/nope", dir);
    assert_int_equal(mf_checkpoint_open(path, &ck, &err), MF_ERR_MISSING);
    assert_non_null(strstr(err.msg, "nope"));
    mf_fs_remove_tree(dir, NULL);
}

static void test_alloc_sweep(void **state)
{
    (void)state;
    const char *dir = mf_test_tmpdir();
    make_sharded(dir);
    write_text(dir, "model.safetensors.index.json",
               "{\"weight_map\": {\"a.weight\": \"model-00001-of-00002.safetensors\","
               "\"c.weight\": \"model-00002-of-00002.safetensors\","
               "\"b.weight\": \"model-00001-of-00002.safetensors\"}}");
    long n;
    for (n = 0;; n++) {
        struct mf_checkpoint *ck = (struct mf_checkpoint *)1;
        struct mf_err err = {0};
        mf_alloc_fail_after(n);
        enum mf_status s = mf_checkpoint_open(dir, &ck, &err);
        mf_alloc_fail_after(-1);
        if (s == MF_OK) {
            assert_int_equal(mf_checkpoint_count(ck), 3);
            mf_checkpoint_close(ck);
            break;
        }
        assert_int_equal(s, MF_ERR_NOMEM);
        assert_null(ck);
    }
    assert_true(n > 10);
    mf_fs_remove_tree(dir, NULL);
}

int main(void)
{
    for (int i = 0; i < 64; i++)
        payload[i] = (float)i;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_indexed),
        cmocka_unit_test(test_index_errors),
        cmocka_unit_test(test_unindexed),
        cmocka_unit_test(test_alloc_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
