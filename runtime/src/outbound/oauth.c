/* OAuth2 (cx/oauth.h): PKCE authorisation, code exchange, refresh ahead of expiry with one
 * refresher per (tenant, account), fenced writes, encrypted storage, unhealthy without loops.
 *
 * The refresh protocol, for a key whose token needs refreshing:
 *
 *   1. the key's in-process mutex: threads of this process queue here, and each re-reads the
 *      store once it gets the mutex (the one before it has usually refreshed already);
 *   2. the store's lock (Redis SET NX PX) with a new fence: processes queue here; a caller
 *      that finds it held polls the store (10 ms doubling to 100 ms) until the token is fresh,
 *      the lock is free, or wait_ms has passed;
 *   3. holding the lock: re-read (the previous holder may have just finished), call the
 *      token endpoint, write the result with compare-and-set on the fence. A write refused
 *      with CX_ECONFLICT means this holder's lock expired and a newer holder took over: its
 *      token is newer, so this one is discarded and the stored one returned.
 *
 * Nothing here ever logs a token, the client secret, a code, a verifier, or a URL or form
 * (they carry secrets); buffers that held them are wiped (OPENSSL_cleanse) before release.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/aead.h"
#include "cx/audit.h"
#include "cx/buf.h"
#include "cx/log.h"
#include "cx/oauth.h"
#include "outbound/oauth_internal.h"

#define DEFAULT_HTTP_TIMEOUT_MS 10000u
#define DEFAULT_STATE_TTL_S 600u
#define AHEAD_STANDARD_S 300u
#define AHEAD_LONG_LIVED_S (7u * 86400u)
#define IG_MIN_AGE_S 86400 /* Instagram refuses to refresh a token younger than 24 h */
#define BACKOFF_MIN_S 5
#define BACKOFF_MAX_S 300
#define ENTRY_BUCKETS 256
#define ID_MAX 300 /* "<provider>/<tenant>/<account>" */
#define FORM_MAX 65536
#define MAX_CONFLICTS 4

typedef struct entry_s {
    struct entry_s *next;
    pthread_mutex_t mu; /* one refresher per key in this process */
    int failures;       /* consecutive refresh failures (not refusals) */
    int64_t retry_at;   /* no new attempt before (Unix s) */
    int last_rc;
    char id[ID_MAX];
} entry_t;

struct cx_oauth_s {
    /* provider, copied */
    char *name, *authorize_url, *token_url, *exchange_url, *refresh_url, *client_id, *client_secret,
        *redirect_uri, *scope, *extra;
    cx_oauth_strategy_t strategy;
    uint32_t ahead_s;
    cx_token_store_t *store;
    unsigned char key[CX__AEAD_KEY_SIZE];
    cx_clock_t clock;
    int has_clock;
    cx_logger_t *logger;
    cx_audit_t *audit;
    uint32_t lock_ttl_ms, wait_ms, http_timeout_ms, state_ttl_s;
    cx__oauth_http_fn http;
    void *http_ud;
    pthread_mutex_t entries_mu;
    entry_t *entries[ENTRY_BUCKETS];
};

/* ---- Small helpers -------------------------------------------------------------------------- */

static int64_t now_s(const cx_oauth_t *o)
{
    return cx_clock_now(o->has_clock ? &o->clock : NULL);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* tenant and account ids: 1 to 128 of [A-Za-z0-9._:@+-] (no '/', so ids cannot collide). */
static int id_ok(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return 0;
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= CX_OAUTH_ID_SIZE - 1 ||
            !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '@' || c == '+' || c == '-'))
            return 0;
    }
    return 1;
}

static int name_ok(const char *s)
{
    if (s == NULL || s[0] == '\0' || strlen(s) > 32)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

static int make_id(const cx_oauth_t *o, const char *tenant, const char *account, char id[ID_MAX],
                   cx_error_t *err)
{
    if (!id_ok(tenant))
        return cx_error_set(err, CX_EINVAL, "tenant",
                            "oauth: tenant must be 1 to 128 of "
                            "[A-Za-z0-9._:@+-]");
    if (!id_ok(account))
        return cx_error_set(err, CX_EINVAL, "account",
                            "oauth: account must be 1 to 128 of "
                            "[A-Za-z0-9._:@+-]");
    snprintf(id, ID_MAX, "%s/%s/%s", o->name, tenant, account);
    return 0;
}

static void wipe_buf(cx_buf_t *b)
{
    if (b->data && b->len)
        OPENSSL_cleanse(b->data, b->len);
    cx_buf_free(b);
}

static void form_kv(cx_buf_t *b, const char *k, const char *v)
{
    static const char hex[] = "0123456789ABCDEF";
    if (b->len)
        cx_buf_putc(b, '&');
    cx_buf_puts(b, k);
    cx_buf_putc(b, '=');
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            cx_buf_putc(b, (char)*p);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            cx_buf_append(b, e, 3);
        }
    }
}

void cx_oauth_token_wipe(cx_oauth_token_t *t)
{
    if (t)
        OPENSSL_cleanse(t, sizeof *t);
}

/* ---- A minimal JSON reader for token endpoint answers -----------------------------------------
 */

typedef struct jv_s {
    char type; /* 's' string, 'n' number, 'o' object, 'a' array, 'l' literal */
    const char *p;
    size_t n; /* strings: the raw text between the quotes; others: the whole value */
} jv_t;

static const char *j_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *j_str_end(const char *p, const char *e)
{
    for (p++; p < e; p++) {
        if (*p == '\\') {
            if (++p >= e)
                return NULL;
        } else if (*p == '"') {
            return p + 1;
        } else if ((unsigned char)*p < 0x20) {
            return NULL;
        }
    }
    return NULL;
}

static const char *j_value(const char *p, const char *e, int depth, jv_t *v)
{
    p = j_ws(p, e);
    if (p >= e || depth > 32)
        return NULL;
    const char *start = p;
    if (*p == '"') {
        const char *q = j_str_end(p, e);
        if (q && v)
            *v = (jv_t){'s', p + 1, (size_t)(q - p - 2)};
        return q;
    }
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        int obj = *p == '{';
        p = j_ws(p + 1, e);
        if (p < e && *p == close) {
            if (v)
                *v = (jv_t){obj ? 'o' : 'a', start, (size_t)(p + 1 - start)};
            return p + 1;
        }
        for (;;) {
            if (obj) {
                p = j_ws(p, e);
                if (p >= e || *p != '"' || (p = j_str_end(p, e)) == NULL)
                    return NULL;
                p = j_ws(p, e);
                if (p >= e || *p++ != ':')
                    return NULL;
            }
            if ((p = j_value(p, e, depth + 1, NULL)) == NULL)
                return NULL;
            p = j_ws(p, e);
            if (p < e && *p == ',') {
                p++;
                continue;
            }
            if (p < e && *p == close)
                break;
            return NULL;
        }
        if (v)
            *v = (jv_t){obj ? 'o' : 'a', start, (size_t)(p + 1 - start)};
        return p + 1;
    }
    while (p < e && ((*p >= '0' && *p <= '9') || *p == '-' || *p == '+' || *p == '.' || *p == 'e' ||
                     *p == 'E' || (*p >= 'a' && *p <= 'z')))
        p++;
    if (p == start)
        return NULL;
    if (v)
        *v = (jv_t){(*start == '-' || (*start >= '0' && *start <= '9')) ? 'n' : 'l', start,
                    (size_t)(p - start)};
    return p;
}

/* The member key of the object s[0..n): 1 found (*out), 0 absent, -1 not an object. */
static int j_member(const char *s, size_t n, const char *key, jv_t *out)
{
    const char *p = j_ws(s, s + n), *e = s + n;
    if (p >= e || *p != '{')
        return -1;
    p = j_ws(p + 1, e);
    if (p < e && *p == '}')
        return 0;
    size_t kl = strlen(key);
    for (;;) {
        p = j_ws(p, e);
        if (p >= e || *p != '"')
            return -1;
        const char *k = p + 1, *q = j_str_end(p, e);
        if (q == NULL)
            return -1;
        int match = (size_t)(q - k - 1) == kl && memcmp(k, key, kl) == 0;
        p = j_ws(q, e);
        if (p >= e || *p++ != ':')
            return -1;
        jv_t v;
        if ((p = j_value(p, e, 1, &v)) == NULL)
            return -1;
        if (match) {
            *out = v;
            return 1;
        }
        p = j_ws(p, e);
        if (p < e && *p == ',') {
            p++;
            continue;
        }
        return p < e && *p == '}' ? 0 : -1;
    }
}

static void utf8_put(char *out, size_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        out[(*o)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*o)++] = (char)(0xC0 | cp >> 6);
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*o)++] = (char)(0xE0 | cp >> 12);
        out[(*o)++] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*o)++] = (char)(0xF0 | cp >> 18);
        out[(*o)++] = (char)(0x80 | (cp >> 12 & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    }
}

static int hex4(const char *p, uint32_t *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        *v = *v << 4 | (uint32_t)d;
    }
    return 0;
}

/* A string value, unescaped, into out[0..cap). -1: not a string, malformed or too long. */
static int jv_str(const jv_t *v, char *out, size_t cap)
{
    if (v->type != 's' || cap == 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (o + 5 > cap)
            return -1;
        char c = v->p[i];
        if (c != '\\') {
            out[o++] = c;
            continue;
        }
        c = v->p[++i];
        switch (c) {
        case '"':
        case '\\':
        case '/':
            out[o++] = c;
            break;
        case 'b':
            out[o++] = '\b';
            break;
        case 'f':
            out[o++] = '\f';
            break;
        case 'n':
            out[o++] = '\n';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case 't':
            out[o++] = '\t';
            break;
        case 'u': {
            uint32_t cp, lo;
            if (i + 4 >= v->n || hex4(v->p + i + 1, &cp) != 0)
                return -1;
            i += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (i + 6 >= v->n || v->p[i + 1] != '\\' || v->p[i + 2] != 'u' ||
                    hex4(v->p + i + 3, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                    return -1;
                i += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if ((cp >= 0xDC00 && cp < 0xE000) || cp == 0) {
                return -1;
            }
            utf8_put(out, &o, cp);
            break;
        }
        default:
            return -1;
        }
    }
    out[o] = '\0';
    return 0;
}

/* A number, or a string holding one (some providers quote expires_in). */
static int jv_i64(const jv_t *v, int64_t *out)
{
    char tmp[32];
    if (v->n == 0 || v->n >= sizeof tmp || (v->type != 'n' && v->type != 's'))
        return -1;
    memcpy(tmp, v->p, v->n);
    tmp[v->n] = '\0';
    char *end;
    errno = 0;
    double d = strtod(tmp, &end);
    if (*end != '\0' || errno != 0 || d < -9e15 || d > 9e15)
        return -1;
    *out = (int64_t)d;
    return 0;
}

static int body_member(const cx__oauth_http_resp_t *r, const char *key, jv_t *v)
{
    return j_member(r->body, r->len, key, v) == 1;
}

/* ---- Token endpoint answers -------------------------------------------------------------------
 */

/* Keeps an error code only if it looks like one ([A-Za-z0-9_.-], at most 63): it goes to
 * logs and health pages, so free text from the provider never does. */
static void set_code(char out[64], const char *code)
{
    size_t n = 0;
    for (; n < 63 && code[n]; n++) {
        char c = code[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-')) {
            n = 0;
            break;
        }
    }
    if (n == 0 || code[n] != '\0') {
        snprintf(out, 64, "%s", "provider_error");
        return;
    }
    memcpy(out, code, n);
    out[n] = '\0';
}

/* Classifies an answer: 0 (2xx), CX_EREAUTH_REQUIRED (401; invalid_grant; Meta code 190),
 * CX_EPROVIDER (429, 5xx), CX_EPROVIDER_REJECTED (other). errcode: the provider's error. */
static int classify(const cx__oauth_http_resp_t *r, char errcode[64])
{
    errcode[0] = '\0';
    if (r->status >= 200 && r->status < 300)
        return 0;
    jv_t v, c;
    int64_t meta_code = 0;
    char tmp[128];
    if (body_member(r, "error", &v)) {
        if (v.type == 's' && jv_str(&v, tmp, sizeof tmp) == 0) {
            set_code(errcode, tmp); /* RFC 6749 5.2: {"error": "invalid_grant", ...} */
        } else if (v.type == 'o' && j_member(v.p, v.n, "code", &c) == 1) {
            jv_i64(&c, &meta_code); /* Graph API: {"error": {"code": 190, ...}} */
        }
    }
    if (meta_code == 0 && body_member(r, "code", &c)) /* Instagram: {"code": 190, ...} */
        jv_i64(&c, &meta_code);
    if (meta_code != 0 && errcode[0] == '\0')
        snprintf(errcode, 64, "meta_%" PRId64, meta_code);
    if (errcode[0] == '\0')
        snprintf(errcode, 64, "http_%ld", r->status);
    if (r->status == 401)
        return CX_EREAUTH_REQUIRED;
    if ((r->status == 400 || r->status == 403) &&
        (strcmp(errcode, "invalid_grant") == 0 || meta_code == 190))
        return CX_EREAUTH_REQUIRED;
    if (r->status == 429 || r->status >= 500)
        return CX_EPROVIDER;
    return CX_EPROVIDER_REJECTED;
}

/* Reads a 2xx token answer into t (access_token required; refresh_token, scope, token_type
 * and expires_in when present). */
static int parse_token(const cx_oauth_t *o, const cx__oauth_http_resp_t *r, cx_oauth_token_t *t,
                       char errcode[64])
{
    jv_t v;
    if (!body_member(r, "access_token", &v) ||
        jv_str(&v, t->access_token, sizeof t->access_token) != 0 || t->access_token[0] == '\0') {
        snprintf(errcode, 64, "%s", "no_access_token");
        OPENSSL_cleanse(t->access_token, sizeof t->access_token);
        return CX_EPROVIDER_REJECTED;
    }
    if (body_member(r, "refresh_token", &v) &&
        jv_str(&v, t->refresh_token, sizeof t->refresh_token) != 0)
        t->refresh_token[0] = '\0';
    if (!body_member(r, "token_type", &v) || jv_str(&v, t->token_type, sizeof t->token_type) != 0)
        snprintf(t->token_type, sizeof t->token_type, "%s", "Bearer");
    if (body_member(r, "scope", &v) && jv_str(&v, t->scope, sizeof t->scope) != 0)
        t->scope[0] = '\0';
    int64_t now = now_s(o), in = 0;
    t->issued_at = now;
    t->expires_at =
        body_member(r, "expires_in", &v) && jv_i64(&v, &in) == 0 && in > 0 ? now + in : 0;
    return 0;
}

/* ---- Transport ------------------------------------------------------------------------------ */

typedef struct sink_s {
    cx__oauth_http_resp_t *r;
    int overflow;
} sink_t;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    sink_t *s = ud;
    size_t len = size * n;
    if (s->r->len + len > CX__OAUTH_RESP_MAX) {
        s->overflow = 1;
        return 0; /* aborts the transfer */
    }
    memcpy(s->r->body + s->r->len, p, len);
    s->r->len += len;
    s->r->body[s->r->len] = '\0';
    return len;
}

int cx__oauth_http_curl(void *ud, const cx__oauth_http_req_t *req, cx__oauth_http_resp_t *resp,
                        cx_error_t *err)
{
    (void)ud;
    resp->status = 0;
    resp->len = 0;
    resp->body[0] = '\0';
    CURL *c = curl_easy_init();
    if (c == NULL)
        return cx_error_set(err, CX_EPROVIDER, NULL, "oauth: cannot create a libcurl handle");
    sink_t sink = {resp, 0};
    struct curl_slist *hdr = curl_slist_append(NULL, "Accept: application/json");
    long timeout = req->timeout_ms ? (long)req->timeout_ms : (long)DEFAULT_HTTP_TIMEOUT_MS;
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout < 5000 ? timeout : 5000L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_USERAGENT, "cx-oauth/1");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    /* One request, one connection: nothing is reused, so nothing is resent behind our back. */
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
    if (strcmp(req->method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->form ? req->form : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(req->form ? req->form_len : 0));
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    CURLcode cc = curl_easy_perform(c);
    int rc = 0;
    if (cc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    } else {
        /* curl_easy_strerror names the failure class, never the URL. */
        rc = cx_error_set(err, CX_EPROVIDER, NULL, "oauth token endpoint: %s",
                          sink.overflow ? "response too large" : curl_easy_strerror(cc));
        OPENSSL_cleanse(resp->body, resp->len);
        resp->len = 0;
        resp->status = 0;
    }
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    return rc;
}

void cx__oauth_set_http(cx_oauth_t *o, cx__oauth_http_fn fn, void *ud)
{
    o->http = fn ? fn : cx__oauth_http_curl;
    o->http_ud = fn ? ud : NULL;
}

/* Sends method to base with the form (as the query for GET, the body for POST). */
static int call(cx_oauth_t *o, const char *method, const char *base, const cx_buf_t *form,
                cx__oauth_http_resp_t *resp, cx_error_t *err)
{
    if (base == NULL || base[0] == '\0')
        return cx_error_set(err, CX_ECONFIG, NULL, "oauth %s: endpoint URL not configured",
                            o->name);
    if (cx_buf_error(form))
        return cx_error_set(err, CX_EINVAL, NULL, "oauth %s: request too large", o->name);
    cx__oauth_http_req_t req = {method, base, NULL, 0, o->http_timeout_ms};
    cx_buf_t url;
    cx_buf_init(&url, FORM_MAX + 4096);
    int rc;
    if (strcmp(method, "GET") == 0) {
        cx_buf_puts(&url, base);
        cx_buf_putc(&url, strchr(base, '?') ? '&' : '?');
        cx_buf_append(&url, form->data, form->len);
        if (cx_buf_error(&url)) {
            wipe_buf(&url);
            return cx_error_set(err, CX_EINVAL, NULL, "oauth %s: request too large", o->name);
        }
        req.url = url.data;
    } else {
        req.form = form->data ? form->data : "";
        req.form_len = form->len;
    }
    rc = o->http(o->http_ud, &req, resp, err);
    wipe_buf(&url);
    return rc;
}

/* ---- Provider strategies ----------------------------------------------------------------------
 */

typedef struct outcome_s {
    char errcode[64];
    long status;
} outcome_t;

/* One request whose answer is a token: classify, parse into t. */
static int token_request(cx_oauth_t *o, const char *method, const char *url, cx_buf_t *form,
                         cx_oauth_token_t *t, outcome_t *out, cx_error_t *err)
{
    cx__oauth_http_resp_t *resp = malloc(sizeof *resp);
    if (resp == NULL) {
        wipe_buf(form);
        return cx_error_set(err, CX_ENOMEM, NULL, "oauth: out of memory");
    }
    resp->len = 0;
    int rc = call(o, method, url, form, resp, err);
    wipe_buf(form);
    if (rc == 0) {
        out->status = resp->status;
        rc = classify(resp, out->errcode);
        if (rc == 0)
            rc = parse_token(o, resp, t, out->errcode);
        if (rc != 0)
            cx_error_set(err, rc, NULL, "oauth %s: token endpoint answered %ld (%s)", o->name,
                         resp->status, out->errcode);
    } else {
        snprintf(out->errcode, sizeof out->errcode, "%s", "unreachable");
    }
    OPENSSL_cleanse(resp, sizeof *resp);
    free(resp);
    return rc;
}

/* Meta: exchange a (short- or long-lived) user token for a long-lived one. */
static int meta_exchange(cx_oauth_t *o, const char *token, cx_oauth_token_t *t, outcome_t *out,
                         cx_error_t *err)
{
    cx_buf_t f;
    cx_buf_init(&f, FORM_MAX);
    form_kv(&f, "grant_type", "fb_exchange_token");
    form_kv(&f, "client_id", o->client_id);
    form_kv(&f, "client_secret", o->client_secret);
    form_kv(&f, "fb_exchange_token", token);
    return token_request(o, "GET", o->exchange_url, &f, t, out, err);
}

/* Instagram: short-lived token -> long-lived token. */
static int ig_exchange(cx_oauth_t *o, const char *token, cx_oauth_token_t *t, outcome_t *out,
                       cx_error_t *err)
{
    cx_buf_t f;
    cx_buf_init(&f, FORM_MAX);
    form_kv(&f, "grant_type", "ig_exchange_token");
    form_kv(&f, "client_secret", o->client_secret);
    form_kv(&f, "access_token", token);
    return token_request(o, "GET", o->exchange_url, &f, t, out, err);
}

/* Refreshes cur into next by the provider's strategy. */
static int provider_refresh(cx_oauth_t *o, const cx_oauth_token_t *cur, cx_oauth_token_t *next,
                            outcome_t *out, cx_error_t *err)
{
    memset(next, 0, sizeof *next);
    cx_buf_t f;
    cx_buf_init(&f, FORM_MAX);
    int rc;
    switch (o->strategy) {
    case CX_OAUTH_META:
        wipe_buf(&f);
        rc = meta_exchange(o, cur->access_token, next, out, err);
        break;
    case CX_OAUTH_INSTAGRAM:
        form_kv(&f, "grant_type", "ig_refresh_token");
        form_kv(&f, "access_token", cur->access_token);
        rc = token_request(o, "GET", o->refresh_url, &f, next, out, err);
        break;
    default:
        if (cur->refresh_token[0] == '\0') {
            wipe_buf(&f);
            snprintf(out->errcode, sizeof out->errcode, "%s", "no_refresh_token");
            return cx_error_set(err, CX_EREAUTH_REQUIRED, NULL, "oauth %s: no refresh token stored",
                                o->name);
        }
        form_kv(&f, "grant_type", "refresh_token");
        form_kv(&f, "refresh_token", cur->refresh_token);
        form_kv(&f, "client_id", o->client_id);
        form_kv(&f, "client_secret", o->client_secret);
        rc = token_request(o, "POST", o->token_url, &f, next, out, err);
        break;
    }
    if (rc != 0)
        return rc;
    /* RFC 6749 6: a new refresh token replaces the old one; none means keep it (Google never
     * sends one on refresh). Same for the scope. */
    if (next->refresh_token[0] == '\0')
        memcpy(next->refresh_token, cur->refresh_token, sizeof next->refresh_token);
    if (next->scope[0] == '\0')
        memcpy(next->scope, cur->scope, sizeof next->scope);
    return 0;
}

/* Exchanges an authorisation code (with the PKCE verifier) for a token. */
static int provider_exchange(cx_oauth_t *o, const char *code, const char *verifier,
                             cx_oauth_token_t *t, outcome_t *out, cx_error_t *err)
{
    memset(t, 0, sizeof *t);
    cx_buf_t f;
    cx_buf_init(&f, FORM_MAX);
    int rc;
    cx_oauth_token_t *tmp = NULL;
    switch (o->strategy) {
    case CX_OAUTH_META:
        form_kv(&f, "client_id", o->client_id);
        form_kv(&f, "redirect_uri", o->redirect_uri);
        form_kv(&f, "client_secret", o->client_secret);
        form_kv(&f, "code", code);
        form_kv(&f, "code_verifier", verifier);
        if ((tmp = calloc(1, sizeof *tmp)) == NULL) {
            wipe_buf(&f);
            return cx_error_set(err, CX_ENOMEM, NULL, "oauth: out of memory");
        }
        rc = token_request(o, "GET", o->token_url, &f, tmp, out, err);
        if (rc == 0)
            rc = meta_exchange(o, tmp->access_token, t, out, err);
        break;
    case CX_OAUTH_INSTAGRAM:
        form_kv(&f, "client_id", o->client_id);
        form_kv(&f, "client_secret", o->client_secret);
        form_kv(&f, "grant_type", "authorization_code");
        form_kv(&f, "redirect_uri", o->redirect_uri);
        form_kv(&f, "code", code);
        form_kv(&f, "code_verifier", verifier);
        if ((tmp = calloc(1, sizeof *tmp)) == NULL) {
            wipe_buf(&f);
            return cx_error_set(err, CX_ENOMEM, NULL, "oauth: out of memory");
        }
        rc = token_request(o, "POST", o->token_url, &f, tmp, out, err);
        if (rc == 0)
            rc = ig_exchange(o, tmp->access_token, t, out, err);
        break;
    default:
        form_kv(&f, "grant_type", "authorization_code");
        form_kv(&f, "code", code);
        form_kv(&f, "redirect_uri", o->redirect_uri);
        form_kv(&f, "client_id", o->client_id);
        form_kv(&f, "client_secret", o->client_secret);
        form_kv(&f, "code_verifier", verifier);
        rc = token_request(o, "POST", o->token_url, &f, t, out, err);
        break;
    }
    cx_oauth_token_wipe(tmp);
    free(tmp);
    return rc;
}

/* ---- Sealed records ------------------------------------------------------------------------- */

static int put_str(unsigned char *b, size_t cap, size_t *o, const char *s)
{
    size_t n = strlen(s);
    if (n > 0xFFFF || *o + 2 + n > cap)
        return -1;
    b[(*o)++] = (unsigned char)(n >> 8);
    b[(*o)++] = (unsigned char)n;
    memcpy(b + *o, s, n);
    *o += n;
    return 0;
}

static int get_str(const unsigned char *b, size_t len, size_t *o, char *out, size_t cap)
{
    if (*o + 2 > len)
        return -1;
    size_t n = (size_t)b[*o] << 8 | b[*o + 1];
    *o += 2;
    if (*o + n > len || n >= cap || memchr(b + *o, 0, n))
        return -1;
    memcpy(out, b + *o, n);
    out[n] = '\0';
    *o += n;
    return 0;
}

static void put_i64(unsigned char *b, size_t *o, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 7; i >= 0; i--)
        b[(*o)++] = (unsigned char)(u >> (8 * i));
}

static int get_i64(const unsigned char *b, size_t len, size_t *o, int64_t *v)
{
    if (*o + 8 > len)
        return -1;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | b[(*o)++];
    *v = (int64_t)u;
    return 0;
}

#define TOKEN_PT_MAX (2 * CX_OAUTH_TOKEN_MAX + 1024)

static int token_encode(const cx_oauth_token_t *t, unsigned char *b, size_t cap, size_t *len)
{
    size_t o = 0;
    b[o++] = 'T';
    b[o++] = '1';
    b[o++] = t->unhealthy ? 1 : 0;
    put_i64(b, &o, t->expires_at);
    put_i64(b, &o, t->issued_at);
    if (put_str(b, cap, &o, t->access_token) || put_str(b, cap, &o, t->refresh_token) ||
        put_str(b, cap, &o, t->token_type) || put_str(b, cap, &o, t->scope) ||
        put_str(b, cap, &o, t->error_code))
        return -1;
    *len = o;
    return 0;
}

static int token_decode(const unsigned char *b, size_t len, cx_oauth_token_t *t)
{
    size_t o = 3;
    if (len < 3 || b[0] != 'T' || b[1] != '1' || b[2] > 1)
        return -1;
    t->unhealthy = b[2];
    if (get_i64(b, len, &o, &t->expires_at) || get_i64(b, len, &o, &t->issued_at) ||
        get_str(b, len, &o, t->access_token, sizeof t->access_token) ||
        get_str(b, len, &o, t->refresh_token, sizeof t->refresh_token) ||
        get_str(b, len, &o, t->token_type, sizeof t->token_type) ||
        get_str(b, len, &o, t->scope, sizeof t->scope) ||
        get_str(b, len, &o, t->error_code, sizeof t->error_code) || o != len)
        return -1;
    return 0;
}

/* Seals t under AAD id and writes it with the fence (0: a new one). */
static int seal_put(cx_oauth_t *o, const char *id, const cx_oauth_token_t *t, uint64_t fence,
                    uint64_t *written, cx_error_t *err)
{
    unsigned char *pt = malloc(TOKEN_PT_MAX), *sealed = malloc(TOKEN_PT_MAX + CX__AEAD_OVERHEAD);
    size_t ptlen = 0, slen = 0;
    int rc = 0;
    if (pt == NULL || sealed == NULL)
        rc = cx_error_set(err, CX_ENOMEM, NULL, "oauth: out of memory");
    else if (token_encode(t, pt, TOKEN_PT_MAX, &ptlen) != 0)
        rc = cx_error_set(err, CX_EINVAL, NULL, "oauth: token too large");
    else if (cx__aead_seal(o->key, id, strlen(id), pt, ptlen, sealed,
                           TOKEN_PT_MAX + CX__AEAD_OVERHEAD, &slen) != 0)
        rc = cx_error_set(err, CX_ECRYPTO, NULL, "oauth: cannot seal the token");
    else
        rc = o->store->ops->put(o->store, id, sealed, slen, fence, written, err);
    if (pt)
        OPENSSL_cleanse(pt, TOKEN_PT_MAX);
    free(pt);
    free(sealed);
    return rc;
}

/* Reads and opens id's token into t (t->version = its fence). */
static int load(cx_oauth_t *o, const char *id, cx_oauth_token_t *t, cx_error_t *err)
{
    unsigned char *sealed = malloc(CX_TOKEN_VALUE_MAX), *pt = malloc(CX_TOKEN_VALUE_MAX);
    size_t slen = 0, ptlen = 0;
    uint64_t fence = 0;
    int rc = 0;
    if (sealed == NULL || pt == NULL) {
        rc = cx_error_set(err, CX_ENOMEM, NULL, "oauth: out of memory");
        goto out;
    }
    rc = o->store->ops->get(o->store, id, sealed, CX_TOKEN_VALUE_MAX, &slen, &fence, err);
    if (rc != 0)
        goto out;
    memset(t, 0, sizeof *t);
    rc = cx__aead_open(o->key, id, strlen(id), sealed, slen, pt, CX_TOKEN_VALUE_MAX, &ptlen);
    if (rc == CX_ECONFIG) {
        rc = cx_error_set(err, rc, NULL, "oauth %s: token stored in a newer format", o->name);
        goto out;
    }
    if (rc != 0 || token_decode(pt, ptlen, t) != 0) {
        cx_oauth_token_wipe(t);
        rc = cx_error_set(err, CX_ECRYPTO, NULL,
                          "oauth %s: stored token cannot be opened (another key, or altered)",
                          o->name);
        goto out;
    }
    t->version = fence;
out:
    if (pt)
        OPENSSL_cleanse(pt, CX_TOKEN_VALUE_MAX);
    free(pt);
    free(sealed);
    return rc;
}

/* ---- Log lines and audit records ------------------------------------------------------------ */

static void log_event(cx_oauth_t *o, cx_log_level_t level, const char *tenant, const char *account,
                      const char *outcome, int rc, const outcome_t *out, double latency_ms,
                      const char *msg)
{
    cx_log_record_t r;
    if (!cx_log_begin(&r, o->logger, level))
        return;
    cx_log_set_connector(&r, o->name);
    cx_log_set_tenant_id(&r, tenant);
    cx_log_set_integration_id(&r, account);
    cx_log_set_capability(&r, "oauth");
    cx_log_set_outcome(&r, outcome);
    if (rc != 0)
        cx_log_set_error(&r, rc);
    if (out && out->status)
        cx_log_set_upstream_status(&r, (int)out->status);
    if (out && out->errcode[0])
        cx_log_set_pii(&r, "provider_error", out->errcode, CX_PII_NONE);
    if (latency_ms >= 0)
        cx_log_set_latency_ms(&r, latency_ms);
    cx_log_set_msg(&r, msg);
    cx_log_emit(&r);
}

static void audit_change(cx_oauth_t *o, const char *tenant, const char *account, const char *change,
                         cx_audit_outcome_t outcome, const char *code)
{
    if (o->audit == NULL)
        return;
    char integration[ID_MAX];
    snprintf(integration, sizeof integration, "%s:%s", o->name, account);
    cx_error_t e = {0};
    if (cx_audit_integration_changed(o->audit, tenant, NULL, integration, change, outcome,
                                     code && code[0] ? code : NULL, NULL, &e) != 0)
        log_event(o, CX_LOG_WARN, tenant, account, "audit_failed", e.code, NULL, -1,
                  "oauth: the integration change could not be audited");
}

/* ---- Lifecycle ------------------------------------------------------------------------------ */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_ok;

static void curl_init_once(void)
{
    curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

static void free_strings(cx_oauth_t *o)
{
    char **all[] = {&o->name,        &o->authorize_url, &o->token_url,     &o->exchange_url,
                    &o->refresh_url, &o->client_id,     &o->client_secret, &o->redirect_uri,
                    &o->scope,       &o->extra};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (*all[i]) {
            OPENSSL_cleanse(*all[i], strlen(*all[i]));
            free(*all[i]);
            *all[i] = NULL;
        }
    }
}

int cx_oauth_provider_defaults(cx_oauth_strategy_t strategy, cx_oauth_provider_t *p)
{
    if (p == NULL)
        return CX_EINVAL;
    switch (strategy) {
    case CX_OAUTH_GOOGLE:
        p->authorize_url = "https://accounts.google.com/o/oauth2/v2/auth";
        p->token_url = "https://oauth2.googleapis.com/token";
        break;
    case CX_OAUTH_META:
        p->authorize_url = "https://www.facebook.com/v19.0/dialog/oauth";
        p->token_url = "https://graph.facebook.com/v19.0/oauth/access_token";
        p->exchange_url = "https://graph.facebook.com/v19.0/oauth/access_token";
        break;
    case CX_OAUTH_INSTAGRAM:
        p->authorize_url = "https://www.instagram.com/oauth/authorize";
        p->token_url = "https://api.instagram.com/oauth/access_token";
        p->exchange_url = "https://graph.instagram.com/access_token";
        p->refresh_url = "https://graph.instagram.com/refresh_access_token";
        break;
    default:
        return CX_EINVAL;
    }
    p->strategy = strategy;
    return 0;
}

int cx_oauth_token_key_load(const char *secrets_dir, unsigned char key[32], cx_error_t *err)
{
    return cx__aead_key_load(secrets_dir, "runtime", "token_key", key, err);
}

static int dup_field(char **dst, const char *src, const char *path, int required, cx_error_t *err)
{
    if (src == NULL || src[0] == '\0') {
        if (required)
            return cx_error_set(err, CX_EINVAL, path, "oauth: provider.%s is required",
                                path + strlen("provider."));
        return 0;
    }
    if (strlen(src) > 4096)
        return cx_error_set(err, CX_EINVAL, path, "oauth: %s too long", path);
    if ((*dst = strdup(src)) == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "oauth: out of memory");
    return 0;
}

int cx_oauth_new(const cx_oauth_config_t *cfg, cx_oauth_t **out, cx_error_t *err)
{
    if (out == NULL || cfg == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "oauth: NULL config or out");
    *out = NULL;
    const cx_oauth_provider_t *p = cfg->provider;
    if (p == NULL)
        return cx_error_set(err, CX_EINVAL, "provider", "oauth: no provider");
    if (!name_ok(p->name))
        return cx_error_set(err, CX_EINVAL, "provider.name",
                            "oauth: provider name must be 1 to "
                            "32 of [a-z0-9_-]");
    if (p->strategy < CX_OAUTH_STANDARD || p->strategy > CX_OAUTH_INSTAGRAM)
        return cx_error_set(err, CX_EINVAL, "provider.strategy", "oauth: unknown strategy");
    if (cfg->store == NULL || cfg->store->ops == NULL)
        return cx_error_set(err, CX_EINVAL, "store", "oauth: no token store");
    if (cfg->token_key == NULL)
        return cx_error_set(err, CX_EINVAL, "token_key", "oauth: no token key");
    pthread_once(&curl_once, curl_init_once);
    if (!curl_ok)
        return cx_error_set(err, CX_ECRYPTO, NULL, "oauth: libcurl could not be initialised");
    cx_oauth_t *o = calloc(1, sizeof *o);
    if (o == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "oauth: out of memory");
    int needs_exchange = p->strategy == CX_OAUTH_META || p->strategy == CX_OAUTH_INSTAGRAM;
    int rc = 0;
    if ((rc = dup_field(&o->name, p->name, "provider.name", 1, err)) ||
        (rc = dup_field(&o->authorize_url, p->authorize_url, "provider.authorize_url", 1, err)) ||
        (rc = dup_field(&o->token_url, p->token_url, "provider.token_url", 1, err)) ||
        (rc = dup_field(&o->exchange_url, p->exchange_url, "provider.exchange_url", needs_exchange,
                        err)) ||
        (rc = dup_field(&o->refresh_url, p->refresh_url, "provider.refresh_url",
                        p->strategy == CX_OAUTH_INSTAGRAM, err)) ||
        (rc = dup_field(&o->client_id, p->client_id, "provider.client_id", 1, err)) ||
        (rc = dup_field(&o->client_secret, p->client_secret, "provider.client_secret", 1, err)) ||
        (rc = dup_field(&o->redirect_uri, p->redirect_uri, "provider.redirect_uri", 1, err)) ||
        (rc = dup_field(&o->scope, p->scope, "provider.scope", 0, err)) ||
        (rc = dup_field(&o->extra, p->extra_authorize_params, "provider.extra_authorize_params", 0,
                        err))) {
        free_strings(o);
        free(o);
        return rc;
    }
    o->strategy = p->strategy;
    o->ahead_s = p->refresh_ahead_s ? p->refresh_ahead_s
                 : needs_exchange   ? AHEAD_LONG_LIVED_S
                                    : AHEAD_STANDARD_S;
    o->store = cfg->store;
    memcpy(o->key, cfg->token_key, sizeof o->key);
    if (cfg->clock && cfg->clock->now) {
        o->clock = *cfg->clock;
        o->has_clock = 1;
    }
    o->logger = cfg->logger;
    o->audit = cfg->audit;
    o->http_timeout_ms = cfg->http_timeout_ms ? cfg->http_timeout_ms : DEFAULT_HTTP_TIMEOUT_MS;
    o->lock_ttl_ms = cfg->lock_ttl_ms ? cfg->lock_ttl_ms : 2 * o->http_timeout_ms + 5000;
    o->wait_ms = cfg->wait_ms ? cfg->wait_ms : o->lock_ttl_ms;
    o->state_ttl_s = cfg->state_ttl_s ? cfg->state_ttl_s : DEFAULT_STATE_TTL_S;
    o->http = cx__oauth_http_curl;
    pthread_mutex_init(&o->entries_mu, NULL);
    *out = o;
    return 0;
}

void cx_oauth_free(cx_oauth_t *o)
{
    if (o == NULL)
        return;
    for (size_t b = 0; b < ENTRY_BUCKETS; b++) {
        entry_t *e = o->entries[b];
        while (e) {
            entry_t *next = e->next;
            pthread_mutex_destroy(&e->mu);
            free(e);
            e = next;
        }
    }
    pthread_mutex_destroy(&o->entries_mu);
    free_strings(o);
    OPENSSL_cleanse(o->key, sizeof o->key);
    free(o);
}

void cx_token_store_destroy(cx_token_store_t *s)
{
    if (s)
        s->ops->destroy(s);
}

/* The in-process state of a key, created on first use and kept (one per account). */
static entry_t *entry_get(cx_oauth_t *o, const char *id)
{
    uint32_t h = 2166136261u;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    pthread_mutex_lock(&o->entries_mu);
    entry_t **slot = &o->entries[h % ENTRY_BUCKETS], *e = *slot;
    while (e && strcmp(e->id, id) != 0)
        e = e->next;
    if (e == NULL && (e = calloc(1, sizeof *e)) != NULL) {
        snprintf(e->id, sizeof e->id, "%s", id);
        pthread_mutex_init(&e->mu, NULL);
        e->next = *slot;
        *slot = e;
    }
    pthread_mutex_unlock(&o->entries_mu);
    return e;
}

/* ---- Authorisation -------------------------------------------------------------------------- */

static int random_b64url(char out[CX_OAUTH_STATE_SIZE])
{
    unsigned char r[32];
    if (RAND_bytes(r, sizeof r) != 1)
        return CX_ECRYPTO;
    cx__b64url_encode(r, sizeof r, out, CX_OAUTH_STATE_SIZE);
    OPENSSL_cleanse(r, sizeof r);
    return 0;
}

static void state_aad(const cx_oauth_t *o, const char *state, char *aad, size_t cap)
{
    snprintf(aad, cap, "state/%s/%s", o->name, state);
}

int cx_oauth_authorize_url(cx_oauth_t *o, const char *tenant, const char *account, char *url,
                           size_t cap, char state_out[CX_OAUTH_STATE_SIZE], cx_error_t *err)
{
    char id[ID_MAX];
    if (o == NULL || url == NULL || cap == 0)
        return cx_error_set(err, CX_EINVAL, NULL, "oauth: bad arguments");
    url[0] = '\0';
    int rc = make_id(o, tenant, account, id, err);
    if (rc != 0)
        return rc;
    char state[CX_OAUTH_STATE_SIZE], verifier[CX_OAUTH_STATE_SIZE], challenge[CX_OAUTH_STATE_SIZE];
    unsigned char digest[32];
    unsigned int dlen = 0;
    if (random_b64url(state) != 0 || random_b64url(verifier) != 0 ||
        EVP_Digest(verifier, strlen(verifier), digest, &dlen, EVP_sha256(), NULL) != 1)
        return cx_error_set(err, CX_ECRYPTO, NULL, "oauth: no random bytes");
    cx__b64url_encode(digest, sizeof digest, challenge, sizeof challenge);

    /* The state record: who it is for and the verifier, sealed, stored for state_ttl_s. */
    unsigned char pt[600], sealed[600 + CX__AEAD_OVERHEAD];
    size_t o_ = 0, slen = 0;
    pt[o_++] = 'S';
    pt[o_++] = '1';
    put_i64(pt, &o_, now_s(o));
    put_str(pt, sizeof pt, &o_, tenant);
    put_str(pt, sizeof pt, &o_, account);
    put_str(pt, sizeof pt, &o_, verifier);
    char aad[128];
    state_aad(o, state, aad, sizeof aad);
    if (cx__aead_seal(o->key, aad, strlen(aad), pt, o_, sealed, sizeof sealed, &slen) != 0)
        rc = cx_error_set(err, CX_ECRYPTO, NULL, "oauth: cannot seal the state");
    else
        rc = o->store->ops->state_put(o->store, state, sealed, slen, o->state_ttl_s, err);
    OPENSSL_cleanse(pt, sizeof pt);
    OPENSSL_cleanse(verifier, sizeof verifier);
    if (rc != 0)
        return rc;

    cx_buf_t q;
    cx_buf_init(&q, FORM_MAX);
    form_kv(&q, "response_type", "code");
    form_kv(&q, "client_id", o->client_id);
    form_kv(&q, "redirect_uri", o->redirect_uri);
    if (o->scope)
        form_kv(&q, "scope", o->scope);
    form_kv(&q, "state", state);
    form_kv(&q, "code_challenge", challenge);
    form_kv(&q, "code_challenge_method", "S256");
    if (o->strategy == CX_OAUTH_GOOGLE) {
        /* Without offline access Google issues no refresh token; without consent it issues
         * one only the first time a user authorises the app. */
        form_kv(&q, "access_type", "offline");
        form_kv(&q, "prompt", "consent");
    }
    int w = cx_buf_error(&q) ? -1
                             : snprintf(url, cap, "%s%c%s%s%s", o->authorize_url,
                                        strchr(o->authorize_url, '?') ? '&' : '?', q.data,
                                        o->extra ? "&" : "", o->extra ? o->extra : "");
    cx_buf_free(&q);
    if (w < 0 || (size_t)w >= cap) {
        url[0] = '\0';
        return cx_error_set(err, CX_ENOSPC, NULL, "oauth: authorisation URL longer than %zu", cap);
    }
    if (state_out)
        memcpy(state_out, state, CX_OAUTH_STATE_SIZE);
    log_event(o, CX_LOG_INFO, tenant, account, "authorize_started", 0, NULL, -1,
              "oauth authorisation started");
    return 0;
}

static int state_ok(const char *s)
{
    if (s == NULL || strlen(s) != CX_OAUTH_STATE_SIZE - 1)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return 0;
    return 1;
}

int cx_oauth_exchange_code(cx_oauth_t *o, const char *state, const char *code,
                           cx_oauth_grant_t *grant, cx_error_t *err)
{
    if (o == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "oauth: no manager");
    if (grant)
        memset(grant, 0, sizeof *grant);
    if (!state_ok(state))
        return cx_error_set(err, CX_EOAUTH_STATE, "state", "oauth: malformed state");
    if (code == NULL || code[0] == '\0' || strlen(code) > 4096)
        return cx_error_set(err, CX_EINVAL, "code", "oauth: missing or oversized code");
    unsigned char sealed[1024], pt[1024];
    size_t slen = 0, ptlen = 0;
    cx_error_t e2 = {0};
    int rc = o->store->ops->state_take(o->store, state, sealed, sizeof sealed, &slen, &e2);
    if (rc == CX_ENOTFOUND || rc == CX_ENOSPC)
        return cx_error_set(err, CX_EOAUTH_STATE, "state",
                            "oauth %s: state unknown, already used or expired", o->name);
    if (rc != 0)
        return cx_error_set(err, rc, NULL, "%s", e2.message);
    char aad[128], tenant[CX_OAUTH_ID_SIZE], account[CX_OAUTH_ID_SIZE],
        verifier[CX_OAUTH_STATE_SIZE];
    state_aad(o, state, aad, sizeof aad);
    int64_t created = 0;
    size_t off = 2;
    if (cx__aead_open(o->key, aad, strlen(aad), sealed, slen, pt, sizeof pt, &ptlen) != 0 ||
        ptlen < 2 || pt[0] != 'S' || pt[1] != '1' || get_i64(pt, ptlen, &off, &created) ||
        get_str(pt, ptlen, &off, tenant, sizeof tenant) ||
        get_str(pt, ptlen, &off, account, sizeof account) ||
        get_str(pt, ptlen, &off, verifier, sizeof verifier) || off != ptlen) {
        OPENSSL_cleanse(pt, sizeof pt);
        return cx_error_set(err, CX_EOAUTH_STATE, "state",
                            "oauth %s: state not issued by this provider", o->name);
    }
    OPENSSL_cleanse(pt, sizeof pt);
    if (now_s(o) > created + (int64_t)o->state_ttl_s) {
        OPENSSL_cleanse(verifier, sizeof verifier);
        return cx_error_set(err, CX_EOAUTH_STATE, "state", "oauth %s: state expired", o->name);
    }
    char id[ID_MAX];
    snprintf(id, sizeof id, "%s/%s/%s", o->name, tenant, account);
    cx_oauth_token_t *t = calloc(1, sizeof *t);
    if (t == NULL) {
        OPENSSL_cleanse(verifier, sizeof verifier);
        return cx_error_set(err, CX_ENOMEM, NULL, "oauth: out of memory");
    }
    outcome_t out = {"", 0};
    int64_t t0 = mono_ms();
    rc = provider_exchange(o, code, verifier, t, &out, err);
    OPENSSL_cleanse(verifier, sizeof verifier);
    if (rc == CX_EREAUTH_REQUIRED) {
        /* The code was refused (expired, used, revoked): the user starts again. The stored
         * token, if any, is not touched. */
        if (err)
            err->code = CX_EPROVIDER_REJECTED;
        rc = CX_EPROVIDER_REJECTED;
    }
    uint64_t written = 0;
    if (rc == 0)
        rc = seal_put(o, id, t, 0, &written, err);
    double ms = (double)(mono_ms() - t0);
    cx_oauth_token_wipe(t);
    free(t);
    if (rc != 0) {
        log_event(o, CX_LOG_WARN, tenant, account, "authorize_failed", rc, &out, ms,
                  "oauth code exchange failed");
        return rc;
    }
    entry_t *e = entry_get(o, id);
    if (e) { /* a fresh grant ends any backoff */
        pthread_mutex_lock(&e->mu);
        e->failures = 0;
        e->retry_at = 0;
        pthread_mutex_unlock(&e->mu);
    }
    if (grant) {
        snprintf(grant->tenant_id, sizeof grant->tenant_id, "%s", tenant);
        snprintf(grant->account_id, sizeof grant->account_id, "%s", account);
        grant->version = written;
    }
    log_event(o, CX_LOG_INFO, tenant, account, "authorized", 0, &out, ms,
              "oauth integration authorised");
    audit_change(o, tenant, account, "authorized", CX_AUDIT_SUCCEEDED, NULL);
    return 0;
}

/* ---- Refresh -------------------------------------------------------------------------------- */

static int needs_refresh(const cx_oauth_t *o, const cx_oauth_token_t *t, uint64_t force,
                         int64_t now)
{
    if (force && t->version == force)
        return 1;
    if (t->expires_at == 0)
        return 0;
    if (o->strategy == CX_OAUTH_INSTAGRAM && now - t->issued_at < IG_MIN_AGE_S &&
        now < t->expires_at)
        return 0;
    return now + (int64_t)o->ahead_s >= t->expires_at;
}

static int usable(const cx_oauth_token_t *t, int64_t now)
{
    return !t->unhealthy && (t->expires_at == 0 || now < t->expires_at);
}

static int reauth_err(const cx_oauth_t *o, const cx_oauth_token_t *t, cx_error_t *err)
{
    return cx_error_set(err, CX_EREAUTH_REQUIRED, NULL,
                        "oauth %s: integration unhealthy (%s): re-authorise it", o->name,
                        t->error_code[0] ? t->error_code : "refused");
}

static int64_t backoff_s(int failures)
{
    int64_t s = BACKOFF_MIN_S;
    for (int i = 1; i < failures && s < BACKOFF_MAX_S; i++)
        s *= 2;
    return s < BACKOFF_MAX_S ? s : BACKOFF_MAX_S;
}

/* Holding the store lock with fence: refresh t if it still needs it. Returns 0 (t is the
 * token to use), CX_ECONFLICT (our lock lapsed and a newer writer won: re-read), or an
 * error. */
static int refresh_holding(cx_oauth_t *o, entry_t *e, const char *tenant, const char *account,
                           const char *id, uint64_t force, uint64_t fence, cx_oauth_token_t *t,
                           cx_error_t *err)
{
    int rc = load(o, id, t, err);
    if (rc != 0)
        return rc;
    if (t->unhealthy)
        return reauth_err(o, t, err);
    int64_t now = now_s(o);
    if (!needs_refresh(o, t, force, now))
        return 0; /* the previous holder refreshed it just before we got the lock */
    cx_oauth_token_t *next = malloc(sizeof *next);
    if (next == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "oauth: out of memory");
    outcome_t out = {"", 0};
    cx_error_t e2 = {0};
    int64_t t0 = mono_ms();
    rc = provider_refresh(o, t, next, &out, &e2);
    double ms = (double)(mono_ms() - t0);
    uint64_t written = 0;
    if (rc == 0) {
        rc = seal_put(o, id, next, fence, &written, &e2);
        if (rc == 0) {
            e->failures = 0;
            e->retry_at = 0;
            next->version = written;
            memcpy(t, next, sizeof *t);
            log_event(o, CX_LOG_INFO, tenant, account, "refreshed", 0, &out, ms,
                      "oauth token refreshed");
        } else if (rc == CX_ECONFLICT) {
            log_event(o, CX_LOG_WARN, tenant, account, "refresh_superseded", rc, &out, ms,
                      "oauth refresh lock lapsed mid-refresh: a newer token won, this one is "
                      "discarded");
        } else {
            cx_error_set(err, rc, NULL, "%s", e2.message);
            log_event(o, CX_LOG_ERROR, tenant, account, "refresh_unsaved", rc, &out, ms,
                      "oauth token refreshed but could not be stored");
        }
        cx_oauth_token_wipe(next);
        free(next);
        return rc;
    }
    cx_oauth_token_wipe(next);
    free(next);
    if (rc == CX_EREAUTH_REQUIRED) {
        t->unhealthy = 1;
        snprintf(t->error_code, sizeof t->error_code, "%s", out.errcode);
        int prc = seal_put(o, id, t, fence, &written, &e2);
        if (prc == CX_ECONFLICT)
            return prc; /* re-authorised or refreshed meanwhile: that one counts */
        log_event(o, CX_LOG_WARN, tenant, account, "unhealthy", rc, &out, ms,
                  "oauth refresh refused: integration unhealthy until re-authorised");
        if (prc == 0)
            audit_change(o, tenant, account, "unhealthy", CX_AUDIT_FAILED, t->error_code);
        return reauth_err(o, t, err);
    }
    /* Transient (or a refusal that is not a revocation): back off, keep a valid token. */
    e->failures++;
    e->last_rc = rc;
    e->retry_at = now + backoff_s(e->failures);
    log_event(o, CX_LOG_WARN, tenant, account, "refresh_failed", rc, &out, ms,
              "oauth refresh failed; backing off");
    if (usable(t, now))
        return 0;
    return cx_error_set(err, rc, NULL, "%s", e2.message[0] ? e2.message : cx_strerror(rc));
}

/* With the key's mutex held: get t fresh, refreshing or waiting for whoever is. */
static int refresh_locked(cx_oauth_t *o, entry_t *e, const char *tenant, const char *account,
                          const char *id, uint64_t force, cx_oauth_token_t *t, cx_error_t *err)
{
    int64_t deadline = mono_ms() + o->wait_ms;
    unsigned nap = 10;
    int conflicts = 0;
    for (;;) {
        int rc = load(o, id, t, err);
        if (rc != 0)
            return rc;
        if (t->unhealthy)
            return reauth_err(o, t, err);
        int64_t now = now_s(o);
        if (!needs_refresh(o, t, force, now))
            return 0;
        if (now < e->retry_at) { /* a refresh failed recently: no storm, keep what works */
            if (usable(t, now))
                return 0;
            return cx_error_set(err, e->last_rc, NULL,
                                "oauth %s: refresh failed recently; next attempt after backoff",
                                o->name);
        }
        uint64_t fence = 0;
        cx_error_t e2 = {0};
        rc = o->store->ops->lock(o->store, id, o->lock_ttl_ms, &fence, &e2);
        if (rc == CX_EIN_PROGRESS) {
            /* Another process refreshes: wait for its result instead of refreshing again. */
            if (mono_ms() >= deadline) {
                if (usable(t, now))
                    return 0;
                return cx_error_set(err, CX_ETIMEOUT, NULL,
                                    "oauth %s: another process is refreshing; waited %u ms",
                                    o->name, o->wait_ms);
            }
            sleep_ms(nap);
            nap = nap * 2 > 100 ? 100 : nap * 2;
            continue;
        }
        if (rc != 0) {
            if (usable(t, now))
                return 0; /* the store is in trouble, but the token we have still works */
            return cx_error_set(err, rc, NULL, "%s", e2.message);
        }
        rc = refresh_holding(o, e, tenant, account, id, force, fence, t, err);
        cx_error_t e3 = {0};
        o->store->ops->unlock(o->store, id, fence, &e3);
        if (rc != CX_ECONFLICT)
            return rc;
        /* A newer holder stored a token while our lock had lapsed: read it. */
        force = 0;
        if (++conflicts >= MAX_CONFLICTS)
            return cx_error_set(err, CX_ECONFLICT, NULL, "oauth %s: refresh kept losing its lock",
                                o->name);
    }
}

static int fresh_token(cx_oauth_t *o, const char *tenant, const char *account, uint64_t force,
                       cx_oauth_token_t *t, cx_error_t *err)
{
    char id[ID_MAX];
    int rc = make_id(o, tenant, account, id, err);
    if (rc != 0)
        return rc;
    rc = load(o, id, t, err);
    if (rc != 0)
        return rc;
    if (t->unhealthy)
        return reauth_err(o, t, err);
    if (!needs_refresh(o, t, force, now_s(o)))
        return 0; /* the common case: one store read, no lock */
    entry_t *e = entry_get(o, id);
    if (e == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "oauth: out of memory");
    pthread_mutex_lock(&e->mu);
    rc = refresh_locked(o, e, tenant, account, id, force, t, err);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

static int deliver(cx_oauth_t *o, const char *tenant, const char *account, uint64_t force,
                   char *out, size_t cap, uint64_t *version, cx_error_t *err)
{
    if (o == NULL || out == NULL || cap == 0)
        return cx_error_set(err, CX_EINVAL, NULL, "oauth: bad arguments");
    out[0] = '\0';
    cx_oauth_token_t *t = malloc(sizeof *t);
    if (t == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "oauth: out of memory");
    int rc = fresh_token(o, tenant, account, force, t, err);
    if (rc == 0) {
        size_t n = strlen(t->access_token);
        if (n >= cap)
            rc = cx_error_set(err, CX_ENOSPC, NULL, "oauth: token longer than the buffer");
        else
            memcpy(out, t->access_token, n + 1);
        if (version)
            *version = t->version;
    }
    cx_oauth_token_wipe(t);
    free(t);
    return rc;
}

int cx_oauth_access_token(cx_oauth_t *o, const char *tenant, const char *account, char *out,
                          size_t cap, uint64_t *version, cx_error_t *err)
{
    return deliver(o, tenant, account, 0, out, cap, version, err);
}

int cx_oauth_invalidate(cx_oauth_t *o, const char *tenant, const char *account, uint64_t version,
                        char *out, size_t cap, uint64_t *new_version, cx_error_t *err)
{
    if (version == 0)
        return cx_error_set(err, CX_EINVAL, "version", "oauth: version 0");
    return deliver(o, tenant, account, version, out, cap, new_version, err);
}

int cx_oauth_token_put(cx_oauth_t *o, const char *tenant, const char *account,
                       const cx_oauth_token_t *t, cx_error_t *err)
{
    char id[ID_MAX];
    if (o == NULL || t == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "oauth: bad arguments");
    int rc = make_id(o, tenant, account, id, err);
    if (rc != 0)
        return rc;
    if (t->access_token[0] == '\0' || memchr(t->access_token, 0, sizeof t->access_token) == NULL ||
        memchr(t->refresh_token, 0, sizeof t->refresh_token) == NULL)
        return cx_error_set(err, CX_EINVAL, "access_token", "oauth: no access token");
    cx_oauth_token_t *c = malloc(sizeof *c);
    if (c == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "oauth: out of memory");
    memcpy(c, t, sizeof *c);
    c->unhealthy = 0;
    c->error_code[0] = '\0';
    if (c->issued_at == 0)
        c->issued_at = now_s(o);
    if (c->token_type[0] == '\0')
        snprintf(c->token_type, sizeof c->token_type, "%s", "Bearer");
    rc = seal_put(o, id, c, 0, NULL, err);
    cx_oauth_token_wipe(c);
    free(c);
    if (rc == 0) {
        entry_t *e = entry_get(o, id);
        if (e) {
            pthread_mutex_lock(&e->mu);
            e->failures = 0;
            e->retry_at = 0;
            pthread_mutex_unlock(&e->mu);
        }
    }
    return rc;
}

int cx_oauth_token_get(cx_oauth_t *o, const char *tenant, const char *account,
                       cx_oauth_token_t *out, cx_error_t *err)
{
    char id[ID_MAX];
    if (o == NULL || out == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "oauth: bad arguments");
    int rc = make_id(o, tenant, account, id, err);
    return rc != 0 ? rc : load(o, id, out, err);
}

int cx_oauth_token_delete(cx_oauth_t *o, const char *tenant, const char *account, cx_error_t *err)
{
    char id[ID_MAX];
    if (o == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "oauth: bad arguments");
    int rc = make_id(o, tenant, account, id, err);
    if (rc == 0)
        rc = o->store->ops->del(o->store, id, err);
    if (rc == 0)
        audit_change(o, tenant, account, "disconnected", CX_AUDIT_SUCCEEDED, NULL);
    return rc;
}

#ifndef CX_WITH_REDIS
/* Built without hiredis: the symbol exists so callers link in both configurations. */
int cx_token_store_redis(const char *environment, const cx_redis_options_t *opts,
                         cx_token_store_t **out, cx_error_t *err)
{
    (void)environment;
    (void)opts;
    if (out)
        *out = NULL;
    return cx_error_set(err, CX_ENOT_IMPLEMENTED, NULL,
                        "libcx was built without Redis (CX_WITH_REDIS=OFF)");
}
#endif
