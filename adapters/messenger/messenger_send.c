/* The Send API shared by Messenger and Instagram (messenger_send.h). */
#include "messenger/messenger_send.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx/dedupe_store.h"
#include "cx/schema.h"

#define CONTENT(x) CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_##x
#define ATT(x) CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_##x
#define MTYPE(x) CX__MESSAGING__V1__MESSAGING_TYPE__MESSAGING_TYPE_##x
#define SMS(x) CX__MESSAGING__V1__SEND_MESSAGE_STATUS__SEND_MESSAGE_STATUS_##x

/* Quick replies per message (Send API limit). */
#define MAX_QUICK_REPLIES 13

static int nonempty(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* o[k] = v, taking v's reference; -1 when v is NULL or the set fails (v is released). */
static int set(json_t *o, const char *k, json_t *v)
{
    return v == NULL || json_object_set_new(o, k, v) != 0 ? -1 : 0;
}

static int set_str(json_t *o, const char *k, const char *s)
{
    return nonempty(s) ? set(o, k, json_string(s)) : 0;
}

static const char *product_name(cx_msgr_product_t p)
{
    return p == CX_MSGR_INSTAGRAM ? "instagram" : "messenger";
}

/* {"recipient": {"id": to}} plus reply_to, messaging_type and tag. */
static json_t *envelope(const cx_messaging_send_message_command_t *cmd, cx_msgr_product_t product,
                        int message)
{
    json_t *b = json_object();
    json_t *r = json_object();
    if (b == NULL || r == NULL || set(r, "id", json_string(cmd->to)) != 0 ||
        set(b, "recipient", r) != 0) {
        json_decref(b);
        return NULL;
    }
    if (!message)
        return b;
    const char *mt = NULL;
    switch (cmd->messaging_type) {
    case MTYPE(RESPONSE):
        mt = "RESPONSE";
        break;
    case MTYPE(UPDATE):
        mt = "UPDATE";
        break;
    case MTYPE(MESSAGE_TAG):
        mt = "MESSAGE_TAG";
        break;
    default:
        /* Messenger requires messaging_type; a reply inside the window is the usual case. */
        mt = product == CX_MSGR_MESSENGER ? "RESPONSE" : NULL;
        break;
    }
    int rc = 0;
    if (mt != NULL)
        rc |= set(b, "messaging_type", json_string(mt));
    if (cmd->messaging_type == MTYPE(MESSAGE_TAG))
        rc |= set_str(b, "tag", cmd->tag);
    if (nonempty(cmd->reply_to)) {
        json_t *rt = json_object();
        if (rt == NULL || set(rt, "mid", json_string(cmd->reply_to)) != 0 ||
            set(b, "reply_to", rt) != 0)
            rc = -1;
    }
    if (rc != 0) {
        json_decref(b);
        return NULL;
    }
    return b;
}

static const char *attachment_type(Cx__Common__V1__AttachmentType t)
{
    switch (t) {
    case ATT(IMAGE):
        return "image";
    case ATT(VIDEO):
        return "video";
    case ATT(AUDIO):
    case ATT(VOICE):
        return "audio";
    case ATT(DOCUMENT):
    case ATT(FILE):
        return "file";
    default:
        return NULL;
    }
}

/* The `message` object of a content, or NULL with *why / *path set (validation) or not
 * (out of memory). */
static json_t *message_object(const cx_messaging_send_message_command_t *cmd, const char **why,
                              const char **path)
{
    json_t *m = json_object();
    if (m == NULL)
        return NULL;
    int rc = 0;
    switch (cmd->content_case) {
    case CONTENT(TEXT):
        rc = set(m, "text", json_string(cmd->text->body));
        break;
    case CONTENT(MEDIA): {
        const Cx__Common__V1__Attachment *a = cmd->media;
        const char *type = attachment_type(a->type);
        if (type == NULL) {
            *why = "the Send API sends image, video, audio and file attachments only";
            *path = "media.type";
            break;
        }
        if (nonempty(a->caption)) {
            *why = "Send API attachments have no caption: send the text as its own message";
            *path = "media.caption";
            break;
        }
        json_t *payload = json_object();
        json_t *att = json_object();
        if (payload == NULL || att == NULL) {
            json_decref(payload);
            json_decref(att);
            rc = -1;
            break;
        }
        if (a->source_case == CX__COMMON__V1__ATTACHMENT__SOURCE_URL && nonempty(a->url))
            rc |= set(payload, "url", json_string(a->url));
        else if (a->source_case == CX__COMMON__V1__ATTACHMENT__SOURCE_MEDIA_ID &&
                 nonempty(a->media_id))
            rc |= set(payload, "attachment_id", json_string(a->media_id));
        else {
            *why = "media needs a url or a media_id (an uploaded attachment_id)";
            *path = "media";
        }
        rc |= set(att, "type", json_string(type));
        rc |= set(att, "payload", payload);
        rc |= set(m, "attachment", att);
        break;
    }
    case CONTENT(INTERACTIVE): {
        const Cx__Messaging__V1__InteractiveContent *in = cmd->interactive;
        if (in->type != CX__MESSAGING__V1__INTERACTIVE_TYPE__INTERACTIVE_TYPE_BUTTON ||
            in->n_buttons == 0) {
            *why = "interactive messages are sent as quick replies: buttons only";
            *path = "interactive.type";
            break;
        }
        if (in->n_buttons > MAX_QUICK_REPLIES) {
            *why = "at most 13 quick replies";
            *path = "interactive.buttons";
            break;
        }
        if (nonempty(in->header_text) || nonempty(in->footer_text) || in->header_media != NULL) {
            *why = "quick replies have no header or footer";
            *path = "interactive";
            break;
        }
        json_t *qrs = json_array();
        rc |= qrs == NULL ? -1 : 0;
        for (size_t i = 0; rc == 0 && i < in->n_buttons; i++) {
            json_t *q = json_object();
            if (q == NULL || set(q, "content_type", json_string("text")) ||
                set(q, "title", json_string(in->buttons[i]->title)) ||
                set(q, "payload", json_string(in->buttons[i]->id)) ||
                json_array_append_new(qrs, q) != 0)
                rc = -1;
        }
        rc |= set(m, "text", json_string(in->body_text));
        rc |= set(m, "quick_replies", qrs);
        break;
    }
    default:
        *why = "this content has no Send API form (templates, lists, locations and contact "
               "cards are WhatsApp's)";
        *path = "content";
        break;
    }
    if (rc != 0 || *why != NULL) {
        json_decref(m);
        return NULL;
    }
    return m;
}

static json_t *sender_action(const cx_messaging_send_message_command_t *cmd, const char *action)
{
    json_t *b = envelope(cmd, CX_MSGR_MESSENGER, 0);
    if (b == NULL || set(b, "sender_action", json_string(action)) != 0) {
        json_decref(b);
        return NULL;
    }
    return b;
}

int cx__msgr_is(const ProtobufCMessage *msg, const cx_msg_meta_t *meta)
{
    return msg != NULL && msg->descriptor != NULL && msg->descriptor->name != NULL &&
           strcmp(msg->descriptor->name, meta->desc->name) == 0;
}

int cx__msgr_send_bodies(const cx_messaging_send_message_command_t *cmd, cx_msgr_product_t product,
                         const char *intent_key, json_t *bodies[2], size_t *n, cx_error_t *err)
{
    *n = 0;
    bodies[0] = bodies[1] = NULL;
    if (!nonempty(cmd->to))
        return cx_error_set(err, CX_EVALIDATION, "to", "to (the PSID / IGSID) is required");
    const char *why = NULL, *path = NULL;

    if (cmd->content_case == CONTENT(MARK_READ)) {
        bodies[(*n)++] = sender_action(cmd, "mark_seen");
        if (bodies[0] == NULL)
            goto nomem;
        if (cmd->mark_read->show_typing) {
            bodies[(*n)++] = sender_action(cmd, "typing_on");
            if (bodies[1] == NULL)
                goto nomem;
        }
        return 0;
    }

    if (cmd->content_case == CONTENT(REACTION)) {
        if (product != CX_MSGR_INSTAGRAM)
            return cx_error_set(err, CX_EVALIDATION, "reaction",
                                "the Messenger Send API cannot react to a message");
        const Cx__Messaging__V1__ReactionContent *r = cmd->reaction;
        /* Instagram reacts with `love` only; an empty emoji removes the reaction. */
        json_t *b = sender_action(cmd, nonempty(r->emoji) ? "react" : "unreact");
        json_t *p = json_object();
        if (b == NULL || p == NULL || set(p, "message_id", json_string(r->message_id)) ||
            (nonempty(r->emoji) && set(p, "reaction", json_string("love"))) ||
            set(b, "payload", p)) {
            json_decref(b);
            goto nomem;
        }
        bodies[(*n)++] = b;
        return 0;
    }

    if (cmd->messaging_type == MTYPE(MESSAGE_TAG) && !nonempty(cmd->tag))
        return cx_error_set(err, CX_EVALIDATION, "tag", "messaging_type MESSAGE_TAG needs a tag");
    json_t *m = message_object(cmd, &why, &path);
    if (m == NULL) {
        if (why != NULL)
            return cx_error_set(err, CX_EVALIDATION, path, "%s: %s", product_name(product), why);
        goto nomem;
    }
    if (product == CX_MSGR_MESSENGER && nonempty(intent_key) &&
        strlen(intent_key) <= CX_MSGR_MAX_METADATA &&
        set(m, "metadata", json_string(intent_key)) != 0) {
        json_decref(m);
        goto nomem;
    }
    json_t *b = envelope(cmd, product, 1);
    if (b == NULL || set(b, "message", m) != 0) {
        json_decref(b);
        goto nomem;
    }
    bodies[(*n)++] = b;
    return 0;
nomem:
    for (size_t i = 0; i < 2; i++) {
        json_decref(bodies[i]);
        bodies[i] = NULL;
    }
    *n = 0;
    return cx_error_set(err, CX_ENOMEM, NULL, NULL);
}

int cx__msgr_graph_call(const cx_ctx_t *ctx, cx_http_client_t **slot, const char *method,
                        const char *account, const char *path, const json_t *body,
                        const char *capability, cx_http_response_t *rs, cx_error_t *err)
{
    char base[512], version[32], url[2048];
    const char *token;
    cx_http_client_t *client;
    int rc;
    if ((rc = cx__meta_graph_target(ctx, base, sizeof base, version, sizeof version, err)) != 0 ||
        (rc = cx__meta_access_token(ctx, account, &token, err)) != 0 ||
        (rc = cx__meta_http_client(ctx, slot, &client, err)) != 0)
        return rc;
    int n = snprintf(url, sizeof url, "%s/%s/%s", base, version, path);
    if (n < 0 || (size_t)n >= sizeof url) {
        memset((char *)token, 0, strlen(token));
        return cx_error_set(err, CX_EINVAL, NULL, "graph api url too long");
    }
    char *text = NULL;
    if (body != NULL && (text = json_dumps(body, JSON_COMPACT)) == NULL) {
        memset((char *)token, 0, strlen(token));
        return cx_error_set(err, CX_ENOMEM, NULL, NULL);
    }
    cx_http_header_t headers[] = {{"Content-Type", "application/json"}};
    cx_http_request_t rq = {.method = method,
                            .url = url,
                            .headers = text ? headers : NULL,
                            .n_headers = text ? 1 : 0,
                            .body = text,
                            .body_len = text ? strlen(text) : 0,
                            .bearer_token = token,
                            .capability = capability};
    rc = cx_http_send(client, &rq, rs, err);
    free(text);
    memset((char *)token, 0, strlen(token));
    return rc;
}

/* Reads {"recipient_id", "message_id"} of a 2xx into res. Returns 0, or -1 when a message
 * was sent and the answer names no message id (the outcome is then unknown). */
static int accepted(cx_arena_t *a, const cx_http_response_t *rs, int want_id,
                    cx_messaging_send_message_result_t *res)
{
    json_error_t jerr;
    json_t *root = json_loadb(rs->body.data, rs->body.len, 0, &jerr);
    int nomem = 0;
    const char *mid = cx__meta_str(a, root, "message_id", &nomem);
    const char *rid = cx__meta_str(a, root, "recipient_id", &nomem);
    json_decref(root);
    if (nonempty(mid))
        res->provider_message_id = (char *)mid;
    if (nonempty(rid))
        res->recipient_id = (char *)rid;
    return nomem || (want_id && !nonempty(mid)) ? -1 : 0;
}

int cx__msgr_send(const cx_ctx_t *ctx, cx_http_client_t **slot, cx_msgr_product_t product,
                  const ProtobufCMessage *command, ProtobufCMessage **result, cx_error_t *err)
{
    if (result)
        *result = NULL;
    if (!cx__msgr_is(command, &cx_messaging_send_message_command_meta))
        return cx_error_set(err, CX_EINVAL, NULL, "outbound_messages takes a SendMessageCommand");
    const cx_messaging_send_message_command_t *cmd = (const void *)command;
    cx_arena_t *a = ctx->arena;
    const char *account = cmd->channel ? cmd->channel->account_id : NULL;
    if (!nonempty(account) || strspn(account, "0123456789") != strlen(account))
        return cx_error_set(err, CX_EVALIDATION, "channel.account_id",
                            "channel.account_id must be the %s (digits)",
                            product == CX_MSGR_INSTAGRAM ? "Instagram account id" : "Page id");

    cx_messaging_send_message_result_t *res = cx_arena_alloc(a, sizeof *res);
    if (res == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "request arena exhausted");
    cx_messaging_send_message_result_init(res);
    res->client_message_id = cmd->client_message_id;
    res->status = SMS(FAILED);
    if (result)
        *result = &res->base;

    /* The intent key: the command's dedupe key (its template has no PII segment). */
    char kmem[CX_DEDUPE_KEY_MAX + 1];
    cx_buf_t kb;
    cx_buf_init_fixed(&kb, kmem, sizeof kmem);
    const char *intent_key = NULL;
    cx_error_t kerr;
    cx_error_clear(&kerr);
    if (cx_dedupe_key(&cx_messaging_send_message_command_meta, command, NULL, &kb, &kerr) == 0)
        intent_key = kb.data;

    json_t *bodies[2];
    size_t n;
    int rc = cx__msgr_send_bodies(cmd, product, intent_key, bodies, &n, err);
    if (rc != 0)
        return rc;
    char path[160];
    snprintf(path, sizeof path, "%s/messages", account);
    int want_id = cmd->content_case != CONTENT(MARK_READ) && cmd->content_case != CONTENT(REACTION);
    cx_http_response_t rs;
    cx_http_response_init(&rs);
    for (size_t i = 0; i < n && rc == 0; i++) {
        cx_error_t cerr;
        cx_error_clear(&cerr);
        rc = cx__msgr_graph_call(ctx, slot, "POST", account, path, bodies[i], "outbound_messages",
                                 &rs, &cerr);
        if (i > 0) {
            /* mark_seen went through; a failed typing_on after it changes nothing that
             * matters, and must not make the command look failed or in doubt. */
            rc = 0;
        } else if (rc == 0) {
            if (accepted(a, &rs, want_id, res) != 0)
                rc = cx_error_set(err, CX_EIN_DOUBT, NULL,
                                  "graph api answered %d without a message id", rs.status);
        } else if (rc == CX_EIN_DOUBT || rc == CX_ECONFIG || rc == CX_EINVAL || rc == CX_ENOMEM) {
            /* In doubt, or refused before anything was sent: keep the client's reason. */
            cx_error_set(err, rc, cerr.path[0] ? cerr.path : NULL, "%s", cerr.message);
        } else {
            Cx__Common__V1__ProviderError *pe;
            rc = cx__meta_graph_failure(a, rc, &rs, &pe, err);
            res->error = pe;
        }
    }
    for (size_t i = 0; i < n; i++)
        json_decref(bodies[i]);
    cx_http_response_free(&rs);
    if (rc == 0) {
        res->status = SMS(ACCEPTED);
        res->accepted_at = cx__meta_timestamp(a, ctx->now, 0);
        if (res->accepted_at == NULL)
            return cx_error_set(err, CX_ENOMEM, NULL, NULL);
    } else {
        res->status = rc == CX_EIN_DOUBT ? SMS(IN_DOUBT) : SMS(FAILED);
    }
    return rc;
}
