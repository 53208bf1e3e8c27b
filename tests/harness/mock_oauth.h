/* Test harness: a mock OAuth token endpoint on a free loopback port (libmicrohttpd).
 *
 * It answers every path (POST form or GET query, as the strategies send them) like a token
 * endpoint would: by default 200 with a fresh access token, and a refresh token for
 * authorization_code grants (and for refresh_token grants when rotation is on). Tests script
 * other answers (401, 400 invalid_grant, 500, slow ones) with cx_mock_oauth_push; scripted
 * answers are consumed first, in order. Requests are counted per grant type, which is how a
 * test proves "one refresh".
 *
 * The grant of a request is its grant_type parameter, or "authorization_code" when it has a
 * code and no grant_type (Meta's code exchange). Issued tokens are "mockat-<hex>-<n>" and
 * "mockrt-<hex>-<n>" (hex random per server), retrievable with cx_mock_oauth_issued so tests can
 * check that no log line contains one. The mock never prints a request or a token.
 *
 *     cx_mock_oauth_t *m;
 *     if (cx_mock_oauth_start(&m) != 0) fail();
 *     char url[128]; cx_mock_oauth_url(m, "/token", url, sizeof url);
 *     cx_mock_oauth_push(m, 401, "{\"error\":\"invalid_client\"}", 0);
 *     ... assert_int_equal(cx_mock_oauth_count(m, "refresh_token"), 1); ...
 *     cx_mock_oauth_stop(m);
 *
 * Thread-safe: the server answers each connection in its own thread; every function here may
 * be called from any thread.
 */
#ifndef CX_TEST_MOCK_OAUTH_H
#define CX_TEST_MOCK_OAUTH_H

#include <stddef.h>

typedef struct cx_mock_oauth_s cx_mock_oauth_t;

/* Starts a server on 127.0.0.1 and a free port. Returns 0 or -1. */
int cx_mock_oauth_start(cx_mock_oauth_t **out);
/* Stops it and frees everything (m may be NULL). */
void cx_mock_oauth_stop(cx_mock_oauth_t *m);
/* Its port. */
int cx_mock_oauth_port(const cx_mock_oauth_t *m);
/* "http://127.0.0.1:<port><path>" into buf; returns buf. */
const char *cx_mock_oauth_url(const cx_mock_oauth_t *m, const char *path, char *buf, size_t cap);

/* Queues one scripted answer: status, body (copied; NULL = a generated token answer) and a
 * delay before answering. */
void cx_mock_oauth_push(cx_mock_oauth_t *m, int status, const char *body, unsigned delay_ms);

/* Default answers: expires_in of generated tokens (0 = omitted), whether refresh_token grants
 * get a new refresh token (rotation), and a delay for every answer. */
void cx_mock_oauth_configure(cx_mock_oauth_t *m, int expires_in, int rotate_refresh,
                             unsigned delay_ms);

/* Requests received with this grant type ("refresh_token", "authorization_code",
 * "fb_exchange_token", "ig_refresh_token", "ig_exchange_token"); NULL = all. */
unsigned cx_mock_oauth_count(cx_mock_oauth_t *m, const char *grant);

/* The last request's value of a parameter (decoded) into out; returns 0, or -1 if absent. */
int cx_mock_oauth_last(cx_mock_oauth_t *m, const char *param, char *out, size_t cap);
/* The method ("GET"/"POST") and path of the last request. */
int cx_mock_oauth_last_request(cx_mock_oauth_t *m, char *method, size_t mcap, char *path,
                               size_t pcap);

/* The i-th token issued (0-based; access tokens and refresh tokens in one list, in issue
 * order), or NULL past the end. Valid until cx_mock_oauth_stop. */
const char *cx_mock_oauth_issued(cx_mock_oauth_t *m, size_t i);
/* The last access token issued, or NULL. */
const char *cx_mock_oauth_last_access_token(cx_mock_oauth_t *m);

/* Forgets counts, scripted answers and the last request (not the issued tokens). */
void cx_mock_oauth_reset(cx_mock_oauth_t *m);

#endif /* CX_TEST_MOCK_OAUTH_H */
