/* The Messenger Platform event mapper (messenger_events.h), shared by Messenger and Instagram.
 *
 * Field names follow Meta's Messenger Platform webhook reference (messages, message_echoes,
 * message_edits, message_reactions, message_reads, message_deliveries, messaging_postbacks)
 * and Instagram Messaging webhooks (messages with is_deleted / is_unsupported / reply_to.story,
 * story_mention, share and ig_reel attachments, messaging_seen `read.mid`). Nothing here
 * allocates outside ctx->arena; jansson values are borrowed from the caller's tree.
 */
#include "messenger/messenger_events.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cx/messaging/v1/messaging.cx.h"
#include "cx/reactions/v1/reactions.cx.h"

#define MAX_ATTACHMENTS 10
/* Longest intent key DirectMessage.intent_key carries (schema max_len). */
#define MAX_INTENT_KEY 1000

/* Everything the mappers of one element share. */
typedef struct {
    const cx_ctx_t *ctx;
    cx_arena_t *a;
    cx_parse_out_t *out;
    const char *channel;
    const cx_meta_entry_t *entry;
    json_t *ev;
    const char *account; /* provider account id (arena); NULL until known */
    Cx__Common__V1__ChannelRef *ch;
    const char *user_id; /* the person: PSID / IGSID (arena) */
    const char *biz_id;  /* the business side as the event names it (arena; may be NULL) */
    int64_t sec;         /* event time */
    int32_t ns;
    int has_time;
    int nomem;
} ev_t;

static int nonempty(const char *s)
{
    return s != NULL && s[0] != '\0';
}

const char *cx__msgr_id(cx_arena_t *a, const json_t *v, int *nomem)
{
    char num[32];
    const char *s;
    size_t len;
    if (json_is_string(v)) {
        s = json_string_value(v);
        len = json_string_length(v);
    } else if (json_is_integer(v)) {
        len = (size_t)snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        s = num;
    } else {
        return NULL;
    }
    if (len == 0)
        return NULL;
    char *copy = cx_arena_strndup(a, s, len);
    if (copy == NULL)
        *nomem = 1;
    return copy;
}

/* A string member copied into the arena, NULL when absent, not a string or empty. */
static const char *str(ev_t *e, const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_string(v) || json_string_length(v) == 0)
        return NULL;
    char *copy = cx_arena_strndup(e->a, json_string_value(v), json_string_length(v));
    if (copy == NULL)
        e->nomem = 1;
    return copy;
}

static int is_true(const json_t *obj, const char *key)
{
    return json_is_true(json_object_get(obj, key));
}

static int fail(ev_t *e, const char *detail)
{
    return cx_parse_emit_error(e->out, e->account, CX_EMALFORMED, detail);
}

static int emit(ev_t *e, const cx_msg_meta_t *meta, ProtobufCMessage *msg)
{
    if (e->nomem)
        return CX_ENOSPC;
    return cx_parse_emit(e->out, meta, msg, e->account);
}

static Google__Protobuf__Timestamp *when(ev_t *e)
{
    Google__Protobuf__Timestamp *ts = cx__meta_timestamp(e->a, e->sec, e->ns);
    if (ts == NULL)
        e->nomem = 1;
    return ts;
}

static Cx__Common__V1__ActorRef *user(ev_t *e)
{
    Cx__Common__V1__ActorRef *r =
        cx__meta_actor(e->a, e->user_id, CX__COMMON__V1__ACTOR_KIND__ACTOR_KIND_USER, NULL);
    if (r == NULL)
        e->nomem = 1;
    return r;
}

static Cx__Common__V1__ActorRef *business(ev_t *e)
{
    Cx__Common__V1__ActorRef *r =
        cx__meta_actor(e->a, nonempty(e->biz_id) ? e->biz_id : e->account,
                       CX__COMMON__V1__ACTOR_KIND__ACTOR_KIND_BUSINESS, NULL);
    if (r == NULL)
        e->nomem = 1;
    return r;
}

static Cx__Common__V1__ConversationRef *conversation(ev_t *e)
{
    Cx__Common__V1__ConversationRef *c = cx__meta_conversation(e->a, e->user_id);
    if (c == NULL)
        e->nomem = 1;
    return c;
}

static void *alloc(ev_t *e, size_t size)
{
    void *p = cx_arena_alloc(e->a, size);
    if (p == NULL)
        e->nomem = 1;
    return p;
}

/* ---- DirectMessage pieces ---------------------------------------------------------------- */

/* Messenger / Instagram `referral` (ads, m.me / ig.me links, the chat plugin). NULL when
 * there is none or it carries nothing we keep. */
static Cx__Messaging__V1__Referral *referral(ev_t *e, const json_t *r)
{
    if (!json_is_object(r))
        return NULL;
    cx_messaging_referral_t *out = alloc(e, sizeof *out);
    if (out == NULL)
        return NULL;
    cx_messaging_referral_init(out);
    int any = 0;
    const char *s;
#define TAKE(field, obj, key)                                                                      \
    if ((s = str(e, obj, key)) != NULL) {                                                          \
        out->field = (char *)s;                                                                    \
        any = 1;                                                                                   \
    }
    TAKE(ref, r, "ref");
    TAKE(source, r, "source");
    TAKE(type, r, "type");
    TAKE(referer_uri, r, "referer_uri");
    if ((s = cx__msgr_id(e->a, json_object_get(r, "ad_id"), &e->nomem)) != NULL) {
        out->ad_id = (char *)s;
        any = 1;
    }
    const json_t *ads = json_object_get(r, "ads_context_data");
    if (json_is_object(ads)) {
        TAKE(headline, ads, "ad_title");
        TAKE(image_url, ads, "photo_url");
        TAKE(video_url, ads, "video_url");
    }
#undef TAKE
    return any ? out : NULL;
}

/* How one Meta attachment `type` maps. */
typedef struct {
    const char *name;
    Cx__Common__V1__AttachmentType type;
    Cx__Messaging__V1__MessageContentType content;
} att_kind_t;

static const att_kind_t ATT_KINDS[] = {
    {"image", CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_IMAGE,
     CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_IMAGE},
    {"video", CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_VIDEO,
     CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_VIDEO},
    {"audio", CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_AUDIO,
     CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_AUDIO},
    {"file", CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_FILE,
     CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_DOCUMENT},
    {"share", CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_SHARE,
     CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_SHARE},
    {"fallback", CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_SHARE,
     CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_SHARE},
    {"ig_reel", CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_REEL,
     CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_SHARE},
    {"reel", CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_REEL,
     CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_SHARE},
    {"ig_post", CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_REEL,
     CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_SHARE},
    {"story_mention", CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_STORY,
     CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_STORY_MENTION},
};

static const att_kind_t *att_kind(const char *name)
{
    for (size_t i = 0; name != NULL && i < sizeof ATT_KINDS / sizeof ATT_KINDS[0]; i++)
        if (strcmp(ATT_KINDS[i].name, name) == 0)
            return &ATT_KINDS[i];
    return NULL;
}

/* One attachment {type, payload: {url, title, sticker_id}} (Messenger `fallback` also as
 * {type, title, URL, payload: null}). NULL for a type we do not map (template, ...). */
static Cx__Common__V1__Attachment *attachment(ev_t *e, const json_t *att, const att_kind_t **kind,
                                              int *sticker)
{
    const char *type = json_string_value(json_object_get(att, "type"));
    const att_kind_t *k = att_kind(type);
    *kind = k;
    *sticker = 0;
    if (k == NULL)
        return NULL;
    const json_t *payload = json_object_get(att, "payload");
    Cx__Common__V1__Attachment *out = alloc(e, sizeof *out);
    if (out == NULL)
        return NULL;
    cx__common__v1__attachment__init(out);
    out->type = k->type;
    const char *url = str(e, payload, "url");
    if (url == NULL)
        url = str(e, att, "URL");
    if (url == NULL)
        url = str(e, att, "url");
    if (url != NULL) {
        out->source_case = CX__COMMON__V1__ATTACHMENT__SOURCE_URL;
        out->url = (char *)url;
    }
    const char *title = str(e, payload, "title");
    if (title == NULL)
        title = str(e, att, "title");
    if (title != NULL)
        out->caption = (char *)title;
    /* Messenger stickers arrive as `image` attachments with payload.sticker_id. */
    if (json_object_get(payload, "sticker_id") != NULL &&
        k->type == CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_IMAGE) {
        out->type = CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_STICKER;
        *sticker = 1;
    }
    return out;
}

/* message / postback -> DirectMessage with the parts every DM shares. */
static cx_messaging_direct_message_t *dm_new(ev_t *e, int echo)
{
    cx_messaging_direct_message_t *dm = alloc(e, sizeof *dm);
    if (dm == NULL)
        return NULL;
    cx_messaging_direct_message_init(dm);
    dm->channel = e->ch;
    dm->conversation = conversation(e);
    dm->occurred_at = when(e);
    if (echo) {
        dm->direction = CX__MESSAGING__V1__MESSAGE_DIRECTION__MESSAGE_DIRECTION_OUTBOUND;
        dm->sender = business(e);
        dm->recipient = user(e);
        dm->is_echo = 1;
    } else {
        dm->direction = CX__MESSAGING__V1__MESSAGE_DIRECTION__MESSAGE_DIRECTION_INBOUND;
        dm->sender = user(e);
        dm->recipient = business(e);
    }
    return dm;
}

static int map_message(ev_t *e, const json_t *m)
{
    const char *mid = str(e, m, "mid");
    if (mid == NULL)
        return e->nomem ? CX_ENOSPC : fail(e, "message without a mid");
    int echo = is_true(m, "is_echo");

    /* Instagram unsend: the same mid comes back with is_deleted. A new event, not a dup. */
    if (is_true(m, "is_deleted")) {
        cx_messaging_message_deleted_t *d = alloc(e, sizeof *d);
        if (d == NULL)
            return CX_ENOSPC;
        cx_messaging_message_deleted_init(d);
        d->channel = e->ch;
        d->message_id = (char *)mid;
        d->conversation = conversation(e);
        d->sender = echo ? business(e) : user(e);
        d->occurred_at = when(e);
        return emit(e, &cx_messaging_message_deleted_meta, &d->base);
    }

    cx_messaging_direct_message_t *dm = dm_new(e, echo);
    if (dm == NULL)
        return CX_ENOSPC;
    dm->message_id = (char *)mid;
    const char *text = str(e, m, "text");
    if (text != NULL)
        dm->text = (char *)text;
    if (echo) {
        const char *app = cx__msgr_id(e->a, json_object_get(m, "app_id"), &e->nomem);
        if (app != NULL)
            dm->app_id = (char *)app;
        /* Our sends carry the intent key in `metadata`; Messenger echoes it back. */
        const char *meta = str(e, m, "metadata");
        if (meta != NULL && strlen(meta) <= MAX_INTENT_KEY)
            dm->intent_key = (char *)meta;
    }

    /* attachments[] */
    const json_t *atts = json_object_get(m, "attachments");
    const att_kind_t *first = NULL;
    const char *first_unknown = NULL;
    int first_sticker = 0;
    if (json_is_array(atts) && json_array_size(atts) > 0) {
        size_t n = json_array_size(atts);
        dm->attachments =
            alloc(e, (n < MAX_ATTACHMENTS ? n : MAX_ATTACHMENTS) * sizeof *dm->attachments);
        if (dm->attachments == NULL)
            return CX_ENOSPC;
        for (size_t i = 0; i < n && dm->n_attachments < MAX_ATTACHMENTS; i++) {
            const json_t *aj = json_array_get(atts, i);
            const att_kind_t *k;
            int sticker;
            Cx__Common__V1__Attachment *at = attachment(e, aj, &k, &sticker);
            if (e->nomem)
                return CX_ENOSPC;
            if (at == NULL) {
                if (first_unknown == NULL)
                    first_unknown = json_string_value(json_object_get(aj, "type"));
                continue;
            }
            if (first == NULL) {
                first = k;
                first_sticker = sticker;
            }
            dm->attachments[dm->n_attachments++] = at;
        }
    }

    /* reply_to: a message (mid) or, on Instagram, a story (story.id, story.url). */
    const json_t *reply_to = json_object_get(m, "reply_to");
    const json_t *story = json_object_get(reply_to, "story");
    const char *reply_mid = str(e, reply_to, "mid");
    if (reply_mid != NULL || json_is_object(story)) {
        cx_messaging_reply_context_t *ctx = alloc(e, sizeof *ctx);
        if (ctx == NULL)
            return CX_ENOSPC;
        cx_messaging_reply_context_init(ctx);
        if (reply_mid != NULL) {
            Cx__Common__V1__MessageRef *ref = alloc(e, sizeof *ref);
            if (ref == NULL)
                return CX_ENOSPC;
            cx__common__v1__message_ref__init(ref);
            ref->external_id = (char *)reply_mid;
            ctx->replied_to = ref;
        }
        if (json_is_object(story)) {
            const char *sid = cx__msgr_id(e->a, json_object_get(story, "id"), &e->nomem);
            const char *surl = str(e, story, "url");
            if (sid != NULL)
                ctx->story_id = (char *)sid;
            if (surl != NULL)
                ctx->story_url = (char *)surl;
        }
        dm->context = ctx;
    }

    dm->referral = referral(e, json_object_get(m, "referral"));

    /* What the message is: the first rule that applies wins. */
    const json_t *qr = json_object_get(m, "quick_reply");
    if (is_true(m, "is_unsupported")) {
        dm->content_type =
            CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_UNSUPPORTED;
        dm->provider_type = "unsupported";
    } else if (json_is_object(qr)) {
        cx_messaging_interactive_reply_t *ir = alloc(e, sizeof *ir);
        if (ir == NULL)
            return CX_ENOSPC;
        cx_messaging_interactive_reply_init(ir);
        ir->kind = CX__MESSAGING__V1__INTERACTIVE_REPLY_KIND__INTERACTIVE_REPLY_KIND_QUICK_REPLY;
        const char *payload = str(e, qr, "payload");
        if (payload != NULL)
            ir->payload = (char *)payload;
        if (text != NULL && strlen(text) <= 1024)
            ir->title = (char *)text;
        dm->interactive = ir;
        dm->content_type =
            CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_INTERACTIVE_REPLY;
        dm->provider_type = "quick_reply";
    } else if (json_is_object(story)) {
        dm->content_type =
            CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_STORY_REPLY;
        dm->provider_type = "story_reply";
    } else if (first != NULL) {
        dm->content_type =
            first_sticker ? CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_STICKER
                          : first->content;
        dm->provider_type = first_sticker ? "sticker" : (char *)first->name;
    } else if (text != NULL) {
        dm->content_type = CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_TEXT;
        dm->provider_type = "text";
    } else {
        /* Only attachments we do not map (template, ...), or nothing at all: kept, typed. */
        dm->content_type =
            CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_UNSUPPORTED;
        const char *pt = "unsupported";
        if (first_unknown != NULL && strlen(first_unknown) <= 64) {
            pt = cx_arena_strndup(e->a, first_unknown, strlen(first_unknown));
            if (pt == NULL)
                return CX_ENOSPC;
        }
        dm->provider_type = (char *)pt;
    }
    return emit(e, &cx_messaging_direct_message_meta, &dm->base);
}

static int map_postback(ev_t *e, const json_t *pb)
{
    cx_messaging_direct_message_t *dm = dm_new(e, 0);
    if (dm == NULL)
        return CX_ENOSPC;
    const char *mid = str(e, pb, "mid");
    if (mid == NULL) {
        /* Postbacks carry a mid since Graph v11; older ones get a stable id from the time and
         * a hash of the sender (never the sender id itself: message ids are not pseudonymised). */
        uint64_t h = 1469598103934665603ULL;
        for (const char *p = e->user_id; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        char buf[96];
        int n = snprintf(buf, sizeof buf, "postback:%" PRId64 "%03d:%016" PRIx64, e->sec,
                         (int)(e->ns / 1000000), h);
        mid = cx_arena_strndup(e->a, buf, (size_t)n);
        if (mid == NULL)
            return CX_ENOSPC;
    }
    dm->message_id = (char *)mid;
    cx_messaging_interactive_reply_t *ir = alloc(e, sizeof *ir);
    if (ir == NULL)
        return CX_ENOSPC;
    cx_messaging_interactive_reply_init(ir);
    ir->kind = CX__MESSAGING__V1__INTERACTIVE_REPLY_KIND__INTERACTIVE_REPLY_KIND_POSTBACK;
    const char *title = str(e, pb, "title");
    const char *payload = str(e, pb, "payload");
    if (title != NULL)
        ir->title = (char *)title;
    if (payload != NULL)
        ir->payload = (char *)payload;
    dm->interactive = ir;
    dm->content_type = CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_POSTBACK;
    dm->provider_type = "postback";
    dm->referral = referral(e, json_object_get(pb, "referral"));
    return emit(e, &cx_messaging_direct_message_meta, &dm->base);
}

static int map_edit(ev_t *e, const json_t *ed)
{
    const char *mid = str(e, ed, "mid");
    if (mid == NULL)
        return e->nomem ? CX_ENOSPC : fail(e, "message_edit without a mid");
    cx_messaging_message_edited_t *m = alloc(e, sizeof *m);
    if (m == NULL)
        return CX_ENOSPC;
    cx_messaging_message_edited_init(m);
    m->channel = e->ch;
    m->message_id = (char *)mid;
    m->conversation = conversation(e);
    m->sender = user(e);
    m->edited_at = when(e);
    const char *text = str(e, ed, "text");
    if (text != NULL)
        m->text = (char *)text;
    /* num_edit: an integer (the reference shows it as "<INT>", so digits in a string too). */
    int64_t n = -1;
    int32_t ns;
    const json_t *ne = json_object_get(ed, "num_edit");
    if (json_is_integer(ne))
        n = json_integer_value(ne);
    else if (json_is_string(ne) && cx__meta_time(ne, &n, &ns) != 0)
        n = -1;
    if (n >= 0 && n <= UINT32_MAX)
        m->edit_count = (uint32_t)n;
    return emit(e, &cx_messaging_message_edited_meta, &m->base);
}

static int map_reaction(ev_t *e, const json_t *r)
{
    const char *mid = str(e, r, "mid");
    if (mid == NULL)
        return e->nomem ? CX_ENOSPC : fail(e, "reaction without a mid");
    cx_meta_reaction_in_t in = {
        .action = str(e, r, "action"),
        .reaction = str(e, r, "reaction"),
        .emoji = str(e, r, "emoji"),
        .provider_event_id = NULL,
    };
    cx_meta_reaction_at_t at = {
        .channel = e->ch,
        .target_kind = CX__REACTIONS__V1__REACTION_TARGET_KIND__REACTION_TARGET_KIND_MESSAGE,
        .target_id = mid,
        .actor = user(e),
        .occurred_at = when(e),
        .conversation = conversation(e),
    };
    if (e->nomem)
        return CX_ENOSPC;
    const cx_msg_meta_t *meta;
    ProtobufCMessage *msg;
    int rc = cx__meta_reaction(e->a, &in, &at, &meta, &msg);
    if (rc == CX_EMALFORMED)
        return fail(e, "reaction action is neither react nor unreact");
    if (rc != 0)
        return CX_ENOSPC;
    return emit(e, meta, msg);
}

static int map_read(ev_t *e, const json_t *rd)
{
    if (!json_is_object(rd))
        return fail(e, "read is not an object");
    cx_messaging_read_receipt_t *r = alloc(e, sizeof *r);
    if (r == NULL)
        return CX_ENOSPC;
    cx_messaging_read_receipt_init(r);
    r->channel = e->ch;
    r->conversation = conversation(e);
    r->reader = user(e);
    r->occurred_at = when(e);
    const char *mid = str(e, rd, "mid");
    if (mid != NULL)
        r->message_id = (char *)mid;
    int64_t ws;
    int32_t wn;
    if (cx__meta_time(json_object_get(rd, "watermark"), &ws, &wn) == 0) {
        r->watermark = cx__meta_timestamp(e->a, ws, wn);
        if (r->watermark == NULL)
            return CX_ENOSPC;
    }
    if (mid == NULL && r->watermark == NULL)
        return e->nomem ? CX_ENOSPC : fail(e, "read without a mid or a watermark");
    return emit(e, &cx_messaging_read_receipt_meta, &r->base);
}

static int map_delivery(ev_t *e, const json_t *d)
{
    if (!json_is_object(d))
        return fail(e, "delivery is not an object");
    const json_t *mids = json_object_get(d, "mids");
    /* Without mids (the reference says the field may be absent) the delivery names no message:
     * only a watermark, which MessageStatus cannot express. Nothing to emit. */
    if (mids == NULL || json_is_null(mids))
        return 0;
    if (!json_is_array(mids))
        return fail(e, "delivery.mids is not an array");
    size_t i;
    const json_t *mj;
    json_array_foreach(mids, i, mj)
    {
        const char *mid =
            json_is_string(mj) && json_string_length(mj)
                ? cx_arena_strndup(e->a, json_string_value(mj), json_string_length(mj))
                : NULL;
        if (json_is_string(mj) && json_string_length(mj) && mid == NULL)
            return CX_ENOSPC;
        if (mid == NULL) {
            int rc = fail(e, "delivery.mids element is not a string");
            if (rc != 0)
                return rc;
            continue;
        }
        cx_messaging_message_status_t *s = alloc(e, sizeof *s);
        if (s == NULL)
            return CX_ENOSPC;
        cx_messaging_message_status_init(s);
        s->channel = e->ch;
        s->message_id = (char *)mid;
        s->status = CX__MESSAGING__V1__MESSAGE_STATUS_KIND__MESSAGE_STATUS_KIND_DELIVERED;
        s->recipient = user(e);
        s->occurred_at = when(e);
        int rc = emit(e, &cx_messaging_message_status_meta, &s->base);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- the element ------------------------------------------------------------------------- */

int cx__msgr_event(const cx_ctx_t *ctx, cx_parse_out_t *out, const char *channel,
                   const cx_meta_entry_t *entry, json_t *event)
{
    ev_t e;
    memset(&e, 0, sizeof e);
    e.ctx = ctx;
    e.a = ctx->arena;
    e.out = out;
    e.channel = channel;
    e.entry = entry;
    e.ev = event;

    const json_t *message = json_object_get(event, "message");
    int echo = json_is_object(message) && is_true(message, "is_echo");
    const json_t *sender = json_object_get(event, "sender");
    const json_t *recipient = json_object_get(event, "recipient");
    const char *sender_id = cx__msgr_id(e.a, json_object_get(sender, "id"), &e.nomem);
    /* Chat plugin visitors have no PSID yet: sender.user_ref instead. */
    if (sender_id == NULL)
        sender_id = cx__msgr_id(e.a, json_object_get(sender, "user_ref"), &e.nomem);
    const char *recipient_id = cx__msgr_id(e.a, json_object_get(recipient, "id"), &e.nomem);
    if (e.nomem)
        return CX_ENOSPC;

    e.account = nonempty(entry->id) ? cx_arena_strndup(e.a, entry->id, strlen(entry->id))
                                    : (echo ? sender_id : recipient_id);
    if (nonempty(entry->id) && e.account == NULL)
        return CX_ENOSPC;
    e.user_id = echo ? recipient_id : sender_id;
    e.biz_id = echo ? sender_id : recipient_id;

    /* Which payload the element carries; elements we have no event for are skipped. */
    const json_t *edit = json_object_get(event, "message_edit");
    const json_t *reaction = json_object_get(event, "reaction");
    const json_t *read = json_object_get(event, "read");
    const json_t *delivery = json_object_get(event, "delivery");
    const json_t *postback = json_object_get(event, "postback");
    if (message == NULL && edit == NULL && reaction == NULL && read == NULL && delivery == NULL &&
        postback == NULL)
        return 0;

    if (!nonempty(e.account))
        return fail(&e, "messaging event without an account (entry.id, recipient.id)");
    if (!nonempty(e.user_id))
        return fail(&e, "messaging event without a sender id");
    e.ch = cx__meta_channel(e.a, channel, e.account, NULL, NULL);
    if (e.ch == NULL)
        return CX_ENOSPC;

    /* The event time: timestamp (ms), else the delivery watermark, else entry.time. */
    if (cx__meta_time(json_object_get(event, "timestamp"), &e.sec, &e.ns) == 0)
        e.has_time = 1;
    else if (json_is_object(delivery) &&
             cx__meta_time(json_object_get(delivery, "watermark"), &e.sec, &e.ns) == 0)
        e.has_time = 1;
    else if (entry->time > 0) {
        e.sec = entry->time;
        e.ns = 0;
        e.has_time = 1;
    }
    if (!e.has_time)
        return fail(&e, "messaging event without a timestamp");

    if (message != NULL)
        return json_is_object(message) ? map_message(&e, message)
                                       : fail(&e, "message is not an object");
    if (edit != NULL)
        return json_is_object(edit) ? map_edit(&e, edit)
                                    : fail(&e, "message_edit is not an object");
    if (reaction != NULL)
        return json_is_object(reaction) ? map_reaction(&e, reaction)
                                        : fail(&e, "reaction is not an object");
    if (read != NULL)
        return map_read(&e, read);
    if (delivery != NULL)
        return map_delivery(&e, delivery);
    return json_is_object(postback) ? map_postback(&e, postback)
                                    : fail(&e, "postback is not an object");
}

/* ---- the request ------------------------------------------------------------------------- */

typedef struct {
    const cx_msgr_parse_t *p;
} walk_ud_t;

static int on_messaging(cx_meta_walk_t *w, const cx_meta_entry_t *entry, json_t *event, int standby)
{
    /* standby: the app is not the thread owner under the handover protocol. The message still
     * reached the business; it maps the same (same mid, same key). */
    (void)standby;
    const walk_ud_t *ud = w->ud;
    return cx__msgr_event(w->ctx, w->out, ud->p->channel, entry, event);
}

int cx__msgr_parse(const cx_msgr_parse_t *p, const cx_ctx_t *ctx, const cx_request_t *req,
                   cx_parse_out_t *out, cx_error_t *err)
{
    json_t *root;
    int rc = cx__meta_load(req, &root, err);
    if (rc != 0)
        return rc;
    walk_ud_t ud = {p};
    cx_meta_walk_t w = {
        .ctx = ctx,
        .out = out,
        .ud = &ud,
        .on_change = p->on_change,
        .on_messaging = on_messaging,
    };
    rc = cx__meta_walk(root, p->object, &w, err);
    json_decref(root);
    return rc;
}
