/* WhatsApp outbound: cx.messaging.v1.SendMessageCommand -> the Cloud API Messages API.
 *
 *   POST <base>/<version>/<phone_number_id>/messages
 *   Authorization: Bearer <accounts/<phone_number_id>/access_token>
 *   {"messaging_product": "whatsapp", "recipient_type": "individual", "to": ..., "type": ...,
 *    "<type>": {...}, "context": {"message_id": ...}, "biz_opaque_callback_data": <intent key>}
 *
 * One body per content kind, as the Messages API documents them: text (body, preview_url),
 * template (name, language.code, components with typed parameters), media (image, audio,
 * document, video, sticker by `id` or `link`, with caption and filename where the type has
 * them), interactive (button, list), location, contacts, reaction (an empty emoji removes),
 * and mark_read ({"status": "read", "message_id"}, optionally with a typing indicator).
 *
 * The intent key (the command's dedupe key, `whatsapp:outbound:<tenant>:<client_message_id>`)
 * travels in biz_opaque_callback_data, so status webhooks carry it back (MessageStatus
 * intent_key) to reconcile an in-doubt send. The result is a SendMessageResult with the
 * provider message id (`messages[0].id`), ACCEPTED or HELD (`message_status:
 * held_for_quality_assessment`), and the resolved recipient (`contacts[0].wa_id`); failures
 * carry the Graph error with our code (cx__meta_graph_failure).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx/dedupe_store.h"
#include "cx/http.h"
#include "whatsapp_internal.h"

#define PT(x) CX__MESSAGING__V1__TEMPLATE_PARAMETER_TYPE__TEMPLATE_PARAMETER_TYPE_##x
#define TCT(x) CX__MESSAGING__V1__TEMPLATE_COMPONENT_TYPE__TEMPLATE_COMPONENT_TYPE_##x
#define ATT(x) CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_##x
#define CONTENT(x) CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_##x
#define SMS(x) CX__MESSAGING__V1__SEND_MESSAGE_STATUS__SEND_MESSAGE_STATUS_##x

/* Longest biz_opaque_callback_data the Messages API accepts. */
#define MAX_CALLBACK_DATA 512

static cx_http_client_t *CLIENT;

static int set(json_t *o, const char *k, json_t *v)
{
    return v == NULL || json_object_set_new(o, k, v) != 0 ? -1 : 0;
}

/* Sets k to the string s unless s is empty. */
static int set_str(json_t *o, const char *k, const char *s)
{
    if (s == NULL || s[0] == '\0')
        return 0;
    return set(o, k, json_string(s));
}

static int nonempty(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* The media object: {"id"} or {"link"}, plus caption / filename when asked for. */
static json_t *media_object(const Cx__Common__V1__Attachment *m, int caption, int filename)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    int rc = 0;
    if (m->source_case == CX__COMMON__V1__ATTACHMENT__SOURCE_MEDIA_ID && nonempty(m->media_id))
        rc |= set(o, "id", json_string(m->media_id));
    else if (m->source_case == CX__COMMON__V1__ATTACHMENT__SOURCE_URL && nonempty(m->url))
        rc |= set(o, "link", json_string(m->url));
    else
        rc = -1;
    if (caption)
        rc |= set_str(o, "caption", m->caption);
    if (filename)
        rc |= set_str(o, "filename", m->filename);
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The Messages API type of an attachment, and whether it takes a caption and a filename. */
static const char *media_type(Cx__Common__V1__AttachmentType t, int *caption, int *filename)
{
    *caption = *filename = 0;
    switch (t) {
    case ATT(IMAGE):
        *caption = 1;
        return "image";
    case ATT(VIDEO):
        *caption = 1;
        return "video";
    case ATT(DOCUMENT):
    case ATT(FILE):
        *caption = *filename = 1;
        return "document";
    case ATT(AUDIO):
    case ATT(VOICE):
        return "audio";
    case ATT(STICKER):
        return "sticker";
    default:
        return NULL;
    }
}

static json_t *location_object(const Cx__Messaging__V1__Location *l)
{
    json_t *o = json_object();
    if (o == NULL || set(o, "latitude", json_real(l->latitude)) ||
        set(o, "longitude", json_real(l->longitude)) || set_str(o, "name", l->name) ||
        set_str(o, "address", l->address)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *template_parameter(const Cx__Messaging__V1__TemplateParameter *p, const char **why)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    int rc = 0;
    int vc = p->value_case;
    switch (p->type) {
    case PT(TEXT):
        rc = vc != CX__MESSAGING__V1__TEMPLATE_PARAMETER__VALUE_TEXT ||
             set(o, "type", json_string("text")) || set(o, "text", json_string(p->text));
        break;
    case PT(COUPON_CODE):
        rc = vc != CX__MESSAGING__V1__TEMPLATE_PARAMETER__VALUE_TEXT ||
             set(o, "type", json_string("coupon_code")) ||
             set(o, "coupon_code", json_string(p->text));
        break;
    case PT(PAYLOAD):
        rc = vc != CX__MESSAGING__V1__TEMPLATE_PARAMETER__VALUE_PAYLOAD ||
             set(o, "type", json_string("payload")) || set(o, "payload", json_string(p->payload));
        break;
    case PT(DATE_TIME): {
        json_t *dt = json_object();
        rc = vc != CX__MESSAGING__V1__TEMPLATE_PARAMETER__VALUE_DATE_TIME || dt == NULL ||
             set(dt, "fallback_value", json_string(p->date_time)) ||
             set(o, "type", json_string("date_time"));
        if (rc == 0)
            rc = set(o, "date_time", dt);
        else
            json_decref(dt);
        break;
    }
    case PT(CURRENCY): {
        if (vc != CX__MESSAGING__V1__TEMPLATE_PARAMETER__VALUE_CURRENCY || p->currency == NULL) {
            rc = 1;
            break;
        }
        json_t *cur = json_object();
        rc = cur == NULL || set(cur, "fallback_value", json_string(p->currency->fallback_value)) ||
             set(cur, "code", json_string(p->currency->code)) ||
             set(cur, "amount_1000", json_integer(p->currency->amount_1000)) ||
             set(o, "type", json_string("currency"));
        if (rc == 0)
            rc = set(o, "currency", cur);
        else
            json_decref(cur);
        break;
    }
    case PT(IMAGE):
    case PT(DOCUMENT):
    case PT(VIDEO): {
        const char *t = p->type == PT(IMAGE)   ? "image"
                        : p->type == PT(VIDEO) ? "video"
                                               : "document";
        json_t *m = vc == CX__MESSAGING__V1__TEMPLATE_PARAMETER__VALUE_MEDIA && p->media
                        ? media_object(p->media, 0, p->type == PT(DOCUMENT))
                        : NULL;
        rc = m == NULL || set(o, "type", json_string(t));
        if (rc == 0)
            rc = set(o, t, m);
        else
            json_decref(m);
        break;
    }
    case PT(LOCATION): {
        json_t *l = vc == CX__MESSAGING__V1__TEMPLATE_PARAMETER__VALUE_LOCATION && p->location
                        ? location_object(p->location)
                        : NULL;
        rc = l == NULL || set(o, "type", json_string("location"));
        if (rc == 0)
            rc = set(o, "location", l);
        else
            json_decref(l);
        break;
    }
    default:
        rc = 1;
    }
    if (rc == 0 && nonempty(p->parameter_name))
        rc = set(o, "parameter_name", json_string(p->parameter_name));
    if (rc != 0) {
        *why = "template parameter: its value does not match its type";
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *template_object(const Cx__Messaging__V1__TemplateContent *t, const char **why)
{
    json_t *o = json_object();
    json_t *lang = json_object();
    json_t *comps = t->n_components ? json_array() : NULL;
    if (o == NULL || lang == NULL || (t->n_components && comps == NULL))
        goto fail;
    if (set(o, "name", json_string(t->name)) || set(lang, "code", json_string(t->language)))
        goto fail;
    if (set(o, "language", lang)) {
        lang = NULL;
        goto fail;
    }
    lang = NULL;
    for (size_t i = 0; i < t->n_components; i++) {
        const Cx__Messaging__V1__TemplateComponent *c = t->components[i];
        json_t *co = json_object();
        if (co == NULL || json_array_append_new(comps, co) != 0)
            goto fail;
        const char *type = c->type == TCT(HEADER)   ? "header"
                           : c->type == TCT(BODY)   ? "body"
                           : c->type == TCT(BUTTON) ? "button"
                                                    : NULL;
        if (type == NULL) {
            *why = "template component: unknown type";
            goto fail;
        }
        if (set(co, "type", json_string(type)))
            goto fail;
        if (c->type == TCT(BUTTON)) {
            char idx[8];
            snprintf(idx, sizeof idx, "%u", (unsigned)c->index);
            if (set_str(co, "sub_type", c->sub_type) || set(co, "index", json_string(idx)))
                goto fail;
        }
        if (c->n_parameters) {
            json_t *ps = json_array();
            if (ps == NULL || set(co, "parameters", ps))
                goto fail;
            for (size_t k = 0; k < c->n_parameters; k++) {
                json_t *p = template_parameter(c->parameters[k], why);
                if (p == NULL || json_array_append_new(ps, p) != 0)
                    goto fail;
            }
        }
    }
    if (comps && set(o, "components", comps)) {
        comps = NULL;
        goto fail;
    }
    return o;
fail:
    json_decref(o);
    json_decref(lang);
    json_decref(comps);
    return NULL;
}

static json_t *interactive_object(const Cx__Messaging__V1__InteractiveContent *in, const char **why)
{
    json_t *o = json_object();
    json_t *action = json_object();
    if (o == NULL || action == NULL)
        goto fail;
    int is_list = in->type == CX__MESSAGING__V1__INTERACTIVE_TYPE__INTERACTIVE_TYPE_LIST;
    if (!is_list && in->type != CX__MESSAGING__V1__INTERACTIVE_TYPE__INTERACTIVE_TYPE_BUTTON) {
        *why = "interactive: type must be button or list";
        goto fail;
    }
    if (set(o, "type", json_string(is_list ? "list" : "button")))
        goto fail;
    if (in->header_media) {
        int cap, fn;
        const char *t = media_type(in->header_media->type, &cap, &fn);
        json_t *h = json_object();
        json_t *m = t ? media_object(in->header_media, 0, fn) : NULL;
        if (h == NULL || m == NULL || set(h, "type", json_string(t)) || set(h, t, m) ||
            set(o, "header", h)) {
            *why = "interactive: header media needs an image, video or document by id or url";
            goto fail;
        }
    } else if (nonempty(in->header_text)) {
        json_t *h = json_object();
        if (h == NULL || set(h, "type", json_string("text")) ||
            set(h, "text", json_string(in->header_text)) || set(o, "header", h))
            goto fail;
    }
    json_t *body = json_object();
    if (body == NULL || set(body, "text", json_string(in->body_text)) || set(o, "body", body))
        goto fail;
    if (nonempty(in->footer_text)) {
        json_t *f = json_object();
        if (f == NULL || set(f, "text", json_string(in->footer_text)) || set(o, "footer", f))
            goto fail;
    }
    if (is_list) {
        json_t *sections = json_array();
        if (set(action, "button", json_string(in->button_text)) ||
            set(action, "sections", sections))
            goto fail;
        for (size_t i = 0; i < in->n_sections; i++) {
            const Cx__Messaging__V1__ListSection *s = in->sections[i];
            json_t *so = json_object(), *rows = json_array();
            if (so == NULL || rows == NULL || json_array_append_new(sections, so) ||
                set_str(so, "title", s->title) || set(so, "rows", rows)) {
                json_decref(rows);
                goto fail;
            }
            for (size_t k = 0; k < s->n_rows; k++) {
                json_t *r = json_object();
                if (r == NULL || json_array_append_new(rows, r) ||
                    set(r, "id", json_string(s->rows[k]->id)) ||
                    set(r, "title", json_string(s->rows[k]->title)) ||
                    set_str(r, "description", s->rows[k]->description))
                    goto fail;
            }
        }
    } else {
        json_t *buttons = json_array();
        if (set(action, "buttons", buttons))
            goto fail;
        for (size_t i = 0; i < in->n_buttons; i++) {
            json_t *b = json_object(), *reply = json_object();
            if (b == NULL || reply == NULL || json_array_append_new(buttons, b) ||
                set(reply, "id", json_string(in->buttons[i]->id)) ||
                set(reply, "title", json_string(in->buttons[i]->title)) ||
                set(b, "type", json_string("reply")) || set(b, "reply", reply)) {
                json_decref(reply);
                goto fail;
            }
        }
    }
    if (set(o, "action", action)) {
        action = NULL;
        goto fail;
    }
    return o;
fail:
    json_decref(o);
    json_decref(action);
    return NULL;
}

static json_t *contacts_array(const Cx__Messaging__V1__ContactList *cl)
{
    json_t *arr = json_array();
    if (arr == NULL)
        return NULL;
    for (size_t i = 0; i < cl->n_contacts; i++) {
        const Cx__Messaging__V1__Contact *c = cl->contacts[i];
        json_t *o = json_object(), *name = json_object(), *org = json_object();
        if (o == NULL || name == NULL || org == NULL || json_array_append_new(arr, o)) {
            json_decref(name);
            json_decref(org);
            goto fail;
        }
        int rc = set_str(name, "formatted_name", c->formatted_name) ||
                 set_str(name, "first_name", c->first_name) ||
                 set_str(name, "last_name", c->last_name) ||
                 set_str(name, "middle_name", c->middle_name) ||
                 set_str(name, "suffix", c->name_suffix) || set_str(name, "prefix", c->name_prefix);
        rc = rc || set(o, "name", name);
        if (rc) {
            json_decref(org);
            goto fail;
        }
        rc = set_str(org, "company", c->company) || set_str(org, "department", c->department) ||
             set_str(org, "title", c->job_title);
        if (rc || (json_object_size(org) ? set(o, "org", org) : (json_decref(org), 0)))
            goto fail;
        if (set_str(o, "birthday", c->birthday))
            goto fail;
        if (c->n_phones) {
            json_t *ps = json_array();
            if (set(o, "phones", ps))
                goto fail;
            for (size_t k = 0; k < c->n_phones; k++) {
                json_t *p = json_object();
                if (p == NULL || json_array_append_new(ps, p) ||
                    set(p, "phone", json_string(c->phones[k]->phone)) ||
                    set_str(p, "type", c->phones[k]->type) ||
                    set_str(p, "wa_id", c->phones[k]->wa_id))
                    goto fail;
            }
        }
        if (c->n_emails) {
            json_t *es = json_array();
            if (set(o, "emails", es))
                goto fail;
            for (size_t k = 0; k < c->n_emails; k++) {
                json_t *e = json_object();
                if (e == NULL || json_array_append_new(es, e) ||
                    set(e, "email", json_string(c->emails[k]->email)) ||
                    set_str(e, "type", c->emails[k]->type))
                    goto fail;
            }
        }
        if (c->n_urls) {
            json_t *us = json_array();
            if (set(o, "urls", us))
                goto fail;
            for (size_t k = 0; k < c->n_urls; k++) {
                json_t *u = json_object();
                if (u == NULL || json_array_append_new(us, u) ||
                    set(u, "url", json_string(c->urls[k]->url)) ||
                    set_str(u, "type", c->urls[k]->type))
                    goto fail;
            }
        }
    }
    return arr;
fail:
    json_decref(arr);
    return NULL;
}

int cx__whatsapp_request_body(const cx_messaging_send_message_command_t *cmd,
                              const char *intent_key, json_t **out, cx_error_t *err)
{
    *out = NULL;
    const char *why = NULL;
    json_t *o = json_object();
    if (o == NULL || set(o, "messaging_product", json_string("whatsapp")))
        goto nomem;
    if (cmd->content_case == CONTENT(MARK_READ)) {
        if (cmd->mark_read == NULL || set(o, "status", json_string("read")) ||
            set(o, "message_id", json_string(cmd->mark_read->message_id)))
            goto bad;
        if (cmd->mark_read->show_typing) {
            json_t *ti = json_object();
            if (ti == NULL || set(ti, "type", json_string("text")) ||
                set(o, "typing_indicator", ti))
                goto nomem;
        }
        *out = o;
        return 0;
    }
    if (set(o, "recipient_type", json_string("individual")) || set(o, "to", json_string(cmd->to)))
        goto bad;
    if (nonempty(cmd->reply_to) && cmd->content_case != CONTENT(REACTION)) {
        json_t *ctx = json_object();
        if (ctx == NULL || set(ctx, "message_id", json_string(cmd->reply_to)) ||
            set(o, "context", ctx))
            goto nomem;
    }
    const char *type;
    json_t *content;
    switch (cmd->content_case) {
    case CONTENT(TEXT):
        type = "text";
        content = json_object();
        if (cmd->text == NULL || content == NULL ||
            set(content, "preview_url", json_boolean(cmd->text->preview_url)) ||
            set(content, "body", json_string(cmd->text->body)))
            goto content_bad;
        break;
    case CONTENT(MEDIA): {
        int cap, fn;
        type = cmd->media ? media_type(cmd->media->type, &cap, &fn) : NULL;
        content = type ? media_object(cmd->media, cap, fn) : NULL;
        if (content == NULL) {
            why = "media: an image, audio, video, document or sticker by media_id or url";
            goto bad;
        }
        break;
    }
    case CONTENT(TEMPLATE):
        type = "template";
        content = cmd->template_ ? template_object(cmd->template_, &why) : NULL;
        if (content == NULL)
            goto bad;
        break;
    case CONTENT(INTERACTIVE):
        type = "interactive";
        content = cmd->interactive ? interactive_object(cmd->interactive, &why) : NULL;
        if (content == NULL)
            goto bad;
        break;
    case CONTENT(LOCATION):
        type = "location";
        content = cmd->location ? location_object(cmd->location) : NULL;
        if (content == NULL)
            goto bad;
        break;
    case CONTENT(CONTACTS):
        type = "contacts";
        content = cmd->contacts ? contacts_array(cmd->contacts) : NULL;
        if (content == NULL)
            goto bad;
        break;
    case CONTENT(REACTION):
        type = "reaction";
        content = json_object();
        if (cmd->reaction == NULL || content == NULL ||
            set(content, "message_id", json_string(cmd->reaction->message_id)) ||
            set(content, "emoji", json_string(cmd->reaction->emoji)))
            goto content_bad;
        break;
    default:
        why = "no content to send";
        goto bad;
    }
    if (set(o, "type", json_string(type)) || set(o, type, content))
        goto nomem;
    if (nonempty(intent_key) && strlen(intent_key) <= MAX_CALLBACK_DATA &&
        set(o, "biz_opaque_callback_data", json_string(intent_key)))
        goto nomem;
    *out = o;
    return 0;
content_bad:
    json_decref(content);
bad:
    json_decref(o);
    return cx_error_set(err, CX_EVALIDATION, NULL, "%s",
                        why ? why : "the command cannot be expressed as a WhatsApp message");
nomem:
    json_decref(o);
    return cx_error_set(err, CX_ENOMEM, NULL, NULL);
}

static int digits_only(const char *s)
{
    if (s == NULL || s[0] == '\0' || strlen(s) > 32)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* Fills res from a 2xx body. Returns 0, or CX_EIN_DOUBT when the body does not say. */
static int accepted(cx_arena_t *a, const cx_messaging_send_message_command_t *cmd,
                    const cx_http_response_t *rs, cx_messaging_send_message_result_t *res)
{
    json_error_t jerr;
    json_t *root = json_loadb(rs->body.data ? rs->body.data : "", rs->body.len, 0, &jerr);
    int rc = CX_EIN_DOUBT;
    if (cmd->content_case == CONTENT(MARK_READ)) {
        if (json_is_true(json_object_get(root, "success"))) {
            res->provider_message_id = cmd->mark_read->message_id;
            rc = 0;
        }
    } else {
        json_t *m = json_array_get(json_object_get(root, "messages"), 0);
        const char *id = cx__meta_str(a, m, "id", NULL);
        if (id != NULL && id[0] != '\0') {
            res->provider_message_id = (char *)id;
            const char *st = json_string_value(json_object_get(m, "message_status"));
            if (st && (strcmp(st, "held_for_quality_assessment") == 0 || strcmp(st, "paused") == 0))
                res->status = SMS(HELD);
            const char *wa = cx__meta_str(a, json_array_get(json_object_get(root, "contacts"), 0),
                                          "wa_id", NULL);
            if (wa)
                res->recipient_id = (char *)wa;
            rc = 0;
        }
    }
    json_decref(root);
    return rc;
}

int cx__whatsapp_send(const cx_connector_t *c, const cx_ctx_t *ctx, const char *capability,
                      const ProtobufCMessage *command, ProtobufCMessage **result, cx_error_t *err)
{
    (void)c;
    if (result)
        *result = NULL;
    if (capability == NULL || strcmp(capability, "outbound_messages") != 0)
        return cx_error_set(err, CX_ENOT_IMPLEMENTED, NULL,
                            "whatsapp sends outbound_messages only");
    /* By name: a host and a loaded connector each have their own copy of the descriptors. */
    if (command == NULL || command->descriptor == NULL ||
        strcmp(command->descriptor->name, cx_messaging_send_message_command_meta.desc->name) != 0)
        return cx_error_set(err, CX_EINVAL, NULL, "outbound_messages takes a SendMessageCommand");
    const cx_messaging_send_message_command_t *cmd = (const void *)command;
    cx_arena_t *a = ctx->arena;
    const char *phone_id = cmd->channel ? cmd->channel->account_id : NULL;
    if (!digits_only(phone_id))
        return cx_error_set(err, CX_EVALIDATION, "channel.account_id",
                            "channel.account_id must be the WhatsApp phone number id (digits)");

    cx_messaging_send_message_result_t *res = cx_arena_alloc(a, sizeof *res);
    if (res == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "request arena exhausted");
    cx_messaging_send_message_result_init(res);
    res->client_message_id = cmd->client_message_id;
    res->status = SMS(FAILED);
    if (result)
        *result = &res->base;

    /* The intent key: the command's dedupe key (no PII segment in its template). */
    char kmem[CX_DEDUPE_KEY_MAX + 1];
    cx_buf_t kb;
    cx_buf_init_fixed(&kb, kmem, sizeof kmem);
    const char *intent_key = NULL;
    cx_error_t kerr;
    cx_error_clear(&kerr);
    if (cx_dedupe_key(&cx_messaging_send_message_command_meta, command, NULL, &kb, &kerr) == 0)
        intent_key = kb.data;

    json_t *body;
    int rc = cx__whatsapp_request_body(cmd, intent_key, &body, err);
    if (rc != 0)
        return rc;
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, NULL);

    char base[512], version[32], url[1024];
    const char *token;
    cx_http_client_t *client;
    if ((rc = cx__meta_graph_target(ctx, base, sizeof base, version, sizeof version, err)) != 0 ||
        (rc = cx__meta_access_token(ctx, phone_id, &token, err)) != 0 ||
        (rc = cx__meta_http_client(ctx, &CLIENT, &client, err)) != 0) {
        free(text);
        return rc;
    }
    snprintf(url, sizeof url, "%s/%s/%s/messages", base, version, phone_id);
    cx_http_header_t headers[] = {{"Content-Type", "application/json"}};
    cx_http_request_t rq = {.method = "POST",
                            .url = url,
                            .headers = headers,
                            .n_headers = 1,
                            .body = text,
                            .body_len = strlen(text),
                            .bearer_token = token,
                            .capability = "outbound_messages"};
    cx_http_response_t rs;
    cx_http_response_init(&rs);
    rc = cx_http_send(client, &rq, &rs, err);
    free(text);
    memset((char *)token, 0, strlen(token));
    if (rc == 0) {
        res->status = SMS(ACCEPTED);
        rc = accepted(a, cmd, &rs, res);
        if (rc == 0) {
            res->accepted_at = cx__meta_timestamp(a, ctx->now, 0);
            if (res->accepted_at == NULL)
                rc = cx_error_set(err, CX_ENOMEM, NULL, NULL);
        } else {
            res->status = SMS(IN_DOUBT);
            rc = cx_error_set(err, CX_EIN_DOUBT, NULL, "graph api answered %d without a message id",
                              rs.status);
        }
    } else {
        cx_error_clear(err);
        Cx__Common__V1__ProviderError *pe;
        rc = cx__meta_graph_failure(a, rc, &rs, &pe, err);
        res->error = pe;
        res->status = rc == CX_EIN_DOUBT ? SMS(IN_DOUBT) : SMS(FAILED);
    }
    cx_http_response_free(&rs);
    return rc;
}
