/* models/init.c: the random BLIP loads as an original-layout checkpoint with the configured shapes,
 * follows BLIP's init rules (LayerNorm 1/0, biases 0, Linear/Embedding std .02, temp 0.07,
 * normalised queue columns, momentum copies equal to the online tensors, the decoder tied to the
 * encoder), is the same bytes for the same seed, and rejects bad architecture files by name. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model_impl.h"
#include "multiflow/model.h"
#include "testutil.h"

static const char *write_init(const char *config, uint64_t seed, enum mf_dtype dt)
{
    struct mf_err err = {0};
    struct mf_blip_arch a;
    static char path[8][512];
    static int slot;
    char *p = path[slot++ % 8];
    snprintf(p, 512, "%s/model.safetensors", mf_test_tmpdir());
    assert_int_equal(mf_blip_arch_load(config, &a, &err), MF_OK);
    assert_int_equal(mf_blip_arch_set_vocab(&a, mf_test_path("data/models/blip-tiny/vocab.txt"), &err), MF_OK);
    assert_int_equal(a.vocab, 107);
    if (mf_blip_init_write(&a, seed, dt, p, &err) != MF_OK)
        fail_msg("%s", err.msg);
    return p;
}

static const struct mf_model_tensor *find(const struct mf_model *m, const char *name)
{
    for (size_t i = 0; i < mf_model_n_tensors(m); i++)
        if (strcmp(mf_model_tensor_at(m, i)->name, name) == 0)
            return mf_model_tensor_at(m, i);
    return NULL;
}

static int64_t numel(const struct mf_model_tensor *t) { return (int64_t)(t->nbytes / mf_dtype_size(t->dtype)); }

static void test_loads_with_blip_rules(void **state)
{
    (void)state;
    const char *p = write_init(mf_test_path("data/configs/blip-test.json"), 7, MF_DTYPE_F32);
    struct mf_err err = {0};
    struct mf_model_opts o = mf_model_opts_default();
    o.vocab_path = mf_test_path("data/models/blip-tiny/vocab.txt");
    struct mf_model *m = NULL;
    if (mf_model_load(p, &o, &m, &err) != MF_OK)
        fail_msg("%s", err.msg);
    const struct mf_model_info *info = mf_model_get_info(m);
    assert_int_equal(info->layout, MF_LAYOUT_BLIP_ORIG);
    assert_true(info->has_vision && info->has_text_encoder && info->has_decoder && info->has_itc && info->has_itm &&
                info->has_momentum);
    assert_int_equal(info->vision.d, 64);
    assert_int_equal(info->vision.n_tok, 17);
    assert_int_equal(info->vision.n_layer, 2);
    assert_int_equal(info->text.vocab, 107);
    assert_int_equal(info->text.max_pos, 40);
    assert_int_equal(info->proj_dim, 32);
    /* the decoder is tied to the encoder as BLIP ties it: embeddings, cross-attention, FFN, LM weight */
    assert_ptr_equal(m->dec.word, m->text.word);
    assert_ptr_equal(m->dec.layers[1].inter.w, m->text.layers[1].inter.w);
    assert_ptr_equal(m->dec.layers[0].ck.w, m->text.layers[0].ck.w);
    assert_ptr_not_equal(m->dec.layers[0].q.w, m->text.layers[0].q.w);
    assert_ptr_equal(m->lm.dec_w, m->dec.word);
    assert_null(find(m, "text_decoder.bert.embeddings.word_embeddings.weight"));

    int n_copies = 0;
    for (size_t i = 0; i < mf_model_n_tensors(m); i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        const char *mm = strstr(t->name, "_m.");
        if (!mm)
            continue;
        char online[256];
        snprintf(online, sizeof online, "%.*s%s", (int)(mm - t->name), t->name, mm + 2);
        const struct mf_model_tensor *o2 = find(m, online);
        assert_non_null(o2);
        assert_int_equal(t->nbytes, o2->nbytes);
        assert_memory_equal(t->data, o2->data, t->nbytes);
        n_copies++;
    }
    assert_true(n_copies > 40);

    float temp;
    mf_convert_to_f32(&temp, find(m, "temp")->data, MF_DTYPE_F32, 1);
    assert_true(temp == 0.07f);
    const struct mf_model_tensor *q = find(m, "text_queue");
    assert_int_equal(q->shape[0], 32);
    assert_int_equal(q->shape[1], 64);
    const float *qv = q->data;
    for (int64_t c = 0; c < 64; c++) {
        double s = 0;
        for (int64_t r = 0; r < 32; r++)
            s += (double)qv[r * 64 + c] * qv[r * 64 + c];
        assert_true(fabs(sqrt(s) - 1.0) < 1e-5);
    }
    const struct mf_model_tensor *ptr = find(m, "queue_ptr");
    assert_int_equal(ptr->dtype, MF_DTYPE_I64);
    int64_t ptr0;
    memcpy(&ptr0, ptr->data, sizeof ptr0); /* the I64 tensor may sit at any offset of the file */
    assert_int_equal(ptr0, 0);

    /* LayerNorms 1/0, BERT/ViT biases 0, weights of std .02 with mean ~0 */
    const char *ones[] = {"visual_encoder.blocks.1.norm2.weight", "text_encoder.encoder.layer.0.output.LayerNorm.weight",
                          "text_decoder.cls.predictions.transform.LayerNorm.weight"};
    const char *zero[] = {"visual_encoder.blocks.1.norm2.bias", "visual_encoder.blocks.0.attn.qkv.bias",
                          "text_encoder.encoder.layer.1.intermediate.dense.bias", "text_decoder.cls.predictions.bias"};
    for (size_t k = 0; k < 3; k++)
        for (int64_t j = 0; j < numel(find(m, ones[k])); j++)
            assert_true(((const float *)find(m, ones[k])->data)[j] == 1.0f);
    for (size_t k = 0; k < 4; k++)
        for (int64_t j = 0; j < numel(find(m, zero[k])); j++)
            assert_true(((const float *)find(m, zero[k])->data)[j] == 0.0f);
    const char *std02[] = {"visual_encoder.blocks.0.mlp.fc1.weight", "text_encoder.encoder.layer.1.output.dense.weight",
                           "text_encoder.embeddings.word_embeddings.weight", "visual_encoder.pos_embed"};
    for (size_t k = 0; k < 4; k++) {
        const struct mf_model_tensor *t = find(m, std02[k]);
        const float *v = t->data;
        double s = 0, s2 = 0;
        const int64_t n = numel(t);
        for (int64_t j = 0; j < n; j++)
            s += v[j], s2 += (double)v[j] * v[j];
        const double mean = s / (double)n, sd = sqrt(s2 / (double)n - mean * mean);
        if (fabs(sd - 0.02) > 0.0015 || fabs(mean) > 0.002)
            fail_msg("%s: mean %g std %g, expected 0 and 0.02", std02[k], mean, sd);
    }
    /* patch conv: PyTorch's default, uniform within 1/sqrt(3 * 16 * 16) */
    const struct mf_model_tensor *pw = find(m, "visual_encoder.patch_embed.proj.weight");
    float mx = 0;
    for (int64_t j = 0; j < numel(pw); j++)
        mx = fmaxf(mx, fabsf(((const float *)pw->data)[j]));
    assert_true(mx <= 1.0f / sqrtf(768.0f) && mx > 0.9f / sqrtf(768.0f));
    mf_model_free(m);
}

static void test_deterministic(void **state)
{
    (void)state;
    const char *cfg = mf_test_path("data/configs/blip-test.json");
    size_t n1, n2, n3, n4;
    char *a = mf_test_read_file(write_init(cfg, 3, MF_DTYPE_BF16), &n1);
    char *b = mf_test_read_file(write_init(cfg, 3, MF_DTYPE_BF16), &n2);
    char *c = mf_test_read_file(write_init(cfg, 4, MF_DTYPE_BF16), &n3);
    char *d = mf_test_read_file(write_init(cfg, 3, MF_DTYPE_F32), &n4);
    assert_non_null(a);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    assert_int_equal(n1, n3);
    assert_memory_not_equal(a, c, n1);
    assert_true(n4 > n1 * 19 / 10); /* F32 is about twice BF16 (queue_ptr stays I64) */
    free(a), free(b), free(c), free(d);
}

static void expect_arch_error(const char *json, const char *needle)
{
    char path[512];
    snprintf(path, sizeof path, "%s/arch.json", mf_test_tmpdir());
    assert_int_equal(mf_test_write_file(path, json, strlen(json)), 0);
    struct mf_blip_arch a;
    struct mf_err err = {0};
    assert_int_not_equal(mf_blip_arch_load(path, &a, &err), MF_OK);
    if (!strstr(err.msg, needle))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

static void test_bad_arch(void **state)
{
    (void)state;
#define V "\"vision\": {\"width\": 64, \"layers\": 2, \"mlp\": 128, \"patch\": 16, \"image_size\": 64}"
#define T "\"text\": {\"width\": 64, \"layers\": 2, \"ffn\": 128, \"positions\": 40}"
    expect_arch_error("{" V ", " T ", \"embed_dim\": 32}", "queue_size");
    expect_arch_error("{" V ", " T ", \"embed_dim\": 32, \"queue_size\": 8, \"vocab\": 3}", "unknown key 'vocab'");
    expect_arch_error("{\"vision\": {\"width\": 128, \"heads\": 4, \"layers\": 2, \"mlp\": 128, \"patch\": 16, "
                      "\"image_size\": 64}, " T ", \"embed_dim\": 32, \"queue_size\": 8}",
                      "vision.heads 4");
    expect_arch_error("{\"vision\": {\"width\": 64, \"layers\": 2, \"mlp\": 128, \"patch\": 15, \"image_size\": 64}, " T
                      ", \"embed_dim\": 32, \"queue_size\": 8}",
                      "not a multiple");
    expect_arch_error("{" V ", \"text\": {\"width\": 64, \"layers\": 0, \"ffn\": 128, \"positions\": 40}, "
                      "\"embed_dim\": 32, \"queue_size\": 8}",
                      "text.layers");
    expect_arch_error("{" V ", " T ", \"embed_dim\": 32, \"queue_size\": 8", "line");
    struct mf_blip_arch a = {0};
    struct mf_err err = {0};
    assert_int_not_equal(mf_blip_arch_set_vocab(&a, "/nonexistent/vocab.txt", &err), MF_OK);
    assert_non_null(strstr(err.msg, "/nonexistent/vocab.txt"));
#undef V
#undef T
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loads_with_blip_rules),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_bad_arch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
