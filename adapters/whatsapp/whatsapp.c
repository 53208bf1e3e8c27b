/* The WhatsApp Cloud API connector: manifest and entry points (whatsapp.h). Inbound mapping
 * lives in whatsapp_inbound.c; signatures, the handshake and the batch walk are Meta's shared
 * code (adapters/meta/). */
#include "whatsapp.h"

#include "whatsapp_internal.h"

/* A capability is active only when it has fixtures (fixtures/whatsapp/) and passes
 * cx-conformance; until then beta. */
static const cx_capability_decl_t CAPABILITIES[] = {
    {"inbound_messages", CX_CAP_ACTIVE},
    {"message_status_updates", CX_CAP_ACTIVE},
    {"reactions", CX_CAP_ACTIVE},
    {"outbound_messages", CX_CAP_ACTIVE},
};

static const cx_manifest_t MANIFEST = {
    .id = CX_WHATSAPP_ID,
    .version = "0.1.0",
    .display_name = "WhatsApp Cloud API",
    .provider = "meta",
    .capabilities = CAPABILITIES,
    .n_capabilities = sizeof CAPABILITIES / sizeof CAPABILITIES[0],
    .secrets = cx__meta_secrets,
    .n_secrets = CX_META_N_SECRETS,
    .inbound_auth = CX_AUTH_HMAC,
};

static const cx_connector_t CONNECTOR = {
    .abi_version = CX_CONNECTOR_ABI,
    .struct_size = sizeof(cx_connector_t),
    .manifest = &MANIFEST,
    .verify = cx__meta_verify,
    .parse = cx__whatsapp_parse,
    .handshake = cx__meta_handshake,
    .send = cx__whatsapp_send,
};

const cx_connector_t *cx_whatsapp_connector(void)
{
    return &CONNECTOR;
}

int cx_whatsapp_send_fn(void *ud, const cx_outbound_command_t *cmd, const char *intent_key,
                        cx_arena_t *arena, cx_outbound_reply_t *reply, cx_error_t *err)
{
    (void)intent_key; /* the connector derives the same key from the command */
    return cx__meta_outbound_bridge(&CONNECTOR, ud, cmd, arena, reply, err);
}
