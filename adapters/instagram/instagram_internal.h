/* Private to the Instagram adapter: what its files share. */
#ifndef CX_ADAPTERS_INSTAGRAM_INTERNAL_H
#define CX_ADAPTERS_INSTAGRAM_INTERNAL_H

#include "cx/connector.h"
#include "cx/messaging/v1/messaging.cx.h"
#include "meta/meta.h"
#include "messenger/messenger_events.h"

/* The manifest id, the channel of every canonical event and the secrets folder. */
#define CX_INSTAGRAM_ID "instagram"
/* root.object of every Instagram webhook. */
#define CX_INSTAGRAM_OBJECT "instagram"

/* The connector's parse (instagram_inbound.c). */
int cx__instagram_parse(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                        cx_parse_out_t *out, cx_error_t *err);

/* The connector's send (instagram_outbound.c): outbound_messages and comment_replies. */
int cx__instagram_send(const cx_connector_t *c, const cx_ctx_t *ctx, const char *capability,
                       const ProtobufCMessage *command, ProtobufCMessage **result, cx_error_t *err);

#endif /* CX_ADAPTERS_INSTAGRAM_INTERNAL_H */
