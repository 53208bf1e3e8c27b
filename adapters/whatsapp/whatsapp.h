/* The WhatsApp Cloud API connector (docs/connectors/whatsapp.md).
 *
 * Inbound: `POST /webhook/whatsapp`, object `whatsapp_business_account`, signed with
 * X-Hub-Signature-256 under `<secrets>/whatsapp/app_secret`; GET handshake with
 * `<secrets>/whatsapp/verify_token`. Field `messages`: each `messages[]` item becomes a
 * cx.messaging.v1.DirectMessage (reactions: cx.reactions.v1.Reaction / ReactionRemoved), each
 * `statuses[]` item a cx.messaging.v1.MessageStatus; the provider account is
 * `metadata.phone_number_id`. Account-level fields (account_update, quality and template
 * updates, ...) become cx.messaging.v1.ChannelStatus on the WABA id (`entry.id`); other fields
 * are skipped.
 *
 * Outbound: the Messages API (`POST /<version>/<phone_number_id>/messages`) with the per-account
 * `access_token`.
 */
#ifndef CX_ADAPTERS_WHATSAPP_H
#define CX_ADAPTERS_WHATSAPP_H

#include "cx/connector.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The connector (static storage; never NULL). Thread-safe. */
const cx_connector_t *cx_whatsapp_connector(void);

/* A cx_outbound_send_fn (cx/outbound.h) sending SendMessageCommands through this connector:
 * ud is the cx_runtime_t whose secrets hold the access tokens (and the optional
 * graph_api_base_url / graph_api_version settings). The intent key goes out as
 * biz_opaque_callback_data; the provider message id comes back in reply.
 *
 *     cx_outbound_command_t cmd = {.meta = &cx_messaging_send_message_command_meta,
 *         .msg = &m.base, .connector = "whatsapp", .account_id = phone_number_id,
 *         .result_meta = &cx_messaging_send_message_result_meta,
 *         .send = cx_whatsapp_send_fn, .send_ud = rt};
 *     rc = cx_outbound_send(ob, &cmd, &arena, &res, &err);
 */
struct cx_outbound_command_s;
struct cx_outbound_reply_s;
int cx_whatsapp_send_fn(void *ud, const struct cx_outbound_command_s *cmd, const char *intent_key,
                        cx_arena_t *arena, struct cx_outbound_reply_s *reply, cx_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* CX_ADAPTERS_WHATSAPP_H */
