/* The runtime harness of the checks, and direct parses.
 *
 * Checks drive a connector through the real pipeline (cx_runtime_handle), because that is
 * where its output meets dedupe, tenants, handlers and logs; the handler registered here only
 * records which dedupe keys it saw and can be told to fail once for one key. Checks that look
 * at events themselves (validation, dedupe keys) call the connector's parse directly and
 * reproduce what the pipeline does with each item: tenant stamping, validation, the key.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The runtime's development pseudonym key (runtime/src/inbound/runtime.c): what a development
 * runtime, `cx parse` included, uses when no runtime/pseudonym_key secret is configured. */
static const unsigned char DEV_PSEUDONYM_KEY[] = "cx-development-pseudonym-key-not-secret";

cx_keyring_t cx_conf__keyring(const cx_conf_case_t *c)
{
    if (c && c->pkey_len)
        return (cx_keyring_t){c->pkey, c->pkey_len};
    return (cx_keyring_t){DEV_PSEUDONYM_KEY, sizeof DEV_PSEUDONYM_KEY - 1};
}

static int64_t fixed_clock(void *ud)
{
    return *(const int64_t *)ud;
}

static int64_t log_clock(void *ud)
{
    return *(const int64_t *)ud * 1000;
}

static cx_conf_seen_t *seen_get(cx_conf_env_t *e, const char *key)
{
    for (size_t i = 0; i < e->n_seen; i++)
        if (strcmp(e->seen[i].key, key) == 0)
            return &e->seen[i];
    if (e->n_seen == e->cap_seen) {
        size_t cap = e->cap_seen ? e->cap_seen * 2 : 32;
        cx_conf_seen_t *p = realloc(e->seen, cap * sizeof *p);
        if (p == NULL)
            return NULL;
        e->seen = p;
        e->cap_seen = cap;
    }
    cx_conf_seen_t *s = &e->seen[e->n_seen];
    if ((s->key = strdup(key)) == NULL)
        return NULL;
    s->calls = s->processed = 0;
    e->n_seen++;
    return s;
}

const cx_conf_seen_t *cx_conf__seen(const cx_conf_env_t *e, const char *key)
{
    for (size_t i = 0; i < e->n_seen; i++)
        if (strcmp(e->seen[i].key, key) == 0)
            return &e->seen[i];
    return NULL;
}

static int record(void *ud, const cx_item_t *item, cx_error_t *err)
{
    cx_conf_env_t *e = ud;
    e->calls++;
    cx_conf_seen_t *s = seen_get(e, item->dedupe_key ? item->dedupe_key : "");
    if (s)
        s->calls++;
    if (e->fail_remaining && item->dedupe_key && strcmp(item->dedupe_key, e->fail_key) == 0) {
        e->fail_remaining--;
        return cx_error_set(err, CX_EHANDLER, NULL, "conformance: injected transient failure");
    }
    if (s)
        s->processed++;
    return 0;
}

static int add_account(cx_conf_env_t *e, const char *account, const char *tenant)
{
    cx_error_t err;
    cx_error_clear(&err);
    return cx_runtime_add_account(e->rt, e->s->c->manifest->id, account, tenant, &err);
}

static const char *tenant_of(const cx_conf_case_t *c, const char *account)
{
    const char *t = c && c->accounts && account
                        ? json_string_value(json_object_get(c->accounts, account))
                        : NULL;
    return t ? t : CX_CONF_DEFAULT_TENANT;
}

int cx_conf__env_open(cx_conf_env_t *e, const cx_conf_suite_t *s, const cx_conf_case_t *c,
                      const char *secrets_dir, cx_conf_result_t *r)
{
    memset(e, 0, sizeof *e);
    e->s = s;
    e->now = c ? c->now : CX_CONF_DEFAULT_NOW;
    if (!s->runtime_accepts) {
        cx_conf__fail(r, "the runtime refuses this connector: %s", s->refused);
        return -1;
    }
    cx_error_t err;
    cx_error_clear(&err);
    if (cx_log_capture_new(0, &e->cap) != 0)
        goto nomem;
    cx_logger_config_t lc = {.service = "cx-conformance",
                             .level = CX_LOG_DEBUG,
                             .sink = cx_log_capture_sink,
                             .sink_ud = e->cap,
                             .clock = log_clock,
                             .clock_ud = &e->now};
    if (cx_logger_new(&lc, &e->log) != 0)
        goto nomem;
    if (cx_dedupe_store_embedded("development", &e->store, &err) != 0)
        goto fail;
    cx_keyring_t keyring = cx_conf__keyring(c);
    cx_runtime_config_t cfg = {
        .environment = CX_ENV_DEVELOPMENT,
        .service = "cx-conformance",
        .secrets_dir = secrets_dir ? secrets_dir : (c && c->secrets_dir[0] ? c->secrets_dir : NULL),
        .pseudonym_key = keyring.key,
        .pseudonym_key_len = keyring.key_len,
        .dedupe = e->store,
        .logger = e->log,
        .clock = {fixed_clock, &e->now},
    };
    if (cx_runtime_create(&cfg, &e->rt, &err) != 0)
        goto fail;
    if (cx_runtime_add_connector(e->rt, s->c, &err) != 0)
        goto fail;
    if (cx_runtime_on(e->rt, "*", record, e, &err) != 0)
        goto fail;
    /* Accounts: the fixture's mapping, then every account the request names. */
    if (c && c->accounts) {
        const char *acc;
        json_t *t;
        json_object_foreach(c->accounts, acc, t)
        {
            if (json_is_string(t) && add_account(e, acc, json_string_value(t)) != 0) {
                cx_conf__fail(r, "case %s: accounts.json: account %s cannot be registered", c->name,
                              acc);
                cx_conf__env_close(e);
                return -1;
            }
        }
    }
    /* Without accounts.json, every account the request names maps to the default tenant; with
     * one, the fixture's registry is the whole truth (an unknown account must fail). */
    if (c && c->kind == CX_CONF_CASE_REQUEST && c->accounts == NULL) {
        cx_conf_parsed_t p;
        if (cx_conf__parse(s, e->rt, c, &c->req, e->now, &p) == 0) {
            for (size_t i = 0; i < p.n; i++) {
                const char *acc = p.ev[i].account_id;
                if (acc && acc[0])
                    add_account(e, acc, CX_CONF_DEFAULT_TENANT);
            }
            cx_conf__parsed_free(&p);
        }
    }
    return 0;
nomem:
    cx_error_set(&err, CX_ENOMEM, NULL, NULL);
fail:
    cx_conf__fail(r, "cannot set up the runtime: %s (%s)", err.message[0] ? err.message : "",
                  cx_err_name(err.code));
    cx_conf__env_close(e);
    return -1;
}

void cx_conf__env_close(cx_conf_env_t *e)
{
    cx_runtime_destroy(e->rt);
    cx_dedupe_store_destroy(e->store);
    cx_logger_free(e->log);
    cx_log_capture_free(e->cap);
    for (size_t i = 0; i < e->n_seen; i++)
        free(e->seen[i].key);
    free(e->seen);
    memset(e, 0, sizeof *e);
}

int cx_conf__deliver(cx_conf_env_t *e, const cx_conf_req_t *req, cx_conf_resp_t *out)
{
    memset(out, 0, sizeof *out);
    cx_buf_t body;
    cx_buf_init(&body, 64u << 20);
    cx_response_t resp = {0, NULL, &body};
    cx_request_t v = cx_conf__req_view(req);
    int rc = cx_runtime_handle(e->rt, e->s->c->manifest->id, &v, &resp);
    if (rc != 0) {
        cx_buf_free(&body);
        return -1;
    }
    out->status = resp.status;
    if (body.len)
        out->body = json_loadb(body.data, body.len, 0, NULL);
    cx_buf_free(&body);
    return 0;
}

void cx_conf__resp_free(cx_conf_resp_t *r)
{
    json_decref(r->body);
    r->body = NULL;
}

long cx_conf__summary(const cx_conf_resp_t *r, const char *field)
{
    json_t *v = json_object_get(json_object_get(r->body, "summary"), field);
    return json_is_integer(v) ? (long)json_integer_value(v) : -1;
}

/* ---- Direct parse ------------------------------------------------------------------------- */

static void stamp_tenant(ProtobufCMessage *msg, const char *tenant)
{
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, "tenant_id");
    if (fd && fd->type == PROTOBUF_C_TYPE_STRING && fd->label != PROTOBUF_C_LABEL_REPEATED)
        *(const char **)((char *)msg + fd->offset) = tenant;
}

int cx_conf__parse(const cx_conf_suite_t *s, cx_runtime_t *rt, const cx_conf_case_t *c,
                   const cx_conf_req_t *req, int64_t now, cx_conf_parsed_t *out)
{
    memset(out, 0, sizeof *out);
    cx_arena_init(&out->arena, NULL, 64u << 20);
    cx_ctx_t ctx = {rt, s->c->manifest->id, now, &out->arena};
    cx_parse_out_t po = {NULL, 0, 0, &out->arena};
    cx_error_t err;
    cx_error_clear(&err);
    cx_request_t v = cx_conf__req_view(req);
    out->rc = s->c->parse(s->c, &ctx, &v, &po, &err);
    snprintf(out->err, sizeof out->err, "%s", err.message);
    if (out->rc != 0)
        return 0;
    size_t n = po.n;
    out->n = n;
    out->ev = po.events;
    if (n == 0)
        return 0;
    out->key = calloc(n, sizeof *out->key);
    out->key_rc = calloc(n, sizeof *out->key_rc);
    out->key_err = calloc(n, 192);
    out->valid = calloc(n, sizeof *out->valid);
    out->violation = calloc(n, 160);
    out->json = calloc(n, sizeof *out->json);
    out->tenant = calloc(n, sizeof *out->tenant);
    if (!out->key || !out->key_rc || !out->key_err || !out->valid || !out->violation ||
        !out->json || !out->tenant) {
        cx_conf__parsed_free(out);
        return -1;
    }
    cx_keyring_t keyring = cx_conf__keyring(c);
    for (size_t i = 0; i < n; i++) {
        cx_event_t *ev = &out->ev[i];
        out->tenant[i] = tenant_of(c, ev->account_id);
        if (ev->error || ev->msg == NULL || ev->meta == NULL) {
            out->valid[i] = ev->error ? ev->error : CX_EMALFORMED;
            out->key_rc[i] = CX_EMALFORMED;
            continue;
        }
        stamp_tenant(ev->msg, out->tenant[i]);
        cx_violation_t vb[1];
        cx_violations_t vs = {vb, 1, 0};
        out->valid[i] = cx_validate(ev->meta, ev->msg, &vs);
        if (out->valid[i] != 0 && vs.count)
            snprintf(out->violation + i * 160, 160, "%s: %s", vb[0].path, vb[0].rule);
        cx_buf_t kb;
        cx_buf_init(&kb, 4096);
        cx_error_t kerr;
        cx_error_clear(&kerr);
        out->key_rc[i] = cx_dedupe_key(ev->meta, ev->msg, &keyring, &kb, &kerr);
        if (out->key_rc[i] == 0 && cx_buf_error(&kb) == 0)
            out->key[i] = strndup(kb.data ? kb.data : "", kb.len);
        else
            cx_conf__fmt(out->key_err + i * 192, 192, "%s%s%s", kerr.message,
                         kerr.path[0] ? " at " : "", kerr.path);
        cx_buf_free(&kb);
        cx_buf_t jb;
        cx_buf_init(&jb, 16u << 20);
        if (cx_to_json(ev->meta, ev->msg, &jb) == 0 && cx_buf_error(&jb) == 0)
            out->json[i] = strndup(jb.data ? jb.data : "", jb.len);
        cx_buf_free(&jb);
    }
    return 0;
}

void cx_conf__parsed_free(cx_conf_parsed_t *p)
{
    for (size_t i = 0; p->key && i < p->n; i++)
        free(p->key[i]);
    for (size_t i = 0; p->json && i < p->n; i++)
        free(p->json[i]);
    free(p->key);
    free(p->key_rc);
    free(p->key_err);
    free(p->valid);
    free(p->violation);
    free(p->json);
    free(p->tenant);
    cx_arena_release(&p->arena);
    memset(p, 0, sizeof *p);
}
