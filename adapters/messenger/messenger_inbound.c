/* Messenger inbound: Page webhooks (object `page`) -> canonical events.
 *
 * entry[].messaging[] and standby[] go through the Messenger Platform event mapper
 * (messenger_events.c). entry[].changes[] carries other Page fields; `leadgen` (Lead Ads:
 * `leadgen_id`, `page_id`, `form_id`, `ad_id`, `adgroup_id`, `created_time`) becomes a
 * cx.messaging.v1.Lead holding the ids only: the answers are fetched from Graph
 * `GET /<leadgen_id>` by the outbound side, not while the webhook waits. Every other Page field
 * (feed, conversations, ratings, ...) is skipped without an event.
 */
#include "messenger/messenger_internal.h"

#include <string.h>

static int leadgen(cx_meta_walk_t *w, const cx_meta_entry_t *entry, json_t *v)
{
    cx_arena_t *a = w->ctx->arena;
    int nomem = 0;
    const char *page = cx__msgr_id(a, json_object_get(v, "page_id"), &nomem);
    const char *account = entry->id[0] ? cx_arena_strndup(a, entry->id, strlen(entry->id)) : page;
    if (entry->id[0] && account == NULL)
        return CX_ENOSPC;
    if (!json_is_object(v))
        return cx_parse_emit_error(w->out, account, CX_EMALFORMED,
                                   "leadgen value is not an object");
    const char *leadgen_id = cx__msgr_id(a, json_object_get(v, "leadgen_id"), &nomem);
    if (nomem)
        return CX_ENOSPC;
    if (leadgen_id == NULL)
        return cx_parse_emit_error(w->out, account, CX_EMALFORMED, "leadgen without a leadgen_id");
    if (account == NULL)
        return cx_parse_emit_error(w->out, NULL, CX_EMALFORMED, "leadgen without a Page id");
    int64_t sec;
    int32_t ns;
    if (cx__meta_time(json_object_get(v, "created_time"), &sec, &ns) != 0) {
        if (entry->time <= 0)
            return cx_parse_emit_error(w->out, account, CX_EMALFORMED,
                                       "leadgen without a created_time");
        sec = entry->time;
        ns = 0;
    }
    cx_messaging_lead_t *lead = cx_arena_alloc(a, sizeof *lead);
    if (lead == NULL)
        return CX_ENOSPC;
    cx_messaging_lead_init(lead);
    lead->channel = cx__meta_channel(a, CX_MESSENGER_ID, account, NULL, NULL);
    lead->created_at = cx__meta_timestamp(a, sec, ns);
    lead->leadgen_id = (char *)leadgen_id;
    const char *s;
    if (page != NULL)
        lead->page_id = (char *)page;
    if ((s = cx__msgr_id(a, json_object_get(v, "form_id"), &nomem)) != NULL)
        lead->form_id = (char *)s;
    if ((s = cx__msgr_id(a, json_object_get(v, "ad_id"), &nomem)) != NULL)
        lead->ad_id = (char *)s;
    if ((s = cx__msgr_id(a, json_object_get(v, "adgroup_id"), &nomem)) != NULL)
        lead->adgroup_id = (char *)s;
    if (nomem || lead->channel == NULL || lead->created_at == NULL)
        return CX_ENOSPC;
    return cx_parse_emit(w->out, &cx_messaging_lead_meta, &lead->base, account);
}

static int on_change(cx_meta_walk_t *w, const cx_meta_entry_t *entry, const char *field,
                     json_t *value)
{
    if (strcmp(field, "leadgen") == 0)
        return leadgen(w, entry, value);
    return 0;
}

int cx__messenger_parse(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                        cx_parse_out_t *out, cx_error_t *err)
{
    (void)c;
    static const cx_msgr_parse_t P = {CX_MESSENGER_ID, CX_MESSENGER_OBJECT, on_change};
    return cx__msgr_parse(&P, ctx, req, out, err);
}
