/* The Instagram connector: Instagram Messaging and comments (docs/connectors/instagram.md).
 *
 * Inbound: `POST /webhook/instagram`, object `instagram`, signed with X-Hub-Signature-256 under
 * `<secrets>/instagram/app_secret`; GET handshake with `<secrets>/instagram/verify_token`.
 * `entry[].messaging[]` (and `standby[]`) elements map through the Messenger Platform event
 * mapper (messenger/messenger_events.h): DMs with attachments, replies, story mentions and
 * story replies, echoes, unsends, edits, reactions, seen and postbacks. `entry[].changes[]`
 * with field `comments` or `live_comments` becomes cx.messaging.v1.Comment; a change whose
 * field is a messaging field (`messages`, `message_reactions`, ...) carrying one event in
 * `value` (the dashboard's test sends) maps like a messaging[] element; other fields are
 * skipped. The provider account is the Instagram professional account id (`entry.id`).
 *
 * Outbound: the Instagram Send API (`POST /<version>/<ig_account_id>/messages`) for DMs and
 * sender actions, and private / public comment replies, with the per-account `access_token`.
 */
#ifndef CX_ADAPTERS_INSTAGRAM_H
#define CX_ADAPTERS_INSTAGRAM_H

#include "cx/connector.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The connector (static storage; never NULL). Thread-safe. */
const cx_connector_t *cx_instagram_connector(void);

#ifdef __cplusplus
}
#endif

#endif /* CX_ADAPTERS_INSTAGRAM_H */
