/* Status codes and error records (include/multiflow/status.h). */
#include "multiflow/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *mf_status_str(enum mf_status code)
{
    switch (code) {
    case MF_OK: return "ok";
    case MF_ERR_NOMEM: return "out of memory";
    case MF_ERR_IO: return "input/output error";
    case MF_ERR_FORMAT: return "malformed input";
    case MF_ERR_DTYPE: return "unsupported element type";
    case MF_ERR_SHAPE: return "shape mismatch";
    case MF_ERR_MISSING: return "missing input";
    case MF_ERR_ARG: return "invalid argument";
    case MF_ERR_EXISTS: return "output exists";
    case MF_ERR_UNSUPPORTED: return "unsupported";
    case MF_ERR_RANGE: return "value out of range";
    case MF_ERR_INTERNAL: return "internal error";
    case MF_ERR_NUMERIC: return "non-finite value";
    }
    return "unknown status";
}

enum mf_status mf_err_set(struct mf_err *err, enum mf_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        err->row = -1;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void mf_err_prefix(struct mf_err *err, const char *prefix)
{
    char tmp[MF_ERR_MSG_LEN];
    if (!err || !prefix)
        return;
    snprintf(tmp, sizeof tmp, "%s: %s", prefix, err->msg);
    memcpy(err->msg, tmp, sizeof tmp);
}
