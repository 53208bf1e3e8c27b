/* Private: the outbound side of `cx serve` — the routes internal callers use to act on
 * providers, and what they share.
 *
 *   POST /commands/<connector>/<capability>   a canonical command (proto3 JSON) sent exactly
 *                                              once through cx_outbound_send (commands.c)
 *   GET  /oauth/<connector>/start              302 to the provider's authorisation URL
 *   GET  /oauth/<connector>/callback           the code exchange (oauth_routes.c)
 *
 * Internal callers authenticate with API keys (apikeys.h); the OAuth callback is reached by the
 * user's browser and is protected by the single-use state instead. serve_outbound.c builds the
 * stores (intents and OAuth tokens in Redis when configured, else embedded), the audit trail
 * (runtime/audit_key; Redis, or the file store under audit_dir), one cx_oauth_t per configured
 * provider, and installs the runtime's secret source so that a connector's `access_token` for
 * an OAuth-authorised (tenant, account) is the stored token. SIGHUP re-reads the key file and
 * the OAuth client secrets; a table in use by a request stays alive until it is done
 * (reference counts), so a reload never waits for requests. docs/cx.md has the HTTP mapping.
 */
#ifndef CX_CLI_SERVE_OUTBOUND_H
#define CX_CLI_SERVE_OUTBOUND_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "apikeys.h"
#include "config.h"
#include "cx/audit.h"
#include "cx/oauth.h"
#include "cx/outbound.h"
#include "cx/runtime.h"
#include "gateway.h"

struct json_t;

/* One OAuth app (a connector's), built from the configuration and the secrets. */
typedef struct cx__oauth_app_s {
    char connector[64];
    cx_oauth_t *oauth;
} cx__oauth_app_t;

/* Everything a reload replaces at once, shared by the requests that took a reference. */
typedef struct cx__outbound_snap_s {
    atomic_int refs;
    cx_apikeys_t *keys;
    cx__oauth_app_t *apps;
    size_t n_apps;
} cx__outbound_snap_t;

typedef struct cx_serve_outbound_s {
    cx_runtime_t *rt; /* borrowed */
    cx_logger_t *log; /* borrowed */
    cx_environment_t environment;
    char *secrets_dir;    /* NULL = none */
    char *api_keys_path;  /* NULL = no key file (every key is refused) */
    struct json_t *oauth; /* the "oauth" configuration object (a reference), or NULL */
    cx_token_store_t *tokens;
    cx_intent_store_t *intents;
    cx_audit_store_t *audit_store; /* NULL: no audit trail (development without a key) */
    cx_audit_t *audit;
    cx_outbound_t *ob;
    pthread_mutex_t mu; /* snap */
    cx__outbound_snap_t *snap;
    cx_counter_t *auth_failures; /* api_auth_failures_total{route,error_code} */
} cx_serve_outbound_t;

/* Builds the outbound side (after cx_runtime_boot) and installs the secret source. Returns
 * CX_EXIT_OK, or CX_EXIT_CONFIG / CX_EXIT_INTERNAL with one line in why. */
int cx_serve_outbound_start(const cx_serve_config_t *cfg, cx_runtime_t *rt, cx_logger_t *log,
                            cx_metrics_t *metrics, cx_serve_outbound_t **out, char *why,
                            size_t cap);
/* SIGHUP: re-reads the key file and the OAuth client secrets (after cx_runtime_reload_secrets).
 * A file that does not parse keeps the previous table (logged). Main thread. */
void cx_serve_outbound_reload(cx_serve_outbound_t *so);
/* Frees so (may be NULL) once the gateway is stopped. */
void cx_serve_outbound_free(cx_serve_outbound_t *so);

/* The current snapshot, referenced (never NULL after start); give it back with _release. */
cx__outbound_snap_t *cx__outbound_acquire(cx_serve_outbound_t *so);
void cx__outbound_release(cx__outbound_snap_t *snap);
/* The OAuth app of a connector in snap, or NULL. */
cx_oauth_t *cx__outbound_oauth(const cx__outbound_snap_t *snap, const char *connector);

/* Authenticates the request's `Authorization: Bearer <key>` against snap's keys. Returns the
 * key, or NULL after answering 401 (API_KEY_MISSING, API_KEY_INVALID) and counting it. Never
 * logs the key. */
const cx_apikey_t *cx__outbound_authenticate(cx_serve_outbound_t *so, cx__outbound_snap_t *snap,
                                             const char *route, const cx_gw_request_t *req,
                                             const char *cid, cx_gw_response_t *resp);
/* Answers 403 with code (API_KEY_FORBIDDEN, ACCOUNT_FORBIDDEN) and what is not allowed in
 * msg; logs the key's id (never the key), counts it, and audits a DENIED record in the
 * tenant's chain when the tenant id is a valid one. */
void cx__outbound_forbidden(cx_serve_outbound_t *so, const char *route, const cx_apikey_t *key,
                            const char *cid, const char *connector, const char *tenant,
                            const char *code, const char *msg, cx_gw_response_t *resp);

/* A correlation id: X-Correlation-Id when it is a sane token ([A-Za-z0-9._:-]{1,64}), else a
 * random one. */
void cx__outbound_correlation_id(const cx_gw_request_t *req, char out[72]);
/* An error answer: {"ok":false,"correlationId","errorCode","errorClass","message"} plus `extra`
 * (already-formatted members starting with ',', or NULL), Cache-Control: no-store. */
void cx__outbound_error(cx_gw_response_t *resp, int status, const char *cid, const char *code,
                        const char *cls, const char *msg, const char *extra);
/* A header's value (case-insensitive), or NULL. */
const char *cx__outbound_header(const cx_gw_request_t *req, const char *name);

/* The runtime's secret source (cx_runtime_set_secret_source, ud = the cx_serve_outbound_t):
 * during a command's send, the connector's `access_token` for the command's (tenant, account)
 * is the OAuth token fetched for it (commands.c); everything else falls back to the files. */
int cx__outbound_secret_source(void *ud, const cx_ctx_t *ctx, const char *account, const char *name,
                               cx_secret_value_t *out);

/* Validates the "oauth" configuration object (config.c calls it while loading). Returns 0, or
 * -1 with one line in why naming the key. */
int cx_serve_oauth_check(const struct json_t *v, char *why, size_t cap);

/* The route handlers (routes.c rows); app is the cx_serve_app_t. */
void cx_serve_on_command(void *app, const cx_gw_request_t *req, cx_gw_response_t *resp);
void cx_serve_on_oauth(void *app, const cx_gw_request_t *req, cx_gw_response_t *resp);

#endif
