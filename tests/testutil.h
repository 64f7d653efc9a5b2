/* Shared helpers for the C tests: fixture paths, temporary directories, golden comparisons. */
#ifndef MF_TESTUTIL_H
#define MF_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

/* Absolute path of a file under the source tree: mf_test_path("tests/data/x.json"). Static buffer
 * rotated among 8 slots, so a few results can be used at once. */
const char *mf_test_path(const char *rel);
/* Creates a fresh empty temporary directory; returns its path (static buffer rotated as above). */
const char *mf_test_tmpdir(void);
/* Reads a whole file; returns malloc'd bytes (NUL-terminated) and sets *len, or NULL. */
char *mf_test_read_file(const char *path, size_t *len);
/* Writes bytes to a file; returns 0 on success. */
int mf_test_write_file(const char *path, const void *data, size_t len);
/* Number of entries (other than . and ..) in a directory; -1 if it cannot be opened. */
int mf_test_dir_count(const char *path);
/* Compares two float arrays: prints max abs and rel diff under label; returns the max relative
 * difference computed as |a-b| / max(|b|, floor). */
double mf_test_compare(const char *label, const float *got, const float *want, int64_t n, double floor);
/* The data of tensor name in a golden file, checked to have dtype dt (enum mf_dtype) and n elements
 * (n < 0: any count); fails the test naming the tensor otherwise. */
struct mf_safetensors;
const void *mf_test_st_tensor(const struct mf_safetensors *st, const char *name, int dt, int64_t n);

#endif
