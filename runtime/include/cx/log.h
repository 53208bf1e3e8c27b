/* Structured JSON logs: one JSON object per line, the same keys on every line.
 *
 * A cx_logger_t holds what every line shares (service, version, level, sink). A line is built
 * in a cx_log_record_t on the caller's stack with typed setters, then emitted:
 *
 *     cx_log_record_t r;
 *     if (cx_log_begin(&r, lg, CX_LOG_INFO)) {
 *         cx_log_set_connector(&r, "whatsapp"); cx_log_set_outcome(&r, "processed");
 *         cx_log_set_latency_ms(&r, 3.25); cx_log_set_msg(&r, "event handled");
 *         cx_log_emit(&r);
 *     }
 *
 * Every line carries every key below, in this order, with null for the ones not set, so
 * consumers can rely on the keys being present (ARCHITECTURE.md section 4):
 *
 *   ts level service version connector correlation_id request_id tenant_id integration_id
 *   capability event_type dedupe_key dedupe_hit outcome latency_ms attempt error_code
 *   error_class upstream_status [extra keys...] msg [truncated]
 *
 * ts is RFC 3339 UTC with milliseconds ("2025-06-18T16:22:59.123Z"). "truncated": true is
 * appended only when something had to be cut to fit the line.
 *
 * Personal data and payloads. There is deliberately NO function that logs a raw payload, a
 * request body, a header dump or an arbitrary string under an arbitrary key: values that may
 * hold personal data go through cx_log_set_pii(), which masks them by their PII class (the
 * class the schema gives the field, cx_pii_t):
 *
 *   CX_PII_PHONE   "+14155550123"         -> "***0123"   (last 4 digits)
 *   CX_PII_EMAIL   "jane.doe@example.com" -> "j***@example.com"
 *   CX_PII_NAME, CX_PII_CONTENT, CX_PII_SECRET, CX_PII_UNSPECIFIED -> "[redacted]"
 *   CX_PII_NONE    kept (the schema says it is not personal), capped at CX_LOG_VALUE_MAX bytes
 *
 * The identifier setters (tenant_id, dedupe_key, ...) take identifiers, never payload text; they
 * are capped at CX_LOG_VALUE_MAX bytes. msg is meant for fixed text; as a safety net, e-mail
 * addresses and runs of 7 or more digits in it are masked like CX_PII_EMAIL / CX_PII_PHONE.
 * Every string is JSON-escaped; invalid UTF-8 becomes U+FFFD.
 *
 * Lines are bounded by CX_LOG_LINE_MAX bytes, newline included; a longer line is cut inside
 * string values (never inside an escape or a UTF-8 sequence), so it stays valid JSON with every
 * key present. Below PIPE_BUF (4096) bytes the default sink's single write() is atomic, so lines
 * from many threads and processes sharing stderr never interleave.
 *
 * Thread safety: a logger may be used from any number of threads at once; a record belongs to
 * one thread. Sinks are called concurrently from the emitting threads and must be thread-safe
 * (the built-in ones are).
 */
#ifndef CX_LOG_H
#define CX_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "cx/arena.h"
#include "cx/error.h"
#include "cx/schema.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The longest line, trailing newline included. */
#define CX_LOG_LINE_MAX 8192
/* The longest identifier value (tenant_id, dedupe_key, ...) and kept CX_PII_NONE value. */
#define CX_LOG_VALUE_MAX 256
/* The longest service or version name a logger keeps. */
#define CX_LOG_NAME_MAX 64
/* Extra keys per record (cx_log_set_pii, cx_log_set_int). */
#define CX_LOG_MAX_EXTRA 8

typedef enum {
    CX_LOG_DEFAULT = 0, /* as a logger level in a config: CX_LOG_INFO */
    CX_LOG_DEBUG = 1,
    CX_LOG_INFO = 2,
    CX_LOG_WARN = 3,
    CX_LOG_ERROR = 4,
    CX_LOG_OFF = 5 /* as a logger level: nothing is logged */
} cx_log_level_t;

/* Receives one line: a JSON object followed by '\n'; len counts the '\n'; line[len] == '\0'.
 * The line is only valid during the call. Called from many threads at once. */
typedef void (*cx_log_sink_fn)(void *ud, const char *line, size_t len);
/* Flushes whatever the sink buffers (cx_logger_flush). */
typedef void (*cx_log_flush_fn)(void *ud);
/* Wall-clock time in milliseconds since the Unix epoch (tests pin it). */
typedef int64_t (*cx_log_clock_fn)(void *ud);

typedef struct cx_logger_config_s {
    const char *service;             /* required: the "service" field; copied, < CX_LOG_NAME_MAX */
    const char *version;             /* NULL = cx_version_string(); copied, < CX_LOG_NAME_MAX */
    cx_log_level_t level;            /* lines below it are skipped; 0 = CX_LOG_INFO */
    cx_log_sink_fn sink;             /* NULL = cx_log_stderr_sink */
    void *sink_ud;                   /* passed to sink and flush; borrowed */
    cx_log_flush_fn flush;           /* NULL = nothing to flush */
    cx_log_clock_fn clock;           /* NULL = the real clock */
    void *clock_ud;                  /* passed to clock; borrowed */
    const cx_allocator_t *allocator; /* NULL = malloc/free; copied */
} cx_logger_config_t;

typedef struct cx_logger_s cx_logger_t;

/* Creates a logger. cfg is copied (service and version strings too); sink_ud, clock_ud and the
 * allocator's ud are borrowed and must outlive the logger. *out is owned by the caller and
 * released with cx_logger_free(). Returns 0, CX_EINVAL (NULL cfg/out, no service, a name too
 * long, a bad level), CX_ENOMEM. Thread-safe.
 *
 *     cx_logger_config_t cfg = {.service = "cx-serve", .level = CX_LOG_INFO};
 *     cx_logger_t *lg; if (cx_logger_new(&cfg, &lg) != 0) ...; ... cx_logger_free(lg);
 */
CX_API int cx_logger_new(const cx_logger_config_t *cfg, cx_logger_t **out);
/* Flushes and frees a logger; lg may be NULL. No record may be in use with it. */
CX_API void cx_logger_free(cx_logger_t *lg);
/* Changes the level at run time (SIGHUP, admin endpoint). Returns 0 or CX_EINVAL.
 * Thread-safe: records begun afterwards see the new level.
 *
 *     cx_logger_set_level(lg, CX_LOG_DEBUG);
 */
CX_API int cx_logger_set_level(cx_logger_t *lg, cx_log_level_t level);
/* The current level; CX_LOG_OFF for a NULL logger. Thread-safe. */
CX_API cx_log_level_t cx_logger_level(const cx_logger_t *lg);
/* Whether a line at this level would be written; 0 for a NULL logger. Thread-safe; one load. */
CX_API int cx_log_enabled(const cx_logger_t *lg, cx_log_level_t level);
/* Calls the sink's flush function (shutdown). Returns 0, or CX_EINVAL for a NULL logger.
 * Thread-safe if the flush function is. */
CX_API int cx_logger_flush(cx_logger_t *lg);

/* "debug" | "info" | "warn" | "error" | "off" -> *out (case-insensitive; "warning" too).
 * Returns 0 or CX_EINVAL. */
CX_API int cx_log_level_parse(const char *name, cx_log_level_t *out);
/* "debug", "info", "warn", "error", "off"; "unknown" otherwise. */
CX_API const char *cx_log_level_name(cx_log_level_t level);

/* ---- Records ------------------------------------------------------------------------------ */

/* String fields of a record, in output order (private indices). */
enum {
    CX_LOG__CONNECTOR,
    CX_LOG__CORRELATION_ID,
    CX_LOG__REQUEST_ID,
    CX_LOG__TENANT_ID,
    CX_LOG__INTEGRATION_ID,
    CX_LOG__CAPABILITY,
    CX_LOG__EVENT_TYPE,
    CX_LOG__DEDUPE_KEY,
    CX_LOG__OUTCOME,
    CX_LOG__ERROR_CODE,
    CX_LOG__ERROR_CLASS,
    CX_LOG__MSG,
    CX_LOG__NSTR
};

/* One line under construction; lives on the caller's stack, never allocates. Strings passed to
 * setters are borrowed (not copied) and must stay valid until cx_log_emit(); PII is masked
 * while the line is written, so the unmasked value is never copied anywhere. */
typedef struct cx_log_record_s {
    const cx_logger_t *logger;     /* private */
    int level;                     /* private */
    int enabled;                   /* private: 0 = every setter and cx_log_emit are no-ops */
    const char *str[CX_LOG__NSTR]; /* private */
    double latency_ms;             /* private */
    int64_t attempt;               /* private */
    int upstream_status;           /* private */
    unsigned char has_latency, has_attempt, has_upstream; /* private */
    signed char dedupe_hit;                               /* private: -1 unset, 0, 1 */
    int n_extra;                                          /* private */
    struct {
        const char *key;   /* private */
        const char *value; /* private: NULL for an integer */
        int64_t num;       /* private */
        int pii;           /* private: cx_pii_t */
    } extra[CX_LOG_MAX_EXTRA];
} cx_log_record_t;

/* Starts a record at a level. Returns 1 when the line will be written, 0 when the logger is
 * NULL or the level is below the logger's: then only rec->enabled is set and every later call
 * on rec costs one test. rec is caller-owned; lg is borrowed until cx_log_emit(). Thread-safe.
 *
 *     cx_log_record_t r;
 *     if (cx_log_begin(&r, lg, CX_LOG_DEBUG)) { cx_log_set_msg(&r, "claim"); cx_log_emit(&r); }
 */
CX_API int cx_log_begin(cx_log_record_t *rec, const cx_logger_t *lg, cx_log_level_t level);

/* Identifier setters: value is borrowed until cx_log_emit(); NULL unsets (null in the line).
 * Values longer than CX_LOG_VALUE_MAX bytes are cut (and the line marked "truncated").
 *
 *     cx_log_set_tenant_id(&r, item->tenant_id);
 *     cx_log_set_dedupe_key(&r, item->dedupe_key);
 */
CX_API void cx_log_set_connector(cx_log_record_t *rec, const char *value);
CX_API void cx_log_set_correlation_id(cx_log_record_t *rec, const char *value);
CX_API void cx_log_set_request_id(cx_log_record_t *rec, const char *value);
CX_API void cx_log_set_tenant_id(cx_log_record_t *rec, const char *value);
CX_API void cx_log_set_integration_id(cx_log_record_t *rec, const char *value);
CX_API void cx_log_set_capability(cx_log_record_t *rec, const char *value);
CX_API void cx_log_set_event_type(cx_log_record_t *rec, const char *value);
CX_API void cx_log_set_dedupe_key(cx_log_record_t *rec, const char *value);
/* "processed", "deduped", "queued", "failed", "rejected", ... */
CX_API void cx_log_set_outcome(cx_log_record_t *rec, const char *value);
CX_API void cx_log_set_error_code(cx_log_record_t *rec, const char *value);
/* "payload", "auth", "provider", "infra", "config" */
CX_API void cx_log_set_error_class(cx_log_record_t *rec, const char *value);
/* error_code = cx_err_name(code), error_class = cx_err_class(code); code 0 unsets both.
 *
 *     if (rc != 0) cx_log_set_error(&r, rc);   // "CX_EHANDLER", "infra"
 */
CX_API void cx_log_set_error(cx_log_record_t *rec, int code);
/* Fixed text (see the header comment: digits and e-mails in it are masked). Borrowed. */
CX_API void cx_log_set_msg(cx_log_record_t *rec, const char *msg);

/* Typed setters. latency_ms is written with up to 3 decimals (null if not finite). */
CX_API void cx_log_set_dedupe_hit(cx_log_record_t *rec, int hit);
CX_API void cx_log_set_latency_ms(cx_log_record_t *rec, double ms);
CX_API void cx_log_set_attempt(cx_log_record_t *rec, int64_t attempt);
CX_API void cx_log_set_upstream_status(cx_log_record_t *rec, int status);

/* Adds an extra key whose value may hold personal data; the value is masked by its class (see
 * the header comment) when the line is written. key must match [a-z][a-z0-9_]{0,31} and not be a
 * standard key; key and value are borrowed until cx_log_emit(); value NULL writes null.
 * Returns 0 (also on a disabled record), CX_EINVAL (bad key), CX_ENOSPC (more than
 * CX_LOG_MAX_EXTRA extra keys).
 *
 *     cx_log_set_pii(&r, "recipient", "+14155550123", CX_PII_PHONE);  // "recipient":"***0123"
 *     cx_log_set_pii(&r, "from", "jane.doe@example.com", CX_PII_EMAIL); // "j***@example.com"
 */
CX_API int cx_log_set_pii(cx_log_record_t *rec, const char *key, const char *value, cx_pii_t pii);
/* Adds an extra integer key (counts, sizes). Same key rules and returns as cx_log_set_pii.
 *
 *     cx_log_set_int(&r, "items", 12);
 */
CX_API int cx_log_set_int(cx_log_record_t *rec, const char *key, int64_t value);

/* Writes the line to the logger's sink (one sink call) and ends the record: later calls on rec
 * are no-ops until the next cx_log_begin(). Thread-safe (concurrent records on one logger).
 *
 *     cx_log_set_msg(&r, "request rejected");
 *     cx_log_emit(&r);
 */
CX_API void cx_log_emit(cx_log_record_t *rec);

/* ---- Sinks -------------------------------------------------------------------------------- */

/* The default sink: one write() to fd 2 per line (retried on EINTR and short writes, which only
 * happen above PIPE_BUF). ud is ignored. Thread-safe. */
CX_API void cx_log_stderr_sink(void *ud, const char *line, size_t len);
/* Like cx_log_stderr_sink on the descriptor *(const int *)ud (a file, a pipe). Thread-safe.
 *
 *     static int fd = 3; cx_logger_config_t cfg = {.service = "x", .sink = cx_log_fd_sink,
 *                                                   .sink_ud = &fd};
 */
CX_API void cx_log_fd_sink(void *ud, const char *line, size_t len);

/* A sink that keeps lines in memory, for tests. Lines are stored without their '\n'. */
typedef struct cx_log_capture_s cx_log_capture_t;

/* Creates a capture keeping at most max_lines lines (0 = unbounded; later ones are counted as
 * dropped). Owned by the caller; cx_log_capture_free() releases it. Returns 0, CX_EINVAL,
 * CX_ENOMEM.
 *
 *     cx_log_capture_t *cap; cx_log_capture_new(0, &cap);
 *     cx_logger_config_t cfg = {.service = "t", .sink = cx_log_capture_sink, .sink_ud = cap};
 */
CX_API int cx_log_capture_new(size_t max_lines, cx_log_capture_t **out);
/* Frees the capture and its lines; cap may be NULL. */
CX_API void cx_log_capture_free(cx_log_capture_t *cap);
/* The sink function: ud is the cx_log_capture_t. Thread-safe. */
CX_API void cx_log_capture_sink(void *ud, const char *line, size_t len);
/* Number of lines kept. Thread-safe. */
CX_API size_t cx_log_capture_count(cx_log_capture_t *cap);
/* Lines not kept (over max_lines or out of memory). Thread-safe. */
CX_API size_t cx_log_capture_dropped(cx_log_capture_t *cap);
/* Line i (0-based, NUL-terminated, no '\n'), or NULL past the end. The pointer stays valid until
 * cx_log_capture_clear() or cx_log_capture_free(). Thread-safe. */
CX_API const char *cx_log_capture_line(cx_log_capture_t *cap, size_t i);
/* Whether any kept line contains needle. Thread-safe. */
CX_API int cx_log_capture_contains(cx_log_capture_t *cap, const char *needle);
/* Forgets every line (and the dropped count). Thread-safe. */
CX_API void cx_log_capture_clear(cx_log_capture_t *cap);

#ifdef __cplusplus
}
#endif

#endif /* CX_LOG_H */
