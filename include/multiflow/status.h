/*
 * multiflow/status.h: status codes and the caller-owned error record every library call fills.
 *
 *     struct mf_err err = {0};
 *     struct mf_safetensors *st;
 *     if (mf_safetensors_open("model.safetensors", &st, &err) != MF_OK)
 *         fprintf(stderr, "error: %s\n", err.msg);   // names the file and the problem
 *
 * Thread safety: every function here is reentrant; an mf_err belongs to one thread at a time.
 * New codes go at the end; existing values are never renumbered or removed.
 */
#ifndef MF_STATUS_H
#define MF_STATUS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum mf_status {
    MF_OK = 0,
    MF_ERR_NOMEM = 1,       /* an allocation failed */
    MF_ERR_IO = 2,          /* open/read/write/rename/mmap failed */
    MF_ERR_FORMAT = 3,      /* malformed file contents (header, JSON, image) */
    MF_ERR_DTYPE = 4,       /* unknown or unsupported element type */
    MF_ERR_SHAPE = 5,       /* a tensor has the wrong shape */
    MF_ERR_MISSING = 6,     /* a required tensor, file or field is absent */
    MF_ERR_ARG = 7,         /* bad argument from the caller (option value, range) */
    MF_ERR_EXISTS = 8,      /* output exists and overwriting was not asked for */
    MF_ERR_UNSUPPORTED = 9, /* valid input this version does not handle */
    MF_ERR_RANGE = 10,      /* a value (id, offset, size) is out of range */
    MF_ERR_INTERNAL = 11,   /* a broken invariant that is not the user's fault */
    MF_ERR_NUMERIC = 12,    /* NaN or infinite values where finite ones are required */
};

#define MF_ERR_MSG_LEN 2048 /* room to name every missing or unexpected tensor of a checkpoint */

struct mf_err {
    enum mf_status code;
    char msg[MF_ERR_MSG_LEN];
    int64_t row; /* MF_ERR_NUMERIC from a batched forward call: the batch row at fault; else -1 */
};

/* Short fixed text for a status code ("out of memory", "malformed input", ...). */
const char *mf_status_str(enum mf_status code);

/* Fills err (if not NULL) with code and a printf-style message; returns code. */
enum mf_status mf_err_set(struct mf_err *err, enum mf_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prefixes the message already in err with "prefix: " (used to add a file name). */
void mf_err_prefix(struct mf_err *err, const char *prefix);

#ifdef __cplusplus
}
#endif
#endif
