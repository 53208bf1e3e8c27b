/* `cx parse`: one captured request through the real pipeline, offline.
 *
 * The request goes through cx_runtime_handle() exactly as `cx serve` would run it (verify,
 * parse, validate, tenants, dedupe, handlers), with an embedded dedupe store, the development
 * environment and a "*" handler that records every event it is given. The result is ONE JSON
 * object on stdout:
 *
 *   {"status": 200, "body": <the response body: JSON, or a string (handshakes)>,
 *    "events": [{"type", "dedupeKey", "capability", "tenantId", "data": <proto3 JSON>}]}
 *
 * Items that fail before their handler (UNKNOWN_ACCOUNT, validation) are not events; they show
 * in body.results with their error code.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture.h"
#include "cli.h"
#include "connectors.h"
#include "config.h"
#include "cx/runtime.h"

#define SUB "parse"
#define MAX_OUTPUT (256u << 20)

typedef struct {
    pthread_mutex_t mu;
    cx_buf_t events; /* the "events" array's elements, comma-separated */
    size_t n;
    int failed; /* an event could not be recorded */
} capture_t;

static int record(void *ud, const cx_item_t *item, cx_error_t *err)
{
    capture_t *cap = ud;
    const cx_msg_meta_t *meta = item->event->meta;
    cx_buf_t data;
    cx_buf_init(&data, 64u << 20);
    if (cx_to_json(meta, item->event->msg, &data) != 0) {
        cx_buf_free(&data);
        cap->failed = 1;
        return cx_error_set(err, CX_EHANDLER_PERMANENT, NULL, "cannot render the event");
    }
    const char *type = meta->event_type ? meta->event_type : meta->full_name;
    pthread_mutex_lock(&cap->mu);
    cx_buf_t *b = &cap->events;
    cx_buf_puts(b, cap->n ? ",{\"type\":" : "{\"type\":");
    cx_cli_json_str(b, type, strlen(type));
    cx_buf_puts(b, ",\"dedupeKey\":");
    cx_cli_json_str(b, item->dedupe_key, strlen(item->dedupe_key));
    cx_buf_puts(b, ",\"capability\":");
    if (meta->capability)
        cx_cli_json_str(b, meta->capability, strlen(meta->capability));
    else
        cx_buf_puts(b, "null");
    cx_buf_puts(b, ",\"tenantId\":");
    cx_cli_json_str(b, item->tenant_id, strlen(item->tenant_id));
    cx_buf_puts(b, ",\"data\":");
    cx_buf_append(b, data.data, data.len);
    cx_buf_putc(b, '}');
    cap->n++;
    pthread_mutex_unlock(&cap->mu);
    cx_buf_free(&data);
    return 0;
}

static int64_t fixed_clock(void *ud)
{
    return *(const int64_t *)ud;
}

static int add_account(void *ud, const char *connector, const char *account, const char *tenant)
{
    return cx_serve_config_add_account(ud, connector, account, tenant);
}

int cx_cmd_parse(int argc, char **argv)
{
    const char *connector = NULL, *request = NULL, *secrets = NULL, *v;
    int64_t now = 0;
    int have_now = 0;
    cx_connector_set_t conns;
    memset(&conns, 0, sizeof conns);
    cx_serve_config_t accounts; /* only its account list is used */
    memset(&accounts, 0, sizeof accounts);
    cx_capture_t capt;
    memset(&capt, 0, sizeof capt);
    char why[1024];
    int exit_code = CX_EXIT_USAGE;
    const char *libs[CX_CLI_MAX_CONNECTORS];
    size_t n_libs = 0;
    cx_log_level_t level = CX_LOG_WARN;

    for (int i = 1; i < argc; i++) {
        int m;
        uint64_t u;
        if (cx_cli_is_help(argv[i])) {
            cx_cli_help(SUB);
            exit_code = CX_EXIT_OK;
            goto done;
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--connector", &v)) != 0) {
            if (m < 0)
                goto done;
            connector = v;
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--request", &v)) != 0) {
            if (m < 0)
                goto done;
            request = v;
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--secrets", &v)) != 0) {
            if (m < 0)
                goto done;
            secrets = v;
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--now", &v)) != 0) {
            if (m < 0)
                goto done;
            if (cx_cli_parse_u64(v, 0, (uint64_t)INT64_MAX, &u) != 0) {
                cx_cli_error(SUB, "--now must be Unix seconds, e.g. 1764403200");
                goto done;
            }
            now = (int64_t)u;
            have_now = 1;
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--connector-lib", &v)) != 0) {
            if (m < 0)
                goto done;
            if (n_libs == CX_CLI_MAX_CONNECTORS) {
                cx_cli_error(SUB, "too many --connector-lib");
                goto done;
            }
            libs[n_libs++] = v;
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--account", &v)) != 0) {
            if (m < 0)
                goto done;
            if (cx_serve_config_account_flag(&accounts, v) != 0) {
                cx_cli_error(SUB, "--account must be CONNECTOR:ACCOUNT_ID=TENANT, got '%s'", v);
                goto done;
            }
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--log-level", &v)) != 0) {
            if (m < 0)
                goto done;
            if (cx_log_level_parse(v, &level) != 0) {
                cx_cli_error(SUB, "--log-level must be debug, info, warn, error or off");
                goto done;
            }
        } else if (request == NULL && argv[i][0] != '-') {
            request = argv[i]; /* `cx parse DIR` */
        } else {
            exit_code = cx_cli_bad_arg(SUB, argv[i]);
            goto done;
        }
    }
    if (request == NULL) {
        cx_cli_error(SUB, "--request DIR|request.json is required (see cx parse --help)");
        goto done;
    }
    if (cx_capture_load(request, &capt, why, sizeof why) != 0) {
        cx_cli_error(SUB, "%s", why);
        exit_code = CX_EXIT_INVALID;
        goto done;
    }
    if (connector == NULL) {
        if (capt.connector[0] == '\0') {
            cx_cli_error(SUB, "--connector is required: the path %s is not /webhook/<connector>",
                         capt.path);
            goto done;
        }
        connector = capt.connector;
    }
    cx_connectors_builtin(&conns);
    for (size_t i = 0; i < n_libs; i++)
        if (cx_connectors_load(&conns, libs[i], why, sizeof why) != 0) {
            cx_cli_error(SUB, "%s", why);
            exit_code = CX_EXIT_CONFIG;
            goto done;
        }
    const cx_connector_t *c = cx_connectors_find(&conns, connector);
    if (c == NULL) {
        cx_cli_error(SUB, "no connector '%s' (built in: none; load one with --connector-lib)",
                     connector);
        goto done;
    }
    /* Accounts: accounts.json beside request.json first, then --account (which wins). */
    cx_serve_config_t file_acc;
    memset(&file_acc, 0, sizeof file_acc);
    if (cx_capture_accounts(&capt, add_account, &file_acc, why, sizeof why) != 0) {
        cx_serve_config_free(&file_acc);
        cx_cli_error(SUB, "%s", why);
        exit_code = CX_EXIT_INVALID;
        goto done;
    }
    for (size_t i = 0; i < accounts.n_accounts; i++)
        cx_serve_config_add_account(&file_acc, accounts.accounts[i].connector,
                                    accounts.accounts[i].account_id,
                                    accounts.accounts[i].tenant_id);
    cx_serve_config_free(&accounts);
    accounts = file_acc;

    /* Secrets: --secrets, else a secrets/ directory beside request.json. */
    char secrets_beside[4200];
    if (secrets == NULL) {
        snprintf(secrets_beside, sizeof secrets_beside, "%s/secrets", capt.dir);
        if (cx_cli_is_dir(secrets_beside))
            secrets = secrets_beside;
    }

    exit_code = CX_EXIT_INTERNAL;
    cx_logger_t *lg = NULL;
    cx_runtime_t *rt = NULL;
    capture_t cap = {PTHREAD_MUTEX_INITIALIZER, {0}, 0, 0};
    cx_buf_init(&cap.events, MAX_OUTPUT);
    cx_buf_t body;
    cx_buf_init(&body, MAX_OUTPUT);
    cx_error_t err;
    cx_error_clear(&err);
    cx_logger_config_t lc = {.service = "cx-parse", .level = level};
    if (cx_logger_new(&lc, &lg) != 0)
        goto out;
    cx_runtime_config_t rcfg = {.environment = CX_ENV_DEVELOPMENT,
                                .service = "cx-parse",
                                .secrets_dir = secrets,
                                .max_body_bytes = CX_CAPTURE_MAX_BODY,
                                .logger = lg,
                                .clock = {have_now ? fixed_clock : NULL, &now}};
    int rc = cx_runtime_create(&rcfg, &rt, &err);
    if (rc == 0)
        rc = cx_runtime_add_connector(rt, c, &err);
    for (size_t i = 0; rc == 0 && i < accounts.n_accounts; i++)
        rc = cx_runtime_add_account(rt, accounts.accounts[i].connector,
                                    accounts.accounts[i].account_id, accounts.accounts[i].tenant_id,
                                    &err);
    if (rc == 0)
        rc = cx_runtime_on(rt, "*", record, &cap, &err);
    if (rc != 0) {
        cx_cli_error(SUB, "%s", err.message[0] ? err.message : cx_strerror(rc));
        exit_code = rc == CX_EABI || rc == CX_ECONFIG ? CX_EXIT_CONFIG : CX_EXIT_INTERNAL;
        goto out;
    }
    /* A fixed correlation id unless the capture has one, so the output is the same on every
     * run (golden files); the signature covers the body only. */
    cx_request_t req = cx_capture_request(&capt);
    cx_header_t hdrs[CX_CAPTURE_MAX_HEADERS + 1];
    if (cx_request_header(&req, "X-Correlation-Id") == NULL) {
        memcpy(hdrs, capt.headers, capt.n_headers * sizeof *hdrs);
        hdrs[capt.n_headers] = (cx_header_t){"X-Correlation-Id", "cx-parse"};
        req.headers = hdrs;
        req.n_headers = capt.n_headers + 1;
    }
    cx_response_t resp = {0, NULL, &body};
    if (cx_runtime_handle(rt, connector, &req, &resp) != 0) {
        cx_cli_error(SUB, "the pipeline produced no response");
        goto out;
    }
    if (cx_buf_error(&cap.events) || cx_buf_error(&body) || cap.failed) {
        cx_cli_error(SUB, "the result is too large to print");
        goto out;
    }
    cx_buf_t outb;
    cx_buf_init(&outb, MAX_OUTPUT);
    cx_buf_printf(&outb, "{\"status\":%d,\"body\":", resp.status);
    /* The body as JSON when it is JSON, else as a string (handshakes answer text). */
    json_t *parsed = json_loadb(body.data ? body.data : "", body.len, JSON_DECODE_ANY, NULL);
    if (parsed)
        cx_buf_append(&outb, body.data, body.len);
    else
        cx_cli_json_str(&outb, body.data ? body.data : "", body.len);
    json_decref(parsed);
    cx_buf_puts(&outb, ",\"events\":[");
    if (cap.events.len)
        cx_buf_append(&outb, cap.events.data, cap.events.len);
    cx_buf_puts(&outb, "]}\n");
    if (cx_buf_error(&outb)) {
        cx_cli_error(SUB, "the result is too large to print");
    } else if (fwrite(outb.data, 1, outb.len, stdout) != outb.len || fflush(stdout) != 0) {
        cx_cli_error(SUB, "cannot write to stdout: %s", strerror(errno));
    } else {
        exit_code = CX_EXIT_OK;
    }
    cx_buf_free(&outb);
out:
    cx_runtime_destroy(rt);
    cx_logger_free(lg);
    cx_buf_free(&cap.events);
    cx_buf_free(&body);
    pthread_mutex_destroy(&cap.mu);
done:
    cx_capture_free(&capt);
    cx_serve_config_free(&accounts);
    cx_connectors_free(&conns);
    return exit_code;
}
