#include "test_connector.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cx/json_reader.h"
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

static int cmp_key(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* 1 when an object anywhere in the tree has a key twice, 0 when none does, -1 when the arena is
 * exhausted. The body format refuses duplicate keys; the reader keeps them. Small objects are
 * checked pairwise, large ones sorted (no quadratic walk on a hostile body). Recursion is
 * bounded by the reader's CX_MJ_MAX_DEPTH. */
static int has_duplicate_keys(cx_arena_t *a, const cx_mj_t *v)
{
    int rc;
    if (v->type == CX_MJ_ARRAY) {
        for (uint32_t i = 0; i < v->n; i++)
            if ((rc = has_duplicate_keys(a, &v->u.items[i])) != 0)
                return rc;
        return 0;
    }
    if (v->type != CX_MJ_OBJECT)
        return 0;
    if (v->n <= 16) {
        for (uint32_t i = 1; i < v->n; i++)
            for (uint32_t j = 0; j < i; j++)
                if (strcmp(v->u.members[i].key, v->u.members[j].key) == 0)
                    return 1;
    } else {
        const char **keys = cx_arena_alloc(a, v->n * sizeof *keys);
        if (keys == NULL)
            return -1;
        for (uint32_t i = 0; i < v->n; i++)
            keys[i] = v->u.members[i].key;
        qsort(keys, v->n, sizeof *keys, cmp_key);
        for (uint32_t i = 1; i < v->n; i++)
            if (strcmp(keys[i - 1], keys[i]) == 0)
                return 1;
    }
    for (uint32_t i = 0; i < v->n; i++)
        if ((rc = has_duplicate_keys(a, &v->u.members[i].value)) != 0)
            return rc;
    return 0;
}

/* The body: {"account": "<id>", "items": [{"id": "<id>", "from": "<id>", "text": "..."}]}.
 * Strings come from the reader's tree in the request arena and go into the messages as they
 * are; protobuf-c's char * fields are never written through. */
static int parse(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                 cx_parse_out_t *out, cx_error_t *err)
{
    (void)c;
    cx_arena_t *a = ctx->arena;
    const cx_mj_t *root;
    int rc = cx_mj_parse(a, req->body, req->body_len, &root, NULL);
    if (rc == CX_ENOSPC)
        goto nomem;
    if (rc == 0 && cx_mj_is(root, CX_MJ_OBJECT) && (rc = has_duplicate_keys(a, root)) < 0)
        goto nomem;
    if (rc != 0 || !cx_mj_is(root, CX_MJ_OBJECT))
        return cx_error_set(err, CX_EMALFORMED, NULL, "body is not a JSON object");
    const char *acc = cx_mj_gets(root, "account");
    const cx_mj_t *items = cx_mj_get(root, "items");
    if (acc == NULL || !cx_mj_is(items, CX_MJ_ARRAY))
        return cx_error_set(err, CX_EMALFORMED, NULL, "'account' and 'items' are required");
    Cx__Common__V1__ChannelRef *channel = cx_arena_alloc(a, sizeof *channel);
    if (channel == NULL)
        goto nomem;
    cx__common__v1__channel_ref__init(channel);
    channel->channel = "test";
    channel->account_id = (char *)acc;
    for (size_t i = 0; i < cx_mj_len(items); i++) {
        const cx_mj_t *item = cx_mj_at(items, i);
        const char *id = cx_mj_gets(item, "id");
        if (id == NULL) {
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
        const char *from = cx_mj_gets(item, "from");
        const char *text = cx_mj_gets(item, "text");
        sender->id = (char *)(from ? from : "unknown");
        sender->kind = CX__COMMON__V1__ACTOR_KIND__ACTOR_KIND_USER;
        at->seconds = ctx->now;
        conv->id = sender->id;
        conv->kind = CX__COMMON__V1__CONVERSATION_KIND__CONVERSATION_KIND_DIRECT;
        dm->conversation = conv;
        dm->channel = channel;
        dm->message_id = (char *)id;
        dm->sender = sender;
        dm->direction = CX__MESSAGING__V1__MESSAGE_DIRECTION__MESSAGE_DIRECTION_INBOUND;
        dm->content_type = CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_TEXT;
        dm->occurred_at = at;
        dm->text = (char *)(text ? text : "");
        dm->provider_type = "text";
        if (cx_parse_emit(out, &cx_messaging_direct_message_meta, &dm->base, acc) != 0)
            goto nomem;
    }
    return 0;
nomem:
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
