/*
 * tests/eval/test_capmetrics.c: caption metrics (src/eval/capmetrics.c) and the COCO tokenisation
 * (src/eval/captok.c).
 *
 * Golden: tests/golden/capmetrics/sets.json from tests/golden/gen_capmetrics.py, an independent
 * numpy re-implementation of pycocoevalcap's Bleu(closest)/Rouge/Cider scorers, on tokenised sets
 * with repeated n-grams, empty and one-word candidates, candidates longer than their references,
 * one to six references, an empty reference, a one-image corpus and seeded random corpora: corpus
 * BLEU-1..4, ROUGE-L, CIDEr-D and every per-image score within 1e-6, both pretokenized and through
 * the tokenizer (identity on these sets), and again after turning each candidate and reference
 * into "Raw text, like this." (capital, comma after the first word, final period).
 * Hand-made: tokenizer cases (PTB clitics, brackets kept as -lrb-, numbers, quotes, Americanize,
 * escapes, Unicode lower case), order invariance, errors (no reference, reference out of range,
 * invalid UTF-8 naming the image, no image, short buffer) and an allocation-failure sweep.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "core/common.h"
#include "multiflow/eval.h"

struct golden_set {
    const char *name;
    int64_t n_images, n_refs;
    const char **cand, **ref;
    int64_t *ref_image;
    double bleu[4], rouge_l, cider;
    double *per_image; /* (n_images, 6) */
};

static json_t *load_golden(void)
{
    json_error_t jerr;
    json_t *doc = json_load_file(mf_test_path("tests/golden/capmetrics/sets.json"), 0, &jerr);
    if (!doc)
        fail_msg("sets.json: %s (line %d)", jerr.text, jerr.line);
    return doc;
}

/* Fills g from one JSON set (strings point into the JSON document). */
static void parse_set(json_t *js, struct golden_set *g)
{
    json_t *images = json_object_get(js, "images");
    g->name = json_string_value(json_object_get(js, "name"));
    g->n_images = (int64_t)json_array_size(images);
    g->n_refs = 0;
    size_t i;
    json_t *im;
    json_array_foreach(images, i, im) g->n_refs += (int64_t)json_array_size(json_object_get(im, "refs"));
    g->cand = calloc((size_t)g->n_images, sizeof *g->cand);
    g->ref = calloc((size_t)g->n_refs + 1, sizeof *g->ref);
    g->ref_image = calloc((size_t)g->n_refs + 1, sizeof *g->ref_image);
    g->per_image = calloc((size_t)g->n_images * MF_CAPTION_PER_IMAGE, sizeof *g->per_image);
    int64_t r = 0;
    json_array_foreach(images, i, im) {
        g->cand[i] = json_string_value(json_object_get(im, "candidate"));
        size_t k;
        json_t *s;
        json_array_foreach(json_object_get(im, "refs"), k, s) {
            g->ref[r] = json_string_value(s);
            g->ref_image[r++] = (int64_t)i;
        }
        json_t *row = json_array_get(json_object_get(js, "per_image"), i);
        for (int m = 0; m < MF_CAPTION_PER_IMAGE; m++)
            g->per_image[i * MF_CAPTION_PER_IMAGE + m] = json_real_value(json_array_get(row, (size_t)m));
    }
    for (int k = 0; k < 4; k++)
        g->bleu[k] = json_real_value(json_array_get(json_object_get(js, "bleu"), (size_t)k));
    g->rouge_l = json_number_value(json_object_get(js, "rouge_l"));
    g->cider = json_number_value(json_object_get(js, "cider"));
}

static void free_set(struct golden_set *g)
{
    free(g->cand);
    free(g->ref);
    free(g->ref_image);
    free(g->per_image);
}

static double close_to(const char *what, const char *set, double got, double want)
{
    double d = fabs(got - want);
    if (d > 1e-6 * fmax(1.0, fabs(want)))
        fail_msg("%s %s: got %.12g, want %.12g", set, what, got, want);
    return d;
}

static void run_and_compare(const struct golden_set *g, const char *const *cand, const char *const *ref,
                            bool pretok, const char *label)
{
    struct mf_caption_set cs = {.n_images = g->n_images, .candidate = cand, .n_refs = g->n_refs, .ref = ref,
                                .ref_image = g->ref_image, .pretokenized = pretok};
    struct mf_caption_metrics m;
    struct mf_err err = {0};
    double *per = calloc((size_t)g->n_images * MF_CAPTION_PER_IMAGE, sizeof *per);
    if (mf_caption_metrics(&cs, &m, per, &err) != MF_OK)
        fail_msg("%s %s: %s", g->name, label, err.msg);
    assert_int_equal(m.n_images, g->n_images);
    double worst = 0;
    for (int k = 0; k < 4; k++)
        worst = fmax(worst, close_to("BLEU", g->name, m.bleu[k], g->bleu[k]));
    worst = fmax(worst, close_to("ROUGE-L", g->name, m.rouge_l, g->rouge_l));
    worst = fmax(worst, close_to("CIDEr-D", g->name, m.cider, g->cider));
    for (int64_t i = 0; i < g->n_images * MF_CAPTION_PER_IMAGE; i++)
        worst = fmax(worst, close_to("per-image score", g->name, per[i], g->per_image[i]));
    printf("  %-20s %-10s BLEU-4 %.6f ROUGE-L %.6f CIDEr-D %.6f  max |diff| %.2e\n", g->name, label, m.bleu[3],
           m.rouge_l, m.cider, worst);
    free(per);
}

/* "word rest" -> "Word, rest." (empty stays "."): what the tokenizer must undo. */
static char *rawify(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(n + 4);
    const char *sp = strchr(s, ' ');
    size_t first = sp ? (size_t)(sp - s) : n;
    memcpy(o, s, first);
    o[first] = '\0';
    if (n)
        o[0] = (char)(o[0] >= 'a' && o[0] <= 'z' ? o[0] - 32 : o[0]);
    if (sp)
        strcat(o, ",");
    strcat(o, s + first);
    strcat(o, ".");
    return o;
}

static void test_golden(void **state)
{
    (void)state;
    json_t *doc = load_golden();
    json_t *sets = json_object_get(doc, "sets");
    assert_true(json_array_size(sets) >= 6);
    size_t i;
    json_t *js;
    json_array_foreach(sets, i, js) {
        struct golden_set g;
        parse_set(js, &g);
        run_and_compare(&g, g.cand, g.ref, true, "pretok");
        run_and_compare(&g, g.cand, g.ref, false, "tokenized");
        const char **rc = calloc((size_t)g.n_images, sizeof *rc), **rr = calloc((size_t)g.n_refs + 1, sizeof *rr);
        for (int64_t k = 0; k < g.n_images; k++)
            rc[k] = rawify(g.cand[k]);
        for (int64_t k = 0; k < g.n_refs; k++)
            rr[k] = rawify(g.ref[k]);
        run_and_compare(&g, rc, rr, false, "raw");
        for (int64_t k = 0; k < g.n_images; k++)
            free((void *)rc[k]);
        for (int64_t k = 0; k < g.n_refs; k++)
            free((void *)rr[k]);
        free(rc);
        free(rr);
        free_set(&g);
    }
    json_decref(doc);
}

/* Reversing the image order changes no score (beyond summation order). */
static void test_order_invariance(void **state)
{
    (void)state;
    json_t *doc = load_golden();
    struct golden_set g;
    parse_set(json_array_get(json_object_get(doc, "sets"), 5), &g);
    const char **cand = calloc((size_t)g.n_images, sizeof *cand);
    int64_t *ri = calloc((size_t)g.n_refs, sizeof *ri);
    for (int64_t k = 0; k < g.n_images; k++)
        cand[k] = g.cand[g.n_images - 1 - k];
    for (int64_t r = 0; r < g.n_refs; r++)
        ri[r] = g.n_images - 1 - g.ref_image[r];
    struct mf_caption_set a = {.n_images = g.n_images, .candidate = g.cand, .n_refs = g.n_refs, .ref = g.ref,
                               .ref_image = g.ref_image, .pretokenized = true};
    struct mf_caption_set b = a;
    b.candidate = cand;
    b.ref_image = ri;
    struct mf_caption_metrics ma, mb;
    struct mf_err err = {0};
    assert_int_equal(mf_caption_metrics(&a, &ma, NULL, &err), MF_OK);
    assert_int_equal(mf_caption_metrics(&b, &mb, NULL, &err), MF_OK);
    for (int k = 0; k < 4; k++)
        assert_true(fabs(ma.bleu[k] - mb.bleu[k]) < 1e-12);
    assert_true(fabs(ma.rouge_l - mb.rouge_l) < 1e-12);
    assert_true(fabs(ma.cider - mb.cider) < 1e-12);
    free(cand);
    free(ri);
    free_set(&g);
    json_decref(doc);
}

static void expect_tokens(const char *in, const char *want)
{
    char out[512];
    size_t len = 0;
    struct mf_err err = {0};
    if (mf_caption_tokenize(in, out, sizeof out, &len, &err) != MF_OK)
        fail_msg("tokenize '%s': %s", in, err.msg);
    if (strcmp(out, want) != 0)
        fail_msg("tokenize '%s': got '%s', want '%s'", in, out, want);
    assert_int_equal(len, strlen(want));
}

static void test_tokenize(void **state)
{
    (void)state;
    expect_tokens("A man riding a wave on top of a surfboard.", "a man riding a wave on top of a surfboard");
    expect_tokens("Two dogs, playing in the snow!", "two dogs playing in the snow");
    expect_tokens("The dog's toy isn't red", "the dog 's toy is n't red");
    expect_tokens("I can't believe it's a cat; I'm sure.", "i ca n't believe it 's a cat i 'm sure");
    expect_tokens("They're here, we've left, you'll see, he'd go", "they 're here we 've left you 'll see he 'd go");
    expect_tokens("don\xe2\x80\x99t", "do n't"); /* don’t */
    expect_tokens("dog 's bowl , do n't", "dog 's bowl do n't"); /* already tokenised text is stable */
    expect_tokens("A black-and-white photo of a T-shirt", "a black-and-white photo of a t-shirt");
    expect_tokens("a \"red\" car (old) [new] {x}", "a red car -lrb- old -rrb- -lsb- new -rsb- -lcb- x -rcb-");
    expect_tokens("3.5 inches, 1,000 people at 4:30", "3.5 inches 1,000 people at 4:30");
    expect_tokens("Wait... what?! -- ok - yes \xe2\x80\x94 no\xe2\x80\xa6", "wait what ok yes no");
    expect_tokens("U.S. flag and Mr. Smith, e.g. a dog.", "u.s. flag and mr. smith e.g. a dog");
    expect_tokens("the dogs' bowls 'quoted' `tick`", "the dogs bowls quoted tick");
    expect_tokens("\xe2\x80\x9cHello\xe2\x80\x9d said \xe2\x80\x98she\xe2\x80\x99", "hello said she");
    expect_tokens("cannot gonna gotta wanna gimme lemme", "can not gon na got ta wan na gim me lem me");
    expect_tokens("o'clock rock'n'roll", "o'clock rock'n'roll");
    expect_tokens("and/or 2*3 $5 and 10% @home #1", "and\\/or 2 \\* 3 $ 5 and 10 % @ home # 1");
    expect_tokens("A grey cat, a Grey cat, colourful colours of the harbour", "a gray cat a grey cat colorful colors of the harbor");
    expect_tokens("four hours of your contour detours", "four hours of your contour detours");
    expect_tokens("haemoglobin anaemia programmes programme", "hemoglobin anemia programs program");
    expect_tokens("  multiple   spaces\tand\nnewlines\r ", "multiple spaces and newlines");
    expect_tokens("\xc3\x89\x43OLE caf\xc3\xa9 \xce\xa3\xce\x9f\xce\xa6\xce\x99\xce\x91", "\xc3\xa9\x63ole caf\xc3\xa9 \xcf\x83\xce\xbf\xcf\x86\xce\xb9\xce\xb1");
    expect_tokens("", "");
    expect_tokens(".", "");
    expect_tokens(" , ; : ? ! ... -- ", "");
    expect_tokens(".5 of a", ".5 of a");

    /* invalid UTF-8 and a short buffer */
    char out[8];
    struct mf_err err = {0};
    assert_int_equal(mf_caption_tokenize("ab\xff", out, sizeof out, NULL, &err), MF_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "UTF-8"));
    assert_int_equal(mf_caption_tokenize("a long caption here", out, sizeof out, NULL, &err), MF_ERR_RANGE);
    /* the documented bound suffices for the worst case: brackets become five bytes plus a space */
    char big[MF_CAPTION_TOKENS_SIZE(6)];
    assert_int_equal(mf_caption_tokenize("((((((", big, sizeof big, NULL, &err), MF_OK);
    assert_string_equal(big, "-lrb- -lrb- -lrb- -lrb- -lrb- -lrb-");
}

/* Worked by hand: two images, the first candidate equal to its only reference. */
static void test_hand_values(void **state)
{
    (void)state;
    const char *cand[2] = {"a dog runs", "a cat"};
    const char *ref[2] = {"a dog runs", "a cat sleeps"};
    int64_t ri[2] = {0, 1};
    struct mf_caption_set s = {.n_images = 2, .candidate = cand, .n_refs = 2, .ref = ref, .ref_image = ri};
    struct mf_caption_metrics m;
    double per[2 * MF_CAPTION_PER_IMAGE];
    struct mf_err err = {0};
    assert_int_equal(mf_caption_metrics(&s, &m, per, &err), MF_OK);
    /* image 0: BLEU 1 (all n up to 3; 4-grams: 0 of 0 -> (1e-15)/(1e-9) factor) */
    assert_true(fabs(per[0] - 1) < 1e-9 && fabs(per[1] - 1) < 1e-9 && fabs(per[2] - 1) < 1e-9);
    assert_true(fabs(per[3] - pow(1e-6, 0.25)) < 1e-6); /* no 4-gram: the 1e-15 / 1e-9 factor, 4th root */
    assert_true(fabs(per[4] - 1) < 1e-12); /* ROUGE-L: identical */
    /* image 1: LCS 2, P = 1, R = 2/3: F = 2.44 * 2/3 / (2/3 + 1.44) */
    double f = (1 + 1.44) * (2.0 / 3) / (2.0 / 3 + 1.44);
    assert_true(fabs(per[MF_CAPTION_PER_IMAGE + 4] - f) < 1e-12);
    /* corpus brevity: 5 candidate words vs closest reference lengths 3 + 3 = 6 */
    double p1 = (5 + 1e-15) / (5 + 1e-9), bp = exp(1 - 1 / ((5 + 1e-15) / (6 + 1e-9)));
    assert_true(fabs(m.bleu[0] - p1 * bp) < 1e-12);
    /* CIDEr-D of image 0: "a" is in both images' references (weight 0), every other n-gram is
     * unique (weight log 2): cosine 1 for n = 1, 2, 3; no 4-gram (zero norms: 0); 10 * 3/4 */
    assert_true(fabs(per[5] - 7.5) < 1e-9);
}

static void test_errors(void **state)
{
    (void)state;
    const char *cand[2] = {"a dog", "a cat"};
    const char *names[2] = {"img/0.png", "img/1.png"};
    const char *ref[2] = {"a dog", "a dog runs"};
    int64_t ri[2] = {0, 0};
    struct mf_caption_set s = {.n_images = 2, .candidate = cand, .image = names, .n_refs = 2, .ref = ref,
                               .ref_image = ri};
    struct mf_caption_metrics m;
    struct mf_err err = {0};
    assert_int_equal(mf_caption_metrics(&s, &m, NULL, &err), MF_ERR_MISSING);
    assert_non_null(strstr(err.msg, "img/1.png"));
    ri[1] = 2;
    assert_int_equal(mf_caption_metrics(&s, &m, NULL, &err), MF_ERR_RANGE);
    ri[1] = 1;
    const char *bad[2] = {"a dog", "a \xc3"};
    s.candidate = bad;
    assert_int_equal(mf_caption_metrics(&s, &m, NULL, &err), MF_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "img/1.png"));
    assert_non_null(strstr(err.msg, "candidate"));
    s.candidate = cand;
    s.n_images = 0;
    assert_int_equal(mf_caption_metrics(&s, &m, NULL, &err), MF_ERR_ARG);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    const char *cand[3] = {"A dog runs.", "", "two cats on a couch"};
    const char *ref[5] = {"a dog is running", "the dog runs", "a bird", "two cats sleep", "cats on a red couch"};
    int64_t ri[5] = {0, 0, 1, 2, 2};
    struct mf_caption_set s = {.n_images = 3, .candidate = cand, .n_refs = 5, .ref = ref, .ref_image = ri};
    struct mf_caption_metrics want, m;
    struct mf_err err = {0};
    assert_int_equal(mf_caption_metrics(&s, &want, NULL, &err), MF_OK);
    int fails = 0;
    for (long k = 0; k < 10000; k++) {
        mf_alloc_fail_after(k);
        enum mf_status st = mf_caption_metrics(&s, &m, NULL, &err);
        mf_alloc_fail_after(-1);
        if (st == MF_OK) {
            assert_true(m.cider == want.cider && m.bleu[3] == want.bleu[3]);
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
        cmocka_unit_test(test_golden),        cmocka_unit_test(test_order_invariance),
        cmocka_unit_test(test_tokenize),      cmocka_unit_test(test_hand_values),
        cmocka_unit_test(test_errors),        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
