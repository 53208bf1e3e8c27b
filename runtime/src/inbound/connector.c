/* Requests, parse output and connector checks: the parts of the connector interface that are
 * the same for every adapter. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cx/connector.h"

static const char *const CAPABILITIES[] = {
    "inbound_messages",   "outbound_messages", "message_status_updates", "read_receipts",
    "typing_indicators",  "reactions",         "comments",               "comment_replies",
    "leads",              "email_outbound",    "email_inbound",          "email_events",
    "calendar_webhooks",  "calendar_sync",     "calendar_outbound",      "automation_triggers",
    "automation_actions",
};

int cx_capability_is_known(const char *id)
{
    if (id == NULL)
        return 0;
    for (size_t i = 0; i < sizeof CAPABILITIES / sizeof CAPABILITIES[0]; i++)
        if (strcmp(id, CAPABILITIES[i]) == 0)
            return 1;
    return 0;
}

const char *cx_request_header(const cx_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

const char *cx_request_query(const cx_request_t *req, const char *name, char *buf, size_t cap)
{
    const char *q = req->query ? req->query : "";
    size_t nlen = strlen(name);
    while (*q) {
        const char *end = strchr(q, '&');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        if (len > nlen && strncmp(q, name, nlen) == 0 && q[nlen] == '=') {
            size_t o = 0;
            for (size_t i = nlen + 1; i < len; i++) {
                char c = q[i];
                if (c == '+') {
                    c = ' ';
                } else if (c == '%' && i + 2 < len + 1 && hexval(q[i + 1]) >= 0 &&
                           hexval(q[i + 2]) >= 0) {
                    c = (char)(hexval(q[i + 1]) * 16 + hexval(q[i + 2]));
                    i += 2;
                }
                if (o + 1 >= cap)
                    return NULL;
                buf[o++] = c;
            }
            buf[o] = '\0';
            return buf;
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return NULL;
}

static int grow(cx_parse_out_t *out)
{
    if (out->n < out->cap)
        return 0;
    size_t cap = out->cap ? out->cap * 2 : 16;
    cx_event_t *ev = cx_arena_alloc(out->arena, cap * sizeof *ev);
    if (ev == NULL)
        return CX_ENOSPC;
    if (out->n)
        memcpy(ev, out->events, out->n * sizeof *ev);
    out->events = ev;
    out->cap = cap;
    return 0;
}

int cx_parse_emit(cx_parse_out_t *out, const cx_msg_meta_t *meta, ProtobufCMessage *msg,
                  const char *account_id)
{
    int rc = grow(out);
    if (rc != 0)
        return rc;
    out->events[out->n++] = (cx_event_t){meta, msg, account_id, 0, NULL};
    return 0;
}

int cx_parse_emit_error(cx_parse_out_t *out, const char *account_id, int code, const char *detail)
{
    int rc = grow(out);
    if (rc != 0)
        return rc;
    out->events[out->n++] = (cx_event_t){NULL, NULL, account_id, code ? code : CX_EMALFORMED,
                                         detail};
    return 0;
}

int cx_connector_check(const cx_connector_t *c, cx_error_t *err)
{
    if (c == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "no connector");
    if (c->abi_version != CX_CONNECTOR_ABI)
        return cx_error_set(err, CX_EABI, NULL,
                            "connector built for ABI %u, this runtime speaks ABI %u: rebuild it "
                            "against this SDK",
                            c->abi_version, CX_CONNECTOR_ABI);
    if (c->struct_size != sizeof(cx_connector_t))
        return cx_error_set(err, CX_EABI, NULL,
                            "connector struct is %u bytes, this runtime expects %zu: rebuild it "
                            "against this SDK",
                            c->struct_size, sizeof(cx_connector_t));
    const cx_manifest_t *m = c->manifest;
    if (m == NULL || m->id == NULL || m->id[0] == '\0')
        return cx_error_set(err, CX_ECONFIG, NULL, "connector has no manifest id");
    for (const char *p = m->id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return cx_error_set(err, CX_ECONFIG, "manifest.id",
                                "connector id must be lower-case letters, digits, '_' or '-'");
    if (m->version == NULL || m->version[0] == '\0')
        return cx_error_set(err, CX_ECONFIG, "manifest.version", "connector %s has no version",
                            m->id);
    if (m->n_capabilities == 0)
        return cx_error_set(err, CX_ECONFIG, "manifest.capabilities",
                            "connector %s declares no capability", m->id);
    for (size_t i = 0; i < m->n_capabilities; i++) {
        const cx_capability_decl_t *cap = &m->capabilities[i];
        if (!cx_capability_is_known(cap->id))
            return cx_error_set(err, CX_ECONFIG, "manifest.capabilities",
                                "connector %s: unknown capability id '%s' (docs/capabilities.md)",
                                m->id, cap->id ? cap->id : "(null)");
        if (cap->state < CX_CAP_PLANNED || cap->state > CX_CAP_DEPRECATED)
            return cx_error_set(err, CX_ECONFIG, "manifest.capabilities",
                                "connector %s: capability %s has an invalid state", m->id,
                                cap->id);
    }
    if (m->inbound_auth < CX_AUTH_NONE || m->inbound_auth > CX_AUTH_API_KEY)
        return cx_error_set(err, CX_ECONFIG, "manifest.inbound_auth",
                            "connector %s does not declare its inbound authentication", m->id);
    if (m->inbound_auth != CX_AUTH_NONE && c->verify == NULL)
        return cx_error_set(err, CX_ECONFIG, "verify",
                            "connector %s authenticates inbound requests but has no verify",
                            m->id);
    if (c->parse == NULL)
        return cx_error_set(err, CX_ECONFIG, "parse", "connector %s has no parse", m->id);
    for (size_t i = 0; i < m->n_secrets; i++)
        if (m->secrets[i].name == NULL || m->secrets[i].name[0] == '\0' ||
            strchr(m->secrets[i].name, '/') || m->secrets[i].name[0] == '.')
            return cx_error_set(err, CX_ECONFIG, "manifest.secrets",
                                "connector %s: secret names are plain file names", m->id);
    return 0;
}
