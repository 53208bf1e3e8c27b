/* Queued mode end to end with a real redis-server (docs/durable-processing.md): the pipeline
 * acks durably queued items, workers run them with retries, dead letters and rate limits, and
 * worker processes (tests/stress/queue_worker.c) are killed with SIGKILL while they hold items.
 * Their handlers' effects (records created once per dedupe key) and runs (an O_APPEND file) are
 * counted outside the worker processes. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "cx/messaging/v1/messaging.cx.h"
#include "cx/runtime.h"
#include "redis_server.h"
#include "test_connector.h"

#define SECRET "s3cr3t-current"
#define MAX_ITEMS 12000

/* ---- handler state (handlers run on worker threads) ------------------------------------------ */

typedef struct {
    atomic_int calls[MAX_ITEMS];
    atomic_int successes[MAX_ITEMS];
    atomic_int fail_transient[MAX_ITEMS]; /* fail transiently this many more times */
    atomic_int fail_always[MAX_ITEMS];
    atomic_int block[MAX_ITEMS]; /* block in the handler until the gate opens */
    atomic_int max_attempt[MAX_ITEMS];
    double posted_ms[MAX_ITEMS];  /* when the item was posted (monotonic ms) */
    double started_ms[MAX_ITEMS]; /* when its successful run started */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gate_open;
    atomic_int blocked; /* handlers waiting at the gate */
} hstate_t;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int item_index(const cx_item_t *item)
{
    const Cx__Messaging__V1__DirectMessage *dm = (const void *)item->event->msg;
    return atoi(dm->message_id + 1);
}

static int handler(void *ud, const cx_item_t *item, cx_error_t *err)
{
    hstate_t *hs = ud;
    int i = item_index(item);
    double start = now_ms();
    atomic_fetch_add(&hs->calls[i], 1);
    if ((int)item->attempt > atomic_load(&hs->max_attempt[i]))
        atomic_store(&hs->max_attempt[i], (int)item->attempt);
    if (atomic_load(&hs->block[i])) {
        pthread_mutex_lock(&hs->mu);
        atomic_fetch_add(&hs->blocked, 1);
        while (!hs->gate_open)
            pthread_cond_wait(&hs->cv, &hs->mu);
        atomic_fetch_sub(&hs->blocked, 1);
        pthread_mutex_unlock(&hs->mu);
    }
    if (atomic_load(&hs->fail_always[i]))
        return cx_error_set(err, CX_EHANDLER_PERMANENT, NULL, "rejected by the test");
    if (atomic_load(&hs->fail_transient[i]) > 0) {
        atomic_fetch_sub(&hs->fail_transient[i], 1);
        return cx_error_set(err, CX_EHANDLER, NULL, "downstream timeout");
    }
    hs->started_ms[i] = start;
    atomic_fetch_add(&hs->successes[i], 1);
    return 0;
}

/* ---- fixture -----------------------------------------------------------------------------------
 */

typedef struct {
    char secrets[64];
    cx_test_redis_t redis;
    cx_log_capture_t *cap;
    cx_logger_t *log;
    cx_metrics_t *metrics;
    cx_dedupe_store_t *dedupe;
    cx_queue_t *queue;
    cx_dlq_t *dlq;
    cx_ratelimit_t *rl;
    cx_runtime_t *rt;
    hstate_t *hs;
} fx_t;

typedef struct {
    unsigned workers;
    const cx_rate_limit_rule_t *rules;
    size_t n_rules;
    int no_workers;
    int capture_logs;
} fx_opts_t;

static void make_secrets(fx_t *fx)
{
    strcpy(fx->secrets, "/tmp/cx-queued-XXXXXX");
    assert_non_null(mkdtemp(fx->secrets));
    char path[256];
    snprintf(path, sizeof path, "%s/test", fx->secrets);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/test/secret", fx->secrets);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(SECRET, f);
    fclose(f);
}

static cx_redis_options_t redis_opts(const fx_t *fx)
{
    cx_redis_options_t ro = {.host = "127.0.0.1",
                             .port = fx->redis.port,
                             .connect_timeout_ms = 300,
                             .command_timeout_ms = 600,
                             .pool_size = 12};
    return ro;
}

static void fx_runtime(fx_t *fx, const fx_opts_t *o)
{
    cx_error_t err;
    cx_error_clear(&err);
    static const unsigned char key[] = "pseudonym-key-for-tests";
    cx_runtime_config_t cfg = {.environment = CX_ENV_DEVELOPMENT,
                               .secrets_dir = fx->secrets,
                               .logger = fx->log,
                               .metrics = fx->metrics,
                               .dedupe = fx->dedupe,
                               .pseudonym_key = key,
                               .pseudonym_key_len = sizeof key - 1,
                               .handler_mode = CX_HANDLER_MODE_QUEUED,
                               .queue = fx->queue,
                               .dlq = fx->dlq,
                               .ratelimit = fx->rl,
                               .rate_limits = o->rules,
                               .n_rate_limits = o->n_rules,
                               .retry = {.base_delay_ms = 30, .max_delay_ms = 120},
                               .handler_deadline_ms = 1000,
                               .worker_claim_ttl_ms = 3000,
                               .workers = o->workers ? o->workers : 4};
    assert_int_equal(cx_runtime_create(&cfg, &fx->rt, &err), 0);
    assert_true(cx_runtime_queued(fx->rt));
    assert_int_equal(cx_runtime_add_connector(fx->rt, cx_test_connector(), &err), 0);
    assert_int_equal(cx_runtime_add_account(fx->rt, "test", "acc-1", "acme", &err), 0);
    assert_int_equal(cx_runtime_add_account(fx->rt, "test", "acc-2", "noisy", &err), 0);
    assert_int_equal(cx_runtime_on(fx->rt, "inbound_messages", handler, fx->hs, &err), 0);
    if (!o->no_workers)
        assert_int_equal(cx_runtime_start_workers(fx->rt, &err), 0);
}

static fx_t *fx_new(const fx_opts_t *o)
{
    fx_t *fx = calloc(1, sizeof *fx);
    fx->hs = calloc(1, sizeof *fx->hs);
    pthread_mutex_init(&fx->hs->mu, NULL);
    pthread_cond_init(&fx->hs->cv, NULL);
    make_secrets(fx);
    assert_int_equal(cx_test_redis_start(&fx->redis, NULL), 0);
    assert_int_equal(cx_log_capture_new(200000, &fx->cap), 0);
    cx_logger_config_t lc = {.service = "cx-test",
                             .level = o->capture_logs ? CX_LOG_DEBUG : CX_LOG_WARN,
                             .sink = cx_log_capture_sink,
                             .sink_ud = fx->cap};
    assert_int_equal(cx_logger_new(&lc, &fx->log), 0);
    assert_int_equal(cx_metrics_new(NULL, &fx->metrics), 0);
    cx_error_t err;
    cx_error_clear(&err);
    cx_redis_options_t ro = redis_opts(fx);
    assert_int_equal(cx_dedupe_store_redis("development", &ro, &fx->dedupe, &err), 0);
    assert_int_equal(cx_queue_redis("development", NULL, &ro, &fx->queue, &err), 0);
    assert_int_equal(cx_dlq_redis("development", NULL, &ro, &fx->dlq, &err), 0);
    if (o->n_rules)
        assert_int_equal(cx_ratelimit_redis("development", &ro, &fx->rl, &err), 0);
    fx_runtime(fx, o);
    return fx;
}

static void fx_free(fx_t *fx)
{
    cx_runtime_destroy(fx->rt);
    cx_queue_destroy(fx->queue);
    cx_dlq_destroy(fx->dlq);
    cx_ratelimit_destroy(fx->rl);
    cx_dedupe_store_destroy(fx->dedupe);
    cx_logger_free(fx->log);
    cx_log_capture_free(fx->cap);
    cx_metrics_free(fx->metrics);
    cx_test_redis_destroy(&fx->redis);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->secrets);
    assert_int_equal(system(cmd), 0);
    pthread_mutex_destroy(&fx->hs->mu);
    pthread_cond_destroy(&fx->hs->cv);
    free(fx->hs);
    free(fx);
}

/* A body with items m<from>..m<from+n-1>. */
static char *batch(const char *account, int from, int n)
{
    size_t cap = 128 + (size_t)n * 96;
    char *b = malloc(cap);
    size_t o = (size_t)snprintf(b, cap, "{\"account\":\"%s\",\"items\":[", account);
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(b + o, cap - o,
                              "%s{\"id\":\"m%d\",\"from\":\"+14155550123\","
                              "\"text\":\"hello\"}",
                              i ? "," : "", from + i);
    snprintf(b + o, cap - o, "]}");
    return b;
}

typedef struct {
    int status;
    char body[65536];
} result_t;

static void post_rt(cx_runtime_t *rt, const char *body, result_t *out)
{
    char sig[80];
    cx_test_sign(SECRET, body, strlen(body), sig);
    cx_header_t h[1] = {{"X-Test-Signature", sig}};
    cx_request_t req = {"POST", "/webhook/test", "", h, 1, body, strlen(body)};
    cx_buf_t b;
    cx_buf_init_fixed(&b, out->body, sizeof out->body);
    cx_response_t resp = {0, NULL, &b};
    assert_int_equal(cx_runtime_handle(rt, "test", &req, &resp), 0);
    out->status = resp.status;
}

static void post(fx_t *fx, const char *body, result_t *out)
{
    post_rt(fx->rt, body, out);
}

/* Waits until fn(ud) or timeout_ms; returns whether fn came true. */
static int wait_for(int (*fn)(void *), void *ud, int timeout_ms)
{
    double end = now_ms() + timeout_ms;
    while (!fn(ud)) {
        if (now_ms() > end)
            return 0;
        sleep_ms(5);
    }
    return 1;
}

typedef struct {
    hstate_t *hs;
    int from, n;
} range_t;

static int all_succeeded(void *ud)
{
    range_t *r = ud;
    for (int i = r->from; i < r->from + r->n; i++)
        if (atomic_load(&r->hs->successes[i]) < 1)
            return 0;
    return 1;
}

static int queue_drained(void *ud)
{
    fx_t *fx = ud;
    cx_queue_stats_t st;
    cx_error_t err;
    cx_error_clear(&err);
    return fx->queue->ops->stats(fx->queue, &st, &err) == 0 && st.depth == 0 && st.scheduled == 0;
}

static uint64_t counter(fx_t *fx, const char *name, const char *const *labels,
                        const char *const *values)
{
    return cx_counter_value(cx_metrics_counter(fx->metrics, name, "", labels), values);
}

/* ---- tests -------------------------------------------------------------------------------------
 */

static void test_transient_failures_are_retried_and_run_once(void **state)
{
    (void)state;
    fx_opts_t o = {.capture_logs = 1};
    fx_t *fx = fx_new(&o);
    atomic_store(&fx->hs->fail_transient[0], 2);
    char *body = batch("acc-1", 0, 1);
    result_t r;
    double t0 = now_ms();
    post(fx, body, &r);
    double ack_ms = now_ms() - t0;
    /* Acked at once: the item is durable, the failures are the runtime's business now. */
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"summary\":{\"total\":1,\"processed\":0,\"queued\":1,"
                                   "\"deduped\":0,\"failed\":0}"));
    assert_non_null(strstr(r.body, "\"outcome\":\"queued\""));
    range_t rg = {fx->hs, 0, 1};
    assert_true(wait_for(all_succeeded, &rg, 10000));
    assert_true(wait_for(queue_drained, fx, 5000));
    sleep_ms(300); /* nothing else may run */
    assert_int_equal(atomic_load(&fx->hs->calls[0]), 3);
    assert_int_equal(atomic_load(&fx->hs->successes[0]), 1);
    assert_int_equal(atomic_load(&fx->hs->max_attempt[0]), 3);
    assert_int_equal(counter(fx, "events_retried_total",
                             (const char *[]){"connector", "capability", NULL},
                             (const char *[]){"test", "inbound_messages"}),
                     2);
    assert_int_equal(counter(fx, "events_processed_total",
                             (const char *[]){"connector", "capability", NULL},
                             (const char *[]){"test", "inbound_messages"}),
                     1);
    /* Logs carry the attempt. */
    assert_true(cx_log_capture_contains(fx->cap, "\"outcome\":\"retry\""));
    assert_true(cx_log_capture_contains(fx->cap, "\"attempt\":2,"));
    assert_true(cx_log_capture_contains(fx->cap, "\"outcome\":\"processed\""));
    assert_true(cx_log_capture_contains(fx->cap, "\"attempt\":3,"));
    /* A provider duplicate after completion is deduped. */
    post(fx, body, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"queued\":0,\"deduped\":1"));
    cx_dead_letter_t dl[1];
    size_t n, total;
    cx_arena_t arena;
    cx_arena_init(&arena, NULL, 1 << 20);
    cx_error_t err;
    assert_int_equal(cx_runtime_dlq_list(fx->rt, 0, 1, &arena, dl, &n, &total, &err), 0);
    assert_int_equal(total, 0);
    cx_arena_release(&arena);
    printf("# ack latency of a queued batch: %.2f ms\n", ack_ms);
    free(body);
    fx_free(fx);
}

static int blocked_one(void *ud)
{
    return atomic_load(&((hstate_t *)ud)->blocked) == 1;
}

static int dlq_has_one(void *ud)
{
    fx_t *fx = ud;
    cx_dlq_ref_t ref;
    size_t n = 0, total = 0;
    cx_error_t err;
    cx_error_clear(&err);
    return fx->dlq->ops->list(fx->dlq, 0, 1, &ref, &n, &total, &err) == 0 && total == 1;
}

static void test_permanent_failure_dead_letter_replay_once_duplicate_deduped(void **state)
{
    (void)state;
    fx_opts_t o = {0};
    fx_t *fx = fx_new(&o);
    atomic_store(&fx->hs->fail_always[5], 1);
    char *body = batch("acc-1", 5, 1);
    result_t r;
    post(fx, body, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"queued\":1"));
    assert_true(wait_for(dlq_has_one, fx, 10000));
    assert_int_equal(atomic_load(&fx->hs->calls[5]), 1); /* permanent: not retried */

    /* The dead letter holds the canonical event and why it failed. */
    cx_arena_t arena;
    cx_arena_init(&arena, NULL, 1 << 20);
    cx_dead_letter_t dl[4];
    size_t n = 0, total = 0;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_runtime_dlq_list(fx->rt, 0, 4, &arena, dl, &n, &total, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(dl[0].reason, "permanent");
    assert_string_equal(dl[0].error_code, "HANDLER_PERMANENT");
    assert_string_equal(dl[0].error_class, "payload");
    assert_string_equal(dl[0].message, "rejected by the test");
    assert_string_equal(dl[0].connector, "test");
    assert_string_equal(dl[0].capability, "inbound_messages");
    assert_string_equal(dl[0].tenant_id, "acme");
    assert_string_equal(dl[0].event_type, "cx.messaging.v1.DirectMessage");
    assert_int_equal(dl[0].attempts, 1);
    assert_true(dl[0].first_ms > 0 && dl[0].dead_ms >= dl[0].first_ms);
    assert_non_null(dl[0].dedupe_key);
    assert_string_equal(dl[0].id, dl[0].dedupe_key);
    ProtobufCMessage *m = protobuf_c_message_unpack(&cx__messaging__v1__direct_message__descriptor,
                                                    NULL, dl[0].event_len, dl[0].event);
    assert_non_null(m);
    assert_string_equal(((Cx__Messaging__V1__DirectMessage *)m)->message_id, "m5");
    protobuf_c_message_free_unpacked(m, NULL);
    cx_buf_t jb;
    cx_buf_init(&jb, 1 << 20);
    assert_int_equal(cx_dead_letter_to_json(&dl[0], 1, &jb), 0);
    assert_non_null(strstr(jb.data, "\"messageId\":\"m5\""));
    assert_non_null(strstr(jb.data, "\"reason\":\"permanent\""));
    cx_buf_free(&jb);
    assert_int_equal(cx_runtime_refresh_gauges(fx->rt, &err), 0);
    cx_gauge_t *g = cx_metrics_gauge(fx->metrics, "dead_letters", "",
                                     (const char *[]){"connector", "capability", NULL});
    assert_true(cx_gauge_value(g, (const char *[]){"test", "inbound_messages"}) == 1.0);

    /* Replay, with the handler fixed but held at a gate while it runs. */
    const char *id = cx_arena_strndup(&arena, dl[0].id, strlen(dl[0].id));
    atomic_store(&fx->hs->fail_always[5], 0);
    atomic_store(&fx->hs->block[5], 1);
    const char *outcome = NULL;
    assert_int_equal(cx_runtime_dlq_replay(fx->rt, id, &outcome, &err), 0);
    assert_string_equal(outcome, "queued");
    assert_true(wait_for(blocked_one, fx->hs, 10000));
    /* A provider duplicate arrives while the replay runs: deduped, it does not run. */
    post(fx, body, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"queued\":0,\"deduped\":1"));
    /* A second replay of the same dead letter finds nothing: it was removed once queued. */
    assert_int_equal(cx_runtime_dlq_replay(fx->rt, id, &outcome, &err), CX_ENOTFOUND);
    pthread_mutex_lock(&fx->hs->mu);
    fx->hs->gate_open = 1;
    pthread_cond_broadcast(&fx->hs->cv);
    pthread_mutex_unlock(&fx->hs->mu);
    range_t rg = {fx->hs, 5, 1};
    assert_true(wait_for(all_succeeded, &rg, 10000));
    assert_true(wait_for(queue_drained, fx, 5000));
    sleep_ms(300);
    assert_int_equal(atomic_load(&fx->hs->calls[5]), 2); /* the failed run and the replay */
    assert_int_equal(atomic_load(&fx->hs->successes[5]), 1);
    post(fx, body, &r); /* a late duplicate: done */
    assert_non_null(strstr(r.body, "\"deduped\":1"));
    sleep_ms(100);
    assert_int_equal(atomic_load(&fx->hs->calls[5]), 2);
    assert_int_equal(cx_runtime_dlq_list(fx->rt, 0, 4, &arena, dl, &n, &total, &err), 0);
    assert_int_equal(total, 0);
    assert_int_equal(cx_runtime_refresh_gauges(fx->rt, &err), 0);
    assert_true(cx_gauge_value(g, (const char *[]){"test", "inbound_messages"}) == 0.0);
    cx_arena_release(&arena);
    free(body);
    fx_free(fx);
}

static void test_invalid_items_are_dead_lettered_and_replayable_after_fix(void **state)
{
    (void)state;
    fx_opts_t o = {0};
    fx_t *fx = fx_new(&o);
    char *body = batch("acc-9", 7, 1); /* an account nobody mapped yet */
    result_t r;
    post(fx, body, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"errorCode\":\"UNKNOWN_ACCOUNT\""));
    cx_arena_t arena;
    cx_arena_init(&arena, NULL, 1 << 20);
    cx_dead_letter_t dl[2];
    size_t n = 0, total = 0;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_runtime_dlq_list(fx->rt, 0, 2, &arena, dl, &n, &total, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(dl[0].reason, "invalid");
    assert_string_equal(dl[0].error_code, "UNKNOWN_ACCOUNT");
    assert_null(dl[0].dedupe_key);
    assert_int_equal(strncmp(dl[0].id, "invalid:", 8), 0);
    /* The same bad request again replaces its dead letter instead of adding one. */
    post(fx, body, &r);
    assert_int_equal(cx_runtime_dlq_list(fx->rt, 0, 2, &arena, dl, &n, &total, &err), 0);
    assert_int_equal(total, 1);
    const char *outcome;
    assert_int_equal(cx_runtime_dlq_replay(fx->rt, dl[0].id, &outcome, &err), CX_EUNKNOWN_ACCOUNT);
    assert_int_equal(cx_runtime_add_account(fx->rt, "test", "acc-9", "late", &err), 0);
    assert_int_equal(cx_runtime_dlq_replay(fx->rt, dl[0].id, &outcome, &err), 0);
    assert_string_equal(outcome, "queued");
    range_t rg = {fx->hs, 7, 1};
    assert_true(wait_for(all_succeeded, &rg, 10000));
    assert_int_equal(atomic_load(&fx->hs->calls[7]), 1);
    size_t removed = 9;
    assert_int_equal(cx_runtime_dlq_purge(fx->rt, INT64_MAX, &removed, &err), 0);
    assert_int_equal(removed, 0);
    cx_arena_release(&arena);
    free(body);
    fx_free(fx);
}

static void test_redis_down_at_arrival_503_then_redelivery_runs_each_once(void **state)
{
    (void)state;
    fx_opts_t o = {0};
    fx_t *fx = fx_new(&o);
    char *body = batch("acc-1", 100, 10);
    assert_int_equal(cx_test_redis_stop(&fx->redis), 0);
    result_t r;
    post(fx, body, &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "\"queued\":0"));
    sleep_ms(200);
    for (int i = 100; i < 110; i++)
        assert_int_equal(atomic_load(&fx->hs->calls[i]), 0);
    assert_false(cx_runtime_ready(fx->rt));
    assert_int_equal(cx_test_redis_restart(&fx->redis), 0);
    post(fx, body, &r); /* the provider's redelivery */
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"queued\":10"));
    range_t rg = {fx->hs, 100, 10};
    assert_true(wait_for(all_succeeded, &rg, 15000));
    assert_true(wait_for(queue_drained, fx, 5000));
    post(fx, body, &r); /* and a late one */
    assert_non_null(strstr(r.body, "\"deduped\":10"));
    sleep_ms(300);
    for (int i = 100; i < 110; i++) {
        assert_int_equal(atomic_load(&fx->hs->calls[i]), 1);
        assert_int_equal(atomic_load(&fx->hs->successes[i]), 1);
    }
    free(body);
    fx_free(fx);
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double p99(const hstate_t *hs, int from, int n)
{
    double *v = malloc((size_t)n * sizeof *v);
    for (int i = 0; i < n; i++)
        v[i] = hs->started_ms[from + i] - hs->posted_ms[from + i];
    qsort(v, (size_t)n, sizeof *v, cmpd);
    double p = v[(int)ceil(0.99 * n) - 1];
    free(v);
    return p;
}

/* The quiet tenant posts one item every 20 ms. */
static void quiet_tenant(fx_t *fx, int from, int n)
{
    for (int i = from; i < from + n; i++) {
        char *b = batch("acc-1", i, 1);
        result_t r;
        fx->hs->posted_ms[i] = now_ms();
        post(fx, b, &r);
        assert_int_equal(r.status, 200);
        free(b);
        sleep_ms(20);
    }
}

typedef struct {
    fx_t *fx;
    int from, n;
    double done_ms;
} noisy_t;

static void *noisy_main(void *arg)
{
    noisy_t *nt = arg;
    /* 10 batches of 10 in 0.5 s: 200 items/s against a limit of 20/s. */
    for (int k = 0; k < nt->n / 10; k++) {
        char *b = batch("acc-2", nt->from + 10 * k, 10);
        result_t *r = malloc(sizeof *r);
        for (int i = 0; i < 10; i++)
            nt->fx->hs->posted_ms[nt->from + 10 * k + i] = now_ms();
        post(nt->fx, b, r);
        assert_int_equal(r->status, 200);
        free(r);
        free(b);
        sleep_ms(50);
    }
    return NULL;
}

static void test_noisy_tenant_is_delayed_not_dropped_and_others_unaffected(void **state)
{
    (void)state;
    cx_rate_limit_rule_t rules[] = {{.tenant = "noisy", .per_second = 20, .burst = 5}};
    fx_opts_t o = {.rules = rules, .n_rules = 1, .workers = 4};
    fx_t *fx = fx_new(&o);
    /* Baseline: the quiet tenant alone. */
    quiet_tenant(fx, 1000, 50);
    range_t q1 = {fx->hs, 1000, 50};
    assert_true(wait_for(all_succeeded, &q1, 10000));
    double base = p99(fx->hs, 1000, 50);
    /* Now with the noisy tenant sending 10x its limit at the same time. */
    noisy_t nt = {fx, 2000, 100, 0};
    pthread_t tid;
    double t0 = now_ms();
    pthread_create(&tid, NULL, noisy_main, &nt);
    quiet_tenant(fx, 1100, 50);
    pthread_join(tid, NULL);
    range_t q2 = {fx->hs, 1100, 50};
    assert_true(wait_for(all_succeeded, &q2, 10000));
    double noisy_p99 = p99(fx->hs, 1100, 50);
    range_t nr = {fx->hs, 2000, 100};
    assert_true(wait_for(all_succeeded, &nr, 30000));
    double last = 0;
    for (int i = 2000; i < 2100; i++)
        if (fx->hs->started_ms[i] > last)
            last = fx->hs->started_ms[i];
    assert_true(wait_for(queue_drained, fx, 5000));
    sleep_ms(200);
    for (int i = 1000; i < 1150; i++)
        if (i < 1050 || i >= 1100)
            assert_int_equal(atomic_load(&fx->hs->successes[i]), 1);
    for (int i = 2000; i < 2100; i++) {
        assert_int_equal(atomic_load(&fx->hs->calls[i]), 1);
        assert_int_equal(atomic_load(&fx->hs->successes[i]), 1);
    }
    uint64_t limited = counter(fx, "rate_limited_total", (const char *[]){"tenant", NULL},
                               (const char *[]){"noisy"});
    assert_true(limited >= 80); /* 100 items, 5 of burst */
    assert_int_equal(counter(fx, "rate_limited_total", (const char *[]){"tenant", NULL},
                             (const char *[]){"acme"}),
                     0);
    /* 100 items at 20/s after a burst of 5 take about 4.75 s: paced, not dropped. */
    assert_true(last - t0 >= 4000);
    printf("# quiet tenant p99 (post to handler): alone %.1f ms, with a noisy tenant at 10x its "
           "limit %.1f ms; noisy tenant: %" PRIu64 " delays, last item ran %.1f s after its "
           "first\n",
           base, noisy_p99, limited, (last - t0) / 1000.0);
    fx_free(fx);
}

/* ---- the stores on their own (embedded and Redis: the same semantics) ---------------------------
 */

typedef struct {
    cx_test_redis_t redis;
    int have_redis;
} stores_fx_t;

static void stores_for(stores_fx_t *sf, int redis, cx_queue_t **q, cx_dedupe_store_t **d,
                       cx_ratelimit_t **rl)
{
    cx_error_t err;
    cx_error_clear(&err);
    if (!redis) {
        if (q)
            assert_int_equal(cx_queue_embedded("development", "t1", q, &err), 0);
        if (d)
            assert_int_equal(cx_dedupe_store_embedded("development", d, &err), 0);
        if (rl)
            assert_int_equal(cx_ratelimit_embedded("development", rl, &err), 0);
        return;
    }
    if (!sf->have_redis) {
        assert_int_equal(cx_test_redis_start(&sf->redis, NULL), 0);
        sf->have_redis = 1;
    }
    cx_redis_options_t ro = {.host = "127.0.0.1",
                             .port = sf->redis.port,
                             .connect_timeout_ms = 300,
                             .command_timeout_ms = 600};
    if (q)
        assert_int_equal(cx_queue_redis("development", "t1", &ro, q, &err), 0);
    if (d)
        assert_int_equal(cx_dedupe_store_redis("development", &ro, d, &err), 0);
    if (rl)
        assert_int_equal(cx_ratelimit_redis("development", &ro, rl, &err), 0);
}

static void queue_semantics(int redis)
{
    stores_fx_t sf = {0};
    cx_queue_t *q;
    stores_for(&sf, redis, &q, NULL, NULL);
    cx_error_t err;
    cx_error_clear(&err);
    cx_queue_payload_t p[4] = {{"a", 1, 0}, {"b", 1, 0}, {"c", 1, 0}, {"d", 1, 150}};
    assert_int_equal(q->ops->enqueue(q, p, 4, &err), 0);
    cx_queue_stats_t st;
    assert_int_equal(q->ops->stats(q, &st, &err), 0);
    assert_int_equal(st.depth, 3);
    assert_int_equal(st.scheduled, 1);
    cx_queue_msg_t m[8];
    size_t n = 0;
    assert_int_equal(q->ops->fetch(q, "A", 2, 50, 0, m, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(m[0].data, "a", 1);
    assert_memory_equal(m[1].data, "b", 1);
    /* B cannot reschedule or touch A's entries. */
    int lost = 0;
    assert_int_equal(q->ops->schedule(q, "B", m[0].id, "a2", 2, 0, &lost, &err), 0);
    assert_int_equal(lost, 1);
    unsigned char lostv[2];
    assert_int_equal(q->ops->touch(q, "B", (const char *[]){m[0].id, m[1].id}, 2, lostv, &err), 0);
    assert_true(lostv[0] && lostv[1]);
    assert_int_equal(q->ops->touch(q, "A", (const char *[]){m[0].id, m[1].id}, 2, lostv, &err), 0);
    assert_true(!lostv[0] && !lostv[1]);
    /* A reschedules "a" as "a2" (ack + schedule, atomically) and acks "b". */
    assert_int_equal(q->ops->schedule(q, "A", m[0].id, "a2", 2, 0, &lost, &err), 0);
    assert_int_equal(lost, 0);
    assert_int_equal(q->ops->ack(q, (const char *[]){m[1].id}, 1, &err), 0);
    cx_queue_msgs_free(m, n);
    /* B gets "c" and the due "a2"; "d" is not due yet. */
    size_t got = 0;
    char seen[8] = "";
    for (int k = 0; k < 10 && got < 2; k++) {
        assert_int_equal(q->ops->fetch(q, "B", 8, 20, 0, m, &n, &err), 0);
        for (size_t i = 0; i < n; i++) {
            strncat(seen, (const char *)m[i].data, m[i].len);
            assert_int_equal(q->ops->ack(q, (const char *[]){m[i].id}, 1, &err), 0);
        }
        got += n;
        cx_queue_msgs_free(m, n);
    }
    assert_int_equal(got, 2);
    assert_true(strstr(seen, "c") && strstr(seen, "a2"));
    /* "d" comes after its delay; taken by C and left silent, D reclaims it. */
    n = 0;
    for (int k = 0; k < 20 && n == 0; k++)
        assert_int_equal(q->ops->fetch(q, "C", 8, 20, 0, m, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_memory_equal(m[0].data, "d", 1);
    char id[CX_QUEUE_ID_SIZE];
    strcpy(id, m[0].id);
    cx_queue_msgs_free(m, n);
    sleep_ms(250);
    n = 0;
    for (int k = 0; k < 50 && n == 0; k++)
        assert_int_equal(q->ops->fetch(q, "D", 8, 20, 200, m, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(m[0].id, id);
    assert_int_equal(q->ops->touch(q, "C", (const char *[]){id}, 1, lostv, &err), 0);
    assert_true(lostv[0]); /* C lost it to D */
    assert_int_equal(q->ops->ack(q, (const char *[]){id}, 1, &err), 0);
    cx_queue_msgs_free(m, n);
    assert_int_equal(q->ops->stats(q, &st, &err), 0);
    assert_int_equal(st.depth, 0);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.scheduled, 0);
    cx_queue_destroy(q);
    if (sf.have_redis)
        cx_test_redis_destroy(&sf.redis);
}

static void test_queue_store_semantics_embedded(void **state)
{
    (void)state;
    queue_semantics(0);
}

static void test_queue_store_semantics_redis(void **state)
{
    (void)state;
    queue_semantics(1);
}

static void renew_semantics(int redis)
{
    stores_fx_t sf = {0};
    cx_dedupe_store_t *d;
    stores_for(&sf, redis, NULL, &d, NULL);
    cx_error_t err;
    cx_error_clear(&err);
    cx_dedupe_item_t it[4] = {
        {.key = "k:owned"}, {.key = "k:done"}, {.key = "k:lapsed"}, {.key = "k:taken"}};
    assert_int_equal(d->ops->claim(d, it, 4, 100, &err), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(it[i].state, CX_CLAIM_OWNED);
    cx_dedupe_item_t done = it[1];
    assert_int_equal(d->ops->complete(d, &done, 1, &err), 0);
    sleep_ms(150); /* k:owned, k:lapsed and k:taken lapse */
    cx_dedupe_item_t other = {.key = "k:taken"};
    assert_int_equal(d->ops->claim(d, &other, 1, 10000, &err), 0);
    assert_int_equal(other.state, CX_CLAIM_OWNED);
    cx_dedupe_item_t r[4];
    memcpy(r, it, sizeof r);
    assert_int_equal(d->ops->renew(d, r, 4, 10000, &err), 0);
    assert_int_equal(r[0].state, CX_CLAIM_OWNED); /* lapsed, nobody took it: ours again */
    assert_int_equal(r[1].state, CX_CLAIM_DONE);  /* completed */
    assert_int_equal(r[2].state, CX_CLAIM_OWNED);
    assert_int_equal(r[3].state, CX_CLAIM_IN_PROGRESS); /* another claim holds it */
    /* Renewed: a new delivery is in progress, and a second renewal is idempotent. */
    cx_dedupe_item_t dup = {.key = "k:owned"};
    assert_int_equal(d->ops->claim(d, &dup, 1, 100, &err), 0);
    assert_int_equal(dup.state, CX_CLAIM_IN_PROGRESS);
    assert_int_equal(d->ops->renew(d, r, 1, 10000, &err), 0);
    assert_int_equal(r[0].state, CX_CLAIM_OWNED);
    cx_dedupe_store_destroy(d);
    if (sf.have_redis)
        cx_test_redis_destroy(&sf.redis);
}

static void test_dedupe_renew_semantics_embedded(void **state)
{
    (void)state;
    renew_semantics(0);
}

static void test_dedupe_renew_semantics_redis(void **state)
{
    (void)state;
    renew_semantics(1);
}

static void gcra_semantics(int redis)
{
    stores_fx_t sf = {0};
    cx_ratelimit_t *rl;
    stores_for(&sf, redis, NULL, NULL, &rl);
    cx_error_t err;
    cx_error_clear(&err);
    /* 100/s (10 ms apart), burst 2: two now, then one slot every 10 ms, each reserved. */
    cx_ratelimit_check_t c = {.key = "{t1}:t", .interval_us = 10000, .burst = 2};
    cx_ratelimit_request_t req[8];
    for (int i = 0; i < 8; i++)
        req[i] = (cx_ratelimit_request_t){&c, 1};
    cx_ratelimit_result_t out[8];
    assert_int_equal(rl->ops->acquire(rl, req, 8, out, &err), 0);
    assert_int_equal(out[0].delay_ms, 0);
    assert_int_equal(out[1].delay_ms, 0);
    for (int i = 2; i < 8; i++) {
        assert_int_equal(out[i].reserved, 1);
        assert_int_equal(out[i].limited_by, 0);
        long want = 10 * (i - 1);
        assert_true((long)out[i].delay_ms >= want - 2 && (long)out[i].delay_ms <= want + 1);
    }
    /* A daily quota of 3 with a second bucket: the 4th waits for the next UTC day, unreserved. */
    cx_ratelimit_check_t q[2] = {{.key = "{t2}:t", .daily_quota = 3},
                                 {.key = "{t2}:c:x", .interval_us = 1, .burst = 100}};
    cx_ratelimit_request_t qr[4] = {{q, 2}, {q, 2}, {q, 2}, {q, 2}};
    assert_int_equal(rl->ops->acquire(rl, qr, 4, out, &err), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(out[i].delay_ms, 0);
    assert_int_equal(out[3].reserved, 0);
    assert_int_equal(out[3].limited_by, 0);
    assert_true(out[3].delay_ms > 0 && out[3].delay_ms <= 86400000);
    cx_ratelimit_destroy(rl);
    if (sf.have_redis)
        cx_test_redis_destroy(&sf.redis);
}

static void test_rate_limiter_gcra_reservations_and_quota_embedded(void **state)
{
    (void)state;
    gcra_semantics(0);
}

static void test_rate_limiter_gcra_reservations_and_quota_redis(void **state)
{
    (void)state;
    gcra_semantics(1);
}

/* Queued mode with nothing configured but the mode: embedded queue and dead letters. */
static void test_embedded_queued_mode_retries_and_dead_letters(void **state)
{
    (void)state;
    hstate_t *hs = calloc(1, sizeof *hs);
    char dir[] = "/tmp/cx-queued-emb-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/test", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/test/secret", dir);
    FILE *f = fopen(path, "w");
    fputs(SECRET, f);
    fclose(f);
    cx_logger_t *log;
    cx_logger_config_t lc = {.service = "t", .level = CX_LOG_OFF};
    assert_int_equal(cx_logger_new(&lc, &log), 0);
    cx_error_t err;
    cx_error_clear(&err);
    static const unsigned char key[] = "pseudonym-key-for-tests";
    cx_runtime_config_t cfg = {
        .secrets_dir = dir,
        .logger = log,
        .pseudonym_key = key,
        .pseudonym_key_len = sizeof key - 1,
        .handler_mode = CX_HANDLER_MODE_QUEUED,
        .retry = {.base_delay_ms = 10, .max_delay_ms = 20, .max_attempts = 3},
        .workers = 2};
    cx_runtime_t *rt;
    assert_int_equal(cx_runtime_create(&cfg, &rt, &err), 0);
    assert_int_equal(cx_runtime_add_connector(rt, cx_test_connector(), &err), 0);
    assert_int_equal(cx_runtime_add_account(rt, "test", "acc-1", "acme", &err), 0);
    assert_int_equal(cx_runtime_on(rt, "inbound_messages", handler, hs, &err), 0);
    assert_int_equal(cx_runtime_start_workers(rt, &err), 0);
    atomic_store(&hs->fail_transient[1], 1);
    atomic_store(&hs->fail_transient[2], 5); /* more than max_attempts */
    char *body = batch("acc-1", 0, 3);
    result_t r;
    post_rt(rt, body, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"queued\":3"));
    range_t rg = {hs, 0, 2};
    assert_true(wait_for(all_succeeded, &rg, 5000));
    cx_arena_t arena;
    cx_arena_init(&arena, NULL, 1 << 20);
    cx_dead_letter_t dl[2];
    size_t n = 0, total = 0;
    for (int k = 0; k < 500 && total == 0; k++) {
        sleep_ms(10);
        assert_int_equal(cx_runtime_dlq_list(rt, 0, 2, &arena, dl, &n, &total, &err), 0);
    }
    assert_int_equal(total, 1);
    assert_string_equal(dl[0].reason, "exhausted");
    assert_string_equal(dl[0].error_code, "HANDLER");
    assert_int_equal(dl[0].attempts, 3);
    assert_int_equal(atomic_load(&hs->calls[2]), 3);
    assert_int_equal(atomic_load(&hs->calls[1]), 2);
    assert_int_equal(cx_runtime_stop_workers(rt, 5000), 0);
    cx_arena_release(&arena);
    cx_runtime_destroy(rt);
    cx_logger_free(log);
    free(body);
    free(hs);
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    assert_int_equal(system(path), 0);
}

/* ---- worker processes --------------------------------------------------------------------------
 */

#ifdef CX_QUEUE_WORKER_PATH
/* Every worker process a test started and has not reaped: killed by the teardown when a test
 * fails halfway (and by the kernel when this process dies: PR_SET_PDEATHSIG). */
static pid_t spawned[64];
static int n_spawned;

static void forget(pid_t pid)
{
    for (int i = 0; i < n_spawned; i++)
        if (spawned[i] == pid) {
            spawned[i] = spawned[--n_spawned];
            return;
        }
}

static int kill_spawned(void **state)
{
    (void)state;
    while (n_spawned > 0) {
        pid_t pid = spawned[--n_spawned];
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return 0;
}

/* A worker process (tests/stress/queue_worker.c) on the fixture's Redis, counting into
 * <dir>/count and creating its effect records in <dir>/effects. */
static pid_t spawn_worker(const fx_t *fx, const char *dir, const char *const *extra)
{
    char count_file[256], effects[256];
    snprintf(count_file, sizeof count_file, "%s/count", dir);
    snprintf(effects, sizeof effects, "%s/effects", dir);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pfd[1], 1);
        for (int fd = 3; fd < 1024; fd++) /* our Redis connections, the pipe's ends */
            close(fd);
        char port[16];
        snprintf(port, sizeof port, "%d", fx->redis.port);
        const char *argv[32] = {CX_QUEUE_WORKER_PATH, "--port",        port,   "--count-file",
                                count_file,           "--effects-dir", effects};
        int k = 7;
        for (int i = 0; extra && extra[i] && k < 31; i++)
            argv[k++] = extra[i];
        argv[k] = NULL;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    spawned[n_spawned++] = pid;
    char buf[16] = {0};
    ssize_t got = read(pfd[0], buf, sizeof buf - 1); /* "ready\n" */
    close(pfd[0]);
    assert_true(got > 0 && strncmp(buf, "ready", 5) == 0);
    return pid;
}

static void kill9(pid_t pid)
{
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    forget(pid);
}

static void stop_worker(pid_t pid)
{
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    forget(pid);
}

/* The worker processes' accounts of items m0..m<n-1>, read outside them: the effect records
 * (<dir>/effects/<key>, created once each, holding the pid that created it) and the lines of
 * <dir>/count ("ran", "again", "done"; see tests/stress/queue_worker.c), in file order. */
typedef struct {
    int item;
    char kind; /* 'r' ran, 'a' again, 'd' done */
    long pid;
} line_t;

typedef struct {
    int n;
    int effects;   /* items with an effect record */
    long *applier; /* per item: the pid in its record, 0 = none */
    int *ran;      /* per item: runs that applied the effect */
    int *again;    /* per item: runs that found it applied */
    int *done;     /* per item: completions stored */
    line_t *lines;
    size_t n_lines;
} tally_t;

/* The dedupe keys of the enqueued items, from the gateway's responses (the test never parses
 * a key: its form is the schema's business, and a field classified as PII is pseudonymised in
 * it): item -> key, and sorted for key -> item. */
typedef struct {
    char key[128];
    int item;
} keyed_t;

static keyed_t keymap[MAX_ITEMS];
static char item_key[MAX_ITEMS][128];
static int n_keymap;

static int keyed_cmp(const void *a, const void *b)
{
    return strcmp(((const keyed_t *)a)->key, ((const keyed_t *)b)->key);
}

/* Records the keys of a batch response whose items are m<from>.. */
static void keymap_add(const char *body, int from)
{
    static const char IDX[] = "\"index\":", KEY[] = "\"dedupeKey\":\"";
    for (const char *p = strstr(body, IDX); p; p = strstr(p, IDX)) {
        p += sizeof IDX - 1;
        int item = from + atoi(p);
        const char *k = strstr(p, KEY);
        assert_non_null(k);
        k += sizeof KEY - 1;
        const char *end = strchr(k, '"');
        assert_non_null(end);
        assert_true(item >= 0 && item < MAX_ITEMS && end - k < 128 && n_keymap < MAX_ITEMS);
        snprintf(item_key[item], sizeof item_key[item], "%.*s", (int)(end - k), k);
        keymap[n_keymap].item = item;
        snprintf(keymap[n_keymap].key, sizeof keymap[n_keymap].key, "%s", item_key[item]);
        n_keymap++;
    }
}

static int key_item(const char *key, int n)
{
    keyed_t probe;
    if (strlen(key) >= sizeof probe.key)
        return -1;
    snprintf(probe.key, sizeof probe.key, "%s", key);
    const keyed_t *hit = bsearch(&probe, keymap, (size_t)n_keymap, sizeof *keymap, keyed_cmp);
    return hit && hit->item < n ? hit->item : -1;
}

static int count_effects(const char *dir, int n, long *applier)
{
    char path[300];
    snprintf(path, sizeof path, "%s/effects", dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int i = e->d_name[0] == '.' ? -1 : key_item(e->d_name, n); /* not .tmp-* files */
        if (i < 0)
            continue;
        found++;
        if (applier) {
            char rec[600];
            snprintf(rec, sizeof rec, "%s/%s", path, e->d_name);
            FILE *f = fopen(rec, "r");
            applier[i] = 0;
            if (f) {
                if (fscanf(f, "%ld", &applier[i]) != 1)
                    applier[i] = 0;
                fclose(f);
            }
        }
    }
    closedir(d);
    return found;
}

static void tally_read(tally_t *t, const char *dir, int n)
{
    memset(t, 0, sizeof *t);
    t->n = n;
    t->applier = calloc((size_t)n, sizeof *t->applier);
    t->ran = calloc((size_t)n, sizeof *t->ran);
    t->again = calloc((size_t)n, sizeof *t->again);
    t->done = calloc((size_t)n, sizeof *t->done);
    t->effects = count_effects(dir, n, t->applier);
    char path[300];
    snprintf(path, sizeof path, "%s/count", dir);
    FILE *f = fopen(path, "r");
    size_t cap = 0;
    char buf[800], kind[16], key[600];
    long pid;
    while (f && fgets(buf, sizeof buf, f)) {
        if (sscanf(buf, "%15s %599s %ld", kind, key, &pid) != 3)
            continue;
        int i = key_item(key, n);
        if (i < 0)
            continue;
        line_t l = {i, kind[0], pid};
        if (strcmp(kind, "ran") == 0)
            t->ran[i]++;
        else if (strcmp(kind, "again") == 0)
            t->again[i]++;
        else if (strcmp(kind, "done") == 0)
            t->done[i]++;
        else
            continue;
        if (t->n_lines == cap) {
            cap = cap ? cap * 2 : 16384;
            t->lines = realloc(t->lines, cap * sizeof *t->lines);
            assert_non_null(t->lines);
        }
        t->lines[t->n_lines++] = l;
    }
    if (f)
        fclose(f);
}

static void tally_free(tally_t *t)
{
    free(t->applier);
    free(t->ran);
    free(t->again);
    free(t->done);
    free(t->lines);
}

/* Items n with an effect record (the handlers' successes so far). */
typedef struct {
    const char *dir;
    int n;
} effects_t;

static int all_effects(void *ud)
{
    const effects_t *e = ud;
    sleep_ms(45); /* a directory of 10,000 entries: no need to read it every 5 ms */
    return count_effects(e->dir, e->n, NULL) == e->n;
}

/* Every key of m0..m<n-1> is done in the dedupe store (a claim attempt answers DONE; an item
 * that never completed would be claimed here, and counted). Returns how many are not done. */
static int not_done_in_store(fx_t *fx, int n)
{
    int missing = 0;
    cx_dedupe_item_t *it = calloc((size_t)n, sizeof *it);
    for (int i = 0; i < n; i++) {
        assert_true(item_key[i][0] != '\0');
        it[i].key = item_key[i];
    }
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(fx->dedupe->ops->claim(fx->dedupe, it, (size_t)n, 1000, &err), 0);
    for (int i = 0; i < n; i++)
        missing += it[i].state != CX_CLAIM_DONE;
    free(it);
    return missing;
}

static size_t dead_letters(fx_t *fx)
{
    cx_dlq_ref_t ref[1];
    size_t n = 0, total = 0;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(fx->dlq->ops->list(fx->dlq, 0, 1, ref, &n, &total, &err), 0);
    return total;
}

static int was_killed(const pid_t *killed, int nkilled, long pid)
{
    for (int k = 0; k < nkilled; k++)
        if ((long)killed[k] == pid)
            return 1;
    return 0;
}

static int done_by(const tally_t *t, int item, long pid)
{
    for (size_t l = 0; l < t->n_lines; l++)
        if (t->lines[l].item == item && t->lines[l].kind == 'd' && t->lines[l].pid == pid)
            return 1;
    return 0;
}

/* Enqueues n items m<from>.. through a runtime without workers (the gateway side), and
 * records their keys. */
static void enqueue_items(fx_t *fx, int from, int n)
{
    if (from == 0)
        n_keymap = 0;
    for (int k = 0; k < n; k += 10) {
        char *b = batch("acc-1", from + k, 10);
        result_t r;
        post(fx, b, &r);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "\"queued\":10"));
        keymap_add(r.body, from + k);
        free(b);
    }
    qsort(keymap, (size_t)n_keymap, sizeof *keymap, keyed_cmp);
}

typedef struct {
    fx_t *fx;
    uint64_t pending;
} pend_t;

static int pending_is(void *ud)
{
    pend_t *p = ud;
    cx_queue_stats_t st;
    cx_error_t err;
    cx_error_clear(&err);
    return p->fx->queue->ops->stats(p->fx->queue, &st, &err) == 0 && st.pending == p->pending;
}

static void make_work_dir(const fx_t *fx, char *dir, size_t cap)
{
    snprintf(dir, cap, "%s/work", fx->secrets);
    assert_int_equal(mkdir(dir, 0700), 0);
    char effects[300];
    snprintf(effects, sizeof effects, "%s/effects", dir);
    assert_int_equal(mkdir(effects, 0700), 0);
}

static void test_worker_killed_holding_100_items_another_finishes_each_once(void **state)
{
    (void)state;
    fx_opts_t o = {.no_workers = 1};
    fx_t *fx = fx_new(&o);
    char dir[256];
    make_work_dir(fx, dir, sizeof dir);
    enqueue_items(fx, 0, 100);
    /* Worker A takes all 100 (1 running, 99 buffered) and hangs in its first handler. */
    pid_t a = spawn_worker(fx, dir,
                           (const char *[]){"--threads", "1", "--prefetch", "100", "--hang",
                                            "--claim-ttl-ms", "1500", NULL});
    pend_t p = {fx, 100};
    assert_true(wait_for(pending_is, &p, 10000));
    sleep_ms(1700); /* past the claim TTL: A's heartbeat keeps them */
    assert_true(pending_is(&p));
    kill9(a);
    double t0 = now_ms();
    pid_t b =
        spawn_worker(fx, dir, (const char *[]){"--threads", "2", "--claim-ttl-ms", "1500", NULL});
    effects_t e = {dir, 100};
    assert_true(wait_for(all_effects, &e, 20000));
    double took = now_ms() - t0;
    assert_true(wait_for(queue_drained, fx, 5000));
    stop_worker(b);
    /* A ran no handler to its effect: B ran each item once, and stored each completion. */
    tally_t t;
    tally_read(&t, dir, 100);
    assert_int_equal(t.effects, 100);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(t.ran[i], 1);
        assert_int_equal(t.again[i], 0);
        assert_int_equal(t.done[i], 1);
        assert_int_equal(t.applier[i], (long)b);
    }
    assert_int_equal(not_done_in_store(fx, 100), 0);
    assert_int_equal(dead_letters(fx), 0);
    tally_free(&t);
    printf("# 100 items of a SIGKILLed worker finished by another in %.1f s (claim TTL 1.5 s)\n",
           took / 1000.0);
    fx_free(fx);
}

/* Exactly once under kill -9 (docs/durable-processing.md): delivery to handlers is at least
 * once, effects are exactly once. Asserted, with no timing in any assertion:
 *   - 10,000 successes: every item's effect applied, by exactly one run (one record each,
 *     never two "ran" lines for an item); 0 lost: besides, every key is done in the dedupe
 *     store, the queue and the schedule are empty, and there is no dead letter;
 *   - 0 duplicates: no effect applied twice;
 *   - the runtime ran an item again only where it may: each run of an item other than its
 *     last (and each effect a later run found applied) was made by a process that was then
 *     SIGKILLed before the item's completion was stored; at most one such item per killed
 *     worker thread. */
static void test_three_processes_10000_items_random_kills_exactly_once(void **state)
{
    (void)state;
    enum { N = 10000, PROCS = 3, THREADS = 2, KILLS = 8 };
    fx_opts_t o = {.no_workers = 1};
    fx_t *fx = fx_new(&o);
    char dir[256];
    make_work_dir(fx, dir, sizeof dir);
    double t0 = now_ms();
    enqueue_items(fx, 0, N);
    double enq = now_ms() - t0;
    const char *const args[] = {"--threads", "2",         "--prefetch", "8", "--claim-ttl-ms",
                                "1000",      "--work-us", "2000",       NULL};
    pid_t pids[PROCS], killed[KILLS];
    int nkilled = 0;
    for (int i = 0; i < PROCS; i++)
        pids[i] = spawn_worker(fx, dir, args);
    unsigned seed = (unsigned)time(NULL);
    printf("# random kills: seed %u\n", seed);
    srand(seed);
    for (int k = 0; k < KILLS; k++) {
        sleep_ms(300 + rand() % 700);
        int v = rand() % PROCS;
        kill9(pids[v]);
        killed[nkilled++] = pids[v];
        pids[v] = spawn_worker(fx, dir, args);
    }
    effects_t e = {dir, N};
    assert_true(wait_for(all_effects, &e, 180000));
    assert_true(wait_for(queue_drained, fx, 30000));
    for (int i = 0; i < PROCS; i++)
        stop_worker(pids[i]);

    tally_t t;
    tally_read(&t, dir, N);
    int lost = N - t.effects, duplicates = 0, reruns = 0, unexplained = 0;
    for (int i = 0; i < N; i++) {
        duplicates += t.ran[i] > 1 ? t.ran[i] - 1 : 0;
        reruns += t.again[i];
        /* A later run found the effect applied: its applier died before completing it. */
        if (t.again[i] &&
            (!was_killed(killed, nkilled, t.applier[i]) || done_by(&t, i, t.applier[i])))
            unexplained++;
    }
    /* Each run but an item's last: by a process killed before that item's completion. */
    int *runs_left = calloc(N, sizeof *runs_left);
    for (int i = 0; i < N; i++)
        runs_left[i] = t.ran[i] + t.again[i];
    for (size_t l = 0; l < t.n_lines; l++) {
        const line_t *x = &t.lines[l];
        if (x->kind == 'd' || --runs_left[x->item] == 0)
            continue;
        if (!was_killed(killed, nkilled, x->pid) || done_by(&t, x->item, x->pid))
            unexplained++;
    }
    free(runs_left);
    int not_done = not_done_in_store(fx, N);
    size_t dead = dead_letters(fx);
    printf("# 3 processes, %d items, %d SIGKILLs: %d handler successes (effects applied), %d "
           "lost, %d duplicates; %d re-runs found their effect applied (at-least-once delivery, "
           "idempotent effect), %d runs not explained by a SIGKILL before the item's completion "
           "was stored; %.1f s total (enqueue %.1f s)\n",
           N, nkilled, t.effects, lost, duplicates, reruns, unexplained, (now_ms() - t0) / 1000.0,
           enq / 1000.0);
    assert_int_equal(t.effects, N);
    assert_int_equal(lost, 0);
    assert_int_equal(duplicates, 0);
    assert_int_equal(not_done, 0);
    assert_int_equal(dead, 0);
    assert_int_equal(unexplained, 0);
    assert_true(reruns <= THREADS * nkilled);
    tally_free(&t);
    fx_free(fx);
}
#endif

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (getenv("CX_TEST_FILTER")) /* e.g. CX_TEST_FILTER='*noisy*' */
        cmocka_set_test_filter(getenv("CX_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_store_semantics_embedded),
        cmocka_unit_test(test_queue_store_semantics_redis),
        cmocka_unit_test(test_dedupe_renew_semantics_embedded),
        cmocka_unit_test(test_dedupe_renew_semantics_redis),
        cmocka_unit_test(test_rate_limiter_gcra_reservations_and_quota_embedded),
        cmocka_unit_test(test_rate_limiter_gcra_reservations_and_quota_redis),
        cmocka_unit_test(test_embedded_queued_mode_retries_and_dead_letters),
        cmocka_unit_test(test_transient_failures_are_retried_and_run_once),
        cmocka_unit_test(test_permanent_failure_dead_letter_replay_once_duplicate_deduped),
        cmocka_unit_test(test_invalid_items_are_dead_lettered_and_replayable_after_fix),
        cmocka_unit_test(test_redis_down_at_arrival_503_then_redelivery_runs_each_once),
        cmocka_unit_test(test_noisy_tenant_is_delayed_not_dropped_and_others_unaffected),
#ifdef CX_QUEUE_WORKER_PATH
        cmocka_unit_test_teardown(test_worker_killed_holding_100_items_another_finishes_each_once,
                                  kill_spawned),
        cmocka_unit_test_teardown(test_three_processes_10000_items_random_kills_exactly_once,
                                  kill_spawned),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
