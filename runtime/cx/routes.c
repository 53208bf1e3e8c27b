/* The routes of `cx serve`. A new route is one row in cx_serve_routes and one handler (here,
 * or in its own file for the larger ones: commands.c, oauth_routes.c; planned: /dlq): the
 * gateway does the HTTP (limits, body, 404/405, Connection: close while draining,
 * http_requests_total). */
#define _POSIX_C_SOURCE 200809L
#include <string.h>

#include "cli.h"
#include "serve.h"
#include "serve_outbound.h"

/* POST|GET /webhook/<connector>: the inbound pipeline (cx_runtime_handle) for that connector.
 * Connectors that are not exposed (unauthenticated in production) are not hosted at all, so
 * they answer 404 like any unknown id. */
static void on_webhook(void *ud, const cx_gw_request_t *req, cx_gw_response_t *resp)
{
    cx_serve_app_t *app = ud;
    if (!cx_cli_connector_id_ok(req->rest, strlen(req->rest))) {
        cx_gw_error(resp, 404, "NOT_FOUND", "no such connector");
        return;
    }
    cx_request_t r = {req->method,    req->path, req->query,   req->headers,
                      req->n_headers, req->body, req->body_len};
    cx_response_t out = {0, NULL, resp->body};
    if (cx_runtime_handle(app->rt, req->rest, &r, &out) != 0 || out.status == 0) {
        cx_gw_error(resp, 500, "INTERNAL", "the pipeline produced no response");
        return;
    }
    resp->status = out.status;
    resp->content_type = out.content_type;
}

/* The same for the requests the gateway's pipeline threads take together: one
 * cx_runtime_handle_many call, so their items share the dedupe store's round trips. */
_Static_assert(CX_GW_BATCH_MAX <= CX_HANDLE_MANY_MAX, "a gateway batch is one pipeline call");

static void on_webhooks(void *ud, const cx_gw_request_t *const *reqs,
                        cx_gw_response_t *const *resps, size_t n)
{
    cx_serve_app_t *app = ud;
    cx_request_t r[CX_GW_BATCH_MAX];
    cx_response_t out[CX_GW_BATCH_MAX];
    cx_exchange_t ex[CX_GW_BATCH_MAX];
    size_t idx[CX_GW_BATCH_MAX], m = 0;
    for (size_t i = 0; i < n; i++) {
        const cx_gw_request_t *req = reqs[i];
        if (!cx_cli_connector_id_ok(req->rest, strlen(req->rest))) {
            cx_gw_error(resps[i], 404, "NOT_FOUND", "no such connector");
            continue;
        }
        r[m] = (cx_request_t){req->method,    req->path, req->query,   req->headers,
                              req->n_headers, req->body, req->body_len};
        out[m] = (cx_response_t){0, NULL, resps[i]->body};
        ex[m] = (cx_exchange_t){req->rest, &r[m], &out[m]};
        idx[m++] = i;
    }
    if (m == 0)
        return;
    int rc = cx_runtime_handle_many(app->rt, ex, m);
    for (size_t k = 0; k < m; k++) {
        cx_gw_response_t *resp = resps[idx[k]];
        if (rc != 0 || out[k].status == 0) {
            cx_buf_reset(resp->body);
            cx_gw_error(resp, 500, "INTERNAL", "the pipeline produced no response");
            continue;
        }
        resp->status = out[k].status;
        resp->content_type = out[k].content_type;
    }
}

/* GET /health: the process is up (liveness). */
static void on_health(void *ud, const cx_gw_request_t *req, cx_gw_response_t *resp)
{
    (void)ud;
    (void)req;
    resp->status = 200;
    cx_buf_puts(resp->body, "{\"status\":\"ok\"}");
}

/* GET /ready: the stores answer and the process is not draining (readiness). */
static void on_ready(void *ud, const cx_gw_request_t *req, cx_gw_response_t *resp)
{
    (void)req;
    cx_serve_app_t *app = ud;
    if (app->gw && cx_gw_draining(app->gw)) {
        resp->status = 503;
        cx_buf_puts(resp->body, "{\"status\":\"unavailable\",\"reason\":\"draining\"}");
    } else if (!cx_runtime_ready(app->rt)) {
        resp->status = 503;
        cx_buf_puts(resp->body,
                    "{\"status\":\"unavailable\",\"reason\":\"dedupe store unreachable\"}");
    } else {
        resp->status = 200;
        cx_buf_puts(resp->body, "{\"status\":\"ready\"}");
    }
}

/* GET /metrics: every metric of the registry, Prometheus text format 0.0.4. */
static void on_metrics(void *ud, const cx_gw_request_t *req, cx_gw_response_t *resp)
{
    (void)req;
    cx_serve_app_t *app = ud;
    if (cx_metrics_render(app->metrics, resp->body) != 0) {
        cx_gw_error(resp, 500, "INTERNAL", "cannot render metrics");
        return;
    }
    resp->status = 200;
    resp->content_type = CX_METRICS_CONTENT_TYPE;
}

const cx_gw_route_t cx_serve_routes[] = {
    {"webhook", "/webhook/", 1, CX_GW_GET | CX_GW_POST, on_webhook, on_webhooks},
    {"health", "/health", 0, CX_GW_GET, on_health, NULL},
    {"ready", "/ready", 0, CX_GW_GET, on_ready, NULL},
    {"metrics", "/metrics", 0, CX_GW_GET, on_metrics, NULL},
    /* Internal callers (API keys): a canonical command sent exactly once. */
    {"commands", "/commands/", 1, CX_GW_POST, cx_serve_on_command, NULL},
    /* /oauth/<connector>/start (API key) and /oauth/<connector>/callback (the state). */
    {"oauth", "/oauth/", 1, CX_GW_GET, cx_serve_on_oauth, NULL},
};
const size_t cx_serve_n_routes = sizeof cx_serve_routes / sizeof cx_serve_routes[0];
