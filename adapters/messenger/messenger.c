/* The Messenger connector: manifest and entry point (messenger.h). */
#include "messenger/messenger.h"

#include <pthread.h>

#include "messenger/messenger_internal.h"

/* A capability is active only with real-format fixtures (fixtures/messenger/) and a passing
 * conformance run. Every one has fixtures; they stay beta until cx-conformance passes in full
 * (docs/connectors/messenger.md, "Capabilities and state", lists what is still open). */
static const cx_capability_decl_t CAPS[] = {
    {"inbound_messages", CX_CAP_ACTIVE},       /* messages, echoes, edits, postbacks */
    {"message_status_updates", CX_CAP_ACTIVE}, /* message_deliveries */
    {"read_receipts", CX_CAP_ACTIVE},          /* message_reads (watermark) */
    {"reactions", CX_CAP_ACTIVE},              /* message_reactions */
    {"leads", CX_CAP_ACTIVE},                  /* Page leadgen */
    {"outbound_messages", CX_CAP_ACTIVE},      /* Send API; leads: Graph /<leadgen_id> */
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
        .id = CX_MESSENGER_ID,
        .version = "0.1.0",
        .display_name = "Facebook Messenger",
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
        .parse = cx__messenger_parse,
        .handshake = handshake,
        .send = cx__messenger_send,
    };
}

const cx_connector_t *cx_messenger_connector(void)
{
    pthread_once(&ONCE, init);
    return &C;
}
