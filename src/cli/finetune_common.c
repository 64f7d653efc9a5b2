/*
 * cli/finetune_common.c: what the fine-tuning verbs share (finetune --task retrieval|captioning in
 * verb_finetune.c, --task vqa in verb_finetune_vqa.c): the masks of a pruning run by model tensor,
 * the per-epoch shuffle, and the options they share. Declared in cli/cli.h.
 */
#include <jansson.h>

#include "cli/cli.h"
#include "core/common.h"
#include "core/rng.h"
#include "io/fs.h"
#include "prune/output.h"
#include "prune/write_values.h"

int cli_masks_load(const struct mf_model *m, const char *path, struct cli_masks *cm)
{
    struct mf_err err = {0};
    *cm = (struct cli_masks){0};
    if (mf_prune_set_init(m, NULL, &cm->set, &err))
        return cli_error("%s", err.msg);
    const size_t nt = mf_model_n_tensors(m), ns = cm->set.n;
    if (!(cm->by_index = mf_calloc(nt ? nt : 1, sizeof *cm->by_index)) ||
        !(cm->set_masks = mf_calloc(ns ? ns : 1, sizeof *cm->set_masks)))
        return cli_error("out of memory");
    if (!path)
        return 0;
    for (size_t i = 0; i < ns; i++)
        if (!(cm->set_masks[i] = mf_malloc((size_t)cm->set.t[i].n)))
            return cli_error("out of memory for the masks");
    if (mf_prune_read_masks(m, &cm->set, path, cm->set_masks, &err))
        return cli_error("%s", err.msg);
    for (size_t i = 0; i < ns; i++)
        cm->by_index[cm->set.t[i].model_index] = cm->set_masks[i];
    return 0;
}

void cli_masks_free(struct cli_masks *cm)
{
    for (size_t i = 0; cm->set_masks && i < cm->set.n; i++)
        mf_free(cm->set_masks[i]);
    mf_free(cm->set_masks);
    mf_free(cm->by_index);
    mf_prune_set_free(&cm->set);
    *cm = (struct cli_masks){0};
}

void cli_permute(int64_t *p, int64_t n, uint64_t seed, int64_t epoch)
{
    struct mf_rng r;
    mf_rng_seed(&r, seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch + 1);
    for (int64_t i = 0; i < n; i++)
        p[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(mf_rng_u64(&r) % (uint64_t)(i + 1));
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}

int cli_finetune_option(struct cli_finetune *f, int opt, const char *arg)
{
    switch (opt) {
    case OPT_FT_MASKS: f->masks = arg; return 1;
    case OPT_FT_TASK: f->task = arg; return 1;
    case OPT_FT_LOG: f->log = arg; return 1;
    case OPT_FT_STEPS: return cli_parse_int("steps", arg, 1, INT64_C(1) << 40, &f->steps) ? 1 : -1;
    case OPT_FT_EPOCHS: return cli_parse_int("epochs", arg, 1, 1000000, &f->epochs) ? 1 : -1;
    case OPT_FT_WARMUP: return cli_parse_int("warmup", arg, 0, INT64_C(1) << 40, &f->warmup) ? 1 : -1;
    case OPT_FT_LR: return cli_parse_double("lr", arg, 0, 1, &f->to.lr) ? 1 : -1;
    case OPT_FT_WD: return cli_parse_double("weight-decay", arg, 0, 1e3, &f->to.weight_decay) ? 1 : -1;
    case OPT_FT_CLIP: return cli_parse_double("clip", arg, 0, 1e30, &f->to.clip_norm) ? 1 : -1;
    default: return 0;
    }
}

int cli_finetune_finish(const struct mf_model *m, const float *const *values, const uint8_t *const *masks,
                        const char *masks_path, const char *const *meta, size_t n_meta, json_t *rep,
                        struct mf_atomic_dir *ad, bool *ad_open, struct mf_atomic_file *lf, bool *lf_open,
                        const char *out)
{
    struct mf_err err = {0};
    char masks_out[MF_PATH_MAX], report[MF_PATH_MAX];
    int rc = 0;
    if (mf_prune_write_values(m, values, masks, ad->tmp, meta, n_meta, &err) ||
        mf_prune_copy_side_files(m, ad->tmp, &err))
        rc = cli_error("%s", err.msg);
    /* the masks file as given (it was validated against the model): byte-identical, metadata kept */
    else if (masks_path && (!mf_fs_join(masks_out, sizeof masks_out, ad->tmp, "masks.safetensors") ||
                            mf_fs_copy_file(masks_path, masks_out, &err)))
        rc = cli_error("%s", err.msg[0] ? err.msg : "output path too long");
    else if (!mf_fs_join(report, sizeof report, ad->tmp, "finetune.json") ||
             json_dump_file(rep, report, JSON_INDENT(1) | JSON_REAL_PRECISION(9)) != 0)
        rc = cli_error("%s/finetune.json: cannot write", out);
    json_decref(rep);
    if (rc)
        return rc;
    if (*lf_open) {
        *lf_open = false;
        if (mf_atomic_commit(lf, &err))
            return cli_error("%s", err.msg);
    }
    *ad_open = false;
    if (mf_atomic_dir_commit(ad, &err))
        return cli_error("%s", err.msg);
    return 0;
}

int cli_finetune_open(const char *out, bool force, const char *log_path, struct mf_atomic_dir *ad, bool *ad_open,
                      struct mf_atomic_file *lf, bool *lf_open)
{
    struct mf_err err = {0};
    if (mf_atomic_dir_open(out, force, ad, &err))
        return cli_error("%s", err.msg);
    *ad_open = true;
    if (log_path) {
        if (mf_atomic_open(log_path, lf, &err))
            return cli_error("%s", err.msg);
        *lf_open = true;
    }
    return 0;
}

int cli_finetune_schedule(const char *data, const char *unit, int64_t n, int64_t B, int64_t steps, int64_t epochs,
                          int64_t warmup, struct mf_train_opts *to, int64_t *per_epoch, int64_t *total)
{
    *per_epoch = n / B;
    if (*per_epoch < 1)
        return cli_error("%s: %lld %s, fewer than one batch of %lld", data, (long long)n, unit, (long long)B);
    *total = steps > 0 ? steps : epochs * *per_epoch;
    if (warmup > *total)
        return cli_error("--warmup %lld is more than the %lld steps", (long long)warmup, (long long)*total);
    to->total_steps = *total;
    to->warmup_steps = warmup;
    return 0;
}
