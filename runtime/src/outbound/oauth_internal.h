/* Private: the token endpoint transport of cx_oauth_t, swappable for tests.
 *
 * Every request to a provider's token endpoint goes through one function pointer. The default
 * is a small libcurl client (a fresh handle per request, so libcurl never resends a request on
 * a reused connection; TLS verification on; no redirects; http and https only; the response
 * capped at CX__OAUTH_RESP_MAX). Tests may point it elsewhere (a fault injector, a counter) with
 * cx__oauth_set_http; the loopback mock token endpoint (tests/harness/mock_oauth.h) is reached
 * through the default one, by URL.
 *
 * Requests carry secrets (client secret, codes, tokens) in their URL or form: an
 * implementation must never log or copy them into error text.
 */
#ifndef CX_OUTBOUND_OAUTH_INTERNAL_H
#define CX_OUTBOUND_OAUTH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cx/oauth.h"

#define CX__OAUTH_RESP_MAX 65536

typedef struct cx__oauth_http_req_s {
    const char *method; /* "GET" or "POST" */
    const char *url;    /* with the query for GET; a secret */
    const char *form;   /* POST: application/x-www-form-urlencoded body (a secret); or NULL */
    size_t form_len;
    uint32_t timeout_ms; /* total */
} cx__oauth_http_req_t;

typedef struct cx__oauth_http_resp_s {
    long status;                       /* HTTP status, 0 when none arrived */
    char body[CX__OAUTH_RESP_MAX + 1]; /* NUL-terminated */
    size_t len;
} cx__oauth_http_resp_t;

/* Sends req and fills resp. Returns 0 when a response arrived (whatever its status), or
 * CX_EPROVIDER (no response: resolve, connect, TLS, timeout, reset, response too large), with a
 * reason in err that holds no URL. */
typedef int (*cx__oauth_http_fn)(void *ud, const cx__oauth_http_req_t *req,
                                 cx__oauth_http_resp_t *resp, cx_error_t *err);

/* Replaces o's transport (fn NULL: back to libcurl). Not thread-safe: call before use. */
void cx__oauth_set_http(cx_oauth_t *o, cx__oauth_http_fn fn, void *ud);

/* The default transport (libcurl). */
int cx__oauth_http_curl(void *ud, const cx__oauth_http_req_t *req, cx__oauth_http_resp_t *resp,
                        cx_error_t *err);

#endif /* CX_OUTBOUND_OAUTH_INTERNAL_H */
