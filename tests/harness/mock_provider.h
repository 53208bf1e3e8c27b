/* Test harness: a scriptable mock provider, a real HTTP server (libmicrohttpd) on a free
 * loopback port.
 *
 * Each test programs the answers as a queue of steps; each request, once its body has been
 * read, takes the next step (a step with repeat N answers N requests). With the queue empty
 * the mock answers 200 with a WhatsApp-like body carrying a fresh message id
 * {"messages":[{"id":"wamid.mock-<n>"}]} (n = the request's number, from 1). Steps:
 *
 *   reply    status, body, optional Retry-After (delta-seconds or an HTTP-date string);
 *   delay    wait delay_ms first (longer than the client's timeout: the client gives up);
 *   close    read the body, then close the (kept-alive) connection without answering.
 *
 * Every request is counted and recorded (method, path, query, headers, body, which TCP
 * connection it came on), so tests assert on what the provider received; connections are
 * counted too, so reuse is visible. Thread-safe: one thread per connection serves requests
 * while the test thread programs steps and reads records.
 *
 *     cx_mock_provider_t *m; cx_mock_provider_start(&m);
 *     cx_mock_push_status(m, 429, NULL, "1");      // then the default 200
 *     ... POST to cx_mock_provider_url(m) ...; assert cx_mock_provider_count(m) == 2
 *     cx_mock_provider_stop(m);
 *
 * The helper cx_mock_send() is a cx_outbound_send_fn for cx_outbound tests: it posts a
 * SendMessageCommand to the mock the way a WhatsApp adapter would (Bearer token, the intent
 * key as biz_opaque_callback_data) through a cx_http_client_t and maps the answer.
 */
#ifndef CX_TEST_MOCK_PROVIDER_H
#define CX_TEST_MOCK_PROVIDER_H

#include <stddef.h>
#include <stdint.h>

#include "cx/http.h"
#include "cx/outbound.h"

typedef struct cx_mock_provider_s cx_mock_provider_t;

typedef enum {
    CX_MOCK_REPLY = 0, /* answer status + body (after delay_ms) */
    CX_MOCK_CLOSE = 1  /* after reading the body (and delay_ms), close without answering */
} cx_mock_action_t;

/* One programmed answer. Strings are copied by cx_mock_provider_push. */
typedef struct cx_mock_step_s {
    cx_mock_action_t action;
    int status;              /* REPLY: 0 = 200 */
    const char *body;        /* NULL = a default body for the status */
    const char *retry_after; /* Retry-After header value, NULL = none */
    uint32_t delay_ms;       /* wait before answering or closing */
    int repeat;              /* requests this step answers; 0 = 1 */
} cx_mock_step_t;

typedef struct cx_mock_header_s {
    char *name;
    char *value;
} cx_mock_header_t;

/* One received request (read-only; valid until cx_mock_provider_reset or _stop). */
typedef struct cx_mock_request_s {
    int index;          /* 1-based arrival order (by completed body) */
    unsigned long conn; /* the TCP connection's serial number, from 1 */
    char method[16];
    char *path;  /* without the query */
    char *query; /* "" when none */
    cx_mock_header_t *headers;
    size_t n_headers;
    char *body; /* NUL-terminated */
    size_t body_len;
    int status; /* what the mock answered; 0 = closed without answering */
} cx_mock_request_t;

/* Starts the server on 127.0.0.1 and a free port. Returns 0 or -1 (reason on stderr). */
int cx_mock_provider_start(cx_mock_provider_t **out);
/* Stops the server (waiting for delayed answers to be cut short) and frees everything. */
void cx_mock_provider_stop(cx_mock_provider_t *m);

int cx_mock_provider_port(const cx_mock_provider_t *m);
/* "http://127.0.0.1:<port>" */
const char *cx_mock_provider_url(const cx_mock_provider_t *m);

/* Appends a step to the queue. Returns 0 or -1 (no memory). */
int cx_mock_provider_push(cx_mock_provider_t *m, const cx_mock_step_t *step);
/* Shorthands: a status (body NULL = default; retry_after may be NULL), a delayed 200, a close
 * (after delay_ms, usually 0). */
int cx_mock_push_status(cx_mock_provider_t *m, int status, const char *body,
                        const char *retry_after);
int cx_mock_push_delay(cx_mock_provider_t *m, uint32_t delay_ms);
int cx_mock_push_close(cx_mock_provider_t *m, uint32_t delay_ms);

/* Requests received (bodies read) so far, and TCP connections accepted so far. */
size_t cx_mock_provider_count(cx_mock_provider_t *m);
size_t cx_mock_provider_connections(cx_mock_provider_t *m);
/* Waits until at least n requests were received; 0, or -1 after timeout_ms. */
int cx_mock_provider_wait_count(cx_mock_provider_t *m, size_t n, uint32_t timeout_ms);
/* Request i (0-based) or NULL. */
const cx_mock_request_t *cx_mock_provider_request(cx_mock_provider_t *m, size_t i);
/* A request's header value (case-insensitive name), or NULL. */
const char *cx_mock_request_header(const cx_mock_request_t *r, const char *name);
/* Whether any recorded request (method, path, query, header or body) contains needle. */
int cx_mock_provider_saw(cx_mock_provider_t *m, const char *needle);
/* Forgets the queue and the records (counters restart from 0). */
void cx_mock_provider_reset(cx_mock_provider_t *m);
/* 0 = keep only counters (benchmarks), 1 = record every request (default). */
void cx_mock_provider_set_recording(cx_mock_provider_t *m, int on);

/* ---- A WhatsApp-like adapter for cx_outbound tests ---------------------------------------- */

typedef struct cx_mock_sender_s {
    cx_http_client_t *http; /* borrowed */
    const char *base_url;   /* the mock's URL */
    const char *token;      /* Bearer token (a secret: tests check it is never logged) */
} cx_mock_sender_t;

/* cx_outbound_send_fn (ud = cx_mock_sender_t): POST <base>/v19.0/<account>/messages with
 * {"to", "text", "biz_opaque_callback_data": intent key}; a 2xx gives messages[0].id (and a
 * SendMessageResult in the arena when there is one); a rejection gives error.code as the
 * provider code; cx_http_send's code is returned (CX_EIN_DOUBT for a 2xx without an id). */
int cx_mock_send(void *ud, const cx_outbound_command_t *cmd, const char *intent_key,
                 cx_arena_t *arena, cx_outbound_reply_t *reply, cx_error_t *err);

#endif /* CX_TEST_MOCK_PROVIDER_H */
