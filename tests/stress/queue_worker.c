/* One worker process of the queued-mode crash tests (tests/unit/test_queued.c).
 *
 * It runs a runtime in queued mode on a real Redis (dedupe, queue, dead letters), registers a
 * handler that appends "<dedupe key> <pid>\n" to --count-file (one write() with O_APPEND, so
 * lines of many processes never interleave: the count lives outside the process and survives
 * kill -9), starts the workers, prints "ready" and runs until SIGTERM/SIGINT (then it stops the
 * workers, giving back what it holds) or until it is killed.
 *
 *   --port N            Redis on 127.0.0.1:N (required)
 *   --count-file PATH   where successes are counted (required)
 *   --threads N         worker threads (default 2)
 *   --prefetch N        items held beyond the running ones (default: threads)
 *   --claim-ttl-ms N    worker claim TTL (XAUTOCLAIM idle; default 1500)
 *   --work-us N         each handler sleeps a random 0..N microseconds first (default 0)
 *   --hang              every handler blocks forever before counting (to hold items)
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cx/runtime.h"

static int count_fd = -1;
static int hang;
static long work_us;

static int handler(void *ud, const cx_item_t *item, cx_error_t *err)
{
    (void)ud;
    (void)err;
    if (hang)
        for (;;)
            pause();
    if (work_us > 0) {
        long us = (long)((unsigned long)rand() % (unsigned long)work_us);
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    char line[700];
    int n = snprintf(line, sizeof line, "%s %ld\n", item->dedupe_key, (long)getpid());
    ssize_t w;
    do {
        w = write(count_fd, line, (size_t)n);
    } while (w < 0 && errno == EINTR);
    return 0;
}

int main(int argc, char **argv)
{
    int port = 0, threads = 2, prefetch = 0;
    unsigned claim_ttl = 1500;
    const char *count_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--hang") == 0) {
            hang = 1;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "queue_worker: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--port") == 0)
            port = atoi(v);
        else if (strcmp(a, "--count-file") == 0)
            count_file = v;
        else if (strcmp(a, "--threads") == 0)
            threads = atoi(v);
        else if (strcmp(a, "--prefetch") == 0)
            prefetch = atoi(v);
        else if (strcmp(a, "--claim-ttl-ms") == 0)
            claim_ttl = (unsigned)atoi(v);
        else if (strcmp(a, "--work-us") == 0)
            work_us = atol(v);
        else {
            fprintf(stderr, "queue_worker: unknown option %s\n", a);
            return 2;
        }
    }
    if (port <= 0 || count_file == NULL || threads <= 0) {
        fprintf(stderr, "usage: queue_worker --port N --count-file PATH [options]\n");
        return 2;
    }
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    count_fd = open(count_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (count_fd < 0) {
        perror("queue_worker: count file");
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by the worker threads */

    cx_error_t err;
    cx_error_clear(&err);
    cx_redis_options_t ro = {.host = "127.0.0.1",
                             .port = port,
                             .connect_timeout_ms = 500,
                             .command_timeout_ms = 1000,
                             .pool_size = threads + 4};
    cx_dedupe_store_t *dedupe = NULL;
    cx_queue_t *queue = NULL;
    cx_dlq_t *dlq = NULL;
    if (cx_dedupe_store_redis("development", &ro, &dedupe, &err) != 0 ||
        cx_queue_redis("development", NULL, &ro, &queue, &err) != 0 ||
        cx_dlq_redis("development", NULL, &ro, &dlq, &err) != 0) {
        fprintf(stderr, "queue_worker: stores: %s\n", err.message);
        return 1;
    }
    cx_logger_t *log = NULL;
    cx_logger_config_t lc = {.service = "queue_worker", .level = CX_LOG_ERROR};
    cx_logger_new(&lc, &log);
    static const unsigned char key[] = "pseudonym-key-for-tests";
    cx_runtime_config_t cfg = {.environment = CX_ENV_DEVELOPMENT,
                               .logger = log,
                               .dedupe = dedupe,
                               .pseudonym_key = key,
                               .pseudonym_key_len = sizeof key - 1,
                               .handler_mode = CX_HANDLER_MODE_QUEUED,
                               .queue = queue,
                               .dlq = dlq,
                               .handler_deadline_ms = claim_ttl / 2,
                               .worker_claim_ttl_ms = claim_ttl,
                               .workers = (unsigned)threads,
                               .tenant_concurrency = (unsigned)threads,
                               .prefetch = (unsigned)(prefetch > 0 ? prefetch : threads)};
    cx_runtime_t *rt = NULL;
    if (cx_runtime_create(&cfg, &rt, &err) != 0 ||
        cx_runtime_on(rt, "*", handler, NULL, &err) != 0 ||
        cx_runtime_start_workers(rt, &err) != 0) {
        fprintf(stderr, "queue_worker: runtime: %s\n", err.message);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    int rc = cx_runtime_stop_workers(rt, 5000);
    cx_runtime_destroy(rt);
    cx_queue_destroy(queue);
    cx_dlq_destroy(dlq);
    cx_dedupe_store_destroy(dedupe);
    cx_logger_free(log);
    close(count_fd);
    return rc == 0 ? 0 : 1;
}
