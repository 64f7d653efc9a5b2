/* text/caption: pre_caption variants (spec/models.md §3.1) against goldens from
 * tests/golden/gen_caption.py, plus hand-checked cases and the error paths. */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "text/caption.h"

static void test_examples(void **state)
{
    (void)state;
    struct mf_err err = {0};
    char out[256];
    assert_int_equal(mf_pre_caption("A man -- riding a horse!", MF_CAPTION_WORDS_MULTIFLOW,
                                    MF_CAPTION_MULTIFLOW, out, sizeof out, &err), MF_OK);
    assert_string_equal(out, "a man riding a horse");
    assert_int_equal(mf_pre_caption("A man -- riding a horse!", MF_CAPTION_WORDS_BLIP,
                                    MF_CAPTION_BLIP, out, sizeof out, &err), MF_OK);
    assert_string_equal(out, "a man -- riding a horse");
    assert_int_equal(mf_pre_caption("<person>'s dog", 0, MF_CAPTION_MULTIFLOW, out, sizeof out,
                                    &err), MF_OK);
    assert_string_equal(out, "persons dog");
    /* NONE keeps the raw string, ignores max_words */
    assert_int_equal(mf_pre_caption("  Raw, TEXT!  ", 1, MF_CAPTION_NONE, out, sizeof out, &err),
                     MF_OK);
    assert_string_equal(out, "  Raw, TEXT!  ");
    /* full Unicode lower-case: final sigma and U+0130 -> i U+0307 */
    assert_int_equal(mf_pre_caption("\xce\x9f\xce\x94\xce\x9f\xce\xa3 \xc4\xb0", 0,
                                    MF_CAPTION_BLIP, out, sizeof out, &err), MF_OK);
    assert_string_equal(out, "\xce\xbf\xce\xb4\xce\xbf\xcf\x82 i\xcc\x87");
}

static void test_errors(void **state)
{
    (void)state;
    struct mf_err err = {0};
    char out[16];
    assert_int_equal(mf_pre_caption("", 40, MF_CAPTION_MULTIFLOW, out, sizeof out, &err),
                     MF_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "caption is empty after cleaning"));
    assert_int_equal(mf_pre_caption("?!...", 40, MF_CAPTION_MULTIFLOW, out, sizeof out, &err),
                     MF_ERR_FORMAT);
    assert_int_equal(mf_pre_caption(" \t ", 40, MF_CAPTION_NONE, out, sizeof out, &err),
                     MF_ERR_FORMAT);
    assert_int_equal(mf_pre_caption("", 40, MF_CAPTION_NONE, out, sizeof out, &err),
                     MF_ERR_FORMAT);
    assert_int_equal(mf_pre_caption("ok \xff", 40, MF_CAPTION_BLIP, out, sizeof out, &err),
                     MF_ERR_FORMAT);
    assert_string_equal(err.msg, "caption is not valid UTF-8 (byte 3)");
    assert_int_equal(mf_pre_caption("a caption that is too long", 40, MF_CAPTION_BLIP, out,
                                    sizeof out, &err), MF_ERR_RANGE);
    assert_string_equal(err.msg, "cleaned caption needs 27 bytes, buffer has 16");
    /* exactly fitting: 15 bytes + NUL */
    assert_int_equal(mf_pre_caption("fifteen bytes!!", 40, MF_CAPTION_NONE, out, sizeof out,
                                    &err), MF_OK);
    assert_int_equal(mf_pre_caption("x", -1, MF_CAPTION_BLIP, out, sizeof out, &err), MF_ERR_ARG);
    assert_int_equal(mf_pre_caption("x", 1, (enum mf_caption_style)7, out, sizeof out, &err),
                     MF_ERR_ARG);
    enum mf_caption_style s;
    assert_int_equal(mf_caption_style_parse("xvlm", &s, &err), MF_OK);
    assert_int_equal(s, MF_CAPTION_MULTIFLOW);
    assert_int_equal(mf_caption_style_parse("blip", &s, &err), MF_OK);
    assert_int_equal(s, MF_CAPTION_BLIP);
    assert_string_equal(mf_caption_style_name(s), "blip");
    assert_int_equal(mf_caption_style_parse("BLIP2", &s, &err), MF_ERR_ARG);
    assert_non_null(strstr(err.msg, "'BLIP2'"));
    /* allocation failures are reported, not crashed on */
    mf_alloc_fail_after(0);
    enum mf_status st = mf_pre_caption("x", 1, MF_CAPTION_BLIP, out, sizeof out, &err);
    mf_alloc_fail_after(-1);
    assert_int_equal(st, MF_ERR_NOMEM);
}

static void test_golden(void **state)
{
    (void)state;
    json_error_t jerr;
    json_t *doc = json_load_file(mf_test_path("tests/data/caption_golden.json"), 0, &jerr);
    assert_non_null(doc);
    json_t *cases = json_object_get(doc, "cases");
    assert_true(json_array_size(cases) >= 40);
    size_t i;
    json_t *c;
    int failures = 0;
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        enum mf_caption_style style;
        struct mf_err err = {0};
        assert_int_equal(mf_caption_style_parse(json_string_value(json_object_get(c, "style")),
                                                &style, &err), MF_OK);
        int max_words = (int)json_integer_value(json_object_get(c, "max_words"));
        const char *want = json_string_value(json_object_get(c, "want")); /* NULL: error */
        char out[512];
        enum mf_status st = mf_pre_caption(text, max_words, style, out, sizeof out, &err);
        if (want ? (st != MF_OK || strcmp(out, want) != 0) : st != MF_ERR_FORMAT) {
            fprintf(stderr, "case %zu (%s, %d): got %s '%s', want '%s'\n", i,
                    mf_caption_style_name(style), max_words, mf_status_str(st),
                    st == MF_OK ? out : err.msg, want ? want : "(error)");
            failures++;
        }
    }
    assert_int_equal(failures, 0);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_examples),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
