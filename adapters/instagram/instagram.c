/* The Instagram connector: manifest and entry point (instagram.h). */
#include "instagram/instagram.h"

#include <pthread.h>

#include "instagram/instagram_internal.h"

/* A capability is active only with real-format fixtures (fixtures/instagram/) and a passing
 * conformance run. Every one has fixtures; they stay beta until cx-conformance passes in full
 * (docs/connectors/instagram.md, "Capabilities and state", lists what is still open). */
static const cx_capability_decl_t CAPS[] = {
    {"inbound_messages", CX_CAP_ACTIVE},  /* messages, echoes, unsends, edits, postbacks */
    {"read_receipts", CX_CAP_ACTIVE},     /* messaging_seen */
    {"reactions", CX_CAP_ACTIVE},         /* message_reactions */
    {"comments", CX_CAP_ACTIVE},          /* comments, live_comments */
    {"outbound_messages", CX_CAP_ACTIVE}, /* Send API: DMs, sender actions */
    {"comment_replies", CX_CAP_ACTIVE},   /* private and public replies */
};

static int verify(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                  cx_error_t *err)
{
    (void)c;
    return cx__meta_verify(ctx, req, err);
}

static int handshake(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                     cx_response_t *resp, cx_error_t *err)
{
    (void)c;
    return cx__meta_handshake(ctx, req, resp, err);
}

static cx_manifest_t M;
static cx_connector_t C;
static pthread_once_t ONCE = PTHREAD_ONCE_INIT;

/* The secret declarations live in meta.c behind a function, which a static initialiser cannot
 * call: the connector is filled once, then only read. */
static void init(void)
{
    size_t n;
    const cx_secret_decl_t *secrets = cx__meta_secret_decls(&n);
    M = (cx_manifest_t){
        .id = CX_INSTAGRAM_ID,
        .version = "0.1.0",
        .display_name = "Instagram Messaging",
        .provider = "meta",
        .capabilities = CAPS,
        .n_capabilities = sizeof CAPS / sizeof CAPS[0],
        .secrets = secrets,
        .n_secrets = n,
        .inbound_auth = CX_AUTH_HMAC,
    };
    C = (cx_connector_t){
        .abi_version = CX_CONNECTOR_ABI,
        .struct_size = sizeof(cx_connector_t),
        .manifest = &M,
        .verify = verify,
        .parse = cx__instagram_parse,
        .handshake = handshake,
        .send = cx__instagram_send,
    };
}

const cx_connector_t *cx_instagram_connector(void)
{
    pthread_once(&ONCE, init);
    return &C;
}
