/* safetensors reader and writer: round trip, a committed file written by Python, one test per
 * malformed-header class (code + message naming file and tensor), writer failures leaving nothing
 * behind, and an allocation-failure sweep over open/parse/write. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "io/fs.h"
#include "multiflow/safetensors.h"

/* Builds "<le64 hlen><hdr><data_len bytes 0,1,2,...>" into a malloc'd buffer; hlen_override
 * replaces the length field when non-zero. */
static uint8_t *build(const char *hdr, size_t data_len, uint64_t hlen_override, size_t *len)
{
    size_t h = strlen(hdr);
    uint64_t hl = hlen_override ? hlen_override : h;
    *len = 8 + h + data_len;
    uint8_t *b = malloc(*len);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(hl >> (8 * i));
    memcpy(b + 8, hdr, h);
    for (size_t i = 0; i < data_len; i++)
        b[8 + h + i] = (uint8_t)i;
    return b;
}

struct bad_case {
    const char *what;
    const char *hdr;
    size_t data_len;
    uint64_t hlen;
    enum mf_status code;
    const char *needle1; /* substrings the message must contain besides the label */
    const char *needle2;
};

static const struct bad_case bad_cases[] = {
    {"header length too big", "{}", 0, (uint64_t)1 << 40, MF_ERR_FORMAT, "exceeds the limit", NULL},
    {"header length past the end", "{}", 4, 1000, MF_ERR_FORMAT, "header length 1000", "truncated"},
    {"not JSON", "{\"a\": {\"dtype\": ", 0, 0, MF_ERR_FORMAT, "not valid JSON", NULL},
    {"not an object", "[1,2]", 0, 0, MF_ERR_FORMAT, "not a JSON object", NULL},
    {"invalid UTF-8", "{\"\xff\": 1}", 0, 0, MF_ERR_FORMAT, "not valid JSON", NULL},
    {"duplicate key",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
     "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
     2, 0, MF_ERR_FORMAT, "duplicate", NULL},
    {"unknown dtype", "{\"a.b\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 0,
     MF_ERR_DTYPE, "'a.b'", "'F8'"},
    {"dtype not a string", "{\"a.b\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 0,
     MF_ERR_FORMAT, "'a.b'", "dtype"},
    {"negative shape", "{\"a.b\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1, 0,
     MF_ERR_FORMAT, "'a.b'", "shape[0]"},
    {"non-integer shape", "{\"a.b\":{\"dtype\":\"U8\",\"shape\":[1,2.0],\"data_offsets\":[0,2]}}", 2, 0,
     MF_ERR_FORMAT, "'a.b'", "shape[1]"},
    {"shape not an array", "{\"a.b\":{\"dtype\":\"U8\",\"shape\":3,\"data_offsets\":[0,3]}}", 3, 0,
     MF_ERR_FORMAT, "'a.b'", "shape"},
    {"too many dims",
     "{\"a.b\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, 0,
     MF_ERR_FORMAT, "'a.b'", "9 dimensions"},
    {"shape overflow",
     "{\"a.b\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,16],\"data_offsets\":[0,16]}}", 16, 0,
     MF_ERR_RANGE, "'a.b'", "overflow"},
    {"shape times dtype overflow",
     "{\"a.b\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,16]}}", 16, 0,
     MF_ERR_RANGE, "'a.b'", "overflow"},
    {"huge integer", "{\"a.b\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999],\"data_offsets\":[0,1]}}",
     1, 0, MF_ERR_FORMAT, "not valid JSON", NULL},
    {"offsets out of range", "{\"a.b\":{\"dtype\":\"F32\",\"shape\":[250],\"data_offsets\":[0,1000]}}", 16,
     0, MF_ERR_RANGE, "'a.b'", "exceed the data section of 16 bytes"},
    {"negative offset", "{\"a.b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 1, 0,
     MF_ERR_FORMAT, "'a.b'", "data_offsets"},
    {"begin after end", "{\"a.b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", 16, 0,
     MF_ERR_FORMAT, "'a.b'", "[8,4]"},
    {"three offsets", "{\"a.b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 2, 0,
     MF_ERR_FORMAT, "'a.b'", "two"},
    {"overlap",
     "{\"a.b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
     "\"c\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
     24, 0, MF_ERR_FORMAT, "'a.b'", "'c' data_offsets [8,24] overlap"},
    {"size mismatch", "{\"a.b\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 16, 0,
     MF_ERR_FORMAT, "'a.b' data_offsets [0,12] do not match dtype F32 and shape [2,2] (16 bytes)", NULL},
    {"metadata value not a string", "{\"__metadata__\":{\"fmt\":1}}", 0, 0, MF_ERR_FORMAT, "__metadata__",
     "'fmt'"},
    {"metadata not an object", "{\"__metadata__\":[\"pt\"]}", 0, 0, MF_ERR_FORMAT, "__metadata__", NULL},
    {"unknown key", "{\"a.b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":0}}", 1, 0,
     MF_ERR_FORMAT, "'a.b'", "unknown key 'x'"},
    {"missing key", "{\"a.b\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, 0, MF_ERR_FORMAT, "'a.b'",
     "data_offsets"},
    {"entry not an object", "{\"a.b\":[1]}", 0, 0, MF_ERR_FORMAT, "'a.b'", "not a JSON object"},
    {"empty name", "{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 0, MF_ERR_FORMAT,
     "empty name", NULL},
};

static void test_malformed(void **state)
{
    (void)state;
    for (size_t i = 0; i < MF_ARRAY_LEN(bad_cases); i++) {
        const struct bad_case *c = &bad_cases[i];
        size_t len;
        uint8_t *b = build(c->hdr, c->data_len, c->hlen, &len);
        struct mf_safetensors *st = (struct mf_safetensors *)1;
        struct mf_err err = {0};
        enum mf_status s = mf_safetensors_parse(b, len, "bad.safetensors", &st, &err);
        printf("  %-28s -> %s\n", c->what, err.msg);
        assert_int_equal(s, c->code);
        assert_int_equal(err.code, c->code);
        assert_null(st);
        assert_true(strncmp(err.msg, "bad.safetensors: ", 17) == 0);
        if (c->needle1)
            assert_non_null(strstr(err.msg, c->needle1));
        if (c->needle2)
            assert_non_null(strstr(err.msg, c->needle2));
        free(b);
    }
}

static void test_size_mismatch_message(void **state)
{
    (void)state;
    size_t len;
    uint8_t *b = build("{\"a.b\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 16, 0, &len);
    struct mf_safetensors *st = NULL;
    struct mf_err err = {0};
    assert_int_equal(mf_safetensors_parse(b, len, "x.safetensors", &st, &err), MF_ERR_FORMAT);
    assert_string_equal(err.msg, "x.safetensors: tensor 'a.b' data_offsets [0,12] do not match dtype "
                                 "F32 and shape [2,2] (16 bytes)");
    free(b);
}

static void test_truncated_file(void **state)
{
    (void)state;
    const char *dir = mf_test_tmpdir();
    char path[4096];
    struct mf_safetensors *st = NULL;
    struct mf_err err = {0};
    /* shorter than the length field */
    snprintf(path, sizeof path, "%s/short.safetensors", dir);
    assert_int_equal(mf_test_write_file(path, "\x02\0\0", 3), 0);
    assert_int_equal(mf_safetensors_open(path, &st, &err), MF_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "short.safetensors"));
    assert_non_null(strstr(err.msg, "3 bytes"));
    assert_null(st);
    /* empty file */
    assert_int_equal(mf_test_write_file(path, "", 0), 0);
    assert_int_equal(mf_safetensors_open(path, &st, &err), MF_ERR_FORMAT);
    /* a valid file cut in its data section: the last tensor now runs past the end */
    size_t len;
    uint8_t *b = build("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, 0, &len);
    snprintf(path, sizeof path, "%s/cut.safetensors", dir);
    assert_int_equal(mf_test_write_file(path, b, len - 5), 0);
    assert_int_equal(mf_safetensors_open(path, &st, &err), MF_ERR_RANGE);
    printf("  %s\n", err.msg);
    assert_non_null(strstr(err.msg, "cut.safetensors: tensor 'w'"));
    /* cut inside the header */
    assert_int_equal(mf_test_write_file(path, b, 20), 0);
    assert_int_equal(mf_safetensors_open(path, &st, &err), MF_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "truncated"));
    /* missing file and directory */
    snprintf(path, sizeof path, "%s/none.safetensors", dir);
    assert_int_equal(mf_safetensors_open(path, &st, &err), MF_ERR_MISSING);
    assert_non_null(strstr(err.msg, "none.safetensors"));
    assert_int_equal(mf_safetensors_open(dir, &st, &err), MF_ERR_IO);
    free(b);
    mf_fs_remove_tree(dir, NULL);
}

static void test_valid_edge_cases(void **state)
{
    (void)state;
    struct mf_safetensors *st = NULL;
    struct mf_err err = {0};
    size_t len;
    /* empty header, gaps between tensors, zero-size tensors, scalars, trailing spaces */
    uint8_t *b = build("{}", 0, 0, &len);
    assert_int_equal(mf_safetensors_parse(b, len, "e", &st, &err), MF_OK);
    assert_int_equal(mf_safetensors_count(st), 0);
    assert_null(mf_safetensors_find(st, "x"));
    assert_null(mf_safetensors_at(st, 0));
    assert_null(mf_safetensors_meta(st, "x"));
    mf_safetensors_close(st);
    free(b);
    b = build("{\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
              "\"b\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[8,12]},"
              "\"a\":{\"data_offsets\":[0,4],\"shape\":[],\"dtype\":\"F32\"},"
              "\"__metadata__\":{\"format\":\"pt\",\"a\":\"\\u00e9\"}}   ",
              12, 0, &len);
    assert_int_equal(mf_safetensors_parse(b, len, "e", &st, &err), MF_OK);
    assert_int_equal(mf_safetensors_count(st), 3);
    assert_string_equal(mf_safetensors_at(st, 0)->name, "a");
    assert_string_equal(mf_safetensors_at(st, 1)->name, "z");
    assert_string_equal(mf_safetensors_at(st, 2)->name, "b");
    const struct mf_st_entry *e = mf_safetensors_find(st, "b");
    assert_non_null(e);
    assert_int_equal(e->dtype, MF_DTYPE_I16);
    assert_int_equal(e->offset, 8);
    assert_ptr_equal(e->data, b + len - 4);
    assert_int_equal(mf_safetensors_find(st, "a")->ndim, 0);
    assert_int_equal(mf_safetensors_find(st, "a")->nbytes, 4);
    assert_int_equal(mf_safetensors_find(st, "z")->nbytes, 0);
    assert_string_equal(mf_safetensors_meta(st, "format"), "pt");
    assert_string_equal(mf_safetensors_meta(st, "a"), "\xc3\xa9");
    assert_int_equal(mf_safetensors_meta_count(st), 2);
    const char *val;
    assert_string_equal(mf_safetensors_meta_at(st, 0, &val), "a");
    assert_string_equal(mf_safetensors_data_size(st) == 12 ? "ok" : "bad", "ok");
    assert_string_equal(mf_safetensors_path(st), "e");
    mf_safetensors_close(st);
    free(b);
}

static void test_roundtrip(void **state)
{
    (void)state;
    const char *dir = mf_test_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    float f32[6] = {0, 1.5f, -2, 3.25f, 1e-3f, -7};
    uint16_t f16[4], bf16[4];
    for (int i = 0; i < 4; i++) {
        f16[i] = mf_f32_to_f16(f32[i]);
        bf16[i] = mf_f32_to_bf16(f32[i + 2]);
    }
    uint8_t u8[5] = {1, 2, 3, 250, 0};
    uint8_t bl[3] = {1, 0, 1};
    int64_t i64[2] = {-5, (int64_t)1 << 40};
    float scalar = 42;
    struct {
        const char *name;
        enum mf_dtype dt;
        int ndim;
        int64_t shape[2];
        const void *data;
        size_t nbytes;
    } t[] = {
        {"enc.w", MF_DTYPE_F32, 2, {2, 3}, f32, sizeof f32},
        {"enc.h", MF_DTYPE_F16, 1, {4}, f16, sizeof f16},
        {"enc.b", MF_DTYPE_BF16, 2, {2, 2}, bf16, sizeof bf16},
        {"mask", MF_DTYPE_U8, 1, {5}, u8, sizeof u8},
        {"flag", MF_DTYPE_BOOL, 1, {3}, bl, sizeof bl},
        {"ids", MF_DTYPE_I64, 1, {2}, i64, sizeof i64},
        {"scalar", MF_DTYPE_F32, 0, {0}, &scalar, 4},
        {"empty", MF_DTYPE_F32, 2, {0, 4}, NULL, 0},
    };
    struct mf_st_writer *w = NULL;
    struct mf_err err = {0};
    assert_int_equal(mf_st_writer_create(path, &w, &err), MF_OK);
    for (size_t i = 0; i < MF_ARRAY_LEN(t); i++)
        assert_int_equal(mf_st_writer_add(w, t[i].name, t[i].dt, t[i].ndim, t[i].shape, t[i].data, &err),
                         MF_OK);
    assert_int_equal(mf_st_writer_meta(w, "format", "pt", &err), MF_OK);
    assert_int_equal(mf_st_writer_meta(w, "note", "sparsity \"75%\"", &err), MF_OK);
    assert_int_equal(mf_st_writer_commit(w, &err), MF_OK);
    assert_int_equal(mf_test_dir_count(dir), 1); /* no temp file left */

    size_t flen;
    char *raw = mf_test_read_file(path, &flen);
    assert_non_null(raw);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | (uint8_t)raw[i];
    assert_int_equal(hl % 8, 0);
    assert_int_equal(raw[8], '{');
    assert_non_null(strstr(raw + 8, "\"__metadata__\""));
    assert_true(strstr(raw + 8, "\"__metadata__\"") < strstr(raw + 8, "\"enc.w\""));
    free(raw);

    struct mf_safetensors *st = NULL;
    assert_int_equal(mf_safetensors_open(path, &st, &err), MF_OK);
    assert_int_equal(mf_safetensors_count(st), MF_ARRAY_LEN(t));
    for (size_t i = 0; i < MF_ARRAY_LEN(t); i++) {
        const struct mf_st_entry *e = mf_safetensors_find(st, t[i].name);
        assert_non_null(e);
        assert_int_equal(e->dtype, t[i].dt);
        assert_int_equal(e->ndim, t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++)
            assert_int_equal(e->shape[d], t[i].shape[d]);
        assert_int_equal(e->nbytes, t[i].nbytes);
        if (t[i].nbytes)
            assert_memory_equal(e->data, t[i].data, t[i].nbytes);
        /* written in the order added, and iteration follows the offsets */
        assert_ptr_equal(mf_safetensors_at(st, i), e);
    }
    assert_int_equal((uintptr_t)mf_safetensors_at(st, 0)->data % 8, 0);
    float back[4];
    const struct mf_st_entry *e = mf_safetensors_find(st, "enc.b");
    mf_convert_to_f32(back, e->data, e->dtype, 4);
    assert_true(back[1] == 3.25f);
    assert_string_equal(mf_safetensors_meta(st, "format"), "pt");
    assert_string_equal(mf_safetensors_meta(st, "note"), "sparsity \"75%\"");
    assert_string_equal(mf_safetensors_path(st), path);

    /* overwrite while the old file is mapped: the mapping keeps the old bytes */
    assert_int_equal(mf_st_writer_create(path, &w, &err), MF_OK);
    assert_int_equal(mf_st_writer_add(w, "only", MF_DTYPE_U8, 1, (int64_t[]){5}, u8, &err), MF_OK);
    assert_int_equal(mf_st_writer_commit(w, &err), MF_OK);
    assert_memory_equal(mf_safetensors_find(st, "enc.w")->data, f32, sizeof f32);
    mf_safetensors_close(st);
    assert_int_equal(mf_safetensors_open(path, &st, &err), MF_OK);
    assert_int_equal(mf_safetensors_count(st), 1);
    mf_safetensors_close(st);
    assert_int_equal(mf_test_dir_count(dir), 1);
    mf_fs_remove_tree(dir, NULL);
}

/* tests/data/io/tiny.safetensors is written by tests/golden/gen_safetensors.py (plain Python, its
 * own serialiser with HF's layout conventions: spaces in the JSON, dtype-aligned order). */
static void test_python_file(void **state)
{
    (void)state;
    struct mf_safetensors *st = NULL;
    struct mf_err err = {0};
    assert_int_equal(mf_safetensors_open(mf_test_path("tests/data/io/tiny.safetensors"), &st, &err), MF_OK);
    assert_int_equal(mf_safetensors_count(st), 4);
    const struct mf_st_entry *w = mf_safetensors_find(st, "encoder.weight");
    const struct mf_st_entry *h = mf_safetensors_find(st, "encoder.half");
    const struct mf_st_entry *b = mf_safetensors_find(st, "encoder.bf16");
    const struct mf_st_entry *m = mf_safetensors_find(st, "mask");
    assert_non_null(w);
    assert_non_null(h);
    assert_non_null(b);
    assert_non_null(m);
    assert_int_equal(w->dtype, MF_DTYPE_F32);
    assert_int_equal(w->ndim, 2);
    assert_int_equal(w->shape[0], 2);
    assert_int_equal(w->shape[1], 3);
    float f[6];
    mf_convert_to_f32(f, w->data, w->dtype, 6);
    for (int i = 0; i < 6; i++)
        assert_true(f[i] == 0.5f * (float)i - 1.0f);
    mf_convert_to_f32(f, h->data, h->dtype, 3);
    assert_true(f[0] == 1.0f && f[1] == -2.5f && f[2] == 0.099975586f);
    mf_convert_to_f32(f, b->data, b->dtype, 2);
    assert_true(f[0] == 3.0f && f[1] == -0.0078125f);
    assert_int_equal(m->dtype, MF_DTYPE_U8);
    assert_int_equal(((const uint8_t *)m->data)[3], 1);
    assert_string_equal(mf_safetensors_meta(st, "format"), "pt");
    mf_safetensors_close(st);
}

static void test_writer_errors(void **state)
{
    (void)state;
    const char *dir = mf_test_tmpdir();
    char path[4096];
    struct mf_st_writer *w = NULL;
    struct mf_err err = {0};
    uint8_t x[4] = {0};

    /* target directory missing: fails at create, nothing is written anywhere */
    snprintf(path, sizeof path, "%s/missing/out.safetensors", dir);
    assert_int_equal(mf_st_writer_create(path, &w, &err), MF_ERR_MISSING);
    assert_null(w);
    assert_non_null(strstr(err.msg, "out.safetensors"));
    assert_int_equal(mf_test_dir_count(dir), 0);

    /* directory removed between create and commit: commit fails, w is freed */
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/gone", dir);
    assert_int_equal(mkdir(sub, 0777), 0);
    snprintf(path, sizeof path, "%s/gone/out.safetensors", dir);
    assert_int_equal(mf_st_writer_create(path, &w, &err), MF_OK);
    assert_int_equal(mf_st_writer_add(w, "a", MF_DTYPE_U8, 1, (int64_t[]){4}, x, &err), MF_OK);
    assert_int_equal(rmdir(sub), 0);
    assert_int_equal(mf_st_writer_commit(w, &err), MF_ERR_MISSING);
    printf("  %s\n", err.msg);
    assert_int_equal(mf_test_dir_count(dir), 0);

    /* bad adds are refused and leave the writer usable */
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    assert_int_equal(mf_st_writer_create(path, &w, &err), MF_OK);
    assert_int_equal(mf_st_writer_add(w, "a", MF_DTYPE_U8, 1, (int64_t[]){4}, x, &err), MF_OK);
    assert_int_equal(mf_st_writer_add(w, "a", MF_DTYPE_U8, 1, (int64_t[]){4}, x, &err), MF_ERR_ARG);
    assert_non_null(strstr(err.msg, "'a' added twice"));
    assert_int_equal(mf_st_writer_add(w, "__metadata__", MF_DTYPE_U8, 1, (int64_t[]){4}, x, &err), MF_ERR_ARG);
    assert_int_equal(mf_st_writer_add(w, "", MF_DTYPE_U8, 1, (int64_t[]){4}, x, &err), MF_ERR_ARG);
    assert_int_equal(mf_st_writer_add(w, "n", MF_DTYPE_U8, 1, (int64_t[]){-4}, x, &err), MF_ERR_ARG);
    assert_int_equal(mf_st_writer_add(w, "n", MF_DTYPE_U8, 9, (int64_t[9]){0}, x, &err), MF_ERR_ARG);
    assert_int_equal(mf_st_writer_add(w, "n", MF_DTYPE_COUNT, 1, (int64_t[]){4}, x, &err), MF_ERR_DTYPE);
    assert_int_equal(mf_st_writer_add(w, "n", MF_DTYPE_U8, 1, (int64_t[]){4}, NULL, &err), MF_ERR_ARG);
    assert_int_equal(mf_st_writer_add(w, "n", MF_DTYPE_F64, 2, (int64_t[]){(int64_t)1 << 62, 8}, x, &err),
                     MF_ERR_ARG);
    assert_int_equal(mf_st_writer_meta(w, "k", "v", &err), MF_OK);
    assert_int_equal(mf_st_writer_meta(w, "k", "w", &err), MF_ERR_ARG);
    assert_int_equal(mf_st_writer_commit(w, &err), MF_OK);
    assert_int_equal(mf_test_dir_count(dir), 1);

    /* a commit that fails late (invalid UTF-8 name) leaves the existing file untouched */
    size_t before_len, after_len;
    char *before = mf_test_read_file(path, &before_len);
    assert_int_equal(mf_st_writer_create(path, &w, &err), MF_OK);
    assert_int_equal(mf_st_writer_add(w, "ok", MF_DTYPE_U8, 1, (int64_t[]){4}, x, &err), MF_OK);
    assert_int_equal(mf_st_writer_add(w, "bad\xff", MF_DTYPE_U8, 1, (int64_t[]){4}, x, &err), MF_OK);
    assert_int_equal(mf_st_writer_commit(w, &err), MF_ERR_ARG);
    assert_non_null(strstr(err.msg, "UTF-8"));
    char *after = mf_test_read_file(path, &after_len);
    assert_int_equal(before_len, after_len);
    assert_memory_equal(before, after, before_len);
    assert_int_equal(mf_test_dir_count(dir), 1);
    free(before);
    free(after);
    mf_st_writer_abort(NULL);
    assert_int_equal(mf_st_writer_create(path, &w, &err), MF_OK);
    mf_st_writer_abort(w); /* abort writes nothing */
    assert_int_equal(mf_test_dir_count(dir), 1);
    mf_fs_remove_tree(dir, NULL);
}

/* mf_st_writer_add_fill: a tensor of several 1 MiB chunks produced at commit, between two plain
 * tensors; a fill that fails fails the commit and leaves the existing file untouched. */
struct pattern {
    int calls;
    int fail_at; /* call index that fails, or -1 */
};

static enum mf_status fill_pattern(void *ctx, void *dst, size_t offset, size_t n, struct mf_err *err)
{
    struct pattern *p = ctx;
    if (p->calls++ == p->fail_at)
        return mf_err_set(err, MF_ERR_NUMERIC, "fill failed at byte %zu", offset);
    assert_int_equal(offset % 8, 0);
    int32_t *o = dst;
    for (size_t i = 0; i < n / 4; i++)
        o[i] = (int32_t)(offset / 4 + i) * 7 - 3;
    return MF_OK;
}

static void test_writer_fill(void **state)
{
    (void)state;
    const char *dir = mf_test_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/fill.safetensors", dir);
    struct mf_st_writer *w = NULL;
    struct mf_err err = {0};
    const int64_t rows = 1000, cols = 777; /* 3,108,000 bytes: 3 chunks, the last partial */
    uint8_t x[3] = {1, 2, 3};
    struct pattern p = {.fail_at = -1};
    assert_int_equal(mf_st_writer_create(path, &w, &err), MF_OK);
    assert_int_equal(mf_st_writer_add(w, "a", MF_DTYPE_U8, 1, (int64_t[]){3}, x, &err), MF_OK);
    assert_int_equal(mf_st_writer_add_fill(w, "big", MF_DTYPE_I32, 2, (int64_t[]){rows, cols}, fill_pattern, &p, &err),
                     MF_OK);
    assert_int_equal(mf_st_writer_add(w, "z", MF_DTYPE_U8, 1, (int64_t[]){3}, x, &err), MF_OK);
    assert_int_equal(mf_st_writer_add_fill(w, "none", MF_DTYPE_I32, 1, (int64_t[]){4}, NULL, NULL, &err), MF_ERR_ARG);
    assert_int_equal(mf_st_writer_commit(w, &err), MF_OK);
    assert_int_equal(p.calls, 3);
    struct mf_safetensors *st = NULL;
    assert_int_equal(mf_safetensors_open(path, &st, &err), MF_OK);
    const struct mf_st_entry *e = mf_safetensors_find(st, "big");
    assert_non_null(e);
    assert_int_equal(e->nbytes, (size_t)(rows * cols * 4));
    const unsigned char *v = e->data; /* after a 3-byte tensor: not 4-byte aligned */
    for (int64_t i = 0; i < rows * cols; i++) {
        int32_t x32;
        memcpy(&x32, v + 4 * i, sizeof x32);
        if (x32 != (int32_t)i * 7 - 3)
            fail_msg("element %lld is %d", (long long)i, x32);
    }
    assert_memory_equal(mf_safetensors_find(st, "z")->data, x, 3);
    mf_safetensors_close(st);

    size_t before_len, after_len;
    char *before = mf_test_read_file(path, &before_len);
    p = (struct pattern){.fail_at = 1};
    assert_int_equal(mf_st_writer_create(path, &w, &err), MF_OK);
    assert_int_equal(mf_st_writer_add_fill(w, "big", MF_DTYPE_I32, 2, (int64_t[]){rows, cols}, fill_pattern, &p, &err),
                     MF_OK);
    assert_int_equal(mf_st_writer_commit(w, &err), MF_ERR_NUMERIC);
    assert_non_null(strstr(err.msg, "fill failed at byte 1048576"));
    char *after = mf_test_read_file(path, &after_len);
    assert_int_equal(before_len, after_len);
    assert_memory_equal(before, after, before_len);
    assert_int_equal(mf_test_dir_count(dir), 1);
    free(before);
    free(after);
    mf_fs_remove_tree(dir, NULL);
}

static void test_alloc_sweep(void **state)
{
    (void)state;
    const char *dir = mf_test_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/s.safetensors", dir);
    uint8_t x[16] = {0};
    long n;
    /* writer: every failing allocation gives NOMEM and leaves the directory empty */
    for (n = 0;; n++) {
        struct mf_st_writer *w = NULL;
        struct mf_err err = {0};
        enum mf_status s;
        mf_alloc_fail_after(n);
        s = mf_st_writer_create(path, &w, &err);
        for (int i = 0; s == MF_OK && i < 3; i++) {
            char name[16];
            snprintf(name, sizeof name, "t%d", i);
            s = mf_st_writer_add(w, name, MF_DTYPE_F32, 2, (int64_t[]){2, 2}, x, &err);
        }
        if (s == MF_OK)
            s = mf_st_writer_meta(w, "format", "pt", &err);
        if (s == MF_OK)
            s = mf_st_writer_commit(w, &err);
        else
            mf_st_writer_abort(w);
        mf_alloc_fail_after(-1);
        if (s == MF_OK)
            break;
        assert_int_equal(s, MF_ERR_NOMEM);
        assert_int_equal(mf_test_dir_count(dir), 0);
    }
    assert_true(n > 5);
    /* reader */
    for (n = 0;; n++) {
        struct mf_safetensors *st = (struct mf_safetensors *)1;
        struct mf_err err = {0};
        mf_alloc_fail_after(n);
        enum mf_status s = mf_safetensors_open(path, &st, &err);
        mf_alloc_fail_after(-1);
        if (s == MF_OK) {
            assert_int_equal(mf_safetensors_count(st), 3);
            mf_safetensors_close(st);
            break;
        }
        assert_int_equal(s, MF_ERR_NOMEM);
        assert_null(st);
        assert_non_null(strstr(err.msg, "s.safetensors"));
    }
    assert_true(n >= 4);
    mf_fs_remove_tree(dir, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed),      cmocka_unit_test(test_size_mismatch_message),
        cmocka_unit_test(test_truncated_file), cmocka_unit_test(test_valid_edge_cases),
        cmocka_unit_test(test_roundtrip),      cmocka_unit_test(test_python_file),
        cmocka_unit_test(test_writer_errors),  cmocka_unit_test(test_writer_fill),
        cmocka_unit_test(test_alloc_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
