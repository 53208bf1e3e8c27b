/* A connector that authenticates nothing (inbound_auth CX_AUTH_NONE), for the test that
 * `cx serve` does not expose such a connector in production unless
 * expose_unauthenticated_connectors is set. Built as libcx_noauth_connector.so; every request
 * parses to zero events (200 with an empty summary). */
#include "cx/connector.h"

static const cx_capability_decl_t CAPS[] = {{"automation_triggers", CX_CAP_BETA}};

static const cx_manifest_t MANIFEST = {
    .id = "noauth",
    .version = "0.0.1",
    .display_name = "Unauthenticated test connector",
    .provider = "test",
    .capabilities = CAPS,
    .n_capabilities = 1,
    .inbound_auth = CX_AUTH_NONE,
};

static int parse(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                 cx_parse_out_t *out, cx_error_t *err)
{
    (void)c;
    (void)ctx;
    (void)req;
    (void)out;
    (void)err;
    return 0;
}

static const cx_connector_t CONNECTOR = {
    .abi_version = CX_CONNECTOR_ABI,
    .struct_size = sizeof(cx_connector_t),
    .manifest = &MANIFEST,
    .parse = parse,
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
