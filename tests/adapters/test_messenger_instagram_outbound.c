/* Instagram and Messenger outbound against the scriptable mock provider: for every content
 * kind, the method, the path (Graph version, Page id / Instagram account id, comment id), the
 * headers and the exact JSON body the Send API expects; the result mapped from the answer; and
 * the failures (Graph errors, a 2xx without a message id, contents the Send API has no form
 * for, a missing token).
 *
 * The connectors read their Graph target from the secrets directory (graph_api_base_url =
 * the mock, graph_api_version) and the Page / Instagram account token from
 * accounts/<id>/access_token, as in a deployment.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cx/messaging/v1/messaging.cx.h"
#include "cx/runtime.h"
#include "instagram/instagram.h"
#include "messenger/messenger.h"
#include "mock_provider.h"

#define PAGE "107331752078520"
#define PSID "6785463028154827"
#define IG "17841405822304914"
#define IGSID "1254459154682919"
#define NOW 1732871760

typedef struct {
    char dir[64];
    char fixtures[1024];    /* the source tree's fixtures/ */
    char token[2][256];     /* the fixture access tokens: [0] messenger, [1] instagram */
    const char *want_token; /* the token of the connector last sent on */
    cx_runtime_t *rt;
    cx_mock_provider_t *mock;
    cx_arena_t arena;
} fx_t;

static void read_line(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot read %s", path);
    assert_non_null(fgets(buf, (int)cap, f));
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
}

static void write_file(const char *dir, const char *rel, const char *value)
{
    char path[512], tmp[512];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    /* mkdir -p of the parents */
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + strlen(dir) + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0700);
            *p = '/';
        }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(value, f);
    fclose(f);
}

static void remove_tree(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/cx-msgr-out-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    assert_int_equal(cx_mock_provider_start(&fx->mock), 0);
    const char *src = getenv("CX_SOURCE_DIR");
    snprintf(fx->fixtures, sizeof fx->fixtures, "%s/fixtures", src ? src : ".");
    /* The fixture secrets (tokens, Graph version), plus the mock's URL as the Graph base. */
    const char *url = cx_mock_provider_url(fx->mock);
    for (int i = 0; i < 2; i++) {
        const char *c = i ? "instagram" : "messenger";
        char rel[256], path[2048];
        snprintf(path, sizeof path, "%s/%s/secrets/%s/accounts/%s/access_token", fx->fixtures, c, c,
                 i ? IG : PAGE);
        read_line(path, fx->token[i], sizeof fx->token[i]);
        snprintf(rel, sizeof rel, "%s/graph_api_base_url", c);
        write_file(fx->dir, rel, url);
        snprintf(rel, sizeof rel, "%s/graph_api_version", c);
        write_file(fx->dir, rel, "v21.0\n");
        snprintf(rel, sizeof rel, "%s/accounts/%s/access_token", c, i ? IG : PAGE);
        write_file(fx->dir, rel, fx->token[i]);
    }
    cx_runtime_config_t cfg = {.environment = CX_ENV_DEVELOPMENT, .secrets_dir = fx->dir};
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_runtime_create(&cfg, &fx->rt, &err), 0);
    cx_arena_init(&fx->arena, NULL, 1 << 20);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    cx_arena_release(&fx->arena);
    cx_runtime_destroy(fx->rt);
    cx_mock_provider_stop(fx->mock);
    remove_tree(fx->dir);
    free(fx);
    return 0;
}

static cx_ctx_t ctx_of(fx_t *fx, const char *connector)
{
    cx_ctx_t ctx = {fx->rt, connector, NOW, &fx->arena};
    return ctx;
}

/* A SendMessageCommand in the fixture's arena with the envelope fields set. */
static cx_messaging_send_message_command_t *
command(fx_t *fx, const char *channel, const char *account, const char *to, const char *client_id)
{
    cx_messaging_send_message_command_t *c = cx_arena_alloc(&fx->arena, sizeof *c);
    Cx__Common__V1__ChannelRef *ch = cx_arena_alloc(&fx->arena, sizeof *ch);
    assert_non_null(c);
    assert_non_null(ch);
    cx_messaging_send_message_command_init(c);
    cx__common__v1__channel_ref__init(ch);
    ch->channel = (char *)channel;
    ch->account_id = (char *)account;
    c->channel = ch;
    c->tenant_id = "acme";
    c->client_message_id = (char *)client_id;
    c->to = (char *)to;
    return c;
}

static void set_text(fx_t *fx, cx_messaging_send_message_command_t *c, const char *body)
{
    cx_messaging_text_content_t *t = cx_arena_alloc(&fx->arena, sizeof *t);
    assert_non_null(t);
    cx_messaging_text_content_init(t);
    t->body = (char *)body;
    c->content_case = CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_TEXT;
    c->text = t;
}

static int send_on(fx_t *fx, const char *connector, const char *capability,
                   const ProtobufCMessage *msg, ProtobufCMessage **result, cx_error_t *err)
{
    int ig = strcmp(connector, "instagram") == 0;
    const cx_connector_t *c = ig ? cx_instagram_connector() : cx_messenger_connector();
    fx->want_token = fx->token[ig];
    cx_ctx_t ctx = ctx_of(fx, connector);
    cx_error_clear(err);
    return c->send(c, &ctx, capability, msg, result, err);
}

/* Request i has this method, path, Bearer token, JSON content type and exactly this body. */
static void assert_request(fx_t *fx, size_t i, const char *method, const char *path,
                           const char *json_body)
{
    const cx_mock_request_t *r = cx_mock_provider_request(fx->mock, i);
    assert_non_null(r);
    assert_string_equal(r->method, method);
    assert_string_equal(r->path, path);
    const char *auth = cx_mock_request_header(r, "Authorization");
    char bearer[300];
    snprintf(bearer, sizeof bearer, "Bearer %s", fx->want_token);
    assert_non_null(auth);
    assert_string_equal(auth, bearer);
    if (json_body == NULL) {
        assert_int_equal(r->body_len, 0);
        return;
    }
    const char *ct = cx_mock_request_header(r, "Content-Type");
    assert_non_null(ct);
    assert_string_equal(ct, "application/json");
    json_error_t e1, e2;
    json_t *want = json_loads(json_body, 0, &e1);
    json_t *got = json_loadb(r->body, r->body_len, 0, &e2);
    assert_non_null(want);
    assert_non_null(got);
    if (!json_equal(want, got)) {
        fprintf(stderr, "body mismatch:\n  want %s\n  got  %.*s\n", json_body, (int)r->body_len,
                r->body);
        fail();
    }
    json_decref(want);
    json_decref(got);
}

static const cx_messaging_send_message_result_t *as_result(ProtobufCMessage *m)
{
    assert_non_null(m);
    assert_ptr_equal(m->descriptor, cx_messaging_send_message_result_meta.desc);
    return (const void *)m;
}

/* ---- Messenger ------------------------------------------------------------------------------- */

static void test_messenger_text_carries_intent_key_in_metadata(void **state)
{
    fx_t *fx = *state;
    cx_mock_push_status(fx->mock, 200, "{\"recipient_id\":\"" PSID "\",\"message_id\":\"m_sent1\"}",
                        NULL);
    cx_messaging_send_message_command_t *c = command(fx, "messenger", PAGE, PSID, "order-42");
    set_text(fx, c, "Your order #42 is confirmed");
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "messenger", "outbound_messages", &c->base, &res, &err), 0);
    assert_int_equal(cx_mock_provider_count(fx->mock), 1);
    assert_request(fx, 0, "POST", "/v21.0/" PAGE "/messages",
                   "{\"recipient\":{\"id\":\"" PSID "\"},\"messaging_type\":\"RESPONSE\","
                   "\"message\":{\"text\":\"Your order #42 is confirmed\","
                   "\"metadata\":\"messenger:outbound:acme:order-42\"}}");
    const cx_messaging_send_message_result_t *r = as_result(res);
    assert_string_equal(r->provider_message_id, "m_sent1");
    assert_string_equal(r->recipient_id, PSID);
    assert_string_equal(r->client_message_id, "order-42");
    assert_int_equal(r->status,
                     CX__MESSAGING__V1__SEND_MESSAGE_STATUS__SEND_MESSAGE_STATUS_ACCEPTED);
    assert_int_equal(r->accepted_at->seconds, NOW);
}

static void test_messenger_message_tag_and_reply_to(void **state)
{
    fx_t *fx = *state;
    cx_mock_push_status(fx->mock, 200, "{\"recipient_id\":\"" PSID "\",\"message_id\":\"m_sent2\"}",
                        NULL);
    cx_messaging_send_message_command_t *c = command(fx, "messenger", PAGE, PSID, "agent-7");
    set_text(fx, c, "An agent will call you");
    c->messaging_type = CX__MESSAGING__V1__MESSAGING_TYPE__MESSAGING_TYPE_MESSAGE_TAG;
    c->tag = "HUMAN_AGENT";
    c->reply_to = "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_0001";
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "messenger", "outbound_messages", &c->base, &res, &err), 0);
    assert_request(
        fx, 0, "POST", "/v21.0/" PAGE "/messages",
        "{\"recipient\":{\"id\":\"" PSID "\"},\"messaging_type\":\"MESSAGE_TAG\","
        "\"tag\":\"HUMAN_AGENT\",\"reply_to\":{\"mid\":\"m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_0001\"},"
        "\"message\":{\"text\":\"An agent will call you\","
        "\"metadata\":\"messenger:outbound:acme:agent-7\"}}");
    assert_string_equal(as_result(res)->provider_message_id, "m_sent2");
}

static void test_messenger_update_messaging_type(void **state)
{
    fx_t *fx = *state;
    cx_mock_push_status(fx->mock, 200, "{\"recipient_id\":\"" PSID "\",\"message_id\":\"m_sent3\"}",
                        NULL);
    cx_messaging_send_message_command_t *c = command(fx, "messenger", PAGE, PSID, "upd-1");
    set_text(fx, c, "Your parcel left the warehouse");
    c->messaging_type = CX__MESSAGING__V1__MESSAGING_TYPE__MESSAGING_TYPE_UPDATE;
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "messenger", "outbound_messages", &c->base, &res, &err), 0);
    assert_request(fx, 0, "POST", "/v21.0/" PAGE "/messages",
                   "{\"recipient\":{\"id\":\"" PSID "\"},\"messaging_type\":\"UPDATE\","
                   "\"message\":{\"text\":\"Your parcel left the warehouse\","
                   "\"metadata\":\"messenger:outbound:acme:upd-1\"}}");
}

static Cx__Common__V1__Attachment *attachment(fx_t *fx, Cx__Common__V1__AttachmentType type,
                                              const char *url, const char *media_id)
{
    Cx__Common__V1__Attachment *a = cx_arena_alloc(&fx->arena, sizeof *a);
    assert_non_null(a);
    cx__common__v1__attachment__init(a);
    a->type = type;
    if (url) {
        a->source_case = CX__COMMON__V1__ATTACHMENT__SOURCE_URL;
        a->url = (char *)url;
    } else {
        a->source_case = CX__COMMON__V1__ATTACHMENT__SOURCE_MEDIA_ID;
        a->media_id = (char *)media_id;
    }
    return a;
}

static void test_messenger_attachments_by_url_and_by_id(void **state)
{
    fx_t *fx = *state;
    static const struct {
        Cx__Common__V1__AttachmentType type;
        const char *name;
    } kinds[] = {
        {CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_IMAGE, "image"},
        {CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_VIDEO, "video"},
        {CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_AUDIO, "audio"},
        {CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_DOCUMENT, "file"},
        {CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_FILE, "file"},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        cx_mock_provider_reset(fx->mock);
        cx_mock_push_status(fx->mock, 200, "{\"recipient_id\":\"" PSID "\",\"message_id\":\"m_a\"}",
                            NULL);
        cx_messaging_send_message_command_t *c = command(fx, "messenger", PAGE, PSID, "att");
        c->content_case = CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_MEDIA;
        c->media = attachment(fx, kinds[i].type, "https://cdn.example.com/a.bin", NULL);
        ProtobufCMessage *res;
        cx_error_t err;
        assert_int_equal(send_on(fx, "messenger", "outbound_messages", &c->base, &res, &err), 0);
        char want[512];
        snprintf(want, sizeof want,
                 "{\"recipient\":{\"id\":\"" PSID "\"},\"messaging_type\":\"RESPONSE\","
                 "\"message\":{\"attachment\":{\"type\":\"%s\",\"payload\":"
                 "{\"url\":\"https://cdn.example.com/a.bin\"}},"
                 "\"metadata\":\"messenger:outbound:acme:att\"}}",
                 kinds[i].name);
        assert_request(fx, 0, "POST", "/v21.0/" PAGE "/messages", want);
    }
    cx_mock_provider_reset(fx->mock);
    cx_mock_push_status(fx->mock, 200, "{\"recipient_id\":\"" PSID "\",\"message_id\":\"m_b\"}",
                        NULL);
    cx_messaging_send_message_command_t *c = command(fx, "messenger", PAGE, PSID, "att-id");
    c->content_case = CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_MEDIA;
    c->media = attachment(fx, CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_IMAGE, NULL,
                          "1857777774821032");
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "messenger", "outbound_messages", &c->base, &res, &err), 0);
    assert_request(fx, 0, "POST", "/v21.0/" PAGE "/messages",
                   "{\"recipient\":{\"id\":\"" PSID "\"},\"messaging_type\":\"RESPONSE\","
                   "\"message\":{\"attachment\":{\"type\":\"image\",\"payload\":"
                   "{\"attachment_id\":\"1857777774821032\"}},"
                   "\"metadata\":\"messenger:outbound:acme:att-id\"}}");
}

static void test_messenger_quick_replies(void **state)
{
    fx_t *fx = *state;
    cx_mock_push_status(fx->mock, 200, "{\"recipient_id\":\"" PSID "\",\"message_id\":\"m_q\"}",
                        NULL);
    cx_messaging_send_message_command_t *c = command(fx, "messenger", PAGE, PSID, "qr-1");
    cx_messaging_interactive_content_t *in = cx_arena_alloc(&fx->arena, sizeof *in);
    cx_messaging_reply_button_t *b = cx_arena_alloc(&fx->arena, 2 * sizeof *b);
    cx_messaging_reply_button_t **bs = cx_arena_alloc(&fx->arena, 2 * sizeof *bs);
    assert_non_null(in);
    assert_non_null(b);
    assert_non_null(bs);
    cx_messaging_interactive_content_init(in);
    in->type = CX__MESSAGING__V1__INTERACTIVE_TYPE__INTERACTIVE_TYPE_BUTTON;
    in->body_text = "Pick a color:";
    for (int i = 0; i < 2; i++) {
        cx_messaging_reply_button_init(&b[i]);
        bs[i] = &b[i];
    }
    b[0].id = "PICK_RED";
    b[0].title = "Red";
    b[1].id = "PICK_GREEN";
    b[1].title = "Green";
    in->buttons = bs;
    in->n_buttons = 2;
    c->content_case = CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_INTERACTIVE;
    c->interactive = in;
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "messenger", "outbound_messages", &c->base, &res, &err), 0);
    assert_request(fx, 0, "POST", "/v21.0/" PAGE "/messages",
                   "{\"recipient\":{\"id\":\"" PSID "\"},\"messaging_type\":\"RESPONSE\","
                   "\"message\":{\"text\":\"Pick a color:\",\"quick_replies\":["
                   "{\"content_type\":\"text\",\"title\":\"Red\",\"payload\":\"PICK_RED\"},"
                   "{\"content_type\":\"text\",\"title\":\"Green\",\"payload\":\"PICK_GREEN\"}],"
                   "\"metadata\":\"messenger:outbound:acme:qr-1\"}}");
}

static void test_messenger_mark_read_with_typing_is_two_sender_actions(void **state)
{
    fx_t *fx = *state;
    cx_mock_push_status(fx->mock, 200, "{\"recipient_id\":\"" PSID "\"}", NULL);
    cx_mock_push_status(fx->mock, 200, "{\"recipient_id\":\"" PSID "\"}", NULL);
    cx_messaging_send_message_command_t *c = command(fx, "messenger", PAGE, PSID, "seen-1");
    cx_messaging_mark_read_t *mr = cx_arena_alloc(&fx->arena, sizeof *mr);
    assert_non_null(mr);
    cx_messaging_mark_read_init(mr);
    mr->message_id = "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_0001";
    mr->show_typing = 1;
    c->content_case = CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_MARK_READ;
    c->mark_read = mr;
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "messenger", "outbound_messages", &c->base, &res, &err), 0);
    assert_int_equal(cx_mock_provider_count(fx->mock), 2);
    assert_request(fx, 0, "POST", "/v21.0/" PAGE "/messages",
                   "{\"recipient\":{\"id\":\"" PSID "\"},\"sender_action\":\"mark_seen\"}");
    assert_request(fx, 1, "POST", "/v21.0/" PAGE "/messages",
                   "{\"recipient\":{\"id\":\"" PSID "\"},\"sender_action\":\"typing_on\"}");
    const cx_messaging_send_message_result_t *r = as_result(res);
    assert_int_equal(r->status,
                     CX__MESSAGING__V1__SEND_MESSAGE_STATUS__SEND_MESSAGE_STATUS_ACCEPTED);
    assert_string_equal(r->provider_message_id, "");
}

static void test_messenger_refuses_contents_without_send_api_form(void **state)
{
    fx_t *fx = *state;
    cx_messaging_send_message_command_t *c = command(fx, "messenger", PAGE, PSID, "x");
    cx_messaging_reaction_content_t *rc = cx_arena_alloc(&fx->arena, sizeof *rc);
    assert_non_null(rc);
    cx_messaging_reaction_content_init(rc);
    rc->message_id = "m_1";
    rc->emoji = "\xe2\x9d\xa4";
    c->content_case = CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_REACTION;
    c->reaction = rc;
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "messenger", "outbound_messages", &c->base, &res, &err),
                     CX_EVALIDATION);
    cx_messaging_location_t *loc = cx_arena_alloc(&fx->arena, sizeof *loc);
    assert_non_null(loc);
    cx_messaging_location_init(loc);
    c->content_case = CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_LOCATION;
    c->location = loc;
    assert_int_equal(send_on(fx, "messenger", "outbound_messages", &c->base, &res, &err),
                     CX_EVALIDATION);
    set_text(fx, c, "tagged without a tag");
    c->messaging_type = CX__MESSAGING__V1__MESSAGING_TYPE__MESSAGING_TYPE_MESSAGE_TAG;
    assert_int_equal(send_on(fx, "messenger", "outbound_messages", &c->base, &res, &err),
                     CX_EVALIDATION);
    assert_string_equal(err.path, "tag");
    assert_int_equal(cx_mock_provider_count(fx->mock), 0);
}

static void test_messenger_graph_errors_map_to_our_codes(void **state)
{
    fx_t *fx = *state;
    cx_messaging_send_message_command_t *c = command(fx, "messenger", PAGE, PSID, "err-1");
    set_text(fx, c, "hello");
    ProtobufCMessage *res;
    cx_error_t err;
    cx_mock_push_status(fx->mock, 400,
                        "{\"error\":{\"message\":\"(#551) This person isn't available right now.\","
                        "\"type\":\"OAuthException\",\"code\":551,\"error_subcode\":1545041,"
                        "\"fbtrace_id\":\"AbCdEf123\"}}",
                        NULL);
    assert_int_equal(send_on(fx, "messenger", "outbound_messages", &c->base, &res, &err),
                     CX_EPROVIDER_REJECTED);
    const cx_messaging_send_message_result_t *r = as_result(res);
    assert_int_equal(r->status, CX__MESSAGING__V1__SEND_MESSAGE_STATUS__SEND_MESSAGE_STATUS_FAILED);
    assert_non_null(r->error);
    assert_string_equal(r->error->code, "551");
    assert_string_equal(r->error->subcode, "1545041");
    assert_string_equal(r->error->trace_id, "AbCdEf123");
    assert_null(strstr(err.message, "available")); /* never Meta's text */

    cx_mock_push_status(fx->mock, 401,
                        "{\"error\":{\"message\":\"Error validating access token\","
                        "\"type\":\"OAuthException\",\"code\":190,\"fbtrace_id\":\"X\"}}",
                        NULL);
    assert_int_equal(send_on(fx, "messenger", "outbound_messages", &c->base, &res, &err),
                     CX_EPROVIDER_AUTH);
}

static void test_messenger_2xx_without_message_id_is_in_doubt(void **state)
{
    fx_t *fx = *state;
    cx_mock_push_status(fx->mock, 200, "{\"recipient_id\":\"" PSID "\"}", NULL);
    cx_messaging_send_message_command_t *c = command(fx, "messenger", PAGE, PSID, "doubt-1");
    set_text(fx, c, "hello");
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "messenger", "outbound_messages", &c->base, &res, &err),
                     CX_EIN_DOUBT);
    assert_int_equal(as_result(res)->status,
                     CX__MESSAGING__V1__SEND_MESSAGE_STATUS__SEND_MESSAGE_STATUS_IN_DOUBT);
}

static void test_messenger_without_token_is_config_error(void **state)
{
    fx_t *fx = *state;
    cx_messaging_send_message_command_t *c = command(fx, "messenger", "999999999", PSID, "t-1");
    set_text(fx, c, "hello");
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "messenger", "outbound_messages", &c->base, &res, &err),
                     CX_ECONFIG);
    assert_int_equal(cx_mock_provider_count(fx->mock), 0);
    assert_null(strstr(err.message, fx->token[0]));
}

static void test_messenger_lead_details_from_graph(void **state)
{
    fx_t *fx = *state;
    cx_mock_push_status(
        fx->mock, 200,
        "{\"created_time\":\"2024-11-29T09:14:50+0000\",\"id\":\"1237894561235412\","
        "\"ad_id\":\"23851090425980456\",\"form_id\":\"1098723645563478\","
        "\"field_data\":[{\"name\":\"full_name\",\"values\":[\"Jane Doe\"]},"
        "{\"name\":\"email\",\"values\":[\"jane@example.com\"]},"
        "{\"name\":\"favorite_color\",\"values\":[\"red\",\"green\"]}]}",
        NULL);
    cx_messaging_lead_t *lead = cx_arena_alloc(&fx->arena, sizeof *lead);
    Cx__Common__V1__ChannelRef *ch = cx_arena_alloc(&fx->arena, sizeof *ch);
    assert_non_null(lead);
    assert_non_null(ch);
    cx_messaging_lead_init(lead);
    cx__common__v1__channel_ref__init(ch);
    ch->channel = "messenger";
    ch->account_id = PAGE;
    lead->channel = ch;
    lead->leadgen_id = "1237894561235412";
    lead->page_id = PAGE;
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "messenger", "leads", &lead->base, &res, &err), 0);
    assert_request(fx, 0, "GET", "/v21.0/1237894561235412", NULL);
    /* (the mock does not record query strings: `fields=` is not asserted here) */
    assert_non_null(res);
    assert_ptr_equal(res->descriptor, cx_messaging_lead_meta.desc);
    const cx_messaging_lead_t *l = (const void *)res;
    assert_string_equal(l->leadgen_id, "1237894561235412");
    assert_string_equal(l->form_id, "1098723645563478");
    assert_string_equal(l->ad_id, "23851090425980456");
    assert_non_null(l->created_at);
    assert_int_equal(l->created_at->seconds, 1732871690);
    assert_int_equal(l->n_field_data, 3);
    assert_string_equal(l->field_data[0]->name, "full_name");
    assert_string_equal(l->field_data[0]->values[0], "Jane Doe");
    assert_int_equal(l->field_data[2]->n_values, 2);
    assert_string_equal(l->field_data[2]->values[1], "green");
    cx_violation_t vb[4];
    cx_violations_t v = {vb, 4, 0};
    assert_int_equal(cx_validate(&cx_messaging_lead_meta, res, &v), 0);
}

/* ---- Instagram ------------------------------------------------------------------------------- */

static void test_instagram_text_has_no_metadata(void **state)
{
    fx_t *fx = *state;
    cx_mock_push_status(fx->mock, 200,
                        "{\"recipient_id\":\"" IGSID "\",\"message_id\":\"aWdfZAG1\"}", NULL);
    cx_messaging_send_message_command_t *c = command(fx, "instagram", IG, IGSID, "ig-1");
    set_text(fx, c, "It is! Want me to hold one for you?");
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "instagram", "outbound_messages", &c->base, &res, &err), 0);
    assert_request(fx, 0, "POST", "/v21.0/" IG "/messages",
                   "{\"recipient\":{\"id\":\"" IGSID "\"},"
                   "\"message\":{\"text\":\"It is! Want me to hold one for you?\"}}");
    assert_string_equal(as_result(res)->provider_message_id, "aWdfZAG1");
}

static void test_instagram_human_agent_tag(void **state)
{
    fx_t *fx = *state;
    cx_mock_push_status(fx->mock, 200, "{\"recipient_id\":\"" IGSID "\",\"message_id\":\"aWdf2\"}",
                        NULL);
    cx_messaging_send_message_command_t *c = command(fx, "instagram", IG, IGSID, "ig-2");
    set_text(fx, c, "Following up on your return");
    c->messaging_type = CX__MESSAGING__V1__MESSAGING_TYPE__MESSAGING_TYPE_MESSAGE_TAG;
    c->tag = "HUMAN_AGENT";
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "instagram", "outbound_messages", &c->base, &res, &err), 0);
    assert_request(
        fx, 0, "POST", "/v21.0/" IG "/messages",
        "{\"recipient\":{\"id\":\"" IGSID "\"},\"messaging_type\":\"MESSAGE_TAG\","
        "\"tag\":\"HUMAN_AGENT\",\"message\":{\"text\":\"Following up on your return\"}}");
}

static void test_instagram_attachment(void **state)
{
    fx_t *fx = *state;
    cx_mock_push_status(fx->mock, 200, "{\"recipient_id\":\"" IGSID "\",\"message_id\":\"aWdf3\"}",
                        NULL);
    cx_messaging_send_message_command_t *c = command(fx, "instagram", IG, IGSID, "ig-3");
    c->content_case = CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_MEDIA;
    c->media = attachment(fx, CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_IMAGE,
                          "https://cdn.example.com/lookbook.jpg", NULL);
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "instagram", "outbound_messages", &c->base, &res, &err), 0);
    assert_request(
        fx, 0, "POST", "/v21.0/" IG "/messages",
        "{\"recipient\":{\"id\":\"" IGSID "\"},\"message\":{\"attachment\":"
        "{\"type\":\"image\",\"payload\":{\"url\":\"https://cdn.example.com/lookbook.jpg\"}}}}");
}

static void test_instagram_typing_and_seen(void **state)
{
    fx_t *fx = *state;
    cx_mock_push_status(fx->mock, 200, "{\"recipient_id\":\"" IGSID "\"}", NULL);
    cx_messaging_send_message_command_t *c = command(fx, "instagram", IG, IGSID, "ig-4");
    cx_messaging_mark_read_t *mr = cx_arena_alloc(&fx->arena, sizeof *mr);
    assert_non_null(mr);
    cx_messaging_mark_read_init(mr);
    mr->message_id = "aWdfZAG1faXRlbToxOklHTWVzc2FnZA";
    c->content_case = CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_MARK_READ;
    c->mark_read = mr;
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "instagram", "outbound_messages", &c->base, &res, &err), 0);
    assert_int_equal(cx_mock_provider_count(fx->mock), 1);
    assert_request(fx, 0, "POST", "/v21.0/" IG "/messages",
                   "{\"recipient\":{\"id\":\"" IGSID "\"},\"sender_action\":\"mark_seen\"}");
}

static void test_instagram_react_and_unreact(void **state)
{
    fx_t *fx = *state;
    cx_mock_push_status(fx->mock, 200, "{\"recipient_id\":\"" IGSID "\"}", NULL);
    cx_mock_push_status(fx->mock, 200, "{\"recipient_id\":\"" IGSID "\"}", NULL);
    cx_messaging_send_message_command_t *c = command(fx, "instagram", IG, IGSID, "ig-5");
    cx_messaging_reaction_content_t *rc = cx_arena_alloc(&fx->arena, sizeof *rc);
    assert_non_null(rc);
    cx_messaging_reaction_content_init(rc);
    rc->message_id = "aWdfZAG1faXRlbToxOklHTWVzc2FnZA";
    rc->emoji = "\xe2\x9d\xa4\xef\xb8\x8f";
    c->content_case = CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_REACTION;
    c->reaction = rc;
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "instagram", "outbound_messages", &c->base, &res, &err), 0);
    rc->emoji = "";
    assert_int_equal(send_on(fx, "instagram", "outbound_messages", &c->base, &res, &err), 0);
    assert_request(
        fx, 0, "POST", "/v21.0/" IG "/messages",
        "{\"recipient\":{\"id\":\"" IGSID "\"},\"sender_action\":\"react\","
        "\"payload\":{\"message_id\":\"aWdfZAG1faXRlbToxOklHTWVzc2FnZA\",\"reaction\":\"love\"}}");
    assert_request(fx, 1, "POST", "/v21.0/" IG "/messages",
                   "{\"recipient\":{\"id\":\"" IGSID "\"},\"sender_action\":\"unreact\","
                   "\"payload\":{\"message_id\":\"aWdfZAG1faXRlbToxOklHTWVzc2FnZA\"}}");
}

static void test_instagram_private_comment_reply(void **state)
{
    fx_t *fx = *state;
    cx_mock_push_status(fx->mock, 200, "{\"recipient_id\":\"" IGSID "\",\"message_id\":\"aWdf6\"}",
                        NULL);
    cx_messaging_send_message_command_t *c = command(fx, "instagram", IG, IGSID, "cr-1");
    set_text(fx, c, "Sent you the sizes in DM!");
    c->reply_to = "17865799348089039";
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "instagram", "comment_replies", &c->base, &res, &err), 0);
    assert_request(fx, 0, "POST", "/v21.0/" IG "/messages",
                   "{\"recipient\":{\"comment_id\":\"17865799348089039\"},"
                   "\"message\":{\"text\":\"Sent you the sizes in DM!\"}}");
    const cx_messaging_send_message_result_t *r = as_result(res);
    assert_string_equal(r->provider_message_id, "aWdf6");
    assert_string_equal(r->recipient_id, IGSID);
}

static void test_instagram_public_comment_reply(void **state)
{
    fx_t *fx = *state;
    cx_mock_push_status(fx->mock, 200, "{\"id\":\"17865799348089099\"}", NULL);
    cx_messaging_send_message_command_t *c =
        command(fx, "instagram", IG, "6934813706572306", "cr-2");
    set_text(fx, c, "Yes, it comes in green!");
    c->reply_to = "17865799348089039";
    Cx__Common__V1__ConversationRef *conv = cx_arena_alloc(&fx->arena, sizeof *conv);
    assert_non_null(conv);
    cx__common__v1__conversation_ref__init(conv);
    conv->id = "17887498072083520";
    conv->kind = CX__COMMON__V1__CONVERSATION_KIND__CONVERSATION_KIND_COMMENTS;
    c->conversation = conv;
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "instagram", "comment_replies", &c->base, &res, &err), 0);
    assert_request(fx, 0, "POST", "/v21.0/17865799348089039/replies",
                   "{\"message\":\"Yes, it comes in green!\"}");
    assert_string_equal(as_result(res)->provider_message_id, "17865799348089099");
}

static void test_instagram_comment_already_replied_is_permanent(void **state)
{
    fx_t *fx = *state;
    cx_mock_push_status(fx->mock, 400,
                        "{\"error\":{\"message\":\"(#10900) Activity already replied to\","
                        "\"type\":\"OAuthException\",\"code\":10900,\"fbtrace_id\":\"Q\"}}",
                        NULL);
    cx_messaging_send_message_command_t *c = command(fx, "instagram", IG, IGSID, "cr-3");
    set_text(fx, c, "again");
    c->reply_to = "17865799348089039";
    ProtobufCMessage *res;
    cx_error_t err;
    int rc = send_on(fx, "instagram", "comment_replies", &c->base, &res, &err);
    assert_int_equal(rc, CX_EPROVIDER_REJECTED);
    assert_string_equal(as_result(res)->error->code, "10900");
}

static void test_unknown_capability_not_implemented(void **state)
{
    fx_t *fx = *state;
    cx_messaging_send_message_command_t *c = command(fx, "instagram", IG, IGSID, "x");
    set_text(fx, c, "x");
    ProtobufCMessage *res;
    cx_error_t err;
    assert_int_equal(send_on(fx, "instagram", "leads", &c->base, &res, &err), CX_ENOT_IMPLEMENTED);
    assert_int_equal(send_on(fx, "messenger", "comment_replies", &c->base, &res, &err),
                     CX_ENOT_IMPLEMENTED);
}

/* ---- the outbound fixtures ------------------------------------------------------------------ */

/* Every fixtures/<connector>/outbound_* case: the provider's answers from command.json
 * ("answers", in order), the requests of expect.json (method, path, headers, exact body, and
 * how many), and the result. */
static int walk_outbound(fx_t *fx, const char *connector)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/%s", fx->fixtures, connector);
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    assert_true(n > 0);
    int cases = 0;
    for (int i = 0; i < n; i++) {
        const char *name = list[i]->d_name;
        if (strncmp(name, "outbound_", 9) != 0) {
            free(list[i]);
            continue;
        }
        char p[2048];
        json_error_t jerr;
        snprintf(p, sizeof p, "%s/%s/command.json", dir, name);
        json_t *cj = json_load_file(p, 0, &jerr);
        snprintf(p, sizeof p, "%s/%s/expect.json", dir, name);
        json_t *ej = json_load_file(p, 0, &jerr);
        assert_non_null(cj);
        assert_non_null(ej);
        cx_mock_provider_reset(fx->mock);
        size_t k;
        json_t *ans;
        json_array_foreach(json_object_get(cj, "answers"), k, ans)
        {
            char *body = json_dumps(json_object_get(ans, "body"), JSON_COMPACT);
            cx_mock_push_status(fx->mock, (int)json_integer_value(json_object_get(ans, "status")),
                                body, NULL);
            free(body);
        }
        char *text = json_dumps(json_object_get(cj, "command"), JSON_COMPACT);
        cx_messaging_send_message_command_t *cmd = NULL;
        cx_error_t err;
        cx_error_clear(&err);
        if (cx_messaging_send_message_command_from_json(text, strlen(text), &fx->arena, &cmd,
                                                        &err) != 0)
            fail_msg("%s: command does not decode: %s at %s", name, err.message, err.path);
        free(text);
        assert_int_equal(cx_messaging_send_message_command_validate(cmd, NULL), 0);
        ProtobufCMessage *res = NULL;
        int rc = send_on(fx, connector, json_string_value(json_object_get(cj, "capability")),
                         &cmd->base, &res, &err);
        if (rc != 0)
            fail_msg("%s/%s: send returned %s: %s", connector, name, cx_err_name(rc), err.message);
        json_t *reqs = json_object_get(ej, "requests");
        if (cx_mock_provider_count(fx->mock) != json_array_size(reqs))
            fail_msg("%s/%s: %zu provider calls, expect.json lists %zu", connector, name,
                     cx_mock_provider_count(fx->mock), json_array_size(reqs));
        json_t *want;
        json_array_foreach(reqs, k, want)
        {
            const cx_mock_request_t *rq = cx_mock_provider_request(fx->mock, k);
            assert_string_equal(rq->method, json_string_value(json_object_get(want, "method")));
            assert_string_equal(rq->path, json_string_value(json_object_get(want, "path")));
            const char *hk;
            json_t *hv;
            json_object_foreach(json_object_get(want, "headers"), hk, hv)
            {
                const char *got = cx_mock_request_header(rq, hk);
                if (got == NULL || strcmp(got, json_string_value(hv)) != 0)
                    fail_msg("%s/%s: header %s is %s", connector, name, hk, got ? got : "(absent)");
            }
            json_t *body = json_loadb(rq->body, rq->body_len, 0, &jerr);
            assert_non_null(body);
            if (!json_equal(body, json_object_get(want, "body"))) {
                char *w = json_dumps(json_object_get(want, "body"), JSON_COMPACT | JSON_SORT_KEYS);
                char *g = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
                fail_msg("%s/%s: body differs\n want %s\n got  %s", connector, name, w, g);
            }
            json_decref(body);
        }
        const cx_messaging_send_message_result_t *r = as_result(res);
        json_t *wr = json_object_get(ej, "result");
        assert_int_equal(r->status,
                         CX__MESSAGING__V1__SEND_MESSAGE_STATUS__SEND_MESSAGE_STATUS_ACCEPTED);
        assert_string_equal(r->client_message_id,
                            json_string_value(json_object_get(wr, "clientMessageId")));
        const char *pmid = json_string_value(json_object_get(wr, "providerMessageId"));
        assert_string_equal(r->provider_message_id, pmid ? pmid : "");
        const char *rid = json_string_value(json_object_get(wr, "recipientId"));
        assert_string_equal(r->recipient_id, rid ? rid : "");
        assert_int_equal(cx_messaging_send_message_result_validate(r, NULL), 0);
        json_decref(cj);
        json_decref(ej);
        free(list[i]);
        cases++;
    }
    free(list);
    return cases;
}

static void test_messenger_outbound_fixtures(void **state)
{
    assert_true(walk_outbound(*state, "messenger") >= 8);
}

static void test_instagram_outbound_fixtures(void **state)
{
    assert_true(walk_outbound(*state, "instagram") >= 10);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_messenger_text_carries_intent_key_in_metadata),
        T(test_messenger_message_tag_and_reply_to),
        T(test_messenger_update_messaging_type),
        T(test_messenger_attachments_by_url_and_by_id),
        T(test_messenger_quick_replies),
        T(test_messenger_mark_read_with_typing_is_two_sender_actions),
        T(test_messenger_refuses_contents_without_send_api_form),
        T(test_messenger_graph_errors_map_to_our_codes),
        T(test_messenger_2xx_without_message_id_is_in_doubt),
        T(test_messenger_without_token_is_config_error),
        T(test_messenger_lead_details_from_graph),
        T(test_instagram_text_has_no_metadata),
        T(test_instagram_human_agent_tag),
        T(test_instagram_attachment),
        T(test_instagram_typing_and_seen),
        T(test_instagram_react_and_unreact),
        T(test_instagram_private_comment_reply),
        T(test_instagram_public_comment_reply),
        T(test_instagram_comment_already_replied_is_permanent),
        T(test_unknown_capability_not_implemented),
        T(test_messenger_outbound_fixtures),
        T(test_instagram_outbound_fixtures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
