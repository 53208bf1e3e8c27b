#include "test_connector.h"

#include <jansson.h>
#include <string.h>

#include "cx/messaging/v1/messaging.cx.h"
#include "cx/signature.h"

static const cx_capability_decl_t CAPS[] = {
    {"inbound_messages", CX_CAP_ACTIVE},
};

static const cx_secret_decl_t SECRETS[] = {
    {"secret", 1, 0, "HMAC key of X-Test-Signature"},
};

static const cx_manifest_t MANIFEST = {
    .id = "test",
    .version = "1.0.0",
    .display_name = "Test connector",
    .provider = "test",
    .capabilities = CAPS,
    .n_capabilities = 1,
    .secrets = SECRETS,
    .n_secrets = 1,
    .inbound_auth = CX_AUTH_HMAC,
};

static int verify(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                  cx_error_t *err)
{
    (void)c;
    cx_secret_value_t s;
    if (cx_ctx_secret(ctx, NULL, "secret", &s) != 0)
        return cx_error_set(err, CX_ECONFIG, NULL, "secret test/secret is not configured");
    cx_secret_pair_t pair = {s.current, s.current_len, s.previous, s.previous_len};
    return cx_signature_verify_hex(&pair, req->body, req->body_len,
                                   cx_request_header(req, "X-Test-Signature"), "sha256=", err);
}

static char *dup_str(cx_arena_t *a, const char *s)
{
    return cx_arena_strndup(a, s, strlen(s));
}

static int parse(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                 cx_parse_out_t *out, cx_error_t *err)
{
    (void)c;
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
    json_array_foreach(items, i, item) {
        const char *id = json_string_value(json_object_get(item, "id"));
        if (!json_is_object(item) || id == NULL) {
            if (cx_parse_emit_error(out, acc, CX_EMALFORMED, "item without a string id") != 0)
                goto nomem;
            continue;
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
        const char *text = json_string_value(json_object_get(item, "text"));
        sender->id = dup_str(a, from ? from : "unknown");
        sender->kind = CX__COMMON__V1__ACTOR_KIND__ACTOR_KIND_USER;
        at->seconds = ctx->now;
        conv->id = sender->id;
        conv->kind = CX__COMMON__V1__CONVERSATION_KIND__CONVERSATION_KIND_DIRECT;
        dm->conversation = conv;
        dm->channel = channel;
        dm->message_id = dup_str(a, id);
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

static int handshake(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                     cx_response_t *resp, cx_error_t *err)
{
    (void)c;
    (void)ctx;
    (void)err;
    char buf[256];
    const char *challenge = cx_request_query(req, "challenge", buf, sizeof buf);
    if (challenge == NULL) {
        resp->status = 400;
        return 0;
    }
    resp->status = 200;
    resp->content_type = "text/plain";
    cx_buf_puts(resp->body, challenge);
    return 0;
}

static const cx_connector_t CONNECTOR = {
    .abi_version = CX_CONNECTOR_ABI,
    .struct_size = sizeof(cx_connector_t),
    .manifest = &MANIFEST,
    .verify = verify,
    .parse = parse,
    .handshake = handshake,
};

const cx_connector_t *cx_test_connector(void)
{
    return &CONNECTOR;
}

void cx_test_sign(const char *key, const char *body, size_t len, char out[80])
{
    cx_signature_sign_hex((const unsigned char *)key, strlen(key), body, len, "sha256=", out, 80);
}
