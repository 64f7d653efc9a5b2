/*
 * io/checkpoint.c: a checkpoint directory (or single file) as one set of tensors over safetensors
 * shards, with the sharding index validated against the shards' contents.
 *
 * Does not: read config.json or vocab.txt (the model and text layers do, from mf_checkpoint_dir),
 * read PyTorch pickles, or follow shard names that are paths (a shard name must be a plain file
 * name inside the directory, so an index cannot point outside it).
 * Reference: Hugging Face sharded checkpoints (transformers `modeling_utils` writes
 * model.safetensors.index.json = {"metadata": {...}, "weight_map": {tensor: shard}}), and
 * docs/spec models.md §4.2-4.3, §7.
 */
#include "multiflow/checkpoint.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "io/fs.h"

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

struct mf_checkpoint {
    char *dir;
    size_t n_shards;
    struct mf_safetensors **shards; /* (n_shards) */
    size_t *first;                  /* (n_shards + 1) index of each shard's first tensor */
    bool indexed;
};

void mf_checkpoint_close(struct mf_checkpoint *ck)
{
    if (!ck)
        return;
    for (size_t i = 0; i < ck->n_shards; i++)
        mf_safetensors_close(ck->shards[i]);
    mf_free(ck->shards);
    mf_free(ck->first);
    mf_free(ck->dir);
    mf_free(ck);
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* Opens the shard files names[0..n) (plain names inside ck->dir) into ck->shards. */
static enum mf_status open_shards(struct mf_checkpoint *ck, const char *const *names, size_t n,
                                  const char *index_path, struct mf_err *err)
{
    char path[MF_PATH_MAX];
    ck->shards = mf_calloc(n, sizeof *ck->shards);
    ck->first = mf_calloc(n + 1, sizeof *ck->first);
    if (!ck->shards || !ck->first)
        return mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory for %zu shards", ck->dir, n);
    for (size_t i = 0; i < n; i++) {
        if (!mf_fs_join(path, sizeof path, ck->dir, names[i]))
            return mf_err_set(err, MF_ERR_ARG, "%s: path of shard '%s' is too long", ck->dir, names[i]);
        if (index_path && !mf_fs_is_file(path))
            return mf_err_set(err, MF_ERR_MISSING, "%s: shard '%s' does not exist", index_path,
                              names[i]);
        enum mf_status s = mf_safetensors_open(path, &ck->shards[i], err);
        if (s != MF_OK)
            return s;
        ck->n_shards = i + 1;
        ck->first[i + 1] = ck->first[i] + mf_safetensors_count(ck->shards[i]);
    }
    return MF_OK;
}

/* No tensor name may appear in two shards. */
static enum mf_status check_duplicates(const struct mf_checkpoint *ck, struct mf_err *err)
{
    for (size_t j = 1; j < ck->n_shards; j++) {
        const struct mf_safetensors *b = ck->shards[j];
        for (size_t i = 0; i < mf_safetensors_count(b); i++) {
            const char *name = mf_safetensors_at(b, i)->name;
            for (size_t k = 0; k < j; k++) {
                if (mf_safetensors_find(ck->shards[k], name))
                    return mf_err_set(err, MF_ERR_FORMAT, "%s: tensor '%s' is in both '%s' and '%s'",
                                      ck->dir, name, mf_fs_basename(mf_safetensors_path(ck->shards[k])),
                                      mf_fs_basename(mf_safetensors_path(b)));
            }
        }
    }
    return MF_OK;
}

/* Reads the index, validates weight_map, opens its shards and checks every tensor's placement. */
static enum mf_status open_indexed(struct mf_checkpoint *ck, const char *index_path, struct mf_err *err)
{
    char *text = NULL;
    size_t len = 0;
    json_t *root = NULL;
    const char **names = NULL; /* (n_map) shard names, sorted, then deduplicated to n_unique */
    enum mf_status s;
    const char *key;
    json_t *v;

    s = mf_fs_read_all(index_path, &text, &len, MF_CK_MAX_INDEX, err);
    if (s != MF_OK)
        goto fail;
    json_error_t jerr;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        s = mf_err_set(err, MF_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", index_path,
                       jerr.text, jerr.line, jerr.column);
        goto fail;
    }
    json_t *map = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(map)) {
        s = mf_err_set(err, MF_ERR_FORMAT, "%s: no \"weight_map\" object", index_path);
        goto fail;
    }
    size_t n_map = json_object_size(map);
    if (n_map == 0) {
        s = mf_err_set(err, MF_ERR_FORMAT, "%s: \"weight_map\" is empty", index_path);
        goto fail;
    }
    names = mf_calloc(n_map, sizeof *names);
    if (!names) {
        s = mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory for %zu entries", index_path, n_map);
        goto fail;
    }
    size_t n = 0;
    json_object_foreach(map, key, v)
    {
        const char *shard = json_is_string(v) ? json_string_value(v) : NULL;
        if (!shard || !*shard || strchr(shard, '/') || !strcmp(shard, ".") || !strcmp(shard, "..")) {
            s = mf_err_set(err, MF_ERR_FORMAT,
                           "%s: tensor '%s' maps to '%s', expected a shard file name in the directory",
                           index_path, key, shard ? shard : "(not a string)");
            goto fail;
        }
        names[n++] = shard;
    }
    qsort(names, n, sizeof *names, cmp_cstr);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || strcmp(names[u - 1], names[i]))
            names[u++] = names[i];
    s = open_shards(ck, names, u, index_path, err);
    if (s != MF_OK)
        goto fail;
    s = check_duplicates(ck, err);
    if (s != MF_OK)
        goto fail;
    /* Every listed tensor no shard holds is named (as many as the message holds), not only the first. */
    char missing[MF_ERR_MSG_LEN / 2];
    size_t n_missing = 0, mlen = 0, left_out = 0;
    json_object_foreach(map, key, v)
    {
        const char *want = json_string_value(v);
        const char **hit = bsearch(&want, names, u, sizeof *names, cmp_cstr);
        MF_ASSERT(hit);
        size_t k = (size_t)(hit - names);
        if (mf_safetensors_find(ck->shards[k], key))
            continue;
        for (size_t j = 0; j < ck->n_shards; j++) {
            if (mf_safetensors_find(ck->shards[j], key)) {
                s = mf_err_set(err, MF_ERR_FORMAT, "%s: tensor '%s' is listed in '%s' but is in '%s'",
                               index_path, key, want, mf_fs_basename(mf_safetensors_path(ck->shards[j])));
                goto fail;
            }
        }
        n_missing++;
        int w = snprintf(missing + mlen, sizeof missing - mlen, "%s'%s' (in '%s')", mlen ? ", " : "", key, want);
        if (left_out || w < 0 || (size_t)w >= sizeof missing - mlen) {
            missing[mlen] = 0;
            left_out++;
        } else {
            mlen += (size_t)w;
        }
    }
    if (n_missing) {
        s = mf_err_set(err, MF_ERR_MISSING, "%s: %zu listed tensor%s no shard holds: %s%s", index_path, n_missing,
                       n_missing == 1 ? "" : "s", missing, left_out ? ", ..." : "");
        goto fail;
    }
    /* every listed tensor was found and none is duplicated, so a count mismatch means extras */
    if (ck->first[ck->n_shards] != n_map) {
        for (size_t j = 0; j < ck->n_shards; j++) {
            for (size_t i = 0; i < mf_safetensors_count(ck->shards[j]); i++) {
                const char *name = mf_safetensors_at(ck->shards[j], i)->name;
                if (!json_object_get(map, name)) {
                    s = mf_err_set(err, MF_ERR_FORMAT, "%s: shard '%s' holds tensor '%s' that the index does not list",
                                   index_path, mf_fs_basename(mf_safetensors_path(ck->shards[j])), name);
                    goto fail;
                }
            }
        }
        MF_ASSERT(0);
    }
    ck->indexed = true;
    mf_free(names);
    json_decref(root);
    mf_free(text);
    return MF_OK;
fail:
    mf_free(names);
    json_decref(root);
    mf_free(text);
    return s;
}

/* All non-hidden *.safetensors files in ck->dir, sorted. */
static enum mf_status open_listed(struct mf_checkpoint *ck, struct mf_err *err)
{
    char **all = NULL;
    size_t n_all = 0, n = 0;
    enum mf_status s = mf_fs_list_dir(ck->dir, &all, &n_all, err);
    if (s != MF_OK)
        goto fail;
    for (size_t i = 0; i < n_all; i++) { /* filter in place, keeping the sorted order */
        if (all[i][0] != '.' && ends_with(all[i], ".safetensors")) {
            char *t = all[n];
            all[n++] = all[i];
            all[i] = t;
        }
    }
    if (n == 0) {
        s = mf_err_set(err, MF_ERR_MISSING, "%s: no *.safetensors file and no %s", ck->dir, INDEX_NAME);
        goto fail;
    }
    s = open_shards(ck, (const char *const *)all, n, NULL, err);
    if (s != MF_OK)
        goto fail;
    s = check_duplicates(ck, err);
    if (s != MF_OK)
        goto fail;
    mf_fs_list_free(all, n_all);
    return MF_OK;
fail:
    mf_fs_list_free(all, n_all);
    return s;
}

enum mf_status mf_checkpoint_open(const char *path, struct mf_checkpoint **out, struct mf_err *err)
{
    struct mf_checkpoint *ck = NULL;
    char buf[MF_PATH_MAX];
    enum mf_status s;
    *out = NULL;
    if (!path || !*path || strlen(path) >= sizeof buf) {
        s = mf_err_set(err, MF_ERR_ARG, "checkpoint path is empty or too long");
        goto fail;
    }
    ck = mf_calloc(1, sizeof *ck);
    if (!ck) {
        s = mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    if (mf_fs_is_dir(path)) {
        size_t n = strlen(path);
        while (n > 1 && path[n - 1] == '/')
            n--;
        memcpy(buf, path, n);
        buf[n] = 0;
        ck->dir = mf_strdup(buf);
        if (!ck->dir) {
            s = mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        char index[MF_PATH_MAX], single[MF_PATH_MAX];
        if (!mf_fs_join(index, sizeof index, ck->dir, INDEX_NAME) ||
            !mf_fs_join(single, sizeof single, ck->dir, SINGLE_NAME)) {
            s = mf_err_set(err, MF_ERR_ARG, "%s: path too long", path);
            goto fail;
        }
        if (mf_fs_exists(index)) {
            s = open_indexed(ck, index, err);
        } else if (mf_fs_exists(single)) {
            const char *one = SINGLE_NAME;
            s = open_shards(ck, &one, 1, NULL, err);
        } else {
            s = open_listed(ck, err);
        }
        if (s != MF_OK)
            goto fail;
    } else if (mf_fs_is_file(path)) {
        if (!mf_fs_dirname(buf, sizeof buf, path)) {
            s = mf_err_set(err, MF_ERR_ARG, "%s: path too long", path);
            goto fail;
        }
        ck->dir = mf_strdup(buf);
        ck->shards = mf_calloc(1, sizeof *ck->shards);
        ck->first = mf_calloc(2, sizeof *ck->first);
        if (!ck->dir || !ck->shards || !ck->first) {
            s = mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        s = mf_safetensors_open(path, &ck->shards[0], err);
        if (s != MF_OK)
            goto fail;
        ck->n_shards = 1;
        ck->first[1] = mf_safetensors_count(ck->shards[0]);
    } else {
        s = mf_err_set(err, MF_ERR_MISSING, "%s: no such checkpoint file or directory", path);
        goto fail;
    }
    *out = ck;
    return MF_OK;
fail:
    mf_checkpoint_close(ck);
    return s;
}

size_t mf_checkpoint_count(const struct mf_checkpoint *ck) { return ck->first[ck->n_shards]; }

const struct mf_st_entry *mf_checkpoint_at(const struct mf_checkpoint *ck, size_t i, size_t *shard)
{
    if (i >= ck->first[ck->n_shards])
        return NULL;
    size_t lo = 0, hi = ck->n_shards; /* last shard with first <= i */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (ck->first[mid] <= i)
            lo = mid;
        else
            hi = mid;
    }
    if (shard)
        *shard = lo;
    return mf_safetensors_at(ck->shards[lo], i - ck->first[lo]);
}

const struct mf_st_entry *mf_checkpoint_find(const struct mf_checkpoint *ck, const char *name,
                                             size_t *shard)
{
    for (size_t k = 0; k < ck->n_shards; k++) {
        const struct mf_st_entry *e = mf_safetensors_find(ck->shards[k], name);
        if (e) {
            if (shard)
                *shard = k;
            return e;
        }
    }
    return NULL;
}

size_t mf_checkpoint_shard_count(const struct mf_checkpoint *ck) { return ck->n_shards; }

const struct mf_safetensors *mf_checkpoint_shard(const struct mf_checkpoint *ck, size_t i)
{
    return i < ck->n_shards ? ck->shards[i] : NULL;
}

const char *mf_checkpoint_dir(const struct mf_checkpoint *ck) { return ck->dir; }

bool mf_checkpoint_is_indexed(const struct mf_checkpoint *ck) { return ck->indexed; }
