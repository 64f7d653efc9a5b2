/* models/pretrain.c and the trainer's pretraining options: the cosine schedule, training every
 * tower, and the saved run state: a checkpoint written after some steps loads with the trained
 * values (tied copies and the LM head's alias names included) and the evolved momentum state, and
 * a state file read into a fresh trainer restores the moments and the step exactly. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/grad.h"
#include "models/losses.h"
#include "models/momentum.h"
#include "models/pretrain.h"
#include "models/train.h"
#include "multiflow/eval.h"
#include "io/annotations.h"
#include "testutil.h"

static struct mf_model *load_tiny(void)
{
    struct mf_err err = {0};
    struct mf_model *m = NULL;
    if (mf_model_load(mf_test_path("data/models/blip-tiny"), NULL, &m, &err) != MF_OK)
        fail_msg("%s", err.msg);
    return m;
}

static void test_cosine_schedule(void **state)
{
    (void)state;
    struct mf_train_opts o = mf_train_opts_default();
    o.lr = 1e-3;
    o.min_lr = 1e-5;
    o.warmup_steps = 4;
    o.total_steps = 14;
    o.schedule = MF_LR_COSINE;
    assert_true(fabs(mf_train_lr_at(&o, 0) - 0.25e-3) < 1e-15);
    assert_true(fabs(mf_train_lr_at(&o, 3) - 1e-3) < 1e-15);
    assert_true(fabs(mf_train_lr_at(&o, 4) - 1e-3) < 1e-15);            /* cos(0) */
    assert_true(fabs(mf_train_lr_at(&o, 9) - (1e-5 + 0.99e-3 * 0.5)) < 1e-15); /* halfway: cos(pi/2) */
    assert_true(fabs(mf_train_lr_at(&o, 14) - 1e-5) < 1e-15);
    for (int64_t t = 4; t < 13; t++)
        assert_true(mf_train_lr_at(&o, t + 1) < mf_train_lr_at(&o, t));
    o.min_lr = 2e-3; /* above the peak */
    struct mf_trainer *tr = NULL;
    struct mf_err err = {0};
    struct mf_model *m = load_tiny();
    assert_int_equal(mf_trainer_create(m, NULL, &o, &tr, &err), MF_ERR_ARG);
    assert_non_null(strstr(err.msg, "minimum learning rate"));
    mf_model_free(m);
}

static const struct mf_model_tensor *find(const struct mf_model *m, const char *name)
{
    for (size_t i = 0; i < mf_model_n_tensors(m); i++)
        if (strcmp(mf_model_tensor_at(m, i)->name, name) == 0)
            return mf_model_tensor_at(m, i);
    return NULL;
}

static void test_save_and_resume(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_model *m = load_tiny();
    struct mf_session *s = NULL;
    struct mf_losses *L = NULL;
    struct mf_trainer *tr = NULL, *tr2 = NULL;
    struct mf_annotations *ann = NULL;
    struct mf_losses_opts lo = {.losses = MF_LOSS_ALL, .negatives = MF_ITM_NEG_HARDEST, .seed = 1};
    struct mf_train_opts to = mf_train_opts_default();
    to.lr = 1e-3;
    to.total_steps = 4;
    to.schedule = MF_LR_COSINE;
    to.all_towers = true;
    const int64_t B = 4, T = 16, R = mf_model_get_info(m)->vision.image_size;
    float images[4 * 3 * 64 * 64];
    int32_t ids[4 * 16], mask[4 * 16];
    assert_int_equal(R, 64);
    assert_int_equal(mf_annotations_load(mf_test_path("data/shapes/annotations.json"), mf_test_path("data/shapes"),
                                         &ann, &err),
                     MF_OK);
    assert_int_equal(mf_pairs_batch(m, ann, 0, B, T, images, ids, mask, &err), MF_OK);
    assert_int_equal(mf_session_create(m, 2, &s, &err), MF_OK);
    assert_int_equal(mf_losses_create(m, &lo, &L, &err), MF_OK);
    assert_int_equal(mf_trainer_create(m, NULL, &to, &tr, &err), MF_OK);
    /* the decoder's own tensors and the LM head train in pretraining */
    const int qi = (int)(find(m, "text_decoder.bert.encoder.layer.0.attention.self.query.weight") - mf_model_tensor_at(m, 0));
    const int lmi = (int)(find(m, "text_decoder.cls.predictions.transform.dense.weight") - mf_model_tensor_at(m, 0));
    assert_non_null(mf_trainer_values(tr)[qi]);
    assert_non_null(mf_trainer_values(tr)[lmi]);
    for (int step = 0; step < 2; step++) {
        struct mf_loss_values v;
        assert_int_equal(mf_losses_batch(L, s, (uint64_t)step, images, ids, mask, B, T, mf_trainer_grads(tr), &v, NULL,
                                         NULL, &err),
                         MF_OK);
        assert_int_equal(mf_trainer_step(tr, s, v.d_temp, NULL, &err), MF_OK);
        mf_losses_set_temp(L, mf_trainer_temp(tr));
    }
    const char *dir = mf_test_tmpdir();
    char mp[512], sp[512];
    snprintf(mp, sizeof mp, "%s/model.safetensors", dir);
    snprintf(sp, sizeof sp, "%s/state.safetensors", dir);
    const char *meta[] = {"k", "v"};
    assert_int_equal(mf_pretrain_write_model(m, tr, mf_losses_momentum(L), mp, meta, 1, &err), MF_OK);
    assert_int_equal(mf_pretrain_write_state(m, tr, sp, meta, 1, &err), MF_OK);

    /* the checkpoint: the trained values, tied copies = their owner, momentum and queues evolved */
    struct mf_model_opts mo = mf_model_opts_default();
    mo.vocab_path = mf_test_path("data/models/blip-tiny/vocab.txt");
    struct mf_model *m2 = NULL;
    if (mf_model_load(mp, &mo, &m2, &err) != MF_OK)
        fail_msg("%s", err.msg);
    const float *const *vals = mf_trainer_values(tr);
    const char *names[][2] = {
        {"visual_encoder.blocks.0.attn.qkv.weight", "visual_encoder.blocks.0.attn.qkv.weight"},
        {"text_decoder.bert.encoder.layer.1.intermediate.dense.weight", "text_encoder.encoder.layer.1.intermediate.dense.weight"},
        {"text_decoder.cls.predictions.decoder.weight", "text_encoder.embeddings.word_embeddings.weight"},
        {"text_decoder.cls.predictions.decoder.bias", "text_decoder.cls.predictions.bias"},
        {"temp", "temp"},
    };
    for (size_t k = 0; k < 5; k++) {
        const struct mf_model_tensor *t = find(m2, names[k][0]), *o = find(m, names[k][1]);
        assert_non_null(t);
        assert_int_equal(t->dtype, MF_DTYPE_F32);
        const float *want = vals[o - mf_model_tensor_at(m, 0)];
        assert_non_null(want);
        assert_memory_equal(t->data, want, t->nbytes);
    }
    const struct mf_momentum *mom = mf_losses_momentum(L);
    const struct mf_model_tensor *vm = find(m2, "vision_proj_m.weight");
    assert_memory_equal(vm->data, mf_momentum_tensor(mom, (size_t)(find(m, "vision_proj_m.weight") - mf_model_tensor_at(m, 0))),
                        vm->nbytes);
    int64_t ptr2;
    memcpy(&ptr2, find(m2, "queue_ptr")->data, sizeof ptr2); /* I64 data may be unaligned in the file */
    assert_int_equal(ptr2, mf_momentum_queue_ptr(mom));
    const struct mf_model_tensor *qt = find(m2, "text_queue");
    const int64_t P = qt->shape[0], Q = qt->shape[1];
    const float *qT = mf_momentum_queue(mom, 1);
    for (int64_t p = 0; p < P; p++)
        for (int64_t j = 0; j < Q; j++)
            assert_true(((const float *)qt->data)[p * Q + j] == qT[j * P + p]);

    /* the state: moments and step back in a fresh trainer */
    assert_int_equal(mf_trainer_create(m2, NULL, &to, &tr2, &err), MF_OK);
    assert_int_equal(mf_pretrain_read_state(m2, tr2, sp, &err), MF_OK);
    assert_int_equal(mf_trainer_steps(tr2), 2);
    for (size_t i = 0; i < mf_model_n_tensors(m); i++) {
        const float *a1, *a2, *b1, *b2;
        mf_trainer_moments(tr, i, &a1, &a2);
        if (!a1)
            continue;
        const struct mf_model_tensor *t = find(m2, mf_model_tensor_at(m, i)->name);
        mf_trainer_moments(tr2, (size_t)(t - mf_model_tensor_at(m2, 0)), &b1, &b2);
        assert_non_null(b1);
        assert_memory_equal(a1, b1, mf_model_tensor_at(m, i)->nbytes);
        assert_memory_equal(a2, b2, mf_model_tensor_at(m, i)->nbytes);
    }
    /* a file without the moments (the model itself) is refused by name */
    assert_int_equal(mf_pretrain_read_state(m2, tr2, mp, &err), MF_ERR_MISSING);
    assert_non_null(strstr(err.msg, "model.safetensors"));
    assert_non_null(strstr(err.msg, "optimiser state"));
    mf_trainer_free(tr2);
    mf_model_free(m2);
    mf_trainer_free(tr);
    mf_losses_free(L);
    mf_session_free(s);
    mf_annotations_free(ann);
    mf_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cosine_schedule),
        cmocka_unit_test(test_save_and_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
