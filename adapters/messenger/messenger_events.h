/* The Messenger Platform event mapper: one `entry[].messaging[]` element -> canonical events.
 *
 * Messenger (`object: page`) and Instagram Messaging (`object: instagram`) deliver the same
 * event shapes: every element carries `sender.id`, `recipient.id`, `timestamp` (milliseconds)
 * and exactly one payload key. The Instagram adapter calls this mapper too, with its own
 * channel id, so both connectors map the same JSON the same way:
 *
 *   payload key                      canonical event
 *   -------------------------------  -------------------------------------------------------
 *   message                          cx.messaging.v1.DirectMessage (inbound)
 *   message + is_echo                DirectMessage, direction OUTBOUND (sender = the business)
 *   message + is_deleted             cx.messaging.v1.MessageDeleted (Instagram unsend)
 *   message_edit                     cx.messaging.v1.MessageEdited
 *   reaction (react / unreact)       cx.reactions.v1.Reaction / ReactionRemoved
 *   read (watermark or mid)          cx.messaging.v1.ReadReceipt
 *   delivery (mids[], watermark)     cx.messaging.v1.MessageStatus DELIVERED, one per mid
 *   postback                         DirectMessage, content POSTBACK
 *   anything else                    skipped (referral, optin, handover, policy, ...)
 *
 * The provider account is `entry.id` (the Page id or the Instagram professional account id);
 * when absent, the business side of the event (`recipient.id`, `sender.id` for echoes). The
 * conversation is the other party: the user's PSID / IGSID (`sender.id`, `recipient.id` for
 * echoes).
 *
 * An element that cannot be mapped (no mid, no sender, no time, a wrong type) is emitted as a
 * per-item CX_EMALFORMED: it fails alone, the rest of the batch goes on.
 *
 * Internal to the adapters library; reentrant, no global state.
 */
#ifndef CX_ADAPTERS_MESSENGER_EVENTS_H
#define CX_ADAPTERS_MESSENGER_EVENTS_H

#include <jansson.h>

#include "cx/connector.h"
#include "meta/meta.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Maps one messaging element (a JSON object, borrowed) of entry into out, every message
 * allocated in ctx->arena. channel is the canonical channel id ("messenger", "instagram",
 * static storage). Returns 0 (also when the element was skipped or emitted as a per-item
 * error) or CX_ENOSPC (the arena or the output is exhausted: fatal for the request). */
int cx__msgr_event(const cx_ctx_t *ctx, cx_parse_out_t *out, const char *channel,
                   const cx_meta_entry_t *entry, json_t *event);

/* What a connector's parse hands to cx__msgr_parse. */
typedef struct cx_msgr_parse_s {
    const char *channel; /* "messenger", "instagram" (static) */
    const char *object;  /* the root.object this connector serves ("page", "instagram") */
    /* entry.changes[] elements (field, value); NULL skips every change. Same contract as
     * cx_meta_walk_t.on_change. */
    int (*on_change)(cx_meta_walk_t *w, const cx_meta_entry_t *entry, const char *field,
                     json_t *value);
} cx_msgr_parse_t;

/* The whole parse of a Messenger Platform webhook: decodes the body, checks root.object and
 * walks entry[]; messaging[] and standby[] elements go to cx__msgr_event, changes[] to
 * p->on_change. A body that is not a JSON object, whose `object` is not p->object (another
 * product's webhook sent to this connector's URL) or without an `entry` array is CX_EMALFORMED
 * (400, as for every Meta connector: the operator sees the failing deliveries in Meta's
 * dashboard). Returns 0, CX_EMALFORMED or CX_ENOSPC with err set. */
int cx__msgr_parse(const cx_msgr_parse_t *p, const cx_ctx_t *ctx, const cx_request_t *req,
                   cx_parse_out_t *out, cx_error_t *err);

/* A JSON string, or an integer rendered in decimal, copied into the arena; NULL when absent,
 * of another type, or empty. Sets *nomem on allocation failure. */
const char *cx__msgr_id(cx_arena_t *a, const json_t *v, int *nomem);

#ifdef __cplusplus
}
#endif

#endif /* CX_ADAPTERS_MESSENGER_EVENTS_H */
