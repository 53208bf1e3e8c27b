/* The outbound HTTP client (cx/http.h): libcurl, retries, classification, and the rule that a
 * request which is not idempotent is never sent twice.
 *
 * How "never twice" is kept. A request can reach the provider twice in two ways:
 *
 *   1. We retry it. We do so only when the attempt cannot have delivered a byte: name
 *      resolution, TCP connect and the TLS handshake come before the request is written,
 *      and CURLINFO_REQUEST_SIZE (bytes of the request written; reset per transfer) plus
 *      CURLINFO_SIZE_UPLOAD_T tell whether anything went out. Anything after that is in
 *      doubt for a request that is not idempotent.
 *   2. libcurl retries it by itself: when a reused connection turns out dead after the
 *      request was written and nothing was read back, Curl_retry_request() connects again
 *      (or takes another pooled connection) and sends the request again, inside the same
 *      curl_easy_perform. Every send of a request passes libcurl's pre-request callback
 *      (CURLOPT_PREREQFUNCTION, called right before the request goes out on a new or
 *      reused connection), so for a non-idempotent request ours lets the first send through
 *      and aborts any second one (CURLE_ABORTED_BY_CALLBACK, reported as CX_EIN_DOUBT with
 *      resend_refused). This covers every resend path (a fresh socket, another pooled
 *      connection, an HTTP/2 refused stream, a 417 to Expect) without giving up connection
 *      reuse or the single write of headers and body (CURLOPT_POSTFIELDS).
 *
 * Connection reuse: one CURL easy handle per concurrent caller, kept in a small stack; each
 * handle keeps its own connection cache across calls (curl_easy_reset keeps connections).
 * DNS and TLS sessions are shared between handles (CURLSH). CURLOPT_MAXAGE_CONN drops a
 * connection idle for longer than the configured age before it is reused, so we do not race
 * a provider's idle timeout, and CURLOPT_MAXLIFETIME_CONN bounds a connection's whole life.
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/rand.h>

#include "cx/cx.h"
#include "cx/http.h"

#if LIBCURL_VERSION_NUM < 0x075500
#error "libcx needs libcurl >= 7.85 (CURLOPT_PROTOCOLS_STR, CURLOPT_MAXLIFETIME_CONN)"
#endif

struct cx_http_client_s {
    char *connector;
    char *ca_file;
    char *user_agent;
    uint32_t connect_timeout_ms, timeout_ms, max_attempts, deadline_ms;
    uint32_t backoff_base_ms, backoff_cap_ms, retry_after_max_ms;
    size_t max_response_bytes;
    uint32_t max_conn_idle_s, max_conn_life_s;
    int allow_loopback_http;
    cx_logger_t *logger;
    cx_metrics_std_t std; /* all NULL without metrics */

    CURLSH *share;
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];

    pthread_mutex_t mu; /* guards idle */
    CURL **idle;
    size_t n_idle, max_idle;
};

/* ---- libcurl global state --------------------------------------------------------------- */

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
    g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
    (void)h;
    (void)access;
    cx_http_client_t *c = ud;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&c->share_mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
    (void)h;
    cx_http_client_t *c = ud;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&c->share_mu[data]);
}

/* ---- Time and randomness ---------------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double mono_ms_f(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Jitter needs no cryptographic quality, only independence between threads and processes:
 * a per-thread xorshift seeded once from RAND_bytes (time and address as a fallback). */
static _Thread_local uint64_t t_rng;

static uint64_t rng_next(void)
{
    if (t_rng == 0) {
        unsigned char b[8];
        uint64_t s = 0;
        if (RAND_bytes(b, sizeof b) == 1) {
            for (size_t i = 0; i < sizeof b; i++)
                s = (s << 8) | b[i];
        }
        s ^= (uint64_t)mono_ms() * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)&t_rng;
        t_rng = s ? s : 0x2545f4914f6cdd1dull;
    }
    uint64_t x = t_rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t_rng = x;
    return x;
}

/* Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): uniform in
 * [0, min(cap, base * 2^(attempt-1))). Spreads retries of many clients instead of
 * synchronising them. */
static uint32_t backoff_ms(const cx_http_client_t *c, uint32_t attempt)
{
    uint64_t ceil = c->backoff_base_ms;
    for (uint32_t i = 1; i < attempt && ceil < c->backoff_cap_ms; i++)
        ceil *= 2;
    if (ceil > c->backoff_cap_ms)
        ceil = c->backoff_cap_ms;
    if (ceil == 0)
        return 0;
    return (uint32_t)(rng_next() % ceil);
}

/* ---- Client ------------------------------------------------------------------------------ */

static char *dup_opt(const char *s, bool *oom)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *oom = true;
    return d;
}

int cx_http_client_new(const cx_http_config_t *cfg, cx_http_client_t **out, cx_error_t *err)
{
    if (out == NULL)
        return cx_error_set(err, CX_EINVAL, "out", "out is NULL");
    *out = NULL;
    if (cfg == NULL || cfg->connector == NULL || cfg->connector[0] == '\0')
        return cx_error_set(err, CX_EINVAL, "connector", "http client needs a connector name");
    if (strlen(cfg->connector) > 64)
        return cx_error_set(err, CX_EINVAL, "connector", "connector name longer than 64");
    if (cfg->max_handles < 0 || cfg->max_handles > 4096)
        return cx_error_set(err, CX_EINVAL, "max_handles", "max_handles outside 0..4096");
    if (cfg->max_attempts > 100)
        return cx_error_set(err, CX_EINVAL, "max_attempts", "max_attempts above 100");
    pthread_once(&g_curl_once, curl_init_once);
    if (g_curl_init_rc != CURLE_OK)
        return cx_error_set(err, CX_ECONFIG, NULL, "curl_global_init failed");

    cx_http_client_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "http client: out of memory");
    bool oom = false;
    c->connector = dup_opt(cfg->connector, &oom);
    c->ca_file = dup_opt(cfg->ca_file, &oom);
    if (cfg->user_agent) {
        c->user_agent = dup_opt(cfg->user_agent, &oom);
    } else {
        char ua[64];
        snprintf(ua, sizeof ua, "cx/%s", cx_version_string());
        c->user_agent = dup_opt(ua, &oom);
    }
#define DEF(f, d) c->f = cfg->f ? cfg->f : (d)
    DEF(connect_timeout_ms, CX_HTTP_DEFAULT_CONNECT_TIMEOUT_MS);
    DEF(timeout_ms, CX_HTTP_DEFAULT_TIMEOUT_MS);
    DEF(max_attempts, CX_HTTP_DEFAULT_MAX_ATTEMPTS);
    DEF(deadline_ms, CX_HTTP_DEFAULT_DEADLINE_MS);
    DEF(backoff_base_ms, CX_HTTP_DEFAULT_BACKOFF_BASE_MS);
    DEF(backoff_cap_ms, CX_HTTP_DEFAULT_BACKOFF_CAP_MS);
    DEF(retry_after_max_ms, CX_HTTP_DEFAULT_RETRY_AFTER_MAX_MS);
    DEF(max_response_bytes, CX_HTTP_DEFAULT_MAX_RESPONSE_BYTES);
    DEF(max_conn_idle_s, CX_HTTP_DEFAULT_MAX_CONN_IDLE_S);
    DEF(max_conn_life_s, CX_HTTP_DEFAULT_MAX_CONN_LIFE_S);
#undef DEF
    c->allow_loopback_http = cfg->allow_loopback_http != 0;
    c->logger = cfg->logger;
    c->max_idle = cfg->max_handles ? (size_t)cfg->max_handles : CX_HTTP_DEFAULT_MAX_HANDLES;
    c->idle = calloc(c->max_idle, sizeof *c->idle);
    if (oom || c->idle == NULL)
        goto fail_nomem;
    if (cfg->metrics && cx_metrics_register_standard(cfg->metrics, &c->std) != 0)
        goto fail_nomem;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&c->share_mu[i], NULL);
    pthread_mutex_init(&c->mu, NULL);
    c->share = curl_share_init();
    if (c->share == NULL) {
        cx_http_client_free(c);
        return cx_error_set(err, CX_ENOMEM, NULL, "http client: out of memory");
    }
    curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    *out = c;
    return 0;

fail_nomem:
    free(c->connector);
    free(c->ca_file);
    free(c->user_agent);
    free(c->idle);
    free(c);
    return cx_error_set(err, CX_ENOMEM, NULL, "http client: out of memory");
}

void cx_http_client_free(cx_http_client_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_idle; i++)
        curl_easy_cleanup(c->idle[i]);
    if (c->share)
        curl_share_cleanup(c->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&c->share_mu[i]);
    pthread_mutex_destroy(&c->mu);
    free(c->connector);
    free(c->ca_file);
    free(c->user_agent);
    free(c->idle);
    free(c);
}

static CURL *take_handle(cx_http_client_t *c)
{
    CURL *h = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->n_idle > 0)
        h = c->idle[--c->n_idle];
    pthread_mutex_unlock(&c->mu);
    return h ? h : curl_easy_init();
}

static void give_handle(cx_http_client_t *c, CURL *h)
{
    pthread_mutex_lock(&c->mu);
    if (c->n_idle < c->max_idle) {
        c->idle[c->n_idle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (h)
        curl_easy_cleanup(h);
}

/* ---- Responses --------------------------------------------------------------------------- */

void cx_http_response_init(cx_http_response_t *resp)
{
    memset(resp, 0, sizeof *resp);
    cx_buf_init(&resp->body, SIZE_MAX / 2);
}

void cx_http_response_free(cx_http_response_t *resp)
{
    if (resp)
        cx_buf_free(&resp->body);
}

int cx_http_response_header(const cx_http_response_t *resp, const char *name, char *buf, size_t cap)
{
    if (resp == NULL || name == NULL || buf == NULL || cap == 0)
        return -1;
    size_t nlen = strlen(name);
    const char *p = resp->headers, *end = resp->headers + resp->headers_len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
            const char *v = p + nlen + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            size_t len = (size_t)(ve - v);
            if (len + 1 > cap || len > INT_MAX)
                return -1;
            memcpy(buf, v, len);
            buf[len] = '\0';
            return (int)len;
        }
        p = eol + 1;
    }
    return -1;
}

long cx_http_parse_retry_after(const char *value, int64_t now_s)
{
    if (value == NULL)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    if (*value == '\0')
        return -1;
    if (isdigit((unsigned char)*value)) {
        const char *p = value;
        long long secs = 0;
        while (isdigit((unsigned char)*p)) {
            if (secs < 100000000LL)
                secs = secs * 10 + (*p - '0');
            p++;
        }
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            return secs > LONG_MAX / 1000 ? LONG_MAX / 1000 * 1000 : (long)(secs * 1000);
        /* not delta-seconds: try a date (asctime dates start with a letter anyway) */
    }
    time_t t = curl_getdate(value, NULL);
    if (t == (time_t)-1)
        return -1;
    int64_t d = (int64_t)t - now_s;
    if (d <= 0)
        return 0;
    return d > LONG_MAX / 1000 ? LONG_MAX / 1000 * 1000 : (long)(d * 1000);
}

/* ---- One call ---------------------------------------------------------------------------- */

typedef struct xfer_s {
    bool guard;          /* not idempotent: refuse a second send */
    int sends;           /* pre-request callbacks seen in this attempt */
    bool resend_refused; /* libcurl tried to send the request again and was stopped */
    bool too_large;
    size_t max_body;
    cx_http_response_t *resp;
} xfer_t;

/* Called by libcurl right before it sends the request on a (new or reused) connection, once
 * per send. A second call within one curl_easy_perform is libcurl resending on its own (a
 * dead reused connection): refused for a request that is not idempotent. */
static int prereq_cb(void *ud, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port)
{
    (void)conn_primary_ip;
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    xfer_t *x = ud;
    if (x->guard && x->sends++ > 0) {
        x->resend_refused = true;
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    xfer_t *x = ud;
    size_t n = size * nmemb;
    if (x->resp->body.len + n > x->max_body) {
        x->too_large = true;
        x->resp->truncated = 1;
        return 0; /* aborts the transfer: the rest is never read */
    }
    if (cx_buf_append(&x->resp->body, ptr, n) != 0)
        return 0;
    return n;
}

static size_t header_cb(char *ptr, size_t size, size_t nitems, void *ud)
{
    xfer_t *x = ud;
    size_t n = size * nitems;
    cx_http_response_t *r = x->resp;
    /* A status line starts a new response (after "100 Continue" or an auth round): only the
     * last response's headers are kept. */
    if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) {
        r->headers_len = 0;
        return n;
    }
    if (r->headers_len + n < sizeof r->headers) {
        memcpy(r->headers + r->headers_len, ptr, n);
        r->headers_len += n;
        r->headers[r->headers_len] = '\0';
    }
    return n;
}

static bool is_loopback_host(const char *host)
{
    return strcmp(host, "127.0.0.1") == 0 || strcmp(host, "[::1]") == 0 ||
           strcmp(host, "::1") == 0 || strcasecmp(host, "localhost") == 0;
}

/* Checks the URL with libcurl's own parser and copies its host (for logs) into host. */
static int check_url(const cx_http_client_t *c, const char *url, char *host, size_t cap,
                     cx_error_t *err)
{
    CURLU *u = curl_url();
    if (u == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "http: out of memory");
    char *scheme = NULL, *h = NULL;
    int rc = 0;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK) {
        rc = cx_error_set(err, CX_EINVAL, "url", "http: malformed URL");
        goto done;
    }
    snprintf(host, cap, "%s", h);
    if (strcasecmp(scheme, "https") == 0)
        goto done;
    if (strcasecmp(scheme, "http") == 0 && c->allow_loopback_http && is_loopback_host(h))
        goto done;
    rc = cx_error_set(err, CX_ECONFIG, "url",
                      "http: only https is allowed (plain http only to loopback in tests)");
done:
    curl_free(scheme);
    curl_free(h);
    curl_url_cleanup(u);
    return rc;
}

static bool header_ok(const cx_http_header_t *hd)
{
    if (hd->name == NULL || hd->value == NULL || hd->name[0] == '\0')
        return false;
    for (const char *p = hd->name; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 32 || ch >= 127 || ch == ':')
            return false;
    }
    for (const char *p = hd->value; *p; p++) {
        if (*p == '\r' || *p == '\n')
            return false; /* header injection */
    }
    return true;
}

static bool method_idempotent(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0 ||
           strcmp(m, "PUT") == 0 || strcmp(m, "DELETE") == 0;
}

static bool method_ok(const char *m)
{
    if (m[0] == '\0' || strlen(m) > 16)
        return false;
    for (const char *p = m; *p; p++) {
        if (!(*p >= 'A' && *p <= 'Z'))
            return false;
    }
    return true;
}

/* Builds the request header list (user headers, no Expect, the SigV4 payload hash). */
static int build_headers(const cx_http_request_t *req, struct curl_slist **out, cx_error_t *err)
{
    struct curl_slist *list = NULL, *tmp;
    char line[2048];
    *out = NULL;
    for (size_t i = 0; i < req->n_headers; i++) {
        const cx_http_header_t *hd = &req->headers[i];
        if (!header_ok(hd)) {
            curl_slist_free_all(list);
            char path[32];
            snprintf(path, sizeof path, "headers[%zu]", i);
            return cx_error_set(err, CX_EINVAL, path, "http: invalid header name or value");
        }
        int n = snprintf(line, sizeof line, "%s: %s", hd->name, hd->value);
        if (n < 0 || (size_t)n >= sizeof line) {
            curl_slist_free_all(list);
            char path[32];
            snprintf(path, sizeof path, "headers[%zu]", i);
            return cx_error_set(err, CX_EINVAL, path, "http: header longer than 2047 bytes");
        }
        if ((tmp = curl_slist_append(list, line)) == NULL)
            goto nomem;
        list = tmp;
    }
    /* "Expect: 100-continue" costs a round trip and adds a state where the body may or may
     * not be sent; our bodies are small. Not with SigV4: libcurl would sign the removal
     * directive as an empty "expect" header it never sends, and the signature would not
     * verify (libcurl only expects 100-continue above 1 MiB anyway). */
    if (req->aws_sigv4 == NULL) {
        if ((tmp = curl_slist_append(list, "Expect:")) == NULL)
            goto nomem;
        list = tmp;
    }
    *out = list;
    return 0;
nomem:
    curl_slist_free_all(list);
    return cx_error_set(err, CX_ENOMEM, NULL, "http: out of memory");
}

typedef enum { NEXT_DONE, NEXT_RETRY, NEXT_STOP } next_t;

/* Classifies a completed HTTP response by status. */
static int classify_status(int status, next_t *next)
{
    if (status >= 200 && status < 300) {
        *next = NEXT_DONE;
        return 0;
    }
    if (status == 429) {
        *next = NEXT_RETRY;
        return CX_ERATE_LIMITED;
    }
    if (status == 408 || (status >= 500 && status < 600)) {
        *next = NEXT_RETRY;
        return CX_EPROVIDER;
    }
    *next = NEXT_STOP;
    if (status == 401 || status == 403)
        return CX_EPROVIDER_AUTH;
    return CX_EPROVIDER_REJECTED; /* other 4xx, 3xx (not followed), 1xx/6xx oddities */
}

/* Errors where libcurl could not have written a request byte. */
static bool before_send(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
        return true;
    default:
        return false;
    }
}

/* Errors that are configuration, not weather: retrying cannot help; nothing was sent. */
static bool config_error(CURLcode cc)
{
    switch (cc) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_UNKNOWN_OPTION:
    case CURLE_FUNCTION_NOT_FOUND:
        return true;
    default:
        return false;
    }
}

typedef struct call_s {
    cx_http_client_t *c;
    const cx_http_request_t *req;
    const char *method;
    bool idempotent;
    const char *cap; /* capability label */
    char host[256];
} call_t;

static void log_attempt(const call_t *k, cx_log_level_t lvl, int attempt, int status, double ms,
                        int code, int curl_code, const char *msg)
{
    cx_log_record_t r;
    if (!cx_log_begin(&r, k->c->logger, lvl))
        return;
    cx_log_set_connector(&r, k->c->connector);
    cx_log_set_capability(&r, k->cap[0] ? k->cap : NULL);
    cx_log_set_correlation_id(&r, k->req->correlation_id);
    cx_log_set_attempt(&r, attempt);
    if (status > 0)
        cx_log_set_upstream_status(&r, status);
    cx_log_set_latency_ms(&r, ms);
    if (code != 0)
        cx_log_set_error(&r, code);
    cx_log_set_pii(&r, "host", k->host, CX_PII_NONE);
    cx_log_set_pii(&r, "method", k->method, CX_PII_NONE);
    if (curl_code != 0)
        cx_log_set_int(&r, "curl_code", curl_code);
    cx_log_set_msg(&r, msg);
    cx_log_emit(&r);
}

static void count_attempt(const call_t *k, int status, double ms)
{
    const cx_metrics_std_t *std = &k->c->std;
    char st[16];
    if (status > 0)
        snprintf(st, sizeof st, "%d", status);
    else
        memcpy(st, "error", 6);
    cx_counter_inc(std->outbound_requests_total, (const char *[]){k->c->connector, k->cap, st}, 1);
    cx_histogram_observe(std->outbound_latency_ms, (const char *[]){k->c->connector, k->cap}, ms);
}

/* Sets every option of one call on h (after curl_easy_reset). */
static int setup_handle(CURL *h, const call_t *k, xfer_t *x, struct curl_slist *hdrs)
{
    const cx_http_client_t *c = k->c;
    const cx_http_request_t *req = k->req;
    CURLcode cc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(h, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_SHARE, c->share);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->ca_file)
        SET(CURLOPT_CAINFO, c->ca_file);
    SET(CURLOPT_MAXAGE_CONN, (long)c->max_conn_idle_s);
    SET(CURLOPT_MAXLIFETIME_CONN, (long)c->max_conn_life_s);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_USERAGENT, c->user_agent);
    SET(CURLOPT_HTTPHEADER, hdrs);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_HEADERFUNCTION, header_cb);
    SET(CURLOPT_HEADERDATA, x);
    if (c->max_response_bytes < (size_t)INT64_MAX)
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_response_bytes);

    bool has_body = req->body_len > 0 || strcmp(k->method, "POST") == 0 ||
                    strcmp(k->method, "PATCH") == 0 || strcmp(k->method, "PUT") == 0;
    if (has_body) {
        /* One write for headers and body (small bodies); libcurl never needs to rewind it. */
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        SET(CURLOPT_POSTFIELDS, req->body_len ? (const char *)req->body : "");
        if (strcmp(k->method, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, k->method);
    } else if (strcmp(k->method, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(k->method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else {
        SET(CURLOPT_CUSTOMREQUEST, k->method);
    }
    SET(CURLOPT_PREREQFUNCTION, prereq_cb);
    SET(CURLOPT_PREREQDATA, x);
    if (req->bearer_token) {
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
        SET(CURLOPT_XOAUTH2_BEARER, req->bearer_token);
    }
    if (req->aws_sigv4) {
        SET(CURLOPT_AWS_SIGV4, req->aws_sigv4);
        SET(CURLOPT_USERNAME, req->aws_key_id ? req->aws_key_id : "");
        SET(CURLOPT_PASSWORD, req->aws_secret ? req->aws_secret : "");
    }
#undef SET
    return cc == CURLE_OK ? 0 : -1;
}

int cx_http_send(cx_http_client_t *c, const cx_http_request_t *req, cx_http_response_t *resp,
                 cx_error_t *err)
{
    if (c == NULL || req == NULL || resp == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "http: NULL argument");
    if (req->url == NULL)
        return cx_error_set(err, CX_EINVAL, "url", "http: url is NULL");
    if (req->body_len > 0 && req->body == NULL)
        return cx_error_set(err, CX_EINVAL, "body", "http: body is NULL");
    if (req->n_headers > CX_HTTP_MAX_HEADERS || (req->n_headers > 0 && req->headers == NULL))
        return cx_error_set(err, CX_EINVAL, "headers", "http: too many headers or NULL");
    if (req->aws_sigv4 && (req->aws_key_id == NULL || req->aws_secret == NULL))
        return cx_error_set(err, CX_EINVAL, "aws_sigv4", "http: SigV4 needs a key id and secret");

    call_t k = {.c = c, .req = req};
    k.method = req->method ? req->method : (req->body_len ? "POST" : "GET");
    if (!method_ok(k.method))
        return cx_error_set(err, CX_EINVAL, "method", "http: invalid method");
    k.idempotent = req->idempotent == CX_HTTP_IDEMPOTENT_YES ||
                   (req->idempotent == CX_HTTP_IDEMPOTENT_AUTO && method_idempotent(k.method));
    k.cap = req->capability ? req->capability : "";
    int rc = check_url(c, req->url, k.host, sizeof k.host, err);
    if (rc != 0)
        return rc;

    /* Reset the response (keep its memory). */
    cx_buf_reset(&resp->body);
    resp->status = 0;
    resp->truncated = 0;
    resp->attempts = 0;
    resp->retry_after_ms = 0;
    resp->maybe_sent = 0;
    resp->resend_refused = 0;
    resp->curl_code = 0;
    resp->elapsed_ms = 0;
    resp->headers_len = 0;
    resp->headers[0] = '\0';

    struct curl_slist *hdrs = NULL;
    rc = build_headers(req, &hdrs, err);
    if (rc != 0)
        return rc;
    CURL *h = take_handle(c);
    if (h == NULL) {
        curl_slist_free_all(hdrs);
        return cx_error_set(err, CX_ENOMEM, NULL, "http: out of memory");
    }
    curl_easy_reset(h);
    xfer_t x = {.guard = !k.idempotent, .max_body = c->max_response_bytes, .resp = resp};
    if (setup_handle(h, &k, &x, hdrs) != 0) {
        curl_slist_free_all(hdrs);
        give_handle(c, h);
        return cx_error_set(err, CX_ECONFIG, NULL, "http: libcurl refused an option");
    }

    uint32_t timeout = req->timeout_ms ? req->timeout_ms : c->timeout_ms;
    uint32_t max_attempts = req->max_attempts ? req->max_attempts : c->max_attempts;
    uint32_t deadline_ms = req->deadline_ms ? req->deadline_ms : c->deadline_ms;
    double t0 = mono_ms_f();
    int64_t deadline = mono_ms() + deadline_ms;
    CURLcode cc = CURLE_OK;
    rc = 0;
    for (uint32_t attempt = 1;; attempt++) {
        int64_t left = deadline - mono_ms();
        if (left <= 0) {
            /* only reachable after a sleep that ended exactly at the deadline */
            cx_error_set(err, rc, NULL, "%s %s: deadline reached", k.method, k.host);
            break;
        }
        uint32_t this_timeout = (int64_t)timeout < left ? timeout : (uint32_t)left;
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)this_timeout);
        x.sends = 0;
        x.resend_refused = false;
        x.too_large = false;
        cx_buf_reset(&resp->body);
        resp->headers_len = 0;
        resp->headers[0] = '\0';
        resp->truncated = 0;
        resp->retry_after_ms = 0;
        resp->attempts = attempt;

        double ta = mono_ms_f();
        cc = curl_easy_perform(h);
        double lat = mono_ms_f() - ta;
        long status = 0, reqsize = 0;
        curl_off_t up = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &reqsize);
        curl_easy_getinfo(h, CURLINFO_SIZE_UPLOAD_T, &up);
        resp->status = (int)status;
        resp->curl_code = (int)cc;
        resp->resend_refused = x.resend_refused;
        if (cc == CURLE_FILESIZE_EXCEEDED) {
            x.too_large = true; /* Content-Length above the cap: refused before reading */
            resp->truncated = 1;
        }
        bool sent = reqsize > 0 || up > 0 || x.resend_refused;
        resp->maybe_sent = sent;
        char ra[64];
        if (status > 0 && cx_http_response_header(resp, "Retry-After", ra, sizeof ra) >= 0) {
            long ms = cx_http_parse_retry_after(ra, (int64_t)time(NULL));
            if (ms > 0)
                resp->retry_after_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
        }
        count_attempt(&k, cc == CURLE_OK || x.too_large ? (int)status : 0, lat);

        next_t next;
        const char *why;
        if (cc == CURLE_OK || (x.too_large && status > 0)) {
            rc = classify_status((int)status, &next);
            why = "provider answered with an error status";
            if (rc == 0 && x.too_large) {
                /* accepted, but we could not read the whole answer */
                rc = k.idempotent ? CX_ELIMIT : CX_EIN_DOUBT;
                next = NEXT_STOP;
                why = "response body larger than the limit";
            }
        } else if (status >= 300 && (cc == CURLE_RECV_ERROR || cc == CURLE_PARTIAL_FILE)) {
            /* the provider answered definitively; only its body was cut */
            rc = classify_status((int)status, &next);
            why = "provider answered with an error status (body cut)";
        } else if (cc == CURLE_OUT_OF_MEMORY && !(sent && !k.idempotent)) {
            rc = CX_ENOMEM;
            next = NEXT_STOP;
            why = "out of memory";
        } else if (config_error(cc)) {
            rc = CX_ECONFIG;
            next = NEXT_STOP;
            why = cc == CURLE_PEER_FAILED_VERIFICATION ? "TLS peer verification failed"
                                                       : "request refused by libcurl";
        } else if (before_send(cc) || !sent) {
            rc = CX_EPROVIDER;
            next = NEXT_RETRY;
            why = "could not reach the provider (nothing sent)";
        } else if (k.idempotent) {
            rc = CX_EPROVIDER;
            next = NEXT_RETRY;
            why = "request failed after sending (idempotent: retried)";
        } else {
            rc = CX_EIN_DOUBT;
            next = NEXT_STOP;
            why = x.resend_refused                 ? "connection lost after sending; resend refused"
                  : cc == CURLE_OPERATION_TIMEDOUT ? "timed out after sending"
                                                   : "connection lost after sending";
        }
        if (next == NEXT_DONE)
            break;
        if (next == NEXT_STOP || attempt >= max_attempts) {
            cx_error_set(err, rc, NULL, "%s %s: %s (status %ld, attempt %u)", k.method, k.host, why,
                         status, attempt);
            break;
        }
        uint32_t delay = resp->retry_after_ms ? resp->retry_after_ms : backoff_ms(c, attempt);
        if (resp->retry_after_ms > c->retry_after_max_ms) {
            cx_error_set(err, rc, NULL, "%s %s: %s; Retry-After %u ms exceeds the limit", k.method,
                         k.host, why, resp->retry_after_ms);
            break;
        }
        if (mono_ms() + (int64_t)delay >= deadline) {
            cx_error_set(err, rc, NULL, "%s %s: %s; no time left for attempt %u", k.method, k.host,
                         why, attempt + 1);
            break;
        }
        log_attempt(&k, CX_LOG_WARN, (int)attempt, (int)status, lat, rc, (int)cc,
                    "outbound request failed; retrying");
        if (delay)
            sleep_ms(delay);
    }
    resp->elapsed_ms = mono_ms_f() - t0;
    curl_slist_free_all(hdrs);
    /* Credentials must not stay in an idle handle's memory longer than needed. */
    if (req->bearer_token || req->aws_sigv4)
        curl_easy_reset(h);
    give_handle(c, h);

    if (rc != 0) {
        cx_counter_inc(c->std.outbound_failures_total,
                       (const char *[]){c->connector, k.cap, cx_err_name(rc)}, 1);
        log_attempt(&k, rc == CX_EIN_DOUBT ? CX_LOG_ERROR : CX_LOG_WARN, (int)resp->attempts,
                    resp->status, resp->elapsed_ms, rc, (int)cc,
                    rc == CX_EIN_DOUBT ? "outbound request in doubt; not resent"
                                       : "outbound request failed");
    } else {
        log_attempt(&k, CX_LOG_DEBUG, (int)resp->attempts, resp->status, resp->elapsed_ms, 0, 0,
                    "outbound request done");
    }
    return rc;
}
