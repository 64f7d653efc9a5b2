/* The pruned checkpoint writer: for every tensor of the input, the output holds W * mask where the
 * tensor is prunable or tied to a prunable tensor (momentum copies, tied decoder copies), exact
 * zeros in the stored dtype, and the input bytes everywhere else; shards and side files kept. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"
#include "io/fs.h"
#include "models/model_impl.h"
#include "multiflow/prune.h"
#include "multiflow/safetensors.h"
#include "prune/output.h"

static bool is_zero(const unsigned char *p, size_t es)
{
    for (size_t i = 0; i < es; i++)
        if (p[i])
            return false;
    return true;
}

static void check_fixture(const char *rel, int expect_tied)
{
    struct mf_err err = {0};
    struct mf_model *m = NULL;
    struct mf_model_opts o = mf_model_opts_default();
    assert_int_equal(mf_model_load(mf_test_path(rel), &o, &m, &err), MF_OK);
    struct mf_prune_set set;
    assert_int_equal(mf_prune_set_init(m, NULL, &set, &err), MF_OK);
    struct mf_pool *pool = mf_pool_create(2);
    float **scores = calloc(set.n, sizeof *scores);
    uint8_t **masks = calloc(set.n, sizeof *masks);
    const uint8_t **by_index = calloc(mf_model_n_tensors(m), sizeof *by_index);
    for (size_t i = 0; i < set.n; i++) {
        scores[i] = malloc((size_t)set.t[i].n * sizeof(float));
        masks[i] = malloc((size_t)set.t[i].n);
        by_index[set.t[i].model_index] = masks[i];
    }
    assert_int_equal(mf_prune_scores(pool, MF_METHOD_OMP, &set, 0, scores, &err), MF_OK);
    assert_int_equal(mf_prune_masks(pool, MF_METHOD_OMP, &set, 0.75, (const float *const *)scores, masks, &err), MF_OK);
    const char *dir = mf_test_tmpdir();
    const char *meta[] = {"multiflow.method", "omp"};
    assert_int_equal(mf_prune_write_checkpoint(m, by_index, dir, meta, 1, &err), MF_OK);

    struct mf_checkpoint *out = NULL;
    if (mf_checkpoint_open(dir, &out, &err) != MF_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(mf_checkpoint_count(out), mf_model_n_tensors(m));
    assert_int_equal(mf_checkpoint_shard_count(out), mf_checkpoint_shard_count(m->ck));
    int n_masked = 0, n_tied = 0, n_same = 0;
    for (size_t i = 0; i < mf_model_n_tensors(m); i++) {
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        size_t sh = 0;
        const struct mf_st_entry *e = mf_checkpoint_find(out, t->name, &sh);
        assert_non_null(e);
        assert_int_equal(e->dtype, t->dtype);
        assert_int_equal(e->nbytes, t->nbytes);
        assert_memory_equal(e->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
        const uint8_t *mask = by_index[i] ? by_index[i] : t->tied_to >= 0 ? by_index[t->tied_to] : NULL;
        size_t es = mf_dtype_size(t->dtype);
        const unsigned char *a = t->data, *b = e->data;
        if (!mask) {
            assert_memory_equal(a, b, t->nbytes);
            n_same++;
            continue;
        }
        n_masked += by_index[i] != NULL;
        n_tied += t->tied_to >= 0;
        for (size_t j = 0; j < t->nbytes / es; j++) {
            if (mask[j])
                assert_memory_equal(a + j * es, b + j * es, es);
            else
                assert_true(is_zero(b + j * es, es));
        }
    }
    printf("  %s: %d masked, %d tied/momentum copies masked, %d identical\n", rel, n_masked, n_tied, n_same);
    assert_int_equal((size_t)n_masked, set.n);
    if (expect_tied)
        assert_true(n_tied > 0);
    assert_string_equal(mf_safetensors_meta(mf_checkpoint_shard(out, 0), "multiflow.method"), "omp");
    /* side files travel along */
    char p[4096];
    mf_fs_join(p, sizeof p, dir, "vocab.txt");
    assert_true(mf_fs_is_file(p));
    mf_checkpoint_close(out);
    for (size_t i = 0; i < set.n; i++) {
        free(scores[i]);
        free(masks[i]);
    }
    free(scores);
    free(masks);
    free(by_index);
    mf_pool_free(pool);
    mf_prune_set_free(&set);
    mf_model_free(m);
}

static void test_orig_f32(void **st) { (void)st; check_fixture("tests/golden/blip/orig-f32", 1); }
static void test_orig_bf16(void **st) { (void)st; check_fixture("tests/golden/blip/orig-bf16", 1); }
static void test_hf_sharded(void **st) { (void)st; check_fixture("tests/golden/blip/hf-cap-f32", 0); }
static void test_hf_f16(void **st) { (void)st; check_fixture("tests/golden/blip/hf-itm-f16", 0); }

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_orig_f32), cmocka_unit_test(test_orig_bf16),
                                       cmocka_unit_test(test_hf_sharded), cmocka_unit_test(test_hf_f16)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
