/* The outbound HTTP client: libcurl with the safety rules every connector needs.
 *
 * One client per connector (or per provider), shared by every thread that calls it. A call
 * sends one logical request and may make several attempts:
 *
 *   - timeouts: connect and per-attempt total, plus a deadline across all attempts (backoff
 *     sleeps included); the response body is capped (the rest is never read);
 *   - retries: transient failures (429, 408, 5xx, timeouts, connection errors) are retried with
 *     exponential backoff and full jitter, bounded by max_attempts and the deadline;
 *     Retry-After (delta-seconds or an HTTP-date, parsed by curl_getdate) replaces the backoff
 *     when the provider sends it; other 4xx are permanent and never retried; the provider's
 *     body and status are kept for the adapter to read its error code;
 *   - never twice by accident: a request that is not idempotent (POST, PATCH, unless the caller
 *     says otherwise) is retried only when no byte of it can have reached the provider (name
 *     resolution, TCP connect, TLS handshake failed). A timeout or a connection lost after the
 *     request was written is CX_EIN_DOUBT: the provider may have acted on it, so it is not
 *     resent. libcurl's own silent "retry on a dead reused connection" is refused for such
 *     requests: libcurl's pre-request callback (CURLOPT_PREREQFUNCTION) runs before every
 *     send of a request, and ours aborts a second send within one attempt (reported as
 *     CX_EIN_DOUBT with resend_refused set). Connections stay reused and headers and body
 *     still go out in one write;
 *   - connections are reused (one libcurl handle per concurrent caller, each with its own
 *     connection cache; DNS and TLS sessions are shared); a connection idle longer than
 *     max_conn_idle_s (CURLOPT_MAXAGE_CONN, below providers' idle timeouts, typically 60 s or
 *     more) or older than max_conn_life_s (CURLOPT_MAXLIFETIME_CONN) is not reused;
 *   - TLS peer and host verification are always on; plain http:// is refused unless
 *     allow_loopback_http is set and the host is 127.0.0.1, ::1 or localhost (tests);
 *     redirects are not followed; only http and https are allowed;
 *   - libcurl's own features are used where they exist: Bearer tokens (CURLAUTH_BEARER),
 *     AWS Signature V4 (CURLOPT_AWS_SIGV4, which hashes the body itself),
 *     HTTP-date parsing (curl_getdate);
 *   - observability without leaks: logs name the connector, capability, host, method,
 *     attempt, status, latency and error code, never a URL query, a header, a body, a token or
 *     a key; metrics outbound_requests_total{connector,capability,status} (one per attempt;
 *     status is the HTTP status or "error"), outbound_latency_ms{connector,capability} (per
 *     attempt) and outbound_failures_total{connector,capability,error_code} (one per failed
 *     call).
 *
 *     cx_http_request_t rq = {.method = "POST", .url = url, .body = json, .body_len = n,
 *                             .bearer_token = token, .capability = "outbound_messages"};
 *     cx_http_response_t rs; cx_http_response_init(&rs);
 *     int rc = cx_http_send(client, &rq, &rs, &err);  // 0: rs.status is 2xx, rs.body has it
 *     ...; cx_http_response_free(&rs);
 *
 * docs/outbound.md describes the classification table and the in-doubt rule.
 */
#ifndef CX_HTTP_H
#define CX_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "cx/buf.h"
#include "cx/error.h"
#include "cx/log.h"
#include "cx/metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Defaults of cx_http_config_t (a 0 field takes these). */
#define CX_HTTP_DEFAULT_CONNECT_TIMEOUT_MS 3000u
#define CX_HTTP_DEFAULT_TIMEOUT_MS 10000u
#define CX_HTTP_DEFAULT_MAX_ATTEMPTS 4u
#define CX_HTTP_DEFAULT_DEADLINE_MS 30000u
#define CX_HTTP_DEFAULT_BACKOFF_BASE_MS 200u
#define CX_HTTP_DEFAULT_BACKOFF_CAP_MS 5000u
#define CX_HTTP_DEFAULT_RETRY_AFTER_MAX_MS 60000u
#define CX_HTTP_DEFAULT_MAX_RESPONSE_BYTES (1u << 20)
#define CX_HTTP_DEFAULT_MAX_CONN_IDLE_S 20u
#define CX_HTTP_DEFAULT_MAX_CONN_LIFE_S 300u
#define CX_HTTP_DEFAULT_MAX_HANDLES 32
/* Response headers kept per response (bytes of "name: value\r\n" lines). */
#define CX_HTTP_HEADERS_MAX 8192
/* Request headers per request. */
#define CX_HTTP_MAX_HEADERS 32

typedef struct cx_http_client_s cx_http_client_t;

/* Client configuration. Zero-initialise, then set what you need. Strings are copied; logger
 * and metrics are borrowed and must outlive the client. */
typedef struct cx_http_config_s {
    const char *connector;       /* label of logs and metrics ("whatsapp"); required */
    uint32_t connect_timeout_ms; /* TCP + TLS handshake per attempt */
    uint32_t timeout_ms;         /* one attempt, from start to the last body byte */
    uint32_t max_attempts;       /* attempts per call, the first included (1 = no retry) */
    uint32_t deadline_ms;        /* the whole call: attempts and backoff sleeps */
    uint32_t backoff_base_ms;    /* full jitter: sleep uniform in [0, min(cap, base*2^n)) */
    uint32_t backoff_cap_ms;
    uint32_t retry_after_max_ms; /* a longer Retry-After is not waited for: the call ends
                                  * with CX_ERATE_LIMITED / CX_EPROVIDER and retry_after_ms */
    size_t max_response_bytes;   /* body cap; more is not read (the attempt fails) */
    uint32_t max_conn_idle_s;    /* CURLOPT_MAXAGE_CONN */
    uint32_t max_conn_life_s;    /* CURLOPT_MAXLIFETIME_CONN */
    int max_handles;             /* libcurl handles kept idle for reuse (concurrency) */
    int allow_loopback_http;     /* allow http:// to 127.0.0.1, ::1, localhost only */
    const char *ca_file;         /* CURLOPT_CAINFO; NULL = the system store */
    const char *user_agent;      /* NULL = "cx/<version>" */
    cx_logger_t *logger;         /* NULL = no logs */
    cx_metrics_t *metrics;       /* NULL = no metrics; the standard ones are registered */
} cx_http_config_t;

typedef struct cx_http_header_s {
    const char *name;  /* "Content-Type" */
    const char *value; /* "application/json"; may hold a secret: never logged */
} cx_http_header_t;

/* Whether a request may be resent after it may have reached the provider. */
typedef enum {
    CX_HTTP_IDEMPOTENT_AUTO = 0, /* by method: GET, HEAD, OPTIONS, PUT, DELETE yes; others no */
    CX_HTTP_IDEMPOTENT_YES = 1,  /* e.g. a POST carrying an Idempotency-Key the provider honours */
    CX_HTTP_IDEMPOTENT_NO = 2
} cx_http_idempotency_t;

/* One logical request. Everything is borrowed for the duration of the call. */
typedef struct cx_http_request_s {
    const char *method;              /* "GET", "POST", ...; NULL = GET, or POST with a body */
    const char *url;                 /* https://... (http:// only to loopback, see config) */
    const cx_http_header_t *headers; /* extra request headers (at most CX_HTTP_MAX_HEADERS) */
    size_t n_headers;
    const void *body; /* request body; may be NULL when body_len is 0 */
    size_t body_len;
    cx_http_idempotency_t idempotent;
    const char *bearer_token;   /* Authorization: Bearer (CURLAUTH_BEARER); a secret */
    const char *aws_sigv4;      /* CURLOPT_AWS_SIGV4 "aws:amz:us-east-1:ses", with */
    const char *aws_key_id;     /* the access key id and */
    const char *aws_secret;     /* the secret key (a secret) */
    const char *capability;     /* metrics/log label; NULL = "" */
    const char *correlation_id; /* logged; NULL = none */
    uint32_t timeout_ms;        /* overrides of the client's values; 0 = the client's */
    uint32_t max_attempts;
    uint32_t deadline_ms;
} cx_http_request_t;

/* What happened. Initialise with cx_http_response_init, release with cx_http_response_free;
 * one response may be reused for several calls (each call resets it). */
typedef struct cx_http_response_s {
    int status;              /* read-only: HTTP status of the last response, 0 when none */
    cx_buf_t body;           /* read-only: its body (at most max_response_bytes) */
    int truncated;           /* read-only: the body was longer than the cap (not all read) */
    uint32_t attempts;       /* read-only: attempts made */
    uint32_t retry_after_ms; /* read-only: the last response's Retry-After, 0 when none */
    int maybe_sent;          /* read-only: the last attempt may have reached the provider */
    int resend_refused;      /* read-only: libcurl wanted to send the request again on
                              * another connection and was refused (it is in doubt) */
    int curl_code;           /* read-only: CURLcode of the last attempt (diagnostics) */
    double elapsed_ms;       /* read-only: the whole call */
    char headers[CX_HTTP_HEADERS_MAX]; /* private: see cx_http_response_header */
    size_t headers_len;                /* private */
} cx_http_response_t;

/* Creates a client from cfg (copied). *out is the caller's, freed with cx_http_client_free.
 * Initialises libcurl once per process (curl_global_init, thread-safe in libcurl >= 7.84).
 * Returns 0, CX_EINVAL (no connector, out of range values), CX_ENOMEM. Thread-safe.
 *
 *     cx_http_config_t cfg = {.connector = "whatsapp", .timeout_ms = 5000, .logger = lg};
 *     cx_http_client_t *c; if (cx_http_client_new(&cfg, &c, &err) != 0) ...;
 */
CX_API int cx_http_client_new(const cx_http_config_t *cfg, cx_http_client_t **out, cx_error_t *err);

/* Frees the client and closes its connections; c may be NULL. No call may be running.
 *
 *     cx_http_client_free(c);   // at shutdown, after the last cx_http_send returned
 */
CX_API void cx_http_client_free(cx_http_client_t *c);

/* Prepares the caller-owned resp for cx_http_send (an empty heap body buffer; nothing is
 * allocated yet). Not thread-safe per response: one response belongs to one call at a time.
 *
 *     cx_http_response_t rs; cx_http_response_init(&rs);
 *     ... cx_http_send(c, &rq, &rs, &err) ...; cx_http_response_free(&rs);
 */
CX_API void cx_http_response_init(cx_http_response_t *resp);
/* Frees the body; resp may be NULL. */
CX_API void cx_http_response_free(cx_http_response_t *resp);

/* Copies the value of the last response's header name (case-insensitive) into buf (cap
 * bytes, NUL-terminated). Returns the value's length, or -1 when absent or buf too small.
 *
 *     char id[128]; if (cx_http_response_header(&rs, "x-fb-trace-id", id, sizeof id) >= 0) ...
 */
CX_API int cx_http_response_header(const cx_http_response_t *resp, const char *name, char *buf,
                                   size_t cap);

/* Sends req, retrying as the header comment describes; resp (initialised by the caller) gets
 * the last response. Blocks for at most about the deadline. Returns:
 *   0                   a 2xx response (in resp);
 *   CX_EPROVIDER_REJECTED  a permanent 4xx (or 3xx: redirects are not followed); the body is
 *                       the provider's error for the adapter;
 *   CX_EPROVIDER_AUTH   401 or 403 (never retried);
 *   CX_ERATE_LIMITED    429 on the last attempt (retry_after_ms when the provider said);
 *   CX_EPROVIDER        5xx or 408 on the last attempt, or no connection could be made, or
 *                       an idempotent request timed out: transient, nothing was done;
 *   CX_EIN_DOUBT        a request that is not idempotent may have reached the provider and
 *                       no complete answer came back (timeout, connection lost, a 2xx whose
 *                       body exceeded the cap): do not resend; reconcile;
 *   CX_ELIMIT           an idempotent request's 2xx body exceeded the cap;
 *   CX_ECONFIG          TLS verification failed or the URL/protocol is refused (nothing sent);
 *   CX_EINVAL           bad arguments (err->path names it); CX_ENOMEM.
 * err gets a message without secrets. Thread-safe: concurrent calls use separate handles.
 *
 *     int rc = cx_http_send(client, &rq, &rs, &err);
 *     if (rc == CX_EIN_DOUBT) mark_in_doubt(); else if (rc == CX_EPROVIDER_REJECTED)
 * parse(rs.body);
 */
CX_API int cx_http_send(cx_http_client_t *c, const cx_http_request_t *req, cx_http_response_t *resp,
                        cx_error_t *err);

/* Parses a Retry-After value: delta-seconds ("120") or an HTTP-date (IMF-fixdate, RFC 850 or
 * asctime, via curl_getdate) relative to now_s (Unix seconds). Returns the delay in ms (0 for
 * a date in the past), or -1 when value is not a valid Retry-After. Thread-safe.
 *
 *     long ms = cx_http_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", time(NULL));
 */
CX_API long cx_http_parse_retry_after(const char *value, int64_t now_s);

#ifdef __cplusplus
}
#endif

#endif /* CX_HTTP_H */
