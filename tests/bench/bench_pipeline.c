/* In-process pipeline benchmark (no HTTP): prints figures, asserts nothing.
 *
 * Signed 10-item batches of the test connector with unique ids go through cx_runtime_handle
 * (verify, parse, validate, tenant, dedupe key, claim, no-op handler, complete), from T threads,
 * with the embedded store or a real redis-server (started on a free loopback port). Reports
 * items/s and per-request p50/p99. See docs/benchmarks.md.
 *
 * usage: bench_pipeline embedded|redis [SECONDS] [THREADS] [log|nolog] [PER_CALL]
 *        ("log" turns per-item logging on, into /dev/null; PER_CALL requests go through each
 *        cx_runtime_handle_many call, as `cx serve` does with the requests that are ready
 *        together; default 1)
 *
 * Each thread signs its requests before the clock starts (CX_BENCH_REQUESTS per thread,
 * default 100,000): the load generator's HMAC and printf are not the pipeline's cost. A run
 * ends after SECONDS or when the requests run out, whichever comes first. The embedded store
 * is sized for every key of the run in advance (CX_BENCH_GROW=1: it starts small and grows).
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cx/runtime.h"
#include "redis_server.h"
#include "test_connector.h"

#define BATCH 10

static cx_runtime_t *rt;
static double seconds = 5;
static atomic_long next_id;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int noop(void *ud, const cx_item_t *item, cx_error_t *err)
{
    (void)ud;
    (void)item;
    (void)err;
    return 0;
}

/* One signed request, made before the clock starts (the load generator is not the pipeline). */
typedef struct {
    char sig[80];
    size_t len;
    char body[];
} pregen_t;

static size_t per_thread = 100000; /* requests made in advance per thread */
static int per_call = 1;          /* requests per cx_runtime_handle_many call */

static pregen_t *make_request(long base)
{
    char body[2048];
    int o = snprintf(body, sizeof body, "{\"account\":\"acc-1\",\"items\":[");
    for (int i = 0; i < BATCH; i++)
        o += snprintf(body + o, sizeof body - (size_t)o,
                      "%s{\"id\":\"m%ld\",\"from\":\"+14155550123\",\"text\":\"hello\"}",
                      i ? "," : "", base + i);
    o += snprintf(body + o, sizeof body - (size_t)o, "]}");
    pregen_t *p = malloc(sizeof *p + (size_t)o);
    if (p == NULL)
        abort();
    memcpy(p->body, body, (size_t)o);
    p->len = (size_t)o;
    cx_test_sign("bench-secret", body, (size_t)o, p->sig);
    return p;
}

static pthread_barrier_t start_line;

/* One thread's requests and tallies: nothing shared while the clock runs (a counter shared
 * by the threads would cost the pipeline's figures a contended cache line per request). */
typedef struct {
    pregen_t **reqs;
    float *samples; /* per request, µs */
    size_t n_samples;
    long requests, items, errors;
} thread_t;

static void *worker(void *arg)
{
    thread_t *t = arg;
    t->reqs = malloc(per_thread * sizeof *t->reqs);
    t->samples = malloc(per_thread * sizeof *t->samples);
    if (t->reqs == NULL || t->samples == NULL)
        abort();
    for (size_t i = 0; i < per_thread; i++)
        t->reqs[i] = make_request(atomic_fetch_add(&next_id, BATCH));
    pthread_barrier_wait(&start_line);
    static _Thread_local char out[CX_HANDLE_MANY_MAX][8192];
    double end = now() + seconds;
    for (size_t i = 0; i < per_thread; i += (size_t)per_call) {
        size_t m = per_thread - i < (size_t)per_call ? per_thread - i : (size_t)per_call;
        cx_header_t h[CX_HANDLE_MANY_MAX][1];
        cx_request_t req[CX_HANDLE_MANY_MAX];
        cx_buf_t b[CX_HANDLE_MANY_MAX];
        cx_response_t resp[CX_HANDLE_MANY_MAX];
        cx_exchange_t ex[CX_HANDLE_MANY_MAX];
        for (size_t k = 0; k < m; k++) {
            pregen_t *p = t->reqs[i + k];
            h[k][0] = (cx_header_t){"X-Test-Signature", p->sig};
            req[k] = (cx_request_t){"POST", "/webhook/test", "", h[k], 1, p->body, p->len};
            cx_buf_init_fixed(&b[k], out[k], sizeof out[k]);
            resp[k] = (cx_response_t){0, NULL, &b[k]};
            ex[k] = (cx_exchange_t){"test", &req[k], &resp[k]};
        }
        double t0 = now();
        if (t0 >= end)
            break;
        cx_runtime_handle_many(rt, ex, m);
        double dt = now() - t0;
        for (size_t k = 0; k < m; k++) {
            t->errors += resp[k].status != 200;
            /* Every request of a call waited for the whole call. */
            t->samples[t->n_samples++] = (float)(dt * 1e6);
        }
        t->requests += (long)m;
        t->items += (long)m * BATCH;
    }
    return NULL;
}

/* CPU seconds this process has used (all threads, user + system). */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds a process has used (utime + stime from /proc/<pid>/stat), or -1. */
static double proc_cpu_seconds(pid_t pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    const char *p = strrchr(line, ')'); /* the command name may hold spaces */
    unsigned long ut = 0, st = 0;
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                            &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* redis-benchmark's pipelined SET rate against the same server, in the same run. */
static double redis_benchmark_set_rate(int port)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "redis-benchmark -h 127.0.0.1 -p %d -t set -P 16 -r 10000000 -n 2000000 -q "
             "2>/dev/null | tr '\\r' '\\n' | grep -o 'SET: [0-9.]* requests per second' | tail -1",
             port);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return 0;
    double rate = 0;
    if (fscanf(p, "SET: %lf", &rate) != 1)
        rate = 0;
    pclose(p);
    return rate;
}

static int cmpf(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "embedded";
    seconds = argc > 2 ? atof(argv[2]) : 5;
    int threads = argc > 3 ? atoi(argv[3]) : 2;
    int logging = argc > 4 && strcmp(argv[4], "log") == 0;
    per_call = argc > 5 ? atoi(argv[5]) : 1;
    if (per_call < 1 || per_call > CX_HANDLE_MANY_MAX)
        return 1;
    char dir[] = "/tmp/cx-bench-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[256];
    snprintf(path, sizeof path, "%s/test", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/test/secret", dir);
    FILE *f = fopen(path, "w");
    fputs("bench-secret", f);
    fclose(f);

    if (getenv("CX_BENCH_REQUESTS"))
        per_thread = (size_t)atol(getenv("CX_BENCH_REQUESTS"));
    cx_test_redis_t redis;
    cx_dedupe_store_t *store = NULL;
    cx_error_t err;
    if (strcmp(mode, "embedded") == 0) {
        /* Room for every unique key of the run (the default cap is 2^20), sized in advance as
         * an operator who knows the volume would (docs/benchmarks.md); CX_BENCH_GROW=1 starts
         * the tables small instead. */
        size_t keys = per_thread * BATCH * (size_t)threads + 1;
        int grow = getenv("CX_BENCH_GROW") && strcmp(getenv("CX_BENCH_GROW"), "1") == 0;
        cx_dedupe_embedded_options_t eo = {.max_keys = keys, .initial_keys = grow ? 0 : keys};
        if (cx_dedupe_store_embedded_ex("bench", &eo, &store, &err) != 0)
            return 1;
    } else if (strcmp(mode, "redis") == 0) {
        if (cx_test_redis_start(&redis, NULL) != 0) {
            fprintf(stderr, "cannot start redis-server\n");
            return 1;
        }
        cx_redis_options_t ro = {.host = "127.0.0.1", .port = redis.port,
                                 .connect_timeout_ms = 1000, .command_timeout_ms = 1000,
                                 .pool_size = threads};
        if (cx_dedupe_store_redis("bench", &ro, &store, &err) != 0)
            return 1;
    }
    int devnull = open("/dev/null", O_WRONLY);
    cx_logger_t *log;
    cx_logger_config_t lc = {.service = "bench", .level = logging ? CX_LOG_INFO : CX_LOG_WARN,
                             .sink = cx_log_fd_sink, .sink_ud = &devnull};
    cx_logger_new(&lc, &log);
    static const unsigned char key[] = "bench-pseudonym-key";
    cx_runtime_config_t cfg = {.environment = CX_ENV_DEVELOPMENT, .secrets_dir = dir,
                               .dedupe = store, .logger = log, .pseudonym_key = key,
                               .pseudonym_key_len = sizeof key - 1};
    if (cx_runtime_create(&cfg, &rt, &err) != 0 ||
        cx_runtime_add_connector(rt, cx_test_connector(), &err) != 0 ||
        cx_runtime_add_account(rt, "test", "acc-1", "acme", &err) != 0 ||
        cx_runtime_on(rt, "inbound_messages", noop, NULL, &err) != 0) {
        fprintf(stderr, "setup: %s\n", err.message);
        return 1;
    }
    pthread_t tid[64];
    thread_t th[64];
    if (threads < 1 || threads > 64)
        return 1;
    memset(th, 0, sizeof th);
    pthread_barrier_init(&start_line, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++)
        pthread_create(&tid[i], NULL, worker, &th[i]);
    pthread_barrier_wait(&start_line);
    int is_redis = strcmp(mode, "redis") == 0;
    double t_start = now(), cpu_start = cpu_seconds();
    double redis_cpu_start = is_redis ? proc_cpu_seconds(redis.pid) : 0;
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    double dt = now() - t_start;
    double cpu = cpu_seconds() - cpu_start;
    double redis_cpu = is_redis ? proc_cpu_seconds(redis.pid) - redis_cpu_start : 0;
    long requests = 0, items = 0, errors = 0;
    size_t ns = 0;
    for (int i = 0; i < threads; i++) {
        requests += th[i].requests;
        items += th[i].items;
        errors += th[i].errors;
        ns += th[i].n_samples;
    }
    float *samples = malloc((ns ? ns : 1) * sizeof *samples);
    if (samples == NULL)
        return 1;
    for (int i = 0, at = 0; i < threads; i++) {
        memcpy(samples + at, th[i].samples, th[i].n_samples * sizeof *samples);
        at += (int)th[i].n_samples;
        for (size_t k = 0; k < per_thread; k++)
            free(th[i].reqs[k]);
        free(th[i].reqs);
        free(th[i].samples);
    }
    if (ns == 0)
        samples[0] = 0;
    qsort(samples, ns, sizeof(float), cmpf);
    printf("pipeline %-8s threads=%d per_call=%d logging=%s batch=%d: %.0f items/s, %.0f requests/s, "
           "p50 %.1f us, p99 %.1f us per request, %.2f CPU us per item, %ld non-200\n",
           mode, threads, per_call, logging ? "on" : "off", BATCH, (double)items / dt,
           (double)requests / dt, (double)samples[ns / 2],
           (double)samples[(size_t)((double)ns * 0.99)],
           items ? cpu * 1e6 / (double)items : 0, errors);
    free(samples);
    if (is_redis) {
        /* Each item costs Redis two SETs (the claim and the completion). */
        double item_rate = (double)items / dt;
        double set_rate = redis_benchmark_set_rate(redis.port);
        printf("redis-server: %.0f%% of a core during the run; redis-benchmark pipelined SET "
               "(same server, same run): %.0f SET/s; the pipeline's %.0f SET/s are %.0f%% of "
               "it\n",
               100 * redis_cpu / dt, set_rate, 2 * item_rate,
               set_rate > 0 ? 100 * 2 * item_rate / set_rate : 0);
    }
    cx_runtime_destroy(rt);
    cx_dedupe_store_destroy(store);
    cx_logger_free(log);
    if (strcmp(mode, "redis") == 0)
        cx_test_redis_destroy(&redis);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    return system(path) == 0 ? 0 : 1;
}
