/* Private to the Messenger adapter: what its files share. */
#ifndef CX_ADAPTERS_MESSENGER_INTERNAL_H
#define CX_ADAPTERS_MESSENGER_INTERNAL_H

#include "cx/connector.h"
#include "cx/messaging/v1/messaging.cx.h"
#include "meta/meta.h"
#include "messenger/messenger_events.h"

/* The manifest id, the channel of every canonical event and the secrets folder. */
#define CX_MESSENGER_ID "messenger"
/* root.object of every Page webhook. */
#define CX_MESSENGER_OBJECT "page"

/* The connector's parse (messenger_inbound.c). */
int cx__messenger_parse(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                        cx_parse_out_t *out, cx_error_t *err);

/* The connector's send (messenger_outbound.c): outbound_messages and leads. */
int cx__messenger_send(const cx_connector_t *c, const cx_ctx_t *ctx, const char *capability,
                       const ProtobufCMessage *command, ProtobufCMessage **result, cx_error_t *err);

#endif /* CX_ADAPTERS_MESSENGER_INTERNAL_H */
