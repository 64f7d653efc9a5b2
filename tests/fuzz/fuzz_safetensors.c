/*
 * libFuzzer target for the safetensors header parser (mf_safetensors_parse over the raw bytes).
 * Besides "no crash, no sanitizer report", it checks what a successful parse promises: every
 * entry lies inside the data section, entries are in offset order without overlap, nbytes matches
 * dtype and shape, and lookups by name and metadata key find what iteration returns. Every byte of
 * every tensor is read, so an out-of-bounds view is caught by ASan.
 * Build and run: scripts/fuzz.sh (see tests/fuzz/CMakeLists.txt).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "multiflow/safetensors.h"

#define CHECK(x) do { if (!(x)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mf_safetensors *st = NULL;
    struct mf_err err = {0};
    if (mf_safetensors_parse(data, size, "fuzz.safetensors", &st, &err) != MF_OK) {
        CHECK(st == NULL);
        CHECK(err.code != MF_OK);
        CHECK(strncmp(err.msg, "fuzz.safetensors: ", 18) == 0);
        return 0;
    }
    size_t n = mf_safetensors_count(st), data_size = mf_safetensors_data_size(st);
    size_t prev_end = 0;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < n; i++) {
        const struct mf_st_entry *e = mf_safetensors_at(st, i);
        CHECK(e && e->name && e->name[0]);
        CHECK(e->ndim >= 0 && e->ndim <= MF_MAX_DIMS);
        size_t numel = 1;
        for (int d = 0; d < e->ndim; d++) {
            CHECK(e->shape[d] >= 0);
            numel *= (size_t)e->shape[d];
        }
        CHECK(numel * mf_dtype_size(e->dtype) == e->nbytes);
        CHECK(e->offset <= data_size && e->nbytes <= data_size - e->offset);
        CHECK(i == 0 || e->offset >= prev_end);
        prev_end = e->offset + e->nbytes;
        CHECK(mf_safetensors_find(st, e->name) == e);
        const uint8_t *p = e->data;
        for (size_t b = 0; b < e->nbytes; b++)
            sink ^= p[b];
    }
    CHECK(mf_safetensors_at(st, n) == NULL);
    for (size_t i = 0; i < mf_safetensors_meta_count(st); i++) {
        const char *v = NULL;
        const char *k = mf_safetensors_meta_at(st, i, &v);
        CHECK(k && v && mf_safetensors_meta(st, k) == v);
    }
    (void)sink;
    mf_safetensors_close(st);
    return 0;
}
