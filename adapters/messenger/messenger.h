/* The Messenger connector: Facebook Page messaging and Page lead ads
 * (docs/connectors/messenger.md).
 *
 * Inbound: `POST /webhook/messenger`, object `page`, signed with X-Hub-Signature-256 under
 * `<secrets>/messenger/app_secret`; GET handshake with `<secrets>/messenger/verify_token`.
 * `entry[].messaging[]` (and `standby[]`) elements map through the Messenger Platform event
 * mapper (messenger_events.h): messages, echoes, edits, reactions, reads, deliveries and
 * postbacks. `entry[].changes[]` with field `leadgen` becomes cx.messaging.v1.Lead; other Page
 * fields are skipped. The provider account is the Page id (`entry.id`).
 *
 * Outbound: the Send API (`POST /<version>/<page_id>/messages`) with the per-account Page
 * `access_token`; lead details from `GET /<version>/<leadgen_id>`.
 */
#ifndef CX_ADAPTERS_MESSENGER_H
#define CX_ADAPTERS_MESSENGER_H

#include "cx/connector.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The connector (static storage; never NULL). Thread-safe. */
const cx_connector_t *cx_messenger_connector(void);

#ifdef __cplusplus
}
#endif

#endif /* CX_ADAPTERS_MESSENGER_H */
