/* The connector interface: what an adapter implements so the runtime can host it.
 *
 * A connector is a const struct of function pointers plus a manifest. It maps provider ->
 * canonical only: `verify` authenticates a request, `parse` turns it into canonical events
 * (generated protobuf-c messages allocated in the request arena), `handshake` answers a GET
 * (Meta's hub.challenge), `check_credentials` runs at boot in staging/production, and `send`
 * performs an outbound command. Everything else (dedupe, tenants, handlers, logs, metrics,
 * responses) is the runtime's job, the same for every connector.
 *
 * Out-of-tree connectors are loaded as shared objects exporting CX_CONNECTOR_ENTRY_SYMBOL;
 * the struct starts with the ABI version and its own size, so a connector built against
 * another release is refused cleanly (CX_EABI) instead of crashing.
 */
#ifndef CX_CONNECTOR_H
#define CX_CONNECTOR_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "cx/arena.h"
#include "cx/buf.h"
#include "cx/error.h"
#include "cx/schema.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change of the structs in this header. */
#define CX_CONNECTOR_ABI 1
/* The symbol an out-of-tree connector exports: `const cx_connector_t *cx_connector_entry(void)`. */
#define CX_CONNECTOR_ENTRY_SYMBOL "cx_connector_entry"

/* ---- Requests and responses ------------------------------------------------------------- */

typedef struct cx_header_s {
    const char *name; /* as received; looked up case-insensitively */
    const char *value;
} cx_header_t;

/* An inbound HTTP request. Everything is borrowed for the duration of the call. */
typedef struct cx_request_s {
    const char *method;  /* "POST", "GET" */
    const char *path;    /* "/webhook/whatsapp", without the query */
    const char *query;   /* raw query string without '?', "" when none */
    const cx_header_t *headers;
    size_t n_headers;
    const char *body;    /* exact bytes as received (what was signed) */
    size_t body_len;
} cx_request_t;

/* The value of a header (case-insensitive name), or NULL. */
CX_API const char *cx_request_header(const cx_request_t *req, const char *name);
/* The percent-decoded value of a query parameter into buf; NULL when absent or too long. */
CX_API const char *cx_request_query(const cx_request_t *req, const char *name, char *buf,
                                    size_t cap);

/* What the gateway answers. body is caller-owned storage the runtime writes into. */
typedef struct cx_response_s {
    int status;
    const char *content_type; /* static string */
    cx_buf_t *body;
} cx_response_t;

/* ---- Manifest --------------------------------------------------------------------------- */

typedef enum {
    CX_CAP_PLANNED = 1,
    CX_CAP_BETA = 2,
    CX_CAP_ACTIVE = 3,
    CX_CAP_DEPRECATED = 4
} cx_cap_state_t;

typedef enum {
    CX_AUTH_NONE = 1,
    CX_AUTH_HMAC = 2,
    CX_AUTH_STANDARD_WEBHOOKS = 3,
    CX_AUTH_TOKEN = 4,
    CX_AUTH_CERTIFICATE = 5,
    CX_AUTH_API_KEY = 6
} cx_inbound_auth_t;

typedef struct cx_capability_decl_s {
    const char *id; /* one of the fixed ids (docs/capabilities.md) */
    cx_cap_state_t state;
} cx_capability_decl_t;

typedef struct cx_secret_decl_s {
    const char *name;        /* file name under <secrets dir>/<connector>/ */
    int required;            /* staging/production refuse to start without it */
    int per_account;         /* read from accounts/<account_id>/<name> */
    const char *description;
} cx_secret_decl_t;

typedef struct cx_manifest_s {
    const char *id;           /* "whatsapp": path segment, secrets folder, log/metric label */
    const char *version;      /* the connector's SemVer */
    const char *display_name;
    const char *provider;     /* "meta" */
    const cx_capability_decl_t *capabilities;
    size_t n_capabilities;
    const cx_secret_decl_t *secrets;
    size_t n_secrets;
    cx_inbound_auth_t inbound_auth;
} cx_manifest_t;

/* Whether id is one of the fixed capability ids. */
CX_API int cx_capability_is_known(const char *id);

/* ---- What connectors get from the runtime ----------------------------------------------- */

typedef struct cx_runtime_s cx_runtime_t;

/* A secret with its previous value during rotation. Copied out of the secrets store. */
typedef struct cx_secret_value_s {
    unsigned char current[1024];
    size_t current_len; /* 0 when absent */
    unsigned char previous[1024];
    size_t previous_len; /* 0 when absent */
} cx_secret_value_t;

/* Context of one call into a connector. */
typedef struct cx_ctx_s {
    cx_runtime_t *rt;        /* read-only */
    const char *connector;   /* read-only: manifest id */
    int64_t now;             /* read-only: unix seconds of the request (injectable clock) */
    cx_arena_t *arena;       /* per-request arena for everything parse allocates */
} cx_ctx_t;

/* Reads a connector secret (<secrets dir>/<connector>/<name>, plus <name>.previous); account
 * may be NULL, otherwise accounts/<account>/<name> overrides. The host's secret source, when
 * one is installed (cx_runtime_set_secret_source), is asked first. Returns 0 or CX_ENOTFOUND,
 * or the secret source's own failure (e.g. CX_EREAUTH_REQUIRED for a revoked OAuth grant). */
CX_API int cx_ctx_secret(const cx_ctx_t *ctx, const char *account, const char *name,
                         cx_secret_value_t *out);

/* ---- Parse output ----------------------------------------------------------------------- */

/* One canonical event a connector produced. */
typedef struct cx_event_s {
    const cx_msg_meta_t *meta;  /* generated meta of msg's type */
    ProtobufCMessage *msg;      /* allocated in the request arena */
    const char *account_id;     /* provider account id for tenant resolution (arena) */
    int error;                  /* 0, or a per-item parse failure (CX_EMALFORMED): the item
                                   fails alone, permanently; msg may then be NULL */
    const char *error_detail;   /* static text for that failure, never payload bytes */
} cx_event_t;

typedef struct cx_parse_out_s {
    cx_event_t *events; /* private: grown in the arena */
    size_t n;           /* read-only */
    size_t cap;         /* private */
    cx_arena_t *arena;  /* private */
} cx_parse_out_t;

/* Appends an event (msg and account_id must live in the arena). Returns 0 or CX_ENOSPC. */
CX_API int cx_parse_emit(cx_parse_out_t *out, const cx_msg_meta_t *meta, ProtobufCMessage *msg,
                         const char *account_id);
/* Appends an item that could not be mapped (unknown shape): it fails alone, permanently. */
CX_API int cx_parse_emit_error(cx_parse_out_t *out, const char *account_id, int code,
                               const char *detail);

/* ---- The connector ---------------------------------------------------------------------- */

typedef struct cx_connector_s cx_connector_t;

struct cx_connector_s {
    uint32_t abi_version; /* CX_CONNECTOR_ABI */
    uint32_t struct_size; /* sizeof(cx_connector_t) */
    const cx_manifest_t *manifest;
    /* Authenticates the request: 0 or CX_EBAD_SIGNATURE. Required unless inbound_auth is NONE. */
    int (*verify)(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                  cx_error_t *err);
    /* Maps the request to canonical events: 0, or CX_EMALFORMED (the whole request is bad:
     * 400). Never crashes on any input. */
    int (*parse)(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                 cx_parse_out_t *out, cx_error_t *err);
    /* Optional: answers a GET (subscription handshake); sets resp->status and body. */
    int (*handshake)(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                     cx_response_t *resp, cx_error_t *err);
    /* Optional: checks credentials against the provider at boot (staging/production). */
    int (*check_credentials)(const cx_connector_t *c, const cx_ctx_t *ctx, cx_error_t *err);
    /* Optional: performs an outbound command of an outbound capability; *result is allocated
     * in ctx->arena. */
    int (*send)(const cx_connector_t *c, const cx_ctx_t *ctx, const char *capability,
                const ProtobufCMessage *command, ProtobufCMessage **result, cx_error_t *err);
    void *ud; /* the connector's own data */
};

/* Checks ABI version, struct size and the manifest (known capability ids, valid states,
 * verify present when authenticated, declared secrets). Returns 0, CX_EABI or CX_ECONFIG with
 * the reason in err. */
CX_API int cx_connector_check(const cx_connector_t *c, cx_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* CX_CONNECTOR_H */
