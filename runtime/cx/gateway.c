/* The HTTP host of `cx serve` on libmicrohttpd (gateway.h).
 *
 * MHD runs an epoll loop per pool thread (MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL with
 * MHD_OPTION_THREAD_POOL_SIZE); the access handler is called once when the headers are in, then
 * once per chunk of body, then once more with no data, when we answer. Everything one request
 * needs lives in a conn_state_t hung on MHD's per-request pointer and freed by the completion
 * callback, which is also where a request stops counting as in flight.
 *
 * Batched routes (a route with `batch`, the webhook route): when such a request's body is in,
 * its connection is suspended and the request goes to a queue; a few pipeline threads take
 * every request waiting (up to CX_GW_BATCH_MAX) and hand them to the route's batch function in
 * one call, then resume the connections, and MHD calls the access handler once more, which
 * sends the answer. Under load the queue fills while a pipeline thread waits for Redis, so the
 * next call takes many requests at once: their items share the store's round trips, and the
 * pool threads never block on Redis. Idle, a request is taken alone as soon as it arrives.
 *
 * Bodies. A declared Content-Length above max_body_bytes is answered 413 at once, before any
 * body byte is read (MHD then closes the connection rather than read what follows; a client
 * sending `Expect: 100-continue` never sends the body at all). A body without a length
 * (chunked) is appended up to max_body_bytes; past it nothing more is kept, the rest is read
 * and dropped up to another max_body_bytes (so the client is still listening for the 413), and
 * a client that goes on beyond that is disconnected.
 */
#define _POSIX_C_SOURCE 200809L
#include "gateway.h"

#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"

#define DEFAULT_MAX_RESPONSE (16u << 20)

typedef struct conn_state_s conn_state_t;

struct cx_gw_s {
    cx_gw_config_t cfg;
    struct MHD_Daemon *daemon;
    /* The batched routes' queue and the pipeline threads that take from it. */
    pthread_mutex_t bmu;
    pthread_cond_t bcv;
    conn_state_t *bhead, *btail;
    int bstop;
    pthread_t *batchers;
    unsigned n_batchers;
    MHD_socket quiesced_fd;
    int port;
    atomic_int draining;
    atomic_size_t in_flight;
    cx_counter_t *requests;  /* http_requests_total{route,method,status} */
    cx_histogram_t *latency; /* http_request_latency_ms{route} */
    cx_histogram_t *batch;   /* http_batch_requests{route}: requests per batched call */
};

typedef struct {
    cx_header_t *items;
    size_t n, cap;
} header_list_t;

/* A request being answered: what dispatch() needs, kept while the connection is suspended. */
typedef struct {
    header_list_t hl;
    cx_buf_t query, out, hdrs;
    cx_gw_request_t req;
    cx_gw_response_t resp;
} exchange_t;

struct conn_state_s {
    const cx_gw_route_t *route; /* NULL: no route */
    const char *route_name;     /* metrics label */
    const char *method_label;
    double t0;
    cx_buf_t body;
    size_t dropped; /* body bytes read and dropped past the limit */
    int too_large;
    int reject;    /* 404 or 405, answered once the (dropped) body is read */
    int responded; /* a response was queued before the body was read */
    /* Batched routes: */
    struct MHD_Connection *conn;
    exchange_t *ex;     /* the suspended request and, once answered, its response */
    int answered;       /* set by a pipeline thread before it resumes the connection */
    conn_state_t *next; /* in the queue */
};

/* ---- Small helpers -------------------------------------------------------------------------- */

static const char *method_label(const char *m)
{
    static const char *const known[] = {"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(m, known[i]) == 0)
            return known[i];
    return "OTHER";
}

static unsigned method_bit(const char *m)
{
    if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)
        return CX_GW_GET;
    if (strcmp(m, "POST") == 0)
        return CX_GW_POST;
    return 0;
}

/* The route for url; *path_known is set when some route has this path (for 405). */
static const cx_gw_route_t *find_route(const cx_gw_t *gw, const char *url, unsigned method,
                                       const char **rest, int *path_known)
{
    *path_known = 0;
    *rest = "";
    for (size_t i = 0; i < gw->cfg.n_routes; i++) {
        const cx_gw_route_t *r = &gw->cfg.routes[i];
        size_t n = strlen(r->path);
        int match =
            r->prefix ? strncmp(url, r->path, n) == 0 && url[n] != '\0' : strcmp(url, r->path) == 0;
        if (!match)
            continue;
        *path_known = 1;
        if (r->methods & method) {
            *rest = r->prefix ? url + n : "";
            return r;
        }
    }
    return NULL;
}

void cx_gw_error(cx_gw_response_t *resp, int status, const char *code, const char *msg)
{
    resp->status = status;
    resp->content_type = "application/json";
    cx_buf_reset(resp->body);
    cx_buf_printf(resp->body, "{\"ok\":false,\"errorCode\":\"%s\",\"message\":", code);
    cx_cli_json_str(resp->body, msg, strlen(msg));
    cx_buf_putc(resp->body, '}');
}

int cx_gw_header(cx_gw_response_t *resp, const char *name, const char *value)
{
    if (resp->headers == NULL || name == NULL || value == NULL || name[0] == '\0' ||
        strcasecmp(name, "Content-Type") == 0)
        return -1;
    for (const char *p = name; *p; p++)
        if (*p <= ' ' || *p == ':' || *p == 0x7f)
            return -1;
    for (const char *p = value; *p; p++)
        if (*p == '\r' || *p == '\n')
            return -1;
    size_t n = strlen(name) + 1, v = strlen(value) + 1;
    if (cx_buf_append(resp->headers, name, n) != 0 || cx_buf_append(resp->headers, value, v) != 0)
        return -1;
    return 0;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    cx_gw_t *gw = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    cx_log_record_t r;
    if (cx_log_begin(&r, gw->cfg.log, CX_LOG_WARN)) {
        cx_log_set_outcome(&r, "http_error");
        cx_log_set_msg(&r, msg);
        cx_log_emit(&r);
    }
}

/* How much of a body the gateway reads and drops after deciding to refuse it: enough for the
 * client to finish sending and read the answer, not a way to stream forever. MHD 0.9.75 cannot
 * queue a response in the middle of an upload (only before the body or after it), so a client
 * going past this is disconnected instead. */
static size_t drop_limit(const cx_gw_t *gw)
{
    return gw->cfg.max_body_bytes > (1u << 20) ? gw->cfg.max_body_bytes : 1u << 20;
}

/* ---- Request/response -------------------------------------------------------------------------
 */

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    (void)kind;
    header_list_t *h = cls;
    if (h->n == h->cap)
        return MHD_NO;
    h->items[h->n].name = key;
    h->items[h->n].value = value ? value : "";
    h->n++;
    return MHD_YES;
}

static void put_escaped(cx_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            cx_buf_putc(b, (char)c);
        } else {
            cx_buf_putc(b, '%');
            cx_buf_putc(b, hex[c >> 4]);
            cx_buf_putc(b, hex[c & 15]);
        }
    }
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    cx_buf_t *b = cls;
    if (b->len)
        cx_buf_putc(b, '&');
    put_escaped(b, key, key_size);
    if (value) {
        cx_buf_putc(b, '=');
        put_escaped(b, value, value_size);
    }
    return MHD_YES;
}

static enum MHD_Result send_response(cx_gw_t *gw, struct MHD_Connection *conn, conn_state_t *st,
                                     cx_gw_response_t *resp)
{
    int status = resp->status ? resp->status : 500;
    if (cx_buf_error(resp->body)) {
        status = 500;
        cx_gw_error(resp, 500, "INTERNAL", "response too large");
        if (resp->headers)
            cx_buf_reset(resp->headers);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(
        resp->body->len, resp->body->data ? resp->body->data : "", MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            resp->content_type ? resp->content_type : "application/json");
    if (status == 405)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, POST");
    /* Extra headers: "name\0value\0" pairs, checked by cx_gw_header. */
    if (resp->headers && !cx_buf_error(resp->headers)) {
        const char *p = resp->headers->data, *end = p + resp->headers->len;
        while (p && p < end) {
            const char *v = p + strlen(p) + 1;
            if (v >= end)
                break;
            MHD_add_response_header(r, p, v);
            p = v + strlen(v) + 1;
        }
    }
    if (atomic_load(&gw->draining))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    if (ok != MHD_YES)
        return ok;
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    cx_counter_inc(gw->requests, (const char *[]){st->route_name, st->method_label, code}, 1);
    cx_histogram_observe(gw->latency, (const char *[]){st->route_name}, cx_cli_now_ms() - st->t0);
    return ok;
}

/* An answer the gateway gives itself (404, 405, 413). */
static enum MHD_Result respond_error(cx_gw_t *gw, struct MHD_Connection *conn, conn_state_t *st,
                                     int status, const char *code, const char *msg)
{
    char mem[512];
    cx_buf_t b;
    cx_buf_init_fixed(&b, mem, sizeof mem);
    cx_gw_response_t resp = {0, NULL, &b, NULL};
    cx_gw_error(&resp, status, code, msg);
    cx_log_record_t r;
    if (cx_log_begin(&r, gw->cfg.log, status == 413 ? CX_LOG_WARN : CX_LOG_DEBUG)) {
        cx_log_set_outcome(&r, "rejected");
        cx_log_set_error_code(&r, code);
        cx_log_set_upstream_status(&r, status);
        cx_log_set_msg(&r, msg);
        cx_log_emit(&r);
    }
    st->responded = 1;
    return send_response(gw, conn, st, &resp);
}

/* Reads the request out of MHD into ex (headers and query point into MHD's memory, valid while
 * the connection lives). Returns 0 or -1 (out of memory). */
static int exchange_init(cx_gw_t *gw, struct MHD_Connection *conn, conn_state_t *st,
                         const char *url, const char *method, exchange_t *ex)
{
    memset(ex, 0, sizeof *ex);
    const cx_gw_route_t *route = st->route;
    int n = MHD_get_connection_values(conn, MHD_HEADER_KIND, NULL, NULL);
    ex->hl.cap = n > 0 ? (size_t)n : 0;
    if (ex->hl.cap && (ex->hl.items = malloc(ex->hl.cap * sizeof *ex->hl.items)) == NULL)
        return -1;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_header, &ex->hl);
    cx_buf_init(&ex->query, 1u << 20);
    MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &ex->query);
    ex->req = (cx_gw_request_t){method,
                                url,
                                ex->query.len ? ex->query.data : "",
                                route->prefix ? url + strlen(route->path) : "",
                                ex->hl.items,
                                ex->hl.n,
                                st->body.len ? st->body.data : "",
                                st->body.len};
    cx_buf_init(&ex->out, gw->cfg.max_response_bytes);
    cx_buf_init(&ex->hdrs, 2048);
    ex->resp = (cx_gw_response_t){0, NULL, &ex->out, &ex->hdrs};
    return 0;
}

static void exchange_free(exchange_t *ex)
{
    cx_buf_free(&ex->hdrs);
    cx_buf_free(&ex->out);
    cx_buf_free(&ex->query);
    free(ex->hl.items);
}

static enum MHD_Result dispatch(cx_gw_t *gw, struct MHD_Connection *conn, conn_state_t *st,
                                const char *url, const char *method)
{
    if (st->route->batch) {
        /* Suspended first, queued second: a pipeline thread may resume it at once. */
        if ((st->ex = malloc(sizeof *st->ex)) == NULL ||
            exchange_init(gw, conn, st, url, method, st->ex) != 0)
            return MHD_NO;
        st->conn = conn;
        MHD_suspend_connection(conn);
        pthread_mutex_lock(&gw->bmu);
        if (gw->btail)
            gw->btail->next = st;
        else
            gw->bhead = st;
        gw->btail = st;
        pthread_cond_signal(&gw->bcv);
        pthread_mutex_unlock(&gw->bmu);
        return MHD_YES;
    }
    exchange_t ex;
    if (exchange_init(gw, conn, st, url, method, &ex) != 0) {
        exchange_free(&ex);
        return MHD_NO;
    }
    st->route->fn(gw->cfg.app, &ex.req, &ex.resp);
    enum MHD_Result rc = send_response(gw, conn, st, &ex.resp);
    exchange_free(&ex);
    return rc;
}

/* A pipeline thread: takes every queued request (up to CX_GW_BATCH_MAX, one route at a time),
 * runs them in one call of the route's batch function, and resumes their connections. */
static void *batcher(void *arg)
{
    cx_gw_t *gw = arg;
    for (;;) {
        pthread_mutex_lock(&gw->bmu);
        while (gw->bhead == NULL && !gw->bstop)
            pthread_cond_wait(&gw->bcv, &gw->bmu);
        if (gw->bhead == NULL) { /* stopping, and nothing left */
            pthread_mutex_unlock(&gw->bmu);
            return NULL;
        }
        conn_state_t *taken[CX_GW_BATCH_MAX];
        size_t n = 0;
        const cx_gw_route_t *route = gw->bhead->route;
        conn_state_t **link = &gw->bhead;
        while (*link && n < CX_GW_BATCH_MAX) {
            conn_state_t *st = *link;
            if (st->route->batch != route->batch) { /* another route: the next call's */
                link = &st->next;
                continue;
            }
            taken[n++] = st;
            *link = st->next;
        }
        gw->btail = NULL;
        for (conn_state_t *st = gw->bhead; st; st = st->next)
            gw->btail = st;
        /* More waiting: wake another thread for them. */
        if (gw->bhead)
            pthread_cond_signal(&gw->bcv);
        pthread_mutex_unlock(&gw->bmu);

        const cx_gw_request_t *reqs[CX_GW_BATCH_MAX];
        cx_gw_response_t *resps[CX_GW_BATCH_MAX];
        for (size_t i = 0; i < n; i++) {
            reqs[i] = &taken[i]->ex->req;
            resps[i] = &taken[i]->ex->resp;
        }
        route->batch(gw->cfg.app, reqs, resps, n);
        cx_histogram_observe(gw->batch, (const char *[]){route->name}, (double)n);
        for (size_t i = 0; i < n; i++) {
            struct MHD_Connection *conn = taken[i]->conn;
            taken[i]->answered = 1;
            taken[i]->next = NULL;
            MHD_resume_connection(conn);
        }
    }
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    (void)version;
    cx_gw_t *gw = cls;
    conn_state_t *st = *con_cls;
    if (st == NULL) {
        /* Headers are in: decide what can be decided before reading any body. */
        if ((st = calloc(1, sizeof *st)) == NULL)
            return MHD_NO;
        *con_cls = st;
        atomic_fetch_add(&gw->in_flight, 1);
        st->t0 = cx_cli_now_ms();
        st->method_label = method_label(method);
        const char *rest;
        int known;
        st->route = find_route(gw, url, method_bit(method), &rest, &known);
        st->route_name = st->route ? st->route->name : known ? "method_not_allowed" : "not_found";
        cx_buf_init(&st->body, st->route ? gw->cfg.max_body_bytes : 0);
        if (st->route == NULL)
            st->reject = known ? 405 : 404;
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        uint64_t len;
        if (cl && cx_cli_parse_u64(cl, 0, UINT64_MAX, &len) == 0 && len > gw->cfg.max_body_bytes)
            return respond_error(gw, conn, st, 413, "TOO_LARGE", "request body too large");
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (st->responded)
            return MHD_YES;
        if (st->reject) { /* nothing to keep: read and drop, within the same bound */
            st->dropped += n;
            return st->dropped > drop_limit(gw) ? MHD_NO : MHD_YES;
        }
        if (!st->too_large && st->body.len + n > gw->cfg.max_body_bytes) {
            st->too_large = 1;
            cx_buf_free(&st->body);
            cx_buf_init(&st->body, 0);
        }
        if (st->too_large) {
            st->dropped += n;
            return st->dropped > drop_limit(gw) ? MHD_NO : MHD_YES;
        }
        cx_buf_append(&st->body, upload, n);
        return MHD_YES;
    }
    if (st->answered) { /* resumed by a pipeline thread: send what it wrote */
        st->answered = 0;
        st->responded = 1;
        enum MHD_Result rc = send_response(gw, conn, st, &st->ex->resp);
        exchange_free(st->ex);
        free(st->ex);
        st->ex = NULL;
        return rc;
    }
    if (st->responded || st->ex) /* answered, or waiting in the queue */
        return MHD_YES;
    if (st->reject == 405)
        return respond_error(gw, conn, st, 405, "METHOD_NOT_ALLOWED", "method not allowed");
    if (st->reject == 404)
        return respond_error(gw, conn, st, 404, "NOT_FOUND", "no such route");
    if (st->too_large)
        return respond_error(gw, conn, st, 413, "TOO_LARGE", "request body too large");
    return dispatch(gw, conn, st, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    cx_gw_t *gw = cls;
    conn_state_t *st = *con_cls;
    if (st == NULL)
        return;
    if (st->ex) { /* the client went away after its answer was written, before it was sent */
        exchange_free(st->ex);
        free(st->ex);
    }
    cx_buf_free(&st->body);
    free(st);
    *con_cls = NULL;
    atomic_fetch_sub(&gw->in_flight, 1);
}

/* ---- Lifecycle ------------------------------------------------------------------------------ */

int cx_gw_start(const cx_gw_config_t *cfg, cx_gw_t **out, char *why, size_t cap)
{
    cx_gw_t *gw = calloc(1, sizeof *gw);
    if (gw == NULL) {
        snprintf(why, cap, "out of memory");
        return -1;
    }
    gw->cfg = *cfg;
    gw->quiesced_fd = MHD_INVALID_SOCKET;
    pthread_mutex_init(&gw->bmu, NULL);
    pthread_cond_init(&gw->bcv, NULL);
    if (gw->cfg.max_response_bytes == 0)
        gw->cfg.max_response_bytes = DEFAULT_MAX_RESPONSE;
    unsigned threads = cfg->threads;
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 1;
    }
    gw->requests = cx_metrics_counter(cfg->metrics, "http_requests_total",
                                      "HTTP requests answered by the gateway.",
                                      (const char *[]){"route", "method", "status", NULL});
    gw->latency = cx_metrics_histogram(cfg->metrics, "http_request_latency_ms",
                                       "Time from request headers to response, in milliseconds.",
                                       (const char *[]){"route", NULL}, NULL, 0);
    static const double batch_buckets[] = {1, 2, 4, 8, 16, 32, 64};
    gw->batch = cx_metrics_histogram(
        cfg->metrics, "http_batch_requests",
        "Requests a pipeline thread ran in one call on a batched route (the webhook route).",
        (const char *[]){"route", NULL}, batch_buckets,
        sizeof batch_buckets / sizeof batch_buckets[0]);

    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    int grc = getaddrinfo(cfg->host, port, &hints, &ai);
    if (grc != 0 || ai == NULL) {
        snprintf(why, cap, "cannot resolve listen address %s: %s", cfg->host, gai_strerror(grc));
        free(gw);
        return -1;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem ops[] = {
        /* MHD wants its logger first, or it may print some messages itself. */
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, gw},
        {MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)cfg->max_connections, NULL},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)cfg->max_connections_per_ip, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)cfg->connection_timeout_s, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)cfg->max_header_bytes, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, gw},
        /* A pool of one is no pool: MHD then serves from its single internal thread. */
        {threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    gw->daemon = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_access, gw,
                                  MHD_OPTION_ARRAY, ops, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (gw->daemon == NULL) {
        snprintf(why, cap, "cannot listen on %s:%d (address in use, or not permitted)", cfg->host,
                 cfg->port);
        free(gw);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(gw->daemon, MHD_DAEMON_INFO_BIND_PORT);
    gw->port = info ? (int)info->port : cfg->port;
    unsigned nb = cfg->pipeline_threads;
    if (nb == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nb = 2 * (n > 0 ? (unsigned)n : 1);
    }
    if ((gw->batchers = calloc(nb, sizeof *gw->batchers)) == NULL) {
        snprintf(why, cap, "out of memory");
        cx_gw_stop(gw);
        return -1;
    }
    for (; gw->n_batchers < nb; gw->n_batchers++)
        if (pthread_create(&gw->batchers[gw->n_batchers], NULL, batcher, gw) != 0) {
            snprintf(why, cap, "cannot start the gateway's pipeline threads");
            cx_gw_stop(gw);
            return -1;
        }
    *out = gw;
    return 0;
}

int cx_gw_port(const cx_gw_t *gw)
{
    return gw->port;
}

void cx_gw_quiesce(cx_gw_t *gw)
{
    if (atomic_exchange(&gw->draining, 1))
        return;
    gw->quiesced_fd = MHD_quiesce_daemon(gw->daemon);
    /* MHD no longer accepts, but the socket still listens: the kernel would go on completing
     * handshakes that nobody accepts, and clients would hang instead of being refused (and
     * retried elsewhere by their load balancer). shutdown() ends the listening state while the
     * descriptor stays allocated (MHD wants it closed only after MHD_stop_daemon). */
    if (gw->quiesced_fd != MHD_INVALID_SOCKET)
        shutdown(gw->quiesced_fd, SHUT_RDWR);
}

int cx_gw_draining(const cx_gw_t *gw)
{
    return atomic_load(&((cx_gw_t *)gw)->draining);
}

size_t cx_gw_in_flight(const cx_gw_t *gw)
{
    return atomic_load(&((cx_gw_t *)gw)->in_flight);
}

void cx_gw_stop(cx_gw_t *gw)
{
    if (gw == NULL)
        return;
    /* The pipeline threads answer what is queued, then exit; MHD wants every suspended
     * connection resumed before it stops. */
    pthread_mutex_lock(&gw->bmu);
    gw->bstop = 1;
    pthread_cond_broadcast(&gw->bcv);
    pthread_mutex_unlock(&gw->bmu);
    for (unsigned i = 0; i < gw->n_batchers; i++)
        pthread_join(gw->batchers[i], NULL);
    free(gw->batchers);
    MHD_stop_daemon(gw->daemon);
    /* After MHD_stop_daemon: a pool thread may use the quiesced socket until then. */
    if (gw->quiesced_fd != MHD_INVALID_SOCKET)
        close(gw->quiesced_fd);
    pthread_cond_destroy(&gw->bcv);
    pthread_mutex_destroy(&gw->bmu);
    free(gw);
}
