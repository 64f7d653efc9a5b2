/*
 * io/safetensors.c: safetensors reader (mmap, zero-copy views, every header field validated) and
 * writer (entries in the order given, header padded with spaces to 8 bytes, atomic output).
 *
 * Does not: convert dtypes (core/tensor.c does), copy tensor data, support big-endian hosts, or
 * protect against the file being truncated while mapped (SIGBUS). The JSON header is parsed with
 * jansson, whose own allocations do not go through mf_malloc; everything kept after open does.
 * Reference: the safetensors format description (huggingface/safetensors README, "Format"), and
 * docs/spec models.md §7. Stricter than the reference reader in one way: unknown keys inside a
 * tensor entry are rejected; more lenient in one way: gaps between tensors are allowed.
 */
#include "multiflow/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "io/fs.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; big-endian hosts are not supported"
#endif

struct mf_safetensors {
    char *label;               /* path or parse label, for messages */
    void *map;                 /* owned mapping (open) or NULL (parse) */
    size_t map_len;
    const uint8_t *data;       /* start of the data section */
    size_t data_len;
    size_t n;
    struct mf_st_entry *entries; /* (n) sorted by offset, then end, then name */
    char *strings;             /* pool holding every name, metadata key and value */
    size_t *slots;             /* (n_slots) open-addressing hash: entry index + 1, 0 = empty */
    size_t n_slots;
    size_t n_meta;
    const char **meta;         /* (n_meta, 2) key, value pairs sorted by key */
};

/* Sets err to "<label>: <formatted>" and returns code. */
static enum mf_status fail_msg(struct mf_err *err, enum mf_status code, const char *label,
                               const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static enum mf_status fail_msg(struct mf_err *err, enum mf_status code, const char *label,
                               const char *fmt, ...)
{
    if (err) {
        char tmp[MF_ERR_MSG_LEN];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(tmp, sizeof tmp, fmt, ap);
        va_end(ap);
        mf_err_set(err, code, "%s: %s", label, tmp);
    }
    return code;
}

static uint64_t hash_name(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t read_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int cmp_entry(const void *pa, const void *pb)
{
    const struct mf_st_entry *a = pa, *b = pb;
    if (a->offset != b->offset)
        return a->offset < b->offset ? -1 : 1;
    if (a->nbytes != b->nbytes)
        return a->nbytes < b->nbytes ? -1 : 1;
    return strcmp(a->name, b->name);
}

static int cmp_meta(const void *pa, const void *pb)
{
    const char *const *a = pa, *const *b = pb;
    return strcmp(a[0], b[0]);
}

/* Copies s into the string pool at *pos; returns the copy. */
static const char *pool_add(char *pool, size_t *pos, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = pool + *pos;
    memcpy(d, s, n);
    *pos += n;
    return d;
}

/* Reads a non-negative JSON integer; false if v is not one. */
static bool json_nonneg(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Validates one tensor entry and fills e (name already set). */
static enum mf_status parse_entry(const char *label, const char *name, json_t *obj, size_t data_len,
                                  struct mf_st_entry *e, struct mf_err *err)
{
    const char *key;
    json_t *v;
    char shp[160];
    if (!json_is_object(obj))
        return fail_msg(err, MF_ERR_FORMAT, label, "tensor '%s': entry is not a JSON object", name);
    json_object_foreach(obj, key, v)
    {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return fail_msg(err, MF_ERR_FORMAT, label, "tensor '%s' has unknown key '%s'", name, key);
    }
    json_t *jd = json_object_get(obj, "dtype");
    json_t *js = json_object_get(obj, "shape");
    json_t *jo = json_object_get(obj, "data_offsets");
    if (!jd || !js || !jo)
        return fail_msg(err, MF_ERR_FORMAT, label, "tensor '%s' lacks '%s'", name,
                        !jd ? "dtype" : !js ? "shape" : "data_offsets");
    if (!json_is_string(jd))
        return fail_msg(err, MF_ERR_FORMAT, label, "tensor '%s': dtype is not a string", name);
    if (!mf_dtype_parse(json_string_value(jd), &e->dtype))
        return fail_msg(err, MF_ERR_DTYPE, label, "tensor '%s' has unknown dtype '%s'", name,
                        json_string_value(jd));
    if (!json_is_array(js))
        return fail_msg(err, MF_ERR_FORMAT, label, "tensor '%s': shape is not an array", name);
    size_t nd = json_array_size(js);
    if (nd > MF_MAX_DIMS)
        return fail_msg(err, MF_ERR_FORMAT, label, "tensor '%s' has %zu dimensions, at most %d supported",
                        name, nd, MF_MAX_DIMS);
    e->ndim = (int)nd;
    /* the product is checked in uint64 and must fit int64 (numel) and size_t (bytes) */
    uint64_t numel = 1;
    bool overflow = false;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (!json_nonneg(json_array_get(js, i), &d))
            return fail_msg(err, MF_ERR_FORMAT, label,
                            "tensor '%s': shape[%zu] is not a non-negative integer", name, i);
        e->shape[i] = (int64_t)d;
        if (__builtin_mul_overflow(numel, d, &numel))
            overflow = true;
    }
    mf_shape_str(shp, sizeof shp, e->ndim, e->shape);
    size_t nbytes = 0;
    if (overflow || numel > (uint64_t)INT64_MAX || numel > (uint64_t)SIZE_MAX ||
        !mf_mul_size((size_t)numel, mf_dtype_size(e->dtype), &nbytes))
        return fail_msg(err, MF_ERR_RANGE, label, "tensor '%s': shape %s of dtype %s overflows the size",
                        name, shp, mf_dtype_name(e->dtype));
    uint64_t b, en;
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_nonneg(json_array_get(jo, 0), &b) ||
        !json_nonneg(json_array_get(jo, 1), &en))
        return fail_msg(err, MF_ERR_FORMAT, label,
                        "tensor '%s': data_offsets is not an array of two non-negative integers", name);
    if (b > en)
        return fail_msg(err, MF_ERR_FORMAT, label,
                        "tensor '%s' data_offsets [%llu,%llu]: begin is after end", name,
                        (unsigned long long)b, (unsigned long long)en);
    if (en > (uint64_t)data_len)
        return fail_msg(err, MF_ERR_RANGE, label,
                        "tensor '%s' data_offsets [%llu,%llu] exceed the data section of %zu bytes",
                        name, (unsigned long long)b, (unsigned long long)en, data_len);
    if (en - b != (uint64_t)nbytes)
        return fail_msg(err, MF_ERR_FORMAT, label,
                        "tensor '%s' data_offsets [%llu,%llu] do not match dtype %s and shape %s (%zu bytes)",
                        name, (unsigned long long)b, (unsigned long long)en,
                        mf_dtype_name(e->dtype), shp, nbytes);
    e->offset = (size_t)b;
    e->nbytes = nbytes;
    return MF_OK;
}

void mf_safetensors_close(struct mf_safetensors *st)
{
    if (!st)
        return;
    if (st->map)
        munmap(st->map, st->map_len);
    mf_free(st->meta);
    mf_free(st->slots);
    mf_free(st->strings);
    mf_free(st->entries);
    mf_free(st->label);
    mf_free(st);
}

enum mf_status mf_safetensors_parse(const void *buf, size_t len, const char *label,
                                    struct mf_safetensors **out, struct mf_err *err)
{
    const uint8_t *p = buf;
    struct mf_safetensors *st = NULL;
    json_t *root = NULL;
    enum mf_status s = MF_OK;
    *out = NULL;
    if (!label)
        label = "<memory>";
    st = mf_calloc(1, sizeof *st);
    if (!st || !(st->label = mf_strdup(label))) {
        s = fail_msg(err, MF_ERR_NOMEM, label, "out of memory");
        goto fail;
    }
    if (len < 8 || !buf) {
        s = fail_msg(err, MF_ERR_FORMAT, label,
                     "file is %zu bytes, too short for the 8-byte header length (truncated?)", len);
        goto fail;
    }
    uint64_t hlen = read_le64(p);
    if (hlen > MF_ST_MAX_HEADER) {
        s = fail_msg(err, MF_ERR_FORMAT, label, "header length %llu exceeds the limit of %llu bytes",
                     (unsigned long long)hlen, (unsigned long long)MF_ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > (uint64_t)(len - 8)) {
        s = fail_msg(err, MF_ERR_FORMAT, label,
                     "header length %llu exceeds the %zu bytes after the length field (truncated?)",
                     (unsigned long long)hlen, len - 8);
        goto fail;
    }
    st->data = p + 8 + hlen;
    st->data_len = len - 8 - (size_t)hlen;

    json_error_t jerr;
    root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        s = fail_msg(err, MF_ERR_FORMAT, label, "header is not valid JSON: %s (at byte %d)", jerr.text,
                     jerr.position);
        goto fail;
    }
    if (!json_is_object(root)) {
        s = fail_msg(err, MF_ERR_FORMAT, label, "header is not a JSON object");
        goto fail;
    }

    /* first pass: validate __metadata__ and size the allocations */
    json_t *jmeta = json_object_get(root, "__metadata__");
    size_t pool = 1;
    const char *key;
    json_t *v;
    if (jmeta) {
        if (!json_is_object(jmeta)) {
            s = fail_msg(err, MF_ERR_FORMAT, label, "__metadata__ is not a JSON object");
            goto fail;
        }
        json_object_foreach(jmeta, key, v)
        {
            if (!json_is_string(v)) {
                s = fail_msg(err, MF_ERR_FORMAT, label, "__metadata__ value of key '%s' is not a string",
                             key);
                goto fail;
            }
            /* decoded strings are never longer than the header, so these sums stay far from
             * SIZE_MAX; checked anyway */
            if (!mf_add_size(pool, strlen(key) + 1, &pool) ||
                !mf_add_size(pool, json_string_length(v) + 1, &pool)) {
                s = fail_msg(err, MF_ERR_RANGE, label, "header strings overflow");
                goto fail;
            }
            st->n_meta++;
        }
    }
    json_object_foreach(root, key, v)
    {
        if (!strcmp(key, "__metadata__"))
            continue;
        if (!*key) {
            s = fail_msg(err, MF_ERR_FORMAT, label, "a tensor has an empty name");
            goto fail;
        }
        if (!mf_add_size(pool, strlen(key) + 1, &pool)) {
            s = fail_msg(err, MF_ERR_RANGE, label, "header strings overflow");
            goto fail;
        }
        st->n++;
    }
    st->n_slots = 8;
    while (st->n_slots < 2 * st->n)
        st->n_slots *= 2;
    st->entries = mf_calloc(st->n ? st->n : 1, sizeof *st->entries);
    st->strings = mf_malloc(pool);
    st->slots = mf_calloc(st->n_slots, sizeof *st->slots);
    st->meta = mf_calloc(st->n_meta ? 2 * st->n_meta : 1, sizeof *st->meta);
    if (!st->entries || !st->strings || !st->slots || !st->meta) {
        s = fail_msg(err, MF_ERR_NOMEM, label, "out of memory for %zu tensors", st->n);
        goto fail;
    }

    /* second pass: entries and metadata */
    size_t pos = 0, i = 0;
    json_object_foreach(root, key, v)
    {
        if (!strcmp(key, "__metadata__"))
            continue;
        struct mf_st_entry *e = &st->entries[i++];
        e->name = pool_add(st->strings, &pos, key);
        s = parse_entry(label, key, v, st->data_len, e, err);
        if (s != MF_OK)
            goto fail;
        e->data = st->data + e->offset;
    }
    if (jmeta) {
        size_t m = 0;
        json_object_foreach(jmeta, key, v)
        {
            st->meta[2 * m] = pool_add(st->strings, &pos, key);
            /* jansson rejects strings with NUL bytes unless JSON_ALLOW_NUL, so strlen == length */
            st->meta[2 * m + 1] = pool_add(st->strings, &pos, json_string_value(v));
            m++;
        }
        qsort(st->meta, st->n_meta, 2 * sizeof *st->meta, cmp_meta);
    }
    json_decref(root);
    root = NULL;

    /* overlap: in offset order every tensor must start at or after the end of the previous one */
    if (st->n > 1)
        qsort(st->entries, st->n, sizeof *st->entries, cmp_entry);
    for (i = 1; i < st->n; i++) {
        const struct mf_st_entry *a = &st->entries[i - 1], *b = &st->entries[i];
        if (b->offset < a->offset + a->nbytes) {
            s = fail_msg(err, MF_ERR_FORMAT, label,
                         "tensor '%s' data_offsets [%zu,%zu] overlap tensor '%s' [%zu,%zu]", b->name,
                         b->offset, b->offset + b->nbytes, a->name, a->offset, a->offset + a->nbytes);
            goto fail;
        }
    }
    for (i = 0; i < st->n; i++) {
        size_t mask = st->n_slots - 1, h = (size_t)hash_name(st->entries[i].name) & mask;
        while (st->slots[h])
            h = (h + 1) & mask;
        st->slots[h] = i + 1;
    }
    *out = st;
    return MF_OK;
fail:
    if (root)
        json_decref(root);
    mf_safetensors_close(st);
    return s;
}

enum mf_status mf_safetensors_open(const char *path, struct mf_safetensors **out, struct mf_err *err)
{
    struct stat sb;
    void *map = NULL;
    size_t len = 0;
    enum mf_status s;
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        s = fail_msg(err, errno == ENOENT ? MF_ERR_MISSING : MF_ERR_IO, path, "cannot open: %s",
                     strerror(errno));
        goto fail;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        s = fail_msg(err, MF_ERR_IO, path, "not a regular file");
        goto fail;
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        s = fail_msg(err, MF_ERR_RANGE, path, "file of %llu bytes does not fit in memory",
                     (unsigned long long)sb.st_size);
        goto fail;
    }
    len = (size_t)sb.st_size;
    if (len < 8) {
        s = fail_msg(err, MF_ERR_FORMAT, path,
                     "file is %zu bytes, too short for the 8-byte header length (truncated?)", len);
        goto fail;
    }
    map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        map = NULL;
        s = fail_msg(err, errno == ENOMEM ? MF_ERR_NOMEM : MF_ERR_IO, path, "mmap of %zu bytes failed: %s",
                     len, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    s = mf_safetensors_parse(map, len, path, out, err);
    if (s != MF_OK)
        goto fail;
    (*out)->map = map;
    (*out)->map_len = len;
    return MF_OK;
fail:
    if (map)
        munmap(map, len);
    if (fd >= 0)
        close(fd);
    return s;
}

size_t mf_safetensors_count(const struct mf_safetensors *st) { return st->n; }

const struct mf_st_entry *mf_safetensors_at(const struct mf_safetensors *st, size_t i)
{
    return i < st->n ? &st->entries[i] : NULL;
}

const struct mf_st_entry *mf_safetensors_find(const struct mf_safetensors *st, const char *name)
{
    size_t mask = st->n_slots - 1, h = (size_t)hash_name(name) & mask;
    while (st->slots[h]) {
        const struct mf_st_entry *e = &st->entries[st->slots[h] - 1];
        if (!strcmp(e->name, name))
            return e;
        h = (h + 1) & mask;
    }
    return NULL;
}

const char *mf_safetensors_meta(const struct mf_safetensors *st, const char *key)
{
    size_t lo = 0, hi = st->n_meta;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->meta[2 * mid], key);
        if (c == 0)
            return st->meta[2 * mid + 1];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

size_t mf_safetensors_meta_count(const struct mf_safetensors *st) { return st->n_meta; }

const char *mf_safetensors_meta_at(const struct mf_safetensors *st, size_t i, const char **value)
{
    if (i >= st->n_meta)
        return NULL;
    if (value)
        *value = st->meta[2 * i + 1];
    return st->meta[2 * i];
}

const char *mf_safetensors_path(const struct mf_safetensors *st) { return st->label; }

size_t mf_safetensors_data_size(const struct mf_safetensors *st) { return st->data_len; }

/* ---------------------------------------------------------------------------------- writer --- */

struct st_wentry {
    char *name;
    enum mf_dtype dtype;
    int ndim;
    int64_t shape[MF_MAX_DIMS];
    const void *data;
    size_t nbytes;
    mf_st_fill_fn fill; /* or bytes produced at commit */
    void *ctx;
};

/* Bytes per fill call at commit (a multiple of every dtype size). */
#define ST_FILL_CHUNK ((size_t)1 << 20)

struct mf_st_writer {
    char *path;
    struct st_wentry *e; /* (n) in the order added */
    size_t n, cap;
    char **meta;         /* (n_meta, 2) key, value, in the order added */
    size_t n_meta, cap_meta;
};

void mf_st_writer_abort(struct mf_st_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        mf_free(w->e[i].name);
    for (size_t i = 0; i < 2 * w->n_meta; i++)
        mf_free(w->meta[i]);
    mf_free(w->e);
    mf_free(w->meta);
    mf_free(w->path);
    mf_free(w);
}

enum mf_status mf_st_writer_create(const char *path, struct mf_st_writer **out, struct mf_err *err)
{
    struct mf_st_writer *w = NULL;
    char dir[MF_PATH_MAX];
    enum mf_status s;
    *out = NULL;
    if (!path || !*path || !mf_fs_dirname(dir, sizeof dir, path)) {
        s = mf_err_set(err, MF_ERR_ARG, "'%s': output path is empty or too long", path ? path : "");
        goto fail;
    }
    if (!mf_fs_is_dir(dir)) {
        s = fail_msg(err, MF_ERR_MISSING, path, "output directory '%s' does not exist", dir);
        goto fail;
    }
    w = mf_calloc(1, sizeof *w);
    if (!w || !(w->path = mf_strdup(path))) {
        s = fail_msg(err, MF_ERR_NOMEM, path, "out of memory");
        goto fail;
    }
    *out = w;
    return MF_OK;
fail:
    mf_st_writer_abort(w);
    return s;
}

static enum mf_status writer_add(struct mf_st_writer *w, const char *name, enum mf_dtype dt, int ndim,
                                 const int64_t *shape, const void *data, mf_st_fill_fn fill, void *ctx,
                                 struct mf_err *err)
{
    char *copy = NULL;
    enum mf_status s;
    if (!name || !*name || !strcmp(name, "__metadata__")) {
        s = fail_msg(err, MF_ERR_ARG, w->path, "invalid tensor name '%s'", name ? name : "(null)");
        goto fail;
    }
    if ((int)dt < 0 || dt >= MF_DTYPE_COUNT) {
        s = fail_msg(err, MF_ERR_DTYPE, w->path, "tensor '%s': invalid dtype %d", name, (int)dt);
        goto fail;
    }
    if (ndim < 0 || ndim > MF_MAX_DIMS || (ndim > 0 && !shape)) {
        s = fail_msg(err, MF_ERR_ARG, w->path, "tensor '%s': %d dimensions, expected 0..%d", name, ndim,
                     MF_MAX_DIMS);
        goto fail;
    }
    size_t nbytes = mf_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > (uint64_t)SIZE_MAX ||
            !mf_mul_size(nbytes, (size_t)shape[i], &nbytes)) {
            char shp[160];
            mf_shape_str(shp, sizeof shp, ndim, shape);
            s = fail_msg(err, MF_ERR_ARG, w->path, "tensor '%s': invalid shape %s", name, shp);
            goto fail;
        }
    }
    if (nbytes > 0 && !data && !fill) {
        s = fail_msg(err, MF_ERR_ARG, w->path, "tensor '%s': no data for %zu bytes", name, nbytes);
        goto fail;
    }
    for (size_t i = 0; i < w->n; i++) {
        if (!strcmp(w->e[i].name, name)) {
            s = fail_msg(err, MF_ERR_ARG, w->path, "tensor '%s' added twice", name);
            goto fail;
        }
    }
    if (w->n == w->cap) {
        size_t ncap = w->cap ? 2 * w->cap : 64;
        struct st_wentry *p = mf_realloc(w->e, ncap * sizeof *p);
        if (!p) {
            s = fail_msg(err, MF_ERR_NOMEM, w->path, "out of memory adding tensor '%s'", name);
            goto fail;
        }
        w->e = p;
        w->cap = ncap;
    }
    copy = mf_strdup(name);
    if (!copy) {
        s = fail_msg(err, MF_ERR_NOMEM, w->path, "out of memory adding tensor '%s'", name);
        goto fail;
    }
    struct st_wentry *e = &w->e[w->n++];
    memset(e, 0, sizeof *e);
    e->name = copy;
    e->dtype = dt;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        e->shape[i] = shape[i];
    e->data = data;
    e->nbytes = nbytes;
    e->fill = fill;
    e->ctx = ctx;
    return MF_OK;
fail:
    mf_free(copy);
    return s;
}

enum mf_status mf_st_writer_add(struct mf_st_writer *w, const char *name, enum mf_dtype dt, int ndim,
                                const int64_t *shape, const void *data, struct mf_err *err)
{
    return writer_add(w, name, dt, ndim, shape, data, NULL, NULL, err);
}

enum mf_status mf_st_writer_add_fill(struct mf_st_writer *w, const char *name, enum mf_dtype dt, int ndim,
                                     const int64_t *shape, mf_st_fill_fn fill, void *ctx, struct mf_err *err)
{
    if (!fill)
        return fail_msg(err, MF_ERR_ARG, w->path, "tensor '%s': no fill function", name ? name : "(null)");
    return writer_add(w, name, dt, ndim, shape, NULL, fill, ctx, err);
}

enum mf_status mf_st_writer_meta(struct mf_st_writer *w, const char *key, const char *value,
                                 struct mf_err *err)
{
    char *k = NULL, *v = NULL;
    enum mf_status s;
    if (!key || !value) {
        s = fail_msg(err, MF_ERR_ARG, w->path, "metadata key and value must not be NULL");
        goto fail;
    }
    for (size_t i = 0; i < w->n_meta; i++) {
        if (!strcmp(w->meta[2 * i], key)) {
            s = fail_msg(err, MF_ERR_ARG, w->path, "metadata key '%s' set twice", key);
            goto fail;
        }
    }
    if (w->n_meta == w->cap_meta) {
        size_t ncap = w->cap_meta ? 2 * w->cap_meta : 8;
        char **p = mf_realloc(w->meta, 2 * ncap * sizeof *p);
        if (!p) {
            s = fail_msg(err, MF_ERR_NOMEM, w->path, "out of memory for metadata");
            goto fail;
        }
        w->meta = p;
        w->cap_meta = ncap;
    }
    k = mf_strdup(key);
    v = mf_strdup(value);
    if (!k || !v) {
        s = fail_msg(err, MF_ERR_NOMEM, w->path, "out of memory for metadata");
        goto fail;
    }
    w->meta[2 * w->n_meta] = k;
    w->meta[2 * w->n_meta + 1] = v;
    w->n_meta++;
    return MF_OK;
fail:
    mf_free(k);
    mf_free(v);
    return s;
}

/* Builds the JSON header (compact, insertion order) into an mf_malloc'd buffer padded with spaces
 * so that 8 + *len is a multiple of 8. */
static enum mf_status build_header(const struct mf_st_writer *w, char **out, size_t *len,
                                   struct mf_err *err)
{
    json_t *root = json_object(), *meta = NULL;
    char *buf = NULL;
    enum mf_status s = MF_OK;
    size_t off = 0;
    if (!root) {
        s = fail_msg(err, MF_ERR_NOMEM, w->path, "out of memory building the header");
        goto fail;
    }
    if (w->n_meta) {
        meta = json_object();
        if (!meta || json_object_set(root, "__metadata__", meta) != 0) {
            s = fail_msg(err, MF_ERR_NOMEM, w->path, "out of memory building the header");
            goto fail;
        }
        for (size_t i = 0; i < w->n_meta; i++) {
            json_t *jv = json_string(w->meta[2 * i + 1]);
            if (!jv || json_object_set_new(meta, w->meta[2 * i], jv) != 0) {
                s = fail_msg(err, MF_ERR_ARG, w->path, "metadata key '%s' or its value is not valid UTF-8",
                             w->meta[2 * i]);
                goto fail;
            }
        }
    }
    for (size_t i = 0; i < w->n; i++) {
        const struct st_wentry *e = &w->e[i];
        json_t *shape = json_array();
        json_t *offs = json_pack("[II]", (json_int_t)off, (json_int_t)(off + e->nbytes));
        json_t *obj = json_object();
        bool ok = shape && offs && obj;
        for (int d = 0; ok && d < e->ndim; d++)
            ok = json_array_append_new(shape, json_integer(e->shape[d])) == 0;
        ok = ok && json_object_set_new(obj, "dtype", json_string(mf_dtype_name(e->dtype))) == 0;
        ok = ok && json_object_set(obj, "shape", shape) == 0;
        ok = ok && json_object_set(obj, "data_offsets", offs) == 0;
        json_decref(shape);
        json_decref(offs);
        if (!ok) {
            json_decref(obj);
            s = fail_msg(err, MF_ERR_NOMEM, w->path, "out of memory building the header");
            goto fail;
        }
        if (json_object_set_new(root, e->name, obj) != 0) {
            s = fail_msg(err, MF_ERR_ARG, w->path, "tensor name '%s' is not valid UTF-8", e->name);
            goto fail;
        }
        if (!mf_add_size(off, e->nbytes, &off)) {
            s = fail_msg(err, MF_ERR_RANGE, w->path, "total data size overflows");
            goto fail;
        }
    }
    size_t n = json_dumpb(root, NULL, 0, JSON_COMPACT);
    if (n == 0) {
        s = fail_msg(err, MF_ERR_NOMEM, w->path, "cannot serialise the header");
        goto fail;
    }
    size_t padded = (n + 7) & ~(size_t)7;
    if ((uint64_t)padded > MF_ST_MAX_HEADER) {
        s = fail_msg(err, MF_ERR_RANGE, w->path, "header of %zu bytes exceeds the limit of %llu", padded,
                     (unsigned long long)MF_ST_MAX_HEADER);
        goto fail;
    }
    buf = mf_malloc(padded);
    if (!buf) {
        s = fail_msg(err, MF_ERR_NOMEM, w->path, "out of memory for a %zu-byte header", padded);
        goto fail;
    }
    if (json_dumpb(root, buf, n, JSON_COMPACT) != n) {
        s = fail_msg(err, MF_ERR_INTERNAL, w->path, "header size changed while serialising");
        goto fail;
    }
    memset(buf + n, ' ', padded - n);
    json_decref(meta);
    json_decref(root);
    *out = buf;
    *len = padded;
    return MF_OK;
fail:
    mf_free(buf);
    json_decref(meta);
    json_decref(root);
    return s;
}

enum mf_status mf_st_writer_commit(struct mf_st_writer *w, struct mf_err *err)
{
    struct mf_atomic_file af = {0};
    bool opened = false;
    char *hdr = NULL;
    void *chunk = NULL;
    size_t hlen = 0;
    enum mf_status s;
    if (!w)
        return mf_err_set(err, MF_ERR_ARG, "mf_st_writer_commit: no writer");
    s = build_header(w, &hdr, &hlen, err);
    if (s != MF_OK)
        goto fail;
    s = mf_atomic_open(w->path, &af, err);
    if (s != MF_OK)
        goto fail;
    opened = true;
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    bool ok = fwrite(lenb, 1, 8, af.f) == 8 && fwrite(hdr, 1, hlen, af.f) == hlen;
    for (size_t i = 0; ok && i < w->n; i++) {
        const struct st_wentry *e = &w->e[i];
        if (!e->fill) {
            ok = e->nbytes == 0 || fwrite(e->data, 1, e->nbytes, af.f) == e->nbytes;
            continue;
        }
        /* produced chunk by chunk: one chunk of memory whatever the tensor's size */
        if (!chunk && !(chunk = mf_malloc(ST_FILL_CHUNK))) {
            s = fail_msg(err, MF_ERR_NOMEM, w->path, "out of memory for the write buffer");
            goto fail;
        }
        for (size_t off = 0; ok && off < e->nbytes; off += ST_FILL_CHUNK) {
            size_t n = MF_MIN(ST_FILL_CHUNK, e->nbytes - off);
            if ((s = e->fill(e->ctx, chunk, off, n, err)) != MF_OK)
                goto fail;
            ok = fwrite(chunk, 1, n, af.f) == n;
        }
    }
    if (!ok) {
        s = fail_msg(err, MF_ERR_IO, w->path, "write failed: %s", mf_fs_strerror(errno));
        goto fail;
    }
    opened = false;
    s = mf_atomic_commit(&af, err);
    if (s != MF_OK)
        goto fail;
    mf_free(chunk);
    mf_free(hdr);
    mf_st_writer_abort(w);
    return MF_OK;
fail:
    if (opened)
        mf_atomic_abort(&af);
    mf_free(chunk);
    mf_free(hdr);
    mf_st_writer_abort(w);
    return s;
}
