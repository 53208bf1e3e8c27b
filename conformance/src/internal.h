/* Private: what the conformance checks share.
 *
 * A check is a function run in a child process (isolate.c). It reads the loaded suite (the
 * connector and its fixture cases), drives the connector through the real runtime pipeline
 * (env.c: an embedded dedupe store, a capture logger, a recording handler) or calls its parse
 * directly (to look at events and dedupe keys), and records its verdict in a cx_conf_result_t
 * that the child sends back to the parent over a pipe.
 */
#ifndef CX_CONFORMANCE_INTERNAL_H
#define CX_CONFORMANCE_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "cx/conformance.h"
#include "cx/connector.h"
#include "cx/runtime.h"

/* The longest verdict text a check sends back. */
#define CX_CONF_MSG_MAX 6144
/* The tenant unknown provider accounts map to (a valid identifier). */
#define CX_CONF_DEFAULT_TENANT "conformance"
/* The runtime clock when neither conformance.json nor the request says otherwise
 * (2025-11-29T08:00:00Z). */
#define CX_CONF_DEFAULT_NOW 1764403200

/* snprintf where cutting the text at cap is intended (a function, so GCC's
 * -Wformat-truncation, which cannot see through it, does not flag the intended cut). */
void cx_conf__fmt(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- Verdicts ----------------------------------------------------------------------------- */

typedef struct cx_conf_result_s {
    int status;    /* CX_CONF_PASS, CX_CONF_FAIL, CX_CONF_SKIP */
    int skip_kind; /* cx_conf_skip_kind_t when skipped */
    size_t len;
    char text[CX_CONF_MSG_MAX];
} cx_conf_result_t;

/* Appends a failure line (the first failure makes the check fail; later lines add detail). */
void cx_conf__fail(cx_conf_result_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Skips the check with a reason (ignored when the check has already failed). */
void cx_conf__skip(cx_conf_result_t *r, int kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Appends an informative line; the status does not change. */
void cx_conf__note(cx_conf_result_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Tells the parent what the check is doing now: shown when the child crashes or hangs. */
void cx_conf__progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- Requests ----------------------------------------------------------------------------- */

/* An owned copy of a request that checks can change (mutate, re-sign, drop headers). */
typedef struct cx_conf_req_s {
    char *method;
    char *path;           /* without the query */
    char *query;          /* "" when none */
    cx_header_t *headers; /* names and values malloc'd */
    size_t n_headers;
    char *body; /* malloc'd, NUL-terminated */
    size_t body_len;
} cx_conf_req_t;

int cx_conf__req_copy(const cx_conf_req_t *src, cx_conf_req_t *dst);
void cx_conf__req_free(cx_conf_req_t *r);
/* Replaces (or adds) a header, matched ignoring case. Returns 0 or CX_ENOMEM. */
int cx_conf__req_set_header(cx_conf_req_t *r, const char *name, const char *value);
/* Removes every header with this name (ignoring case); returns how many were removed. */
size_t cx_conf__req_del_header(cx_conf_req_t *r, const char *name);
int cx_conf__req_set_body(cx_conf_req_t *r, const void *body, size_t len);
cx_request_t cx_conf__req_view(const cx_conf_req_t *r);

/* ---- Signing ------------------------------------------------------------------------------ */

typedef enum {
    CX_CONF_SIGN_UNKNOWN = 0,       /* nothing recognised: mutated requests cannot be re-signed */
    CX_CONF_SIGN_NONE,              /* the connector authenticates nothing */
    CX_CONF_SIGN_HMAC_HEX,          /* header = prefix + hex(HMAC-SHA256(secret, body)) */
    CX_CONF_SIGN_HMAC_BASE64,       /* header = prefix + base64(HMAC-SHA256(secret, body)) */
    CX_CONF_SIGN_STANDARD_WEBHOOKS, /* webhook-id / webhook-timestamp / webhook-signature */
    CX_CONF_SIGN_STATIC             /* header carries the secret itself (token, API key) */
} cx_conf_sign_kind_t;

typedef struct cx_conf_signing_s {
    int kind;              /* cx_conf_sign_kind_t */
    char header[128];      /* the header carrying the signature or token */
    char prefix[64];       /* "sha256=" */
    char secret[128];      /* the secret's file name under secrets/<connector>/ */
    char secret_file[160]; /* the file whose value signed the fixture: secret, or
                            * secret.previous for a fixture signed during a rotation */
    int declared;          /* from conformance.json rather than detected */
} cx_conf_signing_t;

const char *cx_conf__sign_kind_name(int kind);

/* ---- Fixtures ----------------------------------------------------------------------------- */

typedef enum {
    CX_CONF_CASE_REQUEST = 1, /* request.json: an inbound webhook */
    CX_CONF_CASE_COMMAND = 2  /* command.json: an outbound command */
} cx_conf_case_kind_t;

typedef struct cx_conf_case_s {
    char name[256]; /* the path relative to the fixture directory ("." for the root) */
    char dir[4096];
    int kind;               /* cx_conf_case_kind_t */
    cx_conf_req_t req;      /* CX_CONF_CASE_REQUEST */
    char secrets_dir[4096]; /* "" when the case has none */
    json_t *expect;         /* expect.json, or NULL */
    json_t *accounts;       /* {"<account>": "<tenant>"} for this connector, or NULL */
    int64_t now;            /* the runtime clock for this case */
    cx_conf_signing_t signing;
    json_t *command;         /* CX_CONF_CASE_COMMAND: command.json */
    unsigned char pkey[256]; /* the pseudonym key (cx_conf__keyring) */
    size_t pkey_len;
    char capability[64]; /* CX_CONF_CASE_COMMAND: the outbound capability */
} cx_conf_case_t;

typedef struct cx_conf_suite_s {
    const cx_connector_t *c;
    const char *source;
    char fixtures[4096];
    cx_conf_case_t *cases;
    size_t n_cases;
    json_t *config;      /* conformance.json at the root, or NULL */
    int runtime_accepts; /* cx_connector_check passed */
    char refused[256];   /* why not */
} cx_conf_suite_t;

/* Loads every case under o->fixtures. Returns 0 or -1 with a reason. */
int cx_conf__suite_load(cx_conf_suite_t *s, const cx_connector_t *c, const char *source,
                        const char *fixtures, char *why, size_t cap);
void cx_conf__suite_free(cx_conf_suite_t *s);
/* Whether a case is an inbound webhook delivery (request.json with method POST); GET cases
 * are subscription handshakes, which the pipeline answers without parse. */
int cx_conf__is_webhook(const cx_conf_case_t *c);
/* Number of webhook cases. */
size_t cx_conf__n_requests(const cx_conf_suite_t *s);
/* The expected HTTP status of a request case (expect.json "status", default 200). */
int cx_conf__expected_status(const cx_conf_case_t *c);
/* Reads a secret file of a case (trailing newline stripped) into buf. Returns the length or
 * -1 when absent. */
long cx_conf__read_secret(const cx_conf_case_t *c, const char *connector, const char *name,
                          char *buf, size_t cap);

/* Signs req (whose body may have changed) with the case's scheme and the secret value; for
 * CX_CONF_SIGN_STATIC and NONE nothing changes. Returns 0, or -1 with a reason in why. */
int cx_conf__sign(const cx_conf_signing_t *sg, const char *secret, size_t secret_len,
                  cx_conf_req_t *req, char *why, size_t cap);
/* Re-signs req with the case's own secret. Returns 0 or -1 with a reason. */
int cx_conf__resign(const cx_conf_suite_t *s, const cx_conf_case_t *c, cx_conf_req_t *req,
                    char *why, size_t cap);
/* Whether mutated bodies of this case can be re-signed so they pass verification. */
int cx_conf__can_resign(const cx_conf_suite_t *s, const cx_conf_case_t *c);

/* Temporary secrets directories: a copy of the case's secrets with every value replaced
 * (mode 0, a wrong secret), moved to <name>.previous under a new current value (mode 1, a
 * rotation), or as it is (mode 2, to add settings beside it). Returns 0 and the directory in
 * out, or -1. cx_conf__rmtree() removes it. */
int cx_conf__secrets_variant(const cx_conf_suite_t *s, const cx_conf_case_t *c, int mode, char *out,
                             size_t cap);
void cx_conf__rmtree(const char *dir);

/* ---- The runtime harness ------------------------------------------------------------------ */

typedef struct cx_conf_seen_s {
    char *key;
    unsigned calls;     /* handler calls for this key */
    unsigned processed; /* calls that returned 0 */
} cx_conf_seen_t;

typedef struct cx_conf_env_s {
    const cx_conf_suite_t *s;
    cx_runtime_t *rt;
    cx_dedupe_store_t *store;
    cx_logger_t *log;
    cx_log_capture_t *cap;
    int64_t now;
    cx_conf_seen_t *seen;
    size_t n_seen, cap_seen;
    size_t calls;            /* handler calls in total */
    char fail_key[1024];     /* the handler fails transiently for this key ... */
    unsigned fail_remaining; /* ... this many more times */
} cx_conf_env_t;

/* A runtime hosting s->c with the case's secrets (or secrets_dir when not NULL), the case's
 * accounts plus every account its request names (mapped to CX_CONF_DEFAULT_TENANT), an
 * embedded dedupe store, a capture logger at debug level and a recording handler for every
 * capability. Returns 0, or -1 with the reason recorded as a failure in r. */
int cx_conf__env_open(cx_conf_env_t *e, const cx_conf_suite_t *s, const cx_conf_case_t *c,
                      const char *secrets_dir, cx_conf_result_t *r);
void cx_conf__env_close(cx_conf_env_t *e);

typedef struct cx_conf_resp_s {
    int status;
    json_t *body; /* the parsed response, or NULL */
} cx_conf_resp_t;

/* Runs req through the pipeline. Returns 0 (a response, whatever its status) or -1. */
int cx_conf__deliver(cx_conf_env_t *e, const cx_conf_req_t *req, cx_conf_resp_t *out);
void cx_conf__resp_free(cx_conf_resp_t *r);
/* summary.<field> of a response, or -1. */
long cx_conf__summary(const cx_conf_resp_t *r, const char *field);
/* The handler record of a key, or NULL. */
const cx_conf_seen_t *cx_conf__seen(const cx_conf_env_t *e, const char *key);

/* The keyed-pseudonym key of a case: the fixture's secret runtime/pseudonym_key when it has
 * one, else the runtime's fixed development key, as `cx parse` does, so expect.json dedupe
 * keys agree between the two. Direct parses and the pipeline use the same one. */
cx_keyring_t cx_conf__keyring(const cx_conf_case_t *c);

/* ---- Direct parse ------------------------------------------------------------------------- */

/* What the connector's parse made of one request, looked at as the pipeline would. */
typedef struct cx_conf_parsed_s {
    cx_arena_t arena;
    int rc;        /* parse's return */
    char err[192]; /* its error message */
    size_t n;
    cx_event_t *ev;      /* arena */
    char **key;          /* dedupe key per event, NULL when it could not be built */
    int *key_rc;         /* cx_dedupe_key's return */
    char *key_err;       /* n * 192: why not */
    int *valid;          /* cx_validate's return */
    char *violation;     /* n * 160: the first violation */
    char **json;         /* canonical JSON (tenant stamped), NULL for failed items */
    const char **tenant; /* the tenant the item maps to */
} cx_conf_parsed_t;

/* Calls the connector's parse directly (no verify) with the clock at now, then stamps tenants,
 * validates and builds dedupe keys. rt provides secrets (may be an env's). Returns 0 when the
 * analysis ran (whatever parse returned) or -1 (out of memory). */
int cx_conf__parse(const cx_conf_suite_t *s, cx_runtime_t *rt, const cx_conf_case_t *c,
                   const cx_conf_req_t *req, int64_t now, cx_conf_parsed_t *out);
void cx_conf__parsed_free(cx_conf_parsed_t *p);

/* ---- Scanning for leaks ------------------------------------------------------------------- */

/* A needle in the forms a logger might have turned it into. */
typedef struct cx_conf_forms_s {
    char *form[12];
    const char *name[12];
    size_t n;
} cx_conf_forms_t;

/* Plain, JSON-escaped (short and \u escapes), URL-encoded, base64 (standard and URL-safe, at
 * every alignment), hex. */
void cx_conf__forms(const char *v, size_t len, cx_conf_forms_t *out);
void cx_conf__forms_free(cx_conf_forms_t *f);
/* The first form found in hay, or NULL. */
const char *cx_conf__find_forms(const cx_conf_forms_t *f, const char *hay);

/* Phone numbers and e-mail addresses found in a body (plus the values of PII-classed phone
 * and e-mail fields of parsed events). Strings are malloc'd. */
typedef struct cx_conf_pii_s {
    char **v;
    const char **kind; /* "phone number", "e-mail address", "name" */
    size_t n, cap;
} cx_conf_pii_t;

void cx_conf__pii_from_body(cx_conf_pii_t *p, const char *body, size_t len);
void cx_conf__pii_from_events(cx_conf_pii_t *p, const cx_conf_parsed_t *parsed);
void cx_conf__pii_free(cx_conf_pii_t *p);

/* ---- Mutations ---------------------------------------------------------------------------- */

typedef struct cx_conf_mutation_s {
    char what[160]; /* "truncated to 37 of 157 bytes", "bit 3 of byte 52 flipped", ... */
    char *body;
    size_t len;
} cx_conf_mutation_t;

/* The deterministic mutations of a body: truncations, bit flips and (JSON bodies) type swaps.
 * Returns the count; *out is freed with cx_conf__mutations_free. */
size_t cx_conf__mutations(const char *body, size_t len, const char *seed, cx_conf_mutation_t **out);
void cx_conf__mutations_free(cx_conf_mutation_t *m, size_t n);

/* The body with element 0 of the first JSON array of two or more objects replaced by {}
 * (one unusable item in an otherwise good batch), and that array's path in where. Returns
 * a malloc'd body or NULL when the body has no such array. */
char *cx_conf__poison_item(const char *body, size_t len, size_t *out_len, char *where, size_t cap);

/* ---- Checks ------------------------------------------------------------------------------- */

typedef void (*cx_conf_check_fn)(const cx_conf_suite_t *s, cx_conf_result_t *r);

void cx_conf__check_manifest_valid(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_manifest_capabilities(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_manifest_secrets(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_manifest_inbound_auth(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_manifest_fixtures(const cx_conf_suite_t *s, cx_conf_result_t *r);

void cx_conf__check_signature_valid(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_signature_invalid(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_signature_rotation(const cx_conf_suite_t *s, cx_conf_result_t *r);

void cx_conf__check_parse_fixtures(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_parse_valid(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_parse_expect(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_keys_nonempty(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_keys_deterministic(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_keys_distinct(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_keys_no_pii(const cx_conf_suite_t *s, cx_conf_result_t *r);

void cx_conf__check_batch_redelivery(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_batch_bad_item(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_idempotency(const cx_conf_suite_t *s, cx_conf_result_t *r);

void cx_conf__check_log_fields(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_log_secrets(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_log_body(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_log_pii(const cx_conf_suite_t *s, cx_conf_result_t *r);

void cx_conf__check_outbound_success(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_outbound_retry(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_outbound_timeout(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_outbound_permanent(const cx_conf_suite_t *s, cx_conf_result_t *r);
void cx_conf__check_outbound_replay(const cx_conf_suite_t *s, cx_conf_result_t *r);

void cx_conf__check_robustness(const cx_conf_suite_t *s, cx_conf_result_t *r);

/* ---- Capability facts --------------------------------------------------------------------- */

/* Whether a capability id is outbound (the connector's send performs it). */
int cx_conf__capability_is_outbound(const char *id);
/* The declared state of a capability, or 0 when the manifest does not declare it. */
int cx_conf__capability_state(const cx_connector_t *c, const char *id);
/* Number of outbound capabilities declared beta or active. */
size_t cx_conf__n_outbound(const cx_connector_t *c);

/* Skips r (CX_CONF_SKIP_NA / _INPUT) unless the connector takes signed inbound requests and
 * the fixtures hold some. Returns 1 when the check should go on. */
int cx_conf__need_inbound(const cx_conf_suite_t *s, cx_conf_result_t *r, int need_auth);

/* Runs fn in a child process with a timeout. Returns 0 with the verdict in r. */
void cx_conf__isolate(const cx_conf_suite_t *s, cx_conf_check_fn fn, unsigned timeout_s,
                      int verbose, const char *id, cx_conf_result_t *r, double *ms);

/* Redirects stdout and stderr into a temporary file until cx_conf__stdio_end(), which returns
 * what was written (malloc'd, NUL-terminated) and restores them. */
int cx_conf__stdio_begin(int saved[2], char *path, size_t cap);
char *cx_conf__stdio_end(int saved[2], const char *path);

#endif /* CX_CONFORMANCE_INTERNAL_H */
