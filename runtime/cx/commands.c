/* POST /commands/<connector>/<capability>: a canonical command sent exactly once.
 *
 * The body is the proto3 JSON of the capability's command message (the generated registry's
 * COMMAND of that capability: cx.messaging.v1.SendMessageCommand for outbound_messages). In
 * order: API key (401) -> connector hosted with a send and the capability declared (404) ->
 * key allowed for connector and capability (403) -> decode and validate (400, every violation)
 * -> key allowed for the command's tenant (403) -> the command names this connector (400) ->
 * the account belongs to the tenant (403) -> cx_outbound_send: intent claim, the connector's
 * send, stored result, audit record. The answer is the outcome, or the stored one on a replay
 * (same tenant and client_message_id) without calling the provider. docs/cx.md has the table.
 *
 * Credentials: when the connector has an OAuth app, the send first asks it for the access
 * token of (tenant, account) — refreshed ahead of expiry — and the runtime's secret source
 * hands that token to the connector when it reads its `access_token`. The hand-over is a
 * thread-local for the duration of the connector's send: cx_outbound_send calls it on the
 * request's thread, and the secret source answers only for the same runtime, connector and
 * account, so nothing else ever sees the token. Never authorised: the connector's own secret
 * files. A provider 401 with an OAuth token refreshes it once (cx_oauth_invalidate); a refused
 * refresh marks the integration unhealthy, and later commands get REAUTH_REQUIRED at once.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "cli.h"
#include "cx/schema.h"
#include "serve.h"
#include "serve_outbound.h"

#define ARENA_LIMIT (8u << 20)
#define MAX_VIOLATIONS 16

/* ---- Message fields by name (any command type) ------------------------------------------ */

static const ProtobufCFieldDescriptor *field_of(const ProtobufCMessage *m, const char *name,
                                                ProtobufCType type)
{
    if (m == NULL)
        return NULL;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    if (f == NULL || f->type != type || f->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t which = *(const uint32_t *)((const char *)m + f->quantifier_offset);
        if (which != f->id)
            return NULL;
    }
    return f;
}

static const char *str_field(const ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *f = field_of(m, name, PROTOBUF_C_TYPE_STRING);
    const char *s = f ? *(char *const *)((const char *)m + f->offset) : NULL;
    return s && s[0] ? s : NULL;
}

static const ProtobufCMessage *msg_field(const ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *f = field_of(m, name, PROTOBUF_C_TYPE_MESSAGE);
    return f ? *(ProtobufCMessage *const *)((const char *)m + f->offset) : NULL;
}

/* ---- The command and result types of a capability ---------------------------------------- */

static const cx_msg_meta_t *command_meta(const char *capability)
{
    size_t n;
    const cx_msg_meta_t *const *all = cx_schema_all(&n);
    for (size_t i = 0; i < n; i++)
        if (all[i]->kind == CX_KIND_COMMAND && all[i]->capability &&
            strcmp(all[i]->capability, capability) == 0)
            return all[i];
    return NULL;
}

/* cx.messaging.v1.SendMessageCommand -> cx.messaging.v1.SendMessageResult, when it exists. */
static const cx_msg_meta_t *result_meta(const cx_msg_meta_t *cmd)
{
    char name[256];
    size_t n = strlen(cmd->full_name);
    if (n < 7 || n >= sizeof name || strcmp(cmd->full_name + n - 7, "Command") != 0)
        return NULL;
    snprintf(name, sizeof name, "%.*sResult", (int)(n - 7), cmd->full_name);
    const cx_msg_meta_t *m = cx_schema_find(name);
    return m && m->kind == CX_KIND_RESULT ? m : NULL;
}

static int declares(const cx_connector_t *c, const char *capability)
{
    const cx_manifest_t *m = c->manifest;
    for (size_t i = 0; i < m->n_capabilities; i++)
        if (strcmp(m->capabilities[i].id, capability) == 0)
            return m->capabilities[i].state != CX_CAP_PLANNED;
    return 0;
}

/* ---- The send: OAuth token hand-over -------------------------------------------------------- */

typedef struct call_s {
    cx_serve_outbound_t *so;
    const cx_connector_t *c;
    const char *capability;
    const char *tenant;
    const char *account; /* "" when the command names none */
    cx_oauth_t *oauth;   /* the connector's OAuth app, or NULL */
    int have_token;
    uint64_t version;
    char token[CX_OAUTH_TOKEN_MAX];
} call_t;

/* The call whose connector send runs on this thread right now. */
static _Thread_local call_t *CURRENT;

int cx__outbound_secret_source(void *ud, const cx_ctx_t *ctx, const char *account, const char *name,
                               cx_secret_value_t *out)
{
    (void)ud;
    const call_t *call = CURRENT;
    if (call == NULL || !call->have_token || strcmp(name, "access_token") != 0 ||
        ctx->rt != call->so->rt || strcmp(ctx->connector, call->c->manifest->id) != 0 ||
        account == NULL || strcmp(account, call->account) != 0)
        return CX_ENOTFOUND;
    size_t n = strlen(call->token);
    if (n >= sizeof out->current)
        return CX_ENOSPC;
    memcpy(out->current, call->token, n);
    out->current_len = n;
    return 0;
}

/* cx_outbound_send_fn: the connector's send with the token of (tenant, account). */
static int send_through_connector(void *ud, const cx_outbound_command_t *cmd,
                                  const char *intent_key, cx_arena_t *arena,
                                  cx_outbound_reply_t *reply, cx_error_t *err)
{
    (void)intent_key; /* connectors derive the same key from the command */
    call_t *call = ud;
    int rc;
    if (call->oauth && call->account[0]) {
        rc = cx_oauth_access_token(call->oauth, call->tenant, call->account, call->token,
                                   sizeof call->token, &call->version, err);
        if (rc == CX_ENOTFOUND) {
            cx_error_clear(err); /* never authorised here: the connector's secret files */
        } else if (rc != 0) {
            return rc; /* REAUTH_REQUIRED, PROVIDER, UNAVAILABLE: nothing was sent */
        } else {
            call->have_token = 1;
        }
    }
    cx_ctx_t ctx = {call->so->rt, call->c->manifest->id, (int64_t)time(NULL), arena};
    ProtobufCMessage *result = NULL;
    CURRENT = call;
    rc = call->c->send(call->c, &ctx, call->capability, cmd->msg, &result, err);
    CURRENT = NULL;
    if (rc == CX_EPROVIDER_AUTH && call->have_token) {
        /* The provider refused the stored token: refresh it once now (a refused refresh marks
         * the integration unhealthy); this command is released and may be sent again. */
        char fresh[CX_OAUTH_TOKEN_MAX];
        cx_error_t e2;
        cx_error_clear(&e2);
        cx_oauth_invalidate(call->oauth, call->tenant, call->account, call->version, fresh,
                            sizeof fresh, NULL, &e2);
        OPENSSL_cleanse(fresh, sizeof fresh);
    }
    OPENSSL_cleanse(call->token, sizeof call->token);
    call->have_token = 0;
    if (result) {
        reply->result = result;
        const char *id = str_field(result, "provider_message_id");
        if (id)
            snprintf(reply->provider_message_id, sizeof reply->provider_message_id, "%s", id);
        const char *pc = str_field(msg_field(result, "error"), "code");
        if (pc)
            snprintf(reply->provider_code, sizeof reply->provider_code, "%s", pc);
    }
    return rc;
}

/* ---- Answers -------------------------------------------------------------------------------- */

static const char *code_name(int rc)
{
    const char *n = cx_err_name(rc);
    return strncmp(n, "CX_E", 4) == 0 ? n + 4 : n;
}

/* The HTTP status of an outcome, and whether sending the same command again later may change
 * it (docs/cx.md, "POST /commands"). */
static int status_of(int rc, const cx_outbound_result_t *res, int *retryable)
{
    *retryable = 0;
    if (rc == 0)
        return 200;
    if (rc == CX_EIN_DOUBT)
        return 504;
    if (res->state == CX_INTENT_FAILED)
        return 422;
    switch (rc) {
    case CX_ERATE_LIMITED:
        *retryable = 1;
        return 429;
    case CX_EIN_PROGRESS:
        *retryable = 1;
        return 409;
    case CX_EPROVIDER:
        *retryable = 1;
        return 502;
    case CX_EPROVIDER_AUTH:
    case CX_EREAUTH_REQUIRED:
    case CX_EPROVIDER_REJECTED:
        return 502;
    case CX_ECIRCUIT_OPEN:
    case CX_EUNAVAILABLE:
    case CX_ETIMEOUT:
        *retryable = 1;
        return 503;
    case CX_ECONFIG:
    case CX_ENOTFOUND:
        return 503;
    case CX_ENOT_IMPLEMENTED:
        return 501;
    default:
        break;
    }
    if (strcmp(cx_err_class(rc), "payload") == 0 || rc == CX_EINVAL)
        return 400;
    return 500;
}

static void put_str_member(cx_buf_t *b, const char *name, const char *v)
{
    cx_buf_printf(b, ",\"%s\":", name);
    cx_cli_json_str(b, v, strlen(v));
}

static void answer_outcome(cx_gw_response_t *resp, const char *cid, const char *connector,
                           const char *capability, int rc, const cx_outbound_result_t *res,
                           const cx_msg_meta_t *rmeta, const cx_error_t *err)
{
    int retryable;
    int status = status_of(rc, res, &retryable);
    cx_buf_t *b = resp->body;
    resp->status = status;
    resp->content_type = "application/json";
    cx_buf_reset(b);
    cx_buf_printf(b, "{\"ok\":%s,\"correlationId\":", rc == 0 ? "true" : "false");
    cx_cli_json_str(b, cid, strlen(cid));
    put_str_member(b, "connector", connector);
    put_str_member(b, "capability", capability);
    if (res->intent_key[0])
        put_str_member(b, "intentKey", res->intent_key);
    put_str_member(b, "state", cx_intent_state_name(res->state));
    cx_buf_printf(b, ",\"replayed\":%s", res->replayed ? "true" : "false");
    if (res->intent.provider_message_id[0])
        put_str_member(b, "providerMessageId", res->intent.provider_message_id);
    if (rc != 0) {
        /* A stored failure keeps its own code (a replay has no fresh error text). */
        int code = res->state == CX_INTENT_FAILED && res->intent.code ? res->intent.code : rc;
        put_str_member(b, "errorCode", code_name(code));
        put_str_member(b, "errorClass", cx_err_class(code));
        put_str_member(b, "message",
                       err->code && err->message[0] ? err->message : cx_strerror(code));
        cx_buf_printf(b, ",\"retryable\":%s", retryable ? "true" : "false");
        if (res->intent.provider_code[0])
            put_str_member(b, "providerCode", res->intent.provider_code);
        if (res->intent.http_status)
            cx_buf_printf(b, ",\"upstreamStatus\":%d", res->intent.http_status);
        if (res->retry_after_ms)
            cx_buf_printf(b, ",\"retryAfterMs\":%u", res->retry_after_ms);
    }
    if (res->result && rmeta) {
        size_t mark = b->len;
        cx_buf_puts(b, ",\"result\":");
        if (cx_to_json(rmeta, res->result, b) != 0)
            cx_buf_truncate(b, mark);
    }
    cx_buf_putc(b, '}');
    cx_gw_header(resp, "Cache-Control", "no-store");
    if (status == 429 || status == 503 || status == 409) {
        uint32_t s = res->retry_after_ms ? (res->retry_after_ms + 999) / 1000 : 1;
        if (retryable) {
            char v[16];
            snprintf(v, sizeof v, "%u", s);
            cx_gw_header(resp, "Retry-After", v);
        }
    }
}

static void log_refusal(cx_serve_outbound_t *so, cx_log_level_t level, const char *cid,
                        const char *connector, const char *capability, const char *code, int status,
                        const char *msg)
{
    cx_log_record_t r;
    if (cx_log_begin(&r, so->log, level)) {
        cx_log_set_correlation_id(&r, cid);
        if (connector)
            cx_log_set_connector(&r, connector);
        if (capability)
            cx_log_set_capability(&r, capability);
        cx_log_set_outcome(&r, "rejected");
        cx_log_set_error_code(&r, code);
        cx_log_set_error_class(&r, "payload");
        cx_log_set_upstream_status(&r, status);
        cx_log_set_msg(&r, msg);
        cx_log_emit(&r);
    }
}

/* ---- The route ------------------------------------------------------------------------------ */

/* Whether the command's (connector, account) belongs to tenant: the accounts registry says
 * so, or the tenant authorised it through OAuth (a token is stored under (tenant, account)).
 * A command without an account uses the connector's own credentials. Returns 0, or an HTTP
 * status after answering. */
static int check_account(cx_serve_outbound_t *so, cx__outbound_snap_t *snap, const cx_apikey_t *key,
                         const char *cid, const char *connector, const char *tenant,
                         const char *account, cx_gw_response_t *resp)
{
    if (account[0] == '\0')
        return 0;
    const char *owner = cx_runtime_account_tenant(so->rt, connector, account);
    if (owner && strcmp(owner, tenant) == 0)
        return 0;
    if (owner) {
        cx__outbound_forbidden(so, "commands", key, cid, connector, tenant, "ACCOUNT_FORBIDDEN",
                               "the command's account belongs to another tenant", resp);
        return 403;
    }
    cx_oauth_t *o = cx__outbound_oauth(snap, connector);
    if (o) {
        cx_oauth_token_t *t = malloc(sizeof *t);
        if (t == NULL) {
            cx__outbound_error(resp, 500, cid, "NOMEM", "infra", "out of memory", NULL);
            return 500;
        }
        cx_error_t err;
        cx_error_clear(&err);
        int rc = cx_oauth_token_get(o, tenant, account, t, &err);
        cx_oauth_token_wipe(t);
        free(t);
        if (rc == 0)
            return 0;
        if (rc == CX_EUNAVAILABLE) {
            cx__outbound_error(resp, 503, cid, code_name(rc), "infra",
                               "the token store cannot be reached", NULL);
            cx_gw_header(resp, "Retry-After", "1");
            return 503;
        }
    }
    cx__outbound_forbidden(so, "commands", key, cid, connector, tenant, "ACCOUNT_FORBIDDEN",
                           "the command's account is neither registered for its tenant "
                           "(accounts) nor authorised by it through /oauth/<connector>/start",
                           resp);
    return 403;
}

static void violations_answer(cx_gw_response_t *resp, const char *cid, const cx_violations_t *v)
{
    cx_buf_t extra;
    cx_buf_init(&extra, 64u << 10);
    cx_buf_puts(&extra, ",\"violations\":[");
    size_t n = v->count < v->cap ? v->count : v->cap;
    for (size_t i = 0; i < n; i++) {
        const cx_violation_t *x = &v->items[i];
        cx_buf_printf(&extra, "%s{\"path\":", i ? "," : "");
        cx_cli_json_str(&extra, x->path[0] ? x->path : "(root)",
                        strlen(x->path[0] ? x->path : "(root)"));
        cx_buf_puts(&extra, ",\"rule\":");
        cx_cli_json_str(&extra, x->rule, strlen(x->rule));
        cx_buf_puts(&extra, ",\"message\":");
        cx_cli_json_str(&extra, x->message, strlen(x->message));
        cx_buf_putc(&extra, '}');
    }
    cx_buf_puts(&extra, "]");
    char msg[160];
    snprintf(msg, sizeof msg, "the command is invalid: %zu violation%s", v->count,
             v->count == 1 ? "" : "s");
    cx__outbound_error(resp, 400, cid, "VALIDATION", "payload", msg,
                       cx_buf_error(&extra) ? NULL : extra.data);
    cx_buf_free(&extra);
}

void cx_serve_on_command(void *ud, const cx_gw_request_t *req, cx_gw_response_t *resp)
{
    cx_serve_app_t *app = ud;
    cx_serve_outbound_t *so = app->outbound;
    char cid[72];
    cx__outbound_correlation_id(req, cid);
    if (so == NULL) {
        cx__outbound_error(resp, 503, cid, "CONFIG", "config", "outbound routes are off", NULL);
        return;
    }
    cx__outbound_snap_t *snap = cx__outbound_acquire(so);
    cx_arena_t arena;
    cx_arena_init(&arena, NULL, ARENA_LIMIT);
    call_t *call = NULL;
    const cx_apikey_t *key = cx__outbound_authenticate(so, snap, "commands", req, cid, resp);
    if (key == NULL)
        goto done;

    /* <connector>/<capability> */
    char connector[64], capability[64];
    const char *slash = strchr(req->rest, '/');
    size_t nc = slash ? (size_t)(slash - req->rest) : 0;
    size_t np = slash ? strlen(slash + 1) : 0;
    if (!slash || !cx_cli_connector_id_ok(req->rest, nc) ||
        !cx_cli_connector_id_ok(slash + 1, np)) {
        cx__outbound_error(resp, 404, cid, "NOT_FOUND", "payload",
                           "expected /commands/<connector>/<capability>", NULL);
        goto done;
    }
    memcpy(connector, req->rest, nc);
    connector[nc] = '\0';
    memcpy(capability, slash + 1, np);
    capability[np] = '\0';
    const cx_connector_t *c = cx_runtime_connector(so->rt, connector);
    const cx_msg_meta_t *meta = command_meta(capability);
    if (c == NULL || c->send == NULL || meta == NULL || !declares(c, capability)) {
        log_refusal(so, CX_LOG_DEBUG, cid, NULL, NULL, "NOT_FOUND", 404,
                    "no such connector or outbound capability");
        cx__outbound_error(resp, 404, cid, "NOT_FOUND", "payload",
                           c == NULL || c->send == NULL
                               ? "no such connector, or it sends nothing"
                               : "the connector has no such outbound capability",
                           NULL);
        goto done;
    }
    if (!cx_apikey_allows(key, CX_APIKEY_CONNECTORS, connector) ||
        !cx_apikey_allows(key, CX_APIKEY_CAPABILITIES, capability)) {
        cx__outbound_forbidden(so, "commands", key, cid, connector, NULL, "API_KEY_FORBIDDEN",
                               "the API key may not use this connector or capability", resp);
        goto done;
    }

    /* The command: decoded strictly, then every rule of its type. */
    ProtobufCMessage *msg = NULL;
    cx_error_t err;
    cx_error_clear(&err);
    int rc = cx_from_json(meta, req->body, req->body_len, &arena, NULL, &msg, &err);
    if (rc != 0) {
        char extra[256] = "";
        if (err.path[0]) {
            cx_buf_t eb;
            cx_buf_init_fixed(&eb, extra, sizeof extra);
            cx_buf_puts(&eb, ",\"path\":");
            cx_cli_json_str(&eb, err.path, strlen(err.path));
            if (cx_buf_error(&eb))
                extra[0] = '\0';
        }
        log_refusal(so, CX_LOG_INFO, cid, connector, capability, code_name(rc), 400,
                    "the command is not valid JSON of its type");
        cx__outbound_error(resp, 400, cid, code_name(rc), cx_err_class(rc),
                           err.message[0] ? err.message : cx_strerror(rc), extra[0] ? extra : NULL);
        goto done;
    }
    cx_violation_t vs[MAX_VIOLATIONS];
    cx_violations_t v = {vs, MAX_VIOLATIONS, 0};
    if (cx_validate(meta, msg, &v) != 0) {
        log_refusal(so, CX_LOG_INFO, cid, connector, capability, "VALIDATION", 400,
                    "the command violates its schema");
        violations_answer(resp, cid, &v);
        goto done;
    }
    const char *tenant = str_field(msg, "tenant_id");
    if (tenant == NULL) {
        cx__outbound_error(resp, 400, cid, "VALIDATION", "payload",
                           "the command names no tenant_id", NULL);
        goto done;
    }
    if (!cx_apikey_allows(key, CX_APIKEY_TENANTS, tenant)) {
        cx__outbound_forbidden(so, "commands", key, cid, connector, tenant, "API_KEY_FORBIDDEN",
                               "the API key may not act for this tenant", resp);
        goto done;
    }
    const ProtobufCMessage *channel = msg_field(msg, "channel");
    const char *named = channel ? str_field(channel, "channel") : str_field(msg, "provider");
    if (named && strcmp(named, connector) != 0) {
        log_refusal(so, CX_LOG_INFO, cid, connector, capability, "CONNECTOR_MISMATCH", 400,
                    "the command names another connector than the path");
        cx__outbound_error(resp, 400, cid, "CONNECTOR_MISMATCH", "payload",
                           channel ? "channel.channel must be the connector of the path"
                                   : "provider must be the connector of the path",
                           NULL);
        goto done;
    }
    const char *account = channel ? str_field(channel, "account_id") : str_field(msg, "account_id");
    if (account == NULL)
        account = "";
    if (check_account(so, snap, key, cid, connector, tenant, account, resp) != 0)
        goto done;

    if ((call = calloc(1, sizeof *call)) == NULL) {
        cx__outbound_error(resp, 500, cid, "NOMEM", "infra", "out of memory", NULL);
        goto done;
    }
    *call = (call_t){.so = so,
                     .c = c,
                     .capability = capability,
                     .tenant = tenant,
                     .account = account,
                     .oauth = cx__outbound_oauth(snap, connector)};
    char actor[CX_APIKEY_ID_MAX + 8];
    snprintf(actor, sizeof actor, "apikey:%s", cx_apikey_id(key));
    const cx_msg_meta_t *rmeta = result_meta(meta);
    cx_outbound_command_t cmd = {.meta = meta,
                                 .msg = msg,
                                 .connector = connector,
                                 .account_id = account[0] ? account : NULL,
                                 .tenant_id = tenant,
                                 .correlation_id = cid,
                                 .actor = actor,
                                 .result_meta = rmeta,
                                 .send = send_through_connector,
                                 .send_ud = call};
    cx_outbound_result_t *res = malloc(sizeof *res);
    if (res == NULL) {
        cx__outbound_error(resp, 500, cid, "NOMEM", "infra", "out of memory", NULL);
        goto done;
    }
    cx_error_clear(&err);
    rc = cx_outbound_send(so->ob, &cmd, &arena, res, &err);
    answer_outcome(resp, cid, connector, capability, rc, res, rmeta, &err);
    free(res);

done:
    if (call) {
        OPENSSL_cleanse(call->token, sizeof call->token);
        free(call);
    }
    cx_arena_release(&arena);
    cx__outbound_release(snap);
}
