/* The outbound HTTP client (cx/http.h) against the scriptable mock provider
 * (tests/harness/mock_provider.h), a real libmicrohttpd server on loopback: retries and
 * Retry-After, classification, the in-doubt rule (a POST is never sent twice, also not by
 * libcurl on a dead reused connection), connection reuse, caps, TLS/URL rules, SigV4 through
 * libcurl, and logs and metrics without secrets. No timing assertions beyond "waited at least
 * the Retry-After". */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cx/http.h"
#include "cx/log.h"
#include "cx/metrics.h"
#include "mock_provider.h"

#define TOKEN "EAAG-SECRET-TOKEN-do-not-log-123"

static cx_mock_provider_t *g_mock;

typedef struct fx_s {
    cx_http_client_t *c;
    cx_log_capture_t *cap;
    cx_logger_t *lg;
    cx_metrics_t *reg;
    cx_http_response_t rs;
    cx_error_t err;
    char url[128];
} fx_t;

static int group_setup(void **state)
{
    (void)state;
    return cx_mock_provider_start(&g_mock);
}

static int group_teardown(void **state)
{
    (void)state;
    cx_mock_provider_stop(g_mock);
    return 0;
}

/* A client with fast retries for tests; cfg fields set by the test override. */
static fx_t *fixture(const cx_http_config_t *over)
{
    fx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    cx_mock_provider_reset(g_mock);
    assert_int_equal(cx_log_capture_new(0, &f->cap), 0);
    cx_logger_config_t lc = {
        .service = "test", .level = CX_LOG_DEBUG, .sink = cx_log_capture_sink, .sink_ud = f->cap};
    assert_int_equal(cx_logger_new(&lc, &f->lg), 0);
    assert_int_equal(cx_metrics_new(NULL, &f->reg), 0);
    cx_http_config_t cfg = {.connector = "whatsapp",
                            .timeout_ms = 2000,
                            .backoff_base_ms = 10,
                            .backoff_cap_ms = 50,
                            .allow_loopback_http = 1,
                            .logger = f->lg,
                            .metrics = f->reg};
    if (over) {
#define OV(x)                                                                                      \
    if (over->x)                                                                                   \
    cfg.x = over->x
        OV(timeout_ms);
        OV(connect_timeout_ms);
        OV(max_attempts);
        OV(deadline_ms);
        OV(retry_after_max_ms);
        OV(max_response_bytes);
        OV(backoff_base_ms);
#undef OV
    }
    assert_int_equal(cx_http_client_new(&cfg, &f->c, &f->err), 0);
    cx_http_response_init(&f->rs);
    snprintf(f->url, sizeof f->url, "%s/v19.0/1065/messages", cx_mock_provider_url(g_mock));
    return f;
}

static void fixture_free(fx_t *f)
{
    cx_http_response_free(&f->rs);
    cx_http_client_free(f->c);
    cx_logger_free(f->lg);
    cx_log_capture_free(f->cap);
    cx_metrics_free(f->reg);
    free(f);
}

static int post(fx_t *f, const char *body)
{
    cx_http_header_t hd[] = {{"Content-Type", "application/json"}};
    cx_http_request_t rq = {.method = "POST",
                            .url = f->url,
                            .headers = hd,
                            .n_headers = 1,
                            .body = body,
                            .body_len = strlen(body),
                            .bearer_token = TOKEN,
                            .capability = "outbound_messages",
                            .correlation_id = "corr-1"};
    cx_error_clear(&f->err);
    return cx_http_send(f->c, &rq, &f->rs, &f->err);
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Requests whose body contains marker. */
static size_t count_body(const char *marker)
{
    size_t n = 0;
    for (size_t i = 0;; i++) {
        const cx_mock_request_t *r = cx_mock_provider_request(g_mock, i);
        if (r == NULL)
            return n;
        if (r->body && strstr(r->body, marker))
            n++;
    }
}

/* Nothing secret in any captured log line. */
static void assert_logs_clean(fx_t *f)
{
    assert_false(cx_log_capture_contains(f->cap, TOKEN));
    assert_false(cx_log_capture_contains(f->cap, "SECRET"));
    assert_false(cx_log_capture_contains(f->cap, "Authorization"));
    assert_false(cx_log_capture_contains(f->cap, "authorization"));
    assert_false(cx_log_capture_contains(f->cap, "Bearer"));
    assert_false(cx_log_capture_contains(f->cap, "14155550123"));
}

/* ---- Success and what the provider received ------------------------------------------------ */

static void test_post_200_returns_body_and_sends_bearer_once(void **state)
{
    (void)state;
    fx_t *f = fixture(NULL);
    assert_int_equal(post(f, "{\"to\":\"+14155550123\",\"m\":\"ok\"}"), 0);
    assert_int_equal(f->rs.status, 200);
    assert_int_equal(f->rs.attempts, 1);
    assert_non_null(strstr(f->rs.body.data, "wamid.mock-1"));
    char ct[64];
    assert_true(cx_http_response_header(&f->rs, "content-type", ct, sizeof ct) > 0);
    assert_string_equal(ct, "application/json");
    assert_int_equal(cx_mock_provider_count(g_mock), 1);
    const cx_mock_request_t *r = cx_mock_provider_request(g_mock, 0);
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->path, "/v19.0/1065/messages");
    assert_string_equal(cx_mock_request_header(r, "Authorization"), "Bearer " TOKEN);
    assert_null(cx_mock_request_header(r, "Expect"));
    char len[16];
    snprintf(len, sizeof len, "%zu", strlen("{\"to\":\"+14155550123\",\"m\":\"ok\"}"));
    assert_string_equal(cx_mock_request_header(r, "Content-Length"), len);
    assert_string_equal(r->body, "{\"to\":\"+14155550123\",\"m\":\"ok\"}");
    assert_logs_clean(f);
    fixture_free(f);
}

static void test_sequential_calls_reuse_one_connection(void **state)
{
    (void)state;
    fx_t *f = fixture(NULL);
    for (int i = 0; i < 20; i++)
        assert_int_equal(post(f, "{}"), 0);
    assert_int_equal(cx_mock_provider_count(g_mock), 20);
    assert_int_equal(cx_mock_provider_request(g_mock, 0)->conn,
                     cx_mock_provider_request(g_mock, 19)->conn);
    fixture_free(f);
}

/* ---- Retries ----------------------------------------------------------------------------- */

static void test_429_then_200_succeeds_after_retry_after_seconds(void **state)
{
    (void)state;
    fx_t *f = fixture(NULL);
    cx_mock_push_status(g_mock, 429, NULL, "1");
    double t0 = mono_ms();
    assert_int_equal(post(f, "{\"m\":\"r1\"}"), 0);
    double took = mono_ms() - t0;
    assert_int_equal(f->rs.status, 200);
    assert_int_equal(f->rs.attempts, 2);
    assert_true(took >= 990);
    assert_int_equal(cx_mock_provider_count(g_mock), 2);
    assert_non_null(strstr(f->rs.body.data, "wamid.mock-2"));
    /* one 429 and one 200 counted per attempt */
    cx_buf_t b;
    cx_buf_init(&b, 1 << 20);
    assert_int_equal(cx_metrics_render(f->reg, &b), 0);
    assert_non_null(strstr(b.data, "outbound_requests_total{connector=\"whatsapp\","
                                   "capability=\"outbound_messages\",status=\"429\"} 1"));
    assert_non_null(strstr(b.data, "outbound_requests_total{connector=\"whatsapp\","
                                   "capability=\"outbound_messages\",status=\"200\"} 1"));
    cx_buf_free(&b);
    assert_logs_clean(f);
    fixture_free(f);
}

static void test_429_then_200_honours_retry_after_http_date(void **state)
{
    (void)state;
    fx_t *f = fixture(NULL);
    char date[64];
    time_t when = time(NULL) + 2;
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cx_mock_push_status(g_mock, 429, NULL, date);
    double t0 = mono_ms();
    assert_int_equal(post(f, "{}"), 0);
    double took = mono_ms() - t0;
    assert_int_equal(f->rs.attempts, 2);
    /* a date with one-second resolution two seconds ahead: at least one second of waiting */
    assert_true(took >= 990);
    assert_int_equal(cx_mock_provider_count(g_mock), 2);
    fixture_free(f);
}

static void test_500_three_times_then_200_succeeds_within_attempts(void **state)
{
    (void)state;
    cx_http_config_t o = {.max_attempts = 4};
    fx_t *f = fixture(&o);
    cx_mock_step_t s = {.status = 500, .repeat = 3};
    cx_mock_provider_push(g_mock, &s);
    assert_int_equal(post(f, "{}"), 0);
    assert_int_equal(f->rs.attempts, 4);
    assert_int_equal(f->rs.status, 200);
    assert_int_equal(cx_mock_provider_count(g_mock), 4);
    fixture_free(f);
}

static void test_500_beyond_the_attempt_bound_is_transient_failure(void **state)
{
    (void)state;
    cx_http_config_t o = {.max_attempts = 3};
    fx_t *f = fixture(&o);
    cx_mock_step_t s = {.status = 503, .repeat = 10};
    cx_mock_provider_push(g_mock, &s);
    assert_int_equal(post(f, "{}"), CX_EPROVIDER);
    assert_int_equal(f->rs.attempts, 3);
    assert_int_equal(f->rs.status, 503);
    assert_int_equal(cx_mock_provider_count(g_mock), 3);
    assert_int_equal(f->err.code, CX_EPROVIDER);
    fixture_free(f);
}

static void test_400_is_permanent_not_retried_and_keeps_provider_error(void **state)
{
    (void)state;
    fx_t *f = fixture(NULL);
    cx_mock_push_status(g_mock, 400, NULL, NULL);
    assert_int_equal(post(f, "{}"), CX_EPROVIDER_REJECTED);
    assert_int_equal(f->rs.attempts, 1);
    assert_int_equal(f->rs.status, 400);
    assert_non_null(strstr(f->rs.body.data, "\"code\":131009"));
    sleep_ms(100);
    assert_int_equal(cx_mock_provider_count(g_mock), 1);
    assert_string_equal(cx_err_class(CX_EPROVIDER_REJECTED), "provider");
    fixture_free(f);
}

static void test_401_is_auth_failure_not_retried(void **state)
{
    (void)state;
    fx_t *f = fixture(NULL);
    cx_mock_push_status(g_mock, 401, NULL, NULL);
    assert_int_equal(post(f, "{}"), CX_EPROVIDER_AUTH);
    assert_int_equal(cx_mock_provider_count(g_mock), 1);
    assert_string_equal(cx_err_class(CX_EPROVIDER_AUTH), "auth");
    fixture_free(f);
}

static void test_retry_after_beyond_the_limit_is_returned_not_waited(void **state)
{
    (void)state;
    cx_http_config_t o = {.retry_after_max_ms = 2000};
    fx_t *f = fixture(&o);
    cx_mock_push_status(g_mock, 429, NULL, "30");
    double t0 = mono_ms();
    assert_int_equal(post(f, "{}"), CX_ERATE_LIMITED);
    assert_true(mono_ms() - t0 < 2000);
    assert_int_equal(f->rs.retry_after_ms, 30000);
    assert_int_equal(f->rs.attempts, 1);
    fixture_free(f);
}

static void test_deadline_bounds_the_retries(void **state)
{
    (void)state;
    cx_http_config_t o = {.max_attempts = 50, .deadline_ms = 400, .backoff_base_ms = 100};
    fx_t *f = fixture(&o);
    cx_mock_step_t s = {.status = 500, .repeat = 100};
    cx_mock_provider_push(g_mock, &s);
    double t0 = mono_ms();
    assert_int_equal(post(f, "{}"), CX_EPROVIDER);
    assert_true(mono_ms() - t0 < 2000);
    assert_true(f->rs.attempts < 50);
    fixture_free(f);
}

static void test_connection_refused_is_retried_and_nothing_was_sent(void **state)
{
    (void)state;
    cx_http_config_t o = {.max_attempts = 3};
    fx_t *f = fixture(&o);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(s, (struct sockaddr *)&a, &al);
    close(s); /* nobody listens there now */
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d/x", ntohs(a.sin_port));
    assert_int_equal(post(f, "{}"), CX_EPROVIDER);
    assert_int_equal(f->rs.attempts, 3);
    assert_int_equal(f->rs.maybe_sent, 0);
    assert_int_equal(f->rs.status, 0);
    fixture_free(f);
}

/* ---- The in-doubt rule --------------------------------------------------------------------- */

static void test_post_slower_than_timeout_is_in_doubt_and_sent_once(void **state)
{
    (void)state;
    cx_http_config_t o = {.timeout_ms = 300, .max_attempts = 4};
    fx_t *f = fixture(&o);
    cx_mock_push_delay(g_mock, 1500);
    double t0 = mono_ms();
    assert_int_equal(post(f, "{\"m\":\"slow\"}"), CX_EIN_DOUBT);
    assert_true(mono_ms() - t0 < 1400);
    assert_int_equal(f->rs.attempts, 1);
    assert_int_equal(f->rs.maybe_sent, 1);
    sleep_ms(1500); /* long enough for any resend to have arrived */
    assert_int_equal(count_body("slow"), 1);
    assert_int_equal(cx_mock_provider_count(g_mock), 1);
    assert_true(cx_log_capture_contains(f->cap, "\"error_code\":\"CX_EIN_DOUBT\""));
    assert_logs_clean(f);
    fixture_free(f);
}

static void test_get_slower_than_timeout_is_retried(void **state)
{
    (void)state;
    cx_http_config_t o = {.timeout_ms = 300, .max_attempts = 2};
    fx_t *f = fixture(&o);
    cx_mock_push_delay(g_mock, 1000);
    cx_http_request_t rq = {.method = "GET", .url = f->url, .bearer_token = TOKEN};
    assert_int_equal(cx_http_send(f->c, &rq, &f->rs, &f->err), 0);
    assert_int_equal(f->rs.attempts, 2);
    assert_int_equal(f->rs.status, 200);
    fixture_free(f);
}

static void test_closed_reused_connection_after_body_post_is_not_resent(void **state)
{
    (void)state;
    fx_t *f = fixture(NULL);
    assert_int_equal(post(f, "{\"m\":\"first\"}"), 0); /* opens the kept-alive connection */
    cx_mock_push_close(g_mock, 0);                     /* read the next body, then hang up */
    assert_int_equal(post(f, "{\"m\":\"second\"}"), CX_EIN_DOUBT);
    assert_int_equal(f->rs.resend_refused, 1);
    assert_int_equal(f->rs.attempts, 1);
    sleep_ms(300);
    assert_int_equal(count_body("second"), 1);
    assert_int_equal(cx_mock_provider_count(g_mock), 2);
    /* the client recovers: the next request goes on a new connection */
    assert_int_equal(post(f, "{\"m\":\"third\"}"), 0);
    assert_int_equal(count_body("third"), 1);
    fixture_free(f);
}

static void test_closed_reused_connection_idempotent_put_is_resent_by_libcurl(void **state)
{
    (void)state;
    fx_t *f = fixture(NULL);
    cx_http_request_t rq = {
        .method = "PUT", .url = f->url, .body = "{\"m\":\"put1\"}", .body_len = 12};
    assert_int_equal(cx_http_send(f->c, &rq, &f->rs, &f->err), 0);
    cx_mock_push_close(g_mock, 0);
    rq.body = "{\"m\":\"put2\"}";
    assert_int_equal(cx_http_send(f->c, &rq, &f->rs, &f->err), 0);
    /* the contrast that shows the mechanism: without the guard (an idempotent request)
     * libcurl's own resend on a fresh connection happens */
    assert_int_equal(count_body("put2"), 2);
    assert_int_equal(f->rs.resend_refused, 0);
    fixture_free(f);
}

static void test_closed_reused_connection_bodiless_post_is_not_resent(void **state)
{
    (void)state;
    fx_t *f = fixture(NULL);
    assert_int_equal(post(f, "{}"), 0);
    cx_mock_push_close(g_mock, 0);
    cx_http_request_t rq = {.method = "POST", .url = f->url};
    assert_int_equal(cx_http_send(f->c, &rq, &f->rs, &f->err), CX_EIN_DOUBT);
    assert_int_equal(f->rs.resend_refused, 1);
    sleep_ms(200);
    assert_int_equal(cx_mock_provider_count(g_mock), 2);
    fixture_free(f);
}

/* ---- Limits and rules ---------------------------------------------------------------------- */

static void test_response_body_cap(void **state)
{
    (void)state;
    cx_http_config_t o = {.max_response_bytes = 100};
    fx_t *f = fixture(&o);
    char big[2001];
    memset(big, 'x', 2000);
    big[0] = '"';
    big[1999] = '"';
    big[2000] = '\0';
    cx_mock_push_status(g_mock, 200, big, NULL);
    assert_int_equal(post(f, "{}"), CX_EIN_DOUBT); /* accepted, answer unreadable */
    assert_int_equal(f->rs.truncated, 1);
    assert_true(f->rs.body.len <= 100);
    cx_mock_push_status(g_mock, 400, big, NULL);
    assert_int_equal(post(f, "{}"), CX_EPROVIDER_REJECTED); /* the status still decides */
    assert_int_equal(f->rs.truncated, 1);
    cx_http_request_t rq = {.method = "GET", .url = f->url};
    cx_mock_push_status(g_mock, 200, big, NULL);
    assert_int_equal(cx_http_send(f->c, &rq, &f->rs, &f->err), CX_ELIMIT);
    fixture_free(f);
}

static void test_plain_http_only_to_loopback_and_only_when_allowed(void **state)
{
    (void)state;
    fx_t *f = fixture(NULL);
    snprintf(f->url, sizeof f->url, "http://example.com/x");
    assert_int_equal(post(f, "{}"), CX_ECONFIG);
    snprintf(f->url, sizeof f->url, "ftp://127.0.0.1/x");
    assert_int_equal(post(f, "{}"), CX_ECONFIG);
    snprintf(f->url, sizeof f->url, "not a url");
    assert_int_equal(post(f, "{}"), CX_EINVAL);
    cx_http_client_t *strict;
    cx_http_config_t cfg = {.connector = "whatsapp"};
    assert_int_equal(cx_http_client_new(&cfg, &strict, &f->err), 0);
    cx_http_request_t rq = {.url = cx_mock_provider_url(g_mock)};
    assert_int_equal(cx_http_send(strict, &rq, &f->rs, &f->err), CX_ECONFIG);
    cx_http_client_free(strict);
    assert_int_equal(cx_mock_provider_count(g_mock), 0);
    fixture_free(f);
}

static void test_header_injection_is_refused(void **state)
{
    (void)state;
    fx_t *f = fixture(NULL);
    cx_http_header_t hd[] = {{"X-Bad", "a\r\nInjected: 1"}};
    cx_http_request_t rq = {.url = f->url, .headers = hd, .n_headers = 1};
    assert_int_equal(cx_http_send(f->c, &rq, &f->rs, &f->err), CX_EINVAL);
    assert_string_equal(f->err.path, "headers[0]");
    fixture_free(f);
}

static void test_parse_retry_after(void **state)
{
    (void)state;
    assert_int_equal(cx_http_parse_retry_after("120", 0), 120000);
    assert_int_equal(cx_http_parse_retry_after(" 0 ", 0), 0);
    /* Sun, 06 Nov 1994 08:49:37 GMT = 784111777, in the three formats of RFC 9110 */
    assert_int_equal(cx_http_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111770), 7000);
    assert_int_equal(cx_http_parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", 784111770), 7000);
    assert_int_equal(cx_http_parse_retry_after("Sun Nov  6 08:49:37 1994", 784111770), 7000);
    assert_int_equal(cx_http_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111800), 0);
    assert_int_equal(cx_http_parse_retry_after("soon", 0), -1);
    assert_int_equal(cx_http_parse_retry_after("", 0), -1);
    assert_int_equal(cx_http_parse_retry_after(NULL, 0), -1);
}

/* ---- SigV4 through libcurl ------------------------------------------------------------------ */

static void hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void sha256_hex(const void *d, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int l = 0;
    EVP_Digest(d, n, md, &l, EVP_sha256(), NULL);
    hex(md, 32, out);
}

static void hmac(const void *k, size_t kl, const char *msg, unsigned char out[32])
{
    unsigned int l = 32;
    HMAC(EVP_sha256(), k, (int)kl, (const unsigned char *)msg, strlen(msg), out, &l);
}

/* Verifies the request's SigV4 signature independently (canonical request -> string to
 * sign -> derived key), which proves that libcurl signed exactly the headers it sent and the
 * body's payload hash. */
static void test_aws_sigv4_signs_the_body_through_libcurl(void **state)
{
    (void)state;
    fx_t *f = fixture(NULL);
    const char *secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const char *body = "{\"Content\":{\"Simple\":{\"Subject\":{\"Data\":\"hi\"}}}}";
    cx_http_header_t hd[] = {{"Content-Type", "application/json"}};
    cx_http_request_t rq = {.method = "POST",
                            .url = f->url,
                            .headers = hd,
                            .n_headers = 1,
                            .body = body,
                            .body_len = strlen(body),
                            .aws_sigv4 = "aws:amz:us-east-1:ses",
                            .aws_key_id = "AKIDEXAMPLE",
                            .aws_secret = secret};
    assert_int_equal(cx_http_send(f->c, &rq, &f->rs, &f->err), 0);
    const cx_mock_request_t *r = cx_mock_provider_request(g_mock, 0);
    const char *auth = cx_mock_request_header(r, "Authorization");
    assert_non_null(auth);
    assert_int_equal(strncmp(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/", 40), 0);
    char bh[65];
    sha256_hex(body, strlen(body), bh);
    /* libcurl hashed the body itself (CURLOPT_POSTFIELDS): the signature below covers bh */
    /* parse Credential=.../<date>/<region>/<service>/aws4_request, SignedHeaders, Signature */
    char scope[128], signed_h[256], sig[65];
    assert_int_equal(sscanf(auth,
                            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/%127[^,], "
                            "SignedHeaders=%255[^,], Signature=%64s",
                            scope, signed_h, sig),
                     3);
    const char *amzdate = cx_mock_request_header(r, "x-amz-date");
    assert_non_null(amzdate);
    char canon[4096];
    int n = snprintf(canon, sizeof canon, "POST\n%s\n\n", r->path);
    char names[256];
    snprintf(names, sizeof names, "%s", signed_h);
    for (char *save = NULL, *h = strtok_r(names, ";", &save); h; h = strtok_r(NULL, ";", &save)) {
        const char *v = cx_mock_request_header(r, h);
        if (v == NULL)
            fail_msg("signed header %s not received (SignedHeaders=%s)", h, signed_h);
        n += snprintf(canon + n, sizeof canon - (size_t)n, "%s:%s\n", h, v);
    }
    snprintf(canon + n, sizeof canon - (size_t)n, "\n%s\n%s", signed_h, bh);
    char ch[65];
    sha256_hex(canon, strlen(canon), ch);
    char sts[512];
    snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amzdate, scope, ch);
    char date[16], region[32], service[32];
    assert_int_equal(sscanf(scope, "%15[^/]/%31[^/]/%31[^/]/", date, region, service), 3);
    char k0[128];
    snprintf(k0, sizeof k0, "AWS4%s", secret);
    unsigned char k1[32], k2[32], k3[32], k4[32], s5[32];
    hmac(k0, strlen(k0), date, k1);
    hmac(k1, 32, region, k2);
    hmac(k2, 32, service, k3);
    hmac(k3, 32, "aws4_request", k4);
    hmac(k4, 32, sts, s5);
    char want[65];
    hex(s5, 32, want);
    assert_string_equal(sig, want);
    assert_false(cx_log_capture_contains(f->cap, secret));
    fixture_free(f);
}

/* ---- Logs and metrics ---------------------------------------------------------------------- */

static void test_logs_and_metrics_never_carry_tokens_headers_or_bodies(void **state)
{
    (void)state;
    cx_http_config_t o = {.timeout_ms = 300};
    fx_t *f = fixture(&o);
    const char *body = "{\"to\":\"+14155550123\",\"text\":\"SECRET-BODY\"}";
    cx_mock_push_status(g_mock, 429, NULL, "0");
    assert_int_equal(post(f, body), 0);
    cx_mock_push_status(g_mock, 400, NULL, NULL);
    assert_int_equal(post(f, body), CX_EPROVIDER_REJECTED);
    cx_mock_push_delay(g_mock, 800);
    assert_int_equal(post(f, body), CX_EIN_DOUBT);
    assert_true(cx_log_capture_count(f->cap) >= 3);
    assert_logs_clean(f);
    assert_false(cx_log_capture_contains(f->cap, "131009")); /* provider body not logged */
    assert_true(cx_log_capture_contains(f->cap, "\"upstream_status\":429"));
    assert_true(cx_log_capture_contains(f->cap, "\"host\":\"127.0.0.1\""));
    cx_buf_t b;
    cx_buf_init(&b, 1 << 20);
    assert_int_equal(cx_metrics_render(f->reg, &b), 0);
    assert_null(strstr(b.data, TOKEN));
    assert_non_null(strstr(b.data, "outbound_failures_total{connector=\"whatsapp\","
                                   "capability=\"outbound_messages\","
                                   "error_code=\"CX_EIN_DOUBT\"} 1"));
    assert_non_null(strstr(b.data, "outbound_failures_total{connector=\"whatsapp\","
                                   "capability=\"outbound_messages\","
                                   "error_code=\"CX_EPROVIDER_REJECTED\"} 1"));
    assert_non_null(strstr(b.data, "outbound_latency_ms_count{connector=\"whatsapp\","
                                   "capability=\"outbound_messages\"} 4"));
    cx_buf_free(&b);
    fixture_free(f);
}

static void test_invalid_client_config_is_refused(void **state)
{
    (void)state;
    cx_http_client_t *c = NULL;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_http_client_new(NULL, &c, &err), CX_EINVAL);
    cx_http_config_t cfg = {.connector = ""};
    assert_int_equal(cx_http_client_new(&cfg, &c, &err), CX_EINVAL);
    cfg.connector = "x";
    cfg.max_handles = -1;
    assert_int_equal(cx_http_client_new(&cfg, &c, &err), CX_EINVAL);
    assert_null(c);
    cx_http_client_free(NULL);
    cx_http_response_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_post_200_returns_body_and_sends_bearer_once),
        cmocka_unit_test(test_sequential_calls_reuse_one_connection),
        cmocka_unit_test(test_429_then_200_succeeds_after_retry_after_seconds),
        cmocka_unit_test(test_429_then_200_honours_retry_after_http_date),
        cmocka_unit_test(test_500_three_times_then_200_succeeds_within_attempts),
        cmocka_unit_test(test_500_beyond_the_attempt_bound_is_transient_failure),
        cmocka_unit_test(test_400_is_permanent_not_retried_and_keeps_provider_error),
        cmocka_unit_test(test_401_is_auth_failure_not_retried),
        cmocka_unit_test(test_retry_after_beyond_the_limit_is_returned_not_waited),
        cmocka_unit_test(test_deadline_bounds_the_retries),
        cmocka_unit_test(test_connection_refused_is_retried_and_nothing_was_sent),
        cmocka_unit_test(test_post_slower_than_timeout_is_in_doubt_and_sent_once),
        cmocka_unit_test(test_get_slower_than_timeout_is_retried),
        cmocka_unit_test(test_closed_reused_connection_after_body_post_is_not_resent),
        cmocka_unit_test(test_closed_reused_connection_idempotent_put_is_resent_by_libcurl),
        cmocka_unit_test(test_closed_reused_connection_bodiless_post_is_not_resent),
        cmocka_unit_test(test_response_body_cap),
        cmocka_unit_test(test_plain_http_only_to_loopback_and_only_when_allowed),
        cmocka_unit_test(test_header_injection_is_refused),
        cmocka_unit_test(test_parse_retry_after),
        cmocka_unit_test(test_aws_sigv4_signs_the_body_through_libcurl),
        cmocka_unit_test(test_logs_and_metrics_never_carry_tokens_headers_or_bodies),
        cmocka_unit_test(test_invalid_client_config_is_refused),
    };
    return cmocka_run_group_tests_name("http", tests, group_setup, group_teardown);
}
