/* Error codes, names and classes, all expanded from CX_ERRNO_MAP so they cannot drift apart. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cx/error.h"

const char *cx_strerror(int code)
{
    switch (code) {
    case CX_OK:
        return "success";
#define CX__ERR_MSG(name, value, cls, msg)                                                         \
    case CX_##name:                                                                                \
        return msg;
        CX_ERRNO_MAP(CX__ERR_MSG)
#undef CX__ERR_MSG
    }
    return "unknown error";
}

const char *cx_err_name(int code)
{
    switch (code) {
    case CX_OK:
        return "CX_OK";
#define CX__ERR_NAME(name, value, cls, msg)                                                        \
    case CX_##name:                                                                                \
        return "CX_" #name;
        CX_ERRNO_MAP(CX__ERR_NAME)
#undef CX__ERR_NAME
    }
    return "CX_UNKNOWN_ERROR";
}

const char *cx_err_class(int code)
{
    switch (code) {
    case CX_OK:
        return "none";
#define CX__ERR_CLASS(name, value, cls, msg)                                                       \
    case CX_##name:                                                                                \
        return #cls;
        CX_ERRNO_MAP(CX__ERR_CLASS)
#undef CX__ERR_CLASS
    }
    /* A code we do not know came from a newer or broken component: our side, not the payload. */
    return "infra";
}

int cx_error_set(cx_error_t *err, int code, const char *path, const char *fmt, ...)
{
    /* The first error is the cause; later ones are usually its consequences. */
    if (err == NULL || err->code != 0 || code == 0)
        return code;
    err->code = code;
    snprintf(err->path, sizeof err->path, "%s", path ? path : "");
    if (fmt == NULL) {
        snprintf(err->message, sizeof err->message, "%s", cx_strerror(code));
    } else {
        va_list ap;
        va_start(ap, fmt);
        if (vsnprintf(err->message, sizeof err->message, fmt, ap) < 0)
            snprintf(err->message, sizeof err->message, "%s", cx_strerror(code));
        va_end(ap);
    }
    return code;
}

void cx_error_clear(cx_error_t *err)
{
    if (err == NULL)
        return;
    err->code = 0;
    err->path[0] = '\0';
    err->message[0] = '\0';
}
