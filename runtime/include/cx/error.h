/* Errors: negative return codes plus a caller-owned error struct with the detail.
 *
 * Every fallible call returns 0 or a negative CX_E* code. CX_ERRNO_MAP defines the codes, their
 * names and their messages together; codes are only appended, never renumbered. Each code
 * belongs to one class (payload, auth, provider, infra, config) so operators can tell whose
 * fault a failure is.
 *
 * Error text never contains payloads, secrets or tokens: only field paths, limits and names.
 */
#ifndef CX_ERROR_H
#define CX_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef CX_API
#if defined(__GNUC__)
#define CX_API __attribute__((visibility("default")))
#else
#define CX_API
#endif
#endif

/* X(name, value, class, message) */
#define CX_ERRNO_MAP(X)                                                                          \
    X(EINVAL, -1, config, "invalid argument")                                                    \
    X(ENOMEM, -2, infra, "out of memory")                                                        \
    X(ENOSPC, -3, infra, "output buffer or arena limit reached")                                 \
    X(EJSON, -4, payload, "malformed JSON")                                                      \
    X(ETYPE, -5, payload, "wrong JSON type for field")                                           \
    X(EUNKNOWN_FIELD, -6, payload, "unknown field")                                              \
    X(ELIMIT, -7, payload, "input exceeds a size or depth limit")                                \
    X(EUTF8, -8, payload, "invalid UTF-8")                                                       \
    X(ERANGE, -9, payload, "value out of range")                                                 \
    X(EVALIDATION, -10, payload, "schema validation failed")                                     \
    X(EDEDUPE_KEY, -11, payload, "dedupe key cannot be built: a referenced value is empty")      \
    X(ENOTFOUND, -12, config, "not found")                                                       \
    X(ECRYPTO, -13, infra, "cryptographic operation failed")                                     \
    X(EUNAVAILABLE, -14, infra, "store or service unreachable")                                  \
    X(EBAD_SIGNATURE, -15, auth, "signature missing or invalid")                                 \
    X(EUNKNOWN_ACCOUNT, -16, config, "provider account not in the accounts registry")            \
    X(ETOO_LARGE, -17, payload, "request body too large")                                        \
    X(EMALFORMED, -18, payload, "malformed provider payload")                                    \
    X(EHANDLER, -19, infra, "handler failed (transient)")                                        \
    X(EHANDLER_PERMANENT, -20, payload, "handler rejected the item (permanent)")                 \
    X(ETIMEOUT, -21, infra, "deadline exceeded")                                                 \
    X(ECONFIG, -22, config, "configuration invalid or incomplete")                               \
    X(EABI, -23, config, "connector built against an incompatible SDK ABI")                      \
    X(EIO, -24, infra, "input/output error")                                                     \
    X(ENOT_IMPLEMENTED, -25, config, "capability not implemented by this connector")             \
    X(EIN_PROGRESS, -26, infra, "another process is handling this item right now")               \
    X(EIN_DOUBT, -27, provider, "the request may have reached the provider; outcome unknown")    \
    X(EPROVIDER, -28, provider, "provider failed (transient: 5xx, 429, timeout or connection)")  \
    X(EPROVIDER_REJECTED, -29, provider, "provider rejected the request (permanent)")            \
    X(ERATE_LIMITED, -30, provider, "rate limit reached (provider or local limit)")              \
    X(ECIRCUIT_OPEN, -31, provider, "circuit breaker open for this provider account")            \
    X(EPROVIDER_AUTH, -32, auth, "provider refused the credentials (401 or 403)")                \
    X(EAUDIT_TAMPERED, -33, infra, "audit chain broken: a record edited, removed or forged")     \
    X(EREAUTH_REQUIRED, -34, auth, "integration needs re-authorisation (grant revoked)")         \
    X(ECONFLICT, -35, infra, "a newer write won: this lock or version is stale")                 \
    X(EOAUTH_STATE, -36, auth, "OAuth state unknown, already used or expired")

typedef enum {
    CX_OK = 0,
#define CX__ERR_ENUM(name, value, cls, msg) CX_##name = value,
    CX_ERRNO_MAP(CX__ERR_ENUM)
#undef CX__ERR_ENUM
} cx_errno_t;

/* Detail of the first error that happened (the first one wins; later ones are ignored). */
typedef struct cx_error_s {
    int code;          /* read-only: 0 or a CX_E* code */
    char path[192];    /* read-only: the field or JSON path where it applies, "" otherwise */
    char message[192]; /* read-only: human text; never payload bytes, secrets or tokens */
} cx_error_t;

/* The message of a code ("malformed JSON"); never NULL. Thread-safe. */
CX_API const char *cx_strerror(int code);
/* The name of a code ("CX_EJSON"); never NULL. Thread-safe. */
CX_API const char *cx_err_name(int code);
/* The class of a code: "payload", "auth", "provider", "infra" or "config". Thread-safe. */
CX_API const char *cx_err_class(int code);

/* Records an error in err (may be NULL) unless one is already recorded; returns code.
 * path may be NULL; fmt may be NULL (then cx_strerror(code) is used). */
CX_API int cx_error_set(cx_error_t *err, int code, const char *path, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Clears err (may be NULL). */
CX_API void cx_error_clear(cx_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* CX_ERROR_H */
