/* The webhook pipeline end to end (in process, no HTTP): the test connector, real handlers, the
 * embedded store and a real redis-server on a free loopback port. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cx/messaging/v1/messaging.cx.h"
#include "cx/runtime.h"
#include "redis_server.h"
#include "test_connector.h"

#define SECRET "s3cr3t-current"
#define OLD_SECRET "s3cr3t-old"
#define PHONE "+14155550123"
#define EMAIL "jane.doe@example.com"

/* ---- fixtures ------------------------------------------------------------------------------ */

typedef struct {
    int calls[64];       /* handler runs per item id m0..m63 */
    int successes[64];
    int fail_once[64];   /* fail transiently the first time */
    int fail_always[64]; /* fail permanently */
    cx_test_redis_t *stop_redis_during; /* stop this Redis inside the first handler call */
} handler_state_t;

static int item_index(const cx_item_t *item)
{
    const Cx__Messaging__V1__DirectMessage *dm = (const void *)item->event->msg;
    return atoi(dm->message_id + 1);
}

static int handler(void *ud, const cx_item_t *item, cx_error_t *err)
{
    handler_state_t *hs = ud;
    int i = item_index(item);
    hs->calls[i]++;
    if (hs->stop_redis_during) {
        cx_test_redis_stop(hs->stop_redis_during);
        hs->stop_redis_during = NULL;
    }
    if (hs->fail_always[i])
        return cx_error_set(err, CX_EHANDLER_PERMANENT, NULL, "rejected");
    if (hs->fail_once[i]) {
        hs->fail_once[i] = 0;
        return cx_error_set(err, CX_EHANDLER, NULL, "downstream timeout");
    }
    hs->successes[i]++;
    return 0;
}

typedef struct {
    char secrets[256];
    cx_runtime_t *rt;
    cx_log_capture_t *cap;
    cx_logger_t *log;
    cx_dedupe_store_t *store;
    handler_state_t hs;
    cx_test_redis_t redis;
    int have_redis;
} fx_t;

static void write_file(const char *dir, const char *name, const char *value)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(value, f);
    fputc('\n', f);
    fclose(f);
}

static void make_secrets(fx_t *fx)
{
    strcpy(fx->secrets, "/tmp/cx-secrets-XXXXXX");
    assert_non_null(mkdtemp(fx->secrets));
    char dir[512];
    snprintf(dir, sizeof dir, "%s/test", fx->secrets);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file(dir, "secret", SECRET);
}

static void rm_secrets(fx_t *fx)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->secrets);
    assert_int_equal(system(cmd), 0);
}

static int64_t fixed_now(void *ud)
{
    (void)ud;
    return 1764403200; /* 2025-11-29 */
}

/* The runtime over fx->store (NULL: the embedded store it makes itself), with the test
 * connector, one account and the handler. */
static void fx_runtime(fx_t *fx, cx_environment_t env)
{
    cx_error_t err;
    static const unsigned char key[] = "pseudonym-key-for-tests";
    cx_runtime_config_t cfg = {.environment = env, .secrets_dir = fx->secrets,
                               .logger = fx->log, .dedupe = fx->store,
                               .pseudonym_key = key, .pseudonym_key_len = sizeof key - 1,
                               .clock = {fixed_now, NULL}};
    assert_int_equal(cx_runtime_create(&cfg, &fx->rt, &err), 0);
    assert_int_equal(cx_runtime_add_connector(fx->rt, cx_test_connector(), &err), 0);
    assert_int_equal(cx_runtime_add_account(fx->rt, "test", "acc-1", "acme", &err), 0);
    assert_int_equal(cx_runtime_on(fx->rt, "inbound_messages", handler, &fx->hs, &err), 0);
}

static fx_t *fx_new(cx_environment_t env, int redis)
{
    fx_t *fx = calloc(1, sizeof *fx);
    make_secrets(fx);
    assert_int_equal(cx_log_capture_new(0, &fx->cap), 0);
    cx_logger_config_t lc = {.service = "cx-test", .level = CX_LOG_DEBUG,
                             .sink = cx_log_capture_sink, .sink_ud = fx->cap};
    assert_int_equal(cx_logger_new(&lc, &fx->log), 0);
    cx_error_t err;
    if (redis) {
        assert_int_equal(cx_test_redis_start(&fx->redis, NULL), 0);
        fx->have_redis = 1;
        cx_redis_options_t ro = {.host = "127.0.0.1", .port = fx->redis.port,
                                 .connect_timeout_ms = 500, .command_timeout_ms = 500};
        assert_int_equal(cx_dedupe_store_redis(cx_environment_name(env), &ro, &fx->store, &err), 0);
    }
    fx_runtime(fx, env);
    return fx;
}

static void fx_free(fx_t *fx)
{
    cx_runtime_destroy(fx->rt);
    cx_dedupe_store_destroy(fx->store);
    cx_logger_free(fx->log);
    cx_log_capture_free(fx->cap);
    if (fx->have_redis)
        cx_test_redis_destroy(&fx->redis);
    rm_secrets(fx);
    free(fx);
}

/* A batch body with items m<from>..m<from+n-1> for account. */
static char *batch(const char *account, int from, int n)
{
    size_t cap = 256 + (size_t)n * 128;
    char *b = malloc(cap);
    size_t o = (size_t)snprintf(b, cap, "{\"account\":\"%s\",\"items\":[", account);
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(b + o, cap - o,
                              "%s{\"id\":\"m%d\",\"from\":\"" PHONE "\",\"text\":\"write to " EMAIL
                              "\"}",
                              i ? "," : "", from + i);
    snprintf(b + o, cap - o, "]}");
    return b;
}

typedef struct {
    int status;
    char body[65536];
} result_t;

static void post(fx_t *fx, const char *body, const char *key, result_t *out)
{
    char sig[80];
    cx_header_t h[2] = {{"Content-Type", "application/json"}, {"X-Test-Signature", sig}};
    size_t nh = 2;
    if (key)
        cx_test_sign(key, body, strlen(body), sig);
    else
        nh = 1;
    cx_request_t req = {"POST", "/webhook/test", "", h, nh, body, strlen(body)};
    cx_buf_t b;
    cx_buf_init_fixed(&b, out->body, sizeof out->body);
    cx_response_t resp = {0, NULL, &b};
    assert_int_equal(cx_runtime_handle(fx->rt, "test", &req, &resp), 0);
    out->status = resp.status;
}

static int count(const char *body, const char *needle)
{
    int n = 0;
    for (const char *p = body; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void batch_then_replay(fx_t *fx)
{
    char *body = batch("acc-1", 0, 10);
    result_t r;
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"summary\":{\"total\":10,\"processed\":10,\"queued\":0,"
                                   "\"deduped\":0,\"failed\":0}"));
    for (int i = 0; i < 10; i++)
        assert_int_equal(fx->hs.calls[i], 1);
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"processed\":0,\"queued\":0,\"deduped\":10,\"failed\":0"));
    for (int i = 0; i < 10; i++)
        assert_int_equal(fx->hs.calls[i], 1);
    free(body);
}

static void test_batch_of_ten_then_replay_embedded(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_DEVELOPMENT, 0);
    batch_then_replay(fx);
    fx_free(fx);
}

static void test_batch_of_ten_then_replay_redis(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_PRODUCTION, 1);
    batch_then_replay(fx);
    fx_free(fx);
}

static void one_failure(fx_t *fx)
{
    fx->hs.fail_once[4] = 1;
    char *body = batch("acc-1", 0, 10);
    result_t r;
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "\"processed\":9,\"queued\":0,\"deduped\":0,\"failed\":1"));
    assert_non_null(strstr(r.body, "\"errorCode\":\"HANDLER\""));
    /* The provider redelivers the batch: 9 deduped, the failed one runs again. */
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"processed\":1,\"queued\":0,\"deduped\":9,\"failed\":0"));
    for (int i = 0; i < 10; i++)
        assert_int_equal(fx->hs.successes[i], 1);
    assert_int_equal(fx->hs.calls[4], 2);
    free(body);
}

static void test_one_handler_failure_is_503_and_redelivery_completes_embedded(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_DEVELOPMENT, 0);
    one_failure(fx);
    fx_free(fx);
}

static void test_one_handler_failure_is_503_and_redelivery_completes_redis(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_PRODUCTION, 1);
    one_failure(fx);
    fx_free(fx);
}

static void test_permanent_handler_failure_answers_200(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_DEVELOPMENT, 0);
    fx->hs.fail_always[2] = 1;
    char *body = batch("acc-1", 0, 5);
    result_t r;
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"errorCode\":\"HANDLER_PERMANENT\""));
    assert_non_null(strstr(r.body, "\"permanent\":true"));
    free(body);
    fx_free(fx);
}

static void test_redis_stopped_between_claim_and_completion(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_PRODUCTION, 1);
    fx->hs.stop_redis_during = &fx->redis;
    char *body = batch("acc-1", 0, 10);
    result_t r;
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 503); /* handlers ran, completions could not be stored */
    for (int i = 0; i < 10; i++)
        assert_int_equal(fx->hs.successes[i], 1);
    /* While Redis is down every redelivery is refused and nothing runs. */
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 503);
    assert_false(cx_runtime_ready(fx->rt));
    assert_int_equal(cx_test_redis_restart(&fx->redis), 0);
    /* Redis is back (empty: no persistence in tests): the redelivery finds every item done. */
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"processed\":0,\"queued\":0,\"deduped\":10,\"failed\":0"));
    for (int i = 0; i < 10; i++) {
        assert_int_equal(fx->hs.calls[i], 1);
        assert_int_equal(fx->hs.successes[i], 1);
    }
    free(body);
    fx_free(fx);
}

static void test_redis_down_in_production_is_503_nothing_processed(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_PRODUCTION, 1);
    assert_true(cx_runtime_ready(fx->rt));
    assert_int_equal(cx_test_redis_stop(&fx->redis), 0);
    char *body = batch("acc-1", 0, 10);
    result_t r;
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 503);
    for (int i = 0; i < 10; i++)
        assert_int_equal(fx->hs.calls[i], 0);
    assert_int_equal(cx_test_redis_restart(&fx->redis), 0);
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 200);
    for (int i = 0; i < 10; i++)
        assert_int_equal(fx->hs.calls[i], 1);
    free(body);
    fx_free(fx);
}

static void test_bad_or_missing_signature_is_401_handler_never_called(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_DEVELOPMENT, 0);
    char *body = batch("acc-1", 0, 3);
    result_t r;
    post(fx, body, "wrong-secret", &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "\"errorCode\":\"BAD_SIGNATURE\""));
    post(fx, body, NULL, &r);
    assert_int_equal(r.status, 401);
    /* Tampered body, signature of the original. */
    char sig[80];
    cx_test_sign(SECRET, body, strlen(body), sig);
    body[strlen(body) - 3] = 'X';
    cx_header_t h[1] = {{"X-Test-Signature", sig}};
    cx_request_t req = {"POST", "/webhook/test", "", h, 1, body, strlen(body)};
    cx_buf_t b;
    cx_buf_init_fixed(&b, r.body, sizeof r.body);
    cx_response_t resp = {0, NULL, &b};
    cx_runtime_handle(fx->rt, "test", &req, &resp);
    assert_int_equal(resp.status, 401);
    for (int i = 0; i < 3; i++)
        assert_int_equal(fx->hs.calls[i], 0);
    free(body);
    fx_free(fx);
}

static void test_previous_secret_accepted_and_sighup_reload(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_DEVELOPMENT, 0);
    char *b1 = batch("acc-1", 0, 2), *b2 = batch("acc-1", 2, 2), *b3 = batch("acc-1", 4, 2);
    result_t r;
    post(fx, b1, SECRET, &r);
    assert_int_equal(r.status, 200);
    /* Rotate: new current, the old one as .previous; reload as SIGHUP does. */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/test", fx->secrets);
    write_file(dir, "secret", "s3cr3t-new");
    write_file(dir, "secret.previous", SECRET);
    post(fx, b2, "s3cr3t-new", &r);
    assert_int_equal(r.status, 401); /* cached until the reload */
    cx_error_t err;
    assert_int_equal(cx_runtime_reload_secrets(fx->rt, &err), 0);
    post(fx, b2, "s3cr3t-new", &r);
    assert_int_equal(r.status, 200);
    post(fx, b3, SECRET, &r); /* a provider still signing with the previous secret */
    assert_int_equal(r.status, 200);
    post(fx, b3, OLD_SECRET, &r);
    assert_int_equal(r.status, 401);
    free(b1);
    free(b2);
    free(b3);
    fx_free(fx);
}

static void test_malformed_body_is_400(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_DEVELOPMENT, 0);
    const char *bodies[] = {"{\"account\":\"acc-1\",\"items\":[", "[]", "", "{\"items\":[]}"};
    for (size_t i = 0; i < 4; i++) {
        result_t r;
        post(fx, bodies[i], SECRET, &r);
        assert_int_equal(r.status, 400);
        assert_non_null(strstr(r.body, "\"errorCode\":\"MALFORMED\""));
    }
    fx_free(fx);
}

static void test_duplicate_key_body_is_400(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_DEVELOPMENT, 0);
    const char *bodies[] = {
        "{\"account\":\"acc-1\",\"account\":\"acc-2\",\"items\":[]}",
        "{\"account\":\"acc-1\",\"items\":[{\"id\":\"m1\",\"id\":\"m2\"}]}"};
    for (size_t i = 0; i < 2; i++) {
        result_t r;
        post(fx, bodies[i], SECRET, &r);
        assert_int_equal(r.status, 400);
        assert_non_null(strstr(r.body, "\"errorCode\":\"MALFORMED\""));
    }
    assert_int_equal(fx->hs.calls[1], 0);
    fx_free(fx);
}

static void test_invalid_item_fails_alone(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_DEVELOPMENT, 0);
    /* m1 has no id (malformed item); m2's text is over the schema's max_len. */
    size_t big = 70000;
    char *body = malloc(big + 256);
    int o = sprintf(body, "{\"account\":\"acc-1\",\"items\":[{\"id\":\"m0\",\"text\":\"ok\"},"
                          "{\"text\":\"no id\"},{\"id\":\"m2\",\"text\":\"");
    memset(body + o, 'a', big);
    strcpy(body + o + big, "\"},{\"id\":\"m3\",\"text\":\"ok\"}]}");
    result_t r;
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"total\":4,\"processed\":2,\"queued\":0,\"deduped\":0,"
                                   "\"failed\":2"));
    assert_non_null(strstr(r.body, "\"errorCode\":\"MALFORMED\""));
    assert_non_null(strstr(r.body, "\"errorCode\":\"VALIDATION\""));
    assert_int_equal(fx->hs.calls[0], 1);
    assert_int_equal(fx->hs.calls[2], 0);
    assert_int_equal(fx->hs.calls[3], 1);
    free(body);
    fx_free(fx);
}

static void test_unknown_account(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_DEVELOPMENT, 0);
    char *body = batch("acc-unknown", 0, 2);
    result_t r;
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 200); /* permanent: redelivery would not help */
    assert_int_equal(count(r.body, "\"errorCode\":\"UNKNOWN_ACCOUNT\""), 2);
    assert_int_equal(fx->hs.calls[0], 0);
    free(body);
    fx_free(fx);
}

static void test_duplicate_inside_one_batch(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_DEVELOPMENT, 0);
    const char *body = "{\"account\":\"acc-1\",\"items\":[{\"id\":\"m7\",\"text\":\"a\"},"
                       "{\"id\":\"m7\",\"text\":\"a\"}]}";
    result_t r;
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"processed\":1,\"queued\":0,\"deduped\":1"));
    assert_int_equal(fx->hs.calls[7], 1);
    /* Keys that differ only in length or in a last partial word are distinct; their repeats
     * are not. */
    body = "{\"account\":\"acc-1\",\"items\":["
           "{\"id\":\"abcdefghijklmn\",\"text\":\"a\"},"
           "{\"id\":\"abcdefghijklmno\",\"text\":\"a\"},"
           "{\"id\":\"abcdefghijklmn\",\"text\":\"a\"},"
           "{\"id\":\"abcdefghijklmnopqrstu\",\"text\":\"a\"},"
           "{\"id\":\"abcdefghijklmnopqrstv\",\"text\":\"a\"},"
           "{\"id\":\"abcdefghijklmnopqrstu\",\"text\":\"a\"}]}";
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"processed\":4,\"queued\":0,\"deduped\":2"));
    fx_free(fx);
}

/* Dedupe keys carry provider ids as they are: the response escapes them, wherever in the key
 * the byte to escape falls. */
static void test_response_escapes_keys(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_DEVELOPMENT, 0);
    const char *body = "{\"account\":\"acc-1\",\"items\":["
                       "{\"id\":\"\\\"abcdefghijklmnopq\",\"text\":\"a\"},"
                       "{\"id\":\"abcdef\\\"gh\\\\ij\\u0001k\",\"text\":\"a\"},"
                       "{\"id\":\"abcdefghijklmnop\\tqrstuvwxyz\",\"text\":\"a\"}]}";
    result_t r;
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"dedupeKey\":\"dm:test:acc-1:msg:\\\"abcdefghijklmnopq\""));
    assert_non_null(strstr(r.body, "\"dedupeKey\":\"dm:test:acc-1:msg:abcdef\\\"gh\\\\ij\\u0001k\""));
    assert_non_null(
        strstr(r.body, "\"dedupeKey\":\"dm:test:acc-1:msg:abcdefghijklmnop\\u0009qrstuvwxyz\""));
    fx_free(fx);
}

/* An id whose key would pass the stores' limit (':' is escaped to three bytes) fails alone and
 * for good; the rest of the batch is processed and the request answered 200, not held back
 * for ever by a key no store accepts. */
static void test_key_over_the_store_limit_fails_alone(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_DEVELOPMENT, 0);
    char colons[201];
    memset(colons, ':', 200);
    colons[200] = '\0';
    char body[1024];
    snprintf(body, sizeof body,
             "{\"account\":\"acc-1\",\"items\":[{\"id\":\"m1\",\"text\":\"a\"},"
             "{\"id\":\"%s\",\"text\":\"a\"},{\"id\":\"m2\",\"text\":\"a\"}]}",
             colons);
    result_t r;
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"processed\":2,\"queued\":0,\"deduped\":0,\"failed\":1"));
    assert_non_null(strstr(r.body, "\"errorCode\":\"LIMIT\""));
    assert_int_equal(fx->hs.calls[1], 1);
    assert_int_equal(fx->hs.calls[2], 1);
    fx_free(fx);
}

static void test_body_limit_is_413(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_DEVELOPMENT, 0);
    size_t n = (1u << 20) + 1;
    char *body = malloc(n + 1);
    memset(body, ' ', n);
    body[n] = '\0';
    result_t r;
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 413);
    free(body);
    fx_free(fx);
}

/* Every form in which a value could leak into a log line. */
static void assert_absent_everywhere(cx_log_capture_t *cap, const char *value)
{
    char forms[6][256];
    size_t k = 0, n = strlen(value);
    snprintf(forms[k++], 256, "%s", value);
    /* URL-encoded */
    char *u = forms[k++];
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += (size_t)(isalnum((unsigned char)value[i]) || value[i] == '.' || value[i] == '-'
                          ? sprintf(u + o, "%c", value[i])
                          : sprintf(u + o, "%%%02X", (unsigned char)value[i]));
    /* JSON-escaped '@' and '+' as \u escapes */
    char *j = forms[k++];
    o = 0;
    for (size_t i = 0; i < n; i++)
        o += (size_t)(value[i] == '@' || value[i] == '+' ? sprintf(j + o, "\\u%04x", value[i])
                                                          : sprintf(j + o, "%c", value[i]));
    /* base64 */
    static const char *A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *b = forms[k++];
    o = 0;
    for (size_t i = 0; i + 2 < n; i += 3) {
        unsigned v = ((unsigned char)value[i] << 16) | ((unsigned char)value[i + 1] << 8) |
                     (unsigned char)value[i + 2];
        o += (size_t)sprintf(b + o, "%c%c%c%c", A[v >> 18], A[(v >> 12) & 63], A[(v >> 6) & 63],
                             A[v & 63]);
    }
    /* without '+' */
    if (value[0] == '+')
        snprintf(forms[k++], 256, "%s", value + 1);
    for (size_t f = 0; f < k; f++)
        if (cx_log_capture_contains(cap, forms[f])) {
            fprintf(stderr, "leaked form: %s\n", forms[f]);
            fail();
        }
}

static void test_logs_carry_required_fields_and_no_secrets_or_pii(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_DEVELOPMENT, 0);
    char *body = batch("acc-1", 0, 5);
    result_t r;
    post(fx, body, SECRET, &r);
    assert_int_equal(r.status, 200);
    post(fx, body, "wrong", &r); /* a rejected request logs too */
    size_t n = cx_log_capture_count(fx->cap);
    assert_true(n >= 7); /* 5 items + summary + rejection */
    static const char *const keys[] = {"\"ts\":", "\"level\":", "\"service\":", "\"connector\":",
                                       "\"version\":", "\"correlation_id\":", "\"tenant_id\":",
                                       "\"capability\":", "\"event_type\":", "\"dedupe_key\":",
                                       "\"dedupe_hit\":", "\"latency_ms\":", "\"outcome\":",
                                       "\"error_code\":", "\"upstream_status\":",
                                       "\"request_id\":", "\"integration_id\":",
                                       "\"error_class\":", "\"attempt\":"};
    int item_lines = 0;
    for (size_t i = 0; i < n; i++) {
        const char *line = cx_log_capture_line(fx->cap, i);
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            assert_non_null(strstr(line, keys[k]));
        if (strstr(line, "\"item handled\"")) {
            item_lines++;
            assert_non_null(strstr(line, "\"tenant_id\":\"acme\""));
            assert_non_null(strstr(line, "\"capability\":\"inbound_messages\""));
            assert_non_null(strstr(line, "\"dedupe_key\":\"dm:test:acc-1:msg:m"));
        }
    }
    assert_int_equal(item_lines, 5);
    assert_false(cx_log_capture_contains(fx->cap, SECRET));
    assert_false(cx_log_capture_contains(fx->cap, "write to"));
    assert_false(cx_log_capture_contains(fx->cap, "\"items\":["));
    assert_absent_everywhere(fx->cap, PHONE);
    assert_absent_everywhere(fx->cap, EMAIL);
    free(body);
    fx_free(fx);
}

static void test_staging_with_missing_secret_refuses_to_start(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_STAGING, 1);
    char path[600];
    snprintf(path, sizeof path, "%s/test/secret", fx->secrets);
    assert_int_equal(unlink(path), 0);
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_runtime_reload_secrets(fx->rt, &err), 0);
    cx_log_capture_clear(fx->cap);
    assert_int_equal(cx_runtime_boot(fx->rt, &err), CX_ECONFIG);
    assert_non_null(strstr(err.message, "missing secret test/secret"));
    assert_int_equal(cx_log_capture_count(fx->cap), 1);
    assert_non_null(strstr(cx_log_capture_line(fx->cap, 0), "missing secret test/secret"));
    fx_free(fx);
}

static void test_staging_boot_validated(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_STAGING, 1);
    cx_error_t err;
    cx_log_capture_clear(fx->cap);
    assert_int_equal(cx_runtime_boot(fx->rt, &err), 0);
    assert_int_equal(cx_log_capture_count(fx->cap), 1);
    assert_non_null(strstr(cx_log_capture_line(fx->cap, 0), "boot validated"));
    fx_free(fx);
}

static void test_embedded_store_refused_in_production(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_PRODUCTION, 0);
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_runtime_boot(fx->rt, &err), CX_ECONFIG);
    assert_non_null(strstr(err.message, "shared dedupe store"));
    fx_free(fx);
}

static void test_handshake_get(void **state)
{
    (void)state;
    fx_t *fx = fx_new(CX_ENV_DEVELOPMENT, 0);
    cx_request_t req = {"GET", "/webhook/test", "challenge=abc%20123", NULL, 0, "", 0};
    char mem[256];
    cx_buf_t b;
    cx_buf_init_fixed(&b, mem, sizeof mem);
    cx_response_t resp = {0, NULL, &b};
    cx_runtime_handle(fx->rt, "test", &req, &resp);
    assert_int_equal(resp.status, 200);
    assert_string_equal(b.data, "abc 123");
    fx_free(fx);
}

/* ---- cx_runtime_handle_many ------------------------------------------------------------------ */

/* A store that counts the calls it forwards to a real one. */
typedef struct {
    cx_dedupe_store_t base;
    cx_dedupe_store_t *inner;
    int claims, completes, releases, items_claimed;
} counting_store_t;

static int cs_claim(cx_dedupe_store_t *s, cx_dedupe_item_t *it, size_t n, uint32_t ttl,
                    cx_error_t *err)
{
    counting_store_t *c = (counting_store_t *)s;
    c->claims++;
    c->items_claimed += (int)n;
    return c->inner->ops->claim(c->inner, it, n, ttl, err);
}
static int cs_complete(cx_dedupe_store_t *s, cx_dedupe_item_t *it, size_t n, cx_error_t *err)
{
    counting_store_t *c = (counting_store_t *)s;
    c->completes++;
    return c->inner->ops->complete(c->inner, it, n, err);
}
static int cs_release(cx_dedupe_store_t *s, cx_dedupe_item_t *it, size_t n, cx_error_t *err)
{
    counting_store_t *c = (counting_store_t *)s;
    c->releases++;
    return c->inner->ops->release(c->inner, it, n, err);
}
static int cs_ping(cx_dedupe_store_t *s, cx_error_t *err)
{
    counting_store_t *c = (counting_store_t *)s;
    return c->inner->ops->ping(c->inner, err);
}
static void cs_destroy(cx_dedupe_store_t *s)
{
    counting_store_t *c = (counting_store_t *)s;
    cx_dedupe_store_destroy(c->inner);
    free(c);
}
static int cs_renew(cx_dedupe_store_t *s, cx_dedupe_item_t *it, size_t n, uint32_t ttl,
                    cx_error_t *err)
{
    counting_store_t *c = (counting_store_t *)s;
    return c->inner->ops->renew(c->inner, it, n, ttl, err);
}
static const cx_dedupe_store_ops_t counting_ops = {cs_claim,   cs_complete, cs_release,
                                                   cs_ping,    cs_destroy,  cs_renew};

/* fx_new with the store wrapped in a counting_store_t (the embedded one, or Redis). */
static fx_t *fx_counting(int redis, counting_store_t **out)
{
    fx_t *fx = fx_new(redis ? CX_ENV_PRODUCTION : CX_ENV_DEVELOPMENT, redis);
    cx_error_t err;
    counting_store_t *c = calloc(1, sizeof *c);
    if (redis) {
        c->inner = fx->store;
    } else {
        assert_int_equal(cx_dedupe_store_embedded("development", &c->inner, &err), 0);
    }
    c->base = *c->inner;
    c->base.ops = &counting_ops;
    fx->store = &c->base;
    /* A runtime over the counting store, replacing the one fx_new made. */
    cx_runtime_destroy(fx->rt);
    fx_runtime(fx, redis ? CX_ENV_PRODUCTION : CX_ENV_DEVELOPMENT);
    *out = c;
    return fx;
}

typedef struct {
    char sig[80];
    cx_header_t h[1];
    cx_request_t req;
    cx_buf_t b;
    cx_response_t resp;
    result_t out;
} exch_t;

static void exch_init(exch_t *e, const char *body, const char *key, cx_exchange_t *ex)
{
    cx_test_sign(key, body, strlen(body), e->sig);
    e->h[0] = (cx_header_t){"X-Test-Signature", e->sig};
    e->req = (cx_request_t){"POST", "/webhook/test", "", e->h, 1, body, strlen(body)};
    cx_buf_init_fixed(&e->b, e->out.body, sizeof e->out.body);
    e->resp = (cx_response_t){0, NULL, &e->b};
    *ex = (cx_exchange_t){"test", &e->req, &e->resp};
}

/* Four requests in one call get the answers they get one by one, and the store sees one claim
 * call for all of them, one completion and one release. */
static void handle_many(int redis)
{
    counting_store_t *cs;
    fx_t *fx = fx_counting(redis, &cs);
    fx->hs.fail_once[14] = 1;
    char *a = batch("acc-1", 0, 10), *b = batch("acc-1", 10, 10), *c = batch("acc-1", 20, 10);
    const char *bad = "{\"account\":";
    static exch_t e[4];
    cx_exchange_t ex[4];
    exch_init(&e[0], a, SECRET, &ex[0]);
    exch_init(&e[1], b, SECRET, &ex[1]);
    exch_init(&e[2], c, "wrong-secret", &ex[2]);
    exch_init(&e[3], bad, SECRET, &ex[3]);
    assert_int_equal(cx_runtime_handle_many(fx->rt, ex, 4), 0);
    assert_int_equal(e[0].resp.status, 200);
    assert_non_null(strstr(e[0].out.body, "\"processed\":10,\"queued\":0,\"deduped\":0,\"failed\":0"));
    assert_int_equal(e[1].resp.status, 503);
    assert_non_null(strstr(e[1].out.body, "\"processed\":9,\"queued\":0,\"deduped\":0,\"failed\":1"));
    assert_int_equal(e[2].resp.status, 401);
    assert_int_equal(e[3].resp.status, 400);
    for (int i = 0; i < 20; i++)
        assert_int_equal(fx->hs.calls[i], 1);
    for (int i = 20; i < 30; i++)
        assert_int_equal(fx->hs.calls[i], 0);
    assert_int_equal(cs->claims, 1);
    assert_int_equal(cs->items_claimed, 20);
    assert_int_equal(cs->completes, 1);
    assert_int_equal(cs->releases, 1);

    /* The redelivery of the first two: all deduped but the failed one, which runs again. */
    exch_init(&e[0], a, SECRET, &ex[0]);
    exch_init(&e[1], b, SECRET, &ex[1]);
    assert_int_equal(cx_runtime_handle_many(fx->rt, ex, 2), 0);
    assert_int_equal(e[0].resp.status, 200);
    assert_non_null(strstr(e[0].out.body, "\"processed\":0,\"queued\":0,\"deduped\":10,\"failed\":0"));
    assert_int_equal(e[1].resp.status, 200);
    assert_non_null(strstr(e[1].out.body, "\"processed\":1,\"queued\":0,\"deduped\":9,\"failed\":0"));
    for (int i = 0; i < 20; i++)
        assert_int_equal(fx->hs.successes[i], 1);
    assert_int_equal(fx->hs.calls[14], 2);
    assert_int_equal(cs->claims, 2);
    assert_int_equal(cs->completes, 2);
    assert_int_equal(cs->releases, 1); /* nothing to release: no call */

    /* The same batch twice in one call: one request owns the items, the other finds them
     * in progress and is answered 503 (the provider redelivers it; it is then deduped). */
    char *d = batch("acc-1", 30, 10);
    exch_init(&e[0], d, SECRET, &ex[0]);
    exch_init(&e[1], d, SECRET, &ex[1]);
    assert_int_equal(cx_runtime_handle_many(fx->rt, ex, 2), 0);
    assert_int_equal(e[0].resp.status, 200);
    assert_int_equal(e[1].resp.status, 503);
    assert_non_null(strstr(e[1].out.body, "\"errorCode\":\"IN_PROGRESS\""));
    for (int i = 30; i < 40; i++)
        assert_int_equal(fx->hs.calls[i], 1);
    /* Bad arguments: nothing runs. */
    assert_int_equal(cx_runtime_handle_many(fx->rt, ex, 0), CX_EINVAL);
    assert_int_equal(cx_runtime_handle_many(fx->rt, ex, CX_HANDLE_MANY_MAX + 1), CX_EINVAL);
    free(a);
    free(b);
    free(c);
    free(d);
    fx_free(fx);
}

static void test_handle_many_embedded(void **state)
{
    (void)state;
    handle_many(0);
}

static void test_handle_many_redis(void **state)
{
    (void)state;
    handle_many(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_of_ten_then_replay_embedded),
        cmocka_unit_test(test_batch_of_ten_then_replay_redis),
        cmocka_unit_test(test_one_handler_failure_is_503_and_redelivery_completes_embedded),
        cmocka_unit_test(test_one_handler_failure_is_503_and_redelivery_completes_redis),
        cmocka_unit_test(test_permanent_handler_failure_answers_200),
        cmocka_unit_test(test_redis_stopped_between_claim_and_completion),
        cmocka_unit_test(test_redis_down_in_production_is_503_nothing_processed),
        cmocka_unit_test(test_bad_or_missing_signature_is_401_handler_never_called),
        cmocka_unit_test(test_previous_secret_accepted_and_sighup_reload),
        cmocka_unit_test(test_malformed_body_is_400),
        cmocka_unit_test(test_duplicate_key_body_is_400),
        cmocka_unit_test(test_invalid_item_fails_alone),
        cmocka_unit_test(test_unknown_account),
        cmocka_unit_test(test_duplicate_inside_one_batch),
        cmocka_unit_test(test_response_escapes_keys),
        cmocka_unit_test(test_key_over_the_store_limit_fails_alone),
        cmocka_unit_test(test_body_limit_is_413),
        cmocka_unit_test(test_logs_carry_required_fields_and_no_secrets_or_pii),
        cmocka_unit_test(test_staging_with_missing_secret_refuses_to_start),
        cmocka_unit_test(test_staging_boot_validated),
        cmocka_unit_test(test_embedded_store_refused_in_production),
        cmocka_unit_test(test_handshake_get),
        cmocka_unit_test(test_handle_many_embedded),
        cmocka_unit_test(test_handle_many_redis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
