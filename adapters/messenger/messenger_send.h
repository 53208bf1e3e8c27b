/* The Send API, shared by Messenger and Instagram: cx.messaging.v1.SendMessageCommand ->
 * `POST <base>/<version>/<account>/messages`.
 *
 * Both products take the same request (Messenger Platform "Send API", Instagram Messaging
 * "Send a message"):
 *
 *   {"recipient": {"id": "<PSID | IGSID>"},
 *    "messaging_type": "RESPONSE" | "UPDATE" | "MESSAGE_TAG", "tag": "HUMAN_AGENT",
 *    "reply_to": {"mid": "<mid>"},
 *    "message": {"text": "...", "metadata": "<intent key>"}}              text
 *    "message": {"attachment": {"type": "image|video|audio|file",
 *                               "payload": {"url": "..."} | {"attachment_id": "..."}}}
 *    "message": {"text": "...", "quick_replies": [{"content_type": "text", "title", "payload"}]}
 *   {"recipient": {...}, "sender_action": "mark_seen" | "typing_on"}     sender actions
 *   {"recipient": {...}, "sender_action": "react" | "unreact",
 *    "payload": {"message_id": "<mid>", "reaction": "love"}}            Instagram reactions
 *
 * and answer {"recipient_id", "message_id"} (sender actions: {"recipient_id"}). Messenger
 * echoes `metadata` back in message_echoes, so the intent key travels there (DirectMessage
 * intent_key reconciles an in-doubt send); Instagram has no such field and gets none.
 * `messaging_type` defaults to RESPONSE on Messenger (the Send API requires it) and is sent
 * on Instagram only when the command sets it.
 *
 * MarkRead becomes `mark_seen`, and with show_typing a second call, `typing_on`: sender actions
 * cannot be combined with a message or with each other. Contents the Send API has no form for
 * (templates, lists, locations, contact cards, a caption on media, Messenger reactions) are
 * refused with CX_EVALIDATION before anything is sent.
 *
 * Internal to the adapters library; reentrant.
 */
#ifndef CX_ADAPTERS_MESSENGER_SEND_H
#define CX_ADAPTERS_MESSENGER_SEND_H

#include <jansson.h>

#include "cx/connector.h"
#include "cx/http.h"
#include "cx/messaging/v1/messaging.cx.h"
#include "meta/meta.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which product a Send API call is for. */
typedef enum { CX_MSGR_MESSENGER = 0, CX_MSGR_INSTAGRAM = 1 } cx_msgr_product_t;

/* Longest Messenger `metadata` (the Send API's limit). */
#define CX_MSGR_MAX_METADATA 1000

/* Whether msg is a message of meta's type. By name, not by descriptor address: a host and a
 * connector loaded as a shared object each have their own copy of the descriptors. */
int cx__msgr_is(const ProtobufCMessage *msg, const cx_msg_meta_t *meta);

/* The request bodies of cmd, in the order they are sent: one for a message, two for a
 * MarkRead with show_typing. bodies[] receives new references (json_decref each), *n their
 * count. intent_key (may be NULL) goes in Messenger's metadata. Returns 0, CX_EVALIDATION
 * (a content the product cannot send; err->path names the field) or CX_ENOMEM. */
int cx__msgr_send_bodies(const cx_messaging_send_message_command_t *cmd, cx_msgr_product_t product,
                         const char *intent_key, json_t *bodies[2], size_t *n, cx_error_t *err);

/* One Graph call on behalf of account: method ("GET", "POST") to <base>/<version>/<path>
 * (path without a leading '/', may carry a query), body (may be NULL) sent as JSON, with the
 * account's access token as a Bearer token, through the connector's client in *slot. rs is
 * initialised by the caller. Returns cx_http_send's code, or CX_ECONFIG / CX_ENOMEM before
 * sending (err set). */
int cx__msgr_graph_call(const cx_ctx_t *ctx, cx_http_client_t **slot, const char *method,
                        const char *account, const char *path, const json_t *body,
                        const char *capability, cx_http_response_t *rs, cx_error_t *err);

/* The connector `send` for capability outbound_messages of both products: checks the
 * command, builds the bodies, POSTs them to <account>/messages and fills a
 * cx.messaging.v1.SendMessageResult (in ctx->arena) with the provider message id, the resolved
 * recipient and the status (ACCEPTED; FAILED with the Graph error; IN_DOUBT when the outcome
 * is unknown). Returns 0 or the outbound code (cx/outbound.h: CX_EIN_DOUBT, a permanent
 * payload-class code, or a transient one). */
int cx__msgr_send(const cx_ctx_t *ctx, cx_http_client_t **slot, cx_msgr_product_t product,
                  const ProtobufCMessage *command, ProtobufCMessage **result, cx_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* CX_ADAPTERS_MESSENGER_SEND_H */
