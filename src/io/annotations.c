/*
 * io/annotations.c: reads the calibration annotation file (JSON array or JSON Lines) into pairs.
 *
 * Does not: open or check images, clean or tokenize captions, read the X-VLM region format or
 * nested {"annotations": [...]} wrappers. JSON itself is parsed by jansson (depth-capped,
 * NUL-free strings); everything size-related is capped here.
 * Reference: the MULTIFLOW repository's annotation files ({"image": ..., "caption": str | [str]}),
 * as described in the task brief; JSON Lines per jsonlines.org.
 */
#include "io/annotations.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "io/fs.h"

struct builder {
    struct mf_annotations *a;
    const char *root;
    int64_t cap_pairs, cap_images;
    int64_t *slot; /* (n_slot) open-addressing table of image indices, -1 = empty */
    size_t n_slot;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static size_t find_slot(const struct builder *b, const char *path)
{
    size_t mask = b->n_slot - 1;
    size_t i = (size_t)hash_str(path) & mask;
    while (b->slot[i] >= 0 && strcmp(b->a->images[b->slot[i]], path) != 0)
        i = (i + 1) & mask;
    return i;
}

static bool grow_slots(struct builder *b)
{
    size_t n = b->n_slot ? 2 * b->n_slot : 256;
    int64_t *slot = mf_malloc(n * sizeof *slot);
    if (!slot)
        return false;
    memset(slot, 0xff, n * sizeof *slot);
    mf_free(b->slot);
    b->slot = slot;
    b->n_slot = n;
    for (int64_t k = 0; k < b->a->n_images; k++)
        b->slot[find_slot(b, b->a->images[k])] = k;
    return true;
}

/* Index of path among the images, adding it (taking ownership) if new; -1 on NOMEM (path freed). */
static int64_t intern_image(struct builder *b, char *path)
{
    struct mf_annotations *a = b->a;
    if ((size_t)(a->n_images + 1) * 2 > b->n_slot && !grow_slots(b))
        goto nomem;
    size_t s = find_slot(b, path);
    if (b->slot[s] >= 0) {
        mf_free(path);
        return b->slot[s];
    }
    if (a->n_images == b->cap_images) {
        int64_t cap = b->cap_images ? 2 * b->cap_images : 64;
        char **im = mf_realloc(a->images, (size_t)cap * sizeof *im);
        if (!im)
            goto nomem;
        a->images = im;
        b->cap_images = cap;
    }
    a->images[a->n_images] = path;
    b->slot[s] = a->n_images;
    return a->n_images++;
nomem:
    mf_free(path);
    return -1;
}

static bool add_pair(struct builder *b, const char *caption, size_t len, int64_t image,
                     int64_t record)
{
    struct mf_annotations *a = b->a;
    if (a->n_pairs == b->cap_pairs) {
        int64_t cap = b->cap_pairs ? 2 * b->cap_pairs : 64;
        char **c = mf_realloc(a->caption, (size_t)cap * sizeof *c);
        if (!c)
            return false;
        a->caption = c;
        int64_t *ii = mf_realloc(a->image_index, (size_t)cap * sizeof *ii);
        if (!ii)
            return false;
        a->image_index = ii;
        int64_t *r = mf_realloc(a->record, (size_t)cap * sizeof *r);
        if (!r)
            return false;
        a->record = r;
        b->cap_pairs = cap;
    }
    char *copy = mf_malloc(len + 1);
    if (!copy)
        return false;
    memcpy(copy, caption, len);
    copy[len] = '\0';
    a->caption[a->n_pairs] = copy;
    a->image_index[a->n_pairs] = image;
    a->record[a->n_pairs] = record;
    a->n_pairs++;
    return true;
}

/* Checks one caption string; idx is 0 for a plain string, else its 1-based place in the list. */
static enum mf_status check_caption(const struct builder *b, const char *where, int64_t rec,
                                    json_t *s, size_t idx, struct mf_err *err)
{
    size_t n = json_string_length(s);
    char name[48];
    if (idx)
        snprintf(name, sizeof name, "caption %zu", idx);
    else
        snprintf(name, sizeof name, "field 'caption'");
    if (n == 0)
        return mf_err_set(err, MF_ERR_FORMAT, "%s: %s %lld: %s is empty", b->a->label, where,
                          (long long)rec, name);
    if (n > MF_ANN_MAX_CAPTION_BYTES)
        return mf_err_set(err, MF_ERR_RANGE, "%s: %s %lld: %s is %zu bytes, more than the "
                          "%d-byte limit", b->a->label, where, (long long)rec, name, n,
                          MF_ANN_MAX_CAPTION_BYTES);
    return MF_OK;
}

static enum mf_status add_record(struct builder *b, json_t *obj, const char *where, int64_t rec,
                                 struct mf_err *err)
{
    const char *label = b->a->label;
    long long r = (long long)rec;
    if (!json_is_object(obj))
        return mf_err_set(err, MF_ERR_FORMAT, "%s: %s %lld: expected an object with 'image' and "
                          "'caption'", label, where, r);
    json_t *im = json_object_get(obj, "image"), *cap = json_object_get(obj, "caption");
    if (!im || !cap)
        return mf_err_set(err, MF_ERR_MISSING, "%s: %s %lld: missing field '%s'", label, where, r,
                          im ? "caption" : "image");
    if (!json_is_string(im))
        return mf_err_set(err, MF_ERR_FORMAT, "%s: %s %lld: field 'image' must be a string",
                          label, where, r);
    if (json_string_length(im) == 0)
        return mf_err_set(err, MF_ERR_FORMAT, "%s: %s %lld: field 'image' is empty", label,
                          where, r);
    size_t n_cap;
    enum mf_status st;
    if (json_is_string(cap)) {
        n_cap = 1;
        if ((st = check_caption(b, where, rec, cap, 0, err)) != MF_OK)
            return st;
    } else if (json_is_array(cap)) {
        n_cap = json_array_size(cap);
        if (n_cap == 0)
            return mf_err_set(err, MF_ERR_FORMAT, "%s: %s %lld: field 'caption' is an empty list",
                              label, where, r);
        for (size_t k = 0; k < n_cap; k++) {
            json_t *s = json_array_get(cap, k);
            if (!json_is_string(s))
                return mf_err_set(err, MF_ERR_FORMAT, "%s: %s %lld: field 'caption' must be a "
                                  "string or a list of strings (item %zu is not a string)", label,
                                  where, r, k + 1);
            if ((st = check_caption(b, where, rec, s, k + 1, err)) != MF_OK)
                return st;
        }
    } else {
        return mf_err_set(err, MF_ERR_FORMAT, "%s: %s %lld: field 'caption' must be a string or "
                          "a list of strings", label, where, r);
    }
    const char *rel = json_string_value(im);
    char joined[MF_PATH_MAX];
    bool fits = (rel[0] == '/' || !b->root || !b->root[0])
                    ? (size_t)snprintf(joined, sizeof joined, "%s", rel) < sizeof joined
                    : mf_fs_join(joined, sizeof joined, b->root, rel);
    if (!fits)
        return mf_err_set(err, MF_ERR_RANGE, "%s: %s %lld: image path is longer than %d bytes",
                          label, where, r, MF_PATH_MAX - 1);
    char *path = mf_strdup(joined);
    int64_t index = path ? intern_image(b, path) : -1;
    if (index < 0)
        goto nomem;
    for (size_t k = 0; k < n_cap; k++) {
        json_t *s = json_is_string(cap) ? cap : json_array_get(cap, k);
        if (!add_pair(b, json_string_value(s), json_string_length(s), index, rec))
            goto nomem;
    }
    return MF_OK;
nomem:
    return mf_err_set(err, MF_ERR_NOMEM, "%s: %s %lld: out of memory", label, where, r);
}

void mf_annotations_free(struct mf_annotations *a)
{
    if (!a)
        return;
    for (int64_t i = 0; i < a->n_pairs; i++)
        mf_free(a->caption[i]);
    for (int64_t i = 0; i < a->n_images; i++)
        mf_free(a->images[i]);
    mf_free(a->images);
    mf_free(a->record);
    mf_free(a->image_index);
    mf_free(a->caption);
    mf_free(a->image_path);
    mf_free(a->label);
    mf_free(a);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

enum mf_status mf_annotations_parse(const char *buf, size_t len, const char *label,
                                    const char *image_root, struct mf_annotations **out,
                                    struct mf_err *err)
{
    enum mf_status st = MF_OK;
    struct builder b = {0};
    json_t *doc = NULL;
    json_error_t jerr;
    *out = NULL;
    if (!label)
        label = "annotations";
    if (len > MF_ANN_MAX_FILE_BYTES) {
        st = mf_err_set(err, MF_ERR_RANGE, "%s: %zu bytes, more than the %zu-byte limit", label,
                        len, MF_ANN_MAX_FILE_BYTES);
        goto fail;
    }
    b.root = image_root;
    b.a = mf_calloc(1, sizeof *b.a);
    if (!b.a || !(b.a->label = mf_strdup(label))) {
        st = mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory", label);
        goto fail;
    }
    size_t pos = 0;
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
        pos = 3;
    while (pos < len && is_space(buf[pos]))
        pos++;
    if (pos == len) {
        st = mf_err_set(err, MF_ERR_FORMAT, "%s: no records (the file is empty)", label);
        goto fail;
    }
    if (buf[pos] == '[') {
        doc = json_loadb(buf + pos, len - pos, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc) {
            st = mf_err_set(err, MF_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s",
                            label, jerr.line, jerr.column, jerr.text);
            goto fail;
        }
        size_t i;
        json_t *rec;
        json_array_foreach(doc, i, rec) {
            if ((st = add_record(&b, rec, "record", (int64_t)i + 1, err)) != MF_OK)
                goto fail;
        }
    } else if (buf[pos] == '{') {
        b.a->jsonl = 1;
        int64_t line = 1;
        for (size_t i = 0; i < pos; i++)
            line += buf[i] == '\n';
        while (pos < len) {
            const char *s = buf + pos;
            const char *nl = memchr(s, '\n', len - pos);
            size_t n = nl ? (size_t)(nl - s) : len - pos;
            size_t k = 0;
            while (k < n && is_space(s[k]))
                k++;
            if (k < n) {
                doc = json_loadb(s, n, JSON_REJECT_DUPLICATES, &jerr);
                if (!doc) {
                    st = mf_err_set(err, MF_ERR_FORMAT, "%s: line %lld: invalid JSON at column "
                                    "%d: %s (JSON Lines needs one whole object per line)", label,
                                    (long long)line, jerr.column, jerr.text);
                    goto fail;
                }
                if ((st = add_record(&b, doc, "line", line, err)) != MF_OK)
                    goto fail;
                json_decref(doc);
                doc = NULL;
            }
            pos += n + 1;
            line++;
        }
    } else {
        st = mf_err_set(err, MF_ERR_FORMAT, "%s: expected a JSON array ('[') or JSON Lines "
                        "('{' on each line), found byte 0x%02x at offset %zu", label,
                        (unsigned char)buf[pos], pos);
        goto fail;
    }
    if (b.a->n_pairs == 0) {
        st = mf_err_set(err, MF_ERR_FORMAT, "%s: no records", label);
        goto fail;
    }
    b.a->image_path = mf_malloc((size_t)b.a->n_pairs * sizeof *b.a->image_path);
    if (!b.a->image_path) {
        st = mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory", label);
        goto fail;
    }
    for (int64_t i = 0; i < b.a->n_pairs; i++)
        b.a->image_path[i] = b.a->images[b.a->image_index[i]];
    *out = b.a;
    b.a = NULL;
fail:
    json_decref(doc);
    mf_free(b.slot);
    mf_annotations_free(b.a);
    return st;
}

enum mf_status mf_annotations_load(const char *path, const char *image_root,
                                   struct mf_annotations **out, struct mf_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    *out = NULL;
    enum mf_status st = mf_fs_read_all(path, &buf, &len, MF_ANN_MAX_FILE_BYTES, err);
    if (st == MF_OK)
        st = mf_annotations_parse(buf, len, path, image_root, out, err);
    mf_free(buf);
    return st;
}

enum mf_status mf_annotations_truncate(struct mf_annotations *a, int64_t n_pairs,
                                       struct mf_err *err)
{
    if (n_pairs < 1)
        return mf_err_set(err, MF_ERR_ARG, "%s: number of pairs must be at least 1, got %lld",
                          a->label, (long long)n_pairs);
    if (n_pairs >= a->n_pairs)
        return MF_OK;
    for (int64_t i = n_pairs; i < a->n_pairs; i++)
        mf_free(a->caption[i]);
    a->n_pairs = n_pairs;
    /* images are numbered by first appearance, so the ones kept are a prefix */
    int64_t n_images = 0;
    for (int64_t i = 0; i < n_pairs; i++)
        n_images = MF_MAX(n_images, a->image_index[i] + 1);
    for (int64_t i = n_images; i < a->n_images; i++)
        mf_free(a->images[i]);
    a->n_images = n_images;
    return MF_OK;
}

int64_t mf_annotations_n_batches(const struct mf_annotations *a, int64_t batch_size)
{
    if (batch_size < 1)
        return 0;
    return a->n_pairs / batch_size + (a->n_pairs % batch_size != 0);
}

enum mf_status mf_annotations_batch(const struct mf_annotations *a, int64_t batch_size, int64_t b,
                                    int64_t *first, int64_t *count, struct mf_err *err)
{
    int64_t n = mf_annotations_n_batches(a, batch_size);
    if (batch_size < 1 || b < 0 || b >= n)
        return mf_err_set(err, MF_ERR_RANGE, "%s: batch %lld out of range (%lld batches of %lld)",
                          a->label, (long long)b, (long long)n, (long long)batch_size);
    *first = b * batch_size;
    *count = MF_MIN(batch_size, a->n_pairs - *first);
    return MF_OK;
}
