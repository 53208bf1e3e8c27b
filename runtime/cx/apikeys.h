/* Private: the API keys of `cx serve`'s internal routes (/commands, /oauth/<connector>/start).
 *
 * A key is `cxk_` + 43 base64url characters (32 random bytes), made by `cx apikey new`. The
 * server never holds it: the key file (default <secrets dir>/runtime/api_keys) has one line per
 * key with its id, the SHA-256 of the whole key string, and what it may do:
 *
 *     # id        hash                      grants (comma-separated lists, * = any)
 *     billing     sha256:<64 hex digits>    tenants=acme,globex capabilities=outbound_messages
 *     onboarding  sha256:<64 hex digits>    tenants=* connectors=whatsapp capabilities=oauth
 *
 * `tenants=` and `capabilities=` are required (`capabilities` takes capability ids and `oauth`,
 * which allows GET /oauth/<connector>/start); `connectors=` defaults to `*`. Blank lines and
 * lines starting with '#' are ignored; an unknown attribute, a duplicate id or hash, or a
 * malformed line refuses the whole file (a typo must not silently drop a grant).
 *
 * Why plain SHA-256 and not scrypt/bcrypt: those exist to slow down guessing low-entropy
 * passwords. A key here is 256 random bits, so no amount of hashing speed makes guessing
 * feasible, and a fast hash keeps every request's check at about a microsecond (a slow KDF
 * per request would also hand unauthenticated callers a cheap way to burn CPU). A leaked key
 * file still gives nobody a usable key. The presented key is hashed once and compared with
 * every stored hash with CRYPTO_memcmp, without stopping at a match.
 *
 * A table is immutable once loaded: reloading (SIGHUP) builds a new one and swaps it in.
 */
#ifndef CX_CLI_APIKEYS_H
#define CX_CLI_APIKEYS_H

#include <stddef.h>

/* Longest key id, NUL excluded. */
#define CX_APIKEY_ID_MAX 64
/* The prefix of every key (secret scanners can look for it). */
#define CX_APIKEY_PREFIX "cxk_"
/* The pseudo-capability that allows GET /oauth/<connector>/start. */
#define CX_APIKEY_GRANT_OAUTH "oauth"

typedef struct cx_apikeys_s cx_apikeys_t;
typedef struct cx_apikey_s cx_apikey_t;

typedef enum {
    CX_APIKEY_TENANTS = 0,
    CX_APIKEY_CONNECTORS = 1,
    CX_APIKEY_CAPABILITIES = 2
} cx_apikey_list_t;

/* Parses a key file's text (file names it in errors). Returns 0 and *out, or -1 with one line
 * in why ("<file>:<line>: ..."; never a key or a hash). */
int cx_apikeys_parse(const char *text, size_t len, const char *file, cx_apikeys_t **out, char *why,
                     size_t cap);
/* Reads and parses path. A missing file is an empty table (*missing = 1). Returns 0 or -1 with
 * why. */
int cx_apikeys_load(const char *path, cx_apikeys_t **out, int *missing, char *why, size_t cap);
/* Frees t (may be NULL). */
void cx_apikeys_free(cx_apikeys_t *t);
/* Keys in t. */
size_t cx_apikeys_count(const cx_apikeys_t *t);

/* The key whose hash is SHA-256(presented), or NULL. Constant time in the table's size
 * (every entry is compared). Thread-safe. */
const cx_apikey_t *cx_apikeys_find(const cx_apikeys_t *t, const char *presented, size_t len);
/* The key's id (static for the table's life). */
const char *cx_apikey_id(const cx_apikey_t *k);
/* Whether the key's list allows value ("*" in the list allows anything). */
int cx_apikey_allows(const cx_apikey_t *k, cx_apikey_list_t list, const char *value);

/* The bearer token of an Authorization header value ("Bearer <token>", the scheme
 * case-insensitive), or NULL. *len receives its length. */
const char *cx_apikey_bearer(const char *authorization, size_t *len);

/* `cx apikey new|hash` (cli.h). */
int cx_cmd_apikey(int argc, char **argv);

#endif
