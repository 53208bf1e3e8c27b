/* Private: re-signing captured requests for `cx replay --secrets DIR`.
 *
 * A captured request carries the signature the provider computed with the provider's secret;
 * a gateway under test has its own secrets. Each row of the table names a signature header
 * and the secret it is computed with (<secrets dir>/<connector>/<secret>); when a captured
 * request has that header, its value is recomputed over the exact body bytes. A provider
 * scheme is added as one row (and, if it is a new kind of scheme, one case in resign.c).
 */
#ifndef CX_CLI_RESIGN_H
#define CX_CLI_RESIGN_H

#include <stddef.h>

typedef enum {
    CX_RESIGN_HEX = 1 /* prefix + hex(HMAC-SHA256(secret, body)) */
} cx_resign_scheme_t;

typedef struct cx_resign_rule_s {
    const char *header; /* matched ignoring case */
    const char *secret; /* file name under <secrets dir>/<connector>/ */
    const char *prefix; /* "sha256=" */
    cx_resign_scheme_t scheme;
} cx_resign_rule_t;

/* The rule for a header name, or NULL. */
const cx_resign_rule_t *cx_resign_rule(const char *header);

/* Computes the header value for rule over body with the secret read from
 * <secrets_dir>/<connector>/<rule->secret> (one trailing newline stripped, as the runtime
 * does). Returns 0, or -1 with a one-line reason in why (missing secret file). */
int cx_resign(const cx_resign_rule_t *rule, const char *secrets_dir, const char *connector,
              const char *body, size_t len, char *out, size_t cap, char *why, size_t why_cap);

#endif
