/* The outbound side of `cx serve`: stores, audit, OAuth apps, API keys, reload
 * (serve_outbound.h). The routes themselves are commands.c and oauth_routes.c. */
#define _POSIX_C_SOURCE 200809L
#include "serve_outbound.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cli.h"
#include "cx/connector.h"
#include "cx/options/v1/options.pb-c.h"

#define DEFAULT_STATE_TTL_S 600u

/* ---- Small shared helpers -------------------------------------------------------------------- */

const char *cx__outbound_header(const cx_gw_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

void cx__outbound_correlation_id(const cx_gw_request_t *req, char out[72])
{
    const char *h = cx__outbound_header(req, "X-Correlation-Id");
    if (h) {
        size_t n = strlen(h);
        int ok = n > 0 && n <= 64;
        for (size_t i = 0; ok && i < n; i++) {
            char c = h[i];
            ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == ':' || c == '-';
        }
        if (ok) {
            memcpy(out, h, n + 1);
            return;
        }
    }
    unsigned char r[12];
    if (RAND_bytes(r, sizeof r) != 1) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        memcpy(r, &ts, sizeof r < sizeof ts ? sizeof r : sizeof ts);
    }
    int n = snprintf(out, 72, "cx-");
    for (size_t i = 0; i < sizeof r; i++)
        n += snprintf(out + n, 72 - (size_t)n, "%02x", r[i]);
}

void cx__outbound_error(cx_gw_response_t *resp, int status, const char *cid, const char *code,
                        const char *cls, const char *msg, const char *extra)
{
    resp->status = status;
    resp->content_type = "application/json";
    cx_buf_reset(resp->body);
    cx_buf_puts(resp->body, "{\"ok\":false,\"correlationId\":");
    cx_cli_json_str(resp->body, cid, strlen(cid));
    cx_buf_printf(resp->body, ",\"errorCode\":\"%s\",\"errorClass\":\"%s\",\"message\":", code,
                  cls);
    cx_cli_json_str(resp->body, msg, strlen(msg));
    if (extra)
        cx_buf_puts(resp->body, extra);
    cx_buf_putc(resp->body, '}');
    cx_gw_header(resp, "Cache-Control", "no-store");
}

static void log_line(cx_logger_t *lg, cx_log_level_t level, const char *connector,
                     const char *outcome, int code, const char *msg)
{
    cx_log_record_t r;
    if (cx_log_begin(&r, lg, level)) {
        if (connector)
            cx_log_set_connector(&r, connector);
        cx_log_set_outcome(&r, outcome);
        if (code)
            cx_log_set_error(&r, code);
        cx_log_set_msg(&r, msg);
        cx_log_emit(&r);
    }
}

/* ---- API keys ------------------------------------------------------------------------------- */

const cx_apikey_t *cx__outbound_authenticate(cx_serve_outbound_t *so, cx__outbound_snap_t *snap,
                                             const char *route, const cx_gw_request_t *req,
                                             const char *cid, cx_gw_response_t *resp)
{
    size_t len = 0;
    const char *presented = cx_apikey_bearer(cx__outbound_header(req, "Authorization"), &len);
    const cx_apikey_t *k = presented ? cx_apikeys_find(snap->keys, presented, len) : NULL;
    if (k)
        return k;
    const char *code = presented ? "API_KEY_INVALID" : "API_KEY_MISSING";
    const char *msg = presented ? "the API key is not valid (unknown, revoked or mistyped)"
                                : "send the API key as `Authorization: Bearer <key>`";
    cx_counter_inc(so->auth_failures, (const char *[]){route, code}, 1);
    cx_log_record_t r;
    if (cx_log_begin(&r, so->log, CX_LOG_WARN)) {
        cx_log_set_correlation_id(&r, cid);
        cx_log_set_outcome(&r, "unauthenticated");
        cx_log_set_error_code(&r, code);
        cx_log_set_error_class(&r, "auth");
        cx_log_set_pii(&r, "route", route, CX_PII_NONE);
        cx_log_set_upstream_status(&r, 401);
        cx_log_set_msg(&r, "request without a valid API key");
        cx_log_emit(&r);
    }
    cx__outbound_error(resp, 401, cid, code, "auth", msg, NULL);
    cx_gw_header(resp, "WWW-Authenticate", "Bearer realm=\"cx\"");
    return NULL;
}

void cx__outbound_forbidden(cx_serve_outbound_t *so, const char *route, const cx_apikey_t *key,
                            const char *cid, const char *connector, const char *tenant,
                            const char *code, const char *msg, cx_gw_response_t *resp)
{
    cx_counter_inc(so->auth_failures, (const char *[]){route, code}, 1);
    cx_log_record_t r;
    if (cx_log_begin(&r, so->log, CX_LOG_WARN)) {
        cx_log_set_correlation_id(&r, cid);
        if (connector)
            cx_log_set_connector(&r, connector);
        if (tenant && cx_cli_tenant_ok(tenant))
            cx_log_set_tenant_id(&r, tenant);
        cx_log_set_outcome(&r, "forbidden");
        cx_log_set_error_code(&r, code);
        cx_log_set_error_class(&r, "auth");
        cx_log_set_pii(&r, "route", route, CX_PII_NONE);
        cx_log_set_pii(&r, "api_key_id", cx_apikey_id(key), CX_PII_NONE);
        cx_log_set_upstream_status(&r, 403);
        cx_log_set_msg(&r, msg);
        cx_log_emit(&r);
    }
    /* A refused attempt on a tenant's behalf is evidence: it goes into that tenant's chain. */
    if (so->audit && tenant && cx_cli_tenant_ok(tenant)) {
        char actor[CX_APIKEY_ID_MAX + 8];
        snprintf(actor, sizeof actor, "apikey:%s", cx_apikey_id(key));
        cx_audit_entry_t e = {.tenant_id = tenant,
                              .action = strcmp(route, "oauth") == 0 ? "integration.authorize"
                                                                    : "outbound.send",
                              .actor_id = actor,
                              .target = connector,
                              .correlation_id = cid,
                              .outcome = CX_AUDIT_DENIED,
                              .error_code = code};
        cx_error_t err;
        cx_error_clear(&err);
        if (cx_audit_append(so->audit, &e, NULL, &err) != 0)
            log_line(so->log, CX_LOG_WARN, connector, "audit_failed", err.code,
                     "a refused request could not be audited");
    }
    cx__outbound_error(resp, 403, cid, code, "auth", msg, NULL);
}

/* ---- Snapshots ------------------------------------------------------------------------------ */

static void snap_free(cx__outbound_snap_t *s)
{
    if (s == NULL)
        return;
    cx_apikeys_free(s->keys);
    for (size_t i = 0; i < s->n_apps; i++)
        cx_oauth_free(s->apps[i].oauth);
    free(s->apps);
    free(s);
}

cx__outbound_snap_t *cx__outbound_acquire(cx_serve_outbound_t *so)
{
    pthread_mutex_lock(&so->mu);
    cx__outbound_snap_t *s = so->snap;
    atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&so->mu);
    return s;
}

void cx__outbound_release(cx__outbound_snap_t *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        snap_free(s);
}

cx_oauth_t *cx__outbound_oauth(const cx__outbound_snap_t *snap, const char *connector)
{
    for (size_t i = 0; i < snap->n_apps; i++)
        if (strcmp(snap->apps[i].connector, connector) == 0)
            return snap->apps[i].oauth;
    return NULL;
}

/* ---- The "oauth" configuration -------------------------------------------------------------- */

static int strategy_of(const char *s, cx_oauth_strategy_t *out)
{
    static const struct {
        const char *name;
        cx_oauth_strategy_t v;
    } T[] = {{"standard", CX_OAUTH_STANDARD},
             {"google", CX_OAUTH_GOOGLE},
             {"meta", CX_OAUTH_META},
             {"instagram", CX_OAUTH_INSTAGRAM}};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (strcmp(s, T[i].name) == 0) {
            *out = T[i].v;
            return 0;
        }
    return -1;
}

/* https://..., or http:// to a loopback host (tests, local mocks): a client secret and codes
 * travel on these. */
static int url_ok(const char *u)
{
    if (strncmp(u, "https://", 8) == 0)
        return u[8] != '\0' && strpbrk(u, " \t\r\n") == NULL;
    if (strncmp(u, "http://", 7) != 0)
        return 0;
    const char *h = u + 7;
    static const char *const LOOP[] = {"127.0.0.1", "localhost", "[::1]"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(LOOP[i]);
        if (strncmp(h, LOOP[i], n) == 0 && (h[n] == ':' || h[n] == '/' || h[n] == '\0'))
            return strpbrk(u, " \t\r\n") == NULL;
    }
    return 0;
}

static int oops(char *why, size_t cap, const char *key, const char *what)
{
    snprintf(why, cap, "\"%s\" %s", key, what);
    return -1;
}

static const char *const URL_KEYS[] = {"authorize_url", "token_url", "exchange_url", "refresh_url",
                                       "redirect_uri"};

static int check_provider(const char *id, json_t *p, int have_base, char *why, size_t cap)
{
    char k[160];
    snprintf(k, sizeof k, "oauth.providers.%.64s", id);
    if (!cx_cli_connector_id_ok(id, strlen(id)))
        return oops(why, cap, k, "is not a connector id ([a-z0-9_-]{1,63})");
    if (strlen(id) > 32)
        return oops(why, cap, k, "is too long for an OAuth provider name (32)");
    if (!json_is_object(p))
        return oops(why, cap, k, "must be an object {strategy, client_id, ...}");
    cx_oauth_strategy_t st = CX_OAUTH_STANDARD;
    const char *key;
    json_t *v;
    json_object_foreach(p, key, v)
    {
        snprintf(k, sizeof k, "oauth.providers.%.64s.%.64s", id, key);
        int is_url = 0;
        for (size_t i = 0; i < sizeof URL_KEYS / sizeof URL_KEYS[0]; i++)
            is_url |= strcmp(key, URL_KEYS[i]) == 0;
        if (strcmp(key, "strategy") == 0) {
            if (!json_is_string(v) || strategy_of(json_string_value(v), &st) != 0)
                return oops(why, cap, k, "must be standard, google, meta or instagram");
        } else if (is_url) {
            if (!json_is_string(v) || !url_ok(json_string_value(v)))
                return oops(why, cap, k,
                            "must be an https:// URL (http:// only to a loopback address)");
        } else if (strcmp(key, "client_id") == 0 || strcmp(key, "scope") == 0 ||
                   strcmp(key, "extra_authorize_params") == 0) {
            if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 2048)
                return oops(why, cap, k, "must be a non-empty string");
        } else if (strcmp(key, "refresh_ahead_s") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > 90 * 86400)
                return oops(why, cap, k, "must be an integer from 0 to 7776000");
        } else {
            return oops(why, cap, k, "is not a configuration key (see docs/oauth.md)");
        }
    }
    snprintf(k, sizeof k, "oauth.providers.%.64s", id);
    if (st == CX_OAUTH_STANDARD &&
        (!json_object_get(p, "authorize_url") || !json_object_get(p, "token_url")))
        return oops(why, cap, k, "needs authorize_url and token_url (strategy standard)");
    if (!have_base && !json_object_get(p, "redirect_uri"))
        return oops(why, cap, k, "needs redirect_uri, or oauth.redirect_base_url");
    return 0;
}

int cx_serve_oauth_check(const json_t *cv, char *why, size_t cap)
{
    json_t *v = (json_t *)cv;
    if (!json_is_object(v))
        return oops(why, cap, "oauth",
                    "must be an object {redirect_base_url, state_ttl_s, providers}");
    const char *key;
    json_t *x;
    json_t *base = json_object_get(v, "redirect_base_url");
    json_object_foreach(v, key, x)
    {
        char k[96];
        snprintf(k, sizeof k, "oauth.%.64s", key);
        if (strcmp(key, "redirect_base_url") == 0) {
            if (!json_is_string(x) || !url_ok(json_string_value(x)))
                return oops(why, cap, k,
                            "must be an https:// URL (http:// only to a loopback address)");
        } else if (strcmp(key, "state_ttl_s") == 0) {
            if (!json_is_integer(x) || json_integer_value(x) < 30 || json_integer_value(x) > 86400)
                return oops(why, cap, k, "must be an integer from 30 to 86400");
        } else if (strcmp(key, "providers") == 0) {
            if (!json_is_object(x))
                return oops(why, cap, k, "must be {\"<connector>\": {...}}");
            const char *id;
            json_t *p;
            json_object_foreach(x, id, p)
            {
                if (check_provider(id, p, base != NULL, why, cap) != 0)
                    return -1;
            }
        } else {
            return oops(why, cap, k, "is not a configuration key (see docs/oauth.md)");
        }
    }
    return 0;
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A secret of the connector (through the runtime: cached, reloaded on SIGHUP) as a trimmed
 * string in out[cap]. Returns 0 or -1. */
static int read_secret(cx_serve_outbound_t *so, const char *connector, const char *name, char *out,
                       size_t cap)
{
    cx_ctx_t ctx = {so->rt, connector, 0, NULL};
    cx_secret_value_t v;
    int rc = cx_ctx_secret(&ctx, NULL, name, &v);
    size_t n = v.current_len;
    while (n && (v.current[n - 1] == '\n' || v.current[n - 1] == '\r' || v.current[n - 1] == ' '))
        n--;
    if (rc != 0 || n == 0 || n >= cap || memchr(v.current, '\0', n)) {
        OPENSSL_cleanse(&v, sizeof v);
        return -1;
    }
    memcpy(out, v.current, n);
    out[n] = '\0';
    OPENSSL_cleanse(&v, sizeof v);
    return 0;
}

/* One cx_oauth_t per configured provider. Returns 0, or -1 with why. */
static int build_apps(cx_serve_outbound_t *so, cx__outbound_snap_t *snap, char *why, size_t cap)
{
    json_t *providers = so->oauth ? json_object_get(so->oauth, "providers") : NULL;
    size_t n = providers ? json_object_size(providers) : 0;
    if (n == 0)
        return 0;
    if (so->secrets_dir == NULL) {
        snprintf(why, cap,
                 "oauth needs secrets_dir (runtime/token_key, <connector>/"
                 "oauth_client_secret)");
        return -1;
    }
    unsigned char key[32];
    cx_error_t err;
    cx_error_clear(&err);
    int rc = cx_oauth_token_key_load(so->secrets_dir, key, &err);
    if (rc != 0) {
        snprintf(why, cap, "oauth: runtime/token_key: %s (32 raw bytes or 64 hex digits)",
                 rc == CX_ENOTFOUND ? "missing" : "not a valid key");
        OPENSSL_cleanse(key, sizeof key);
        return -1;
    }
    if ((snap->apps = calloc(n, sizeof *snap->apps)) == NULL) {
        OPENSSL_cleanse(key, sizeof key);
        snprintf(why, cap, "out of memory");
        return -1;
    }
    const char *base = jstr(so->oauth, "redirect_base_url");
    json_t *ttl = json_object_get(so->oauth, "state_ttl_s");
    const char *id;
    json_t *p;
    rc = 0;
    json_object_foreach(providers, id, p)
    {
        if (cx_runtime_connector(so->rt, id) == NULL) {
            snprintf(why, cap, "oauth.providers.%.64s: no such connector is hosted", id);
            rc = -1;
            break;
        }
        char client_id[1024], secret[1024], redirect[2048];
        const char *cid = jstr(p, "client_id");
        if (cid == NULL) {
            if (read_secret(so, id, "oauth_client_id", client_id, sizeof client_id) != 0) {
                snprintf(why, cap,
                         "oauth.providers.%.64s: no client_id in the configuration nor %s/"
                         "oauth_client_id in the secrets directory",
                         id, id);
                rc = -1;
                break;
            }
            cid = client_id;
        }
        if (read_secret(so, id, "oauth_client_secret", secret, sizeof secret) != 0) {
            snprintf(why, cap, "oauth.providers.%.64s: missing secret %s/oauth_client_secret", id,
                     id);
            rc = -1;
            break;
        }
        const char *ru = jstr(p, "redirect_uri");
        if (ru == NULL) {
            size_t bl = strlen(base);
            while (bl && base[bl - 1] == '/')
                bl--;
            snprintf(redirect, sizeof redirect, "%.*s/oauth/%s/callback", (int)bl, base, id);
            ru = redirect;
        }
        cx_oauth_strategy_t st = CX_OAUTH_STANDARD;
        if (jstr(p, "strategy"))
            strategy_of(jstr(p, "strategy"), &st);
        cx_oauth_provider_t prov = {.name = id, .strategy = st};
        if (st != CX_OAUTH_STANDARD)
            cx_oauth_provider_defaults(st, &prov);
        const char *s;
        if ((s = jstr(p, "authorize_url")))
            prov.authorize_url = s;
        if ((s = jstr(p, "token_url")))
            prov.token_url = s;
        if ((s = jstr(p, "exchange_url")))
            prov.exchange_url = s;
        if ((s = jstr(p, "refresh_url")))
            prov.refresh_url = s;
        prov.client_id = cid;
        prov.client_secret = secret;
        prov.redirect_uri = ru;
        prov.scope = jstr(p, "scope");
        prov.extra_authorize_params = jstr(p, "extra_authorize_params");
        json_t *ahead = json_object_get(p, "refresh_ahead_s");
        prov.refresh_ahead_s = ahead ? (uint32_t)json_integer_value(ahead) : 0;
        cx_oauth_config_t oc = {.provider = &prov,
                                .store = so->tokens,
                                .token_key = key,
                                .logger = so->log,
                                .audit = so->audit,
                                .state_ttl_s =
                                    ttl ? (uint32_t)json_integer_value(ttl) : DEFAULT_STATE_TTL_S};
        cx__oauth_app_t *app = &snap->apps[snap->n_apps];
        snprintf(app->connector, sizeof app->connector, "%s", id);
        cx_error_clear(&err);
        int orc = cx_oauth_new(&oc, &app->oauth, &err);
        OPENSSL_cleanse(secret, sizeof secret);
        if (orc != 0) {
            snprintf(why, cap, "oauth.providers.%.64s: %s", id,
                     err.message[0] ? err.message : cx_strerror(orc));
            rc = -1;
            break;
        }
        snap->n_apps++;
    }
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

/* A new snapshot: the key file and the OAuth apps. Returns it, or NULL with why. */
static cx__outbound_snap_t *build_snap(cx_serve_outbound_t *so, int *key_file_missing, char *why,
                                       size_t cap)
{
    cx__outbound_snap_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    atomic_init(&s->refs, 1);
    int missing = 1;
    if (so->api_keys_path) {
        if (cx_apikeys_load(so->api_keys_path, &s->keys, &missing, why, cap) != 0) {
            snap_free(s);
            return NULL;
        }
    } else if (cx_apikeys_parse("", 0, "(no key file)", &s->keys, why, cap) != 0) {
        snap_free(s);
        return NULL;
    }
    if (key_file_missing)
        *key_file_missing = missing;
    if (build_apps(so, s, why, cap) != 0) {
        snap_free(s);
        return NULL;
    }
    return s;
}

/* ---- Audit: the outbound hook ------------------------------------------------------------ */

static int capability_number(const char *cap)
{
    if (cap == NULL)
        return 0;
    char name[96] = "CAPABILITY_ID_";
    size_t n = strlen(name);
    for (const char *p = cap; *p && n + 1 < sizeof name; p++)
        name[n++] = (*p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;
    name[n] = '\0';
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(
        &cx__options__v1__capability_id__descriptor, name);
    return v ? v->value : 0;
}

static cx_audit_outcome_t outcome_of(const char *o)
{
    if (strcmp(o, "sent") == 0 || strcmp(o, "reconciled") == 0)
        return CX_AUDIT_SUCCEEDED;
    if (strcmp(o, "replayed") == 0)
        return CX_AUDIT_DEDUPED;
    if (strcmp(o, "in_doubt") == 0)
        return CX_AUDIT_IN_DOUBT;
    if (strcmp(o, "invalid") == 0 || strcmp(o, "rate_limited") == 0 ||
        strcmp(o, "circuit_open") == 0)
        return CX_AUDIT_DENIED;
    return CX_AUDIT_FAILED;
}

static int audit_hook(void *ud, const cx_outbound_audit_t *a)
{
    cx_serve_outbound_t *so = ud;
    if (so->audit == NULL || a->tenant_id == NULL)
        return 0;
    char target[256];
    snprintf(target, sizeof target, "%s:%s", a->connector ? a->connector : "-",
             a->account_id && a->account_id[0] ? a->account_id : "-");
    const char *code = NULL;
    if (a->code) {
        code = cx_err_name(a->code);
        if (strncmp(code, "CX_E", 4) == 0)
            code += 4;
    }
    cx_audit_entry_t e = {.tenant_id = a->tenant_id,
                          .action = a->action,
                          .actor_id = a->actor,
                          .target = a->target && a->target[0] ? a->target : target,
                          .correlation_id = a->correlation_id,
                          .dedupe_key = a->intent_key,
                          .capability = capability_number(a->capability),
                          .outcome = outcome_of(a->outcome ? a->outcome : "error"),
                          .error_code = code,
                          .recorded_at_ms = a->finished_ms};
    cx_error_t err;
    cx_error_clear(&err);
    return cx_audit_append(so->audit, &e, NULL, &err);
}

/* ---- Lifecycle ------------------------------------------------------------------------------ */

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", a, b);
    return s;
}

static char *read_password(const char *path)
{
    char *pw = NULL;
    size_t len = 0;
    if (cx_cli_read_file(path, 4096, &pw, &len) != 0)
        return NULL;
    while (len && (pw[len - 1] == '\n' || pw[len - 1] == '\r'))
        pw[--len] = '\0';
    return pw;
}

int cx_serve_outbound_start(const cx_serve_config_t *cfg, cx_runtime_t *rt, cx_logger_t *log,
                            cx_metrics_t *metrics, cx_serve_outbound_t **out, char *why, size_t cap)
{
    *out = NULL;
    const char *env = cx_environment_name(cfg->environment);
    int strict = cfg->environment != CX_ENV_DEVELOPMENT;
    cx_serve_outbound_t *so = calloc(1, sizeof *so);
    if (so == NULL) {
        snprintf(why, cap, "out of memory");
        return CX_EXIT_INTERNAL;
    }
    pthread_mutex_init(&so->mu, NULL);
    so->rt = rt;
    so->log = log;
    so->environment = cfg->environment;
    so->auth_failures = cx_metrics_counter(
        metrics, "api_auth_failures_total",
        "Requests to the internal routes refused for their API key (401 and 403).",
        (const char *[]){"route", "error_code", NULL});
    int exit_code = CX_EXIT_INTERNAL;
    cx_error_t err;
    cx_error_clear(&err);
    if ((cfg->secrets_dir && (so->secrets_dir = strdup(cfg->secrets_dir)) == NULL) ||
        (cfg->api_keys_file && (so->api_keys_path = strdup(cfg->api_keys_file)) == NULL) ||
        (!cfg->api_keys_file && cfg->secrets_dir &&
         (so->api_keys_path = join(cfg->secrets_dir, "runtime/api_keys")) == NULL)) {
        snprintf(why, cap, "out of memory");
        goto fail;
    }
    so->oauth = cfg->oauth ? json_incref(cfg->oauth) : NULL;
    int have_oauth = so->oauth && json_object_size(json_object_get(so->oauth, "providers")) > 0;

    /* Stores: shared (Redis) whenever Redis is configured, as the dedupe store is. */
    int rc = 0;
    if (cfg->have_redis) {
        char *pw = NULL;
        if (cfg->redis_password_file && (pw = read_password(cfg->redis_password_file)) == NULL) {
            snprintf(why, cap, "redis.password_file %s: %s", cfg->redis_password_file,
                     errno ? strerror(errno) : "too large");
            exit_code = CX_EXIT_CONFIG;
            goto fail;
        }
        cx_redis_options_t ro = {.host = cfg->redis_host,
                                 .port = cfg->redis_port,
                                 .password = pw,
                                 .pool_size = cfg->redis_pool_size ? cfg->redis_pool_size : 8};
        rc = cx_intent_store_redis(env, &ro, NULL, &so->intents, &err);
        if (rc == 0)
            rc = cx_token_store_redis(env, &ro, &so->tokens, &err);
        if (rc == 0 && cfg->audit_dir == NULL)
            rc = cx_audit_store_redis(env, &ro, &so->audit_store, &err);
        if (pw) {
            OPENSSL_cleanse(pw, strlen(pw));
            free(pw);
        }
    } else {
        rc = cx_intent_store_embedded(env, 0, &so->intents, &err);
        if (rc == 0)
            rc = cx_token_store_embedded(&so->tokens, &err);
    }
    if (rc == 0 && cfg->audit_dir)
        rc = cx_audit_store_file(cfg->audit_dir, NULL, &so->audit_store, &err);
    if (rc != 0) {
        snprintf(why, cap, "outbound stores: %s", err.message[0] ? err.message : cx_strerror(rc));
        exit_code = rc == CX_ENOMEM ? CX_EXIT_INTERNAL : CX_EXIT_CONFIG;
        goto fail;
    }

    /* The audit trail: runtime/audit_key (and .previous) signs it. */
    if (so->audit_store && cfg->secrets_dir) {
        unsigned char buf[2048];
        cx_audit_key_t keys[2];
        size_t nk = 0;
        cx_error_clear(&err);
        rc = cx_audit_keys_load(cfg->secrets_dir, keys, buf, &nk, &err);
        if (rc == 0) {
            cx_audit_config_t ac = {.store = so->audit_store, .keys = keys, .n_keys = nk};
            rc = cx_audit_new(&ac, &so->audit, &err);
        }
        OPENSSL_cleanse(buf, sizeof buf);
        if (rc != 0 && rc != CX_ENOTFOUND) {
            snprintf(why, cap, "audit: %s", err.message[0] ? err.message : cx_strerror(rc));
            exit_code = CX_EXIT_CONFIG;
            goto fail;
        }
    }

    cx_outbound_config_t oc = {.intents = so->intents,
                               .audit = audit_hook,
                               .audit_ud = so,
                               .logger = log,
                               .metrics = metrics};
    cx_error_clear(&err);
    if ((rc = cx_outbound_new(&oc, &so->ob, &err)) != 0) {
        snprintf(why, cap, "outbound: %s", err.message[0] ? err.message : cx_strerror(rc));
        goto fail;
    }

    int keys_missing = 1;
    if ((so->snap = build_snap(so, &keys_missing, why, cap)) == NULL) {
        exit_code = CX_EXIT_CONFIG;
        goto fail;
    }
    int in_use = !keys_missing || have_oauth;
    if (in_use && so->audit == NULL) {
        if (strict) {
            snprintf(why, cap,
                     "refusing to start: the outbound routes (API keys or OAuth configured) need "
                     "an audit trail in %s: runtime/audit_key in the secrets directory",
                     env);
            exit_code = CX_EXIT_CONFIG;
            goto fail;
        }
        log_line(log, CX_LOG_WARN, NULL, "audit_disabled", 0,
                 so->audit_store ? "no runtime/audit_key: outbound commands and OAuth changes "
                                   "are not audited (development only)"
                                 : "no audit store (redis or audit_dir): outbound commands and "
                                   "OAuth changes are not audited (development only)");
    }
    cx_runtime_set_secret_source(rt, cx__outbound_secret_source, so);
    {
        cx_log_record_t r;
        if (cx_log_begin(&r, log, CX_LOG_INFO)) {
            cx_log_set_outcome(&r, "outbound_ready");
            cx_log_set_int(&r, "api_keys", (int64_t)cx_apikeys_count(so->snap->keys));
            cx_log_set_int(&r, "oauth_apps", (int64_t)so->snap->n_apps);
            cx_log_set_int(&r, "audit", so->audit != NULL);
            cx_log_set_msg(&r, "outbound routes ready");
            cx_log_emit(&r);
        }
    }
    *out = so;
    return CX_EXIT_OK;

fail:
    cx_serve_outbound_free(so);
    return exit_code;
}

void cx_serve_outbound_reload(cx_serve_outbound_t *so)
{
    if (so == NULL)
        return;
    char why[768];
    cx__outbound_snap_t *fresh = build_snap(so, NULL, why, sizeof why);
    if (fresh == NULL) {
        /* Keep serving with what was loaded: a typo must not lock every caller out. */
        log_line(so->log, CX_LOG_ERROR, NULL, "reload_refused", CX_ECONFIG, why);
        return;
    }
    pthread_mutex_lock(&so->mu);
    cx__outbound_snap_t *old = so->snap;
    so->snap = fresh;
    pthread_mutex_unlock(&so->mu);
    cx__outbound_release(old);
    cx_log_record_t r;
    if (cx_log_begin(&r, so->log, CX_LOG_INFO)) {
        cx_log_set_outcome(&r, "reloaded");
        cx_log_set_int(&r, "api_keys", (int64_t)cx_apikeys_count(fresh->keys));
        cx_log_set_int(&r, "oauth_apps", (int64_t)fresh->n_apps);
        cx_log_set_msg(&r, "api keys and oauth apps reloaded");
        cx_log_emit(&r);
    }
}

void cx_serve_outbound_free(cx_serve_outbound_t *so)
{
    if (so == NULL)
        return;
    if (so->rt)
        cx_runtime_set_secret_source(so->rt, NULL, NULL);
    cx__outbound_release(so->snap);
    cx_outbound_free(so->ob);
    cx_audit_free(so->audit);
    cx_audit_store_destroy(so->audit_store);
    cx_intent_store_destroy(so->intents);
    cx_token_store_destroy(so->tokens);
    json_decref(so->oauth);
    free(so->secrets_dir);
    free(so->api_keys_path);
    pthread_mutex_destroy(&so->mu);
    free(so);
}
