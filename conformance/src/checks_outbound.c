/* outbound.*: the connector's send, driven through cx_outbound_send against a scriptable mock
 * provider (a real HTTP server on loopback), once per outbound capability it serves.
 *
 * A command fixture (command.json) holds the canonical command and, optionally, the
 * provider's genuine answers to replay:
 *
 *   {"capability": "outbound_messages", "type": "cx.messaging.v1.SendMessageCommand",
 *    "result_type": "cx.messaging.v1.SendMessageResult", "account_id": "acc-1",
 *    "command": {...proto3 JSON...},
 *    "success": {"status": 200, "body": {...}}, "rejection": {"status": 400, "body": {...}}}
 *
 * The connector is pointed at the mock through a settings file beside its secrets,
 * <secrets dir>/<connector>/<base_url_setting> (default `api_base_url`; conformance.json
 * "outbound": {"base_url_setting": "graph_api_base_url"} for the Meta adapters). Its send
 * must make its HTTP calls through cx_http_send, whose client must allow loopback http.
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cx/outbound.h"
#include "internal.h"
#include "mock_provider.h"

typedef struct {
    const cx_conf_suite_t *s;
    const cx_conf_case_t *c;
    cx_mock_provider_t *mock;
    char secrets[4096];
    cx_conf_env_t env;
    int env_open;
    cx_intent_store_t *intents;
    cx_outbound_t *ob;
    cx_arena_t arena;
    const cx_msg_meta_t *meta;
    const cx_msg_meta_t *result_meta;
    ProtobufCMessage *msg;
    char account[256];
    char success[8192];
    int success_status;
    char rejection[8192];
    int rejection_status;
} ob_t;

static void ob_close(ob_t *o)
{
    cx_outbound_free(o->ob);
    cx_intent_store_destroy(o->intents);
    if (o->env_open)
        cx_conf__env_close(&o->env);
    cx_arena_release(&o->arena);
    if (o->mock)
        cx_mock_provider_stop(o->mock);
    if (o->secrets[0])
        cx_conf__rmtree(o->secrets);
    memset(o, 0, sizeof *o);
}

static const char *setting_name(const cx_conf_suite_t *s, const cx_conf_case_t *c)
{
    const char *v = json_string_value(json_object_get(c->command, "base_url_setting"));
    if (v == NULL && s->config)
        v = json_string_value(
            json_object_get(json_object_get(s->config, "outbound"), "base_url_setting"));
    return v ? v : "api_base_url";
}

/* A scripted answer from command.json ("success" / "rejection"): status and body text. */
static void answer(const cx_conf_case_t *c, const char *key, int dflt_status, const char *dflt,
                   int *status, char *body, size_t cap)
{
    json_t *a = json_object_get(c->command, key);
    json_t *st = json_object_get(a, "status");
    json_t *b = json_object_get(a, "body");
    *status = json_is_integer(st) ? (int)json_integer_value(st) : dflt_status;
    if (json_is_string(b)) {
        cx_conf__fmt(body, cap, "%s", json_string_value(b));
    } else if (b) {
        char *t = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
        cx_conf__fmt(body, cap, "%s", t ? t : "");
        free(t);
    } else {
        cx_conf__fmt(body, cap, "%s", dflt ? dflt : "");
    }
}

static int ob_open(ob_t *o, const cx_conf_suite_t *s, const cx_conf_case_t *c, cx_conf_result_t *r)
{
    memset(o, 0, sizeof *o);
    o->s = s;
    o->c = c;
    cx_arena_init(&o->arena, NULL, 16u << 20);
    if (cx_mock_provider_start(&o->mock) != 0) {
        o->mock = NULL;
        cx_conf__fail(r, "cannot start the mock provider on loopback");
        goto fail;
    }
    if (cx_conf__secrets_variant(s, c, 2, o->secrets, sizeof o->secrets) != 0) {
        o->secrets[0] = '\0';
        cx_conf__fail(r, "cannot make a temporary secrets directory");
        goto fail;
    }
    char p[8192];
    snprintf(p, sizeof p, "%s/%s", o->secrets, s->c->manifest->id);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/%s/%s", o->secrets, s->c->manifest->id, setting_name(s, c));
    FILE *f = fopen(p, "w");
    if (f == NULL || fprintf(f, "%s\n", cx_mock_provider_url(o->mock)) < 0 || fclose(f) != 0) {
        cx_conf__fail(r, "cannot write %s", p);
        goto fail;
    }
    if (cx_conf__env_open(&o->env, s, c, o->secrets, r) != 0)
        goto fail;
    o->env_open = 1;
    const char *type = json_string_value(json_object_get(c->command, "type"));
    o->meta = type ? cx_schema_find(type) : NULL;
    if (o->meta == NULL || o->meta->kind != CX_KIND_COMMAND) {
        cx_conf__fail(r,
                      "case %s: command.json \"type\" must name a command message "
                      "(cx.messaging.v1.SendMessageCommand)",
                      c->name);
        goto fail;
    }
    const char *rtype = json_string_value(json_object_get(c->command, "result_type"));
    o->result_meta = rtype ? cx_schema_find(rtype) : NULL;
    char *text = json_dumps(json_object_get(c->command, "command"), JSON_COMPACT);
    cx_error_t err;
    cx_error_clear(&err);
    int rc = text ? cx_from_json(o->meta, text, strlen(text), &o->arena, NULL, &o->msg, &err)
                  : CX_ENOMEM;
    free(text);
    if (rc != 0) {
        cx_conf__fail(r, "case %s: command.json \"command\" is not a valid %s: %s %s", c->name,
                      type, err.message, err.path);
        goto fail;
    }
    const char *acc = json_string_value(json_object_get(c->command, "account_id"));
    if (acc == NULL)
        acc = json_string_value(json_object_get(
            json_object_get(json_object_get(c->command, "command"), "channel"), "accountId"));
    snprintf(o->account, sizeof o->account, "%s", acc ? acc : "");
    answer(c, "success", 200, NULL, &o->success_status, o->success, sizeof o->success);
    answer(c, "rejection", 400,
           "{\"error\":{\"message\":\"(#100) Invalid parameter\",\"type\":\"OAuthException\","
           "\"code\":100}}",
           &o->rejection_status, o->rejection, sizeof o->rejection);
    if (cx_intent_store_embedded("development", 0, &o->intents, &err) != 0) {
        cx_conf__fail(r, "cannot create an intent store: %s", err.message);
        goto fail;
    }
    cx_outbound_config_t oc = {.intents = o->intents, .logger = o->env.log};
    if (cx_outbound_new(&oc, &o->ob, &err) != 0) {
        cx_conf__fail(r, "cannot create the outbound sender: %s", err.message);
        goto fail;
    }
    return 0;
fail:
    ob_close(o);
    return -1;
}

/* The connector's send as a cx_outbound_send_fn. */
static int bridge(void *ud, const cx_outbound_command_t *cmd, const char *intent_key,
                  cx_arena_t *arena, cx_outbound_reply_t *reply, cx_error_t *err)
{
    (void)intent_key;
    ob_t *o = ud;
    const cx_connector_t *c = o->s->c;
    cx_ctx_t ctx = {o->env.rt, c->manifest->id, o->c->now, arena ? arena : &o->arena};
    ProtobufCMessage *result = NULL;
    int rc = c->send(c, &ctx, o->c->capability, cmd->msg, &result, err);
    reply->result = result;
    return rc;
}

static int ob_send(ob_t *o, cx_outbound_result_t *res, cx_error_t *err)
{
    cx_error_clear(err);
    cx_keyring_t keyring = cx_conf__keyring(o->c);
    cx_outbound_command_t cmd = {.meta = o->meta,
                                 .msg = o->msg,
                                 .connector = o->s->c->manifest->id,
                                 .account_id = o->account,
                                 .tenant_id = CX_CONF_DEFAULT_TENANT,
                                 .correlation_id = "conformance-outbound",
                                 .keyring = &keyring,
                                 .result_meta = o->result_meta,
                                 .send = bridge,
                                 .send_ud = o};
    return cx_outbound_send(o->ob, &cmd, &o->arena, res, err);
}

static void push_success(ob_t *o)
{
    if (o->success[0])
        cx_mock_push_status(o->mock, o->success_status, o->success, NULL);
}

typedef void (*scenario_fn)(ob_t *o, cx_conf_result_t *r);

/* Runs a scenario on the first command fixture of each outbound capability the connector
 * serves. */
static void each_capability(const cx_conf_suite_t *s, cx_conf_result_t *r, scenario_fn fn,
                            const char *what)
{
    if (cx_conf__n_outbound(s->c) == 0) {
        cx_conf__skip(r, CX_CONF_SKIP_NA,
                      "the connector declares no outbound capability (beta or active)");
        return;
    }
    if (s->c->send == NULL) {
        cx_conf__fail(r, "the connector serves outbound capabilities but has no send");
        return;
    }
    const cx_manifest_t *m = s->c->manifest;
    size_t ran = 0;
    for (size_t i = 0; i < m->n_capabilities; i++) {
        const cx_capability_decl_t *cap = &m->capabilities[i];
        if (!cx_conf__capability_is_outbound(cap->id) ||
            (cap->state != CX_CAP_ACTIVE && cap->state != CX_CAP_BETA &&
             cap->state != CX_CAP_DEPRECATED))
            continue;
        const cx_conf_case_t *c = NULL;
        for (size_t k = 0; k < s->n_cases && c == NULL; k++)
            if (s->cases[k].kind == CX_CONF_CASE_COMMAND &&
                strcmp(s->cases[k].capability, cap->id) == 0)
                c = &s->cases[k];
        if (c == NULL) {
            cx_conf__note(r, "no command.json fixture for %s", cap->id);
            continue;
        }
        cx_conf__progress("%s, case %s: %s", cap->id, c->name, what);
        ob_t o;
        if (ob_open(&o, s, c, r) != 0)
            return;
        ran++;
        fn(&o, r);
        ob_close(&o);
    }
    if (ran == 0)
        cx_conf__skip(r, CX_CONF_SKIP_INPUT,
                      "no command.json fixture for the outbound capabilities the connector "
                      "serves");
}

static void success(ob_t *o, cx_conf_result_t *r)
{
    push_success(o);
    cx_outbound_result_t *res = calloc(1, sizeof *res);
    if (res == NULL)
        return;
    cx_error_t err;
    int rc = ob_send(o, res, &err);
    size_t n = cx_mock_provider_count(o->mock);
    if (rc != 0)
        cx_conf__fail(r, "%s: a send the provider accepted returned %s (%s)", o->c->capability,
                      cx_err_name(rc), err.message);
    else if (res->intent.provider_message_id[0] == '\0')
        cx_conf__fail(r,
                      "%s: the provider accepted the send but no provider message id came "
                      "back (set it in the result message)",
                      o->c->capability);
    if (n != 1)
        cx_conf__fail(r, "%s: one send made %zu provider calls", o->c->capability, n);
    free(res);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void transient(ob_t *o, cx_conf_result_t *r)
{
    cx_mock_push_status(o->mock, 429, NULL, "1");
    cx_mock_push_status(o->mock, 503, NULL, NULL);
    push_success(o);
    cx_outbound_result_t *res = calloc(1, sizeof *res);
    if (res == NULL)
        return;
    cx_error_t err;
    double t0 = now_ms();
    int rc = ob_send(o, res, &err);
    double ms = now_ms() - t0;
    size_t n = cx_mock_provider_count(o->mock);
    if (n < 3)
        cx_conf__fail(r,
                      "%s: the provider answered 429 then 503; the send gave up after %zu "
                      "call%s (%s): 429 and 5xx are transient, retry them with backoff "
                      "(cx_http_send does)",
                      o->c->capability, n, n == 1 ? "" : "s", cx_err_name(rc));
    else if (rc != 0)
        cx_conf__fail(r, "%s: after 429, 503 and a success the send returned %s (%s)",
                      o->c->capability, cx_err_name(rc), err.message);
    if (n >= 2 && ms < 900)
        cx_conf__fail(r, "%s: the 429 carried Retry-After: 1 but the retry came after %.0f ms",
                      o->c->capability, ms);
    free(res);
}

static void timeout_case(ob_t *o, cx_conf_result_t *r)
{
    /* The provider reads the request, then the connection drops: the send may have happened. */
    cx_mock_push_close(o->mock, 0);
    push_success(o);
    cx_outbound_result_t *res = calloc(1, sizeof *res);
    if (res == NULL)
        return;
    cx_error_t err;
    int rc = ob_send(o, res, &err);
    size_t n = cx_mock_provider_count(o->mock);
    if (n != 1)
        cx_conf__fail(r,
                      "%s: the connection dropped after the request was sent, and the "
                      "provider received it %zu times: a request that may have arrived is "
                      "in doubt and must never be resent (return CX_EIN_DOUBT)",
                      o->c->capability, n);
    else if (rc == 0)
        cx_conf__fail(r, "%s: no answer came back, yet the send reported success",
                      o->c->capability);
    /* The caller tries the same command again: still no second call. */
    memset(res, 0, sizeof *res);
    ob_send(o, res, &err);
    size_t n2 = cx_mock_provider_count(o->mock);
    if (n == 1 && n2 != 1)
        cx_conf__fail(r,
                      "%s: sending the same command again after the lost answer made %zu "
                      "more provider call(s)",
                      o->c->capability, n2 - n);
    free(res);
}

static void permanent(ob_t *o, cx_conf_result_t *r)
{
    cx_mock_push_status(o->mock, o->rejection_status, o->rejection, NULL);
    push_success(o);
    cx_outbound_result_t *res = calloc(1, sizeof *res);
    if (res == NULL)
        return;
    cx_error_t err;
    int rc = ob_send(o, res, &err);
    size_t n = cx_mock_provider_count(o->mock);
    if (n != 1)
        cx_conf__fail(r,
                      "%s: the provider rejected the command (%d) and was called %zu times: "
                      "a permanent 4xx is not retried",
                      o->c->capability, o->rejection_status, n);
    if (rc == 0)
        cx_conf__fail(r, "%s: a rejected command (%d) was reported as sent", o->c->capability,
                      o->rejection_status);
    else if (res->state != CX_INTENT_FAILED)
        cx_conf__fail(r,
                      "%s: a %d rejection returned %s, a transient code: return "
                      "CX_EPROVIDER_REJECTED (or another permanent code) so it is not sent "
                      "again",
                      o->c->capability, o->rejection_status, cx_err_name(rc));
    free(res);
}

static void replay(ob_t *o, cx_conf_result_t *r)
{
    push_success(o);
    cx_outbound_result_t *res = calloc(1, sizeof *res);
    cx_outbound_result_t *again = calloc(1, sizeof *again);
    if (res == NULL || again == NULL) {
        free(res);
        free(again);
        return;
    }
    cx_error_t err;
    int rc = ob_send(o, res, &err);
    if (rc != 0) {
        cx_conf__fail(r, "%s: the first send failed (%s): see outbound.success_returns_id",
                      o->c->capability, cx_err_name(rc));
    } else {
        rc = ob_send(o, again, &err);
        size_t n = cx_mock_provider_count(o->mock);
        if (n != 1)
            cx_conf__fail(r,
                          "%s: the replayed command made %zu provider calls in all "
                          "(expected 1)",
                          o->c->capability, n);
        if (rc != 0 || !again->replayed)
            cx_conf__fail(r, "%s: the replay was not answered from the stored result (%s)",
                          o->c->capability, cx_err_name(rc));
        else if (strcmp(again->intent.provider_message_id, res->intent.provider_message_id) != 0)
            cx_conf__fail(r, "%s: the replay returned another provider message id",
                          o->c->capability);
    }
    free(res);
    free(again);
}

void cx_conf__check_outbound_success(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    each_capability(s, r, success, "a send the provider accepts");
}

void cx_conf__check_outbound_retry(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    each_capability(s, r, transient, "429, then 503, then success");
}

void cx_conf__check_outbound_timeout(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    each_capability(s, r, timeout_case, "the connection drops after the request");
}

void cx_conf__check_outbound_permanent(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    each_capability(s, r, permanent, "a permanent rejection");
}

void cx_conf__check_outbound_replay(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    each_capability(s, r, replay, "the same command twice");
}
