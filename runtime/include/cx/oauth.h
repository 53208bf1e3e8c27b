/* OAuth2: authorisation with PKCE, code exchange, refresh ahead of expiry, encrypted storage.
 *
 * One cx_oauth_t serves one provider (a connector's OAuth app) for every (tenant, account):
 *
 *   cx_oauth_authorize_url   the URL to send the user to: response_type=code, PKCE S256
 *                            (a random 43-character verifier; its SHA-256 as the challenge)
 *                            and a random state, stored (encrypted, with the verifier) for
 *                            state_ttl_s; a state is usable once;
 *   cx_oauth_exchange_code   the callback: takes the state (once), exchanges the code with the
 *                            verifier, stores the token; this is also how an unhealthy
 *                            integration is re-authorised;
 *   cx_oauth_access_token    what every API call asks for: the stored token, refreshed first
 *                            when it expires within refresh_ahead_s.
 *
 * Per-provider strategies (cx_oauth_strategy_t) cover the shapes providers actually use:
 *   STANDARD   RFC 6749: POST token_url grant_type=refresh_token; a refresh_token in the answer
 *              replaces the stored one (rotation), none keeps it;
 *   GOOGLE     STANDARD, plus access_type=offline&prompt=consent on the authorisation URL so a
 *              refresh token is issued; Google's refresh answers omit refresh_token: kept;
 *   META       Facebook Login: the code gives a short-lived user token, exchanged at once for a
 *              long-lived one (GET exchange_url grant_type=fb_exchange_token); "refreshing" is
 *              exchanging the current, still valid, long-lived token again;
 *   INSTAGRAM  Instagram Login: POST token_url gives a short-lived token, exchanged for a
 *              long-lived one (GET exchange_url grant_type=ig_exchange_token); refresh is GET
 *              refresh_url grant_type=ig_refresh_token (allowed once the token is 24 h old).
 *
 * One refresh at a time per (tenant, account): an in-process mutex per key, then a lock in the
 * token store (Redis: SET NX PX) that hands out a fencing token (a per-key counter, INCR).
 * Every token write is a compare-and-set on that fence: it succeeds only if no newer lock was
 * taken since, so a holder whose lock expired mid-refresh (a stall, a slow provider) cannot
 * overwrite the token a newer holder stored; it keeps the newer token instead. Everyone else
 * waits (up to wait_ms) and re-reads the store rather than refreshing again.
 *
 * Failures, without loops: a refresh answered 401, or refused as revoked (OAuth error
 * invalid_grant; Meta/Instagram error code 190), marks the stored token unhealthy: every later
 * call returns CX_EREAUTH_REQUIRED at once, without contacting the provider, until the
 * integration is re-authorised (cx_oauth_exchange_code or cx_oauth_token_put). Other failures
 * (5xx, 429, timeouts: CX_EPROVIDER; other 4xx: CX_EPROVIDER_REJECTED) back off per key
 * (5 s doubling to 5 min); meanwhile a still valid token is returned.
 *
 * Storage: tokens are sealed with AES-256-GCM (random 12-byte nonce, AAD
 * "<provider>/<tenant>/<account>") under a 32-byte key from the secrets directory
 * (runtime/token_key: 32 raw bytes or 64 hex digits), so a store dump holds no usable token.
 * Stored values carry a format version (Redis "v1|<fence>|<base64>", and a version byte inside
 * the sealed value).
 *
 * Secrets never reach logs or error text: not the tokens, the client secret, the code, the
 * verifier, nor any URL or form carrying them (log lines name the provider, tenant, account,
 * outcome, error code and upstream status only). docs/oauth.md has the details.
 *
 *     cx_oauth_t *o; cx_oauth_new(&cfg, &o, &err);
 *     char tok[CX_OAUTH_TOKEN_MAX];
 *     rc = cx_oauth_access_token(o, "acme", "cal-1", tok, sizeof tok, NULL, &err);
 */
#ifndef CX_OAUTH_H
#define CX_OAUTH_H

#include <stddef.h>
#include <stdint.h>

#include "cx/clock.h"
#include "cx/dedupe_store.h" /* cx_redis_options_t */
#include "cx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest access or refresh token, NUL included. */
#define CX_OAUTH_TOKEN_MAX 4096
/* Size of a state: 43 base64url characters (32 random bytes) and a NUL. */
#define CX_OAUTH_STATE_SIZE 44
/* Largest tenant or account id, NUL included. */
#define CX_OAUTH_ID_SIZE 129
/* Largest value a token store holds (a sealed token). */
#define CX_TOKEN_VALUE_MAX 16384

typedef enum {
    CX_OAUTH_STANDARD = 1,
    CX_OAUTH_GOOGLE = 2,
    CX_OAUTH_META = 3,
    CX_OAUTH_INSTAGRAM = 4
} cx_oauth_strategy_t;

/* A provider: strings are copied by cx_oauth_new. */
typedef struct cx_oauth_provider_s {
    const char *name; /* required: [a-z0-9_-]{1,32}, e.g. "google"; part of the
                       * storage key and the AAD, and the connector in log lines */
    cx_oauth_strategy_t strategy;
    const char *authorize_url;          /* the user's browser goes here */
    const char *token_url;              /* code exchange (and STANDARD/GOOGLE refresh) */
    const char *exchange_url;           /* META: oauth/access_token (fb_exchange_token);
                                         * INSTAGRAM: graph.instagram.com/access_token */
    const char *refresh_url;            /* INSTAGRAM: graph.instagram.com/refresh_access_token */
    const char *client_id;              /* required */
    const char *client_secret;          /* required; never logged */
    const char *redirect_uri;           /* required: our callback URL */
    const char *scope;                  /* as the provider wants it (space- or comma-separated) */
    const char *extra_authorize_params; /* appended as is, e.g. "include_granted_scopes=true" */
    uint32_t refresh_ahead_s;           /* refresh this long before expiry; 0 = the strategy's
                                         * default: 300 (STANDARD, GOOGLE), 7 days (META, INSTAGRAM) */
} cx_oauth_provider_t;

/* Fills p's endpoint URLs with the provider's real ones for a strategy (Google's, Graph API
 * v19.0, Instagram's) and leaves the other fields as they are. STANDARD has none: CX_EINVAL.
 * Returns 0 or CX_EINVAL. Thread-safe.
 *
 *     cx_oauth_provider_t p = {.name = "google", .client_id = id, ...};
 *     cx_oauth_provider_defaults(CX_OAUTH_GOOGLE, &p);
 */
CX_API int cx_oauth_provider_defaults(cx_oauth_strategy_t strategy, cx_oauth_provider_t *p);

/* A stored token, decrypted. access_token and refresh_token are secrets: wipe the struct with
 * cx_oauth_token_wipe when done, never log it. */
typedef struct cx_oauth_token_s {
    char access_token[CX_OAUTH_TOKEN_MAX];
    char refresh_token[CX_OAUTH_TOKEN_MAX]; /* "" when the provider issues none (META, IG) */
    char token_type[32];                    /* "Bearer" */
    char scope[512];
    int64_t expires_at;  /* Unix seconds; 0 = no known expiry */
    int64_t issued_at;   /* Unix seconds */
    int unhealthy;       /* 1: refresh refused; re-authorise */
    char error_code[64]; /* why unhealthy ("invalid_grant", "http_401") */
    uint64_t version;    /* read-only: the fence of the write that stored
                          * it; grows with every write */
} cx_oauth_token_t;

/* Overwrites t with zeros in a way the compiler keeps (OPENSSL_cleanse). t may be NULL. */
CX_API void cx_oauth_token_wipe(cx_oauth_token_t *t);

/* ---- Token stores ----------------------------------------------------------------------- */

typedef struct cx_token_store_s cx_token_store_t;

/* A token store keeps sealed bytes under an id ("<provider>/<tenant>/<account>"), a fencing
 * counter and a lock per id, and one-shot OAuth states. It never sees plaintext. Thread-safe;
 * the Redis one is shared by processes. */
typedef struct cx_token_store_ops_s {
    /* Reads id's value into buf[0..cap) (*len bytes) and the fence of its writer. Returns 0,
     * CX_ENOTFOUND, CX_ENOSPC, CX_ECONFIG (a newer format), CX_EUNAVAILABLE. */
    int (*get)(cx_token_store_t *s, const char *id, unsigned char *buf, size_t cap, size_t *len,
               uint64_t *fence, cx_error_t *err);
    /* Writes id's value iff fence is still id's newest fence (no lock or write since it was
     * handed out) and newer than the stored value's; fence 0 takes a new fence first (a fresh
     * authorisation, which also fences off any refresh in flight). *written (may be NULL) is
     * the fence written. Returns 0, CX_ECONFLICT, CX_EINVAL, CX_EUNAVAILABLE, CX_ENOMEM. */
    int (*put)(cx_token_store_t *s, const char *id, const unsigned char *val, size_t len,
               uint64_t fence, uint64_t *written, cx_error_t *err);
    /* Takes id's refresh lock for ttl_ms and a new fence (*fence). Returns 0,
     * CX_EIN_PROGRESS (held by someone else), CX_EUNAVAILABLE. */
    int (*lock)(cx_token_store_t *s, const char *id, uint32_t ttl_ms, uint64_t *fence,
                cx_error_t *err);
    /* Releases the lock if fence still holds it. Returns 0 or CX_EUNAVAILABLE. */
    int (*unlock)(cx_token_store_t *s, const char *id, uint64_t fence, cx_error_t *err);
    /* Deletes id's value and takes a new fence (nothing in flight can bring it back).
     * Returns 0 (also when absent) or CX_EUNAVAILABLE. */
    int (*del)(cx_token_store_t *s, const char *id, cx_error_t *err);
    /* Stores a state's value for ttl_s seconds. Returns 0, CX_EUNAVAILABLE, CX_ENOMEM. */
    int (*state_put)(cx_token_store_t *s, const char *state, const unsigned char *val, size_t len,
                     uint32_t ttl_s, cx_error_t *err);
    /* Reads and deletes a state atomically (usable once). Returns 0, CX_ENOTFOUND (unknown,
     * used or expired), CX_ENOSPC, CX_EUNAVAILABLE. */
    int (*state_take)(cx_token_store_t *s, const char *state, unsigned char *buf, size_t cap,
                      size_t *len, cx_error_t *err);
    /* 0 when reachable, else CX_EUNAVAILABLE. */
    int (*ping)(cx_token_store_t *s, cx_error_t *err);
    void (*destroy)(cx_token_store_t *s);
} cx_token_store_ops_t;

struct cx_token_store_s {
    const cx_token_store_ops_t *ops; /* read-only */
};

/* The embedded store: in-process (development, tests, one process). Returns 0 or CX_ENOMEM.
 *
 *     cx_token_store_t *ts;
 *     if (cx_token_store_embedded(&ts, &err) != 0) ...;
 */
CX_API int cx_token_store_embedded(cx_token_store_t **out, cx_error_t *err);

/* The Redis store: cx:<env>:oauth:{<id>}:token ("v1|<fence>|<base64 sealed>"), :fence (the
 * counter), :lock (the fence of the holder, PX ttl), cx:<env>:oauth:state:<state> ("v1|<base64
 * sealed>", EX ttl). Returns 0, CX_EINVAL, CX_ENOMEM, CX_ENOT_IMPLEMENTED (built without
 * Redis). Thread-safe; not fork-safe (create it in the process that uses it).
 *
 *     cx_redis_options_t ro = {.host = "127.0.0.1", .port = 6379};
 *     rc = cx_token_store_redis("production", &ro, &ts, &err);
 */
CX_API int cx_token_store_redis(const char *environment, const cx_redis_options_t *opts,
                                cx_token_store_t **out, cx_error_t *err);

/* Frees s (may be NULL). */
CX_API void cx_token_store_destroy(cx_token_store_t *s);

/* ---- The OAuth manager ------------------------------------------------------------------ */

struct cx_logger_s;
struct cx_audit_s;

typedef struct cx_oauth_config_s {
    const cx_oauth_provider_t *provider; /* required; copied */
    cx_token_store_t *store;             /* required; borrowed, must outlive the manager */
    const unsigned char *token_key;      /* required: 32 bytes (cx_oauth_token_key_load); copied */
    const cx_clock_t *clock;             /* borrowed; NULL = wall clock */
    struct cx_logger_s *logger;          /* borrowed; NULL = no log lines */
    struct cx_audit_s *audit;            /* borrowed; NULL = no audit records. When set,
                                          * "integration.authorized" and
                                          * "integration.unhealthy" are recorded */
    uint32_t lock_ttl_ms;                /* the refresh lock; 0 = 2 x http_timeout_ms + 5 s */
    uint32_t wait_ms;                    /* how long a caller waits for another holder's
                                          * refresh; 0 = lock_ttl_ms */
    uint32_t http_timeout_ms;            /* each token endpoint request; 0 = 10000 */
    uint32_t state_ttl_s;                /* how long an authorisation may take; 0 = 600 */
} cx_oauth_config_t;

typedef struct cx_oauth_s cx_oauth_t;

/* Reads the token key from <secrets_dir>/runtime/token_key into key (32 raw bytes, or 64 hex
 * digits). Returns 0, CX_ENOTFOUND, CX_ECONFIG (not a valid key), CX_EINVAL. Wipe key after
 * cx_oauth_new copied it.
 *
 *     unsigned char key[32];
 *     if (cx_oauth_token_key_load("/run/secrets/cx", key, &err) != 0) ...;
 */
CX_API int cx_oauth_token_key_load(const char *secrets_dir, unsigned char key[32], cx_error_t *err);

/* Creates a manager. Returns 0, CX_EINVAL (a missing or malformed field: err->path names it),
 * CX_ENOMEM, CX_ECRYPTO (libcurl could not be initialised). Free with cx_oauth_free. The
 * manager is thread-safe.
 *
 *     cx_oauth_config_t cfg = {.provider = &p, .store = ts, .token_key = key, .logger = lg};
 *     rc = cx_oauth_new(&cfg, &o, &err);
 */
CX_API int cx_oauth_new(const cx_oauth_config_t *cfg, cx_oauth_t **out, cx_error_t *err);
/* Frees o (may be NULL) and wipes its secrets. No call may be running on it. */
CX_API void cx_oauth_free(cx_oauth_t *o);

/* Writes the authorisation URL (and a NUL) into url[0..cap) for (tenant, account), and the
 * state into state_out (may be NULL; bind it to the user's session, e.g. a cookie). tenant and
 * account: 1 to 128 of [A-Za-z0-9._:@+-]. Returns 0, CX_EINVAL, CX_ENOSPC (url too small:
 * 2048 bytes is plenty), CX_ECRYPTO (no random bytes), CX_EUNAVAILABLE (the state could not
 * be stored). Thread-safe.
 *
 *     char url[2048];
 *     rc = cx_oauth_authorize_url(o, "acme", "cal-1", url, sizeof url, NULL, &err);
 */
CX_API int cx_oauth_authorize_url(cx_oauth_t *o, const char *tenant, const char *account, char *url,
                                  size_t cap, char state_out[CX_OAUTH_STATE_SIZE], cx_error_t *err);

/* Who an authorisation was for, as stored with its state. */
typedef struct cx_oauth_grant_s {
    char tenant_id[CX_OAUTH_ID_SIZE];
    char account_id[CX_OAUTH_ID_SIZE];
    uint64_t version; /* the stored token's version */
} cx_oauth_grant_t;

/* The callback: takes the state (once; an unknown, used or expired state is CX_EOAUTH_STATE),
 * exchanges code with the PKCE verifier (and, for META and INSTAGRAM, the short-lived token
 * for a long-lived one), and stores the token as healthy with a new fence. grant (may be
 * NULL) says for whom. Returns 0, CX_EOAUTH_STATE, CX_EINVAL, CX_EPROVIDER (transient:
 * unreachable, 5xx, 429), CX_EPROVIDER_REJECTED (the code was refused: start again),
 * CX_EUNAVAILABLE (store), CX_ECRYPTO. Thread-safe.
 *
 *     cx_oauth_grant_t g;
 *     rc = cx_oauth_exchange_code(o, query_state, query_code, &g, &err);
 */
CX_API int cx_oauth_exchange_code(cx_oauth_t *o, const char *state, const char *code,
                                  cx_oauth_grant_t *grant, cx_error_t *err);

/* The access token of (tenant, account) into out[0..cap), refreshed first when it expires
 * within refresh_ahead_s (one refresh at a time: see the header comment). *version (may be
 * NULL) receives its version, for cx_oauth_invalidate. Returns 0; CX_ENOTFOUND (never
 * authorised); CX_EREAUTH_REQUIRED (unhealthy: re-authorise; the provider is not contacted);
 * CX_EPROVIDER / CX_EPROVIDER_REJECTED (refresh failed and the stored token has expired);
 * CX_ETIMEOUT (another holder's refresh did not finish within wait_ms and the token has
 * expired); CX_EUNAVAILABLE; CX_ENOSPC (cap too small); CX_ECRYPTO (stored under another key
 * or altered); CX_EINVAL. Thread-safe.
 *
 *     char tok[CX_OAUTH_TOKEN_MAX]; uint64_t v;
 *     rc = cx_oauth_access_token(o, "acme", "cal-1", tok, sizeof tok, &v, &err);
 */
CX_API int cx_oauth_access_token(cx_oauth_t *o, const char *tenant, const char *account, char *out,
                                 size_t cap, uint64_t *version, cx_error_t *err);

/* An API call answered 401 with the token of this version: refresh it now (once: if another
 * caller already replaced that version, nothing happens), then return as
 * cx_oauth_access_token would. A refresh that is itself refused marks the integration
 * unhealthy, so a revoked grant costs one refresh attempt, not a loop. Returns as
 * cx_oauth_access_token. Thread-safe.
 *
 *     if (status == 401)
 *         rc = cx_oauth_invalidate(o, "acme", "cal-1", v, tok, sizeof tok, &v, &err);
 */
CX_API int cx_oauth_invalidate(cx_oauth_t *o, const char *tenant, const char *account,
                               uint64_t version, char *out, size_t cap, uint64_t *new_version,
                               cx_error_t *err);

/* Stores a token for (tenant, account) as healthy with a new fence (an import, or an
 * authorisation done elsewhere); t->version is ignored. Returns 0, CX_EINVAL,
 * CX_EUNAVAILABLE, CX_ECRYPTO. Thread-safe.
 *
 *     cx_oauth_token_t t = {0}; strcpy(t.access_token, at); t.expires_at = now + 3600;
 *     rc = cx_oauth_token_put(o, "acme", "cal-1", &t, &err); cx_oauth_token_wipe(&t);
 */
CX_API int cx_oauth_token_put(cx_oauth_t *o, const char *tenant, const char *account,
                              const cx_oauth_token_t *t, cx_error_t *err);

/* Reads and decrypts the stored token of (tenant, account), as it is (no refresh): for
 * health pages (unhealthy, error_code, expires_at) and tests. Returns 0, CX_ENOTFOUND,
 * CX_EUNAVAILABLE, CX_ECRYPTO, CX_EINVAL. Thread-safe.
 *
 *     cx_oauth_token_t *t = malloc(sizeof *t);
 *     if (cx_oauth_token_get(o, "acme", "cal-1", t, &err) == 0 && t->unhealthy) ...;
 */
CX_API int cx_oauth_token_get(cx_oauth_t *o, const char *tenant, const char *account,
                              cx_oauth_token_t *out, cx_error_t *err);

/* Disconnects (tenant, account): deletes its token, fencing off any refresh in flight.
 * Returns 0, CX_EINVAL, CX_EUNAVAILABLE. Thread-safe.
 *
 *     cx_oauth_token_delete(o, "acme", "cal-1", &err);
 */
CX_API int cx_oauth_token_delete(cx_oauth_t *o, const char *tenant, const char *account,
                                 cx_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* CX_OAUTH_H */
