/* manifest.*: what the connector declares about itself (docs/conformance.md). */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

static const char *const OUTBOUND[] = {"outbound_messages", "comment_replies", "email_outbound",
                                       "calendar_outbound", "automation_triggers"};

int cx_conf__capability_is_outbound(const char *id)
{
    for (size_t i = 0; id && i < sizeof OUTBOUND / sizeof OUTBOUND[0]; i++)
        if (strcmp(id, OUTBOUND[i]) == 0)
            return 1;
    return 0;
}

int cx_conf__capability_state(const cx_connector_t *c, const char *id)
{
    const cx_manifest_t *m = c->manifest;
    for (size_t i = 0; m && id && i < m->n_capabilities; i++)
        if (m->capabilities[i].id && strcmp(m->capabilities[i].id, id) == 0)
            return (int)m->capabilities[i].state;
    return 0;
}

static int serving(int state)
{
    return state == CX_CAP_ACTIVE || state == CX_CAP_BETA || state == CX_CAP_DEPRECATED;
}

size_t cx_conf__n_outbound(const cx_connector_t *c)
{
    size_t n = 0;
    const cx_manifest_t *m = c->manifest;
    for (size_t i = 0; m && i < m->n_capabilities; i++)
        n += cx_conf__capability_is_outbound(m->capabilities[i].id) &&
             serving((int)m->capabilities[i].state);
    return n;
}

static size_t n_inbound(const cx_connector_t *c)
{
    size_t n = 0;
    const cx_manifest_t *m = c->manifest;
    for (size_t i = 0; m && i < m->n_capabilities; i++)
        n += m->capabilities[i].id && !cx_conf__capability_is_outbound(m->capabilities[i].id);
    return n;
}

int cx_conf__need_inbound(const cx_conf_suite_t *s, cx_conf_result_t *r, int need_auth)
{
    const cx_manifest_t *m = s->c->manifest;
    if (need_auth && m->inbound_auth == CX_AUTH_NONE) {
        cx_conf__skip(r, CX_CONF_SKIP_NA,
                      "the connector declares inbound_auth none: it authenticates no request");
        return 0;
    }
    if (n_inbound(s->c) == 0) {
        cx_conf__skip(r, CX_CONF_SKIP_NA, "the connector declares no inbound capability");
        return 0;
    }
    if (cx_conf__n_requests(s) == 0) {
        cx_conf__skip(r, CX_CONF_SKIP_INPUT,
                      "no inbound fixture (a directory with request.json) under %s", s->fixtures);
        return 0;
    }
    return 1;
}

/* SemVer 2.0.0: MAJOR.MINOR.PATCH, numbers without leading zeros, optional -pre and +build. */
static int semver(const char *v)
{
    for (int part = 0; part < 3; part++) {
        if (!isdigit((unsigned char)*v))
            return 0;
        if (*v == '0' && isdigit((unsigned char)v[1]))
            return 0;
        while (isdigit((unsigned char)*v))
            v++;
        if (part < 2 && *v++ != '.')
            return 0;
    }
    if (*v == '-' || *v == '+') {
        for (const char *p = v + 1; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '+')
                return 0;
        return v[1] != '\0';
    }
    return *v == '\0';
}

void cx_conf__check_manifest_valid(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    const cx_connector_t *c = s->c;
    if (!s->runtime_accepts)
        cx_conf__fail(r, "cx_connector_check refuses the connector: %s", s->refused);
    const cx_manifest_t *m = c->manifest;
    if (m == NULL)
        return;
    if (m->version && !semver(m->version))
        cx_conf__fail(r, "version '%s' is not SemVer (MAJOR.MINOR.PATCH[-pre][+build])",
                      m->version);
    if (m->display_name == NULL || m->display_name[0] == '\0')
        cx_conf__fail(r, "display_name is empty: operators see it in /health and the docs");
    if (m->provider == NULL || m->provider[0] == '\0')
        cx_conf__fail(r, "provider is empty (\"meta\", \"google\", ...)");
    if (m->id && strlen(m->id) > 64)
        cx_conf__fail(r, "id '%.64s...' is longer than 64 characters", m->id);
}

void cx_conf__check_manifest_capabilities(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    const cx_connector_t *c = s->c;
    const cx_manifest_t *m = c->manifest;
    if (m->n_capabilities == 0 || m->capabilities == NULL) {
        cx_conf__fail(r, "the manifest declares no capability");
        return;
    }
    for (size_t i = 0; i < m->n_capabilities; i++) {
        const cx_capability_decl_t *cap = &m->capabilities[i];
        if (!cx_capability_is_known(cap->id)) {
            cx_conf__fail(r, "capability '%s' is not one of the fixed ids (docs/capabilities.md)",
                          cap->id ? cap->id : "(null)");
            continue;
        }
        if (cap->state < CX_CAP_PLANNED || cap->state > CX_CAP_DEPRECATED)
            cx_conf__fail(r,
                          "capability %s has state %d: use planned, beta, active or "
                          "deprecated",
                          cap->id, (int)cap->state);
        for (size_t j = 0; j < i; j++)
            if (m->capabilities[j].id && strcmp(m->capabilities[j].id, cap->id) == 0)
                cx_conf__fail(r, "capability %s is declared twice", cap->id);
        if (cx_conf__capability_is_outbound(cap->id) && serving((int)cap->state) && c->send == NULL)
            cx_conf__fail(r,
                          "outbound capability %s is served (%s) but the connector has no "
                          "send",
                          cap->id, cap->state == CX_CAP_BETA ? "beta" : "active");
    }
}

static int declared_secret(const cx_manifest_t *m, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < m->n_secrets; i++) {
        const char *d = m->secrets[i].name;
        if (d == NULL)
            continue;
        if (strcmp(d, name) == 0)
            return 1;
        size_t dl = strlen(d);
        if (nl == dl + 9 && strncmp(name, d, dl) == 0 && strcmp(name + dl, ".previous") == 0)
            return 1;
    }
    return 0;
}

/* Files beside the secrets that are settings, not secrets (conformance.json "settings":
 * ["graph_api_base_url", ...]): a deployment points a connector elsewhere with them. */
static int setting(const cx_conf_suite_t *s, const char *name)
{
    json_t *list = s->config ? json_object_get(s->config, "settings") : NULL;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), name) == 0)
            return 1;
    }
    return 0;
}

static void fixture_secrets(const cx_conf_suite_t *s, const char *dir, int depth,
                            cx_conf_result_t *r, const char *case_name)
{
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    if (n < 0)
        return;
    for (int i = 0; i < n; i++) {
        const char *nm = list[i]->d_name;
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", dir, nm);
        struct stat st;
        if (nm[0] != '.' && stat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode) && depth < 3 &&
                (depth == 0 ? strcmp(nm, "accounts") == 0 : depth == 1))
                fixture_secrets(s, p, depth + 1, r, case_name);
            else if (S_ISREG(st.st_mode) && !declared_secret(s->c->manifest, nm) && !setting(s, nm))
                cx_conf__fail(r,
                              "case %s uses secret '%s' (%s) that the manifest does not "
                              "declare (a setting, not a secret? list it in conformance.json "
                              "\"settings\")",
                              case_name, nm, p + strlen(s->fixtures) + 1);
        }
        free(list[i]);
    }
    free(list);
}

void cx_conf__check_manifest_secrets(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    const cx_manifest_t *m = s->c->manifest;
    size_t required = 0;
    for (size_t i = 0; i < m->n_secrets; i++) {
        const cx_secret_decl_t *d = &m->secrets[i];
        if (d->name == NULL || d->name[0] == '\0' || strchr(d->name, '/') || d->name[0] == '.') {
            cx_conf__fail(r, "secret #%zu: a name must be a plain file name", i);
            continue;
        }
        for (size_t j = 0; j < i; j++)
            if (m->secrets[j].name && strcmp(m->secrets[j].name, d->name) == 0)
                cx_conf__fail(r, "secret %s is declared twice", d->name);
        if (d->description == NULL || d->description[0] == '\0')
            cx_conf__fail(r,
                          "secret %s has no description: operators provision it from the "
                          "manifest",
                          d->name);
        required += d->required != 0;
    }
    if (m->inbound_auth != CX_AUTH_NONE && required == 0)
        cx_conf__fail(r, "inbound requests are authenticated but no secret is declared "
                         "required: staging/production would start without one");
    /* Every secret a fixture provides is one the connector reads, so it must be declared. */
    const char *seen[64];
    size_t nseen = 0;
    for (size_t i = 0; i < s->n_cases; i++) {
        const cx_conf_case_t *c = &s->cases[i];
        if (c->secrets_dir[0] == '\0')
            continue;
        int dup = 0;
        for (size_t k = 0; k < nseen; k++)
            dup |= strcmp(seen[k], c->secrets_dir) == 0;
        if (dup)
            continue;
        if (nseen < 64)
            seen[nseen++] = c->secrets_dir;
        char dir[8192];
        snprintf(dir, sizeof dir, "%s/%s", c->secrets_dir, m->id);
        fixture_secrets(s, dir, 0, r, c->name);
    }
}

void cx_conf__check_manifest_inbound_auth(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    const cx_connector_t *c = s->c;
    const cx_manifest_t *m = c->manifest;
    if (m->inbound_auth < CX_AUTH_NONE || m->inbound_auth > CX_AUTH_API_KEY) {
        cx_conf__fail(r, "inbound_auth is not declared (%d): set it, CX_AUTH_NONE included",
                      (int)m->inbound_auth);
        return;
    }
    if (m->inbound_auth != CX_AUTH_NONE && c->verify == NULL)
        cx_conf__fail(r, "inbound_auth is declared but the connector has no verify");
    if (m->inbound_auth == CX_AUTH_NONE && c->verify != NULL)
        cx_conf__fail(r, "the connector has a verify but declares inbound_auth none: the "
                         "runtime never calls it");
    /* What the fixtures show must agree with what the manifest says. */
    for (size_t i = 0; i < s->n_cases; i++) {
        const cx_conf_case_t *k = &s->cases[i];
        if (!cx_conf__is_webhook(k) || k->signing.declared)
            continue;
        int sk = k->signing.kind;
        const char *want = NULL;
        switch (m->inbound_auth) {
        case CX_AUTH_HMAC:
            if (sk != CX_CONF_SIGN_HMAC_HEX && sk != CX_CONF_SIGN_HMAC_BASE64 &&
                sk != CX_CONF_SIGN_UNKNOWN)
                want = "an HMAC signature";
            break;
        case CX_AUTH_STANDARD_WEBHOOKS:
            if (sk != CX_CONF_SIGN_STANDARD_WEBHOOKS && sk != CX_CONF_SIGN_UNKNOWN)
                want = "Standard Webhooks headers";
            break;
        default:
            break;
        }
        if (want)
            cx_conf__fail(r,
                          "case %s: the manifest declares %s, so the fixture should carry "
                          "%s, but it is signed as %s",
                          k->name, m->inbound_auth == CX_AUTH_HMAC ? "hmac" : "standard-webhooks",
                          want, cx_conf__sign_kind_name(sk));
    }
}

/* Adds a capability id to the covered set once (a 1,000-item batch must not fill the set with
 * one id and hide the others). */
static void cover(char covered[][64], size_t *n, size_t cap, const char *id)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(covered[i], id) == 0)
            return;
    if (*n < cap)
        snprintf(covered[(*n)++], 64, "%s", id);
}

void cx_conf__check_manifest_fixtures(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    const cx_manifest_t *m = s->c->manifest;
    /* Which capabilities the fixtures exercise: what each request parses into, and the
     * capability of each command fixture. */
    char covered[64][64];
    size_t ncov = 0;
    for (size_t i = 0; i < s->n_cases; i++) {
        const cx_conf_case_t *c = &s->cases[i];
        if (c->kind == CX_CONF_CASE_COMMAND) {
            if (c->capability[0])
                cover(covered, &ncov, 64, c->capability);
            continue;
        }
        if (!cx_conf__is_webhook(c))
            continue;
        cx_conf_env_t e;
        cx_conf_result_t tmp;
        memset(&tmp, 0, sizeof tmp);
        if (cx_conf__env_open(&e, s, c, NULL, &tmp) != 0) {
            cx_conf__fail(r, "%s", tmp.text);
            return;
        }
        cx_conf_parsed_t p;
        if (cx_conf__parse(s, e.rt, c, &c->req, c->now, &p) == 0) {
            for (size_t k = 0; k < p.n; k++)
                if (p.ev[k].meta && p.ev[k].meta->capability)
                    cover(covered, &ncov, 64, p.ev[k].meta->capability);
            cx_conf__parsed_free(&p);
        }
        json_t *events = c->expect ? json_object_get(c->expect, "events") : NULL;
        size_t k;
        json_t *ev;
        json_array_foreach(events, k, ev)
        {
            const char *cap = json_string_value(json_object_get(ev, "capability"));
            if (cap)
                cover(covered, &ncov, 64, cap);
        }
        cx_conf__env_close(&e);
    }
    size_t active = 0;
    for (size_t i = 0; i < m->n_capabilities; i++) {
        const cx_capability_decl_t *cap = &m->capabilities[i];
        if (cap->id == NULL || cap->state != CX_CAP_ACTIVE)
            continue;
        active++;
        int found = 0;
        for (size_t k = 0; k < ncov && !found; k++)
            found = strcmp(covered[k], cap->id) == 0;
        if (!found)
            cx_conf__fail(
                r,
                "capability %s is active but no fixture exercises it: add a %s "
                "case under %s (docs/conformance.md, \"Fixtures\")",
                cap->id, cx_conf__capability_is_outbound(cap->id) ? "command.json" : "request.json",
                s->fixtures);
    }
    if (active == 0 && r->status == CX_CONF_PASS)
        cx_conf__note(r, "no capability is active yet");
}
