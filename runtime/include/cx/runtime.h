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
 *   6 handlers, inline, with a deadline shorter than the claim
 *   7 200 when every item is processed, deduped or failed permanently; 503 when any item failed
 *     transiently (its claim is released so the redelivery runs it) or the store is down.
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
#include "cx/error.h"
#include "cx/log.h"
#include "cx/metrics.h"
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

/* ---- Handlers ----------------------------------------------------------------------------- */

/* What a handler sees of one item. Borrowed for the call. */
typedef struct cx_item_s {
    const cx_event_t *event;   /* the canonical event (validated) */
    const char *connector;
    const char *tenant_id;
    const char *dedupe_key;
    const char *correlation_id;
    int64_t deadline_ms;       /* monotonic ms after which the claim may lapse */
} cx_item_t;

/* Returns 0 (processed), CX_EHANDLER (transient: released, redelivered) or
 * CX_EHANDLER_PERMANENT (the item fails for good). Called from many threads at once. */
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

CX_API cx_metrics_t *cx_runtime_metrics(cx_runtime_t *rt);
CX_API cx_logger_t *cx_runtime_logger(cx_runtime_t *rt);

#ifdef __cplusplus
}
#endif

#endif /* CX_RUNTIME_H */
