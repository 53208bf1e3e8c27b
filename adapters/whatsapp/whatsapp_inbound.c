/* WhatsApp inbound: Cloud API webhooks -> canonical events.
 *
 * A webhook is {"object": "whatsapp_business_account", "entry": [{"id": <WABA id>, "changes":
 * [{"field", "value"}]}]}. For field `messages`, value carries `metadata.phone_number_id` (the
 * provider account: the key of the accounts registry), `contacts[]` (profile names by `wa_id`),
 * and `messages[]` and/or `statuses[]`:
 *
 *   messages[] type            canonical event
 *   text                       DirectMessage TEXT (`text.body`)
 *   image/video/document/      DirectMessage IMAGE/VIDEO/DOCUMENT/STICKER with one attachment
 *   sticker                    (media id, mime type, sha256, caption, filename, animated)
 *   audio                      DirectMessage AUDIO, or VOICE when `audio.voice` is true
 *   location                   DirectMessage LOCATION
 *   contacts                   DirectMessage CONTACTS
 *   interactive                DirectMessage INTERACTIVE_REPLY (button_reply, list_reply,
 *                              nfm_reply); other interactive kinds as UNSUPPORTED
 *   button                     DirectMessage BUTTON (template quick reply: text + payload)
 *   order                      DirectMessage ORDER
 *   system                     DirectMessage SYSTEM
 *   reaction                   cx.reactions.v1.Reaction, or ReactionRemoved when `emoji` is
 *                              absent or empty
 *   unsupported, unknown,      DirectMessage UNSUPPORTED with the provider's `errors[]` and
 *   anything else              `unsupported.type`: kept, never dropped, never a 400
 *
 * `context` (replies, forwards, product enquiries) and `referral` (click-to-WhatsApp ads) are
 * mapped on any message type. statuses[] become MessageStatus (sent, delivered, read, failed,
 * deleted, played) with `errors[]`, `pricing`, `conversation` and `biz_opaque_callback_data`
 * as the intent key.
 *
 * Other fields are account-level notices: account_update, account_review_update,
 * phone_number_quality_update, phone_number_name_update, message_template_status_update,
 * message_template_quality_update, template_category_update, business_capability_update and
 * security become ChannelStatus on the WABA (`entry.id`); the rest are skipped.
 *
 * Failures stay per item: a message without id, sender or timestamp fails alone
 * (MALFORMED, permanent); only a body that is not a JSON object, a wrong `object` or an
 * `entry` that is not an array is a 400. The parse never crashes: every JSON access is typed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "whatsapp_internal.h"

/* Enum values, shortened. */
#define CT(x) CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_##x
#define AT(x) CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_##x
#define IK(x) CX__MESSAGING__V1__INTERACTIVE_REPLY_KIND__INTERACTIVE_REPLY_KIND_##x
#define MS(x) CX__MESSAGING__V1__MESSAGE_STATUS_KIND__MESSAGE_STATUS_KIND_##x
#define CS(x) CX__MESSAGING__V1__CHANNEL_STATUS_KIND__CHANNEL_STATUS_KIND_##x

/* Schema limits the mapping respects so one oversized list does not fail a whole item. */
#define MAX_CONTACTS 20
#define MAX_CARD_ITEMS 20
#define MAX_ORDER_ITEMS 100
#define MAX_ERRORS 8
#define MAX_DETAILS 32

/* State of one parse. */
typedef struct wa_s {
    const cx_ctx_t *ctx;
    cx_arena_t *a;
    cx_parse_out_t *out;
    int nomem; /* sticky: an arena allocation failed */
    /* the change being walked */
    const cx_meta_mj_entry_t *entry;
    const char *account; /* metadata.phone_number_id (arena) */
    Cx__Common__V1__ChannelRef *channel;
    const cx_mj_t *contacts;
} wa_t;

/* Allocates and initialises a protobuf-c struct in the arena; sets nomem on failure. */
#define NEW(w, var, init)                                                                          \
    do {                                                                                           \
        (var) = cx_arena_alloc((w)->a, sizeof *(var));                                             \
        if ((var) != NULL)                                                                         \
            init(var);                                                                             \
        else                                                                                       \
            (w)->nomem = 1;                                                                        \
    } while (0)

/* Arrays of message pointers in the arena. */
static void *new_array(wa_t *w, size_t n, size_t size)
{
    if (n == 0)
        return NULL;
    void *p = cx_arena_alloc(w->a, n * size);
    if (p == NULL)
        w->nomem = 1;
    return p;
}

static const char *str(wa_t *w, const cx_mj_t *obj, const char *key)
{
    return cx_mj_text(w->a, cx_mj_get(obj, key), &w->nomem);
}

/* A string field of a protobuf-c struct: the value, or the empty default when absent. */
static char *opt(wa_t *w, const cx_mj_t *obj, const char *key)
{
    const char *s = str(w, obj, key);
    return (char *)(s ? s : protobuf_c_empty_string);
}

static int emit(wa_t *w, const cx_msg_meta_t *meta, ProtobufCMessage *msg, const char *account)
{
    if (w->nomem)
        return CX_ENOSPC;
    return cx_parse_emit(w->out, meta, msg, account);
}

static int emit_error(wa_t *w, const char *account, const char *detail)
{
    return cx_parse_emit_error(w->out, account, CX_EMALFORMED, detail);
}

static int is_digits(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* A number that Meta sends as a JSON number or as a string of a number. */
static int number(const cx_mj_t *v, double *out)
{
    return cx_mj_number(v, out);
}

/* ---- actors and context ------------------------------------------------------------------ */

/* The profile of the contact whose wa_id (or user_id) is id, else of the only contact. */
static const cx_mj_t *contact_profile(wa_t *w, const char *id)
{
    if (!cx_mj_is(w->contacts, CX_MJ_ARRAY))
        return NULL;
    for (size_t i = 0; i < cx_mj_len(w->contacts); i++) {
        const cx_mj_t *c = cx_mj_at(w->contacts, i);
        const char *wa = cx_mj_str(cx_mj_get(c, "wa_id"));
        const char *uid = cx_mj_str(cx_mj_get(c, "user_id"));
        if ((wa && strcmp(wa, id) == 0) || (uid && strcmp(uid, id) == 0))
            return cx_mj_get(c, "profile");
    }
    if (cx_mj_len(w->contacts) == 1) {
        const cx_mj_t *c = cx_mj_at(w->contacts, 0);
        if (cx_mj_get(c, "wa_id") == NULL && cx_mj_get(c, "user_id") == NULL)
            return cx_mj_get(c, "profile");
    }
    return NULL;
}

static Cx__Common__V1__ActorRef *user(wa_t *w, const char *id)
{
    Cx__Common__V1__ActorRef *r =
        cx__meta_actor(w->a, id, CX__COMMON__V1__ACTOR_KIND__ACTOR_KIND_USER, NULL);
    if (r == NULL) {
        w->nomem = 1;
        return NULL;
    }
    const cx_mj_t *profile = contact_profile(w, id);
    const char *name = str(w, profile, "name");
    const char *username = str(w, profile, "username");
    if (name)
        r->display_name = (char *)name;
    if (username)
        r->username = (char *)username;
    /* A wa_id is the phone number in international form without '+'. */
    if (is_digits(id, 8, 15) && id[0] != '0') {
        size_t n = strlen(id);
        char *p = cx_arena_alloc(w->a, n + 2);
        if (p == NULL) {
            w->nomem = 1;
        } else {
            p[0] = '+';
            memcpy(p + 1, id, n + 1);
            r->phone = p;
        }
    }
    return r;
}

static Cx__Messaging__V1__ReplyContext *reply_context(wa_t *w, const cx_mj_t *c)
{
    if (!cx_mj_is(c, CX_MJ_OBJECT))
        return NULL;
    Cx__Messaging__V1__ReplyContext *rc;
    NEW(w, rc, cx__messaging__v1__reply_context__init);
    if (rc == NULL)
        return NULL;
    const char *id = str(w, c, "id");
    if (id) {
        NEW(w, rc->replied_to, cx__common__v1__message_ref__init);
        if (rc->replied_to) {
            rc->replied_to->external_id = (char *)id;
            rc->replied_to->from_id = opt(w, c, "from");
        }
    }
    rc->forwarded = cx_mj_true(cx_mj_get(c, "forwarded"));
    rc->frequently_forwarded = cx_mj_true(cx_mj_get(c, "frequently_forwarded"));
    const cx_mj_t *rp = cx_mj_get(c, "referred_product");
    if (cx_mj_is(rp, CX_MJ_OBJECT)) {
        NEW(w, rc->referred_product, cx__messaging__v1__referred_product__init);
        if (rc->referred_product) {
            rc->referred_product->catalog_id = opt(w, rp, "catalog_id");
            rc->referred_product->product_retailer_id = opt(w, rp, "product_retailer_id");
        }
    }
    return rc;
}

static Cx__Messaging__V1__Referral *referral(wa_t *w, const cx_mj_t *r)
{
    if (!cx_mj_is(r, CX_MJ_OBJECT))
        return NULL;
    Cx__Messaging__V1__Referral *ref;
    NEW(w, ref, cx__messaging__v1__referral__init);
    if (ref == NULL)
        return NULL;
    ref->source_url = opt(w, r, "source_url");
    ref->source_type = opt(w, r, "source_type");
    ref->source_id = opt(w, r, "source_id");
    ref->headline = opt(w, r, "headline");
    ref->body = opt(w, r, "body");
    ref->media_type = opt(w, r, "media_type");
    ref->image_url = opt(w, r, "image_url");
    ref->video_url = opt(w, r, "video_url");
    ref->thumbnail_url = opt(w, r, "thumbnail_url");
    ref->ctwa_clid = opt(w, r, "ctwa_clid");
    return ref;
}

/* ---- message contents -------------------------------------------------------------------- */

static int attach(wa_t *w, cx_messaging_direct_message_t *dm, const cx_mj_t *o,
                  Cx__Common__V1__AttachmentType type)
{
    Cx__Common__V1__Attachment *att;
    NEW(w, att, cx__common__v1__attachment__init);
    dm->attachments = new_array(w, 1, sizeof *dm->attachments);
    if (att == NULL || dm->attachments == NULL)
        return -1;
    att->type = type;
    const char *id = str(w, o, "id");
    const char *url = str(w, o, "url");
    /* The media id is what the Media API downloads with the token; the url (newer payloads)
     * needs the token too and expires, so the id wins. */
    if (id) {
        att->source_case = CX__COMMON__V1__ATTACHMENT__SOURCE_MEDIA_ID;
        att->media_id = (char *)id;
    } else if (url) {
        att->source_case = CX__COMMON__V1__ATTACHMENT__SOURCE_URL;
        att->url = (char *)url;
    }
    att->mime_type = opt(w, o, "mime_type");
    att->sha256 = opt(w, o, "sha256");
    att->caption = opt(w, o, "caption");
    att->filename = opt(w, o, "filename");
    att->animated = cx_mj_true(cx_mj_get(o, "animated"));
    dm->attachments[0] = att;
    dm->n_attachments = 1;
    return 0;
}

static int location(wa_t *w, cx_messaging_direct_message_t *dm, const cx_mj_t *o)
{
    double lat, lng;
    if (number(cx_mj_get(o, "latitude"), &lat) != 0 || number(cx_mj_get(o, "longitude"), &lng) != 0)
        return -1;
    NEW(w, dm->location, cx__messaging__v1__location__init);
    if (dm->location == NULL)
        return 0;
    dm->location->latitude = lat;
    dm->location->longitude = lng;
    dm->location->name = opt(w, o, "name");
    dm->location->address = opt(w, o, "address");
    dm->location->url = opt(w, o, "url");
    return 0;
}

static void card(wa_t *w, Cx__Messaging__V1__Contact *c, const cx_mj_t *o)
{
    const cx_mj_t *name = cx_mj_get(o, "name");
    c->formatted_name = opt(w, name, "formatted_name");
    c->first_name = opt(w, name, "first_name");
    c->last_name = opt(w, name, "last_name");
    c->middle_name = opt(w, name, "middle_name");
    c->name_prefix = opt(w, name, "prefix");
    c->name_suffix = opt(w, name, "suffix");
    c->birthday = opt(w, o, "birthday");
    const cx_mj_t *org = cx_mj_get(o, "org");
    c->company = opt(w, org, "company");
    c->department = opt(w, org, "department");
    c->job_title = opt(w, org, "title");
    c->vcard = opt(w, o, "vcard");

    const cx_mj_t *arr = cx_mj_get(o, "phones");
    size_t n = cx_mj_is(arr, CX_MJ_ARRAY) ? cx_mj_len(arr) : 0;
    if (n > MAX_CARD_ITEMS)
        n = MAX_CARD_ITEMS;
    c->phones = new_array(w, n, sizeof *c->phones);
    for (size_t i = 0; c->phones && i < n; i++) {
        const cx_mj_t *p = cx_mj_at(arr, i);
        const char *phone = str(w, p, "phone");
        const char *wa_id = str(w, p, "wa_id");
        if (phone == NULL)
            phone = wa_id; /* a card entry known only by its WhatsApp id */
        if (phone == NULL)
            continue;
        Cx__Messaging__V1__ContactPhone *cp;
        NEW(w, cp, cx__messaging__v1__contact_phone__init);
        if (cp == NULL)
            return;
        cp->phone = (char *)phone;
        cp->wa_id = (char *)(wa_id ? wa_id : protobuf_c_empty_string);
        cp->type = opt(w, p, "type");
        c->phones[c->n_phones++] = cp;
    }
    arr = cx_mj_get(o, "emails");
    n = cx_mj_is(arr, CX_MJ_ARRAY) ? cx_mj_len(arr) : 0;
    if (n > MAX_CARD_ITEMS)
        n = MAX_CARD_ITEMS;
    c->emails = new_array(w, n, sizeof *c->emails);
    for (size_t i = 0; c->emails && i < n; i++) {
        const cx_mj_t *e = cx_mj_at(arr, i);
        const char *email = str(w, e, "email");
        if (email == NULL)
            continue;
        Cx__Messaging__V1__ContactEmail *ce;
        NEW(w, ce, cx__messaging__v1__contact_email__init);
        if (ce == NULL)
            return;
        ce->email = (char *)email;
        ce->type = opt(w, e, "type");
        c->emails[c->n_emails++] = ce;
    }
    arr = cx_mj_get(o, "urls");
    n = cx_mj_is(arr, CX_MJ_ARRAY) ? cx_mj_len(arr) : 0;
    if (n > MAX_CARD_ITEMS)
        n = MAX_CARD_ITEMS;
    c->urls = new_array(w, n, sizeof *c->urls);
    for (size_t i = 0; c->urls && i < n; i++) {
        const cx_mj_t *u = cx_mj_at(arr, i);
        const char *url = str(w, u, "url");
        if (url == NULL)
            continue;
        Cx__Messaging__V1__ContactUrl *cu;
        NEW(w, cu, cx__messaging__v1__contact_url__init);
        if (cu == NULL)
            return;
        cu->url = (char *)url;
        cu->type = opt(w, u, "type");
        c->urls[c->n_urls++] = cu;
    }
}

static int contacts(wa_t *w, cx_messaging_direct_message_t *dm, const cx_mj_t *arr)
{
    if (!cx_mj_is(arr, CX_MJ_ARRAY) || cx_mj_len(arr) == 0)
        return -1;
    size_t n = cx_mj_len(arr);
    if (n > MAX_CONTACTS)
        n = MAX_CONTACTS;
    dm->contacts = new_array(w, n, sizeof *dm->contacts);
    for (size_t i = 0; dm->contacts && i < n; i++) {
        const cx_mj_t *o = cx_mj_at(arr, i);
        if (!cx_mj_is(o, CX_MJ_OBJECT))
            continue;
        Cx__Messaging__V1__Contact *c;
        NEW(w, c, cx__messaging__v1__contact__init);
        if (c == NULL)
            return 0;
        card(w, c, o);
        dm->contacts[dm->n_contacts++] = c;
    }
    return dm->n_contacts ? 0 : -1;
}

static Cx__Messaging__V1__InteractiveReply *
interactive_reply(wa_t *w, Cx__Messaging__V1__InteractiveReplyKind k)
{
    Cx__Messaging__V1__InteractiveReply *r;
    NEW(w, r, cx__messaging__v1__interactive_reply__init);
    if (r)
        r->kind = k;
    return r;
}

/* interactive: 0 mapped, 1 a kind we do not map (kept as UNSUPPORTED), -1 malformed. */
static int interactive(wa_t *w, cx_messaging_direct_message_t *dm, const cx_mj_t *o)
{
    const char *kind = cx_mj_str(cx_mj_get(o, "type"));
    if (kind == NULL)
        return -1;
    const cx_mj_t *v = cx_mj_get(o, kind);
    if (!cx_mj_is(v, CX_MJ_OBJECT))
        return -1;
    Cx__Messaging__V1__InteractiveReply *r;
    if (strcmp(kind, "button_reply") == 0) {
        r = interactive_reply(w, IK(BUTTON_REPLY));
        if (r) {
            r->id = opt(w, v, "id");
            r->title = opt(w, v, "title");
        }
    } else if (strcmp(kind, "list_reply") == 0) {
        r = interactive_reply(w, IK(LIST_REPLY));
        if (r) {
            r->id = opt(w, v, "id");
            r->title = opt(w, v, "title");
            r->description = opt(w, v, "description");
        }
    } else if (strcmp(kind, "nfm_reply") == 0) {
        r = interactive_reply(w, IK(FLOW_REPLY));
        if (r) {
            r->id = opt(w, v, "name");
            r->title = opt(w, v, "body");
            r->response_json = opt(w, v, "response_json");
        }
    } else {
        return 1;
    }
    dm->interactive = r;
    dm->content_type = CT(INTERACTIVE_REPLY);
    return 0;
}

static int order(wa_t *w, cx_messaging_direct_message_t *dm, const cx_mj_t *o)
{
    const cx_mj_t *items = cx_mj_get(o, "product_items");
    if (!cx_mj_is(o, CX_MJ_OBJECT) || !cx_mj_is(items, CX_MJ_ARRAY))
        return -1;
    NEW(w, dm->order, cx__messaging__v1__order__init);
    if (dm->order == NULL)
        return 0;
    Cx__Messaging__V1__Order *ord = dm->order;
    ord->catalog_id = opt(w, o, "catalog_id");
    ord->text = opt(w, o, "text");
    size_t n = cx_mj_len(items);
    if (n > MAX_ORDER_ITEMS)
        n = MAX_ORDER_ITEMS;
    ord->product_items = new_array(w, n, sizeof *ord->product_items);
    for (size_t i = 0; ord->product_items && i < n; i++) {
        const cx_mj_t *it = cx_mj_at(items, i);
        if (!cx_mj_is(it, CX_MJ_OBJECT))
            continue;
        Cx__Messaging__V1__OrderItem *oi;
        NEW(w, oi, cx__messaging__v1__order_item__init);
        if (oi == NULL)
            return 0;
        oi->product_retailer_id = opt(w, it, "product_retailer_id");
        double q = 0, price = 0;
        if (number(cx_mj_get(it, "quantity"), &q) == 0 && q >= 0 && q <= 4294967295.0)
            oi->quantity = (uint32_t)q;
        if (number(cx_mj_get(it, "item_price"), &price) == 0)
            oi->item_price = price;
        oi->currency = opt(w, it, "currency");
        ord->product_items[ord->n_product_items++] = oi;
    }
    return 0;
}

static void errors_into(wa_t *w, const cx_mj_t *arr, size_t *n_out,
                        Cx__Common__V1__ProviderError ***out)
{
    size_t n = cx_mj_is(arr, CX_MJ_ARRAY) ? cx_mj_len(arr) : 0;
    if (n > MAX_ERRORS)
        n = MAX_ERRORS;
    *out = new_array(w, n, sizeof **out);
    *n_out = 0;
    for (size_t i = 0; *out && i < n; i++) {
        const cx_mj_t *e = cx_mj_at(arr, i);
        if (!cx_mj_is(e, CX_MJ_OBJECT))
            continue;
        Cx__Common__V1__ProviderError *pe = cx__meta_provider_error_mj(w->a, e, 0);
        if (pe == NULL) {
            w->nomem = 1;
            return;
        }
        (*out)[(*n_out)++] = pe;
    }
}

static void unsupported(wa_t *w, cx_messaging_direct_message_t *dm, const cx_mj_t *m,
                        const char *provider_type)
{
    dm->content_type = CT(UNSUPPORTED);
    NEW(w, dm->unsupported, cx__messaging__v1__unsupported__init);
    if (dm->unsupported == NULL)
        return;
    const char *t = str(w, cx_mj_get(m, "unsupported"), "type");
    if (t)
        dm->unsupported->provider_type = (char *)t;
    else if (provider_type)
        dm->unsupported->provider_type = (char *)provider_type;
    errors_into(w, cx_mj_get(m, "errors"), &dm->unsupported->n_errors, &dm->unsupported->errors);
}

/* ---- messages[] and statuses[] ----------------------------------------------------------- */

static int on_reaction(wa_t *w, const cx_mj_t *m, const char *id, const char *from,
                       Google__Protobuf__Timestamp *at, Cx__Common__V1__ConversationRef *conv)
{
    const cx_mj_t *r = cx_mj_get(m, "reaction");
    const char *target = str(w, r, "message_id");
    if (!cx_mj_is(r, CX_MJ_OBJECT) || target == NULL)
        return w->nomem ? CX_ENOSPC : emit_error(w, w->account, "reaction without message_id");
    cx_meta_reaction_in_t in = {NULL, NULL, str(w, r, "emoji"), id};
    cx_meta_reaction_at_t where = {
        w->channel, CX__REACTIONS__V1__REACTION_TARGET_KIND__REACTION_TARGET_KIND_MESSAGE,
        target,     user(w, from),
        at,         conv};
    if (w->nomem)
        return CX_ENOSPC;
    const cx_msg_meta_t *meta;
    ProtobufCMessage *msg;
    int rc = cx__meta_reaction(w->a, &in, &where, &meta, &msg);
    if (rc == CX_ENOSPC)
        return rc;
    if (rc != 0)
        return emit_error(w, w->account, "reaction cannot be mapped");
    return emit(w, meta, msg, w->account);
}

static int on_message(wa_t *w, const cx_mj_t *m)
{
    if (!cx_mj_is(m, CX_MJ_OBJECT))
        return emit_error(w, w->account, "message is not an object");
    const char *id = str(w, m, "id");
    /* `from` is the wa_id; accounts that enabled usernames send only `from_user_id`. */
    const char *from = str(w, m, "from");
    if (from == NULL)
        from = str(w, m, "from_user_id");
    const char *type = str(w, m, "type");
    int64_t sec;
    int32_t ns;
    if (w->nomem)
        return CX_ENOSPC;
    if (id == NULL || id[0] == '\0' || from == NULL || from[0] == '\0' ||
        cx__meta_time_mj(cx_mj_get(m, "timestamp"), &sec, &ns) != 0)
        return emit_error(w, w->account, "message without id, from or timestamp");
    if (type == NULL)
        type = "unknown";

    Google__Protobuf__Timestamp *at = cx__meta_timestamp(w->a, sec, ns);
    const char *group = str(w, m, "group_id");
    Cx__Common__V1__ConversationRef *conv = cx__meta_conversation(w->a, group ? group : from);
    if (at == NULL || conv == NULL)
        return CX_ENOSPC;
    if (group)
        conv->kind = CX__COMMON__V1__CONVERSATION_KIND__CONVERSATION_KIND_GROUP;

    if (strcmp(type, "reaction") == 0)
        return on_reaction(w, m, id, from, at, conv);

    cx_messaging_direct_message_t *dm;
    NEW(w, dm, cx_messaging_direct_message_init);
    if (dm == NULL)
        return CX_ENOSPC;
    dm->channel = w->channel;
    dm->message_id = (char *)id;
    dm->conversation = conv;
    dm->sender = user(w, from);
    dm->direction = CX__MESSAGING__V1__MESSAGE_DIRECTION__MESSAGE_DIRECTION_INBOUND;
    dm->occurred_at = at;
    dm->provider_type = (char *)type;
    dm->context = reply_context(w, cx_mj_get(m, "context"));
    dm->referral = referral(w, cx_mj_get(m, "referral"));

    const cx_mj_t *body = cx_mj_get(m, type);
    int bad = 0; /* the type's object is missing or unusable: kept as UNSUPPORTED */
    if (strcmp(type, "text") == 0) {
        dm->content_type = CT(TEXT);
        dm->text = opt(w, body, "body");
    } else if (strcmp(type, "image") == 0 || strcmp(type, "video") == 0 ||
               strcmp(type, "document") == 0 || strcmp(type, "sticker") == 0 ||
               strcmp(type, "audio") == 0) {
        Cx__Common__V1__AttachmentType t;
        if (type[0] == 'i') {
            dm->content_type = CT(IMAGE);
            t = AT(IMAGE);
        } else if (type[0] == 'v') {
            dm->content_type = CT(VIDEO);
            t = AT(VIDEO);
        } else if (type[0] == 'd') {
            dm->content_type = CT(DOCUMENT);
            t = AT(DOCUMENT);
        } else if (type[0] == 's') {
            dm->content_type = CT(STICKER);
            t = AT(STICKER);
        } else if (cx_mj_true(cx_mj_get(body, "voice"))) {
            dm->content_type = CT(VOICE);
            t = AT(VOICE);
        } else {
            dm->content_type = CT(AUDIO);
            t = AT(AUDIO);
        }
        bad = !cx_mj_is(body, CX_MJ_OBJECT) || attach(w, dm, body, t) != 0;
    } else if (strcmp(type, "location") == 0) {
        dm->content_type = CT(LOCATION);
        bad = !cx_mj_is(body, CX_MJ_OBJECT) || location(w, dm, body) != 0;
    } else if (strcmp(type, "contacts") == 0) {
        dm->content_type = CT(CONTACTS);
        bad = contacts(w, dm, body) != 0;
    } else if (strcmp(type, "interactive") == 0) {
        bad = !cx_mj_is(body, CX_MJ_OBJECT) || interactive(w, dm, body) != 0;
    } else if (strcmp(type, "button") == 0) {
        dm->content_type = CT(BUTTON);
        dm->interactive = interactive_reply(w, IK(QUICK_REPLY));
        if (dm->interactive) {
            dm->interactive->title = opt(w, body, "text");
            dm->interactive->payload = opt(w, body, "payload");
        }
        bad = !cx_mj_is(body, CX_MJ_OBJECT);
    } else if (strcmp(type, "order") == 0) {
        dm->content_type = CT(ORDER);
        bad = order(w, dm, body) != 0;
    } else if (strcmp(type, "system") == 0) {
        dm->content_type = CT(SYSTEM);
        NEW(w, dm->system, cx__messaging__v1__system_notice__init);
        if (dm->system) {
            dm->system->type = opt(w, body, "type");
            dm->system->body = opt(w, body, "body");
            const char *nw = str(w, body, "wa_id");
            if (nw == NULL)
                nw = str(w, body, "new_wa_id");
            if (nw)
                dm->system->new_wa_id = (char *)nw;
        }
        bad = !cx_mj_is(body, CX_MJ_OBJECT);
    } else {
        /* `unsupported`, `unknown`, `request_welcome` and types added after this adapter. */
        unsupported(w, dm, m, NULL);
    }
    if (bad) {
        /* The content is not what the type promises: keep the message, typed unsupported. */
        dm->text = (char *)protobuf_c_empty_string;
        dm->n_attachments = 0;
        dm->location = NULL;
        dm->n_contacts = 0;
        dm->interactive = NULL;
        dm->order = NULL;
        dm->system = NULL;
        unsupported(w, dm, m, type);
    }
    return emit(w, &cx_messaging_direct_message_meta, &dm->base, w->account);
}

static const struct {
    const char *name;
    Cx__Messaging__V1__MessageStatusKind kind;
} STATUSES[] = {
    {"sent", MS(SENT)},     {"delivered", MS(DELIVERED)}, {"read", MS(READ)},
    {"failed", MS(FAILED)}, {"deleted", MS(DELETED)},     {"played", MS(PLAYED)},
};

static int on_status(wa_t *w, const cx_mj_t *s)
{
    if (!cx_mj_is(s, CX_MJ_OBJECT))
        return emit_error(w, w->account, "status is not an object");
    const char *id = str(w, s, "id");
    const char *status = cx_mj_str(cx_mj_get(s, "status"));
    const char *rcpt = str(w, s, "recipient_id");
    if (rcpt == NULL)
        rcpt = str(w, s, "recipient_user_id");
    int64_t sec;
    int32_t ns;
    if (w->nomem)
        return CX_ENOSPC;
    if (id == NULL || id[0] == '\0' || status == NULL || rcpt == NULL ||
        cx__meta_time_mj(cx_mj_get(s, "timestamp"), &sec, &ns) != 0)
        return emit_error(w, w->account, "status without id, status, recipient_id or timestamp");
    Cx__Messaging__V1__MessageStatusKind kind = MS(UNSPECIFIED);
    for (size_t i = 0; i < sizeof STATUSES / sizeof STATUSES[0]; i++)
        if (strcmp(status, STATUSES[i].name) == 0)
            kind = STATUSES[i].kind;
    if (kind == MS(UNSPECIFIED))
        return emit_error(w, w->account, "unknown status value");

    cx_messaging_message_status_t *ms;
    NEW(w, ms, cx_messaging_message_status_init);
    if (ms == NULL)
        return CX_ENOSPC;
    ms->channel = w->channel;
    ms->message_id = (char *)id;
    ms->status = kind;
    ms->recipient = user(w, rcpt);
    ms->occurred_at = cx__meta_timestamp(w->a, sec, ns);
    if (ms->occurred_at == NULL)
        w->nomem = 1;
    ms->intent_key = opt(w, s, "biz_opaque_callback_data");

    const cx_mj_t *conv = cx_mj_get(s, "conversation");
    if (cx_mj_is(conv, CX_MJ_OBJECT)) {
        NEW(w, ms->billing_conversation, cx__messaging__v1__billing_conversation__init);
        if (ms->billing_conversation) {
            ms->billing_conversation->id = opt(w, conv, "id");
            ms->billing_conversation->origin_type = opt(w, cx_mj_get(conv, "origin"), "type");
            if (cx__meta_time_mj(cx_mj_get(conv, "expiration_timestamp"), &sec, &ns) == 0) {
                ms->billing_conversation->expires_at = cx__meta_timestamp(w->a, sec, ns);
                if (ms->billing_conversation->expires_at == NULL)
                    w->nomem = 1;
            }
        }
    }
    const cx_mj_t *pricing = cx_mj_get(s, "pricing");
    if (cx_mj_is(pricing, CX_MJ_OBJECT)) {
        NEW(w, ms->pricing, cx__messaging__v1__pricing_info__init);
        if (ms->pricing) {
            ms->pricing->billable = cx_mj_true(cx_mj_get(pricing, "billable"));
            ms->pricing->pricing_model = opt(w, pricing, "pricing_model");
            ms->pricing->category = opt(w, pricing, "category");
            ms->pricing->type = opt(w, pricing, "type");
        }
    }
    errors_into(w, cx_mj_get(s, "errors"), &ms->n_errors, &ms->errors);
    return emit(w, &cx_messaging_message_status_meta, &ms->base, w->account);
}

static int on_messages(wa_t *w, const cx_meta_mj_entry_t *e, const cx_mj_t *value)
{
    const cx_mj_t *md = cx_mj_get(value, "metadata");
    w->entry = e;
    w->account = str(w, md, "phone_number_id");
    w->contacts = cx_mj_get(value, "contacts");
    const cx_mj_t *messages = cx_mj_get(value, "messages");
    const cx_mj_t *statuses = cx_mj_get(value, "statuses");
    if (w->nomem)
        return CX_ENOSPC;
    if (w->account == NULL || w->account[0] == '\0') {
        /* Without the phone number id no item can be attributed: each fails alone. */
        size_t n = cx_mj_len(messages) + cx_mj_len(statuses);
        for (size_t i = 0; i < n; i++) {
            int rc = emit_error(w, NULL, "change without metadata.phone_number_id");
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    const char *waba = e->id[0] ? e->id : NULL; /* in the arena already */
    w->channel = cx__meta_channel(w->a, CX_WHATSAPP_ID, w->account, waba,
                                  str(w, md, "display_phone_number"));
    /* DirectMessage.recipient stays unset: the business is the channel, and its phone number
     * id would sit in an actor id (classed as a phone number) beside channel.account_id. */
    if (w->channel == NULL || w->nomem)
        return CX_ENOSPC;
    int rc;
    if (cx_mj_is(messages, CX_MJ_ARRAY)) {
        for (size_t i = 0; i < messages->n; i++)
            if ((rc = on_message(w, &messages->u.items[i])) != 0)
                return rc;
    } else if (messages != NULL && !cx_mj_is(messages, CX_MJ_NULL)) {
        if ((rc = emit_error(w, w->account, "value.messages is not an array")) != 0)
            return rc;
    }
    if (cx_mj_is(statuses, CX_MJ_ARRAY)) {
        for (size_t i = 0; i < statuses->n; i++)
            if ((rc = on_status(w, &statuses->u.items[i])) != 0)
                return rc;
    } else if (statuses != NULL && !cx_mj_is(statuses, CX_MJ_NULL)) {
        if ((rc = emit_error(w, w->account, "value.statuses is not an array")) != 0)
            return rc;
    }
    /* value.errors (errors not tied to a message) carry nothing to process: skipped. */
    return 0;
}

/* ---- account-level fields: ChannelStatus -------------------------------------------------- */

/* Field -> kind, and where its event name, subject and name are. */
static const struct {
    const char *field;
    Cx__Messaging__V1__ChannelStatusKind kind;
    const char *event;   /* member holding the event name; NULL: the field name */
    const char *subject; /* member holding the subject id; NULL: the WABA id */
    const char *name;    /* member holding the subject name, or NULL */
} FIELDS[] = {
    {"account_update", CS(ACCOUNT_UPDATE), "event", "phone_number", NULL},
    {"account_review_update", CS(ACCOUNT_REVIEW), "decision", NULL, NULL},
    {"phone_number_quality_update", CS(PHONE_NUMBER_QUALITY), "event", "display_phone_number",
     NULL},
    {"phone_number_name_update", CS(PHONE_NUMBER_NAME), "decision", "display_phone_number",
     "requested_verified_name"},
    {"message_template_status_update", CS(TEMPLATE_STATUS), "event", "message_template_id",
     "message_template_name"},
    {"message_template_quality_update", CS(TEMPLATE_QUALITY), "new_quality_score",
     "message_template_id", "message_template_name"},
    {"template_category_update", CS(TEMPLATE_CATEGORY), "new_category", "message_template_id",
     "message_template_name"},
    {"business_capability_update", CS(BUSINESS_CAPABILITY), NULL, NULL, NULL},
    {"security", CS(SECURITY), "event", "display_phone_number", NULL},
};

/* Appends the scalar leaves of v as dotted keys ("ban_info.waba_ban_state"). */
static void flatten(wa_t *w, cx_messaging_channel_status_t *cs, const cx_mj_t *v, char *key,
                    size_t klen, size_t kcap, int depth)
{
    if (cs->n_details >= MAX_DETAILS || depth > 4)
        return;
    if (cx_mj_is(v, CX_MJ_OBJECT)) {
        for (uint32_t i = 0; i < v->n; i++) {
            const char *k = v->u.members[i].key;
            const cx_mj_t *child = &v->u.members[i].value;
            size_t n = strlen(k);
            if (klen + n + 2 > kcap)
                continue;
            size_t at = klen;
            if (klen)
                key[at++] = '.';
            memcpy(key + at, k, n + 1);
            flatten(w, cs, child, key, at + n, kcap, depth + 1);
            key[klen] = '\0';
        }
        return;
    }
    if (cx_mj_is(v, CX_MJ_ARRAY) || cx_mj_is(v, CX_MJ_NULL) || klen == 0)
        return;
    char num[64];
    const char *val;
    if (cx_mj_is(v, CX_MJ_STRING))
        val = cx_mj_str(v);
    else if (cx_mj_is(v, CX_MJ_NUMBER) && v->is_int)
        snprintf(num, sizeof num, "%" PRId64, v->u.num.i), val = num;
    else if (cx_mj_is(v, CX_MJ_NUMBER))
        snprintf(num, sizeof num, "%.17g", v->u.num.d), val = num;
    else
        val = cx_mj_true(v) ? "true" : "false";
    if (strlen(val) > 4096)
        return;
    Cx__Common__V1__KeyValue *kv;
    NEW(w, kv, cx__common__v1__key_value__init);
    if (kv == NULL)
        return;
    kv->key = cx_arena_strndup(w->a, key, klen);
    kv->value = val == num ? cx_arena_strndup(w->a, val, strlen(val)) : (char *)val;
    if (kv->key == NULL || kv->value == NULL) {
        w->nomem = 1;
        return;
    }
    cs->details[cs->n_details++] = kv;
}

static int on_account_field(wa_t *w, const cx_meta_mj_entry_t *e, const char *field,
                            const cx_mj_t *value)
{
    size_t f = 0;
    while (f < sizeof FIELDS / sizeof FIELDS[0] && strcmp(FIELDS[f].field, field) != 0)
        f++;
    if (f == sizeof FIELDS / sizeof FIELDS[0] || !cx_mj_is(value, CX_MJ_OBJECT))
        return 0; /* a field we do not map (flows, calls, ...): skipped, never an error */
    const char *waba = e->id; /* in the arena already */
    if (waba[0] == '\0')
        return emit_error(w, NULL, "account update without entry.id");

    cx_messaging_channel_status_t *cs;
    NEW(w, cs, cx_messaging_channel_status_init);
    if (cs == NULL)
        return CX_ENOSPC;
    cs->channel = cx__meta_channel(w->a, CX_WHATSAPP_ID, waba, waba, NULL);
    cs->kind = FIELDS[f].kind;
    const char *event = FIELDS[f].event ? str(w, value, FIELDS[f].event) : NULL;
    cs->event = (char *)(event && event[0] ? event : field);
    const char *subject = FIELDS[f].subject ? str(w, value, FIELDS[f].subject) : NULL;
    /* Account-wide updates have no object of their own: the subject is the account itself,
     * named "account" (not the WABA id again: it is in channel.account_id already, and
     * subject_id is pseudonymised in keys as a possible phone number). */
    cs->subject_id = (char *)(subject && subject[0] ? subject : "account");
    if (FIELDS[f].name)
        cs->subject_name = opt(w, value, FIELDS[f].name);
    cs->language = opt(w, value, "message_template_language");
    cs->quality_rating = opt(w, value, "new_quality_score");
    cs->previous_quality_rating = opt(w, value, "previous_quality_score");
    cs->messaging_limit = opt(w, value, "current_limit");
    const char *reason = str(w, value, "reason");
    if (reason == NULL)
        reason = str(w, value, "rejection_reason");
    if (reason == NULL)
        reason = str(w, cx_mj_get(value, "ban_info"), "waba_ban_state");
    if (reason)
        cs->reason = (char *)reason;
    /* Meta sends no event id: entry.time is the event time (now when it is absent). */
    cs->occurred_at = cx__meta_timestamp(w->a, e->time ? e->time : w->ctx->now, 0);
    cs->details = new_array(w, MAX_DETAILS, sizeof *cs->details);
    if (cs->details) {
        char key[257] = "";
        flatten(w, cs, value, key, 0, sizeof key, 0);
    }
    if (cs->channel == NULL || cs->occurred_at == NULL)
        w->nomem = 1;
    return emit(w, &cx_messaging_channel_status_meta, &cs->base, waba);
}

/* ---- the walk ---------------------------------------------------------------------------- */

static int on_change(cx_meta_mj_walk_t *mw, const cx_meta_mj_entry_t *e, const char *field,
                     const cx_mj_t *value)
{
    wa_t *w = mw->ud;
    if (strcmp(field, "messages") == 0) {
        if (!cx_mj_is(value, CX_MJ_OBJECT))
            return emit_error(w, NULL, "messages change without a value object");
        return on_messages(w, e, value);
    }
    return on_account_field(w, e, field, value);
}

int cx__whatsapp_parse(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                       cx_parse_out_t *out, cx_error_t *err)
{
    (void)c;
    const cx_mj_t *root;
    int rc = cx__meta_load_mj(ctx, req, &root, err);
    if (rc != 0)
        return rc;
    wa_t w = {.ctx = ctx, .a = ctx->arena, .out = out};
    cx_meta_mj_walk_t mw = {.ctx = ctx, .out = out, .ud = &w, .on_change = on_change};
    return cx__meta_walk_mj(root, CX_WHATSAPP_OBJECT, &mw, err);
}
