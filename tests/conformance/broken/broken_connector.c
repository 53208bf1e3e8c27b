/* Deliberately broken connectors: the test connector (tests/support/test_connector.c) with one
 * defect each, chosen at compile time. Each is built as libcx_broken_<defect>.so and
 * tests/conformance/test_broken.py asserts the conformance suite flags it with exactly the
 * check id meant to catch that defect (docs/conformance.md):
 *
 *   BROKEN_LOGS_RAW_BODY            logs the request body             logging.no_raw_body
 *   BROKEN_KEY_ARRIVAL_TIME         arrival time in the dedupe key parse.dedupe_keys_deterministic
 *   BROKEN_KEY_PHONE                sender's phone in the dedupe key  parse.dedupe_keys_no_pii
 *   BROKEN_ACCEPTS_ANY_SIGNATURE    verify always says yes            signature.invalid_rejected
 *   BROKEN_FAILS_WHOLE_BATCH        one bad item rejects the request  batch.bad_item_isolated
 *   BROKEN_CRASHES_ON_MUTATION      crashes on a type-swapped field   robustness.mutated_fixtures
 *   BROKEN_ACTIVE_WITHOUT_FIXTURE   an active capability, no fixture
 * manifest.active_capabilities_have_fixtures BROKEN_RESENDS_AFTER_TIMEOUT    resends a request that
 * may have   outbound.timeout_not_resent arrived (needs WITH_OUTBOUND)
 *
 * WITH_OUTBOUND adds outbound_messages (active): send posts {"to", "text"} to
 * <api_base_url>/messages (the setting file beside the secrets, which the suite points at its
 * mock provider) through cx_http_send, and reads {"messages":[{"id"}]} or {"id"}. Built alone
 * it is the good outbound connector the outbound checks must pass.
 *
 * BROKEN_ABI claims another ABI version: cx-conformance refuses to load it (exit 78).
 *
 * Everything else is the test connector's behaviour, so no other check may fail.
 */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cx/connector.h"
#include "cx/http.h"
#include "cx/messaging/v1/messaging.cx.h"
#include "cx/runtime.h"
#include "cx/signature.h"

static const cx_capability_decl_t CAPS[] = {
    {"inbound_messages", CX_CAP_ACTIVE},
#ifdef BROKEN_ACTIVE_WITHOUT_FIXTURE
    /* The defect: declared active, but no fixture produces a reaction. */
    {"reactions", CX_CAP_ACTIVE},
#endif
#ifdef WITH_OUTBOUND
    {"outbound_messages", CX_CAP_ACTIVE},
#endif
};

static const cx_secret_decl_t SECRETS[] = {
    {"secret", 1, 0, "HMAC key of X-Test-Signature"},
};

static const cx_manifest_t MANIFEST = {
    .id = "test",
    .version = "1.0.0",
    .display_name = "Broken test connector",
    .provider = "test",
    .capabilities = CAPS,
    .n_capabilities = sizeof CAPS / sizeof CAPS[0],
    .secrets = SECRETS,
    .n_secrets = 1,
    .inbound_auth = CX_AUTH_HMAC,
};

static int verify(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                  cx_error_t *err)
{
    (void)c;
#ifdef BROKEN_ACCEPTS_ANY_SIGNATURE
    /* The defect: nothing is checked. */
    (void)ctx;
    (void)req;
    (void)err;
    return 0;
#else
    cx_secret_value_t s;
    if (cx_ctx_secret(ctx, NULL, "secret", &s) != 0)
        return cx_error_set(err, CX_ECONFIG, NULL, "secret test/secret is not configured");
    cx_secret_pair_t pair = {s.current, s.current_len, s.previous, s.previous_len};
    return cx_signature_verify_hex(&pair, req->body, req->body_len,
                                   cx_request_header(req, "X-Test-Signature"), "sha256=", err);
#endif
}

static char *dup_str(cx_arena_t *a, const char *s)
{
    return cx_arena_strndup(a, s, strlen(s));
}

static int parse(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                 cx_parse_out_t *out, cx_error_t *err)
{
    (void)c;
#ifdef BROKEN_LOGS_RAW_BODY
    /* The defect: the payload goes to the logs ("just while debugging"). */
    {
        char msg[1024];
        snprintf(msg, sizeof msg, "received %.*s", (int)(req->body_len < 900 ? req->body_len : 900),
                 req->body);
        cx_log_record_t r;
        if (cx_log_begin(&r, cx_runtime_logger(ctx->rt), CX_LOG_DEBUG)) {
            cx_log_set_connector(&r, "test");
            cx_log_set_msg(&r, msg);
            cx_log_emit(&r);
        }
    }
#endif
    json_error_t jerr;
    json_t *root = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        return cx_error_set(err, CX_EMALFORMED, NULL, "body is not a JSON object");
    }
    const char *account = json_string_value(json_object_get(root, "account"));
    json_t *items = json_object_get(root, "items");
    if (account == NULL || !json_is_array(items)) {
        json_decref(root);
        return cx_error_set(err, CX_EMALFORMED, NULL, "'account' and 'items' are required");
    }
    cx_arena_t *a = ctx->arena;
    char *acc = dup_str(a, account);
    Cx__Common__V1__ChannelRef *channel = cx_arena_alloc(a, sizeof *channel);
    if (acc == NULL || channel == NULL)
        goto nomem;
    cx__common__v1__channel_ref__init(channel);
    channel->channel = "test";
    channel->account_id = acc;
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        const char *id = json_string_value(json_object_get(item, "id"));
        if (!json_is_object(item) || id == NULL) {
#ifdef BROKEN_FAILS_WHOLE_BATCH
            /* The defect: one unusable item rejects the whole request. */
            json_decref(root);
            return cx_error_set(err, CX_EMALFORMED, NULL, "item without a string id");
#else
            if (cx_parse_emit_error(out, acc, CX_EMALFORMED, "item without a string id") != 0)
                goto nomem;
            continue;
#endif
        }
        cx_messaging_direct_message_t *dm = cx_arena_alloc(a, sizeof *dm);
        Cx__Common__V1__ActorRef *sender = cx_arena_alloc(a, sizeof *sender);
        Google__Protobuf__Timestamp *at = cx_arena_alloc(a, sizeof *at);
        Cx__Common__V1__ConversationRef *conv = cx_arena_alloc(a, sizeof *conv);
        if (dm == NULL || sender == NULL || at == NULL || conv == NULL)
            goto nomem;
        cx__common__v1__conversation_ref__init(conv);
        cx_messaging_direct_message_init(dm);
        cx__common__v1__actor_ref__init(sender);
        google__protobuf__timestamp__init(at);
        const char *from = json_string_value(json_object_get(item, "from"));
        json_t *tj = json_object_get(item, "text");
        const char *text = json_string_value(tj);
#ifdef BROKEN_CRASHES_ON_MUTATION
        /* The defect: trusts that "text", when present, is a string. */
        if (tj != NULL) {
            const char *volatile p = text;
            volatile size_t n = strlen(p);
            (void)n;
        }
#endif
        sender->id = dup_str(a, from ? from : "unknown");
        sender->kind = CX__COMMON__V1__ACTOR_KIND__ACTOR_KIND_USER;
        at->seconds = ctx->now;
        conv->id = sender->id;
        conv->kind = CX__COMMON__V1__CONVERSATION_KIND__CONVERSATION_KIND_DIRECT;
        dm->conversation = conv;
        dm->channel = channel;
        char mid[512];
#if defined(BROKEN_KEY_ARRIVAL_TIME)
        /* The defect: the arrival time makes every redelivery a new message. */
        snprintf(mid, sizeof mid, "%s-%lld", id, (long long)ctx->now);
#elif defined(BROKEN_KEY_PHONE)
        /* The defect: the sender's number in an id field the key is built from. */
        snprintf(mid, sizeof mid, "%s-%s", from ? from : "unknown", id);
#else
        snprintf(mid, sizeof mid, "%s", id);
#endif
        dm->message_id = dup_str(a, mid);
        dm->sender = sender;
        dm->direction = CX__MESSAGING__V1__MESSAGE_DIRECTION__MESSAGE_DIRECTION_INBOUND;
        dm->content_type = CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_TEXT;
        dm->occurred_at = at;
        dm->text = dup_str(a, text ? text : "");
        dm->provider_type = "text";
        if (sender->id == NULL || dm->message_id == NULL || dm->text == NULL ||
            cx_parse_emit(out, &cx_messaging_direct_message_meta, &dm->base, acc) != 0)
            goto nomem;
    }
    json_decref(root);
    return 0;
nomem:
    json_decref(root);
    return cx_error_set(err, CX_ENOSPC, NULL, "request arena exhausted");
}

#ifdef WITH_OUTBOUND
/* One client for the process (the conformance checks run single-threaded). */
static cx_http_client_t *g_http;

/* {"messages":[{"id":"..."}]} or {"id":"..."} */
static const char *provider_id(json_t *doc)
{
    const char *id = json_string_value(json_object_get(doc, "id"));
    if (id == NULL)
        id = json_string_value(
            json_object_get(json_array_get(json_object_get(doc, "messages"), 0), "id"));
    return id;
}

static int send_message(const cx_connector_t *c, const cx_ctx_t *ctx, const char *capability,
                        const ProtobufCMessage *command, ProtobufCMessage **result, cx_error_t *err)
{
    (void)c;
    const cx_messaging_send_message_command_t *cmd = (const void *)command;
    if (capability == NULL || strcmp(capability, "outbound_messages") != 0 || cmd == NULL)
        return cx_error_set(err, CX_ENOT_IMPLEMENTED, NULL, "only outbound_messages");
    cx_secret_value_t base;
    if (cx_ctx_secret(ctx, NULL, "api_base_url", &base) != 0 || base.current_len > 900)
        return cx_error_set(err, CX_ECONFIG, NULL, "setting test/api_base_url is not set");
    if (g_http == NULL) {
        cx_http_config_t hc = {.connector = "test",
                               .allow_loopback_http = 1,
                               .backoff_base_ms = 20,
                               .timeout_ms = 5000};
        if (cx_http_client_new(&hc, &g_http, err) != 0)
            return err->code;
    }
    char url[1024];
    snprintf(url, sizeof url, "%.*s/messages", (int)base.current_len, (const char *)base.current);
    json_t *body = json_pack("{s:s, s:s}", "to", cmd->to ? cmd->to : "", "text",
                             cmd->text && cmd->text->body ? cmd->text->body : "");
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, NULL);
    cx_http_request_t rq = {.method = "POST",
                            .url = url,
                            .body = text,
                            .body_len = strlen(text),
                            .capability = capability};
    cx_http_response_t rs;
    cx_http_response_init(&rs);
    int rc = cx_http_send(g_http, &rq, &rs, err);
#ifdef BROKEN_RESENDS_AFTER_TIMEOUT
    /* The defect: "no answer, so try again" - the first request may have been delivered. */
    if (rc == CX_EIN_DOUBT) {
        cx_error_clear(err);
        rc = cx_http_send(g_http, &rq, &rs, err);
    }
#endif
    free(text);
    if (rc == 0) {
        json_t *doc = json_loadb(rs.body.data ? rs.body.data : "", rs.body.len, 0, NULL);
        const char *id = provider_id(doc);
        cx_messaging_send_message_result_t *res = cx_arena_alloc(ctx->arena, sizeof *res);
        if (id == NULL || res == NULL) {
            rc = cx_error_set(err, CX_EIN_DOUBT, NULL, "accepted without a message id");
        } else {
            cx__messaging__v1__send_message_result__init(res);
            res->client_message_id = cmd->client_message_id;
            res->provider_message_id = dup_str(ctx->arena, id);
            res->status = CX__MESSAGING__V1__SEND_MESSAGE_STATUS__SEND_MESSAGE_STATUS_ACCEPTED;
            *result = &res->base;
        }
        json_decref(doc);
    }
    cx_http_response_free(&rs);
    return rc;
}
#endif

static const cx_connector_t CONNECTOR = {
#ifdef BROKEN_ABI
    /* Built "against another SDK release": the runner must refuse it before anything. */
    .abi_version = CX_CONNECTOR_ABI + 1,
#else
    .abi_version = CX_CONNECTOR_ABI,
#endif
    .struct_size = sizeof(cx_connector_t),
    .manifest = &MANIFEST,
    .verify = verify,
    .parse = parse,
#ifdef WITH_OUTBOUND
    .send = send_message,
#endif
};

#if defined(__GNUC__)
__attribute__((visibility("default")))
#endif
const cx_connector_t *
cx_connector_entry(void);

const cx_connector_t *cx_connector_entry(void)
{
    return &CONNECTOR;
}
