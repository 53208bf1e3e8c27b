/* signature.*: the pipeline's step 2, as the connector's verify implements it. Every request
 * goes through the real pipeline, so "rejected" means a 401 and a handler that never ran. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

static const char *error_code(const cx_conf_resp_t *resp)
{
    const char *c = json_string_value(json_object_get(resp->body, "errorCode"));
    return c ? c : "";
}

static const char *error_message(const cx_conf_resp_t *resp)
{
    const char *c = json_string_value(json_object_get(resp->body, "message"));
    return c ? c : "";
}

/* Cases whose fixture is meant to be accepted (expect.json does not say 401). */
static int signed_case(const cx_conf_case_t *c)
{
    return cx_conf__is_webhook(c) && cx_conf__expected_status(c) != 401;
}

/* Verification refused the request as a misconfiguration rather than accepting it. */
static int verify_refused(const cx_conf_resp_t *resp)
{
    return resp->status == 401 || (resp->status == 503 && strcmp(error_code(resp), "CONFIG") == 0);
}

void cx_conf__check_signature_valid(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 1))
        return;
    for (size_t i = 0; i < s->n_cases; i++) {
        const cx_conf_case_t *c = &s->cases[i];
        if (!signed_case(c))
            continue;
        cx_conf__progress("case %s: the fixture as captured", c->name);
        cx_conf_env_t e;
        if (cx_conf__env_open(&e, s, c, NULL, r) != 0)
            return;
        cx_conf_resp_t resp;
        if (cx_conf__deliver(&e, &c->req, &resp) == 0) {
            if (verify_refused(&resp))
                cx_conf__fail(r, "case %s: a correctly signed fixture was refused: %d %s (%s)",
                              c->name, resp.status, error_code(&resp), error_message(&resp));
            cx_conf__resp_free(&resp);
        }
        cx_conf__env_close(&e);
    }
}

/* Runs one forged request and checks it is rejected with a 401 before any handler runs. */
static void expect_rejected(const cx_conf_suite_t *s, const cx_conf_case_t *c,
                            const char *secrets_dir, const cx_conf_req_t *req, const char *what,
                            cx_conf_result_t *r)
{
    cx_conf__progress("case %s: %s", c->name, what);
    cx_conf_env_t e;
    if (cx_conf__env_open(&e, s, c, secrets_dir, r) != 0)
        return;
    cx_conf_resp_t resp;
    if (cx_conf__deliver(&e, req, &resp) == 0) {
        if (resp.status != 401)
            cx_conf__fail(r, "case %s: %s was answered %d %s instead of 401 BAD_SIGNATURE", c->name,
                          what, resp.status, error_code(&resp));
        if (e.calls)
            cx_conf__fail(r, "case %s: %s reached a handler (%zu calls): verify must stop it",
                          c->name, what, e.calls);
        cx_conf__resp_free(&resp);
    }
    cx_conf__env_close(&e);
}

static const char *const KEEP[] = {"content-type", "content-length",   "user-agent",
                                   "host",         "accept",           "accept-encoding",
                                   "connection",   "x-correlation-id", "traceparent"};

void cx_conf__check_signature_invalid(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 1))
        return;
    for (size_t i = 0; i < s->n_cases; i++) {
        const cx_conf_case_t *c = &s->cases[i];
        if (!signed_case(c))
            continue;
        const cx_conf_signing_t *sg = &c->signing;
        cx_conf_req_t q;
        /* 1. Tampered body, signature as captured. */
        if (sg->kind == CX_CONF_SIGN_STATIC) {
            cx_conf__note(r,
                          "case %s: the scheme carries a static token that does not cover "
                          "the body: tampered-body test not applicable",
                          c->name);
        } else if (sg->kind == CX_CONF_SIGN_UNKNOWN) {
            cx_conf__note(r,
                          "case %s: signing scheme not recognised: tampered-body test not "
                          "run (declare it in conformance.json)",
                          c->name);
        } else if (cx_conf__req_copy(&c->req, &q) == 0) {
            if (q.body_len == 0)
                cx_conf__req_set_body(&q, "x", 1);
            else
                q.body[q.body_len / 2] ^= 0x01;
            expect_rejected(s, c, NULL, &q,
                            "a tampered body (one bit flipped, signature as "
                            "captured)",
                            r);
            cx_conf__req_free(&q);
        }
        /* 2. The right signature under a secret the gateway does not have. */
        char dir[4096];
        if (cx_conf__secrets_variant(s, c, 0, dir, sizeof dir) == 0) {
            expect_rejected(s, c, dir, &c->req, "the fixture checked against a different secret",
                            r);
            cx_conf__rmtree(dir);
        } else {
            cx_conf__fail(r, "cannot make a temporary secrets directory");
        }
        /* 3. Without the signature headers. */
        if (cx_conf__req_copy(&c->req, &q) == 0) {
            const char *what = "the request without its signature header";
            if (sg->kind == CX_CONF_SIGN_STANDARD_WEBHOOKS) {
                cx_conf__req_del_header(&q, "webhook-signature");
            } else if (sg->kind == CX_CONF_SIGN_UNKNOWN) {
                for (size_t h = 0; h < q.n_headers;) {
                    int keep = 0;
                    for (size_t k = 0; k < sizeof KEEP / sizeof KEEP[0]; k++)
                        keep |= strcasecmp(q.headers[h].name, KEEP[k]) == 0;
                    if (keep) {
                        h++;
                    } else {
                        char name[256];
                        snprintf(name, sizeof name, "%s", q.headers[h].name);
                        cx_conf__req_del_header(&q, name);
                    }
                }
                what = "the request without any authentication header";
            } else {
                cx_conf__req_del_header(&q, sg->header);
            }
            expect_rejected(s, c, NULL, &q, what, r);
            cx_conf__req_free(&q);
        }
    }
}

void cx_conf__check_signature_rotation(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 1))
        return;
    for (size_t i = 0; i < s->n_cases; i++) {
        const cx_conf_case_t *c = &s->cases[i];
        if (!signed_case(c))
            continue;
        cx_conf__progress("case %s: signed with the previous secret", c->name);
        char dir[4096];
        if (cx_conf__secrets_variant(s, c, 1, dir, sizeof dir) != 0) {
            cx_conf__fail(r, "cannot make a temporary secrets directory");
            return;
        }
        cx_conf_env_t e;
        if (cx_conf__env_open(&e, s, c, dir, r) == 0) {
            cx_conf_resp_t resp;
            if (cx_conf__deliver(&e, &c->req, &resp) == 0) {
                if (verify_refused(&resp))
                    cx_conf__fail(r,
                                  "case %s: signed with the previous secret (<name>.previous, "
                                  "during a rotation) it was refused: %d %s (%s)",
                                  c->name, resp.status, error_code(&resp), error_message(&resp));
                cx_conf__resp_free(&resp);
            }
            cx_conf__env_close(&e);
        }
        cx_conf__rmtree(dir);
    }
}
