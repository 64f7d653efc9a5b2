/* io/annotations: JSON array and JSON Lines annotation files, image numbering, --pairs, batching,
 * and the error messages for bad records. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "io/annotations.h"

static enum mf_status parse(const char *s, const char *root, struct mf_annotations **a,
                            struct mf_err *err)
{
    return mf_annotations_parse(s, strlen(s), "ann.jsonl", root, a, err);
}

static void test_jsonl_file(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_annotations *a = NULL;
    enum mf_status st = mf_annotations_load(mf_test_path("tests/data/annotations_small.jsonl"),
                                            "/data/img/", &a, &err);
    if (st != MF_OK)
        fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(st, MF_OK);
    assert_true(a->jsonl);
    assert_int_equal(a->n_pairs, 5);
    assert_int_equal(a->n_images, 3);
    const char *caps[5] = {"A dog on a beach.", "Two cats.", "A pair of cats sleeping.",
                           "The same dog, again.", "Caf\xc3\xa9 au lait"};
    const int64_t idx[5] = {0, 1, 1, 0, 2};
    const int64_t line[5] = {1, 3, 3, 5, 6};
    for (int i = 0; i < 5; i++) {
        assert_string_equal(a->caption[i], caps[i]);
        assert_int_equal(a->image_index[i], idx[i]);
        assert_int_equal(a->record[i], line[i]);
        assert_ptr_equal(a->image_path[i], a->images[idx[i]]);
    }
    assert_string_equal(a->images[0], "/data/img/a/1.jpg");
    assert_string_equal(a->images[1], "/data/img/a/2.jpg");
    assert_string_equal(a->images[2], "/abs/3.png"); /* absolute: as is */

    /* batching: 5 pairs in batches of 2 -> 2, 2, 1 */
    int64_t first = -1, count = -1;
    assert_int_equal(mf_annotations_n_batches(a, 2), 3);
    assert_int_equal(mf_annotations_batch(a, 2, 2, &first, &count, &err), MF_OK);
    assert_int_equal(first, 4);
    assert_int_equal(count, 1);
    assert_int_equal(mf_annotations_batch(a, 2, 3, &first, &count, &err), MF_ERR_RANGE);
    assert_int_equal(mf_annotations_n_batches(a, 0), 0);

    /* --pairs 2: the third image is no longer used */
    assert_int_equal(mf_annotations_truncate(a, 0, &err), MF_ERR_ARG);
    assert_int_equal(mf_annotations_truncate(a, 9, &err), MF_OK);
    assert_int_equal(a->n_pairs, 5);
    assert_int_equal(mf_annotations_truncate(a, 4, &err), MF_OK);
    assert_int_equal(a->n_images, 2);
    assert_int_equal(mf_annotations_truncate(a, 1, &err), MF_OK);
    assert_int_equal(a->n_pairs, 1);
    assert_int_equal(a->n_images, 1);
    assert_string_equal(a->image_path[0], "/data/img/a/1.jpg");
    mf_annotations_free(a);
}

static void test_array_and_root(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_annotations *a = NULL;
    /* BOM, leading whitespace, no root: paths as written */
    const char *s = "\xef\xbb\xbf \n[{\"image\": \"x.png\", \"caption\": [\"one\", \"two\"]},\n"
                    " {\"caption\": \"three\", \"image\": \"y.png\"}]\n";
    assert_int_equal(mf_annotations_parse(s, strlen(s), "ann.json", NULL, &a, &err), MF_OK);
    assert_false(a->jsonl);
    assert_int_equal(a->n_pairs, 3);
    assert_int_equal(a->n_images, 2);
    assert_string_equal(a->image_path[2], "y.png");
    assert_int_equal(a->record[2], 2);
    mf_annotations_free(a);
    assert_int_equal(mf_annotations_parse(s, strlen(s), "ann.json", "root", &a, &err), MF_OK);
    assert_string_equal(a->image_path[0], "root/x.png");
    mf_annotations_free(a);

    /* the bundled shapes set reads as 64 images x 2 captions */
    char root[4096];
    snprintf(root, sizeof root, "%s", mf_test_path("data/shapes"));
    assert_int_equal(mf_annotations_load(mf_test_path("data/shapes/annotations.json"), root, &a,
                                         &err), MF_OK);
    assert_int_equal(a->n_pairs, 128);
    assert_int_equal(a->n_images, 64);
    assert_int_equal(a->image_index[127], 63);
    assert_non_null(strstr(a->image_path[0], "data/shapes/images/0001.png"));
    mf_annotations_free(a);
}

struct bad_case {
    const char *text;
    enum mf_status code;
    const char *msg;
};

static void test_errors(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"", MF_ERR_FORMAT, "ann.jsonl: no records (the file is empty)"},
        {" \n\n", MF_ERR_FORMAT, "ann.jsonl: no records (the file is empty)"},
        {"[]", MF_ERR_FORMAT, "ann.jsonl: no records"},
        {"hello", MF_ERR_FORMAT,
         "ann.jsonl: expected a JSON array ('[') or JSON Lines ('{' on each line), found byte "
         "0x68 at offset 0"},
        {"{\"image\":\"a\",\"caption\":\"c\"}\n\n{\"image\":\"a\",\"caption\":\"c\"}\n"
         "{\"image\":\"a\",\"caption\":\"c\"}\n\n\n{\"image\":\"a\",\"caption\":3}\n",
         MF_ERR_FORMAT, "ann.jsonl: line 7: field 'caption' must be a string or a list of strings"},
        {"{\"image\":\"a\",\"caption\":[\"x\", 2]}", MF_ERR_FORMAT,
         "ann.jsonl: line 1: field 'caption' must be a string or a list of strings (item 2 is "
         "not a string)"},
        {"{\"image\":\"a\",\"caption\":[]}", MF_ERR_FORMAT,
         "ann.jsonl: line 1: field 'caption' is an empty list"},
        {"{\"image\":\"a\",\"caption\":\"\"}", MF_ERR_FORMAT,
         "ann.jsonl: line 1: field 'caption' is empty"},
        {"{\"image\":\"a\",\"caption\":[\"ok\",\"\"]}", MF_ERR_FORMAT,
         "ann.jsonl: line 1: caption 2 is empty"},
        {"{\"image\":\"a\"}", MF_ERR_MISSING, "ann.jsonl: line 1: missing field 'caption'"},
        {"{\"caption\":\"a\"}", MF_ERR_MISSING, "ann.jsonl: line 1: missing field 'image'"},
        {"{\"image\":5,\"caption\":\"a\"}", MF_ERR_FORMAT,
         "ann.jsonl: line 1: field 'image' must be a string"},
        {"{\"image\":\"\",\"caption\":\"a\"}", MF_ERR_FORMAT,
         "ann.jsonl: line 1: field 'image' is empty"},
        {"[{\"image\":\"a\",\"caption\":\"a\"}, 3]", MF_ERR_FORMAT,
         "ann.jsonl: record 2: expected an object with 'image' and 'caption'"},
        {"{\"image\":\"a\",\"caption\":\"a\"}\n[1]", MF_ERR_FORMAT,
         "ann.jsonl: line 2: expected an object with 'image' and 'caption'"},
        {"{\"image\":\"a\",\"image\":\"b\",\"caption\":\"a\"}", MF_ERR_FORMAT, NULL},
        {"{\"image\":\"a\",\"caption\":\"a\\u0000b\"}", MF_ERR_FORMAT, NULL},
        {"[{\"image\":\"a\",\"caption\":\"a\"}", MF_ERR_FORMAT, "ann.jsonl: invalid JSON at line 1"},
        {"{\n\"image\":\"a\",\"caption\":\"a\"}", MF_ERR_FORMAT,
         "ann.jsonl: line 1: invalid JSON at column"},
        {"[{\"image\":\"a\",\"caption\":\"\xff\"}]", MF_ERR_FORMAT, NULL},
    };
    for (size_t i = 0; i < MF_ARRAY_LEN(cases); i++) {
        struct mf_err err = {0};
        struct mf_annotations *a = (struct mf_annotations *)&err; /* must be reset to NULL */
        enum mf_status st = parse(cases[i].text, "r", &a, &err);
        if (st != cases[i].code || (cases[i].msg && strncmp(err.msg, cases[i].msg,
                                                            strlen(cases[i].msg)) != 0))
            fprintf(stderr, "case %zu: %s: %s\n", i, mf_status_str(st), err.msg);
        assert_int_equal(st, cases[i].code);
        assert_null(a);
        if (cases[i].msg)
            assert_int_equal(strncmp(err.msg, cases[i].msg, strlen(cases[i].msg)), 0);
        assert_true(strncmp(err.msg, "ann.jsonl: ", 11) == 0);
    }
}

static void test_limits(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_annotations *a = NULL;
    size_t cap = MF_ANN_MAX_CAPTION_BYTES;
    char *s = malloc(cap + 64);
    /* exactly the limit is accepted, one more byte is not */
    for (int extra = 0; extra < 2; extra++) {
        int k = snprintf(s, 64, "[{\"image\":\"a\",\"caption\":[\"x\",\"");
        memset(s + k, 'w', cap + (size_t)extra);
        strcpy(s + k + cap + (size_t)extra, "\"]}]");
        enum mf_status st = parse(s, NULL, &a, &err);
        if (extra == 0) {
            assert_int_equal(st, MF_OK);
            assert_int_equal(strlen(a->caption[1]), cap);
            mf_annotations_free(a);
        } else {
            assert_int_equal(st, MF_ERR_RANGE);
            assert_string_equal(err.msg, "ann.jsonl: record 1: caption 2 is 10001 bytes, more "
                                "than the 10000-byte limit");
        }
    }
    free(s);
    /* image path that does not fit MF_PATH_MAX after joining */
    s = malloc(5000);
    int k = snprintf(s, 64, "{\"image\":\"");
    memset(s + k, 'p', 4200);
    strcpy(s + k + 4200, "\",\"caption\":\"c\"}");
    assert_int_equal(parse(s, "root", &a, &err), MF_ERR_RANGE);
    assert_non_null(strstr(err.msg, "line 1: image path is longer than"));
    free(s);
    /* the file-size cap is checked before parsing */
    assert_int_equal(mf_annotations_parse("[", MF_ANN_MAX_FILE_BYTES + 1, "big.json", NULL, &a,
                                          &err), MF_ERR_RANGE);
    assert_int_equal(mf_annotations_load("/nonexistent/ann.json", NULL, &a, &err), MF_ERR_MISSING);
    assert_non_null(strstr(err.msg, "/nonexistent/ann.json"));
}

/* many images: the hash table grows; every allocation may fail without leaks */
static void test_many_and_alloc_failures(void **state)
{
    (void)state;
    size_t n = 3000, cap = n * 64 + 16, len = 0;
    char *s = malloc(cap);
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len,
                                "{\"image\":\"%zu.jpg\",\"caption\":[\"c%zu\",\"d\"]}\n", i % 1000,
                                i);
    struct mf_err err = {0};
    struct mf_annotations *a = NULL;
    assert_int_equal(mf_annotations_parse(s, len, "many.jsonl", "r", &a, &err), MF_OK);
    assert_int_equal(a->n_pairs, 6000);
    assert_int_equal(a->n_images, 1000);
    assert_int_equal(a->image_index[5999], 999);
    assert_int_equal(a->image_index[2 * 1500], 500);
    assert_string_equal(a->caption[5998], "c2999");
    mf_annotations_free(a);
    free(s);

    const char *small = "{\"image\":\"a\",\"caption\":[\"x\",\"y\"]}\n{\"image\":\"b\",\"caption\":\"z\"}";
    int ok = 0;
    for (long k = 0; k < 40 && !ok; k++) {
        mf_alloc_fail_after(k);
        enum mf_status st = parse(small, "r", &a, &err);
        mf_alloc_fail_after(-1);
        if (st == MF_OK) {
            ok = 1;
            assert_int_equal(a->n_pairs, 3);
            mf_annotations_free(a);
        } else {
            assert_int_equal(st, MF_ERR_NOMEM);
            assert_null(a);
        }
    }
    assert_true(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jsonl_file),
        cmocka_unit_test(test_array_and_root),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_many_and_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
