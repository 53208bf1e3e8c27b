/* The Messenger connector: manifest and entry point (messenger.h). */
#include "messenger/messenger.h"

#include "messenger/messenger_internal.h"

/* A capability is active only with real-format fixtures (fixtures/messenger/) and a passing
 * conformance run (docs/connectors/messenger.md, "Capabilities and state"). */
static const cx_capability_decl_t CAPS[] = {
    {"inbound_messages", CX_CAP_ACTIVE},       /* messages, echoes, edits, postbacks */
    {"message_status_updates", CX_CAP_ACTIVE}, /* message_deliveries */
    {"read_receipts", CX_CAP_ACTIVE},          /* message_reads (watermark) */
    {"reactions", CX_CAP_ACTIVE},              /* message_reactions */
    {"leads", CX_CAP_ACTIVE},                  /* Page leadgen */
    {"outbound_messages", CX_CAP_ACTIVE},      /* Send API; leads: Graph /<leadgen_id> */
};

static const cx_manifest_t MANIFEST = {
    .id = CX_MESSENGER_ID,
    .version = "0.1.0",
    .display_name = "Facebook Messenger",
    .provider = "meta",
    .capabilities = CAPS,
    .n_capabilities = sizeof CAPS / sizeof CAPS[0],
    .secrets = cx__meta_secrets,
    .n_secrets = CX_META_N_SECRETS,
    .inbound_auth = CX_AUTH_HMAC,
};

static const cx_connector_t CONNECTOR = {
    .abi_version = CX_CONNECTOR_ABI,
    .struct_size = sizeof(cx_connector_t),
    .manifest = &MANIFEST,
    .verify = cx__meta_verify,
    .parse = cx__messenger_parse,
    .handshake = cx__meta_handshake,
    .send = cx__messenger_send,
};

const cx_connector_t *cx_messenger_connector(void)
{
    return &CONNECTOR;
}
