/*
 * cli/prune_common.c: one pruning run's output directory: the pruned checkpoint, masks.safetensors
 * and report.json (per tensor, per modality, overall sparsity; method, settings, calibration size,
 * phase times). Shared by `prune` and `apply`.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli/prune_cli.h"
#include "io/fs.h"
#include "prune/output.h"
#include "prune/write_values.h"

static enum mf_status write_json(const char *path, json_t *root, struct mf_err *err)
{
    struct mf_atomic_file af;
    enum mf_status st = mf_atomic_open(path, &af, err);
    if (st)
        return st;
    if (json_dumpf(root, af.f, JSON_INDENT(2) | JSON_REAL_PRECISION(8)) != 0 || fputc('\n', af.f) == EOF) {
        mf_atomic_abort(&af);
        return mf_err_set(err, MF_ERR_IO, "%s: write failed: %s", path, mf_fs_strerror(errno));
    }
    return mf_atomic_commit(&af, err);
}

enum mf_status cli_write_json(const char *path, void *root, struct mf_err *err) { return write_json(path, root, err); }

enum mf_status cli_write_run(const struct mf_model *m, const struct mf_prune_set *set, uint8_t *const *masks,
                             const char *dir, const struct cli_report_info *ri, struct cli_run *run, void **report,
                             struct mf_err *err)
{
    enum mf_status st = MF_OK;
    double t0 = mf_time_now();
    size_t nt = mf_model_n_tensors(m);
    const uint8_t **by_index = mf_calloc(nt, sizeof *by_index);
    int64_t *pruned_at = mf_calloc(nt, sizeof *pruned_at);
    run->tensor_sparsity = mf_calloc(nt, sizeof *run->tensor_sparsity);
    if (!by_index || !run->tensor_sparsity || !pruned_at) {
        mf_free(by_index);
        mf_free(pruned_at);
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < set->n; i++)
        by_index[set->t[i].model_index] = masks[i];

    char sp[32], seed[32];
    snprintf(sp, sizeof sp, "%.6g", ri->sparsity);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)ri->seed);
    const char *meta[] = {"multiflow.method", ri->method, "multiflow.sparsity", sp, "multiflow.seed", seed};
    char path[MF_PATH_MAX];
    if (ri->values) { /* updated weights (chita): written in the stored dtype, tied copies follow */
        const float **vals = mf_calloc(nt, sizeof *vals);
        if (!vals) {
            st = mf_err_set(err, MF_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < set->n; i++)
            vals[set->t[i].model_index] = ri->values[i];
        st = mf_prune_write_values(m, vals, by_index, dir, meta, 3, err);
        mf_free(vals);
        if (!st)
            st = mf_prune_copy_side_files(m, dir, err);
        if (st)
            goto done;
    } else if ((st = mf_prune_write_checkpoint(m, by_index, dir, meta, 3, err)))
        goto done;
    mf_fs_join(path, sizeof path, dir, "masks.safetensors");
    if ((st = mf_prune_write_masks(set, (const uint8_t *const *)masks, path, meta, 3, err)))
        goto done;
    double t_write = mf_time_now() - t0;

    /* report.json */
    json_t *root = json_object(), *tensors = json_array(), *mods = json_object();
    int64_t mod_n[4] = {0}, mod_p[4] = {0}, all_n = 0, all_p = 0;
    for (size_t i = 0; i < set->n; i++) {
        int64_t pruned = 0;
        for (int64_t j = 0; j < set->t[i].n; j++)
            pruned += masks[i][j] == 0;
        run->tensor_sparsity[set->t[i].model_index] = (double)pruned / (double)set->t[i].n;
        pruned_at[set->t[i].model_index] = pruned;
        mod_n[set->t[i].modality] += set->t[i].n;
        mod_p[set->t[i].modality] += pruned;
        all_n += set->t[i].n;
        all_p += pruned;
    }
    for (size_t i = 0; i < nt; i++) { /* forward order */
        const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
        if (!t->prunable)
            continue;
        double s = run->tensor_sparsity[i];
        json_array_append_new(tensors, json_pack("{s:s,s:s,s:[I,I],s:I,s:f}", "name", t->name, "modality",
                                                 mf_modality_name(t->modality), "shape", (json_int_t)t->shape[0],
                                                 (json_int_t)t->shape[1], "pruned", (json_int_t)pruned_at[i],
                                                 "sparsity", s));
    }
    for (int k = 1; k < 4; k++)
        if (mod_n[k])
            json_object_set_new(mods, mf_modality_name((enum mf_modality)k),
                                json_pack("{s:I,s:I,s:f}", "params", (json_int_t)mod_n[k], "pruned",
                                          (json_int_t)mod_p[k], "sparsity", (double)mod_p[k] / (double)mod_n[k]));
    const struct cli_common *c = ri->common;
    json_object_set_new(root, "method", json_string(ri->method));
    json_object_set_new(root, "sparsity", json_real(ri->sparsity));
    json_object_set_new(root, "seed", json_integer((json_int_t)ri->seed));
    json_object_set_new(root, "model", json_string(c->model));
    json_object_set_new(root, "layout", json_string(mf_model_get_info(m)->layout_name));
    json_object_set_new(root, "settings",
                        json_pack("{s:i,s:i,s:I,s:i}", "threads", c->threads, "batch", c->batch, "pairs",
                                  (json_int_t)c->pairs, "max_tokens", c->max_tokens));
    json_object_set_new(root, "calibration",
                        ri->stats_source ? json_pack("{s:s,s:I}", "source", ri->stats_source, "pairs",
                                                     (json_int_t)ri->calib_pairs)
                                         : json_null());
    json_t *dev = json_array();
    json_array_append_new(dev, json_string("exact-k selection: ties broken by position (tensor name, then index); "
                                           "the reference prunes every weight <= the k-th value"));
    if (strcmp(ri->method, "multiflow") == 0) {
        json_array_append_new(dev, json_string("per-tensor counts k_l kept as integers (the reference passes them "
                                               "through a float ratio)"));
        json_array_append_new(dev, json_string("deterministic calibration transform (squash resize, no "
                                               "augmentation)"));
    }
    if (strcmp(ri->method, "lamp") == 0)
        json_array_append_new(dev, json_string("LAMP: equal magnitudes share one score"));
    json_object_set_new(root, "deviations_from_reference", dev);
    json_object_set_new(root, "modalities", mods);
    json_object_set_new(root, "overall", json_pack("{s:I,s:I,s:f}", "params", (json_int_t)all_n, "pruned",
                                                   (json_int_t)all_p, "sparsity", (double)all_p / (double)all_n));
    json_object_set_new(root, "timings_s",
                        json_pack("{s:f,s:f,s:f,s:f,s:f}", "load", ri->t_load, "calibration", ri->t_calib, "scoring",
                                  ri->t_score, "selection", ri->t_select, "writing", t_write));
    json_object_set_new(root, "tensors", tensors);
    mf_fs_join(path, sizeof path, dir, "report.json");
    st = write_json(path, root, err);
    if (st)
        json_decref(root);
    else
        *report = root;
done:
    mf_free(by_index);
    mf_free(pruned_at);
    return st;
}
