/* GET /oauth/<connector>/start and GET /oauth/<connector>/callback (docs/oauth.md).
 *
 * start is for internal callers, with an API key allowed for the connector, the tenant and the
 * `oauth` grant: the caller's backend asks for the authorisation URL of (tenant, account) and
 * sends the user's browser there (302 Location, the same URL in the JSON body for callers that
 * do not follow redirects). The state (32 random bytes) and the PKCE verifier are stored
 * server-side, sealed, for state_ttl_s, and are usable once (cx_oauth_authorize_url).
 *
 * callback is where the provider sends the browser back: no API key (a browser has none), the
 * single-use state is the credential. The code is exchanged with the verifier, the token is
 * stored encrypted under (tenant, account) and "integration.authorized" is audited
 * (cx_oauth_exchange_code). Answers are HTML for browsers (Accept: text/html) and JSON
 * otherwise; they never echo the code, the state, a token or the provider's free text.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cli.h"
#include "serve.h"
#include "serve_outbound.h"

/* account: what cx_oauth accepts, [A-Za-z0-9._:@+-]{1,128}. */
static int account_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._:@+-", c)))
            return 0;
    }
    return 1;
}

/* A provider's error code worth naming ([a-z0-9_.-]{1,64}); anything else is not echoed. */
static int code_like(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* Whether the query string has the parameter at all (even too long to be read). */
static int has_param(const char *query, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = query; p && *p;) {
        if (strncmp(p, name, n) == 0 && (p[n] == '=' || p[n] == '&' || p[n] == '\0'))
            return 1;
        p = strchr(p, '&');
        if (p)
            p++;
    }
    return 0;
}

static int wants_html(const cx_gw_request_t *req)
{
    const char *a = cx__outbound_header(req, "Accept");
    return a && strstr(a, "text/html") != NULL;
}

static void html_escape(cx_buf_t *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            cx_buf_puts(b, "&lt;");
            break;
        case '>':
            cx_buf_puts(b, "&gt;");
            break;
        case '&':
            cx_buf_puts(b, "&amp;");
            break;
        case '"':
            cx_buf_puts(b, "&quot;");
            break;
        case '\'':
            cx_buf_puts(b, "&#39;");
            break;
        default:
            cx_buf_putc(b, *s);
        }
    }
}

static void browser_headers(cx_gw_response_t *resp)
{
    cx_gw_header(resp, "Cache-Control", "no-store");
    cx_gw_header(resp, "Referrer-Policy", "no-referrer");
    cx_gw_header(resp, "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
    cx_gw_header(resp, "X-Content-Type-Options", "nosniff");
}

static void html_page(cx_gw_response_t *resp, int status, const char *title, const char *line,
                      const char *code)
{
    cx_buf_t *b = resp->body;
    resp->status = status;
    resp->content_type = "text/html; charset=utf-8";
    cx_buf_reset(b);
    cx_buf_puts(b, "<!doctype html><html><head><meta charset=\"utf-8\"><title>");
    html_escape(b, title);
    cx_buf_puts(b,
                "</title><style>body{font-family:sans-serif;margin:3em}</style></head><body><h1>");
    html_escape(b, title);
    cx_buf_puts(b, "</h1><p>");
    html_escape(b, line);
    cx_buf_puts(b, "</p>");
    if (code) {
        cx_buf_puts(b, "<p><small>");
        html_escape(b, code);
        cx_buf_puts(b, "</small></p>");
    }
    cx_buf_puts(b, "</body></html>\n");
    browser_headers(resp);
}

/* An error answer of the callback, HTML or JSON. */
static void callback_error(const cx_gw_request_t *req, cx_gw_response_t *resp, int status,
                           const char *cid, const char *code, const char *cls, const char *msg,
                           const char *extra)
{
    if (wants_html(req)) {
        html_page(resp, status, "Authorisation failed", msg, code);
        return;
    }
    cx__outbound_error(resp, status, cid, code, cls, msg, extra);
    browser_headers(resp);
}

static void log_oauth(cx_serve_outbound_t *so, cx_log_level_t level, const char *cid,
                      const char *connector, const char *outcome, const char *code, const char *cls,
                      const char *msg)
{
    cx_log_record_t r;
    if (cx_log_begin(&r, so->log, level)) {
        cx_log_set_correlation_id(&r, cid);
        cx_log_set_connector(&r, connector);
        cx_log_set_capability(&r, "oauth");
        cx_log_set_outcome(&r, outcome);
        if (code) {
            cx_log_set_error_code(&r, code);
            cx_log_set_error_class(&r, cls);
        }
        cx_log_set_msg(&r, msg);
        cx_log_emit(&r);
    }
}

static const char *code_name(int rc)
{
    const char *n = cx_err_name(rc);
    return strncmp(n, "CX_E", 4) == 0 ? n + 4 : n;
}

static void on_start(cx_serve_outbound_t *so, cx__outbound_snap_t *snap, const char *connector,
                     cx_oauth_t *o, const cx_gw_request_t *req, const cx_request_t *r,
                     const char *cid, cx_gw_response_t *resp)
{
    const cx_apikey_t *key = cx__outbound_authenticate(so, snap, "oauth", req, cid, resp);
    if (key == NULL)
        return;
    char tenant[160], account[160];
    const char *t = cx_request_query(r, "tenant", tenant, sizeof tenant);
    const char *a = cx_request_query(r, "account", account, sizeof account);
    if (!cx_apikey_allows(key, CX_APIKEY_CONNECTORS, connector) ||
        !cx_apikey_allows(key, CX_APIKEY_CAPABILITIES, CX_APIKEY_GRANT_OAUTH)) {
        cx__outbound_forbidden(so, "oauth", key, cid, connector, NULL, "API_KEY_FORBIDDEN",
                               "the API key may not start authorisations for this connector "
                               "(needs capabilities=oauth)",
                               resp);
        return;
    }
    if (t == NULL || a == NULL || !cx_cli_tenant_ok(t) || !account_ok(a)) {
        cx__outbound_error(resp, 400, cid, "OAUTH_BAD_REQUEST", "payload",
                           "start needs ?tenant=<tenant id>&account=<provider account id> "
                           "(tenant: [a-z0-9][a-z0-9_.-]*; account: [A-Za-z0-9._:@+-], at most "
                           "128)",
                           NULL);
        return;
    }
    if (!cx_apikey_allows(key, CX_APIKEY_TENANTS, t)) {
        cx__outbound_forbidden(so, "oauth", key, cid, connector, t, "API_KEY_FORBIDDEN",
                               "the API key may not act for this tenant", resp);
        return;
    }
    const char *owner = cx_runtime_account_tenant(so->rt, connector, a);
    if (owner && strcmp(owner, t) != 0) {
        cx__outbound_forbidden(so, "oauth", key, cid, connector, t, "ACCOUNT_FORBIDDEN",
                               "the account belongs to another tenant", resp);
        return;
    }
    char url[4096];
    cx_error_t err;
    cx_error_clear(&err);
    int rc = cx_oauth_authorize_url(o, t, a, url, sizeof url, NULL, &err);
    if (rc != 0) {
        int status = rc == CX_EUNAVAILABLE ? 503 : rc == CX_EINVAL ? 400 : 500;
        cx__outbound_error(resp, status, cid, code_name(rc), cx_err_class(rc),
                           err.message[0] ? err.message : cx_strerror(rc), NULL);
        if (status == 503)
            cx_gw_header(resp, "Retry-After", "1");
        return;
    }
    cx_buf_t *b = resp->body;
    resp->status = 302;
    resp->content_type = "application/json";
    cx_buf_reset(b);
    cx_buf_puts(b, "{\"ok\":true,\"correlationId\":");
    cx_cli_json_str(b, cid, strlen(cid));
    cx_buf_puts(b, ",\"authorizeUrl\":");
    cx_cli_json_str(b, url, strlen(url));
    cx_buf_putc(b, '}');
    if (cx_gw_header(resp, "Location", url) != 0) {
        cx__outbound_error(resp, 500, cid, "INTERNAL", "infra",
                           "the authorisation URL cannot be sent as a header", NULL);
        return;
    }
    cx_gw_header(resp, "Cache-Control", "no-store");
    cx_gw_header(resp, "Referrer-Policy", "no-referrer");
}

static void on_callback(cx_serve_outbound_t *so, const char *connector, cx_oauth_t *o,
                        const cx_gw_request_t *req, const cx_request_t *r, const char *cid,
                        cx_gw_response_t *resp)
{
    char perr[128], state[128], *code = malloc(4096);
    if (code == NULL) {
        callback_error(req, resp, 500, cid, "INTERNAL", "infra", "out of memory", NULL);
        return;
    }
    const char *pe = cx_request_query(r, "error", perr, sizeof perr);
    const char *st = cx_request_query(r, "state", state, sizeof state);
    const char *cd = cx_request_query(r, "code", code, 4096);
    if (pe || has_param(r->query, "error")) {
        /* The provider (or the user) said no. Its error_description is free text: never
         * echoed. The state is left to expire. */
        int denied = pe && strcmp(pe, "access_denied") == 0;
        char extra[128] = "";
        if (pe && code_like(pe))
            snprintf(extra, sizeof extra, ",\"providerError\":\"%s\"", pe);
        log_oauth(so, CX_LOG_WARN, cid, connector, "authorize_failed",
                  denied ? "OAUTH_ACCESS_DENIED" : "OAUTH_PROVIDER_ERROR", "provider",
                  denied ? "the user or the provider denied the authorisation"
                         : "the provider answered the authorisation with an error");
        callback_error(req, resp, 400, cid, denied ? "OAUTH_ACCESS_DENIED" : "OAUTH_PROVIDER_ERROR",
                       "provider",
                       denied ? "the authorisation was denied at the provider; nothing was "
                                "connected (start again to retry)"
                              : "the provider answered the authorisation with an error; nothing "
                                "was connected (start again to retry)",
                       extra[0] ? extra : NULL);
        goto done;
    }
    if (st == NULL || cd == NULL || st[0] == '\0' || cd[0] == '\0') {
        callback_error(req, resp, 400, cid, "OAUTH_BAD_REQUEST", "payload",
                       "the callback needs code and state", NULL);
        goto done;
    }
    cx_oauth_grant_t g;
    cx_error_t err;
    cx_error_clear(&err);
    int rc = cx_oauth_exchange_code(o, st, cd, &g, &err);
    if (rc == 0) {
        if (wants_html(req)) {
            char line[512];
            snprintf(line, sizeof line,
                     "%s account %s is now connected for %s. You can close "
                     "this window.",
                     connector, g.account_id, g.tenant_id);
            html_page(resp, 200, "Connected", line, NULL);
        } else {
            cx_buf_t *b = resp->body;
            resp->status = 200;
            resp->content_type = "application/json";
            cx_buf_reset(b);
            cx_buf_puts(b, "{\"ok\":true,\"correlationId\":");
            cx_cli_json_str(b, cid, strlen(cid));
            cx_buf_puts(b, ",\"connector\":");
            cx_cli_json_str(b, connector, strlen(connector));
            cx_buf_puts(b, ",\"tenantId\":");
            cx_cli_json_str(b, g.tenant_id, strlen(g.tenant_id));
            cx_buf_puts(b, ",\"accountId\":");
            cx_cli_json_str(b, g.account_id, strlen(g.account_id));
            cx_buf_puts(b, ",\"status\":\"connected\"}");
            browser_headers(resp);
        }
        goto done;
    }
    int status;
    const char *ecode = code_name(rc), *msg;
    switch (rc) {
    case CX_EOAUTH_STATE:
        status = 400;
        ecode = "OAUTH_STATE_INVALID";
        msg = "unknown, already used or expired state: start the authorisation again";
        break;
    case CX_EINVAL:
        status = 400;
        ecode = "OAUTH_BAD_REQUEST";
        msg = "malformed code or state";
        break;
    case CX_EPROVIDER_REJECTED:
        status = 502;
        msg = "the provider refused the code: start the authorisation again";
        break;
    case CX_EPROVIDER:
        status = 502;
        msg = "the provider's token endpoint failed: start the authorisation again";
        break;
    case CX_EUNAVAILABLE:
        status = 503;
        msg = "the token store cannot be reached: start the authorisation again";
        break;
    default:
        status = 500;
        msg = "the authorisation could not be completed";
        break;
    }
    /* cx_oauth logged the exchange itself (authorize_failed, with the provider's status). */
    log_oauth(so, status >= 500 ? CX_LOG_ERROR : CX_LOG_WARN, cid, connector, "callback_refused",
              ecode, rc == CX_EOAUTH_STATE ? "auth" : cx_err_class(rc), msg);
    callback_error(req, resp, status, cid, ecode, rc == CX_EOAUTH_STATE ? "auth" : cx_err_class(rc),
                   msg, NULL);
done:
    OPENSSL_cleanse(code, 4096);
    OPENSSL_cleanse(state, sizeof state);
    free(code);
}

void cx_serve_on_oauth(void *ud, const cx_gw_request_t *req, cx_gw_response_t *resp)
{
    cx_serve_app_t *app = ud;
    cx_serve_outbound_t *so = app->outbound;
    char cid[72];
    cx__outbound_correlation_id(req, cid);
    if (so == NULL) {
        cx__outbound_error(resp, 503, cid, "CONFIG", "config", "outbound routes are off", NULL);
        return;
    }
    const char *slash = strchr(req->rest, '/');
    size_t nc = slash ? (size_t)(slash - req->rest) : 0;
    const char *what = slash ? slash + 1 : "";
    if (!slash || !cx_cli_connector_id_ok(req->rest, nc) ||
        (strcmp(what, "start") != 0 && strcmp(what, "callback") != 0)) {
        cx__outbound_error(resp, 404, cid, "NOT_FOUND", "payload",
                           "expected /oauth/<connector>/start or /oauth/<connector>/callback",
                           NULL);
        return;
    }
    char connector[64];
    memcpy(connector, req->rest, nc);
    connector[nc] = '\0';
    cx__outbound_snap_t *snap = cx__outbound_acquire(so);
    cx_oauth_t *o = cx__outbound_oauth(snap, connector);
    cx_request_t r = {req->method,    req->path, req->query,   req->headers,
                      req->n_headers, req->body, req->body_len};
    if (o == NULL)
        cx__outbound_error(resp, 404, cid, "NOT_FOUND", "payload",
                           "no OAuth app is configured for this connector", NULL);
    else if (what[0] == 's')
        on_start(so, snap, connector, o, req, &r, cid, resp);
    else
        on_callback(so, connector, o, req, &r, cid, resp);
    cx__outbound_release(snap);
}
