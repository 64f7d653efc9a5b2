/*
 * tests/eval/test_vqa_acc.c: VQA accuracy of the official evaluation (src/eval/vqa_acc.c,
 * models.md Q15) on hand-made cases.
 *
 * Normalisation: punctuation deleted when it touches a space (or when the text has digit,digit),
 * else turned into a space; periods not before a digit dropped, only the first 32; number words to
 * digits, articles dropped, the contraction table (capitalised keys never match, "somebody'd" ->
 * "somebodyd"). Accuracy: min(1, matches among the other nine / 3) averaged over the ten
 * leave-one-out subsets (3 of 10 agreeing -> 90, 1 of 10 -> 30), no normalisation when every
 * human answer is the same (so "Yes" against ten "yes" scores 0, as the reference), whitespace
 * stripped always, any number of answers, per question type and answer type in order of first
 * appearance, errors.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

#include "core/common.h"
#include "multiflow/eval.h"

static void expect_norm(const char *in, const char *want)
{
    char out[MF_VQA_NORM_SIZE(200)];
    struct mf_err err = {0};
    assert_true(strlen(in) <= 200);
    if (mf_vqa_normalize(in, out, sizeof out, &err) != MF_OK)
        fail_msg("normalize '%s': %s", in, err.msg);
    if (strcmp(out, want) != 0)
        fail_msg("normalize '%s': got '%s', want '%s'", in, out, want);
}

static void test_normalize(void **state)
{
    (void)state;
    expect_norm("Two.", "2");
    expect_norm("the dog", "dog");
    expect_norm("An apple and a pear", "apple and pear");
    expect_norm("ten none zero one nine", "10 0 0 1 9");
    expect_norm("dont", "don't");
    expect_norm("Im", "im");              /* the table's "Im" never matches after lower() */
    expect_norm("somebody'd", "somebodyd"); /* the table's quirk */
    expect_norm("yes!", "yes");
    expect_norm("hello,world", "hello world"); /* ',' touches no space: becomes a space */
    expect_norm("hello, world", "hello world"); /* ',' touches a space: deleted */
    expect_norm("1,000", "1000");               /* digit,digit: every punctuation mark deleted */
    expect_norm("1,000 black-white", "1000 blackwhite");
    expect_norm("black-white", "black white");
    expect_norm("x ; y", "x y");
    expect_norm("(yes)", "yes");
    expect_norm("3.5", "3.5");
    expect_norm("end.", "end");
    expect_norm("Mr. T", "mr t");
    expect_norm("a:b", "a:b"); /* ':' and '\'' are not in the list */
    expect_norm("it's", "it's");
    expect_norm("  many   spaces  ", "many spaces");
    expect_norm("", "");
    expect_norm("the", "");
    /* 40 periods: the first 32 go (re.sub's count = re.UNICODE = 32) */
    expect_norm("........................................x", "........x");
    char small[4];
    struct mf_err err = {0};
    assert_int_equal(mf_vqa_normalize("a long answer", small, sizeof small, &err), MF_ERR_RANGE);
    assert_int_equal(mf_vqa_normalize("bad \xff", small, sizeof small, &err), MF_ERR_FORMAT);
}

static double acc1(const char *const *answers, int n, const char *pred)
{
    struct mf_vqa_question q = {.answers = answers, .n_answers = n, .prediction = pred};
    struct mf_vqa_result r;
    double per;
    struct mf_err err = {0};
    if (mf_vqa_accuracy(&q, 1, &per, &r, &err) != MF_OK)
        fail_msg("%s", err.msg);
    double acc = r.accuracy;
    assert_true(fabs(per - acc) < 1e-12);
    mf_vqa_result_free(&r);
    return acc;
}

static void test_accuracy(void **state)
{
    (void)state;
    const char *same[10] = {"yes", "yes", "yes", "yes", "yes", "yes", "yes", "yes", "yes", "yes"};
    assert_true(fabs(acc1(same, 10, "yes") - 100) < 1e-12);
    assert_true(fabs(acc1(same, 10, " yes\n") - 100) < 1e-12); /* whitespace always stripped */
    assert_true(acc1(same, 10, "Yes") == 0);                   /* identical answers: no normalisation */
    assert_true(acc1(same, 10, "no") == 0);
    const char *three[10] = {"2", "2", "2", "3", "3", "3", "3", "3", "3", "3"};
    /* the three "2" subsets see 2 matches (2/3), the seven others 3 (1): (3 * 2/3 + 7) / 10 */
    assert_true(fabs(acc1(three, 10, "2") - 90) < 1e-9);
    assert_true(fabs(acc1(three, 10, "two") - 90) < 1e-9); /* normalised: answers differ */
    assert_true(fabs(acc1(three, 10, "3") - 100) < 1e-9);
    const char *one[10] = {"cat", "dog", "dog", "dog", "dog", "dog", "dog", "dog", "dog", "dog"};
    assert_true(fabs(acc1(one, 10, "Cat.") - 30) < 1e-9); /* 9 subsets with 1 match / 3, 1 with none */
    const char *two[10] = {"red", "red", "blue", "blue", "blue", "blue", "blue", "blue", "blue", "blue"};
    assert_true(fabs(acc1(two, 10, "the red") - 100 * (2 * (1.0 / 3) + 8 * (2.0 / 3)) / 10) < 1e-9);
    const char *ws[3] = {"  dog\t", "dog", "dog\n"}; /* identical once stripped */
    assert_true(fabs(acc1(ws, 3, "dog") - 100 * (2.0 / 3)) < 1e-9); /* 3 answers: 2 matches max */
    const char *digits[4] = {"1,000", "1000", "one thousand", "1000"};
    /* normalised: "1000" x3 and "1 thousand"; each subset leaving a "1000" out sees 2 matches */
    assert_true(fabs(acc1(digits, 4, "1000") - 100 * (3 * (2.0 / 3) + 1) / 4) < 1e-9);
}

static void test_types_and_errors(void **state)
{
    (void)state;
    const char *col[10] = {"red", "red", "red", "red", "red", "red", "red", "red", "red", "red"};
    const char *cnt[10] = {"cat", "dog", "dog", "dog", "dog", "dog", "dog", "dog", "dog", "dog"};
    struct mf_vqa_question q[3] = {
        {.answers = col, .n_answers = 10, .prediction = "red", .question_type = "what color", .answer_type = "other"},
        {.answers = cnt, .n_answers = 10, .prediction = "cat", .question_type = "how many", .answer_type = "number"},
        {.answers = col, .n_answers = 10, .prediction = "blue", .question_type = "what color", .answer_type = "other"},
    };
    struct mf_vqa_result r;
    double per[3];
    struct mf_err err = {0};
    assert_int_equal(mf_vqa_accuracy(q, 3, per, &r, &err), MF_OK);
    assert_int_equal(r.n_questions, 3);
    assert_true(fabs(r.accuracy - 130.0 / 3) < 1e-9);
    assert_int_equal(r.n_types, 2);
    assert_string_equal(r.per_type[0].name, "what color");
    assert_int_equal(r.per_type[0].n, 2);
    assert_true(fabs(r.per_type[0].accuracy - 50) < 1e-9);
    assert_string_equal(r.per_type[1].name, "how many");
    assert_true(fabs(r.per_type[1].accuracy - 30) < 1e-9);
    assert_int_equal(r.n_answer_types, 2);
    assert_string_equal(r.per_answer_type[1].name, "number");
    assert_true(fabs(per[0] - 100) < 1e-12 && fabs(per[1] - 30) < 1e-9 && per[2] == 0);
    mf_vqa_result_free(&r);

    q[1].n_answers = 0;
    assert_int_equal(mf_vqa_accuracy(q, 3, NULL, &r, &err), MF_ERR_ARG);
    assert_non_null(strstr(err.msg, "question 1"));
    q[1].n_answers = 10;
    q[2].prediction = NULL;
    assert_int_equal(mf_vqa_accuracy(q, 3, NULL, &r, &err), MF_ERR_ARG);
    q[2].prediction = "bad \xc3";
    assert_int_equal(mf_vqa_accuracy(q, 3, NULL, &r, &err), MF_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "question 2"));
    assert_int_equal(mf_vqa_accuracy(q, 0, NULL, &r, &err), MF_ERR_ARG);
    assert_null(r.per_type);

    /* allocation failures: NOMEM and nothing leaked (ASan build) until it succeeds */
    q[2].prediction = "blue";
    int fails = 0;
    for (long k = 0; k < 1000; k++) {
        mf_alloc_fail_after(k);
        enum mf_status st = mf_vqa_accuracy(q, 3, NULL, &r, &err);
        mf_alloc_fail_after(-1);
        if (st == MF_OK) {
            assert_true(fabs(r.accuracy - 130.0 / 3) < 1e-9);
            mf_vqa_result_free(&r);
            break;
        }
        assert_int_equal(st, MF_ERR_NOMEM);
        fails++;
    }
    assert_true(fails > 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_types_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
