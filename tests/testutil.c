#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multiflow/safetensors.h"

static char slots[8][4096];
static int slot;

static char *next_slot(void)
{
    char *s = slots[slot];
    slot = (slot + 1) % 8;
    return s;
}

const char *mf_test_path(const char *rel)
{
    const char *root = getenv("MF_SOURCE_DIR");
#ifdef MF_SOURCE_DIR
    if (!root)
        root = MF_SOURCE_DIR;
#endif
    char *s = next_slot();
    snprintf(s, 4096, "%s/%s", root ? root : ".", rel);
    return s;
}

const char *mf_test_tmpdir(void)
{
    char *s = next_slot();
    const char *base = getenv("TMPDIR");
    snprintf(s, 4096, "%s/mftest.XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(s))
        return NULL;
    return s;
}

char *mf_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        if (len)
            *len = (size_t)n;
    }
    return buf;
}

int mf_test_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

int mf_test_dir_count(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

double mf_test_compare(const char *label, const float *got, const float *want, int64_t n, double floor)
{
    double max_abs = 0, max_rel = 0;
    for (int64_t i = 0; i < n; i++) {
        /* the arrays may point into safetensors mappings that are only 2-byte aligned */
        float g, w;
        memcpy(&g, got + i, sizeof g);
        memcpy(&w, want + i, sizeof w);
        double d = fabs((double)g - (double)w);
        double r = d / fmax(fabs((double)w), floor);
        if (d > max_abs)
            max_abs = d;
        if (r > max_rel || isnan(r))
            max_rel = isnan(r) ? INFINITY : r;
    }
    printf("  %-40s n=%lld max_abs=%.3g max_rel=%.3g\n", label, (long long)n, max_abs, max_rel);
    return max_rel;
}

const void *mf_test_st_tensor(const struct mf_safetensors *st, const char *name, int dt, int64_t n)
{
    const struct mf_st_entry *e = mf_safetensors_find(st, name);
    if (!e)
        fail_msg("golden: tensor '%s' missing", name);
    int64_t numel = 1;
    for (int k = 0; k < e->ndim; k++)
        numel *= e->shape[k];
    if ((int)e->dtype != dt || (n >= 0 && numel != n))
        fail_msg("golden: tensor '%s' has the wrong dtype or size", name);
    return e->data;
}
