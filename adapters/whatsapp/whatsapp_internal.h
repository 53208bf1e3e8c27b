/* Private to the WhatsApp adapter: what its files share. */
#ifndef CX_ADAPTERS_WHATSAPP_INTERNAL_H
#define CX_ADAPTERS_WHATSAPP_INTERNAL_H

#include "cx/connector.h"
#include "cx/messaging/v1/messaging.cx.h"
#include "meta/meta.h"

/* The manifest id, the channel of every canonical event and the secrets folder. */
#define CX_WHATSAPP_ID "whatsapp"
/* root.object of every WhatsApp webhook. */
#define CX_WHATSAPP_OBJECT "whatsapp_business_account"

/* The connector's parse (whatsapp_inbound.c). */
int cx__whatsapp_parse(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                       cx_parse_out_t *out, cx_error_t *err);

/* The connector's send (whatsapp_outbound.c): outbound_messages, a SendMessageCommand. */
int cx__whatsapp_send(const cx_connector_t *c, const cx_ctx_t *ctx, const char *capability,
                      const ProtobufCMessage *command, ProtobufCMessage **result, cx_error_t *err);

/* The Messages API request body of cmd (*out, the caller's: json_decref), with intent_key in
 * biz_opaque_callback_data (may be NULL). Returns 0, CX_EVALIDATION (content the API cannot
 * express: no media source, a template parameter whose value does not match its type, no
 * content), CX_ENOMEM. */
int cx__whatsapp_request_body(const cx_messaging_send_message_command_t *cmd,
                              const char *intent_key, json_t **out, cx_error_t *err);

#endif /* CX_ADAPTERS_WHATSAPP_INTERNAL_H */
