/* Caption generation (greedy and beam search) against the PyTorch reference
 * (tests/golden/gen_generate.py, blip_ref.generate_*: transformers 4.15 rules, full recompute per
 * step in float64) on the tiny fixtures: HF captioning layout, original pretraining layout, and an
 * original captioning checkpoint whose [SEP] bias makes captions end early (min length forcing).
 * Ids must match exactly; each case also runs image by image (batch independence) and with 1 and
 * 2 threads. Also: the WordPiece decoder and the option errors. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiflow/generate.h"
#include "multiflow/safetensors.h"
#include "text/wordpiece.h"

static struct mf_model *load(const char *dir)
{
    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_model_opts o = mf_model_opts_default();
    if (mf_model_load(mf_test_path(dir), &o, &m, &err) != MF_OK)
        fail_msg("load %s: %s", dir, err.msg);
    return m;
}

/* Runs every case of tests/golden/generate/<fixture>.json on model dir. */
static void run_golden(const char *fixture, const char *dir)
{
    char path[512];
    struct mf_err err = {0};
    snprintf(path, sizeof path, "tests/golden/generate/%s.json", fixture);
    json_error_t je;
    json_t *doc = json_load_file(mf_test_path(path), 0, &je);
    if (!doc)
        fail_msg("%s: %s", path, je.text);
    snprintf(path, sizeof path, "tests/golden/generate/%s.images.safetensors", fixture);
    struct mf_safetensors *st = NULL;
    if (mf_safetensors_open(mf_test_path(path), &st, &err) != MF_OK)
        fail_msg("%s", err.msg);
    const struct mf_st_entry *ie = mf_safetensors_find(st, "images");
    assert_non_null(ie);
    const int64_t B = ie->shape[0];
    const float *images = ie->data;
    struct mf_model *m = load(dir);
    const int64_t img_floats = ie->shape[1] * ie->shape[2] * ie->shape[3];

    json_t *cases = json_object_get(doc, "cases");
    size_t ci;
    json_t *c;
    int checked = 0, with_sep = 0;
    for (int nt = 1; nt <= 2; nt++) {
        struct mf_session *s = NULL;
        assert_int_equal(mf_session_create(m, nt, &s, &err), MF_OK);
        json_array_foreach(cases, ci, c) {
            struct mf_generate_opts go = mf_generate_opts_default();
            go.num_beams = (int)json_integer_value(json_object_get(c, "beams"));
            go.max_length = (int)json_integer_value(json_object_get(c, "max_len"));
            go.min_length = (int)json_integer_value(json_object_get(c, "min_len"));
            go.prompt = json_string_value(json_object_get(c, "prompt"));
            json_t *want = json_object_get(c, "images");
            assert_int_equal((int64_t)json_array_size(want), B);
            int32_t *ids = calloc((size_t)(B * go.max_length), sizeof(int32_t)), *n = calloc((size_t)B, sizeof(int32_t));
            int32_t *ids1 = calloc((size_t)go.max_length, sizeof(int32_t));
            float *score = calloc((size_t)B, sizeof(float));
            /* all images in one call, then one by one: the same captions */
            if (mf_generate(s, images, B, &go, ids, n, score, &err) != MF_OK)
                fail_msg("%s case %zu: %s", fixture, ci, err.msg);
            for (int64_t b = 0; b < B; b++) {
                json_t *w = json_array_get(want, (size_t)b), *wids = json_object_get(w, "ids");
                int32_t n1 = 0;
                float sc1 = 0;
                if (mf_generate(s, images + b * img_floats, 1, &go, ids1, &n1, &sc1, &err) != MF_OK)
                    fail_msg("%s", err.msg);
                printf("%s threads %d case %zu (beams %d, max %d, min %d, prompt '%s') image %lld: %d tokens, "
                       "score %.6f (ref %.6f)\n",
                       fixture, nt, ci, go.num_beams, go.max_length, go.min_length, go.prompt, (long long)b, n[b],
                       score[b], json_real_value(json_object_get(w, "score")));
                assert_int_equal(n[b], (int)json_array_size(wids));
                assert_int_equal(n1, n[b]);
                for (int32_t i = 0; i < n[b]; i++) {
                    if (ids[b * go.max_length + i] != (int32_t)json_integer_value(json_array_get(wids, (size_t)i)))
                        fail_msg("%s case %zu image %lld: token %d is %d, reference %lld", fixture, ci, (long long)b, i,
                                 ids[b * go.max_length + i], json_integer_value(json_array_get(wids, (size_t)i)));
                    assert_int_equal(ids1[i], ids[b * go.max_length + i]);
                }
                assert_true(fabs(score[b] - json_real_value(json_object_get(w, "score"))) <=
                            1e-4 * fmax(1.0, fabs(json_real_value(json_object_get(w, "score")))));
                /* GEMM bits may depend on the batch's row count: scores agree to rounding, ids exactly */
                assert_true(fabs(sc1 - score[b]) <= 1e-5 * fmax(1.0, fabs(score[b])));
                char text[1024];
                assert_int_equal(mf_model_decode(m, ids + b * go.max_length, n[b], text, sizeof text, &err), MF_OK);
                assert_string_equal(text, json_string_value(json_object_get(w, "caption")));
                checked++;
                with_sep += n[b] > 0 && ids[b * go.max_length + n[b] - 1] == mf_model_get_info(m)->sep_id;
            }
            free(ids);
            free(n);
            free(ids1);
            free(score);
        }
        mf_session_free(s);
    }
    printf("%s: %d captions checked, %d ended on [SEP]\n", fixture, checked, with_sep);
    mf_model_free(m);
    mf_safetensors_close(st);
    json_decref(doc);
}

static void test_hf_cap(void **st) { (void)st; run_golden("hf-cap-f32", "tests/golden/blip/hf-cap-f32"); }
static void test_orig(void **st) { (void)st; run_golden("orig-f32", "tests/golden/blip/orig-f32"); }
static void test_orig_cap_sep(void **st)
{
    (void)st;
    run_golden("orig-cap-sep-f16", "tests/golden/generate/orig-cap-sep-f16");
}

static void test_prompt_and_errors(void **st)
{
    (void)st;
    struct mf_err err = {0};
    struct mf_model *m = load("tests/golden/blip/orig-f32");
    int32_t p[8];
    int n = 0;
    /* default prompt of the original layout: [DEC] a picture of */
    assert_int_equal(mf_generate_prompt(m, NULL, p, 8, &n, &err), MF_OK);
    assert_int_equal(n, 4);
    assert_int_equal(p[0], mf_model_get_info(m)->first_token_dec);
    assert_int_equal(mf_generate_prompt(m, "", p, 8, &n, &err), MF_OK);
    assert_int_equal(n, 1);
    assert_int_equal(mf_generate_prompt(m, NULL, p, 3, &n, &err), MF_ERR_RANGE);

    struct mf_session *s = NULL;
    assert_int_equal(mf_session_create(m, 1, &s, &err), MF_OK);
    float img[3 * 64 * 64] = {0};
    int32_t ids[64], cnt;
    struct mf_generate_opts go = mf_generate_opts_default();
    go.max_length = 4; /* the prompt alone takes 4 */
    assert_int_equal(mf_generate(s, img, 1, &go, ids, &cnt, NULL, &err), MF_ERR_ARG);
    assert_non_null(strstr(err.msg, "prompt"));
    go = mf_generate_opts_default();
    go.num_beams = 0;
    assert_int_equal(mf_generate(s, img, 1, &go, ids, &cnt, NULL, &err), MF_ERR_ARG);
    go = mf_generate_opts_default();
    go.max_length = 65; /* 64 positions */
    assert_int_equal(mf_generate(s, img, 1, &go, ids, &cnt, NULL, &err), MF_ERR_ARG);
    go = mf_generate_opts_default();
    go.min_length = -1;
    assert_int_equal(mf_generate(s, img, 1, &go, ids, &cnt, NULL, &err), MF_ERR_ARG);
    mf_session_free(s);
    mf_model_free(m);

    /* a checkpoint without a decoder */
    m = load("tests/golden/blip/hf-itm-f32");
    assert_int_equal(mf_session_create(m, 1, &s, &err), MF_OK);
    go = mf_generate_opts_default();
    assert_int_equal(mf_generate(s, img, 1, &go, ids, &cnt, NULL, &err), MF_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "decoder"));
    mf_session_free(s);
    mf_model_free(m);
}

static void test_decode(void **st)
{
    (void)st;
    static const char vocab[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\ndog\n##s\n.\n,\n'\ns\nrun\n##ning\n";
    struct mf_err err = {0};
    struct mf_vocab *v = NULL;
    assert_int_equal(mf_vocab_parse(vocab, sizeof vocab - 1, "vocab", &v, &err), MF_OK);
    assert_int_equal(mf_vocab_add_blip_tokens(v, &err), MF_OK);
    char out[64];
    /* [DEC] a dog ##s [UNK] run ##ning , a dog ' s . [SEP] */
    const int32_t ids[] = {14, 5, 6, 7, 1, 12, 13, 9, 5, 6, 10, 11, 8, 3};
    assert_int_equal(mf_wordpiece_decode(v, ids, 14, out, sizeof out, &err), MF_OK);
    assert_string_equal(out, "a dogs running, a dog's.");
    /* a leading continuation loses its ##; nothing but specials gives "" */
    const int32_t ids2[] = {7, 6}, ids3[] = {0, 3, 15};
    assert_int_equal(mf_wordpiece_decode(v, ids2, 2, out, sizeof out, &err), MF_OK);
    assert_string_equal(out, "s dog");
    assert_int_equal(mf_wordpiece_decode(v, ids3, 3, out, sizeof out, &err), MF_OK);
    assert_string_equal(out, "");
    const int32_t bad[] = {99};
    assert_int_equal(mf_wordpiece_decode(v, bad, 1, out, sizeof out, &err), MF_ERR_RANGE);
    assert_int_equal(mf_wordpiece_decode(v, ids, 14, out, 8, &err), MF_ERR_RANGE);
    mf_vocab_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hf_cap),           cmocka_unit_test(test_orig),   cmocka_unit_test(test_orig_cap_sep),
        cmocka_unit_test(test_prompt_and_errors), cmocka_unit_test(test_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
