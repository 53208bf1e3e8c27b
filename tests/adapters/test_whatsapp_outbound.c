/* WhatsApp outbound against the mock provider (tests/harness/mock_provider.h): every message
 * kind of fixtures/whatsapp/outbound_* reaches the Messages API exactly as its expect.json says
 * (method, path with the Graph version and the phone number id, Bearer token, body), Graph
 * errors map to our codes, and cx_outbound_send sends a command once with its intent key in
 * biz_opaque_callback_data.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>
#include <jansson.h>

#include "cx/messaging/v1/messaging.cx.h"
#include "cx/outbound.h"
#include "cx/runtime.h"
#include "mock_provider.h"
#include "whatsapp/whatsapp.h"

#define PHONE_ID "106540352242922"

typedef struct fx_s {
    cx_mock_provider_t *mock;
    cx_runtime_t *rt;
    char dir[64];
    char fixtures[1024];
    char token[256];
    char version[32];
} fx_t;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void read_line(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, (int)cap, f));
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    const char *src = getenv("CX_SOURCE_DIR");
    snprintf(fx->fixtures, sizeof fx->fixtures, "%s/fixtures/whatsapp", src ? src : ".");
    char p[2048];
    snprintf(p, sizeof p, "%s/secrets/whatsapp/accounts/" PHONE_ID "/access_token", fx->fixtures);
    read_line(p, fx->token, sizeof fx->token);
    snprintf(p, sizeof p, "%s/secrets/whatsapp/graph_api_version", fx->fixtures);
    read_line(p, fx->version, sizeof fx->version);
    if (cx_mock_provider_start(&fx->mock) != 0)
        return -1;
    /* The fixture secrets, plus the mock's URL as the Graph base. */
    snprintf(fx->dir, sizeof fx->dir, "/tmp/cx-wa-out-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(p, sizeof p, "%s/whatsapp", fx->dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/whatsapp/accounts", fx->dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/whatsapp/accounts/" PHONE_ID, fx->dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/whatsapp/accounts/" PHONE_ID "/access_token", fx->dir);
    write_file(p, fx->token);
    snprintf(p, sizeof p, "%s/whatsapp/graph_api_version", fx->dir);
    write_file(p, fx->version);
    snprintf(p, sizeof p, "%s/whatsapp/graph_api_base_url", fx->dir);
    write_file(p, cx_mock_provider_url(fx->mock));
    cx_runtime_config_t cfg = {.environment = CX_ENV_DEVELOPMENT, .secrets_dir = fx->dir};
    cx_error_t err;
    if (cx_runtime_create(&cfg, &fx->rt, &err) != 0 ||
        cx_runtime_add_connector(fx->rt, cx_whatsapp_connector(), &err) != 0)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    cx_runtime_destroy(fx->rt);
    cx_mock_provider_stop(fx->mock);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fx->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", fx->dir);
    free(fx);
    return 0;
}

/* Decodes the proto3 JSON command into arena. */
static cx_messaging_send_message_command_t *command(cx_arena_t *a, const json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    assert_non_null(text);
    cx_messaging_send_message_command_t *cmd = NULL;
    cx_error_t err;
    cx_error_clear(&err);
    int rc = cx_messaging_send_message_command_from_json(text, strlen(text), a, &cmd, &err);
    if (rc != 0)
        fail_msg("command does not decode: %s at %s", err.message, err.path);
    free(text);
    return cmd;
}

static int send(fx_t *fx, cx_arena_t *a, const cx_messaging_send_message_command_t *cmd,
                cx_messaging_send_message_result_t **res, cx_error_t *err)
{
    const cx_connector_t *c = cx_whatsapp_connector();
    cx_ctx_t ctx = {fx->rt, "whatsapp", 1749416400, a};
    ProtobufCMessage *r = NULL;
    cx_error_clear(err);
    int rc = c->send(c, &ctx, "outbound_messages", &cmd->base, &r, err);
    *res = (cx_messaging_send_message_result_t *)r;
    return rc;
}

static void test_every_kind_reaches_the_messages_api_as_documented(void **state)
{
    fx_t *fx = *state;
    struct dirent **list;
    int n = scandir(fx->fixtures, &list, NULL, alphasort);
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
        snprintf(p, sizeof p, "%s/%s/command.json", fx->fixtures, name);
        json_t *cj = json_load_file(p, 0, &jerr);
        snprintf(p, sizeof p, "%s/%s/expect.json", fx->fixtures, name);
        json_t *ej = json_load_file(p, 0, &jerr);
        assert_non_null(cj);
        assert_non_null(ej);
        cx_mock_provider_reset(fx->mock);
        int mark_read = strcmp(name, "outbound_mark_read") == 0;
        if (mark_read)
            cx_mock_push_status(fx->mock, 200, "{\"success\":true}", NULL);
        cx_arena_t a;
        cx_arena_init(&a, NULL, 1 << 20);
        cx_messaging_send_message_command_t *cmd = command(&a, json_object_get(cj, "command"));
        cx_messaging_send_message_result_t *res;
        cx_error_t err;
        int rc = send(fx, &a, cmd, &res, &err);
        if (rc != 0)
            fail_msg("%s: send returned %s: %s", name, cx_err_name(rc), err.message);
        assert_int_equal(cx_mock_provider_count(fx->mock), 1);
        const cx_mock_request_t *rq = cx_mock_provider_request(fx->mock, 0);
        json_t *want = json_object_get(ej, "request");
        assert_string_equal(rq->method, json_string_value(json_object_get(want, "method")));
        assert_string_equal(rq->path, json_string_value(json_object_get(want, "path")));
        const char *hk;
        json_t *hv;
        json_object_foreach(json_object_get(want, "headers"), hk, hv)
        {
            const char *got = cx_mock_request_header(rq, hk);
            if (got == NULL || strcmp(got, json_string_value(hv)) != 0)
                fail_msg("%s: header %s is %s", name, hk, got ? got : "(absent)");
        }
        json_t *body = json_loads(rq->body, 0, &jerr);
        assert_non_null(body);
        if (!json_equal(body, json_object_get(want, "body"))) {
            char *w = json_dumps(json_object_get(want, "body"), JSON_COMPACT | JSON_SORT_KEYS);
            char *g = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
            fail_msg("%s: body differs\n want %s\n got  %s", name, w, g);
        }
        assert_int_equal(res->status,
                         CX__MESSAGING__V1__SEND_MESSAGE_STATUS__SEND_MESSAGE_STATUS_ACCEPTED);
        assert_string_equal(
            res->client_message_id,
            json_string_value(json_object_get(json_object_get(ej, "result"), "clientMessageId")));
        if (mark_read)
            assert_string_equal(res->provider_message_id, cmd->mark_read->message_id);
        else
            assert_string_equal(res->provider_message_id, "wamid.mock-1");
        assert_int_equal(cx_messaging_send_message_result_validate(res, NULL), 0);
        json_decref(body);
        json_decref(cj);
        json_decref(ej);
        cx_arena_release(&a);
        free(list[i]);
        cases++;
    }
    free(list);
    assert_true(cases >= 15);
}

static cx_messaging_send_message_command_t *text_command(cx_arena_t *a, const char *client_id)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"channel\":{\"channel\":\"whatsapp\",\"accountId\":\"" PHONE_ID "\"},"
             "\"tenantId\":\"acme\",\"clientMessageId\":\"%s\",\"to\":\"16505551234\","
             "\"text\":{\"body\":\"hello\"}}",
             client_id);
    json_error_t jerr;
    json_t *j = json_loads(json, 0, &jerr);
    cx_messaging_send_message_command_t *cmd = command(a, j);
    json_decref(j);
    return cmd;
}

static void expect_error(fx_t *fx, int status, const char *body, int want_rc,
                         const char *want_cx_code)
{
    cx_mock_provider_reset(fx->mock);
    cx_mock_push_status(fx->mock, status, body, NULL);
    cx_arena_t a;
    cx_arena_init(&a, NULL, 1 << 20);
    cx_messaging_send_message_result_t *res;
    cx_error_t err;
    int rc = send(fx, &a, text_command(&a, "err-1"), &res, &err);
    if (rc != want_rc)
        fail_msg("HTTP %d: got %s, want %s (%s)", status, cx_err_name(rc), cx_err_name(want_rc),
                 err.message);
    assert_non_null(res);
    if (want_cx_code) {
        assert_non_null(res->error);
        assert_string_equal(res->error->cx_code, want_cx_code);
        assert_int_equal(res->status,
                         CX__MESSAGING__V1__SEND_MESSAGE_STATUS__SEND_MESSAGE_STATUS_FAILED);
        /* Meta's message can quote content: it never reaches our error text. */
        assert_null(strstr(err.message, "Re-engagement"));
    }
    cx_arena_release(&a);
}

#define GRAPH_ERROR(code, extra)                                                                   \
    "{\"error\":{\"message\":\"(#" #code ") Re-engagement message\",\"type\":\"OAuthException\","  \
    "\"code\":" #code "," extra "\"error_data\":{\"messaging_product\":\"whatsapp\","              \
    "\"details\":\"details\"},\"fbtrace_id\":\"Az8or2yhqkZfEZ-_4Qn_Bam\"}}"

static void test_graph_errors_map_to_our_codes(void **state)
{
    fx_t *fx = *state;
    expect_error(fx, 400, GRAPH_ERROR(131047, ""), CX_EPROVIDER_REJECTED, "REENGAGEMENT_WINDOW");
    expect_error(fx, 400, GRAPH_ERROR(131026, ""), CX_EPROVIDER_REJECTED, "UNDELIVERABLE");
    expect_error(fx, 400, GRAPH_ERROR(130429, ""), CX_ERATE_LIMITED, "RATE_LIMITED");
    expect_error(fx, 400, GRAPH_ERROR(131056, ""), CX_ERATE_LIMITED, "PAIR_RATE_LIMITED");
    expect_error(fx, 401, GRAPH_ERROR(190, "\"error_subcode\":463,"), CX_EPROVIDER_AUTH,
                 "TOKEN_INVALID");
    expect_error(fx, 403, GRAPH_ERROR(10, ""), CX_EPROVIDER_AUTH, "PERMISSION_DENIED");
    expect_error(fx, 403, GRAPH_ERROR(200, ""), CX_EPROVIDER_AUTH, "PERMISSION_DENIED");
    /* A 2xx without a message id: it may have been accepted. */
    expect_error(fx, 200, "{}", CX_EIN_DOUBT, NULL);
}

static void test_error_keeps_code_subcode_and_trace_id(void **state)
{
    fx_t *fx = *state;
    cx_mock_provider_reset(fx->mock);
    cx_mock_push_status(fx->mock, 401, GRAPH_ERROR(190, "\"error_subcode\":463,"), NULL);
    cx_arena_t a;
    cx_arena_init(&a, NULL, 1 << 20);
    cx_messaging_send_message_result_t *res;
    cx_error_t err;
    assert_int_equal(send(fx, &a, text_command(&a, "err-2"), &res, &err), CX_EPROVIDER_AUTH);
    assert_string_equal(res->error->code, "190");
    assert_string_equal(res->error->subcode, "463");
    assert_string_equal(res->error->trace_id, "Az8or2yhqkZfEZ-_4Qn_Bam");
    assert_non_null(strstr(err.message, "Az8or2yhqkZfEZ-_4Qn_Bam"));
    cx_arena_release(&a);
}

static void test_no_access_token_sends_nothing(void **state)
{
    fx_t *fx = *state;
    cx_mock_provider_reset(fx->mock);
    cx_arena_t a;
    cx_arena_init(&a, NULL, 1 << 20);
    cx_messaging_send_message_command_t *cmd = text_command(&a, "no-token");
    cmd->channel->account_id = "999999999999";
    cx_messaging_send_message_result_t *res;
    cx_error_t err;
    assert_int_equal(send(fx, &a, cmd, &res, &err), CX_ECONFIG);
    assert_int_equal(cx_mock_provider_count(fx->mock), 0);
    cmd->channel->account_id = "../../me";
    assert_int_equal(send(fx, &a, cmd, &res, &err), CX_EVALIDATION);
    assert_int_equal(cx_mock_provider_count(fx->mock), 0);
    cx_arena_release(&a);
}

static void test_outbound_send_once_with_the_intent_key(void **state)
{
    fx_t *fx = *state;
    cx_mock_provider_reset(fx->mock);
    cx_intent_store_t *is;
    cx_outbound_t *ob;
    cx_error_t err;
    assert_int_equal(cx_intent_store_embedded("development", 0, &is, &err), 0);
    cx_outbound_config_t oc = {.intents = is};
    assert_int_equal(cx_outbound_new(&oc, &ob, &err), 0);
    cx_arena_t a;
    cx_arena_init(&a, NULL, 1 << 20);
    cx_messaging_send_message_command_t *m = text_command(&a, "once-1");
    cx_outbound_command_t cmd = {.meta = &cx_messaging_send_message_command_meta,
                                 .msg = &m->base,
                                 .connector = "whatsapp",
                                 .account_id = PHONE_ID,
                                 .tenant_id = "acme",
                                 .result_meta = &cx_messaging_send_message_result_meta,
                                 .send = cx_whatsapp_send_fn,
                                 .send_ud = fx->rt};
    cx_outbound_result_t *res = calloc(1, sizeof *res);
    for (int i = 0; i < 2; i++) {
        int rc = cx_outbound_send(ob, &cmd, &a, res, &err);
        if (rc != 0)
            fail_msg("send %d: %s: %s", i, cx_err_name(rc), err.message);
        assert_string_equal(res->intent.provider_message_id, "wamid.mock-1");
        assert_int_equal(res->replayed, i == 1);
    }
    assert_int_equal(cx_mock_provider_count(fx->mock), 1);
    const cx_mock_request_t *rq = cx_mock_provider_request(fx->mock, 0);
    json_error_t jerr;
    json_t *body = json_loads(rq->body, 0, &jerr);
    assert_string_equal(json_string_value(json_object_get(body, "biz_opaque_callback_data")),
                        res->intent_key);
    assert_string_equal(res->intent_key, "whatsapp:outbound:acme:once-1");
    json_decref(body);
    free(res);
    cx_arena_release(&a);
    cx_outbound_free(ob);
    cx_intent_store_destroy(is);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_reaches_the_messages_api_as_documented),
        cmocka_unit_test(test_graph_errors_map_to_our_codes),
        cmocka_unit_test(test_error_keeps_code_subcode_and_trace_id),
        cmocka_unit_test(test_no_access_token_sends_nothing),
        cmocka_unit_test(test_outbound_send_once_with_the_intent_key),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
