/* Private: the HTTP host of `cx serve` (libmicrohttpd) and its route table.
 *
 * The gateway owns everything HTTP: connection limits, reading a body with a hard bound (413
 * before buffering more than max_body_bytes), headers and query string, responses, counting
 * requests (http_requests_total{route,method,status}) and draining. What a path does is a
 * route: a name (the metrics label), an exact path or a prefix ending in '/', the methods it
 * takes and a handler. A handler runs in one of the gateway's pool threads with the whole
 * request and writes status, content type and body; it must be thread-safe.
 *
 *     static const cx_gw_route_t routes[] = {
 *         {"health", "/health", 0, CX_GW_GET, on_health},
 *         {"webhook", "/webhook/", 1, CX_GW_GET | CX_GW_POST, on_webhook},
 *     };
 *
 * Unknown paths get 404 and a known path with another method 405, both as JSON.
 */
#ifndef CX_CLI_GATEWAY_H
#define CX_CLI_GATEWAY_H

#include <stddef.h>

#include "cx/buf.h"
#include "cx/connector.h"
#include "cx/log.h"
#include "cx/metrics.h"

enum { CX_GW_GET = 1u << 0, CX_GW_POST = 1u << 1 };

typedef struct cx_gw_request_s {
    const char *method;         /* "GET", "POST" */
    const char *path;           /* decoded path, without the query */
    const char *query;          /* query string re-encoded from the parsed arguments, or "" */
    const char *rest;           /* prefix routes: the path after the prefix; else "" */
    const cx_header_t *headers; /* every request header, as received */
    size_t n_headers;
    const char *body; /* the exact bytes received (NUL-terminated), "" when none */
    size_t body_len;
} cx_gw_request_t;

typedef struct cx_gw_response_s {
    int status;               /* 0 = 500 */
    const char *content_type; /* static; NULL = application/json */
    cx_buf_t *body;           /* the gateway's buffer */
    cx_buf_t *headers;        /* private: extra headers (cx_gw_header); NULL = none allowed */
} cx_gw_response_t;

typedef void (*cx_gw_handler_fn)(void *app, const cx_gw_request_t *req, cx_gw_response_t *resp);

/* A route's handler for several requests at once (1..CX_GW_BATCH_MAX), run by the gateway's
 * pipeline threads: it writes each resps[i] as the single handler would. */
#define CX_GW_BATCH_MAX 64
typedef void (*cx_gw_batch_fn)(void *app, const cx_gw_request_t *const *reqs,
                               cx_gw_response_t *const *resps, size_t n);

typedef struct cx_gw_route_s {
    const char *name; /* metrics label: a fixed word */
    const char *path; /* "/health", or a prefix ending in '/' ("/webhook/") */
    int prefix;       /* 1: matches every path under `path` */
    unsigned methods; /* CX_GW_GET | CX_GW_POST */
    cx_gw_handler_fn fn;
    cx_gw_batch_fn batch; /* optional: requests are queued and run together (gateway.c) */
} cx_gw_route_t;

typedef struct cx_gw_config_s {
    const char *host; /* numeric address or name */
    int port;         /* 0 = any free port (see cx_gw_port) */
    unsigned threads; /* pool threads; 0 = online cores */
    unsigned pipeline_threads; /* threads running batched routes; 0 = 2 per online core */
    unsigned max_connections;
    unsigned max_connections_per_ip; /* 0 = none */
    unsigned connection_timeout_s;
    size_t max_header_bytes; /* per-connection memory (headers + read buffer) */
    size_t max_body_bytes;
    size_t max_response_bytes;   /* 0 = 16 MiB */
    const cx_gw_route_t *routes; /* borrowed, must outlive the gateway */
    size_t n_routes;
    void *app;             /* passed to handlers */
    cx_logger_t *log;      /* borrowed */
    cx_metrics_t *metrics; /* borrowed */
} cx_gw_config_t;

typedef struct cx_gw_s cx_gw_t;

/* Binds and starts serving. Returns 0, or -1 with a one-line reason in why. */
int cx_gw_start(const cx_gw_config_t *cfg, cx_gw_t **out, char *why, size_t cap);
/* The bound port. */
int cx_gw_port(const cx_gw_t *gw);
/* Stops accepting connections (in-flight requests and open connections go on; every later
 * response carries Connection: close). Idempotent. */
void cx_gw_quiesce(cx_gw_t *gw);
/* Whether cx_gw_quiesce() was called. Thread-safe. */
int cx_gw_draining(const cx_gw_t *gw);
/* Requests between their first byte of headers and their response being sent. Thread-safe. */
size_t cx_gw_in_flight(const cx_gw_t *gw);
/* Stops the daemon (waits for the pool threads) and frees the gateway; gw may be NULL. */
void cx_gw_stop(cx_gw_t *gw);

/* {"ok":false,"errorCode":code,"message":msg} into resp. */
void cx_gw_error(cx_gw_response_t *resp, int status, const char *code, const char *msg);

/* Adds a response header (copied: Location, Retry-After, Cache-Control, ...). A name or value
 * with a CR, LF or NUL is refused (no header injection), as is Content-Type (set content_type)
 * or more than 2 KiB of headers. Returns 0 or -1. */
int cx_gw_header(cx_gw_response_t *resp, const char *name, const char *value);

#endif
