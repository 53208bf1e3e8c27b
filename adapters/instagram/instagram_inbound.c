/* Instagram inbound: webhooks of object `instagram` -> canonical events.
 *
 * entry[].messaging[] (and standby[]) go through the Messenger Platform event mapper. In
 * entry[].changes[]:
 *
 *   - `comments` / `live_comments`: value {id, text, from {id, username}, media {id,
 *     media_product_type, ad_id}, parent_id} -> cx.messaging.v1.Comment (created_at: the entry
 *     `time`, the notification carries no other);
 *   - a messaging field (`messages`, `messaging_postbacks`, `message_reactions`,
 *     `messaging_seen`, `message_edit`, `messaging_referral`) whose value is one messaging
 *     event {sender, recipient, timestamp, message | ...}: mapped like a messaging[] element
 *     (the App Dashboard's "Test" button and Instagram-login apps deliver this form);
 *   - anything else (mentions, story_insights, ...): skipped without an event.
 */
#include "instagram/instagram_internal.h"

#include <string.h>

static const char *const MESSAGING_FIELDS[] = {
    "messages",       "messaging_postbacks", "message_reactions",
    "messaging_seen", "message_edit",        "messaging_referral",
};

static int comment(cx_meta_walk_t *w, const cx_meta_entry_t *entry, json_t *v, int live)
{
    cx_arena_t *a = w->ctx->arena;
    int nomem = 0;
    const char *account = entry->id[0] ? cx_arena_strndup(a, entry->id, strlen(entry->id)) : NULL;
    if (entry->id[0] && account == NULL)
        return CX_ENOSPC;
    if (!json_is_object(v))
        return cx_parse_emit_error(w->out, account, CX_EMALFORMED,
                                   "comment value is not an object");
    if (account == NULL)
        return cx_parse_emit_error(w->out, NULL, CX_EMALFORMED,
                                   "comment without an account (entry.id)");
    const json_t *from = json_object_get(v, "from");
    const json_t *media = json_object_get(v, "media");
    const char *id = cx__msgr_id(a, json_object_get(v, "id"), &nomem);
    const char *from_id = cx__msgr_id(a, json_object_get(from, "id"), &nomem);
    const char *media_id = cx__msgr_id(a, json_object_get(media, "id"), &nomem);
    if (nomem)
        return CX_ENOSPC;
    if (id == NULL)
        return cx_parse_emit_error(w->out, account, CX_EMALFORMED, "comment without an id");
    if (from_id == NULL)
        return cx_parse_emit_error(w->out, account, CX_EMALFORMED, "comment without from.id");
    if (media_id == NULL)
        return cx_parse_emit_error(w->out, account, CX_EMALFORMED, "comment without media.id");
    int64_t sec = entry->time;
    int32_t ns = 0;
    if (sec <= 0 && cx__meta_time(json_object_get(v, "timestamp"), &sec, &ns) != 0)
        sec = w->ctx->now; /* no time anywhere: the key does not use it */

    cx_messaging_comment_t *c = cx_arena_alloc(a, sizeof *c);
    if (c == NULL)
        return CX_ENOSPC;
    cx_messaging_comment_init(c);
    c->channel = cx__meta_channel(a, CX_INSTAGRAM_ID, account, NULL, NULL);
    c->comment_id = (char *)id;
    c->post_id = (char *)media_id;
    c->created_at = cx__meta_timestamp(a, sec, ns);
    c->live = live;
    /* The business answering on its own media is a comment too, from the business. */
    c->from = cx__meta_actor(a, from_id,
                             strcmp(from_id, account) == 0
                                 ? CX__COMMON__V1__ACTOR_KIND__ACTOR_KIND_BUSINESS
                                 : CX__COMMON__V1__ACTOR_KIND__ACTOR_KIND_USER,
                             NULL);
    if (c->channel == NULL || c->created_at == NULL || c->from == NULL)
        return CX_ENOSPC;
    const char *s;
    if ((s = cx__meta_str(a, from, "username", &nomem)) != NULL && s[0])
        c->from->username = (char *)s;
    if ((s = cx__meta_str(a, v, "text", &nomem)) != NULL && s[0])
        c->text = (char *)s;
    if ((s = cx__msgr_id(a, json_object_get(v, "parent_id"), &nomem)) != NULL)
        c->parent_id = (char *)s;
    if ((s = cx__meta_str(a, media, "media_product_type", &nomem)) != NULL && s[0])
        c->media_product_type = (char *)s;
    if ((s = cx__msgr_id(a, json_object_get(media, "ad_id"), &nomem)) != NULL)
        c->ad_id = (char *)s;
    if (nomem)
        return CX_ENOSPC;
    return cx_parse_emit(w->out, &cx_messaging_comment_meta, &c->base, account);
}

static int on_change(cx_meta_walk_t *w, const cx_meta_entry_t *entry, const char *field,
                     json_t *value)
{
    if (strcmp(field, "comments") == 0)
        return comment(w, entry, value, 0);
    if (strcmp(field, "live_comments") == 0)
        return comment(w, entry, value, 1);
    for (size_t i = 0; i < sizeof MESSAGING_FIELDS / sizeof MESSAGING_FIELDS[0]; i++)
        if (strcmp(field, MESSAGING_FIELDS[i]) == 0) {
            if (!json_is_object(value))
                return cx_parse_emit_error(w->out, NULL, CX_EMALFORMED,
                                           "messaging change value is not an object");
            return cx__msgr_event(w->ctx, w->out, CX_INSTAGRAM_ID, entry, value);
        }
    return 0;
}

int cx__instagram_parse(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                        cx_parse_out_t *out, cx_error_t *err)
{
    (void)c;
    static const cx_msgr_parse_t P = {CX_INSTAGRAM_ID, CX_INSTAGRAM_OBJECT, on_change};
    return cx__msgr_parse(&P, ctx, req, out, err);
}
