/* text/wordpiece: vocabulary loading and validation, special ids by string, the §3.2 vectors on
 * tests/data/vocab_tiny.txt, goldens from tests/golden/gen_wordpiece.py, allocation failures. */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "io/annotations.h"
#include "text/unicase.h"
#include "text/wordpiece.h"

static struct mf_vocab *load_tiny(void)
{
    struct mf_err err = {0};
    struct mf_vocab *v = NULL;
    enum mf_status st = mf_vocab_load(mf_test_path("tests/data/vocab_tiny.txt"), &v, &err);
    if (st != MF_OK)
        fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(st, MF_OK);
    return v;
}

/* pieces of text as a space-joined string of vocabulary tokens */
static void pieces_str(const struct mf_vocab *v, const char *text, char *out, size_t out_len)
{
    struct mf_err err = {0};
    int32_t ids[256];
    int64_t n = 0;
    assert_int_equal(mf_wordpiece_tokenize(v, text, ids, 256, &n, &err), MF_OK);
    assert_true(n <= 256);
    out[0] = '\0';
    for (int64_t i = 0; i < n; i++) {
        if (i)
            strncat(out, " ", out_len - strlen(out) - 1);
        strncat(out, mf_vocab_token(v, ids[i]), out_len - strlen(out) - 1);
    }
}

static void test_spec_vectors(void **state)
{
    (void)state;
    struct mf_vocab *v = load_tiny();
    char buf[1024];
    /* §3.2 test vectors, as pieces (the real bert ids need the real vocabulary) */
    pieces_str(v, "i like strawberries", buf, sizeof buf);
    assert_string_equal(buf, "i like straw ##berries");
    pieces_str(v, "A picture of a woman with a dog sitting in a beach", buf, sizeof buf);
    assert_string_equal(buf, "a picture of a woman with a dog sitting in a beach");
    pieces_str(v, "Caf\xc3\xa9-au-lait, na\xc3\xafve r\xc3\xa9sum\xc3\xa9!", buf, sizeof buf);
    assert_string_equal(buf, "cafe - au - lai ##t , naive resume !");
    pieces_str(v, "un-affable \xe6\x9d\xb1\xe4\xba\xac x2.5", buf, sizeof buf);
    assert_string_equal(buf, "un - af ##fa ##ble \xe6\x9d\xb1 \xe4\xba\xac x ##2 . 5");
    /* whole-word [UNK]: "x" matches but "##ylophone" never does; pieces found are discarded */
    pieces_str(v, "xylophone dogs", buf, sizeof buf);
    assert_string_equal(buf, "[UNK] dog ##s");
    /* control chars and U+FFFD vanish without splitting the word */
    pieces_str(v, "a\x01" "b\x7f" "c\xe2\x80\x8b" "d\xef\xbf\xbd" "e", buf, sizeof buf);
    assert_string_equal(buf, "abc ##de");

    /* full encode of vector 1: ids looked up in the tiny vocabulary */
    struct mf_err err = {0};
    int32_t ids[8], mask[8];
    int n_real = 0;
    assert_int_equal(mf_wordpiece_encode(v, "i like strawberries", 8, ids, mask, &n_real, &err),
                     MF_OK);
    const int32_t want[8] = {16, 3, 4, 5, 6, 17, 2, 2};
    const int32_t want_mask[8] = {1, 1, 1, 1, 1, 1, 0, 0};
    assert_int_equal(n_real, 6);
    assert_memory_equal(ids, want, sizeof want);
    assert_memory_equal(mask, want_mask, sizeof want_mask);
    /* X-VLM variant: no [SEP], first max_len-1 pieces */
    assert_int_equal(mf_wordpiece_encode_nosep(v, "i like strawberries", 4, ids, mask, &n_real,
                                               &err), MF_OK);
    const int32_t want_ns[4] = {16, 3, 4, 5};
    assert_memory_equal(ids, want_ns, sizeof want_ns);
    assert_int_equal(n_real, 4);
    mf_vocab_free(v);
}

static void test_special_and_added(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_vocab *v = load_tiny();
    assert_int_equal(mf_vocab_size(v), 94);
    assert_int_equal(mf_vocab_special(v, MF_TOK_PAD), 2);
    assert_int_equal(mf_vocab_special(v, MF_TOK_UNK), 7);
    assert_int_equal(mf_vocab_special(v, MF_TOK_CLS), 16);
    assert_int_equal(mf_vocab_special(v, MF_TOK_SEP), 17);
    assert_int_equal(mf_vocab_special(v, MF_TOK_MASK), 18);
    assert_int_equal(mf_vocab_special(v, MF_TOK_DEC), -1);
    assert_int_equal(mf_vocab_special(v, MF_TOK_ENC), -1);
    assert_int_equal(mf_vocab_add_blip_tokens(v, &err), MF_OK);
    assert_int_equal(mf_vocab_special(v, MF_TOK_DEC), 94);
    assert_int_equal(mf_vocab_special(v, MF_TOK_ENC), 95);
    assert_string_equal(mf_vocab_token(v, 95), "[ENC]");
    assert_null(mf_vocab_token(v, 96));
    assert_null(mf_vocab_token(v, -1));
    /* adding again changes nothing */
    int32_t id = -1;
    assert_int_equal(mf_vocab_add_blip_tokens(v, &err), MF_OK);
    assert_int_equal(mf_vocab_add_token(v, "like", &id, &err), MF_OK);
    assert_int_equal(id, 4);
    assert_int_equal(mf_vocab_size(v), 96);
    /* many additions force the arrays and the hash table to grow */
    char tok[32];
    for (int i = 0; i < 300; i++) {
        snprintf(tok, sizeof tok, "[extra%d]", i);
        assert_int_equal(mf_vocab_add_token(v, tok, &id, &err), MF_OK);
        assert_int_equal(id, 96 + i);
    }
    for (int i = 0; i < 300; i += 37) {
        snprintf(tok, sizeof tok, "[extra%d]", i);
        assert_int_equal(mf_vocab_id(v, tok), 96 + i);
    }
    assert_int_equal(mf_vocab_id(v, "straw"), 5);
    assert_int_equal(mf_vocab_add_token(v, "", &id, &err), MF_ERR_ARG);
    /* the added literal is still split by the basic tokenizer (project rule, §3.2) */
    char buf[256];
    pieces_str(v, "[ENC] token", buf, sizeof buf);
    assert_string_equal(buf, "[ en ##c ] token");
    mf_vocab_free(v);
}

static void test_golden(void **state)
{
    (void)state;
    json_error_t jerr;
    json_t *doc = json_load_file(mf_test_path("tests/data/wordpiece_golden.json"), 0, &jerr);
    if (!doc)
        fprintf(stderr, "wordpiece_golden.json: %s\n", jerr.text);
    assert_non_null(doc);
    struct mf_vocab *v = load_tiny();
    json_t *cases = json_object_get(doc, "cases");
    assert_true(json_array_size(cases) >= 20);
    printf("golden from Unicode %s, tables here Unicode %s\n",
           json_string_value(json_object_get(doc, "unicode")), mf_uni_version());
    size_t i;
    json_t *c;
    int failures = 0;
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        int max_len = (int)json_integer_value(json_object_get(c, "max_len"));
        json_t *pieces = json_object_get(c, "pieces");
        struct mf_err err = {0};
        char basic[4096];
        assert_int_equal(mf_bert_basic_tokenize(text, basic, sizeof basic, &err), MF_OK);
        if (strcmp(basic, json_string_value(json_object_get(c, "basic"))) != 0) {
            fprintf(stderr, "case %zu: basic '%s', want '%s'\n", i, basic,
                    json_string_value(json_object_get(c, "basic")));
            failures++;
        }
        int32_t got[256];
        int64_t n = -1;
        assert_int_equal(mf_wordpiece_tokenize(v, text, got, 256, &n, &err), MF_OK);
        if (n != (int64_t)json_array_size(pieces)) {
            fprintf(stderr, "case %zu: %lld pieces, want %zu\n", i, (long long)n,
                    json_array_size(pieces));
            failures++;
        } else {
            for (int64_t k = 0; k < n; k++)
                if (strcmp(mf_vocab_token(v, got[k]),
                           json_string_value(json_array_get(pieces, (size_t)k))) != 0) {
                    fprintf(stderr, "case %zu piece %lld: '%s'\n", i, (long long)k,
                            mf_vocab_token(v, got[k]));
                    failures++;
                }
        }
        int32_t *ids = calloc((size_t)max_len, sizeof *ids);
        int32_t *mask = calloc((size_t)max_len, sizeof *mask);
        int n_real = 0;
        assert_int_equal(mf_wordpiece_encode(v, text, max_len, ids, mask, &n_real, &err), MF_OK);
        json_t *want = json_object_get(c, "ids"), *wmask = json_object_get(c, "mask");
        assert_int_equal(json_array_size(want), (size_t)max_len);
        int real = 0;
        for (int k = 0; k < max_len; k++) {
            real += (int)json_integer_value(json_array_get(wmask, (size_t)k));
            if (ids[k] != json_integer_value(json_array_get(want, (size_t)k)) ||
                mask[k] != json_integer_value(json_array_get(wmask, (size_t)k))) {
                fprintf(stderr, "case %zu: id %d is %d/%d\n", i, k, ids[k], mask[k]);
                failures++;
            }
        }
        if (real != n_real)
            failures++;
        assert_int_equal(mf_wordpiece_encode_nosep(v, text, max_len, ids, NULL, NULL, &err),
                         MF_OK);
        want = json_object_get(c, "ids_nosep");
        for (int k = 0; k < max_len; k++)
            if (ids[k] != json_integer_value(json_array_get(want, (size_t)k))) {
                fprintf(stderr, "case %zu: nosep id %d is %d\n", i, k, ids[k]);
                failures++;
            }
        free(ids);
        free(mask);
    }
    assert_int_equal(failures, 0);
    mf_vocab_free(v);
    json_decref(doc);
}

static enum mf_status parse(const char *s, struct mf_vocab **v, struct mf_err *err)
{
    return mf_vocab_parse(s, strlen(s), "v.txt", v, err);
}

static void test_vocab_validation(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_vocab *v = NULL;
    /* CRLF and a missing final newline are fine */
    assert_int_equal(parse("[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nhi", &v, &err), MF_OK);
    assert_int_equal(mf_vocab_size(v), 5);
    assert_int_equal(mf_vocab_id(v, "[SEP]"), 3);
    assert_int_equal(mf_vocab_id(v, "hi"), 4);
    mf_vocab_free(v);
    /* duplicates: token -> id takes the last line (HF load_vocab), id -> token keeps both */
    assert_int_equal(parse("a\nb\na\n", &v, &err), MF_OK);
    assert_int_equal(mf_vocab_size(v), 3);
    assert_int_equal(mf_vocab_id(v, "a"), 2);
    assert_string_equal(mf_vocab_token(v, 0), "a");
    mf_vocab_free(v);

    assert_int_equal(parse("a\n\nb\n", &v, &err), MF_ERR_FORMAT);
    assert_null(v);
    assert_string_equal(err.msg, "v.txt: line 2 is empty (only the last line may end with a newline)");
    assert_int_equal(parse("a\nb\n\n", &v, &err), MF_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "line 3 is empty"));
    assert_int_equal(parse("", &v, &err), MF_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "empty"));
    assert_int_equal(parse("a\nb\xff\n", &v, &err), MF_ERR_FORMAT);
    assert_string_equal(err.msg, "v.txt: line 2 is not valid UTF-8");
    assert_int_equal(parse("a\n\xed\xa0\x80\n", &v, &err), MF_ERR_FORMAT); /* surrogate */
    assert_int_equal(mf_vocab_parse("a\n\0b\n", 5, "v.txt", &v, &err), MF_ERR_FORMAT);
    assert_int_equal(parse("a\nb\rc\n", &v, &err), MF_ERR_FORMAT);
    char *big = malloc(MF_VOCAB_MAX_TOKEN_BYTES + 8);
    memset(big, 'x', MF_VOCAB_MAX_TOKEN_BYTES + 1);
    big[MF_VOCAB_MAX_TOKEN_BYTES + 1] = '\0';
    assert_int_equal(parse(big, &v, &err), MF_ERR_RANGE);
    assert_non_null(strstr(err.msg, "line 1: token of 1025 bytes"));
    free(big);

    assert_int_equal(mf_vocab_load("/nonexistent/vocab.txt", &v, &err), MF_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/vocab.txt: cannot open"));
    assert_int_equal(mf_vocab_load(mf_test_path("tests/data"), &v, &err), MF_ERR_IO);
}

static void test_encode_errors(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_vocab *v = NULL;
    int32_t ids[8];
    int64_t n = 0;
    assert_int_equal(parse("[PAD]\n[CLS]\n[SEP]\nhi\n", &v, &err), MF_OK);
    assert_int_equal(mf_wordpiece_encode(v, "hi", 8, ids, NULL, NULL, &err), MF_ERR_MISSING);
    assert_string_equal(err.msg, "v.txt: vocabulary has no [UNK] token");
    assert_int_equal(mf_wordpiece_tokenize(v, "hi", ids, 8, &n, &err), MF_ERR_MISSING);
    mf_vocab_free(v);

    v = load_tiny();
    assert_int_equal(mf_wordpiece_encode(v, "i", 1, ids, NULL, NULL, &err), MF_ERR_ARG);
    assert_int_equal(mf_wordpiece_encode_nosep(v, "i", 0, ids, NULL, NULL, &err), MF_ERR_ARG);
    assert_int_equal(mf_wordpiece_encode(v, "i \xc3(", 8, ids, NULL, NULL, &err), MF_ERR_FORMAT);
    assert_string_equal(err.msg, "text is not valid UTF-8 (byte 2)");
    /* tokenize reports the full count even when the buffer is smaller */
    assert_int_equal(mf_wordpiece_tokenize(v, "i like strawberries", ids, 2, &n, &err), MF_OK);
    assert_int_equal(n, 4);
    assert_int_equal(ids[1], 4);
    assert_int_equal(mf_wordpiece_tokenize(v, "i like", NULL, 0, &n, &err), MF_OK);
    assert_int_equal(n, 2);
    char small[7];
    assert_int_equal(mf_bert_basic_tokenize("i like dogs", small, sizeof small, &err),
                     MF_ERR_RANGE);
    assert_int_equal(mf_bert_basic_tokenize("i like", small, sizeof small, &err), MF_OK);
    assert_string_equal(small, "i like");
    mf_vocab_free(v);
}

/* Every allocation of load and encode may fail: the result is NOMEM and nothing leaks (ASan). */
static void test_alloc_failures(void **state)
{
    (void)state;
    size_t len = 0;
    char *buf = mf_test_read_file(mf_test_path("tests/data/vocab_tiny.txt"), &len);
    assert_non_null(buf);
    int ok = 0;
    for (long k = 0; k < 50 && !ok; k++) {
        struct mf_err err = {0};
        struct mf_vocab *v = NULL;
        int32_t ids[16];
        mf_alloc_fail_after(k);
        enum mf_status st = mf_vocab_parse(buf, len, "tiny", &v, &err);
        if (st == MF_OK)
            st = mf_vocab_add_blip_tokens(v, &err);
        if (st == MF_OK)
            st = mf_wordpiece_encode(v, "Caf\xc3\xa9 au lait", 16, ids, NULL, NULL, &err);
        mf_alloc_fail_after(-1);
        if (st == MF_OK)
            ok = 1;
        else
            assert_int_equal(st, MF_ERR_NOMEM);
        mf_vocab_free(v);
    }
    assert_true(ok);
    free(buf);
}

/* The bundled tiny BLIP vocabulary covers every caption of data/shapes without [UNK], and BLIP's
 * added tokens land at 105/106 as data/models/README.md says. */
static void test_bundled_vocab(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_vocab *v = NULL;
    struct mf_annotations *a = NULL;
    assert_int_equal(mf_vocab_load(mf_test_path("data/models/blip-tiny/vocab.txt"), &v, &err),
                     MF_OK);
    assert_int_equal(mf_vocab_size(v), 105);
    assert_int_equal(mf_vocab_add_blip_tokens(v, &err), MF_OK);
    assert_int_equal(mf_vocab_special(v, MF_TOK_DEC), 105);
    assert_int_equal(mf_vocab_special(v, MF_TOK_ENC), 106);
    assert_int_equal(mf_annotations_load(mf_test_path("data/shapes/annotations.json"), NULL, &a,
                                         &err), MF_OK);
    int32_t unk = mf_vocab_special(v, MF_TOK_UNK);
    for (int64_t i = 0; i < a->n_pairs; i++) {
        int32_t ids[35];
        int n_real = 0;
        assert_int_equal(mf_wordpiece_encode(v, a->caption[i], 35, ids, NULL, &n_real, &err),
                         MF_OK);
        assert_true(n_real > 3 && n_real < 35);
        for (int k = 0; k < n_real; k++)
            assert_int_not_equal(ids[k], unk);
    }
    mf_annotations_free(a);
    mf_vocab_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_vectors),
        cmocka_unit_test(test_special_and_added),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_vocab_validation),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_bundled_vocab),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
