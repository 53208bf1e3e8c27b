/* The runtime: one webhook pipeline for every connector.
 *
 * cx_runtime_t owns what the pipeline needs (connectors, handlers, accounts, secrets, the
 * dedupe store, logger, metrics, clock) and cx_runtime_handle() runs one request through the
 * pipeline of ARCHITECTURE.md section 4 (docs/pipeline.md):
 *
 *   1 body limit (413); correlation id; traceparent kept
 *   2 verify once (401; handlers never see it)
 *   3 parse -> events, each validated (400 for a malformed request; an invalid item fails alone)
 *   4 tenant from the accounts registry (UNKNOWN_ACCOUNT: the item fails alone)
 *   5 dedupe claims for the batch in one round trip; completions in one more
 *   6 handlers, in one of two modes (docs/durable-processing.md):
 *       inline  in the request, with a deadline shorter than the claim;
 *       queued  (the production default) each claimed item is appended durably to the work
 *               queue (cx/queue.h) and acked; worker threads (cx_runtime_start_workers) run
 *               it, retry transient failures on a schedule with backoff and jitter, and send
 *               permanent failures and exhausted retries to the dead-letter store (cx/dlq.h);
 *               rate limits and daily quotas (cx/ratelimit.h) delay items, never drop them;
 *   7 200 when every item is processed, deduped, durably queued, or failed permanently (and
 *     dead-lettered); 503 when any item failed transiently inline (its claim is released so
 *     the redelivery runs it) or could not be made durable (a store is down).
 *
 * Thread-safe: many threads may call cx_runtime_handle() at once.
 */
#ifndef CX_RUNTIME_H
#define CX_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "cx/clock.h"
#include "cx/log.h"
#include "cx/connector.h"
#include "cx/dedupe_store.h"
#include "cx/dlq.h"
#include "cx/error.h"
#include "cx/log.h"
#include "cx/metrics.h"
#include "cx/queue.h"
#include "cx/ratelimit.h"
#include "cx/schema.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CX_ENV_DEVELOPMENT = 0,
    CX_ENV_STAGING = 1,
    CX_ENV_PRODUCTION = 2
} cx_environment_t;

/* "development" | "staging" | "production" -> value; returns 0 or CX_EINVAL. */
CX_API int cx_environment_parse(const char *name, cx_environment_t *out);
CX_API const char *cx_environment_name(cx_environment_t env);

/* How items run after their dedupe claim. */
typedef enum {
    CX_HANDLER_MODE_AUTO = 0,   /* queued when cfg.queue is set (cx serve sets it whenever Redis
                                   is configured: the production default), else inline */
    CX_HANDLER_MODE_INLINE = 1, /* in the request; a transient failure answers 503 */
    CX_HANDLER_MODE_QUEUED = 2  /* enqueue and answer; workers run them (cfg.queue NULL: an
                                   embedded queue, development only) */
} cx_handler_mode_t;

/* The retry schedule of queued mode: the n-th retry waits a uniformly random time in
 * [0, min(max_delay_ms, base_delay_ms * 2^(n-1))] ("full jitter"). An item whose handler ran
 * max_attempts times, or whose next run would come after max_age_s since it was first
 * received, goes to the dead-letter store instead. Zero fields take the defaults. */
typedef struct cx_retry_policy_s {
    uint32_t max_attempts;  /* 0 = 10 */
    uint32_t base_delay_ms; /* 0 = 1000 */
    uint32_t max_delay_ms;  /* 0 = 600000 (10 min) */
    uint32_t max_age_s;     /* 0 = 86400 (a day) */
} cx_retry_policy_t;

/* A rate limit and/or daily quota (cx/ratelimit.h). A rule with capability NULL/"*" limits
 * all of a tenant's items together; one with a capability limits that capability's items of
 * the tenant. Per item, the most specific rule of each kind applies (an exact tenant before
 * "*"). Every tenant has its own buckets. Items over a limit are delayed, never dropped. */
typedef struct cx_rate_limit_rule_s {
    const char *tenant;     /* NULL or "*": each tenant */
    const char *capability; /* NULL or "*": all capabilities together */
    double per_second;      /* sustained items per second; 0 = no rate limit */
    uint32_t burst;         /* items admitted at once; 0 = max(1, per_second) */
    uint64_t per_day;       /* items per UTC day; 0 = no quota */
} cx_rate_limit_rule_t;

typedef struct cx_runtime_config_s {
    cx_environment_t environment;
    const char *service;            /* log "service" field; default "cx" */
    const char *secrets_dir;        /* <dir>/<connector>/<name>; NULL = no secrets */
    size_t max_body_bytes;          /* 413 above; 0 = 1 MiB */
    uint32_t processing_ttl_ms;     /* claim TTL; 0 = 30000 */
    uint32_t handler_deadline_ms;   /* inline handler deadline, < processing TTL; 0 = 10000 */
    size_t arena_limit;             /* per-request arena; 0 = 8 MiB */
    const unsigned char *pseudonym_key; /* keyring for PII in keys and logs; NULL = from the
                                           secret `runtime/pseudonym_key`, or (development only)
                                           a fixed development key */
    size_t pseudonym_key_len;
    cx_dedupe_store_t *dedupe;      /* NULL = embedded (refused in staging/production) */
    cx_logger_t *logger;            /* NULL = a stderr logger at info */
    cx_metrics_t *metrics;          /* NULL = a private registry */
    cx_clock_t clock;               /* injectable (tests, `cx parse --now`) */
    /* ---- Durable processing (docs/durable-processing.md) ---- */
    cx_handler_mode_t handler_mode; /* AUTO: queued when queue is set, else inline */
    cx_queue_t *queue;              /* the work queue; NULL = embedded when queued */
    cx_dlq_t *dlq;                  /* dead letters; NULL = embedded */
    cx_ratelimit_t *ratelimit;      /* NULL = embedded when rate_limits are given */
    const cx_rate_limit_rule_t *rate_limits; /* copied */
    size_t n_rate_limits;
    cx_retry_policy_t retry;
    uint32_t queued_claim_ttl_ms;   /* dedupe claim of a queued item, renewed by workers and for
                                       each retry; 0 = 900000 (15 min) */
    uint32_t worker_claim_ttl_ms;   /* a silent worker's items go to another after this (the
                                       XAUTOCLAIM idle time); > handler_deadline_ms; 0 = 30000 */
    unsigned workers;               /* worker threads; 0 = 8 per online core */
    unsigned tenant_concurrency;    /* handlers of one tenant at once in this process;
                                       0 = (workers + 1) / 2 */
    unsigned prefetch;              /* items a process holds beyond the running ones;
                                       0 = workers */
    const char *consumer;           /* this process's consumer name (copied); NULL =
                                       <host>-<pid>-<random> */
} cx_runtime_config_t;

/* Creates a runtime. The config is copied; the dedupe store, logger and metrics passed in are
 * borrowed (the caller destroys them after the runtime). Returns 0, CX_EINVAL, CX_ENOMEM. */
CX_API int cx_runtime_create(const cx_runtime_config_t *cfg, cx_runtime_t **out, cx_error_t *err);
CX_API void cx_runtime_destroy(cx_runtime_t *rt);

/* Hosts a connector (checked with cx_connector_check). The connector is borrowed. */
CX_API int cx_runtime_add_connector(cx_runtime_t *rt, const cx_connector_t *c, cx_error_t *err);
/* The hosted connector with this manifest id, or NULL. */
CX_API const cx_connector_t *cx_runtime_connector(const cx_runtime_t *rt, const char *id);

/* Maps a provider account to a tenant: connector + account id -> tenant id (copied). */
CX_API int cx_runtime_add_account(cx_runtime_t *rt, const char *connector, const char *account_id,
                                  const char *tenant_id, cx_error_t *err);
/* The tenant of a provider account in the accounts registry, or NULL when it is not there.
 * The string belongs to the runtime (valid until the account is re-added or the runtime is
 * destroyed). Thread-safe once the registry is no longer changed (after boot).
 *
 *     const char *t = cx_runtime_account_tenant(rt, "whatsapp", "106540352242922");
 */
CX_API const char *cx_runtime_account_tenant(const cx_runtime_t *rt, const char *connector,
                                             const char *account_id);

/* A source of connector secrets consulted by cx_ctx_secret() before the secret files (a host
 * plugs its OAuth token store in here, so a connector's `access_token` can be the stored token
 * of the tenant a command is sent for). Returns 0 with out filled, CX_ENOTFOUND to fall back
 * to the files, or another code that cx_ctx_secret() returns as is (out is then wiped).
 * out is zeroed before the call. Called from the connector's thread, concurrently: must be
 * thread-safe. Never log what it hands out. */
typedef int (*cx_secret_source_fn)(void *ud, const cx_ctx_t *ctx, const char *account,
                                   const char *name, cx_secret_value_t *out);
/* Installs (fn NULL: removes) the secret source. Call before serving: it is read without a
 * lock.
 *
 *     cx_runtime_set_secret_source(rt, my_tokens, &tokens);
 */
CX_API void cx_runtime_set_secret_source(cx_runtime_t *rt, cx_secret_source_fn fn, void *ud);

/* ---- Handlers ----------------------------------------------------------------------------- */

/* What a handler sees of one item. Borrowed for the call. */
typedef struct cx_item_s {
    const cx_event_t *event;   /* the canonical event (validated) */
    const char *connector;
    const char *tenant_id;
    const char *dedupe_key;
    const char *correlation_id;
    int64_t deadline_ms;       /* monotonic ms after which the claim may lapse */
    uint32_t attempt;          /* 1 for the first run; retries count up */
} cx_item_t;

/* Returns 0 (processed), CX_EHANDLER (transient: inline, released and redelivered; queued,
 * retried on the schedule) or CX_EHANDLER_PERMANENT (the item fails for good: dead-lettered).
 * Any other non-zero code counts as transient. Called from many threads at once. */
typedef int (*cx_handler_fn)(void *ud, const cx_item_t *item, cx_error_t *err);

/* Registers the handler of a capability (one per capability; replaces). capability "*" is
 * the fallback for capabilities without their own. */
CX_API int cx_runtime_on(cx_runtime_t *rt, const char *capability, cx_handler_fn fn, void *ud,
                         cx_error_t *err);

/* ---- Boot and the pipeline ---------------------------------------------------------------- */

/* Validates the deployment: in staging/production every hosted connector's required secrets
 * are present, the dedupe store is shared (not embedded) and reachable, and check_credentials
 * passes; logs one line naming what is missing, or one "boot validated" line. Returns 0 or
 * CX_ECONFIG / CX_EUNAVAILABLE. */
CX_API int cx_runtime_boot(cx_runtime_t *rt, cx_error_t *err);

/* Re-reads every secret from the secrets directory (SIGHUP). In-flight requests keep the
 * values they read; later ones see the new ones. */
CX_API int cx_runtime_reload_secrets(cx_runtime_t *rt, cx_error_t *err);

/* Whether the stores are reachable (GET /ready). */
CX_API int cx_runtime_ready(cx_runtime_t *rt);

/* Runs one request through the pipeline of connector `connector_id`; writes the status and
 * JSON body into resp (resp->body is caller-owned). Returns 0 when a response was produced
 * (whatever its status), CX_EINVAL on bad arguments. */
CX_API int cx_runtime_handle(cx_runtime_t *rt, const char *connector_id, const cx_request_t *req,
                             cx_response_t *resp);

/* One request of cx_runtime_handle_many. */
typedef struct cx_exchange_s {
    const char *connector_id;
    const cx_request_t *req;
    cx_response_t *resp; /* resp->body caller-owned, as for cx_runtime_handle */
} cx_exchange_t;

#define CX_HANDLE_MANY_MAX 64

/* Runs n (1..CX_HANDLE_MANY_MAX) requests, of any connectors, through the pipeline together:
 * each gets the response cx_runtime_handle would give it, but the dedupe store sees one claim
 * call for the items of all of them, and one completion call (one round trip each with
 * Redis, instead of two per request). For servers that take whatever requests are ready at
 * once. Returns 0 when every request got a response, CX_EINVAL on bad arguments (then none
 * did). */
CX_API int cx_runtime_handle_many(cx_runtime_t *rt, const cx_exchange_t *ex, size_t n);

/* ---- Queued mode: workers -------------------------------------------------------------------- */

/* Whether the runtime runs in queued mode (after cx_runtime_create). */
CX_API int cx_runtime_queued(const cx_runtime_t *rt);

/* Starts cfg.workers worker threads consuming the queue (plus one housekeeping thread:
 * heartbeats for held items, gauges). Call after the handlers are registered. Returns 0,
 * CX_EINVAL (not in queued mode, or already started), CX_ENOMEM. */
CX_API int cx_runtime_start_workers(cx_runtime_t *rt, cx_error_t *err);

/* Stops the workers: no new items are taken; items held but not started are given back to the
 * queue (due at once, for any process); running handlers finish. Waits up to timeout_ms for
 * them (0 = without limit), then returns 0, or CX_ETIMEOUT when some still run (call again, or
 * exit: their items are reclaimed by another worker). No-op when not started. */
CX_API int cx_runtime_stop_workers(cx_runtime_t *rt, uint32_t timeout_ms);

/* Reads the queue and dead-letter stores into the gauges (queue_depth, queue_pending,
 * queue_scheduled, queue_oldest_age_seconds, dead_letters{connector,capability}); the
 * housekeeping thread does it every second. Returns 0 or CX_EUNAVAILABLE. */
CX_API int cx_runtime_refresh_gauges(cx_runtime_t *rt, cx_error_t *err);

CX_API cx_metrics_t *cx_runtime_metrics(cx_runtime_t *rt);
CX_API cx_logger_t *cx_runtime_logger(cx_runtime_t *rt);

#ifdef __cplusplus
}
#endif

#endif /* CX_RUNTIME_H */
