/* Owned request copies that checks change, and the signing schemes that re-sign them.
 *
 * Mutated or tampered requests must get past verification for the robustness and batch
 * checks to reach parse, so the suite signs them itself with the fixture's fake secret. It
 * recognises the schemes libcx implements (cx/signature.h); a provider scheme it does not
 * know is declared in conformance.json (docs/conformance.md, "Signing").
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cx/signature.h"
#include "internal.h"

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        if (n)
            memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static char *dup(const char *s)
{
    return dupn(s ? s : "", s ? strlen(s) : 0);
}

void cx_conf__req_free(cx_conf_req_t *r)
{
    if (r == NULL)
        return;
    free(r->method);
    free(r->path);
    free(r->query);
    for (size_t i = 0; i < r->n_headers; i++) {
        free((char *)r->headers[i].name);
        free((char *)r->headers[i].value);
    }
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}

int cx_conf__req_copy(const cx_conf_req_t *src, cx_conf_req_t *dst)
{
    memset(dst, 0, sizeof *dst);
    dst->method = dup(src->method);
    dst->path = dup(src->path);
    dst->query = dup(src->query);
    dst->body = dupn(src->body ? src->body : "", src->body_len);
    dst->body_len = src->body_len;
    if (src->n_headers)
        dst->headers = calloc(src->n_headers, sizeof *dst->headers);
    if (!dst->method || !dst->path || !dst->query || !dst->body ||
        (src->n_headers && !dst->headers))
        goto fail;
    for (size_t i = 0; i < src->n_headers; i++) {
        dst->headers[i].name = dup(src->headers[i].name);
        dst->headers[i].value = dup(src->headers[i].value);
        dst->n_headers++;
        if (!dst->headers[i].name || !dst->headers[i].value)
            goto fail;
    }
    return 0;
fail:
    cx_conf__req_free(dst);
    return CX_ENOMEM;
}

int cx_conf__req_set_header(cx_conf_req_t *r, const char *name, const char *value)
{
    char *v = dup(value);
    if (v == NULL)
        return CX_ENOMEM;
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) {
            free((char *)r->headers[i].value);
            r->headers[i].value = v;
            return 0;
        }
    cx_header_t *h = realloc(r->headers, (r->n_headers + 1) * sizeof *h);
    char *n = dup(name);
    if (h == NULL || n == NULL) {
        if (h)
            r->headers = h;
        free(v);
        free(n);
        return CX_ENOMEM;
    }
    r->headers = h;
    r->headers[r->n_headers].name = n;
    r->headers[r->n_headers].value = v;
    r->n_headers++;
    return 0;
}

size_t cx_conf__req_del_header(cx_conf_req_t *r, const char *name)
{
    size_t o = 0, removed = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0) {
            free((char *)r->headers[i].name);
            free((char *)r->headers[i].value);
            removed++;
            continue;
        }
        r->headers[o++] = r->headers[i];
    }
    r->n_headers = o;
    return removed;
}

int cx_conf__req_set_body(cx_conf_req_t *r, const void *body, size_t len)
{
    char *b = dupn(body, len);
    if (b == NULL)
        return CX_ENOMEM;
    free(r->body);
    r->body = b;
    r->body_len = len;
    return 0;
}

cx_request_t cx_conf__req_view(const cx_conf_req_t *r)
{
    return (cx_request_t){r->method,    r->path, r->query,   r->headers,
                          r->n_headers, r->body, r->body_len};
}

/* ---- Signing ------------------------------------------------------------------------------ */

const char *cx_conf__sign_kind_name(int kind)
{
    switch (kind) {
    case CX_CONF_SIGN_NONE:
        return "none";
    case CX_CONF_SIGN_HMAC_HEX:
        return "hmac-sha256-hex";
    case CX_CONF_SIGN_HMAC_BASE64:
        return "hmac-sha256-base64";
    case CX_CONF_SIGN_STANDARD_WEBHOOKS:
        return "standard-webhooks";
    case CX_CONF_SIGN_STATIC:
        return "static";
    default:
        return "unknown";
    }
}

int cx_conf__sign(const cx_conf_signing_t *sg, const char *secret, size_t secret_len,
                  cx_conf_req_t *req, char *why, size_t cap)
{
    char out[256];
    int rc = 0;
    switch (sg->kind) {
    case CX_CONF_SIGN_HMAC_HEX:
        rc = cx_signature_sign_hex((const unsigned char *)secret, secret_len, req->body,
                                   req->body_len, sg->prefix, out, sizeof out);
        break;
    case CX_CONF_SIGN_HMAC_BASE64:
        rc = cx_signature_sign_base64((const unsigned char *)secret, secret_len, req->body,
                                      req->body_len, sg->prefix, out, sizeof out);
        break;
    case CX_CONF_SIGN_STANDARD_WEBHOOKS: {
        cx_request_t v = cx_conf__req_view(req);
        const char *id = cx_request_header(&v, "webhook-id");
        const char *ts = cx_request_header(&v, "webhook-timestamp");
        if (id == NULL || ts == NULL) {
            snprintf(why, cap,
                     "standard-webhooks: the request has no webhook-id or "
                     "webhook-timestamp header to sign");
            return -1;
        }
        char idc[256], tsc[64];
        snprintf(idc, sizeof idc, "%s", id);
        snprintf(tsc, sizeof tsc, "%s", ts);
        rc = cx_standard_webhooks_sign((const unsigned char *)secret, secret_len, idc, tsc,
                                       req->body, req->body_len, out, sizeof out);
        if (rc == 0 && cx_conf__req_set_header(req, "webhook-signature", out) != 0)
            rc = CX_ENOMEM;
        if (rc != 0) {
            snprintf(why, cap, "standard-webhooks signing failed: %s", cx_strerror(rc));
            return -1;
        }
        return 0;
    }
    default:
        return 0; /* static tokens and no authentication: nothing depends on the body */
    }
    if (rc != 0 || cx_conf__req_set_header(req, sg->header, out) != 0) {
        snprintf(why, cap, "signing with %s failed: %s", cx_conf__sign_kind_name(sg->kind),
                 cx_strerror(rc ? rc : CX_ENOMEM));
        return -1;
    }
    return 0;
}

int cx_conf__can_resign(const cx_conf_suite_t *s, const cx_conf_case_t *c)
{
    if (s->c->manifest->inbound_auth == CX_AUTH_NONE)
        return 1;
    return c->signing.kind != CX_CONF_SIGN_UNKNOWN && c->signing.kind != CX_CONF_SIGN_NONE;
}

int cx_conf__resign(const cx_conf_suite_t *s, const cx_conf_case_t *c, cx_conf_req_t *req,
                    char *why, size_t cap)
{
    if (s->c->manifest->inbound_auth == CX_AUTH_NONE || c->signing.kind == CX_CONF_SIGN_STATIC)
        return 0;
    if (!cx_conf__can_resign(s, c)) {
        snprintf(why, cap,
                 "the signing scheme of case %s is not recognised: declare it in "
                 "conformance.json (docs/conformance.md, \"Signing\")",
                 c->name);
        return -1;
    }
    char secret[4096];
    const char *file = c->signing.secret_file[0] ? c->signing.secret_file : c->signing.secret;
    long n = cx_conf__read_secret(c, s->c->manifest->id, file, secret, sizeof secret);
    if (n < 0) {
        snprintf(why, cap, "case %s: secret %s/%s not found beside the fixture", c->name,
                 s->c->manifest->id, file);
        return -1;
    }
    return cx_conf__sign(&c->signing, secret, (size_t)n, req, why, cap);
}
