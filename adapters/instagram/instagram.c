/* The Instagram connector: manifest and entry point (instagram.h). */
#include "instagram/instagram.h"

#include "instagram/instagram_internal.h"

/* A capability is active only with real-format fixtures (fixtures/instagram/) and a passing
 * conformance run (docs/connectors/instagram.md, "Capabilities and state"). */
static const cx_capability_decl_t CAPS[] = {
    {"inbound_messages", CX_CAP_ACTIVE},  /* messages, echoes, unsends, edits, postbacks */
    {"read_receipts", CX_CAP_ACTIVE},     /* messaging_seen */
    {"reactions", CX_CAP_ACTIVE},         /* message_reactions */
    {"comments", CX_CAP_ACTIVE},          /* comments, live_comments */
    {"outbound_messages", CX_CAP_ACTIVE}, /* Send API: DMs, sender actions */
    {"comment_replies", CX_CAP_ACTIVE},   /* private and public replies */
};

static const cx_manifest_t MANIFEST = {
    .id = CX_INSTAGRAM_ID,
    .version = "0.1.0",
    .display_name = "Instagram Messaging",
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
    .parse = cx__instagram_parse,
    .handshake = cx__meta_handshake,
    .send = cx__instagram_send,
};

const cx_connector_t *cx_instagram_connector(void)
{
    return &CONNECTOR;
}
