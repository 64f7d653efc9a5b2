/*
 * eval/pairs.c: turns annotation records into model inputs: preprocessed image tensors (BLIP
 * squash resize to the model resolution, models.md §2.3/§2.4) and token ids. Shared by `score`,
 * `eval` and calibration. Does no caching: an image used by several pairs in one batch is decoded
 * once per pair (calibration sets rarely repeat images inside a batch). mf_pairs_check_images is
 * the up-front pass over every image (root containment, header, pixel limit) that lets a run fail
 * before its first forward rather than at the batch holding a bad image.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Whether path (as joined by io/annotations: root + "/" + rel, or rel when absolute or without a
 * root) stays inside root by its text alone: no absolute rel outside root, no ".." climbing above
 * it. Catches escapes to files that do not exist, which realpath cannot resolve. */
static bool lexically_inside(const char *path, const char *root)
{
    const char *rel = path;
    if (root && root[0]) {
        size_t n = strlen(root);
        while (n > 1 && root[n - 1] == '/')
            n--;
        if (n == 1 && root[0] == '/')
            rel = path[0] == '/' ? path + 1 : NULL;
        else
            rel = strncmp(path, root, n) == 0 && path[n] == '/' ? path + n + 1 : NULL;
        if (!rel)
            return false;
    } else if (path[0] == '/') {
        return true; /* no root: an absolute path is judged by realpath against the current directory */
    }
    long depth = 0;
    for (const char *c = rel; *c;) {
        const char *e = strchr(c, '/');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        if (len == 2 && c[0] == '.' && c[1] == '.')
            depth--;
        else if (len > 0 && !(len == 1 && c[0] == '.'))
            depth++;
        if (depth < 0)
            return false;
        c += len + (e != NULL);
    }
    return true;
}

enum mf_status mf_pairs_check_images(const struct mf_annotations *ann, const char *root, bool allow_outside,
                                     struct mf_err *err)
{
    char real_root[PATH_MAX] = "", real[PATH_MAX], where[600];
    const char *r = root && root[0] ? root : ".";
    if (!allow_outside && !realpath(r, real_root))
        return mf_err_set(err, errno == ENOENT ? MF_ERR_MISSING : MF_ERR_IO, "%s: image root '%s': %s", ann->label,
                          r, strerror(errno));
    size_t rl = strlen(real_root);
    if (!allow_outside && rl > 0 && real_root[rl - 1] == '/')
        rl--; /* "/" */
    for (int64_t p = 0, next = 0; p < ann->n_pairs && next < ann->n_images; p++) {
        if (ann->image_index[p] != next)
            continue; /* images are numbered by first use: pair p uses an image already checked */
        const char *path = ann->images[next++];
        snprintf(where, sizeof where, "%s: %s %lld", ann->label, ann->jsonl ? "line" : "record",
                 (long long)ann->record[p]);
        if (!allow_outside) {
            if (!lexically_inside(path, root))
                return mf_err_set(err, MF_ERR_ARG,
                                  "%s: image %s is outside the image root %s (--images; give --allow-outside-root "
                                  "to accept it)",
                                  where, path, r);
            if (!realpath(path, real))
                return mf_err_set(err, errno == ENOENT ? MF_ERR_MISSING : MF_ERR_IO, "%s: image %s: cannot open: %s",
                                  where, path, strerror(errno));
            if (strncmp(real, real_root, rl) != 0 || real[rl] != '/')
                return mf_err_set(err, MF_ERR_ARG,
                                  "%s: image %s resolves to %s, outside the image root %s (--images; give "
                                  "--allow-outside-root to accept it)",
                                  where, path, real, real_root);
        }
        enum mf_status st = mf_image_probe(path, NULL, NULL, err);
        if (st) {
            mf_err_prefix(err, where);
            return st;
        }
    }
    return MF_OK;
}
