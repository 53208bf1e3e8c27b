/* OAuth2 and token management (cx/oauth.h) against a real loopback token endpoint
 * (tests/harness/mock_oauth.h) and a real redis-server (tests/harness/redis_server.h).
 *
 * The headlines: token expiry with 16 threads in each of 2 processes asking at once -> one
 * refresh, counted at the mock endpoint; a lock that expires mid-refresh does not let the late
 * holder overwrite the newer token (fencing); a refresh refused with 401 (or invalid_grant, or
 * Meta's code 190) -> unhealthy, and no further attempt until re-authorised; no log line of any
 * test contains a token, a secret, a code or an Authorization header (checked after every
 * test). Then: PKCE and state, the per-provider strategies (standard, Google, Meta
 * fb_exchange_token, Instagram ig_refresh_token), backoff after transient failures, encryption
 * at rest (AES-256-GCM, AAD = the key's place), the token key file. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cx/audit.h"
#include "cx/log.h"
#include "cx/oauth.h"
#include "mock_oauth.h"
#include "outbound/oauth_internal.h"
#include "redis_server.h"

#ifdef CX_WITH_REDIS
#include <hiredis/hiredis.h>
#endif

#define CLIENT_SECRET "client-secret-7d1f0c9e5b"
#define TENANT "acme"
#define ACCOUNT "cal-1"

#ifdef CX_WITH_REDIS
static cx_test_redis_t g_redis;
#endif
static int g_seq;
static const unsigned char KEY[32] = "token-key-token-key-token-key-32";

typedef struct fx_s {
    int redis;
    char env[32];
    cx_mock_oauth_t *mock;
    cx_token_store_t *st;
    cx_log_capture_t *cap;
    cx_logger_t *lg;
    int64_t now; /* the injected clock */
    cx_clock_t clock;
    char token_url[128], exchange_url[128], refresh_url[128], authorize_url[128];
    cx_oauth_t *o;
    cx_error_t err;
    char secrets[8][128]; /* extra strings no log line may contain (codes, states) */
    int nsecrets;
} fx_t;

static int64_t fixed_clock(void *ud)
{
    return *(const int64_t *)ud;
}

/* ---- Fixtures ------------------------------------------------------------------------------- */

static int open_store(fx_t *f, cx_token_store_t **st)
{
    cx_error_t err = {0};
#ifdef CX_WITH_REDIS
    if (f->redis) {
        cx_redis_options_t o = {.host = "127.0.0.1",
                                .port = g_redis.port,
                                .connect_timeout_ms = 1000,
                                .command_timeout_ms = 2000,
                                .pool_size = 24};
        return cx_token_store_redis(f->env, &o, st, &err);
    }
#else
    (void)f;
#endif
    return cx_token_store_embedded(st, &err);
}

static int new_oauth(fx_t *f, cx_token_store_t *st, const char *name, cx_oauth_strategy_t strategy,
                     uint32_t lock_ttl_ms, cx_oauth_t **o)
{
    cx_oauth_provider_t p = {.name = name,
                             .strategy = strategy,
                             .authorize_url = f->authorize_url,
                             .token_url = f->token_url,
                             .exchange_url = f->exchange_url,
                             .refresh_url = f->refresh_url,
                             .client_id = "client-1",
                             .client_secret = CLIENT_SECRET,
                             .redirect_uri = "https://app.example.com/oauth/google/callback",
                             .scope = "openid https://www.googleapis.com/auth/calendar"};
    cx_oauth_config_t cfg = {.provider = &p,
                             .store = st,
                             .token_key = KEY,
                             .clock = &f->clock,
                             .logger = f->lg,
                             .lock_ttl_ms = lock_ttl_ms,
                             .http_timeout_ms = 5000};
    cx_error_t err = {0};
    int rc = cx_oauth_new(&cfg, o, &err);
    if (rc != 0)
        fprintf(stderr, "cx_oauth_new: %s (%s)\n", err.message, err.path);
    return rc;
}

static int setup(void **state, int redis)
{
    fx_t *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    *state = f;
    f->redis = redis;
    snprintf(f->env, sizeof f->env, "o%d-%d", (int)getpid(), ++g_seq);
    f->now = (int64_t)time(NULL);
    f->clock = (cx_clock_t){fixed_clock, &f->now};
    if (cx_mock_oauth_start(&f->mock) != 0)
        return -1;
    cx_mock_oauth_url(f->mock, "/token", f->token_url, sizeof f->token_url);
    cx_mock_oauth_url(f->mock, "/oauth/access_token", f->exchange_url, sizeof f->exchange_url);
    cx_mock_oauth_url(f->mock, "/refresh_access_token", f->refresh_url, sizeof f->refresh_url);
    cx_mock_oauth_url(f->mock, "/authorize", f->authorize_url, sizeof f->authorize_url);
    if (cx_log_capture_new(0, &f->cap) != 0)
        return -1;
    cx_logger_config_t lc = {
        .service = "test", .level = CX_LOG_DEBUG, .sink = cx_log_capture_sink, .sink_ud = f->cap};
    if (cx_logger_new(&lc, &f->lg) != 0)
        return -1;
    if (open_store(f, &f->st) != 0)
        return -1;
    return new_oauth(f, f->st, "google", CX_OAUTH_GOOGLE, 0, &f->o);
}

static int setup_embedded(void **state)
{
    return setup(state, 0);
}

#ifdef CX_WITH_REDIS
static int setup_redis(void **state)
{
    return setup(state, 1);
}
#endif

/* After every test: no captured log line holds a token the mock issued, the client secret, a
 * code, a state, or an Authorization header. */
static void assert_logs_clean(fx_t *f)
{
    size_t n = cx_log_capture_count(f->cap);
    for (size_t i = 0; i < n; i++) {
        const char *line = cx_log_capture_line(f->cap, i);
        assert_null(strstr(line, CLIENT_SECRET));
        assert_null(strstr(line, "Authorization"));
        assert_null(strstr(line, "Bearer "));
        assert_null(strstr(line, "mockat-"));
        assert_null(strstr(line, "mockrt-"));
        assert_null(strstr(line, "seed-at"));
        assert_null(strstr(line, "seed-rt"));
        for (size_t k = 0; cx_mock_oauth_issued(f->mock, k); k++)
            assert_null(strstr(line, cx_mock_oauth_issued(f->mock, k)));
        for (int k = 0; k < f->nsecrets; k++)
            assert_null(strstr(line, f->secrets[k]));
    }
}

static int teardown(void **state)
{
    fx_t *f = *state;
    if (f == NULL)
        return 0;
    if (f->cap && f->mock)
        assert_logs_clean(f);
    if (f->cap && getenv("CX_TEST_DUMP_LOGS")) /* to look at the lines by hand */
        for (size_t i = 0; i < cx_log_capture_count(f->cap); i++)
            fprintf(stderr, "%s\n", cx_log_capture_line(f->cap, i));
    cx_oauth_free(f->o);
    cx_token_store_destroy(f->st);
    cx_logger_free(f->lg);
    cx_log_capture_free(f->cap);
    cx_mock_oauth_stop(f->mock);
    free(f);
    return 0;
}

/* ---- Helpers -------------------------------------------------------------------------------- */

static void remember(fx_t *f, const char *s)
{
    if (f->nsecrets < 8)
        snprintf(f->secrets[f->nsecrets++], sizeof f->secrets[0], "%.127s", s);
}

/* Stores a token expiring in expires_in seconds (relative to the injected clock). */
static void seed(fx_t *f, cx_oauth_t *o, const char *at, const char *rt, int64_t expires_in)
{
    cx_oauth_token_t *t = calloc(1, sizeof *t);
    assert_non_null(t);
    snprintf(t->access_token, sizeof t->access_token, "%s", at);
    snprintf(t->refresh_token, sizeof t->refresh_token, "%s", rt ? rt : "");
    t->issued_at = f->now - 3600;
    t->expires_at = f->now + expires_in;
    assert_int_equal(cx_oauth_token_put(o, TENANT, ACCOUNT, t, &f->err), 0);
    cx_oauth_token_wipe(t);
    free(t);
}

static int get_token(fx_t *f, cx_oauth_t *o, char *out, size_t cap, uint64_t *v)
{
    cx_error_clear(&f->err);
    return cx_oauth_access_token(o, TENANT, ACCOUNT, out, cap, v, &f->err);
}

static cx_oauth_token_t *stored(fx_t *f, cx_oauth_t *o)
{
    cx_oauth_token_t *t = calloc(1, sizeof *t);
    assert_non_null(t);
    assert_int_equal(cx_oauth_token_get(o, TENANT, ACCOUNT, t, &f->err), 0);
    return t;
}

static void free_token(cx_oauth_token_t *t)
{
    cx_oauth_token_wipe(t);
    free(t);
}

/* The value of a query parameter of url (not decoded). */
static int query_param(const char *url, const char *name, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "%s=", name);
    const char *p = url;
    while ((p = strstr(p, pat)) != NULL) {
        if (p[-1] == '?' || p[-1] == '&')
            break;
        p++;
    }
    if (p == NULL)
        return -1;
    p += strlen(pat);
    size_t n = strcspn(p, "&");
    if (n >= cap)
        return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

static void b64url_sha256(const char *s, char out[64])
{
    unsigned char d[32];
    unsigned int n;
    EVP_Digest(s, strlen(s), d, &n, EVP_sha256(), NULL);
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (int i = 0; i < 30; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        out[o++] = A[v >> 18 & 63];
        out[o++] = A[v >> 12 & 63];
        out[o++] = A[v >> 6 & 63];
        out[o++] = A[v & 63];
    }
    uint32_t v = (uint32_t)d[30] << 16 | (uint32_t)d[31] << 8;
    out[o++] = A[v >> 18 & 63];
    out[o++] = A[v >> 12 & 63];
    out[o++] = A[v >> 6 & 63];
    out[o] = '\0';
}

static int contains(const unsigned char *buf, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(buf + i, needle, n) == 0)
            return 1;
    return 0;
}

#ifdef CX_WITH_REDIS
static void hex_sha256(const char *s, char out[65])
{
    unsigned char d[32];
    unsigned int n;
    EVP_Digest(s, strlen(s), d, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}
#endif

/* Authorises (tenant, account) through the mock: URL, state, code exchange. */
static void authorize(fx_t *f, cx_oauth_t *o, cx_oauth_grant_t *g)
{
    char url[2048], state[CX_OAUTH_STATE_SIZE];
    assert_int_equal(cx_oauth_authorize_url(o, TENANT, ACCOUNT, url, sizeof url, state, &f->err),
                     0);
    remember(f, state);
    remember(f, "the-code-4711");
    assert_int_equal(cx_oauth_exchange_code(o, state, "the-code-4711", g, &f->err), 0);
}

/* ---- Authorisation: PKCE, state, code exchange --------------------------------------------- */

static void test_authorize_url_has_pkce_s256_and_a_stored_state(void **state)
{
    fx_t *f = *state;
    char url[2048], st[CX_OAUTH_STATE_SIZE], v[256];
    assert_int_equal(cx_oauth_authorize_url(f->o, TENANT, ACCOUNT, url, sizeof url, st, &f->err),
                     0);
    remember(f, st);
    assert_true(strncmp(url, f->authorize_url, strlen(f->authorize_url)) == 0);
    assert_int_equal(query_param(url, "response_type", v, sizeof v), 0);
    assert_string_equal(v, "code");
    assert_int_equal(query_param(url, "client_id", v, sizeof v), 0);
    assert_string_equal(v, "client-1");
    assert_int_equal(query_param(url, "redirect_uri", v, sizeof v), 0);
    assert_string_equal(v, "https%3A%2F%2Fapp.example.com%2Foauth%2Fgoogle%2Fcallback");
    assert_int_equal(query_param(url, "state", v, sizeof v), 0);
    assert_string_equal(v, st);
    assert_int_equal(strlen(st), 43);
    assert_int_equal(query_param(url, "code_challenge_method", v, sizeof v), 0);
    assert_string_equal(v, "S256");
    char challenge[64];
    assert_int_equal(query_param(url, "code_challenge", challenge, sizeof challenge), 0);
    assert_int_equal(strlen(challenge), 43);
    assert_int_equal(query_param(url, "access_type", v, sizeof v), 0); /* Google */
    assert_string_equal(v, "offline");
    assert_int_equal(query_param(url, "prompt", v, sizeof v), 0);
    assert_string_equal(v, "consent");
    /* Two URLs never share a state or a challenge. */
    char url2[2048], st2[CX_OAUTH_STATE_SIZE], ch2[64];
    assert_int_equal(cx_oauth_authorize_url(f->o, TENANT, ACCOUNT, url2, sizeof url2, st2, &f->err),
                     0);
    remember(f, st2);
    query_param(url2, "code_challenge", ch2, sizeof ch2);
    assert_string_not_equal(st, st2);
    assert_string_not_equal(challenge, ch2);

    /* The callback: the exchange sends the verifier whose S256 is the challenge. */
    cx_oauth_grant_t g;
    remember(f, "code-abc");
    assert_int_equal(cx_oauth_exchange_code(f->o, st, "code-abc", &g, &f->err), 0);
    assert_string_equal(g.tenant_id, TENANT);
    assert_string_equal(g.account_id, ACCOUNT);
    assert_true(g.version > 0);
    char verifier[256], want[64];
    assert_int_equal(cx_mock_oauth_last(f->mock, "code_verifier", verifier, sizeof verifier), 0);
    remember(f, verifier);
    assert_int_equal(strlen(verifier), 43);
    b64url_sha256(verifier, want);
    assert_string_equal(want, challenge);
    assert_int_equal(cx_mock_oauth_last(f->mock, "grant_type", v, sizeof v), 0);
    assert_string_equal(v, "authorization_code");
    assert_int_equal(cx_mock_oauth_last(f->mock, "code", v, sizeof v), 0);
    assert_string_equal(v, "code-abc");
    assert_int_equal(cx_mock_oauth_last(f->mock, "redirect_uri", v, sizeof v), 0);
    assert_string_equal(v, "https://app.example.com/oauth/google/callback");
    assert_int_equal(cx_mock_oauth_last(f->mock, "client_secret", v, sizeof v), 0);
    assert_string_equal(v, CLIENT_SECRET);
    char m[8], path[64];
    cx_mock_oauth_last_request(f->mock, m, sizeof m, path, sizeof path);
    assert_string_equal(m, "POST");
    assert_string_equal(path, "/token");

    /* Stored: the token is served without another request. */
    char tok[CX_OAUTH_TOKEN_MAX];
    uint64_t ver = 0;
    assert_int_equal(get_token(f, f->o, tok, sizeof tok, &ver), 0);
    assert_string_equal(tok, cx_mock_oauth_last_access_token(f->mock));
    assert_int_equal(ver, g.version);
    assert_int_equal(cx_mock_oauth_count(f->mock, NULL), 1);
    cx_oauth_token_t *t = stored(f, f->o);
    assert_true(t->refresh_token[0] != '\0');
    assert_int_equal(t->expires_at, f->now + 3600);
    assert_false(t->unhealthy);
    free_token(t);
    assert_true(cx_log_capture_contains(f->cap, "\"outcome\":\"authorized\""));
}

static void test_state_is_single_use_unknown_or_expired_states_are_refused(void **state)
{
    fx_t *f = *state;
    char url[2048], st[CX_OAUTH_STATE_SIZE];
    cx_oauth_grant_t g;
    assert_int_equal(cx_oauth_authorize_url(f->o, TENANT, ACCOUNT, url, sizeof url, st, &f->err),
                     0);
    remember(f, st);
    assert_int_equal(cx_oauth_exchange_code(f->o, st, "c1", &g, &f->err), 0);
    cx_error_clear(&f->err);
    assert_int_equal(cx_oauth_exchange_code(f->o, st, "c1", &g, &f->err), CX_EOAUTH_STATE);
    assert_null(strstr(f->err.message, st));
    cx_error_clear(&f->err);
    assert_int_equal(cx_oauth_exchange_code(f->o, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                            "c1", &g, &f->err),
                     CX_EOAUTH_STATE);
    cx_error_clear(&f->err);
    assert_int_equal(cx_oauth_exchange_code(f->o, "../../etc", "c1", &g, &f->err), CX_EOAUTH_STATE);
    /* Expired: the clock moved past state_ttl_s (600 s). */
    assert_int_equal(cx_oauth_authorize_url(f->o, TENANT, ACCOUNT, url, sizeof url, st, &f->err),
                     0);
    remember(f, st);
    f->now += 601;
    cx_error_clear(&f->err);
    assert_int_equal(cx_oauth_exchange_code(f->o, st, "c1", &g, &f->err), CX_EOAUTH_STATE);
    assert_int_equal(cx_mock_oauth_count(f->mock, NULL), 1); /* only the first exchange */
}

static void test_state_of_another_provider_is_refused(void **state)
{
    fx_t *f = *state;
    cx_oauth_t *other;
    assert_int_equal(new_oauth(f, f->st, "other", CX_OAUTH_STANDARD, 0, &other), 0);
    char url[2048], st[CX_OAUTH_STATE_SIZE];
    assert_int_equal(cx_oauth_authorize_url(f->o, TENANT, ACCOUNT, url, sizeof url, st, &f->err),
                     0);
    remember(f, st);
    assert_int_equal(cx_oauth_exchange_code(other, st, "c1", NULL, &f->err), CX_EOAUTH_STATE);
    assert_int_equal(cx_mock_oauth_count(f->mock, NULL), 0);
    cx_oauth_free(other);
}

static void test_refused_code_is_rejected_and_leaves_the_integration_alone(void **state)
{
    fx_t *f = *state;
    seed(f, f->o, "seed-at-1", "seed-rt-1", 3600);
    cx_mock_oauth_push(f->mock, 400, "{\"error\":\"invalid_grant\",\"error_description\":\"x\"}",
                       0);
    char url[2048], st[CX_OAUTH_STATE_SIZE];
    assert_int_equal(cx_oauth_authorize_url(f->o, TENANT, ACCOUNT, url, sizeof url, st, &f->err),
                     0);
    remember(f, st);
    assert_int_equal(cx_oauth_exchange_code(f->o, st, "expired-code", NULL, &f->err),
                     CX_EPROVIDER_REJECTED);
    cx_oauth_token_t *t = stored(f, f->o);
    assert_false(t->unhealthy);
    assert_string_equal(t->access_token, "seed-at-1");
    free_token(t);
}

/* ---- Refresh strategies -----------------------------------------------------------------------
 */

static void test_fresh_token_is_served_without_a_request(void **state)
{
    fx_t *f = *state;
    seed(f, f->o, "seed-at-1", "seed-rt-1", 3600);
    char tok[CX_OAUTH_TOKEN_MAX];
    assert_int_equal(get_token(f, f->o, tok, sizeof tok, NULL), 0);
    assert_string_equal(tok, "seed-at-1");
    assert_int_equal(cx_mock_oauth_count(f->mock, NULL), 0);
    assert_int_equal(get_token(f, f->o, tok, 4, NULL), CX_ENOSPC);
    cx_error_clear(&f->err);
    assert_int_equal(cx_oauth_access_token(f->o, TENANT, "unknown", tok, sizeof tok, NULL, &f->err),
                     CX_ENOTFOUND);
    cx_error_clear(&f->err);
    assert_int_equal(cx_oauth_access_token(f->o, "a/b", ACCOUNT, tok, sizeof tok, NULL, &f->err),
                     CX_EINVAL);
}

static void test_google_refreshes_ahead_of_expiry_and_keeps_the_refresh_token(void **state)
{
    fx_t *f = *state;
    seed(f, f->o, "seed-at-1", "seed-rt-1", 200); /* within the 300 s refresh-ahead window */
    char tok[CX_OAUTH_TOKEN_MAX], v[256];
    cx_oauth_token_t *t0 = stored(f, f->o);
    uint64_t v0 = t0->version, ver = 0;
    free_token(t0);
    assert_int_equal(get_token(f, f->o, tok, sizeof tok, &ver), 0);
    assert_string_equal(tok, cx_mock_oauth_last_access_token(f->mock));
    assert_int_equal(cx_mock_oauth_count(f->mock, "refresh_token"), 1);
    assert_true(ver > v0);
    assert_int_equal(cx_mock_oauth_last(f->mock, "refresh_token", v, sizeof v), 0);
    assert_string_equal(v, "seed-rt-1");
    assert_int_equal(cx_mock_oauth_last(f->mock, "client_id", v, sizeof v), 0);
    assert_string_equal(v, "client-1");
    cx_oauth_token_t *t = stored(f, f->o);
    assert_string_equal(t->refresh_token, "seed-rt-1"); /* Google's answer omitted it: kept */
    assert_int_equal(t->expires_at, f->now + 3600);
    free_token(t);
    assert_int_equal(get_token(f, f->o, tok, sizeof tok, NULL), 0);
    assert_int_equal(cx_mock_oauth_count(f->mock, "refresh_token"), 1);
    assert_true(cx_log_capture_contains(f->cap, "\"outcome\":\"refreshed\""));
}

static void test_standard_stores_a_rotated_refresh_token(void **state)
{
    fx_t *f = *state;
    cx_oauth_t *o;
    assert_int_equal(new_oauth(f, f->st, "std", CX_OAUTH_STANDARD, 0, &o), 0);
    cx_mock_oauth_configure(f->mock, 3600, 1, 0);
    seed(f, o, "seed-at-1", "seed-rt-1", 10);
    char tok[CX_OAUTH_TOKEN_MAX];
    assert_int_equal(get_token(f, o, tok, sizeof tok, NULL), 0);
    cx_oauth_token_t *t = stored(f, o);
    assert_true(strncmp(t->refresh_token, "mockrt-", 7) == 0);
    free_token(t);
    /* No refresh token at all: nothing to refresh with -> re-authorise. */
    seed(f, o, "seed-at-2", NULL, 10);
    assert_int_equal(get_token(f, o, tok, sizeof tok, NULL), CX_EREAUTH_REQUIRED);
    t = stored(f, o);
    assert_true(t->unhealthy);
    assert_string_equal(t->error_code, "no_refresh_token");
    free_token(t);
    assert_int_equal(cx_mock_oauth_count(f->mock, "refresh_token"), 1);
    cx_oauth_free(o);
}

static void test_meta_exchanges_for_long_lived_tokens(void **state)
{
    fx_t *f = *state;
    cx_oauth_t *o;
    assert_int_equal(new_oauth(f, f->st, "messenger", CX_OAUTH_META, 0, &o), 0);
    cx_mock_oauth_configure(f->mock, 5183944, 0, 0);
    cx_oauth_grant_t g;
    authorize(f, o, &g);
    /* code -> short-lived (GET token_url with code), then -> long-lived (fb_exchange_token) */
    assert_int_equal(cx_mock_oauth_count(f->mock, "authorization_code"), 1);
    assert_int_equal(cx_mock_oauth_count(f->mock, "fb_exchange_token"), 1);
    char short_lived[128], v[256], m[8], path[64];
    snprintf(short_lived, sizeof short_lived, "%s", cx_mock_oauth_issued(f->mock, 0));
    assert_int_equal(cx_mock_oauth_last(f->mock, "fb_exchange_token", v, sizeof v), 0);
    assert_string_equal(v, short_lived);
    cx_mock_oauth_last_request(f->mock, m, sizeof m, path, sizeof path);
    assert_string_equal(m, "GET");
    assert_string_equal(path, "/oauth/access_token");
    cx_oauth_token_t *t = stored(f, o);
    assert_string_equal(t->access_token, cx_mock_oauth_last_access_token(f->mock));
    assert_int_equal(t->expires_at, f->now + 5183944);
    assert_string_equal(t->refresh_token, "");
    char current[CX_OAUTH_TOKEN_MAX];
    snprintf(current, sizeof current, "%s", t->access_token);
    free_token(t);
    /* 55 days later: within 7 days of expiry, the long-lived token is exchanged again. */
    f->now += 55 * 86400;
    char tok[CX_OAUTH_TOKEN_MAX];
    assert_int_equal(get_token(f, o, tok, sizeof tok, NULL), 0);
    assert_int_equal(cx_mock_oauth_count(f->mock, "fb_exchange_token"), 2);
    assert_int_equal(cx_mock_oauth_last(f->mock, "fb_exchange_token", v, sizeof v), 0);
    assert_string_equal(v, current);
    assert_int_equal(cx_mock_oauth_last(f->mock, "client_secret", v, sizeof v), 0);
    assert_string_equal(v, CLIENT_SECRET);
    assert_string_equal(tok, cx_mock_oauth_last_access_token(f->mock));
    cx_oauth_free(o);
}

static void test_instagram_refreshes_with_ig_refresh_token(void **state)
{
    fx_t *f = *state;
    cx_oauth_t *o;
    assert_int_equal(new_oauth(f, f->st, "instagram", CX_OAUTH_INSTAGRAM, 0, &o), 0);
    cx_mock_oauth_configure(f->mock, 5184000, 0, 0);
    cx_oauth_grant_t g;
    authorize(f, o, &g);
    assert_int_equal(cx_mock_oauth_count(f->mock, "authorization_code"), 1);
    assert_int_equal(cx_mock_oauth_count(f->mock, "ig_exchange_token"), 1);
    char v[256], m[8], path[64];
    assert_int_equal(cx_mock_oauth_last(f->mock, "access_token", v, sizeof v), 0);
    assert_string_equal(v, cx_mock_oauth_issued(f->mock, 0)); /* the short-lived one */
    /* Within its first 24 h a token is not refreshed, even when told to (Instagram refuses). */
    cx_oauth_token_t *t = stored(f, o);
    char current[CX_OAUTH_TOKEN_MAX];
    snprintf(current, sizeof current, "%s", t->access_token);
    free_token(t);
    f->now += 54 * 86400;
    char tok[CX_OAUTH_TOKEN_MAX];
    assert_int_equal(get_token(f, o, tok, sizeof tok, NULL), 0);
    assert_int_equal(cx_mock_oauth_count(f->mock, "ig_refresh_token"), 1);
    assert_int_equal(cx_mock_oauth_last(f->mock, "access_token", v, sizeof v), 0);
    assert_string_equal(v, current);
    cx_mock_oauth_last_request(f->mock, m, sizeof m, path, sizeof path);
    assert_string_equal(m, "GET");
    assert_string_equal(path, "/refresh_access_token");
    assert_string_equal(tok, cx_mock_oauth_last_access_token(f->mock));
    cx_oauth_free(o);
}

static void test_instagram_token_younger_than_a_day_is_not_refreshed(void **state)
{
    fx_t *f = *state;
    cx_oauth_t *o;
    assert_int_equal(new_oauth(f, f->st, "instagram", CX_OAUTH_INSTAGRAM, 0, &o), 0);
    cx_oauth_token_t *t = calloc(1, sizeof *t);
    snprintf(t->access_token, sizeof t->access_token, "seed-at-ig");
    t->issued_at = f->now - 3600;
    t->expires_at = f->now + 3 * 86400; /* inside the 7-day window, but only 1 h old */
    assert_int_equal(cx_oauth_token_put(o, TENANT, ACCOUNT, t, &f->err), 0);
    free_token(t);
    char tok[CX_OAUTH_TOKEN_MAX];
    assert_int_equal(get_token(f, o, tok, sizeof tok, NULL), 0);
    assert_string_equal(tok, "seed-at-ig");
    assert_int_equal(cx_mock_oauth_count(f->mock, NULL), 0);
    cx_oauth_free(o);
}

/* ---- Failures: unhealthy without loops, backoff ------------------------------------------------
 */

static void expect_unhealthy_after(fx_t *f, int status, const char *body, const char *code)
{
    seed(f, f->o, "seed-at-1", "seed-rt-1", -10); /* expired */
    cx_mock_oauth_push(f->mock, status, body, 0);
    char tok[CX_OAUTH_TOKEN_MAX];
    assert_int_equal(get_token(f, f->o, tok, sizeof tok, NULL), CX_EREAUTH_REQUIRED);
    assert_int_equal(cx_mock_oauth_count(f->mock, NULL), 1);
    cx_oauth_token_t *t = stored(f, f->o);
    assert_true(t->unhealthy);
    assert_string_equal(t->error_code, code);
    free_token(t);
    /* No loop: every later call is refused at once, by this manager and by any other process
     * sharing the store, and the provider hears nothing more. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(get_token(f, f->o, tok, sizeof tok, NULL), CX_EREAUTH_REQUIRED);
    f->now += 86400;
    assert_int_equal(get_token(f, f->o, tok, sizeof tok, NULL), CX_EREAUTH_REQUIRED);
    cx_oauth_t *other;
    assert_int_equal(new_oauth(f, f->st, "google", CX_OAUTH_GOOGLE, 0, &other), 0);
    assert_int_equal(get_token(f, other, tok, sizeof tok, NULL), CX_EREAUTH_REQUIRED);
    assert_int_equal(cx_oauth_invalidate(other, TENANT, ACCOUNT, 1, tok, sizeof tok, NULL, &f->err),
                     CX_EREAUTH_REQUIRED);
    assert_int_equal(cx_mock_oauth_count(f->mock, NULL), 1);
    assert_true(cx_log_capture_contains(f->cap, "\"outcome\":\"unhealthy\""));
    assert_true(cx_log_capture_contains(f->cap, "\"error_code\":\"CX_EREAUTH_REQUIRED\""));

    /* Re-authorised: healthy again, served without a refresh. */
    cx_oauth_grant_t g;
    authorize(f, other, &g);
    t = stored(f, f->o);
    assert_false(t->unhealthy);
    assert_string_equal(t->error_code, "");
    free_token(t);
    assert_int_equal(get_token(f, f->o, tok, sizeof tok, NULL), 0);
    assert_string_equal(tok, cx_mock_oauth_last_access_token(f->mock));
    assert_int_equal(cx_mock_oauth_count(f->mock, "refresh_token"), 1);
    cx_oauth_free(other);
}

static void test_refresh_401_marks_unhealthy_and_stops_until_reauthorised(void **state)
{
    expect_unhealthy_after(*state, 401, "{\"error\":\"invalid_client\"}", "invalid_client");
}

static void test_revoked_grant_marks_unhealthy(void **state)
{
    expect_unhealthy_after(*state, 400,
                           "{\"error\":\"invalid_grant\",\"error_description\":\"Token has been "
                           "expired or revoked.\"}",
                           "invalid_grant");
}

static void test_meta_error_190_marks_unhealthy(void **state)
{
    expect_unhealthy_after(*state, 400,
                           "{\"error\":{\"message\":\"Error validating access token\",\"type\":"
                           "\"OAuthException\",\"code\":190,\"error_subcode\":463}}",
                           "meta_190");
}

static void test_transient_failure_backs_off_and_keeps_the_valid_token(void **state)
{
    fx_t *f = *state;
    seed(f, f->o, "seed-at-1", "seed-rt-1", 100); /* valid, but inside the window */
    cx_mock_oauth_push(f->mock, 503, "{\"error\":\"temporarily_unavailable\"}", 0);
    char tok[CX_OAUTH_TOKEN_MAX];
    assert_int_equal(get_token(f, f->o, tok, sizeof tok, NULL), 0);
    assert_string_equal(tok, "seed-at-1");
    assert_int_equal(cx_mock_oauth_count(f->mock, NULL), 1);
    /* Backing off: no storm, even from many calls. */
    for (int i = 0; i < 20; i++)
        assert_int_equal(get_token(f, f->o, tok, sizeof tok, NULL), 0);
    assert_int_equal(cx_mock_oauth_count(f->mock, NULL), 1);
    assert_true(cx_log_capture_contains(f->cap, "\"outcome\":\"refresh_failed\""));
    assert_true(cx_log_capture_contains(f->cap, "\"upstream_status\":503"));
    /* After the backoff (5 s) the next call tries again and succeeds. */
    f->now += 6;
    assert_int_equal(get_token(f, f->o, tok, sizeof tok, NULL), 0);
    assert_string_equal(tok, cx_mock_oauth_last_access_token(f->mock));
    assert_int_equal(cx_mock_oauth_count(f->mock, NULL), 2);
}

static void test_expired_token_and_failing_endpoint_is_an_error(void **state)
{
    fx_t *f = *state;
    seed(f, f->o, "seed-at-1", "seed-rt-1", -1);
    cx_mock_oauth_push(f->mock, 500, "oops", 0);
    char tok[CX_OAUTH_TOKEN_MAX];
    assert_int_equal(get_token(f, f->o, tok, sizeof tok, NULL), CX_EPROVIDER);
    assert_string_equal(tok, "");
    assert_int_equal(get_token(f, f->o, tok, sizeof tok, NULL), CX_EPROVIDER); /* backing off */
    assert_int_equal(cx_mock_oauth_count(f->mock, NULL), 1);
    cx_mock_oauth_push(f->mock, 403, "{\"error\":\"access_denied\"}", 0);
    f->now += 6;
    assert_int_equal(get_token(f, f->o, tok, sizeof tok, NULL), CX_EPROVIDER_REJECTED);
    cx_oauth_token_t *t = stored(f, f->o);
    assert_false(t->unhealthy); /* a refusal that is not a revocation: no re-authorisation */
    free_token(t);
}

static void test_unreachable_endpoint_is_transient(void **state)
{
    fx_t *f = *state;
    snprintf(f->token_url, sizeof f->token_url, "http://127.0.0.1:1/token");
    cx_oauth_t *o;
    assert_int_equal(new_oauth(f, f->st, "google", CX_OAUTH_GOOGLE, 0, &o), 0);
    seed(f, o, "seed-at-1", "seed-rt-1", -1);
    char tok[CX_OAUTH_TOKEN_MAX];
    assert_int_equal(get_token(f, o, tok, sizeof tok, NULL), CX_EPROVIDER);
    assert_null(strstr(f->err.message, "127.0.0.1:1")); /* no URL in error text */
    cx_oauth_free(o);
}

static void test_invalidate_after_an_api_401_refreshes_once_per_version(void **state)
{
    fx_t *f = *state;
    seed(f, f->o, "seed-at-1", "seed-rt-1", 3600);
    char tok[CX_OAUTH_TOKEN_MAX];
    uint64_t v1 = 0, v2 = 0, v3 = 0;
    assert_int_equal(get_token(f, f->o, tok, sizeof tok, &v1), 0);
    assert_int_equal(cx_oauth_invalidate(f->o, TENANT, ACCOUNT, v1, tok, sizeof tok, &v2, &f->err),
                     0);
    assert_true(v2 > v1);
    assert_string_equal(tok, cx_mock_oauth_last_access_token(f->mock));
    /* Another caller that saw the same 401 with v1: already replaced, nothing more. */
    assert_int_equal(cx_oauth_invalidate(f->o, TENANT, ACCOUNT, v1, tok, sizeof tok, &v3, &f->err),
                     0);
    assert_int_equal(v3, v2);
    assert_int_equal(cx_mock_oauth_count(f->mock, "refresh_token"), 1);
}

/* ---- Storage: encryption at rest, fencing -----------------------------------------------------
 */

static void test_store_fencing_refuses_a_lapsed_holder(void **state)
{
    fx_t *f = *state;
    cx_token_store_t *s = f->st;
    const char *id = "p/t/a";
    unsigned char v1[] = "value-one", v2[] = "value-two", buf[64];
    uint64_t fa = 0, fb = 0, w = 0, fence = 0;
    size_t len = 0;
    assert_int_equal(s->ops->lock(s, id, 50, &fa, &f->err), 0);
    assert_int_equal(s->ops->lock(s, id, 50, &fb, &f->err), CX_EIN_PROGRESS);
    struct timespec ts = {0, 120 * 1000000L};
    nanosleep(&ts, NULL);
    assert_int_equal(s->ops->lock(s, id, 5000, &fb, &f->err), 0); /* A's lock lapsed */
    assert_true(fb > fa);
    assert_int_equal(s->ops->put(s, id, v1, sizeof v1, fa, &w, &f->err), CX_ECONFLICT);
    assert_int_equal(s->ops->put(s, id, v2, sizeof v2, fb, &w, &f->err), 0);
    assert_int_equal(w, fb);
    assert_int_equal(s->ops->put(s, id, v1, sizeof v1, fa, &w, &f->err), CX_ECONFLICT);
    assert_int_equal(s->ops->unlock(s, id, fa, &f->err), 0); /* not A's lock any more */
    assert_int_equal(s->ops->lock(s, id, 5000, &fa, &f->err), CX_EIN_PROGRESS);
    assert_int_equal(s->ops->get(s, id, buf, sizeof buf, &len, &fence, &f->err), 0);
    assert_memory_equal(buf, v2, sizeof v2);
    assert_int_equal(fence, fb);
    /* A fresh grant (fence 0) always wins and fences off the current holder too. */
    assert_int_equal(s->ops->put(s, id, v1, sizeof v1, 0, &w, &f->err), 0);
    assert_true(w > fb);
    assert_int_equal(s->ops->put(s, id, v2, sizeof v2, fb, &w, &f->err), CX_ECONFLICT);
    assert_int_equal(s->ops->unlock(s, id, fb, &f->err), 0);
    /* States are usable once. */
    assert_int_equal(s->ops->state_put(s, "st1", v1, sizeof v1, 60, &f->err), 0);
    assert_int_equal(s->ops->state_take(s, "st1", buf, sizeof buf, &len, &f->err), 0);
    assert_int_equal(s->ops->state_take(s, "st1", buf, sizeof buf, &len, &f->err), CX_ENOTFOUND);
    assert_int_equal(s->ops->del(s, id, &f->err), 0);
    assert_int_equal(s->ops->get(s, id, buf, sizeof buf, &len, &fence, &f->err), CX_ENOTFOUND);
    assert_int_equal(s->ops->ping(s, &f->err), 0);
}

static void test_tokens_are_encrypted_at_rest_and_bound_to_their_place(void **state)
{
    fx_t *f = *state;
    seed(f, f->o, "seed-at-secret-value", "seed-rt-secret-value", 3600);
    unsigned char *buf = malloc(CX_TOKEN_VALUE_MAX);
    size_t len = 0;
    uint64_t fence = 0;
    assert_int_equal(
        f->st->ops->get(f->st, "google/acme/cal-1", buf, CX_TOKEN_VALUE_MAX, &len, &fence, &f->err),
        0);
    assert_int_equal(buf[0], 1); /* format version of the sealed value */
    assert_false(contains(buf, len, "seed-at-secret-value"));
    assert_false(contains(buf, len, "seed-rt-secret-value"));
#ifdef CX_WITH_REDIS
    if (f->redis) {
        redisContext *c = redisConnect("127.0.0.1", g_redis.port);
        redisReply *r = redisCommand(c, "GET cx:%s:oauth:{google/acme/cal-1}:token", f->env);
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_true(strncmp(r->str, "v1|", 3) == 0);
        assert_null(strstr(r->str, "seed-"));
        freeReplyObject(r);
        redisFree(c);
    }
#endif
    /* The same sealed bytes under another account do not open (AAD), nor under another key. */
    assert_int_equal(f->st->ops->put(f->st, "google/acme/cal-2", buf, len, 0, NULL, &f->err), 0);
    char tok[CX_OAUTH_TOKEN_MAX];
    cx_error_clear(&f->err);
    assert_int_equal(cx_oauth_access_token(f->o, TENANT, "cal-2", tok, sizeof tok, NULL, &f->err),
                     CX_ECRYPTO);
    buf[len / 2] ^= 1; /* and a flipped bit is caught */
    assert_int_equal(f->st->ops->put(f->st, "google/acme/cal-1", buf, len, 0, NULL, &f->err), 0);
    cx_error_clear(&f->err);
    assert_int_equal(get_token(f, f->o, tok, sizeof tok, NULL), CX_ECRYPTO);
    free(buf);
}

static void test_provider_defaults_are_the_real_endpoints(void **state)
{
    (void)state;
    cx_oauth_provider_t p = {.name = "x"};
    assert_int_equal(cx_oauth_provider_defaults(CX_OAUTH_GOOGLE, &p), 0);
    assert_string_equal(p.token_url, "https://oauth2.googleapis.com/token");
    assert_int_equal(p.strategy, CX_OAUTH_GOOGLE);
    assert_int_equal(cx_oauth_provider_defaults(CX_OAUTH_INSTAGRAM, &p), 0);
    assert_string_equal(p.refresh_url, "https://graph.instagram.com/refresh_access_token");
    assert_int_equal(cx_oauth_provider_defaults(CX_OAUTH_META, &p), 0);
    assert_non_null(strstr(p.exchange_url, "graph.facebook.com/"));
    assert_int_equal(cx_oauth_provider_defaults(CX_OAUTH_STANDARD, &p), CX_EINVAL);
    /* A manager refuses an incomplete provider, naming the field. */
    cx_oauth_provider_t bad = {.name = "Bad Name", .strategy = CX_OAUTH_STANDARD};
    cx_token_store_t *ts;
    cx_error_t err = {0};
    assert_int_equal(cx_token_store_embedded(&ts, &err), 0);
    cx_oauth_config_t cfg = {.provider = &bad, .store = ts, .token_key = KEY};
    cx_oauth_t *o;
    assert_int_equal(cx_oauth_new(&cfg, &o, &err), CX_EINVAL);
    assert_string_equal(err.path, "provider.name");
    bad.name = "meta";
    bad.strategy = CX_OAUTH_META;
    bad.authorize_url = bad.token_url = "https://x";
    bad.client_id = "c";
    bad.client_secret = "s";
    bad.redirect_uri = "https://r";
    cx_error_clear(&err);
    assert_int_equal(cx_oauth_new(&cfg, &o, &err), CX_EINVAL);
    assert_string_equal(err.path, "provider.exchange_url");
    cx_token_store_destroy(ts);
}

static void test_token_key_file_raw_or_hex(void **state)
{
    fx_t *f = *state;
    char dir[] = "/tmp/cx-oauth-keys-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/runtime", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/runtime/token_key", dir);
    unsigned char key[32];
    cx_error_clear(&f->err);
    assert_int_equal(cx_oauth_token_key_load(dir, key, &f->err), CX_ENOTFOUND);
    FILE *fp = fopen(path, "w");
    fwrite(KEY, 1, 32, fp);
    fclose(fp);
    assert_int_equal(cx_oauth_token_key_load(dir, key, &f->err), 0);
    assert_memory_equal(key, KEY, 32);
    fp = fopen(path, "w");
    for (int i = 0; i < 32; i++)
        fprintf(fp, "%02x", KEY[i]);
    fputc('\n', fp);
    fclose(fp);
    memset(key, 0, sizeof key);
    assert_int_equal(cx_oauth_token_key_load(dir, key, &f->err), 0);
    assert_memory_equal(key, KEY, 32);
    fp = fopen(path, "w");
    fputs("too-short-key\n", fp);
    fclose(fp);
    cx_error_clear(&f->err);
    assert_int_equal(cx_oauth_token_key_load(dir, key, &f->err), CX_ECONFIG);
    assert_null(strstr(f->err.message, "too-short"));
    unlink(path);
    snprintf(path, sizeof path, "%s/runtime", dir);
    rmdir(path);
    rmdir(dir);
}

/* ---- Concurrency -------------------------------------------------------------------------------
 */

typedef struct caller_s {
    fx_t *f;
    cx_oauth_t *o;
    pthread_barrier_t *go;
    int rc;
    char tok[CX_OAUTH_TOKEN_MAX];
} caller_t;

static void *caller(void *ud)
{
    caller_t *c = ud;
    char tok[CX_OAUTH_TOKEN_MAX];
    cx_error_t err = {0};
    pthread_barrier_wait(c->go);
    c->rc = cx_oauth_access_token(c->o, TENANT, ACCOUNT, tok, sizeof tok, NULL, &err);
    snprintf(c->tok, sizeof c->tok, "%s", tok);
    return NULL;
}

static void test_sixteen_threads_one_refresh(void **state)
{
    fx_t *f = *state;
    seed(f, f->o, "seed-at-1", "seed-rt-1", -5);
    cx_mock_oauth_configure(f->mock, 3600, 0, 150); /* a slow endpoint widens the race */
    cx_oauth_t *o2; /* a second manager on the same store: threads of two "components" */
    assert_int_equal(new_oauth(f, f->st, "google", CX_OAUTH_GOOGLE, 0, &o2), 0);
    enum { T = 16 };
    pthread_t th[T];
    caller_t c[T];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, T);
    for (int i = 0; i < T; i++) {
        c[i] = (caller_t){f, i % 2 ? o2 : f->o, &go, -1, ""};
        assert_int_equal(pthread_create(&th[i], NULL, caller, &c[i]), 0);
    }
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    assert_int_equal(cx_mock_oauth_count(f->mock, "refresh_token"), 1);
    for (int i = 0; i < T; i++) {
        assert_int_equal(c[i].rc, 0);
        assert_string_equal(c[i].tok, cx_mock_oauth_last_access_token(f->mock));
    }
    cx_oauth_free(o2);
}

typedef struct slow_s {
    fx_t *f;
    cx_oauth_t *o;
    int rc;
    char tok[CX_OAUTH_TOKEN_MAX];
} slow_t;

static void *slow_refresher(void *ud)
{
    slow_t *s = ud;
    char tok[CX_OAUTH_TOKEN_MAX];
    cx_error_t err = {0};
    s->rc = cx_oauth_access_token(s->o, TENANT, ACCOUNT, tok, sizeof tok, NULL, &err);
    snprintf(s->tok, sizeof s->tok, "%s", tok);
    return NULL;
}

static void test_lock_expiring_mid_refresh_cannot_overwrite_the_newer_token(void **state)
{
    /* A (lock TTL 300 ms) refreshes against an endpoint that takes 1.2 s; its lock lapses,
     * B takes it with a newer fence and refreshes at once. A's late answer must not overwrite
     * B's token: A's write is refused, and A returns B's token. */
    fx_t *f = *state;
    cx_oauth_t *a, *b;
    assert_int_equal(new_oauth(f, f->st, "google", CX_OAUTH_GOOGLE, 300, &a), 0);
    assert_int_equal(new_oauth(f, f->st, "google", CX_OAUTH_GOOGLE, 5000, &b), 0);
    seed(f, a, "seed-at-1", "seed-rt-1", -5);
    cx_mock_oauth_push(f->mock, 200, NULL, 1200); /* A's request: slow */
    slow_t sa = {f, a, -1, ""};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, slow_refresher, &sa), 0);
    struct timespec ts = {0, 600 * 1000000L};
    nanosleep(&ts, NULL);
    char tok_b[CX_OAUTH_TOKEN_MAX];
    assert_int_equal(get_token(f, b, tok_b, sizeof tok_b, NULL), 0);
    const char *issued_a = cx_mock_oauth_issued(f->mock, 0); /* A's, issued first */
    const char *issued_b = cx_mock_oauth_issued(f->mock, 1);
    assert_non_null(issued_a);
    assert_non_null(issued_b);
    assert_string_equal(tok_b, issued_b);
    pthread_join(th, NULL);
    assert_int_equal(sa.rc, 0);
    assert_string_equal(sa.tok, issued_b); /* A ends up with the newer token */
    cx_oauth_token_t *t = stored(f, a);
    assert_string_equal(t->access_token, issued_b); /* not overwritten by A's late answer */
    free_token(t);
    assert_int_equal(cx_mock_oauth_count(f->mock, "refresh_token"), 2);
    assert_true(cx_log_capture_contains(f->cap, "\"outcome\":\"refresh_superseded\""));
    assert_true(cx_log_capture_contains(f->cap, "\"error_code\":\"CX_ECONFLICT\""));
    cx_oauth_free(a);
    cx_oauth_free(b);
}

#ifdef CX_WITH_REDIS
/* The headline: 2 token_refresher processes x 16 threads, token expired, released together. */
static void test_two_processes_sixteen_threads_each_one_refresh(void **state)
{
    fx_t *f = *state;
    seed(f, f->o, "seed-at-1", "seed-rt-1", -5);
    cx_mock_oauth_configure(f->mock, 3600, 0, 200);
    enum { P = 2, T = 16 };
    char port[16], threads[8], keyhex[65], errlog[P][128];
    snprintf(port, sizeof port, "%d", g_redis.port);
    snprintf(threads, sizeof threads, "%d", T);
    for (int i = 0; i < 32; i++)
        snprintf(keyhex + 2 * i, 3, "%02x", KEY[i]);
    int start[2], out[2];
    assert_int_equal(pipe(start), 0);
    assert_int_equal(pipe(out), 0);
    pid_t pids[P];
    for (int p = 0; p < P; p++) {
        snprintf(errlog[p], sizeof errlog[p], "/tmp/cx-refresher-%d-%d.log", (int)getpid(), p);
        const char *argv[] = {CX_TOKEN_REFRESHER_PATH,
                              "--port",
                              port,
                              "--env",
                              f->env,
                              "--token-url",
                              f->token_url,
                              "--threads",
                              threads,
                              "--tenant",
                              TENANT,
                              "--account",
                              ACCOUNT,
                              "--key-hex",
                              keyhex,
                              "--client-secret",
                              CLIENT_SECRET,
                              NULL};
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            int fd = open(errlog[p], O_WRONLY | O_CREAT | O_TRUNC, 0600);
            dup2(start[0], 0);
            dup2(out[1], 1);
            dup2(fd, 2);
            close(start[1]);
            close(out[0]);
            execv(argv[0], (char *const *)argv);
            _exit(127);
        }
    }
    close(start[0]);
    close(out[1]);
    FILE *rf = fdopen(out[0], "r");
    char line[256];
    int ready = 0;
    while (ready < P && fgets(line, sizeof line, rf))
        ready += strcmp(line, "ready\n") == 0;
    assert_int_equal(ready, P);
    close(start[1]); /* go */
    int ok = 0;
    char want[80];
    char digests[P * T][80];
    int nd = 0;
    while (fgets(line, sizeof line, rf)) {
        if (strncmp(line, "ok ", 3) == 0 && nd < P * T) {
            snprintf(digests[nd++], sizeof digests[0], "%.79s", line + 3);
            ok++;
        } else {
            print_message("refresher: %s", line);
        }
    }
    fclose(rf);
    for (int p = 0; p < P; p++) {
        int st;
        assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    assert_int_equal(ok, P * T);
    /* One refresh at the endpoint, and every thread of both processes got its token. */
    assert_int_equal(cx_mock_oauth_count(f->mock, "refresh_token"), 1);
    const char *issued = cx_mock_oauth_last_access_token(f->mock);
    hex_sha256(issued, want);
    for (int i = 0; i < nd; i++) {
        digests[i][strcspn(digests[i], "\n")] = '\0';
        assert_string_equal(digests[i], want);
    }
    /* Their logs hold no token or secret either. */
    for (int p = 0; p < P; p++) {
        char buf[16384];
        FILE *fp = fopen(errlog[p], "r");
        assert_non_null(fp);
        size_t n = fread(buf, 1, sizeof buf - 1, fp);
        buf[n] = '\0';
        fclose(fp);
        unlink(errlog[p]);
        assert_null(strstr(buf, issued));
        assert_null(strstr(buf, "seed-rt-1"));
        assert_null(strstr(buf, CLIENT_SECRET));
        assert_null(strstr(buf, "Authorization"));
    }
}

static void test_redis_unavailable_keeps_a_valid_token_and_reports_otherwise(void **state)
{
    fx_t *f = *state;
    cx_redis_options_t ro = {
        .host = "127.0.0.1", .port = 1, .connect_timeout_ms = 200, .command_timeout_ms = 200};
    cx_token_store_t *dead;
    assert_int_equal(cx_token_store_redis("x", &ro, &dead, &f->err), 0);
    cx_oauth_t *o;
    assert_int_equal(new_oauth(f, dead, "google", CX_OAUTH_GOOGLE, 0, &o), 0);
    char tok[CX_OAUTH_TOKEN_MAX];
    assert_int_equal(get_token(f, o, tok, sizeof tok, NULL), CX_EUNAVAILABLE);
    cx_oauth_free(o);
    cx_token_store_destroy(dead);
}
#endif

/* ---- Integration changes are audited; the transport hook ------------------------------------- */

static void test_authorisation_and_unhealthy_transitions_are_audited(void **state)
{
    fx_t *f = *state;
    char dir[] = "/tmp/cx-oauth-audit-XXXXXX";
    assert_non_null(mkdtemp(dir));
    cx_audit_file_options_t fo = {.fsync = CX_AUDIT_FSYNC_NONE};
    cx_audit_store_t *ast;
    assert_int_equal(cx_audit_store_file(dir, &fo, &ast, &f->err), 0);
    cx_audit_key_t k = {NULL, KEY, sizeof KEY};
    cx_audit_config_t ac = {.store = ast, .keys = &k, .n_keys = 1};
    cx_audit_t *audit;
    assert_int_equal(cx_audit_new(&ac, &audit, &f->err), 0);
    cx_oauth_provider_t p = {.name = "google",
                             .strategy = CX_OAUTH_GOOGLE,
                             .authorize_url = f->authorize_url,
                             .token_url = f->token_url,
                             .client_id = "client-1",
                             .client_secret = CLIENT_SECRET,
                             .redirect_uri = "https://app.example.com/cb"};
    cx_oauth_config_t cfg = {.provider = &p,
                             .store = f->st,
                             .token_key = KEY,
                             .clock = &f->clock,
                             .logger = f->lg,
                             .audit = audit};
    cx_oauth_t *o;
    assert_int_equal(cx_oauth_new(&cfg, &o, &f->err), 0);
    cx_oauth_grant_t g;
    authorize(f, o, &g);
    f->now += 4000; /* expired */
    cx_mock_oauth_push(f->mock, 400, "{\"error\":\"invalid_grant\"}", 0);
    char tok[CX_OAUTH_TOKEN_MAX];
    assert_int_equal(get_token(f, o, tok, sizeof tok, NULL), CX_EREAUTH_REQUIRED);
    assert_int_equal(cx_oauth_token_delete(o, TENANT, ACCOUNT, &f->err), 0);
    assert_int_equal(get_token(f, o, tok, sizeof tok, NULL), CX_ENOTFOUND);
    cx_audit_report_t rep;
    assert_int_equal(cx_audit_verify(audit, TENANT, NULL, &rep, &f->err), 0);
    assert_int_equal(rep.records, 3);
    char path[128], buf[8192];
    snprintf(path, sizeof path, "%s/acme.jsonl", dir);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    assert_non_null(strstr(buf, "\"action\":\"integration.authorized\""));
    assert_non_null(strstr(buf, "\"action\":\"integration.unhealthy\""));
    assert_non_null(strstr(buf, "\"errorCode\":\"invalid_grant\""));
    assert_non_null(strstr(buf, "\"action\":\"integration.disconnected\""));
    assert_non_null(strstr(buf, "\"target\":\"google:cal-1\""));
    assert_null(strstr(buf, "mockat-")); /* no token in the audit trail either */
    assert_null(strstr(buf, "mockrt-"));
    cx_oauth_free(o);
    cx_audit_free(audit);
    cx_audit_store_destroy(ast);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

typedef struct spy_s {
    atomic_int calls;
    atomic_int fail_next; /* answer CX_EPROVIDER without sending, like a reset connection */
} spy_t;

static int spy_http(void *ud, const cx__oauth_http_req_t *req, cx__oauth_http_resp_t *resp,
                    cx_error_t *err)
{
    spy_t *s = ud;
    atomic_fetch_add(&s->calls, 1);
    if (atomic_exchange(&s->fail_next, 0))
        return cx_error_set(err, CX_EPROVIDER, NULL, "oauth token endpoint: connection reset");
    return cx__oauth_http_curl(NULL, req, resp, err);
}

static void test_every_token_request_goes_through_the_transport_hook(void **state)
{
    fx_t *f = *state;
    spy_t spy;
    atomic_init(&spy.calls, 0);
    atomic_init(&spy.fail_next, 1);
    cx__oauth_set_http(f->o, spy_http, &spy);
    seed(f, f->o, "seed-at-1", "seed-rt-1", -1);
    char tok[CX_OAUTH_TOKEN_MAX];
    assert_int_equal(get_token(f, f->o, tok, sizeof tok, NULL), CX_EPROVIDER);
    assert_int_equal(atomic_load(&spy.calls), 1);
    assert_int_equal(cx_mock_oauth_count(f->mock, NULL), 0);
    f->now += 6; /* after the backoff */
    assert_int_equal(get_token(f, f->o, tok, sizeof tok, NULL), 0);
    assert_int_equal(atomic_load(&spy.calls), 2);
    assert_int_equal(cx_mock_oauth_count(f->mock, "refresh_token"), 1);
    cx__oauth_set_http(f->o, NULL, NULL);
}

#define SHARED_TESTS(setup)                                                                        \
    cmocka_unit_test_setup_teardown(test_authorize_url_has_pkce_s256_and_a_stored_state, setup,    \
                                    teardown),                                                     \
        cmocka_unit_test_setup_teardown(                                                           \
            test_state_is_single_use_unknown_or_expired_states_are_refused, setup, teardown),      \
        cmocka_unit_test_setup_teardown(test_state_of_another_provider_is_refused, setup,          \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(                                                           \
            test_refused_code_is_rejected_and_leaves_the_integration_alone, setup, teardown),      \
        cmocka_unit_test_setup_teardown(test_fresh_token_is_served_without_a_request, setup,       \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(                                                           \
            test_google_refreshes_ahead_of_expiry_and_keeps_the_refresh_token, setup, teardown),   \
        cmocka_unit_test_setup_teardown(test_standard_stores_a_rotated_refresh_token, setup,       \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_meta_exchanges_for_long_lived_tokens, setup,          \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_instagram_refreshes_with_ig_refresh_token, setup,     \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_instagram_token_younger_than_a_day_is_not_refreshed,  \
                                        setup, teardown),                                          \
        cmocka_unit_test_setup_teardown(                                                           \
            test_refresh_401_marks_unhealthy_and_stops_until_reauthorised, setup, teardown),       \
        cmocka_unit_test_setup_teardown(test_revoked_grant_marks_unhealthy, setup, teardown),      \
        cmocka_unit_test_setup_teardown(test_meta_error_190_marks_unhealthy, setup, teardown),     \
        cmocka_unit_test_setup_teardown(                                                           \
            test_transient_failure_backs_off_and_keeps_the_valid_token, setup, teardown),          \
        cmocka_unit_test_setup_teardown(test_expired_token_and_failing_endpoint_is_an_error,       \
                                        setup, teardown),                                          \
        cmocka_unit_test_setup_teardown(test_unreachable_endpoint_is_transient, setup, teardown),  \
        cmocka_unit_test_setup_teardown(                                                           \
            test_invalidate_after_an_api_401_refreshes_once_per_version, setup, teardown),         \
        cmocka_unit_test_setup_teardown(test_store_fencing_refuses_a_lapsed_holder, setup,         \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(                                                           \
            test_tokens_are_encrypted_at_rest_and_bound_to_their_place, setup, teardown),          \
        cmocka_unit_test_setup_teardown(test_sixteen_threads_one_refresh, setup, teardown),        \
        cmocka_unit_test_setup_teardown(                                                           \
            test_lock_expiring_mid_refresh_cannot_overwrite_the_newer_token, setup, teardown),     \
        cmocka_unit_test_setup_teardown(test_authorisation_and_unhealthy_transitions_are_audited,  \
                                        setup, teardown),                                          \
        cmocka_unit_test_setup_teardown(test_every_token_request_goes_through_the_transport_hook,  \
                                        setup, teardown)

#ifdef CX_WITH_REDIS
static int group_setup_redis(void **state)
{
    (void)state;
    return cx_test_redis_start(&g_redis, NULL);
}

static int group_teardown_redis(void **state)
{
    (void)state;
    cx_test_redis_destroy(&g_redis);
    return 0;
}
#endif

int main(void)
{
    const struct CMUnitTest embedded[] = {
        SHARED_TESTS(setup_embedded),
        cmocka_unit_test_setup_teardown(test_token_key_file_raw_or_hex, setup_embedded, teardown),
        cmocka_unit_test(test_provider_defaults_are_the_real_endpoints),
    };
    int failed = cmocka_run_group_tests_name("oauth_embedded", embedded, NULL, NULL);
#ifdef CX_WITH_REDIS
    const struct CMUnitTest redis[] = {
        SHARED_TESTS(setup_redis),
        cmocka_unit_test_setup_teardown(test_two_processes_sixteen_threads_each_one_refresh,
                                        setup_redis, teardown),
        cmocka_unit_test_setup_teardown(
            test_redis_unavailable_keeps_a_valid_token_and_reports_otherwise, setup_redis,
            teardown),
    };
    failed +=
        cmocka_run_group_tests_name("oauth_redis", redis, group_setup_redis, group_teardown_redis);
#endif
    return failed;
}
