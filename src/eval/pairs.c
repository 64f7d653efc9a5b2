/*
 * eval/pairs.c: turns annotation records into model inputs: preprocessed image tensors (BLIP
 * squash resize to the model resolution, models.md §2.3/§2.4) and token ids. Shared by `score`,
 * `eval` and calibration. Does no caching: an image used by several pairs in one batch is decoded
 * once per pair (calibration sets rarely repeat images inside a batch).
 */
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "io/annotations.h"
#include "io/fs.h"
#include "io/image.h"
#include "multiflow/eval.h"

enum mf_status mf_pairs_batch(const struct mf_model *m, const struct mf_annotations *ann, int64_t start, int64_t B,
                              int64_t L, float *images, int32_t *ids, int32_t *mask, struct mf_err *err)
{
    const struct mf_model_info *info = mf_model_get_info(m);
    const int64_t R = info->vision.image_size, img_n = 3 * R * R;
    enum mf_status st;
    mf_fs_test_pause("batch");
    for (int64_t b = 0; b < B; b++) {
        int64_t p = start + b;
        if (p >= ann->n_pairs)
            return mf_err_set(err, MF_ERR_RANGE, "pair %lld out of range (%lld pairs)", (long long)p,
                              (long long)ann->n_pairs);
        if (images && (st = mf_image_preprocess(ann->image_path[p], (int)R, images + b * img_n, err)))
            return st;
        if (ids && (st = mf_model_tokenize(m, ann->caption[p], (int)L, ids + b * L, mask + b * L, err))) {
            mf_pairs_err_prefix(ann, p, err);
            return st;
        }
    }
    return MF_OK;
}

void mf_pairs_err_prefix(const struct mf_annotations *ann, int64_t p, struct mf_err *err)
{
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s: %s %lld (image %s)", ann->label, ann->jsonl ? "line" : "record",
             (long long)ann->record[p], ann->image_path[p]);
    mf_err_prefix(err, prefix);
}
