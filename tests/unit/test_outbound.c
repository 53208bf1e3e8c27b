/* Outbound commands (cx/outbound.h): exactly-once sends through the intent store, against the
 * scriptable mock provider (a real libmicrohttpd server on loopback) and a real redis-server.
 *
 * The semantic tests run against both intent stores (embedded and Redis): send and replay,
 * invalid commands, 429 / 500 / 400 / timeout / dropped connection through the whole path,
 * the in-doubt rule and reconciliation, 8 concurrent threads, an expired lease. Then what
 * needs Redis: the value format, two processes x 8 threads (outbound_sender), a sender killed
 * with SIGKILL while the provider holds its request, WAIT for replicas (a real replica), and
 * the shared rate limiter. Then protection: rate limits and the circuit breaker. Every test
 * captures the logs and checks that no token, Authorization header or phone number is in
 * them. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cx/http.h"
#include "cx/log.h"
#include "cx/messaging/v1/messaging.cx.h"
#include "cx/metrics.h"
#include "cx/outbound.h"
#include "mock_provider.h"
#include "redis_server.h"
#include "stores/intent_internal.h"

#ifdef CX_WITH_REDIS
#include <hiredis/hiredis.h>
#endif

#define TOKEN "EAAG-SECRET-TOKEN-outbound-456"
#define PHONE "+14155550123"

static cx_mock_provider_t *g_mock;
static cx_test_redis_t g_redis;
#ifdef CX_WITH_REDIS
static int g_have_redis;
#endif
static int g_env_seq;

/* ---- Fixtures ------------------------------------------------------------------------------ */

typedef struct audit_rec_s {
    char action[32], outcome[32], key[160], pmid[64];
    int code;
} audit_rec_t;

typedef struct fx_s {
    int redis;
    char env[32];
    cx_intent_store_t *is;
    cx_outbound_limiter_t *rl;
    cx_http_client_t *http;
    cx_mock_sender_t sender;
    cx_outbound_t *ob;
    cx_log_capture_t *cap;
    cx_logger_t *lg;
    cx_metrics_t *reg;
    pthread_mutex_t amu;
    audit_rec_t audit[64];
    int naudit;
    int audit_rc;
    cx_arena_t arena;
    cx_error_t err;
    cx_outbound_result_t res;
} fx_t;

/* Options a test may change before the fixture builds its objects. */
typedef struct fxopt_s {
    uint32_t http_timeout_ms;
    uint32_t http_attempts;
    uint32_t lease_ms;
    uint32_t wait_ms;
    const cx_outbound_limits_t *limits;
    size_t n_limits;
    uint32_t rate_wait_max_ms;
    uint32_t breaker_threshold, breaker_open_ms;
    int with_limiter;
} fxopt_t;

static int audit_hook(void *ud, const cx_outbound_audit_t *a)
{
    fx_t *f = ud;
    pthread_mutex_lock(&f->amu);
    if (f->naudit < 64) {
        audit_rec_t *r = &f->audit[f->naudit++];
        snprintf(r->action, sizeof r->action, "%s", a->action);
        snprintf(r->outcome, sizeof r->outcome, "%s", a->outcome);
        snprintf(r->key, sizeof r->key, "%s", a->intent_key);
        snprintf(r->pmid, sizeof r->pmid, "%s", a->provider_message_id);
        r->code = a->code;
    }
    pthread_mutex_unlock(&f->amu);
    return f->audit_rc;
}

static fx_t *fixture(int redis, const fxopt_t *o)
{
    static const fxopt_t none;
    if (o == NULL)
        o = &none;
    fx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->redis = redis;
    snprintf(f->env, sizeof f->env, "ob%d", ++g_env_seq);
    cx_mock_provider_reset(g_mock);
    pthread_mutex_init(&f->amu, NULL);
    assert_int_equal(cx_log_capture_new(0, &f->cap), 0);
    cx_logger_config_t lc = {
        .service = "test", .level = CX_LOG_DEBUG, .sink = cx_log_capture_sink, .sink_ud = f->cap};
    assert_int_equal(cx_logger_new(&lc, &f->lg), 0);
    assert_int_equal(cx_metrics_new(NULL, &f->reg), 0);
    if (redis) {
        cx_redis_options_t ro = {
            .host = "127.0.0.1", .port = g_redis.port, .pool_size = 16, .command_timeout_ms = 2000};
        assert_int_equal(cx_intent_store_redis(f->env, &ro, NULL, &f->is, &f->err), 0);
        if (o->with_limiter)
            assert_int_equal(cx_outbound_limiter_redis(f->env, &ro, &f->rl, &f->err), 0);
    } else {
        assert_int_equal(cx_intent_store_embedded(f->env, 0, &f->is, &f->err), 0);
        if (o->with_limiter)
            assert_int_equal(cx_outbound_limiter_embedded(f->env, &f->rl, &f->err), 0);
    }
    cx_http_config_t hc = {.connector = "whatsapp",
                           .timeout_ms = o->http_timeout_ms ? o->http_timeout_ms : 3000,
                           .max_attempts = o->http_attempts ? o->http_attempts : 4,
                           .backoff_base_ms = 10,
                           .backoff_cap_ms = 40,
                           .allow_loopback_http = 1,
                           .logger = f->lg,
                           .metrics = f->reg};
    assert_int_equal(cx_http_client_new(&hc, &f->http, &f->err), 0);
    f->sender = (cx_mock_sender_t){
        .http = f->http, .base_url = cx_mock_provider_url(g_mock), .token = TOKEN};
    cx_outbound_config_t oc = {.intents = f->is,
                               .limiter = f->rl,
                               .limits = o->limits,
                               .n_limits = o->n_limits,
                               .rate_wait_max_ms = o->rate_wait_max_ms,
                               .breaker_threshold = o->breaker_threshold,
                               .breaker_open_ms = o->breaker_open_ms,
                               .lease_ms = o->lease_ms,
                               .wait_ms = o->wait_ms,
                               .audit = audit_hook,
                               .audit_ud = f,
                               .logger = f->lg,
                               .metrics = f->reg};
    assert_int_equal(cx_outbound_new(&oc, &f->ob, &f->err), 0);
    cx_arena_init(&f->arena, NULL, 1 << 20);
    return f;
}

/* Nothing secret in any captured log line. */
static void assert_logs_clean(fx_t *f)
{
    assert_false(cx_log_capture_contains(f->cap, TOKEN));
    assert_false(cx_log_capture_contains(f->cap, "SECRET"));
    assert_false(cx_log_capture_contains(f->cap, "Authorization"));
    assert_false(cx_log_capture_contains(f->cap, "authorization"));
    assert_false(cx_log_capture_contains(f->cap, "Bearer"));
    assert_false(cx_log_capture_contains(f->cap, "14155550123"));
    assert_false(cx_log_capture_contains(f->cap, "hello there"));
    /* nor provider message ids: a wamid is base64 of, among others, the recipient's number */
    assert_false(cx_log_capture_contains(f->cap, "wamid"));
}

static void fixture_free(fx_t *f)
{
    assert_logs_clean(f);
    cx_outbound_free(f->ob);
    cx_http_client_free(f->http);
    cx_outbound_limiter_destroy(f->rl);
    cx_intent_store_destroy(f->is);
    cx_logger_free(f->lg);
    cx_log_capture_free(f->cap);
    cx_metrics_free(f->reg);
    cx_arena_release(&f->arena);
    pthread_mutex_destroy(&f->amu);
    free(f);
}

/* A SendMessageCommand with its parts, ready to send. */
typedef struct cmd_s {
    cx_common_channel_ref_t ch;
    cx_messaging_text_content_t text;
    cx_messaging_send_message_command_t m;
    char cmid[64];
    char account[32];
    char to[32];
    cx_outbound_command_t c;
} cmd_t;

static void make_cmd(cmd_t *c, fx_t *f, const char *cmid)
{
    memset(c, 0, sizeof *c);
    snprintf(c->cmid, sizeof c->cmid, "%s", cmid);
    snprintf(c->account, sizeof c->account, "1065");
    snprintf(c->to, sizeof c->to, "%s", PHONE);
    cx_common_channel_ref_init(&c->ch);
    c->ch.channel = "whatsapp";
    c->ch.account_id = c->account;
    cx_messaging_text_content_init(&c->text);
    c->text.body = "hello there";
    cx_messaging_send_message_command_init(&c->m);
    c->m.channel = &c->ch;
    c->m.tenant_id = "t1";
    c->m.client_message_id = c->cmid;
    c->m.to = c->to;
    c->m.content_case = CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_TEXT;
    c->m.text = &c->text;
    c->c = (cx_outbound_command_t){.meta = &cx_messaging_send_message_command_meta,
                                   .msg = &c->m.base,
                                   .connector = "whatsapp",
                                   .account_id = c->account,
                                   .tenant_id = "t1",
                                   .correlation_id = "corr-ob",
                                   .actor = "user:42",
                                   .rate_pair = c->to,
                                   .result_meta = &cx_messaging_send_message_result_meta,
                                   .send = cx_mock_send,
                                   .send_ud = &f->sender};
}

static int send_cmd(fx_t *f, cmd_t *c)
{
    cx_error_clear(&f->err);
    return cx_outbound_send(f->ob, &c->c, &f->arena, &f->res, &f->err);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Requests the provider received carrying this intent key. */
static size_t received(const char *cmid)
{
    char key[128];
    snprintf(key, sizeof key, "\"biz_opaque_callback_data\":\"whatsapp:outbound:t1:%s\"", cmid);
    size_t n = 0;
    for (size_t i = 0;; i++) {
        const cx_mock_request_t *r = cx_mock_provider_request(g_mock, i);
        if (r == NULL)
            return n;
        n += r->body && strstr(r->body, key) != NULL;
    }
}

static uint64_t in_doubt_metric(fx_t *f)
{
    cx_counter_t *c = cx_metrics_counter(f->reg, "outbound_in_doubt_total", "x",
                                         (const char *[]){"connector", "capability", NULL});
    return cx_counter_value(c, (const char *[]){"whatsapp", "outbound_messages"});
}

static int has_audit(fx_t *f, const char *outcome)
{
    int n = 0;
    pthread_mutex_lock(&f->amu);
    for (int i = 0; i < f->naudit; i++)
        n += strcmp(f->audit[i].outcome, outcome) == 0;
    pthread_mutex_unlock(&f->amu);
    return n;
}

/* ---- Groups: each semantic test runs on the embedded store and on Redis -------------------- */

static int emb_state(void **state)
{
    *state = (void *)(intptr_t)0;
    return 0;
}

#ifdef CX_WITH_REDIS
static int redis_state(void **state)
{
    *state = (void *)(intptr_t)1;
    return g_have_redis ? 0 : -1;
}
#endif

#define REDIS_OF(state) ((int)(intptr_t) * (state))

/* ---- Send and replay ------------------------------------------------------------------------ */

static void test_send_then_replays_return_the_stored_result(void **state)
{
    fx_t *f = fixture(REDIS_OF(state), NULL);
    cmd_t c;
    make_cmd(&c, f, "c-1");
    assert_int_equal(send_cmd(f, &c), 0);
    assert_string_equal(f->res.intent_key, "whatsapp:outbound:t1:c-1");
    assert_int_equal(f->res.replayed, 0);
    assert_int_equal(f->res.state, CX_INTENT_DONE);
    assert_string_equal(f->res.intent.provider_message_id, "wamid.mock-1");
    assert_non_null(f->res.result);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(send_cmd(f, &c), 0);
        assert_int_equal(f->res.replayed, 1);
        assert_string_equal(f->res.intent.provider_message_id, "wamid.mock-1");
        /* the stored result comes back decoded */
        assert_non_null(f->res.result);
        const cx_messaging_send_message_result_t *r = (const void *)f->res.result;
        assert_string_equal(r->provider_message_id, "wamid.mock-1");
        assert_string_equal(r->client_message_id, "c-1");
    }
    assert_int_equal(cx_mock_provider_count(g_mock), 1);
    const cx_mock_request_t *rq = cx_mock_provider_request(g_mock, 0);
    assert_non_null(strstr(rq->body, "\"biz_opaque_callback_data\":\"whatsapp:outbound:t1:c-1\""));
    assert_int_equal(has_audit(f, "sent"), 1);
    assert_int_equal(has_audit(f, "replayed"), 5);
    assert_string_equal(f->audit[0].key, "whatsapp:outbound:t1:c-1");
    assert_string_equal(f->audit[0].pmid, "wamid.mock-1");
    assert_true(cx_log_capture_contains(f->cap, "\"dedupe_hit\":true"));
    fixture_free(f);
}

static void test_invalid_command_is_refused_before_claiming(void **state)
{
    fx_t *f = fixture(REDIS_OF(state), NULL);
    cmd_t c;
    make_cmd(&c, f, "c-inv");
    c.m.to = ""; /* required */
    assert_int_equal(send_cmd(f, &c), CX_EVALIDATION);
    assert_string_equal(f->err.path, "to");
    cx_intent_t *it = malloc(sizeof *it);
    assert_int_equal(cx_outbound_lookup(f->ob, "whatsapp:outbound:t1:c-inv", it, &f->err), 0);
    assert_int_equal(it->state, CX_INTENT_NONE);
    free(it);
    c.m.to = c.to;
    c.m.client_message_id = ""; /* the key cannot be built either */
    assert_int_not_equal(send_cmd(f, &c), 0);
    assert_int_equal(cx_mock_provider_count(g_mock), 0);
    assert_int_equal(has_audit(f, "invalid"), 2);
    fixture_free(f);
}

static void test_429_then_200_is_one_success_after_retry_after(void **state)
{
    fx_t *f = fixture(REDIS_OF(state), NULL);
    cmd_t c;
    make_cmd(&c, f, "c-429");
    cx_mock_push_status(g_mock, 429, NULL, "1");
    double t0 = mono_ms();
    assert_int_equal(send_cmd(f, &c), 0);
    assert_true(mono_ms() - t0 >= 990);
    assert_string_equal(f->res.intent.provider_message_id, "wamid.mock-2");
    assert_int_equal(send_cmd(f, &c), 0);
    assert_int_equal(f->res.replayed, 1);
    assert_int_equal(cx_mock_provider_count(g_mock), 2); /* the 429 and the one success */
    assert_int_equal(has_audit(f, "sent"), 1);
    fixture_free(f);
}

static void test_500_three_times_then_200_succeeds_within_attempts(void **state)
{
    fxopt_t o = {.http_attempts = 4};
    fx_t *f = fixture(REDIS_OF(state), &o);
    cmd_t c;
    make_cmd(&c, f, "c-500");
    cx_mock_step_t s = {.status = 500, .repeat = 3};
    cx_mock_provider_push(g_mock, &s);
    assert_int_equal(send_cmd(f, &c), 0);
    assert_string_equal(f->res.intent.provider_message_id, "wamid.mock-4");
    assert_int_equal(cx_mock_provider_count(g_mock), 4);
    fixture_free(f);
}

static void test_400_is_stored_as_failed_with_the_provider_code(void **state)
{
    fx_t *f = fixture(REDIS_OF(state), NULL);
    cmd_t c;
    make_cmd(&c, f, "c-400");
    cx_mock_push_status(g_mock, 400, NULL, NULL);
    assert_int_equal(send_cmd(f, &c), CX_EPROVIDER_REJECTED);
    assert_int_equal(f->res.state, CX_INTENT_FAILED);
    assert_string_equal(f->res.intent.provider_code, "131009");
    assert_int_equal(f->res.intent.http_status, 400);
    assert_int_equal(send_cmd(f, &c), CX_EPROVIDER_REJECTED);
    assert_int_equal(f->res.replayed, 1);
    assert_string_equal(f->res.intent.provider_code, "131009");
    assert_int_equal(cx_mock_provider_count(g_mock), 1);
    assert_int_equal(has_audit(f, "failed"), 1);
    fixture_free(f);
}

static void test_transient_failure_releases_the_claim_for_a_later_retry(void **state)
{
    fxopt_t o = {.http_attempts = 2};
    fx_t *f = fixture(REDIS_OF(state), &o);
    cmd_t c;
    make_cmd(&c, f, "c-503");
    cx_mock_step_t s = {.status = 503, .repeat = 2};
    cx_mock_provider_push(g_mock, &s);
    assert_int_equal(send_cmd(f, &c), CX_EPROVIDER);
    assert_int_equal(f->res.state, CX_INTENT_NONE);
    cx_intent_t *it = malloc(sizeof *it);
    assert_int_equal(cx_outbound_lookup(f->ob, f->res.intent_key, it, &f->err), 0);
    assert_int_equal(it->state, CX_INTENT_NONE);
    free(it);
    assert_int_equal(send_cmd(f, &c), 0); /* the caller's retry goes through */
    assert_int_equal(f->res.replayed, 0);
    assert_int_equal(cx_mock_provider_count(g_mock), 3);
    assert_int_equal(has_audit(f, "retry_later"), 1);
    fixture_free(f);
}

/* ---- In doubt -------------------------------------------------------------------------------- */

static void test_timeout_is_in_doubt_never_resent_and_reconciled_by_echo(void **state)
{
    fxopt_t o = {.http_timeout_ms = 300};
    fx_t *f = fixture(REDIS_OF(state), &o);
    cmd_t c;
    make_cmd(&c, f, "c-slow");
    cx_mock_push_delay(g_mock, 1200);
    assert_int_equal(send_cmd(f, &c), CX_EIN_DOUBT);
    assert_int_equal(f->res.state, CX_INTENT_IN_DOUBT);
    assert_int_equal(f->err.code, CX_EIN_DOUBT);
    assert_int_equal(in_doubt_metric(f), 1);
    assert_true(cx_log_capture_contains(f->cap, "\"error_code\":\"CX_EIN_DOUBT\""));
    for (int i = 0; i < 20; i++) {
        assert_int_equal(send_cmd(f, &c), CX_EIN_DOUBT);
        assert_int_equal(f->res.replayed, 1);
    }
    sleep_ms(1300); /* any resend would have arrived by now */
    assert_int_equal(received("c-slow"), 1);
    assert_int_equal(cx_mock_provider_count(g_mock), 1);
    assert_int_equal(in_doubt_metric(f), 1); /* replays are not new doubts */

    /* the provider's status webhook echoes the key: it did get the message */
    assert_int_equal(cx_outbound_reconcile(f->ob, "whatsapp:outbound:t1:c-slow", "wamid.echo-1",
                                           CX_INTENT_DONE, &f->err),
                     0);
    assert_int_equal(send_cmd(f, &c), 0);
    assert_int_equal(f->res.replayed, 1);
    assert_string_equal(f->res.intent.provider_message_id, "wamid.echo-1");
    /* a second echo changes nothing */
    assert_int_equal(cx_outbound_reconcile(f->ob, "whatsapp:outbound:t1:c-slow", "wamid.other",
                                           CX_INTENT_DONE, &f->err),
                     0);
    assert_int_equal(send_cmd(f, &c), 0);
    assert_string_equal(f->res.intent.provider_message_id, "wamid.echo-1");
    assert_int_equal(cx_mock_provider_count(g_mock), 1);
    assert_int_equal(has_audit(f, "reconciled"), 1);
    assert_int_equal(has_audit(f, "in_doubt"), 1);
    fixture_free(f);
}

static void test_dropped_reused_connection_after_body_is_in_doubt_sent_once(void **state)
{
    fx_t *f = fixture(REDIS_OF(state), NULL);
    cmd_t a, b;
    make_cmd(&a, f, "c-first");
    make_cmd(&b, f, "c-dropped");
    assert_int_equal(send_cmd(f, &a), 0); /* the kept-alive connection */
    cx_mock_push_close(g_mock, 0);
    assert_int_equal(send_cmd(f, &b), CX_EIN_DOUBT);
    for (int i = 0; i < 5; i++)
        assert_int_equal(send_cmd(f, &b), CX_EIN_DOUBT);
    sleep_ms(200);
    assert_int_equal(received("c-dropped"), 1);
    assert_int_equal(cx_mock_provider_request(g_mock, 0)->conn,
                     cx_mock_provider_request(g_mock, 1)->conn);
    fixture_free(f);
}

static void test_expired_lease_turns_in_doubt_and_is_never_sent(void **state)
{
    fx_t *f = fixture(REDIS_OF(state), NULL);
    cmd_t c;
    make_cmd(&c, f, "c-crash");
    /* a sender claimed and died: its `sending` stays until the lease runs out */
    cx_intent_t *it = malloc(sizeof *it);
    assert_int_equal(
        f->is->ops->claim(f->is, "whatsapp:outbound:t1:c-crash", 150, 3600, it, &f->err), 0);
    assert_int_equal(it->mine, 1);
    sleep_ms(250);
    assert_int_equal(send_cmd(f, &c), CX_EIN_DOUBT);
    assert_int_equal(f->res.state, CX_INTENT_IN_DOUBT);
    assert_int_equal(in_doubt_metric(f), 1);
    assert_int_equal(send_cmd(f, &c), CX_EIN_DOUBT);
    assert_int_equal(in_doubt_metric(f), 1);
    assert_int_equal(cx_mock_provider_count(g_mock), 0);
    assert_int_equal(cx_outbound_reconcile(f->ob, "whatsapp:outbound:t1:c-crash", NULL,
                                           CX_INTENT_FAILED, &f->err),
                     0);
    assert_int_equal(send_cmd(f, &c), CX_EPROVIDER_REJECTED);
    assert_int_equal(f->res.state, CX_INTENT_FAILED);
    assert_int_equal(
        cx_outbound_reconcile(f->ob, "whatsapp:outbound:t1:nope", "x", CX_INTENT_DONE, &f->err),
        CX_ENOTFOUND);
    free(it);
    fixture_free(f);
}

/* ---- Concurrency ----------------------------------------------------------------------------- */

typedef struct conc_s {
    fx_t *f;
    pthread_barrier_t *b;
    int rc, replayed;
    char pmid[64];
} conc_t;

static void *conc_main(void *arg)
{
    conc_t *t = arg;
    cmd_t c;
    make_cmd(&c, t->f, "c-same");
    cx_outbound_result_t *res = malloc(sizeof *res);
    cx_arena_t arena;
    cx_arena_init(&arena, NULL, 1 << 20);
    cx_error_t err;
    cx_error_clear(&err);
    pthread_barrier_wait(t->b);
    t->rc = cx_outbound_send(t->f->ob, &c.c, &arena, res, &err);
    t->replayed = res->replayed;
    snprintf(t->pmid, sizeof t->pmid, "%.63s", res->intent.provider_message_id);
    cx_arena_release(&arena);
    free(res);
    return NULL;
}

static void test_eight_threads_same_command_one_request_same_id(void **state)
{
    fx_t *f = fixture(REDIS_OF(state), NULL);
    cx_mock_step_t s = {.status = 200, .delay_ms = 300}; /* the owner's call takes a while */
    cx_mock_provider_push(g_mock, &s);
    pthread_barrier_t b;
    pthread_barrier_init(&b, NULL, 8);
    conc_t t[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        t[i] = (conc_t){.f = f, .b = &b};
        pthread_create(&th[i], NULL, conc_main, &t[i]);
    }
    int fresh = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].rc, 0);
        assert_string_equal(t[i].pmid, "wamid.mock-1");
        fresh += !t[i].replayed;
    }
    pthread_barrier_destroy(&b);
    assert_int_equal(fresh, 1);
    assert_int_equal(cx_mock_provider_count(g_mock), 1);
    fixture_free(f);
}

/* ---- Redis only ---------------------------------------------------------------------------- */

#ifdef CX_WITH_REDIS
static redisReply *raw(const char *fmt, const char *a, const char *b)
{
    redisContext *c = redisConnect("127.0.0.1", g_redis.port);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisReply *r = b ? redisCommand(c, fmt, a, b) : redisCommand(c, fmt, a);
    redisFree(c);
    assert_non_null(r);
    return r;
}

static void test_redis_values_are_versioned_and_expire(void **state)
{
    (void)state;
    fx_t *f = fixture(1, NULL);
    cmd_t c;
    make_cmd(&c, f, "c-fmt");
    assert_int_equal(send_cmd(f, &c), 0);
    char key[160];
    snprintf(key, sizeof key, "cx:%s:intent:whatsapp:outbound:t1:c-fmt", f->env);
    redisReply *r = raw("GET %s", key, NULL);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(strncmp(r->str, "v1|done|", 8), 0);
    assert_non_null(strstr(r->str, "|12:wamid.mock-1|"));
    assert_null(strstr(r->str, "14155550123"));
    freeReplyObject(r);
    r = raw("TTL %s", key, NULL);
    assert_true(r->integer > 600000 && r->integer <= 604800); /* the schema's 7 days */
    freeReplyObject(r);
    /* a value of a later format is in doubt: never sent, never called done */
    cmd_t d;
    make_cmd(&d, f, "c-v2");
    snprintf(key, sizeof key, "cx:%s:intent:whatsapp:outbound:t1:c-v2", f->env);
    freeReplyObject(raw("SET %s %s", key, "v2|done|whatever"));
    assert_int_equal(send_cmd(f, &d), CX_EIN_DOUBT);
    assert_int_equal(cx_mock_provider_count(g_mock), 1);
    fixture_free(f);
}

/* Runs outbound_sender processes; returns their stdout lines joined. */
typedef struct proc_s {
    pid_t pid;
    FILE *out;
    int start_fd;
} proc_t;

static void proc_spawn(proc_t *p, const char *env, const char *cmid, const char *threads,
                       const char *lease_ms, const char *wait_ms)
{
    int start[2], out[2];
    assert_int_equal(pipe(start), 0);
    assert_int_equal(pipe(out), 0);
    char port[16];
    snprintf(port, sizeof port, "%d", g_redis.port);
    const char *argv[] = {CX_OUTBOUND_SENDER_PATH,
                          "--redis-port",
                          port,
                          "--env",
                          env,
                          "--url",
                          cx_mock_provider_url(g_mock),
                          "--cmid",
                          cmid,
                          "--threads",
                          threads,
                          "--lease-ms",
                          lease_ms,
                          "--wait-ms",
                          wait_ms,
                          NULL};
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        dup2(start[0], 0);
        dup2(out[1], 1);
        close(start[1]);
        close(out[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(start[0]);
    close(out[1]);
    p->start_fd = start[1];
    p->out = fdopen(out[0], "r");
    char line[64];
    assert_non_null(fgets(line, sizeof line, p->out));
    assert_string_equal(line, "ready\n");
}

static void proc_go(proc_t *p)
{
    close(p->start_fd);
    p->start_fd = -1;
}

/* Waits for the process and collects its result lines into ids (pmid per line). */
static int proc_finish(proc_t *p, char ids[][64], char codes[][32], int *replayed, int max)
{
    int n = 0;
    char line[256];
    while (n < max && fgets(line, sizeof line, p->out)) {
        int idx, rep;
        char code[32], st[32], id[64];
        if (sscanf(line, "result %d %31s %d %31s %63s", &idx, code, &rep, st, id) == 5) {
            snprintf(ids[n], 64, "%s", id);
            snprintf(codes[n], 32, "%s", code);
            replayed[n] = rep;
            n++;
        }
    }
    fclose(p->out);
    int st;
    assert_int_equal(waitpid(p->pid, &st, 0), p->pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return n;
}

static void test_redis_two_processes_eight_threads_one_request_same_id(void **state)
{
    (void)state;
    fx_t *f = fixture(1, NULL);
    cx_mock_step_t s = {.status = 200, .delay_ms = 300};
    cx_mock_provider_push(g_mock, &s);
    proc_t p[2];
    for (int i = 0; i < 2; i++)
        proc_spawn(&p[i], f->env, "c-procs", "8", "120000", "15000");
    for (int i = 0; i < 2; i++)
        proc_go(&p[i]);
    char ids[16][64], codes[16][32];
    int rep[16], n = 0;
    for (int i = 0; i < 2; i++)
        n += proc_finish(&p[i], ids + n, codes + n, rep + n, 16 - n);
    assert_int_equal(n, 16);
    int fresh = 0;
    for (int i = 0; i < n; i++) {
        assert_string_equal(codes[i], "CX_OK");
        assert_string_equal(ids[i], ids[0]);
        fresh += !rep[i];
    }
    assert_int_equal(fresh, 1);
    assert_string_equal(ids[0], "wamid.mock-1");
    assert_int_equal(cx_mock_provider_count(g_mock), 1);
    assert_int_equal(received("c-procs"), 1);
    fixture_free(f);
}

static void test_redis_sender_killed_after_provider_got_it_is_in_doubt_on_restart(void **state)
{
    (void)state;
    fx_t *f = fixture(1, NULL);
    cx_mock_push_delay(g_mock, 3000); /* the provider holds the request */
    proc_t p;
    proc_spawn(&p, f->env, "c-killed", "1", "1000", "10000");
    proc_go(&p);
    assert_int_equal(cx_mock_provider_wait_count(g_mock, 1, 5000), 0);
    kill(p.pid, SIGKILL); /* after the provider received it, before the result was stored */
    int st;
    assert_int_equal(waitpid(p.pid, &st, 0), p.pid);
    assert_true(WIFSIGNALED(st));
    fclose(p.out);
    cx_intent_t *it = malloc(sizeof *it);
    assert_int_equal(cx_outbound_lookup(f->ob, "whatsapp:outbound:t1:c-killed", it, &f->err), 0);
    assert_int_equal(it->state, CX_INTENT_SENDING);

    /* restart: the same command again, from a new process */
    char ids[1][64], codes[1][32];
    int rep[1];
    proc_t q;
    proc_spawn(&q, f->env, "c-killed", "1", "1000", "10000");
    proc_go(&q);
    assert_int_equal(proc_finish(&q, ids, codes, rep, 1), 1);
    assert_string_equal(codes[0], "CX_EIN_DOUBT");
    assert_int_equal(received("c-killed"), 1); /* never resent */
    assert_int_equal(cx_outbound_lookup(f->ob, "whatsapp:outbound:t1:c-killed", it, &f->err), 0);
    assert_int_equal(it->state, CX_INTENT_IN_DOUBT);

    /* the provider's status echo arrives: resolved */
    assert_int_equal(cx_outbound_reconcile(f->ob, "whatsapp:outbound:t1:c-killed",
                                           "wamid.from-echo", CX_INTENT_DONE, &f->err),
                     0);
    proc_spawn(&q, f->env, "c-killed", "1", "1000", "10000");
    proc_go(&q);
    assert_int_equal(proc_finish(&q, ids, codes, rep, 1), 1);
    assert_string_equal(codes[0], "CX_OK");
    assert_string_equal(ids[0], "wamid.from-echo");
    assert_int_equal(rep[0], 1);
    assert_int_equal(received("c-killed"), 1);
    free(it);
    fixture_free(f);
}

static void test_redis_wait_for_replicas_before_sending(void **state)
{
    (void)state;
    cx_test_redis_t rep;
    assert_int_equal(cx_test_redis_start(&rep, NULL), 0);
    char line[64], reply[64];
    /* a disk-based first sync (the master streams commands as soon as it is sent) */
    cx_test_redis_command(&g_redis, "CONFIG SET repl-diskless-sync no", reply, sizeof reply);
    snprintf(line, sizeof line, "REPLICAOF 127.0.0.1 %d", g_redis.port);
    assert_int_equal(cx_test_redis_command(&rep, line, reply, sizeof reply), 0);
    fx_t *f = fixture(1, NULL);
    cx_redis_options_t ro = {.host = "127.0.0.1", .port = g_redis.port, .command_timeout_ms = 3000};
    cx_intent_redis_options_t w1 = {.wait_replicas = 1, .wait_timeout_ms = 500};
    cx_intent_redis_options_t w2 = {.wait_replicas = 2, .wait_timeout_ms = 200};
    cx_intent_store_t *s1, *s2;
    assert_int_equal(cx_intent_store_redis(f->env, &ro, &w1, &s1, &f->err), 0);
    assert_int_equal(cx_intent_store_redis(f->env, &ro, &w2, &s2, &f->err), 0);
    /* wait for the replica to finish its first sync */
    cx_intent_t *it = malloc(sizeof *it);
    int ok = 0;
    for (int i = 0; i < 100 && !ok; i++) {
        char k[32];
        snprintf(k, sizeof k, "probe:%d", i);
        cx_error_clear(&f->err);
        ok = s1->ops->claim(s1, k, 1000, 60, it, &f->err) == 0;
        if (!ok)
            sleep_ms(100);
    }
    assert_true(ok);

    cx_outbound_t *ob1, *ob2;
    cx_outbound_config_t oc = {.intents = s1, .logger = f->lg};
    assert_int_equal(cx_outbound_new(&oc, &ob1, &f->err), 0);
    oc.intents = s2;
    assert_int_equal(cx_outbound_new(&oc, &ob2, &f->err), 0);
    cmd_t c;
    make_cmd(&c, f, "c-wait");
    /* one replica acknowledges: sent */
    int src = cx_outbound_send(ob1, &c.c, &f->arena, &f->res, &f->err);
    if (src != 0) {
        /* diagnostics: where each side of the replication link is */
        for (int k = 0; k < 2; k++) {
            redisContext *x = redisConnect("127.0.0.1", k ? rep.port : g_redis.port);
            redisReply *y = redisCommand(x, "INFO replication");
            fprintf(stderr, "---- %s\n%s\n", k ? "replica" : "master", y ? y->str : "?");
            freeReplyObject(y);
            redisFree(x);
        }
        fail_msg("send with WAIT 1: %s: %s", cx_err_name(src), f->err.message);
    }
    assert_int_equal(cx_mock_provider_count(g_mock), 1);
    /* two are required and only one exists: withdrawn before the provider is called */
    make_cmd(&c, f, "c-wait2");
    cx_error_clear(&f->err);
    assert_int_equal(cx_outbound_send(ob2, &c.c, &f->arena, &f->res, &f->err), CX_EUNAVAILABLE);
    assert_int_equal(cx_mock_provider_count(g_mock), 1);
    assert_int_equal(s2->ops->get(s2, "whatsapp:outbound:t1:c-wait2", it, &f->err), 0);
    assert_int_equal(it->state, CX_INTENT_NONE);
    /* the replica holds the intent that was sent */
    redisContext *rc = redisConnect("127.0.0.1", rep.port);
    assert_non_null(rc);
    redisReply *r = redisCommand(rc, "GET cx:%s:intent:whatsapp:outbound:t1:c-wait", f->env);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(strncmp(r->str, "v1|", 3), 0);
    freeReplyObject(r);
    redisFree(rc);
    free(it);
    cx_outbound_free(ob1);
    cx_outbound_free(ob2);
    cx_intent_store_destroy(s1);
    cx_intent_store_destroy(s2);
    fixture_free(f);
    cx_test_redis_destroy(&rep);
}

static void test_redis_rate_limit_is_shared_between_processes(void **state)
{
    (void)state;
    cx_error_t err;
    cx_error_clear(&err);
    cx_redis_options_t ro = {.host = "127.0.0.1", .port = g_redis.port};
    cx_outbound_limiter_t *a, *b;
    char env[32];
    snprintf(env, sizeof env, "rl%d", ++g_env_seq);
    assert_int_equal(cx_outbound_limiter_redis(env, &ro, &a, &err), 0);
    assert_int_equal(cx_outbound_limiter_redis(env, &ro, &b, &err), 0);
    cx_outbound_bucket_t bk[2] = {{"p:whatsapp", 1000, 1000, 1}, {"a:whatsapp:1065", 1, 2, 1}};
    uint32_t wait = 0;
    assert_int_equal(a->ops->take(a, bk, 2, &wait, &err), 0);
    assert_int_equal(b->ops->take(b, bk, 2, &wait, &err), 0);
    assert_int_equal(a->ops->take(a, bk, 2, &wait, &err), CX_ERATE_LIMITED);
    assert_true(wait > 0 && wait <= 1000);
    assert_int_equal(b->ops->take(b, bk, 2, &wait, &err), CX_ERATE_LIMITED);
    /* a refusal takes from no bucket: the provider bucket still has its tokens */
    redisReply *r = raw("HGET cx:%s:outlimit:p:whatsapp t", env, NULL);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_true(atof(r->str) > 997.5);
    freeReplyObject(r);
    sleep_ms(1050);
    assert_int_equal(b->ops->take(b, bk, 2, &wait, &err), 0);
    cx_outbound_limiter_destroy(a);
    cx_outbound_limiter_destroy(b);
}
#endif

/* ---- Protection (both limiters) ---------------------------------------------------------------
 */

static void test_account_rate_limit_refuses_then_waits(void **state)
{
    cx_outbound_limits_t lim = {.connector = "whatsapp", .account = {.per_second = 1, .burst = 2}};
    fxopt_t o = {.limits = &lim, .n_limits = 1, .with_limiter = 1};
    fx_t *f = fixture(REDIS_OF(state), &o);
    cmd_t c;
    char id[16];
    for (int i = 0; i < 2; i++) {
        snprintf(id, sizeof id, "c-rl%d", i);
        make_cmd(&c, f, id);
        assert_int_equal(send_cmd(f, &c), 0);
    }
    make_cmd(&c, f, "c-rl2");
    assert_int_equal(send_cmd(f, &c), CX_ERATE_LIMITED);
    assert_true(f->res.retry_after_ms > 0 && f->res.retry_after_ms <= 1000);
    assert_int_equal(f->res.state, CX_INTENT_NONE); /* released: the caller may retry */
    assert_int_equal(cx_mock_provider_count(g_mock), 2);
    assert_int_equal(has_audit(f, "rate_limited"), 1);
    sleep_ms(f->res.retry_after_ms + 20);
    assert_int_equal(send_cmd(f, &c), 0);
    assert_int_equal(cx_mock_provider_count(g_mock), 3);
    fixture_free(f);

    /* with a wait budget the send is delayed, not refused */
    o.rate_wait_max_ms = 2000;
    f = fixture(REDIS_OF(state), &o);
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "c-rw%d", i);
        make_cmd(&c, f, id);
        assert_int_equal(send_cmd(f, &c), 0);
    }
    assert_int_equal(cx_mock_provider_count(g_mock), 3);
    fixture_free(f);
}

static void test_pair_rate_limit_is_per_recipient(void **state)
{
    cx_outbound_limits_t lim = {.connector = NULL, .pair = {.per_second = 0.1, .burst = 1}};
    fxopt_t o = {.limits = &lim, .n_limits = 1, .with_limiter = 1};
    fx_t *f = fixture(REDIS_OF(state), &o);
    cmd_t c;
    make_cmd(&c, f, "c-p1");
    assert_int_equal(send_cmd(f, &c), 0);
    make_cmd(&c, f, "c-p2"); /* same number pair */
    assert_int_equal(send_cmd(f, &c), CX_ERATE_LIMITED);
    make_cmd(&c, f, "c-p3");
    snprintf(c.to, sizeof c.to, "+14155550999"); /* another recipient */
    assert_int_equal(send_cmd(f, &c), 0);
#ifdef CX_WITH_REDIS
    if (f->redis) {
        redisReply *r = raw("KEYS cx:%s:outlimit:*", f->env, NULL);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        assert_int_equal(r->elements, 2);
        for (size_t i = 0; i < r->elements; i++)
            assert_null(strstr(r->element[i]->str, "4155550"));
        freeReplyObject(r);
    }
#endif
    fixture_free(f);
}

static void test_breaker_opens_on_persistent_429_and_closes_by_probe(void **state)
{
    fxopt_t o = {.http_attempts = 1, .breaker_threshold = 3, .breaker_open_ms = 1000};
    fx_t *f = fixture(REDIS_OF(state), &o);
    cx_mock_step_t s = {.status = 429, .repeat = 3};
    cx_mock_provider_push(g_mock, &s);
    cmd_t c;
    char id[16];
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "c-b%d", i);
        make_cmd(&c, f, id);
        assert_int_equal(send_cmd(f, &c), CX_ERATE_LIMITED);
    }
    assert_int_equal(cx_outbound_breaker_state(f->ob, "whatsapp", "1065"), CX_BREAKER_OPEN);
    assert_int_equal(cx_outbound_breaker_state(f->ob, "whatsapp", "other"), CX_BREAKER_CLOSED);
    make_cmd(&c, f, "c-b3");
    assert_int_equal(send_cmd(f, &c), CX_ECIRCUIT_OPEN);
    assert_true(f->res.retry_after_ms > 0 && f->res.retry_after_ms <= 1000);
    assert_int_equal(f->res.state, CX_INTENT_NONE);
    assert_int_equal(cx_mock_provider_count(g_mock), 3); /* refused without calling */
    /* the probe after the open period: 429 again -> open for twice as long */
    sleep_ms(1100);
    cx_mock_push_status(g_mock, 429, NULL, NULL);
    assert_int_equal(send_cmd(f, &c), CX_ERATE_LIMITED);
    assert_int_equal(cx_outbound_breaker_state(f->ob, "whatsapp", "1065"), CX_BREAKER_OPEN);
    assert_int_equal(send_cmd(f, &c), CX_ECIRCUIT_OPEN);
    assert_true(f->res.retry_after_ms > 1000); /* doubled */
    sleep_ms(f->res.retry_after_ms + 50);
    /* the next probe succeeds: closed */
    assert_int_equal(send_cmd(f, &c), 0);
    assert_int_equal(cx_outbound_breaker_state(f->ob, "whatsapp", "1065"), CX_BREAKER_CLOSED);
    make_cmd(&c, f, "c-b4");
    assert_int_equal(send_cmd(f, &c), 0);
    assert_int_equal(has_audit(f, "circuit_open"), 2);
    assert_int_equal(cx_mock_provider_count(g_mock), 6);
    cx_buf_t b;
    cx_buf_init(&b, 1 << 20);
    assert_int_equal(cx_metrics_render(f->reg, &b), 0);
    assert_non_null(strstr(b.data, "error_code=\"CX_ECIRCUIT_OPEN\"} 2"));
    cx_buf_free(&b);
    fixture_free(f);
}

static void test_breaker_opens_on_401(void **state)
{
    fxopt_t o = {.breaker_threshold = 2, .breaker_open_ms = 10000};
    fx_t *f = fixture(REDIS_OF(state), &o);
    cx_mock_step_t s = {.status = 401, .repeat = 2};
    cx_mock_provider_push(g_mock, &s);
    cmd_t c;
    make_cmd(&c, f, "c-a1");
    assert_int_equal(send_cmd(f, &c), CX_EPROVIDER_AUTH);
    make_cmd(&c, f, "c-a2");
    assert_int_equal(send_cmd(f, &c), CX_EPROVIDER_AUTH);
    make_cmd(&c, f, "c-a3");
    assert_int_equal(send_cmd(f, &c), CX_ECIRCUIT_OPEN);
    assert_int_equal(cx_mock_provider_count(g_mock), 2);
    fixture_free(f);
}

static void test_audit_failure_does_not_change_the_outcome(void **state)
{
    fx_t *f = fixture(REDIS_OF(state), NULL);
    f->audit_rc = CX_EIO;
    cmd_t c;
    make_cmd(&c, f, "c-aud");
    assert_int_equal(send_cmd(f, &c), 0);
    assert_true(cx_log_capture_contains(f->cap, "outbound audit record not written"));
    assert_int_equal(has_audit(f, "sent"), 1);
    fixture_free(f);
}

/* ---- Codec -------------------------------------------------------------------------------------
 */

static void test_intent_values_round_trip_with_separators_inside(void **state)
{
    (void)state;
    cx_intent_t *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    cx__intent_none(a);
    a->state = CX_INTENT_FAILED;
    a->code = CX_EPROVIDER_REJECTED;
    a->http_status = 400;
    snprintf(a->provider_message_id, sizeof a->provider_message_id, "id|with:bars|");
    snprintf(a->provider_code, sizeof a->provider_code, "13|1");
    a->result_len = (size_t)snprintf(a->result, sizeof a->result, "{\"x\":\"a|b\"}");
    static char tail[CX__INTENT_TAIL_MAX], v[CX__INTENT_VALUE_MAX];
    int tn = cx__intent_encode_tail(a, tail);
    assert_true(tn > 0);
    int n =
        cx__intent_encode("failed", "0123456789abcdef0123456789abcdef", 5, 0, tail, (size_t)tn, v);
    cx__intent_decode(v, (size_t)n, b);
    assert_int_equal(b->state, CX_INTENT_FAILED);
    assert_int_equal(b->code, CX_EPROVIDER_REJECTED);
    assert_int_equal(b->http_status, 400);
    assert_string_equal(b->provider_message_id, "id|with:bars|");
    assert_string_equal(b->provider_code, "13|1");
    assert_string_equal(b->result, "{\"x\":\"a|b\"}");
    assert_string_equal(b->token, "0123456789abcdef0123456789abcdef");
    for (int cut = 0; cut < n; cut++) { /* every truncation reads as in doubt, never done */
        cx__intent_decode(v, (size_t)cut, b);
        assert_true(b->state == CX_INTENT_IN_DOUBT || cut >= n - 12);
        assert_true(b->state != CX_INTENT_DONE);
    }
    cx__intent_decode("garbage", 7, b);
    assert_int_equal(b->state, CX_INTENT_IN_DOUBT);
    free(a);
    free(b);
}

static void test_bad_arguments_are_refused(void **state)
{
    (void)state;
    cx_error_t err;
    cx_error_clear(&err);
    cx_outbound_t *ob = NULL;
    assert_int_equal(cx_outbound_new(NULL, &ob, &err), CX_EINVAL);
    cx_intent_store_t *is = NULL;
    assert_int_equal(cx_intent_store_embedded("bad:env", 0, &is, &err), CX_EINVAL);
    assert_int_equal(cx_intent_store_embedded("ok", 0, &is, &err), 0);
    cx_intent_t *it = malloc(sizeof *it);
    assert_int_equal(is->ops->claim(is, "", 1000, 60, it, &err), CX_EINVAL);
    assert_int_equal(is->ops->claim(is, "k", 0, 60, it, &err), CX_EINVAL);
    cx_outbound_limits_t bad = {.account = {.per_second = -1}};
    cx_outbound_config_t oc = {.intents = is, .limits = &bad, .n_limits = 1};
    assert_int_equal(cx_outbound_new(&oc, &ob, &err), CX_EINVAL);
    oc.n_limits = 0;
    assert_int_equal(cx_outbound_new(&oc, &ob, &err), 0);
    cx_outbound_result_t *res = malloc(sizeof *res);
    cx_outbound_command_t cmd = {0};
    assert_int_equal(cx_outbound_send(ob, &cmd, NULL, res, &err), CX_EINVAL);
    free(res);
    free(it);
    cx_outbound_free(ob);
    cx_intent_store_destroy(is);
    cx_outbound_free(NULL);
    cx_intent_store_destroy(NULL);
}

/* ---- Main ---------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    return cx_mock_provider_start(&g_mock);
}

static int group_teardown(void **state)
{
    (void)state;
    cx_mock_provider_stop(g_mock);
    return 0;
}

#define BOTH(fn) cmocka_unit_test(fn)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    int failed = 0;
    const struct CMUnitTest semantic[] = {
        BOTH(test_send_then_replays_return_the_stored_result),
        BOTH(test_invalid_command_is_refused_before_claiming),
        BOTH(test_429_then_200_is_one_success_after_retry_after),
        BOTH(test_500_three_times_then_200_succeeds_within_attempts),
        BOTH(test_400_is_stored_as_failed_with_the_provider_code),
        BOTH(test_transient_failure_releases_the_claim_for_a_later_retry),
        BOTH(test_timeout_is_in_doubt_never_resent_and_reconciled_by_echo),
        BOTH(test_dropped_reused_connection_after_body_is_in_doubt_sent_once),
        BOTH(test_expired_lease_turns_in_doubt_and_is_never_sent),
        BOTH(test_eight_threads_same_command_one_request_same_id),
        BOTH(test_account_rate_limit_refuses_then_waits),
        BOTH(test_pair_rate_limit_is_per_recipient),
        BOTH(test_breaker_opens_on_persistent_429_and_closes_by_probe),
        BOTH(test_breaker_opens_on_401),
        BOTH(test_audit_failure_does_not_change_the_outcome),
    };
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(test_intent_values_round_trip_with_separators_inside),
        cmocka_unit_test(test_bad_arguments_are_refused),
    };
    if (group_setup(NULL) != 0)
        return 1;
    failed += cmocka_run_group_tests_name("outbound_embedded", semantic, emb_state, NULL);
    failed += cmocka_run_group_tests_name("outbound_plain", plain, NULL, NULL);
#ifdef CX_WITH_REDIS
    g_have_redis = cx_test_redis_start(&g_redis, NULL) == 0;
    failed += cmocka_run_group_tests_name("outbound_redis", semantic, redis_state, NULL);
    const struct CMUnitTest redis_only[] = {
        cmocka_unit_test(test_redis_values_are_versioned_and_expire),
        cmocka_unit_test(test_redis_two_processes_eight_threads_one_request_same_id),
        cmocka_unit_test(test_redis_sender_killed_after_provider_got_it_is_in_doubt_on_restart),
        cmocka_unit_test(test_redis_wait_for_replicas_before_sending),
        cmocka_unit_test(test_redis_rate_limit_is_shared_between_processes),
    };
    if (g_have_redis)
        failed += cmocka_run_group_tests_name("outbound_redis_only", redis_only, NULL, NULL);
    else
        failed++;
    cx_test_redis_destroy(&g_redis);
#endif
    group_teardown(NULL);
    return failed ? 1 : 0;
}
