/* Instagram outbound, the connector's `send`:
 *
 *   outbound_messages  cx.messaging.v1.SendMessageCommand -> the Send API
 *                      (`POST /<version>/<ig_account_id>/messages`, messenger/messenger_send.c):
 *                      text, attachments, quick replies, sender actions (mark_seen,
 *                      typing_on) and reactions (`react` / `unreact`, Instagram's `love`).
 *   comment_replies    a SendMessageCommand with text, `reply_to` = the comment id:
 *                      - conversation.kind COMMENTS: a public reply under the comment,
 *                        `POST /<version>/<comment_id>/replies` {"message": text}; the new
 *                        comment's `id` is the provider message id;
 *                      - otherwise a private reply in the commenter's inbox,
 *                        `POST /<version>/<ig_account_id>/messages`
 *                        {"recipient": {"comment_id": ...}, "message": {"text": ...}}.
 *
 * Both answer with a cx.messaging.v1.SendMessageResult; Graph errors map through
 * cx__meta_graph_failure (e.g. 10900 "activity already replied to" is permanent).
 */
#include <stdio.h>
#include <string.h>

#include "instagram/instagram_internal.h"
#include "messenger/messenger_send.h"

#define SMS(x) CX__MESSAGING__V1__SEND_MESSAGE_STATUS__SEND_MESSAGE_STATUS_##x

static cx_http_client_t *CLIENT;

static int nonempty(const char *s)
{
    return s != NULL && s[0] != '\0';
}

static int digits(const char *s)
{
    return nonempty(s) && strspn(s, "0123456789") == strlen(s);
}

static int comment_reply(const cx_ctx_t *ctx, const ProtobufCMessage *command,
                         ProtobufCMessage **result, cx_error_t *err)
{
    if (!cx__msgr_is(command, &cx_messaging_send_message_command_meta))
        return cx_error_set(err, CX_EINVAL, NULL, "comment_replies takes a SendMessageCommand");
    const cx_messaging_send_message_command_t *cmd = (const void *)command;
    const char *account = cmd->channel ? cmd->channel->account_id : NULL;
    if (!digits(account))
        return cx_error_set(err, CX_EVALIDATION, "channel.account_id",
                            "channel.account_id must be the Instagram account id (digits)");
    if (!digits(cmd->reply_to))
        return cx_error_set(err, CX_EVALIDATION, "reply_to",
                            "reply_to must be the id of the comment answered (digits)");
    if (cmd->content_case != CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_TEXT)
        return cx_error_set(err, CX_EVALIDATION, "content", "comment replies are text only");
    int public_reply =
        cmd->conversation != NULL &&
        cmd->conversation->kind == CX__COMMON__V1__CONVERSATION_KIND__CONVERSATION_KIND_COMMENTS;
    cx_arena_t *a = ctx->arena;
    cx_messaging_send_message_result_t *res = cx_arena_alloc(a, sizeof *res);
    if (res == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "request arena exhausted");
    cx_messaging_send_message_result_init(res);
    res->client_message_id = cmd->client_message_id;
    res->status = SMS(FAILED);
    if (result)
        *result = &res->base;

    char path[160];
    json_t *body = json_object();
    int bad = body == NULL;
    if (public_reply) {
        snprintf(path, sizeof path, "%s/replies", cmd->reply_to);
        bad = bad || json_object_set_new(body, "message", json_string(cmd->text->body)) != 0;
    } else {
        snprintf(path, sizeof path, "%s/messages", account);
        json_t *r = json_object(), *m = json_object();
        bad = bad || r == NULL || m == NULL ||
              json_object_set_new(r, "comment_id", json_string(cmd->reply_to)) != 0 ||
              json_object_set_new(m, "text", json_string(cmd->text->body)) != 0;
        if (!bad) {
            bad = json_object_set_new(body, "recipient", r) != 0;
            r = NULL;
            bad = bad || json_object_set_new(body, "message", m) != 0;
            m = NULL;
        }
        json_decref(r);
        json_decref(m);
    }
    if (bad) {
        json_decref(body);
        return cx_error_set(err, CX_ENOMEM, NULL, NULL);
    }
    cx_http_response_t rs;
    cx_http_response_init(&rs);
    cx_error_t cerr;
    cx_error_clear(&cerr);
    int rc = cx__msgr_graph_call(ctx, &CLIENT, "POST", account, path, body, "comment_replies", &rs,
                                 &cerr);
    json_decref(body);
    if (rc == 0) {
        json_error_t jerr;
        json_t *root = json_loadb(rs.body.data, rs.body.len, 0, &jerr);
        int nomem = 0;
        const char *id = cx__meta_str(a, root, public_reply ? "id" : "message_id", &nomem);
        const char *rid = public_reply ? NULL : cx__meta_str(a, root, "recipient_id", &nomem);
        json_decref(root);
        if (nonempty(id)) {
            res->provider_message_id = (char *)id;
            if (nonempty(rid))
                res->recipient_id = (char *)rid;
            res->status = SMS(ACCEPTED);
            res->accepted_at = cx__meta_timestamp(a, ctx->now, 0);
            if (res->accepted_at == NULL)
                rc = cx_error_set(err, CX_ENOMEM, NULL, NULL);
        } else {
            res->status = SMS(IN_DOUBT);
            rc = cx_error_set(err, CX_EIN_DOUBT, NULL, "graph api answered %d without an id",
                              rs.status);
        }
    } else if (rc == CX_EIN_DOUBT || rc == CX_ECONFIG || rc == CX_EINVAL || rc == CX_ENOMEM) {
        cx_error_set(err, rc, cerr.path[0] ? cerr.path : NULL, "%s", cerr.message);
        res->status = rc == CX_EIN_DOUBT ? SMS(IN_DOUBT) : SMS(FAILED);
    } else {
        Cx__Common__V1__ProviderError *pe;
        rc = cx__meta_graph_failure(a, rc, &rs, &pe, err);
        res->error = pe;
        res->status = rc == CX_EIN_DOUBT ? SMS(IN_DOUBT) : SMS(FAILED);
    }
    cx_http_response_free(&rs);
    return rc;
}

int cx__instagram_send(const cx_connector_t *c, const cx_ctx_t *ctx, const char *capability,
                       const ProtobufCMessage *command, ProtobufCMessage **result, cx_error_t *err)
{
    (void)c;
    if (result)
        *result = NULL;
    if (capability != NULL && strcmp(capability, "outbound_messages") == 0)
        return cx__msgr_send(ctx, &CLIENT, CX_MSGR_INSTAGRAM, command, result, err);
    if (capability != NULL && strcmp(capability, "comment_replies") == 0)
        return comment_reply(ctx, command, result, err);
    return cx_error_set(err, CX_ENOT_IMPLEMENTED, NULL,
                        "instagram sends outbound_messages and comment_replies only");
}
