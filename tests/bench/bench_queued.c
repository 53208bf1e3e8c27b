/* Queued mode end to end next to inline mode, with a real redis-server (prints figures only).
 *
 *   inline   T client threads post signed 10-item batches of the test connector through
 *            cx_runtime_handle: claim, no-op handler, complete (the response waits for all);
 *   queued   the same clients; the response waits for claim + XADD only ("ack"); W worker
 *            threads in the same process fetch, renew, run the no-op handler, complete and ack.
 *            Reported: ack latency p50/p99 per request, acked items/s, and items/s through the
 *            workers until the queue is empty;
 *   drain    N items queued with the workers stopped, then the workers alone drain them.
 *
 * usage: bench_queued [SECONDS] [CLIENT_THREADS] [WORKERS]   (defaults 3 2 4)
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cx/runtime.h"
#include "redis_server.h"
#include "test_connector.h"

#define BATCH 10
#define MAX_SAMPLES (1 << 20)

static cx_runtime_t *rt;
static double seconds = 3;
static atomic_long next_id, requests, items, errors, handled;
static float *samples;
static atomic_long n_samples;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int count(void *ud, const cx_item_t *item, cx_error_t *err)
{
    (void)ud;
    (void)item;
    (void)err;
    atomic_fetch_add(&handled, 1);
    return 0;
}

static void post_batch(char *body, size_t cap, char *out, size_t outcap)
{
    char sig[80];
    cx_header_t h[1] = {{"X-Test-Signature", sig}};
    long base = atomic_fetch_add(&next_id, BATCH);
    int o = snprintf(body, cap, "{\"account\":\"acc-1\",\"items\":[");
    for (int i = 0; i < BATCH; i++)
        o += snprintf(body + o, cap - (size_t)o,
                      "%s{\"id\":\"m%ld\",\"from\":\"+14155550123\",\"text\":\"hello\"}",
                      i ? "," : "", base + i);
    o += snprintf(body + o, cap - (size_t)o, "]}");
    cx_test_sign("bench-secret", body, (size_t)o, sig);
    cx_request_t req = {"POST", "/webhook/test", "", h, 1, body, (size_t)o};
    cx_buf_t b;
    cx_buf_init_fixed(&b, out, outcap);
    cx_response_t resp = {0, NULL, &b};
    double t0 = now();
    cx_runtime_handle(rt, "test", &req, &resp);
    double dt = now() - t0;
    if (resp.status != 200)
        atomic_fetch_add(&errors, 1);
    atomic_fetch_add(&requests, 1);
    atomic_fetch_add(&items, BATCH);
    long k = atomic_fetch_add(&n_samples, 1);
    if (k < MAX_SAMPLES)
        samples[k] = (float)(dt * 1e6);
}

static void *client(void *arg)
{
    (void)arg;
    char body[2048], out[8192];
    double end = now() + seconds;
    while (now() < end)
        post_batch(body, sizeof body, out, sizeof out);
    return NULL;
}

static int cmpf(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void percentiles(double *p50, double *p99)
{
    long ns = atomic_load(&n_samples);
    if (ns > MAX_SAMPLES)
        ns = MAX_SAMPLES;
    qsort(samples, (size_t)ns, sizeof(float), cmpf);
    *p50 = ns ? samples[ns / 2] : 0;
    *p99 = ns ? samples[(long)((double)ns * 0.99)] : 0;
}

static void reset(void)
{
    atomic_store(&requests, 0);
    atomic_store(&items, 0);
    atomic_store(&errors, 0);
    atomic_store(&handled, 0);
    atomic_store(&n_samples, 0);
}

typedef struct {
    cx_dedupe_store_t *dedupe;
    cx_queue_t *queue;
    cx_dlq_t *dlq;
    cx_logger_t *log;
} stores_t;

static int make_runtime(const char *dir, stores_t *s, cx_handler_mode_t mode, unsigned workers)
{
    static const unsigned char key[] = "bench-pseudonym-key";
    cx_runtime_config_t cfg = {.environment = CX_ENV_DEVELOPMENT,
                               .secrets_dir = dir,
                               .dedupe = s->dedupe,
                               .logger = s->log,
                               .pseudonym_key = key,
                               .pseudonym_key_len = sizeof key - 1,
                               .handler_mode = mode,
                               .queue = mode == CX_HANDLER_MODE_QUEUED ? s->queue : NULL,
                               .dlq = s->dlq,
                               .workers = workers,
                               .prefetch = 4 * workers,
                               .tenant_concurrency = workers};
    cx_error_t err;
    cx_error_clear(&err);
    if (cx_runtime_create(&cfg, &rt, &err) != 0 ||
        cx_runtime_add_connector(rt, cx_test_connector(), &err) != 0 ||
        cx_runtime_add_account(rt, "test", "acc-1", "acme", &err) != 0 ||
        cx_runtime_on(rt, "inbound_messages", count, NULL, &err) != 0) {
        fprintf(stderr, "setup: %s\n", err.message);
        return -1;
    }
    return 0;
}

static void run_clients(int threads)
{
    pthread_t tid[64];
    for (int i = 0; i < threads; i++)
        pthread_create(&tid[i], NULL, client, NULL);
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
}

int main(int argc, char **argv)
{
    seconds = argc > 1 ? atof(argv[1]) : 3;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    unsigned workers = argc > 3 ? (unsigned)atoi(argv[3]) : 4;
    if (threads < 1 || threads > 64 || workers < 1)
        return 2;
    char dir[] = "/tmp/cx-benchq-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[256];
    snprintf(path, sizeof path, "%s/test", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/test/secret", dir);
    FILE *f = fopen(path, "w");
    fputs("bench-secret", f);
    fclose(f);
    cx_test_redis_t redis;
    if (cx_test_redis_start(&redis, NULL) != 0) {
        fprintf(stderr, "cannot start redis-server\n");
        return 1;
    }
    cx_redis_options_t ro = {.host = "127.0.0.1",
                             .port = redis.port,
                             .connect_timeout_ms = 1000,
                             .command_timeout_ms = 2000,
                             .pool_size = threads + (int)workers + 4};
    stores_t s = {0};
    cx_error_t err;
    cx_error_clear(&err);
    int devnull = open("/dev/null", O_WRONLY);
    cx_logger_config_t lc = {
        .service = "bench", .level = CX_LOG_ERROR, .sink = cx_log_fd_sink, .sink_ud = &devnull};
    cx_logger_new(&lc, &s.log);
    if (cx_dedupe_store_redis("bench", &ro, &s.dedupe, &err) != 0 ||
        cx_queue_redis("bench", NULL, &ro, &s.queue, &err) != 0 ||
        cx_dlq_redis("bench", NULL, &ro, &s.dlq, &err) != 0)
        return 1;
    samples = malloc(sizeof(float) * MAX_SAMPLES);
    double p50, p99;

    /* Inline. */
    if (make_runtime(dir, &s, CX_HANDLER_MODE_INLINE, workers) != 0)
        return 1;
    reset();
    double t0 = now();
    run_clients(threads);
    double dt = now() - t0;
    percentiles(&p50, &p99);
    printf("inline  redis clients=%d batch=%d: %.0f items/s processed, response p50 %.1f us, "
           "p99 %.1f us, %ld non-200\n",
           threads, BATCH, (double)atomic_load(&items) / dt, p50, p99, atomic_load(&errors));
    cx_runtime_destroy(rt);

    /* Queued, workers running. */
    if (make_runtime(dir, &s, CX_HANDLER_MODE_QUEUED, workers) != 0 ||
        cx_runtime_start_workers(rt, &err) != 0)
        return 1;
    reset();
    t0 = now();
    run_clients(threads);
    double acked = now() - t0;
    long total = atomic_load(&items);
    while (atomic_load(&handled) < total && now() - t0 < acked + 120)
        pause_ms(1);
    double through = now() - t0;
    percentiles(&p50, &p99);
    printf("queued  redis clients=%d workers=%u batch=%d: ack p50 %.1f us, p99 %.1f us per "
           "request, %.0f items/s acked, %.0f items/s through the workers (%ld of %ld handled in "
           "%.2f s), %ld non-200\n",
           threads, workers, BATCH, p50, p99, (double)total / acked,
           (double)atomic_load(&handled) / through, atomic_load(&handled), total, through,
           atomic_load(&errors));
    cx_runtime_stop_workers(rt, 0);
    cx_runtime_destroy(rt);

    /* Drain: queue first, then the workers alone. */
    if (make_runtime(dir, &s, CX_HANDLER_MODE_QUEUED, workers) != 0)
        return 1;
    reset();
    long want = 20000;
    char body[2048], out[8192];
    while (atomic_load(&items) < want)
        post_batch(body, sizeof body, out, sizeof out);
    t0 = now();
    cx_runtime_start_workers(rt, &err);
    while (atomic_load(&handled) < want && now() - t0 < 120)
        pause_ms(1);
    dt = now() - t0;
    printf("drain   redis workers=%u: %ld queued items handled in %.2f s: %.0f items/s\n", workers,
           atomic_load(&handled), dt, (double)atomic_load(&handled) / dt);
    cx_runtime_stop_workers(rt, 0);
    cx_runtime_destroy(rt);

    cx_queue_destroy(s.queue);
    cx_dlq_destroy(s.dlq);
    cx_dedupe_store_destroy(s.dedupe);
    cx_logger_free(s.log);
    cx_test_redis_destroy(&redis);
    free(samples);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    return system(path) == 0 ? 0 : 1;
}
