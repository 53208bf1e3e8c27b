/* Dead letters: items that will not succeed by being run again as they are.
 *
 * An item goes to the dead-letter store when it fails permanently (a handler's
 * CX_EHANDLER_PERMANENT, no handler for its capability), when it is invalid (malformed item,
 * VALIDATION, UNKNOWN_ACCOUNT, no dedupe key), or when its transient failures exhausted the
 * retry schedule (attempts or age). Each dead letter keeps what is needed to understand and
 * replay it: the canonical event (protobuf-c packed, with its type's full name), connector,
 * capability, tenant, account, dedupe key, correlation id, error code and class, the reason,
 * attempts and timestamps. Error text never holds payload bytes.
 *
 * A dead letter's id is its dedupe key (so one item has one dead letter however often it
 * fails), or "invalid:<hash>:<index>" for an item that failed before it had a key.
 *
 * Replay (cx_runtime_dlq_replay, `cx dlq replay`) goes through the same dedupe claim as a
 * provider delivery: a replay and a late provider duplicate never both run. When an item is
 * dead-lettered its claim is released, so the key is free for whichever comes first.
 *
 * The store interface follows cx/dedupe_store.h (ops struct, embedded and Redis stores); the
 * records it keeps are opaque bytes written and read by the runtime (cx_dead_letter_decode).
 *
 *     cx_dead_letter_t dl[20]; size_t n, total;
 *     cx_runtime_dlq_list(rt, 0, 20, &arena, dl, &n, &total, &err);
 *     cx_runtime_dlq_replay(rt, dl[0].id, &outcome, &err);   // "queued", "processed", ...
 */
#ifndef CX_DLQ_H
#define CX_DLQ_H

#include <stddef.h>
#include <stdint.h>

#include "cx/arena.h"
#include "cx/buf.h"
#include "cx/dedupe_store.h" /* cx_redis_options_t */
#include "cx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The longest dead-letter id (a dedupe key, or "invalid:..."), without the NUL. */
#define CX_DLQ_ID_MAX (CX_DEDUPE_KEY_MAX + 32)
/* The longest count group ("<connector>|<capability>"), without the NUL. */
#define CX_DLQ_GROUP_MAX 128

/* ---- The store ------------------------------------------------------------------------------ */

typedef struct cx_dlq_s cx_dlq_t;

/* One row of a listing. */
typedef struct cx_dlq_ref_s {
    char id[CX_DLQ_ID_MAX + 1];
    int64_t dead_ms; /* when it was dead-lettered, Unix milliseconds */
} cx_dlq_ref_t;

/* Dead letters per "<connector>|<capability>" (the dead_letters gauge). */
typedef struct cx_dlq_count_s {
    char group[CX_DLQ_GROUP_MAX + 1];
    uint64_t count;
} cx_dlq_count_t;

typedef struct cx_dlq_ops_s {
    /* Stores record under id (replacing a previous one: one dead letter per item), counted in
     * group. Atomic. Returns 0, CX_EUNAVAILABLE, CX_EINVAL (empty or long id or group),
     * CX_ENOMEM. */
    int (*put)(cx_dlq_t *d, const char *id, const char *group, int64_t dead_ms, const void *rec,
               size_t len, cx_error_t *err);
    /* Reads the record of id into *rec (malloc'd, the caller frees). Returns 0, CX_ENOTFOUND,
     * CX_EUNAVAILABLE, CX_ENOMEM. */
    int (*get)(cx_dlq_t *d, const char *id, unsigned char **rec, size_t *len, cx_error_t *err);
    /* Lists ids, oldest dead first, from offset, at most limit of them into out; *total is the
     * number of dead letters. Returns 0, CX_EUNAVAILABLE, CX_ENOMEM. */
    int (*list)(cx_dlq_t *d, size_t offset, size_t limit, cx_dlq_ref_t *out, size_t *n,
                size_t *total, cx_error_t *err);
    /* Removes id; *removed = 1 when it was there. Returns 0, CX_EUNAVAILABLE. */
    int (*remove)(cx_dlq_t *d, const char *id, int *removed, cx_error_t *err);
    /* Removes every dead letter that died before before_ms (INT64_MAX: all); *removed counts
     * them. Returns 0, CX_EUNAVAILABLE. */
    int (*purge)(cx_dlq_t *d, int64_t before_ms, size_t *removed, cx_error_t *err);
    /* The non-zero counts per group, at most cap of them. Returns 0, CX_EUNAVAILABLE. */
    int (*counts)(cx_dlq_t *d, cx_dlq_count_t *out, size_t cap, size_t *n, cx_error_t *err);
    /* 0 when the store answers, else CX_EUNAVAILABLE. */
    int (*ping)(cx_dlq_t *d, cx_error_t *err);
    /* Frees the store. No call may be running on it. */
    void (*destroy)(cx_dlq_t *d);
} cx_dlq_ops_t;

struct cx_dlq_s {
    const cx_dlq_ops_t *ops; /* read-only */
};

/* The embedded in-process store (development, tests). environment: [A-Za-z0-9._-]{1,64}.
 * Returns 0, CX_EINVAL, CX_ENOMEM. Thread-safe. */
CX_API int cx_dlq_embedded(const char *environment, cx_dlq_t **out, cx_error_t *err);

/* The Redis store: hash `cx:<env>:dlq:{<name>}:entries` (id -> record), sorted set
 * `...:index` (id by dead time), hashes `...:groups` (id -> group) and `...:counts`
 * (group -> count); every change is one Lua script. name NULL = "inbound". Returns 0,
 * CX_EINVAL, CX_ENOMEM, CX_ENOT_IMPLEMENTED (built without Redis). Thread-safe. */
CX_API int cx_dlq_redis(const char *environment, const char *name, const cx_redis_options_t *opts,
                        cx_dlq_t **out, cx_error_t *err);

/* Frees d (may be NULL). */
static inline void cx_dlq_destroy(cx_dlq_t *d)
{
    if (d)
        d->ops->destroy(d);
}

/* ---- Dead letters --------------------------------------------------------------------------- */

/* A decoded dead letter. Every pointer points into the arena given to the decoder; strings are
 * NUL-terminated, NULL when unknown. */
typedef struct cx_dead_letter_s {
    const char *id;
    const char *connector;
    const char *capability;     /* the event's capability */
    const char *event_type;     /* full name of the canonical message ("cx.messaging.v1...") */
    const char *tenant_id;      /* NULL when the account was unknown */
    const char *account_id;     /* the provider account */
    const char *dedupe_key;     /* NULL for an item that failed before it had one */
    const char *correlation_id; /* of the request that brought it */
    const char *reason;         /* "permanent", "exhausted" or "invalid" */
    const char *error_code;     /* "HANDLER_PERMANENT", "HANDLER", "VALIDATION", ... */
    const char *error_class;    /* "payload", "auth", "provider", "infra", "config" */
    const char *message;        /* the last error's text (never payload bytes) */
    uint32_t attempts;          /* handler runs (0 for invalid items) */
    int64_t first_ms;           /* first received, Unix milliseconds */
    int64_t dead_ms;            /* dead-lettered, Unix milliseconds */
    const unsigned char *event; /* the canonical event, protobuf-c packed; NULL when none */
    size_t event_len;
} cx_dead_letter_t;

/* Decodes a stored record. Returns 0, CX_EMALFORMED (not a dead-letter record of a format this
 * release reads), CX_ENOSPC (arena). */
CX_API int cx_dead_letter_decode(const void *rec, size_t len, cx_arena_t *arena,
                                 cx_dead_letter_t *out, cx_error_t *err);

/* Appends a dead letter as one JSON object: every field above (camelCase), and with_event:
 * "event", the canonical JSON of the event (cx_to_json), or null. Returns 0 or the buffer's
 * error. Note: the event holds personal data; print it to operators, never to logs. */
CX_API int cx_dead_letter_to_json(const cx_dead_letter_t *dl, int with_event, cx_buf_t *out);

/* ---- The runtime's dead letters ------------------------------------------------------------- */

typedef struct cx_runtime_s cx_runtime_t;

/* Lists dead letters oldest first (offset, limit) into out[0..*n), decoded into arena;
 * *total counts all of them. Returns 0, CX_EUNAVAILABLE, CX_ENOSPC, CX_ENOMEM. Thread-safe. */
CX_API int cx_runtime_dlq_list(cx_runtime_t *rt, size_t offset, size_t limit, cx_arena_t *arena,
                               cx_dead_letter_t *out, size_t *n, size_t *total, cx_error_t *err);

/* Reads one dead letter. Returns 0, CX_ENOTFOUND, CX_EUNAVAILABLE, CX_EMALFORMED. */
CX_API int cx_runtime_dlq_get(cx_runtime_t *rt, const char *id, cx_arena_t *arena,
                              cx_dead_letter_t *out, cx_error_t *err);

/* Replays a dead letter through the dedupe claim: an item without a tenant or key first gets
 * them (tenant resolution, validation, dedupe key, as in the pipeline). Then:
 *   claimed     queued mode: enqueued as a first attempt (*outcome "queued"); inline mode: its
 *               handler runs now in the calling thread ("processed", or "failed" when it
 *               failed again: then it is a dead letter again);
 *   done        a provider delivery already processed it: "deduped";
 *   held        a delivery is being handled right now: CX_EIN_PROGRESS (kept; try later).
 * The dead letter is removed once the item is queued, processed or deduped. *outcome is a
 * static string. Returns 0, CX_ENOTFOUND, CX_EIN_PROGRESS, CX_EINVAL (nothing to replay: the
 * item had no event), CX_EUNKNOWN_ACCOUNT, CX_EVALIDATION, CX_EDEDUPE_KEY, CX_ECONFIG (an item
 * without a key, outside development, with no runtime/pseudonym_key secret), CX_EUNAVAILABLE.
 * Thread-safe.
 *
 *     const char *outcome;
 *     if (cx_runtime_dlq_replay(rt, "dm:whatsapp:...", &outcome, &err) == 0) puts(outcome);
 */
CX_API int cx_runtime_dlq_replay(cx_runtime_t *rt, const char *id, const char **outcome,
                                 cx_error_t *err);

/* Removes one dead letter (CX_ENOTFOUND when absent), or every one dead before before_ms
 * (INT64_MAX: all; *removed counts them). Return 0, CX_EUNAVAILABLE. */
CX_API int cx_runtime_dlq_remove(cx_runtime_t *rt, const char *id, cx_error_t *err);
CX_API int cx_runtime_dlq_purge(cx_runtime_t *rt, int64_t before_ms, size_t *removed,
                                cx_error_t *err);

/* `cx dlq list|show|replay|purge` (docs/durable-processing.md): argv[0] is "dlq". Returns the
 * process exit code (0 ok, 1 not found/failed, 2 usage, 69 unavailable, 78 config). */
CX_API int cx_dlq_cli(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif /* CX_DLQ_H */
