/* The dedupe store: two-phase claims shared by every gateway process.
 *
 * Each item of a webhook batch is claimed before its handler runs and completed after:
 *
 *   claim    key -> "processing" with a short TTL, only when the key is absent (SET NX PX);
 *   complete key -> "done" with the long TTL from the schema (at least the provider's retry
 *            horizon); done wins even over another claim that took the key after ours lapsed
 *            (our handler ran: the item is processed);
 *   release  key removed, only when this claim still owns it (the handler failed: the
 *            provider's redelivery must be able to run the item again).
 *
 * A batch claims all its keys in one round trip and completes them in one more. Values carry a
 * format version ("v1|...") so the previous release can read them after a rollback, and a
 * claim token, so a slow process whose claim expired cannot release a key that another process
 * now owns, and learns from complete that the item may have run twice. Keys are prefixed per environment ("cx:production:dedupe:...").
 *
 * Stored values (Redis, format v1):
 *
 *   "v1|processing|<token>"   claimed, handler running; expires after processing_ttl_ms
 *   "v1|done|<token>"         completed; expires after done_ttl_s
 *
 * The token (32 lower-case hex digits, unique per claimed item) lives in the item itself, so
 * stores keep no per-batch state: an item claimed by one thread or process may be completed by
 * another (a queued item carries its token with it). A value this release cannot parse (a
 * later format version, or anything else) counts as DONE: skipping an event is recoverable by
 * a replay, running it twice is not.
 *
 * This interface is the pattern every store follows (queue, rate limits, dead letters, tokens,
 * audit): a struct of function pointers, an embedded implementation for development and tests,
 * and a Redis one (hiredis) for anything shared. Implementations are thread-safe.
 *
 *     cx_dedupe_item_t it[2] = {{.key = "dm:whatsapp:1:msg:a"}, {.key = "dm:whatsapp:1:msg:b"}};
 *     if (s->ops->claim(s, it, 2, 30000, &err) != 0) return 503;   // nothing may run
 *     ... run the OWNED items; complete the ones that succeeded, release the ones that failed.
 *
 * docs/internals/dedupe-store.md has the design notes and the failure cases.
 */
#ifndef CX_DEDUPE_STORE_H
#define CX_DEDUPE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "cx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The longest key accepted, in bytes, without the environment prefix. */
#define CX_DEDUPE_KEY_MAX 512
/* The most items one call accepts (a bound on the memory one call takes). */
#define CX_DEDUPE_BATCH_MAX 10000
/* The done TTL used when an item's done_ttl_s is 0: seven days, Meta's retry horizon. */
#define CX_DEDUPE_DEFAULT_DONE_TTL_S (7u * 24u * 3600u)
/* Size of an item's token buffer: 32 hex digits and a NUL. */
#define CX_DEDUPE_TOKEN_SIZE 33

typedef enum {
    CX_CLAIM_OWNED = 1,      /* this call claimed the key: run the handler */
    CX_CLAIM_DONE = 2,       /* already completed: a duplicate, skip it */
    CX_CLAIM_IN_PROGRESS = 3 /* another claim holds it right now: answer so it is redelivered */
} cx_claim_state_t;

/* One item of a batch operation. key is caller-owned and NUL-terminated. Zero-initialise
 * items before claim; copying an item (struct assignment) copies its claim. */
typedef struct cx_dedupe_item_s {
    const char *key;        /* the dedupe key, without the environment prefix */
    uint32_t done_ttl_s;    /* complete: how long "done" is kept (from the schema; 0 = 7 d) */
    cx_claim_state_t state; /* claim: set by the store */
    int rc;                 /* per-item result of complete/release: 0 or CX_E* (see below) */
    char token[CX_DEDUPE_TOKEN_SIZE]; /* claim: this claim's token when OWNED, else "";
                                       * opaque, sent back by complete/release; not a secret,
                                       * but never logged */
} cx_dedupe_item_t;

typedef struct cx_dedupe_store_s cx_dedupe_store_t;

typedef struct cx_dedupe_store_ops_s {
    /* Claims every item in one round trip; sets items[i].state, items[i].token (OWNED only)
     * and items[i].rc = 0. processing_ttl_ms (> 0) bounds how long a crashed process can hold
     * a key. The same key twice in one batch: the first is OWNED, the second IN_PROGRESS.
     * Returns 0; CX_EUNAVAILABLE when the store cannot be reached; CX_EINVAL for a NULL or
     * empty key, a key longer than CX_DEDUPE_KEY_MAX, n > CX_DEDUPE_BATCH_MAX or a zero TTL
     * (err->path names the item); CX_ENOMEM; CX_ENOSPC (embedded store full); CX_ECRYPTO (no
     * random bytes for tokens). On any error no item may be processed: its keys are either
     * unclaimed or expire after processing_ttl_ms (a round trip lost after Redis ran it). */
    int (*claim)(cx_dedupe_store_t *s, cx_dedupe_item_t *items, size_t n,
                 uint32_t processing_ttl_ms, cx_error_t *err);
    /* Marks the items done ("v1|done|<token>", TTL done_ttl_s). One round trip. Per item,
     * items[i].rc is 0 (done: this claim still held the key, or had completed it already, or
     * its claim had lapsed and no other claim took the key, e.g. after a Redis restart; the
     * handler ran, so a redelivery is a duplicate), CX_ETIMEOUT (this claim lapsed and another
     * claim held or completed the key; the key is done now all the same, but the item may
     * have run twice), CX_EINVAL (the item is not OWNED by a claim), CX_ENOMEM / CX_ENOSPC
     * (embedded store: no room to record it) or the call's error. Returns 0 when the round
     * trip happened, or CX_EUNAVAILABLE / CX_ENOMEM (then every item's rc is that code). */
    int (*complete)(cx_dedupe_store_t *s, cx_dedupe_item_t *items, size_t n, cx_error_t *err);
    /* Releases the items' claims (handler failed), each only if still owned; a key that has
     * already expired counts as released. One round trip. items[i].rc and the return value
     * as for complete. */
    int (*release)(cx_dedupe_store_t *s, cx_dedupe_item_t *items, size_t n, cx_error_t *err);
    /* 0 when the store is reachable (for /ready and boot checks), else CX_EUNAVAILABLE. */
    int (*ping)(cx_dedupe_store_t *s, cx_error_t *err);
    /* Frees the store. No call may be running on it. */
    void (*destroy)(cx_dedupe_store_t *s);
    /* Renews claims of queued items (a worker before it runs them, and when it schedules a
     * retry): per OWNED item, if the key holds this item's processing value, its TTL becomes
     * ttl_ms; if the key is absent (the claim lapsed and nobody took it), the claim is made
     * again with the item's token; state stays OWNED. If the key holds another claim's
     * processing value, state becomes IN_PROGRESS; a done value (this claim's or another's,
     * or a value this release cannot read), DONE. One round trip. items[i].rc is 0, or
     * CX_EINVAL for an item that is not OWNED / has no valid token. Returns 0, or
     * CX_EUNAVAILABLE / CX_ENOMEM / CX_ENOSPC (then no state changed). */
    int (*renew)(cx_dedupe_store_t *s, cx_dedupe_item_t *items, size_t n, uint32_t ttl_ms,
                 cx_error_t *err);
} cx_dedupe_store_ops_t;

struct cx_dedupe_store_s {
    const cx_dedupe_store_ops_t *ops; /* read-only */
    char prefix[96];                  /* read-only: "cx:<environment>:dedupe:" */
};

struct cx_allocator_s; /* cx/arena.h */

/* Options of the embedded store. Zero-initialise, then set what you need. */
typedef struct cx_dedupe_embedded_options_s {
    const struct cx_allocator_s *allocator; /* NULL = malloc/free; copied; ud must outlive */
    size_t max_keys; /* hard maximum of live keys (claim then fails with CX_ENOSPC); 0 = 2^20 */
    size_t initial_keys; /* tables sized (and their memory touched) for this many keys at
                          * creation, so the request path neither grows nor rehashes before
                          * then; 0 = start small; at most max_keys */
} cx_dedupe_embedded_options_t;

/* The embedded in-process store (a hash table with expiry). For development and tests; it
 * dedupes only within one process. environment names the key prefix: 1 to 64 characters of
 * [A-Za-z0-9._-]. opts may be NULL. *out is the caller's, freed by cx_dedupe_store_destroy.
 * Returns 0, CX_EINVAL (bad environment or options) or CX_ENOMEM. Thread-safe.
 *
 *     cx_dedupe_store_t *s;
 *     if (cx_dedupe_store_embedded("development", &s, &err) == 0) ...
 */
CX_API int cx_dedupe_store_embedded(const char *environment, cx_dedupe_store_t **out,
                                    cx_error_t *err);
CX_API int cx_dedupe_store_embedded_ex(const char *environment,
                                       const cx_dedupe_embedded_options_t *opts,
                                       cx_dedupe_store_t **out, cx_error_t *err);

/* Options of the Redis store (and of every Redis store). Strings are copied at creation. */
typedef struct cx_redis_options_s {
    const char *host; /* an IP address or name; loopback or a TLS sidecar (hiredis 0.14
                       * has no TLS). Name resolution is not bounded by the timeouts. */
    int port;
    uint32_t connect_timeout_ms; /* 0 = 1000 */
    uint32_t command_timeout_ms; /* each read/write of a round trip; 0 = 1000 */
    const char *password;        /* may be NULL; never logged */
    int pool_size;               /* connections kept, one per concurrent caller; 0 = 8. A caller
                                  * finding all busy waits up to the command timeout. */
    const char *username;        /* Redis 6 ACL user for AUTH; NULL = the default user */
} cx_redis_options_t;

/* A Redis store (hiredis). Connects lazily and reconnects after failures; a call made while
 * Redis is down returns CX_EUNAVAILABLE after at most about connect + command timeout.
 * Returns 0, CX_EINVAL (bad environment or options), CX_ENOMEM, or CX_ENOT_IMPLEMENTED when
 * libcx was built without Redis (CX_WITH_REDIS=OFF). Thread-safe; not fork-safe (pooled
 * connections would be shared): create the store in the process that uses it.
 *
 *     cx_redis_options_t o = {.host = "127.0.0.1", .port = 6379};
 *     rc = cx_dedupe_store_redis("production", &o, &s, &err);
 */
CX_API int cx_dedupe_store_redis(const char *environment, const cx_redis_options_t *opts,
                                 cx_dedupe_store_t **out, cx_error_t *err);

/* Frees s (may be NULL). */
static inline void cx_dedupe_store_destroy(cx_dedupe_store_t *s)
{
    if (s)
        s->ops->destroy(s);
}

#ifdef __cplusplus
}
#endif

#endif /* CX_DEDUPE_STORE_H */
