/* Private: captured requests (ARCHITECTURE.md section 7), read by `cx parse` and `cx replay`.
 *
 * A case is a directory holding request.json
 *
 *     {"method": "POST", "path": "/webhook/whatsapp?x=y", "headers": {"Name": "value", ...},
 *      "body_file": "body.json"}
 *
 * and the body file with the exact bytes that were signed (body_file is relative to the
 * directory; absent = empty body). Optionally accounts.json beside it,
 * {"<connector>": {"<account_id>": "<tenant_id>"}}, and expect.json (not read here).
 */
#ifndef CX_CLI_CAPTURE_H
#define CX_CLI_CAPTURE_H

#include <stddef.h>

#include "cx/connector.h"

/* The largest body file read (bytes). */
#define CX_CAPTURE_MAX_BODY (64u << 20)
#define CX_CAPTURE_MAX_HEADERS 128

typedef struct cx_capture_s {
    char dir[4096];      /* the case directory */
    char *method;        /* "POST" */
    char *path;          /* "/webhook/test", without the query */
    char *query;         /* "x=y" or "" */
    char connector[128]; /* from /webhook/<connector>, "" otherwise */
    cx_header_t headers[CX_CAPTURE_MAX_HEADERS];
    size_t n_headers; /* names and values are malloc'd */
    char *body;       /* malloc'd, NUL-terminated */
    size_t body_len;
} cx_capture_t;

/* Loads a case from a directory or from its request.json. Returns 0, or -1 with a one-line
 * reason in why (which never quotes the body). cx_capture_free() releases it either way. */
int cx_capture_load(const char *path, cx_capture_t *c, char *why, size_t cap);
void cx_capture_free(cx_capture_t *c);

/* A cx_request_t view of the capture (borrowed). */
cx_request_t cx_capture_request(const cx_capture_t *c);

/* Reads accounts.json beside request.json when present and calls add(ud, connector, account,
 * tenant) for each entry. Returns 0 (also when absent), or -1 with a reason in why. */
int cx_capture_accounts(const cx_capture_t *c,
                        int (*add)(void *ud, const char *connector, const char *account,
                                   const char *tenant),
                        void *ud, char *why, size_t cap);

#endif
